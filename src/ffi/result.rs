//! Result codes and error details. Details travel in an optional error
//! out-parameter, never in thread-local state: a Go goroutine may move to
//! another OS thread between two calls.

use std::ffi::{c_char, c_int, CString};
use std::sync::OnceLock;

use crate::error::{kafka_flags, Error, ErrorKind};

/// A bit of `wdpool_error_kafka_flags`: librdkafka says the failed call may
/// succeed if made again (`rd_kafka_error_is_retriable`). wdpool has already
/// retried transactional calls within their timeout, so the operation can be
/// tried again as a whole (a new transaction, a new produce).
pub const WDPOOL_KAFKA_RETRIABLE: u32 = 1;

/// A bit of `wdpool_error_kafka_flags`: librdkafka says the producer hit a
/// fatal error (`rd_kafka_error_is_fatal`, `RD_KAFKA_RESP_ERR__FATAL`,
/// `rd_kafka_fatal_error`): it cannot be used again, and its slot gets a
/// fresh producer.
pub const WDPOOL_KAFKA_FATAL: u32 = 2;

/// A bit of `wdpool_error_kafka_flags`: librdkafka says the transaction
/// must be aborted (`rd_kafka_error_txn_requires_abort`); wdpool rolled it
/// back. The producer stays usable.
pub const WDPOOL_KAFKA_TXN_REQUIRES_ABORT: u32 = 4;

// The C constants are literals (cbindgen copies them); the core's are the same bits.
const _: () = assert!(
    WDPOOL_KAFKA_RETRIABLE == kafka_flags::RETRIABLE
        && WDPOOL_KAFKA_FATAL == kafka_flags::FATAL
        && WDPOOL_KAFKA_TXN_REQUIRES_ABORT == kafka_flags::TXN_REQUIRES_ABORT
);

/// The result of every fallible wdpool call. 0 is success.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum wdpool_result {
    /// Success.
    WDPOOL_OK = 0,
    /// A required pointer parameter was NULL.
    WDPOOL_NULL_PARAMETER = 1,
    /// An argument was invalid: not UTF-8, out of range, size 0, the wrong
    /// kind of handle.
    WDPOOL_INVALID_ARGUMENT = 2,
    /// A configuration property was unknown or had an invalid value (the
    /// message names the key and gives librdkafka's reason), or librdkafka
    /// refused the configuration when the producer was created.
    WDPOOL_INVALID_CONFIG = 3,
    /// A message was invalid; nothing was sent. The message names the field.
    WDPOOL_INVALID_MESSAGE = 4,
    /// No producer became free within the checkout timeout. The message says
    /// how long the caller waited and how many of how many were available.
    WDPOOL_TIMEOUT = 5,
    /// The pool (or the producer) is closed.
    WDPOOL_CLOSED = 6,
    /// A transaction was asked of a producer without `transactional.id`.
    WDPOOL_NOT_TRANSACTIONAL = 7,
    /// librdkafka reported an error; `wdpool_error_kafka_code` tells which.
    WDPOOL_KAFKA = 8,
    /// The caller's callback did not return `WDPOOL_CB_OK`.
    WDPOOL_CALLBACK_FAILED = 9,
    /// The transaction was aborted: an abortable Kafka error, an inner
    /// transaction that failed, or a transaction left open.
    WDPOOL_TRANSACTION_ABORTED = 10,
    /// A producer or config handle was used after its callback returned or
    /// its lease was checked in.
    WDPOOL_STALE_HANDLE = 11,
    /// No global pool is set up: call `wdpool_setup` first.
    WDPOOL_NOT_SET_UP = 12,
    /// Delivery reports did not all arrive in time; the messages may still be
    /// delivered later.
    WDPOOL_DELIVERY_TIMEOUT = 13,
    /// A delivery report is not there yet.
    WDPOOL_PENDING = 14,
    /// The producer hit a fatal error (for example it was fenced); its slot
    /// gets a fresh producer on the next checkout.
    WDPOOL_FATAL = 15,
    /// A transaction's body exited early (WDPOOL_TXN_EXIT at some level:
    /// Ruby's break/return/throw, Go's Goexit); it was rolled back.
    WDPOOL_TRANSACTION_EXITED_EARLY = 16,
    /// A bug in wdpool: a Rust panic was caught at the boundary.
    WDPOOL_PANIC = 99,
}

