/*
 * test_create_leak: a producer that librdkafka refuses to create, 200 times,
 * leaks nothing.
 *
 * `enable.idempotence=true` and `acks=1` are each valid, so the configure
 * callback accepts them; only rd_kafka_new finds the conflict. Every checkout
 * then fails with WDPOOL_INVALID_CONFIG. The rdkafka crate 0.39.0 never freed
 * the native configuration when rd_kafka_new failed (about 2.9 KB a try) and
 * never destroyed the main-queue handle of each client it created; wdpool
 * builds a patched copy (third_party/rdkafka/WDPOOL_PATCHES.md). The leak
 * check itself is LeakSanitizer (make test-c) or valgrind (make
 * test-valgrind) at exit: without the patch, this program fails there.
 *
 * Under ASan, UBSan and LeakSanitizer, against librdkafka's in-process mock
 * cluster (api_harness.h). See README.md.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "support.h"
#include "api_harness.h"
#include "wdpool.h"

#define ATTEMPTS 200

static atomic_int callback_calls;

static int never_called(void *user_data, wdpool_producer *producer) {
  (void)user_data;
  (void)producer;
  atomic_fetch_add(&callback_calls, 1);
  return WDPOOL_CB_OK;
}

static void test_refused_producer(void) {
  pool_setup setup = {
      .extra_key = "enable.idempotence",
      .extra_value = "true",
      .extra_key2 = "acks",
      .extra_value2 = "1",
  };
  wdpool_pool *pool = make_pool(1, 1000, &setup);
  if (!CHECK(pool != NULL)) return;
  CHECK_EQ(setup.calls, 1); /* the callback accepted both properties */

  /* Each attempt creates the producer anew (a refused one is not kept). The
   * first attempt that goes otherwise is reported in full. */
  int refused = 0;
  for (int i = 0; i < ATTEMPTS; i++) {
    wdpool_error *err = NULL;
    wdpool_result rc = wdpool_pool_with(pool, 1000, never_called, NULL, &err);
    const char *message = wdpool_error_message(err);
    bool ok = rc == WDPOOL_INVALID_CONFIG && err != NULL && wdpool_error_code(err) == rc &&
              strstr(message, "acks") != NULL && strstr(message, "enable.idempotence") != NULL;
    if (ok) {
      refused++;
    } else if (refused == i) {
      char what[64];
      snprintf(what, sizeof what, "wdpool_pool_with, attempt %d", i);
      check_rc_(rc, WDPOOL_INVALID_CONFIG, err, "`acks` must be set to `all` when `enable.idempotence` is true",
                what, __FILE__, __LINE__);
    }
    wdpool_error_free(err);
  }
  CHECK_EQ(refused, ATTEMPTS);
  CHECK_EQ(atomic_load(&callback_calls), 0);

  /* Once more through CHECK_RC_MSG, for the whole error contract and the
   * message, which says why: librdkafka's own words. */
  CHECK_RC_MSG(wdpool_pool_with(pool, 1000, never_called, NULL, CHECK_ERR), WDPOOL_INVALID_CONFIG,
               "`acks` must be set to `all` when `enable.idempotence` is true");

  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.created, 0);
  CHECK_EQ(s.in_use, 0);
  wdpool_pool_free(pool);
}

int main(void) {
  if (!api_setup()) return check_summary("test_create_leak");

  test_refused_producer();

  return api_teardown("test_create_leak");
}
