/*
 * test_config: wdpool_pool_new, wdpool_options_default, the configure
 * callback, every wdpool_config_set_* and its errors, and a config handle
 * kept past its callback.
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
  memset(&e, 0, sizeof e);
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
  /* Garbage and a handle of another kind are invalid arguments, NULL is NULL. */
  wdpool_config *garbage = (wdpool_config *)(uintptr_t)0x1234;
  CHECK_RC_BOTH(wdpool_config_set_deliver(garbage, true, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_config_set_deliver((wdpool_config *)pool, true, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_config_set_kafka(NULL, "acks", "1", CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_config_set_deliver(NULL, true, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_config_set_max_wait_timeout(NULL, 1, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_config_set_max_payload_size(NULL, 1, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_config_set_id(NULL, "x", CHECK_ERR), WDPOOL_NULL_PARAMETER);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  if (!api_setup()) return check_summary("test_config");

  test_pool_creation();

  return api_teardown("test_config");
}
