/*
 * wdpool_bench: the wdpool side of `make bench`, through the C ABI exactly
 * as a C user calls it (include/wdpool.h, linked with -lwdpool).
 *
 *   wdpool_bench throughput --bootstrap B --topic T --messages N --threads 4 --pool 2
 *                           --per-with 1|100 [--many] [--set key=value]...
 *   wdpool_bench txn        --bootstrap B --topic T --pool K --threads 4 --seconds S
 *                           --per-txn 10 --txn-prefix ID [--set key=value]...
 *   wdpool_bench latency    --bootstrap B --topic T --messages N --warmup W [--set ...]
 *   wdpool_bench with       --threads 1|2 --ops N --mode with|checkout|owner
 *   wdpool_bench close      --bootstrap B --topic T --pool P --inflight M --repeat R [--set ...]
 *
 * Every `--set key=value` is a librdkafka property given to every producer
 * (the driver passes acks, linger.ms, enable.idempotence, ... explicitly).
 * Each run prints one line "RESULT key=value ..." on stdout; failures print
 * to stderr and exit non-zero. The driver (bench/driver.py) reads the
 * topic's high watermarks before and after a run: "delivered" is what the
 * broker stored, minus the warm-up messages the RESULT line declares.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "common.h"
#include "wdpool.h"

enum { MAX_SETS = 64, MAX_THREADS = 64, MAX_POOL = 64 };

/* ---------------------------------------------------------------- config */

typedef struct settings {
  const char *bootstrap;
  const char *txn_prefix; /* NULL: not transactional */
  bool deliver;
  int n;
  const char *keys[MAX_SETS];
  const char *values[MAX_SETS];
  char storage[MAX_SETS][256];
} settings;

static void settings_parse(settings *s, int argc, char **argv) {
  memset(s, 0, sizeof *s);
  s->deliver = true;
  s->bootstrap = arg_str(argc, argv, "--bootstrap", NULL);
  s->txn_prefix = arg_str(argc, argv, "--txn-prefix", NULL);
  for (int i = 1; i + 1 < argc; i++) {
    if (strcmp(argv[i], "--set") != 0) continue;
    if (s->n == MAX_SETS) die("too many --set");
    const char *kv = argv[++i];
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv || strlen(kv) >= sizeof s->storage[0]) die("--set %s: not key=value", kv);
    char *buf = s->storage[s->n];
    strcpy(buf, kv);
    buf[eq - kv] = '\0';
    s->keys[s->n] = buf;
    s->values[s->n] = buf + (eq - kv) + 1;
    s->n++;
  }
}

static int configure(void *user_data, wdpool_config *config, size_t index) {
  const settings *s = user_data;
  wdpool_error *err = NULL;
  if (!s->deliver) {
    if (wdpool_config_set_deliver(config, false, &err) != WDPOOL_OK) goto fail;
    return WDPOOL_CB_OK;
  }
  if (s->bootstrap && wdpool_config_set_kafka(config, "bootstrap.servers", s->bootstrap, &err) != WDPOOL_OK)
    goto fail;
  for (int i = 0; i < s->n; i++)
    if (wdpool_config_set_kafka(config, s->keys[i], s->values[i], &err) != WDPOOL_OK) goto fail;
  if (s->txn_prefix) {
    char id[256];
    snprintf(id, sizeof id, "%s-%zu", s->txn_prefix, index);
    if (wdpool_config_set_kafka(config, "transactional.id", id, &err) != WDPOOL_OK) goto fail;
  }
  return WDPOOL_CB_OK;
fail:
  fprintf(stderr, "bench: configure: %s\n", wdpool_error_message(err));
  wdpool_error_free(err);
  return 0;
}

static void check(const char *what, wdpool_result rc, wdpool_error *err) {
  if (rc == WDPOOL_OK) return;
  die("%s: %s: %s", what, wdpool_result_name(rc), wdpool_error_message(err));
}

