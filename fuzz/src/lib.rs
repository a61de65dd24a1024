//! What the fuzz targets share: C strings made from the fuzzer's bytes, and
//! the checks every call through the C ABI must pass whatever its input:
//! never WDPOOL_PANIC (libfuzzer-sys also aborts on any Rust panic, caught
//! or not), and a failure comes with an error whose code is the call's
//! result and whose message is non-empty UTF-8.

use std::ffi::{c_char, c_int, CStr, CString};
use std::ptr;

use arbitrary::Arbitrary;
use wdpool::ffi::*;

/// Which produce call a target makes.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum How {
    Sync,
    Async,
    ManySync,
    ManyAsync,
}

/// The string C sees in `bytes`: up to the first NUL.
pub fn c_string(bytes: &[u8]) -> CString {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).expect("no NUL before end")
}

/// A string parameter that may be NULL.
pub struct OptStr(Option<CString>);

impl OptStr {
    pub fn new(bytes: Option<&[u8]>) -> Self {
        OptStr(bytes.map(c_string))
    }

    pub fn ptr(&self) -> *const c_char {
        self.0.as_ref().map_or(ptr::null(), |s| s.as_ptr())
    }

    /// The string's bytes (without its NUL), or None for NULL.
    pub fn bytes(&self) -> Option<&[u8]> {
        self.0.as_ref().map(|s| s.as_bytes())
    }
}

/// A call's result and, on failure, its error message.
#[derive(Debug)]
pub struct Outcome {
    pub rc: wdpool_result,
    pub message: String,
}

impl Outcome {
    pub fn ok(&self) -> bool {
        self.rc == wdpool_result::WDPOOL_OK
    }
}

/// Calls `f` with an error out-parameter, checks what came back and frees
/// the error.
pub fn call(f: impl FnOnce(*mut *mut wdpool_error) -> wdpool_result) -> Outcome {
    let mut err: *mut wdpool_error = ptr::null_mut();
    let rc = f(&mut err);
    Outcome { rc, message: take_error(rc, err) }
}

/// Like [`call`], or with a NULL error out-parameter when `with_err` is
/// false (every export must accept that).
pub fn call_maybe(with_err: bool, f: impl FnOnce(*mut *mut wdpool_error) -> wdpool_result) -> Outcome {
    if with_err {
        return call(f);
    }
    let rc = f(ptr::null_mut());
    assert_ne!(rc, wdpool_result::WDPOOL_PANIC, "a panic crossed into the result (err NULL)");
    Outcome { rc, message: String::new() }
}

/// Checks `err` against `rc`, returns its message and frees it.
pub fn take_error(rc: wdpool_result, err: *mut wdpool_error) -> String {
    // SAFETY: wdpool_result_name returns a static NUL-terminated string.
    let name = unsafe { CStr::from_ptr(wdpool_result_name(rc as c_int)) }.to_str().expect("ASCII name");
    assert_ne!(name, "WDPOOL_UNKNOWN", "{rc:?} has no name");
    if rc == wdpool_result::WDPOOL_OK {
        assert!(err.is_null(), "an error was written on success");
        return String::new();
    }
    assert!(!err.is_null(), "{rc:?} without an error");
    // SAFETY: `err` was just made by wdpool.
    let (code, message) = unsafe { (wdpool_error_code(err), CStr::from_ptr(wdpool_error_message(err))) };
    let message = message.to_str().expect("error messages are UTF-8").to_owned();
    // SAFETY: as above; freed once.
    unsafe {
        let _ = wdpool_error_kafka_code(err);
        wdpool_error_free(err);
    }
    assert_eq!(code, rc, "the error's code is not the call's result: {message}");
    assert!(!message.trim().is_empty(), "{rc:?} with an empty message");
    assert_ne!(rc, wdpool_result::WDPOOL_PANIC, "wdpool panicked: {message}");
    message
}

/// Threads of this process now (`/proc/self/task`).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}
