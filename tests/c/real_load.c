/*
 * real_load: WaterDrop's connection_pool_load, heavier, against a REAL Kafka
 * broker (not run by `make test-c`: it is not named test_*.c).
 *
 *   WDPOOL_BROKERS=$(scripts/kafka.sh bootstrap) WDPOOL_KAFKA_READ=target/debug/examples/kafka_read \
 *     target/c/real_load <topic>
 *
 * A pool of 4 idempotent producers (acks=all) shared by 16 threads, each
 * making 2,000 `wdpool_pool_with` + `wdpool_producer_produce_sync` calls with
 * key "t<thread>" and payload "t<thread>-<seq>". Every call must succeed; the
 * pool must be at rest afterwards. Then the topic is read back with
 * kafka_read (read_uncommitted: the producers are not transactional) and
 * checked from C: exactly 32,000 records, each payload once, every key on one
 * partition with offsets increasing with the sequence number, and every
 * record where its delivery report said. Prints the throughput (information
 * only) and "real_load: N passed, M failed"; exits non-zero on failure.
 *
 * The topic should exist already (tests/real_c_load.rs creates it with 3
 * partitions).
 *
 * linger.ms is 0 (WDPOOL_LOAD_LINGER_MS overrides it): every checkout holds
 * a producer for exactly one sync produce, so librdkafka's default of 5 ms
 * would only add 5 ms to every call and the run would be bound by it (about
 * 52 s instead of about 7 s on 2 cores; try WDPOOL_LOAD_LINGER_MS=5).
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "check.h"
#include "kafka_read.h"
#include "support.h"
#include "wdpool.h"

enum { POOL_SIZE = 4, THREADS = 16, PER_THREAD = 2000, TOTAL = THREADS * PER_THREAD };

/* A generous bound for one checkout: 16 threads share 4 producers. */
static const uint64_t CHECKOUT_TIMEOUT_MS = 10000;
/* Each producer's max_wait_timeout (delivery of one sync produce). */
static const uint64_t MAX_WAIT_MS = 30000;
/* How long kafka_read may take to read everything back. */
static const int READ_TIMEOUT_MS = 60000;

/* What one thread sent: the delivery report of each sequence number. */
typedef struct sent {
  int32_t partition;
  int64_t offset;
  bool delivered;
} sent;

typedef struct worker {
  wdpool_pool *pool;
  const char *topic;
  int thread;
  int seq; /* the message being produced */
  char key[16];
  sent reports[PER_THREAD];
  int ok;     /* wdpool_pool_with returned WDPOOL_OK */
  int failed; /* it did not */
  char first_error[512];
} worker;

/* What was read back, per (thread, seq). */
typedef struct seen {
  int count;
  int32_t partition;
  int64_t offset;
} seen;

static seen seen_[THREADS][PER_THREAD];

/* ------------------------------------------------------------------------
 * The pool. */

typedef struct configure_ctx {
  const char *brokers;
  const char *linger_ms;
  int calls;
} configure_ctx;

static int configure(void *user_data, wdpool_config *config, size_t index) {
  configure_ctx *ctx = user_data;
  ctx->calls++;
  CHECK_EQ(index, (size_t)(ctx->calls - 1));
  const char *props[][2] = {
      {"bootstrap.servers", ctx->brokers},
      {"acks", "all"},
      {"enable.idempotence", "true"},
      {"linger.ms", ctx->linger_ms},
  };
  for (size_t i = 0; i < sizeof props / sizeof props[0]; i++) {
    wdpool_error *err = NULL;
    if (wdpool_config_set_kafka(config, props[i][0], props[i][1], &err) != WDPOOL_OK) {
      fprintf(stderr, "real_load: setting %s: %s\n", props[i][0], wdpool_error_message(err));
      wdpool_error_free(err);
      return 0;
    }
  }
  if (wdpool_config_set_max_wait_timeout(config, MAX_WAIT_MS, NULL) != WDPOOL_OK) return 0;
  return WDPOOL_CB_OK;
}

/* ------------------------------------------------------------------------
 * The load. */

static int produce_one(void *user_data, wdpool_producer *producer) {
  worker *w = user_data;
  char payload[32];
  snprintf(payload, sizeof payload, "t%d-%d", w->thread, w->seq);
  wdpool_message m = text_message(w->topic, payload);
  m.key = bytes_of(w->key);
  wdpool_report report;
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_producer_produce_sync(producer, &m, WDPOOL_TIMEOUT_DEFAULT, &report, &err);
  if (rc != WDPOOL_OK) {
    if (w->first_error[0] == '\0') {
      snprintf(w->first_error, sizeof w->first_error, "%s: produce_sync %s: %s", payload, wdpool_result_name((int)rc),
               wdpool_error_message(err));
    }
    wdpool_error_free(err);
    return 0;
  }
  if (report.error_code != 0 || report.partition < 0 || report.offset < 0) {
    if (w->first_error[0] == '\0') {
      snprintf(w->first_error, sizeof w->first_error, "%s: WDPOOL_OK with a bad report (error %d, partition %d, offset %" PRId64 ")",
               payload, (int)report.error_code, (int)report.partition, report.offset);
    }
    return 0;
  }
  w->reports[w->seq].partition = report.partition;
  w->reports[w->seq].offset = report.offset;
  w->reports[w->seq].delivered = true;
  return WDPOOL_CB_OK;
}