static wdpool_pool *pool_make(settings *s, size_t size) {
  wdpool_options options = wdpool_options_default();
  options.size = size;
  options.timeout_ms = 60000;
  wdpool_pool *pool = NULL;
  wdpool_error *err = NULL;
  check("wdpool_pool_new", wdpool_pool_new(&options, configure, s, &pool, &err), err);
  return pool;
}

/* ---------------------------------------------------------------- shared */

static uint8_t payload[PAYLOAD_LEN];
static wdpool_message message;
static atomic_long failures;

static void fail_once(const char *what, wdpool_result rc, wdpool_error *err) {
  if (atomic_fetch_add(&failures, 1) < 5)
    fprintf(stderr, "bench: %s: %s: %s\n", what, wdpool_result_name(rc), wdpool_error_message(err));
}

static void message_setup(const char *topic) {
  bench_payload(payload);
  wdpool_message_init(&message);
  message.topic = topic;
  message.payload = (wdpool_bytes){payload, PAYLOAD_LEN};
}

/* Checks out every producer of a pool of `size` (WDPOOL_OWNER_NONE: each
 * checkout a distinct producer while the others are held). */
static void checkout_all(wdpool_pool *pool, size_t size, wdpool_producer **out) {
  for (size_t i = 0; i < size; i++) {
    wdpool_error *err = NULL;
    check("wdpool_pool_checkout", wdpool_pool_checkout(pool, WDPOOL_OWNER_NONE, WDPOOL_TIMEOUT_DEFAULT, &out[i], &err), err);
  }
}

static void checkin_all(size_t size, wdpool_producer **producers) {
  for (size_t i = 0; i < size; i++) {
    wdpool_error *err = NULL;
    check("wdpool_producer_checkin", wdpool_producer_checkin(producers[i], &err), err);
  }
}

/* Creates every producer and sends one message through each, waiting for
 * it: connections, metadata and producer ids are in place before the clock
 * starts. Returns the number of messages sent. */
static long warm_up(wdpool_pool *pool, size_t size) {
  wdpool_producer *producers[MAX_POOL];
  checkout_all(pool, size, producers);
  for (size_t i = 0; i < size; i++) {
    wdpool_error *err = NULL;
    check("warm-up produce_sync", wdpool_producer_produce_sync(producers[i], &message, WDPOOL_TIMEOUT_DEFAULT, NULL, &err), err);
  }
  checkin_all(size, producers);
  return (long)size;
}

static void *flush_one(void *arg) {
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_producer_flush(arg, WDPOOL_TIMEOUT_DEFAULT, &err);
  if (rc != WDPOOL_OK) fail_once("wdpool_producer_flush", rc, err);
  wdpool_error_free(err);
  return NULL;
}

/* Waits until every message of every producer has its delivery report:
 * flushes all of them at once. */
static void drain(wdpool_pool *pool, size_t size) {
  wdpool_producer *producers[MAX_POOL];
  pthread_t threads[MAX_POOL];
  checkout_all(pool, size, producers);
  for (size_t i = 0; i < size; i++) pthread_create(&threads[i], NULL, flush_one, producers[i]);
  for (size_t i = 0; i < size; i++) pthread_join(threads[i], NULL);
  checkin_all(size, producers);
}

