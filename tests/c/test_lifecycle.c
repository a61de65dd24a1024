/*
 * test_lifecycle: leases and their handles (with, checkout, checkin; stale,
 * borrowed and garbage handles), callback results, re-entrancy, checkout
 * timeouts, close and reload (graceful and forced), freeing a pool with a
 * lease out, and the global pool.
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
 * Producer handles: stale, borrowed, double checkin, garbage. */

static void checkin_borrowed(wdpool_producer *p, void *ctx) {
  (void)ctx;
  CHECK_RC_MSG(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "callback");
  /* Refusing it did not invalidate it. */
  CHECK(producer_index(p) == 0);
}

static void test_handles(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 1000, &setup);
  wdpool_message m = text_message(TOPIC, "x");
  wdpool_producer_info info;

  /* A callback's handle is stale once the callback returned. */
  body b = {produce_one, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  wdpool_producer *stale = b.seen;
  CHECK(stale != NULL);
  CHECK_RC_BOTH(wdpool_producer_produce_sync(stale, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_produce_async(stale, &m, NULL, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_produce_many_sync(stale, &m, 1, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_produce_many_async(stale, &m, 1, NULL, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_flush(stale, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_get_info(stale, &info, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_begin(stale, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_commit(stale, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_abort(stale, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_transaction(stale, run_body, &b, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_checkin(stale, CHECK_ERR), WDPOOL_STALE_HANDLE);

  /* A callback's handle cannot be checked in. */
  body borrowed = {checkin_borrowed, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &borrowed, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).in_use, 0);

  /* Checkout, checkin, checkin again. */
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  CHECK(p != NULL);
  CHECK_EQ(stats_of(pool).in_use, 1);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(info.index, 0);
  CHECK_EQ(info.pool_id, wdpool_pool_id(pool));
  CHECK(!info.transactional && !info.in_transaction);
  CHECK_RC(wdpool_producer_produce_sync(p, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).in_use, 0);
  CHECK_RC_BOTH(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_STALE_HANDLE);

  /* A handle checked in on another pool's slot reuse stays stale. */
  wdpool_producer *again = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &again, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC(wdpool_producer_checkin(again, CHECK_ERR), WDPOOL_OK);

  /* Garbage handles and handles of another kind are refused as invalid
   * arguments, never dereferenced. */
  wdpool_producer *garbage = (wdpool_producer *)(uintptr_t)0x1234;
  CHECK_RC_BOTH(wdpool_producer_get_info(garbage, &info, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_producer_produce_sync(garbage, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_producer_checkin(garbage, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  garbage = (wdpool_producer *)(uintptr_t)UINTPTR_MAX;
  CHECK_RC_BOTH(wdpool_producer_get_info(garbage, &info, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_producer_checkin(garbage, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_producer_get_info((wdpool_producer *)pool, &info, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  wdpool_statistics wrong_kind;
  CHECK_RC_BOTH(wdpool_pool_stats((wdpool_pool *)garbage, &wrong_kind, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);

  /* Freeing a pool with a producer out: the lease stays usable until it is
   * checked in. */
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
  CHECK_RC(wdpool_producer_produce_sync(p, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_STALE_HANDLE);
}

/* ------------------------------------------------------------------------
 * Callback results. */

static void test_callbacks(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 1000, &setup);

  body fail = {produce_one, NULL, 0, NULL, 0};
  CHECK_RC_MSG(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &fail, CHECK_ERR), WDPOOL_CALLBACK_FAILED,
               "0");
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.idle, 1); /* back in the pool, not discarded */
  CHECK_EQ(s.replaced, 0);

  body odd = {NULL, NULL, 42, NULL, 0};
  CHECK_RC_MSG(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &odd, CHECK_ERR), WDPOOL_CALLBACK_FAILED,
               "42");
  body minus = {NULL, NULL, -1, NULL, 0};
  CHECK_RC_BOTH(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &minus, CHECK_ERR),
                WDPOOL_CALLBACK_FAILED);
  /* WDPOOL_CB_ABORT means something only in a transaction. */
  body abort_outside = {NULL, NULL, WDPOOL_CB_ABORT, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &abort_outside, CHECK_ERR),
           WDPOOL_CALLBACK_FAILED);

  /* Transactions need transactional.id. */
  body ok = {produce_one, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC_MSG(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &ok, CHECK_ERR),
               WDPOOL_NOT_TRANSACTIONAL, "transactional.id");
  CHECK_EQ(ok.calls, 0);
  s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.created, 1);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Re-entrancy: a nested with on the same thread gets the same producer. */

typedef struct nest_ctx {
  wdpool_pool *pool;
  int depth;
  size_t indexes[3];
  wdpool_producer *handles[3];
} nest_ctx;

static void nest(wdpool_producer *p, void *ctx_) {
  nest_ctx *ctx = ctx_;
  int depth = ctx->depth++;
  ctx->indexes[depth] = producer_index(p);
  ctx->handles[depth] = p;
  produce_one(p, NULL);
  if (ctx->depth < 3) {
    body inner = {nest, ctx, WDPOOL_CB_OK, NULL, 0};
    CHECK_RC(wdpool_pool_with(ctx->pool, 100, run_body, &inner, CHECK_ERR), WDPOOL_OK);
    /* The outer handle is still valid after the inner callback returned. */
    CHECK(producer_index(p) == ctx->indexes[depth]);
    CHECK_EQ(stats_of(ctx->pool).in_use, 1);
  }
}

static void test_reentrancy(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 100, &setup);
  nest_ctx ctx = {.pool = pool, .depth = 0};
  body b = {nest, &ctx, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(ctx.depth, 3);
  CHECK_EQ(ctx.indexes[0], 0);
  CHECK_EQ(ctx.indexes[1], 0);
  CHECK_EQ(ctx.indexes[2], 0);
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.checkout_timeouts, 0);

  /* A checkout on a thread that holds a lease nests too. */
  wdpool_producer *outer = NULL, *inner = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, 100, &outer, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, 100, &inner, CHECK_ERR), WDPOOL_OK);
  CHECK(outer != inner); /* two leases ... */
  CHECK_EQ(producer_index(inner), producer_index(outer)); /* ... of one producer */
  CHECK_RC(wdpool_producer_checkin(inner, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).in_use, 1);
  CHECK_RC(wdpool_producer_checkin(outer, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).in_use, 0);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Checkout timeout, from a second thread. */

typedef struct timeout_ctx {
  wdpool_pool *pool;
  wdpool_result rc;
  char message[256];
  int64_t waited_ms;
  wdpool_result default_rc;
  int64_t default_waited_ms;
  wdpool_statistics between;
  int calls;
  pthread_t thread;
} timeout_ctx;

static void *checkout_in_thread(void *arg) {
  timeout_ctx *ctx = arg;
  ctx->thread = pthread_self();
  body b = {NULL, NULL, WDPOOL_CB_OK, NULL, 0};
  wdpool_error *err = NULL;
  int64_t start = now_ms();
  ctx->rc = wdpool_pool_with(ctx->pool, 50, run_body, &b, &err);
  ctx->waited_ms = now_ms() - start;
  ctx->calls = b.calls;
  snprintf(ctx->message, sizeof ctx->message, "%s", wdpool_error_message(err));
  wdpool_error_free(err);
  wdpool_pool_stats(ctx->pool, &ctx->between, NULL);

  /* The pool's own timeout is 0: fail at once. */
  wdpool_producer *p = NULL;
  start = now_ms();
  ctx->default_rc = wdpool_pool_checkout(ctx->pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, NULL);
  ctx->default_waited_ms = now_ms() - start;
  return NULL;
}

static void test_checkout_timeout(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 0, &setup);
  uint64_t id = wdpool_pool_id(pool);
  wdpool_producer *held = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &held, CHECK_ERR), WDPOOL_OK);

  timeout_ctx ctx = {.pool = pool};
  pthread_t thread;
  CHECK_EQ(pthread_create(&thread, NULL, checkout_in_thread, &ctx), 0);
  CHECK_EQ(pthread_join(thread, NULL), 0);

  CHECK_EQ(ctx.rc, WDPOOL_TIMEOUT);
  CHECK_CONTAINS(ctx.message, "0/1");
  CHECK(ctx.waited_ms >= 50);
  CHECK(ctx.waited_ms < 5000);
  CHECK_EQ(ctx.calls, 0);
  CHECK_EQ(ctx.between.checkout_timeouts, 1);
  CHECK(ctx.between.total_wait_us >= 50000);
  CHECK_EQ(ctx.default_rc, WDPOOL_TIMEOUT);
  CHECK(ctx.default_waited_ms < 1000);

  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.checkout_timeouts, 2);
  CHECK_EQ(s.in_use, 1);
  CHECK_EQ(s.waiting, 0);

  /* The checkout-timeout event ran on the thread that timed out. */
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_CHECKOUT_TIMEOUT), 2);
  recorded_event e;
  memset(&e, 0, sizeof e);
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_CHECKOUT_TIMEOUT, 0, &e, NULL))) {
    CHECK(e.waited_ms >= 50);
    CHECK_EQ(e.available, 0);
    CHECK_EQ(e.size, 1);
    CHECK(e.well_formed);
    CHECK(pthread_equal(e.thread, ctx.thread));
  }

  CHECK_RC(wdpool_producer_checkin(held, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).in_use, 0);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Close and reload. */

/* Every checkout entry point of a closed pool fails with WDPOOL_CLOSED. */
static void *expect_closed_in_thread(void *arg) {
  wdpool_pool *pool = arg;
  body b = {produce_one, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC_BOTH(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_CLOSED);
  CHECK_RC_BOTH(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_CLOSED);
  CHECK_EQ(b.calls, 0);
  wdpool_producer *none = NULL;
  CHECK_RC_BOTH(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &none, CHECK_ERR), WDPOOL_CLOSED);
  CHECK(none == NULL);
  CHECK_RC_BOTH(wdpool_pool_reload(pool, CHECK_ERR), WDPOOL_CLOSED);
  return NULL;
}

/* The same on a thread that still holds a lease of the closed pool: a nested
 * checkout is refused too. */
static void expect_closed_on_lease_thread(wdpool_pool *pool) {
  wdpool_producer *nested = NULL;
  CHECK_RC_BOTH(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &nested, CHECK_ERR), WDPOOL_CLOSED);
  CHECK(nested == NULL);
  body b = {NULL, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_CLOSED);
  CHECK_EQ(b.calls, 0);
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_CLOSED);
  CHECK_EQ(b.calls, 0);
}

static void test_close_and_reload(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(2, 1000, &setup);
  uint64_t id = wdpool_pool_id(pool);
  body b = {produce_one, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).created, 1);

  /* Reload: idle producers are closed and recreated on demand. */
  CHECK_RC(wdpool_pool_reload(pool, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_RELOAD), 1);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_RELOADED), 1);
  recorded_event reload, reloaded;
  size_t at_reload = 0, at_reloaded = 0;
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_RELOAD, 0, &reload, &at_reload) &&
            event_log_find(&events, id, WDPOOL_EVENT_RELOADED, 0, &reloaded, &at_reloaded))) {
    CHECK(at_reload < at_reloaded);
    CHECK_EQ(reload.size, 2);
    CHECK_EQ(reload.timeout_ms, 1000);
    CHECK_EQ(reloaded.size, 2);
    CHECK_EQ(reloaded.timeout_ms, 1000);
    CHECK(reload.well_formed && reloaded.well_formed);
  }
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.created, 0);
  CHECK_EQ(s.creations, 1);
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  s = stats_of(pool);
  CHECK_EQ(s.created, 1);
  CHECK_EQ(s.creations, 2);

  /* A producer checked out during a reload is replaced when it returns. */
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_reload(pool, CHECK_ERR), WDPOOL_OK);
  produce_one(p, NULL);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).created, 0);
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);

  /* Graceful close, with one producer still out. */
  wdpool_producer *out = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &out, CHECK_ERR), WDPOOL_OK);
  wdpool_close_report report;
  memset(&report, 0xff, sizeof report);
  CHECK_RC(wdpool_pool_close(pool, false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.closed, 0);
  CHECK_EQ(report.in_use, 1);
  CHECK_EQ(report.undelivered, 0);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_SHUTDOWN), 1);
  recorded_event shutdown;
  memset(&shutdown, 0, sizeof shutdown);
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_SHUTDOWN, 0, &shutdown, NULL))) {
    CHECK_EQ(shutdown.size, 2);
    CHECK_EQ(shutdown.timeout_ms, 1000);
    CHECK_EQ(shutdown.undelivered, 0);
    CHECK(!shutdown.global);
  }

  /* Later calls fail (from a thread without a lease); stats still work;
   * the lease still works until it is checked in, and its producer is then
   * closed. */
  pthread_t thread;
  CHECK_EQ(pthread_create(&thread, NULL, expect_closed_in_thread, pool), 0);
  CHECK_EQ(pthread_join(thread, NULL), 0);
  expect_closed_on_lease_thread(pool);
  produce_one(out, NULL);
  s = stats_of(pool);
  CHECK(s.closed);
  CHECK_EQ(s.in_use, 1);
  CHECK_RC(wdpool_producer_checkin(out, CHECK_ERR), WDPOOL_OK);
  s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.created, 0);

  /* Closing again is harmless and reports the first close's outcome;
   * shutdown fired once. */
  memset(&report, 0xff, sizeof report);
  CHECK_RC(wdpool_pool_close(pool, true, &report, CHECK_ERR), WDPOOL_OK);
  CHECK(report.closed == 0 && report.undelivered == 0 && report.in_use == 1);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_SHUTDOWN), 1);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_CREATED), 1);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_SETUP), 0);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_RELOAD), 2);

  /* Graceful close of idle producers reports them. */
  pool_setup idle_setup = {0};
  pool = make_pool(1, 1000, &idle_setup);
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_close(pool, false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.closed, 1);
  CHECK_EQ(report.in_use, 0);
  CHECK_EQ(report.undelivered, 0);
  wdpool_pool_free(pool);
}