static void *run_worker(void *arg) {
  worker *w = arg;
  for (w->seq = 0; w->seq < PER_THREAD; w->seq++) {
    wdpool_error *err = NULL;
    wdpool_result rc = wdpool_pool_with(w->pool, WDPOOL_TIMEOUT_DEFAULT, produce_one, w, &err);
    if (rc == WDPOOL_OK) {
      w->ok++;
    } else {
      w->failed++;
      if (w->first_error[0] == '\0') {
        snprintf(w->first_error, sizeof w->first_error, "t%d-%d: wdpool_pool_with %s: %s", w->thread, w->seq,
                 wdpool_result_name((int)rc), wdpool_error_message(err));
      }
    }
    wdpool_error_free(err);
  }
  return NULL;
}

/* ------------------------------------------------------------------------
 * Reading back with kafka_read (kafka_read.h). */

typedef struct read_result {
  kafka_read_result tool;
  long foreign; /* payloads that are not "t<thread>-<seq>" of this test */
  long key_mismatch;
  long partition_regressions; /* an offset not above the previous one of its partition */
  int64_t last_offset[64];
} read_result;

static void on_record(void *ctx, long partition, long long offset, const char *key, const char *payload) {
  read_result *r = ctx;
  if (partition >= 64) {
    if (r->foreign++ < 5) fprintf(stderr, "real_load: partition %ld\n", partition);
    return;
  }
  if (offset <= r->last_offset[partition]) r->partition_regressions++;
  r->last_offset[partition] = offset;

  int thread = -1, seq = -1, used = 0;
  if (sscanf(payload, "t%d-%d%n", &thread, &seq, &used) != 2 || payload[used] != '\0' || thread < 0 ||
      thread >= THREADS || seq < 0 || seq >= PER_THREAD) {
    if (r->foreign++ < 5) fprintf(stderr, "real_load: unexpected payload \"%s\"\n", payload);
    return;
  }
  char want_key[16];
  snprintf(want_key, sizeof want_key, "t%d", thread);
  if (strcmp(key, want_key) != 0 && r->key_mismatch++ < 5) {
    fprintf(stderr, "real_load: payload %s has key \"%s\"\n", payload, key);
  }
  seen *s = &seen_[thread][seq];
  s->count++;
  s->partition = (int32_t)partition;
  s->offset = offset;
}

