/*
 * test_timeouts: every call that can wait honours its bound, and the calls
 * that never block do not wait for the ones that do.
 *
 *   (a) a checkout whose producer cannot be created in time (unreachable
 *       broker, init_transactions waiting) times out on time; the creation
 *       goes on in the background, and the statistics say so at once;
 *   (b) sync produce, produce-many, flush and delivery waits against brokers
 *       that are down return DELIVERY_TIMEOUT on time;
 *   (c) statistics and producer info return while a slow commit is under
 *       way on another thread;
 *   (d) a commit with a short timeout against a slow broker fails on time,
 *       and the pool still hands out a working producer afterwards;
 *   (e) the pool size is bounded: 0, WDPOOL_MAX_SIZE + 1, (size_t)1 << 40
 *       and SIZE_MAX are refused before anything is configured;
 *       WDPOOL_MAX_SIZE is accepted.
 *
 * Bounds are generous ("asked to wait 200 ms, returned within 5 s"), never
 * speed targets. Each part runs on a bounded thread (abi_v1.h): a call that
 * ignores its bound fails the program instead of hanging it.
 *
 * Under ASan, UBSan and LeakSanitizer, against librdkafka's in-process mock
 * clusters: the harness's one, and one of this program's own whose brokers
 * are taken down or slowed down.
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

/* A generous bound on a call asked to wait a few hundred milliseconds. */
#define GENEROUS_MS 10000
/* How long one part may run before the program gives up on it. */
#define PART_DEADLINE_MS 180000
/* The slow cluster's brokers. */
#define SLOW_BROKERS 3
/* Each response of a slow broker is this late. */
#define SLOW_RTT_MS 1500
#define COMMIT_KEY ((wdpool_owner)0xc0ffee)
/* The unreachable producer's max_wait_timeout. */
#define UNREACHABLE_MAX_WAIT_MS (GENEROUS_MS + 5000)

static wdpool_mock_cluster *slow;  /* this program's own cluster */
static const char *slow_servers;

static void set_brokers_up(bool up) {
  for (int32_t b = 1; b <= SLOW_BROKERS; b++)
    CHECK_RC(wdpool_mock_cluster_set_broker_up(slow, b, up, CHECK_ERR), WDPOOL_OK);
}

static void set_rtt(uint32_t rtt_ms) {
  for (int32_t b = 1; b <= SLOW_BROKERS; b++) CHECK_RC(wdpool_mock_cluster_set_rtt(slow, b, rtt_ms, CHECK_ERR), WDPOOL_OK);
}

/* Runs `part` on a bounded thread. */
static void run_part(void (*part)(void *), void *arg) {
  bounded_thread t;
  if (bounded_start(&t, part, arg)) BOUNDED_JOIN(&t, PART_DEADLINE_MS);
}

/* ------------------------------------------------------------------------
 * (a) A checkout's timeout covers creating the producer. */

