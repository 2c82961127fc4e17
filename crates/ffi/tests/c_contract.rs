//! The C ABI from C: `tests/c/contract.c`, compiled with the system `cc` against the committed
//! header and the library cargo built beside this test, run as its own process against a real
//! daemon (a [`HostHandle`] in this process, serving a real socket).

use std::path::{Path, PathBuf};
use std::process::Command;

use securestore_bridge::{HostHandle, HostOptions};

const VALUE_LIMIT: u32 = 1024;

/// `target/<profile>/deps`, where cargo leaves `libsecurestore.so` when it builds this crate.
fn deps_dir() -> PathBuf {
    std::env::current_exe()
        .expect("current exe")
        .parent()
        .expect("deps folder")
        .to_owned()
}

fn compile(dir: &Path) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let deps = deps_dir();
    assert!(
        deps.join("libsecurestore.so").exists(),
        "{} has no libsecurestore.so; run through `cargo test -p securestore-ffi`",
        deps.display()
    );
    let program = dir.join("contract");
    let status = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", "-o"])
        .arg(&program)
        .arg(crate_dir.join("tests/c/contract.c"))
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg("-L")
        .arg(&deps)
        .arg(format!("-Wl,-rpath,{}", deps.display()))
        .arg("-lsecurestore")
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed: {status}");
    program
}

#[test]
fn the_c_contract_passes_against_a_real_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = HostHandle::start(
        HostOptions {
            max_value_bytes: Some(VALUE_LIMIT),
            ..HostOptions::under(dir.path())
        },
        None,
    )
    .expect("host starts");
    let token = host.register_project("@c/registered").expect("register");
    let program = compile(dir.path());

    let output = Command::new(&program)
        .arg(host.socket())
        .arg("@c/registered")
        .arg(token.expose_secret())
        .arg(VALUE_LIMIT.to_string())
        .output()
        .expect("run the C program");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the C contract failed:\n{stdout}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.ends_with("passed, 0 failed"), "{summary}");
    host.stop().expect("host stops cleanly");
}
