/*
 * test_transactions: wdpool_pool_transaction, wdpool_producer_transaction,
 * begin / commit / abort by hand, nesting, transactions left open, and the
 * same calls on a producer without transactional.id.
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
 * Transactions against the mock cluster. */

typedef struct tx_counts {
  size_t started, committed, aborted;
} tx_counts;

static tx_counts tx_counts_of(uint64_t pool_id) {
  tx_counts c = {event_log_count(&events, pool_id, WDPOOL_EVENT_TRANSACTION_STARTED),
                 event_log_count(&events, pool_id, WDPOOL_EVENT_TRANSACTION_COMMITTED),
                 event_log_count(&events, pool_id, WDPOOL_EVENT_TRANSACTION_ABORTED)};
  return c;
}

#define CHECK_TX_DELTA(before, pool_id, s, c, a)                \
  do {                                                          \
    tx_counts now_ = tx_counts_of(pool_id);                     \
    CHECK_EQ(now_.started - (before).started, (s));             \
    CHECK_EQ(now_.committed - (before).committed, (c));         \
    CHECK_EQ(now_.aborted - (before).aborted, (a));             \
  } while (0)

static void expect_in_transaction(wdpool_producer *p, void *ctx) {
  (void)ctx;
  wdpool_producer_info info;
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(info.transactional);
  CHECK(info.in_transaction);
  produce_one(p, NULL);
}

