/*
 * test_finalizers: what a garbage collector's finalizer, or a subscriber's
 * finalizer, may do, and the handles it may be given.
 *
 *   (a) wdpool_pool_free of an unclosed pool with messages in flight to a
 *       broker that is down returns at once: no subscriber runs on the
 *       freeing thread during the call; the pool's shutdown event comes
 *       later, queued for wdpool_events_drain, and counts the undelivered
 *       messages; the freed handle is stale everywhere; freeing it again
 *       does nothing;
 *   (b) a subscriber's finalizer that unsubscribes another subscription,
 *       subscribes a new one and creates and frees a pool does not
 *       deadlock; events still reach the subscribers afterwards; every
 *       finalizer runs exactly once;
 *   (c) the event queue is bounded (wdpool_events_set_limits): it never
 *       holds more than its bounds, drops the oldest and counts them;
 *   (d) handles of the wrong kind, garbage and freed handles: refused with
 *       WDPOOL_INVALID_ARGUMENT / WDPOOL_STALE_HANDLE, and every _free of
 *       one does nothing.
 *
 * Under ASan, UBSan and LeakSanitizer, against librdkafka's in-process mock
 * clusters (the harness's, and one of this program's own for the broker
 * that goes down). Risky calls run on bounded threads (abi_v1.h).
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

#define GENEROUS_MS 10000
#define THREAD_DEADLINE_MS 60000

/* ------------------------------------------------------------------------
 * (a) Freeing an unclosed pool with messages in flight. */

static _Thread_local bool in_free; /* this thread is inside wdpool_pool_free */
static atomic_int calls_during_free;
static atomic_int calls_total;

static void watch_free(void *user_data, const wdpool_event *event) {
  (void)user_data;
  (void)event;
  atomic_fetch_add(&calls_total, 1);
  if (in_free) atomic_fetch_add(&calls_during_free, 1);
}

