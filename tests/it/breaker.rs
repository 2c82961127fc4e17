//! Adversarial review findings ("break this") for device states, the key hierarchy, backups and
//! master-key rotation, kept as regression tests once fixed, and the probes that held up. The two
//! findings that are design limits (3: any process of the daemon's uid may send admin requests;
//! 11: rotation and binding re-wrap the data keys, they do not re-key) stay `#[ignore]`d, and
//! `docs/security.md` states them. Tests that need root (tmpfs, `chattr`) skip otherwise.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use securestore_client::{
    ConnectOptions, Error, GetOptions, KeychainAccessible, SecretString, ServiceError, SetOptions,
    admin,
};
use securestore_e2e::{Daemon, PROJECT, is_root};

fn when_unlocked() -> SetOptions {
    SetOptions {
        keychain_service: None,
        keychain_accessible: KeychainAccessible::WhenUnlocked,
    }
}

/// Writes `bytes` to a new 0600 file at `path`.
fn private_file(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Finding 1: a `<key file>.next` that is empty or short (what a crash between `write_next`'s
/// create and its write/sync leaves, or what ENOSPC during `securestore key rotate` leaves) makes
/// the daemon refuse to start, although the database opens with the key file and the `.next` key
/// was never used. docs/security.md: "after a crash at any moment every item is readable".
#[tokio::test]
async fn breaker_1_a_short_next_key_left_by_an_interrupted_rotation_does_not_stop_the_daemon() {
    let mut daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    client
        .set_item("k", "v", SetOptions::default())
        .await
        .expect("set");
    drop(client);
    daemon.stop();
    let next = daemon.key_file().with_file_name("master.key.next");
    for leftover in [&b""[..], &[7u8; 5][..]] {
        private_file(&next, leftover);
        let started = daemon.spawn();
        assert!(
            started.is_ok(),
            "a {}-byte .next (never used by the database) stops the daemon: {}",
            leftover.len(),
            started.err().unwrap_or_default()
        );
        let client = daemon.client(PROJECT).await;
        let got = client.get_item("k", GetOptions::default()).await;
        assert_eq!(got.expect("get").expect("present").expose_secret(), "v");
        drop(client);
        daemon.stop();
    }
}

/// A tmpfs mounted over `dir` (which must exist), unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Self> {
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .ok()?
            .success();
        ok.then(|| Self(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Finding 1, the realistic way in: `securestore key rotate` on a full disk fails (fine) but leaves
/// an empty `master.key.next` behind, and from then on the daemon cannot restart.
#[tokio::test]
async fn breaker_1_a_rotation_on_a_full_disk_leaves_a_daemon_that_restarts() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to mount a tmpfs");
        return;
    }
    let mut daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    client
        .set_item("k", "v", SetOptions::default())
        .await
        .expect("set");
    drop(client);
    daemon.stop();
    // Put the key folder on a small tmpfs, with the key in it.
    let key_file = daemon.key_file();
    let state = key_file.parent().expect("state").to_owned();
    let key = std::fs::read(&key_file).expect("key");
    let Some(_tmpfs) = Tmpfs::mount(&state, "64k") else {
        eprintln!("SKIPPED: cannot mount a tmpfs");
        return;
    };
    private_file(&key_file, &key);
    daemon.spawn().expect("start with the key on the tmpfs");
    // Fill it to the last byte.
    let ballast = state.join("ballast");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&ballast).expect("ballast");
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        while f.write_all(&[0u8]).is_ok() {}
    }
    let out = daemon.run_cli(&["key", "rotate"]);
    eprintln!(
        "rotate on a full disk: {:?} {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let next = state.join("master.key.next");
    eprintln!(
        "leftover .next: {:?}",
        std::fs::metadata(&next).map(|m| m.len())
    );
    // Room again, as after any full-disk incident; then a restart.
    std::fs::remove_file(&ballast).expect("rm ballast");
    daemon.stop();
    let started = daemon.spawn();
    assert!(
        started.is_ok(),
        "after a rotation refused for a full disk the daemon cannot start: {}",
        started.err().unwrap_or_default()
    );
    let client = daemon.client(PROJECT).await;
    assert_eq!(
        client
            .get_item("k", GetOptions::default())
            .await
            .expect("get")
            .expect("present")
            .expose_secret(),
        "v"
    );
}

/// Finding 2: an empty unlock secret (`--secret-file` of an empty file, `/dev/null`, or a file
/// holding just a newline) is accepted and binds the data keys, permanently ("the unlock secret
/// cannot be changed yet"), to SHA-256 of a constant: the binding protects nothing, and from then on
/// every restart needs that "secret". Backups refuse an empty passphrase; the unlock secret should
/// be refused the same way.
#[tokio::test]
async fn breaker_2_an_empty_unlock_secret_is_refused() {
    let daemon = Daemon::start();
    let empty = daemon.data_dir().with_file_name("empty-secret");
    private_file(&empty, b"\n");
    let out = daemon.run_cli(&[
        "device",
        "unlock",
        "--secret-file",
        empty.to_str().expect("utf-8"),
    ]);
    let log = daemon.log();
    assert!(
        !out.status.success(),
        "an empty unlock secret was accepted (bound: {}): {}",
        log.contains("data keys bound to the host's unlock secret"),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Finding 3: device signals are admin requests any process of the daemon's uid may send, with no
/// project token. Under `--policy strict`, a process that holds no token of a registered project
/// ("code that only has the socket", docs/security.md) can
/// (a) bind every project's AFTER_FIRST_UNLOCK and WHEN_UNLOCKED data keys to a secret only it
///     knows: after the next restart the registered project's items are Locked for good, and the
///     host's own unlock fails (the secret cannot be changed or removed);
/// (b) `device passcode removed`: delete every registered project's
///     WHEN_PASSCODE_SET_THIS_DEVICE_ONLY items, although "one project's process cannot wipe another
///     registered project".
/// The docs' "Another project's process in the same app" section lists neither under "Not
/// protected".
#[tokio::test]
#[ignore = "breaker finding 3: a design limit (same-uid admin requests), stated in docs/security.md"]
async fn breaker_3_a_tokenless_process_cannot_lock_a_registered_project_out_of_its_items() {
    let mut daemon = Daemon::start_with(&["--policy", "strict"]);
    let token: SecretString =
        admin::add_project(daemon.socket(), "@o/owner", &ConnectOptions::default())
            .await
            .expect("add");
    let owner = securestore_client::Client::connect_with(
        daemon.socket(),
        "@o/owner",
        ConnectOptions {
            token: Some(token.clone()),
            ..ConnectOptions::default()
        },
    )
    .await
    .expect("owner connects");
    owner
        .set_item("wallet", "owner's secret", when_unlocked())
        .await
        .expect("set");
    owner
        .set_item(
            "pin",
            "owner's pin",
            SetOptions {
                keychain_service: None,
                keychain_accessible: KeychainAccessible::WhenPasscodeSetThisDeviceOnly,
            },
        )
        .await
        .expect("set");
    drop(owner);

    // Another process of the uid, no token, no project.
    let evil = daemon.data_dir().with_file_name("evil-secret");
    private_file(&evil, b"only the intruder knows this");
    let bind = daemon.run_cli(&[
        "device",
        "unlock",
        "--secret-file",
        evil.to_str().expect("utf-8"),
    ]);
    let wipe = daemon.run_cli(&["device", "passcode", "removed"]);
    let _ = daemon.run_cli(&["device", "passcode", "set"]);
    eprintln!(
        "tokenless unlock with a secret: {:?}; passcode removed: {:?}",
        bind.status.code(),
        wipe.status.code()
    );

    daemon.restart();
    let host_unlock = daemon.run_cli(&["device", "unlock"]);
    let owner = securestore_client::Client::connect_with(
        daemon.socket(),
        "@o/owner",
        ConnectOptions {
            token: Some(token),
            ..ConnectOptions::default()
        },
    )
    .await
    .expect("owner reconnects");
    let wallet = owner.get_item("wallet", GetOptions::default()).await;
    let pin = owner.get_item("pin", GetOptions::default()).await;
    assert!(
        host_unlock.status.success(),
        "the host's own unlock now fails for good: {}",
        String::from_utf8_lossy(&host_unlock.stderr)
    );
    assert_eq!(
        wallet
            .as_ref()
            .ok()
            .and_then(|v| v.as_ref())
            .map(|v| v.expose_secret().to_owned()),
        Some("owner's secret".to_owned()),
        "the registered project's item after a tokenless process bound the keys: {wallet:?}"
    );
    assert!(
        matches!(pin, Ok(Some(_))),
        "the registered project's WHEN_PASSCODE_SET item after a tokenless process's signal: {pin:?}"
    );
}

/// Finding 4: while locked, a WHEN_UNLOCKED item that cannot be read can still be overwritten (and
/// its class downgraded to ALWAYS) by a plain set or an `import --replace`: the item is unavailable
/// for reading but not for replacing. On iOS the Keychain refuses to update a locked item
/// (errSecInteractionNotAllowed), which Expo surfaces as an error. docs/security.md: "Unavailable
/// items answer Locked ...; contains, listing and deleting still work" — overwriting is not listed.
#[tokio::test]
async fn breaker_4_a_locked_item_cannot_be_overwritten_with_another_class() {
    let daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    client
        .set_item("session", "real", when_unlocked())
        .await
        .expect("set");
    assert!(daemon.run_cli(&["device", "lock"]).status.success());
    let overwrite = client
        .set_item(
            "session",
            "planted",
            SetOptions {
                keychain_service: None,
                keychain_accessible: KeychainAccessible::Always,
            },
        )
        .await;
    eprintln!("overwrite while locked: {overwrite:?}");
    assert!(daemon.run_cli(&["device", "unlock"]).status.success());
    let now = client
        .get_item("session", GetOptions::default())
        .await
        .expect("get")
        .expect("present");
    assert!(
        matches!(overwrite, Err(Error::Service(ServiceError::Locked { .. }))),
        "overwriting a locked WHEN_UNLOCKED item while locked: {overwrite:?}; value now '{}'",
        now.expose_secret()
    );
}

// ---------------------------------------------------------------------------------------------
// Probes that held up: kept (ignored, as they are slow-ish stress) as regression checks.
// ---------------------------------------------------------------------------------------------

fn always() -> SetOptions {
    SetOptions {
        keychain_service: None,
        keychain_accessible: KeychainAccessible::Always,
    }
}

/// Locks and unlocks as fast as the admin socket allows while 4 connections read a WHEN_UNLOCKED
/// item (inline pool, reader thread, owner path behind a write): every answer is the value or
/// `Locked`, never "absent", never another value; `contains` is always true.
#[tokio::test]
async fn breaker_probe_lock_races_never_answer_absent() {
    use securestore_proto::DeviceSignal;
    let daemon = Daemon::start_logging(&[], "warn");
    let setup = daemon.client(PROJECT).await;
    setup
        .set_item("wu", "the value", when_unlocked())
        .await
        .expect("set");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..4 {
        let client = daemon.client(PROJECT).await;
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let (mut values, mut locked) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Reader 3 keeps a write in line so its gets take the owner's path.
                let get = if r == 3 {
                    let key = format!("w{r}");
                    let (_, got) = tokio::join!(
                        client.set_item(&key, "x", always()),
                        client.get_item("wu", GetOptions::default())
                    );
                    got
                } else {
                    client.get_item("wu", GetOptions::default()).await
                };
                match get {
                    Ok(Some(v)) => {
                        assert_eq!(v.expose_secret(), "the value");
                        values += 1;
                    }
                    Err(Error::Service(ServiceError::Locked { .. })) => locked += 1,
                    other => panic!("reader {r}: {other:?}"),
                }
                assert!(client.contains("wu", None).await.expect("contains"));
            }
            (values, locked)
        }));
    }
    for _ in 0..150 {
        for signal in [DeviceSignal::Lock, DeviceSignal::Unlock { secret: None }] {
            admin::device_signal(daemon.socket(), signal, &ConnectOptions::default())
                .await
                .expect("signal");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for reader in readers {
        let (values, locked) = reader.await.expect("reader");
        println!("reader: {values} values, {locked} locked");
    }
}

/// A set and a get sent back to back on one connection: the get sees the set, whichever path
/// (inline pool, reader thread, owner) serves it.
#[tokio::test]
async fn breaker_probe_pipelined_set_then_get_reads_its_own_write() {
    let daemon = Daemon::start_logging(&[], "warn");
    let client = daemon.client(PROJECT).await;
    let other = daemon.client(PROJECT).await;
    for i in 0..500 {
        let value = format!("v{i}");
        let (set, got, _) = tokio::join!(
            client.set_item("p", value.as_str(), always()),
            client.get_item("p", GetOptions::default()),
            other.get_item("p", GetOptions::default())
        );
        set.expect("set");
        assert_eq!(
            got.expect("get").expect("present").expose_secret(),
            value,
            "round {i}"
        );
    }
}

/// The keys bound to an unlock secret survive rotations made unlocked and locked, and restarts:
/// only the right secret unlocks them.
#[tokio::test]
async fn breaker_probe_rotation_with_bound_keys_keeps_the_binding() {
    let mut daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    client
        .set_item("wu", "w", when_unlocked())
        .await
        .expect("set");
    let secret = daemon.data_dir().with_file_name("secret");
    private_file(&secret, b"s3cret");
    let wrong = daemon.data_dir().with_file_name("wrong");
    private_file(&wrong, b"guess");
    let s = secret.to_str().expect("utf-8");
    let w = wrong.to_str().expect("utf-8");
    assert!(
        daemon
            .run_cli(&["device", "unlock", "--secret-file", s])
            .status
            .success()
    );
    assert!(daemon.run_cli(&["key", "rotate"]).status.success());
    assert!(daemon.run_cli(&["device", "lock"]).status.success());
    assert!(daemon.run_cli(&["key", "rotate"]).status.success());
    assert!(daemon.run_cli(&["key", "rotate"]).status.success());
    drop(client);
    daemon.restart();
    assert!(!daemon.run_cli(&["device", "unlock"]).status.success());
    assert!(
        !daemon
            .run_cli(&["device", "unlock", "--secret-file", w])
            .status
            .success()
    );
    let client = daemon.client(PROJECT).await;
    assert!(matches!(
        client.get_item("wu", GetOptions::default()).await,
        Err(Error::Service(ServiceError::Locked { .. }))
    ));
    assert!(
        daemon
            .run_cli(&["device", "unlock", "--secret-file", s])
            .status
            .success()
    );
    assert_eq!(
        client
            .get_item("wu", GetOptions::default())
            .await
            .expect("get")
            .expect("present")
            .expose_secret(),
        "w"
    );
}

/// Writers keep writing while the key is rotated 6 times back to back; every acknowledged write
/// reads back after a restart.
#[tokio::test]
async fn breaker_probe_rotations_under_writes_lose_nothing() {
    let mut daemon = Daemon::start_logging(&[], "warn");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let client = daemon.client(PROJECT).await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let class = KeychainAccessible::ALL[(n % 7) as usize];
                client
                    .set_item(
                        &format!("w{w}-{n}"),
                        format!("v{n}"),
                        SetOptions {
                            keychain_service: None,
                            keychain_accessible: class,
                        },
                    )
                    .await
                    .expect("set");
                n += 1;
            }
            n
        }));
    }
    let options = ConnectOptions::default();
    let rotations: Vec<_> = (0..6)
        .map(|_| admin::rotate_key(daemon.socket(), &options))
        .collect();
    for r in futures::future::join_all(rotations).await {
        r.expect("rotate");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut counts = Vec::new();
    for writer in writers {
        counts.push(writer.await.expect("writer"));
    }
    daemon.restart();
    let client = daemon.client(PROJECT).await;
    for (w, n) in counts.iter().enumerate() {
        for i in 0..*n {
            let got = client
                .get_item(&format!("w{w}-{i}"), GetOptions::default())
                .await
                .expect("get");
            assert_eq!(got.expect("present").expose_secret(), format!("v{i}"));
        }
    }
    println!("writes during 6 rotations: {counts:?}");
}

