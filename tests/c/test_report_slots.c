/*
 * test_report_slots: wdpool_report_slots and wdpool_producer_produce_into,
 * delivery reports written into caller-chosen slots and read in place.
 *
 *   - 400 messages from two producers, one or three per call, into one
 *     array: every slot ends DONE with its partition, offset and timestamp
 *     (an explicit partition is kept), the same through
 *     wdpool_report_slots_poll, wdpool_report_slots_wait and the array read
 *     in place with acquire loads.
 *   - A message the broker refuses: poll and wait return KAFKA with the
 *     code and a message; the slot shows the code.
 *   - An invalid message, and one librdkafka refuses: an error, and the
 *     slot is EMPTY again. A PENDING slot cannot be produced into (all or
 *     none over a range); a DONE one can, and its old report is gone.
 *   - A transactional producer: outside the caller's transaction the
 *     report is in when the call returns. Inside it, with slow brokers,
 *     the slot stays PENDING (a short wait times out, a range with it is
 *     refused and leaves the others as they were), and a waiter on another
 *     thread gets the report when it comes.
 *   - An array freed with messages in flight (slow brokers), and with a
 *     waiter on another thread: the waiter still gets its report, nothing
 *     leaks.
 *   - NULL arguments, wrong-kind and freed handles, counts and ranges out
 *     of bounds.
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

#define API_PRODUCE 0
#define ERR_MSG_SIZE_TOO_LARGE 10

static wdpool_report_slots *new_slots(size_t n, const wdpool_report_slot **array) {
  wdpool_report_slots *s = NULL;
  CHECK_RC(wdpool_report_slots_new(n, &s, CHECK_ERR), WDPOOL_OK);
  CHECK(s != NULL);
  size_t count = 0;
  CHECK_RC(wdpool_report_slots_array(s, array, &count, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(count, n);
  return s;
}

static uint32_t state_of(const wdpool_report_slot *slot) {
  return __atomic_load_n(&slot->state, __ATOMIC_ACQUIRE);
}

/* Waits until slot i of `array` is no longer PENDING, at most `ms`. */
static bool settled(const wdpool_report_slot *array, size_t i, int64_t ms) {
  int64_t deadline = now_ms() + ms;
  while (state_of(&array[i]) == WDPOOL_SLOT_PENDING) {
    if (now_ms() > deadline) return false;
    poll_pause();
  }
  return true;
}

