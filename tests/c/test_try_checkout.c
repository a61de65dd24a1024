/*
 * test_try_checkout: wdpool_pool_try_checkout / wdpool_try_checkout, the
 * checkout that never waits.
 *
 *   - A cold pool: OK with NULL, nothing created, no checkout timeout
 *     counted, no checkout_timeout event (and the blocking checkout then
 *     creates the producer).
 *   - An idle producer is handed out; the same key nests; another key gets
 *     NULL while the only producer is out, at once, while a blocking
 *     checkout with a timeout would wait.
 *   - NULL arguments, a wrong-kind handle, a freed pool, a closed pool; the
 *     global pool (NOT_SET_UP before setup).
 *
 * Under ASan, UBSan and LeakSanitizer, against librdkafka's in-process mock
 * cluster (api_harness.h), deliver = false producers.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "support.h"
#include "api_harness.h"
#include "abi_v1.h"
#include "wdpool.h"

#define KEY_A ((wdpool_owner)1001)
#define KEY_B ((wdpool_owner)1002)

static size_t timeout_events(void) { return event_log_count(&events, 0, WDPOOL_EVENT_CHECKOUT_TIMEOUT); }

static void test_instance(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 2000, &setup);
  size_t timeouts_before = timeout_events();

  /* Cold: nothing free, nothing created, nothing counted. */
  wdpool_producer *p = (wdpool_producer *)(uintptr_t)1;
  CHECK_RC_BOTH(wdpool_pool_try_checkout(pool, KEY_A, &p, CHECK_ERR), WDPOOL_OK);
  CHECK(p == NULL);
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.created, 0);
  CHECK_EQ(s.creating, 0);
  CHECK_EQ(s.checkout_timeouts, 0);
  CHECK_EQ(timeout_events(), timeouts_before);

  /* The blocking checkout creates it; back in the pool, it is free. */
  CHECK_RC(wdpool_pool_checkout(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).created, 1);

  wdpool_producer *a = NULL, *nested = NULL, *b = (wdpool_producer *)(uintptr_t)1;
  CHECK_RC(wdpool_pool_try_checkout(pool, KEY_A, &a, CHECK_ERR), WDPOOL_OK);
  CHECK(a != NULL);
  CHECK_RC(wdpool_pool_try_checkout(pool, KEY_A, &nested, CHECK_ERR), WDPOOL_OK);
  CHECK(nested != NULL);
  CHECK_EQ(producer_index(nested), producer_index(a));
  int64_t start = now_ms();
  CHECK_RC(wdpool_pool_try_checkout(pool, KEY_B, &b, CHECK_ERR), WDPOOL_OK);
  CHECK(b == NULL);
  CHECK(now_ms() - start < 1000); /* it never waits for the pool's 2 s */
  s = stats_of(pool);
  CHECK_EQ(s.in_use, 1);
  CHECK_EQ(s.checkout_timeouts, 0);
  CHECK_EQ(timeout_events(), timeouts_before);

  /* A handle from it is a checkout's: produce, then check in. */
  wdpool_message m = text_message(TOPIC, "try");
  CHECK_RC(wdpool_producer_produce_sync(a, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(nested, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(a, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(a, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_EQ(stats_of(pool).in_use, 0);

  /* Bad arguments. */
  CHECK_RC_BOTH(wdpool_pool_try_checkout(pool, KEY_A, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_pool_try_checkout(NULL, KEY_A, &p, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC(wdpool_pool_try_checkout((const wdpool_pool *)api_mock, KEY_A, &p, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);

  /* Closed, then freed. */
  wdpool_close_report report;
  CHECK_RC(wdpool_pool_close(pool, false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_RC_BOTH(wdpool_pool_try_checkout(pool, KEY_A, &p, CHECK_ERR), WDPOOL_CLOSED);
  wdpool_pool_free(pool);
  CHECK_RC_BOTH(wdpool_pool_try_checkout(pool, KEY_A, &p, CHECK_ERR), WDPOOL_STALE_HANDLE);
}

static void test_global(void) {
  wdpool_producer *p = NULL;
  CHECK_RC_BOTH(wdpool_try_checkout(WDPOOL_OWNER_THREAD, &p, CHECK_ERR), WDPOOL_NOT_SET_UP);
  pool_setup setup = {.no_deliver = true};
  wdpool_options options = {.size = 1, .timeout_ms = 1000};
  CHECK_RC(wdpool_setup(&options, configure_pool, &setup, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_try_checkout(WDPOOL_OWNER_THREAD, &p, CHECK_ERR), WDPOOL_OK);
  CHECK(p == NULL);
  CHECK_RC(wdpool_checkout(WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  p = NULL;
  CHECK_RC(wdpool_try_checkout(WDPOOL_OWNER_THREAD, &p, CHECK_ERR), WDPOOL_OK);
  CHECK(p != NULL);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_try_checkout(WDPOOL_OWNER_THREAD, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  wdpool_close_report report;
  CHECK_RC(wdpool_close(false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_try_checkout(WDPOOL_OWNER_THREAD, &p, CHECK_ERR), WDPOOL_CLOSED);
}

int main(void) {
  abi_program = "test_try_checkout";
  if (!api_setup()) return check_summary(abi_program);

  test_instance();
  test_global();

  return api_teardown(abi_program);
}
