/*
 * test_owners: who a checkout is for (wdpool_owner). Keys, the calling
 * thread and nobody: which checkouts nest (same producer) and which wait;
 * and transactions belong to their owner: a thread-owned handle shared with
 * another thread never lets that thread join the owner's transaction (its
 * transactional calls wait, bounded by their timeout), while a key-owned
 * lease acts for its key from any thread.
 *
 * Under ASan, UBSan and LeakSanitizer, against librdkafka's in-process mock
 * cluster (api_harness.h). Every wait that could hang runs on a bounded
 * thread (abi_v1.h).
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

#define KEY_A ((wdpool_owner)42)
#define KEY_B ((wdpool_owner)43)
#define KEY_C ((wdpool_owner)0x5eed5eed5eedULL)

/* How long a checkout or begin that is expected to wait is allowed to take
 * at most (the waits asked for are 100 to 200 ms): generous, not a speed
 * target. */
#define GENEROUS_MS 5000
/* How long a bounded thread may run before the program gives up. */
#define THREAD_DEADLINE_MS 30000

/* ------------------------------------------------------------------------
 * A checkout (and what it saw) on another thread. */

typedef struct checkout_job {
  const wdpool_pool *pool;
  wdpool_owner owner;
  int64_t timeout_ms;
  bool check_in; /* check the lease in before returning */
  /* results */
  wdpool_result rc;
  char message[256];
  size_t index;
  int64_t took_ms;
  wdpool_producer *handle;
  bool saw_released; /* `released` was already set when the checkout returned */
  /* set by the test */
  atomic_bool *released;
} checkout_job;

static void checkout_on_thread(void *arg) {
  checkout_job *job = arg;
  wdpool_producer *p = NULL;
  wdpool_error *err = NULL;
  int64_t start = now_ms();
  job->rc = wdpool_pool_checkout(job->pool, job->owner, job->timeout_ms, &p, &err);
  job->took_ms = now_ms() - start;
  job->saw_released = job->released != NULL && atomic_load(job->released);
  snprintf(job->message, sizeof job->message, "%s", wdpool_error_message(err));
  wdpool_error_free(err);
  job->index = (size_t)-1;
  job->handle = p;
  if (job->rc == WDPOOL_OK) {
    job->index = producer_index(p);
    if (job->check_in) {
      CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
      job->handle = NULL;
    }
  }
}

/* Runs a checkout on a fresh thread and waits for it (bounded). */
static void checkout_elsewhere(checkout_job *job) {
  bounded_thread t;
  if (bounded_start(&t, checkout_on_thread, job)) BOUNDED_JOIN(&t, THREAD_DEADLINE_MS);
}

/* ------------------------------------------------------------------------
 * Keys. */

