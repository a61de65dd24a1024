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
        .with_after_include(format!("\n#define WDPOOL_VERSION \"{}\"", env!("CARGO_PKG_VERSION")))
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
    let line = format!("#define WDPOOL_VERSION \"{}\"", env!("CARGO_PKG_VERSION"));
    assert!(fresh.contains(&line), "missing {line}");
}