static void pool_close(wdpool_pool *pool, wdpool_close_report *report) {
  wdpool_error *err = NULL;
  check("wdpool_pool_close", wdpool_pool_close(pool, false, report, &err), err);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------ throughput */

typedef struct tp_worker {
  wdpool_pool *pool;
  long messages;
  int per_with;
  bool many;
  int k; /* messages in the current `with` */
  pthread_t thread;
} tp_worker;

static wdpool_message many_messages[100];

static int produce_k(void *user_data, wdpool_producer *producer) {
  tp_worker *w = user_data;
  wdpool_error *err = NULL;
  if (w->many) {
    wdpool_result rc = wdpool_producer_produce_many_async(producer, many_messages, (size_t)w->k, NULL, &err);
    if (rc != WDPOOL_OK) {
      fail_once("wdpool_producer_produce_many_async", rc, err);
      wdpool_error_free(err);
      return 0;
    }
    return WDPOOL_CB_OK;
  }
  for (int i = 0; i < w->k; i++) {
    wdpool_result rc = wdpool_producer_produce_async(producer, &message, NULL, &err);
    if (rc != WDPOOL_OK) {
      fail_once("wdpool_producer_produce_async", rc, err);
      wdpool_error_free(err);
      return 0;
    }
  }
  return WDPOOL_CB_OK;
}

static void *tp_run(void *arg) {
  tp_worker *w = arg;
  for (long left = w->messages; left > 0; left -= w->k) {
    w->k = left < w->per_with ? (int)left : w->per_with;
    wdpool_error *err = NULL;
    wdpool_result rc = wdpool_pool_with(w->pool, WDPOOL_TIMEOUT_DEFAULT, produce_k, w, &err);
    if (rc != WDPOOL_OK) {
      fail_once("wdpool_pool_with", rc, err);
      wdpool_error_free(err);
      return NULL;
    }
  }
  return NULL;
}

static int cmd_throughput(int argc, char **argv) {
  settings s;
  settings_parse(&s, argc, argv);
  const char *topic = arg_str(argc, argv, "--topic", "bench");
  long total = arg_long(argc, argv, "--messages", 100000);
  long threads = arg_long(argc, argv, "--threads", 4);
  long size = arg_long(argc, argv, "--pool", 2);
  long per_with = arg_long(argc, argv, "--per-with", 1);
  bool many = arg_flag(argc, argv, "--many");
  if (threads < 1 || threads > MAX_THREADS || size < 1 || size > MAX_POOL || per_with < 1 || per_with > 100)
    die("throughput: threads 1..%d, pool 1..%d, per-with 1..100", MAX_THREADS, MAX_POOL);
  message_setup(topic);
  for (int i = 0; i < 100; i++) many_messages[i] = message;

  wdpool_pool *pool = pool_make(&s, (size_t)size);
  long warmup = warm_up(pool, (size_t)size);

  tp_worker workers[MAX_THREADS];
  double cpu0 = cpu_seconds();
  uint64_t t0 = now_ns();
  for (long i = 0; i < threads; i++) {
    workers[i] = (tp_worker){.pool = pool, .messages = total / threads + (i < total % threads), .per_with = (int)per_with, .many = many};
    pthread_create(&workers[i].thread, NULL, tp_run, &workers[i]);
  }
  for (long i = 0; i < threads; i++) pthread_join(workers[i].thread, NULL);
  uint64_t t_sent = now_ns();
  drain(pool, (size_t)size);
  uint64_t t1 = now_ns();
  double cpu1 = cpu_seconds();

  wdpool_close_report report = {0};
  pool_close(pool, &report);
  if (failures) die("throughput: %ld failed calls", (long)failures);
  printf("RESULT bench=throughput impl=wdpool mode=%s pool=%ld threads=%ld sent=%ld warmup=%ld delivered=-1 "
         "undelivered_at_close=%" PRIu64 " elapsed_s=%.6f send_s=%.6f cpu_s=%.6f\n",
         many ? "many" : "with", size, threads, total, warmup, report.undelivered, (double)(t1 - t0) / 1e9,
         (double)(t_sent - t0) / 1e9, cpu1 - cpu0);
  return 0;
}

/* ----------------------------------------------------------- transactions */

typedef struct txn_worker {
  wdpool_pool *pool;
  int per_txn;
  uint64_t deadline;
  long committed;
  pthread_t thread;
} txn_worker;

static int produce_txn(void *user_data, wdpool_producer *producer) {
  int per_txn = *(const int *)user_data;
  for (int i = 0; i < per_txn; i++) {
    wdpool_error *err = NULL;
    wdpool_result rc = wdpool_producer_produce_async(producer, &message, NULL, &err);
    if (rc != WDPOOL_OK) {
      fail_once("produce_async in a transaction", rc, err);
      wdpool_error_free(err);
      return 0;
    }
  }
  return WDPOOL_CB_OK;
}

static void *txn_run(void *arg) {
  txn_worker *w = arg;
  while (now_ns() < w->deadline) {
    wdpool_error *err = NULL;
    wdpool_result rc = wdpool_pool_transaction(w->pool, WDPOOL_TIMEOUT_DEFAULT, produce_txn, &w->per_txn, &err);
    if (rc != WDPOOL_OK) {
      fail_once("wdpool_pool_transaction", rc, err);
      wdpool_error_free(err);
      return NULL;
    }
    w->committed++;
  }
  return NULL;
}

static int cmd_txn(int argc, char **argv) {
  settings s;
  settings_parse(&s, argc, argv);
  if (!s.txn_prefix) die("txn: --txn-prefix is required");
  const char *topic = arg_str(argc, argv, "--topic", "bench");
  long size = arg_long(argc, argv, "--pool", 1);
  long threads = arg_long(argc, argv, "--threads", 4);
  double seconds = strtod(arg_str(argc, argv, "--seconds", "5"), NULL);
  int per_txn = (int)arg_long(argc, argv, "--per-txn", 10);
  if (threads < 1 || threads > MAX_THREADS || size < 1 || size > MAX_POOL) die("txn: bad --threads or --pool");
  message_setup(topic);

  wdpool_pool *pool = pool_make(&s, (size_t)size);
  /* Warm-up: every producer created (init_transactions) and one
   * transaction committed through each. */
  wdpool_producer *producers[MAX_POOL];
  checkout_all(pool, (size_t)size, producers);
  for (long i = 0; i < size; i++) {
    wdpool_error *err = NULL;
    check("warm-up transaction", wdpool_producer_transaction(producers[i], produce_txn, &per_txn, &err), err);
  }
  checkin_all((size_t)size, producers);

  txn_worker workers[MAX_THREADS];
  double cpu0 = cpu_seconds();
  uint64_t t0 = now_ns();
  uint64_t deadline = t0 + (uint64_t)(seconds * 1e9);
  for (long i = 0; i < threads; i++) {
    workers[i] = (txn_worker){.pool = pool, .per_txn = per_txn, .deadline = deadline};
    pthread_create(&workers[i].thread, NULL, txn_run, &workers[i]);
  }
  long committed = 0;
  for (long i = 0; i < threads; i++) {
    pthread_join(workers[i].thread, NULL);
    committed += workers[i].committed;
  }
  uint64_t t1 = now_ns();
  double cpu1 = cpu_seconds();
  pool_close(pool, NULL);
  if (failures) die("txn: %ld failed calls", (long)failures);
  printf("RESULT bench=txn impl=wdpool pool=%ld threads=%ld per_txn=%d txns=%ld warmup_txns=%ld failed=0 "
         "elapsed_s=%.6f cpu_s=%.6f\n",
         size, threads, per_txn, committed, size, (double)(t1 - t0) / 1e9, cpu1 - cpu0);
  return 0;
}

/* ---------------------------------------------------------------- latency */

static int produce_one_sync(void *user_data, wdpool_producer *producer) {
  (void)user_data;
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_producer_produce_sync(producer, &message, WDPOOL_TIMEOUT_DEFAULT, NULL, &err);
  if (rc != WDPOOL_OK) {
    fail_once("wdpool_producer_produce_sync", rc, err);
    wdpool_error_free(err);
    return 0;
  }
  return WDPOOL_CB_OK;
}

static int cmd_latency(int argc, char **argv) {
  settings s;
  settings_parse(&s, argc, argv);
  const char *topic = arg_str(argc, argv, "--topic", "bench");
  long n = arg_long(argc, argv, "--messages", 1000);
  long warmup = arg_long(argc, argv, "--warmup", 50);
  if (n < 1) die("latency: --messages must be at least 1");
  message_setup(topic);
  wdpool_pool *pool = pool_make(&s, 1);
  uint64_t *lat = malloc((size_t)n * sizeof *lat);
  if (!lat) die("out of memory");
  for (long i = -warmup; i < n; i++) {
    wdpool_error *err = NULL;
    uint64_t t0 = now_ns();
    wdpool_result rc = wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, produce_one_sync, NULL, &err);
    uint64_t t1 = now_ns();
    check("wdpool_pool_with (produce_sync)", rc, err);
    if (i >= 0) lat[i] = t1 - t0;
  }
  pool_close(pool, NULL);
  qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
  double sum = 0;
  for (long i = 0; i < n; i++) sum += (double)lat[i];
  printf("RESULT bench=latency impl=wdpool sent=%ld warmup=%ld delivered=%ld p50_us=%.1f p99_us=%.1f mean_us=%.1f "
         "max_us=%.1f\n",
         n, warmup, n, (double)quantile(lat, (size_t)n, 0.50) / 1e3, (double)quantile(lat, (size_t)n, 0.99) / 1e3,
         sum / (double)n / 1e3, (double)lat[n - 1] / 1e3);
  free(lat);
  return 0;
}

