/*
 * test_error_flags: wdpool_error_kafka_flags and its WDPOOL_KAFKA_* bits,
 * with Kafka errors injected by wdpool_mock_cluster_push_request_errors: an
 * abortable commit (TXN_REQUIRES_ABORT), a fatal one (FATAL, the producer
 * replaced), a refused message (a code, no flag), a full local queue
 * (RETRIABLE), errors that are not librdkafka's (0), and the injection
 * call's own refusals.
 *
 * Under ASan, UBSan and LeakSanitizer, against librdkafka's in-process mock
 * cluster (api_harness.h). Which program calls each exported function:
 * README.md.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "support.h"
#include "api_harness.h"
#include "wdpool.h"

#define API_PRODUCE 0
#define API_END_TXN 26
#define ERR_MSG_SIZE_TOO_LARGE 10
#define ERR_INVALID_TXN_STATE 48
#define ERR_QUEUE_FULL (-184)

static void inject(int16_t api_key, int32_t code) {
  CHECK_RC(wdpool_mock_cluster_push_request_errors(api_mock, api_key, &code, 1, CHECK_ERR), WDPOOL_OK);
}

/* One transaction on `pool` producing one message without waiting;
 * returns its result and error. */
static wdpool_result one_transaction(wdpool_pool *pool, wdpool_error **err) {
  wdpool_producer *p = NULL;
  wdpool_result rc = wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, err);
  if (rc != WDPOOL_OK) return rc;
  rc = wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, err);
  if (rc == WDPOOL_OK) {
    wdpool_message m = text_message(OFFSETS_TOPIC, "flags");
    CHECK_RC(wdpool_producer_produce_async(p, &m, NULL, CHECK_ERR), WDPOOL_OK);
    rc = wdpool_producer_end(p, WDPOOL_TXN_COMMIT, WDPOOL_TIMEOUT_DEFAULT, NULL, err);
  }
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  return rc;
}

static void test_not_from_kafka(void) {
  CHECK_EQ(wdpool_error_kafka_flags(NULL), 0);
  CHECK_EQ(WDPOOL_KAFKA_RETRIABLE | WDPOOL_KAFKA_FATAL | WDPOOL_KAFKA_TXN_REQUIRES_ABORT, 7);
  wdpool_error *err = NULL;
  wdpool_options options = {.size = 0, .timeout_ms = 10};
  wdpool_pool *pool = NULL;
  CHECK_EQ(wdpool_pool_new(&options, NULL, NULL, &pool, &err), WDPOOL_INVALID_ARGUMENT);
  CHECK_EQ(wdpool_error_kafka_code(err), 0);
  CHECK_EQ(wdpool_error_kafka_flags(err), 0);
  wdpool_error_free(err);
}

