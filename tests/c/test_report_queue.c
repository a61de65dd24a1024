/*
 * test_report_queue: wdpool_report_queue and wdpool_producer_produce_tagged,
 * delivery reports tagged by the caller and taken in batches.
 *
 *   - 600 tagged messages from two producers into one queue: every tag comes
 *     back exactly once, delivered, with its partition and offset (an
 *     explicit partition is kept); taken in batches of at most 64.
 *   - A message the broker refuses: its report carries librdkafka's code and
 *     a wdpool_error (KAFKA, the code) that the caller frees.
 *   - An invalid message: an error, and no report ever comes for its tag.
 *   - A transactional producer: inside the caller's transaction the report
 *     comes with the commit; outside, the implicit transaction commits
 *     before the call returns, so the report is already there.
 *   - One producer sending into 12 queues (a producer keeps the first 8 it
 *     sends to; the others are counted per message): every report in its
 *     own queue, with its tag.
 *   - A take waiting on another thread returns at once when the queue is
 *     freed; a queue freed with messages in flight (their reports dropped,
 *     nothing leaked), the pool closed gracefully or by force (messages
 *     purged while the queue is gone).
 *   - NULL arguments, a wrong-kind handle, a negative timeout, a freed
 *     queue; wdpool_producer_max_wait_timeout.
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
#define BATCH 64

static wdpool_report_queue *new_queue(void) {
  wdpool_report_queue *q = NULL;
  CHECK_RC(wdpool_report_queue_new(&q, CHECK_ERR), WDPOOL_OK);
  CHECK(q != NULL);
  return q;
}

/* Takes reports until `want` came or `ms` passed; stores them in `out`
 * (room for `want`), frees their errors unless `keep_errors`. Returns how
 * many came. */
static size_t take_reports(wdpool_report_queue *q, wdpool_tagged_report *out, size_t want, int64_t ms) {
  size_t have = 0;
  int64_t deadline = now_ms() + ms;
  while (have < want && now_ms() < deadline) {
    size_t n = 99999;
    size_t room = want - have < BATCH ? want - have : BATCH;
    CHECK_RC(wdpool_report_queue_take(q, out + have, room, 200, &n, CHECK_ERR), WDPOOL_OK);
    CHECK(n <= room);
    if (n > room) break;
    have += n;
  }
  return have;
}

