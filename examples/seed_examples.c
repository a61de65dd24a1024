/*
 * Every example of WaterDrop's ConnectionPool documentation, in C.
 *
 * Each function below is one Ruby example of the documentation, translated
 * line by line (the Ruby is quoted above it). `make test` runs this program
 * against an in-process mock cluster and against a real Kafka broker
 * (WDPOOL_BROKERS=host:port); it exits non-zero if any example misbehaves.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wdpool.h"

static const char *brokers;
static int failures;

#define EXPECT(cond, ...)                                                   \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "%s:%d: %s failed: ", __FILE__, __LINE__, #cond);   \
      fprintf(stderr, __VA_ARGS__);                                         \
      fprintf(stderr, "\n");                                                \
      failures++;                                                           \
      return 1;                                                             \
    }                                                                       \
  } while (0)

static const char *message_of(wdpool_error *err) { return err ? wdpool_error_message(err) : ""; }

static wdpool_bytes text(const char *s) { return (wdpool_bytes){(const uint8_t *)s, strlen(s)}; }

static wdpool_result produce_sync(wdpool_producer *p, const char *topic, const char *payload) {
  wdpool_message m;
  wdpool_message_init(&m);
  m.topic = topic;
  m.payload = text(payload);
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_producer_produce_sync(p, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, &err);
  if (rc != WDPOOL_OK) fprintf(stderr, "produce_sync(%s): %s\n", topic, message_of(err));
  wdpool_error_free(err);
  return rc;
}

/* config.kafka = { 'bootstrap.servers': ..., 'transactional.id': "<prefix>-#{index}" } */
static int configure(void *user_data, wdpool_config *config, size_t index) {
  const char *tx_prefix = user_data;
  if (wdpool_config_set_kafka(config, "bootstrap.servers", brokers, NULL) != WDPOOL_OK) return 0;
  if (tx_prefix != NULL) {
    char id[96];
    snprintf(id, sizeof id, "%s-%zu-%ld", tx_prefix, index, (long)time(NULL));
    if (wdpool_config_set_kafka(config, "transactional.id", id, NULL) != WDPOOL_OK) return 0;
  }
  if (wdpool_config_set_deliver(config, true, NULL) != WDPOOL_OK) return 0;
  return WDPOOL_CB_OK;
}

