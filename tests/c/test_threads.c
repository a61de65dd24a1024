/*
 * test_threads: many threads sharing one pool, under ASan, UBSan and
 * LeakSanitizer. A slot is never held by two threads at once: every
 * callback (or lease) marks its slot index in an atomic flag for as long as
 * it holds it, and checks nobody else had it marked.
 *
 *   test_with_test_mode     8 threads x 200 wdpool_pool_with, size 3, deliver=false
 *   test_with_mock_cluster  4 threads x 25 wdpool_pool_with + produce_sync, mock cluster
 *   test_checkout_checkin   6 threads x 100 wdpool_pool_checkout / wdpool_producer_checkin
 *   test_handoff            checkout on one thread, checkin on another (4 pairs x 100)
 *   test_close_under_load   4 threads in a loop while the pool reloads, then closes
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "support.h"
#include "wdpool.h"

#define POOL_SIZE 3
#define CHECKOUT_TIMEOUT_MS 10000 /* long: no checkout may time out here */
#define MAX_WAIT_MS 10000
#define TOPIC "c-threads"

static const char *brokers;

typedef struct shared {
  wdpool_pool *pool;
  uint64_t pool_id;
  int iterations;
  bool produce;
  /* How many holders each slot has right now: 0 or 1. */
  atomic_int holders[POOL_SIZE];
  atomic_long done;
} shared;

