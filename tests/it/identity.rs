//! Peers are identified by the kernel: another uid is refused, whatever it sends.
//!
//! As root, the test runs the real CLI as an unprivileged uid (as Android keystore2's `run_as` helper
//! does). Not as root, it prints why it is skipped.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

use securestore_e2e::{Daemon, PROJECT, bin, is_root};

const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn a_peer_with_another_uid_is_refused() {
    if !is_root() {
        eprintln!(
            "SKIPPED a_peer_with_another_uid_is_refused: needs root to switch to uid {NOBODY}"
        );
        return;
    }
    let daemon = Daemon::start();
    // The CLI must be executable by the other uid wherever the build folder is.
    let cli = daemon.dir.path().join("securestore-cli");
    std::fs::copy(bin("securestore"), &cli).expect("copy cli");
    chmod(&cli, 0o755);
    chmod(daemon.dir.path(), 0o711);
    let as_nobody = || {
        let mut cmd = std::process::Command::new(&cli);
        cmd.uid(NOBODY)
            .gid(NOBODY)
            .arg("--socket")
            .arg(daemon.socket())
            .args(["--project", PROJECT, "get", "k"]);
        cmd.output().expect("run as nobody")
    };

    // First line of defence: the 0700 folder keeps the other uid from even connecting.
    let out = as_nobody();
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Open the folder and socket to everyone: the daemon's own SO_PEERCRED check must still refuse.
    chmod(daemon.socket().parent().expect("run dir"), 0o711);
    chmod(&daemon.socket(), 0o666);
    let out = as_nobody();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "refused, exit 3: {stderr}");
    assert!(
        stderr.contains("refused") && stderr.contains(&NOBODY.to_string()),
        "{stderr}"
    );
    assert!(
        daemon.log().contains("connection refused"),
        "the refusal is logged"
    );

    // Root, and the daemon's own uid, are still served.
    let out = daemon
        .cli()
        .args(["--project", PROJECT, "set", "k", "v"])
        .output()
        .expect("run");
    assert!(out.status.success());
}
