/*
 * fork(): a pool used in the child abandons the parent's producers without
 * destroying them (their librdkafka threads do not exist in the child),
 * creates fresh ones on demand and fires reload/reloaded there; the parent's
 * pool is unaffected.
 *
 * The child reports through its exit code: 0 when every check passed,
 * otherwise the number of the first check that failed.
 */
#define _POSIX_C_SOURCE 200809L
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "support.h"

static const char *brokers;

static int configure(void *user_data, wdpool_config *config, size_t index) {
  (void)user_data;
  (void)index;
  if (wdpool_config_set_kafka(config, "bootstrap.servers", brokers, NULL) != WDPOOL_OK) return 0;
  if (wdpool_config_set_max_wait_timeout(config, 10000, NULL) != WDPOOL_OK) return 0;
  return WDPOOL_CB_OK;
}

static int produce(void *user_data, wdpool_producer *producer) {
  const char *payload = user_data;
  wdpool_message m = text_message("forked", payload);
  return wdpool_producer_produce_sync(producer, &m, WDPOOL_TIMEOUT_DEFAULT, NULL, NULL) == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

struct counts {
  uint64_t pool_id;
  int reload, reloaded;
};

static void count_reloads(void *user_data, const wdpool_event *event) {
  struct counts *c = user_data;
  if (event->pool_id != c->pool_id) return;
  if (event->kind == WDPOOL_EVENT_RELOAD) c->reload++;
  if (event->kind == WDPOOL_EVENT_RELOADED) c->reloaded++;
}

/* Runs in the child: no test harness output, just an exit code. */
static int child(wdpool_pool *pool, struct counts *counts) {
  counts->reload = counts->reloaded = 0;
  wdpool_statistics before;
  if (wdpool_pool_stats(pool, &before, NULL) != WDPOOL_OK) return 10;
  if (wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, produce, (void *)"from the child", NULL) != WDPOOL_OK) return 11;
  if (counts->reload != 1 || counts->reloaded != 1) return 12;
  wdpool_statistics after;
  if (wdpool_pool_stats(pool, &after, NULL) != WDPOOL_OK) return 13;
  /* The parent's producer was abandoned, and a fresh one created. */
  if (after.creations != before.creations + 1) return 14;
  if (after.created != 1 || after.in_use != 0) return 15;
  /* Closing in the child closes only the child's producer. */
  wdpool_close_report report;
  if (wdpool_pool_close(pool, false, &report, NULL) != WDPOOL_OK) return 16;
  if (report.closed != 1 || report.undelivered != 0) return 17;
  return 0;
}

int main(void) {
  wdpool_mock_cluster *mock = NULL;
  CHECK_RC(wdpool_mock_cluster_new(1, &mock, CHECK_ERR), WDPOOL_OK);
  brokers = wdpool_mock_cluster_bootstrap_servers(mock);

  wdpool_options options = {.size = 2, .timeout_ms = 5000};
  wdpool_pool *pool = NULL;
  CHECK_RC(wdpool_pool_new(&options, configure, NULL, &pool, CHECK_ERR), WDPOOL_OK);
  struct counts counts = {wdpool_pool_id(pool), 0, 0};
  uint64_t subscription = 0;
  CHECK_RC(wdpool_subscribe(count_reloads, &counts, NULL, &subscription, CHECK_ERR), WDPOOL_OK);

  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, produce, (void *)"before the fork", CHECK_ERR), WDPOOL_OK);
  wdpool_statistics parent_before;
  CHECK_RC(wdpool_pool_stats(pool, &parent_before, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(parent_before.creations, 1);

  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) _exit(child(pool, &counts));
  CHECK(pid > 0);

  int status = 0;
  CHECK_EQ(waitpid(pid, &status, 0), pid);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);

  /* The parent: same producer, no reload, still working. */
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, produce, (void *)"after the fork", CHECK_ERR), WDPOOL_OK);
  wdpool_statistics parent_after;
  CHECK_RC(wdpool_pool_stats(pool, &parent_after, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(parent_after.creations, 1);
  CHECK_EQ(counts.reload, 0);
  CHECK_EQ(counts.reloaded, 0);

  CHECK_RC(wdpool_unsubscribe(subscription, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_pool_close(pool, false, NULL, CHECK_ERR), WDPOOL_OK);
  wdpool_pool_free(pool);
  wdpool_mock_cluster_free(mock);
  return check_summary("test_fork");
}