static void test_keys(void) {
  pool_setup setup = {.no_deliver = true};

  /* Two keys on one thread: two producers of a pool of 2. */
  wdpool_pool *pool = make_pool(2, 1000, &setup);
  wdpool_producer *a = NULL, *b = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, KEY_A, 100, &a, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_checkout(pool, KEY_B, 100, &b, CHECK_ERR), WDPOOL_OK);
  if (CHECK(a != NULL && b != NULL)) {
    CHECK(producer_index(a) != producer_index(b));
    CHECK(producer_index(a) != (size_t)-1 && producer_index(b) != (size_t)-1);
    CHECK_EQ(stats_of(pool).in_use, 2);
    CHECK_RC(wdpool_producer_checkin(b, CHECK_ERR), WDPOOL_OK);
    CHECK_RC(wdpool_producer_checkin(a, CHECK_ERR), WDPOOL_OK);
  }
  CHECK_EQ(stats_of(pool).in_use, 0);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);

  /* A pool of 1: the second key waits for the first. */
  pool = make_pool(1, 1000, &setup);
  a = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, KEY_A, 100, &a, CHECK_ERR), WDPOOL_OK);
  wdpool_producer *none = NULL;
  int64_t start = now_ms();
  CHECK_RC(wdpool_pool_checkout(pool, KEY_B, 100, &none, CHECK_ERR), WDPOOL_TIMEOUT);
  int64_t took = now_ms() - start;
  CHECK(WAITED_AT_LEAST(took, 100));
  CHECK(took < GENEROUS_MS);
  CHECK(none == NULL);

  /* The same key nests on this thread ... */
  wdpool_producer *a2 = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, KEY_A, 100, &a2, CHECK_ERR), WDPOOL_OK);
  CHECK(a2 != NULL && a2 != a);
  CHECK_EQ(producer_index(a2), producer_index(a));
  CHECK_EQ(stats_of(pool).in_use, 1);
  CHECK_RC(wdpool_producer_checkin(a2, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).in_use, 1); /* the outer lease still holds it */

  /* ... and from another thread: a key is re-entrant whatever OS thread
   * calls. */
  checkout_job same_key = {.pool = pool, .owner = KEY_A, .timeout_ms = 100, .check_in = true};
  checkout_elsewhere(&same_key);
  CHECK_EQ(same_key.rc, WDPOOL_OK);
  CHECK_EQ(same_key.index, 0);
  CHECK_EQ(stats_of(pool).in_use, 1);

  /* Neither the thread nor nobody owns KEY_A's lease: both wait. */
  checkout_job by_thread = {.pool = pool, .owner = WDPOOL_OWNER_THREAD, .timeout_ms = 100};
  checkout_elsewhere(&by_thread);
  CHECK_EQ(by_thread.rc, WDPOOL_TIMEOUT);
  none = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, 100, &none, CHECK_ERR), WDPOOL_TIMEOUT);
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_NONE, 100, &none, CHECK_ERR), WDPOOL_TIMEOUT);
  CHECK(none == NULL);

  /* KEY_B with a long timeout on another thread gets the producer once
   * KEY_A checks in: a real wait, seen in the pool's statistics. */
  atomic_bool released;
  atomic_init(&released, false);
  checkout_job waiter = {.pool = pool, .owner = KEY_B, .timeout_ms = 20000, .check_in = true, .released = &released};
  bounded_thread t;
  if (bounded_start(&t, checkout_on_thread, &waiter)) {
    WAIT_UNTIL(pool_stats_now(pool).waiting >= 1, GENEROUS_MS);
    CHECK_EQ(stats_of(pool).waiting, 1);
    CHECK(!bounded_done(&t));
    atomic_store(&released, true);
    CHECK_RC(wdpool_producer_checkin(a, CHECK_ERR), WDPOOL_OK);
    BOUNDED_JOIN(&t, THREAD_DEADLINE_MS);
    CHECK_EQ(waiter.rc, WDPOOL_OK);
    CHECK_EQ(waiter.index, 0);
    CHECK(waiter.saw_released); /* it returned only after the checkin began */
  } else {
    wdpool_producer_checkin(a, NULL);
  }
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.waiting, 0);
  CHECK_EQ(s.created, 1);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * WDPOOL_OWNER_NONE and WDPOOL_OWNER_THREAD. */

