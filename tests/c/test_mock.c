/*
 * test_mock: wdpool_mock_cluster_new / _bootstrap_servers / _create_topic /
 * _set_broker_up / _free, and a broker taken down and brought back.
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

static void test_mock_cluster(wdpool_mock_cluster *mock) {
  CHECK(brokers != NULL && brokers[0] != '\0');
  CHECK_CONTAINS(brokers, "127.0.0.1:");
  CHECK_STR(wdpool_mock_cluster_bootstrap_servers(NULL), "");

  /* TOPIC and OFFSETS_TOPIC were created by api_setup; now the refusals. */
  CHECK_RC_BOTH(wdpool_mock_cluster_create_topic(mock, "c-api-zero", 0, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_mock_cluster_create_topic(mock, "\xff", 1, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_mock_cluster_create_topic(mock, NULL, 1, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_mock_cluster_create_topic(NULL, "t", 1, CHECK_ERR), WDPOOL_NULL_PARAMETER);

  wdpool_mock_cluster *other = (wdpool_mock_cluster *)&other;
  CHECK_RC_BOTH(wdpool_mock_cluster_new(0, &other, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK_RC_BOTH(wdpool_mock_cluster_new(17, &other, CHECK_ERR), WDPOOL_INVALID_ARGUMENT);
  CHECK(other == (wdpool_mock_cluster *)&other); /* written only on success */
  CHECK_RC_BOTH(wdpool_mock_cluster_new(1, NULL, CHECK_ERR), WDPOOL_NULL_PARAMETER);
  CHECK_RC_BOTH(wdpool_mock_cluster_set_broker_up(NULL, 1, true, CHECK_ERR), WDPOOL_NULL_PARAMETER);

  /* A broker taken down and brought back: a message queued while it was
   * down is delivered once it is up again. A cluster of its own, so the
   * other tests do not see the outage. */
  wdpool_mock_cluster *single = NULL;
  CHECK_RC(wdpool_mock_cluster_new(1, &single, CHECK_ERR), WDPOOL_OK);
  if (single == NULL) return;
  CHECK_RC(wdpool_mock_cluster_create_topic(single, "c-api-outage", 1, CHECK_ERR), WDPOOL_OK);
  pool_setup setup = {.bootstrap = wdpool_mock_cluster_bootstrap_servers(single),
                      .extra_key = "reconnect.backoff.max.ms",
                      .extra_value = "100"};
  wdpool_pool *pool = make_pool(1, 5000, &setup);
  body warm = {produce_one, "c-api-outage", WDPOOL_CB_OK, NULL, 0};
  CHECK_RC(wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, run_body, &warm, CHECK_ERR), WDPOOL_OK);

  CHECK_RC(wdpool_mock_cluster_set_broker_up(single, 1, false, CHECK_ERR), WDPOOL_OK);
  wdpool_producer *producer = NULL;
  CHECK_RC(wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &producer, CHECK_ERR), WDPOOL_OK);
  wdpool_message m = text_message("c-api-outage", "while down");
  wdpool_delivery *delivery = NULL;
  CHECK_RC(wdpool_producer_produce_async(producer, &m, &delivery, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_mock_cluster_set_broker_up(single, 1, true, CHECK_ERR), WDPOOL_OK);
  CHECK_RC(wdpool_delivery_wait(delivery, MAX_WAIT_MS, CHECK_ERR), WDPOOL_OK);
  wdpool_report report;
  CHECK_RC(wdpool_delivery_report(delivery, 0, &report, CHECK_ERR), WDPOOL_OK);
  CHECK_EQ(report.error_code, 0);
  CHECK_EQ(report.partition, 0);
  CHECK_EQ(report.offset, 1); /* after the warm-up message */
  wdpool_delivery_free(delivery);
  CHECK_RC(wdpool_producer_checkin(producer, CHECK_ERR), WDPOOL_OK);

  /* An unknown broker id is refused. */
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_mock_cluster_set_broker_up(single, 99, false, &err);
  CHECK(rc != WDPOOL_OK);
  CHECK(err != NULL && wdpool_error_code(err) == rc);
  wdpool_error_free(err);

  wdpool_pool_free(pool);
  wdpool_mock_cluster_free(single);
}

/* ------------------------------------------------------------------------ */

int main(void) {
  if (!api_setup()) return check_summary("test_mock");

  test_mock_cluster(api_mock);

  return api_teardown("test_mock");
}
