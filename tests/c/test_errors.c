/*
 * test_errors: wdpool_version, wdpool_abi_version, wdpool_result_name, the
 * wdpool_error accessors, every _free(NULL), wdpool_message_init, and NULL
 * pointers wherever the API does not allow them.
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

static void test_version_and_errors(void) {
  CHECK_STR(wdpool_version(), WDPOOL_VERSION);
  CHECK(wdpool_abi_version() == WDPOOL_ABI_VERSION);

  CHECK_STR(wdpool_result_name(WDPOOL_OK), "WDPOOL_OK");
  CHECK_STR(wdpool_result_name(WDPOOL_NULL_PARAMETER), "WDPOOL_NULL_PARAMETER");
  CHECK_STR(wdpool_result_name(WDPOOL_INVALID_ARGUMENT), "WDPOOL_INVALID_ARGUMENT");
  CHECK_STR(wdpool_result_name(WDPOOL_INVALID_CONFIG), "WDPOOL_INVALID_CONFIG");
  CHECK_STR(wdpool_result_name(WDPOOL_INVALID_MESSAGE), "WDPOOL_INVALID_MESSAGE");
  CHECK_STR(wdpool_result_name(WDPOOL_TIMEOUT), "WDPOOL_TIMEOUT");
  CHECK_STR(wdpool_result_name(WDPOOL_CLOSED), "WDPOOL_CLOSED");
  CHECK_STR(wdpool_result_name(WDPOOL_NOT_TRANSACTIONAL), "WDPOOL_NOT_TRANSACTIONAL");
  CHECK_STR(wdpool_result_name(WDPOOL_KAFKA), "WDPOOL_KAFKA");
  CHECK_STR(wdpool_result_name(WDPOOL_CALLBACK_FAILED), "WDPOOL_CALLBACK_FAILED");
  CHECK_STR(wdpool_result_name(WDPOOL_TRANSACTION_ABORTED), "WDPOOL_TRANSACTION_ABORTED");
  CHECK_STR(wdpool_result_name(WDPOOL_STALE_HANDLE), "WDPOOL_STALE_HANDLE");
  CHECK_STR(wdpool_result_name(WDPOOL_NOT_SET_UP), "WDPOOL_NOT_SET_UP");
  CHECK_STR(wdpool_result_name(WDPOOL_DELIVERY_TIMEOUT), "WDPOOL_DELIVERY_TIMEOUT");
  CHECK_STR(wdpool_result_name(WDPOOL_PENDING), "WDPOOL_PENDING");
  CHECK_STR(wdpool_result_name(WDPOOL_FATAL), "WDPOOL_FATAL");
  CHECK_STR(wdpool_result_name(WDPOOL_TRANSACTION_EXITED_EARLY), "WDPOOL_TRANSACTION_EXITED_EARLY");
  CHECK_STR(wdpool_result_name(WDPOOL_PANIC), "WDPOOL_PANIC");
  CHECK_STR(wdpool_result_name(17), "WDPOOL_UNKNOWN");
  CHECK_STR(wdpool_result_name(-1), "WDPOOL_UNKNOWN");
  CHECK_STR(wdpool_result_name(98), "WDPOOL_UNKNOWN");
  CHECK_STR(wdpool_result_name(INT32_MAX), "WDPOOL_UNKNOWN");

  /* The accessors accept NULL. */
  CHECK_EQ(wdpool_error_code(NULL), WDPOOL_NULL_PARAMETER);
  CHECK_STR(wdpool_error_message(NULL), "");
  CHECK_EQ(wdpool_error_kafka_code(NULL), 0);

  /* A real error: its accessors agree with the result, and it is freed. */
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_pool_stats(NULL, NULL, &err);
  CHECK_EQ(rc, WDPOOL_NULL_PARAMETER);
  CHECK(err != NULL);
  CHECK_EQ(wdpool_error_code(err), WDPOOL_NULL_PARAMETER);
  CHECK_CONTAINS(wdpool_error_message(err), "NULL");
  CHECK_EQ(wdpool_error_kafka_code(err), 0);
  wdpool_error_free(err);

  /* Every _free accepts NULL; wdpool_message_init(NULL) does nothing. */
  wdpool_error_free(NULL);
  wdpool_delivery_free(NULL);
  wdpool_pool_free(NULL);
  wdpool_mock_cluster_free(NULL);
  wdpool_message_init(NULL);

  /* wdpool_message_init resets every field. */
  wdpool_message m;
  memset(&m, 0x5a, sizeof m);
  wdpool_message_init(&m);
  CHECK(m.topic == NULL && m.payload.data == NULL && m.payload.len == 0 && m.key.data == NULL &&
        m.key.len == 0 && m.partition_key.data == NULL && m.partition_key.len == 0 && m.headers == NULL &&
        m.headers_len == 0);
  CHECK_EQ(m.partition, WDPOOL_PARTITION_ANY);
  CHECK_EQ(m.timestamp_ms, 0);
}

/* ------------------------------------------------------------------------
 * NULL pointers wherever they are not allowed. */

static void nulls_with_producer(wdpool_producer *p, void *ctx) {
  (void)ctx;
  wdpool_message m = text_message(TOPIC, "x");
  wdpool_report r;
  wdpool_delivery *d = NULL;
  wdpool_producer_info info;

  CHECK_RC_BOTH(wdpool_producer_produce_sync(NULL, &m, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_sync(p, NULL, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_many_sync(NULL, &m, 1, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_many_sync(p, NULL, 1, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_async(NULL, &m, &d, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_async(p, NULL, &d, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_many_async(NULL, &m, 1, &d, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_many_async(p, NULL, 1, &d, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK(d == NULL);
  CHECK_RC_BOTH(wdpool_producer_flush(NULL, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_transaction(NULL, run_body, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_begin(NULL, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_commit(NULL, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_abort(NULL, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_get_info(NULL, &info, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_get_info(p, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_checkin(NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);

  /* Empty batches with NULL arrays are nothing to do. */
  CHECK_RC(wdpool_producer_produce_many_sync(p, NULL, 0, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);
}

static void test_null_parameters(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 1000, &setup);
  wdpool_statistics s;
  wdpool_producer *p = NULL;

  CHECK_RC_BOTH(wdpool_pool_with(NULL, WDPOOL_TIMEOUT_DEFAULT, run_body, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, NULL, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_pool_transaction(NULL, WDPOOL_TIMEOUT_DEFAULT, run_body, NULL, CHECK_ERR),
                WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, NULL, NULL, CHECK_ERR),
                WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_pool_checkout(NULL, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK(p == NULL);
  CHECK_RC_BOTH(wdpool_pool_close(NULL, false, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_pool_reload(NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_pool_stats(NULL, &s, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_pool_stats(pool, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_EQ(wdpool_pool_id(NULL), 0);

  CHECK_RC_BOTH(wdpool_delivery_wait(NULL, 0, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  wdpool_report r;
  CHECK_RC_BOTH(wdpool_delivery_report(NULL, 0, &r, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_EQ(wdpool_delivery_count(NULL), 0);
  CHECK_EQ(wdpool_delivery_pending(NULL), 0);

  uint64_t id = 12345;
  CHECK_RC_BOTH(wdpool_subscribe(NULL, NULL, NULL, &id, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_EQ(id, 12345);

  body b = {nulls_with_producer, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(b.calls, 1);
  CHECK_EQ(stats_of(pool).in_use, 0);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  test_version_and_errors();

  if (!api_setup()) return check_summary("test_errors");

  test_null_parameters();

  return api_teardown("test_errors");
}
