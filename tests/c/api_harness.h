/*
 * What the C API test programs (test_errors, test_config, test_produce,
 * test_transactions, test_lifecycle, test_events, test_mock,
 * test_create_leak) share: one in-process mock cluster per program with its
 * two topics, a recorder of every event of the program, pools configured
 * against that cluster, and the config-probe callback that fails a pool's
 * configuration on purpose.
 *
 *   int main(void) {
 *     if (!api_setup()) return check_summary("test_x");
 *     test_...();
 *     return api_teardown("test_x");
 *   }
 *
 * api_setup and api_teardown make 8 checks of their own in every program
 * (subscribe, mock cluster, two topics; every event well formed,
 * unsubscribe and its finalizer, no callback after it). See README.md.
 *
 * Include after defining _POSIX_C_SOURCE, after check.h and support.h.
 */
#ifndef WDPOOL_TESTS_API_HARNESS_H
#define WDPOOL_TESTS_API_HARNESS_H

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

static wdpool_mock_cluster *api_mock; /* the program's mock cluster */
static const char *brokers;           /* its bootstrap servers */
static event_log events;              /* every event of the program */
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

static inline int configure_pool(void *user_data, wdpool_config *config, size_t index) {
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

static inline wdpool_pool *make_pool(size_t size, uint64_t timeout_ms, pool_setup *setup) {
  wdpool_options options = {.size = size, .timeout_ms = timeout_ms};
  wdpool_pool *pool = NULL;
  CHECK_RC(wdpool_pool_new(&options, configure_pool, setup, &pool, CHECK_ERR), WDPOOL_OK);
  return pool;
}

static inline wdpool_statistics stats_of(const wdpool_pool *pool) {
  wdpool_statistics s;
  memset(&s, 0xff, sizeof s);
  CHECK_RC(wdpool_pool_stats(pool, &s, CHECK_ERR), WDPOOL_OK);
  return s;
}

static inline void produce_one(wdpool_producer *producer, void *ctx) {
  const char *topic = ctx != NULL ? ctx : TOPIC;
  wdpool_message m = text_message(topic, "one");
  CHECK_RC(wdpool_producer_produce_sync(producer, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);
}

/* ------------------------------------------------------------------------
 * A configure callback that does one thing, usually wrong (test_config; the
 * failed setup of test_lifecycle's global pool). */

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

static inline int configure_probe(void *user_data, wdpool_config *config, size_t index) {
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

/* ------------------------------------------------------------------------
 * The program's harness. */

/* Subscribes the event recorder, starts a 3-broker mock cluster with TOPIC
 * (4 partitions) and OFFSETS_TOPIC (1 partition), and points WDPOOL_BROKERS
 * at it. False when there is no cluster: return check_summary at once. */
static inline bool api_setup(void) {
  main_thread = pthread_self();
  setvbuf(stdout, NULL, _IOLBF, 0);

  event_log_init(&events);
  event_log_subscribe(&events);

  CHECK_RC(wdpool_mock_cluster_new(3, &api_mock, CHECK_ERR), WDPOOL_OK);
  if (api_mock == NULL) return false;
  brokers = wdpool_mock_cluster_bootstrap_servers(api_mock);
  /* Pools created without a configure callback read their brokers here. */
  setenv("WDPOOL_BROKERS", brokers, 1);

  CHECK_RC(wdpool_mock_cluster_create_topic(api_mock, TOPIC, 4, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_mock_cluster_create_topic(api_mock, OFFSETS_TOPIC, 1, CHECK_ERR), WDPOOL_OK);
  return true;
}

/* Checks every event of the program was well formed, unsubscribes the
 * recorder, frees the cluster, and prints the program's summary. */
static inline int api_teardown(const char *program) {
  size_t malformed = 0;
  pthread_mutex_lock(&events.lock);
  for (size_t i = 0; i < events.len; i++) malformed += !events.events[i].well_formed;
  pthread_mutex_unlock(&events.lock);
  CHECK_EQ(malformed, 0);

  event_log_unsubscribe(&events);
  CHECK_EQ(atomic_load(&events.callbacks_after_unsubscribe), 0);
  event_log_destroy(&events);
  wdpool_mock_cluster_free(api_mock);
  return check_summary(program);
}

#endif /* WDPOOL_TESTS_API_HARNESS_H */
