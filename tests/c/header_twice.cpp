// include/wdpool.h compiles as C++17 under -Wall -Wextra -Wpedantic -Werror
// and may be included twice (its include guard and extern "C" block work).
// Only compiled (-c), never linked or run: `make test-header-cpp`.
#include "wdpool.h"
#include "wdpool.h"

#include <cstddef>
#include <type_traits>

static_assert(WDPOOL_OK == 0, "success is 0");
static_assert(WDPOOL_PANIC == 99, "the panic code is stable");
static_assert(WDPOOL_CB_OK == 1 && WDPOOL_CB_ABORT == 2, "callback codes: success is not 0");
static_assert(WDPOOL_TIMEOUT_DEFAULT < 0, "the default timeout is a negative sentinel");
static_assert(WDPOOL_DEFAULT_SIZE == 5 && WDPOOL_DEFAULT_TIMEOUT_MS == 5000, "WaterDrop's defaults");
static_assert(sizeof(WDPOOL_VERSION) > 1, "the version is a non-empty string literal");
static_assert(std::is_standard_layout<wdpool_message>::value, "messages are plain C structs");
static_assert(std::is_trivially_copyable<wdpool_statistics>::value, "stats are plain C structs");
static_assert(std::is_same<decltype(&wdpool_version), const char *(*)()>::value, "wdpool_version()");
static_assert(std::is_same<decltype(&wdpool_abi_version), uint32_t (*)()>::value, "wdpool_abi_version()");
static_assert(WDPOOL_ABI_VERSION == 1, "the ABI frozen as version 1 is still version 1");

int header_twice_cpp();

int header_twice_cpp() {
  // Captureless lambdas convert to the callback types.
  wdpool_producer_cb callback = [](void *user_data, wdpool_producer *producer) -> int {
    auto message = static_cast<const wdpool_message *>(user_data);
    return wdpool_producer_produce_sync(producer, message, WDPOOL_TIMEOUT_DEFAULT, nullptr, nullptr) == WDPOOL_OK ? WDPOOL_CB_OK : 0;
  };
  wdpool_configure_cb configure = [](void *, wdpool_config *config, std::size_t) -> int {
    return wdpool_config_set_deliver(config, false, nullptr) == WDPOOL_OK ? WDPOOL_CB_OK : 0;
  };
  wdpool_event_cb on_event = [](void *, const wdpool_event *) {};
  wdpool_options options = wdpool_options_default();
  wdpool_message message{};
  wdpool_message_init(&message);
  message.topic = "t";
  wdpool_pool *pool = nullptr;
  wdpool_result rc = wdpool_pool_new(&options, configure, nullptr, &pool, nullptr);
  if (rc == WDPOOL_OK) rc = wdpool_pool_with(pool, WDPOOL_TIMEOUT_DEFAULT, callback, &message, nullptr);
  wdpool_pool_free(pool);
  (void)on_event;
  return static_cast<int>(rc);
}
