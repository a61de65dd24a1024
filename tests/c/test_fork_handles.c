/*
 * test_fork_handles: producer handles made before fork() are stale in the
 * child (at once: not after a wait for librdkafka threads that do not exist
 * there), while pool handles keep working there and every handle keeps
 * working in the parent. And fork() while another thread checks producers
 * out and in as fast as it can: the child never inherits a pool lock held,
 * 20 times over.
 *
 * A child reports through its exit code: 0 when every check passed,
 * otherwise the number of the first check that failed. It leaves with
 * _exit. The parent waits for each child with a deadline (waitpid with
 * WNOHANG); a child still running then is killed, and that is a failure.
 *
 * The mock cluster's threads do not exist in a child, so what a child
 * produces goes to `deliver = false` producers.
 */
#define _POSIX_C_SOURCE 200809L

#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "support.h"
#include "abi_v1.h"
#include "wdpool.h"

/* Under valgrind (make test-valgrind) a forked child is checked too, leaks
 * included, when it exits: but a child abandons the parent's producers and
 * what the parent's other threads held, on purpose (see test_fork in the
 * Makefile). So a child turns leak checking off for itself; memory errors
 * still count. Without valgrind's header, or not under valgrind, this does
 * nothing. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define CHILD_NO_LEAK_CHECK() VALGRIND_CLO_CHANGE("--leak-check=no")
#endif
#endif
#ifndef CHILD_NO_LEAK_CHECK
#define CHILD_NO_LEAK_CHECK() ((void)0)
#endif

/* The real producer's max_wait_timeout: a stale check that waited for it
 * would miss CHILD_QUICK_MS. */
#define REAL_MAX_WAIT_MS 30000
#define CHILD_QUICK_MS 10000
/* How long a child may take before it is killed. */
#define CHILD_DEADLINE_MS 60000
#define FORKS 20

static const char *brokers;

static int configure_real(void *user_data, wdpool_config *config, size_t index) {
  (void)user_data;
  (void)index;
  if (wdpool_config_set_kafka(config, "bootstrap.servers", brokers, NULL) != WDPOOL_OK) return 0;
  if (wdpool_config_set_max_wait_timeout(config, REAL_MAX_WAIT_MS, NULL) != WDPOOL_OK) return 0;
  return WDPOOL_CB_OK;
}

static int configure_no_deliver(void *user_data, wdpool_config *config, size_t index) {
  (void)user_data;
  (void)index;
  if (wdpool_config_set_deliver(config, false, NULL) != WDPOOL_OK) return 0;
  if (wdpool_config_set_max_wait_timeout(config, REAL_MAX_WAIT_MS, NULL) != WDPOOL_OK) return 0;
  return WDPOOL_CB_OK;
}

/* Waits for `pid` at most `timeout_ms`: its exit status, 128 + the signal
 * that ended it, -1 when waitpid failed, or -2 when it was still running
 * at the deadline (it is then killed). */
static int wait_child(pid_t pid, int64_t timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    if (r < 0) return -1;
    if (now_ms() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -2;
    }
    poll_pause();
  }
}

/* ------------------------------------------------------------------------
 * Handles across fork(). */

typedef struct before_fork {
  wdpool_pool *real_pool;   /* against the mock cluster */
  wdpool_pool *quiet_pool;  /* deliver = false */
  wdpool_producer *real;    /* a lease of each, held across the fork */
  wdpool_producer *quiet;
  wdpool_delivery *delivered; /* a report that arrived before the fork */
} before_fork;