/* ctx: a bool, whether an outer transaction is open around this one. */
static void nested_ok(wdpool_producer *p, void *ctx) {
  bool outer_open = *(const bool *)ctx;
  body inner = {expect_in_transaction, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_producer_transaction(p, run_body, &inner, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(inner.calls, 1);
  CHECK(inner.seen == p); /* the same handle */
  wdpool_producer_info info;
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(info.in_transaction == outer_open);
}

static void nested_fails(wdpool_producer *p, void *ctx) {
  (void)ctx;
  body inner = {produce_one, NULL, 0, NULL, 0};
  CHECK_RC(wdpool_producer_transaction(p, run_body, &inner, CHECK_ERR), WDPOOL_CALLBACK_FAILED);
}

static void explicit_api(wdpool_producer *p, void *ctx) {
  (void)ctx;
  wdpool_producer_info info;
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(info.transactional);
  CHECK(!info.in_transaction);
  CHECK_RC_MSG(wdpool_producer_commit(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "no transaction");
  CHECK_RC_MSG(wdpool_producer_abort(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "no transaction");

  CHECK_RC(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(info.in_transaction);
  produce_one(p, NULL);
  CHECK_RC(wdpool_producer_commit(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(!info.in_transaction);

  CHECK_RC(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  produce_one(p, NULL);
  CHECK_RC(wdpool_producer_abort(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);

  /* Nested levels: an inner abort rolls the whole transaction back when the
   * outer level ends, without an error. */
  CHECK_RC(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_abort(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(info.in_transaction);
  CHECK(info.rollback_only);
  CHECK_EQ(info.depth, 1);
  int ended = 0;
  CHECK_RC(wdpool_producer_end(p, WDPOOL_TXN_COMMIT, WDPOOL_TIMEOUT_DEFAULT, &ended, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(ended, WDPOOL_TXN_ROLLED_BACK);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(!info.in_transaction);

  /* Outside a transaction a transactional producer wraps each produce call
   * in a transaction of its own, committed before the call returns. */
  wdpool_message m = text_message(TOPIC, "implicit");
  wdpool_delivery *d = NULL;
  CHECK_RC(wdpool_producer_produce_async(p, &m, &d, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_delivery_wait(d, 0, CHECK_ERR), WDPOOL_OK);
  wdpool_delivery_free(d);
}

static void leave_open(wdpool_producer *p, void *ctx) {
  (void)ctx;
  CHECK_RC(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  produce_one(p, NULL);
}

/* The transaction calls on a producer without transactional.id. */
static void non_transactional_calls(wdpool_producer *p, void *ctx) {
  (void)ctx;
  body inner = {NULL, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC_BOTH(wdpool_producer_transaction(p, run_body, &inner, CHECK_ERR), WDPOOL_NOT_TRANSACTIONAL);
  CHECK_EQ(inner.calls, 0);
  CHECK_RC_BOTH(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_NOT_TRANSACTIONAL);
  CHECK_RC_BOTH(wdpool_producer_commit(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_producer_abort(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_producer_transaction(p, NULL, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
}
static void test_transactions(void) {
  pool_setup setup = {.tx_prefix = "c-tx-", .id_prefix = "c-tx-producer-"};
  wdpool_pool *pool = make_pool(2, 5000, &setup);
  uint64_t id = wdpool_pool_id(pool);
  CHECK_EQ(setup.calls, 2);

  /* Commit. */
  tx_counts before = tx_counts_of(id);
  body commit = {expect_in_transaction, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &commit, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(commit.calls, 1);
  CHECK_TX_DELTA(before, id, 1, 1, 0);
  recorded_event e;
  memset(&e, 0, sizeof e);
  if (CHECK(event_log_find(&events, id, WDPOOL_EVENT_TRANSACTION_COMMITTED, 0, &e, NULL))) {
    CHECK_EQ(e.slot, 0);
    CHECK_STR(e.producer_id, "c-tx-producer-0");
    CHECK(e.well_formed);
    CHECK(pthread_equal(e.thread, main_thread));
  }

  /* Aborted by a failing callback, and by WDPOOL_CB_ABORT (no error). */
  before = tx_counts_of(id);
  body failing = {produce_one, NULL, 0, NULL, 0};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &failing, CHECK_ERR),
           WDPOOL_CALLBACK_FAILED);
  CHECK_TX_DELTA(before, id, 1, 0, 1);
  before = tx_counts_of(id);
  body rollback = {produce_one, NULL, WDPOOL_CB_ABORT, NULL, 0};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &rollback, CHECK_ERR), WDPOOL_OK);
  CHECK_TX_DELTA(before, id, 1, 0, 1);

  /* Nested transactions: one Kafka transaction; an inner failure aborts
   * the outer one. */
  before = tx_counts_of(id);
  bool outer_open = true, no_outer = false;
  body outer_ok = {nested_ok, &outer_open, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &outer_ok, CHECK_ERR), WDPOOL_OK);
  CHECK_TX_DELTA(before, id, 1, 1, 0);
  before = tx_counts_of(id);
  body outer_doomed = {nested_fails, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &outer_doomed, CHECK_ERR),
           WDPOOL_TRANSACTION_ABORTED);
  CHECK_TX_DELTA(before, id, 1, 0, 1);

  /* wdpool_producer_transaction on a pool_with producer. */
  before = tx_counts_of(id);
  body with_tx = {nested_ok, &no_outer, WDPOOL_CB_OK, NULL, 0};
  /* nested_ok's own transaction is the outermost here. */
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &with_tx, CHECK_ERR), WDPOOL_OK);
  CHECK_TX_DELTA(before, id, 1, 1, 0);

  /* begin / commit / abort by hand (plus one implicit transaction). */
  before = tx_counts_of(id);
  body by_hand = {explicit_api, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &by_hand, CHECK_ERR), WDPOOL_OK);
  CHECK_TX_DELTA(before, id, 4, 2, 2);

  /* A transaction left open when the callback returns is aborted. */
  before = tx_counts_of(id);
  body open = {leave_open, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC_MSG(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &open, CHECK_ERR),
               WDPOOL_TRANSACTION_ABORTED, "still open");
  CHECK_TX_DELTA(before, id, 1, 0, 1);
  CHECK_EQ(stats_of(pool).in_use, 0);

  /* ... and so is one left open on a checked-out lease at checkin. */
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  before = tx_counts_of(id);
  leave_open(p, NULL);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_TRANSACTION_ABORTED);
  CHECK_TX_DELTA(before, id, 1, 0, 1);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_STALE_HANDLE);

  /* The producer of a failed or left-open transaction is reused. */
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.created, 1);
  CHECK_EQ(s.replaced, 0);
  wdpool_pool_free(pool);

  /* The same calls on a non-transactional producer. */
  pool_setup plain = {.no_deliver = true};
  pool = make_pool(1, 1000, &plain);
  body calls = {non_transactional_calls, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &calls, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  if (!api_setup()) return check_summary("test_transactions");

  test_transactions();

  return api_teardown("test_transactions");
}