/* ------------------------------------------------------------- empty with */

typedef struct with_worker {
  wdpool_pool *pool;
  long ops;
  bool checkout;
  wdpool_owner owner; /* for checkout: WDPOOL_OWNER_THREAD or an owner token */
  pthread_barrier_t *start;
  pthread_t thread;
} with_worker;

static int empty(void *user_data, wdpool_producer *producer) {
  (void)user_data;
  (void)producer;
  return WDPOOL_CB_OK;
}

static void with_ops(with_worker *w, long ops) {
  for (long i = 0; i < ops; i++) {
    wdpool_result rc;
    if (w->checkout) {
      wdpool_producer *p = NULL;
      rc = wdpool_pool_checkout(w->pool, w->owner, WDPOOL_TIMEOUT_DEFAULT, &p, NULL);
      if (rc == WDPOOL_OK) rc = wdpool_producer_checkin(p, NULL);
    } else {
      rc = wdpool_pool_with(w->pool, WDPOOL_TIMEOUT_DEFAULT, empty, NULL, NULL);
    }
    if (rc != WDPOOL_OK) {
      fail_once(w->checkout ? "checkout/checkin" : "wdpool_pool_with", rc, NULL);
      return;
    }
  }
}

static void *with_run(void *arg) {
  with_worker *w = arg;
  with_ops(w, w->ops / 10 + 1000); /* warm-up */
  pthread_barrier_wait(w->start);
  with_ops(w, w->ops);
  return NULL;
}

