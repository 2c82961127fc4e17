//! Trust both ways: the client checks whom it reached before sending a byte, and the daemon checks
//! every folder and file it keeps secrets in before trusting it.
//!
//! Each test replays an attack from the security review against the real binaries and checks it
//! now fails. Tests that need another uid (65534) run only as root and say why they are skipped
//! otherwise, as `identity` does.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use securestore_client::{ConnectOptions, Error};
use securestore_e2e::{Daemon, PROJECT, bin, is_root, run_with_stdin, securestored_in, token_file};

const NOBODY: u32 = 65534;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown_nobody(path: &Path) {
    std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY)).expect("lchown");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn skipped(test: &str) -> bool {
    if is_root() {
        return false;
    }
    eprintln!("SKIPPED {test}: needs root to act as uid {NOBODY}");
    true
}

/// Runs a `securestored` that must refuse to start, and returns its stderr. Fails the test if it is
/// still running after 20 s (it started, or it hangs reading something endless).
fn refuses_to_start(cmd: &mut Command) -> String {
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn securestored");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait");
            panic!("securestored did not refuse to start:\n{}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("wait");
    assert!(!out.status.success(), "it must exit with a failure");
    let text = stderr(&out);
    let refusal: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("securestored:"))
        .collect();
    assert_eq!(refusal.len(), 1, "one clear line: {text}");
    refusal[0].to_owned()
}

/// A temp folder others may traverse (0711), so a process of uid 65534 can reach inside.
fn traversable_tempdir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("securestore-trust")
        .tempdir()
        .expect("tempdir");
    chmod(dir.path(), 0o711);
    dir
}

/// An impostor run as uid 65534: `tests/bin/fake_daemon.rs`, listening in `socket_dir` and
/// recording how many bytes each connection sent.
struct FakeDaemon {
    child: Child,
    record: PathBuf,
    socket: PathBuf,
}

impl FakeDaemon {
    fn start(dir: &Path, socket_dir: &Path) -> Self {
        let exe = dir.join("fake-daemon");
        std::fs::copy(bin("securestore-fake-daemon"), &exe).expect("copy fake");
        chmod(&exe, 0o755);
        let record = dir.join("record");
        std::fs::write(&record, b"").expect("record file");
        chmod(&record, 0o666);
        let mut child = Command::new(&exe)
            .uid(NOBODY)
            .gid(NOBODY)
            .arg(socket_dir)
            .arg(&record)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the fake daemon as nobody");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut ready)
            .expect("ready line");
        assert_eq!(ready.trim(), "ready", "the fake daemon listens");
        Self {
            child,
            record,
            socket: socket_dir.join("securestored.sock"),
        }
    }

    /// The bytes each finished connection sent, once at least `count` have finished.
    fn connections(&self, count: usize) -> Vec<usize> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&self.record).expect("read record");
            let sizes: Vec<usize> = text
                .lines()
                .map(|l| {
                    l.strip_prefix("connection bytes=")
                        .and_then(|n| n.parse().ok())
                        .expect("record line")
                })
                .collect();
            if sizes.len() >= count {
                return sizes;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} connections recorded",
                sizes.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finding 1: with `XDG_RUNTIME_DIR` unset the default socket is `$TMPDIR/securestore-<uid>/...`.