static void test_none_and_thread(void) {
  pool_setup setup = {.no_deliver = true};

  /* Nobody's checkouts never nest: two producers of a pool of 2, and a
   * timeout on a pool of 1, on the same thread. */
  wdpool_pool *pool = make_pool(2, 1000, &setup);
  wdpool_producer *a = NULL, *b = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_NONE, 100, &a, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_NONE, 100, &b, CHECK_ERR), WDPOOL_OK);
  if (CHECK(a != NULL && b != NULL)) {
    CHECK(producer_index(a) != producer_index(b));
    CHECK_RC(wdpool_producer_checkin(a, CHECK_ERR), WDPOOL_OK);
    CHECK_RC(wdpool_producer_checkin(b, CHECK_ERR), WDPOOL_OK);
  }
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);

  pool = make_pool(1, 1000, &setup);
  a = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_NONE, 100, &a, CHECK_ERR), WDPOOL_OK);
  wdpool_producer *none = NULL;
  int64_t start = now_ms();
  CHECK_RC_MSG(wdpool_pool_checkout(pool, WDPOOL_OWNER_NONE, 100, &none, CHECK_ERR), WDPOOL_TIMEOUT, "0/1");
  CHECK(WAITED_AT_LEAST(now_ms() - start, 100));
  CHECK(now_ms() - start < GENEROUS_MS);
  CHECK(none == NULL);
  /* This thread does not own nobody's lease either. */
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, 100, &none, CHECK_ERR), WDPOOL_TIMEOUT);
  CHECK(none == NULL);
  CHECK_RC(wdpool_producer_checkin(a, CHECK_ERR), WDPOOL_OK);

  /* The thread's checkouts nest on the same thread ... */
  a = NULL;
  wdpool_producer *a2 = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, 100, &a, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, 100, &a2, CHECK_ERR), WDPOOL_OK);
  CHECK(a2 != NULL && a2 != a);
  CHECK_EQ(producer_index(a2), producer_index(a));
  CHECK_EQ(stats_of(pool).in_use, 1);
  /* ... but not across threads, ... */
  checkout_job other = {.pool = pool, .owner = WDPOOL_OWNER_THREAD, .timeout_ms = 100};
  checkout_elsewhere(&other);
  CHECK_EQ(other.rc, WDPOOL_TIMEOUT);
  CHECK(WAITED_AT_LEAST(other.took_ms, 100) && other.took_ms < GENEROUS_MS);
  CHECK_CONTAINS(other.message, "0/1");
  /* ... and a key is somebody else, even on the owning thread; so is
   * nobody. */
  none = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, KEY_C, 100, &none, CHECK_ERR), WDPOOL_TIMEOUT);
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_NONE, 100, &none, CHECK_ERR), WDPOOL_TIMEOUT);
  CHECK(none == NULL);
  /* The nested lease may be checked in first, the outer one from another
   * thread (checkin: any thread). */
  CHECK_RC(wdpool_producer_checkin(a2, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).in_use, 1);
  CHECK_RC(wdpool_producer_checkin(a, CHECK_ERR), WDPOOL_OK);
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.checkout_timeouts, 5);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Transactions belong to their owner. */

typedef struct intruder {
  wdpool_producer *p;     /* main's thread-owned handle, shared */
  wdpool_producer_info info;
  wdpool_result info_rc;
  wdpool_result begin_rc;
  int64_t begin_took_ms;
  wdpool_result produce_rc;
  int64_t produce_took_ms;
  wdpool_report report;
} intruder;

/* Another thread with main's handle, while main's transaction is open:
 * it never joins it. */
static void intrude(void *arg) {
  intruder *in = arg;
  in->info_rc = wdpool_producer_get_info(in->p, &in->info, NULL);

  wdpool_error *err = NULL;
  int64_t start = now_ms();
  in->begin_rc = wdpool_producer_begin(in->p, 100, &err);
  in->begin_took_ms = now_ms() - start;
  if (in->begin_rc != WDPOOL_TIMEOUT) printf("intruder's begin: %s\n", wdpool_error_message(err));
  wdpool_error_free(err);

  wdpool_message m = text_message(TOPIC, "from the intruder");
  memset(&in->report, 0x5a, sizeof in->report);
  err = NULL;
  start = now_ms();
  in->produce_rc = wdpool_producer_produce_sync(in->p, &m, 200, &in->report, &err);
  in->produce_took_ms = now_ms() - start;
  if (in->produce_rc != WDPOOL_TIMEOUT) printf("intruder's produce: %s\n", wdpool_error_message(err));
  wdpool_error_free(err);
}

typedef struct latecomer {
  wdpool_producer *p;
  atomic_bool calling;  /* set right before begin */
  atomic_bool begun;    /* set when begin returned */
  atomic_bool main_committed; /* set by main right before its commit */
  bool saw_main_committed;
  wdpool_result begin_rc;
  wdpool_result info_rc;
  wdpool_producer_info info;
  wdpool_result produce_rc;
  wdpool_result end_rc;
  int ended;
  wdpool_result after_rc;
  wdpool_producer_info after;
} latecomer;

/* Another thread with main's handle begins while main's transaction is open
 * (with a long timeout): it proceeds once main commits, in a transaction
 * of its own. */
