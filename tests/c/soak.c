/*
 * soak: steady load through the global pool, from C, against a REAL
 * three-broker Kafka cluster, for SOAK_SECONDS, while the pool is reloaded,
 * brokers are restarted and the pool is closed by force and set up again;
 * the process's memory, file descriptors and threads must stay flat, and
 * every message reported delivered must be read back exactly once. Not run
 * by `make test-c` (it is not named test_*.c): `make soak` (20 minutes) and
 * `make test-soak-short` (2 minutes, part of `make test`) run it through
 * tests/c/soak.sh, which starts and stops the cluster.
 *
 *   WDPOOL_BROKERS=<cluster> WDPOOL_KAFKA_READ=target/debug/examples/kafka_read \
 *   SOAK_KAFKA_SH=scripts/kafka.sh SOAK_CLUSTER=<name> target/c/release/soak <topic>
 *
 * The load: 8 threads through a global pool of 4 idempotent producers
 * (acks=all), each thread SOAK_RATE/8 messages a second: two `wdpool_with`
 * + `produce_sync` of one message, one message through `wdpool_produce_async`
 * (checkout, produce and checkin in one call) with a delivery handle, then
 * one `wdpool_with` + `produce_many_async` of four; the delivery of the
 * last two is waited for after the producer went back. Payload
 * "w<thread>-<seq>", key "w<thread>".
 *
 * The disturbances, at multiples of their period from the start (none at
 * the end itself):
 *   SOAK_RELOAD_S   wdpool_reload (default SOAK_SECONDS/20: every minute of 20)
 *   SOAK_RESTART_S  a broker stopped (SIGTERM) and started again with
 *                   scripts/kafka.sh stop-node / start-node, nodes 1, 2, 3 in
 *                   turn, while the load goes on (default SOAK_SECONDS/4)
 *   SOAK_CLOSE_S    wdpool_close(force) during the load, then, once every
 *                   librdkafka thread and socket of the pool is gone, a new
 *                   wdpool_setup (default SOAK_SECONDS/2); threads that find
 *                   the pool closed wait for the new one
 *
 * Sampled every SOAK_SAMPLE_S (10): VmRSS, open fds and sockets
 * (/proc/self/fd), threads and librdkafka's (rdk:*) among them
 * (/proc/self/task), producers, messages delivered. Samples are taken with
 * no reload, close or setup in progress. After SOAK_WARMUP_S (default
 * SOAK_SECONDS/4: reloads; the first broker restart comes at its end) the bounds
 * (see the README's "Soak test"):
 *   - RSS: the median of the last window of samples exceeds the median of
 *     the first window after warm-up by at most SOAK_RSS_GROWTH_MIB (8); a
 *     window is a minute of samples (3 at least, a third of them at most);
 *   - heap in use (glibc's mallinfo2: what malloc handed out, Rust's and
 *     librdkafka's allocations alike, not given back): the same, at most
 *     SOAK_HEAP_GROWTH_MIB (2); the records of this program are made for
 *     the whole run before it starts, so they are not growth;
 *   - threads, fds, sockets: no sample above the warm-up maximum plus the
 *     transient of producers made while a broker is down or coming back
 *     (seen in a full run: 3 rdk:* threads more for 4 fresh producers, gone
 *     10 s later): one thread, one socket and one wake-up pipe (2 fds) per
 *     producer and broker (TRANSIENT_*);
 *   - and for all three, the last window's minimum is at most the warm-up
 *     maximum: a leak raises the floor, not only the peaks. (Not the first
 *     window's maximum: a broker restart can fall into that window and
 *     lower it, as it did at 300 s of a full run.)
 * Counts go down legitimately (a broker that is down has no thread in a
 * producer, a reload leaves producers to be made on demand), so there is
 * no lower bound.
 * After each forced close, and after the final graceful close: no rdk:*
 * thread, no socket, the thread count back to the program's own threads
 * and (at the end) the fd count back to what it was at the start.
 *
 * Then the topic is read back with kafka_read and counted per payload: a
 * message reported delivered is there exactly once, at the partition and
 * offset its report gave; one whose produce failed is there at most once
 * (a forced close may purge a message the broker already has); nothing is
 * there twice, nothing foreign. Failures are expected only from a forced
 * close (an operation that overlapped one); any other failure fails the
 * run. Prints "soak: N passed, M failed"; exits non-zero on failure.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <malloc.h>
#include <stddef.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "check.h"
#include "kafka_read.h"
#include "proc_counts.h"
#include "support.h"
#include "wdpool.h"

extern char **environ;

enum { POOL_SIZE = 4, THREADS = 8, BATCH = 4, BROKERS = 3 };
/* The program's own threads while it runs: main, the workers, the sampler,
 * the lifecycle thread (reload, close, setup) and the broker restarter. */
enum { OWN_THREADS = 1 + THREADS + 3 };
/* What producers made while a broker is down or coming back may hold for a
 * while beyond the steady state: one broker thread, its wake-up pipe and
 * one connection per producer and broker. */
