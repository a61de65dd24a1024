//! Gives the shared library (the cdylib) its SONAME, `libwdpool.so.<ABI
//! version>`, so that programs linked with `-lwdpool` record that name and
//! an incompatible library (another ABI version) is never loaded for them.
//! The ABI version is `WDPOOL_ABI_VERSION` in src/ffi/version.rs, read from
//! there so that it is written once.

use std::path::Path;

const VERSION_RS: &str = "src/ffi/version.rs";
const PREFIX: &str = "pub const WDPOOL_ABI_VERSION: u32 = ";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={VERSION_RS}");

    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let path = Path::new(&manifest_dir).join(VERSION_RS);
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let abi_version: u32 = source
        .lines()
        .find_map(|line| line.strip_prefix(PREFIX)?.strip_suffix(';')?.parse().ok())
        .unwrap_or_else(|| panic!("{VERSION_RS} has no line `{PREFIX}<digits>;`"));

    // ELF platforms only: macOS (install_name) and Windows have their own
    // schemes, not handled here.
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if !matches!(os.as_str(), "macos" | "ios" | "tvos" | "watchos" | "visionos" | "windows") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libwdpool.so.{abi_version}");
    }
}
