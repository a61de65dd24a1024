/*
 * abi_check: what a program built against an installed wdpool checks first.
 * Built by tests/install/run.sh (`make test-install`) with nothing but
 * `pkg-config --cflags --libs wdpool` (and `--static`), against a fresh
 * `make install` prefix:
 *
 * - the library it loaded has the ABI version of the header it was built
 *   with, and the same version;
 * - one real operation: a pool of one producer built with deliver = false
 *   (no broker), one message produced synchronously through it, the pool
 *   freed.
 *
 * Prints one line per check and exits 0 when all passed.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <wdpool.h>

static int failures = 0;

static void check(bool ok, const char *what) {
  printf("abi_check: %s: %s\n", ok ? "ok" : "FAILED", what);
  if (!ok) failures++;
}

static void report(const char *call, wdpool_result rc, wdpool_error *err) {
  if (rc != WDPOOL_OK) {
    fprintf(stderr, "abi_check: %s: %s: %s\n", call, wdpool_result_name(rc),
            err ? wdpool_error_message(err) : "(no details)");
  }
  wdpool_error_free(err);
}

static int configure(void *user_data, wdpool_config *config, size_t index) {
  (void)user_data;
  (void)index;
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_config_set_deliver(config, false, &err);
  report("wdpool_config_set_deliver", rc, err);
  return rc == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static int produce_one(void *user_data, wdpool_producer *producer) {
  wdpool_report *out = user_data;
  wdpool_message m;
  wdpool_message_init(&m);
  m.topic = "abi_check";
  m.payload = (wdpool_bytes){(const uint8_t *)"hello", 5};
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_producer_produce_sync(producer, &m, WDPOOL_TIMEOUT_DEFAULT, out, &err);
  report("wdpool_producer_produce_sync", rc, err);
  return rc == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

int main(void) {
  printf("abi_check: header %s (%d.%d.%d), ABI %d; library %s, ABI %" PRIu32 "\n", WDPOOL_VERSION,
         WDPOOL_VERSION_MAJOR, WDPOOL_VERSION_MINOR, WDPOOL_VERSION_PATCH, WDPOOL_ABI_VERSION,
         wdpool_version(), wdpool_abi_version());
  check(wdpool_abi_version() == WDPOOL_ABI_VERSION, "wdpool_abi_version() == WDPOOL_ABI_VERSION");
  check(strcmp(wdpool_version(), WDPOOL_VERSION) == 0, "wdpool_version() equals WDPOOL_VERSION");
  char numbers[64];
  snprintf(numbers, sizeof numbers, "%d.%d.%d", WDPOOL_VERSION_MAJOR, WDPOOL_VERSION_MINOR,
           WDPOOL_VERSION_PATCH);
  check(strncmp(WDPOOL_VERSION, numbers, strlen(numbers)) == 0,
        "WDPOOL_VERSION starts with MAJOR.MINOR.PATCH");

  wdpool_options options = wdpool_options_default();
  options.size = 1;
  wdpool_pool *pool = NULL;
  wdpool_error *err = NULL;
  wdpool_result rc = wdpool_pool_new(&options, configure, NULL, &pool, &err);
  report("wdpool_pool_new", rc, err);
  check(rc == WDPOOL_OK && pool != NULL, "a pool of one producer with deliver = false");
  if (pool) {
    wdpool_report delivered;
    memset(&delivered, 0, sizeof delivered);
    err = NULL;
    rc = wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, produce_one, &delivered, &err);
    report("wdpool_pool_with", rc, err);
    check(rc == WDPOOL_OK && delivered.error_code == 0, "one message produced through it");
    wdpool_pool_free(pool);
  }

  printf("abi_check: %s\n", failures ? "FAILED" : "all passed");
  return failures ? 1 : 0;
}