/// Details of a failed call: a plain pointer (not a handle), owned by the
/// caller: free it with `wdpool_error_free`. Immutable, so it may be read
/// from any thread.
#[allow(non_camel_case_types)]
pub struct wdpool_error {
    code: wdpool_result,
    message: CString,
    kafka_code: i32,
    kafka_flags: u32,
}

/// The one table from error kinds to result codes; the codes' names come
/// from the enum itself.
macro_rules! result_codes {
    ($($kind:ident => $code:ident,)*) => {
        pub(crate) fn code_of(kind: ErrorKind) -> wdpool_result {
            match kind {
                $(ErrorKind::$kind => wdpool_result::$code,)*
            }
        }

        /// Every result code.
        const ALL: &[wdpool_result] = &[wdpool_result::WDPOOL_OK, $(wdpool_result::$code,)*];
    };
}

result_codes! {
    NullParameter => WDPOOL_NULL_PARAMETER,
    InvalidArgument => WDPOOL_INVALID_ARGUMENT,
    InvalidConfig => WDPOOL_INVALID_CONFIG,
    InvalidMessage => WDPOOL_INVALID_MESSAGE,
    Timeout => WDPOOL_TIMEOUT,
    Closed => WDPOOL_CLOSED,
    NotTransactional => WDPOOL_NOT_TRANSACTIONAL,
    Kafka => WDPOOL_KAFKA,
    CallbackFailed => WDPOOL_CALLBACK_FAILED,
    TransactionAborted => WDPOOL_TRANSACTION_ABORTED,
    StaleHandle => WDPOOL_STALE_HANDLE,
    NotSetUp => WDPOOL_NOT_SET_UP,
    DeliveryTimeout => WDPOOL_DELIVERY_TIMEOUT,
    Pending => WDPOOL_PENDING,
    Fatal => WDPOOL_FATAL,
    EarlyExit => WDPOOL_TRANSACTION_EXITED_EARLY,
    Panic => WDPOOL_PANIC,
}

/// Strings handed to C may not contain NUL: replace any.
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new(s.replace('\0', "\u{fffd}")).expect("NULs replaced"))
}

/// Stores `error` in `*err_out` when the caller asked for details; returns
/// its code.
///
/// # Safety
/// `err_out` is NULL or valid for writes.
pub(crate) unsafe fn fail(err_out: *mut *mut wdpool_error, error: Error) -> wdpool_result {
    let code = code_of(error.kind);
    if !err_out.is_null() {
        // SAFETY: the caller passes either NULL or a valid `wdpool_error **`.
        unsafe { *err_out = error_box(error) };
    }
    code
}

/// `error` as a `wdpool_error` the caller owns (`wdpool_error_free`).
pub(crate) fn error_box(error: Error) -> *mut wdpool_error {
    Box::into_raw(Box::new(wdpool_error {
        code: code_of(error.kind),
        message: c_string(&error.message),
        kafka_code: error.kafka_code,
        kafka_flags: error.kafka_flags,
    }))
}

/// The result code of `error`. Returns `WDPOOL_NULL_PARAMETER` for NULL.
///
/// Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub unsafe extern "C" fn wdpool_error_code(error: *const wdpool_error) -> wdpool_result {
    // SAFETY: NULL or a pointer from a wdpool call that was not freed.
    match unsafe { error.as_ref() } {
        Some(e) => e.code,
        None => wdpool_result::WDPOOL_NULL_PARAMETER,
    }
}

