/*
 * test_close_threads: after a close, every librdkafka thread and socket of
 * the pool is gone. Counted in /proc/self/task (librdkafka's threads are
 * named rdk:*; the rdkafka crate's polling thread and wdpool's own threads
 * count in the total) and /proc/self/fd (sockets), against the counts taken
 * before the pool existed (the mock cluster's own threads and sockets are
 * in both). Each pool has 4 producers, all created and connected (4
 * checkouts at once, a message produced on each) before it is closed:
 *
 * - pool instance, graceful close;
 * - pool instance, forced close with messages in flight;
 * - a producer checked out during the close: its threads stay until it is
 *   checked in, then go;
 * - reload: the idle producers' threads and sockets go at once;
 * - the global pool, forced close;
 * - wdpool_pool_free without a close (closed by a background thread):
 *   everything goes, wdpool's closing thread included.
 *
 * A close returns after librdkafka's threads were joined, so the threads
 * must be gone when it returns; the mock brokers close their side of each
 * connection when they see it closed, so sockets are polled for, up to
 * GONE_DEADLINE_MS. The time each took is printed.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>

#include "check.h"
#include "support.h"
#include "api_harness.h"
#include "abi_v1.h"
#include "proc_counts.h"

enum { SIZE = 4 };
/* Sockets the mock brokers still hold for a closed client; the background
 * close of a freed pool. */
#define GONE_DEADLINE_MS 5000

static proc_counts before; /* no pool: the mock cluster and this program */

static proc_counts counts_now(void) {
  proc_counts c;
  CHECK(proc_counts_read(&c));
  return c;
}

static bool back_to_before(void) {
  proc_counts c;
  return proc_counts_read(&c) && c.threads == before.threads && c.rdk_threads == before.rdk_threads &&
         c.fds == before.fds && c.sockets == before.sockets;
}

/* Waits (GONE_DEADLINE_MS at most) for the counts of before; checks them and
 * prints how long it took. */
static void check_gone(const char *what) {
  int64_t started = now_ms();
  WAIT_UNTIL(back_to_before(), GONE_DEADLINE_MS);
  int64_t took = now_ms() - started;
  proc_counts c = counts_now();
  printf("test_close_threads: %s: threads %ld (rdk %ld), fds %ld (sockets %ld) after %" PRId64
         " ms; before the pool: threads %ld (rdk %ld), fds %ld (sockets %ld)\n",
         what, c.threads, c.rdk_threads, c.fds, c.sockets, took, before.threads, before.rdk_threads, before.fds,
         before.sockets);
  CHECK_EQ(c.threads, before.threads);
  CHECK_EQ(c.rdk_threads, before.rdk_threads);
  CHECK_EQ(c.fds, before.fds);
  CHECK_EQ(c.sockets, before.sockets);
}

/* Right after a close or reload returned: no rdk:* thread of the pool is
 * left (threads are joined before it returns, no polling). */
static void check_no_rdk_thread_left(const char *what) {
  proc_counts c = counts_now();
  if (!CHECK_EQ(c.rdk_threads, before.rdk_threads)) fprintf(stderr, "  (%s)\n", what);
}

/* Checks out SIZE producers at once (so all are created), produces one
 * message with each (so each connects) and returns them in `out`. */
static void check_out_all(wdpool_pool *pool, bool global, wdpool_producer *out[SIZE]) {
  for (size_t i = 0; i < SIZE; i++) {
    out[i] = NULL;
    if (global) {
      CHECK_RC(wdpool_checkout(WDPOOL_OWNER_NONE, WDPOOL_TIMEOUT_DEFAULT, &out[i], CHECK_ERR), WDPOOL_OK);
    } else {
      CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_NONE, WDPOOL_TIMEOUT_DEFAULT, &out[i], CHECK_ERR), WDPOOL_OK);
    }
    if (out[i] != NULL) produce_one(out[i], NULL);
  }
  /* The pool's threads and sockets are there (each producer has its own). */
  proc_counts c = counts_now();
  CHECK(c.rdk_threads >= before.rdk_threads + SIZE);
  CHECK(c.sockets >= before.sockets + SIZE);
}

static void check_in_all(wdpool_producer *leased[SIZE]) {
  for (size_t i = 0; i < SIZE; i++) {
    if (leased[i] != NULL) CHECK_RC(wdpool_producer_checkin(leased[i], CHECK_ERR), WDPOOL_OK);
  }
}

static wdpool_pool *connected_pool(pool_setup *setup) {
  wdpool_pool *pool = make_pool(SIZE, 10000, setup);
  wdpool_producer *leased[SIZE];
  if (pool != NULL) {
    check_out_all(pool, false, leased);
    check_in_all(leased);
  }
  return pool;
}

