//! systemd: socket activation through the real `systemd-socket-activate` (which binds the socket,
//! waits for the first connection, then execs `securestored` with `LISTEN_FDS`, as systemd does),
//! the checks on a passed socket, and the `READY=1` / `STOPPING=1` notifications on a
//! `NOTIFY_SOCKET` the test binds.

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use securestore_e2e::{PROJECT, bin, run_with_stdin};
use tempfile::TempDir;

/// How long anything here may take before the test gives up (a generous bound, never asserted on).
const PATIENCE: Duration = Duration::from_secs(20);

/// `systemd-socket-activate`, from Debian's `systemd` package.
fn socket_activate() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("systemd-socket-activate"))
            .find(|candidate| candidate.is_file())
    });
    found.expect("systemd-socket-activate is not installed (Debian: apt-get install systemd)")
}

/// A temp folder with a private `run/` for the socket (as `DirectoryMode=0700` makes it), and the
/// data and key paths of a daemon.
struct Place {
    dir: TempDir,
}

impl Place {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("securestore-sd")
            .tempdir()
            .expect("tempdir");
        fs::create_dir(dir.path().join("run")).expect("run folder");
        fs::set_permissions(dir.path().join("run"), fs::Permissions::from_mode(0o700))
            .expect("chmod run");
        Self { dir }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/securestored.sock")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A datagram socket standing in for systemd's notification socket.
    fn notify_socket(&self) -> (PathBuf, UnixDatagram) {
        let path = self.dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notification socket");
        socket
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        (path, socket)
    }

    /// `systemd-socket-activate` listening on `socket`, ready to exec `securestored` with `args`
    /// (after the data and key paths) and `env` on the first connection.
    fn activate(&self, socket: &Path, extra: &[&str], args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut command: Vec<OsString> = vec![
            bin("securestored").into(),
            "--data-dir".into(),
            self.data_dir().into(),
            "--key-file".into(),
            self.dir.path().join("state/master.key").into(),
        ];
        command.extend(args.iter().map(OsString::from));
        self.activate_command(socket, extra, &command, env)
    }