/// Finding 5: a rotation whose last step (installing the new key file) fails leaves the database
/// depending on `<key file>.next` alone while the daemon runs on; the next `securestore key rotate`
/// (the obvious retry) started by *deleting* that file (`keyfile::write_next` -> `discard_next`), so
/// if the retry then failed before its commit (a busy database, a full disk, a crash), neither the
/// key file nor `.next` opened the database and every item was lost. Here the install fails because
/// the key file is immutable (`chattr +i`); any rename failure does. The retry's failure before its
/// commit is `sqlite::tests::a_retried_rotation_keeps_the_key_of_one_that_committed_but_was_not_installed`:
/// this test held the database's write lock from another process, which nothing can do now that a
/// running daemon holds its database exclusively (`unix-excl`). Here the retry runs to the end.
#[tokio::test]
async fn breaker_5_a_retried_rotation_never_deletes_the_only_key_the_database_needs() {
    if !is_root() {
        eprintln!("SKIPPED: needs root for chattr");
        return;
    }
    let mut daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    client
        .set_item("k", "precious", always())
        .await
        .expect("set");
    drop(client);
    let key_file = daemon.key_file();
    let next = key_file.with_file_name("master.key.next");
    if !Command::new("chattr")
        .arg("+i")
        .arg(&key_file)
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("SKIPPED: chattr +i unsupported here");
        return;
    }
    let first = daemon.run_cli(&["key", "rotate"]);
    let _ = Command::new("chattr").arg("-i").arg(&key_file).status();
    assert!(!first.status.success(), "the install failed");
    assert!(next.exists(), "the committed key waits in .next");
    let second = daemon.run_cli(&["key", "rotate"]);
    assert!(
        second.status.success(),
        "the retry: {}",
        String::from_utf8_lossy(&second.stderr).trim()
    );
    daemon.stop();
    let started = daemon.spawn();
    assert!(
        started.is_ok(),
        "after a failed install and a retry the store no longer opens with any key: {}",
        started
            .err()
            .unwrap_or_default()
            .lines()
            .last()
            .unwrap_or_default()
    );
    let client = daemon.client(PROJECT).await;
    assert_eq!(
        client
            .get_item("k", GetOptions::default())
            .await
            .expect("get")
            .expect("present")
            .expose_secret(),
        "precious"
    );
}

