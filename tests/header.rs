//! The committed include/wdpool.h must be exactly what cbindgen generates
//! from the sources now. `make header` (WDPOOL_BLESS=1) rewrites it.

use std::path::Path;

fn generate() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml parses");
    let mut out = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root)
        .with_config(config)
        .with_after_include(format!(
            "\n#define WDPOOL_VERSION \"{}\"\n#define WDPOOL_VERSION_MAJOR {}\n#define WDPOOL_VERSION_MINOR {}\n#define WDPOOL_VERSION_PATCH {}",
            env!("CARGO_PKG_VERSION"),
            env!("CARGO_PKG_VERSION_MAJOR"),
            env!("CARGO_PKG_VERSION_MINOR"),
            env!("CARGO_PKG_VERSION_PATCH"),
        ))
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn committed_header_is_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/wdpool.h");
    let fresh = generate();
    if std::env::var_os("WDPOOL_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("writing include/wdpool.h");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "include/wdpool.h is stale: run `make header` and commit it"
    );
}

#[test]
fn header_declares_the_version_of_the_crate() {
    let fresh = generate();
    let major: u32 = env!("CARGO_PKG_VERSION_MAJOR").parse().unwrap();
    let minor: u32 = env!("CARGO_PKG_VERSION_MINOR").parse().unwrap();
    let patch: u32 = env!("CARGO_PKG_VERSION_PATCH").parse().unwrap();
    assert!(env!("CARGO_PKG_VERSION").starts_with(&format!("{major}.{minor}.{patch}")));
    for line in [
        format!("#define WDPOOL_VERSION \"{}\"", env!("CARGO_PKG_VERSION")),
        format!("#define WDPOOL_VERSION_MAJOR {major}"),
        format!("#define WDPOOL_VERSION_MINOR {minor}"),
        format!("#define WDPOOL_VERSION_PATCH {patch}"),
    ] {
        assert!(fresh.lines().any(|l| l == line), "missing {line}");
    }
}

#[test]
fn header_declares_the_abi_version_of_the_library() {
    let fresh = generate();
    let line = format!("#define WDPOOL_ABI_VERSION {}", wdpool::ffi::WDPOOL_ABI_VERSION);
    assert!(fresh.lines().any(|l| l == line), "missing {line}");
    assert_eq!(wdpool::ffi::wdpool_abi_version(), wdpool::ffi::WDPOOL_ABI_VERSION);
    let version = unsafe { std::ffi::CStr::from_ptr(wdpool::ffi::wdpool_version()) };
    assert_eq!(version.to_str(), Ok(env!("CARGO_PKG_VERSION")));
}

/// Every name the header defines is wdpool's: macros start with `WDPOOL_`,
/// types and functions with `wdpool_`. (cbindgen exports every public Rust
/// constant; three once reached the header as `RETRIABLE`, `FATAL` and
/// `TXN_REQUIRES_ABORT`, names a C program's own headers may well use.)
#[test]
fn header_names_are_prefixed() {
    let fresh = generate();
    let mut bad = Vec::new();
    for line in fresh.lines() {
        let name = if let Some(rest) = line.strip_prefix("#define ") {
            rest.split_whitespace().next().filter(|n| !n.starts_with("WDPOOL_"))
        } else if let Some(rest) = ["typedef struct ", "typedef enum ", "struct ", "enum "]
            .iter()
            .find_map(|p| line.strip_prefix(p))
        {
            rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().filter(|n| !n.is_empty() && !n.starts_with("wdpool_"))
        } else {
            None
        };
        bad.extend(name.map(str::to_owned));
    }
    assert!(bad.is_empty(), "names without wdpool's prefix in the header: {bad:?}");
}