static void test_many_reports_in_place(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(2, 5000, &setup);
  enum { CALLS = 100, ALL = 2 * CALLS * 2 }; /* per producer: 50 calls of 1, 50 of 3 */
  const wdpool_report_slot *array = NULL;
  wdpool_report_slots *s = new_slots(ALL, &array);
  for (size_t i = 0; i < ALL; i++) CHECK_EQ(state_of(&array[i]), WDPOOL_SLOT_EMPTY);
  wdpool_producer *a = NULL, *b = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, 1, WDPOOL_TIMEOUT_DEFAULT, &a, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_checkout(pool, 2, WDPOOL_TIMEOUT_DEFAULT, &b, CHECK_ERR), WDPOOL_OK);
  size_t next = 0, explicit_slots = 0;
  bool is_explicit[ALL];
  memset(is_explicit, 0, sizeof is_explicit);
  for (int i = 0; i < CALLS && next < ALL; i++) {
    wdpool_producer *p = i % 2 ? b : a;
    wdpool_message m[3] = {text_message(TOPIC, "slot"), text_message(TOPIC, "slot"), text_message(TOPIC, "slot")};
    size_t n = (i % 4) < 2 ? 1 : 3;
    if (next + n > ALL) n = ALL - next;
    if (i % 5 == 0) {
      m[0].partition = 2;
      is_explicit[next] = true;
      explicit_slots++;
    }
    CHECK_RC(wdpool_producer_produce_into(p, m, n, s, next, CHECK_ERR), WDPOOL_OK);
    next += n;
  }
  size_t pending_bad = 0, failed = 0, bad_place = 0, explicit_ok = 0, disagree = 0;
  for (size_t i = 0; i < next; i++) {
    uint32_t st = state_of(&array[i]);
    if (st != WDPOOL_SLOT_PENDING && st != WDPOOL_SLOT_DONE) pending_bad++;
  }
  CHECK_EQ(pending_bad, 0);
  for (size_t i = 0; i < next; i++) {
    wdpool_report r = {0};
    /* Every other slot is waited on through the call, the rest in place. */
    if (i % 2) {
      CHECK_RC(wdpool_report_slots_wait(s, i, 20000, &r, CHECK_ERR), WDPOOL_OK);
    } else {
      CHECK(settled(array, i, 20000));
      CHECK_RC(wdpool_report_slots_poll(s, i, &r, CHECK_ERR), WDPOOL_OK);
    }
    const wdpool_report_slot *in_place = &array[i];
    CHECK_EQ(state_of(in_place), WDPOOL_SLOT_DONE);
    if (in_place->error_code != 0 || r.error_code != 0) failed++;
    if (r.partition < 0 || r.partition > 3 || r.offset < 0 || r.timestamp_ms <= 0) bad_place++;
    if (r.partition != in_place->partition || r.offset != in_place->offset || r.timestamp_ms != in_place->timestamp_ms ||
        r.topic != NULL || in_place->reserved != 0)
      disagree++;
    if (is_explicit[i] && r.partition == 2) explicit_ok++;
  }
  CHECK_EQ(failed, 0);
  CHECK_EQ(bad_place, 0);
  CHECK_EQ(disagree, 0);
  CHECK_EQ(explicit_ok, explicit_slots);
  CHECK_RC(wdpool_producer_checkin(a, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(b, CHECK_ERR), WDPOOL_OK);
  /* A producer handle after its checkin. */
  wdpool_message m = text_message(TOPIC, "late");
  CHECK_RC_BOTH(wdpool_producer_produce_into(a, &m, 1, s, 0, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_EQ(state_of(&array[0]), WDPOOL_SLOT_DONE);
  wdpool_report_slots_free(s);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

static void test_failures_and_reuse(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(1, 5000, &setup);
  const wdpool_report_slot *array = NULL;
  wdpool_report_slots *s = new_slots(4, &array);
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, 1, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_report r = {0};

  /* Warm: metadata known, so the refusal below hits the next message. */
  wdpool_message m = text_message(OFFSETS_TOPIC, "warm");
  CHECK_RC(wdpool_producer_produce_into(p, &m, 1, s, 0, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_report_slots_wait(s, 0, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_OK);

  /* Refused by the broker: poll and wait say why; the slot has the code. */
  int32_t code = ERR_MSG_SIZE_TOO_LARGE;
  CHECK_RC(wdpool_mock_cluster_push_request_errors(api_mock, API_PRODUCE, &code, 1, CHECK_ERR), WDPOOL_OK);
  m = text_message(OFFSETS_TOPIC, "refused");
  CHECK_RC(wdpool_producer_produce_into(p, &m, 1, s, 1, CHECK_ERR), WDPOOL_OK);
  wdpool_error *err = NULL;
  CHECK_EQ(wdpool_report_slots_wait(s, 1, WDPOOL_TIMEOUT_DEFAULT, &r, &err), WDPOOL_KAFKA);
  CHECK(err != NULL);
  if (err != NULL) {
    CHECK_EQ(wdpool_error_kafka_code(err), ERR_MSG_SIZE_TOO_LARGE);
    CHECK(wdpool_error_message(err) != NULL && wdpool_error_message(err)[0] != '\0');
  }
  wdpool_error_free(err);
  CHECK_EQ(r.error_code, ERR_MSG_SIZE_TOO_LARGE);
  CHECK_EQ(r.offset, -1);
  CHECK_EQ(array[1].error_code, ERR_MSG_SIZE_TOO_LARGE);
  err = NULL;
  CHECK_EQ(wdpool_report_slots_poll(s, 1, NULL, &err), WDPOOL_KAFKA); /* again, without a report */
  CHECK(err != NULL && wdpool_error_kafka_code(err) == ERR_MSG_SIZE_TOO_LARGE);
  wdpool_error_free(err);

  /* A DONE slot may be produced into again: the failure is gone. */
  m = text_message(OFFSETS_TOPIC, "again");
  CHECK_RC(wdpool_producer_produce_into(p, &m, 1, s, 1, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_report_slots_wait(s, 1, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(r.error_code, 0);
  CHECK(r.offset >= 0);
  CHECK_EQ(array[1].error_code, 0);

  /* Invalid, and refused by librdkafka: nothing sent, the slot EMPTY. */
  wdpool_message bad = text_message(NULL, "no topic");
  CHECK_RC_MSG(wdpool_producer_produce_into(p, &bad, 1, s, 2, CHECK_ERR), WDPOOL_INVALID_MESSAGE, "topic");
  CHECK_EQ(state_of(&array[2]), WDPOOL_SLOT_EMPTY);
  wdpool_message far = text_message(OFFSETS_TOPIC, "x");
  far.partition = 1000; /* the topic has 1 partition */
  err = NULL;
  CHECK(wdpool_producer_produce_into(p, &far, 1, s, 2, &err) != WDPOOL_OK);
  wdpool_error_free(err);
  CHECK_EQ(state_of(&array[2]), WDPOOL_SLOT_EMPTY);
  CHECK_RC_MSG(wdpool_report_slots_poll(s, 2, &r, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "EMPTY");
  CHECK_RC_MSG(wdpool_report_slots_wait(s, 2, 1000, &r, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "EMPTY");
  /* Of three, the second refused by librdkafka: the others go, its slot is EMPTY. */
  wdpool_message three[2] = {text_message(OFFSETS_TOPIC, "ok"), far};
  err = NULL;
  CHECK(wdpool_producer_produce_into(p, three, 2, s, 2, &err) != WDPOOL_OK);
  wdpool_error_free(err);
  CHECK_RC(wdpool_report_slots_wait(s, 2, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(state_of(&array[3]), WDPOOL_SLOT_EMPTY);

  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  wdpool_report_slots_free(s);
  CHECK_RC(wdpool_pool_close(pool, true, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

typedef struct slot_waiter {
  wdpool_report_slots *s;
  size_t index;
  wdpool_result rc;
  wdpool_report report;
  atomic_bool started;
} slot_waiter;

static void wait_long(void *arg) {
  slot_waiter *w = arg;
  atomic_store(&w->started, true);
  w->rc = wdpool_report_slots_wait(w->s, w->index, 30000, &w->report, NULL);
}

static void set_rtt(uint32_t ms) {
  for (int32_t b = 1; b <= 3; b++) CHECK_RC(wdpool_mock_cluster_set_rtt(api_mock, b, ms, CHECK_ERR), WDPOOL_OK);
}

static void test_transactional_and_slow(void) {
  pool_setup setup = {.tx_prefix = "c-slots-tx-"};
  wdpool_pool *pool = make_pool(1, 10000, &setup);
  const wdpool_report_slot *array = NULL;
  wdpool_report_slots *s = new_slots(3, &array);
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, 1, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_report r = {0};

  /* Outside a transaction: its own, committed before the call returns. */
  wdpool_message m = text_message(OFFSETS_TOPIC, "implicit");
  CHECK_RC(wdpool_producer_produce_into(p, &m, 1, s, 0, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(state_of(&array[0]), WDPOOL_SLOT_DONE);
  CHECK_RC(wdpool_report_slots_poll(s, 0, &r, CHECK_ERR), WDPOOL_OK);

  /* Inside the caller's, with brokers that answer after 1.5 s: PENDING. */
  CHECK_RC(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  set_rtt(1500);
  m = text_message(OFFSETS_TOPIC, "explicit");
  CHECK_RC(wdpool_producer_produce_into(p, &m, 1, s, 1, CHECK_ERR), WDPOOL_OK);
  /* A PENDING slot is refused, all or none: the others are untouched. */
  wdpool_message two[2] = {text_message(OFFSETS_TOPIC, "x"), text_message(OFFSETS_TOPIC, "y")};
  CHECK_RC_MSG(wdpool_producer_produce_into(p, two, 2, s, 1, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "slot 1");
  CHECK_EQ(state_of(&array[2]), WDPOOL_SLOT_EMPTY);
  CHECK_RC_MSG(wdpool_producer_produce_into(p, two, 2, s, 0, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "slot 1");
  CHECK_EQ(state_of(&array[0]), WDPOOL_SLOT_DONE); /* its report is still there */
  CHECK_RC(wdpool_report_slots_poll(s, 0, &r, CHECK_ERR), WDPOOL_OK);
  CHECK(r.offset >= 0);
  /* Still in flight (unless the machine stalled 1.5 s): a short wait times out. */
  if (wdpool_report_slots_poll(s, 1, &r, NULL) == WDPOOL_PENDING) {
    int64_t start = now_ms();
    wdpool_result rc = wdpool_report_slots_wait(s, 1, 100, &r, NULL);
    CHECK(rc == WDPOOL_DELIVERY_TIMEOUT || rc == WDPOOL_OK);
    if (rc == WDPOOL_DELIVERY_TIMEOUT) CHECK(WAITED_AT_LEAST(now_ms() - start, 100));
  }
  /* A waiter on another thread gets the report when it comes. */
  slot_waiter w = {.s = s, .index = 1, .rc = WDPOOL_INVALID_ARGUMENT};
  atomic_init(&w.started, false);
  bounded_thread th;
  bool running = bounded_start(&th, wait_long, &w);
  if (running) {
    BOUNDED_JOIN(&th, 20000);
    CHECK_EQ(w.rc, WDPOOL_OK);
    CHECK(w.report.offset >= 0);
  }
  set_rtt(0);
  CHECK_EQ(state_of(&array[1]), WDPOOL_SLOT_DONE);
  CHECK_RC(wdpool_producer_end(p, WDPOOL_TXN_COMMIT, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);

  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  wdpool_report_slots_free(s);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

static void test_free_in_flight(void) {
  /* Freed with 100 messages in flight (brokers answering after 1 s) and
   * a waiter on another thread: the waiter still gets its report, the
   * others are dropped, nothing leaks. */
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(1, 10000, &setup);
  const wdpool_report_slot *array = NULL;
  wdpool_report_slots *s = new_slots(100, &array);
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, 1, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_message warm = text_message(TOPIC, "warm");
  CHECK_RC(wdpool_producer_produce_sync(p, &warm, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);
  set_rtt(1000);
  for (size_t i = 0; i < 100; i++) {
    wdpool_message m = text_message(TOPIC, "in flight");
    CHECK_RC(wdpool_producer_produce_into(p, &m, 1, s, i, CHECK_ERR), WDPOOL_OK);
  }
  slot_waiter w = {.s = s, .index = 7, .rc = WDPOOL_INVALID_ARGUMENT};
  atomic_init(&w.started, false);
  bounded_thread th;
  bool running = bounded_start(&th, wait_long, &w);
  if (running) WAIT_UNTIL(atomic_load(&w.started), 5000);
  wdpool_report_slots_free(s);
  wdpool_message m = text_message(TOPIC, "after");
  CHECK_RC_BOTH(wdpool_producer_produce_into(p, &m, 1, s, 0, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_report_slots_poll(s, 0, NULL, CHECK_ERR), WDPOOL_STALE_HANDLE);
  if (running) {
    BOUNDED_JOIN(&th, 20000);
    /* Inside its wait when freed: the report. Just before it: STALE. */
    CHECK(w.rc == WDPOOL_OK || w.rc == WDPOOL_STALE_HANDLE);
    if (w.rc == WDPOOL_OK) CHECK(w.report.offset >= 0);
  }
  CHECK_RC(wdpool_producer_flush(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  set_rtt(0);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

static void test_bad_arguments(void) {
  const wdpool_report_slot *array = NULL;
  wdpool_report_slots *s = new_slots(2, &array);
  wdpool_report r = {0};
  size_t n = 99;
  wdpool_report_slots *none = NULL;
  CHECK_RC_BOTH(wdpool_report_slots_new(2, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_MSG(wdpool_report_slots_new(0, &none, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "count");
  CHECK_RC_MSG(wdpool_report_slots_new((size_t)1 << 21, &none, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "count");
  CHECK(none == NULL);
  CHECK_RC_BOTH(wdpool_report_slots_array(NULL, &array, &n, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_report_slots_array(s, NULL, &n, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_report_slots_array(s, &array, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_report_slots_array((const wdpool_report_slots *)api_mock, &array, &n, CHECK_ERR),
                WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_report_slots_poll(NULL, 0, &r, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_report_slots_wait(NULL, 0, 0, &r, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_MSG(wdpool_report_slots_poll(s, 2, &r, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "out of range");
  CHECK_RC_MSG(wdpool_report_slots_wait(s, 2, 0, &r, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "out of range");
  CHECK_RC_MSG(wdpool_report_slots_poll(s, 0, &r, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "EMPTY");
  CHECK_RC_BOTH(wdpool_report_slots_poll((const wdpool_report_slots *)api_mock, 0, &r, CHECK_ERR),
                WDPOOL_INVALID_ARGUMENT);

  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 5000, &setup);
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, 1, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_message m[2] = {text_message(TOPIC, "x"), text_message(TOPIC, "y")};
  CHECK_RC_BOTH(wdpool_producer_produce_into(NULL, m, 1, s, 0, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_into(p, NULL, 1, s, 0, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_into(p, m, 1, NULL, 0, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_MSG(wdpool_producer_produce_into(p, m, 0, s, 0, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "count");
  CHECK_RC_MSG(wdpool_producer_produce_into(p, m, 2, s, 1, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "out of range");
  CHECK_RC_MSG(wdpool_producer_produce_into(p, m, 2, s, SIZE_MAX, CHECK_ERR), WDPOOL_INVALID_ARGUMENT,
               "out of range");
  CHECK_RC_BOTH(wdpool_producer_produce_into(p, m, 1, (wdpool_report_slots *)api_mock, 0, CHECK_ERR),
                WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_producer_produce_into((wdpool_producer *)s, m, 1, s, 0, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_EQ(state_of(&array[0]), WDPOOL_SLOT_EMPTY);
  CHECK_EQ(state_of(&array[1]), WDPOOL_SLOT_EMPTY);
  /* deliver=false: acknowledged at once, the report in when the call returns. */
  CHECK_RC(wdpool_producer_produce_into(p, m, 2, s, 0, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(state_of(&array[0]), WDPOOL_SLOT_DONE);
  CHECK_EQ(state_of(&array[1]), WDPOOL_SLOT_DONE);
  CHECK_RC(wdpool_report_slots_wait(s, 1, 0, &r, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);

  wdpool_report_slots_free(s);
  CHECK_RC_BOTH(wdpool_report_slots_poll(s, 0, &r, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_report_slots_wait(s, 0, 0, &r, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_report_slots_array(s, &array, &n, CHECK_ERR), WDPOOL_STALE_HANDLE);
  wdpool_report_slots_free(s); /* twice: nothing */
  wdpool_report_slots_free(NULL);
  wdpool_report_slots_free((wdpool_report_slots *)api_mock); /* another kind: nothing */
}

int main(void) {
  abi_program = "test_report_slots";
  if (!api_setup()) return check_summary(abi_program);

  test_many_reports_in_place();
  test_failures_and_reuse();
  test_transactional_and_slow();
  test_free_in_flight();
  test_bad_arguments();

  return api_teardown(abi_program);
}