static int configure_unreachable(void *user_data, wdpool_config *config, size_t index) {
  (void)user_data;
  char id[64];
  snprintf(id, sizeof id, "c-timeouts-unreachable-%zu", index);
  wdpool_result rc = wdpool_config_set_kafka(config, "bootstrap.servers", "127.0.0.1:1", NULL);
  if (rc == WDPOOL_OK) rc = wdpool_config_set_kafka(config, "transactional.id", id, NULL);
  if (rc == WDPOOL_OK) rc = wdpool_config_set_kafka(config, "log_level", "0", NULL);
  /* Beyond the bound asserted below (GENEROUS_MS): a checkout that waited
   * for the creation (bounded by max_wait_timeout) would miss it. Short
   * enough for the creation to give up before the program ends
   * (finish_unreachable). */
  if (rc == WDPOOL_OK) rc = wdpool_config_set_max_wait_timeout(config, UNREACHABLE_MAX_WAIT_MS, NULL);
  return rc == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

typedef struct creation_checkout {
  const wdpool_pool *pool;
  int64_t timeout_ms;
  wdpool_result rc;
  char message[512];
  int64_t took_ms;
  wdpool_producer *p;
} creation_checkout;

static void checkout_while_creating(void *arg) {
  creation_checkout *c = arg;
  wdpool_error *err = NULL;
  int64_t start = now_ms();
  c->rc = wdpool_pool_checkout(c->pool, WDPOOL_OWNER_THREAD, c->timeout_ms, &c->p, &err);
  c->took_ms = now_ms() - start;
  snprintf(c->message, sizeof c->message, "%s", wdpool_error_message(err));
  wdpool_error_free(err);
  if (c->rc == WDPOOL_OK) wdpool_producer_checkin(c->p, NULL);
}

/* Starts the creation that cannot finish; finish_unreachable waits for it
 * to give up at the end of the program, so that no librdkafka thread is
 * left running when the program exits. */
static wdpool_pool *test_checkout_covers_creation(void) {
  wdpool_options options = {.size = 1, .timeout_ms = 300};
  wdpool_pool *pool = NULL;
  CHECK_RC(wdpool_pool_new(&options, configure_unreachable, NULL, &pool, CHECK_ERR), WDPOOL_OK);
  if (pool == NULL) return NULL;
  uint64_t id = wdpool_pool_id(pool);

  /* The pool's own timeout (300 ms), then an explicit one. */
  creation_checkout first = {.pool = pool, .timeout_ms = WDPOOL_TIMEOUT_DEFAULT};
  bounded_thread t;
  if (bounded_start(&t, checkout_while_creating, &first)) BOUNDED_JOIN(&t, PART_DEADLINE_MS);
  CHECK_EQ(first.rc, WDPOOL_TIMEOUT);
  CHECK(WAITED_AT_LEAST(first.took_ms, 300));
  CHECK(first.took_ms < GENEROUS_MS);
  CHECK_CONTAINS(first.message, "background");
  CHECK(first.p == NULL);

  /* The creation goes on in the background: stats show it at once. */
  wdpool_statistics s = stats_of(pool);
  WAIT_UNTIL((s = pool_stats_now(pool)).creating >= 1, GENEROUS_MS);
  CHECK(s.creating >= 1);
  CHECK_EQ(s.created, 0);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.checkout_timeouts, 1);
  CHECK_EQ(s.creations, 0);

  /* A second checkout waits for that creation, within its own bound; stats
   * answer meanwhile without waiting for it. */
  creation_checkout second = {.pool = pool, .timeout_ms = 3000};
  if (bounded_start(&t, checkout_while_creating, &second)) {
    WAIT_UNTIL(pool_stats_now(pool).waiting >= 1 || bounded_done(&t), GENEROUS_MS);
    s = stats_of(pool);
    CHECK(!bounded_done(&t)); /* stats returned while the checkout still waits */
    CHECK(s.creating >= 1);
    CHECK_EQ(s.waiting, 1);
    BOUNDED_JOIN(&t, PART_DEADLINE_MS);
  }
  CHECK_EQ(second.rc, WDPOOL_TIMEOUT);
  CHECK(WAITED_AT_LEAST(second.took_ms, 3000));
  CHECK(second.took_ms < 3000 + GENEROUS_MS);
  CHECK_CONTAINS(second.message, "background");
  CHECK_EQ(stats_of(pool).checkout_timeouts, 2);
  CHECK_EQ(event_log_count(&events, id, WDPOOL_EVENT_CHECKOUT_TIMEOUT), 2);
  return pool;
}

/* The background creation gives up within its max_wait_timeout; then the
 * pool closes at once. */
static void finish_unreachable(wdpool_pool *pool) {
  if (pool == NULL) return;
  WAIT_UNTIL(pool_stats_now(pool).creating == 0, UNREACHABLE_MAX_WAIT_MS + 60000);
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.creating, 0);
  CHECK_EQ(s.created, 0);
  CHECK_EQ(s.in_use, 0);
  int64_t start = now_ms();
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  CHECK(now_ms() - start < GENEROUS_MS);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * (b) Delivery waits against brokers that are down. */

