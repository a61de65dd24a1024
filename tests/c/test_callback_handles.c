/*
 * test_callback_handles: the producer handle a callback gets is valid
 * exactly while the callback runs, from any thread, at any nesting depth.
 *
 *   - Another thread using the handle while the callback returns: every
 *     call it makes returns OK until the callback has returned, then
 *     STALE_HANDLE from then on; nothing in between, no crash (ASan).
 *   - Callbacks nested 40 deep on one thread (deeper than the handles kept
 *     per thread without the registry): each level's handle works inside
 *     its callback and is stale once it returned; checkin refuses each
 *     with INVALID_ARGUMENT while it is live.
 *   - A handle of a thread that ended stays stale when a new thread takes
 *     its place and runs callbacks of its own.
 *   - A pool handle freed while another thread's callback runs on it: the
 *     callback goes on (its producer works), new calls with the handle get
 *     STALE_HANDLE, and the pool's shutdown comes only after the callback
 *     returned; and 4 threads calling with on handles another thread frees
 *     and replaces, 150 times (each call: OK or STALE_HANDLE, nothing else).
 *
 * Under ASan, UBSan and LeakSanitizer, against librdkafka's in-process mock
 * cluster (api_harness.h), with deliver = false producers (no broker
 * round trip per call).
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "support.h"
#include "api_harness.h"
#include "abi_v1.h"
#include "wdpool.h"

#define THREAD_DEADLINE_MS 30000
#define ROUNDS 100
#define NEST_DEPTH 40

/* ------------------------------------------------------------------------
 * Another thread racing the callback's return. */

typedef struct race {
  atomic_uintptr_t handle; /* the callback's handle, 0 until published */
  atomic_long ok_calls;    /* calls that returned OK */
  atomic_bool returned;    /* the callback has returned */
  atomic_bool stop;
  long ok_after_return;    /* OK calls started after `returned` was seen */
  atomic_long stale;       /* STALE_HANDLE results */
  long other;              /* anything else */
  bool ok_after_stale;     /* an OK after a STALE_HANDLE */
} race;

static void race_user(void *arg) {
  race *r = arg;
  while (atomic_load(&r->handle) == 0) poll_pause();
  wdpool_producer *p = (wdpool_producer *)atomic_load(&r->handle);
  wdpool_message m = text_message(TOPIC, "race");
  bool seen_stale = false;
  while (!atomic_load(&r->stop)) {
    bool after_return = atomic_load(&r->returned);
    wdpool_producer_info info;
    wdpool_result rc = (atomic_load(&r->ok_calls) & 1)
                           ? wdpool_producer_get_info(p, &info, NULL)
                           : wdpool_producer_produce_async(p, &m, NULL, NULL);
    if (rc == WDPOOL_OK) {
      atomic_fetch_add(&r->ok_calls, 1);
      if (after_return) r->ok_after_return++;
      if (seen_stale) r->ok_after_stale = true;
    } else if (rc == WDPOOL_STALE_HANDLE) {
      seen_stale = true;
      if (atomic_fetch_add(&r->stale, 1) + 1 >= 3) break;
    } else {
      r->other++;
    }
  }
}

static int race_callback(void *user_data, wdpool_producer *producer) {
  race *r = user_data;
  atomic_store(&r->handle, (uintptr_t)producer);
  /* Return while the other thread is in the middle of its calls. */
  WAIT_UNTIL(atomic_load(&r->ok_calls) >= 50, THREAD_DEADLINE_MS);
  return WDPOOL_CB_OK;
}

static void test_race_with_return(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 1000, &setup);
  long ok_after_return = 0, other = 0, rounds_with_stale = 0;
  bool ok_after_stale = false;
  for (int round = 0; round < ROUNDS; round++) {
    race r;
    memset(&r, 0, sizeof r);
    bounded_thread user;
    CHECK(bounded_start(&user, race_user, &r));
    CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, race_callback, &r, CHECK_ERR), WDPOOL_OK);
    atomic_store(&r.returned, true);
    WAIT_UNTIL(atomic_load(&r.stale) >= 3 || bounded_done(&user), THREAD_DEADLINE_MS);
    atomic_store(&r.stop, true);
    BOUNDED_JOIN(&user, THREAD_DEADLINE_MS);
    ok_after_return += r.ok_after_return;
    other += r.other;
    rounds_with_stale += atomic_load(&r.stale) >= 3;
    ok_after_stale |= r.ok_after_stale;
  }
  CHECK_EQ(ok_after_return, 0);
  CHECK_EQ(other, 0);
  CHECK_EQ(rounds_with_stale, ROUNDS);
  CHECK(!ok_after_stale);
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Nesting deeper than the per-thread handles. */

typedef struct nest {
  const wdpool_pool *pool;
  int depth;
  wdpool_producer *handles[NEST_DEPTH];
  size_t index_at[NEST_DEPTH];
} nest;

