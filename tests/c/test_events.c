/*
 * test_events: statistics events (queued, delivered only by
 * wdpool_events_drain), and subscriptions: finalizers, unknown ids,
 * unsubscribing from a callback, optional finalizer and id_out.
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

/* ------------------------------------------------------------------------
 * Statistics: queued, delivered only by wdpool_events_drain. */

static void test_statistics_events(void) {
  pool_setup setup = {.extra_key = "statistics.interval.ms", .extra_value = "100"};
  wdpool_pool *pool = make_pool(1, 1000, &setup);
  uint64_t id = wdpool_pool_id(pool);
  body b = {produce_one, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);

  /* Nothing arrives while nobody drains: a window of five intervals, not a
   * wait for a condition. Then a drain that does not wait delivers what was
   * queued meanwhile. */
  int64_t window_end = now_ms() + 500;
  while (now_ms() < window_end) poll_pause();
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_STATISTICS), 0);
  size_t drained = 0;
  CHECK_RC(wdpool_events_drain(0, 1000, &drained, CHECK_ERR), WDPOOL_OK);
  CHECK(drained >= 1);
  CHECK(event_log_count(&events, id, WDPOOL_EVENT_STATISTICS) >= 1);

  CHECK(event_log_drain_until(&events, id, WDPOOL_EVENT_STATISTICS, 2, EVENT_DEADLINE_MS) >= 2);
  recorded_event e;
  memset(&e, 0, sizeof e);
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_STATISTICS, 0, &e, NULL))) {
    CHECK(e.message_len > 0);
    CHECK(e.message_head[0] == '{');
    CHECK(e.well_formed);
    CHECK_EQ(e.slot, 0);
  }
  /* Every queued event (statistics, errors) ran on this thread, the only
   * one that drains. */
  size_t off_thread = 0, queued = 0;
  pthread_mutex_lock(&events.lock);
  for (size_t i = 0; i < events.len; i++) {
    if (events.events[i].kind != WDPOOL_EVENT_STATISTICS && events.events[i].kind != WDPOOL_EVENT_ERROR) continue;
    queued++;
    if (!pthread_equal(events.events[i].thread, main_thread)) off_thread++;
  }
  pthread_mutex_unlock(&events.lock);
  CHECK(queued >= 2);
  CHECK_EQ(off_thread, 0);

  /* drain's own arguments: max 0 delivers nothing; NULL count_out is fine. */
  size_t count = 99;
  CHECK_RC(wdpool_events_drain(0, 0, &count, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(count, 0);
  CHECK_RC(wdpool_events_drain(0, 1, NULL, CHECK_ERR), WDPOOL_OK);
  /* Closed before it is freed: freeing an open pool closes it on a thread
   * of wdpool's, which the program's exit could overtake while librdkafka
   * tears the producer down (LeakSanitizer then reports its brokers). */
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Subscriptions: finalizers, unknown ids, unsubscribing from a callback. */

typedef struct self_unsubscriber {
  uint64_t id;
  atomic_int calls;
  atomic_int finalized;
  wdpool_result rc;
} self_unsubscriber;

static void unsubscribe_self(void *user_data, const wdpool_event *event) {
  self_unsubscriber *s = user_data;
  (void)event;
  if (atomic_fetch_add(&s->calls, 1) == 0) s->rc = wdpool_unsubscribe(s->id, NULL);
}

static void count_finalize(void *user_data) {
  self_unsubscriber *s = user_data;
  atomic_fetch_add(&s->finalized, 1);
}

static void ignore_event(void *user_data, const wdpool_event *event) {
  (void)user_data;
  (void)event;
}

static void test_subscriptions(void) {
  /* A second recorder sees the events of a pool, and is finalized exactly
   * once, after unsubscribing. */
  event_log *log = malloc(sizeof *log);
  if (!CHECK(log != NULL)) return;
  event_log_init(log);
  event_log_subscribe(log);
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 100, &setup);
  uint64_t id = wdpool_pool_id(pool);
  CHECK_EQ(event_log_count(log, id, WDPOOL_EVENT_CREATED), 1);
  CHECK_EQ(atomic_load(&log->finalized), 0);
  event_log_unsubscribe(log);
  /* Freeing an unclosed pool closes it in the background and queues its
   * shutdown event for the drain: not to the unsubscribed log. */
  wdpool_pool_free(pool);
  int64_t until = now_ms() + 10000;
  while (event_log_count(&events, id, WDPOOL_EVENT_SHUTDOWN) == 0 && now_ms() < until)
    CHECK_RC(wdpool_events_drain(100, 100, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_SHUTDOWN), 1);
  CHECK_EQ(event_log_count(log, id, WDPOOL_EVENT_SHUTDOWN), 0);
  CHECK_EQ(atomic_load(&log->callbacks_after_unsubscribe), 0);
  CHECK_EQ(atomic_load(&log->finalized), 1);
  CHECK_RC_BOTH(wdpool_unsubscribe(log->subscription, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  event_log_destroy(log);
  free(log);

  /* Unknown ids. */
  CHECK_RC_BOTH(wdpool_unsubscribe(0, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_MSG(wdpool_unsubscribe(UINT64_MAX, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "18446744073709551615");

  /* A subscriber may unsubscribe itself from its callback. */
  self_unsubscriber self = {.id = 0, .rc = WDPOOL_PANIC};
  atomic_init(&self.calls, 0);
  atomic_init(&self.finalized, 0);
  CHECK_RC(wdpool_subscribe(unsubscribe_self, &self, count_finalize, &self.id, CHECK_ERR), WDPOOL_OK);
  CHECK(self.id != 0 && self.id != events.subscription);
  pool = make_pool(1, 100, &setup); /* created: the first event */
  wdpool_pool_free(pool);           /* shutdown: not delivered any more */
  CHECK_EQ(atomic_load(&self.calls), 1);
  CHECK_EQ(self.rc, WDPOOL_OK);
  int64_t deadline = now_ms() + 5000;
  while (atomic_load(&self.finalized) == 0 && now_ms() < deadline) poll_pause();
  CHECK_EQ(atomic_load(&self.finalized), 1);

  /* The finalizer is optional ... */
  uint64_t plain = 0;
  CHECK_RC(wdpool_subscribe(ignore_event, NULL, NULL, &plain, CHECK_ERR), WDPOOL_OK);
  CHECK(plain != 0 && plain != self.id);
  CHECK_RC(wdpool_unsubscribe(plain, CHECK_ERR), WDPOOL_OK);
  /* ... and so is id_out (this subscriber cannot be removed: it stays). */
  CHECK_RC(wdpool_subscribe(ignore_event, NULL, NULL, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(atomic_load(&self.finalized), 1);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  if (!api_setup()) return check_summary("test_events");

  test_statistics_events();
  test_subscriptions();

  return api_teardown("test_events");
}