static int configure_down(void *user_data, wdpool_config *config, size_t index) {
  const char *servers = user_data;
  (void)index;
  wdpool_result rc = wdpool_config_set_kafka(config, "bootstrap.servers", servers, NULL);
  if (rc == WDPOOL_OK) rc = wdpool_config_set_kafka(config, "log_level", "0", NULL);
  if (rc == WDPOOL_OK) rc = wdpool_config_set_max_wait_timeout(config, 3000, NULL);
  return rc == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static void test_free_in_flight(void) {
  wdpool_mock_cluster *cluster = NULL;
  CHECK_RC(wdpool_mock_cluster_new(1, &cluster, CHECK_ERR), WDPOOL_OK);
  if (cluster == NULL) return;
  CHECK_RC(wdpool_mock_cluster_create_topic(cluster, TOPIC, 4, CHECK_ERR), WDPOOL_OK);
  uint64_t watcher = 0;
  CHECK_RC(wdpool_subscribe(watch_free, NULL, NULL, &watcher, CHECK_ERR), WDPOOL_OK);

  wdpool_options options = {.size = 1, .timeout_ms = 5000};
  wdpool_pool *pool = NULL;
  CHECK_RC(wdpool_pool_new(&options, configure_down, (void *)wdpool_mock_cluster_bootstrap_servers(cluster), &pool,
                           CHECK_ERR),
           WDPOOL_OK);
  if (pool == NULL) {
    wdpool_unsubscribe(watcher, NULL);
    wdpool_mock_cluster_free(cluster);
    return;
  }
  uint64_t id = wdpool_pool_id(pool);

  /* One message delivered, then three in flight to a broker that is down. */
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  if (p != NULL) {
    produce_one(p, NULL);
    CHECK_RC(wdpool_mock_cluster_set_broker_up(cluster, 1, false, CHECK_ERR), WDPOOL_OK);
    for (int i = 0; i < 3; i++) {
      wdpool_message m = text_message(TOPIC, "in flight");
      CHECK_RC(wdpool_producer_produce_async(p, &m, NULL, CHECK_ERR), WDPOOL_OK);
    }
    CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  }
  size_t shutdowns_before = event_log_count(&events, id, WDPOOL_EVENT_SHUTDOWN);
  CHECK_EQ(shutdowns_before, 0);

  in_free = true;
  int64_t start = now_ms();
  wdpool_pool_free(pool);
  int64_t took = now_ms() - start;
  in_free = false;
  /* It returned before the close it started (a flush of up to 3 s) was
   * over: the shutdown event has not arrived, and nothing ran here. */
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_SHUTDOWN), 0);
  CHECK_EQ(atomic_load(&calls_during_free), 0);
  CHECK(took < 3000);
  /* Not even queued yet: a drain that does not wait does not deliver it
   * (a free that closed the pool before returning would have queued it). */
  CHECK_RC(wdpool_events_drain(0, 100000, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_SHUTDOWN), 0);

  /* The freed handle is stale everywhere, at once. */
  body b = {produce_one, NULL, WDPOOL_CB_OK, NULL, 0};
  wdpool_statistics s;
  wdpool_producer *none = NULL;
  CHECK_RC_BOTH(wdpool_pool_stats(pool, &s, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &none, CHECK_ERR),
                WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_pool_checkout(pool, WDPOOL_OWNER_NONE, 0, &none, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_pool_close(pool, true, NULL, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_pool_reload(pool, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_EQ(wdpool_pool_id(pool), 0);
  CHECK_EQ(b.calls, 0);
  CHECK(none == NULL);
  wdpool_pool_free(pool); /* again: nothing */
  CHECK_RC(wdpool_pool_stats(pool, &s, CHECK_ERR), WDPOOL_STALE_HANDLE);

  /* The shutdown event arrives through the drain, on this thread, once the
   * background close gave up flushing, with the three messages
   * undelivered. */
  CHECK_EQ(event_log_drain_until(&events, id, WDPOOL_EVENT_SHUTDOWN, 1, 3000 + GENEROUS_MS), 1);
  recorded_event e;
  memset(&e, 0, sizeof e);
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_SHUTDOWN, 0, &e, NULL))) {
    CHECK_EQ(e.undelivered, 3);
    CHECK_EQ(e.size, 1);
    CHECK(!e.global);
    CHECK(pthread_equal(e.thread, main_thread));
  }
  CHECK_EQ(atomic_load(&calls_during_free), 0);
  CHECK(atomic_load(&calls_total) >= 2); /* created, shutdown */
  CHECK_RC(wdpool_unsubscribe(watcher, CHECK_ERR), WDPOOL_OK);
  wdpool_mock_cluster_free(cluster);
}

/* ------------------------------------------------------------------------
 * (b) A finalizer that calls wdpool. */

typedef struct sub {
  uint64_t id;
  atomic_int finalized;
  atomic_int created;        /* connection_pool.created events seen */
  atomic_bool unsubscribed;  /* set before its unsubscribe */
  atomic_int after_unsubscribe;
} sub;

static void sub_init(sub *s) {
  s->id = 0;
  atomic_init(&s->finalized, 0);
  atomic_init(&s->created, 0);
  atomic_init(&s->unsubscribed, false);
  atomic_init(&s->after_unsubscribe, 0);
}

static void sub_on_event(void *user_data, const wdpool_event *event) {
  sub *s = user_data;
  if (atomic_load(&s->unsubscribed)) atomic_fetch_add(&s->after_unsubscribe, 1);
  if (event->kind == WDPOOL_EVENT_CREATED) atomic_fetch_add(&s->created, 1);
}

static void sub_finalize(void *user_data) {
  sub *s = user_data;
  atomic_fetch_add(&s->finalized, 1);
}

typedef struct busy_finalizer {
  sub self;
  sub *victim;   /* unsubscribed by the finalizer */
  sub *newcomer; /* subscribed by the finalizer */
  wdpool_result unsubscribe_rc, subscribe_rc, pool_rc;
  uint64_t pool_id;
  atomic_int newcomer_created_at_end; /* what the newcomer had seen when the finalizer returned */
} busy_finalizer;