enum {
  TRANSIENT_THREADS = POOL_SIZE * BROKERS,
  TRANSIENT_FDS = POOL_SIZE * BROKERS * 3,
  TRANSIENT_SOCKETS = POOL_SIZE * BROKERS
};

static const uint64_t CHECKOUT_TIMEOUT_MS = 10000;
/* A producer's max_wait_timeout: bounds a sync produce and a delivery
 * wait; a broker restart moves leaders within seconds. */
static const uint64_t MAX_WAIT_MS = 60000;
/* After a forced close, how long the leased producers may take to come back
 * (one produce_sync each, at most MAX_WAIT_MS) and be closed. */
static const int64_t GONE_DEADLINE_MS = 60000 + 15000;
/* A worker that finds the pool closed waits this long for the new one. */
static const int64_t RESETUP_DEADLINE_MS = 120000;

/* ------------------------------------------------------------------------
 * Parameters. */

typedef struct params {
  long seconds, reload_s, restart_s, close_s, sample_s, warmup_s, rate;
  long rss_growth_mib, heap_growth_mib;
  const char *brokers, *tool, *kafka_sh, *cluster, *topic;
} params;

static params P;

static long env_long(const char *name, long fallback) {
  const char *v = getenv(name);
  if (v == NULL || v[0] == '\0') return fallback;
  char *end = NULL;
  long x = strtol(v, &end, 10);
  if (*end != '\0' || x < 0) {
    fprintf(stderr, "soak: %s=%s is not a non-negative integer\n", name, v);
    exit(2);
  }
  return x;
}

/* ------------------------------------------------------------------------
 * Shared state. */

static int64_t started_ms;
static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER; /* stop, generation */
static pthread_cond_t ctl_cond = PTHREAD_COND_INITIALIZER;
static bool stop_;
static int generation; /* bumped by every wdpool_setup */
/* Held while the pool is reloaded, closed or set up, and while sampling. */
static pthread_mutex_t life_lock = PTHREAD_MUTEX_INITIALIZER;
/* Odd while a forced close (until the new setup) is in progress. */
static atomic_long close_epoch;
static atomic_long delivered_total, failed_total;

static bool stopping(void) {
  pthread_mutex_lock(&ctl_lock);
  bool s = stop_;
  pthread_mutex_unlock(&ctl_lock);
  return s;
}

/* Waits until `at_ms` (from the start) or the stop; true if stopped. */
static bool wait_until_or_stop(int64_t at_ms) {
  int64_t at = started_ms + at_ms;
  struct timespec deadline = {(time_t)(at / 1000), (long)(at % 1000) * 1000000L};
  pthread_mutex_lock(&ctl_lock);
  while (!stop_ && now_ms() < at) pthread_cond_timedwait(&ctl_cond, &ctl_lock, &deadline);
  bool s = stop_;
  pthread_mutex_unlock(&ctl_lock);
  return s;
}

static pthread_condattr_t monotonic_attr(void) {
  pthread_condattr_t a;
  pthread_condattr_init(&a);
  pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
  return a;
}

/* ------------------------------------------------------------------------
 * The pool. */