static void begin_late(void *arg) {
  latecomer *l = arg;
  atomic_store(&l->calling, true);
  l->begin_rc = wdpool_producer_begin(l->p, 20000, NULL);
  l->saw_main_committed = atomic_load(&l->main_committed);
  atomic_store(&l->begun, true);
  if (l->begin_rc != WDPOOL_OK) return;
  l->info_rc = wdpool_producer_get_info(l->p, &l->info, NULL);
  wdpool_message m = text_message(TOPIC, "from the latecomer");
  l->produce_rc = wdpool_producer_produce_sync(l->p, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, NULL);
  l->ended = 0;
  l->end_rc = wdpool_producer_end(l->p, WDPOOL_TXN_COMMIT, WDPOOL_TIMEOUT_DEFAULT, &l->ended, NULL);
  l->after_rc = wdpool_producer_get_info(l->p, &l->after, NULL);
}

typedef struct key_sharer {
  wdpool_producer *p;
  wdpool_result info_rc;
  wdpool_producer_info info;
  wdpool_result begin_rc;
  wdpool_result inner_info_rc;
  wdpool_producer_info inner;
  wdpool_result end_rc;
  int ended;
} key_sharer;

/* Another thread with a key-owned lease acts for the key: it nests inside
 * the key's open transaction. */
static void share_key(void *arg) {
  key_sharer *k = arg;
  k->info_rc = wdpool_producer_get_info(k->p, &k->info, NULL);
  k->begin_rc = wdpool_producer_begin(k->p, 100, NULL);
  k->inner_info_rc = wdpool_producer_get_info(k->p, &k->inner, NULL);
  if (k->begin_rc == WDPOOL_OK)
    k->end_rc = wdpool_producer_end(k->p, WDPOOL_TXN_COMMIT, WDPOOL_TIMEOUT_DEFAULT, &k->ended, NULL);
}

