//! The daemon's life: socket permissions, a second daemon, stale sockets, restart, clean shutdown.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use securestore_client::{GetOptions, SetOptions};
use securestore_e2e::{Daemon, PROJECT, bin, securestored_in, value_of};

#[test]
fn socket_is_0600_in_a_0700_folder() {
    let daemon = Daemon::start();
    let socket = std::fs::metadata(daemon.socket()).expect("socket");
    assert_eq!(socket.permissions().mode() & 0o777, 0o600);
    let folder = std::fs::metadata(daemon.socket().parent().expect("parent")).expect("folder");
    assert_eq!(folder.permissions().mode() & 0o777, 0o700);
    let key = std::fs::metadata(daemon.key_file()).expect("key file");
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    assert_eq!(socket.uid(), rustix::process::getuid().as_raw());
}

#[test]
fn a_second_daemon_on_a_live_socket_refuses_to_start() {
    let daemon = Daemon::start();
    let out = daemon.command().output().expect("run second daemon");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already using the socket"), "{stderr}");
    // The first daemon is untouched.
    assert!(std::os::unix::net::UnixStream::connect(daemon.socket()).is_ok());
}

#[test]
fn a_stale_socket_is_replaced_and_other_files_are_not() {
    let mut daemon = Daemon::start();
    daemon.kill(); // SIGKILL leaves the socket file behind.
    assert!(
        daemon.socket().exists(),
        "a killed daemon leaves its socket"
    );
    daemon.spawn().expect("starts over a stale socket");
    daemon.kill();

    std::fs::remove_file(daemon.socket()).expect("remove");
    std::fs::write(daemon.socket(), b"not a socket").expect("write");
    let err = daemon.spawn().expect_err("must not replace a regular file");
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(
        std::fs::read(daemon.socket()).expect("still there"),
        b"not a socket"
    );
}

