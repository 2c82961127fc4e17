//! `securestored`'s flags. (Having an integration test here also makes `cargo test --workspace`
//! build the `securestored` binary that the end-to-end tests in `tests/` run.)

use std::process::Command;

fn securestored() -> Command {
    Command::new(env!("CARGO_BIN_EXE_securestored"))
}

#[test]
fn help_and_version_exit_zero() {
    let help = securestored().arg("--help").output().expect("run");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--socket",
        "--data-dir",
        "--key-file",
        "--max-value-bytes",
        "SECURESTORE_SOCKET",
    ] {
        assert!(text.contains(flag), "--help mentions {flag}");
    }
    assert!(
        securestored()
            .arg("--version")
            .output()
            .expect("run")
            .status
            .success()
    );
}

#[test]
fn bad_flags_are_usage_errors() {
    for args in [
        &["--max-value-bytes", "0"][..],
        &["--max-value-bytes", "-5"],
        &["--max-value-bytes", "99999999999"],
        &["--max-connections", "0"],
        &["--no-such-flag"],
    ] {
        let out = securestored().args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}