static int nest_callback(void *user_data, wdpool_producer *producer) {
  nest *n = user_data;
  int level = n->depth++;
  n->handles[level] = producer;
  n->index_at[level] = producer_index(producer);
  wdpool_message m = text_message(TOPIC, "nested");
  CHECK_RC(wdpool_producer_produce_async(producer, &m, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(producer, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  if (n->depth < NEST_DEPTH) {
    CHECK_RC(wdpool_pool_with(n->pool, WDPOOL_TIMEOUT_DEFAULT, nest_callback, n, CHECK_ERR), WDPOOL_OK);
  }
  /* Every outer level's handle is still live while this one runs. */
  for (int i = 0; i <= level; i++) {
    wdpool_producer_info info;
    CHECK_RC(wdpool_producer_get_info(n->handles[i], &info, CHECK_ERR), WDPOOL_OK);
  }
  return WDPOOL_CB_OK;
}

static void test_deep_nesting(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 1000, &setup);
  nest n;
  memset(&n, 0, sizeof n);
  n.pool = pool;
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, nest_callback, &n, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(n.depth, NEST_DEPTH);
  for (int i = 0; i < NEST_DEPTH; i++) {
    wdpool_producer_info info;
    CHECK_EQ(n.index_at[i], 0); /* a pool of 1, re-entered on one thread */
    CHECK_RC_BOTH(wdpool_producer_get_info(n.handles[i], &info, CHECK_ERR), WDPOOL_STALE_HANDLE);
    CHECK_RC(wdpool_producer_checkin(n.handles[i], CHECK_ERR), WDPOOL_STALE_HANDLE);
    for (int j = 0; j < i; j++) CHECK(n.handles[i] != n.handles[j]);
  }
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Handles of threads that ended. */

typedef struct kept {
  const wdpool_pool *pool;
  wdpool_producer *handle;
} kept;

static int keep_callback(void *user_data, wdpool_producer *producer) {
  ((kept *)user_data)->handle = producer;
  return WDPOOL_CB_OK;
}

static void with_on_thread(void *arg) {
  kept *k = arg;
  CHECK_RC(wdpool_pool_with(k->pool, WDPOOL_TIMEOUT_DEFAULT, keep_callback, k, CHECK_ERR), WDPOOL_OK);
}

static void test_ended_threads(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(2, 1000, &setup);
  enum { THREADS = 20 };
  kept handles[THREADS];
  for (int i = 0; i < THREADS; i++) {
    handles[i] = (kept){.pool = pool, .handle = NULL};
    bounded_thread t;
    CHECK(bounded_start(&t, with_on_thread, &handles[i]));
    BOUNDED_JOIN(&t, THREAD_DEADLINE_MS);
    CHECK(handles[i].handle != NULL);
    /* Every handle so far, of this thread and of the ones before it. */
    for (int j = 0; j <= i; j++) {
      wdpool_producer_info info;
      CHECK_RC(wdpool_producer_get_info(handles[j].handle, &info, CHECK_ERR), WDPOOL_STALE_HANDLE);
    }
  }
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Pool handles freed while in use. */

typedef struct busy {
  atomic_bool inside;
  atomic_bool may_return;
  long produced_after_free; /* OK produces after the free */
} busy;

static int busy_callback(void *user_data, wdpool_producer *producer) {
  busy *b = user_data;
  atomic_store(&b->inside, true);
  WAIT_UNTIL(atomic_load(&b->may_return), THREAD_DEADLINE_MS);
  wdpool_message m = text_message(TOPIC, "after free");
  for (int i = 0; i < 10; i++)
    b->produced_after_free += wdpool_producer_produce_sync(producer, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, NULL) == WDPOOL_OK;
  return WDPOOL_CB_OK;
}

typedef struct busy_job {
  wdpool_pool *pool;
  busy *b;
  wdpool_result rc;
} busy_job;

static void busy_with(void *arg) {
  busy_job *j = arg;
  j->rc = wdpool_pool_with(j->pool, WDPOOL_TIMEOUT_DEFAULT, busy_callback, j->b, NULL);
}

static int noop_callback(void *user_data, wdpool_producer *producer) {
  (void)user_data;
  (void)producer;
  return WDPOOL_CB_OK;
}

static void test_free_while_in_use(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(2, 1000, &setup);
  uint64_t id = wdpool_pool_id(pool);
  busy b;
  memset(&b, 0, sizeof b);
  busy_job job = {.pool = pool, .b = &b, .rc = WDPOOL_TRANSACTION_EXITED_EARLY};
  bounded_thread t;
  CHECK(bounded_start(&t, busy_with, &job));
  WAIT_UNTIL(atomic_load(&b.inside), THREAD_DEADLINE_MS);

  wdpool_pool_free(pool);
  /* The handle is stale at once for new calls... */
  CHECK_RC_BOTH(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, noop_callback, NULL, CHECK_ERR), WDPOOL_STALE_HANDLE);
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, 0, &p, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC(wdpool_pool_try_checkout(pool, WDPOOL_OWNER_THREAD, &p, CHECK_ERR), WDPOOL_STALE_HANDLE);
  /* ...but the pool is not closed while the callback runs. */
  wdpool_events_drain(100, 100000, NULL, NULL);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_SHUTDOWN), 0);

  atomic_store(&b.may_return, true);
  BOUNDED_JOIN(&t, THREAD_DEADLINE_MS);
  CHECK_EQ(job.rc, WDPOOL_OK);
  CHECK_EQ(b.produced_after_free, 10);
  /* Now it closes, in the background. */
  CHECK_EQ(event_log_drain_until(&events, id, WDPOOL_EVENT_SHUTDOWN, 1, THREAD_DEADLINE_MS), 1);
}

/* As many threads as producers: nobody waits for one (under valgrind,
 * which runs one thread at a time, waiting threads would starve the main
 * one that frees and replaces the pools). */
enum { CHURN_THREADS = 4, CHURN_ROUNDS = 150 };

typedef struct churn {
  atomic_uintptr_t pool; /* the current handle */
  atomic_long round;     /* bumped when the handle is replaced */
  atomic_long ready;     /* users that did their calls of this round */
  atomic_bool stop;
  atomic_long ok, stale, other;
} churn;

/* Two calls per round (the first ones racing the free of the previous
 * handle), then a pause until the next round: busy threads would starve
 * the main one under valgrind, which runs one thread at a time. */
static void churn_user(void *arg) {
  churn *c = arg;
  long seen = -1;
  int calls = 0;
  while (!atomic_load(&c->stop)) {
    long round = atomic_load(&c->round);
    if (round != seen) {
      seen = round;
      calls = 0;
    } else if (calls >= 2) {
      poll_pause();
      continue;
    }
    const wdpool_pool *pool = (const wdpool_pool *)atomic_load(&c->pool);
    wdpool_producer *p = NULL;
    wdpool_result rc = (calls & 1) ? wdpool_pool_with(pool, 100, noop_callback, NULL, NULL)
                                   : wdpool_pool_try_checkout(pool, WDPOOL_OWNER_NONE, &p, NULL);
    if (rc == WDPOOL_OK && p != NULL) rc = wdpool_producer_checkin(p, NULL);
    if (rc == WDPOOL_OK) atomic_fetch_add(&c->ok, 1);
    else if (rc == WDPOOL_STALE_HANDLE || rc == WDPOOL_CLOSED || rc == WDPOOL_TIMEOUT) atomic_fetch_add(&c->stale, 1);
    else atomic_fetch_add(&c->other, 1);
    if (++calls == 2) atomic_fetch_add(&c->ready, 1);
  }
}

static void test_free_churn(void) {
  pool_setup setup = {.no_deliver = true};
  churn c;
  memset(&c, 0, sizeof c);
  atomic_store(&c.pool, (uintptr_t)make_pool(CHURN_THREADS, 100, &setup));
  bounded_thread users[CHURN_THREADS];
  for (int i = 0; i < CHURN_THREADS; i++) CHECK(bounded_start(&users[i], churn_user, &c));
  for (int round = 0; round < CHURN_ROUNDS; round++) {
    wdpool_pool *next = make_pool(CHURN_THREADS, 100, &setup);
    atomic_store(&c.ready, 0);
    wdpool_pool *old = (wdpool_pool *)atomic_exchange(&c.pool, (uintptr_t)next);
    atomic_fetch_add(&c.round, 1);
    wdpool_pool_free(old); /* while users may still be in calls on it */
    WAIT_UNTIL(atomic_load(&c.ready) >= CHURN_THREADS, THREAD_DEADLINE_MS);
  }
  atomic_store(&c.stop, true);
  for (int i = 0; i < CHURN_THREADS; i++) BOUNDED_JOIN(&users[i], THREAD_DEADLINE_MS);
  wdpool_pool_free((wdpool_pool *)atomic_load(&c.pool));
  CHECK_EQ(atomic_load(&c.other), 0);
  CHECK(atomic_load(&c.ok) + atomic_load(&c.stale) >= (long)CHURN_ROUNDS * CHURN_THREADS * 2);
  CHECK(atomic_load(&c.ok) > CHURN_ROUNDS);
  /* Every pool freed gets its shutdown (queued: drained here). */
  wdpool_events_drain(100, 100000, NULL, NULL);
}

int main(void) {
  abi_program = "test_callback_handles";
  if (!api_setup()) return check_summary(abi_program);

  test_race_with_return();
  test_deep_nesting();
  test_ended_threads();
  test_free_while_in_use();
  test_free_churn();

  return api_teardown(abi_program);
}
