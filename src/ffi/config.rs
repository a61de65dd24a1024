//! `wdpool_config`: one producer's configuration, handed to the configure
//! callback once per slot.

use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;

use super::registry::{Kind, Registered, Registry};
use super::{boundary, utf8, wdpool_error, wdpool_result, WDPOOL_CB_OK};
use crate::error::{Error, ErrorKind, Result};
use crate::kafka::ProducerConfig;

/// One producer's configuration: a handle, not a pointer (never dereference
/// it), valid only during the configure callback that received it;
/// afterwards every call with it fails with WDPOOL_STALE_HANDLE, and a
/// handle of another kind with WDPOOL_INVALID_ARGUMENT. Set librdkafka
/// properties with `wdpool_config_set_kafka` and wdpool's own settings with
/// the typed setters. Use it on the callback's thread only.
#[allow(non_camel_case_types)]
pub struct wdpool_config {
    _private: [u8; 0],
}

/// Configures the producer of one slot. Called once per slot, in slot order,
/// on the thread that creates the pool, before that call returns. `index` is
/// the slot's zero-based index, stable for the pool's life (across reloads
/// and replacements), so `transactional.id`s can be derived from it.
/// Return `WDPOOL_CB_OK` on success; anything else fails the pool's creation
/// with WDPOOL_CALLBACK_FAILED. A setter that failed inside the callback
/// fails the pool's creation with that setter's code (INVALID_ARGUMENT,
/// INVALID_CONFIG, ...) and message, even when the callback then returned
/// `WDPOOL_CB_OK`: a binding that ignores a setter's result still cannot
/// build a pool with a configuration other than the one it asked for.
///
/// It must return normally: never unwind or jump out of it (no `longjmp`,
/// no C++ exception, no Ruby non-local exit, no Go panic). It may call any
/// `wdpool_config_*` setter with the config it got, and nothing that
/// creates, closes or frees the pool being created.
#[allow(non_camel_case_types)]
pub type wdpool_configure_cb =
    Option<unsafe extern "C" fn(user_data: *mut c_void, config: *mut wdpool_config, index: usize) -> c_int>;

struct Cell {
    config: ProducerConfig,
    /// The first setter error: it fails the pool's creation even if the
    /// callback ignored it.
    error: Option<Error>,
}

static CONFIGS: Registry<Cell> = Registry::new(Kind::Config);

/// Runs the user's configure callback for slot `index` into `config`.
pub(crate) fn configure_with(
    callback: wdpool_configure_cb,
    user_data: *mut c_void,
) -> impl FnMut(&mut ProducerConfig, usize) -> Result<()> {
    move |config, index| {
        let Some(callback) = callback else { return Ok(()) };
        let cell = Registered::new(&CONFIGS, Cell { config: std::mem::take(config), error: None })?;
        // SAFETY: the caller promised a valid callback and user data.
        let rc = unsafe { callback(user_data, cell.token as *mut wdpool_config, index) };
        let cell = cell.take().expect("the registration is ours until here");
        *config = cell.config;
        if let Some(error) = cell.error {
            return Err(error);
        }
        if rc != WDPOOL_CB_OK {
            return Err(Error::new(ErrorKind::CallbackFailed, format!("the configure callback returned {rc}")));
        }
        Ok(())
    }
}

fn with_config(config: *mut wdpool_config, set: impl FnOnce(&mut ProducerConfig) -> Result<()>) -> Result<()> {
    if config.is_null() {
        return Err(super::null("config"));
    }
    CONFIGS.with(config as usize, |cell| {
        let result = set(&mut cell.config);
        if let Err(e) = &result {
            cell.error.get_or_insert_with(|| e.clone());
        }
        result
    })?
}

