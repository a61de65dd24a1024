/*
 * include/wdpool.h compiles as C11 under -Wall -Wextra -Wpedantic -Werror and
 * may be included twice (its include guard works). Only compiled (-c), never
 * linked or run: `make test-header-cpp`.
 */
#include "wdpool.h"
#include "wdpool.h"

#include <stddef.h>

_Static_assert(WDPOOL_OK == 0, "success is 0");
_Static_assert(WDPOOL_PANIC == 99, "the panic code is stable");
_Static_assert(WDPOOL_CB_OK == 1 && WDPOOL_CB_ABORT == 2, "callback codes: success is not 0");
_Static_assert(WDPOOL_TIMEOUT_DEFAULT < 0, "the default timeout is a negative sentinel");
_Static_assert(WDPOOL_PARTITION_ANY == -1, "any partition is -1");
_Static_assert(WDPOOL_DEFAULT_SIZE == 5 && WDPOOL_DEFAULT_TIMEOUT_MS == 5000, "WaterDrop's defaults");
_Static_assert(sizeof(WDPOOL_VERSION) > 1, "the version is a non-empty string literal");

/* The version macros work in the preprocessor, where a binding checks them. */
#if !defined(WDPOOL_VERSION_MAJOR) || !defined(WDPOOL_VERSION_MINOR) || !defined(WDPOOL_VERSION_PATCH) || \
    WDPOOL_VERSION_MAJOR < 0 || WDPOOL_VERSION_MINOR < 0 || WDPOOL_VERSION_PATCH < 0
#error "WDPOOL_VERSION_MAJOR/MINOR/PATCH are not integers"
#endif
#if !defined(WDPOOL_ABI_VERSION) || WDPOOL_ABI_VERSION != 1
#error "the ABI frozen as version 1 is still version 1"
#endif
_Static_assert(sizeof(wdpool_bytes) == sizeof(const uint8_t *) + sizeof(size_t), "a byte view is two words");
_Static_assert(offsetof(wdpool_header, key) == 0, "a header starts with its key");

/* The callback types accept plain C functions. */
static int header_twice_configure(void *user_data, wdpool_config *config, size_t index) {
  (void)user_data;
  (void)index;
  return wdpool_config_set_deliver(config, false, NULL) == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static int header_twice_body(void *user_data, wdpool_producer *producer) {
  const wdpool_message *message = user_data;
  return wdpool_producer_produce_sync(producer, message, WDPOOL_TIMEOUT_DEFAULT, NULL, NULL) == WDPOOL_OK ? WDPOOL_CB_OK : 0;
}

static void header_twice_on_event(void *user_data, const wdpool_event *event) {
  (void)user_data;
  (void)event;
}

int header_twice_c(void);

int header_twice_c(void) {
  wdpool_configure_cb configure = header_twice_configure;
  wdpool_producer_cb callback = header_twice_body;
  wdpool_event_cb on_event = header_twice_on_event;
  wdpool_finalizer finalizer = NULL;
  wdpool_options options = wdpool_options_default();
  wdpool_header header = {"k", {NULL, 0}};
  wdpool_message message;
  wdpool_message_init(&message);
  message.topic = "t";
  message.headers = &header;
  message.headers_len = 1;
  wdpool_pool *pool = NULL;
  wdpool_result rc = wdpool_pool_new(&options, configure, NULL, &pool, NULL);
  if (rc == WDPOOL_OK) rc = wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, callback, &message, NULL);
  wdpool_pool_free(pool);
  (void)on_event;
  (void)finalizer;
  return (int)rc;
}