/// Another user made that folder first and listens there. The CLI and every client of the library
/// must refuse it before sending a byte, so it never sees the token or the value.
#[tokio::test]
async fn a_fake_daemon_of_another_user_receives_nothing() {
    if skipped("a_fake_daemon_of_another_user_receives_nothing") {
        return;
    }
    let dir = traversable_tempdir();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    chmod(&tmp, 0o1777);
    let my_uid = rustix::process::geteuid().as_raw();
    let fake = FakeDaemon::start(dir.path(), &tmp.join(format!("securestore-{my_uid}")));
    let token = token_file(dir.path(), "token", "sst1_the-secret-token");
    let cli = || {
        let mut cmd = Command::new(bin("securestore"));
        cmd.env_remove("XDG_RUNTIME_DIR")
            .env_remove("SECURESTORE_SOCKET")
            .env_remove("SECURESTORE_DAEMON_UID")
            .env("TMPDIR", &tmp)
            .args(["--project", PROJECT, "--token-file"])
            .arg(&token);
        cmd
    };

    // The CLI at its default socket, with a token and a value: refused, exit 3.
    let out = cli()
        .args(["--timeout", "3", "set", "k", "the-secret-value"])
        .output()
        .expect("run");
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "refused: {text}");
    assert!(
        text.contains("refusing the daemon at")
            && text.contains(&fake.socket.display().to_string())
            && text.contains(&format!("uid {NOBODY}")),
        "names the socket and the uid found: {text}"
    );
    let out = cli()
        .args(["--timeout", "3", "project", "list"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));

    // The library: async, blocking and admin clients share the one check.
    let options = ConnectOptions {
        timeout: Duration::from_secs(3),
        ..ConnectOptions::default()
    };
    let err = securestore_client::Client::connect_with(&fake.socket, PROJECT, options.clone())
        .await
        .expect_err("refused");
    assert!(
        matches!(err, Error::UntrustedDaemon { uid: NOBODY, expected, .. } if expected == my_uid),
        "{err:?}"
    );
    let err = securestore_client::admin::list_projects(&fake.socket, &options)
        .await
        .expect_err("refused");
    assert!(matches!(err, Error::UntrustedDaemon { .. }), "{err:?}");
    let socket = fake.socket.clone();
    let blocking = std::thread::spawn(move || {
        securestore_client::blocking::Client::connect(&socket, PROJECT).map(|_| ())
    });
    let err = blocking.join().expect("join").expect_err("refused");
    assert!(matches!(err, Error::UntrustedDaemon { .. }), "{err:?}");

    // Five connections reached the impostor; not one byte was sent on any of them.
    assert_eq!(fake.connections(5), vec![0; 5], "nothing is sent");

    // The explicit option for a system-wide daemon: naming uid 65534 trusts it, and then the hello
    // goes out (the fake never answers, so the CLI times out). This shows the fake records bytes.
    let out = cli()
        .args([
            "--daemon-uid",
            &NOBODY.to_string(),
            "--timeout",
            "1",
            "get",
            "k",
        ])
        .output()
        .expect("run");
    assert_ne!(out.status.code(), Some(3), "{}", stderr(&out));
    let sizes = fake.connections(6);
    assert!(
        sizes[5] > 0,
        "the trusted connection sent its hello: {sizes:?}"
    );
}

/// Finding 2: the socket folder check followed symbolic links.
#[test]
fn a_symlinked_socket_folder_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = dir.path().join("real");
    std::fs::create_dir(&real).expect("mkdir");
    chmod(&real, 0o700);
    std::os::unix::fs::symlink(&real, dir.path().join("run")).expect("symlink");
    let line = refuses_to_start(&mut securestored_in(dir.path()));
    assert!(
        line.contains(&dir.path().join("run").display().to_string())
            && line.contains("symbolic link"),
        "{line}"
    );
    assert!(
        !dir.path().join("data").exists() && std::fs::read_dir(&real).expect("ls").count() == 0,
        "nothing is created"
    );
}