static void part_brokers_down(void *arg) {
  (void)arg;
  pool_setup setup = {.bootstrap = slow_servers, .extra_key = "log_level", .extra_value = "0"};
  wdpool_pool *pool = make_pool(1, 5000, &setup);
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  if (p == NULL) {
    wdpool_pool_free(pool);
    return;
  }
  produce_one(p, NULL); /* connected, metadata known */
  set_brokers_up(false);

  wdpool_message m = text_message(TOPIC, "to a broker that is down");
  wdpool_report report;
  memset(&report, 0x5a, sizeof report);
  int64_t start = now_ms();
  CHECK_RC(wdpool_producer_produce_sync(p, &m, 200, &report, CHECK_ERR), WDPOOL_DELIVERY_TIMEOUT);
  int64_t took = now_ms() - start;
  CHECK(WAITED_AT_LEAST(took, 200));
  CHECK(took < GENEROUS_MS);
  /* The report was written: the message was handed to librdkafka. */
  CHECK(report.topic == m.topic);
  CHECK_EQ(report.offset, -1);

  wdpool_message many[2] = {text_message(TOPIC, "many 1"), text_message(TOPIC, "many 2")};
  wdpool_report reports[2];
  memset(reports, 0x5a, sizeof reports);
  start = now_ms();
  CHECK_RC(wdpool_producer_produce_many_sync(p, many, 2, 200, reports, CHECK_ERR), WDPOOL_DELIVERY_TIMEOUT);
  took = now_ms() - start;
  CHECK(WAITED_AT_LEAST(took, 200) && took < GENEROUS_MS);
  CHECK(reports[0].topic == many[0].topic && reports[1].topic == many[1].topic);
  CHECK(reports[0].offset == -1 && reports[1].offset == -1);

  start = now_ms();
  CHECK_RC(wdpool_producer_flush(p, 200, CHECK_ERR), WDPOOL_DELIVERY_TIMEOUT);
  took = now_ms() - start;
  CHECK(WAITED_AT_LEAST(took, 200) && took < GENEROUS_MS);
  start = now_ms();
  CHECK_RC(wdpool_producer_flush(p, 0, CHECK_ERR), WDPOOL_DELIVERY_TIMEOUT); /* 0: only checks */
  CHECK(now_ms() - start < GENEROUS_MS);

  wdpool_delivery *d = NULL;
  CHECK_RC(wdpool_producer_produce_async(p, &m, &d, CHECK_ERR), WDPOOL_OK);
  start = now_ms();
  CHECK_RC(wdpool_delivery_wait(d, 200, CHECK_ERR), WDPOOL_DELIVERY_TIMEOUT);
  took = now_ms() - start;
  CHECK(WAITED_AT_LEAST(took, 200) && took < GENEROUS_MS);
  CHECK_EQ(wdpool_delivery_pending(d), 1);
  wdpool_delivery_free(d);

  CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  /* A forced close purges the four messages still queued. */
  wdpool_close_report report_out;
  memset(&report_out, 0, sizeof report_out);
  start = now_ms();
  CHECK_RC(wdpool_pool_close(pool, true, &report_out, CHECK_ERR), WDPOOL_OK);
  CHECK(now_ms() - start < GENEROUS_MS);
  CHECK_EQ(report_out.closed, 1);
  CHECK_EQ(report_out.undelivered, 4);
  wdpool_pool_free(pool);
  set_brokers_up(true);
}

/* ------------------------------------------------------------------------
 * (c) Stats and info during a slow commit; (d) a commit that cannot finish
 * in time. */

typedef struct committer {
  wdpool_producer *p;
  int64_t timeout_ms;
  atomic_bool calling;  /* set right before the commit */
  atomic_bool returned; /* set right after it returned */
  wdpool_result rc;
  char message[512];
  int64_t took_ms;
} committer;

static void commit_on_thread(void *arg) {
  committer *c = arg;
  wdpool_error *err = NULL;
  atomic_store(&c->calling, true);
  int64_t start = now_ms();
  c->rc = wdpool_producer_commit(c->p, c->timeout_ms, &err);
  c->took_ms = now_ms() - start;
  atomic_store(&c->returned, true);
  snprintf(c->message, sizeof c->message, "%s", wdpool_error_message(err));
  wdpool_error_free(err);
}