static void test_transaction_owners(void) {
  pool_setup setup = {.tx_prefix = "c-owners-tx-"};
  wdpool_pool *pool = make_pool(1, 5000, &setup);
  uint64_t id = wdpool_pool_id(pool);
  wdpool_producer_info info;

  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  if (!CHECK(p != NULL)) {
    wdpool_pool_free(pool);
    return;
  }
  txn_tally before = txn_tally_of(&events, id);

  /* Main (owner A, this thread) opens a transaction. */
  CHECK_RC(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  produce_one(p, NULL);
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(info.transactional && info.in_transaction);
  CHECK_EQ(info.depth, 1);

  /* Another thread with the same handle: sees the transaction, has no
   * level of its own, cannot begin or produce within 100 / 200 ms. */
  intruder in = {.p = p};
  bounded_thread t;
  if (bounded_start(&t, intrude, &in)) BOUNDED_JOIN(&t, THREAD_DEADLINE_MS);
  CHECK_EQ(in.info_rc, WDPOOL_OK);
  CHECK(in.info.in_transaction);
  CHECK_EQ(in.info.depth, 0);
  CHECK_EQ(in.begin_rc, WDPOOL_TIMEOUT);
  CHECK(WAITED_AT_LEAST(in.begin_took_ms, 100));
  CHECK(in.begin_took_ms < GENEROUS_MS);
  CHECK(in.produce_rc != WDPOOL_OK); /* it did not join main's transaction */
  CHECK_EQ(in.produce_rc, WDPOOL_TIMEOUT);
  CHECK(in.produce_took_ms < GENEROUS_MS);
  /* Never handed to librdkafka, so no report was written. */
  CHECK_EQ(in.report.partition, 0x5a5a5a5a);

  /* Main's transaction is untouched by those attempts. */
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(info.in_transaction);
  CHECK_EQ(info.depth, 1);
  CHECK(!info.rollback_only);
  CHECK_TXN_DELTA(&events, before, id, 1, 0, 0);

  /* A latecomer begins (long timeout) while main's transaction is open: it
   * waits; main commits; it proceeds in a transaction of its own, at
   * depth 1. */
  latecomer late = {.p = p};
  atomic_init(&late.calling, false);
  atomic_init(&late.begun, false);
  atomic_init(&late.main_committed, false);
  if (bounded_start(&t, begin_late, &late)) {
    WAIT_UNTIL(atomic_load(&late.calling), GENEROUS_MS);
    CHECK(atomic_load(&late.calling));
    produce_one(p, NULL); /* main keeps working in its transaction meanwhile */
    CHECK(!atomic_load(&late.begun));
    CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
    CHECK_EQ(info.depth, 1);
    atomic_store(&late.main_committed, true);
    int ended = 0;
    CHECK_RC(wdpool_producer_end(p, WDPOOL_TXN_COMMIT, WDPOOL_TIMEOUT_DEFAULT, &ended, CHECK_ERR), WDPOOL_OK);
    CHECK_EQ(ended, WDPOOL_TXN_COMMITTED);
    BOUNDED_JOIN(&t, THREAD_DEADLINE_MS);
    CHECK_EQ(late.begin_rc, WDPOOL_OK);
    CHECK(late.saw_main_committed); /* it began only once main's commit began */
    CHECK_EQ(late.info_rc, WDPOOL_OK);
    CHECK(late.info.in_transaction);
    CHECK_EQ(late.info.depth, 1); /* never nested in main's transaction */
    CHECK_EQ(late.produce_rc, WDPOOL_OK);
    CHECK_EQ(late.end_rc, WDPOOL_OK);
    CHECK_EQ(late.ended, WDPOOL_TXN_COMMITTED); /* its own outermost level */
    CHECK_EQ(late.after_rc, WDPOOL_OK);
    CHECK(!late.after.in_transaction);
    CHECK_EQ(late.after.depth, 0);
  }
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(!info.in_transaction);
  CHECK_EQ(info.depth, 0);
  /* Two transactions, both committed: main's and the latecomer's. */
  CHECK_TXN_DELTA(&events, before, id, 2, 2, 0);
  size_t started_on_main = 0, started_elsewhere = 0;
  pthread_mutex_lock(&events.lock);
  for (size_t i = 0; i < events.len; i++) {
    if (events.events[i].pool_id != id || events.events[i].kind != WDPOOL_EVENT_TRANSACTION_STARTED) continue;
    if (pthread_equal(events.events[i].thread, main_thread)) started_on_main++;
    else started_elsewhere++;
  }
  pthread_mutex_unlock(&events.lock);
  CHECK_EQ(started_on_main, 1);
  CHECK_EQ(started_elsewhere, 1);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);

  /* A key-owned lease acts for its key from any thread: another thread
   * nests inside the key's transaction (depth 2), and only the key's
   * outermost level commits. */
  p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  if (CHECK(p != NULL)) {
    before = txn_tally_of(&events, id);
    CHECK_RC(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
    produce_one(p, NULL);
    key_sharer k = {.p = p, .ended = 0};
    if (bounded_start(&t, share_key, &k)) BOUNDED_JOIN(&t, THREAD_DEADLINE_MS);
    CHECK_EQ(k.info_rc, WDPOOL_OK);
    CHECK_EQ(k.info.depth, 1);
    CHECK_EQ(k.begin_rc, WDPOOL_OK);
    CHECK_EQ(k.inner_info_rc, WDPOOL_OK);
    CHECK_EQ(k.inner.depth, 2);
    CHECK_EQ(k.end_rc, WDPOOL_OK);
    CHECK_EQ(k.ended, WDPOOL_TXN_LEVEL_CLOSED);
    CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
    CHECK(info.in_transaction);
    CHECK_EQ(info.depth, 1);
    int ended = 0;
    CHECK_RC(wdpool_producer_end(p, WDPOOL_TXN_COMMIT, WDPOOL_TIMEOUT_DEFAULT, &ended, CHECK_ERR), WDPOOL_OK);
    CHECK_EQ(ended, WDPOOL_TXN_COMMITTED);
    CHECK_TXN_DELTA(&events, before, id, 1, 1, 0);
    CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  }

  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.replaced, 0);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  abi_program = "test_owners";
  if (!api_setup()) return check_summary(abi_program);

  test_keys();
  test_none_and_thread();
  test_transaction_owners();

  return api_teardown(abi_program);
}