static void test_graceful_close(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = connected_pool(&setup);
  if (pool == NULL) return;
  wdpool_close_report report;
  CHECK_RC(wdpool_pool_close(pool, false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.closed, SIZE);
  check_no_rdk_thread_left("graceful close");
  wdpool_pool_free(pool);
  check_gone("pool, graceful close");
}

static void test_forced_close_in_flight(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(SIZE, 10000, &setup);
  if (pool == NULL) return;
  wdpool_producer *leased[SIZE];
  check_out_all(pool, false, leased);
  /* One message each, not waited for, and the broker slow to answer. */
  for (int32_t b = 1; b <= 3; b++) CHECK_RC(wdpool_mock_cluster_set_rtt(api_mock, b, 2000, CHECK_ERR), WDPOOL_OK);
  wdpool_delivery *deliveries[SIZE] = {0};
  for (size_t i = 0; i < SIZE; i++) {
    if (leased[i] == NULL) continue;
    wdpool_message m = text_message(TOPIC, "in flight");
    CHECK_RC(wdpool_producer_produce_async(leased[i], &m, &deliveries[i], CHECK_ERR), WDPOOL_OK);
  }
  check_in_all(leased);
  wdpool_close_report report;
  CHECK_RC(wdpool_pool_close(pool, true, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.closed, SIZE);
  check_no_rdk_thread_left("forced close");
  for (int32_t b = 1; b <= 3; b++) CHECK_RC(wdpool_mock_cluster_set_rtt(api_mock, b, 0, CHECK_ERR), WDPOOL_OK);
  for (size_t i = 0; i < SIZE; i++) wdpool_delivery_free(deliveries[i]);
  wdpool_pool_free(pool);
  check_gone("pool, forced close with messages in flight");
}

static void test_checked_out_during_close(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(SIZE, 10000, &setup);
  if (pool == NULL) return;
  wdpool_producer *leased[SIZE];
  check_out_all(pool, false, leased);
  for (size_t i = 1; i < SIZE; i++) {
    if (leased[i] != NULL) CHECK_RC(wdpool_producer_checkin(leased[i], CHECK_ERR), WDPOOL_OK);
  }
  wdpool_close_report report;
  CHECK_RC(wdpool_pool_close(pool, false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.closed, SIZE - 1);
  CHECK_EQ(report.in_use, 1);
  /* The leased producer still runs: its threads and socket are there. */
  proc_counts c = counts_now();
  CHECK(c.rdk_threads > before.rdk_threads);
  CHECK(c.sockets > before.sockets);
  if (leased[0] != NULL) CHECK_RC(wdpool_producer_checkin(leased[0], CHECK_ERR), WDPOOL_OK);
  check_no_rdk_thread_left("checkin after close");
  wdpool_pool_free(pool);
  check_gone("pool, a producer checked in after the close");
}

static void test_reload(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = connected_pool(&setup);
  if (pool == NULL) return;
  CHECK_RC(wdpool_pool_reload(pool, CHECK_ERR), WDPOOL_OK);
  /* Idle producers are closed by the reload and made again on demand. */
  CHECK_EQ(stats_of(pool).created, 0);
  check_no_rdk_thread_left("reload");
  check_gone("pool, reload");
  /* Used again, closed again. */
  wdpool_producer *leased[SIZE];
  check_out_all(pool, false, leased);
  check_in_all(leased);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
  check_gone("pool, reloaded then closed");
}

static void test_global_forced_close(void) {
  pool_setup setup = {0};
  wdpool_options options = {.size = SIZE, .timeout_ms = 10000};
  CHECK_RC(wdpool_setup(&options, configure_pool, &setup, CHECK_ERR), WDPOOL_OK);
  wdpool_producer *leased[SIZE];
  check_out_all(NULL, true, leased);
  check_in_all(leased);
  wdpool_close_report report;
  CHECK_RC(wdpool_close(true, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.closed, SIZE);
  check_no_rdk_thread_left("global forced close");
  check_gone("global pool, forced close");
}

static void test_free_without_close(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = connected_pool(&setup);
  if (pool == NULL) return;
  /* Closed gracefully by a thread of wdpool's, in the background. */
  wdpool_pool_free(pool);
  check_gone("pool freed without a close");
  /* Its shutdown event waits in the queue: take it out. */
  size_t drained = 0;
  CHECK_RC(wdpool_events_drain(1000, 100, &drained, CHECK_ERR), WDPOOL_OK);
  CHECK(drained >= 1);
}

int main(void) {
  if (!api_setup()) return check_summary("test_close_threads");
  /* The mock cluster's threads name themselves rdk:* once they run: wait
   * for every thread but this one to have its name (under load one may
   * not have run yet), so that "before" counts it as librdkafka's. */
  WAIT_UNTIL(proc_counts_read(&before) && before.threads - before.rdk_threads == 1, GONE_DEADLINE_MS);
  CHECK(proc_counts_read(&before));
  printf("test_close_threads: before any pool: threads %ld (rdk %ld), fds %ld (sockets %ld)\n", before.threads,
         before.rdk_threads, before.fds, before.sockets);
  test_graceful_close();
  test_forced_close_in_flight();
  test_checked_out_during_close();
  test_reload();
  test_global_forced_close();
  test_free_without_close();
  return api_teardown("test_close_threads");
}