/// Finding 6: `securestore import` of a file with more than 64 items, one of whose values exceeds
/// the importing daemon's `--max-value-bytes`, stores the first 64 items and then fails; running it
/// again never finishes. The client knows the daemon's limit from the handshake (it checks it for a
/// set), so the whole file could be refused before anything is sent, as the docs say of the other
/// refusals ("checks the whole file before sending anything").
#[tokio::test]
async fn breaker_6_an_import_with_a_value_over_the_limit_imports_nothing() {
    let source = Daemon::start_logging(&[], "warn");
    let client = source.client(PROJECT).await;
    for i in 0..70 {
        client
            .set_item(&format!("k{i:02}"), "small", always())
            .await
            .expect("set");
    }
    client
        .set_item("zz", "x".repeat(5000), always())
        .await
        .expect("set");
    let work = tempfile::tempdir().expect("tempdir");
    let pass = work.path().join("pass");
    private_file(&pass, b"correct horse");
    let file = work.path().join("backup.ssb");
    let out = source.run_cli(&[
        "--project",
        PROJECT,
        "export",
        "--passphrase-file",
        pass.to_str().expect("utf-8"),
        "-o",
        file.to_str().expect("utf-8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let target = Daemon::start_logging(&["--max-value-bytes", "4096"], "warn");
    let out = target.run_cli(&[
        "--project",
        PROJECT,
        "import",
        file.to_str().expect("utf-8"),
        "--passphrase-file",
        pass.to_str().expect("utf-8"),
    ]);
    let stored = target
        .client(PROJECT)
        .await
        .list_keys(None)
        .await
        .expect("list")
        .len();
    assert!(
        !out.status.success() && stored == 0,
        "import exit {:?} ({}), items stored: {stored}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// Finding 7: `device passcode removed` on a full disk fails (the DELETE cannot be written), and the
/// daemon then keeps believing a passcode is set: every WHEN_PASSCODE_SET_THIS_DEVICE_ONLY item stays
/// readable and new ones can still be stored, although the host has told it the passcode is gone.
/// The policy could fail closed (mark the passcode removed, refuse the class) and retry the delete.
#[tokio::test]
async fn breaker_7_a_passcode_removal_that_cannot_delete_still_closes_the_class() {
    use securestore_proto::DeviceSignal;
    if !is_root() {
        eprintln!("SKIPPED: needs root to mount a tmpfs");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(_tmpfs) = Tmpfs::mount(dir.path(), "4m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs");
        return;
    };
    let daemon = Daemon::start_with_data_dir(&dir.path().join("data"));
    let client = daemon.client(PROJECT).await;
    let pin = SetOptions {
        keychain_service: None,
        keychain_accessible: KeychainAccessible::WhenPasscodeSetThisDeviceOnly,
    };
    client
        .set_item("pin", "1234", pin.clone())
        .await
        .expect("set");
    // Fill the disk until a set is refused.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(dir.path().join("ballast")).expect("ballast");
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
    }
    let value = "x".repeat(2048);
    for i in 0..10_000 {
        if client
            .set_item(&format!("fill-{i}"), value.as_str(), always())
            .await
            .is_err()
        {
            break;
        }
    }
    let removed = admin::device_signal(
        daemon.socket(),
        DeviceSignal::PasscodeRemoved,
        &ConnectOptions::default(),
    )
    .await;
    let status = admin::device_status(daemon.socket(), &ConnectOptions::default()).await;
    let got = client.get_item("pin", GetOptions::default()).await;
    // Room again: the store now accepts new WHEN_PASSCODE_SET items although no passcode is set.
    std::fs::remove_file(dir.path().join("ballast")).expect("rm ballast");
    let stored = client.set_item("pin2", "5678", pin).await;
    eprintln!("passcode removed on a full disk: {removed:?}; status {status:?}");
    assert!(
        !matches!(got, Ok(Some(_))) && stored.is_err(),
        "after the host removed the passcode: get {got:?}, new WHEN_PASSCODE_SET set {stored:?}"
    );
}

/// Another uid cannot send device signals or rotate, even with the socket opened to everyone.
#[test]
fn breaker_probe_another_uid_cannot_signal_or_rotate() {
    use std::os::unix::process::CommandExt;
    if !is_root() {
        eprintln!("SKIPPED: needs root to switch uid");
        return;
    }
    let daemon = Daemon::start();
    let socket = daemon.socket();
    let run = socket.parent().expect("run").to_owned();
    let top = run.parent().expect("dir").to_owned();
    let cli_copy = top.join("securestore-cli");
    std::fs::copy(securestore_e2e::bin("securestore"), &cli_copy).expect("copy");
    for (path, mode) in [
        (&cli_copy, 0o755),
        (&top, 0o711),
        (&run, 0o711),
        (&socket, 0o666),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    for args in [
        &["device", "lock"][..],
        &["device", "passcode", "removed"][..],
        &["key", "rotate"][..],
        &["device", "status"][..],
    ] {
        let out = Command::new(&cli_copy)
            .uid(65534)
            .gid(65534)
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .expect("run as nobody");
        assert_eq!(
            out.status.code(),
            Some(3),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        daemon.run_cli(&["device", "status"]).stdout,
        b"unlocked, passcode set\n"
    );
}

/// Finding 8: a value stored under a larger `--max-value-bytes` makes `export` fail uncleanly
/// after the limit is lowered: `get` answers `ValueTooLarge` for it (handler.rs checks), but the
/// export page carries it anyway, in a frame over the connection's limit.
#[tokio::test]
async fn breaker_8_an_export_with_a_value_over_the_current_limit_fails_cleanly() {
    let mut daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    client
        .set_item("big", "x".repeat(60_000), always())
        .await
        .expect("set");
    drop(client);
    daemon.set_args(&["--max-value-bytes", "1000"]);
    daemon.restart();
    let client = daemon.client(PROJECT).await;
    let got = client.get_item("big", GetOptions::default()).await;
    eprintln!("get: {got:?}");
    let exported = client.export(None).await;
    eprintln!("export: {:?}", exported.as_ref().map(Vec::len));
    assert!(
        matches!(
            exported,
            Err(Error::Service(ServiceError::ValueTooLarge { .. }))
        ),
        "export with a stored value over the current limit: {:?}",
        exported.map(|items| items.len())
    );
}

/// Finding 9: an unlock secret longer than the 4 KiB handshake frame is not refused with a reason:
/// the CLI reports "the connection to the daemon was lost" (exit 5), as if the daemon had crashed.
#[tokio::test]
async fn breaker_9_an_overlong_unlock_secret_is_refused_with_a_reason() {
    let daemon = Daemon::start();
    let long = daemon.data_dir().with_file_name("long-secret");
    private_file(&long, "s".repeat(5000).as_bytes());
    let out = daemon.run_cli(&[
        "device",
        "unlock",
        "--secret-file",
        long.to_str().expect("utf-8"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("connection to the daemon was lost"),
        "exit {:?}: {stderr}",
        out.status.code()
    );
}

/// Finding 10: a daemon started with `--passcode false` (the host's device has no passcode, e.g. it
/// was removed while the daemon was down) still serves the WHEN_PASSCODE_SET_THIS_DEVICE_ONLY items
/// stored earlier: `DeviceStatus::allows` ignores `passcode_set` for reads, and nothing at start
/// deletes the class as the `passcode removed` signal would.
#[tokio::test]
async fn breaker_10_a_daemon_started_without_a_passcode_serves_no_passcode_items() {
    let mut daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    client
        .set_item(
            "pin",
            "1234",
            SetOptions {
                keychain_service: None,
                keychain_accessible: KeychainAccessible::WhenPasscodeSetThisDeviceOnly,
            },
        )
        .await
        .expect("set");
    drop(client);
    daemon.set_args(&["--passcode", "false"]);
    daemon.restart();
    assert_eq!(
        daemon.run_cli(&["device", "status"]).stdout,
        b"unlocked, passcode not set\n"
    );
    let client = daemon.client(PROJECT).await;
    let got = client.get_item("pin", GetOptions::default()).await;
    assert!(
        !matches!(got, Ok(Some(_))),
        "a WHEN_PASSCODE_SET_THIS_DEVICE_ONLY item read with no passcode set: {got:?}"
    );
}

/// Passcode removal reaches every project, and stays done across a kill -9 right after.
#[tokio::test]
async fn breaker_probe_passcode_removal_deletes_in_every_project_durably() {
    let mut daemon = Daemon::start();
    let pin = SetOptions {
        keychain_service: None,
        keychain_accessible: KeychainAccessible::WhenPasscodeSetThisDeviceOnly,
    };
    for project in ["@o/a", "@o/b", "@o/c"] {
        let client = daemon.client(project).await;
        for i in 0..5 {
            client
                .set_item(&format!("pin{i}"), "1234", pin.clone())
                .await
                .expect("set");
        }
        client.set_item("keep", "k", always()).await.expect("set");
    }
    assert!(
        daemon
            .run_cli(&["device", "passcode", "removed"])
            .status
            .success()
    );
    daemon.kill();
    daemon.spawn().expect("restart");
    for project in ["@o/a", "@o/b", "@o/c"] {
        let client = daemon.client(project).await;
        for i in 0..5 {
            assert!(
                client
                    .get_item(&format!("pin{i}"), GetOptions::default())
                    .await
                    .expect("get")
                    .is_none(),
                "{project} pin{i}"
            );
        }
        assert!(
            client
                .get_item("keep", GetOptions::default())
                .await
                .expect("get")
                .is_some()
        );
    }
}

/// Copies `meta` (the wrapped data keys and the key check) from the database `from` into `into`.
fn graft_meta(from: &Path, into: &Path) {
    let out = Command::new("sqlite3")
        .arg(into)
        .arg(format!(
            "ATTACH '{}' AS old; DELETE FROM main.meta WHERE name LIKE 'data_key/%' OR name = 'key_check'; \
             INSERT INTO main.meta SELECT * FROM old.meta WHERE name LIKE 'data_key/%' OR name = 'key_check';",
            from.display()
        ))
        .output()
        .expect("sqlite3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Finding 11: neither `key rotate` nor binding to an unlock secret changes the data keys, so key
/// material copied before either (the key file and the database's `meta` rows, e.g. from a backup of
/// the data and state folders) still decrypts every value written *after* it, once the thief gets a
/// later copy of the database. Here: a copy taken before a rotation and before binding to a secret
/// reads a WHEN_UNLOCKED value written after both. docs/security.md says only that "a copy of the old
/// key file taken before the rotation still opens a copy of the old database", and that after
/// binding "the key file and database together no longer open those rows without the secret".
#[tokio::test]
#[ignore = "breaker finding 11: rotation and binding re-wrap, they do not re-key; stated in docs/security.md"]
async fn breaker_11_key_material_copied_before_a_rotation_cannot_read_values_written_after() {
    let mut daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    client
        .set_item("old", "before", when_unlocked())
        .await
        .expect("set");
    drop(client);
    daemon.stop();
    // The thief's copy: key file and database.
    let stolen = tempfile::tempdir().expect("tempdir");
    let db = daemon.data_dir().join("securestore.db");
    std::fs::copy(daemon.key_file(), stolen.path().join("master.key")).expect("copy key");
    std::fs::copy(&db, stolen.path().join("securestore.db")).expect("copy db");

    // The owner notices, rotates the key, binds the keys to an unlock secret, writes a new value.
    daemon.spawn().expect("start");
    assert!(daemon.run_cli(&["key", "rotate"]).status.success());
    let secret = daemon.data_dir().with_file_name("secret");
    private_file(&secret, b"the user's credential");
    assert!(
        daemon
            .run_cli(&[
                "device",
                "unlock",
                "--secret-file",
                secret.to_str().expect("utf-8")
            ])
            .status
            .success()
    );
    let client = daemon.client(PROJECT).await;
    client
        .set_item(
            "new",
            "written after the rotation and the binding",
            when_unlocked(),
        )
        .await
        .expect("set");
    drop(client);
    daemon.stop();

    // Later the thief gets the current database (no secret, no new key): old key + old meta.
    private_file(
        &daemon.key_file(),
        &std::fs::read(stolen.path().join("master.key")).expect("key"),
    );
    graft_meta(&stolen.path().join("securestore.db"), &db);
    daemon.spawn().expect("starts with the stolen key material");
    let client = daemon.client(PROJECT).await;
    let got = client.get_item("new", GetOptions::default()).await;
    assert!(
        !matches!(got, Ok(Some(_))),
        "the value written after the rotation and the binding opened with key material copied before: {:?}",
        got.map(|v| v.map(|v| v.expose_secret().to_owned()))
    );
}

/// Crafted imports through the client API: duplicate keys in one request (printed: the first wins
/// without `replace`, and with it both count as "replaced"), and a THIS_DEVICE_ONLY item beside a
/// good one (refused whole, nothing stored).
#[tokio::test]
async fn breaker_probe_crafted_import_requests() {
    use securestore_client::ExportedItem;
    let daemon = Daemon::start_with(&["--max-value-bytes", "100"]);
    let client = daemon.client(PROJECT).await;
    let item = |key: &str, value: &str, class| ExportedItem {
        service: "app".to_owned(),
        key: key.to_owned(),
        value: SecretString::from(value),
        accessible: class,
        written_at: 0,
    };
    let dupes = vec![
        item("d", "first", KeychainAccessible::Always),
        item("d", "second", KeychainAccessible::Always),
    ];
    let report = client.import(&dupes, false).await.expect("import");
    let kept = client
        .get_item("d", GetOptions::default())
        .await
        .expect("get");
    println!(
        "duplicates without replace: {report:?}, kept {:?}",
        kept.map(|v| v.expose_secret().to_owned())
    );
    let report = client.import(&dupes, true).await.expect("import");
    println!("duplicates with replace: {report:?}");
    // (A value over the limit in a later request leaves the earlier ones stored: finding 6.)
    let items = vec![
        item("ok", "v", KeychainAccessible::Always),
        item("t", "v", KeychainAccessible::WhenUnlockedThisDeviceOnly),
    ];
    let got = client.import(&items, false).await;
    println!("this device only: {got:?}");
    assert!(got.is_err());
    assert!(
        client
            .get_item("ok", GetOptions::default())
            .await
            .expect("get")
            .is_none(),
        "nothing of the request is stored"
    );
}
