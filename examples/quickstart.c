/*
 * wdpool quick start: `make demo`.
 *
 * A global pool of producers shared by several threads, a second pool of
 * transactional producers with one committed and one aborted transaction,
 * stats and events. With WDPOOL_BROKERS=host:port it talks to that cluster;
 * without it, to an in-process librdkafka mock cluster.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wdpool.h"

#define THREADS 4
#define MESSAGES_PER_THREAD 25

static const char *brokers;

/* Print an error and stop: the demo has no recovery to show. */
static void die(const char *what, wdpool_result rc, wdpool_error *err) {
  fprintf(stderr, "%s failed: %s: %s\n", what, wdpool_result_name((int)rc), wdpool_error_message(err));
  wdpool_error_free(err);
  exit(1);
}

/* Events: lifecycle ones arrive on the thread that caused them. */
static void on_event(void *user_data, const wdpool_event *event) {
  (void)user_data;
  if (event->kind == WDPOOL_EVENT_STATISTICS) return;
  printf("  event %-36s pool=%llu size=%zu timeout=%llums", event->name,
         (unsigned long long)event->pool_id, event->size, (unsigned long long)event->timeout_ms);
  if (event->slot >= 0) printf(" slot=%lld", (long long)event->slot);
  if (event->message_len > 0) printf(" (%s)", event->message);
  printf("\n");
}

