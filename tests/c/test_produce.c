/*
 * test_produce: produce sync / async / many, keys, partitions, timestamps and
 * headers, delivery handles and reports, invalid messages (refused before
 * anything is sent), and deliver = false (no broker needed).
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

#define TIMESTAMP_MS INT64_C(1700000000123)

/* ------------------------------------------------------------------------
 * Producing. */

typedef struct produce_ctx {
  wdpool_delivery *kept; /* a delivery that outlives the callback */
  int64_t offsets_next;  /* the next offset of OFFSETS_TOPIC */
} produce_ctx;

static void produce_everything(wdpool_producer *p, void *ctx_) {
  produce_ctx *ctx = ctx_;
  wdpool_report r;

  /* Key, partition, timestamp and headers: a repeated key, a NULL value. */
  wdpool_header headers[3] = {{"trace", {(const uint8_t *)"a", 1}},
                              {"trace", {(const uint8_t *)"b", 1}},
                              {"empty", {NULL, 0}}};
  wdpool_message m = text_message(TOPIC, "hello");
  m.key = bytes_of("key-1");
  m.partition = 1;
  m.timestamp_ms = TIMESTAMP_MS;
  m.headers = headers;
  m.headers_len = 3;
  memset(&r, 0xab, sizeof r);
  CHECK_RC(wdpool_producer_produce_sync(p, &m, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_OK);
  CHECK(r.topic == m.topic);
  CHECK_EQ(r.partition, 1);
  CHECK(r.offset >= 0);
  /* The mock cluster answers every produce with LogAppendTime 1234, which
   * librdkafka reports instead of the message's own timestamp: only "known"
   * can be checked here (test_deliver_false checks the value). */
  CHECK(r.timestamp_ms > 0);
  CHECK_EQ(r.error_code, 0);

  /* No report wanted; a tombstone; an empty (non-NULL) payload. */
  CHECK_RC(wdpool_producer_produce_sync(p, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_message tombstone = text_message(TOPIC, NULL);
  tombstone.key = bytes_of("gone");
  CHECK_RC(wdpool_producer_produce_sync(p, &tombstone, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_OK);
  CHECK(r.partition >= 0 && r.partition < 4 && r.offset >= 0);
  wdpool_message empty = text_message(TOPIC, "");
  CHECK_RC(wdpool_producer_produce_sync(p, &empty, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);

  /* partition_key picks a partition without being the key; the same key
   * always picks the same one. */
  wdpool_message pk = text_message(TOPIC, "by partition key");
  pk.partition_key = bytes_of("customer-42");
  CHECK_RC(wdpool_producer_produce_sync(p, &pk, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_OK);
  int32_t first = r.partition;
  CHECK(first >= 0 && first < 4);
  CHECK_RC(wdpool_producer_produce_sync(p, &pk, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(r.partition, first);

  /* Async, one message: the delivery handle owns its topic string. */
  wdpool_delivery *d = (wdpool_delivery *)&d;
  CHECK_RC(wdpool_producer_produce_async(p, &m, &d, CHECK_ERR), WDPOOL_OK);
  CHECK(d != NULL && d != (wdpool_delivery *)&d);
  CHECK_EQ(wdpool_delivery_count(d), 1);
  CHECK_RC(wdpool_delivery_wait(d, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(wdpool_delivery_pending(d), 0);
  CHECK_RC(wdpool_delivery_wait(d, 0, CHECK_ERR), WDPOOL_OK); /* done: no wait needed */
  memset(&r, 0, sizeof r);
  CHECK_RC(wdpool_delivery_report(d, 0, &r, CHECK_ERR), WDPOOL_OK);
  CHECK(r.topic != NULL && r.topic != m.topic);
  CHECK_STR(r.topic, TOPIC);
  CHECK_EQ(r.partition, 1);
  CHECK(r.offset >= 0);
  CHECK(r.timestamp_ms > 0);
  CHECK_EQ(r.error_code, 0);
  CHECK_RC_BOTH(wdpool_delivery_report(d, 1, &r, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_delivery_report(d, 0, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  wdpool_delivery_free(d);

  /* Fire and forget, then flush. */
  CHECK_RC(wdpool_producer_produce_async(p, &m, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_producer_flush(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);

  /* Many, sync: reports in message order, topics are the callers'. */
  wdpool_message many[3] = {text_message(TOPIC, "m0"), text_message(OFFSETS_TOPIC, "m1"),
                            text_message(TOPIC, "m2")};
  many[0].partition = 0;
  many[2].partition = 3;
  wdpool_report reports[3];
  memset(reports, 0xab, sizeof reports);
  CHECK_RC(wdpool_producer_produce_many_sync(p, many, 3, WDPOOL_TIMEOUT_DEFAULT, reports, CHECK_ERR), WDPOOL_OK);
  for (size_t i = 0; i < 3; i++) {
    CHECK(reports[i].topic == many[i].topic);
    CHECK(reports[i].partition >= 0);
    CHECK(reports[i].offset >= 0);
    CHECK_EQ(reports[i].error_code, 0);
  }
  CHECK_EQ(reports[0].partition, 0);
  CHECK_EQ(reports[1].partition, 0);
  CHECK_EQ(reports[1].offset, ctx->offsets_next);
  ctx->offsets_next = reports[1].offset + 1;
  CHECK_EQ(reports[2].partition, 3);
  CHECK_RC(wdpool_producer_produce_many_sync(p, many, 3, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);
  ctx->offsets_next++;

  /* Many, async: one delivery for all, kept past the callback. */
  CHECK_RC(wdpool_producer_produce_many_async(p, many, 3, &ctx->kept, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(wdpool_delivery_count(ctx->kept), 3);
  ctx->offsets_next++;
}

static void test_produce(void) {
  pool_setup setup = {0};
  wdpool_pool *pool = make_pool(2, 5000, &setup);
  produce_ctx ctx = {NULL, 0};

  /* OFFSETS_TOPIC has one partition: its next offset says what arrived. */
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_message probe = text_message(OFFSETS_TOPIC, "probe");
  wdpool_report r;
  CHECK_RC(wdpool_producer_produce_sync(p, &probe, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(r.partition, 0);
  ctx.offsets_next = r.offset + 1;
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);

  body b = {produce_everything, &ctx, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(b.calls, 1);

  /* The delivery handle outlives the callback that produced it. */
  if (CHECK(ctx.kept != NULL)) {
    CHECK_RC(wdpool_delivery_wait(ctx.kept, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
    CHECK_EQ(wdpool_delivery_pending(ctx.kept), 0);
    const char *topics[3] = {TOPIC, OFFSETS_TOPIC, TOPIC};
    for (size_t i = 0; i < 3; i++) {
      CHECK_RC(wdpool_delivery_report(ctx.kept, i, &r, CHECK_ERR), WDPOOL_OK);
      CHECK_STR(r.topic, topics[i]);
      CHECK(r.offset >= 0);
      CHECK_EQ(r.error_code, 0);
    }
    CHECK_RC(wdpool_delivery_report(ctx.kept, 1, &r, CHECK_ERR), WDPOOL_OK);
    CHECK_EQ(r.offset, ctx.offsets_next - 1);
    wdpool_delivery_free(ctx.kept);
  }

  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.created, 1); /* LIFO: the same producer served both leases */
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * Invalid messages: refused before anything is sent, naming the field. */

#define MAX_PAYLOAD 64

typedef struct invalid_ctx {
  int64_t offsets_next;
} invalid_ctx;

static void check_invalid(wdpool_producer *p, const wdpool_message *m, const char *field, int line) {
  char what[96];
  snprintf(what, sizeof what, "invalid message (%s), line %d", field, line);
  wdpool_error *err = NULL;
  wdpool_report r;
  memset(&r, 0x7f, sizeof r);
  wdpool_result rc = wdpool_producer_produce_sync(p, m, WDPOOL_TIMEOUT_DEFAULT, &r, &err);
  check_rc_(rc, WDPOOL_INVALID_MESSAGE, err, field, what, __FILE__, line);
  check_record_(r.offset == (int64_t)0x7f7f7f7f7f7f7f7f, __FILE__, line, "no report for an invalid message", NULL);
  wdpool_error_free(err);
  err = NULL;

  wdpool_delivery *d = NULL;
  rc = wdpool_producer_produce_async(p, m, &d, &err);
  check_rc_(rc, WDPOOL_INVALID_MESSAGE, err, field, what, __FILE__, line);
  check_record_(d == NULL, __FILE__, line, "no delivery for an invalid message", NULL);
  wdpool_error_free(err);
  check_record_(wdpool_producer_produce_sync(p, m, WDPOOL_TIMEOUT_DEFAULT, NULL, NULL) == WDPOOL_INVALID_MESSAGE, __FILE__, line,
                "invalid message with err NULL", NULL);
}

static void produce_invalid(wdpool_producer *p, void *ctx_) {
  invalid_ctx *ctx = ctx_;
  wdpool_message m;

  m = text_message(NULL, "x");
  check_invalid(p, &m, "topic", __LINE__);
  m = text_message("a b", "x");
  check_invalid(p, &m, "topic", __LINE__);
  m = text_message("", "x");
  check_invalid(p, &m, "topic", __LINE__);
  m = text_message("caf\xc3", "x"); /* truncated UTF-8 */
  check_invalid(p, &m, "topic", __LINE__);
  m = text_message("\xff", "x");
  check_invalid(p, &m, "topic", __LINE__);

  m = text_message(TOPIC, NULL);
  m.payload.len = 3;
  check_invalid(p, &m, "payload", __LINE__);

  static const uint8_t big[MAX_PAYLOAD + 1] = {0};
  m = text_message(TOPIC, NULL);
  m.payload.data = big;
  m.payload.len = sizeof big;
  check_invalid(p, &m, "payload", __LINE__);
  m.payload.len = MAX_PAYLOAD; /* at the limit: fine */
  CHECK_RC(wdpool_producer_produce_sync(p, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_OK);

  m = text_message(TOPIC, "x");
  m.key.data = (const uint8_t *)"k";
  m.key.len = 0;
  check_invalid(p, &m, "key", __LINE__);
  m = text_message(TOPIC, "x");
  m.key.len = 2;
  check_invalid(p, &m, "key", __LINE__);

  m = text_message(TOPIC, "x");
  m.partition_key.data = (const uint8_t *)"k";
  m.partition_key.len = 0;
  check_invalid(p, &m, "partition_key", __LINE__);

  m = text_message(TOPIC, "x");
  m.partition = -2;
  check_invalid(p, &m, "partition", __LINE__);

  m = text_message(TOPIC, "x");
  m.timestamp_ms = -1;
  check_invalid(p, &m, "timestamp", __LINE__);

  m = text_message(TOPIC, "x");
  m.headers = NULL;
  m.headers_len = 2;
  check_invalid(p, &m, "headers", __LINE__);

  wdpool_header no_key[2] = {{"ok", {NULL, 0}}, {NULL, {(const uint8_t *)"v", 1}}};
  m = text_message(TOPIC, "x");
  m.headers = no_key;
  m.headers_len = 2;
  check_invalid(p, &m, "headers[1].key", __LINE__);

  wdpool_header bad_value[1] = {{"k", {NULL, 4}}};
  m.headers = bad_value;
  m.headers_len = 1;
  check_invalid(p, &m, "headers[0].value", __LINE__);

  wdpool_header bad_utf8[1] = {{"\xff", {NULL, 0}}};
  m.headers = bad_utf8;
  check_invalid(p, &m, "headers[0].key", __LINE__);

  /* In a batch the error names the message; nothing of the batch is sent
   * (OFFSETS_TOPIC's next offset does not move). */
  wdpool_message batch[4] = {text_message(OFFSETS_TOPIC, "b0"), text_message(OFFSETS_TOPIC, "b1"),
                             text_message(OFFSETS_TOPIC, "b2"), text_message(OFFSETS_TOPIC, "b3")};
  batch[2].partition = -5;
  wdpool_report reports[4];
  memset(reports, 0x7f, sizeof reports);
  CHECK_RC_MSG(wdpool_producer_produce_many_sync(p, batch, 4, WDPOOL_TIMEOUT_DEFAULT, reports, CHECK_ERR), WDPOOL_INVALID_MESSAGE,
               "message 2");
  CHECK_RC_MSG(wdpool_producer_produce_many_sync(p, batch, 4, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_INVALID_MESSAGE,
               "partition");
  for (size_t i = 0; i < 4; i++) CHECK_EQ(reports[i].offset, (int64_t)0x7f7f7f7f7f7f7f7f);
  wdpool_delivery *d = NULL;
  CHECK_RC_MSG(wdpool_producer_produce_many_async(p, batch, 4, &d, CHECK_ERR), WDPOOL_INVALID_MESSAGE,
               "message 2");
  CHECK(d == NULL);
  batch[2].partition = WDPOOL_PARTITION_ANY;
  batch[2].topic = "no spaces";
  CHECK_RC_MSG(wdpool_producer_produce_many_async(p, batch, 4, NULL, CHECK_ERR), WDPOOL_INVALID_MESSAGE,
               "message 2: invalid message: topic");

  wdpool_message after = text_message(OFFSETS_TOPIC, "after");
  wdpool_report r;
  CHECK_RC(wdpool_producer_produce_sync(p, &after, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(r.offset, ctx->offsets_next);
}

static void test_invalid_messages(void) {
  pool_setup setup = {.max_payload_size = MAX_PAYLOAD};
  wdpool_pool *pool = make_pool(1, 5000, &setup);
  invalid_ctx ctx = {0};
  /* Learn OFFSETS_TOPIC's next offset first. */
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  wdpool_message probe = text_message(OFFSETS_TOPIC, "probe");
  wdpool_report r;
  CHECK_RC(wdpool_producer_produce_sync(p, &probe, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_OK);
  ctx.offsets_next = r.offset + 1;
  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);

  body b = {produce_invalid, &ctx, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * deliver = false: no broker needed. */

static void produce_without_broker(wdpool_producer *p, void *ctx) {
  (void)ctx;
  wdpool_message m = text_message("c-api-test-mode", "x");
  m.partition = 2;
  m.timestamp_ms = TIMESTAMP_MS;
  wdpool_report r;
  CHECK_RC(wdpool_producer_produce_sync(p, &m, WDPOOL_TIMEOUT_DEFAULT, &r, CHECK_ERR), WDPOOL_OK);
  CHECK(r.topic == m.topic);
  CHECK_EQ(r.partition, 2);
  CHECK_EQ(r.timestamp_ms, TIMESTAMP_MS);
  CHECK_EQ(r.error_code, 0);
  int64_t first = r.offset;
  CHECK(first >= 0);

  wdpool_message batch[2] = {text_message("c-api-test-mode", "a"), text_message("c-api-test-mode", "b")};
  wdpool_report reports[2];
  CHECK_RC(wdpool_producer_produce_many_sync(p, batch, 2, WDPOOL_TIMEOUT_DEFAULT, reports, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(reports[0].offset, first + 1);
  CHECK_EQ(reports[1].offset, first + 2);
  CHECK(reports[0].partition >= 0 && reports[1].partition >= 0);

  wdpool_delivery *d = NULL;
  CHECK_RC(wdpool_producer_produce_many_async(p, batch, 2, &d, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(wdpool_delivery_pending(d), 0);
  CHECK_RC(wdpool_delivery_wait(d, 0, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_delivery_report(d, 1, &r, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(r.offset, first + 4);
  wdpool_delivery_free(d);
  CHECK_RC(wdpool_producer_flush(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);

  /* Validation still applies. */
  m.topic = "not valid";
  CHECK_RC(wdpool_producer_produce_sync(p, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, CHECK_ERR), WDPOOL_INVALID_MESSAGE);
}

static void test_deliver_false(void) {
  pool_setup setup = {.bootstrap = "127.0.0.1:1", .no_deliver = true};
  wdpool_pool *pool = make_pool(2, 1000, &setup);
  body b = {produce_without_broker, NULL, WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &b, CHECK_ERR), WDPOOL_OK);
  wdpool_close_report report;
  CHECK_RC(wdpool_pool_close(pool, false, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.closed, 1);
  CHECK_EQ(report.undelivered, 0);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  if (!api_setup()) return check_summary("test_produce");

  test_produce();
  test_invalid_messages();
  test_deliver_false();

  return api_teardown("test_produce");
}