/// Finding 2: the folders above the socket folder were not checked. One others may write to could
/// have the socket folder replaced under the daemon.
#[test]
fn a_socket_folder_below_a_folder_others_may_write_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o777);
    let mut cmd = Command::new(bin("securestored"));
    cmd.env_remove("SECURESTORE_SOCKET")
        .arg("--socket")
        .arg(shared.join("run/securestored.sock"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--key-file")
        .arg(dir.path().join("state/master.key"));
    let line = refuses_to_start(&mut cmd);
    assert!(
        line.contains(&shared.display().to_string())
            && line.contains("writable by group or others"),
        "{line}"
    );
    assert!(!shared.join("run").exists(), "nothing is created below it");

    // Sticky, as /tmp is: others cannot replace what we create there, so it is accepted.
    chmod(&shared, 0o1777);
    let mut daemon = cmd.stderr(Stdio::null()).spawn().expect("spawn");
    let socket = shared.join("run/securestored.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            daemon.try_wait().expect("try_wait").is_none(),
            "a sticky parent is accepted"
        );
        assert!(Instant::now() < deadline, "not ready in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
}

/// Finding 2: the default folder under /tmp (here `$TMPDIR`) is created 0700 when missing, and
/// refused with a clear message when someone else made it first or it is a symbolic link.
#[test]
fn the_default_socket_folder_is_created_safely_or_refused() {
    if skipped("the_default_socket_folder_is_created_safely_or_refused") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).expect("mkdir");
    chmod(&tmp, 0o1777);
    let folder = tmp.join(format!(
        "securestore-{}",
        rustix::process::geteuid().as_raw()
    ));
    let daemon = || {
        let mut cmd = Command::new(bin("securestored"));
        cmd.env_remove("XDG_RUNTIME_DIR")
            .env_remove("SECURESTORE_SOCKET")
            .env("TMPDIR", &tmp)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--key-file")
            .arg(dir.path().join("state/master.key"));
        cmd
    };

    std::fs::create_dir(&folder).expect("mkdir");
    chmod(&folder, 0o700);
    chown_nobody(&folder);
    let line = refuses_to_start(&mut daemon());
    assert!(
        line.contains(&folder.display().to_string())
            && line.contains(&format!("owned by uid {NOBODY}")),
        "{line}"
    );
    std::fs::remove_dir(&folder).expect("rmdir");

    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    chmod(&elsewhere, 0o700);
    std::os::unix::fs::symlink(&elsewhere, &folder).expect("symlink");
    let line = refuses_to_start(&mut daemon());
    assert!(line.contains("symbolic link"), "{line}");
    std::fs::remove_file(&folder).expect("rm link");

    let mut child = daemon().stderr(Stdio::null()).spawn().expect("spawn");
    let socket = folder.join("securestored.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(child.try_wait().expect("try_wait").is_none(), "it starts");
        assert!(Instant::now() < deadline, "not ready in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    let meta = std::fs::symlink_metadata(&folder).expect("stat");
    assert!(meta.is_dir());
    assert_eq!(meta.mode() & 0o7777, 0o700, "created 0700");
    let _ = child.kill();
    let _ = child.wait();
}

/// Finding 3: a data folder that already existed with mode 0777 was used as it was.
#[test]
fn a_data_or_key_folder_others_may_write_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    chmod(&data, 0o777);
    let line = refuses_to_start(&mut securestored_in(dir.path()));
    assert!(
        line.contains(&data.display().to_string())
            && line.contains("not writable by group or others"),
        "{line}"
    );
    assert_eq!(
        std::fs::read_dir(&data).expect("ls").count(),
        0,
        "nothing is opened inside"
    );

    chmod(&data, 0o700);
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    chmod(&state, 0o757);
    let line = refuses_to_start(&mut securestored_in(dir.path()));
    assert!(
        line.contains(&state.display().to_string()) && line.contains("not writable"),
        "{line}"
    );
    assert!(
        !state.join("master.key").exists(),
        "no key is written there"
    );
}

/// Finding 3: another user planted `projects.tmp` as a symbolic link and `project add` wrote through
/// it, over a root-owned file. The temporary file is now created with `O_EXCL | O_NOFOLLOW`.
#[test]
fn a_planted_registry_temp_link_is_never_written_through() {
    let daemon = Daemon::start();
    let victim = daemon.dir.path().join("victim");
    std::fs::write(&victim, b"precious").expect("victim");
    let planted = daemon.data_dir().join("projects.tmp");
    let add = |id: &str| {
        daemon
            .cli()
            .args(["project", "add", id])
            .output()
            .expect("run")
    };

    if is_root() {
        // Someone else's link: not ours to remove; the change is refused and the victim untouched.
        std::os::unix::fs::symlink(&victim, &planted).expect("plant");
        chown_nobody(&planted);
        let out = add("@o/one");
        assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
        assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
        assert!(
            daemon.log().contains("projects.tmp") && daemon.log().contains("uid 65534"),
            "the log names the file and its owner"
        );
        std::fs::remove_file(&planted).expect("rm");
    }

    // A link of our own uid (a leftover): unlinked, never followed.
    std::os::unix::fs::symlink(&victim, &planted).expect("plant");
    let out = add("@o/two");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&victim).expect("read"), b"precious");
    let registry = std::fs::symlink_metadata(daemon.data_dir().join("projects")).expect("stat");
    assert!(registry.is_file() && registry.mode() & 0o777 == 0o600);
    assert!(!planted.exists(), "renamed into place");
}

