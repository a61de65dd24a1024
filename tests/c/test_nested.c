/*
 * test_nested: the nesting rules of transactions, applied once for every
 * binding: by hand with wdpool_producer_begin / wdpool_producer_end (every
 * outcome at an inner and at the outermost level, and what `ended_out`
 * says), and with callbacks (wdpool_pool_transaction around a nested
 * wdpool_producer_transaction; callbacks that return WDPOOL_CB_OK,
 * WDPOOL_CB_ABORT or a failure, that leave a level of their own open, or
 * that end the level they run in). Unknown outcomes and an end without a
 * transaction are refused.
 *
 * Under ASan, UBSan and LeakSanitizer, against librdkafka's in-process mock
 * cluster (api_harness.h), with real transactional producers.
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
#include "abi_v1.h"
#include "wdpool.h"

static wdpool_pool *pool;
static uint64_t pool_id;

static wdpool_producer_info info_of(wdpool_producer *p) {
  wdpool_producer_info info;
  memset(&info, 0xff, sizeof info);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  return info;
}

/* Nothing of the caller's is open on `p`. */
static void check_no_transaction(wdpool_producer *p) {
  wdpool_producer_info info = info_of(p);
  CHECK(!info.in_transaction);
  CHECK_EQ(info.depth, 0);
  CHECK(!info.rollback_only);
}

/* ------------------------------------------------------------------------
 * By hand: begin / end. */

/* Ends the innermost level with `outcome`, expecting `rc` and (on OK)
 * `ended`. */
#define END(p, outcome, rc, ended)                                                                \
  do {                                                                                            \
    int ended_ = -7;                                                                              \
    CHECK_RC(wdpool_producer_end((p), (outcome), WDPOOL_TIMEOUT_DEFAULT, &ended_, CHECK_ERR), (rc)); \
    if ((rc) == WDPOOL_OK) CHECK_EQ(ended_, (ended));                                             \
    else CHECK_EQ(ended_, -7); /* written on OK only */                                           \
  } while (0)