/* Configures every slot of the global pool: just the brokers. */
static int configure_plain(void *user_data, wdpool_config *config, size_t index) {
  (void)user_data;
  (void)index;
  return wdpool_config_set_kafka(config, "bootstrap.servers", brokers, NULL) == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

/* Each slot of the transactional pool gets its own transactional.id. */
static int configure_transactional(void *user_data, wdpool_config *config, size_t index) {
  (void)user_data;
  char id[64];
  snprintf(id, sizeof id, "wdpool-demo-%zu", index);
  if (wdpool_config_set_kafka(config, "bootstrap.servers", brokers, NULL) != WDPOOL_OK) return 0;
  if (wdpool_config_set_kafka(config, "transactional.id", id, NULL) != WDPOOL_OK) return 0;
  return WDPOOL_CB_OK;
}

struct job {
  int thread;
  int sent;
};

/* WaterDrop::ConnectionPool.with { |producer| producer.produce_sync(...) } */
static int publish(void *user_data, wdpool_producer *producer) {
  struct job *job = user_data;
  char payload[64], key[16];
  snprintf(payload, sizeof payload, "{\"thread\":%d,\"n\":%d}", job->thread, job->sent);
  snprintf(key, sizeof key, "user-%d", job->thread);
  wdpool_header header = {"source", {(const uint8_t *)"quickstart", 10}};

  wdpool_message message;
  wdpool_message_init(&message);
  message.topic = "events";
  message.payload = (wdpool_bytes){(const uint8_t *)payload, strlen(payload)};
  message.key = (wdpool_bytes){(const uint8_t *)key, strlen(key)};
  message.headers = &header;
  message.headers_len = 1;

  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_producer_produce_sync(producer, &message, WDPOOL_TIMEOUT_DEFAULT, NULL, &err);
  if (rc != WDPOOL_OK) {
    fprintf(stderr, "thread %d: produce failed: %s\n", job->thread, wdpool_error_message(err));
    wdpool_error_free(err);
    return 0;
  }
  job->sent++;
  return WDPOOL_CB_OK;
}

static void *worker(void *arg) {
  struct job *job = arg;
  for (int i = 0; i < MESSAGES_PER_THREAD; i++) {
    wdpool_error *err = NULL;
    wdpool_result rc = wdpool_with(WDPOOL_TIMEOUT_DEFAULT, publish, job, &err);
    if (rc != WDPOOL_OK) {
      fprintf(stderr, "thread %d: %s: %s\n", job->thread, wdpool_result_name((int)rc), wdpool_error_message(err));
      wdpool_error_free(err);
    }
  }
  return NULL;
}

/* Two messages that commit together, or not at all. */
static int order_placed(void *user_data, wdpool_producer *producer) {
  const char *order = user_data;
  wdpool_message messages[2];
  wdpool_message_init(&messages[0]);
  wdpool_message_init(&messages[1]);
  messages[0].topic = "orders";
  messages[0].payload = (wdpool_bytes){(const uint8_t *)order, strlen(order)};
  messages[1].topic = "inventory";
  messages[1].payload = (wdpool_bytes){(const uint8_t *)"-1 widget", 9};
  wdpool_error *err = NULL;
  if (wdpool_producer_produce_many_sync(producer, messages, 2, WDPOOL_TIMEOUT_DEFAULT, NULL, &err) != WDPOOL_OK) {
    fprintf(stderr, "produce failed: %s\n", wdpool_error_message(err));
    wdpool_error_free(err);
    return 0;
  }
  return WDPOOL_CB_OK;
}

/* Fails after producing: the transaction is rolled back. */
static int order_rejected(void *user_data, wdpool_producer *producer) {
  order_placed(user_data, producer);
  return 0;
}

static void print_stats(const char *label, const wdpool_statistics *s) {
  printf("%s: size=%zu created=%zu idle=%zu in_use=%zu waiting=%zu timeouts=%llu wait=%lluus\n", label, s->size,
         s->created, s->idle, s->in_use, s->waiting, (unsigned long long)s->checkout_timeouts,
         (unsigned long long)s->total_wait_us);
}

int main(void) {
  wdpool_error *err = NULL;
  wdpool_result rc;
  wdpool_mock_cluster *mock = NULL;

  brokers = getenv("WDPOOL_BROKERS");
  if (brokers == NULL || brokers[0] == '\0') {
    if ((rc = wdpool_mock_cluster_new(3, &mock, &err)) != WDPOOL_OK) die("starting the mock cluster", rc, err);
    brokers = wdpool_mock_cluster_bootstrap_servers(mock);
    printf("wdpool %s against an in-process mock cluster (%s)\n", wdpool_version(), brokers);
  } else {
    printf("wdpool %s against %s\n", wdpool_version(), brokers);
  }

  uint64_t subscription;
  if ((rc = wdpool_subscribe(on_event, NULL, NULL, &subscription, &err)) != WDPOOL_OK) die("subscribe", rc, err);

  /* WaterDrop::ConnectionPool.setup(size: 3, timeout: 5_000) { |config, index| ... } */
  wdpool_options options = {.size = 3, .timeout_ms = 5000};
  if ((rc = wdpool_setup(&options, configure_plain, NULL, &err)) != WDPOOL_OK) die("setup", rc, err);

  pthread_t threads[THREADS];
  struct job jobs[THREADS];
  for (int t = 0; t < THREADS; t++) {
    jobs[t] = (struct job){.thread = t, .sent = 0};
    pthread_create(&threads[t], NULL, worker, &jobs[t]);
  }
  int sent = 0;
  for (int t = 0; t < THREADS; t++) {
    pthread_join(threads[t], NULL);
    sent += jobs[t].sent;
  }
  printf("%d threads sent %d messages through a pool of %zu producers\n", THREADS, sent, options.size);

  wdpool_statistics stats;
  if ((rc = wdpool_stats(&stats, &err)) != WDPOOL_OK) die("stats", rc, err);
  print_stats("global pool", &stats);

  /* A separate pool instance, transactional: WaterDrop::ConnectionPool.new(...) */
  wdpool_pool *orders = NULL;
  wdpool_options tx_options = {.size = 2, .timeout_ms = 10000};
  if ((rc = wdpool_pool_new(&tx_options, configure_transactional, NULL, &orders, &err)) != WDPOOL_OK)
    die("creating the transactional pool", rc, err);

  rc = wdpool_pool_transaction(orders, WDPOOL_TIMEOUT_DEFAULT, order_placed, (void *)"order 1001", &err);
  if (rc != WDPOOL_OK) die("committed transaction", rc, err);
  printf("transaction committed: order 1001 and its inventory update\n");

  rc = wdpool_pool_transaction(orders, WDPOOL_TIMEOUT_DEFAULT, order_rejected, (void *)"order 1002", &err);
  printf("transaction aborted as it should: %s (%s)\n", wdpool_result_name((int)rc), wdpool_error_message(err));
  wdpool_error_free(err);
  err = NULL;
  if (rc != WDPOOL_CALLBACK_FAILED) return 1;

  if ((rc = wdpool_pool_stats(orders, &stats, &err)) != WDPOOL_OK) die("stats", rc, err);
  print_stats("transactional pool", &stats);

  wdpool_close_report report;
  wdpool_pool_close(orders, false, &report, NULL);
  wdpool_pool_free(orders);
  if ((rc = wdpool_close(false, &report, &err)) != WDPOOL_OK) die("close", rc, err);
  printf("global pool closed: %zu producers, %llu messages undelivered\n", report.closed,
         (unsigned long long)report.undelivered);

  wdpool_unsubscribe(subscription, NULL);
  wdpool_mock_cluster_free(mock);
  return sent == THREADS * MESSAGES_PER_THREAD && report.undelivered == 0 ? 0 : 1;
}