static bool read_back(const char *tool, const char *brokers, const char *topic, read_result *r) {
  memset(r, 0, sizeof *r);
  for (size_t i = 0; i < sizeof r->last_offset / sizeof r->last_offset[0]; i++) r->last_offset[i] = -1;
  return kafka_read_each("real_load", tool, brokers, topic, TOTAL, READ_TIMEOUT_MS, on_record, r, &r->tool);
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv) {
  const char *topic = argc > 1 ? argv[1] : NULL;
  const char *brokers = getenv("WDPOOL_BROKERS");
  const char *tool = getenv("WDPOOL_KAFKA_READ");
  if (!kafka_read_shell_safe(topic) || !kafka_read_shell_safe(brokers) || !kafka_read_tool_ok(tool)) {
    fprintf(stderr,
            "usage: WDPOOL_BROKERS=host:port WDPOOL_KAFKA_READ=path/to/kafka_read real_load <topic>\n"
            "(topic and brokers: letters, digits and -_.:,/ only; the tool path without single quotes)\n");
    return 2;
  }

  const char *linger_ms = getenv("WDPOOL_LOAD_LINGER_MS");
  if (linger_ms == NULL || linger_ms[0] == '\0') linger_ms = "0";
  printf("real_load: topic %s, brokers %s, linger.ms %s\n", topic, brokers, linger_ms);
  configure_ctx cfg = {brokers, linger_ms, 0};
  wdpool_options options = {POOL_SIZE, CHECKOUT_TIMEOUT_MS};
  wdpool_pool *pool = NULL;
  CHECK_RC(wdpool_pool_new(&options, configure, &cfg, &pool, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(cfg.calls, POOL_SIZE);
  if (pool == NULL) return check_summary("real_load");

  /* The load. */
  static worker workers[THREADS];
  pthread_t threads[THREADS];
  int64_t started = now_ms();
  for (int t = 0; t < THREADS; t++) {
    workers[t].pool = pool;
    workers[t].topic = topic;
    workers[t].thread = t;
    snprintf(workers[t].key, sizeof workers[t].key, "t%d", t);
    CHECK_EQ(pthread_create(&threads[t], NULL, run_worker, &workers[t]), 0);
  }
  for (int t = 0; t < THREADS; t++) CHECK_EQ(pthread_join(threads[t], NULL), 0);
  int64_t elapsed = now_ms() - started;
  printf("real_load: %d sync produces (%d threads, pool of %d) in %" PRId64 " ms: %.0f messages/s\n", TOTAL,
         THREADS, POOL_SIZE, elapsed, elapsed > 0 ? TOTAL * 1000.0 / (double)elapsed : 0.0);
  fflush(stdout);

  long ok_calls = 0;
  for (int t = 0; t < THREADS; t++) {
    worker *w = &workers[t];
    ok_calls += w->ok;
    if (!CHECK_EQ(w->ok, PER_THREAD)) {
      fprintf(stderr, "real_load: thread %d: %d calls failed; first: %s\n", t, w->failed, w->first_error);
    }
  }
  CHECK_EQ(ok_calls, TOTAL);

  /* The pool is at rest. */
  wdpool_statistics stats;
  memset(&stats, 0, sizeof stats);
  CHECK_RC(wdpool_pool_stats(pool, &stats, CHECK_ERR), WDPOOL_OK);
  printf("real_load: stats size %zu created %zu idle %zu in_use %zu waiting %zu checkout_timeouts %" PRIu64
         " creations %" PRIu64 " replaced %" PRIu64 " total_wait %.1f s\n",
         stats.size, stats.created, stats.idle, stats.in_use, stats.waiting, stats.checkout_timeouts,
         stats.creations, stats.replaced, (double)stats.total_wait_us / 1e6);
  CHECK_EQ(stats.size, POOL_SIZE);
  CHECK_EQ(stats.in_use, 0);
  CHECK_EQ(stats.idle, stats.created);
  CHECK_EQ(stats.waiting, 0);
  CHECK_EQ(stats.checkout_timeouts, 0);
  CHECK_EQ(stats.replaced, 0);
  CHECK(stats.created >= 1 && stats.created <= POOL_SIZE);
  CHECK_EQ(stats.creations, stats.created);

  /* Delivery reports: per key one partition, offsets increasing with seq. */
  long report_order_errors = 0;
  for (int t = 0; t < THREADS; t++) {
    for (int s = 1; s < PER_THREAD; s++) {
      const sent *a = &workers[t].reports[s - 1], *b = &workers[t].reports[s];
      if (a->delivered && b->delivered && (a->partition != b->partition || b->offset <= a->offset) &&
          report_order_errors++ < 5) {
        fprintf(stderr, "real_load: reports t%d-%d at %d/%" PRId64 " then t%d-%d at %d/%" PRId64 "\n", t, s - 1,
                (int)a->partition, a->offset, t, s, (int)b->partition, b->offset);
      }
    }
  }
  CHECK_EQ(report_order_errors, 0);

  wdpool_close_report closed;
  memset(&closed, 0, sizeof closed);
  CHECK_RC(wdpool_pool_close(pool, false, &closed, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(closed.undelivered, 0);
  CHECK_EQ(closed.in_use, 0);
  CHECK_EQ(closed.closed, stats.created);
  wdpool_pool_free(pool);

  /* Read it all back. */
  int64_t read_started = now_ms();
  read_result rr;
  CHECK(read_back(tool, brokers, topic, &rr));
  printf("real_load: kafka_read returned %ld records in %" PRId64 " ms (exit status %d)\n", rr.tool.lines,
         now_ms() - read_started, rr.tool.exit_status);
  CHECK_EQ(rr.tool.exit_status, 0);
  CHECK_EQ(rr.tool.lines, TOTAL);
  CHECK_EQ(rr.tool.malformed, 0);
  CHECK_EQ(rr.foreign, 0);
  CHECK_EQ(rr.key_mismatch, 0);
  CHECK_EQ(rr.partition_regressions, 0);

  long missing = 0, duplicated = 0, order_errors = 0, report_mismatch = 0;
  for (int t = 0; t < THREADS; t++) {
    const seen *prev = NULL;
    for (int s = 0; s < PER_THREAD; s++) {
      const seen *x = &seen_[t][s];
      if (x->count == 0) {
        if (missing++ < 5) fprintf(stderr, "real_load: t%d-%d never read back\n", t, s);
        continue;
      }
      if (x->count > 1 && duplicated++ < 5) fprintf(stderr, "real_load: t%d-%d read %d times\n", t, s, x->count);
      const sent *r = &workers[t].reports[s];
      if (r->delivered && (r->partition != x->partition || r->offset != x->offset) && report_mismatch++ < 5) {
        fprintf(stderr, "real_load: t%d-%d reported at %d/%" PRId64 ", read at %d/%" PRId64 "\n", t, s,
                (int)r->partition, r->offset, (int)x->partition, x->offset);
      }
      /* Per key: one partition, offsets increasing with the sequence. */
      if (prev != NULL && (x->partition != prev->partition || x->offset <= prev->offset) && order_errors++ < 5) {
        fprintf(stderr, "real_load: key t%d: seq %d at %d/%" PRId64 " after %d/%" PRId64 "\n", t, s,
                (int)x->partition, x->offset, (int)prev->partition, prev->offset);
      }
      prev = x;
    }
  }
  CHECK_EQ(missing, 0);
  CHECK_EQ(duplicated, 0);
  CHECK_EQ(order_errors, 0);
  CHECK_EQ(report_mismatch, 0);

  return check_summary("real_load");
}