static int configure(void *user_data, wdpool_config *config, size_t index) {
  (void)user_data;
  (void)index;
  const char *props[][2] = {
      {"bootstrap.servers", P.brokers},
      {"acks", "all"},
      {"enable.idempotence", "true"},
      {"linger.ms", "5"},
      {"reconnect.backoff.max.ms", "1000"},
  };
  for (size_t i = 0; i < sizeof props / sizeof props[0]; i++) {
    wdpool_error *err = NULL;
    if (wdpool_config_set_kafka(config, props[i][0], props[i][1], &err) != WDPOOL_OK) {
      fprintf(stderr, "soak: setting %s: %s\n", props[i][0], wdpool_error_message(err));
      wdpool_error_free(err);
      return 0;
    }
  }
  return wdpool_config_set_max_wait_timeout(config, MAX_WAIT_MS, NULL) == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static bool setup_pool(void) {
  wdpool_options options = {POOL_SIZE, CHECKOUT_TIMEOUT_MS};
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_setup(&options, configure, NULL, &err);
  if (!CHECK_EQ(rc, WDPOOL_OK)) fprintf(stderr, "soak: wdpool_setup: %s\n", wdpool_error_message(err));
  wdpool_error_free(err);
  return rc == WDPOOL_OK;
}

/* ------------------------------------------------------------------------
 * The load. */

enum { NOT_SENT = 0, DELIVERED = 1, FAILED = 2 };

typedef struct record {
  int64_t offset; /* from the delivery report */
  int32_t partition;
  uint8_t state; /* NOT_SENT, DELIVERED, FAILED */
  uint8_t seen;  /* times read back (saturates) */
} record;

typedef struct worker {
  int thread;
  char key[16];
  record *records;
  long cap, next_seq;
  /* The current operation. */
  long seq0;
  int count;
  wdpool_delivery *delivery;
  wdpool_result produce_rc;
  char produce_error[256];
  /* Outcomes. */
  long delivered, failed_expected, failed_unexpected, calls;
  char first_unexpected[512];
} worker;

static worker workers[THREADS];

/* Room for `cap` records, zeroed, so every page is resident from the start:
 * the program's own bookkeeping must not show up as growth in the curve. */
static bool grow_records(worker *w, long cap) {
  record *r = realloc(w->records, (size_t)cap * sizeof *r);
  if (r == NULL) return false;
  memset(r + w->cap, 0, (size_t)(cap - w->cap) * sizeof *r);
  w->records = r;
  w->cap = cap;
  return true;
}

/* The next `count` sequence numbers. The records were made for the whole
 * run (main); growing them (a run faster than its rate) is reported. */
static bool reserve(worker *w, int count) {
  if (w->next_seq + count > w->cap) {
    fprintf(stderr, "soak: thread %d needs more than %ld records: the memory curve includes them\n", w->thread, w->cap);
    if (!grow_records(w, w->cap * 2)) return false;
  }
  w->seq0 = w->next_seq;
  w->count = count;
  w->next_seq += count;
  return true;
}

static void payload_of(const worker *w, long seq, char *out, size_t cap) {
  snprintf(out, cap, "w%d-%ld", w->thread, seq);
}

static void note_error(worker *w, const char *what, wdpool_result rc, const wdpool_error *err) {
  snprintf(w->produce_error, sizeof w->produce_error, "%s %s: %s", what, wdpool_result_name((int)rc),
           wdpool_error_message(err));
}

/* Inside wdpool_with: one produce_sync. */
static int produce_sync_cb(void *user_data, wdpool_producer *producer) {
  worker *w = user_data;
  char payload[32];
  payload_of(w, w->seq0, payload, sizeof payload);
  wdpool_message m = text_message(P.topic, payload);
  m.key = bytes_of(w->key);
  wdpool_report report;
  wdpool_error *err = NULL;
  record *r = &w->records[w->seq0];
  r->state = FAILED;
  w->produce_rc = wdpool_producer_produce_sync(producer, &m, WDPOOL_TIMEOUT_DEFAULT, &report, &err);
  if (w->produce_rc == WDPOOL_OK && report.error_code == 0 && report.partition >= 0 && report.offset >= 0) {
    r->state = DELIVERED;
    r->partition = report.partition;
    r->offset = report.offset;
  } else if (w->produce_rc == WDPOOL_OK) {
    w->produce_rc = WDPOOL_KAFKA;
    snprintf(w->produce_error, sizeof w->produce_error, "produce_sync OK with report error %d", (int)report.error_code);
  } else {
    note_error(w, "produce_sync", w->produce_rc, err);
  }
  wdpool_error_free(err);
  return WDPOOL_CB_OK;
}

/* Inside wdpool_with: BATCH messages, not waited for here. */
static int produce_async_cb(void *user_data, wdpool_producer *producer) {
  worker *w = user_data;
  wdpool_message m[BATCH];
  char payloads[BATCH][32];
  for (int i = 0; i < w->count; i++) {
    payload_of(w, w->seq0 + i, payloads[i], sizeof payloads[i]);
    m[i] = text_message(P.topic, payloads[i]);
    m[i].key = bytes_of(w->key);
    w->records[w->seq0 + i].state = FAILED; /* until its report says otherwise */
  }
  wdpool_error *err = NULL;
  w->produce_rc = wdpool_producer_produce_many_async(producer, m, (size_t)w->count, &w->delivery, &err);
  if (w->produce_rc != WDPOOL_OK) note_error(w, "produce_many_async", w->produce_rc, err);
  wdpool_error_free(err);
  return WDPOOL_CB_OK;
}

/* One message in one call (checkout, produce, checkin), not waited for
 * here. */
static wdpool_result produce_one_call(worker *w, wdpool_error **err) {
  char payload[32];
  payload_of(w, w->seq0, payload, sizeof payload);
  wdpool_message m = text_message(P.topic, payload);
  m.key = bytes_of(w->key);
  w->records[w->seq0].state = FAILED; /* until its report says otherwise */
  bool produced = false;
  wdpool_result rc = wdpool_produce_async(WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &m, &w->delivery, &produced, err);
  if (rc == WDPOOL_OK && (!produced || w->delivery == NULL)) {
    w->produce_rc = WDPOOL_KAFKA;
    snprintf(w->produce_error, sizeof w->produce_error, "wdpool_produce_async OK without producing");
  }
  return rc;
}

/* After the producer went back: the batch's (or the one call's) reports. */
static void collect_batch(worker *w) {
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_delivery_wait(w->delivery, WDPOOL_TIMEOUT_DEFAULT, &err);
  if (rc != WDPOOL_OK) {
    w->produce_rc = rc;
    note_error(w, "delivery_wait", rc, err);
  }
  wdpool_error_free(err);
  for (int i = 0; i < w->count; i++) {
    wdpool_report report;
    record *r = &w->records[w->seq0 + i];
    if (wdpool_delivery_report(w->delivery, (size_t)i, &report, NULL) == WDPOOL_OK && report.error_code == 0 &&
        report.partition >= 0 && report.offset >= 0) {
      r->state = DELIVERED;
      r->partition = report.partition;
      r->offset = report.offset;
    } else if (w->produce_rc == WDPOOL_OK) {
      w->produce_rc = WDPOOL_KAFKA;
      snprintf(w->produce_error, sizeof w->produce_error, "message %d of a batch: error %d", i,
               (int)report.error_code);
    }
  }
  wdpool_delivery_free(w->delivery);
  w->delivery = NULL;
}

/* The pool was closed: wait for the next setup (or the stop). */
static void wait_for_setup(worker *w, int seen_generation) {
  int64_t until = now_ms() + RESETUP_DEADLINE_MS;
  struct timespec deadline = {(time_t)(until / 1000), (long)(until % 1000) * 1000000L};
  pthread_mutex_lock(&ctl_lock);
  while (!stop_ && generation == seen_generation && now_ms() < until) {
    pthread_cond_timedwait(&ctl_cond, &ctl_lock, &deadline);
  }
  bool late = !stop_ && generation == seen_generation;
  pthread_mutex_unlock(&ctl_lock);
  if (late && w->first_unexpected[0] == '\0') {
    snprintf(w->first_unexpected, sizeof w->first_unexpected, "no new pool %" PRId64 " ms after a close",
             RESETUP_DEADLINE_MS);
    w->failed_unexpected++;
  }
}

static void *run_worker(void *arg) {
  worker *w = arg;
  /* Each thread's share of SOAK_RATE messages a second: 3 single messages
   * and one batch of BATCH per 4 operations. */
  const double per_op_ms = 1000.0 * THREADS * (3.0 + BATCH) / 4.0 / (double)P.rate;
  double next = (double)now_ms();
  for (long op = 0; !stopping(); op++) {
    double now = (double)now_ms();
    if (now < next) {
      int64_t pause = (int64_t)(next - now);
      struct timespec ts = {(time_t)(pause / 1000), (long)(pause % 1000) * 1000000L};
      nanosleep(&ts, NULL);
    }
    next = (next > now - 1000 ? next : now) + per_op_ms; /* no burst after a stall */

    bool batch = op % 4 == 3, one_call = op % 4 == 1;
    if (!reserve(w, batch ? BATCH : 1)) {
      CHECK(!"out of memory");
      break;
    }
    pthread_mutex_lock(&ctl_lock);
    int gen = generation;
    pthread_mutex_unlock(&ctl_lock);
    long epoch = atomic_load(&close_epoch);
    w->produce_rc = WDPOOL_OK;
    w->produce_error[0] = '\0';
    w->delivery = NULL;
    wdpool_error *err = NULL;
    wdpool_result rc = one_call ? produce_one_call(w, &err)
                                : wdpool_with(WDPOOL_TIMEOUT_DEFAULT, batch ? produce_async_cb : produce_sync_cb, w, &err);
    w->calls++;
    if (rc == WDPOOL_OK && w->delivery != NULL) collect_batch(w);
    if (rc == WDPOOL_CLOSED || rc == WDPOOL_NOT_SET_UP) {
      /* Nothing was sent (the records stay NOT_SENT). */
      wdpool_error_free(err);
      wait_for_setup(w, gen);
      continue;
    }
    if (rc != WDPOOL_OK) note_error(w, one_call ? "wdpool_produce_async" : "wdpool_with", rc, err);
    wdpool_error_free(err);
    if (rc == WDPOOL_OK && w->produce_rc == WDPOOL_OK) {
      w->delivered += w->count;
      atomic_fetch_add(&delivered_total, w->count);
      continue;
    }
    /* Count what was delivered of a batch; the rest failed. */
    long ok = 0;
    for (int i = 0; i < w->count; i++) ok += w->records[w->seq0 + i].state == DELIVERED;
    w->delivered += ok;
    atomic_fetch_add(&delivered_total, ok);
    atomic_fetch_add(&failed_total, w->count - ok);
    bool overlapped_close = atomic_load(&close_epoch) != epoch || (epoch & 1) != 0;
    if (overlapped_close) {
      w->failed_expected += w->count - ok;
    } else {
      w->failed_unexpected += w->count - ok;
      if (w->first_unexpected[0] == '\0') {
        snprintf(w->first_unexpected, sizeof w->first_unexpected, "w%d-%ld at %.1f s: %s", w->thread, w->seq0,
                 (double)(now_ms() - started_ms) / 1000.0, w->produce_error);
      }
    }
  }
  return NULL;
}

/* ------------------------------------------------------------------------
 * Samples. */

typedef struct sample {
  double at_s;
  proc_counts c;
  long heap_kib; /* bytes malloc has handed out and not got back (glibc's mallinfo2) */
  long delivered, failed;
  size_t producers;
} sample;

static sample *samples;
static size_t n_samples, cap_samples;

static void take_sample(void) {
  sample s;
  memset(&s, 0, sizeof s);
  pthread_mutex_lock(&life_lock);
  s.at_s = (double)(now_ms() - started_ms) / 1000.0;
  CHECK(proc_counts_read(&s.c));
  struct mallinfo2 mi = mallinfo2();
  s.heap_kib = (long)((mi.uordblks + mi.hblkhd) / 1024);
  wdpool_statistics stats;
  if (wdpool_stats(&stats, NULL) == WDPOOL_OK) s.producers = stats.created;
  pthread_mutex_unlock(&life_lock);
  s.delivered = atomic_load(&delivered_total);
  s.failed = atomic_load(&failed_total);
  if (n_samples == cap_samples) {
    cap_samples = cap_samples == 0 ? 256 : cap_samples * 2;
    sample *grown = realloc(samples, cap_samples * sizeof *grown);
    if (grown == NULL) return;
    samples = grown;
  }
  samples[n_samples++] = s;
  printf("soak: sample %6.1f s  rss %5.1f MiB  heap %5.1f MiB  fds %4ld  sockets %3ld  threads %3ld  rdk %3ld  producers %zu  "
         "delivered %8ld  failed %ld\n",
         s.at_s, (double)s.c.rss_kib / 1024.0, (double)s.heap_kib / 1024.0, s.c.fds, s.c.sockets, s.c.threads, s.c.rdk_threads, s.producers,
         s.delivered, s.failed);
  fflush(stdout);
}

static void *run_sampler(void *arg) {
  (void)arg;
  for (long k = 1;; k++) {
    if (wait_until_or_stop(k * P.sample_s * 1000)) break;
    take_sample();
  }
  return NULL;
}

/* ------------------------------------------------------------------------
 * Reload, forced close and setup. */

static long reloads, closes;
static int64_t longest_gone_ms;

static bool pool_gone(void) {
  proc_counts c;
  return proc_counts_read(&c) && c.rdk_threads == 0 && c.sockets == 0 && c.threads == OWN_THREADS;
}

static void forced_close_and_setup(void) {
  atomic_fetch_add(&close_epoch, 1); /* odd: closing */
  int64_t t0 = now_ms();
  wdpool_close_report report;
  memset(&report, 0, sizeof report);
  CHECK_RC(wdpool_close(true, &report, CHECK_ERR), WDPOOL_OK);
  int64_t closed_ms = now_ms() - t0;
  /* Leased producers are closed when they come back. */
  int64_t t1 = now_ms();
  int64_t deadline = t1 + GONE_DEADLINE_MS;
  while (!pool_gone() && now_ms() < deadline) poll_pause();
  int64_t gone_ms = now_ms() - t1;
  proc_counts c;
  CHECK(proc_counts_read(&c));
  printf("soak: forced close at %.1f s took %" PRId64 " ms (closed %zu, in use %zu, undelivered %" PRIu64
         "); %" PRId64 " ms later: threads %ld (rdk %ld), sockets %ld, fds %ld\n",
         (double)(t0 - started_ms) / 1000.0, closed_ms, report.closed, report.in_use, report.undelivered, gone_ms,
         c.threads, c.rdk_threads, c.sockets, c.fds);
  CHECK_EQ(c.rdk_threads, 0);
  CHECK_EQ(c.sockets, 0);
  CHECK_EQ(c.threads, OWN_THREADS);
  if (gone_ms > longest_gone_ms) longest_gone_ms = gone_ms;
  setup_pool();
  atomic_fetch_add(&close_epoch, 1); /* even: open */
  pthread_mutex_lock(&ctl_lock);
  generation++;
  pthread_cond_broadcast(&ctl_cond);
  pthread_mutex_unlock(&ctl_lock);
  closes++;
}

static void *run_lifecycle(void *arg) {
  (void)arg;
  long next_reload = P.reload_s, next_close = P.close_s;
  for (;;) {
    long at = next_reload < next_close ? next_reload : next_close;
    if (at <= 0 || at >= P.seconds) break;
    if (wait_until_or_stop(at * 1000)) break;
    pthread_mutex_lock(&life_lock);
    if (at == next_close) {
      forced_close_and_setup();
      next_close += P.close_s;
      if (next_reload == at) next_reload += P.reload_s;
    } else {
      int64_t t0 = now_ms();
      CHECK_RC(wdpool_reload(CHECK_ERR), WDPOOL_OK);
      printf("soak: reload at %.1f s took %" PRId64 " ms\n", (double)(t0 - started_ms) / 1000.0, now_ms() - t0);
      reloads++;
      next_reload += P.reload_s;
    }
    pthread_mutex_unlock(&life_lock);
  }
  wait_until_or_stop(P.seconds * 1000); /* stays until the stop, as the restarter */
  return NULL;
}

/* ------------------------------------------------------------------------
 * Broker restarts. */

static long restarts;

/* scripts/kafka.sh <verb> <node> --name <cluster>; true if it exited 0. */
static bool kafka_sh(const char *verb, int node) {
  char id[8];
  snprintf(id, sizeof id, "%d", node);
  char *argv[] = {(char *)P.kafka_sh, (char *)verb, id, "--name", (char *)P.cluster, NULL};
  pid_t pid;
  int rc = posix_spawn(&pid, P.kafka_sh, NULL, NULL, argv, environ);
  if (rc != 0) {
    fprintf(stderr, "soak: spawning %s: %s\n", P.kafka_sh, strerror(rc));
    return false;
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Stays until the stop: the program's thread count must not change. */
static void *run_restarter(void *arg) {
  (void)arg;
  for (long k = 1; P.restart_s > 0 && k * P.restart_s < P.seconds; k++) {
    if (wait_until_or_stop(k * P.restart_s * 1000)) break;
    int node = (int)((k - 1) % BROKERS) + 1;
    int64_t t0 = now_ms();
    bool stopped = kafka_sh("stop-node", node);
    int64_t t1 = now_ms();
    bool started = kafka_sh("start-node", node);
    printf("soak: broker %d restarted at %.1f s: stopped in %" PRId64 " ms, back in %" PRId64 " ms\n", node,
           (double)(t0 - started_ms) / 1000.0, t1 - t0, now_ms() - t1);
    CHECK(stopped);
    CHECK(started);
    restarts++;
  }
  wait_until_or_stop(P.seconds * 1000);
  return NULL;
}

/* ------------------------------------------------------------------------
 * The bounds. */

static int cmp_long(const void *a, const void *b) {
  long x = *(const long *)a, y = *(const long *)b;
  return (x > y) - (x < y);
}

/* The median of one long field of struct sample (offsetof) over n samples. */
static long median_of(size_t field, const sample *s, size_t n) {
  long v[64];
  if (n > 64) n = 64;
  for (size_t i = 0; i < n; i++) memcpy(&v[i], (const char *)&s[i] + field, sizeof v[i]);
  qsort(v, n, sizeof v[0], cmp_long);
  return n == 0 ? 0 : v[n / 2];
}

/* The growth of a field's median from the first window after warm-up to the
 * last one, checked against bound_mib. */
static void check_growth(const char *name, size_t field, size_t warm, size_t window, long bound_mib) {
  long first = median_of(field, samples + warm, window);
  long last = median_of(field, samples + n_samples - window, window);
  double minutes = (samples[n_samples - 1].at_s - samples[warm].at_s) / 60.0;
  printf("soak: %s median %.1f MiB (first window) -> %.1f MiB (last window): %+.1f MiB in %.1f min (bound %ld MiB)\n",
         name, first / 1024.0, last / 1024.0, (last - first) / 1024.0, minutes, bound_mib);
  if (!CHECK(last - first <= bound_mib * 1024)) fprintf(stderr, "soak: %s grew\n", name);
}

typedef struct band {
  long min, max;
} band;

/* The [min, max] of one proc_counts field (offsetof) over samples [from, to). */
static band band_of(size_t field, size_t from, size_t to) {
  band b = {-1, -1};
  for (size_t i = from; i < to; i++) {
    long v;
    memcpy(&v, (const char *)&samples[i].c + field, sizeof v);
    if (b.min < 0 || v < b.min) b.min = v;
    if (v > b.max) b.max = v;
  }
  return b;
}

/* Threads, fds or sockets after warm-up: never above the warm-up maximum
 * plus `slack`, and the last window's floor not above the warm-up
 * maximum. */
static void check_count_flat(const char *name, size_t field, size_t warm, size_t window, long slack) {
  band before = band_of(field, 1, warm); /* the first sample may predate the producers */
  band after = band_of(field, warm, n_samples);
  band last = band_of(field, n_samples - window, n_samples);
  printf("soak: %s: warm-up [%ld, %ld], after [%ld, %ld] (bound %ld), last window min %ld (bound %ld)\n", name,
         before.min, before.max, after.min, after.max, before.max + slack, last.min, before.max);
  if (!CHECK(after.max <= before.max + slack)) fprintf(stderr, "soak: %s above the warm-up band\n", name);
  if (!CHECK(last.min <= before.max)) fprintf(stderr, "soak: %s: the floor rose\n", name);
}

static void check_flat(void) {
  size_t warm = 0;
  while (warm < n_samples && samples[warm].at_s < (double)P.warmup_s) warm++;
  size_t after = n_samples - warm;
  size_t window = (size_t)(60 / P.sample_s);
  if (window > after / 3) window = after / 3;
  if (window < 3) window = 3;
  if (!CHECK(warm >= 2 && after >= 2 * window)) {
    fprintf(stderr, "soak: %zu samples in warm-up, %zu after: too few to judge (make the run longer)\n", warm, after);
    return;
  }
  printf("soak: after warm-up: %zu samples from %.0f s, windows of %zu\n", after, samples[warm].at_s, window);
  check_growth("RSS", offsetof(sample, c.rss_kib), warm, window, P.rss_growth_mib);
  check_growth("heap in use", offsetof(sample, heap_kib), warm, window, P.heap_growth_mib);
  check_count_flat("threads", offsetof(proc_counts, threads), warm, window, TRANSIENT_THREADS);
  check_count_flat("fds", offsetof(proc_counts, fds), warm, window, TRANSIENT_FDS);
  check_count_flat("sockets", offsetof(proc_counts, sockets), warm, window, TRANSIENT_SOCKETS);
}

/* ------------------------------------------------------------------------
 * Reading back. */

typedef struct read_state {
  kafka_read_result tool;
  long foreign, key_mismatch;
} read_state;

static void on_record(void *ctx, long partition, long long offset, const char *key, const char *payload) {
  read_state *st = ctx;
  int thread = -1, used = 0;
  long seq = -1;
  if (sscanf(payload, "w%d-%ld%n", &thread, &seq, &used) != 2 || payload[used] != '\0' || thread < 0 ||
      thread >= THREADS || seq < 0 || seq >= workers[thread].next_seq) {
    if (st->foreign++ < 5) fprintf(stderr, "soak: unexpected payload \"%s\"\n", payload);
    return;
  }
  if (strcmp(key, workers[thread].key) != 0 && st->key_mismatch++ < 5) {
    fprintf(stderr, "soak: %s has key \"%s\"\n", payload, key);
  }
  record *r = &workers[thread].records[seq];
  if (r->seen < UINT8_MAX) r->seen++;
  if (r->state == DELIVERED && (r->partition != partition || r->offset != offset)) {
    fprintf(stderr, "soak: %s reported at %d/%" PRId64 ", read at %ld/%lld\n", payload, (int)r->partition, r->offset,
            partition, offset);
    r->state = UINT8_MAX; /* counted as a mismatch below */
  }
}

static void check_read_back(long delivered) {
  read_state st;
  memset(&st, 0, sizeof st);
  int64_t t0 = now_ms();
  long timeout_ms = 120000 + delivered / 10; /* 10,000 records a second at worst */
  CHECK(kafka_read_each("soak", P.tool, P.brokers, P.topic, delivered, timeout_ms, on_record, &st, &st.tool));
  printf("soak: kafka_read returned %ld records in %" PRId64 " ms (exit status %d)\n", st.tool.lines,
         now_ms() - t0, st.tool.exit_status);
  CHECK_EQ(st.tool.exit_status, 0);
  CHECK_EQ(st.tool.malformed, 0);
  CHECK_EQ(st.foreign, 0);
  CHECK_EQ(st.key_mismatch, 0);

  long missing = 0, duplicated = 0, mismatched = 0, failed_there = 0, failed_absent = 0, not_sent_there = 0;
  for (int t = 0; t < THREADS; t++) {
    const worker *w = &workers[t];
    for (long s = 0; s < w->next_seq; s++) {
      const record *r = &w->records[s];
      if (r->seen > 1 && duplicated++ < 5) fprintf(stderr, "soak: w%d-%ld read %d times\n", t, s, r->seen);
      switch (r->state) {
        case DELIVERED:
          if (r->seen == 0 && missing++ < 5) fprintf(stderr, "soak: w%d-%ld delivered, never read back\n", t, s);
          break;
        case FAILED: r->seen == 0 ? failed_absent++ : failed_there++; break;
        case NOT_SENT:
          if (r->seen > 0 && not_sent_there++ < 5) fprintf(stderr, "soak: w%d-%ld never sent, read back\n", t, s);
          break;
        default: mismatched++;
      }
    }
  }
  printf("soak: read back: %ld delivered messages missing, %ld duplicated, %ld at another offset; of the failed "
         "ones %ld are there, %ld are not\n",
         missing, duplicated, mismatched, failed_there, failed_absent);
  CHECK_EQ(missing, 0);
  CHECK_EQ(duplicated, 0);
  CHECK_EQ(mismatched, 0);
  CHECK_EQ(not_sent_there, 0);
  CHECK(st.tool.lines >= delivered);
}

/* ------------------------------------------------------------------------ */

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  P.topic = argc > 1 ? argv[1] : NULL;
  P.brokers = getenv("WDPOOL_BROKERS");
  P.tool = getenv("WDPOOL_KAFKA_READ");
  P.kafka_sh = getenv("SOAK_KAFKA_SH");
  P.cluster = getenv("SOAK_CLUSTER");
  if (!kafka_read_shell_safe(P.topic) || !kafka_read_shell_safe(P.brokers) || !kafka_read_tool_ok(P.tool) ||
      P.kafka_sh == NULL || P.kafka_sh[0] != '/' || !kafka_read_shell_safe(P.cluster)) {
    fprintf(stderr,
            "usage: WDPOOL_BROKERS=host:port,... WDPOOL_KAFKA_READ=path/to/kafka_read SOAK_KAFKA_SH=/abs/scripts/kafka.sh "
            "SOAK_CLUSTER=name soak <topic>\n(see tests/c/soak.c for the SOAK_* parameters; make soak runs it)\n");
    return 2;
  }
  P.seconds = env_long("SOAK_SECONDS", 1200);
  P.reload_s = env_long("SOAK_RELOAD_S", P.seconds / 20);
  P.restart_s = env_long("SOAK_RESTART_S", P.seconds / 4);
  P.close_s = env_long("SOAK_CLOSE_S", P.seconds / 2);
  P.sample_s = env_long("SOAK_SAMPLE_S", 10);
  P.warmup_s = env_long("SOAK_WARMUP_S", P.seconds / 4);
  P.rate = env_long("SOAK_RATE", 400);
  P.rss_growth_mib = env_long("SOAK_RSS_GROWTH_MIB", 8);
  P.heap_growth_mib = env_long("SOAK_HEAP_GROWTH_MIB", 2);
  if (P.seconds < 1 || P.sample_s < 1 || P.rate < 1) {
    fprintf(stderr, "soak: SOAK_SECONDS, SOAK_SAMPLE_S and SOAK_RATE must be at least 1\n");
    return 2;
  }
  pthread_condattr_t attr = monotonic_attr();
  pthread_cond_init(&ctl_cond, &attr);
  pthread_condattr_destroy(&attr);

  proc_counts at_start;
  CHECK(proc_counts_read(&at_start));
  printf("soak: %ld s on topic %s (brokers %s, cluster %s): %d threads, a pool of %d, %ld messages/s; reload every "
         "%ld s, a broker restart every %ld s, a forced close every %ld s; samples every %ld s, warm-up %ld s\n",
         P.seconds, P.topic, P.brokers, P.cluster, THREADS, POOL_SIZE, P.rate, P.reload_s, P.restart_s, P.close_s,
         P.sample_s, P.warmup_s);
  printf("soak: at start: threads %ld, fds %ld, sockets %ld, rss %.1f MiB\n", at_start.threads, at_start.fds,
         at_start.sockets, at_start.rss_kib / 1024.0);

  started_ms = now_ms();
  if (!setup_pool()) return check_summary("soak");
  generation = 1;

  /* Each thread's share of the run, a quarter more, and a margin. */
  long per_thread = P.rate * P.seconds / THREADS * 5 / 4 + 4096;
  for (int t = 0; t < THREADS; t++) {
    if (!CHECK(grow_records(&workers[t], per_thread))) return check_summary("soak");
  }

  pthread_t threads[THREADS], sampler, lifecycle, restarter;
  for (int t = 0; t < THREADS; t++) {
    workers[t].thread = t;
    snprintf(workers[t].key, sizeof workers[t].key, "w%d", t);
    CHECK_EQ(pthread_create(&threads[t], NULL, run_worker, &workers[t]), 0);
  }
  CHECK_EQ(pthread_create(&sampler, NULL, run_sampler, NULL), 0);
  CHECK_EQ(pthread_create(&lifecycle, NULL, run_lifecycle, NULL), 0);
  CHECK_EQ(pthread_create(&restarter, NULL, run_restarter, NULL), 0);

  wait_until_or_stop(P.seconds * 1000);
  pthread_mutex_lock(&ctl_lock);
  stop_ = true;
  pthread_cond_broadcast(&ctl_cond);
  pthread_mutex_unlock(&ctl_lock);
  /* Each is bounded: a worker by its current call (MAX_WAIT_MS), the
   * restarter by kafka.sh's own deadlines. */
  for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
  pthread_join(sampler, NULL);
  pthread_join(lifecycle, NULL);
  pthread_join(restarter, NULL);
  double ran_s = (double)(now_ms() - started_ms) / 1000.0;

  wdpool_close_report closed;
  memset(&closed, 0, sizeof closed);
  CHECK_RC(wdpool_close(false, &closed, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(closed.undelivered, 0);
  CHECK_EQ(closed.in_use, 0);
  proc_counts at_end;
  CHECK(proc_counts_read(&at_end));
  printf("soak: after the final close: threads %ld (rdk %ld), fds %ld, sockets %ld, rss %.1f MiB\n", at_end.threads,
         at_end.rdk_threads, at_end.fds, at_end.sockets, at_end.rss_kib / 1024.0);
  CHECK_EQ(at_end.threads, 1);
  CHECK_EQ(at_end.rdk_threads, 0);
  CHECK_EQ(at_end.sockets, 0);
  CHECK_EQ(at_end.fds, at_start.fds);

  long delivered = 0, expected = 0, unexpected = 0, calls = 0, sent = 0;
  for (int t = 0; t < THREADS; t++) {
    const worker *w = &workers[t];
    delivered += w->delivered;
    expected += w->failed_expected;
    unexpected += w->failed_unexpected;
    calls += w->calls;
    sent += w->next_seq;
    if (w->failed_unexpected > 0) fprintf(stderr, "soak: thread %d: first unexpected failure: %s\n", t, w->first_unexpected);
  }
  printf("soak: %.0f s: %ld wdpool_with / wdpool_produce_async calls, %ld messages, %ld delivered (%.0f/s), %ld failed overlapping a forced "
         "close, %ld failed otherwise; %ld reloads, %ld broker restarts, %ld forced closes (pool gone %" PRId64
         " ms after at most)\n",
         ran_s, calls, sent, delivered, delivered / ran_s, expected, unexpected, reloads, restarts, closes,
         longest_gone_ms);
  CHECK_EQ(unexpected, 0);
  CHECK(delivered > 0);
  check_flat();
  check_read_back(delivered);
  for (int t = 0; t < THREADS; t++) free(workers[t].records);
  free(samples);
  return check_summary("soak");
}