/* In the child: no harness output, an exit code. */
static int child_handles(before_fork *b) {
  wdpool_message m = text_message("c-fork-handles", "from the child");
  wdpool_producer_info info;
  wdpool_report report;

  /* The parent's producer handles are stale, at once. */
  int64_t start = now_ms();
  if (wdpool_producer_get_info(b->real, &info, NULL) != WDPOOL_STALE_HANDLE) return 10;
  if (wdpool_producer_produce_sync(b->real, &m, WDPOOL_TIMEOUT_DEFAULT, &report, NULL) != WDPOOL_STALE_HANDLE) return 11;
  if (wdpool_producer_produce_async(b->real, &m, NULL, NULL) != WDPOOL_STALE_HANDLE) return 12;
  if (wdpool_producer_flush(b->real, WDPOOL_TIMEOUT_DEFAULT, NULL) != WDPOOL_STALE_HANDLE) return 13;
  if (wdpool_producer_begin(b->real, WDPOOL_TIMEOUT_DEFAULT, NULL) != WDPOOL_STALE_HANDLE) return 14;
  if (wdpool_producer_get_info(b->quiet, &info, NULL) != WDPOOL_STALE_HANDLE) return 15;
  if (wdpool_producer_produce_sync(b->quiet, &m, WDPOOL_TIMEOUT_DEFAULT, &report, NULL) != WDPOOL_STALE_HANDLE) return 16;
  if (wdpool_producer_checkin(b->quiet, NULL) != WDPOOL_STALE_HANDLE) return 17;
  if (wdpool_producer_checkin(b->real, NULL) != WDPOOL_STALE_HANDLE) return 18;
  if (now_ms() - start >= CHILD_QUICK_MS) return 19;

  /* The pools work: a fresh checkout of the pool of one whose lease the
   * parent holds, and a produce with it. */
  wdpool_producer *p = NULL;
  if (wdpool_pool_checkout(b->quiet_pool, WDPOOL_OWNER_THREAD, 5000, &p, NULL) != WDPOOL_OK) return 20;
  if (wdpool_producer_get_info(p, &info, NULL) != WDPOOL_OK) return 21;
  if (info.index != 0 || info.pool_id != wdpool_pool_id(b->quiet_pool)) return 22;
  if (wdpool_producer_produce_sync(p, &m, WDPOOL_TIMEOUT_DEFAULT, &report, NULL) != WDPOOL_OK) return 23;
  if (wdpool_producer_checkin(p, NULL) != WDPOOL_OK) return 24;
  if (wdpool_producer_get_info(p, &info, NULL) != WDPOOL_STALE_HANDLE) return 25;
  wdpool_statistics s;
  if (wdpool_pool_stats(b->quiet_pool, &s, NULL) != WDPOOL_OK) return 26;
  if (s.in_use != 0 || s.size != 1) return 27;
  if (wdpool_pool_stats(b->real_pool, &s, NULL) != WDPOOL_OK) return 28;

  /* A delivery handle stays valid in the child. */
  if (wdpool_delivery_count(b->delivered) != 1) return 29;
  if (wdpool_delivery_wait(b->delivered, 0, NULL) != WDPOOL_OK) return 30;
  if (wdpool_delivery_report(b->delivered, 0, &report, NULL) != WDPOOL_OK || report.error_code != 0) return 31;
  return 0;
}