/* A forced close purges what is not delivered. The producer's broker does
 * not exist, so its message stays queued. */
static void keep_undeliverable(wdpool_producer *p, void *ctx) {
  wdpool_delivery **kept = ctx;
  wdpool_message m = text_message("c-api-nowhere", "never delivered");
  CHECK_RC(wdpool_producer_produce_async(p, &m, kept, CHECK_ERR), WDPOOL_OK);
}

static void test_forced_close(void) {
  pool_setup setup = {.bootstrap = "127.0.0.1:1", .extra_key = "log_level", .extra_value = "0"};
  wdpool_pool *pool = make_pool(1, 1000, &setup);
  uint64_t id = wdpool_pool_id(pool);
  wdpool_delivery *d = NULL;
  body b = {keep_undeliverable, &d, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  if (!CHECK(d != NULL)) {
    wdpool_pool_free(pool);
    return;
  }
  CHECK_EQ(wdpool_delivery_count(d), 1);
  CHECK_EQ(wdpool_delivery_pending(d), 1);
  wdpool_report r;
  CHECK_RC(wdpool_delivery_report(d, 0, &r, CHECK_ERR), WDPOOL_PENDING);
  CHECK_RC_BOTH(wdpool_delivery_wait(d, 0, CHECK_ERR), WDPOOL_DELIVERY_TIMEOUT);
  int64_t start = now_ms();
  CHECK_RC(wdpool_delivery_wait(d, 20, CHECK_ERR), WDPOOL_DELIVERY_TIMEOUT);
  CHECK(now_ms() - start >= 20);

  /* librdkafka reports the unreachable broker: queued, delivered by drain on
   * this thread. */
  CHECK(event_log_drain_until(&events, id, WDPOOL_EVENT_ERROR, 1, EVENT_DEADLINE_MS) >= 1);
  recorded_event e;
  memset(&e, 0, sizeof e);
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_ERROR, 0, &e, NULL))) {
    CHECK(e.error_code != 0);
    CHECK(e.message_len > 0);
    CHECK_EQ(e.slot, 0);
    CHECK(e.has_producer_id);
    CHECK(e.well_formed);
    CHECK(pthread_equal(e.thread, main_thread));
  }

  wdpool_close_report report;
  CHECK_RC(wdpool_pool_close(pool, true, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.closed, 1);
  CHECK_EQ(report.undelivered, 1);
  CHECK_EQ(report.in_use, 0);
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_SHUTDOWN, 0, &e, NULL))) CHECK_EQ(e.undelivered, 1);

  /* The purged message's report arrives: a Kafka failure. */
  wdpool_error *err = NULL;
  CHECK_EQ(wdpool_delivery_wait(d, MAX_WAIT_MS, &err), WDPOOL_KAFKA);
  CHECK(wdpool_error_kafka_code(err) != 0);
  CHECK_EQ(wdpool_error_code(err), WDPOOL_KAFKA);
  wdpool_error_free(err);
  CHECK_EQ(wdpool_delivery_pending(d), 0);
  CHECK_RC(wdpool_delivery_report(d, 0, &r, CHECK_ERR), WDPOOL_OK);
  CHECK(r.error_code != 0);
  CHECK_EQ(r.offset, -1);
  CHECK_STR(r.topic, "c-api-nowhere");
  wdpool_delivery_free(d);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * The global pool. */

