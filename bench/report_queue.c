/*
 * report_queue: what tracking each message's delivery report costs through
 * the C ABI, per message, with a delivery handle each
 * (wdpool_producer_produce_async + wdpool_delivery_wait + _free) against a
 * tag in a wdpool_report_queue (wdpool_producer_produce_tagged, reports
 * taken 256 at a time) and a report slot (wdpool_producer_produce_into
 * into an array of 1,024 slots, each read in place before it is used
 * again), and against fire and forget; on one deliver=false
 * producer (no broker, no librdkafka: wdpool's own cost only), rounds
 * interleaved.
 *
 *   make bench-build && target/bench/report_queue [messages [rounds]]
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "wdpool.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int configure(void *user_data, wdpool_config *config, size_t index) {
  (void)user_data;
  (void)index;
  return wdpool_config_set_deliver(config, false, NULL) == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static int fail(const char *what) {
  fprintf(stderr, "report_queue: %s failed\n", what);
  return 1;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 1000000;
  int rounds = argc > 2 ? atoi(argv[2]) : 5;
  if (n < 1 || rounds < 1) return fail("parsing the arguments");
  wdpool_options options = {.size = 1, .timeout_ms = 1000};
  wdpool_pool *pool = NULL;
  wdpool_producer *p = NULL;
  wdpool_report_queue *q = NULL;
  if (wdpool_pool_new(&options, configure, NULL, &pool, NULL) != WDPOOL_OK) return fail("wdpool_pool_new");
  if (wdpool_pool_checkout(pool, WDPOOL_OWNER_THREAD, WDPOOL_TIMEOUT_DEFAULT, &p, NULL) != WDPOOL_OK)
    return fail("wdpool_pool_checkout");
  if (wdpool_report_queue_new(&q, NULL) != WDPOOL_OK) return fail("wdpool_report_queue_new");
  enum { SLOTS = 1024 };
  wdpool_report_slots *slots = NULL;
  const wdpool_report_slot *array = NULL;
  size_t slot_count = 0;
  if (wdpool_report_slots_new(SLOTS, &slots, NULL) != WDPOOL_OK ||
      wdpool_report_slots_array(slots, &array, &slot_count, NULL) != WDPOOL_OK || slot_count != SLOTS)
    return fail("wdpool_report_slots_new");
  wdpool_message m;
  wdpool_message_init(&m);
  m.topic = "bench";
  m.payload.data = (const uint8_t *)"0123456789";
  m.payload.len = 10;
  static wdpool_tagged_report reports[256];
  long failures = 0;
  printf("report_queue: %ld messages a run, %d rounds, ns per message\n", n, rounds);
  for (int round = 0; round < rounds; round++) {
    double t0 = now();
    for (long i = 0; i < n; i++) {
      wdpool_delivery *d = NULL;
      failures += wdpool_producer_produce_async(p, &m, &d, NULL) != WDPOOL_OK;
      failures += wdpool_delivery_wait(d, 0, NULL) != WDPOOL_OK;
      wdpool_delivery_free(d);
    }
    double handle = now() - t0;
    t0 = now();
    long got = 0;
    for (long i = 0; i < n; i++) {
      failures += wdpool_producer_produce_tagged(p, &m, q, (uint64_t)i, NULL) != WDPOOL_OK;
      if ((i & 255) == 255) {
        size_t k = 0;
        wdpool_report_queue_take(q, reports, 256, 0, &k, NULL);
        got += (long)k;
      }
    }
    for (size_t k = 1; k > 0; got += (long)k) wdpool_report_queue_take(q, reports, 256, 0, &k, NULL);
    double tagged = now() - t0;
    failures += got != n;
    t0 = now();
    long delivered = 0;
    for (long i = 0; i < n; i++) {
      size_t k = (size_t)i % SLOTS;
      if (i >= SLOTS) delivered += __atomic_load_n(&array[k].state, __ATOMIC_ACQUIRE) == WDPOOL_SLOT_DONE &&
                                   array[k].error_code == 0;
      failures += wdpool_producer_produce_into(p, &m, 1, slots, k, NULL) != WDPOOL_OK;
    }
    for (long i = n > SLOTS ? n - SLOTS : 0; i < n; i++)
      delivered += __atomic_load_n(&array[i % SLOTS].state, __ATOMIC_ACQUIRE) == WDPOOL_SLOT_DONE;
    double slot = now() - t0;
    failures += delivered != n;
    t0 = now();
    for (long i = 0; i < n; i++) failures += wdpool_producer_produce_async(p, &m, NULL, NULL) != WDPOOL_OK;
    double forget = now() - t0;
    printf("round %d: delivery handle %6.0f  tagged %6.0f  slot %6.0f  fire and forget %6.0f\n", round,
           handle / (double)n * 1e9, tagged / (double)n * 1e9, slot / (double)n * 1e9, forget / (double)n * 1e9);
  }
  wdpool_report_queue_free(q);
  wdpool_report_slots_free(slots);
  wdpool_producer_checkin(p, NULL);
  wdpool_pool_close(pool, false, NULL, NULL);
  wdpool_pool_free(pool);
  if (failures) return fail("a produce or a report");
  return 0;
}