static void part_slow_commit(void *arg) {
  (void)arg;
  pool_setup setup = {.bootstrap = slow_servers, .tx_prefix = "c-timeouts-tx-"};
  wdpool_pool *pool = make_pool(1, 5000, &setup);
  uint64_t id = wdpool_pool_id(pool);
  /* A key-owned lease: the commit on another thread acts for the key. */
  wdpool_producer *p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, COMMIT_KEY, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  if (p == NULL) {
    wdpool_pool_free(pool);
    return;
  }
  txn_tally before = txn_tally_of(&events, id);
  CHECK_RC(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  produce_one(p, NULL);
  set_rtt(SLOW_RTT_MS);

  committer c = {.p = p, .timeout_ms = WDPOOL_TIMEOUT_DEFAULT, .rc = WDPOOL_PANIC};
  atomic_init(&c.calling, false);
  atomic_init(&c.returned, false);
  bounded_thread t;
  if (bounded_start(&t, commit_on_thread, &c)) {
    WAIT_UNTIL(atomic_load(&c.calling), GENEROUS_MS);
    CHECK(atomic_load(&c.calling));
    int64_t commit_began = now_ms();
    wdpool_statistics s;
    wdpool_producer_info info;
    CHECK_RC(wdpool_pool_stats(pool, &s, CHECK_ERR), WDPOOL_OK);
    CHECK_RC(wdpool_producer_get_info(p, &info, CHECK_ERR), WDPOOL_OK);
    CHECK(!atomic_load(&c.returned)); /* both returned while the commit had not */
    CHECK_EQ(s.in_use, 1);
    CHECK(info.in_transaction);
    CHECK(info.transactional);
    /* And again and again while it lasts: calls made well into the commit
     * (500 ms after it began, a third of one slow response) return before
     * it does. */
    int late_pairs = 0;
    while (!atomic_load(&c.returned) && now_ms() - commit_began < PART_DEADLINE_MS) {
      int64_t call_start = now_ms();
      wdpool_result rs = wdpool_pool_stats(pool, &s, NULL);
      wdpool_result ri = wdpool_producer_get_info(p, &info, NULL);
      bool commit_still_running = !atomic_load(&c.returned);
      if (rs == WDPOOL_OK && ri == WDPOOL_OK && commit_still_running && call_start - commit_began >= 500) late_pairs++;
      poll_pause();
    }
    CHECK(late_pairs >= 1);
    BOUNDED_JOIN(&t, PART_DEADLINE_MS);
  }
  CHECK_EQ(c.rc, WDPOOL_OK);
  CHECK(WAITED_AT_LEAST(c.took_ms, SLOW_RTT_MS)); /* it really was slow */
  CHECK_TXN_DELTA(&events, before, id, 1, 1, 0);

  /* (d) The same against the slow broker, with a 100 ms commit: an error,
   * on time. */
  before = txn_tally_of(&events, id);
  CHECK_RC(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
  produce_one(p, NULL);
  committer quick = {.p = p, .timeout_ms = 100, .rc = WDPOOL_PANIC};
  atomic_init(&quick.calling, false);
  atomic_init(&quick.returned, false);
  commit_on_thread(&quick);
  CHECK(quick.rc != WDPOOL_OK);
  CHECK(WAITED_AT_LEAST(quick.took_ms, 100));
  CHECK(quick.took_ms < GENEROUS_MS);
  /* "A commit that cannot finish in time makes the producer unusable: it
   * is replaced (WDPOOL_FATAL)." */
  CHECK_EQ(quick.rc, WDPOOL_FATAL);
  CHECK_EQ(txn_tally_of(&events, id).committed, before.committed);

  /* Its lease goes back (whatever it reports), and the next checkout gets a
   * working producer, possibly a new one. */
  wdpool_error *err = NULL;
  int64_t start = now_ms();
  wdpool_result checkin_rc = wdpool_producer_checkin(p, &err);
  CHECK(now_ms() - start < MAX_WAIT_MS + GENEROUS_MS); /* bounded by max_wait_timeout */
  CHECK(checkin_rc == WDPOOL_OK || checkin_rc == wdpool_error_code(err));
  wdpool_error_free(err);
  wdpool_producer_info stale_info;
  CHECK_RC(wdpool_producer_get_info(p, &stale_info, CHECK_ERR), WDPOOL_STALE_HANDLE); /* stale, also on failure */
  set_rtt(0);

  before = txn_tally_of(&events, id);
  p = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, CHECK_ERR), WDPOOL_OK);
  if (p != NULL) {
    CHECK_RC(wdpool_producer_begin(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
    produce_one(p, NULL);
    CHECK_RC(wdpool_producer_commit(p, WDPOOL_TIMEOUT_DEFAULT, CHECK_ERR), WDPOOL_OK);
    CHECK_RC(wdpool_producer_checkin(p, CHECK_ERR), WDPOOL_OK);
  }
  CHECK_TXN_DELTA(&events, before, id, 1, 1, 0);
  wdpool_statistics s = stats_of(pool);
  CHECK_EQ(s.in_use, 0);
  CHECK_EQ(s.created, 1);
  CHECK(s.replaced >= 1); /* the FATAL producer was replaced */
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
}

/* ------------------------------------------------------------------------
 * (e) The pool size is bounded. */

static int configure_counting(void *user_data, wdpool_config *config, size_t index) {
  size_t *calls = user_data;
  (void)index;
  (*calls)++;
  return wdpool_config_set_deliver(config, false, NULL) == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static void test_size_bounds(void) {
  char max_text[32];
  snprintf(max_text, sizeof max_text, "%d", WDPOOL_MAX_SIZE);
  const size_t refused[] = {0, (size_t)WDPOOL_MAX_SIZE + 1, (size_t)1 << 40, SIZE_MAX};
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    wdpool_options options = {.size = refused[i], .timeout_ms = 100};
    wdpool_pool *pool = NULL;
    size_t calls = 0;
    CHECK_RC_MSG(wdpool_pool_new(&options, configure_counting, &calls, &pool, CHECK_ERR), WDPOOL_INVALID_ARGUMENT,
                 max_text);
    CHECK_EQ(calls, 0); /* refused before anything was configured */
    CHECK(pool == NULL);
    CHECK_RC_BOTH(wdpool_pool_new(&options, NULL, NULL, &pool, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
    CHECK(pool == NULL);
  }

  wdpool_options options = {.size = WDPOOL_MAX_SIZE, .timeout_ms = 100};
  wdpool_pool *pool = NULL;
  size_t calls = 0;
  CHECK_RC(wdpool_pool_new(&options, configure_counting, &calls, &pool, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(calls, WDPOOL_MAX_SIZE);
  if (pool != NULL) {
    wdpool_statistics s = stats_of(pool);
    CHECK_EQ(s.size, WDPOOL_MAX_SIZE);
    CHECK_EQ(s.created, 0);
    CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
    wdpool_pool_free(pool);
  }
}

/* ------------------------------------------------------------------------ */

int main(void) {
  abi_program = "test_timeouts";
  if (!api_setup()) return check_summary(abi_program);
  CHECK_RC(wdpool_mock_cluster_new(SLOW_BROKERS, &slow, CHECK_ERR), WDPOOL_OK);
  if (slow == NULL) return api_teardown(abi_program);
  slow_servers = wdpool_mock_cluster_bootstrap_servers(slow);
  CHECK_RC(wdpool_mock_cluster_create_topic(slow, TOPIC, 4, CHECK_ERR), WDPOOL_OK);

  test_size_bounds();
  wdpool_pool *unreachable = test_checkout_covers_creation();
  run_part(part_brokers_down, NULL);
  run_part(part_slow_commit, NULL);
  finish_unreachable(unreachable);

  wdpool_mock_cluster_free(slow);
  return api_teardown(abi_program);
}