static void global_transaction(wdpool_producer *p, void *ctx) {
  (void)ctx;
  wdpool_producer_info info;
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(info.pool_id, wdpool_global_id());
  CHECK(info.in_transaction);
  produce_one(p, NULL);
}

static void test_global_pool(void) {
  wdpool_statistics s;
  wdpool_producer *p = NULL;
  wdpool_close_report report;
  body b = {produce_one, NULL, WDPOOL_CB_OK, NULL, 0};

  /* Before setup. */
  CHECK(!wdpool_active());
  CHECK_EQ(wdpool_global_id(), 0);
  CHECK_RC_BOTH(wdpool_with(WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_NOT_SET_UP);
  CHECK_RC_BOTH(wdpool_transaction(WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_NOT_SET_UP);
  CHECK_RC_BOTH(wdpool_checkout(WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_NOT_SET_UP);
  /* Reload without a global pool is a harmless no-op, as in WaterDrop. */
  CHECK_RC_BOTH(wdpool_reload(CHECK_ERR), WDPOOL_OK);
  CHECK_RC_BOTH(wdpool_stats(&s, CHECK_ERR), WDPOOL_NOT_SET_UP);
  memset(&report, 0xff, sizeof report);
  CHECK_RC(wdpool_close(false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK(report.closed == 0 && report.undelivered == 0 && report.in_use == 0);
  CHECK_EQ(b.calls, 0);
  CHECK(p == NULL);

  /* A failed setup sets nothing up. */
  wdpool_options zero = {.size = 0, .timeout_ms = 100};
  CHECK_RC_BOTH(wdpool_setup(&zero, NULL, NULL, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK(!wdpool_active());

  /* Setup: created and setup events, global, with size and timeout. */
  pool_setup first_setup = {0};
  wdpool_options options = {.size = 2, .timeout_ms = 3000};
  CHECK_RC(wdpool_setup(&options, configure_pool, &first_setup, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(first_setup.calls, 2);
  CHECK(wdpool_active());
  uint64_t first = wdpool_global_id();
  CHECK(first != 0);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_CREATED), 1);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_SETUP), 1);
  recorded_event e;
  memset(&e, 0, sizeof e);
  size_t at_created = 0, at_setup = 0;
  if (CHECK(event_log_find(&events, first, WDPOOL_EVENT_CREATED, 0, &e, &at_created))) {
    CHECK(e.global);
    CHECK_EQ(e.size, 2);
    CHECK_EQ(e.timeout_ms, 3000);
  }
  if (CHECK(event_log_find(&events, first, WDPOOL_EVENT_SETUP, 0, &e, &at_setup))) {
    CHECK(e.global);
    CHECK_EQ(e.size, 2);
    CHECK_EQ(e.timeout_ms, 3000);
    CHECK(e.well_formed);
    CHECK(at_created < at_setup);
  }

  CHECK_RC(wdpool_with(WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(b.calls, 1);
  CHECK_RC_BOTH(wdpool_with(WDPOOL_TIMEOUT_DEFAULT, NULL, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_transaction(WDPOOL_TIMEOUT_DEFAULT, NULL, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_checkout(WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_stats(NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC(wdpool_transaction(WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_NOT_TRANSACTIONAL);
  CHECK_RC(wdpool_stats(&s, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(s.size, 2);
  CHECK_EQ(s.created, 1);
  CHECK_EQ(s.in_use, 0);

  CHECK_RC(wdpool_reload(CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_RELOAD), 1);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_RELOADED), 1);
  if (CHECK(event_log_find(&events, first, WDPOOL_EVENT_RELOADED, 0, &e, NULL))) {
    CHECK(e.global);
    CHECK_EQ(e.size, 2);
    CHECK_EQ(e.timeout_ms, 3000);
  }

  /* A lease of the first global pool, held across a second setup. */
  CHECK_RC(wdpool_checkout(WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_producer_info info;
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(info.pool_id, first);

  /* A second setup (transactional this time) closes the first one during
   * the call: its shutdown event has fired when wdpool_setup returns. */
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_SHUTDOWN), 0);
  pool_setup second_setup = {.tx_prefix = "c-gtx-"};
  wdpool_options options2 = {.size = 1, .timeout_ms = 4000};
  CHECK_RC(wdpool_setup(&options2, configure_pool, &second_setup, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_SHUTDOWN), 1);
  if (CHECK(event_log_find(&events, first, WDPOOL_EVENT_SHUTDOWN, 0, &e, NULL))) {
    CHECK(e.global);
    CHECK_EQ(e.size, 2);
    CHECK(pthread_equal(e.thread, main_thread));
  }
  uint64_t second = wdpool_global_id();
  CHECK(second != 0 && second != first);
  CHECK(wdpool_active());
  CHECK_EQ(event_log_count(&events, second, WDPOOL_EVENT_CREATED), 1);
  CHECK_EQ(event_log_count(&events, second, WDPOOL_EVENT_SETUP), 1);

  /* The old lease still works, and goes back to its (closed) pool. */
  produce_one(p, NULL);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_STALE_HANDLE);

  /* The new global pool is transactional. */
  size_t committed = event_log_count(&events, second, WDPOOL_EVENT_TRANSACTION_COMMITTED);
  body tx = {global_transaction, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_transaction(WDPOOL_TIMEOUT_DEFAULT, run_body, &tx, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(tx.calls, 1);
  CHECK_EQ(event_log_count(&events, second, WDPOOL_EVENT_TRANSACTION_COMMITTED), committed + 1);
  CHECK_RC(wdpool_stats(&s, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(s.size, 1);
  CHECK_EQ(s.in_use, 0);

  /* A setup that fails leaves the current global pool in place. */
  config_probe bad = {.action = SET_UNKNOWN_KEY};
  CHECK_RC(wdpool_setup(&options, configure_probe, &bad, CHECK_ERR), WDPOOL_INVALID_CONFIG);
  CHECK_EQ(wdpool_global_id(), second);
  CHECK(wdpool_active());

  /* Close: inactive, calls fail with CLOSED, closing again is harmless. */
  memset(&report, 0xff, sizeof report);
  CHECK_RC(wdpool_close(false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.closed, 1);
  CHECK_EQ(report.in_use, 0);
  CHECK_EQ(report.undelivered, 0);
  CHECK(!wdpool_active());
  CHECK_EQ(wdpool_global_id(), 0);
  CHECK_EQ(event_log_count(&events, second, WDPOOL_EVENT_SHUTDOWN), 1);
  CHECK_RC_BOTH(wdpool_with(WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_CLOSED);
  CHECK_RC_BOTH(wdpool_transaction(WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_CLOSED);
  p = NULL;
  CHECK_RC_BOTH(wdpool_checkout(WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_CLOSED);
  CHECK(p == NULL);
  CHECK_RC_BOTH(wdpool_reload(CHECK_ERR), WDPOOL_CLOSED);
  CHECK_RC_BOTH(wdpool_stats(&s, CHECK_ERR), WDPOOL_CLOSED);
  memset(&report, 0xff, sizeof report);
  CHECK_RC(wdpool_close(true, &report, CHECK_ERR), WDPOOL_OK);
  CHECK(report.closed == 1 && report.undelivered == 0 && report.in_use == 0);
  CHECK_RC(wdpool_close(false, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(event_log_count(&events, second, WDPOOL_EVENT_SHUTDOWN), 1);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_SHUTDOWN), 1);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_CREATED), 1);
  CHECK_EQ(event_log_count(&events, first, WDPOOL_EVENT_SETUP), 1);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  if (!api_setup()) return check_summary("test_lifecycle");

  test_handles();
  test_callbacks();
  test_reentrancy();
  test_checkout_timeout();
  test_close_and_reload();
  test_forced_close();
  test_global_pool();

  return api_teardown("test_lifecycle");
}