static int configure_acks_all(void *user_data, wdpool_config *config, size_t index) {
  (void)index;
  (void)user_data;
  if (wdpool_config_set_kafka(config, "bootstrap.servers", brokers, NULL) != WDPOOL_OK) return 0;
  return wdpool_config_set_kafka(config, "acks", "all", NULL) == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

/* ------------------------------------------------------------------------
 * Getting started:
 *   WaterDrop::ConnectionPool.setup(size: 10, timeout: 5_000)
 *   WaterDrop::ConnectionPool.with do |producer|
 *     producer.produce_sync(topic: 'events', payload: 'my message')
 *   end
 *   WaterDrop::ConnectionPool.close
 */
static int produce_my_message(void *user_data, wdpool_producer *producer) {
  (void)user_data;
  return produce_sync(producer, "events", "my message") == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static int example_getting_started(void) {
  wdpool_options options = {.size = 10, .timeout_ms = 5000};
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_setup(&options, configure, NULL, &err);
  EXPECT(rc == WDPOOL_OK, "setup: %s", message_of(err));
  EXPECT(wdpool_active(), "active? after setup");
  rc = wdpool_with(WDPOOL_TIMEOUT_DEFAULT, produce_my_message, NULL, &err);
  EXPECT(rc == WDPOOL_OK, "with: %s", message_of(err));
  wdpool_statistics stats;
  EXPECT(wdpool_stats(&stats, NULL) == WDPOOL_OK && stats.in_use == 0 && stats.idle == 1,
         "the producer is back in the pool");
  rc = wdpool_close(false, NULL, &err);
  EXPECT(rc == WDPOOL_OK, "close: %s", message_of(err));
  EXPECT(!wdpool_active(), "not active after close");
  return 0;
}

/* ------------------------------------------------------------------------
 * Working with transactions:
 *   WaterDrop::ConnectionPool.setup(size: 5) do |config, index|
 *     config.kafka = { ..., 'transactional.id': "my-app-#{index}" }
 *     config.deliver = true
 *   end
 *   WaterDrop::ConnectionPool.transaction do |producer|
 *     producer.produce_sync(topic: 'orders', payload: order.to_json)
 *     producer.produce_sync(topic: 'inventory', payload: inventory_update.to_json)
 *   end
 */
static int order_and_inventory(void *user_data, wdpool_producer *producer) {
  (void)user_data;
  if (produce_sync(producer, "orders", "{\"order\":1}") != WDPOOL_OK) return 0;
  if (produce_sync(producer, "inventory", "{\"sku\":\"w\",\"delta\":-1}") != WDPOOL_OK) return 0;
  return WDPOOL_CB_OK;
}

static int example_transaction(void) {
  wdpool_options options = wdpool_options_default();
  EXPECT(options.size == 5 && options.timeout_ms == 5000, "defaults are 5 and 5000 ms");
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_setup(&options, configure, (void *)"my-app", &err);
  EXPECT(rc == WDPOOL_OK, "setup: %s", message_of(err));
  rc = wdpool_transaction(WDPOOL_TIMEOUT_DEFAULT, order_and_inventory, NULL, &err);
  EXPECT(rc == WDPOOL_OK, "transaction: %s", message_of(err));
  return 0;
}

/* ------------------------------------------------------------------------
 * The manual equivalent:
 *   WaterDrop::ConnectionPool.with do |producer|
 *     producer.transaction do ... end
 *   end
 */
static int manual_transaction(void *user_data, wdpool_producer *producer) {
  (void)user_data;
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_producer_transaction(producer, order_and_inventory, NULL, &err);
  if (rc != WDPOOL_OK) fprintf(stderr, "producer.transaction: %s\n", message_of(err));
  wdpool_error_free(err);
  return rc == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static int example_manual_transaction(void) {
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_with(WDPOOL_TIMEOUT_DEFAULT, manual_transaction, NULL, &err);
  EXPECT(rc == WDPOOL_OK, "with + transaction: %s", message_of(err));
  /* "Transaction is automatically rolled back if an exception occurs" */
  rc = wdpool_transaction(WDPOOL_TIMEOUT_DEFAULT, order_and_inventory, NULL, NULL);
  EXPECT(rc == WDPOOL_OK, "a second transaction on the same pool");
  EXPECT(wdpool_close(false, NULL, NULL) == WDPOOL_OK, "close");
  return 0;
}

/* ------------------------------------------------------------------------
 * Multiple connection pool instances:
 *   analytics_pool = WaterDrop::ConnectionPool.new(size: 5, timeout: 3_000) { ... "analytics-#{index}" }
 *   notifications_pool = WaterDrop::ConnectionPool.new(size: 10, timeout: 10_000) { ... acks: 'all' }
 *   analytics_pool.with { |p| p.produce_sync(topic: 'user_events', payload: ...) }
 *   notifications_pool.with { |p| p.produce_async(topic: 'push_notifications', payload: ...) }
 *   analytics_pool.close; notifications_pool.close
 */
static int user_event(void *user_data, wdpool_producer *producer) {
  (void)user_data;
  return produce_sync(producer, "user_events", "{\"event\":\"signup\"}") == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static int push_notification(void *user_data, wdpool_producer *producer) {
  wdpool_delivery **delivery = user_data;
  wdpool_message m;
  wdpool_message_init(&m);
  m.topic = "push_notifications";
  m.payload = text("{\"to\":42,\"text\":\"hi\"}");
  return wdpool_producer_produce_async(producer, &m, delivery, NULL) == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static int example_multiple_pools(void) {
  wdpool_pool *analytics = NULL, *notifications = NULL;
  wdpool_error *err = NULL;
  wdpool_options a = {.size = 5, .timeout_ms = 3000}, n = {.size = 10, .timeout_ms = 10000};
  EXPECT(wdpool_pool_new(&a, configure, (void *)"analytics", &analytics, &err) == WDPOOL_OK, "%s", message_of(err));
  EXPECT(wdpool_pool_new(&n, configure_acks_all, NULL, &notifications, &err) == WDPOOL_OK, "%s", message_of(err));
  EXPECT(wdpool_pool_id(analytics) != wdpool_pool_id(notifications), "distinct pools");

  wdpool_result rc = wdpool_pool_with(analytics, WDPOOL_TIMEOUT_DEFAULT, user_event, NULL, &err);
  EXPECT(rc == WDPOOL_OK, "analytics_pool.with: %s", message_of(err));
  wdpool_delivery *delivery = NULL;
  rc = wdpool_pool_with(notifications, WDPOOL_TIMEOUT_DEFAULT, push_notification, &delivery, &err);
  EXPECT(rc == WDPOOL_OK, "notifications_pool.with: %s", message_of(err));
  /* The handle outlives the callback: wait on it afterwards. */
  rc = wdpool_delivery_wait(delivery, 30000, &err);
  EXPECT(rc == WDPOOL_OK, "the async message was delivered: %s", message_of(err));
  wdpool_report report;
  EXPECT(wdpool_delivery_report(delivery, 0, &report, NULL) == WDPOOL_OK && report.error_code == 0 &&
             report.offset >= 0 && strcmp(report.topic, "push_notifications") == 0,
         "report of the async message");
  wdpool_delivery_free(delivery);

  EXPECT(wdpool_pool_close(analytics, false, NULL, NULL) == WDPOOL_OK, "close analytics");
  EXPECT(wdpool_pool_close(notifications, false, NULL, NULL) == WDPOOL_OK, "close notifications");
  wdpool_pool_free(analytics);
  wdpool_pool_free(notifications);
  return 0;
}

/* ------------------------------------------------------------------------
 * High-throughput event publishing:
 *   WaterDrop::ConnectionPool.setup(size: 20, timeout: 10_000)
 *   EventPublisher.publish(event_type, data):
 *     with { |p| p.produce_async(topic: "events.#{event_type}", payload: data.to_json,
 *                                headers: { 'timestamp' => Time.now.to_i.to_s }) }
 */
struct publish_args {
  const char *event_type;
  const char *json;
};

/* The event as a message, with the topic and header it points to. */
struct event_message {
  char topic[128], now[32];
  wdpool_header header;
  wdpool_message m;
};

static void event_message_init(struct event_message *e, const struct publish_args *args) {
  snprintf(e->topic, sizeof e->topic, "events.%s", args->event_type);
  snprintf(e->now, sizeof e->now, "%ld", (long)time(NULL));
  e->header = (wdpool_header){"timestamp", text(e->now)};
  wdpool_message_init(&e->m);
  e->m.topic = e->topic;
  e->m.payload = text(args->json);
  e->m.headers = &e->header;
  e->m.headers_len = 1;
}

static int publish(void *user_data, wdpool_producer *producer) {
  struct event_message e;
  event_message_init(&e, user_data);
  return wdpool_producer_produce_async(producer, &e.m, NULL, NULL) == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static int event_publisher_publish(const char *event_type, const char *json) {
  struct publish_args args = {event_type, json};
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_with(WDPOOL_TIMEOUT_DEFAULT, publish, &args, &err);
  if (rc != WDPOOL_OK) fprintf(stderr, "publish: %s\n", message_of(err));
  wdpool_error_free(err);
  return rc == WDPOOL_OK;
}

/* The same in one call, without a callback: wdpool_produce_async checks a
 * producer out for this thread, produces and checks it in (the same
 * semantics, cheaper: no producer handle is made). */
static int event_publisher_publish_one_call(const char *event_type, const char *json) {
  struct publish_args args = {event_type, json};
  struct event_message e;
  event_message_init(&e, &args);
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_produce_async(WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &e.m, NULL, NULL, &err);
  if (rc != WDPOOL_OK) fprintf(stderr, "publish: %s\n", message_of(err));
  wdpool_error_free(err);
  return rc == WDPOOL_OK;
}

static void *publisher_thread(void *arg) {
  int *ok = arg;
  for (int i = 0; i < 50; i++) {
    const char *type = i % 2 ? "user_created" : "order_placed";
    *ok &= i % 4 < 2 ? event_publisher_publish(type, "{\"id\":123}") : event_publisher_publish_one_call(type, "{\"id\":123}");
  }
  return NULL;
}

static int example_high_throughput(void) {
  wdpool_options options = {.size = 20, .timeout_ms = 10000};
  EXPECT(wdpool_setup(&options, configure, NULL, NULL) == WDPOOL_OK, "setup");
  EXPECT(event_publisher_publish("user_created", "{\"id\":123,\"name\":\"Alice\"}"), "publish user_created");
  EXPECT(event_publisher_publish("order_placed", "{\"order_id\":456,\"amount\":99.99}"), "publish order_placed");
  pthread_t threads[4];
  int ok[4] = {1, 1, 1, 1};
  for (int i = 0; i < 4; i++) pthread_create(&threads[i], NULL, publisher_thread, &ok[i]);
  for (int i = 0; i < 4; i++) pthread_join(threads[i], NULL);
  EXPECT(ok[0] && ok[1] && ok[2] && ok[3], "every thread published");
  wdpool_close_report report;
  EXPECT(wdpool_close(false, &report, NULL) == WDPOOL_OK, "close");
  EXPECT(report.undelivered == 0, "a graceful close delivers what was queued (%" PRIu64 " left)", report.undelivered);
  return 0;
}

/* ------------------------------------------------------------------------
 * Background job integration and error handling:
 *   begin
 *     WaterDrop::ConnectionPool.with { |p| p.produce_sync(topic: 'notifications', payload: ...) }
 *   rescue ConnectionPool::TimeoutError => e  # "No producer available from pool"
 *   rescue => e                               # other errors
 *   end
 */
static int notify(void *user_data, wdpool_producer *producer) {
  (void)user_data;
  return produce_sync(producer, "notifications", "{\"user_id\":7,\"message\":\"hello\"}") == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

/* Returns 0 when delivered, 1 on a pool timeout, 2 on any other failure. */
static int notification_job_perform(int64_t timeout_ms) {
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_with(timeout_ms, notify, NULL, &err);
  int outcome = 0;
  if (rc == WDPOOL_TIMEOUT) {
    fprintf(stderr, "  (expected) No producer available from pool: %s\n", message_of(err));
    outcome = 1;
  } else if (rc != WDPOOL_OK) {
    fprintf(stderr, "  Failed to publish message: %s\n", message_of(err));
    outcome = 2;
  }
  wdpool_error_free(err);
  return outcome;
}

static void *timeout_job(void *arg) {
  *(int *)arg = notification_job_perform(100);
  return NULL;
}

static int example_error_handling(void) {
  wdpool_options options = {.size = 1, .timeout_ms = 5000};
  EXPECT(wdpool_setup(&options, configure, NULL, NULL) == WDPOOL_OK, "setup");
  EXPECT(notification_job_perform(WDPOOL_TIMEOUT_DEFAULT) == 0, "the job delivers");
  /* Exhaust the pool: hold its only producer, then a job waits 100 ms. */
  wdpool_producer *held = NULL;
  EXPECT(wdpool_checkout(WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &held, NULL) == WDPOOL_OK, "checkout");
  /* The same thread would re-enter and get the held producer; use another. */
  pthread_t t;
  int outcome = -1;
  pthread_create(&t, NULL, timeout_job, &outcome);
  pthread_join(t, NULL);
  EXPECT(outcome == 1, "a pool timeout is told apart from other errors (got %d)", outcome);
  EXPECT(wdpool_producer_checkin(held, NULL) == WDPOOL_OK, "checkin");
  wdpool_statistics stats;
  EXPECT(wdpool_stats(&stats, NULL) == WDPOOL_OK && stats.checkout_timeouts == 1, "the timeout is counted");
  EXPECT(wdpool_close(false, NULL, NULL) == WDPOOL_OK, "close");
  return 0;
}

/* ------------------------------------------------------------------------
 * Transactional order processing:
 *   WaterDrop::ConnectionPool.transaction do |producer|
 *     orders.each { |o| producer.produce_async(topic: 'processed_orders', payload: o.to_json, key: o.id.to_s) }
 *   end
 */
static int process_orders(void *user_data, wdpool_producer *producer) {
  const int *count = user_data;
  for (int id = 1; id <= *count; id++) {
    char key[16], payload[64];
    snprintf(key, sizeof key, "%d", id);
    snprintf(payload, sizeof payload, "{\"id\":%d,\"status\":\"processed\"}", id);
    wdpool_message m;
    wdpool_message_init(&m);
    m.topic = "processed_orders";
    m.payload = text(payload);
    m.key = text(key);
    if (wdpool_producer_produce_async(producer, &m, NULL, NULL) != WDPOOL_OK) return 0;
  }
  return WDPOOL_CB_OK;
}

static int example_transactional_orders(void) {
  wdpool_options options = {.size = 3, .timeout_ms = 5000};
  EXPECT(wdpool_setup(&options, configure, (void *)"orders", NULL) == WDPOOL_OK, "setup");
  int count = 10;
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_transaction(WDPOOL_TIMEOUT_DEFAULT, process_orders, &count, &err);
  EXPECT(rc == WDPOOL_OK, "OrderProcessor#process_orders: %s", message_of(err));
  EXPECT(wdpool_close(false, NULL, NULL) == WDPOOL_OK, "close");
  return 0;
}

/* ------------------------------------------------------------------------
 * Monitoring and events:
 *   WaterDrop.monitor.subscribe('connection_pool.created') { |e| ... e[:size] }
 *   WaterDrop.monitor.subscribe('connection_pool.shutdown') { |e| ... }
 */
struct seen {
  int created, shutdown;
  size_t created_size;
};

static void on_event(void *user_data, const wdpool_event *event) {
  struct seen *seen = user_data;
  if (strcmp(event->name, "connection_pool.created") == 0) {
    printf("  Connection pool created with %zu connections\n", event->size);
    seen->created++;
    seen->created_size = event->size;
  } else if (strcmp(event->name, "connection_pool.shutdown") == 0) {
    printf("  Connection pool shutting down\n");
    seen->shutdown++;
  }
}

static int example_monitoring(void) {
  struct seen seen = {0, 0, 0};
  uint64_t id;
  EXPECT(wdpool_subscribe(on_event, &seen, NULL, &id, NULL) == WDPOOL_OK, "subscribe");
  wdpool_options options = {.size = 4, .timeout_ms = 1000};
  EXPECT(wdpool_setup(&options, configure, NULL, NULL) == WDPOOL_OK, "setup");
  EXPECT(wdpool_close(false, NULL, NULL) == WDPOOL_OK, "close");
  EXPECT(wdpool_close(false, NULL, NULL) == WDPOOL_OK, "closing twice is harmless");
  EXPECT(wdpool_unsubscribe(id, NULL) == WDPOOL_OK, "unsubscribe");
  EXPECT(seen.created == 1 && seen.created_size == 4, "created once with its size (%d)", seen.created);
  EXPECT(seen.shutdown == 1, "shutdown exactly once (%d)", seen.shutdown);
  return 0;
}

int main(void) {
  wdpool_mock_cluster *mock = NULL;
  brokers = getenv("WDPOOL_BROKERS");
  if (brokers == NULL || brokers[0] == '\0') {
    if (wdpool_mock_cluster_new(3, &mock, NULL) != WDPOOL_OK) return 1;
    brokers = wdpool_mock_cluster_bootstrap_servers(mock);
  }
  printf("seed examples against %s%s\n", brokers, mock ? " (mock cluster)" : "");

  struct {
    const char *name;
    int (*run)(void);
  } examples[] = {
      {"getting started", example_getting_started},
      {"transactions", example_transaction},
      {"manual transaction", example_manual_transaction},
      {"multiple pool instances", example_multiple_pools},
      {"high-throughput publishing", example_high_throughput},
      {"background job / error handling", example_error_handling},
      {"transactional order processing", example_transactional_orders},
      {"monitoring and events", example_monitoring},
  };
  int passed = 0, count = (int)(sizeof examples / sizeof examples[0]);
  for (int i = 0; i < count; i++) {
    int failed = examples[i].run();
    printf("%s %s\n", failed ? "FAIL" : "ok  ", examples[i].name);
    passed += !failed;
  }
  wdpool_close(false, NULL, NULL);
  wdpool_mock_cluster_free(mock);
  printf("seed_examples: %d passed, %d failed\n", passed, count - passed);
  return failures == 0 && passed == count ? 0 : 1;
}