static int cmd_with(int argc, char **argv) {
  settings s;
  settings_parse(&s, argc, argv);
  s.deliver = false;
  long threads = arg_long(argc, argv, "--threads", 1);
  long ops = arg_long(argc, argv, "--ops", 1000000);
  const char *mode = arg_str(argc, argv, "--mode", "with");
  /* checkout: as a C thread does (WDPOOL_OWNER_THREAD); owner: with an
   * owner token of its own per thread, as the Go binding (a fresh owner
   * per With) and the Ruby binding (one per fiber) do. */
  bool owner = strcmp(mode, "owner") == 0;
  bool checkout = owner || strcmp(mode, "checkout") == 0;
  if (!checkout && strcmp(mode, "with") != 0) die("with: --mode with|checkout|owner");
  if (threads < 1 || threads > MAX_THREADS || ops < 1) die("with: bad --threads or --ops");
  wdpool_pool *pool = pool_make(&s, (size_t)threads);
  pthread_barrier_t start;
  pthread_barrier_init(&start, NULL, (unsigned)threads + 1);
  with_worker workers[MAX_THREADS];
  for (long i = 0; i < threads; i++) {
    workers[i] = (with_worker){.pool = pool,
                               .ops = ops,
                               .checkout = checkout,
                               .owner = owner ? (wdpool_owner)(i + 1) : WDPOOL_OWNER_THREAD,
                               .start = &start};
    pthread_create(&workers[i].thread, NULL, with_run, &workers[i]);
  }
  pthread_barrier_wait(&start);
  uint64_t t0 = now_ns();
  for (long i = 0; i < threads; i++) pthread_join(workers[i].thread, NULL);
  uint64_t t1 = now_ns();
  pthread_barrier_destroy(&start);
  pool_close(pool, NULL);
  if (failures) die("with: %ld failed calls", (long)failures);
  /* Time per operation as one thread sees it: wall time x threads / ops. */
  printf("RESULT bench=with impl=wdpool mode=%s threads=%ld pool=%ld ops=%ld ns_per_op=%.2f elapsed_s=%.6f\n", mode,
         threads, threads, ops * threads, (double)(t1 - t0) / (double)ops, (double)(t1 - t0) / 1e9);
  return 0;
}