static void test_handles_across_fork(void) {
  before_fork b = {0};
  wdpool_options options = {.size = 1, .timeout_ms = 5000};
  CHECK_RC(wdpool_pool_new(&options, configure_real, NULL, &b.real_pool, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_new(&options, configure_no_deliver, NULL, &b.quiet_pool, CHECK_ERR), WDPOOL_OK);
  if (b.real_pool == NULL || b.quiet_pool == NULL) return;
  CHECK_RC(wdpool_pool_checkout(b.real_pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &b.real, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_checkout(b.quiet_pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &b.quiet, CHECK_ERR),
           WDPOOL_OK);
  if (b.real == NULL || b.quiet == NULL) return;
  wdpool_message m = text_message("c-fork-handles", "before the fork");
  CHECK_RC(wdpool_producer_produce_sync(b.real, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_produce_sync(b.quiet, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_produce_async(b.real, &m, &b.delivered, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_delivery_wait(b.delivered, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);

  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    CHILD_NO_LEAK_CHECK();
    _exit(child_handles(&b));
  }
  if (CHECK(pid > 0)) CHECK_EQ(wait_child(pid, CHILD_DEADLINE_MS), 0);

  /* The parent's handles still work in the parent. */
  wdpool_producer_info info;
  CHECK_RC(wdpool_producer_get_info(b.real, &info, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(info.pool_id, wdpool_pool_id(b.real_pool));
  m = text_message("c-fork-handles", "after the fork");
  wdpool_report report;
  memset(&report, 0, sizeof report);
  CHECK_RC(wdpool_producer_produce_sync(b.real, &m, WDPOOL_TIMEOUT_DEFAULT, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.error_code, 0);
  CHECK(report.offset >= 0);
  CHECK_RC(wdpool_producer_get_info(b.quiet, &info, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_produce_sync(b.quiet, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(b.real, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(b.quiet, CHECK_ERR), WDPOOL_OK);
  wdpool_statistics s;
  CHECK_RC(wdpool_pool_stats(b.real_pool, &s, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(s.creations, 1); /* the parent's producer, never replaced */
  CHECK_EQ(s.in_use, 0);
  wdpool_delivery_free(b.delivered);
  CHECK_RC(wdpool_pool_close(b.real_pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_close(b.quiet_pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(b.real_pool);
  wdpool_pool_free(b.quiet_pool);
}

/* ------------------------------------------------------------------------
 * fork() while another thread hammers the pool. */

typedef struct hammer {
  wdpool_pool *pool;
  atomic_bool stop;
  atomic_ulong rounds;
  atomic_ulong failures;
} hammer;

static void hammer_pool(void *arg) {
  hammer *h = arg;
  while (!atomic_load(&h->stop)) {
    wdpool_producer *p = NULL;
    if (wdpool_pool_checkout(h->pool, WDPOOL_OWNER_THREAD, 5000, &p, NULL) != WDPOOL_OK) {
      atomic_fetch_add(&h->failures, 1);
      continue;
    }
    wdpool_producer_info info;
    if (wdpool_producer_get_info(p, &info, NULL) != WDPOOL_OK) atomic_fetch_add(&h->failures, 1);
    if (wdpool_producer_checkin(p, NULL) != WDPOOL_OK) atomic_fetch_add(&h->failures, 1);
    atomic_fetch_add(&h->rounds, 1);
    /* Let the forking thread run too (valgrind runs one thread at a time
     * and would starve it). */
    sched_yield();
  }
}

static int child_checkout(wdpool_pool *pool) {
  wdpool_producer *p = NULL;
  if (wdpool_pool_checkout(pool, WDPOOL_OWNER_NONE, 5000, &p, NULL) != WDPOOL_OK) return 40;
  wdpool_message m = text_message("c-fork-hammer", "from a child");
  if (wdpool_producer_produce_sync(p, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, NULL) != WDPOOL_OK) return 41;
  if (wdpool_producer_checkin(p, NULL) != WDPOOL_OK) return 42;
  /* Once more, on the thread's behalf, and by callback. */
  if (wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, 5000, &p, NULL) != WDPOOL_OK) return 43;
  if (wdpool_producer_checkin(p, NULL) != WDPOOL_OK) return 44;
  body b = {NULL, NULL, WDPOOL_CB_OK, NULL, 0};
  if (wdpool_pool_with(pool, 5000, run_body, &b, NULL) != WDPOOL_OK || b.calls != 1) return 45;
  wdpool_statistics s;
  if (wdpool_pool_stats(pool, &s, NULL) != WDPOOL_OK) return 46;
  if (s.in_use != 0 || s.waiting != 0) return 47;
  return 0;
}

static void test_fork_while_hammering(void) {
  wdpool_options options = {.size = 1, .timeout_ms = 5000};
  hammer h = {.pool = NULL};
  atomic_init(&h.stop, false);
  atomic_init(&h.rounds, 0);
  atomic_init(&h.failures, 0);
  CHECK_RC(wdpool_pool_new(&options, configure_no_deliver, NULL, &h.pool, CHECK_ERR), WDPOOL_OK);
  if (h.pool == NULL) return;

  bounded_thread t;
  if (!bounded_start(&t, hammer_pool, &h)) return;
  int failed_children = 0;
  for (int i = 0; i < FORKS; i++) {
    /* Fork at a new point of the hammer's loop each time. */
    unsigned long at = atomic_load(&h.rounds);
    WAIT_UNTIL(atomic_load(&h.rounds) >= at + 3, 10000);
    CHECK(atomic_load(&h.rounds) >= at + 3);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
      CHILD_NO_LEAK_CHECK();
      _exit(child_checkout(h.pool));
    }
    if (!CHECK(pid > 0)) break;
    int code = wait_child(pid, CHILD_DEADLINE_MS);
    if (code != 0) {
      failed_children++;
      printf("fork %d: the child ended with %d\n", i, code);
    }
  }
  CHECK_EQ(failed_children, 0);
  atomic_store(&h.stop, true);
  BOUNDED_JOIN(&t, 30000);
  CHECK_EQ(atomic_load(&h.failures), 0);
  CHECK(atomic_load(&h.rounds) >= 3 * FORKS);

  /* The parent's pool is as it was: one producer, never replaced. */
  wdpool_statistics s;
  CHECK_RC(wdpool_pool_stats(h.pool, &s, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.creations, 1);
  CHECK_RC(wdpool_pool_close(h.pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(h.pool);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  abi_program = "test_fork_handles";
  setvbuf(stdout, NULL, _IOLBF, 0);
  wdpool_mock_cluster *mock = NULL;
  CHECK_RC(wdpool_mock_cluster_new(1, &mock, CHECK_ERR), WDPOOL_OK);
  if (mock == NULL) return check_summary(abi_program);
  brokers = wdpool_mock_cluster_bootstrap_servers(mock);

  test_handles_across_fork();
  test_fork_while_hammering();

  wdpool_mock_cluster_free(mock);
  return check_summary(abi_program);
}