static void test_many_tags_come_back_once(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(2, 5000, &setup);
  wdpool_report_queue *q = new_queue();
  enum { PER = 300, ALL = 2 * PER, FIRST = 1000 };
  wdpool_producer *a = NULL, *b = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, 1, WDPOOL_TIMEOUT_DEFAULT, &a, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_checkout(pool, 2, WDPOOL_TIMEOUT_DEFAULT, &b, CHECK_ERR), WDPOOL_OK);
  CHECK(producer_index(a) != producer_index(b));
  for (int i = 0; i < PER; i++) {
    wdpool_message m = text_message(TOPIC, "tagged");
    if (i % 3 == 0) m.partition = 2;
    CHECK_RC(wdpool_producer_produce_tagged(a, &m, q, FIRST + 2 * (uint64_t)i, CHECK_ERR), WDPOOL_OK);
    CHECK_RC(wdpool_producer_produce_tagged(b, &m, q, FIRST + 2 * (uint64_t)i + 1, CHECK_ERR), WDPOOL_OK);
  }
  static wdpool_tagged_report got[ALL];
  CHECK_EQ(take_reports(q, got, ALL, 20000), ALL);
  static bool seen[ALL];
  memset(seen, 0, sizeof seen);
  size_t twice = 0, outside = 0, failed = 0, bad_place = 0, explicit_ok = 0;
  for (size_t i = 0; i < ALL; i++) {
    if (got[i].tag < FIRST || got[i].tag >= FIRST + ALL) {
      outside++;
      continue;
    }
    size_t k = (size_t)(got[i].tag - FIRST);
    if (seen[k]) twice++;
    seen[k] = true;
    if (got[i].error_code != 0 || got[i].error != NULL) failed++;
    if (got[i].partition < 0 || got[i].partition > 3 || got[i].offset < 0 || got[i].timestamp_ms <= 0) bad_place++;
    if ((k / 2) % 3 == 0 && got[i].partition == 2) explicit_ok++;
    wdpool_error_free(got[i].error);
  }
  CHECK_EQ(outside, 0);
  CHECK_EQ(twice, 0);
  CHECK_EQ(failed, 0);
  CHECK_EQ(bad_place, 0);
  CHECK_EQ(explicit_ok, 2 * ((PER + 2) / 3));
  /* Nothing more comes. */
  size_t n = 99;
  CHECK_RC(wdpool_report_queue_take(q, got, 1, 0, &n, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(n, 0);
  CHECK_EQ(wdpool_report_queue_len(q), 0);

  uint64_t ms = 0;
  CHECK_RC(wdpool_producer_max_wait_timeout(a, &ms, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(ms, MAX_WAIT_MS);
  CHECK_RC_BOTH(wdpool_producer_max_wait_timeout(a, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_max_wait_timeout(NULL, &ms, CHECK_ERR), WDPOOL_NULL_PARAMETER);

  CHECK_RC(wdpool_producer_checkin(a, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(b, CHECK_ERR), WDPOOL_OK);
  /* A producer handle after its checkin, and a queue with it. */
  wdpool_message m = text_message(TOPIC, "late");
  CHECK_RC_BOTH(wdpool_producer_produce_tagged(a, &m, q, 1, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC_BOTH(wdpool_producer_max_wait_timeout(a, &ms, CHECK_ERR), WDPOOL_STALE_HANDLE);
  wdpool_report_queue_free(q);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

static void test_failures(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(1, 5000, &setup);
  wdpool_report_queue *q = new_queue();
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, 1, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);

  /* Warm: metadata known, so the refusal below hits this message. */
  wdpool_message m = text_message(OFFSETS_TOPIC, "warm");
  CHECK_RC(wdpool_producer_produce_tagged(p, &m, q, 1, CHECK_ERR), WDPOOL_OK);
  wdpool_tagged_report r[2];
  CHECK_EQ(take_reports(q, r, 1, 10000), 1);
  CHECK_EQ(r[0].tag, 1);
  CHECK_EQ(r[0].error_code, 0);
  CHECK(r[0].error == NULL);

  /* Refused by the broker: the report says why. */
  int32_t code = ERR_MSG_SIZE_TOO_LARGE;
  CHECK_RC(wdpool_mock_cluster_push_request_errors(api_mock, API_PRODUCE, &code, 1, CHECK_ERR), WDPOOL_OK);
  m = text_message(OFFSETS_TOPIC, "refused");
  CHECK_RC(wdpool_producer_produce_tagged(p, &m, q, 2, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(take_reports(q, r, 1, 10000), 1);
  CHECK_EQ(r[0].tag, 2);
  CHECK_EQ(r[0].error_code, ERR_MSG_SIZE_TOO_LARGE);
  CHECK_EQ(r[0].offset, -1);
  CHECK(r[0].error != NULL);
  if (r[0].error != NULL) {
    CHECK_EQ(wdpool_error_code(r[0].error), WDPOOL_KAFKA);
    CHECK_EQ(wdpool_error_kafka_code(r[0].error), ERR_MSG_SIZE_TOO_LARGE);
    CHECK(wdpool_error_message(r[0].error) != NULL && wdpool_error_message(r[0].error)[0] != '\0');
  }
  wdpool_error_free(r[0].error);

  /* Invalid: refused before anything is sent, and no report comes. */
  wdpool_message bad = text_message(NULL, "no topic");
  CHECK_RC_MSG(wdpool_producer_produce_tagged(p, &bad, q, 3, CHECK_ERR), WDPOOL_INVALID_MESSAGE, "topic");
  wdpool_message big = text_message(OFFSETS_TOPIC, "x");
  big.partition = 1000; /* the topic has 1 partition: librdkafka refuses it */
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_producer_produce_tagged(p, &big, q, 4, &err);
  CHECK(rc != WDPOOL_OK);
  wdpool_error_free(err);
  CHECK_RC(wdpool_producer_flush(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  size_t n = 99;
  CHECK_RC(wdpool_report_queue_take(q, r, 2, 300, &n, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(n, 0);

  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  wdpool_report_queue_free(q);
  CHECK_RC(wdpool_pool_close(pool, true, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

static void test_transactional(void) {
  pool_setup setup = {.tx_prefix = "c-tagged-tx-"};
  wdpool_pool *pool = make_pool(1, 10000, &setup);
  wdpool_report_queue *q = new_queue();
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, 1, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_tagged_report r[1];
  size_t n = 99;

  /* Outside a transaction: its own, committed before the call returns. */
  wdpool_message m = text_message(OFFSETS_TOPIC, "implicit");
  CHECK_RC(wdpool_producer_produce_tagged(p, &m, q, 10, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_report_queue_take(q, r, 1, 0, &n, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(n, 1);
  if (n == 1) {
    CHECK_EQ(r[0].tag, 10);
    CHECK_EQ(r[0].error_code, 0);
    wdpool_error_free(r[0].error);
  }

  /* Inside the caller's: comes with the commit. */
  CHECK_RC(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  m = text_message(OFFSETS_TOPIC, "explicit");
  CHECK_RC(wdpool_producer_produce_tagged(p, &m, q, 11, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_end(p, WDPOOL_TXN_COMMIT, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(take_reports(q, r, 1, 10000), 1);
  CHECK_EQ(r[0].tag, 11);
  CHECK_EQ(r[0].error_code, 0);
  wdpool_error_free(r[0].error);

  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  wdpool_report_queue_free(q);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

typedef struct blocked_take {
  wdpool_report_queue *q;
  wdpool_result rc;
  size_t n;
  int64_t took_ms;
  atomic_bool waiting;
} blocked_take;

static void take_for_long(void *arg) {
  blocked_take *t = arg;
  wdpool_tagged_report r[4];
  int64_t start = now_ms();
  atomic_store(&t->waiting, true);
  t->rc = wdpool_report_queue_take(t->q, r, 4, 30000, &t->n, NULL);
  t->took_ms = now_ms() - start;
}

static void test_free(void) {
  /* A take waiting on another thread ends when the queue is freed. */
  blocked_take t = {.q = new_queue(), .n = 99};
  atomic_init(&t.waiting, false);
  bounded_thread th;
  if (bounded_start(&th, take_for_long, &t)) {
    /* Freed once the taker started, inside its wait or just before it (the
     * Rust unit test a_taker_waits_for_the_first_report_or_the_close waits
     * until it is inside): either way it returns at once, OK and empty. */
    WAIT_UNTIL(atomic_load(&t.waiting), 5000);
    wdpool_report_queue_free(t.q);
    BOUNDED_JOIN(&th, 10000);
    CHECK_EQ(t.rc, WDPOOL_OK);
    CHECK_EQ(t.n, 0);
    CHECK(t.took_ms < 20000);
  }

  /* Freed with messages in flight: their reports are dropped. */
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(1, 5000, &setup);
  wdpool_report_queue *q = new_queue();
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, 1, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  for (uint64_t i = 0; i < 100; i++) {
    wdpool_message m = text_message(TOPIC, "in flight");
    CHECK_RC(wdpool_producer_produce_tagged(p, &m, q, i, CHECK_ERR), WDPOOL_OK);
  }
  wdpool_report_queue_free(q);
  wdpool_message m = text_message(TOPIC, "after");
  CHECK_RC_BOTH(wdpool_producer_produce_tagged(p, &m, q, 100, CHECK_ERR), WDPOOL_STALE_HANDLE);
  CHECK_RC(wdpool_producer_flush(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);

  /* The same, closed by force without a flush: the messages still queued
   * are purged (their reports made as the producer goes) after the queue
   * is gone. */
  pool = make_pool(1, 5000, &setup);
  q = new_queue();
  CHECK_RC(wdpool_pool_checkout(pool, 1, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  for (uint64_t i = 0; i < 100; i++) {
    wdpool_message m = text_message(TOPIC, "purged");
    CHECK_RC(wdpool_producer_produce_tagged(p, &m, q, i, CHECK_ERR), WDPOOL_OK);
  }
  wdpool_report_queue_free(q);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  wdpool_close_report rep;
  memset(&rep, 0, sizeof rep);
  CHECK_RC(wdpool_pool_close(pool, true, &rep, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(rep.in_use, 0);
  wdpool_pool_free(pool);
}

static void test_many_queues(void) {
  enum { QUEUES = 12, EACH = 3 };
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(1, 5000, &setup);
  wdpool_report_queue *qs[QUEUES];
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, 1, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  for (size_t i = 0; i < QUEUES; i++) {
    qs[i] = new_queue();
    for (uint64_t j = 0; j < EACH; j++) {
      wdpool_message m = text_message(TOPIC, "one of many queues");
      CHECK_RC(wdpool_producer_produce_tagged(p, &m, qs[i], i * 100 + j, CHECK_ERR), WDPOOL_OK);
    }
  }
  for (size_t i = 0; i < QUEUES; i++) {
    wdpool_tagged_report got[EACH];
    size_t n = take_reports(qs[i], got, EACH, MAX_WAIT_MS);
    CHECK_EQ(n, EACH);
    int seen[EACH] = {0};
    for (size_t k = 0; k < n; k++) {
      CHECK_EQ(got[k].error_code, 0);
      CHECK(got[k].tag / 100 == i && got[k].tag % 100 < EACH);
      if (got[k].tag / 100 == i && got[k].tag % 100 < EACH) seen[got[k].tag % 100]++;
      if (got[k].error != NULL) wdpool_error_free(got[k].error);
    }
    for (size_t j = 0; j < EACH; j++) CHECK_EQ(seen[j], 1);
    CHECK_EQ(wdpool_report_queue_len(qs[i]), 0);
    wdpool_report_queue_free(qs[i]);
  }
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

static void test_bad_arguments(void) {
  wdpool_report_queue *q = new_queue();
  wdpool_tagged_report r[1];
  size_t n = 99;
  CHECK_RC_BOTH(wdpool_report_queue_new(NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_report_queue_take(NULL, r, 1, 0, &n, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_report_queue_take(q, r, 1, 0, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_report_queue_take(q, NULL, 1, 0, &n, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC(wdpool_report_queue_take(q, NULL, 0, 0, &n, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(n, 0);
  CHECK_RC_MSG(wdpool_report_queue_take(q, r, 1, -1, &n, CHECK_ERR), WDPOOL_INVALID_ARGUMENT, "timeout_ms");
  CHECK_RC_BOTH(wdpool_report_queue_take((const wdpool_report_queue *)api_mock, r, 1, 0, &n, CHECK_ERR),
                WDPOOL_INVALID_ARGUMENT);
  CHECK_EQ(wdpool_report_queue_len(NULL), 0);
  CHECK_EQ(wdpool_report_queue_len((const wdpool_report_queue *)api_mock), 0);

  pool_setup setup = {.no_deliver = true};
  wdpool_pool *pool = make_pool(1, 5000, &setup);
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, 1, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_message m = text_message(TOPIC, "x");
  CHECK_RC_BOTH(wdpool_producer_produce_tagged(NULL, &m, q, 1, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_tagged(p, NULL, q, 1, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_tagged(p, &m, NULL, 1, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_producer_produce_tagged(p, &m, (const wdpool_report_queue *)api_mock, 1, CHECK_ERR),
                WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_producer_produce_tagged((wdpool_producer *)q, &m, q, 1, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);

  wdpool_report_queue_free(q);
  CHECK_RC_BOTH(wdpool_report_queue_take(q, r, 1, 0, &n, CHECK_ERR), WDPOOL_STALE_HANDLE);
  wdpool_report_queue_free(q); /* twice: nothing */
  wdpool_report_queue_free(NULL);
}

int main(void) {
  abi_program = "test_report_queue";
  if (!api_setup()) return check_summary(abi_program);

  test_many_tags_come_back_once();
  test_failures();
  test_transactional();
  test_many_queues();
  test_free();
  test_bad_arguments();

  return api_teardown(abi_program);
}