static void test_transaction_flags(void) {
  pool_setup setup = {.tx_prefix = "c-flags-tx-"};
  wdpool_pool *pool = make_pool(1, 10000, &setup);
  wdpool_error *err = NULL;
  CHECK_EQ(one_transaction(pool, &err), WDPOOL_OK);
  wdpool_error_free(err);

  /* The broker refuses the message: the commit is abortable. */
  err = NULL;
  inject(API_PRODUCE, ERR_MSG_SIZE_TOO_LARGE);
  CHECK_EQ(one_transaction(pool, &err), WDPOOL_TRANSACTION_ABORTED);
  CHECK_EQ(wdpool_error_kafka_code(err), ERR_MSG_SIZE_TOO_LARGE);
  CHECK_EQ(wdpool_error_kafka_flags(err), WDPOOL_KAFKA_TXN_REQUIRES_ABORT);
  wdpool_error_free(err);
  /* Replaced when checked in: librdkafka left a gap in its sequence numbers
     (README "Failure modes"). */
  CHECK_EQ(stats_of(pool).replaced, 1);

  /* EndTxn refused with INVALID_TXN_STATE: fatal, the producer is replaced. */
  err = NULL;
  inject(API_END_TXN, ERR_INVALID_TXN_STATE);
  CHECK_EQ(one_transaction(pool, &err), WDPOOL_FATAL);
  CHECK_EQ(wdpool_error_kafka_code(err), ERR_INVALID_TXN_STATE);
  CHECK(wdpool_error_kafka_flags(err) & WDPOOL_KAFKA_FATAL);
  CHECK_EQ(wdpool_error_kafka_flags(err) & WDPOOL_KAFKA_TXN_REQUIRES_ABORT, 0);
  wdpool_error_free(err);
  CHECK_EQ(stats_of(pool).replaced, 2);

  CHECK_RC(wdpool_pool_close(pool, true, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

/* A producer whose local queue holds one message, waiting 200 ms at most. */
static int configure_small_queue(void *user_data, wdpool_config *config, size_t index) {
  (void)user_data;
  (void)index;
  return wdpool_config_set_kafka(config, "bootstrap.servers", brokers, NULL) == WDPOOL_OK &&
                 wdpool_config_set_kafka(config, "queue.buffering.max.messages", "1", NULL) == WDPOOL_OK &&
                 wdpool_config_set_max_wait_timeout(config, 200, NULL) == WDPOOL_OK
             ? WDPOOL_CB_OK
             : 0;
}

static void set_brokers_up(bool up) {
  for (int32_t id = 1; id <= 3; id++)
    CHECK_RC(wdpool_mock_cluster_set_broker_up(api_mock, id, up, CHECK_ERR), WDPOOL_OK);
}

static void test_produce_flags(void) {
  wdpool_options options = {.size = 1, .timeout_ms = 10000};
  wdpool_pool *pool = NULL;
  CHECK_RC(wdpool_pool_new(&options, configure_small_queue, NULL, &pool, CHECK_ERR), WDPOOL_OK);
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);

  /* A delivery report's code: no flag (librdkafka gave up retrying). The
   * wait is explicit: the default here is the 200 ms max_wait_timeout, which
   * a round trip to the mock cluster can outlast under valgrind (it did). */
  inject(API_PRODUCE, ERR_MSG_SIZE_TOO_LARGE);
  wdpool_message m = text_message(OFFSETS_TOPIC, "refused");
  wdpool_error *err = NULL;
  CHECK_EQ(wdpool_producer_produce_sync(p, &m, 30000, NULL, &err), WDPOOL_KAFKA);
  CHECK_EQ(wdpool_error_kafka_code(err), ERR_MSG_SIZE_TOO_LARGE);
  CHECK_EQ(wdpool_error_kafka_flags(err), 0);
  wdpool_error_free(err);

  /* The local queue holds one message and the brokers are down: the second
   * produce waits max_wait_timeout (200 ms), then fails retriable. */
  set_brokers_up(false);
  CHECK_RC(wdpool_producer_produce_async(p, &m, NULL, CHECK_ERR), WDPOOL_OK);
  err = NULL;
  CHECK_EQ(wdpool_producer_produce_async(p, &m, NULL, &err), WDPOOL_KAFKA);
  CHECK_EQ(wdpool_error_kafka_code(err), ERR_QUEUE_FULL);
  CHECK_EQ(wdpool_error_kafka_flags(err), WDPOOL_KAFKA_RETRIABLE);
  wdpool_error_free(err);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  wdpool_close_report report;
  CHECK_RC(wdpool_pool_close(pool, true, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.undelivered, 1);
  set_brokers_up(true);
  wdpool_pool_free(pool);
}

static void test_injection_refusals(void) {
  int32_t code = ERR_MSG_SIZE_TOO_LARGE;
  CHECK_RC_BOTH(wdpool_mock_cluster_push_request_errors(NULL, API_PRODUCE, &code, 1, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_mock_cluster_push_request_errors(api_mock, API_PRODUCE, NULL, 1, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC(wdpool_mock_cluster_push_request_errors(api_mock, API_PRODUCE, NULL, 0, CHECK_ERR), WDPOOL_OK);
  CHECK_RC_MSG(wdpool_mock_cluster_push_request_errors(api_mock, 1, &code, 1, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "ApiKey 1");
  int32_t unknown = 123456;
  CHECK_RC_MSG(wdpool_mock_cluster_push_request_errors(api_mock, API_PRODUCE, &unknown, 1, CHECK_ERR),
               WDPOOL_INVALID_ARGUMENT, "123456");
  CHECK_RC(wdpool_mock_cluster_push_request_errors(api_mock, API_PRODUCE, &code, 2000, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC(wdpool_mock_cluster_push_request_errors((wdpool_mock_cluster *)(uintptr_t)0x1234, API_PRODUCE, &code, 1, CHECK_ERR),
           WDPOOL_INVALID_ARGUMENT);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  if (!api_setup()) return check_summary("test_error_flags");

  test_not_from_kafka();
  test_injection_refusals();
  test_transaction_flags();
  test_produce_flags();

  return api_teardown("test_error_flags");
}