/* ------------------------------------------------------------------ close */

static int cmd_close(int argc, char **argv) {
  settings s;
  settings_parse(&s, argc, argv);
  const char *topic = arg_str(argc, argv, "--topic", "bench");
  long size = arg_long(argc, argv, "--pool", 2);
  long inflight = arg_long(argc, argv, "--inflight", 0);
  long repeat = arg_long(argc, argv, "--repeat", 3);
  if (size < 1 || size > MAX_POOL || repeat < 1 || repeat > 100) die("close: bad --pool or --repeat");
  message_setup(topic);
  uint64_t ms[100];
  long warmup = 0;
  uint64_t undelivered = 0;
  for (long r = 0; r < repeat; r++) {
    wdpool_pool *pool = pool_make(&s, (size_t)size);
    warmup += warm_up(pool, (size_t)size);
    if (inflight > 0) {
      wdpool_producer *producers[MAX_POOL];
      checkout_all(pool, (size_t)size, producers);
      for (long i = 0; i < inflight; i++) {
        wdpool_error *err = NULL;
        check("produce_async", wdpool_producer_produce_async(producers[i % size], &message, NULL, &err), err);
      }
      checkin_all((size_t)size, producers);
    }
    wdpool_close_report report = {0};
    wdpool_error *err = NULL;
    uint64_t t0 = now_ns();
    wdpool_result rc = wdpool_pool_close(pool, false, &report, &err);
    uint64_t t1 = now_ns();
    check("wdpool_pool_close", rc, err);
    wdpool_pool_free(pool);
    undelivered += report.undelivered;
    if (report.closed != (size_t)size) die("close: closed %zu producers of %ld", report.closed, size);
    ms[r] = t1 - t0;
  }
  uint64_t sorted[100];
  memcpy(sorted, ms, (size_t)repeat * sizeof ms[0]);
  qsort(sorted, (size_t)repeat, sizeof sorted[0], cmp_u64);
  printf("RESULT bench=close impl=wdpool pool=%ld inflight=%ld repeat=%ld sent=%ld warmup=%ld delivered=-1 "
         "undelivered=%" PRIu64 " close_ms=%.3f close_ms_all=",
         size, inflight, repeat, inflight * repeat, warmup, undelivered, (double)sorted[repeat / 2] / 1e6);
  for (long r = 0; r < repeat; r++) printf("%s%.3f", r ? "," : "", (double)ms[r] / 1e6);
  printf("\n");
  return undelivered == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) die("usage: wdpool_bench throughput|txn|latency|with|close [--options]");
  if (wdpool_abi_version() != WDPOOL_ABI_VERSION) die("libwdpool ABI %u, built for %d", wdpool_abi_version(), WDPOOL_ABI_VERSION);
  const char *cmd = argv[1];
  if (strcmp(cmd, "throughput") == 0) return cmd_throughput(argc, argv);
  if (strcmp(cmd, "txn") == 0) return cmd_txn(argc, argv);
  if (strcmp(cmd, "latency") == 0) return cmd_latency(argc, argv);
  if (strcmp(cmd, "with") == 0) return cmd_with(argc, argv);
  if (strcmp(cmd, "close") == 0) return cmd_close(argc, argv);
  die("unknown command %s", cmd);
}