static void begin_level(wdpool_producer *p, uint32_t depth) {
  CHECK_RC(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  wdpool_producer_info info = info_of(p);
  CHECK(info.in_transaction);
  CHECK_EQ(info.depth, depth);
}

static void test_by_hand(void) {
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  if (!CHECK(p != NULL)) return;
  wdpool_producer_info info;
  txn_tally before;

  /* No transaction open: end is refused, whatever the outcome. */
  check_no_transaction(p);
  CHECK_RC_MSG(wdpool_producer_end(p, WDPOOL_TXN_COMMIT, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR),
               WDPOOL_INVALID_ARGUMENT, "no transaction");
  CHECK_RC_BOTH(wdpool_producer_end(p, WDPOOL_TXN_ABORT, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR),
                WDPOOL_INVALID_ARGUMENT);
  CHECK_RC(wdpool_producer_end(p, WDPOOL_TXN_FAIL, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC(wdpool_producer_end(p, WDPOOL_TXN_EXIT, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC(wdpool_producer_end(p, 0, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);

  /* Both levels commit: the inner one only closes; the outermost commits. */
  before = txn_tally_of(&events, pool_id);
  begin_level(p, 1);
  produce_one(p, NULL);
  begin_level(p, 2);
  produce_one(p, NULL);
  END(p, WDPOOL_TXN_COMMIT, WDPOOL_OK, WDPOOL_TXN_LEVEL_CLOSED);
  info = info_of(p);
  CHECK(info.in_transaction);
  CHECK_EQ(info.depth, 1);
  CHECK(!info.rollback_only);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 0, 0); /* one Kafka transaction, still open */
  END(p, WDPOOL_TXN_COMMIT, WDPOOL_OK, WDPOOL_TXN_COMMITTED);
  check_no_transaction(p);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 1, 0);

  /* Inner abort: the whole transaction rolls back; the outermost level's
   * commit reports it without an error. */
  before = txn_tally_of(&events, pool_id);
  begin_level(p, 1);
  produce_one(p, NULL);
  begin_level(p, 2);
  END(p, WDPOOL_TXN_ABORT, WDPOOL_OK, WDPOOL_TXN_LEVEL_CLOSED);
  info = info_of(p);
  CHECK(info.in_transaction);
  CHECK_EQ(info.depth, 1);
  CHECK(info.rollback_only);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 0, 0); /* nothing rolled back yet */
  END(p, WDPOOL_TXN_COMMIT, WDPOOL_OK, WDPOOL_TXN_ROLLED_BACK);
  check_no_transaction(p);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 0, 1);

  /* Three levels: the innermost aborts, the middle and outer commit. */
  before = txn_tally_of(&events, pool_id);
  begin_level(p, 1);
  begin_level(p, 2);
  begin_level(p, 3);
  produce_one(p, NULL);
  END(p, WDPOOL_TXN_ABORT, WDPOOL_OK, WDPOOL_TXN_LEVEL_CLOSED);
  END(p, WDPOOL_TXN_COMMIT, WDPOOL_OK, WDPOOL_TXN_LEVEL_CLOSED);
  CHECK(info_of(p).rollback_only);
  END(p, WDPOOL_TXN_COMMIT, WDPOOL_OK, WDPOOL_TXN_ROLLED_BACK);
  check_no_transaction(p);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 0, 1);

  /* Inner failure: the outermost commit fails with TRANSACTION_ABORTED. */
  before = txn_tally_of(&events, pool_id);
  begin_level(p, 1);
  produce_one(p, NULL);
  begin_level(p, 2);
  END(p, WDPOOL_TXN_FAIL, WDPOOL_OK, WDPOOL_TXN_LEVEL_CLOSED);
  CHECK(info_of(p).rollback_only);
  END(p, WDPOOL_TXN_COMMIT, WDPOOL_TRANSACTION_ABORTED, 0);
  check_no_transaction(p);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 0, 1);

  /* Inner early exit: the outermost commit reports it. */
  before = txn_tally_of(&events, pool_id);
  begin_level(p, 1);
  produce_one(p, NULL);
  begin_level(p, 2);
  END(p, WDPOOL_TXN_EXIT, WDPOOL_OK, WDPOOL_TXN_LEVEL_CLOSED);
  CHECK(info_of(p).rollback_only);
  END(p, WDPOOL_TXN_COMMIT, WDPOOL_TRANSACTION_EXITED_EARLY, 0);
  check_no_transaction(p);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 0, 1);

  /* The outermost level itself: EXIT reports an early exit, FAIL and ABORT
   * roll back without an error (the caller reports its own failure). */
  before = txn_tally_of(&events, pool_id);
  begin_level(p, 1);
  produce_one(p, NULL);
  END(p, WDPOOL_TXN_EXIT, WDPOOL_TRANSACTION_EXITED_EARLY, 0);
  check_no_transaction(p);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 0, 1);

  before = txn_tally_of(&events, pool_id);
  begin_level(p, 1);
  produce_one(p, NULL);
  END(p, WDPOOL_TXN_FAIL, WDPOOL_OK, WDPOOL_TXN_ROLLED_BACK);
  check_no_transaction(p);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 0, 1);

  before = txn_tally_of(&events, pool_id);
  begin_level(p, 1);
  produce_one(p, NULL);
  END(p, WDPOOL_TXN_ABORT, WDPOOL_OK, WDPOOL_TXN_ROLLED_BACK);
  check_no_transaction(p);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 0, 1);

  /* Unknown outcomes are refused and change nothing: the levels stay open
   * and still commit. ended_out may be NULL. */
  before = txn_tally_of(&events, pool_id);
  begin_level(p, 1);
  begin_level(p, 2);
  produce_one(p, NULL);
  const int unknown[] = {0, 5, -1};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
    int ended = -7;
    CHECK_RC(wdpool_producer_end(p, unknown[i], WDPOOL_TIMEOUT_DEFAULT, &ended, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK_EQ(ended, -7);
    CHECK_RC_BOTH(wdpool_producer_end(p, unknown[i], WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    info = info_of(p);
    CHECK(info.in_transaction);
    CHECK_EQ(info.depth, 2);
    CHECK(!info.rollback_only);
  }
  CHECK_RC(wdpool_producer_end(p, WDPOOL_TXN_COMMIT, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(info_of(p).depth, 1);
  CHECK_RC(wdpool_producer_end(p, 5, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  END(p, WDPOOL_TXN_COMMIT, WDPOOL_OK, WDPOOL_TXN_COMMITTED);
  check_no_transaction(p);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 1, 0);
  /* ... and once more with no transaction open. */
  CHECK_RC(wdpool_producer_end(p, -1, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);

  /* The producer is reused throughout: nothing broke it. */
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.replaced, 0);
  CHECK_EQ(s.in_use, 0);
}

/* ------------------------------------------------------------------------
 * With callbacks. */

typedef struct level {
  int result;                     /* what the callback returns */
  struct level *inner;            /* a nested wdpool_producer_transaction, or NULL */
  bool begin_more;                /* leaves a level of its own open */
  bool commit_self;               /* ends the level it runs in */
  bool produce;
  /* Filled in by the callback. */
  int calls;
  wdpool_producer_info info;      /* at the callback's start */
  wdpool_result inner_rc;         /* what the nested call returned */
  wdpool_producer_info after_inner;
  wdpool_result extra_rc;         /* the begin or commit the callback made */
} level;

static int run_level(void *user_data, wdpool_producer *p) {
  level *l = user_data;
  l->calls++;
  CHECK_RC(wdpool_producer_get_info(p, &l->info, CHECK_ERR), WDPOOL_OK);
  if (l->produce) produce_one(p, NULL);
  if (l->inner != NULL) {
    l->inner_rc = wdpool_producer_transaction(p, run_level, l->inner, NULL);
    CHECK_RC(wdpool_producer_get_info(p, &l->after_inner, CHECK_ERR), WDPOOL_OK);
  }
  if (l->begin_more) l->extra_rc = wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, NULL);
  if (l->commit_self) l->extra_rc = wdpool_producer_commit(p, WDPOOL_TIMEOUT_DEFAULT, NULL);
  return l->result;
}

/* wdpool_pool_with around one wdpool_producer_transaction: the callback's
 * level is the outermost one. */
typedef struct outermost {
  level *level;
  wdpool_result rc;
  char message[256];
  wdpool_producer_info after;
} outermost;

static int run_outermost(void *user_data, wdpool_producer *p) {
  outermost *o = user_data;
  wdpool_error *err = NULL;
  o->rc = wdpool_producer_transaction(p, run_level, o->level, &err);
  snprintf(o->message, sizeof o->message, "%s", wdpool_error_message(err));
  if (err != NULL) CHECK_EQ(wdpool_error_code(err), o->rc);
  wdpool_error_free(err);
  CHECK_RC(wdpool_producer_get_info(p, &o->after, CHECK_ERR), WDPOOL_OK);
  return WDPOOL_CB_OK;
}

static void test_callbacks(void) {
  txn_tally before;

  /* Inner CB_ABORT: the inner call returns OK, the transaction can only
   * roll back, and the outer level's CB_OK rolls it back without an
   * error. */
  before = txn_tally_of(&events, pool_id);
  level inner = {.result = WDPOOL_CB_ABORT, .produce = true};
  level outer = {.result = WDPOOL_CB_OK, .inner = &inner, .produce = true};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_level, &outer, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(outer.calls, 1);
  CHECK_EQ(inner.calls, 1);
  CHECK_EQ(outer.info.depth, 1);
  CHECK_EQ(inner.info.depth, 2);
  CHECK_EQ(inner.info.in_transaction, true);
  CHECK_EQ(outer.inner_rc, WDPOOL_OK);
  CHECK(outer.after_inner.in_transaction);
  CHECK_EQ(outer.after_inner.depth, 1);
  CHECK(outer.after_inner.rollback_only);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 0, 1);

  /* Inner failure: CALLBACK_FAILED inside, TRANSACTION_ABORTED outside. */
  before = txn_tally_of(&events, pool_id);
  level failing = {.result = 0, .produce = true};
  level doomed = {.result = WDPOOL_CB_OK, .inner = &failing};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_level, &doomed, CHECK_ERR),
           WDPOOL_TRANSACTION_ABORTED);
  CHECK_EQ(doomed.inner_rc, WDPOOL_CALLBACK_FAILED);
  CHECK(doomed.after_inner.rollback_only);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 0, 1);

  /* The outer level aborts after an inner commit: rolled back, no error. */
  before = txn_tally_of(&events, pool_id);
  level fine = {.result = WDPOOL_CB_OK, .produce = true};
  level aborting = {.result = WDPOOL_CB_ABORT, .inner = &fine};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_level, &aborting, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(aborting.inner_rc, WDPOOL_OK);
  CHECK(!aborting.after_inner.rollback_only);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 0, 1);

  /* Every level commits: one Kafka transaction, committed. */
  before = txn_tally_of(&events, pool_id);
  level fine2 = {.result = WDPOOL_CB_OK, .produce = true};
  level committing = {.result = WDPOOL_CB_OK, .inner = &fine2, .produce = true};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_level, &committing, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(committing.inner_rc, WDPOOL_OK);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 1, 0);

  /* A callback that begins once more and returns CB_OK leaves a level of
   * its own open: never OK, and the transaction rolls back. Outermost: */
  before = txn_tally_of(&events, pool_id);
  level leaves_open = {.result = WDPOOL_CB_OK, .begin_more = true, .produce = true, .extra_rc = WDPOOL_PANIC};
  outermost o = {.level = &leaves_open, .rc = WDPOOL_PANIC};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_outermost, &o, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(leaves_open.calls, 1);
  CHECK_EQ(leaves_open.extra_rc, WDPOOL_OK); /* the begin itself nests fine */
  CHECK(o.rc != WDPOOL_OK);
  CHECK(!o.after.in_transaction);
  CHECK_EQ(o.after.depth, 0);
  CHECK(!o.after.rollback_only);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 0, 1);

  /* ... and nested inside wdpool_pool_transaction: the inner call fails,
   * nothing is committed, the outer call does not return OK either. */
  before = txn_tally_of(&events, pool_id);
  level leaves_open2 = {.result = WDPOOL_CB_OK, .begin_more = true, .produce = true, .extra_rc = WDPOOL_PANIC};
  level around = {.result = WDPOOL_CB_OK, .inner = &leaves_open2, .inner_rc = WDPOOL_OK};
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_level, &around, &err);
  CHECK(rc != WDPOOL_OK);
  wdpool_error_free(err);
  CHECK_EQ(leaves_open2.extra_rc, WDPOOL_OK);
  CHECK(around.inner_rc != WDPOOL_OK);
  CHECK_EQ(txn_tally_of(&events, pool_id).committed, before.committed);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 0, 1);

  /* A callback that ends the level it runs in (commits itself) makes the
   * call fail "and the transaction roll back" (wdpool.h,
   * wdpool_producer_transaction). Outermost: */
  before = txn_tally_of(&events, pool_id);
  level commits_self = {.result = WDPOOL_CB_OK, .commit_self = true, .produce = true, .extra_rc = WDPOOL_PANIC};
  outermost o2 = {.level = &commits_self, .rc = WDPOOL_PANIC};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_outermost, &o2, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(commits_self.calls, 1);
  CHECK(o2.rc != WDPOOL_OK);
  CHECK(!o2.after.in_transaction);
  CHECK_EQ(o2.after.depth, 0);
  txn_tally now = txn_tally_of(&events, pool_id);
  /* Rolled back, not committed. */
  CHECK_EQ(now.committed - before.committed, 0);
  CHECK_EQ(now.aborted - before.aborted, 1);

  /* ... nested inside wdpool_pool_transaction: the inner call fails and
   * the transaction rolls back, so the outer call cannot commit. */
  before = txn_tally_of(&events, pool_id);
  level commits_self2 = {.result = WDPOOL_CB_OK, .commit_self = true, .produce = true, .extra_rc = WDPOOL_PANIC};
  level around2 = {.result = WDPOOL_CB_OK, .inner = &commits_self2, .inner_rc = WDPOOL_OK};
  err = NULL;
  rc = wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_level, &around2, &err);
  CHECK(around2.inner_rc != WDPOOL_OK);
  now = txn_tally_of(&events, pool_id);
  CHECK(rc != WDPOOL_OK);
  CHECK(around2.after_inner.rollback_only);
  CHECK_EQ(now.committed - before.committed, 0);
  CHECK_EQ(now.aborted - before.aborted, 1);
  wdpool_error_free(err);
  CHECK_EQ(now.started - before.started, 1);

  /* After all that, a plain transaction still commits on the same
   * producer. */
  before = txn_tally_of(&events, pool_id);
  level plain = {.result = WDPOOL_CB_OK, .produce = true};
  CHECK_RC(wdpool_pool_transaction(pool, WDPOOL_TIMEOUT_DEFAULT, run_level, &plain, CHECK_ERR), WDPOOL_OK);
  CHECK_TXN_DELTA(&events, before, pool_id, 1, 1, 0);
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.replaced, 0);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  abi_program = "test_nested";
  if (!api_setup()) return check_summary(abi_program);

  pool_setup setup = {.tx_prefix = "c-nested-tx-"};
  pool = make_pool(1, 5000, &setup);
  pool_id = wdpool_pool_id(pool);

  test_by_hand();
  test_callbacks();

  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
  return api_teardown(abi_program);
}
