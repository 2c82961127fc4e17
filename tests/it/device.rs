//! Accessibility classes, device state, backup and key rotation, through the real daemon and CLI:
//! lock and unlock signalled by `securestore device`, what each class answers in each state, a
//! removed passcode deleting its items (and telling watchers), export and import across two daemons
//! with different master keys (and every refused file), and master-key rotation killed at every
//! step and at random moments.

use std::path::Path;
use std::time::Duration;

use securestore_client::{
    ChangeKind, Client, GetOptions, KeychainAccessible, SetOptions, WatchFilter,
};
use securestore_e2e::{Daemon, PROJECT};

fn device(daemon: &Daemon, args: &[&str]) -> String {
    let mut all = vec!["device"];
    all.extend_from_slice(args);
    let out = daemon.run_cli(&all);
    assert!(
        out.status.success(),
        "device {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn key_of(class: KeychainAccessible) -> String {
    format!("c{}", u8::from(class))
}

async fn store_every_class(client: &Client) {
    for class in KeychainAccessible::ALL {
        client
            .set_item(
                &key_of(class),
                format!("v-{class}"),
                SetOptions {
                    keychain_service: None,
                    keychain_accessible: class,
                },
            )
            .await
            .expect("set");
    }
}

fn available_when_locked(class: KeychainAccessible) -> bool {
    matches!(
        class,
        KeychainAccessible::Always
            | KeychainAccessible::AlwaysThisDeviceOnly
            | KeychainAccessible::AfterFirstUnlock
            | KeychainAccessible::AfterFirstUnlockThisDeviceOnly
    )
}

#[tokio::test]
async fn a_locked_device_answers_locked_for_when_unlocked_items_and_the_cli_exits_7() {
    let daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    store_every_class(&client).await;
    assert_eq!(device(&daemon, &["status"]), "unlocked, passcode set");
    assert_eq!(device(&daemon, &["lock"]), "locked, passcode set");

    for class in KeychainAccessible::ALL {
        let got = client.get_item(&key_of(class), GetOptions::default()).await;
        if available_when_locked(class) {
            assert_eq!(
                got.expect("readable").expect("present").expose_secret(),
                format!("v-{class}")
            );
        } else {
            assert!(
                matches!(
                    got,
                    Err(securestore_client::Error::Service(
                        securestore_client::ServiceError::Locked { .. }
                    ))
                ),
                "{class} while locked: {got:?}"
            );
        }
        let out = daemon.run_cli(&["--project", PROJECT, "get", &key_of(class)]);
        let expected = if available_when_locked(class) { 0 } else { 7 };
        assert_eq!(out.status.code(), Some(expected), "CLI get of {class}");
    }
    // A WHEN_UNLOCKED set is refused; deleting and listing still work.
    let out = securestore_e2e::run_with_stdin(
        daemon.cli().args([
            "--project",
            PROJECT,
            "set",
            "new",
            "--accessible",
            "WHEN_UNLOCKED",
        ]),
        b"x",
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(client.list_keys(None).await.expect("list").len() >= 7);

    assert_eq!(device(&daemon, &["unlock"]), "unlocked, passcode set");
    for class in KeychainAccessible::ALL {
        assert!(
            client
                .get_item(&key_of(class), GetOptions::default())
                .await
                .expect("get")
                .is_some()
        );
    }
    assert!(daemon.log().contains("device state changed"));
}

#[tokio::test]
async fn a_host_daemon_starts_before_the_first_unlock_and_a_restart_returns_there() {
    let mut daemon = Daemon::start_with(&["--device-state", "before-first-unlock"]);
    assert_eq!(
        device(&daemon, &["status"]),
        "before-first-unlock, passcode set"
    );
    let client = daemon.client(PROJECT).await;
    let afu = SetOptions {
        keychain_service: None,
        keychain_accessible: KeychainAccessible::AfterFirstUnlock,
    };
    assert!(
        client.set_item("k", "v", afu.clone()).await.is_err(),
        "not before the first unlock"
    );
    client
        .set_item(
            "always",
            "a",
            SetOptions {
                keychain_service: None,
                keychain_accessible: KeychainAccessible::Always,
            },
        )
        .await
        .expect("ALWAYS items are always available");
    device(&daemon, &["unlock"]);
    device(&daemon, &["lock"]);
    client
        .set_item("k", "v", afu)
        .await
        .expect("after the first unlock, even locked");
    drop(client);
    daemon.restart();
    let client = daemon.client(PROJECT).await;
    assert!(
        client.get_item("k", GetOptions::default()).await.is_err(),
        "a restart forgets the unlock"
    );
    assert_eq!(
        client
            .get_item("always", GetOptions::default())
            .await
            .expect("get")
            .map(|v| v.expose_secret().to_owned())
            .as_deref(),
        Some("a")
    );
}

#[tokio::test]
async fn removing_the_passcode_deletes_its_items_durably_and_watchers_hear_it() {
    let mut daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    store_every_class(&client).await;
    let watcher = client.watch(WatchFilter::default()).await.expect("watch");
    assert_eq!(
        device(&daemon, &["passcode", "removed"]),
        "unlocked, passcode not set"
    );
    let gone = key_of(KeychainAccessible::WhenPasscodeSetThisDeviceOnly);
    let events = client
        .poll_events(watcher, Duration::from_secs(5))
        .await
        .expect("poll");
    assert!(
        events
            .events
            .iter()
            .any(|e| e.kind == ChangeKind::Deleted && e.key.as_deref() == Some(gone.as_str())),
        "{events:?}"
    );
    let out = securestore_e2e::run_with_stdin(
        daemon.cli().args([
            "--project",
            PROJECT,
            "set",
            "again",
            "--accessible",
            "WHEN_PASSCODE_SET_THIS_DEVICE_ONLY",
        ]),
        b"x",
    );
    assert_eq!(out.status.code(), Some(3), "no passcode: refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("passcode"));
    drop(client);
    daemon.kill();
    daemon.spawn().expect("restart");
    let client = daemon.client(PROJECT).await;
    assert!(
        client
            .get_item(&gone, GetOptions::default())
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        client
            .get_item(
                &key_of(KeychainAccessible::WhenUnlocked),
                GetOptions::default()
            )
            .await
            .expect("get")
            .is_some()
    );
}

fn passphrase_file(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join(format!("pass-{}", text.len()));
    std::fs::write(&path, text).expect("write");
    path
}

#[tokio::test]
async fn a_backup_restores_on_another_daemon_with_another_key_and_bad_files_import_nothing() {
    let source = Daemon::start();
    let client = source.client(PROJECT).await;
    store_every_class(&client).await;
    let work = tempfile::tempdir().expect("tempdir");
    let pass = passphrase_file(work.path(), "correct horse battery");
    let backup = work.path().join("backup.ssb");
    let out = source.run_cli(&[
        "--project",
        PROJECT,
        "export",
        "--passphrase-file",
        pass.to_str().expect("utf-8"),
        "-o",
        backup.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sealed = std::fs::read(&backup).expect("backup");
    assert!(
        !sealed.windows(9).any(|w| w == b"v-WHEN_UN"),
        "values never appear in clear"
    );

    let target = Daemon::start();
    assert_ne!(
        std::fs::read(source.key_file()).expect("key"),
        std::fs::read(target.key_file()).expect("key")
    );
    let import = |file: &Path, pass: &Path, extra: &[&str]| {
        let mut args = vec![
            "--project",
            PROJECT,
            "import",
            file.to_str().expect("utf-8"),
            "--passphrase-file",
            pass.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        target.run_cli(&args)
    };
    let target_client = target.client(PROJECT).await;

    // Every refused file imports nothing.
    let wrong = passphrase_file(work.path(), "wrong");
    let mut cases: Vec<(&str, Vec<u8>, &Path)> = vec![("wrong passphrase", sealed.clone(), &wrong)];
    cases.push(("truncated", sealed[..sealed.len() - 10].to_vec(), &pass));
    let mut flipped = sealed.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    cases.push(("tampered", flipped, &pass));
    let mut newer = sealed.clone();
    newer[8] = 2;
    cases.push(("newer format", newer, &pass));
    cases.push(("not a backup", b"hello".to_vec(), &pass));
    for (case, bytes, pass) in cases {
        let file = work.path().join("bad.ssb");
        std::fs::write(&file, &bytes).expect("write");
        let out = import(&file, pass, &[]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{case}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            target_client
                .list_keys(None)
                .await
                .expect("list")
                .is_empty(),
            "{case}: nothing imported"
        );
    }
    let newer_err = {
        let file = work.path().join("newer.ssb");
        let mut newer = sealed.clone();
        newer[8] = 2;
        std::fs::write(&file, newer).expect("write");
        String::from_utf8(import(&file, &pass, &[]).stderr).expect("utf-8")
    };
    assert!(newer_err.contains("upgrade"), "{newer_err}");

    // An existing item is kept unless --replace.
    target_client
        .set_item(
            &key_of(KeychainAccessible::Always),
            "mine",
            SetOptions::default(),
        )
        .await
        .expect("set");
    let out = import(&backup, &pass, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "added 2 replaced 0 skipped 1"
    );
    for class in KeychainAccessible::ALL {
        let got = target_client
            .get_item_entry(&key_of(class), GetOptions::default())
            .await
            .expect("get");
        match class {
            KeychainAccessible::Always => {
                assert_eq!(got.expect("kept").value.expose_secret(), "mine");
            }
            class if class.this_device_only() => assert!(got.is_none(), "{class} never exported"),
            class => {
                let item = got.expect("imported");
                assert_eq!(item.value.expose_secret(), format!("v-{class}"));
                assert_eq!(item.accessible, class);
            }
        }
    }
    let out = import(&backup, &pass, &["--replace"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "added 0 replaced 3 skipped 0"
    );
    assert_eq!(
        target_client
            .get_item(&key_of(KeychainAccessible::Always), GetOptions::default())
            .await
            .expect("get")
            .expect("item")
            .expose_secret(),
        "v-ALWAYS"
    );

    // Locked: an export refuses rather than leave the WHEN_UNLOCKED item out.
    device(&source, &["lock"]);
    let out = source.run_cli(&[
        "--project",
        PROJECT,
        "export",
        "--passphrase-file",
        pass.to_str().expect("utf-8"),
        "-o",
        work.path().join("locked.ssb").to_str().expect("utf-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every item, readable with the key file in place, and no rotation leftovers.
async fn assert_all_readable(daemon: &Daemon, keys: usize) {
    let client = daemon.client(PROJECT).await;
    for i in 0..keys {
        let class = KeychainAccessible::ALL[i % 7];
        let got = client
            .get_item(&format!("k{i}"), GetOptions::default())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "k{i} ({class}) after a crashed rotation: {e}\n{}",
                    daemon.log()
                )
            });
        assert_eq!(got.expect("present").expose_secret(), format!("value {i}"));
    }
    let next = daemon.key_file().with_file_name("master.key.next");
    assert!(
        !next.exists(),
        "the rotation's new key file is gone once the daemon is up"
    );
}

async fn fill(daemon: &Daemon, keys: usize) {
    let client = daemon.client(PROJECT).await;
    for i in 0..keys {
        client
            .set_item(
                &format!("k{i}"),
                format!("value {i}"),
                SetOptions {
                    keychain_service: None,
                    keychain_accessible: KeychainAccessible::ALL[i % 7],
                },
            )
            .await
            .expect("set");
    }
}

#[tokio::test]
async fn key_rotation_killed_at_each_step_leaves_every_item_readable() {
    const KEYS: usize = 21;
    let mut daemon = Daemon::start();
    fill(&daemon, KEYS).await;
    for step in [
        "rotate:next-key-written",
        "rotate:before-commit",
        "rotate:committed",
        "rotate:installed",
    ] {
        daemon.stop();
        daemon.set_env(&[("SECURESTORE_FAILPOINT", step)]);
        daemon.spawn().expect("start with the failpoint");
        let before = std::fs::read(daemon.key_file()).expect("key");
        let out = daemon.run_cli(&["key", "rotate"]);
        assert!(
            !out.status.success(),
            "{step}: the daemon aborted mid-rotation"
        );
        let status = daemon.wait_exit();
        assert!(!status.success(), "{step}: aborted");
        daemon.set_env(&[]);
        daemon.spawn().expect("restart after the crash");
        assert_all_readable(&daemon, KEYS).await;
        let after = std::fs::read(daemon.key_file()).expect("key");
        let rotated = matches!(step, "rotate:committed" | "rotate:installed");
        assert_eq!(
            after != before,
            rotated,
            "{step}: the new key is in place exactly when the database took it"
        );
    }
    let out = daemon.run_cli(&["key", "rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    daemon.restart();
    assert_all_readable(&daemon, KEYS).await;
}

#[tokio::test]
async fn key_rotation_killed_at_random_moments_leaves_every_item_readable() {
    const KEYS: usize = 14;
    let rounds: u64 = std::env::var("SECURESTORE_ROTATION_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(12);
    let mut daemon = Daemon::start();
    fill(&daemon, KEYS).await;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut rotated = 0;
    for round in 0..rounds {
        let before = std::fs::read(daemon.key_file()).expect("key");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % 8_000);
        let mut rotate = daemon
            .cli()
            .args(["key", "rotate"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("rotate");
        std::thread::sleep(delay);
        daemon.kill();
        let _ = rotate.wait();
        daemon
            .spawn()
            .unwrap_or_else(|e| panic!("round {round} ({delay:?}): {e}"));
        assert_all_readable(&daemon, KEYS).await;
        rotated += u32::from(std::fs::read(daemon.key_file()).expect("key") != before);
    }
    // Shown, not asserted: where the kills land depends on the machine.
    println!("{rounds} rounds killed at random moments; {rotated} ended with the new key in place");
}