/// Finding 3: a master key file owned by another user was accepted (only its mode was checked).
#[test]
fn a_master_key_owned_by_another_user_is_refused() {
    if skipped("a_master_key_owned_by_another_user_is_refused") {
        return;
    }
    let mut daemon = Daemon::start();
    daemon.stop();
    chown_nobody(&daemon.key_file());
    let err = daemon.spawn().expect_err("must refuse");
    assert!(
        err.contains(&daemon.key_file().display().to_string())
            && err.contains(&format!("owned by uid {NOBODY}")),
        "{err}"
    );
}

/// Finding 3: a 0666 database pre-created by another user was used. It must be a regular file of
/// ours with mode 0600, and never a symbolic link.
#[test]
fn a_database_others_may_write_or_own_is_refused() {
    let mut daemon = Daemon::start();
    daemon.stop();
    let db = daemon.data_dir().join("securestore.db");

    chmod(&db, 0o666);
    let err = daemon.spawn().expect_err("0666");
    assert!(
        err.contains(&db.display().to_string()) && err.contains("chmod 600"),
        "{err}"
    );
    chmod(&db, 0o600);

    if is_root() {
        chown_nobody(&db);
        let err = daemon.spawn().expect_err("someone else's");
        assert!(err.contains(&format!("owned by uid {NOBODY}")), "{err}");
        std::os::unix::fs::lchown(&db, Some(0), Some(0)).expect("chown back");
    }

    let moved = daemon.dir.path().join("elsewhere.db");
    std::fs::rename(&db, &moved).expect("move");
    std::os::unix::fs::symlink(&moved, &db).expect("symlink");
    let err = daemon.spawn().expect_err("a link");
    assert!(err.contains("symbolic link"), "{err}");
    std::fs::remove_file(&db).expect("rm link");
    std::fs::rename(&moved, &db).expect("move back");

    // A shared-memory or WAL file planted beside it is checked as well.
    let wal = daemon.data_dir().join("securestore.db-wal");
    std::fs::write(&wal, b"").expect("wal");
    chmod(&wal, 0o666);
    let err = daemon.spawn().expect_err("0666 WAL");
    assert!(err.contains("securestore.db-wal"), "{err}");
    chmod(&wal, 0o600);
    daemon
        .spawn()
        .expect("the store opens again once its files are private");
}

/// Finding 6: a registry that is a link to `/dev/zero` was read until memory ran out.
#[test]
fn a_registry_linked_to_dev_zero_is_refused_at_once() {
    let mut daemon = Daemon::start();
    daemon.stop();
    let registry = daemon.data_dir().join("projects");
    let _ = std::fs::remove_file(&registry);
    std::os::unix::fs::symlink("/dev/zero", &registry).expect("symlink");
    let err = daemon.spawn().expect_err("must refuse");
    assert!(
        err.contains(&registry.display().to_string()) && err.contains("symbolic link"),
        "{err}"
    );
}