/// Sets a librdkafka property (for example "bootstrap.servers",
/// "transactional.id", "acks"). `key` and `value` are NUL-terminated UTF-8,
/// copied. The property is checked by librdkafka at once: an unknown key or
/// invalid value returns WDPOOL_INVALID_CONFIG naming the key with
/// librdkafka's reason, and also fails the pool's creation.
///
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_INVALID_ARGUMENT (not
/// UTF-8), WDPOOL_INVALID_CONFIG, WDPOOL_STALE_HANDLE. `err`: NULL, or where
/// to store a new `wdpool_error` on failure (free it with `wdpool_error_free`).
/// Blocks: never (librdkafka checks the property locally). Calls back:
/// nothing. Thread: the configure callback's, while it runs.
#[no_mangle]
pub unsafe extern "C" fn wdpool_config_set_kafka(
    config: *mut wdpool_config,
    key: *const c_char,
    value: *const c_char,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        with_config(config, |c| {
            // SAFETY: NULL or NUL-terminated strings, as documented.
            let key = unsafe { utf8(key, "key") }?;
            // SAFETY: as above.
            let value = unsafe { utf8(value, "value") }?;
            c.set_kafka(key, value)
        })
    })
}

/// WaterDrop's `deliver`: true (the default) sends to Kafka; false builds a
/// producer that validates messages and acknowledges them with synthetic
/// delivery reports without contacting any broker (for tests).
///
/// Blocks: never. Calls back: nothing. Thread: the configure callback's.
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_INVALID_ARGUMENT (another
/// kind of handle), WDPOOL_STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_config_set_deliver(
    config: *mut wdpool_config,
    deliver: bool,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        with_config(config, |c| {
            c.deliver = deliver;
            Ok(())
        })
    })
}

/// WaterDrop's `max_wait_timeout` in milliseconds (default 180000): bounds
/// waiting for delivery reports, flush, transaction calls and a graceful
/// close of this producer. Must be at least 1.
///
/// Blocks: never. Calls back: nothing. Thread: the configure callback's.
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_INVALID_ARGUMENT (0, or
/// another kind of handle), WDPOOL_STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_config_set_max_wait_timeout(
    config: *mut wdpool_config,
    timeout_ms: u64,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        with_config(config, |c| {
            if timeout_ms == 0 {
                return Err(Error::new(ErrorKind::InvalidArgument, "max_wait_timeout must be at least 1 ms"));
            }
            c.max_wait_timeout = Duration::from_millis(timeout_ms);
            Ok(())
        })
    })
}

/// WaterDrop's `max_payload_size` in bytes (default 1000012): larger payloads
/// are rejected with WDPOOL_INVALID_MESSAGE before anything is sent.
///
/// Blocks: never. Calls back: nothing. Thread: the configure callback's.
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_INVALID_ARGUMENT (0, or
/// another kind of handle), WDPOOL_STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_config_set_max_payload_size(
    config: *mut wdpool_config,
    size: usize,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        with_config(config, |c| {
            if size == 0 {
                return Err(Error::new(ErrorKind::InvalidArgument, "max_payload_size must be at least 1 byte"));
            }
            c.max_payload_size = size;
            Ok(())
        })
    })
}

/// The producer's id (NUL-terminated UTF-8, copied), reported in events and
/// used as librdkafka's `client.id` unless that is set. Default:
/// "wdpool-<pool id>-<slot index>".
///
/// Blocks: never. Calls back: nothing. Thread: the configure callback's.
/// Returns WDPOOL_OK, WDPOOL_NULL_PARAMETER, WDPOOL_INVALID_ARGUMENT (not
/// UTF-8, empty, or another kind of handle), WDPOOL_STALE_HANDLE.
#[no_mangle]
pub unsafe extern "C" fn wdpool_config_set_id(
    config: *mut wdpool_config,
    id: *const c_char,
    err: *mut *mut wdpool_error,
) -> wdpool_result {
    boundary(err, || {
        with_config(config, |c| {
            // SAFETY: NULL or a NUL-terminated string, as documented.
            let id = unsafe { utf8(id, "id") }?;
            if id.is_empty() {
                return Err(Error::new(ErrorKind::InvalidArgument, "id must not be empty"));
            }
            c.id = Some(id.to_owned());
            Ok(())
        })
    })
}
