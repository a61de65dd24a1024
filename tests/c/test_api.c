/*
 * test_api: every function of include/wdpool.h, from C, under ASan, UBSan
 * and LeakSanitizer, against librdkafka's in-process mock cluster.
 *
 * Every exported function is called at least once:
 *   wdpool_version                       test_version_and_errors
 *   wdpool_result_name                   test_version_and_errors
 *   wdpool_error_code                    test_version_and_errors (+ check.h)
 *   wdpool_error_message                 test_version_and_errors (+ check.h)
 *   wdpool_error_kafka_code              test_version_and_errors, test_forced_close
 *   wdpool_error_free                    test_version_and_errors (+ check.h)
 *   wdpool_options_default               test_pool_creation
 *   wdpool_message_init                  test_version_and_errors (+ support.h)
 *   wdpool_config_set_kafka              test_pool_creation, configure_pool
 *   wdpool_config_set_deliver            test_pool_creation, configure_pool
 *   wdpool_config_set_max_wait_timeout   test_pool_creation, configure_pool
 *   wdpool_config_set_max_payload_size   test_pool_creation, test_invalid_messages
 *   wdpool_config_set_id                 test_pool_creation, test_transactions
 *   wdpool_pool_new                      test_pool_creation and most others
 *   wdpool_pool_with                     test_produce, test_callbacks, test_reentrancy, ...
 *   wdpool_pool_transaction              test_transactions
 *   wdpool_pool_checkout                 test_handles, test_checkout_timeout
 *   wdpool_pool_close                    test_close_and_reload, test_forced_close
 *   wdpool_pool_reload                   test_close_and_reload
 *   wdpool_pool_stats                    everywhere
 *   wdpool_pool_id                       everywhere
 *   wdpool_pool_free                     everywhere
 *   wdpool_setup / wdpool_with / wdpool_transaction / wdpool_checkout /
 *   wdpool_close / wdpool_reload / wdpool_stats / wdpool_active /
 *   wdpool_global_id                     test_global_pool
 *   wdpool_producer_produce_sync         test_produce, test_invalid_messages
 *   wdpool_producer_produce_many_sync    test_produce, test_invalid_messages
 *   wdpool_producer_produce_async        test_produce, test_forced_close
 *   wdpool_producer_produce_many_async   test_produce
 *   wdpool_producer_flush                test_produce, test_deliver_false
 *   wdpool_producer_transaction          test_transactions
 *   wdpool_producer_begin / _commit / _abort   test_transactions
 *   wdpool_producer_get_info             test_transactions, test_reentrancy, ...
 *   wdpool_producer_checkin              test_handles, test_transactions, test_global_pool
 *   wdpool_delivery_wait / _count / _pending / _report / _free
 *                                        test_produce, test_forced_close
 *   wdpool_subscribe / wdpool_unsubscribe   main, test_subscriptions
 *   wdpool_events_drain                  test_statistics_events, test_forced_close (support.h)
 *   wdpool_mock_cluster_new / _bootstrap_servers / _create_topic /
 *   _set_broker_up / _free               test_mock_cluster, main
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "support.h"
#include "wdpool.h"

/* Bounds every delivery wait against the mock cluster, so a failure shows
 * up as an error within seconds instead of WaterDrop's 180 s default. */
#define MAX_WAIT_MS 10000
/* How long to wait for queued events (statistics, errors). */
#define EVENT_DEADLINE_MS 10000

#define TOPIC "c-api-produce"         /* 4 partitions */
#define OFFSETS_TOPIC "c-api-offsets" /* 1 partition: offsets tell what arrived */
#define TIMESTAMP_MS INT64_C(1700000000123)

static const char *brokers; /* the mock cluster's bootstrap servers */
static event_log events;    /* every event of the run */
static pthread_t main_thread;

/* ------------------------------------------------------------------------
 * Configuring pools. */

typedef struct pool_setup {
  const char *bootstrap;    /* NULL: the mock cluster */
  bool no_deliver;          /* WaterDrop's deliver = false */
  const char *tx_prefix;    /* transactional.id = <prefix><index> when set */
  const char *id_prefix;    /* wdpool id = <prefix><index> when set */
  size_t max_payload_size;  /* 0: the default */
  const char *extra_key;    /* one more librdkafka property */
  const char *extra_value;
  const char *extra_key2;
  const char *extra_value2;
  /* Filled in by the callback. */
  size_t indexes[16];
  size_t calls;
} pool_setup;