    /// `systemd-socket-activate` listening on `socket`, ready to exec `command` with `env`.
    fn activate_command(
        &self,
        socket: &Path,
        extra: &[&str],
        command: &[OsString],
        env: &[(&str, &str)],
    ) -> Proc {
        let mut cmd = Command::new(socket_activate());
        cmd.arg("--listen").arg(socket).args(extra);
        cmd.arg("--setenv=RUST_LOG=debug");
        for (name, value) in env {
            cmd.arg(format!("--setenv={name}={value}"));
        }
        cmd.args(command);
        let child = cmd
            .env_remove("SECURESTORE_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(self.log_path()).expect("log file"))
            .spawn()
            .expect("spawn systemd-socket-activate");
        let proc = Proc { child };
        let deadline = Instant::now() + PATIENCE;
        // It logs this once the socket listens (the file exists a moment earlier, after bind).
        while !self.log().contains("Listening on") {
            assert!(
                Instant::now() < deadline,
                "systemd-socket-activate did not bind {}:\n{}",
                socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        proc
    }

    /// The `securestore` CLI on `socket` and the test project.
    fn cli(&self, socket: &Path) -> Command {
        let mut cmd = Command::new(bin("securestore"));
        cmd.arg("--socket")
            .arg(socket)
            .arg("--project")
            .arg(PROJECT)
            .env_remove("SECURESTORE_SOCKET")
            .env_remove("SECURESTORE_PROJECT");
        cmd
    }
}

/// A child process, killed if the test ends before it exits.
struct Proc {
    child: Child,
}

impl Proc {
    /// The process's name: `systemd-socket-` (cut to 15 bytes) until it execs `securestored`.
    fn name(&self) -> String {
        fs::read_to_string(format!("/proc/{}/comm", self.child.id()))
            .expect("read comm")
            .trim()
            .to_owned()
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "the daemon did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn terminate(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The lines of the next notification datagram.
fn next_notification(socket: &UnixDatagram) -> Vec<String> {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the time allowed");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .map(str::to_owned)
        .collect()
}

/// `SocketMode=0600`: what the socket unit asks of systemd, done by hand here because
/// `systemd-socket-activate` always makes its sockets 0644.
fn socket_mode_0600(socket: &Path) {
    fs::set_permissions(socket, fs::Permissions::from_mode(0o600)).expect("chmod socket");
}

#[test]
fn the_first_connection_starts_the_daemon_and_is_served() {
    let place = Place::new();
    let socket = place.socket();
    let (notify_path, notifications) = place.notify_socket();
    let notify = notify_path.to_str().expect("utf-8 path");
    let mut daemon = place.activate(
        &socket,
        &["--fdname=securestored"],
        &["--socket", socket.to_str().expect("utf-8 path")],
        &[("NOTIFY_SOCKET", notify)],
    );
    socket_mode_0600(&socket);

    // Nothing has connected: securestored has not started, opened nothing and said nothing.
    assert!(
        daemon.name().starts_with("systemd-socket"),
        "{}",
        daemon.name()
    );
    assert!(!place.data_dir().exists(), "the store is opened on demand");
    notifications.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 64];
    assert!(
        notifications.recv(&mut buf).is_err(),
        "a notification before any connection"
    );
    notifications.set_nonblocking(false).expect("blocking");

    // The CLI's connection is the first one: it wakes the daemon and is served.
    let set = run_with_stdin(place.cli(&socket).args(["set", "api-token"]), b"s3cret\n");
    assert!(
        set.status.success(),
        "set: {}\n{}",
        String::from_utf8_lossy(&set.stderr),
        place.log()
    );
    assert_eq!(daemon.name(), "securestored");
    assert!(place.data_dir().exists(), "the store is open");
    assert!(
        place
            .log()
            .contains("serving the socket systemd passed name=\"securestored\""),
        "{}",
        place.log()
    );
    assert_eq!(next_notification(&notifications), ["READY=1"]);

    let get = place
        .cli(&socket)
        .args(["get", "api-token"])
        .output()
        .expect("get");
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&get.stdout), "s3cret\n");

    daemon.terminate();
    assert_eq!(next_notification(&notifications), ["STOPPING=1"]);
    let status = daemon.wait();
    assert!(status.success(), "{status}\n{}", place.log());
    // The socket is systemd's: it stays for the next activation.
    assert!(
        fs::symlink_metadata(&socket).is_ok_and(|m| m.file_type().is_socket()),
        "the daemon removed the socket systemd owns"
    );
}

/// The values of `key` in a unit file, one per `key=` line.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

/// The one value of `key` in a unit file.
fn unit_value(unit: &str, key: &str) -> String {
    let values = unit_values(unit, key);
    assert_eq!(values.len(), 1, "{key}= is given once: {values:?}");
    values.into_iter().next().expect("one value")
}

fn read_unit(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist/systemd")
        .join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn the_units_commands_serve_the_cli_on_its_default_socket() {
    let socket_unit = read_unit("securestored.socket");
    let service_unit = read_unit("securestored.service");
    let place = Place::new();
    // A user's %h (home) and %t ($XDG_RUNTIME_DIR), with the daemon where ExecStart= expects it.
    let home = place.dir.path().join("home");
    let runtime = place.dir.path().join("run");
    fs::create_dir_all(home.join(".cargo/bin")).expect("home");
    std::os::unix::fs::symlink(bin("securestored"), home.join(".cargo/bin/securestored"))
        .expect("link the daemon");
    let expand = |value: &str| {
        value
            .replace("%h", home.to_str().expect("utf-8 path"))
            .replace("%t", runtime.to_str().expect("utf-8 path"))
    };
    let octal =
        |key: &str| u32::from_str_radix(&unit_value(&socket_unit, key), 8).expect("an octal mode");

    // What systemd does for the socket unit: the folder (DirectoryMode=), the listening socket
    // (ListenStream=, SocketMode=).
    let socket = PathBuf::from(expand(&unit_value(&socket_unit, "ListenStream")));
    let folder = socket.parent().expect("a folder");
    fs::create_dir_all(folder).expect("socket folder");
    fs::set_permissions(folder, fs::Permissions::from_mode(octal("DirectoryMode"))).expect("chmod");
    // For the service: ExecStartPre= (run outside the sandbox, "+"), then ExecStart= on activation.
    for pre in unit_values(&service_unit, "ExecStartPre") {
        let pre = expand(pre.trim_start_matches('+'));
        let words: Vec<&str> = pre.split_whitespace().collect();
        let status = Command::new(words[0])
            .args(&words[1..])
            .status()
            .expect("run ExecStartPre");
        assert!(status.success(), "{pre}");
    }
    let start = expand(&unit_value(&service_unit, "ExecStart"));
    let command: Vec<OsString> = start.split_whitespace().map(OsString::from).collect();
    let runtime_env = runtime.to_str().expect("utf-8 path");
    // The daemon is not told the socket: systemd passes it.
    let mut daemon =
        place.activate_command(&socket, &[], &command, &[("XDG_RUNTIME_DIR", runtime_env)]);
    fs::set_permissions(&socket, fs::Permissions::from_mode(octal("SocketMode")))
        .expect("chmod socket");

    // Nor is the CLI: its default under this XDG_RUNTIME_DIR is the unit's socket.
    let cli = || {
        let mut cmd = Command::new(bin("securestore"));
        cmd.args(["--project", PROJECT])
            .env("XDG_RUNTIME_DIR", runtime_env)
            .env_remove("SECURESTORE_SOCKET")
            .env_remove("SECURESTORE_PROJECT");
        cmd
    };
    let set = run_with_stdin(cli().args(["set", "k"]), b"v\n");
    assert!(
        set.status.success(),
        "set: {}\n{}",
        String::from_utf8_lossy(&set.stderr),
        place.log()
    );
    let get = cli().args(["get", "k"]).output().expect("get");
    assert_eq!(String::from_utf8_lossy(&get.stdout), "v\n");
    assert_eq!(daemon.name(), "securestored");
    daemon.terminate();
    assert!(daemon.wait().success(), "{}", place.log());

    // Under ProtectSystem=strict the daemon may write only in ReadWritePaths=: the folders of its
    // socket (the lock file), its data and its key file must all be there.
    let writable: Vec<PathBuf> = unit_values(&service_unit, "ReadWritePaths")
        .iter()
        .flat_map(|line| {
            line.split_whitespace()
                .map(|p| PathBuf::from(expand(p)))
                .collect::<Vec<_>>()
        })
        .collect();
    let arg_after = |flag: &str| {
        let at = command.iter().position(|a| a == flag).expect(flag);
        PathBuf::from(&command[at + 1])
    };
    let key_folder = arg_after("--key-file")
        .parent()
        .expect("a folder")
        .to_owned();
    for needed in [folder.to_owned(), arg_after("--data-dir"), key_folder] {
        assert!(
            needed.is_dir() && writable.contains(&needed),
            "{} is not among ReadWritePaths= {writable:?}",
            needed.display()
        );
    }
    assert!(arg_after("--data-dir").join("securestore.db").exists());
}

/// Starts `securestored` through `systemd-socket-activate` on `socket`, connects once to wake it,
/// and returns its failed exit's log, checking it opened no store.
fn refused_start(place: &Place, socket: &Path, extra: &[&str], args: &[&str]) -> String {
    let mut daemon = place.activate(socket, extra, args, &[]);
    if extra.contains(&"--datagram") {
        let poke = UnixDatagram::unbound().expect("datagram");
        poke.send_to(b"wake up", socket).expect("send a datagram");
    } else {
        // The connection only wakes the daemon; it is closed when the daemon exits.
        let _poke = UnixStream::connect(socket).expect("connect");
    }
    let status = daemon.wait();
    let log = place.log();
    assert!(!status.success(), "the daemon accepted the socket:\n{log}");
    assert!(
        log.contains("Execing"),
        "securestored never started:\n{log}"
    );
    assert!(
        !place.data_dir().exists(),
        "nothing is opened before the socket passes its checks:\n{log}"
    );
    log
}

#[test]
fn a_passed_socket_others_could_connect_to_is_refused() {
    let place = Place::new();
    // Left as systemd-socket-activate makes it: 0644, not SocketMode=0600.
    let log = refused_start(&place, &place.socket(), &[], &[]);
    assert!(
        log.contains("is open to group or others (mode 0644); set SocketMode=0600"),
        "{log}"
    );
}

#[test]
fn a_passed_socket_in_a_folder_others_can_enter_is_refused() {
    let place = Place::new();
    fs::set_permissions(
        place.dir.path().join("run"),
        fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let log = refused_start(&place, &place.socket(), &[], &[]);
    assert!(log.contains("the socket folder is not safe"), "{log}");
    assert!(log.contains("0700"), "{log}");
}

#[test]
fn a_passed_socket_bound_elsewhere_than_socket_is_refused() {
    let place = Place::new();
    let socket = place.socket();
    let elsewhere = place.dir.path().join("run/other.sock");
    let mut daemon = place.activate(
        &socket,
        &[],
        &["--socket", elsewhere.to_str().expect("utf-8 path")],
        &[],
    );
    socket_mode_0600(&socket);
    let _poke = UnixStream::connect(&socket).expect("connect");
    assert!(!daemon.wait().success());
    let log = place.log();
    assert!(log.contains("make them agree"), "{log}");
    assert!(!elsewhere.exists(), "the daemon bound a socket of its own");
    assert!(!place.data_dir().exists(), "{log}");
}

#[test]
fn a_passed_datagram_socket_is_refused() {
    let place = Place::new();
    let log = refused_start(&place, &place.socket(), &["--datagram"], &[]);
    assert!(log.contains("is not a stream socket"), "{log}");
}

#[test]
fn a_passed_descriptor_that_is_not_a_socket_is_refused() {
    let place = Place::new();
    let file = place.dir.path().join("plain-file");
    fs::write(&file, b"not a socket").expect("write");
    // As a service manager would pass it: fd 3, LISTEN_FDS=1, LISTEN_PID naming the daemon.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 3<"$1"; shift; export LISTEN_PID=$$ LISTEN_FDS=1; exec "$@""#)
        .arg("sh")
        .arg(&file)
        .arg(bin("securestored"))
        .arg("--data-dir")
        .arg(place.data_dir())
        .arg("--key-file")
        .arg(place.dir.path().join("state/master.key"))
        .env_remove("SECURESTORE_SOCKET")
        .output()
        .expect("run securestored");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the file descriptor systemd passed is not a socket"),
        "{stderr}"
    );
    assert!(!place.data_dir().exists(), "{stderr}");
}

#[test]
fn descriptors_passed_to_another_process_are_left_alone() {
    // LISTEN_PID names someone else (say, a parent that was socket-activated): the daemon binds
    // its own socket as usual and never touches fd 3.
    let place = Place::new();
    let file = place.dir.path().join("plain-file");
    fs::write(&file, b"not a socket").expect("write");
    let (notify_path, notifications) = place.notify_socket();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 3<"$1"; shift; export LISTEN_PID=1 LISTEN_FDS=1; exec "$@""#)
        .arg("sh")
        .arg(&file)
        .arg(bin("securestored"))
        .arg("--socket")
        .arg(place.socket())
        .arg("--data-dir")
        .arg(place.data_dir())
        .arg("--key-file")
        .arg(place.dir.path().join("state/master.key"))
        .env_remove("SECURESTORE_SOCKET")
        .env("NOTIFY_SOCKET", &notify_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(place.log_path()).expect("log"))
        .spawn()
        .expect("spawn");
    let ready = next_notification(&notifications);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ready, ["READY=1"], "{}", place.log());
    assert!(!place.log().contains("systemd passed"), "{}", place.log());
}

#[test]
fn readiness_and_stopping_are_reported_without_socket_activation() {
    let place = Place::new();
    let (notify_path, notifications) = place.notify_socket();
    let child = securestore_e2e::securestored_in(place.dir.path())
        .env("NOTIFY_SOCKET", &notify_path)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(place.log_path()).expect("log"))
        .spawn()
        .expect("spawn securestored");
    let mut daemon = Proc { child };
    let started = Instant::now();
    assert_eq!(
        next_notification(&notifications),
        ["READY=1"],
        "{}",
        place.log()
    );
    println!("READY=1 after {:?}", started.elapsed());
    // Ready means the store is open...
    assert!(
        place.data_dir().join("securestore.db").exists(),
        "READY=1 before the store was opened"
    );

    // ...and the socket served: the first try succeeds, with no retry loop.
    let set = run_with_stdin(place.cli(&place.socket()).args(["set", "k"]), b"v\n");
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let get = place
        .cli(&place.socket())
        .args(["get", "k"])
        .output()
        .expect("get");
    assert_eq!(String::from_utf8_lossy(&get.stdout), "v\n");

    daemon.terminate();
    assert_eq!(next_notification(&notifications), ["STOPPING=1"]);
    assert!(daemon.wait().success(), "{}", place.log());
    // Bound by the daemon itself, so removed by it.
    assert!(!place.socket().exists());
}
