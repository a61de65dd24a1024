/*
 * What the ABI version 1 programs (test_owners, test_nested, test_timeouts,
 * test_finalizers, test_fork_handles) share on top of check.h and
 * support.h:
 *
 *   abi_program                 the program's name, for the summary printed
 *                               when a bounded thread is stuck.
 *   bounded_thread              runs a risky part (one that could deadlock,
 *                               or wait longer than its bound) on a pthread;
 *   BOUNDED_JOIN(t, ms)         waits for it with a deadline: a thread still
 *                               running at the deadline is a failure, and
 *                               the program stops at once (the stuck thread
 *                               can be neither stopped nor joined), printing
 *                               its summary, instead of hanging.
 *   WAIT_UNTIL(cond, ms)        polls `cond` with poll_pause() until it holds
 *                               or `ms` passed (then CHECK it).
 *   pool_stats_now(pool)        wdpool_pool_stats for such polls, counting
 *                               no check.
 *   WAITED_AT_LEAST(took, ms)   a call that had to wait `ms` did, give or
 *                               take the clocks' rounding.
 *   txn_tally / txn_tally_of    the transaction events (started, committed,
 *   CHECK_TXN_DELTA             aborted) a pool had in an event_log, and the
 *                               change since an earlier tally.
 *
 * Include after defining _POSIX_C_SOURCE, after check.h and support.h.
 */
#ifndef WDPOOL_TESTS_ABI_V1_H
#define WDPOOL_TESTS_ABI_V1_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "support.h"
#include "wdpool.h"

static const char *abi_program = "test";

/* ------------------------------------------------------------------------
 * Waiting on a condition with a deadline. */

#define WAIT_UNTIL(cond, timeout_ms)                                        \
  do {                                                                      \
    int64_t wait_until_deadline_ = now_ms() + (int64_t)(timeout_ms);        \
    while (!(cond) && now_ms() < wait_until_deadline_) poll_pause();        \
  } while (0)

/* A call asked to wait `asked` ms (and expected to wait all of it) took
 * `took` ms: at least what it was asked, give or take the clocks' rounding
 * (librdkafka's timers and this program's millisecond clock). */
#define WAITED_AT_LEAST(took, asked) ((int64_t)(took) + 10 >= (int64_t)(asked))

/* A pool's statistics without counting a check (for polling: the number of
 * checks a program makes stays the same from run to run); all 0xff when
 * the call failed. */
static inline wdpool_statistics pool_stats_now(const wdpool_pool *pool) {
  wdpool_statistics s;
  if (wdpool_pool_stats(pool, &s, NULL) != WDPOOL_OK) memset(&s, 0xff, sizeof s);
  return s;
}

/* ------------------------------------------------------------------------
 * A thread waited for with a deadline. */

typedef struct bounded_thread {
  pthread_t thread;
  void (*run)(void *arg);
  void *arg;
  atomic_bool done;
  bool started;
} bounded_thread;

static inline void *bounded_thread_main_(void *p) {
  bounded_thread *t = p;
  t->run(t->arg);
  atomic_store(&t->done, true);
  return NULL;
}

static inline bool bounded_start(bounded_thread *t, void (*run)(void *arg), void *arg) {
  t->run = run;
  t->arg = arg;
  atomic_init(&t->done, false);
  t->started = pthread_create(&t->thread, NULL, bounded_thread_main_, t) == 0;
  CHECK(t->started);
  return t->started;
}

static inline bool bounded_done(bounded_thread *t) { return atomic_load(&t->done); }

static inline void bounded_join_(bounded_thread *t, int64_t timeout_ms, const char *file, int line, const char *what) {
  if (!t->started) return;
  int64_t deadline = now_ms() + timeout_ms;
  while (!atomic_load(&t->done) && now_ms() < deadline) poll_pause();
  if (!atomic_load(&t->done)) {
    char detail[96];
    snprintf(detail, sizeof detail, "still running after %lld ms: giving up", (long long)timeout_ms);
    check_record_(false, file, line, what, detail);
    check_summary(abi_program);
    fflush(NULL);
    _exit(1);
  }
  pthread_join(t->thread, NULL);
  t->started = false;
}

#define BOUNDED_JOIN(t, timeout_ms) bounded_join_((t), (timeout_ms), __FILE__, __LINE__, "thread " #t)

/* ------------------------------------------------------------------------
 * Transaction events of one pool in an event_log. */

typedef struct txn_tally {
  size_t started, committed, aborted;
} txn_tally;

static inline txn_tally txn_tally_of(event_log *log, uint64_t pool_id) {
  txn_tally t = {event_log_count(log, pool_id, WDPOOL_EVENT_TRANSACTION_STARTED),
                 event_log_count(log, pool_id, WDPOOL_EVENT_TRANSACTION_COMMITTED),
                 event_log_count(log, pool_id, WDPOOL_EVENT_TRANSACTION_ABORTED)};
  return t;
}

#define CHECK_TXN_DELTA(log, before, pool_id, s, c, a)         \
  do {                                                         \
    txn_tally now_ = txn_tally_of((log), (pool_id));           \
    CHECK_EQ(now_.started - (before).started, (s));            \
    CHECK_EQ(now_.committed - (before).committed, (c));        \
    CHECK_EQ(now_.aborted - (before).aborted, (a));            \
  } while (0)

#endif /* WDPOOL_TESTS_ABI_V1_H */
