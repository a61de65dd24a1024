/*
 * test_pool_produce: wdpool_pool_produce_async / _tagged / _into and their
 * global-pool forms, one message through the pool in one call.
 *
 *   - Each form produces: fire and forget, with a delivery handle, tagged
 *     into a report queue (every tag back once), into report slots (one and
 *     three at a time); every report delivered, every producer back.
 *   - The owner's own producer is used when it holds one (nested), and
 *     joins its transaction; outside one, a transactional producer gives
 *     the message a transaction of its own, committed before the call
 *     returns.
 *   - WDPOOL_TIMEOUT_NO_WAIT: with the only producer held by another owner,
 *     or a cold pool, OK with produced false at once, nothing sent or
 *     created, no checkout timeout counted, no event; a timeout instead
 *     waits and fails with TIMEOUT, counted.
 *   - Bad input loses nothing: an invalid message is refused before any
 *     checkout (a cold pool creates nothing); a message librdkafka refuses
 *     gives the producer back and leaves its slot EMPTY; NULL arguments,
 *     wrong-kind and freed handles, a closed pool, the global pool before
 *     setup and after close.
 *
 * Under ASan, UBSan and LeakSanitizer (and valgrind), against librdkafka's
 * in-process mock cluster (api_harness.h).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "support.h"
#include "api_harness.h"
#include "abi_v1.h"
#include "wdpool.h"

#define KEY_A ((wdpool_owner)2001)
#define KEY_B ((wdpool_owner)2002)
#define TAGS 200

static size_t timeout_events(void) { return event_log_count(&events, 0, WDPOOL_EVENT_CHECKOUT_TIMEOUT); }

static uint32_t state_of(const wdpool_report_slot *slot) { return __atomic_load_n(&slot->state, __ATOMIC_ACQUIRE); }

/* Takes reports from `q` until `want` came or `ms` passed; counts each tag
 * below TAGS in `seen` and the failed reports in `*failed`. Returns how
 * many came. */
static size_t take_tags(wdpool_report_queue *q, size_t want, int64_t ms, unsigned seen[TAGS], size_t *failed) {
  size_t have = 0;
  int64_t deadline = now_ms() + ms;
  wdpool_tagged_report r[32];
  while (have < want && now_ms() < deadline) {
    size_t n = 0;
    CHECK_RC(wdpool_report_queue_take(q, r, 32, 200, &n, CHECK_ERR), WDPOOL_OK);
    for (size_t i = 0; i < n; i++) {
      if (r[i].tag < TAGS) seen[r[i].tag]++;
      if (r[i].error_code != 0) (*failed)++;
      wdpool_error_free(r[i].error);
    }
    have += n;
  }
  return have;
}

/* Slots [first, first + n) all DONE and delivered within `ms`. */
static bool all_delivered(const wdpool_report_slot *array, size_t first, size_t n, int64_t ms) {
  int64_t deadline = now_ms() + ms;
  for (size_t i = first; i < first + n; i++) {
    while (state_of(&array[i]) == WDPOOL_SLOT_PENDING && now_ms() < deadline) poll_pause();
    if (state_of(&array[i]) != WDPOOL_SLOT_DONE || array[i].error_code != 0 || array[i].offset < 0) return false;
  }
  return true;
}