static int configure_quiet(void *user_data, wdpool_config *config, size_t index) {
  (void)user_data;
  (void)index;
  return wdpool_config_set_deliver(config, false, NULL) == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static void busy_finalize(void *user_data) {
  busy_finalizer *f = user_data;
  atomic_fetch_add(&f->self.finalized, 1);
  atomic_store(&f->victim->unsubscribed, true);
  f->unsubscribe_rc = wdpool_unsubscribe(f->victim->id, NULL);
  f->subscribe_rc = wdpool_subscribe(sub_on_event, f->newcomer, sub_finalize, &f->newcomer->id, NULL);
  wdpool_options options = {.size = 1, .timeout_ms = 100};
  wdpool_pool *pool = NULL;
  f->pool_rc = wdpool_pool_new(&options, configure_quiet, NULL, &pool, NULL);
  f->pool_id = wdpool_pool_id(pool);
  wdpool_pool_free(pool);
  atomic_store(&f->newcomer_created_at_end, atomic_load(&f->newcomer->created));
}

static void unsubscribe_on_thread(void *arg) {
  busy_finalizer *f = arg;
  atomic_store(&f->self.unsubscribed, true);
  CHECK_RC(wdpool_unsubscribe(f->self.id, CHECK_ERR), WDPOOL_OK);
}

static void test_busy_finalizer(void) {
  sub victim, newcomer;
  sub_init(&victim);
  sub_init(&newcomer);
  busy_finalizer f = {.victim = &victim, .newcomer = &newcomer, .unsubscribe_rc = WDPOOL_PANIC,
                      .subscribe_rc = WDPOOL_PANIC, .pool_rc = WDPOOL_PANIC};
  sub_init(&f.self);
  atomic_init(&f.newcomer_created_at_end, -1);
  CHECK_RC(wdpool_subscribe(sub_on_event, &victim, sub_finalize, &victim.id, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_subscribe(sub_on_event, &f.self, busy_finalize, &f.self.id, CHECK_ERR), WDPOOL_OK);

  /* Both see a pool's creation. */
  wdpool_options options = {.size = 1, .timeout_ms = 100};
  wdpool_pool *pool = NULL;
  CHECK_RC(wdpool_pool_new(&options, configure_quiet, NULL, &pool, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(atomic_load(&victim.created), 1);
  CHECK_EQ(atomic_load(&f.self.created), 1);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);

  /* Unsubscribing it runs its finalizer on the unsubscribing thread (no
   * delivery runs now): it must not deadlock. */
  bounded_thread t;
  if (bounded_start(&t, unsubscribe_on_thread, &f)) BOUNDED_JOIN(&t, THREAD_DEADLINE_MS);
  CHECK_EQ(atomic_load(&f.self.finalized), 1);
  CHECK_EQ(f.unsubscribe_rc, WDPOOL_OK);
  CHECK_EQ(f.subscribe_rc, WDPOOL_OK);
  CHECK_EQ(f.pool_rc, WDPOOL_OK);
  CHECK(f.pool_id != 0);
  CHECK(newcomer.id != 0 && newcomer.id != victim.id && newcomer.id != f.self.id);
  WAIT_UNTIL(atomic_load(&victim.finalized) >= 1, GENEROUS_MS);
  CHECK_EQ(atomic_load(&victim.finalized), 1);
  /* The pool made inside the finalizer: its creation reached the newcomer
   * and the program's recorder, not the two unsubscribed ones. */
  CHECK_EQ(atomic_load(&f.newcomer_created_at_end), 1);
  CHECK_EQ(event_log_count(&events, f.pool_id, WDPOOL_EVENT_CREATED), 1);
  CHECK_EQ(atomic_load(&victim.created), 1);
  CHECK_EQ(atomic_load(&f.self.created), 1);

  /* An event after all that still reaches the subscribers. */
  pool = NULL;
  CHECK_RC(wdpool_pool_new(&options, configure_quiet, NULL, &pool, CHECK_ERR), WDPOOL_OK);
  uint64_t id = wdpool_pool_id(pool);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_CREATED), 1);
  CHECK_EQ(atomic_load(&newcomer.created), 2);
  CHECK_EQ(atomic_load(&victim.created), 1);
  CHECK_EQ(atomic_load(&f.self.created), 1);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);

  atomic_store(&newcomer.unsubscribed, true);
  CHECK_RC(wdpool_unsubscribe(newcomer.id, CHECK_ERR), WDPOOL_OK);
  WAIT_UNTIL(atomic_load(&newcomer.finalized) >= 1, GENEROUS_MS);

  /* Each finalizer ran exactly once; nobody was called after its
   * unsubscribe; the ids are gone. */
  CHECK_EQ(atomic_load(&f.self.finalized), 1);
  CHECK_EQ(atomic_load(&victim.finalized), 1);
  CHECK_EQ(atomic_load(&newcomer.finalized), 1);
  CHECK_EQ(atomic_load(&f.self.after_unsubscribe), 0);
  CHECK_EQ(atomic_load(&victim.after_unsubscribe), 0);
  CHECK_EQ(atomic_load(&newcomer.after_unsubscribe), 0);
  CHECK_RC(wdpool_unsubscribe(victim.id, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC(wdpool_unsubscribe(f.self.id, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC(wdpool_unsubscribe(newcomer.id, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);

  /* The finalizer's pool was freed unclosed: its shutdown is queued. */
  CHECK_EQ(event_log_drain_until(&events, f.pool_id, WDPOOL_EVENT_SHUTDOWN, 1, GENEROUS_MS), 1);
}

/* ------------------------------------------------------------------------
 * (c) The event queue is bounded. */

#define LIMIT_EVENTS 50
#define LIMIT_BYTES (64 * 1024)

static void test_bounded_queue(void) {
  /* Start from an empty queue. */
  size_t drained = 0;
  do drained = 0, wdpool_events_drain(0, 100000, &drained, NULL);
  while (drained > 0);

  CHECK_RC(wdpool_events_set_limits(LIMIT_EVENTS, LIMIT_BYTES, CHECK_ERR), WDPOOL_OK);
  wdpool_events_statistics q;
  CHECK_RC(wdpool_events_stats(&q, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(q.max_events, LIMIT_EVENTS);
  CHECK_EQ(q.max_bytes, LIMIT_BYTES);
  uint64_t dropped_before = q.dropped;

  pool_setup setup = {.extra_key = "statistics.interval.ms", .extra_value = "10"};
  wdpool_pool *pool = make_pool(3, 5000, &setup);
  uint64_t id = wdpool_pool_id(pool);
  /* Check three out at once, so that all three producers exist. */
  wdpool_producer *p[3] = {NULL, NULL, NULL};
  for (int i = 0; i < 3; i++)
    CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_NONE, WDPOOL_TIMEOUT_DEFAULT, &p[i], CHECK_ERR), WDPOOL_OK);
  for (int i = 0; i < 3; i++)
    if (p[i] != NULL) CHECK_RC(wdpool_producer_checkin(p[i], CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).created, 3);

  /* Nobody drains: the queue fills up and drops the oldest, never holding
   * more than its bounds. */
  size_t polls = 0, failures = 0, over_events = 0, over_bytes = 0, wrong_limits = 0;
  int64_t deadline = now_ms() + 30000;
  do {
    if (wdpool_events_stats(&q, NULL) != WDPOOL_OK) failures++;
    polls++;
    if (q.queued > LIMIT_EVENTS) over_events++;
    if (q.queued_bytes > LIMIT_BYTES) over_bytes++;
    if (q.max_events != LIMIT_EVENTS || q.max_bytes != LIMIT_BYTES) wrong_limits++;
    if (q.dropped > dropped_before) break;
    poll_pause();
  } while (now_ms() < deadline);
  CHECK(q.dropped > dropped_before);
  CHECK(polls >= 1);
  CHECK_EQ(failures, 0);
  CHECK_EQ(over_events, 0);
  CHECK_EQ(over_bytes, 0);
  CHECK_EQ(wrong_limits, 0);
  CHECK(q.queued >= 1);
  /* A few more looks while it keeps dropping. */
  for (int i = 0; i < 50; i++) {
    if (wdpool_events_stats(&q, NULL) != WDPOOL_OK) failures++;
    if (q.queued > LIMIT_EVENTS || q.queued_bytes > LIMIT_BYTES) over_events++;
    poll_pause();
  }
  CHECK_EQ(failures, 0);
  CHECK_EQ(over_events, 0);

  /* One drain delivers what the queue holds: at most 50. */
  size_t stats_before = event_log_count(&events, id, WDPOOL_EVENT_STATISTICS);
  drained = 0;
  CHECK_RC(wdpool_events_drain(0, 100000, &drained, CHECK_ERR), WDPOOL_OK);
  CHECK(drained >= 1);
  CHECK(drained <= LIMIT_EVENTS);
  size_t stats_after = event_log_count(&events, id, WDPOOL_EVENT_STATISTICS);
  CHECK(stats_after - stats_before <= LIMIT_EVENTS);
  CHECK(stats_after > stats_before);

  /* Tighter bounds drop at once what exceeds them, oldest first. */
  WAIT_UNTIL((wdpool_events_stats(&q, NULL), q.queued >= 5), GENEROUS_MS);
  CHECK(q.queued >= 5);
  uint64_t dropped = q.dropped;
  CHECK_RC(wdpool_events_set_limits(2, LIMIT_BYTES, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_events_stats(&q, CHECK_ERR), WDPOOL_OK);
  CHECK(q.queued <= 2);
  CHECK(q.dropped >= dropped + 3);
  CHECK_EQ(q.max_events, 2);

  wdpool_pool_free(pool);
  /* Back to the defaults. */
  CHECK_RC(wdpool_events_set_limits(WDPOOL_EVENTS_QUEUE_CAPACITY, WDPOOL_EVENTS_QUEUE_CAPACITY_BYTES, CHECK_ERR),
           WDPOOL_OK);
  CHECK_RC(wdpool_events_stats(&q, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(q.max_events, WDPOOL_EVENTS_QUEUE_CAPACITY);
  CHECK_EQ(q.max_bytes, WDPOOL_EVENTS_QUEUE_CAPACITY_BYTES);
  /* The freed pool's shutdown comes through with the default bounds. */
  CHECK_EQ(event_log_drain_until(&events, id, WDPOOL_EVENT_SHUTDOWN, 1, GENEROUS_MS), 1);
}

/* ------------------------------------------------------------------------
 * (d) Handles of the wrong kind, garbage and freed handles. */

static int configure_keep(void *user_data, wdpool_config *config, size_t index) {
  wdpool_config **kept = user_data;
  (void)index;
  *kept = config;
  return wdpool_config_set_deliver(config, false, NULL) == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static void test_wrong_handles(void) {
  wdpool_config *config = NULL;
  wdpool_options options = {.size = 1, .timeout_ms = 1000};
  wdpool_pool *pool = NULL;
  CHECK_RC(wdpool_pool_new(&options, configure_keep, &config, &pool, CHECK_ERR), WDPOOL_OK);
  wdpool_mock_cluster *mock = NULL;
  CHECK_RC(wdpool_mock_cluster_new(1, &mock, CHECK_ERR), WDPOOL_OK);
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_message m = text_message(TOPIC, "x");
  wdpool_delivery *d = NULL;
  CHECK_RC(wdpool_producer_produce_async(p, &m, &d, CHECK_ERR), WDPOOL_OK);
  if (!CHECK(pool != NULL && mock != NULL && p != NULL && d != NULL && config != NULL)) return;
  CHECK_RC(wdpool_delivery_wait(d, MAX_WAIT_MS, CHECK_ERR), WDPOOL_OK);

  wdpool_statistics s;
  wdpool_producer_info info;
  wdpool_report r;
  wdpool_close_report cr;
  body b = {NULL, NULL, WDPOOL_CB_OK, NULL, 0};
  wdpool_producer *none = NULL;

  /* Where a pool handle is expected. */
  const wdpool_pool *not_pools[] = {(const wdpool_pool *)p, (const wdpool_pool *)d, (const wdpool_pool *)mock,
                                    (const wdpool_pool *)config, (const wdpool_pool *)(uintptr_t)0xdeadbeef};
  for (size_t i = 0; i < sizeof not_pools / sizeof not_pools[0]; i++) {
    const wdpool_pool *x = not_pools[i];
    CHECK_RC_BOTH(wdpool_pool_stats(x, &s, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC_BOTH(wdpool_pool_with(x, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_pool_transaction(x, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_pool_checkout(x, WDPOOL_OWNER_THREAD, 0, &none, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_pool_close(x, true, &cr, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_pool_reload(x, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_EQ(wdpool_pool_id(x), 0);
  }
  CHECK_EQ(b.calls, 0);
  CHECK(none == NULL);

  /* Where a producer handle is expected. */
  wdpool_producer *not_producers[] = {(wdpool_producer *)pool, (wdpool_producer *)d, (wdpool_producer *)mock,
                                      (wdpool_producer *)config, (wdpool_producer *)(uintptr_t)0xdeadbeef};
  for (size_t i = 0; i < sizeof not_producers / sizeof not_producers[0]; i++) {
    wdpool_producer *x = not_producers[i];
    wdpool_delivery *dx = NULL;
    CHECK_RC_BOTH(wdpool_producer_get_info(x, &info, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_producer_produce_sync(x, &m, 100, NULL, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_producer_produce_many_sync(x, &m, 1, 100, NULL, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_producer_produce_async(x, &m, &dx, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_producer_produce_many_async(x, &m, 1, &dx, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_producer_flush(x, 100, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_producer_transaction(x, run_body, &b, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_producer_begin(x, 100, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_producer_end(x, WDPOOL_TXN_COMMIT, 100, NULL, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_producer_commit(x, 100, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_producer_abort(x, 100, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC_BOTH(wdpool_producer_checkin(x, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK(dx == NULL);
  }
  CHECK_EQ(b.calls, 0);

  /* Where a delivery handle is expected. */
  const wdpool_delivery *not_deliveries[] = {(const wdpool_delivery *)pool, (const wdpool_delivery *)p,
                                             (const wdpool_delivery *)mock, (const wdpool_delivery *)config,
                                             (const wdpool_delivery *)(uintptr_t)0xdeadbeef};
  for (size_t i = 0; i < sizeof not_deliveries / sizeof not_deliveries[0]; i++) {
    const wdpool_delivery *x = not_deliveries[i];
    CHECK_RC_BOTH(wdpool_delivery_wait(x, 0, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC_BOTH(wdpool_delivery_report(x, 0, &r, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_EQ(wdpool_delivery_count(x), 0);
    CHECK_EQ(wdpool_delivery_pending(x), 0);
  }

  /* Where a config handle is expected (the kept one is stale: its callback
   * returned). */
  wdpool_config *not_configs[] = {(wdpool_config *)pool, (wdpool_config *)p, (wdpool_config *)d,
                                  (wdpool_config *)mock, (wdpool_config *)(uintptr_t)0xdeadbeef};
  for (size_t i = 0; i < sizeof not_configs / sizeof not_configs[0]; i++) {
    wdpool_config *x = not_configs[i];
    CHECK_RC_BOTH(wdpool_config_set_kafka(x, "acks", "all", CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_config_set_deliver(x, false, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_config_set_max_wait_timeout(x, 100, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_config_set_max_payload_size(x, 100, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_config_set_id(x, "x", CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  }
  CHECK_RC(wdpool_config_set_kafka(config, "acks", "all", CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC(wdpool_config_set_deliver(config, false, CHECK_ERR), WDPOOL_STALE_HANDLE);

  /* Where a mock-cluster handle is expected. */
  const wdpool_mock_cluster *not_mocks[] = {(const wdpool_mock_cluster *)pool, (const wdpool_mock_cluster *)p,
                                            (const wdpool_mock_cluster *)d, (const wdpool_mock_cluster *)config,
                                            (const wdpool_mock_cluster *)(uintptr_t)0xdeadbeef};
  for (size_t i = 0; i < sizeof not_mocks / sizeof not_mocks[0]; i++) {
    const wdpool_mock_cluster *x = not_mocks[i];
    CHECK_RC_BOTH(wdpool_mock_cluster_create_topic(x, "c-wrong-kind", 1, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_mock_cluster_set_broker_up(x, 1, true, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_RC(wdpool_mock_cluster_set_rtt(x, 1, 0, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_STR(wdpool_mock_cluster_bootstrap_servers(x), "");
  }
  /* A bad topic name on a real cluster. */
  CHECK_RC_BOTH(wdpool_mock_cluster_create_topic(mock, "", 1, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC(wdpool_mock_cluster_create_topic(mock, "c-good", 0, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);

  /* Every _free of a handle of another kind or of garbage does nothing ... */
  wdpool_pool_free((wdpool_pool *)p);
  wdpool_pool_free((wdpool_pool *)d);
  wdpool_pool_free((wdpool_pool *)mock);
  wdpool_pool_free((wdpool_pool *)config);
  wdpool_pool_free((wdpool_pool *)(uintptr_t)0xdeadbeef);
  wdpool_delivery_free((wdpool_delivery *)pool);
  wdpool_delivery_free((wdpool_delivery *)p);
  wdpool_delivery_free((wdpool_delivery *)mock);
  wdpool_delivery_free((wdpool_delivery *)config);
  wdpool_delivery_free((wdpool_delivery *)(uintptr_t)0xdeadbeef);
  wdpool_mock_cluster_free((wdpool_mock_cluster *)pool);
  wdpool_mock_cluster_free((wdpool_mock_cluster *)p);
  wdpool_mock_cluster_free((wdpool_mock_cluster *)d);
  wdpool_mock_cluster_free((wdpool_mock_cluster *)config);
  wdpool_mock_cluster_free((wdpool_mock_cluster *)(uintptr_t)0xdeadbeef);
  /* ... so every handle still works. */
  CHECK_RC(wdpool_pool_stats(pool, &s, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(s.in_use, 1);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(wdpool_delivery_count(d), 1);
  CHECK_RC(wdpool_delivery_report(d, 0, &r, CHECK_ERR), WDPOOL_OK);
  CHECK(strlen(wdpool_mock_cluster_bootstrap_servers(mock)) > 0);
  CHECK_RC(wdpool_mock_cluster_create_topic(mock, "c-still-there", 1, CHECK_ERR), WDPOOL_OK);

  /* Freed handles: stale, and freeing them again does nothing. */
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  wdpool_delivery_free(d);
  CHECK_RC_BOTH(wdpool_delivery_wait(d, 0, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC(wdpool_delivery_report(d, 0, &r, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_EQ(wdpool_delivery_count(d), 0);
  CHECK_EQ(wdpool_delivery_pending(d), 0);
  wdpool_delivery_free(d);
  wdpool_mock_cluster_free(mock);
  CHECK_RC_BOTH(wdpool_mock_cluster_create_topic(mock, "c-gone", 1, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC(wdpool_mock_cluster_set_broker_up(mock, 1, true, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC(wdpool_mock_cluster_set_rtt(mock, 1, 0, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_STR(wdpool_mock_cluster_bootstrap_servers(mock), "");
  wdpool_mock_cluster_free(mock);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
  wdpool_pool_free(pool);
  CHECK_RC(wdpool_pool_stats(pool, &s, CHECK_ERR), WDPOOL_STALE_HANDLE);
  /* A freed handle of one kind given where another is expected is still the
   * wrong kind. */
  CHECK_RC(wdpool_producer_get_info((wdpool_producer *)pool, &info, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC(wdpool_pool_stats((wdpool_pool *)p, &s, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC(wdpool_delivery_wait((wdpool_delivery *)mock, 0, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  wdpool_delivery_free((wdpool_delivery *)pool);
  wdpool_mock_cluster_free((wdpool_mock_cluster *)d);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  abi_program = "test_finalizers";
  if (!api_setup()) return check_summary(abi_program);

  test_free_in_flight();
  test_busy_finalizer();
  test_bounded_queue();
  test_wrong_handles();

  return api_teardown(abi_program);
}