static int configure_pool(void *user_data, wdpool_config *config, size_t index) {
  pool_setup *s = user_data;
  if (s->calls < sizeof s->indexes / sizeof s->indexes[0]) s->indexes[s->calls] = index;
  s->calls++;
  char value[128];
  wdpool_result rc = wdpool_config_set_kafka(config, "bootstrap.servers", s->bootstrap ? s->bootstrap : brokers, NULL);
  if (rc == WDPOOL_OK) rc = wdpool_config_set_max_wait_timeout(config, MAX_WAIT_MS, NULL);
  if (rc == WDPOOL_OK && s->no_deliver) rc = wdpool_config_set_deliver(config, false, NULL);
  if (rc == WDPOOL_OK && s->tx_prefix != NULL) {
    snprintf(value, sizeof value, "%s%zu", s->tx_prefix, index);
    rc = wdpool_config_set_kafka(config, "transactional.id", value, NULL);
    if (rc == WDPOOL_OK) rc = wdpool_config_set_kafka(config, "transaction.timeout.ms", "10000", NULL);
  }
  if (rc == WDPOOL_OK && s->id_prefix != NULL) {
    snprintf(value, sizeof value, "%s%zu", s->id_prefix, index);
    rc = wdpool_config_set_id(config, value, NULL);
  }
  if (rc == WDPOOL_OK && s->max_payload_size > 0)
    rc = wdpool_config_set_max_payload_size(config, s->max_payload_size, NULL);
  if (rc == WDPOOL_OK && s->extra_key != NULL) rc = wdpool_config_set_kafka(config, s->extra_key, s->extra_value, NULL);
  if (rc == WDPOOL_OK && s->extra_key2 != NULL)
    rc = wdpool_config_set_kafka(config, s->extra_key2, s->extra_value2, NULL);
  return rc == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static wdpool_pool *make_pool(size_t size, uint64_t timeout_ms, pool_setup *setup) {
  wdpool_options options = {.size = size, .timeout_ms = timeout_ms};
  wdpool_pool *pool = NULL;
  CHECK_RC(wdpool_pool_new(&options, configure_pool, setup, &pool, CHECK_ERR), WDPOOL_OK);
  return pool;
}

static wdpool_statistics stats_of(const wdpool_pool *pool) {
  wdpool_statistics s;
  memset(&s, 0xff, sizeof s);
  CHECK_RC(wdpool_pool_stats(pool, &s, CHECK_ERR), WDPOOL_OK);
  return s;
}

static void produce_one(wdpool_producer *producer, void *ctx) {
  const char *topic = ctx != NULL ? ctx : TOPIC;
  wdpool_message m = text_message(topic, "one");
  CHECK_RC(wdpool_producer_produce_sync(producer, &m, NULL, CHECK_ERR), WDPOOL_OK);
}

/* ------------------------------------------------------------------------ */

static void test_version_and_errors(void) {
  CHECK_STR(wdpool_version(), WDPOOL_VERSION);

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
  CHECK_STR(wdpool_result_name(WDPOOL_PANIC), "WDPOOL_PANIC");
  CHECK_STR(wdpool_result_name(16), "WDPOOL_UNKNOWN");
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

/* ------------------------------------------------------------------------ */

static void test_mock_cluster(wdpool_mock_cluster *mock) {
  CHECK(brokers != NULL && brokers[0] != '\0');
  CHECK_CONTAINS(brokers, "127.0.0.1:");
  CHECK_STR(wdpool_mock_cluster_bootstrap_servers(NULL), "");

  CHECK_RC(wdpool_mock_cluster_create_topic(mock, TOPIC, 4, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_mock_cluster_create_topic(mock, OFFSETS_TOPIC, 1, CHECK_ERR), WDPOOL_OK);
  CHECK_RC_BOTH(wdpool_mock_cluster_create_topic(mock, "c-api-zero", 0, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_mock_cluster_create_topic(mock, "\xff", 1, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_mock_cluster_create_topic(mock, NULL, 1, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_mock_cluster_create_topic(NULL, "t", 1, CHECK_ERR), WDPOOL_NULL_PARAMETER);

  wdpool_mock_cluster *other = (wdpool_mock_cluster *)&other;
  CHECK_RC_BOTH(wdpool_mock_cluster_new(0, &other, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_mock_cluster_new(17, &other, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK(other == (wdpool_mock_cluster *)&other); /* written only on success */
  CHECK_RC_BOTH(wdpool_mock_cluster_new(1, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_mock_cluster_set_broker_up(NULL, 1, true, CHECK_ERR), WDPOOL_NULL_PARAMETER);

  /* A broker taken down and brought back: a message queued while it was
   * down is delivered once it is up again. A cluster of its own, so the
   * other tests do not see the outage. */
  wdpool_mock_cluster *single = NULL;
  CHECK_RC(wdpool_mock_cluster_new(1, &single, CHECK_ERR), WDPOOL_OK);
  if (single == NULL) return;
  CHECK_RC(wdpool_mock_cluster_create_topic(single, "c-api-outage", 1, CHECK_ERR), WDPOOL_OK);
  pool_setup setup = {.bootstrap = wdpool_mock_cluster_bootstrap_servers(single),
                      .extra_key = "reconnect.backoff.max.ms",
                      .extra_value = "100"};
  wdpool_pool *pool = make_pool(1, 5000, &setup);
  body warm = {produce_one, "c-api-outage", WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &warm, CHECK_ERR), WDPOOL_OK);

  CHECK_RC(wdpool_mock_cluster_set_broker_up(single, 1, false, CHECK_ERR), WDPOOL_OK);
  wdpool_producer *producer = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_TIMEOUT_DEFAULT, &producer, CHECK_ERR), WDPOOL_OK);
  wdpool_message m = text_message("c-api-outage", "while down");
  wdpool_delivery *delivery = NULL;
  CHECK_RC(wdpool_producer_produce_async(producer, &m, &delivery, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_mock_cluster_set_broker_up(single, 1, true, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_delivery_wait(delivery, MAX_WAIT_MS, CHECK_ERR), WDPOOL_OK);
  wdpool_report report;
  CHECK_RC(wdpool_delivery_report(delivery, 0, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.error_code, 0);
  CHECK_EQ(report.partition, 0);
  CHECK_EQ(report.offset, 1); /* after the warm-up message */
  wdpool_delivery_free(delivery);
  CHECK_RC(wdpool_producer_checkin(producer, CHECK_ERR), WDPOOL_OK);

  /* An unknown broker id is refused. */
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_mock_cluster_set_broker_up(single, 99, false, &err);
  CHECK(rc != WDPOOL_OK);
  CHECK(err != NULL && wdpool_error_code(err) == rc);
  wdpool_error_free(err);

  wdpool_pool_free(pool);
  wdpool_mock_cluster_free(single);
}

/* ------------------------------------------------------------------------
 * Pool creation and configuration. */

typedef enum config_action {
  SET_UNKNOWN_KEY,
  SET_INVALID_VALUE,
  SET_INVALID_VALUE_IGNORED, /* the callback ignores the failure */
  SET_NON_UTF8_KEY,
  SET_NON_UTF8_VALUE,
  SET_NULL_KEY,
  SET_NULL_VALUE,
  SET_ZERO_MAX_WAIT,
  SET_ZERO_MAX_PAYLOAD,
  SET_EMPTY_ID,
  SET_NON_UTF8_ID,
  SET_NULL_ID,
  RETURN_ZERO,
  RETURN_ABORT,
  KEEP_HANDLE, /* stash the config handle for later (stale) use */
} config_action;

typedef struct config_probe {
  config_action action;
  wdpool_result rc; /* what the setter returned */
  char message[256];
  wdpool_config *kept;
} config_probe;

static int configure_probe(void *user_data, wdpool_config *config, size_t index) {
  config_probe *p = user_data;
  wdpool_error *err = NULL;
  wdpool_result rc = WDPOOL_OK;
  (void)index;
  switch (p->action) {
    case SET_UNKNOWN_KEY: rc = wdpool_config_set_kafka(config, "no.such.property", "1", &err); break;
    case SET_INVALID_VALUE:
    case SET_INVALID_VALUE_IGNORED: rc = wdpool_config_set_kafka(config, "acks", "many", &err); break;
    case SET_NON_UTF8_KEY: rc = wdpool_config_set_kafka(config, "\xff", "1", &err); break;
    case SET_NON_UTF8_VALUE: rc = wdpool_config_set_kafka(config, "client.id", "\xc3\x28", &err); break;
    case SET_NULL_KEY: rc = wdpool_config_set_kafka(config, NULL, "1", &err); break;
    case SET_NULL_VALUE: rc = wdpool_config_set_kafka(config, "acks", NULL, &err); break;
    case SET_ZERO_MAX_WAIT: rc = wdpool_config_set_max_wait_timeout(config, 0, &err); break;
    case SET_ZERO_MAX_PAYLOAD: rc = wdpool_config_set_max_payload_size(config, 0, &err); break;
    case SET_EMPTY_ID: rc = wdpool_config_set_id(config, "", &err); break;
    case SET_NON_UTF8_ID: rc = wdpool_config_set_id(config, "\xff", &err); break;
    case SET_NULL_ID: rc = wdpool_config_set_id(config, NULL, &err); break;
    case RETURN_ZERO: return 0;
    case RETURN_ABORT: return WDPOOL_CB_ABORT;
    case KEEP_HANDLE:
      p->kept = config;
      rc = wdpool_config_set_deliver(config, false, &err);
      break;
  }
  p->rc = rc;
  snprintf(p->message, sizeof p->message, "%s", wdpool_error_message(err));
  if (err != NULL && wdpool_error_code(err) != rc) p->rc = WDPOOL_PANIC; /* the accessor disagrees */
  wdpool_error_free(err);
  if (p->action == SET_INVALID_VALUE_IGNORED) return WDPOOL_CB_OK;
  return rc == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

/* Creates a pool whose configure callback does `action`; checks what the
 * setter returned and what wdpool_pool_new returned. */
static void check_config_action(config_action action, wdpool_result setter_rc, const char *setter_text,
                                wdpool_result new_rc, const char *new_text, int line) {
  config_probe probe = {.action = action, .rc = WDPOOL_OK, .message = "", .kept = NULL};
  wdpool_options options = {.size = 2, .timeout_ms = 100};
  wdpool_pool *pool = NULL;
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_pool_new(&options, configure_probe, &probe, &pool, &err);
  char what[64];
  snprintf(what, sizeof what, "config action %d (line %d)", (int)action, line);
  check_record_(probe.rc == setter_rc, __FILE__, line, what, wdpool_result_name((int)probe.rc));
  if (setter_text != NULL) check_contains_(probe.message, setter_text, __FILE__, line, what);
  check_rc_(rc, new_rc, err, new_text, what, __FILE__, line);
  check_record_(pool == NULL, __FILE__, line, "pool_out is written only on success", NULL);
  wdpool_error_free(err);
  wdpool_pool_free(pool);
}

static void test_pool_creation(void) {
  /* NULL options and NULL configure: WaterDrop's defaults. No producer is
   * created until a checkout, so nothing needs the default brokers. */
  wdpool_pool *pool = NULL;
  size_t created_before = event_log_count(&events, 0, WDPOOL_EVENT_CREATED);
  CHECK_RC(wdpool_pool_new(NULL, NULL, NULL, &pool, CHECK_ERR), WDPOOL_OK);
  CHECK(pool != NULL);
  uint64_t id = wdpool_pool_id(pool);
  CHECK(id != 0);
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.size, WDPOOL_DEFAULT_SIZE);
  CHECK_EQ(s.created, 0);
  CHECK_EQ(s.in_use, 0);
  CHECK(!s.closed);
  CHECK_EQ(event_log_count(&events, 0, WDPOOL_EVENT_CREATED), created_before + 1);
  recorded_event e;
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_CREATED, 0, &e, NULL))) {
    CHECK_EQ(e.size, WDPOOL_DEFAULT_SIZE);
    CHECK_EQ(e.timeout_ms, WDPOOL_DEFAULT_TIMEOUT_MS);
    CHECK(!e.global);
    CHECK(e.well_formed);
    CHECK(pthread_equal(e.thread, main_thread));
  }
  /* With no configure callback the brokers come from WDPOOL_BROKERS (set to
   * the mock cluster by main), so a checkout works. */
  body b = {produce_one, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(b.calls, 1);
  wdpool_pool_free(pool);

  /* wdpool_options_default. */
  wdpool_options d = wdpool_options_default();
  CHECK_EQ(d.size, WDPOOL_DEFAULT_SIZE);
  CHECK_EQ(d.timeout_ms, WDPOOL_DEFAULT_TIMEOUT_MS);

  /* The configure callback gets every index, in order, on this thread. */
  pool_setup setup = {.no_deliver = true};
  pool = make_pool(4, 1000, &setup);
  CHECK_EQ(setup.calls, 4);
  for (size_t i = 0; i < 4; i++) CHECK_EQ(setup.indexes[i], i);
  if (CHECK(event_log_find(&events, wdpool_pool_id(pool), WDPOOL_EVENT_CREATED, 0, &e, NULL))) {
    CHECK_EQ(e.size, 4);
    CHECK_EQ(e.timeout_ms, 1000);
  }
  wdpool_pool_free(pool);

  /* Size 0, and NULL pool_out. */
  wdpool_options zero = {.size = 0, .timeout_ms = 100};
  pool = (wdpool_pool *)&pool;
  CHECK_RC_BOTH(wdpool_pool_new(&zero, NULL, NULL, &pool, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK(pool == (wdpool_pool *)&pool);
  CHECK_RC_BOTH(wdpool_pool_new(NULL, NULL, NULL, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);

  /* Configuration errors: the setter's result, then the pool's. */
  check_config_action(SET_UNKNOWN_KEY, WDPOOL_INVALID_CONFIG, "no.such.property", WDPOOL_INVALID_CONFIG,
                      "no.such.property", __LINE__);
  check_config_action(SET_INVALID_VALUE, WDPOOL_INVALID_CONFIG, "acks", WDPOOL_INVALID_CONFIG, "acks", __LINE__);
  /* "also fails the pool's creation", even when the callback says OK; so do
   * NULL and non-UTF-8 arguments, which the callbacks below pass on. */
  check_config_action(SET_INVALID_VALUE_IGNORED, WDPOOL_INVALID_CONFIG, "acks", WDPOOL_INVALID_CONFIG, "acks",
                      __LINE__);
  check_config_action(SET_NON_UTF8_KEY, WDPOOL_INVALID_ARGUMENT, "UTF-8", WDPOOL_INVALID_ARGUMENT, "key", __LINE__);
  check_config_action(SET_NON_UTF8_VALUE, WDPOOL_INVALID_ARGUMENT, "UTF-8", WDPOOL_INVALID_ARGUMENT, "value",
                      __LINE__);
  check_config_action(SET_NULL_KEY, WDPOOL_NULL_PARAMETER, "key", WDPOOL_NULL_PARAMETER, "key", __LINE__);
  check_config_action(SET_NULL_VALUE, WDPOOL_NULL_PARAMETER, "value", WDPOOL_NULL_PARAMETER, "value", __LINE__);
  check_config_action(SET_ZERO_MAX_WAIT, WDPOOL_INVALID_ARGUMENT, "max_wait_timeout", WDPOOL_INVALID_ARGUMENT,
                      "max_wait_timeout", __LINE__);
  check_config_action(SET_ZERO_MAX_PAYLOAD, WDPOOL_INVALID_ARGUMENT, "max_payload_size",
                      WDPOOL_INVALID_ARGUMENT, "max_payload_size", __LINE__);
  check_config_action(SET_EMPTY_ID, WDPOOL_INVALID_ARGUMENT, "id", WDPOOL_INVALID_ARGUMENT, "id", __LINE__);
  check_config_action(SET_NON_UTF8_ID, WDPOOL_INVALID_ARGUMENT, "UTF-8", WDPOOL_INVALID_ARGUMENT, "id", __LINE__);
  check_config_action(SET_NULL_ID, WDPOOL_NULL_PARAMETER, "id", WDPOOL_NULL_PARAMETER, "id", __LINE__);
  check_config_action(RETURN_ZERO, WDPOOL_OK, NULL, WDPOOL_CALLBACK_FAILED, "configuring producer 0", __LINE__);
  check_config_action(RETURN_ABORT, WDPOOL_OK, NULL, WDPOOL_CALLBACK_FAILED, NULL, __LINE__);

  /* A config handle kept past its callback is stale. */
  config_probe probe = {.action = KEEP_HANDLE, .rc = WDPOOL_PANIC, .message = "", .kept = NULL};
  wdpool_options two = {.size = 2, .timeout_ms = 100};
  pool = NULL;
  CHECK_RC(wdpool_pool_new(&two, configure_probe, &probe, &pool, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(probe.rc, WDPOOL_OK);
  CHECK(probe.kept != NULL);
  wdpool_config *stale = probe.kept;
  CHECK_RC_BOTH(wdpool_config_set_kafka(stale, "acks", "1", CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_config_set_deliver(stale, true, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_config_set_max_wait_timeout(stale, 1000, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_config_set_max_payload_size(stale, 1000, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_config_set_id(stale, "x", CHECK_ERR), WDPOOL_STALE_HANDLE);
  /* Garbage is stale too, NULL is NULL. */
  wdpool_config *garbage = (wdpool_config *)(uintptr_t)0x1234;
  CHECK_RC_BOTH(wdpool_config_set_deliver(garbage, true, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_config_set_kafka(NULL, "acks", "1", CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_config_set_deliver(NULL, true, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_config_set_max_wait_timeout(NULL, 1, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_config_set_max_payload_size(NULL, 1, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_config_set_id(NULL, "x", CHECK_ERR), WDPOOL_NULL_PARAMETER);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Producing. */

typedef struct produce_ctx {
  wdpool_delivery *kept; /* a delivery that outlives the callback */
  int64_t offsets_next;  /* the next offset of OFFSETS_TOPIC */
} produce_ctx;

static void produce_everything(wdpool_producer *p, void *ctx_) {
  produce_ctx *ctx = ctx_;
  wdpool_report r;

  /* Key, partition, timestamp and headers: a repeated key, a NULL value. */
  wdpool_header headers[3] = {{"trace", {(const uint8_t *)"a", 1}},
                              {"trace", {(const uint8_t *)"b", 1}},
                              {"empty", {NULL, 0}}};
  wdpool_message m = text_message(TOPIC, "hello");
  m.key = bytes_of("key-1");
  m.partition = 1;
  m.timestamp_ms = TIMESTAMP_MS;
  m.headers = headers;
  m.headers_len = 3;
  memset(&r, 0xab, sizeof r);
  CHECK_RC(wdpool_producer_produce_sync(p, &m, &r, CHECK_ERR), WDPOOL_OK);
  CHECK(r.topic == m.topic);
  CHECK_EQ(r.partition, 1);
  CHECK(r.offset >= 0);
  /* The mock cluster answers every produce with LogAppendTime 1234, which
   * librdkafka reports instead of the message's own timestamp: only "known"
   * can be checked here (test_deliver_false checks the value). */
  CHECK(r.timestamp_ms > 0);
  CHECK_EQ(r.error_code, 0);

  /* No report wanted; a tombstone; an empty (non-NULL) payload. */
  CHECK_RC(wdpool_producer_produce_sync(p, &m, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_message tombstone = text_message(TOPIC, NULL);
  tombstone.key = bytes_of("gone");
  CHECK_RC(wdpool_producer_produce_sync(p, &tombstone, &r, CHECK_ERR), WDPOOL_OK);
  CHECK(r.partition >= 0 && r.partition < 4 && r.offset >= 0);
  wdpool_message empty = text_message(TOPIC, "");
  CHECK_RC(wdpool_producer_produce_sync(p, &empty, NULL, CHECK_ERR), WDPOOL_OK);

  /* partition_key picks a partition without being the key; the same key
   * always picks the same one. */
  wdpool_message pk = text_message(TOPIC, "by partition key");
  pk.partition_key = bytes_of("customer-42");
  CHECK_RC(wdpool_producer_produce_sync(p, &pk, &r, CHECK_ERR), WDPOOL_OK);
  int32_t first = r.partition;
  CHECK(first >= 0 && first < 4);
  CHECK_RC(wdpool_producer_produce_sync(p, &pk, &r, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(r.partition, first);

  /* Async, one message: the delivery handle owns its topic string. */
  wdpool_delivery *d = (wdpool_delivery *)&d;
  CHECK_RC(wdpool_producer_produce_async(p, &m, &d, CHECK_ERR), WDPOOL_OK);
  CHECK(d != NULL && d != (wdpool_delivery *)&d);
  CHECK_EQ(wdpool_delivery_count(d), 1);
  CHECK_RC(wdpool_delivery_wait(d, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(wdpool_delivery_pending(d), 0);
  CHECK_RC(wdpool_delivery_wait(d, 0, CHECK_ERR), WDPOOL_OK); /* done: no wait needed */
  memset(&r, 0, sizeof r);
  CHECK_RC(wdpool_delivery_report(d, 0, &r, CHECK_ERR), WDPOOL_OK);
  CHECK(r.topic != NULL && r.topic != m.topic);
  CHECK_STR(r.topic, TOPIC);
  CHECK_EQ(r.partition, 1);
  CHECK(r.offset >= 0);
  CHECK(r.timestamp_ms > 0);
  CHECK_EQ(r.error_code, 0);
  CHECK_RC_BOTH(wdpool_delivery_report(d, 1, &r, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_delivery_report(d, 0, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  wdpool_delivery_free(d);

  /* Fire and forget, then flush. */
  CHECK_RC(wdpool_producer_produce_async(p, &m, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_flush(p, CHECK_ERR), WDPOOL_OK);

  /* Many, sync: reports in message order, topics are the callers'. */
  wdpool_message many[3] = {text_message(TOPIC, "m0"), text_message(OFFSETS_TOPIC, "m1"),
                            text_message(TOPIC, "m2")};
  many[0].partition = 0;
  many[2].partition = 3;
  wdpool_report reports[3];
  memset(reports, 0xab, sizeof reports);
  CHECK_RC(wdpool_producer_produce_many_sync(p, many, 3, reports, CHECK_ERR), WDPOOL_OK);
  for (size_t i = 0; i < 3; i++) {
    CHECK(reports[i].topic == many[i].topic);
    CHECK(reports[i].partition >= 0);
    CHECK(reports[i].offset >= 0);
    CHECK_EQ(reports[i].error_code, 0);
  }
  CHECK_EQ(reports[0].partition, 0);
  CHECK_EQ(reports[1].partition, 0);
  CHECK_EQ(reports[1].offset, ctx->offsets_next);
  ctx->offsets_next = reports[1].offset + 1;
  CHECK_EQ(reports[2].partition, 3);
  CHECK_RC(wdpool_producer_produce_many_sync(p, many, 3, NULL, CHECK_ERR), WDPOOL_OK);
  ctx->offsets_next++;

  /* Many, async: one delivery for all, kept past the callback. */
  CHECK_RC(wdpool_producer_produce_many_async(p, many, 3, &ctx->kept, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(wdpool_delivery_count(ctx->kept), 3);
  ctx->offsets_next++;
}

static void test_produce(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(2, 5000, &setup);
  produce_ctx ctx = {NULL, 0};

  /* OFFSETS_TOPIC has one partition: its next offset says what arrived. */
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_message probe = text_message(OFFSETS_TOPIC, "probe");
  wdpool_report r;
  CHECK_RC(wdpool_producer_produce_sync(p, &probe, &r, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(r.partition, 0);
  ctx.offsets_next = r.offset + 1;
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);

  body b = {produce_everything, &ctx, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(b.calls, 1);

  /* The delivery handle outlives the callback that produced it. */
  if (CHECK(ctx.kept != NULL)) {
    CHECK_RC(wdpool_delivery_wait(ctx.kept, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
    CHECK_EQ(wdpool_delivery_pending(ctx.kept), 0);
    const char *topics[3] = {TOPIC, OFFSETS_TOPIC, TOPIC};
    for (size_t i = 0; i < 3; i++) {
      CHECK_RC(wdpool_delivery_report(ctx.kept, i, &r, CHECK_ERR), WDPOOL_OK);
      CHECK_STR(r.topic, topics[i]);
      CHECK(r.offset >= 0);
      CHECK_EQ(r.error_code, 0);
    }
    CHECK_RC(wdpool_delivery_report(ctx.kept, 1, &r, CHECK_ERR), WDPOOL_OK);
    CHECK_EQ(r.offset, ctx.offsets_next - 1);
    wdpool_delivery_free(ctx.kept);
  }

  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.created, 1); /* LIFO: the same producer served both leases */
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Invalid messages: refused before anything is sent, naming the field. */

#define MAX_PAYLOAD 64

typedef struct invalid_ctx {
  int64_t offsets_next;
} invalid_ctx;

static void check_invalid(wdpool_producer *p, const wdpool_message *m, const char *field, int line) {
  char what[96];
  snprintf(what, sizeof what, "invalid message (%s), line %d", field, line);
  wdpool_error *err = NULL;
  wdpool_report r;
  memset(&r, 0x7f, sizeof r);
  wdpool_result rc = wdpool_producer_produce_sync(p, m, &r, &err);
  check_rc_(rc, WDPOOL_INVALID_MESSAGE, err, field, what, __FILE__, line);
  check_record_(r.offset == (int64_t)0x7f7f7f7f7f7f7f7f, __FILE__, line, "no report for an invalid message", NULL);
  wdpool_error_free(err);
  err = NULL;

  wdpool_delivery *d = NULL;
  rc = wdpool_producer_produce_async(p, m, &d, &err);
  check_rc_(rc, WDPOOL_INVALID_MESSAGE, err, field, what, __FILE__, line);
  check_record_(d == NULL, __FILE__, line, "no delivery for an invalid message", NULL);
  wdpool_error_free(err);
  check_record_(wdpool_producer_produce_sync(p, m, NULL, NULL) == WDPOOL_INVALID_MESSAGE, __FILE__, line,
                "invalid message with err NULL", NULL);
}

static void produce_invalid(wdpool_producer *p, void *ctx_) {
  invalid_ctx *ctx = ctx_;
  wdpool_message m;

  m = text_message(NULL, "x");
  check_invalid(p, &m, "topic", __LINE__);
  m = text_message("a b", "x");
  check_invalid(p, &m, "topic", __LINE__);
  m = text_message("", "x");
  check_invalid(p, &m, "topic", __LINE__);
  m = text_message("caf\xc3", "x"); /* truncated UTF-8 */
  check_invalid(p, &m, "topic", __LINE__);
  m = text_message("\xff", "x");
  check_invalid(p, &m, "topic", __LINE__);

  m = text_message(TOPIC, NULL);
  m.payload.len = 3;
  check_invalid(p, &m, "payload", __LINE__);

  static const uint8_t big[MAX_PAYLOAD + 1] = {0};
  m = text_message(TOPIC, NULL);
  m.payload.data = big;
  m.payload.len = sizeof big;
  check_invalid(p, &m, "payload", __LINE__);
  m.payload.len = MAX_PAYLOAD; /* at the limit: fine */
  CHECK_RC(wdpool_producer_produce_sync(p, &m, NULL, CHECK_ERR), WDPOOL_OK);

  m = text_message(TOPIC, "x");
  m.key.data = (const uint8_t *)"k";
  m.key.len = 0;
  check_invalid(p, &m, "key", __LINE__);
  m = text_message(TOPIC, "x");
  m.key.len = 2;
  check_invalid(p, &m, "key", __LINE__);

  m = text_message(TOPIC, "x");
  m.partition_key.data = (const uint8_t *)"k";
  m.partition_key.len = 0;
  check_invalid(p, &m, "partition_key", __LINE__);

  m = text_message(TOPIC, "x");
  m.partition = -2;
  check_invalid(p, &m, "partition", __LINE__);

  m = text_message(TOPIC, "x");
  m.timestamp_ms = -1;
  check_invalid(p, &m, "timestamp", __LINE__);

  m = text_message(TOPIC, "x");
  m.headers = NULL;
  m.headers_len = 2;
  check_invalid(p, &m, "headers", __LINE__);

  wdpool_header no_key[2] = {{"ok", {NULL, 0}}, {NULL, {(const uint8_t *)"v", 1}}};
  m = text_message(TOPIC, "x");
  m.headers = no_key;
  m.headers_len = 2;
  check_invalid(p, &m, "headers[1].key", __LINE__);

  wdpool_header bad_value[1] = {{"k", {NULL, 4}}};
  m.headers = bad_value;
  m.headers_len = 1;
  check_invalid(p, &m, "headers[0].value", __LINE__);

  wdpool_header bad_utf8[1] = {{"\xff", {NULL, 0}}};
  m.headers = bad_utf8;
  check_invalid(p, &m, "headers[0].key", __LINE__);

  /* In a batch the error names the message; nothing of the batch is sent
   * (OFFSETS_TOPIC's next offset does not move). */
  wdpool_message batch[4] = {text_message(OFFSETS_TOPIC, "b0"), text_message(OFFSETS_TOPIC, "b1"),
                             text_message(OFFSETS_TOPIC, "b2"), text_message(OFFSETS_TOPIC, "b3")};
  batch[2].partition = -5;
  wdpool_report reports[4];
  memset(reports, 0x7f, sizeof reports);
  CHECK_RC_MSG(wdpool_producer_produce_many_sync(p, batch, 4, reports, CHECK_ERR), WDPOOL_INVALID_MESSAGE,
               "message 2");
  CHECK_RC_MSG(wdpool_producer_produce_many_sync(p, batch, 4, NULL, CHECK_ERR), WDPOOL_INVALID_MESSAGE,
               "partition");
  for (size_t i = 0; i < 4; i++) CHECK_EQ(reports[i].offset, (int64_t)0x7f7f7f7f7f7f7f7f);
  wdpool_delivery *d = NULL;
  CHECK_RC_MSG(wdpool_producer_produce_many_async(p, batch, 4, &d, CHECK_ERR), WDPOOL_INVALID_MESSAGE,
               "message 2");
  CHECK(d == NULL);
  batch[2].partition = WDPOOL_PARTITION_ANY;
  batch[2].topic = "no spaces";
  CHECK_RC_MSG(wdpool_producer_produce_many_async(p, batch, 4, NULL, CHECK_ERR), WDPOOL_INVALID_MESSAGE,
               "message 2: invalid message: topic");

  wdpool_message after = text_message(OFFSETS_TOPIC, "after");
  wdpool_report r;
  CHECK_RC(wdpool_producer_produce_sync(p, &after, &r, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(r.offset, ctx->offsets_next);
}

static void test_invalid_messages(void) {
  pool_setup setup = {.max_payload_size = MAX_PAYLOAD};
  wdpool_pool *pool = make_pool(1, 5000, &setup);
  invalid_ctx ctx = {0};
  /* Learn OFFSETS_TOPIC's next offset first. */
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_message probe = text_message(OFFSETS_TOPIC, "probe");
  wdpool_report r;
  CHECK_RC(wdpool_producer_produce_sync(p, &probe, &r, CHECK_ERR), WDPOOL_OK);
  ctx.offsets_next = r.offset + 1;
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);

  body b = {produce_invalid, &ctx, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * NULL pointers wherever they are not allowed. */

static void nulls_with_producer(wdpool_producer *p, void *ctx) {
  (void)ctx;
  wdpool_message m = text_message(TOPIC, "x");
  wdpool_report r;
  wdpool_delivery *d = NULL;
  wdpool_producer_info info;

  CHECK_RC_BOTH(wdpool_producer_produce_sync(NULL, &m, &r, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_sync(p, NULL, &r, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_many_sync(NULL, &m, 1, &r, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_many_sync(p, NULL, 1, &r, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_async(NULL, &m, &d, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_async(p, NULL, &d, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_many_async(NULL, &m, 1, &d, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_many_async(p, NULL, 1, &d, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK(d == NULL);
  CHECK_RC_BOTH(wdpool_producer_flush(NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_transaction(NULL, run_body, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_begin(NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_commit(NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_abort(NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_get_info(NULL, &info, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_get_info(p, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_checkin(NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);

  /* Empty batches with NULL arrays are nothing to do. */
  CHECK_RC(wdpool_producer_produce_many_sync(p, NULL, 0, NULL, CHECK_ERR), WDPOOL_OK);
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
  CHECK_RC_BOTH(wdpool_pool_checkout(NULL, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_pool_checkout(pool, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
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

/* ------------------------------------------------------------------------
 * Producer handles: stale, borrowed, double checkin, garbage. */

static void checkin_borrowed(wdpool_producer *p, void *ctx) {
  (void)ctx;
  CHECK_RC_MSG(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "callback");
  /* Refusing it did not invalidate it. */
  CHECK(producer_index(p) == 0);
}

static void test_handles(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 1000, &setup);
  wdpool_message m = text_message(TOPIC, "x");
  wdpool_producer_info info;

  /* A callback's handle is stale once the callback returned. */
  body b = {produce_one, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  wdpool_producer *stale = b.seen;
  CHECK(stale != NULL);
  CHECK_RC_BOTH(wdpool_producer_produce_sync(stale, &m, NULL, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_produce_async(stale, &m, NULL, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_produce_many_sync(stale, &m, 1, NULL, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_produce_many_async(stale, &m, 1, NULL, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_flush(stale, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_get_info(stale, &info, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_begin(stale, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_commit(stale, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_abort(stale, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_transaction(stale, run_body, &b, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_checkin(stale, CHECK_ERR), WDPOOL_STALE_HANDLE);

  /* A callback's handle cannot be checked in. */
  body borrowed = {checkin_borrowed, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &borrowed, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).in_use, 0);

  /* Checkout, checkin, checkin again. */
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  CHECK(p != NULL);
  CHECK_EQ(stats_of(pool).in_use, 1);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(info.index, 0);
  CHECK_EQ(info.pool_id, wdpool_pool_id(pool));
  CHECK(!info.transactional && !info.in_transaction);
  CHECK_RC(wdpool_producer_produce_sync(p, &m, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).in_use, 0);
  CHECK_RC_BOTH(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_STALE_HANDLE);

  /* A handle checked in on another pool's slot reuse stays stale. */
  wdpool_producer *again = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_TIMEOUT_DEFAULT, &again, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC(wdpool_producer_checkin(again, CHECK_ERR), WDPOOL_OK);

  /* Garbage handles are refused, not dereferenced. */
  wdpool_producer *garbage = (wdpool_producer *)(uintptr_t)0x1234;
  CHECK_RC_BOTH(wdpool_producer_get_info(garbage, &info, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_produce_sync(garbage, &m, NULL, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_checkin(garbage, CHECK_ERR), WDPOOL_STALE_HANDLE);
  garbage = (wdpool_producer *)(uintptr_t)UINTPTR_MAX;
  CHECK_RC_BOTH(wdpool_producer_get_info(garbage, &info, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_checkin(garbage, CHECK_ERR), WDPOOL_STALE_HANDLE);

  /* Freeing a pool with a producer out: the lease stays usable until it is
   * checked in. */
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
  CHECK_RC(wdpool_producer_produce_sync(p, &m, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_STALE_HANDLE);
}

/* ------------------------------------------------------------------------
 * Callback results. */

static void test_callbacks(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 1000, &setup);

  body fail = {produce_one, NULL, 0, NULL, 0};
  CHECK_RC_MSG(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &fail, CHECK_ERR), WDPOOL_CALLBACK_FAILED,
               "0");
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.idle, 1); /* back in the pool, not discarded */
  CHECK_EQ(s.replaced, 0);

  body odd = {NULL, NULL, 42, NULL, 0};
  CHECK_RC_MSG(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &odd, CHECK_ERR), WDPOOL_CALLBACK_FAILED,
               "42");
  body minus = {NULL, NULL, -1, NULL, 0};
  CHECK_RC_BOTH(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &minus, CHECK_ERR),
                WDPOOL_CALLBACK_FAILED);
  /* WDPOOL_CB_ABORT means something only in a transaction. */
  body abort_outside = {NULL, NULL, WDPOOL_CB_ABORT, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &abort_outside, CHECK_ERR),
           WDPOOL_CALLBACK_FAILED);

  /* Transactions need transactional.id. */
  body ok = {produce_one, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC_MSG(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &ok, CHECK_ERR),
               WDPOOL_NOT_TRANSACTIONAL, "transactional.id");
  CHECK_EQ(ok.calls, 0);
  s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.created, 1);
  wdpool_pool_free(pool);
}

static void non_transactional_calls(wdpool_producer *p, void *ctx) {
  (void)ctx;
  body inner = {NULL, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC_BOTH(wdpool_producer_transaction(p, run_body, &inner, CHECK_ERR), WDPOOL_NOT_TRANSACTIONAL);
  CHECK_EQ(inner.calls, 0);
  CHECK_RC_BOTH(wdpool_producer_begin(p, CHECK_ERR), WDPOOL_NOT_TRANSACTIONAL);
  CHECK_RC_BOTH(wdpool_producer_commit(p, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_producer_abort(p, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_producer_transaction(p, NULL, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
}

/* ------------------------------------------------------------------------
 * Transactions against the mock cluster. */

typedef struct tx_counts {
  size_t started, committed, aborted;
} tx_counts;

static tx_counts tx_counts_of(uint64_t pool_id) {
  tx_counts c = {event_log_count(&events, pool_id, WDPOOL_EVENT_TRANSACTION_STARTED),
                 event_log_count(&events, pool_id, WDPOOL_EVENT_TRANSACTION_COMMITTED),
                 event_log_count(&events, pool_id, WDPOOL_EVENT_TRANSACTION_ABORTED)};
  return c;
}

#define CHECK_TX_DELTA(before, pool_id, s, c, a)                \
  do {                                                          \
    tx_counts now_ = tx_counts_of(pool_id);                     \
    CHECK_EQ(now_.started - (before).started, (s));             \
    CHECK_EQ(now_.committed - (before).committed, (c));         \
    CHECK_EQ(now_.aborted - (before).aborted, (a));             \
  } while (0)

static void expect_in_transaction(wdpool_producer *p, void *ctx) {
  (void)ctx;
  wdpool_producer_info info;
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(info.transactional);
  CHECK(info.in_transaction);
  produce_one(p, NULL);
}

/* ctx: a bool, whether an outer transaction is open around this one. */
static void nested_ok(wdpool_producer *p, void *ctx) {
  bool outer_open = *(const bool *)ctx;
  body inner = {expect_in_transaction, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_producer_transaction(p, run_body, &inner, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(inner.calls, 1);
  CHECK(inner.seen == p); /* the same handle */
  wdpool_producer_info info;
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(info.in_transaction == outer_open);
}

static void nested_fails(wdpool_producer *p, void *ctx) {
  (void)ctx;
  body inner = {produce_one, NULL, 0, NULL, 0};
  CHECK_RC(wdpool_producer_transaction(p, run_body, &inner, CHECK_ERR), WDPOOL_CALLBACK_FAILED);
}

static void explicit_api(wdpool_producer *p, void *ctx) {
  (void)ctx;
  wdpool_producer_info info;
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(info.transactional);
  CHECK(!info.in_transaction);
  CHECK_RC_MSG(wdpool_producer_commit(p, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "no transaction");
  CHECK_RC_MSG(wdpool_producer_abort(p, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "no transaction");

  CHECK_RC(wdpool_producer_begin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(info.in_transaction);
  produce_one(p, NULL);
  CHECK_RC(wdpool_producer_commit(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(!info.in_transaction);

  CHECK_RC(wdpool_producer_begin(p, CHECK_ERR), WDPOOL_OK);
  produce_one(p, NULL);
  CHECK_RC(wdpool_producer_abort(p, CHECK_ERR), WDPOOL_OK);

  /* Nested levels: an inner abort makes the outer commit abort. */
  CHECK_RC(wdpool_producer_begin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_begin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_abort(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(info.in_transaction);
  CHECK_RC(wdpool_producer_commit(p, CHECK_ERR), WDPOOL_TRANSACTION_ABORTED);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(!info.in_transaction);

  /* Outside a transaction a transactional producer wraps each produce call
   * in a transaction of its own, committed before the call returns. */
  wdpool_message m = text_message(TOPIC, "implicit");
  wdpool_delivery *d = NULL;
  CHECK_RC(wdpool_producer_produce_async(p, &m, &d, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_delivery_wait(d, 0, CHECK_ERR), WDPOOL_OK);
  wdpool_delivery_free(d);
}

static void leave_open(wdpool_producer *p, void *ctx) {
  (void)ctx;
  CHECK_RC(wdpool_producer_begin(p, CHECK_ERR), WDPOOL_OK);
  produce_one(p, NULL);
}

static void test_transactions(void) {
  pool_setup setup = {.tx_prefix = "c-tx-", .id_prefix = "c-tx-producer-"};
  wdpool_pool *pool = make_pool(2, 5000, &setup);
  uint64_t id = wdpool_pool_id(pool);
  CHECK_EQ(setup.calls, 2);

  /* Commit. */
  tx_counts before = tx_counts_of(id);
  body commit = {expect_in_transaction, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &commit, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(commit.calls, 1);
  CHECK_TX_DELTA(before, id, 1, 1, 0);
  recorded_event e;
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_TRANSACTION_COMMITTED, 0, &e, NULL))) {
    CHECK_EQ(e.slot, 0);
    CHECK_STR(e.producer_id, "c-tx-producer-0");
    CHECK(e.well_formed);
    CHECK(pthread_equal(e.thread, main_thread));
  }

  /* Aborted by a failing callback, and by WDPOOL_CB_ABORT (no error). */
  before = tx_counts_of(id);
  body failing = {produce_one, NULL, 0, NULL, 0};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &failing, CHECK_ERR),
           WDPOOL_CALLBACK_FAILED);
  CHECK_TX_DELTA(before, id, 1, 0, 1);
  before = tx_counts_of(id);
  body rollback = {produce_one, NULL, WDPOOL_CB_ABORT, NULL, 0};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &rollback, CHECK_ERR), WDPOOL_OK);
  CHECK_TX_DELTA(before, id, 1, 0, 1);

  /* Nested transactions: one Kafka transaction; an inner failure aborts
   * the outer one. */
  before = tx_counts_of(id);
  bool outer_open = true, no_outer = false;
  body outer_ok = {nested_ok, &outer_open, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &outer_ok, CHECK_ERR), WDPOOL_OK);
  CHECK_TX_DELTA(before, id, 1, 1, 0);
  before = tx_counts_of(id);
  body outer_doomed = {nested_fails, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &outer_doomed, CHECK_ERR),
           WDPOOL_TRANSACTION_ABORTED);
  CHECK_TX_DELTA(before, id, 1, 0, 1);

  /* wdpool_producer_transaction on a pool_with producer. */
  before = tx_counts_of(id);
  body with_tx = {nested_ok, &no_outer, WDPOOL_CB_OK, NULL, 0};
  /* nested_ok's own transaction is the outermost here. */
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &with_tx, CHECK_ERR), WDPOOL_OK);
  CHECK_TX_DELTA(before, id, 1, 1, 0);

  /* begin / commit / abort by hand (plus one implicit transaction). */
  before = tx_counts_of(id);
  body by_hand = {explicit_api, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &by_hand, CHECK_ERR), WDPOOL_OK);
  CHECK_TX_DELTA(before, id, 4, 2, 2);

  /* A transaction left open when the callback returns is aborted. */
  before = tx_counts_of(id);
  body open = {leave_open, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC_MSG(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &open, CHECK_ERR),
               WDPOOL_TRANSACTION_ABORTED, "still open");
  CHECK_TX_DELTA(before, id, 1, 0, 1);
  CHECK_EQ(stats_of(pool).in_use, 0);

  /* ... and so is one left open on a checked-out lease at checkin. */
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  before = tx_counts_of(id);
  leave_open(p, NULL);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_TRANSACTION_ABORTED);
  CHECK_TX_DELTA(before, id, 1, 0, 1);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_STALE_HANDLE);

  /* The producer of a failed or left-open transaction is reused. */
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.created, 1);
  CHECK_EQ(s.replaced, 0);
  wdpool_pool_free(pool);

  /* The same calls on a non-transactional producer. */
  pool_setup plain = {.no_deliver = true};
  pool = make_pool(1, 1000, &plain);
  body calls = {non_transactional_calls, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &calls, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Re-entrancy: a nested with on the same thread gets the same producer. */

typedef struct nest_ctx {
  wdpool_pool *pool;
  int depth;
  size_t indexes[3];
  wdpool_producer *handles[3];
} nest_ctx;

static void nest(wdpool_producer *p, void *ctx_) {
  nest_ctx *ctx = ctx_;
  int depth = ctx->depth++;
  ctx->indexes[depth] = producer_index(p);
  ctx->handles[depth] = p;
  produce_one(p, NULL);
  if (ctx->depth < 3) {
    body inner = {nest, ctx, WDPOOL_CB_OK, NULL, 0};
    CHECK_RC(wdpool_pool_with(ctx->pool, 100, run_body, &inner, CHECK_ERR), WDPOOL_OK);
    /* The outer handle is still valid after the inner callback returned. */
    CHECK(producer_index(p) == ctx->indexes[depth]);
    CHECK_EQ(stats_of(ctx->pool).in_use, 1);
  }
}

static void test_reentrancy(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 100, &setup);
  nest_ctx ctx = {.pool = pool, .depth = 0};
  body b = {nest, &ctx, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(ctx.depth, 3);
  CHECK_EQ(ctx.indexes[0], 0);
  CHECK_EQ(ctx.indexes[1], 0);
  CHECK_EQ(ctx.indexes[2], 0);
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.checkout_timeouts, 0);

  /* A checkout on a thread that holds a lease nests too. */
  wdpool_producer *outer = NULL, *inner = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, 100, &outer, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_checkout(pool, 100, &inner, CHECK_ERR), WDPOOL_OK);
  CHECK(outer != inner); /* two leases ... */
  CHECK_EQ(producer_index(inner), producer_index(outer)); /* ... of one producer */
  CHECK_RC(wdpool_producer_checkin(inner, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).in_use, 1);
  CHECK_RC(wdpool_producer_checkin(outer, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).in_use, 0);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Checkout timeout, from a second thread. */

typedef struct timeout_ctx {
  wdpool_pool *pool;
  wdpool_result rc;
  char message[256];
  int64_t waited_ms;
  wdpool_result default_rc;
  int64_t default_waited_ms;
  wdpool_statistics between;
  int calls;
  pthread_t thread;
} timeout_ctx;

static void *checkout_in_thread(void *arg) {
  timeout_ctx *ctx = arg;
  ctx->thread = pthread_self();
  body b = {NULL, NULL, WDPOOL_CB_OK, NULL, 0};
  wdpool_error *err = NULL;
  int64_t start = now_ms();
  ctx->rc = wdpool_pool_with(ctx->pool, 50, run_body, &b, &err);
  ctx->waited_ms = now_ms() - start;
  ctx->calls = b.calls;
  snprintf(ctx->message, sizeof ctx->message, "%s", wdpool_error_message(err));
  wdpool_error_free(err);
  wdpool_pool_stats(ctx->pool, &ctx->between, NULL);

  /* The pool's own timeout is 0: fail at once. */
  wdpool_producer *p = NULL;
  start = now_ms();
  ctx->default_rc = wdpool_pool_checkout(ctx->pool, WDPOOL_TIMEOUT_DEFAULT, &p, NULL);
  ctx->default_waited_ms = now_ms() - start;
  return NULL;
}

static void test_checkout_timeout(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 0, &setup);
  uint64_t id = wdpool_pool_id(pool);
  wdpool_producer *held = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_TIMEOUT_DEFAULT, &held, CHECK_ERR), WDPOOL_OK);

  timeout_ctx ctx = {.pool = pool};
  pthread_t thread;
  CHECK_EQ(pthread_create(&thread, NULL, checkout_in_thread, &ctx), 0);
  CHECK_EQ(pthread_join(thread, NULL), 0);

  CHECK_EQ(ctx.rc, WDPOOL_TIMEOUT);
  CHECK_CONTAINS(ctx.message, "0/1");
  CHECK(ctx.waited_ms >= 50);
  CHECK(ctx.waited_ms < 5000);
  CHECK_EQ(ctx.calls, 0);
  CHECK_EQ(ctx.between.checkout_timeouts, 1);
  CHECK(ctx.between.total_wait_us >= 50000);
  CHECK_EQ(ctx.default_rc, WDPOOL_TIMEOUT);
  CHECK(ctx.default_waited_ms < 1000);

  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.checkout_timeouts, 2);
  CHECK_EQ(s.in_use, 1);
  CHECK_EQ(s.waiting, 0);

  /* The checkout-timeout event ran on the thread that timed out. */
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_CHECKOUT_TIMEOUT), 2);
  recorded_event e;
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_CHECKOUT_TIMEOUT, 0, &e, NULL))) {
    CHECK(e.waited_ms >= 50);
    CHECK_EQ(e.available, 0);
    CHECK_EQ(e.size, 1);
    CHECK(e.well_formed);
    CHECK(pthread_equal(e.thread, ctx.thread));
  }

  CHECK_RC(wdpool_producer_checkin(held, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).in_use, 0);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Close and reload. */

/* Every checkout entry point of a closed pool fails with WDPOOL_CLOSED. */
static void *expect_closed_in_thread(void *arg) {
  wdpool_pool *pool = arg;
  body b = {produce_one, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC_BOTH(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_CLOSED);
  CHECK_RC_BOTH(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_CLOSED);
  CHECK_EQ(b.calls, 0);
  wdpool_producer *none = NULL;
  CHECK_RC_BOTH(wdpool_pool_checkout(pool, WDPOOL_TIMEOUT_DEFAULT, &none, CHECK_ERR), WDPOOL_CLOSED);
  CHECK(none == NULL);
  CHECK_RC_BOTH(wdpool_pool_reload(pool, CHECK_ERR), WDPOOL_CLOSED);
  return NULL;
}

/* The same on a thread that still holds a lease of the closed pool: a nested
 * checkout is refused too. */
static void expect_closed_on_lease_thread(wdpool_pool *pool) {
  wdpool_producer *nested = NULL;
  CHECK_RC_BOTH(wdpool_pool_checkout(pool, WDPOOL_TIMEOUT_DEFAULT, &nested, CHECK_ERR), WDPOOL_CLOSED);
  CHECK(nested == NULL);
  body b = {NULL, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_CLOSED);
  CHECK_EQ(b.calls, 0);
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_CLOSED);
  CHECK_EQ(b.calls, 0);
}

static void test_close_and_reload(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(2, 1000, &setup);
  uint64_t id = wdpool_pool_id(pool);
  body b = {produce_one, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).created, 1);

  /* Reload: idle producers are closed and recreated on demand. */
  CHECK_RC(wdpool_pool_reload(pool, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_RELOAD), 1);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_RELOADED), 1);
  recorded_event reload, reloaded;
  size_t at_reload = 0, at_reloaded = 0;
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_RELOAD, 0, &reload, &at_reload) &&
            event_log_find(&events, id, WDPOOL_EVENT_RELOADED, 0, &reloaded, &at_reloaded))) {
    CHECK(at_reload < at_reloaded);
    CHECK_EQ(reload.size, 2);
    CHECK_EQ(reload.timeout_ms, 1000);
    CHECK_EQ(reloaded.size, 2);
    CHECK_EQ(reloaded.timeout_ms, 1000);
    CHECK(reload.well_formed && reloaded.well_formed);
  }
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.created, 0);
  CHECK_EQ(s.creations, 1);
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  s = stats_of(pool);
  CHECK_EQ(s.created, 1);
  CHECK_EQ(s.creations, 2);

  /* A producer checked out during a reload is replaced when it returns. */
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_reload(pool, CHECK_ERR), WDPOOL_OK);
  produce_one(p, NULL);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).created, 0);
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);

  /* Graceful close, with one producer still out. */
  wdpool_producer *out = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_TIMEOUT_DEFAULT, &out, CHECK_ERR), WDPOOL_OK);
  wdpool_close_report report;
  memset(&report, 0xff, sizeof report);
  CHECK_RC(wdpool_pool_close(pool, false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.closed, 0);
  CHECK_EQ(report.in_use, 1);
  CHECK_EQ(report.undelivered, 0);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_SHUTDOWN), 1);
  recorded_event shutdown;
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_SHUTDOWN, 0, &shutdown, NULL))) {
    CHECK_EQ(shutdown.size, 2);
    CHECK_EQ(shutdown.timeout_ms, 1000);
    CHECK_EQ(shutdown.undelivered, 0);
    CHECK(!shutdown.global);
  }

  /* Later calls fail (from a thread without a lease); stats still work;
   * the lease still works until it is checked in, and its producer is then
   * closed. */
  pthread_t thread;
  CHECK_EQ(pthread_create(&thread, NULL, expect_closed_in_thread, pool), 0);
  CHECK_EQ(pthread_join(thread, NULL), 0);
  expect_closed_on_lease_thread(pool);
  produce_one(out, NULL);
  s = stats_of(pool);
  CHECK(s.closed);
  CHECK_EQ(s.in_use, 1);
  CHECK_RC(wdpool_producer_checkin(out, CHECK_ERR), WDPOOL_OK);
  s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.created, 0);

  /* Closing again is harmless and reports zeros; shutdown fired once. */
  memset(&report, 0xff, sizeof report);
  CHECK_RC(wdpool_pool_close(pool, true, &report, CHECK_ERR), WDPOOL_OK);
  CHECK(report.closed == 0 && report.undelivered == 0 && report.in_use == 0);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_SHUTDOWN), 1);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_CREATED), 1);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_SETUP), 0);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_RELOAD), 2);

  /* Graceful close of idle producers reports them. */
  pool_setup idle_setup = {0};
  pool = make_pool(1, 1000, &idle_setup);
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_close(pool, false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.closed, 1);
  CHECK_EQ(report.in_use, 0);
  CHECK_EQ(report.undelivered, 0);
  wdpool_pool_free(pool);
}

/* A forced close purges what is not delivered. The producer's broker does
 * not exist, so its message stays queued. */
static void keep_undeliverable(wdpool_producer *p, void *ctx) {
  wdpool_delivery **kept = ctx;
  wdpool_message m = text_message("c-api-nowhere", "never delivered");
  CHECK_RC(wdpool_producer_produce_async(p, &m, kept, CHECK_ERR), WDPOOL_OK);
}

static void test_forced_close(void) {
  pool_setup setup = {.bootstrap = "127.0.0.1:1", .extra_key = "log_level", .extra_value = "0"};
  wdpool_pool *pool = make_pool(1, 1000, &setup);
  uint64_t id = wdpool_pool_id(pool);
  wdpool_delivery *d = NULL;
  body b = {keep_undeliverable, &d, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  if (!CHECK(d != NULL)) {
    wdpool_pool_free(pool);
    return;
  }
  CHECK_EQ(wdpool_delivery_count(d), 1);
  CHECK_EQ(wdpool_delivery_pending(d), 1);
  wdpool_report r;
  CHECK_RC(wdpool_delivery_report(d, 0, &r, CHECK_ERR), WDPOOL_PENDING);
  CHECK_RC_BOTH(wdpool_delivery_wait(d, 0, CHECK_ERR), WDPOOL_DELIVERY_TIMEOUT);
  int64_t start = now_ms();
  CHECK_RC(wdpool_delivery_wait(d, 20, CHECK_ERR), WDPOOL_DELIVERY_TIMEOUT);
  CHECK(now_ms() - start >= 20);

  /* librdkafka reports the unreachable broker: queued, delivered by drain on
   * this thread. */
  CHECK(event_log_drain_until(&events, id, WDPOOL_EVENT_ERROR, 1, EVENT_DEADLINE_MS) >= 1);
  recorded_event e;
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_ERROR, 0, &e, NULL))) {
    CHECK(e.error_code != 0);
    CHECK(e.message_len > 0);
    CHECK_EQ(e.slot, 0);
    CHECK(e.has_producer_id);
    CHECK(e.well_formed);
    CHECK(pthread_equal(e.thread, main_thread));
  }

  wdpool_close_report report;
  CHECK_RC(wdpool_pool_close(pool, true, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.closed, 1);
  CHECK_EQ(report.undelivered, 1);
  CHECK_EQ(report.in_use, 0);
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_SHUTDOWN, 0, &e, NULL))) CHECK_EQ(e.undelivered, 1);

  /* The purged message's report arrives: a Kafka failure. */
  wdpool_error *err = NULL;
  CHECK_EQ(wdpool_delivery_wait(d, MAX_WAIT_MS, &err), WDPOOL_KAFKA);
  CHECK(wdpool_error_kafka_code(err) != 0);
  CHECK_EQ(wdpool_error_code(err), WDPOOL_KAFKA);
  wdpool_error_free(err);
  CHECK_EQ(wdpool_delivery_pending(d), 0);
  CHECK_RC(wdpool_delivery_report(d, 0, &r, CHECK_ERR), WDPOOL_OK);
  CHECK(r.error_code != 0);
  CHECK_EQ(r.offset, -1);
  CHECK_STR(r.topic, "c-api-nowhere");
  wdpool_delivery_free(d);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * deliver = false: no broker needed. */

static void produce_without_broker(wdpool_producer *p, void *ctx) {
  (void)ctx;
  wdpool_message m = text_message("c-api-test-mode", "x");
  m.partition = 2;
  m.timestamp_ms = TIMESTAMP_MS;
  wdpool_report r;
  CHECK_RC(wdpool_producer_produce_sync(p, &m, &r, CHECK_ERR), WDPOOL_OK);
  CHECK(r.topic == m.topic);
  CHECK_EQ(r.partition, 2);
  CHECK_EQ(r.timestamp_ms, TIMESTAMP_MS);
  CHECK_EQ(r.error_code, 0);
  int64_t first = r.offset;
  CHECK(first >= 0);

  wdpool_message batch[2] = {text_message("c-api-test-mode", "a"), text_message("c-api-test-mode", "b")};
  wdpool_report reports[2];
  CHECK_RC(wdpool_producer_produce_many_sync(p, batch, 2, reports, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(reports[0].offset, first + 1);
  CHECK_EQ(reports[1].offset, first + 2);
  CHECK(reports[0].partition >= 0 && reports[1].partition >= 0);

  wdpool_delivery *d = NULL;
  CHECK_RC(wdpool_producer_produce_many_async(p, batch, 2, &d, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(wdpool_delivery_pending(d), 0);
  CHECK_RC(wdpool_delivery_wait(d, 0, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_delivery_report(d, 1, &r, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(r.offset, first + 4);
  wdpool_delivery_free(d);
  CHECK_RC(wdpool_producer_flush(p, CHECK_ERR), WDPOOL_OK);

  /* Validation still applies. */
  m.topic = "not valid";
  CHECK_RC(wdpool_producer_produce_sync(p, &m, NULL, CHECK_ERR), WDPOOL_INVALID_MESSAGE);
}

static void test_deliver_false(void) {
  pool_setup setup = {.bootstrap = "127.0.0.1:1", .no_deliver = true};
  wdpool_pool *pool = make_pool(2, 1000, &setup);
  body b = {produce_without_broker, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  wdpool_close_report report;
  CHECK_RC(wdpool_pool_close(pool, false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.closed, 1);
  CHECK_EQ(report.undelivered, 0);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * The global pool. */

static void global_transaction(wdpool_producer *p, void *ctx) {
  (void)ctx;
  wdpool_producer_info info;
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(info.pool_id, wdpool_global_id());
  CHECK(info.in_transaction);
  produce_one(p, NULL);
}

static void test_global_pool(void) {
  wdpool_statistics s;
  wdpool_producer *p = NULL;
  wdpool_close_report report;
  body b = {produce_one, NULL, WDPOOL_CB_OK, NULL, 0};

  /* Before setup. */
  CHECK(!wdpool_active());
  CHECK_EQ(wdpool_global_id(), 0);
  CHECK_RC_BOTH(wdpool_with(WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_NOT_SET_UP);
  CHECK_RC_BOTH(wdpool_transaction(WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_NOT_SET_UP);
  CHECK_RC_BOTH(wdpool_checkout(WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_NOT_SET_UP);
  CHECK_RC_BOTH(wdpool_reload(CHECK_ERR), WDPOOL_NOT_SET_UP);
  CHECK_RC_BOTH(wdpool_stats(&s, CHECK_ERR), WDPOOL_NOT_SET_UP);
  memset(&report, 0xff, sizeof report);
  CHECK_RC(wdpool_close(false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK(report.closed == 0 && report.undelivered == 0 && report.in_use == 0);
  CHECK_EQ(b.calls, 0);
  CHECK(p == NULL);

  /* A failed setup sets nothing up. */
  wdpool_options zero = {.size = 0, .timeout_ms = 100};
  CHECK_RC_BOTH(wdpool_setup(&zero, NULL, NULL, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK(!wdpool_active());

  /* Setup: created and setup events, global, with size and timeout. */
  pool_setup first_setup = {0};
  wdpool_options options = {.size = 2, .timeout_ms = 3000};
  CHECK_RC(wdpool_setup(&options, configure_pool, &first_setup, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(first_setup.calls, 2);
  CHECK(wdpool_active());
  uint64_t first = wdpool_global_id();
  CHECK(first != 0);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_CREATED), 1);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_SETUP), 1);
  recorded_event e;
  size_t at_created = 0, at_setup = 0;
  if (CHECK(event_log_find(&events, first, WDPOOL_EVENT_CREATED, 0, &e, &at_created))) {
    CHECK(e.global);
    CHECK_EQ(e.size, 2);
    CHECK_EQ(e.timeout_ms, 3000);
  }
  if (CHECK(event_log_find(&events, first, WDPOOL_EVENT_SETUP, 0, &e, &at_setup))) {
    CHECK(e.global);
    CHECK_EQ(e.size, 2);
    CHECK_EQ(e.timeout_ms, 3000);
    CHECK(e.well_formed);
    CHECK(at_created < at_setup);
  }

  CHECK_RC(wdpool_with(WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(b.calls, 1);
  CHECK_RC_BOTH(wdpool_with(WDPOOL_TIMEOUT_DEFAULT, NULL, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_transaction(WDPOOL_TIMEOUT_DEFAULT, NULL, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_checkout(WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_stats(NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC(wdpool_transaction(WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_NOT_TRANSACTIONAL);
  CHECK_RC(wdpool_stats(&s, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(s.size, 2);
  CHECK_EQ(s.created, 1);
  CHECK_EQ(s.in_use, 0);

  CHECK_RC(wdpool_reload(CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_RELOAD), 1);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_RELOADED), 1);
  if (CHECK(event_log_find(&events, first, WDPOOL_EVENT_RELOADED, 0, &e, NULL))) {
    CHECK(e.global);
    CHECK_EQ(e.size, 2);
    CHECK_EQ(e.timeout_ms, 3000);
  }

  /* A lease of the first global pool, held across a second setup. */
  CHECK_RC(wdpool_checkout(WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_producer_info info;
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(info.pool_id, first);

  /* A second setup (transactional this time) closes the first one during
   * the call: its shutdown event has fired when wdpool_setup returns. */
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_SHUTDOWN), 0);
  pool_setup second_setup = {.tx_prefix = "c-gtx-"};
  wdpool_options options2 = {.size = 1, .timeout_ms = 4000};
  CHECK_RC(wdpool_setup(&options2, configure_pool, &second_setup, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_SHUTDOWN), 1);
  if (CHECK(event_log_find(&events, first, WDPOOL_EVENT_SHUTDOWN, 0, &e, NULL))) {
    CHECK(e.global);
    CHECK_EQ(e.size, 2);
    CHECK(pthread_equal(e.thread, main_thread));
  }
  uint64_t second = wdpool_global_id();
  CHECK(second != 0 && second != first);
  CHECK(wdpool_active());
  CHECK_EQ(event_log_count(&events, second, WDPOOL_EVENT_CREATED), 1);
  CHECK_EQ(event_log_count(&events, second, WDPOOL_EVENT_SETUP), 1);

  /* The old lease still works, and goes back to its (closed) pool. */
  produce_one(p, NULL);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_STALE_HANDLE);

  /* The new global pool is transactional. */
  size_t committed = event_log_count(&events, second, WDPOOL_EVENT_TRANSACTION_COMMITTED);
  body tx = {global_transaction, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_transaction(WDPOOL_TIMEOUT_DEFAULT, run_body, &tx, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(tx.calls, 1);
  CHECK_EQ(event_log_count(&events, second, WDPOOL_EVENT_TRANSACTION_COMMITTED), committed + 1);
  CHECK_RC(wdpool_stats(&s, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(s.size, 1);
  CHECK_EQ(s.in_use, 0);

  /* A setup that fails leaves the current global pool in place. */
  config_probe bad = {.action = SET_UNKNOWN_KEY};
  CHECK_RC(wdpool_setup(&options, configure_probe, &bad, CHECK_ERR), WDPOOL_INVALID_CONFIG);
  CHECK_EQ(wdpool_global_id(), second);
  CHECK(wdpool_active());

  /* Close: inactive, calls fail with CLOSED, closing again is harmless. */
  memset(&report, 0xff, sizeof report);
  CHECK_RC(wdpool_close(false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.closed, 1);
  CHECK_EQ(report.in_use, 0);
  CHECK_EQ(report.undelivered, 0);
  CHECK(!wdpool_active());
  CHECK_EQ(wdpool_global_id(), 0);
  CHECK_EQ(event_log_count(&events, second, WDPOOL_EVENT_SHUTDOWN), 1);
  CHECK_RC_BOTH(wdpool_with(WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_CLOSED);
  CHECK_RC_BOTH(wdpool_transaction(WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_CLOSED);
  p = NULL;
  CHECK_RC_BOTH(wdpool_checkout(WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_CLOSED);
  CHECK(p == NULL);
  CHECK_RC_BOTH(wdpool_reload(CHECK_ERR), WDPOOL_CLOSED);
  CHECK_RC_BOTH(wdpool_stats(&s, CHECK_ERR), WDPOOL_CLOSED);
  memset(&report, 0xff, sizeof report);
  CHECK_RC(wdpool_close(true, &report, CHECK_ERR), WDPOOL_OK);
  CHECK(report.closed == 0 && report.undelivered == 0 && report.in_use == 0);
  CHECK_RC(wdpool_close(false, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(event_log_count(&events, second, WDPOOL_EVENT_SHUTDOWN), 1);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_SHUTDOWN), 1);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_CREATED), 1);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_SETUP), 1);
}

/* ------------------------------------------------------------------------
 * Statistics: queued, delivered only by wdpool_events_drain. */

static void test_statistics_events(void) {
  pool_setup setup = {.extra_key = "statistics.interval.ms", .extra_value = "100"};
  wdpool_pool *pool = make_pool(1, 1000, &setup);
  uint64_t id = wdpool_pool_id(pool);
  body b = {produce_one, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);

  /* Nothing arrives while nobody drains: a window of five intervals, not a
   * wait for a condition. Then a drain that does not wait delivers what was
   * queued meanwhile. */
  int64_t window_end = now_ms() + 500;
  while (now_ms() < window_end) poll_pause();
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_STATISTICS), 0);
  size_t drained = 0;
  CHECK_RC(wdpool_events_drain(0, 1000, &drained, CHECK_ERR), WDPOOL_OK);
  CHECK(drained >= 1);
  CHECK(event_log_count(&events, id, WDPOOL_EVENT_STATISTICS) >= 1);

  CHECK(event_log_drain_until(&events, id, WDPOOL_EVENT_STATISTICS, 2, EVENT_DEADLINE_MS) >= 2);
  recorded_event e;
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_STATISTICS, 0, &e, NULL))) {
    CHECK(e.message_len > 0);
    CHECK(e.message_head[0] == '{');
    CHECK(e.well_formed);
    CHECK_EQ(e.slot, 0);
  }
  /* Every queued event (statistics, errors) ran on this thread, the only
   * one that drains. */
  size_t off_thread = 0, queued = 0;
  pthread_mutex_lock(&events.lock);
  for (size_t i = 0; i < events.len; i++) {
    if (events.events[i].kind != WDPOOL_EVENT_STATISTICS && events.events[i].kind != WDPOOL_EVENT_ERROR) continue;
    queued++;
    if (!pthread_equal(events.events[i].thread, main_thread)) off_thread++;
  }
  pthread_mutex_unlock(&events.lock);
  CHECK(queued >= 2);
  CHECK_EQ(off_thread, 0);

  /* drain's own arguments: max 0 delivers nothing; NULL count_out is fine. */
  size_t count = 99;
  CHECK_RC(wdpool_events_drain(0, 0, &count, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(count, 0);
  CHECK_RC(wdpool_events_drain(0, 1, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Subscriptions: finalizers, unknown ids, unsubscribing from a callback. */

typedef struct self_unsubscriber {
  uint64_t id;
  atomic_int calls;
  atomic_int finalized;
  wdpool_result rc;
} self_unsubscriber;

static void unsubscribe_self(void *user_data, const wdpool_event *event) {
  self_unsubscriber *s = user_data;
  (void)event;
  if (atomic_fetch_add(&s->calls, 1) == 0) s->rc = wdpool_unsubscribe(s->id, NULL);
}

static void count_finalize(void *user_data) {
  self_unsubscriber *s = user_data;
  atomic_fetch_add(&s->finalized, 1);
}

static void ignore_event(void *user_data, const wdpool_event *event) {
  (void)user_data;
  (void)event;
}

static void test_subscriptions(void) {
  /* A second recorder sees the events of a pool, and is finalized exactly
   * once, after unsubscribing. */
  event_log *log = malloc(sizeof *log);
  if (!CHECK(log != NULL)) return;
  event_log_init(log);
  event_log_subscribe(log);
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 100, &setup);
  uint64_t id = wdpool_pool_id(pool);
  CHECK_EQ(event_log_count(log, id, WDPOOL_EVENT_CREATED), 1);
  CHECK_EQ(atomic_load(&log->finalized), 0);
  event_log_unsubscribe(log);
  wdpool_pool_free(pool); /* fires shutdown: not to the unsubscribed log */
  CHECK_EQ(event_log_count(log, id, WDPOOL_EVENT_SHUTDOWN), 0);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_SHUTDOWN), 1);
  CHECK_EQ(atomic_load(&log->callbacks_after_unsubscribe), 0);
  CHECK_EQ(atomic_load(&log->finalized), 1);
  CHECK_RC_BOTH(wdpool_unsubscribe(log->subscription, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  event_log_destroy(log);
  free(log);

  /* Unknown ids. */
  CHECK_RC_BOTH(wdpool_unsubscribe(0, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_MSG(wdpool_unsubscribe(UINT64_MAX, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "18446744073709551615");

  /* A subscriber may unsubscribe itself from its callback. */
  self_unsubscriber self = {.id = 0, .rc = WDPOOL_PANIC};
  atomic_init(&self.calls, 0);
  atomic_init(&self.finalized, 0);
  CHECK_RC(wdpool_subscribe(unsubscribe_self, &self, count_finalize, &self.id, CHECK_ERR), WDPOOL_OK);
  CHECK(self.id != 0 && self.id != events.subscription);
  pool = make_pool(1, 100, &setup); /* created: the first event */
  wdpool_pool_free(pool);           /* shutdown: not delivered any more */
  CHECK_EQ(atomic_load(&self.calls), 1);
  CHECK_EQ(self.rc, WDPOOL_OK);
  int64_t deadline = now_ms() + 5000;
  while (atomic_load(&self.finalized) == 0 && now_ms() < deadline) poll_pause();
  CHECK_EQ(atomic_load(&self.finalized), 1);

  /* The finalizer is optional ... */
  uint64_t plain = 0;
  CHECK_RC(wdpool_subscribe(ignore_event, NULL, NULL, &plain, CHECK_ERR), WDPOOL_OK);
  CHECK(plain != 0 && plain != self.id);
  CHECK_RC(wdpool_unsubscribe(plain, CHECK_ERR), WDPOOL_OK);
  /* ... and so is id_out (this subscriber cannot be removed: it stays). */
  CHECK_RC(wdpool_subscribe(ignore_event, NULL, NULL, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(atomic_load(&self.finalized), 1);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  main_thread = pthread_self();
  setvbuf(stdout, NULL, _IOLBF, 0);

  test_version_and_errors();

  event_log_init(&events);
  event_log_subscribe(&events);

  wdpool_mock_cluster *mock = NULL;
  CHECK_RC(wdpool_mock_cluster_new(3, &mock, CHECK_ERR), WDPOOL_OK);
  if (mock == NULL) return check_summary("test_api");
  brokers = wdpool_mock_cluster_bootstrap_servers(mock);
  /* Pools created without a configure callback read their brokers here. */
  setenv("WDPOOL_BROKERS", brokers, 1);

  test_mock_cluster(mock);
  test_pool_creation();
  test_null_parameters();
  test_produce();
  test_invalid_messages();
  test_handles();
  test_callbacks();
  test_transactions();
  test_reentrancy();
  test_checkout_timeout();
  test_close_and_reload();
  test_forced_close();
  test_deliver_false();
  test_global_pool();
  test_statistics_events();
  test_subscriptions();

  /* Every event was well formed. */
  size_t malformed = 0;
  pthread_mutex_lock(&events.lock);
  for (size_t i = 0; i < events.len; i++) malformed += !events.events[i].well_formed;
  pthread_mutex_unlock(&events.lock);
  CHECK_EQ(malformed, 0);

  event_log_unsubscribe(&events);
  CHECK_EQ(atomic_load(&events.callbacks_after_unsubscribe), 0);
  event_log_destroy(&events);
  wdpool_mock_cluster_free(mock);
  return check_summary("test_api");
}