/* user_data: a bool, WaterDrop's `deliver` (true: the mock cluster). */
static int configure(void *user_data, wdpool_config *config, size_t index) {
  bool deliver = *(const bool *)user_data;
  (void)index;
  wdpool_result rc = wdpool_config_set_deliver(config, deliver, NULL);
  if (rc == WDPOOL_OK) rc = wdpool_config_set_max_wait_timeout(config, MAX_WAIT_MS, NULL);
  if (rc == WDPOOL_OK && deliver) rc = wdpool_config_set_kafka(config, "bootstrap.servers", brokers, NULL);
  if (rc == WDPOOL_OK && deliver) rc = wdpool_config_set_kafka(config, "linger.ms", "1", NULL);
  return rc == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static wdpool_pool *make_pool(bool deliver) {
  wdpool_options options = {.size = POOL_SIZE, .timeout_ms = CHECKOUT_TIMEOUT_MS};
  wdpool_pool *pool = NULL;
  CHECK_RC(wdpool_pool_new(&options, configure, &deliver, &pool, CHECK_ERR), WDPOOL_OK);
  return pool;
}

static void shared_init(shared *s, wdpool_pool *pool, int iterations, bool produce) {
  memset(s, 0, sizeof *s);
  s->pool = pool;
  s->pool_id = wdpool_pool_id(pool);
  s->iterations = iterations;
  s->produce = produce;
  for (int i = 0; i < POOL_SIZE; i++) atomic_init(&s->holders[i], 0);
  atomic_init(&s->done, 0);
}

/* Marks the producer's slot as held by this thread; returns its index, or
 * -1 when the handle is unusable. */
static int take_slot(shared *s, wdpool_producer *p) {
  wdpool_producer_info info;
  if (!CHECK(wdpool_producer_get_info(p, &info, NULL) == WDPOOL_OK)) return -1;
  if (!CHECK(info.index < POOL_SIZE) || !CHECK_EQ(info.pool_id, s->pool_id)) return -1;
  int before = atomic_fetch_add(&s->holders[info.index], 1);
  CHECK_EQ(before, 0);
  return (int)info.index;
}

static void release_slot(shared *s, int index) {
  if (index < 0) return;
  int before = atomic_fetch_sub(&s->holders[index], 1);
  CHECK_EQ(before, 1);
}

/* The work done while holding a producer: produce (or not), and give the
 * scheduler a chance to run another thread meanwhile. */
static void use_producer(shared *s, wdpool_producer *p) {
  if (s->produce) {
    wdpool_message m = text_message(TOPIC, "x");
    CHECK_RC(wdpool_producer_produce_sync(p, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);
  }
  sched_yield();
}

static void hold_and_use(wdpool_producer *p, void *ctx) {
  shared *s = ctx;
  int index = take_slot(s, p);
  use_producer(s, p);
  release_slot(s, index);
  atomic_fetch_add(&s->done, 1);
}

static void *with_worker(void *arg) {
  shared *s = arg;
  for (int i = 0; i < s->iterations; i++) {
    body b = {hold_and_use, s, WDPOOL_CB_OK, NULL, 0};
    CHECK_RC(wdpool_pool_with(s->pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
    CHECK_EQ(b.calls, 1);
  }
  return NULL;
}

static void *checkout_worker(void *arg) {
  shared *s = arg;
  for (int i = 0; i < s->iterations; i++) {
    wdpool_producer *p = NULL;
    CHECK_RC(wdpool_pool_checkout(s->pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
    if (p == NULL) continue;
    int index = take_slot(s, p);
    use_producer(s, p);
    release_slot(s, index);
    CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
    atomic_fetch_add(&s->done, 1);
  }
  return NULL;
}

static void run_threads(int count, void *(*worker)(void *), void *arg) {
  pthread_t threads[16];
  int started = 0;
  for (int t = 0; t < count && t < 16; t++) {
    if (CHECK_EQ(pthread_create(&threads[t], NULL, worker, arg), 0)) started++;
  }
  for (int t = 0; t < started; t++) CHECK_EQ(pthread_join(threads[t], NULL), 0);
}

static void check_quiet(const shared *s, long expected_done) {
  CHECK_EQ(atomic_load(&s->done), expected_done);
  wdpool_statistics stats;
  CHECK_RC(wdpool_pool_stats(s->pool, &stats, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats.in_use, 0);
  CHECK_EQ(stats.waiting, 0);
  CHECK(stats.created <= POOL_SIZE);
  CHECK(stats.creations <= POOL_SIZE);
  CHECK(stats.created >= 1);
  CHECK_EQ(stats.checkout_timeouts, 0);
  CHECK_EQ(stats.replaced, 0);
}

/* ------------------------------------------------------------------------ */

static void test_with_test_mode(void) {
  shared s;
  shared_init(&s, make_pool(false), 200, true);
  run_threads(8, with_worker, &s);
  check_quiet(&s, 8 * 200);
  wdpool_pool_free(s.pool);
}

static void test_with_mock_cluster(void) {
  shared s;
  shared_init(&s, make_pool(true), 25, true);
  run_threads(4, with_worker, &s);
  check_quiet(&s, 4 * 25);
  wdpool_close_report report;
  CHECK_RC(wdpool_pool_close(s.pool, false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK(report.closed >= 1 && report.closed <= POOL_SIZE);
  CHECK_EQ(report.undelivered, 0);
  CHECK_EQ(report.in_use, 0);
  wdpool_pool_free(s.pool);
}

static void test_checkout_checkin(void) {
  shared s;
  shared_init(&s, make_pool(false), 100, true);
  run_threads(6, checkout_worker, &s);
  check_quiet(&s, 6 * 100);
  wdpool_pool_free(s.pool);
}

/* ------------------------------------------------------------------------
 * Checkout on one thread, checkin on another. The giver waits until its
 * lease is back before checking out again: a thread that still holds a
 * lease would get the same producer again (re-entrancy is per thread). */

typedef struct mailbox {
  pthread_mutex_t lock;
  pthread_cond_t changed;
  wdpool_producer *producer; /* handed over, not yet taken */
  bool returned;             /* the taker checked it in */
  bool finished;
} mailbox;

typedef struct pair {
  shared *s;
  mailbox box;
} pair;

static void *giver(void *arg) {
  pair *pr = arg;
  for (int i = 0; i < pr->s->iterations; i++) {
    wdpool_producer *p = NULL;
    CHECK_RC(wdpool_pool_checkout(pr->s->pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
    if (p == NULL) break;
    pthread_mutex_lock(&pr->box.lock);
    pr->box.producer = p;
    pr->box.returned = false;
    pthread_cond_broadcast(&pr->box.changed);
    while (!pr->box.returned) pthread_cond_wait(&pr->box.changed, &pr->box.lock);
    pthread_mutex_unlock(&pr->box.lock);
  }
  pthread_mutex_lock(&pr->box.lock);
  pr->box.finished = true;
  pthread_cond_broadcast(&pr->box.changed);
  pthread_mutex_unlock(&pr->box.lock);
  return NULL;
}

static void *taker(void *arg) {
  pair *pr = arg;
  for (;;) {
    pthread_mutex_lock(&pr->box.lock);
    while (pr->box.producer == NULL && !pr->box.finished) pthread_cond_wait(&pr->box.changed, &pr->box.lock);
    wdpool_producer *p = pr->box.producer;
    pr->box.producer = NULL;
    pthread_mutex_unlock(&pr->box.lock);
    if (p == NULL) return NULL;

    int index = take_slot(pr->s, p);
    use_producer(pr->s, p);
    release_slot(pr->s, index);
    CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
    CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_STALE_HANDLE);
    atomic_fetch_add(&pr->s->done, 1);

    pthread_mutex_lock(&pr->box.lock);
    pr->box.returned = true;
    pthread_cond_broadcast(&pr->box.changed);
    pthread_mutex_unlock(&pr->box.lock);
  }
}

static void test_handoff(void) {
  enum { PAIRS = 4 };
  shared s;
  shared_init(&s, make_pool(false), 100, true);
  pair pairs[PAIRS];
  pthread_t threads[2 * PAIRS];
  for (int i = 0; i < PAIRS; i++) {
    pairs[i].s = &s;
    pthread_mutex_init(&pairs[i].box.lock, NULL);
    pthread_cond_init(&pairs[i].box.changed, NULL);
    pairs[i].box.producer = NULL;
    pairs[i].box.returned = false;
    pairs[i].box.finished = false;
    CHECK_EQ(pthread_create(&threads[2 * i], NULL, giver, &pairs[i]), 0);
    CHECK_EQ(pthread_create(&threads[2 * i + 1], NULL, taker, &pairs[i]), 0);
  }
  for (int i = 0; i < 2 * PAIRS; i++) CHECK_EQ(pthread_join(threads[i], NULL), 0);
  for (int i = 0; i < PAIRS; i++) {
    pthread_mutex_destroy(&pairs[i].box.lock);
    pthread_cond_destroy(&pairs[i].box.changed);
  }
  check_quiet(&s, PAIRS * 100);
  wdpool_pool_free(s.pool);
}

/* ------------------------------------------------------------------------
 * Reloads and a close while threads are busy: every call either works or
 * says WDPOOL_CLOSED, and every producer ends up closed. */

typedef struct loop_result {
  shared *s;
  int ok;
  int closed;
  int other;
  wdpool_result last;
} loop_result;

static void *loop_until_closed(void *arg) {
  loop_result *r = arg;
  for (int i = 0; i < 1000000; i++) {
    body b = {hold_and_use, r->s, WDPOOL_CB_OK, NULL, 0};
    wdpool_result rc = wdpool_pool_with(r->s->pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, NULL);
    r->last = rc;
    if (rc == WDPOOL_OK) {
      r->ok++;
    } else if (rc == WDPOOL_CLOSED) {
      r->closed++;
      break;
    } else {
      r->other++;
      break;
    }
  }
  return NULL;
}

/* Waits (bounded) until the workers have done `count` callbacks in all. */
static bool wait_for_progress(shared *s, long count) {
  int64_t deadline = now_ms() + 10000;
  while (atomic_load(&s->done) < count && now_ms() < deadline) poll_pause();
  return atomic_load(&s->done) >= count;
}

static void test_close_under_load(void) {
  enum { WORKERS = 4 };
  shared s;
  shared_init(&s, make_pool(false), 0, true);
  loop_result results[WORKERS];
  pthread_t threads[WORKERS];
  for (int i = 0; i < WORKERS; i++) {
    results[i] = (loop_result){.s = &s, .ok = 0, .closed = 0, .other = 0, .last = WDPOOL_PANIC};
    CHECK_EQ(pthread_create(&threads[i], NULL, loop_until_closed, &results[i]), 0);
  }
  for (int round = 1; round <= 5; round++) {
    CHECK(wait_for_progress(&s, round * 200L));
    CHECK_RC(wdpool_pool_reload(s.pool, CHECK_ERR), WDPOOL_OK);
  }
  CHECK(wait_for_progress(&s, 1200));
  wdpool_close_report report;
  CHECK_RC(wdpool_pool_close(s.pool, false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK(report.closed + report.in_use <= POOL_SIZE);
  CHECK_EQ(report.undelivered, 0);
  for (int i = 0; i < WORKERS; i++) CHECK_EQ(pthread_join(threads[i], NULL), 0);

  long ok = 0;
  for (int i = 0; i < WORKERS; i++) {
    CHECK_EQ(results[i].closed, 1);
    CHECK_EQ(results[i].other, 0);
    CHECK_EQ(results[i].last, WDPOOL_CLOSED);
    ok += results[i].ok;
  }
  CHECK_EQ(ok, atomic_load(&s.done));
  for (int i = 0; i < POOL_SIZE; i++) CHECK_EQ(atomic_load(&s.holders[i]), 0);

  wdpool_statistics stats;
  CHECK_RC(wdpool_pool_stats(s.pool, &stats, CHECK_ERR), WDPOOL_OK);
  CHECK(stats.closed);
  CHECK_EQ(stats.in_use, 0);
  CHECK_EQ(stats.created, 0); /* every producer was closed */
  CHECK_EQ(stats.waiting, 0);
  CHECK(stats.creations > POOL_SIZE); /* reloads made fresh ones */
  wdpool_pool_free(s.pool);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  wdpool_mock_cluster *mock = NULL;
  CHECK_RC(wdpool_mock_cluster_new(1, &mock, CHECK_ERR), WDPOOL_OK);
  if (mock == NULL) return check_summary("test_threads");
  brokers = wdpool_mock_cluster_bootstrap_servers(mock);
  CHECK_RC(wdpool_mock_cluster_create_topic(mock, TOPIC, 3, CHECK_ERR), WDPOOL_OK);

  test_with_test_mode();
  test_with_mock_cluster();
  test_checkout_checkin();
  test_handoff();
  test_close_under_load();

  wdpool_mock_cluster_free(mock);
  return check_summary("test_threads");
}