static void test_each_form(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(2, 5000, &setup);
  bool produced = false;

  /* Fire and forget, then a delivery handle: the handle's message comes
   * after the others on the single partition, from the same producer
   * (the calling thread's), so its offset counts them all. */
  wdpool_message m = text_message(OFFSETS_TOPIC, "through");
  wdpool_delivery *first = NULL;
  CHECK_RC(wdpool_pool_produce_async(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &m, &first, &produced, CHECK_ERR),
           WDPOOL_OK);
  CHECK(produced);
  CHECK(first != NULL);
  CHECK_RC(wdpool_delivery_wait(first, MAX_WAIT_MS, CHECK_ERR), WDPOOL_OK);
  wdpool_report r0 = {0};
  CHECK_RC(wdpool_delivery_report(first, 0, &r0, CHECK_ERR), WDPOOL_OK);
  enum { FORGET = 50 };
  size_t not_produced = 0;
  for (int i = 0; i < FORGET; i++) {
    produced = false;
    CHECK_RC(wdpool_pool_produce_async(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &m, NULL, &produced, CHECK_ERR),
             WDPOOL_OK);
    if (!produced) not_produced++;
  }
  CHECK_EQ(not_produced, 0);
  /* produced_out may be NULL. */
  CHECK_RC(wdpool_pool_produce_async(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &m, NULL, NULL, CHECK_ERR),
           WDPOOL_OK);
  wdpool_delivery *last = NULL;
  CHECK_RC(wdpool_pool_produce_async(pool, WDPOOL_OWNER_NONE, 1000, &m, &last, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_delivery_wait(last, MAX_WAIT_MS, CHECK_ERR), WDPOOL_OK);
  wdpool_report r1 = {0};
  CHECK_RC(wdpool_delivery_report(last, 0, &r1, CHECK_ERR), WDPOOL_OK);
  CHECK(r0.offset >= 0);
  CHECK(r1.offset >= r0.offset + 1);
  wdpool_delivery_free(first);
  wdpool_delivery_free(last);

  /* Tagged: every tag back once, delivered. */
  wdpool_report_queue *q = NULL;
  CHECK_RC(wdpool_report_queue_new(&q, CHECK_ERR), WDPOOL_OK);
  wdpool_message t = text_message(TOPIC, "tagged through");
  for (uint64_t tag = 0; tag < TAGS; tag++) {
    wdpool_owner owner = tag % 3 == 0 ? WDPOOL_OWNER_THREAD : tag % 3 == 1 ? KEY_A : WDPOOL_OWNER_NONE;
    produced = false;
    CHECK_RC(wdpool_pool_produce_tagged(pool, owner, WDPOOL_TIMEOUT_DEFAULT, &t, q, tag, &produced, CHECK_ERR), WDPOOL_OK);
    CHECK(produced);
  }
  unsigned seen[TAGS] = {0};
  size_t failed = 0;
  CHECK_EQ(take_tags(q, TAGS, 20000, seen, &failed), TAGS);
  CHECK_EQ(failed, 0);
  size_t once = 0;
  for (size_t i = 0; i < TAGS; i++) once += seen[i] == 1;
  CHECK_EQ(once, TAGS);
  CHECK_EQ(wdpool_report_queue_len(q), 0);

  /* Into slots: one at a time, then three in one call. */
  wdpool_report_slots *s = NULL;
  CHECK_RC(wdpool_report_slots_new(8, &s, CHECK_ERR), WDPOOL_OK);
  const wdpool_report_slot *array = NULL;
  size_t count = 0;
  CHECK_RC(wdpool_report_slots_array(s, &array, &count, CHECK_ERR), WDPOOL_OK);
  for (size_t i = 0; i < 5; i++) {
    CHECK_RC(wdpool_pool_produce_into(pool, KEY_B, WDPOOL_TIMEOUT_DEFAULT, &t, 1, s, i, &produced, CHECK_ERR), WDPOOL_OK);
    CHECK(produced);
  }
  wdpool_message three[3] = {t, t, t};
  three[1].partition = 3;
  CHECK_RC(wdpool_pool_produce_into(pool, KEY_B, WDPOOL_TIMEOUT_DEFAULT, three, 3, s, 5, &produced, CHECK_ERR), WDPOOL_OK);
  CHECK(all_delivered(array, 0, 8, 20000));
  CHECK_EQ(array[6].partition, 3);

  wdpool_statistics st = stats_of(pool);
  CHECK_EQ(st.in_use, 0);
  CHECK_EQ(st.checkout_timeouts, 0);
  wdpool_report_slots_free(s);
  wdpool_report_queue_free(q);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

static void test_no_wait(void) {
  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 2000, &setup);
  size_t timeouts_before = timeout_events();
  wdpool_message m = text_message(TOPIC, "no wait");
  bool produced = true;

  /* Cold: nothing free, nothing created, nothing counted. */
  CHECK_RC(wdpool_pool_produce_async(pool, KEY_A, WDPOOL_TIMEOUT_NO_WAIT, &m, NULL, &produced, CHECK_ERR), WDPOOL_OK);
  CHECK(!produced);
  wdpool_statistics st = stats_of(pool);
  CHECK_EQ(st.created, 0);
  CHECK_EQ(st.creating, 0);

  /* KEY_A holds the only producer: its own calls use it (nested), KEY_B's
   * find none at once. */
  wdpool_producer *held = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &held, CHECK_ERR), WDPOOL_OK);
  produced = false;
  CHECK_RC(wdpool_pool_produce_async(pool, KEY_A, WDPOOL_TIMEOUT_NO_WAIT, &m, NULL, &produced, CHECK_ERR), WDPOOL_OK);
  CHECK(produced);
  CHECK_EQ(stats_of(pool).in_use, 1);

  wdpool_report_queue *q = NULL;
  CHECK_RC(wdpool_report_queue_new(&q, CHECK_ERR), WDPOOL_OK);
  wdpool_report_slots *s = NULL;
  CHECK_RC(wdpool_report_slots_new(2, &s, CHECK_ERR), WDPOOL_OK);
  const wdpool_report_slot *array = NULL;
  size_t count = 0;
  CHECK_RC(wdpool_report_slots_array(s, &array, &count, CHECK_ERR), WDPOOL_OK);
  int64_t start = now_ms();
  produced = true;
  CHECK_RC(wdpool_pool_produce_async(pool, KEY_B, WDPOOL_TIMEOUT_NO_WAIT, &m, NULL, &produced, CHECK_ERR), WDPOOL_OK);
  CHECK(!produced);
  produced = true;
  CHECK_RC(wdpool_pool_produce_tagged(pool, KEY_B, WDPOOL_TIMEOUT_NO_WAIT, &m, q, 7, &produced, CHECK_ERR), WDPOOL_OK);
  CHECK(!produced);
  produced = true;
  CHECK_RC(wdpool_pool_produce_into(pool, KEY_B, WDPOOL_TIMEOUT_NO_WAIT, &m, 1, s, 0, &produced, CHECK_ERR), WDPOOL_OK);
  CHECK(!produced);
  CHECK(now_ms() - start < 1000); /* never the pool's 2 s */
  CHECK_EQ(state_of(&array[0]), WDPOOL_SLOT_EMPTY);
  size_t n = 99;
  wdpool_tagged_report r;
  CHECK_RC(wdpool_report_queue_take(q, &r, 1, 0, &n, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(n, 0);
  st = stats_of(pool);
  CHECK_EQ(st.checkout_timeouts, 0);
  CHECK_EQ(timeout_events(), timeouts_before);

  /* A timeout waits for it, and counts. */
  start = now_ms();
  CHECK_RC(wdpool_pool_produce_async(pool, KEY_B, 100, &m, NULL, &produced, CHECK_ERR), WDPOOL_TIMEOUT);
  CHECK(WAITED_AT_LEAST(now_ms() - start, 100));
  CHECK_EQ(stats_of(pool).checkout_timeouts, 1);

  /* Given back: KEY_B gets it at once. */
  CHECK_RC(wdpool_producer_checkin(held, CHECK_ERR), WDPOOL_OK);
  produced = false;
  CHECK_RC(wdpool_pool_produce_into(pool, KEY_B, WDPOOL_TIMEOUT_NO_WAIT, &m, 1, s, 1, &produced, CHECK_ERR), WDPOOL_OK);
  CHECK(produced);
  CHECK(state_of(&array[1]) != WDPOOL_SLOT_EMPTY);
  CHECK_EQ(stats_of(pool).in_use, 0);

  wdpool_report_slots_free(s);
  wdpool_report_queue_free(q);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

static void test_transactional(void) {
  pool_setup setup = {.tx_prefix = "c-through-"};
  wdpool_pool *pool = make_pool(1, 5000, &setup);
  uint64_t id = wdpool_pool_id(pool);
  wdpool_message m = text_message(TOPIC, "in a transaction");

  /* Outside a transaction: one of its own, committed before it returns. */
  txn_tally before = txn_tally_of(&events, id);
  wdpool_delivery *d = NULL;
  CHECK_RC(wdpool_pool_produce_async(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &m, &d, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_TXN_DELTA(&events, before, id, 1, 1, 0);
  CHECK_RC(wdpool_delivery_wait(d, 0, CHECK_ERR), WDPOOL_OK);
  wdpool_delivery_free(d);

  /* Inside the owner's transaction: joins it, and goes when it aborts. */
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  before = txn_tally_of(&events, id);
  bool produced = false;
  CHECK_RC(wdpool_pool_produce_async(pool, KEY_A, WDPOOL_TIMEOUT_NO_WAIT, &m, NULL, &produced, CHECK_ERR), WDPOOL_OK);
  CHECK(produced);
  CHECK_TXN_DELTA(&events, before, id, 0, 0, 0);
  wdpool_producer_info info;
  CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
  CHECK(info.in_transaction);
  CHECK_EQ(info.depth, 1);
  CHECK_RC(wdpool_producer_abort(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  CHECK_TXN_DELTA(&events, before, id, 0, 0, 1);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(stats_of(pool).in_use, 0);

  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

static void test_bad_input(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(1, 2000, &setup);
  wdpool_message good = text_message(TOPIC, "good");
  bool produced = false;

  /* Refused before any checkout: nothing is created for them. */
  wdpool_message bad = text_message(TOPIC, "bad");
  bad.topic = "\xff\xfe";
  CHECK_RC_BOTH(wdpool_pool_produce_async(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &bad, NULL, &produced, CHECK_ERR),
                WDPOOL_INVALID_MESSAGE);
  CHECK_RC_BOTH(wdpool_pool_produce_async(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, NULL, NULL, &produced, CHECK_ERR),
                WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_pool_produce_tagged(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &good, NULL, 1, &produced, CHECK_ERR),
                WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_pool_produce_into(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &good, 1, NULL, 0, &produced, CHECK_ERR),
                WDPOOL_NULL_PARAMETER);
  wdpool_report_queue *q = NULL;
  CHECK_RC(wdpool_report_queue_new(&q, CHECK_ERR), WDPOOL_OK);
  wdpool_report_queue *freed_q = NULL;
  CHECK_RC(wdpool_report_queue_new(&freed_q, CHECK_ERR), WDPOOL_OK);
  wdpool_report_queue_free(freed_q);
  CHECK_RC_BOTH(wdpool_pool_produce_tagged(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &good, freed_q, 1, &produced, CHECK_ERR),
                WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_pool_produce_tagged(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &bad, q, 1, &produced, CHECK_ERR),
                WDPOOL_INVALID_MESSAGE);
  wdpool_report_slots *s = NULL;
  CHECK_RC(wdpool_report_slots_new(2, &s, CHECK_ERR), WDPOOL_OK);
  const wdpool_report_slot *array = NULL;
  size_t count = 0;
  CHECK_RC(wdpool_report_slots_array(s, &array, &count, CHECK_ERR), WDPOOL_OK);
  CHECK_RC_BOTH(wdpool_pool_produce_into(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &good, 0, s, 0, &produced, CHECK_ERR),
                WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_pool_produce_into(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, NULL, 1, s, 0, &produced, CHECK_ERR),
                WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_pool_produce_into(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &bad, 1, s, 0, &produced, CHECK_ERR),
                WDPOOL_INVALID_MESSAGE);
  CHECK_RC_BOTH(wdpool_pool_produce_async(NULL, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &good, NULL, &produced, CHECK_ERR),
                WDPOOL_NULL_PARAMETER);
  CHECK_RC(wdpool_pool_produce_async((const wdpool_pool *)api_mock, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &good, NULL, &produced,
                                     CHECK_ERR),
           WDPOOL_INVALID_ARGUMENT);
  CHECK_RC(wdpool_pool_produce_tagged(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &good, (const wdpool_report_queue *)s, 1,
                                      &produced, CHECK_ERR),
           WDPOOL_INVALID_ARGUMENT);
  CHECK_EQ(stats_of(pool).created, 0);
  CHECK_EQ(state_of(&array[0]), WDPOOL_SLOT_EMPTY);

  /* Warm (its metadata known), then refused by librdkafka after the
   * checkout (no such partition): the producer goes back, the slot is
   * EMPTY again, nothing is queued. */
  wdpool_message warm = text_message(OFFSETS_TOPIC, "warm");
  CHECK_RC(wdpool_pool_produce_into(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &warm, 1, s, 1, &produced, CHECK_ERR), WDPOOL_OK);
  CHECK(all_delivered(array, 1, 1, 20000));
  wdpool_message far = text_message(OFFSETS_TOPIC, "far");
  far.partition = 1000; /* the topic has 1 partition */
  wdpool_error *err = NULL;
  CHECK(wdpool_pool_produce_into(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &far, 1, s, 0, &produced, &err) != WDPOOL_OK);
  wdpool_error_free(err);
  CHECK_EQ(state_of(&array[0]), WDPOOL_SLOT_EMPTY);
  err = NULL;
  CHECK(wdpool_pool_produce_tagged(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &far, q, 1, &produced, &err) != WDPOOL_OK);
  wdpool_error_free(err);
  err = NULL;
  CHECK(wdpool_pool_produce_async(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &far, NULL, &produced, &err) !=
        WDPOOL_OK);
  wdpool_error_free(err);
  CHECK_EQ(wdpool_report_queue_len(q), 0);
  wdpool_statistics st = stats_of(pool);
  CHECK_EQ(st.created, 1);
  CHECK_EQ(st.in_use, 0);

  /* Closed, then freed. */
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC_BOTH(wdpool_pool_produce_async(pool, KEY_A, WDPOOL_TIMEOUT_NO_WAIT, &good, NULL, &produced, CHECK_ERR),
                WDPOOL_CLOSED);
  CHECK_RC_BOTH(wdpool_pool_produce_tagged(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &good, q, 1, &produced, CHECK_ERR),
                WDPOOL_CLOSED);
  wdpool_pool_free(pool);
  CHECK_RC_BOTH(wdpool_pool_produce_into(pool, KEY_A, WDPOOL_TIMEOUT_DEFAULT, &good, 1, s, 0, &produced, CHECK_ERR),
                WDPOOL_STALE_HANDLE);
  wdpool_report_slots_free(s);
  wdpool_report_queue_free(q);
}

static void test_global(void) {
  wdpool_message m = text_message(TOPIC, "global");
  bool produced = false;
  CHECK_RC_BOTH(wdpool_produce_async(WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &m, NULL, &produced, CHECK_ERR),
                WDPOOL_NOT_SET_UP);
  pool_setup setup = {0};
  wdpool_options options = {.size = 1, .timeout_ms = 2000};
  CHECK_RC(wdpool_setup(&options, configure_pool, &setup, CHECK_ERR), WDPOOL_OK);
  wdpool_delivery *d = NULL;
  CHECK_RC(wdpool_produce_async(WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &m, &d, &produced, CHECK_ERR), WDPOOL_OK);
  CHECK(produced);
  CHECK_RC(wdpool_delivery_wait(d, MAX_WAIT_MS, CHECK_ERR), WDPOOL_OK);
  wdpool_delivery_free(d);
  wdpool_report_queue *q = NULL;
  CHECK_RC(wdpool_report_queue_new(&q, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_produce_tagged(KEY_A, WDPOOL_TIMEOUT_NO_WAIT, &m, q, 3, &produced, CHECK_ERR), WDPOOL_OK);
  CHECK(produced);
  unsigned seen[TAGS] = {0};
  size_t failed = 0;
  CHECK_EQ(take_tags(q, 1, 20000, seen, &failed), 1);
  CHECK_EQ(seen[3], 1);
  CHECK_EQ(failed, 0);
  wdpool_report_slots *s = NULL;
  CHECK_RC(wdpool_report_slots_new(1, &s, CHECK_ERR), WDPOOL_OK);
  const wdpool_report_slot *array = NULL;
  size_t count = 0;
  CHECK_RC(wdpool_report_slots_array(s, &array, &count, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_produce_into(WDPOOL_OWNER_NONE, WDPOOL_TIMEOUT_DEFAULT, &m, 1, s, 0, &produced, CHECK_ERR), WDPOOL_OK);
  CHECK(all_delivered(array, 0, 1, 20000));
  wdpool_statistics st;
  CHECK_RC(wdpool_stats(&st, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(st.in_use, 0);
  CHECK_RC(wdpool_close(false, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC_BOTH(wdpool_produce_tagged(KEY_A, WDPOOL_TIMEOUT_DEFAULT, &m, q, 4, &produced, CHECK_ERR), WDPOOL_CLOSED);
  CHECK_RC_BOTH(wdpool_produce_into(KEY_A, WDPOOL_TIMEOUT_DEFAULT, &m, 1, s, 0, &produced, CHECK_ERR), WDPOOL_CLOSED);
  wdpool_report_slots_free(s);
  wdpool_report_queue_free(q);
}

int main(void) {
  abi_program = "test_pool_produce";
  if (!api_setup()) return check_summary(abi_program);

  test_each_form();
  test_no_wait();
  test_transactional();
  test_bad_input();
  test_global();

  return api_teardown(abi_program);
}
