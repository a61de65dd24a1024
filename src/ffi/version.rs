//! Which library a program loaded: the crate's version and the ABI version.
//!
//! `WDPOOL_ABI_VERSION` below is the only place the ABI version is written.
//! build.rs reads it from this file for the shared library's SONAME
//! (`libwdpool.so.<ABI version>`), and so does the Makefile for the SONAME
//! symlinks it makes: keep that line in the form `pub const ... = <digits>;`.

use std::ffi::{c_char, CStr};

/// The version of the C ABI this header describes, the N of the shared
/// library's SONAME `libwdpool.so.N`. Releases keep it while they only add
/// to the ABI (functions, constants, result codes); a change that breaks a
/// program built against it would need a new number, hence a new SONAME.
/// Compare it with `wdpool_abi_version()`.
pub const WDPOOL_ABI_VERSION: u32 = 1;

static VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
    Ok(v) => v,
    Err(_) => panic!("version contains NUL"),
};

/// wdpool's version ("0.1.0"), the same as `WDPOOL_VERSION`. Static: never
/// free it.
///
/// Never blocks and calls nothing back. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn wdpool_version() -> *const c_char {
    VERSION.as_ptr()
}

/// The ABI version of the loaded library: 1 for this header. A binding
/// compares it with the `WDPOOL_ABI_VERSION` it was written for and refuses
/// a library that returns anything else: a program linked with `-lwdpool`
/// asks for the SONAME and never gets another ABI version, but `dlopen` of
/// a file name or path (as Ruby's ffi does) loads whatever file is there.
///
/// Never blocks and calls nothing back. Thread safety: any thread.
#[no_mangle]
pub extern "C" fn wdpool_abi_version() -> u32 {
    WDPOOL_ABI_VERSION
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(wdpool_abi_version(), WDPOOL_ABI_VERSION);
        // SAFETY: a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(wdpool_version()) };
        assert_eq!(v.to_str(), Ok(env!("CARGO_PKG_VERSION")));
    }
}