#[test]
fn a_socket_folder_others_can_enter_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = std::process::Command::new(bin("securestored"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--key-file")
        .arg(dir.path().join("master.key"))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("mode 0700"), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing is opened before the socket is safe"
    );
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_data_survives_restart() {
    let mut daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    client
        .set_item("persisted", "still here", SetOptions::default())
        .await
        .expect("set");
    drop(client);

    let status = daemon.stop();
    assert!(status.success(), "SIGTERM exits 0: {status}");
    assert!(!daemon.socket().exists(), "the socket is removed");
    let log = daemon.log();
    assert!(log.contains("store closed cleanly"), "{log}");

    daemon.spawn().expect("restart");
    let client = daemon.client(PROJECT).await;
    assert_eq!(
        value_of(&client, "persisted", None).await.as_deref(),
        Some("still here")
    );
}

/// A supervisor that stops the daemon as soon as its socket appears, while the store may still be
/// opening (a long migration, say), gets a clean stop: exit 0, the store closed, the socket gone.
#[test]
fn sigterm_while_the_store_opens_stops_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log");
    let mut child = securestored_in(dir.path())
        .stdin(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn");
    let socket = dir.path().join("run/securestored.sock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !socket.exists() {
        assert!(std::time::Instant::now() < deadline, "no socket in time");
        std::thread::sleep(std::time::Duration::from_micros(100));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = child.wait().expect("wait");
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).expect("log");
    assert!(
        status.success(),
        "SIGTERM during start-up exits 0: {status}\n{log}"
    );
    assert!(log.contains("store closed cleanly"), "{log}");
    assert!(!socket.exists(), "the socket is removed");
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let mut daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    for i in 0..20 {
        client
            .set_item(&format!("k{i}"), format!("v{i}"), SetOptions::default())
            .await
            .expect("set");
    }
    client
        .delete_item("k0", Default::default())
        .await
        .expect("delete");
    daemon.kill();

    daemon.spawn().expect("restart after SIGKILL");
    let client = daemon.client(PROJECT).await;
    assert!(
        client
            .get_item("k0", GetOptions::default())
            .await
            .expect("get")
            .is_none(),
        "delete held"
    );
    for i in 1..20 {
        assert_eq!(
            value_of(&client, &format!("k{i}"), None).await,
            Some(format!("v{i}"))
        );
    }
}

#[tokio::test]
async fn a_missing_master_key_stops_the_daemon_from_starting() {
    let mut daemon = Daemon::start();
    daemon
        .client(PROJECT)
        .await
        .set_item("k", "v", SetOptions::default())
        .await
        .expect("set");
    daemon.stop();
    let key = std::fs::read(daemon.key_file()).expect("key");
    std::fs::remove_file(daemon.key_file()).expect("remove key");

    let err = daemon.spawn().expect_err("refuses without its key");
    assert!(
        err.contains("master.key") && err.contains("securestore.db"),
        "names both files: {err}"
    );
    assert!(
        !daemon.key_file().exists(),
        "no new key is made over existing data"
    );

    std::fs::write(daemon.key_file(), &key).expect("restore key");
    std::fs::set_permissions(daemon.key_file(), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    daemon.spawn().expect("starts with its key back");
    let client = daemon.client(PROJECT).await;
    assert_eq!(value_of(&client, "k", None).await.as_deref(), Some("v"));
}

#[tokio::test]
async fn a_damaged_database_or_a_wrong_key_stops_the_daemon_from_starting() {
    let mut daemon = Daemon::start();
    daemon
        .client(PROJECT)
        .await
        .set_item("k", "v", SetOptions::default())
        .await
        .expect("set");
    daemon.stop();

    // Another key in the key file: refused, naming both files; the database is untouched.
    let key = std::fs::read(daemon.key_file()).expect("key");
    let db = daemon.data_dir().join("securestore.db");
    let db_before = std::fs::read(&db).expect("db");
    std::fs::write(daemon.key_file(), [0x42u8; 32]).expect("write wrong key");
    let err = daemon.spawn().expect_err("refuses a wrong key");
    assert!(
        err.contains("does not match") && err.contains("securestore.db"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).expect("db"),
        db_before,
        "the database is untouched"
    );
    std::fs::write(daemon.key_file(), &key).expect("restore key");

    // A damaged database: refused, naming the file; never replaced by an empty one.
    let mut damaged = db_before.clone();
    damaged[..16].copy_from_slice(b"not a database!!");
    std::fs::write(&db, &damaged).expect("damage");
    let err = daemon.spawn().expect_err("refuses a damaged database");
    assert!(
        err.contains("damaged") && err.contains("securestore.db"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&db).expect("db"),
        damaged,
        "the damaged file is left for recovery"
    );

    std::fs::write(&db, &db_before).expect("repair");
    daemon.spawn().expect("starts again once repaired");
    let client = daemon.client(PROJECT).await;
    assert_eq!(value_of(&client, "k", None).await.as_deref(), Some("v"));
}

#[test]
fn a_second_daemon_on_the_same_data_folder_refuses_to_start() {
    let daemon = Daemon::start();
    let other_run = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(bin("securestored"))
        .arg("--socket")
        .arg(other_run.path().join("run/other.sock"))
        .arg("--data-dir")
        .arg(daemon.data_dir())
        .arg("--key-file")
        .arg(daemon.key_file())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("another securestored is already using the data folder"),
        "{stderr}"
    );
    assert!(
        !other_run.path().join("run/other.sock").exists(),
        "it cleaned up its socket"
    );
    assert!(
        std::os::unix::net::UnixStream::connect(daemon.socket()).is_ok(),
        "the first is untouched"
    );
}

#[tokio::test]
async fn sigterm_with_writes_in_flight_loses_no_acknowledged_write() {
    let mut daemon = Daemon::start();
    let socket = daemon.socket();
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let socket = socket.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let Ok(client) = securestore_client::Client::connect(&socket, PROJECT).await else {
                    return acknowledged;
                };
                for i in 0.. {
                    let key = format!("w{w}-k{i}");
                    match client.set_item(&key, "v", SetOptions::default()).await {
                        Ok(()) => acknowledged.push(key),
                        Err(_) => break,
                    }
                }
                acknowledged
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let status = daemon.stop();
    assert!(status.success(), "a clean exit under load: {status}");
    let mut acknowledged = Vec::new();
    for writer in writers {
        acknowledged.extend(writer.await.expect("writer ends once the daemon stops"));
    }
    assert!(
        acknowledged.len() > 16,
        "the writers made progress before the stop"
    );

    daemon.spawn().expect("restart");
    let client = daemon.client(PROJECT).await;
    for key in &acknowledged {
        let found = client
            .get_item(key, GetOptions::default())
            .await
            .expect("get");
        assert!(
            found.is_some(),
            "{key} was acknowledged before SIGTERM and must be stored"
        );
    }
}
