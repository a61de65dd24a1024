//! The only place with `extern "C"` and raw pointers: handles, results,
//! errors, the panic boundary and callback types. Every export checks its
//! pointers, converts strings as UTF-8 and runs its body inside
//! [`boundary`], so no panic crosses into C.
//!
//! Every export that takes a pointer is `unsafe`: its documentation (which
//! becomes the header's) states the contract the C caller must keep, so a
//! separate `# Safety` section would only repeat it.
#![allow(clippy::missing_safety_doc)]

mod config;
mod delivery;
mod events;
mod fence;
mod frames;
mod message;
mod mock;
mod pins;
mod pool;
mod producer;
mod registry;
mod reports;
mod slots;
mod through;
mod result;
mod version;

use std::ffi::{c_char, c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

pub use config::*;
pub use delivery::*;
pub use events::*;
pub use message::*;
pub use mock::*;
pub use pool::*;
pub use producer::*;
pub use reports::*;
pub use through::*;
pub use slots::*;
pub use result::*;
pub use version::*;

use crate::error::{Error, ErrorKind, Result};
use crate::pool::Owner;

/// A callback's "it worked". Anything else is a failure: a Ruby exception
/// escaping an ffi callback makes it return 0, which must never read as
/// success, so success is deliberately not 0.
pub const WDPOOL_CB_OK: c_int = 1;
/// A transaction callback's "roll back, but this is no error" (WaterDrop's
/// abort signal): the transaction is aborted and the call returns WDPOOL_OK.
pub const WDPOOL_CB_ABORT: c_int = 2;
/// A timeout argument meaning "the pool's own checkout timeout".
pub const WDPOOL_TIMEOUT_DEFAULT: i64 = -1;

/// Runs an export's body: a returned error or a caught panic becomes a
/// result code, with details in `*err_out` when it is not NULL.
///
/// # Safety
/// `err_out` is NULL or valid for writes.
#[inline(always)]
pub(crate) unsafe fn boundary(err_out: *mut *mut wdpool_error, body: impl FnOnce() -> Result<()>) -> wdpool_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => wdpool_result::WDPOOL_OK,
        // SAFETY: `err_out` as promised by the caller.
        Ok(Err(e)) => unsafe { result::fail(err_out, e) },
        // SAFETY: as above.
        Err(panic) => unsafe { panicked(err_out, panic) },
    }
}

/// A caught panic as a result code (out of line: never on a hot path).
///
/// # Safety
/// `err_out` is NULL or valid for writes.
#[cold]
#[inline(never)]
unsafe fn panicked(err_out: *mut *mut wdpool_error, panic: Box<dyn std::any::Any + Send>) -> wdpool_result {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned());
    let e = Error::new(ErrorKind::Panic, format!("wdpool panicked (a bug): {what}"));
    // SAFETY: `err_out` as promised by the caller.
    unsafe { result::fail(err_out, e) }
}

/// Like [`boundary`] for exports that cannot report errors: a panic gives
/// `fallback`.
pub(crate) fn guarded<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

pub(crate) fn null(what: &str) -> Error {
    Error::new(ErrorKind::NullParameter, format!("{what} is NULL"))
}

/// Writes an out-parameter (checked for NULL first by the caller).
///
/// # Safety
/// `ptr` is valid for writes.
pub(crate) unsafe fn write_out<T>(ptr: *mut T, value: T) {
    // SAFETY: as promised by the caller.
    unsafe { ptr.write(value) }
}

/// A required NUL-terminated UTF-8 string.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn utf8<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: not NULL, and NUL-terminated as promised by the caller.
    unsafe { CStr::from_ptr(ptr) }
        .to_str()
        .map_err(|e| Error::new(ErrorKind::InvalidArgument, format!("{what} is not valid UTF-8: {e}")))
}

/// A timeout argument: negative (WDPOOL_TIMEOUT_DEFAULT) means the call's
/// default.
pub(crate) fn timeout_arg(timeout_ms: i64) -> Option<Duration> {
    u64::try_from(timeout_ms).ok().map(Duration::from_millis)
}

pub(crate) fn timeout_or(timeout_ms: i64, default: Duration) -> Duration {
    timeout_arg(timeout_ms).unwrap_or(default)
}

/// The deadline of a call that waits at most `timeout_ms`.
pub(crate) fn deadline_arg(timeout_ms: i64, default: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout_or(timeout_ms, default))
}

/// Who a checkout is for: a nested checkout by the same owner gets the same
/// producer, and a transaction belongs to the owner that began it.
/// WDPOOL_OWNER_THREAD (0): the calling OS thread (C and C++ threads).
/// WDPOOL_OWNER_NONE: nobody; every checkout is a fresh one. Any other
/// value is a key the caller chooses (a Ruby Fiber's id, a Go context's
/// token), re-entrant whatever OS thread it calls from: keys must be unique
/// among the callers that are live at once.
#[allow(non_camel_case_types)]
pub type wdpool_owner = u64;
/// The calling OS thread owns the checkout.
pub const WDPOOL_OWNER_THREAD: wdpool_owner = 0;
/// Nobody owns the checkout: never re-entrant.
pub const WDPOOL_OWNER_NONE: wdpool_owner = u64::MAX;

pub(crate) fn owner_arg(owner: wdpool_owner) -> Owner {
    match owner {
        WDPOOL_OWNER_THREAD => Owner::Thread,
        WDPOOL_OWNER_NONE => Owner::Unique,
        key => Owner::Key(key),
    }
}