/// The error's message, UTF-8, NUL-terminated. Borrowed: valid until
/// `wdpool_error_free(error)`. Returns "" for NULL.
///
/// Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub unsafe extern "C" fn wdpool_error_message(error: *const wdpool_error) -> *const c_char {
    // SAFETY: as in `wdpool_error_code`.
    match unsafe { error.as_ref() } {
        Some(e) => e.message.as_ptr(),
        None => c"".as_ptr(),
    }
}

/// librdkafka's error code (`rd_kafka_resp_err_t`) behind the error, or 0
/// when the error did not come from librdkafka (and for NULL).
///
/// Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub unsafe extern "C" fn wdpool_error_kafka_code(error: *const wdpool_error) -> i32 {
    // SAFETY: as in `wdpool_error_code`.
    unsafe { error.as_ref() }.map_or(0, |e| e.kafka_code)
}

/// librdkafka's classification of the error behind `error`: a set of
/// `WDPOOL_KAFKA_RETRIABLE`, `WDPOOL_KAFKA_FATAL` and
/// `WDPOOL_KAFKA_TXN_REQUIRES_ABORT` bits.
///
/// Where they come from: for transactional calls (`init_transactions`,
/// begin, commit, abort: errors of `wdpool_producer_begin` / `_end` /
/// `_transaction`, of a checkout that created a transactional producer,
/// and of a produce's own transaction) librdkafka's `rd_kafka_error_t`
/// flags, exactly. For errors that carry only a code (produce calls,
/// delivery reports, flush): FATAL when the code is
/// `RD_KAFKA_RESP_ERR__FATAL` or the producer has a fatal error
/// (`rd_kafka_fatal_error`; the error's code is then the underlying one),
/// RETRIABLE when the code is `RD_KAFKA_RESP_ERR__QUEUE_FULL` (the local
/// queue was full for longer than the call could wait), nothing else:
/// delivery reports fail only after librdkafka's own retries
/// (`retries`, `message.timeout.ms`).
///
/// 0 for NULL, for errors that did not come from librdkafka
/// (`wdpool_error_kafka_code` is 0), and for librdkafka errors that are
/// none of the three. A commit that timed out in wdpool (WDPOOL_FATAL
/// without a Kafka code) has no flags: the producer is replaced all the
/// same.
///
/// Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub unsafe extern "C" fn wdpool_error_kafka_flags(error: *const wdpool_error) -> u32 {
    // SAFETY: as in `wdpool_error_code`.
    unsafe { error.as_ref() }.map_or(0, |e| e.kafka_flags)
}

/// Frees an error. `wdpool_error_free(NULL)` does nothing. The error and the
/// string `wdpool_error_message` returned must not be used afterwards. An
/// error is a plain pointer owned by the caller (not a handle): free it
/// exactly once.
///
/// Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub unsafe extern "C" fn wdpool_error_free(error: *mut wdpool_error) {
    if !error.is_null() {
        // SAFETY: a pointer from `fail`, freed once.
        drop(unsafe { Box::from_raw(error) });
    }
}

/// The name of a result code ("WDPOOL_TIMEOUT"), or "WDPOOL_UNKNOWN" for a
/// value that is not one. Static: never free it.
///
/// Blocks: never. Calls back: nothing. Thread: any.
#[no_mangle]
pub extern "C" fn wdpool_result_name(code: c_int) -> *const c_char {
    static NAMES: OnceLock<Vec<(c_int, CString)>> = OnceLock::new();
    let names = NAMES.get_or_init(|| ALL.iter().map(|c| (*c as c_int, c_string(&format!("{c:?}")))).collect());
    names.iter().find(|(c, _)| *c == code).map_or(c"WDPOOL_UNKNOWN".as_ptr(), |(_, name)| name.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn every_code_has_its_own_name() {
        for code in ALL {
            // SAFETY: wdpool_result_name returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(wdpool_result_name(*code as c_int)) }.to_str().unwrap();
            assert_eq!(name, format!("{code:?}"));
            assert!(name.starts_with("WDPOOL_"));
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(wdpool_result_name(42)) };
        assert_eq!(unknown.to_str().unwrap(), "WDPOOL_UNKNOWN");
    }
}
