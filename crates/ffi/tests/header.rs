//! The committed C header is exactly what cbindgen makes from `src/lib.rs` today: a drift (a new
//! function, a changed signature) fails here until the header is regenerated and committed.
//!
//! Regenerate with `SECURESTORE_BLESS=1 cargo test -p securestore-ffi --test header`.

use std::path::Path;

#[test]
fn the_committed_header_matches_the_code() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let generated = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen parses src/lib.rs");
    let mut fresh = Vec::new();
    generated.write(&mut fresh);
    let header = dir.join("include/securestore.h");
    if std::env::var_os("SECURESTORE_BLESS").is_some() {
        std::fs::write(&header, &fresh).expect("write the header");
    }
    let committed = std::fs::read(&header).expect("include/securestore.h is committed");
    assert!(
        committed == fresh,
        "include/securestore.h is out of date with src/lib.rs; regenerate it with \
         `SECURESTORE_BLESS=1 cargo test -p securestore-ffi --test header` and commit it.\n\
         --- generated ---\n{}",
        String::from_utf8_lossy(&fresh)
    );
    for function in [
        "securestore_connect",
        "securestore_get",
        "securestore_set",
        "securestore_delete",
        "securestore_client_free",
        "securestore_string_free",
        "securestore_value_free",
        "securestore_host_start_in_state",
        "securestore_host_lock",
        "securestore_host_unlock",
        "securestore_host_passcode_set",
        "securestore_host_passcode_removed",
        "securestore_host_device_status",
        "securestore_export_backup",
        "securestore_import_backup",
    ] {
        assert!(
            String::from_utf8_lossy(&fresh).contains(&format!(" {function}(")),
            "{function} is missing from the header"
        );
    }
}