/// Finding 6: a 0644 registry was accepted, and a duplicate line silently overrode the first.
#[test]
fn a_registry_others_may_read_or_with_duplicates_is_refused() {
    let mut daemon = Daemon::start();
    daemon.stop();
    let registry = daemon.data_dir().join("projects");
    let hash = "0".repeat(64);
    std::fs::write(&registry, format!("@o/a {hash}\n")).expect("write");
    chmod(&registry, 0o644);
    let err = daemon.spawn().expect_err("0644");
    assert!(err.contains("chmod 600"), "{err}");

    chmod(&registry, 0o600);
    std::fs::write(
        &registry,
        format!("@o/a {hash}\n@o/b {hash}\n@o/a {}\n", "1".repeat(64)),
    )
    .expect("write");
    let err = daemon.spawn().expect_err("duplicate");
    assert!(
        err.contains("line 3 registers '@o/a' a second time"),
        "{err}"
    );
}

/// Finding 6: with more projects than the admin answer could hold, `project list` failed with
/// "connection lost". The registry holds at most 4096, and 4096 of the longest ids list in full.
#[test]
fn the_largest_registry_lists_in_full_and_a_larger_one_is_refused() {
    let mut daemon = Daemon::start();
    daemon.stop();
    let registry = daemon.data_dir().join("projects");
    let id = |i: usize| format!("@{i:0>254}");
    let mut text = String::new();
    for i in 0..4096 {
        text.push_str(&format!("{} {i:064x}\n", id(i)));
    }
    std::fs::write(&registry, &text).expect("write");
    chmod(&registry, 0o600);
    daemon.spawn().expect("4096 projects load");
    let out = daemon
        .cli()
        .args(["project", "list"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(listed.lines().count(), 4096);
    assert!(listed.lines().all(|l| l.len() == 255));
    println!("listed 4096 ids of 255 bytes: {} bytes", listed.len());
    daemon.stop();

    text.push_str(&format!("{} {:064x}\n", id(4096), 4096));
    std::fs::write(&registry, &text).expect("write");
    let err = daemon.spawn().expect_err("4097 projects");
    assert!(err.contains("more than 4096 projects"), "{err}");
}

/// Finding 8: `securestore set KEY VALUE` puts the secret where every user can read it
/// (`/proc/<pid>/cmdline`). It still works, with a warning; `--help` points to stdin.
#[test]
fn a_value_on_the_command_line_draws_a_warning() {
    let daemon = Daemon::start();
    let out = daemon
        .cli()
        .args(["--project", PROJECT, "set", "k", "in-argv"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("warning") && text.contains("/proc/<pid>/cmdline") && text.contains("stdin"),
        "{text}"
    );
    let out = run_with_stdin(
        daemon.cli().args(["--project", PROJECT, "set", "k"]),
        b"on-stdin",
    );
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "no warning for stdin: {}",
        stderr(&out)
    );
    let help = daemon.cli().args(["set", "--help"]).output().expect("run");
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("stdin") && help.contains("visible to all users"),
        "{help}"
    );
}

/// Finding 8: a token file others may read lets them open the project; the CLI says so.
#[test]
fn a_token_file_others_may_read_draws_a_warning() {
    let daemon = Daemon::start();
    let out = daemon
        .cli()
        .args(["project", "add", PROJECT])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8(out.stdout).expect("utf-8");
    let file = token_file(daemon.dir.path(), "token", token.trim());
    let get = || {
        daemon
            .cli()
            .args(["--project", PROJECT, "--token-file"])
            .arg(&file)
            .args(["get", "k"])
            .output()
            .expect("run")
    };
    let out = get();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));

    chmod(&file, 0o644);
    let out = get();
    assert_eq!(out.status.code(), Some(1), "still used: {}", stderr(&out));
    let text = stderr(&out);
    assert!(
        text.contains("warning")
            && text.contains(&file.display().to_string())
            && text.contains("0644")
            && text.contains("chmod 600"),
        "{text}"
    );
}
