/*
 * Helpers shared by the wdpool C test programs: clocks and deadlines, an
 * event recorder (a wdpool subscriber), messages, and a producer callback
 * that runs a test body. Include after defining _POSIX_C_SOURCE and after
 * check.h.
 */
#ifndef WDPOOL_TESTS_SUPPORT_H
#define WDPOOL_TESTS_SUPPORT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "wdpool.h"

/* ------------------------------------------------------------------------
 * Time. Conditions are waited on with a deadline, never with a bare sleep. */

static inline int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One short pause between two looks at a condition polled with a deadline. */
static inline void poll_pause(void) {
  struct timespec ts = {0, 2 * 1000 * 1000};
  nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------------
 * Messages. */

static inline wdpool_bytes bytes_of(const char *s) {
  wdpool_bytes b = {(const uint8_t *)s, strlen(s)};
  return b;
}

static inline wdpool_message text_message(const char *topic, const char *payload) {
  wdpool_message m;
  wdpool_message_init(&m);
  m.topic = topic;
  if (payload != NULL) m.payload = bytes_of(payload);
  return m;
}

/* ------------------------------------------------------------------------
 * A producer callback that runs a test body with the handle it was given. */

typedef struct body {
  void (*run)(wdpool_producer *producer, void *ctx);
  void *ctx;
  /* What the callback returns (WDPOOL_CB_OK, WDPOOL_CB_ABORT, 0...). */
  int result;
  /* Filled in by the callback. */
  wdpool_producer *seen;
  int calls;
} body;

static inline int run_body(void *user_data, wdpool_producer *producer) {
  body *b = user_data;
  b->seen = producer;
  b->calls++;
  if (b->run != NULL) b->run(producer, b->ctx);
  return b->result;
}

/* The slot index behind a producer handle, or (size_t)-1 on failure. */
static inline size_t producer_index(wdpool_producer *producer) {
  wdpool_producer_info info;
  if (wdpool_producer_get_info(producer, &info, NULL) != WDPOOL_OK) return (size_t)-1;
  return info.index;
}

/* ------------------------------------------------------------------------
 * The event recorder: a subscriber that copies every event it gets. */

typedef struct recorded_event {
  wdpool_event_kind kind;
  uint64_t pool_id;
  bool global;
  size_t size;
  uint64_t timeout_ms;
  int64_t slot;
  char producer_id[96]; /* "" when the event had none */
  bool has_producer_id;
  uint64_t waited_ms;
  size_t available;
  uint64_t undelivered;
  int32_t error_code;
  size_t message_len;
  char message_head[96];
  /* The event's name is the one its kind promises; its message is
   * NUL-terminated at message_len. */
  bool well_formed;
  pthread_t thread;
} recorded_event;

typedef struct event_log {
  pthread_mutex_t lock;
  recorded_event *events;
  size_t len;
  size_t cap;
  uint64_t subscription;
  atomic_int callbacks_after_unsubscribe;
  atomic_int finalized;
  atomic_bool unsubscribed;
} event_log;

static inline const char *event_kind_name(wdpool_event_kind kind) {
  switch (kind) {
    case WDPOOL_EVENT_CREATED: return "connection_pool.created";
    case WDPOOL_EVENT_SETUP: return "connection_pool.setup";
    case WDPOOL_EVENT_SHUTDOWN: return "connection_pool.shutdown";
    case WDPOOL_EVENT_RELOAD: return "connection_pool.reload";
    case WDPOOL_EVENT_RELOADED: return "connection_pool.reloaded";
    case WDPOOL_EVENT_CHECKOUT_TIMEOUT: return "connection_pool.checkout_timeout";
    case WDPOOL_EVENT_PRODUCER_REPLACED: return "connection_pool.producer_replaced";
    case WDPOOL_EVENT_TRANSACTION_STARTED: return "transaction.started";
    case WDPOOL_EVENT_TRANSACTION_COMMITTED: return "transaction.committed";
    case WDPOOL_EVENT_TRANSACTION_ABORTED: return "transaction.aborted";
    case WDPOOL_EVENT_ERROR: return "error.occurred";
    case WDPOOL_EVENT_STATISTICS: return "statistics.emitted";
  }
  return "?";
}

static inline void event_log_on_event(void *user_data, const wdpool_event *event) {
  event_log *log = user_data;
  if (atomic_load(&log->unsubscribed)) atomic_fetch_add(&log->callbacks_after_unsubscribe, 1);
  recorded_event r;
  memset(&r, 0, sizeof r);
  r.kind = event->kind;
  r.pool_id = event->pool_id;
  r.global = event->global;
  r.size = event->size;
  r.timeout_ms = event->timeout_ms;
  r.slot = event->slot;
  r.has_producer_id = event->producer_id != NULL;
  if (event->producer_id != NULL) snprintf(r.producer_id, sizeof r.producer_id, "%s", event->producer_id);
  r.waited_ms = event->waited_ms;
  r.available = event->available;
  r.undelivered = event->undelivered;
  r.error_code = event->error_code;
  r.message_len = event->message_len;
  r.well_formed = event->name != NULL && strcmp(event->name, event_kind_name(event->kind)) == 0 &&
                  event->message != NULL && strlen(event->message) == event->message_len;
  if (event->message != NULL) snprintf(r.message_head, sizeof r.message_head, "%s", event->message);
  r.thread = pthread_self();

  pthread_mutex_lock(&log->lock);
  if (log->len == log->cap) {
    size_t cap = log->cap == 0 ? 256 : log->cap * 2;
    recorded_event *grown = realloc(log->events, cap * sizeof *grown);
    if (grown == NULL) {
      pthread_mutex_unlock(&log->lock);
      return;
    }
    log->events = grown;
    log->cap = cap;
  }
  log->events[log->len++] = r;
  pthread_mutex_unlock(&log->lock);
}

static inline void event_log_finalize(void *user_data) {
  event_log *log = user_data;
  atomic_fetch_add(&log->finalized, 1);
}

static inline void event_log_init(event_log *log) {
  memset(log, 0, sizeof *log);
  pthread_mutex_init(&log->lock, NULL);
  atomic_init(&log->callbacks_after_unsubscribe, 0);
  atomic_init(&log->finalized, 0);
  atomic_init(&log->unsubscribed, false);
}

static inline void event_log_subscribe(event_log *log) {
  CHECK_RC(wdpool_subscribe(event_log_on_event, log, event_log_finalize, &log->subscription, CHECK_ERR),
           WDPOOL_OK);
}

/* Unsubscribes and waits (bounded) for the finalizer. */
static inline void event_log_unsubscribe(event_log *log) {
  atomic_store(&log->unsubscribed, true);
  CHECK_RC(wdpool_unsubscribe(log->subscription, CHECK_ERR), WDPOOL_OK);
  int64_t deadline = now_ms() + 5000;
  while (atomic_load(&log->finalized) == 0 && now_ms() < deadline) poll_pause();
  CHECK_EQ(atomic_load(&log->finalized), 1);
}

static inline void event_log_destroy(event_log *log) {
  free(log->events);
  pthread_mutex_destroy(&log->lock);
}

/* How many events of `kind` pool `pool_id` had (pool_id 0: any pool). */
static inline size_t event_log_count(event_log *log, uint64_t pool_id, wdpool_event_kind kind) {
  size_t n = 0;
  pthread_mutex_lock(&log->lock);
  for (size_t i = 0; i < log->len; i++) {
    if (log->events[i].kind == kind && (pool_id == 0 || log->events[i].pool_id == pool_id)) n++;
  }
  pthread_mutex_unlock(&log->lock);
  return n;
}

/* A copy of the `nth` (0-based) event of `kind` of pool `pool_id`, and its
 * position in the log; false when there is none. */
static inline bool event_log_find(event_log *log, uint64_t pool_id, wdpool_event_kind kind, size_t nth,
                                  recorded_event *out, size_t *position) {
  bool found = false;
  pthread_mutex_lock(&log->lock);
  for (size_t i = 0; i < log->len; i++) {
    if (log->events[i].kind == kind && log->events[i].pool_id == pool_id && nth-- == 0) {
      *out = log->events[i];
      if (position != NULL) *position = i;
      found = true;
      break;
    }
  }
  pthread_mutex_unlock(&log->lock);
  return found;
}

/* Drains queued events on this thread until pool `pool_id` has at least
 * `count` events of `kind`, or `timeout_ms` passed. Returns the count. */
static inline size_t event_log_drain_until(event_log *log, uint64_t pool_id, wdpool_event_kind kind,
                                           size_t count, int64_t timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  size_t have = event_log_count(log, pool_id, kind);
  while (have < count && now_ms() < deadline) {
    size_t drained = 0;
    wdpool_events_drain(100, 1000, &drained, NULL);
    have = event_log_count(log, pool_id, kind);
  }
  return have;
}

#endif /* WDPOOL_TESTS_SUPPORT_H */
