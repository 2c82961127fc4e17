//! Test support: start the real `securestored` in a temp folder, run the real `securestore` CLI, and
//! open raw connections that skip the client's own checks.
//!
//! The binaries come from the same target folder as the test; `cargo test --workspace` builds them
//! (the daemon and client crates each have an integration test, which makes cargo build their bins).

use std::fs::File;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use securestore_proto::handshake::{self, Hello, HelloReply};
use securestore_proto::tarpc;
use securestore_proto::{SecureStoreClient, ServiceError};
use tempfile::TempDir;

pub mod linearizability;

/// Nanoseconds of `CLOCK_MONOTONIC`: one clock for every process on the machine, so operation
/// times recorded by different client processes can be compared.
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(now.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(now.tv_nsec).unwrap_or(0)
}

/// The project most tests use.
pub const PROJECT: &str = "@tests/app";

/// Path of a binary built from this workspace, next to the running test executable.
///
/// # Panics
/// If the binary has not been built; the message says how to build it.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/it-<hash> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile folder");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build --workspace --bins` first)",
        path.display()
    );
    path
}

/// A real `securestored` on a socket in its own temp folder, killed when dropped.
pub struct Daemon {
    /// Holds `run/` (socket), `data/` (database), `state/` (master key) and `daemon.log`.
    pub dir: TempDir,
    child: Option<Child>,
    extra_args: Vec<String>,
    log_level: String,
    /// Where the database lives, if not in `dir` (e.g. on a small tmpfs).
    data_dir: Option<PathBuf>,
    /// Extra environment, e.g. `RUST_BACKTRACE`.
    extra_env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts a daemon with default flags.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a daemon with extra flags, e.g. `["--max-value-bytes", "10"]`.
    pub fn start_with(args: &[&str]) -> Self {
        Self::start_logging(args, "debug")
    }

    /// Starts a daemon with extra flags and the given `RUST_LOG`.
    pub fn start_logging(args: &[&str], log_level: &str) -> Self {
        Self::launch(args, log_level, None)
    }

    /// Starts a daemon with extra flags, the given `RUST_LOG` and extra environment variables.
    pub fn start_with_env(args: &[&str], log_level: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("securestore-it")
            .tempdir()
            .expect("tempdir");
        let mut daemon = Self {
            dir,
            child: None,
            extra_args: args.iter().map(|a| (*a).to_owned()).collect(),
            log_level: log_level.to_owned(),
            data_dir: None,
            extra_env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        daemon.spawn().expect("daemon starts");
        daemon
    }

    /// Starts a daemon whose database lives in `data_dir`.
    pub fn start_with_data_dir(data_dir: &Path) -> Self {
        Self::launch(&[], "debug", Some(data_dir.to_owned()))
    }

    /// Starts a daemon with extra flags whose database lives in `data_dir`.
    pub fn start_in(data_dir: &Path, args: &[&str]) -> Self {
        Self::launch(args, "debug", Some(data_dir.to_owned()))
    }

    fn launch(args: &[&str], log_level: &str, data_dir: Option<PathBuf>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("securestore-it")
            .tempdir()
            .expect("tempdir");
        let mut daemon = Self {
            dir,
            child: None,
            extra_args: args.iter().map(|a| (*a).to_owned()).collect(),
            log_level: log_level.to_owned(),
            data_dir,
            extra_env: Vec::new(),
        };
        daemon.spawn().expect("daemon starts");
        daemon
    }

    /// Replaces the extra flags for the next [`Self::spawn`] (e.g. another `--policy`).
    pub fn set_args(&mut self, args: &[&str]) {
        self.extra_args = args.iter().map(|a| (*a).to_owned()).collect();
    }

    /// Replaces the extra environment for the next [`Self::spawn`] (e.g. a failpoint).
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.extra_env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    }

    /// Waits for the daemon to exit by itself (e.g. at a failpoint) and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        self.child.take().expect("running").wait().expect("wait")
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/securestored.sock")
    }

    /// The data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| self.dir.path().join("data"))
    }

    /// The master key file.
    pub fn key_file(&self) -> PathBuf {
        self.dir.path().join("state/master.key")
    }

    /// Everything the daemon has logged so far (all its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// A `securestored` command on this daemon's paths, not started.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(bin("securestored"));
        cmd.arg("--socket")
            .arg(self.socket())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--key-file")
            .arg(self.key_file())
            .args(&self.extra_args)
            .env("RUST_LOG", &self.log_level)
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .env_remove("SECURESTORE_SOCKET");
        cmd
    }

    /// Starts the process and waits until it accepts connections.
    ///
    /// # Errors
    /// The daemon's exit status and log if it exits or is not ready within 20 s.
    pub fn spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("log file");
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn securestored");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("try_wait"))
            {
                self.child = None;
                return Err(format!(
                    "securestored exited with {status}:\n{}",
                    self.log()
                ));
            }
            if answers(&self.socket()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("securestored not ready in time:\n{}", self.log()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the daemon process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().expect("try_wait").is_none())
    }

    /// The running daemon's process id, e.g. to read its memory from `/proc`.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        child.wait().expect("wait")
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
    }

    /// Stops the daemon with SIGTERM and starts it again on the same folder.
    pub fn restart(&mut self) {
        let status = self.stop();
        assert!(
            status.success(),
            "clean stop failed: {status}\n{}",
            self.log()
        );
        self.spawn().expect("daemon restarts");
    }

    /// Checks that the daemon still serves a well-formed client correctly: a set, then a get of it.
    pub async fn assert_serving(&self) {
        let client = self.client(PROJECT).await;
        client
            .set_item("alive", "yes", securestore_client::SetOptions::default())
            .await
            .expect("set");
        let found = client
            .get_item("alive", securestore_client::GetOptions::default())
            .await
            .expect("get");
        assert_eq!(found.as_ref().map(|v| v.expose_secret()), Some("yes"));
    }

    /// An async client bound to `project`.
    pub async fn client(&self, project: &str) -> securestore_client::Client {
        securestore_client::Client::connect(self.socket(), project)
            .await
            .expect("client connects")
    }

    /// Runs the `securestore` CLI aimed at this daemon with `args`, and returns its output.
    pub fn run_cli(&self, args: &[&str]) -> Output {
        self.cli().args(args).output().expect("run securestore")
    }

    /// The `securestore` CLI aimed at this daemon, not started.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(bin("securestore"));
        cmd.arg("--socket")
            .arg(self.socket())
            .env_remove("SECURESTORE_PROJECT")
            .env_remove("SECURESTORE_SOCKET");
        cmd
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether a daemon at `socket` answers a handshake. A bare `connect` is not enough: the socket is
/// bound before the store is opened, and a daemon that then fails to open it exits.
fn answers(socket: &Path) -> bool {
    use securestore_proto::handshake::AdminRequest;
    use std::io::{Read, Write};
    let Ok(mut stream) = StdUnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let hello = securestore_proto::codec::encode(&Hello::admin(AdminRequest::ListProjects), 4096)
        .expect("encode hello");
    let mut len = [0u8; 4];
    stream.write_all(&frame(&hello)).is_ok() && stream.read_exact(&mut len).is_ok()
}

/// A `securestored` command whose socket, data folder and key file all live under `dir` (for
/// daemons the tests start by hand, e.g. to watch them refuse to start).
pub fn securestored_in(dir: &Path) -> Command {
    let mut cmd = Command::new(bin("securestored"));
    cmd.arg("--socket")
        .arg(dir.join("run/securestored.sock"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--key-file")
        .arg(dir.join("state/master.key"))
        .env_remove("SECURESTORE_SOCKET");
    cmd
}

/// Writes `bytes` to `stream`, then waits up to `within` for the daemon to close it (EOF or reset).
/// Returns whether it did.
pub async fn closed_after(
    stream: &mut tokio::net::UnixStream,
    bytes: &[u8],
    within: Duration,
) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.write_all(bytes).await;
    let mut buf = [0u8; 1024];
    tokio::time::timeout(within, async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await
    .is_ok()
}

/// The value of `key` (in `service`, or the default one) as `client` reads it.
pub async fn value_of(
    client: &securestore_client::Client,
    key: &str,
    service: Option<&str>,
) -> Option<String> {
    let options = securestore_client::GetOptions {
        keychain_service: service.map(str::to_owned),
    };
    client
        .get_item(key, options)
        .await
        .expect("get")
        .map(|v| v.expose_secret().to_owned())
}

/// Runs `cmd` with `stdin` as its input and returns its output.
pub fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Opens a connection and sends a raw `Hello`, returning the daemon's reply and the open frames.
pub async fn raw_hello(
    socket: &Path,
    hello: &Hello,
) -> (HelloReply, handshake::Frames<tokio::net::UnixStream>) {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let mut frames = handshake::frames(stream);
    handshake::send(&mut frames, hello)
        .await
        .expect("send hello");
    let reply = handshake::recv(&mut frames).await.expect("hello reply");
    (reply, frames)
}

/// A tarpc client bound to `project` that sends whatever it is given: no client-side checks.
pub async fn raw_client(socket: &Path, project: &str) -> Result<SecureStoreClient, ServiceError> {
    let hello = Hello::project(project.to_owned(), None);
    match raw_hello(socket, &hello).await {
        (HelloReply::Accepted(accepted), frames) => {
            let transport = handshake::client_transport(frames, accepted);
            Ok(SecureStoreClient::new(tarpc::client::Config::default(), transport).spawn())
        }
        (HelloReply::Rejected(refusal), _) => Err(refusal),
        (HelloReply::Admin(_), _) => panic!("a registry answer to a project hello"),
    }
}

/// Whether this process runs as root (needed to act as another uid).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A value that proves it is whole: a header naming its writer and round, then a body derived from
/// the header, so a torn or mixed value fails [`is_whole_value`].
pub fn whole_value(writer: u32, round: u32) -> String {
    let header = format!("w{writer}-r{round}:");
    let body: String = header.chars().cycle().take(1500).collect();
    format!("{header}{body}")
}

/// Whether `found` is exactly some [`whole_value`]; returns its (writer, round) if so.
pub fn parse_whole_value(found: &str) -> Option<(u32, u32)> {
    let (head, _) = found.split_once(':')?;
    let (writer, round) = head.strip_prefix('w')?.split_once("-r")?;
    let (writer, round) = (writer.parse().ok()?, round.parse().ok()?);
    (found == whole_value(writer, round)).then_some((writer, round))
}

/// Whether `found` is exactly some [`whole_value`].
pub fn is_whole_value(found: &str) -> bool {
    parse_whole_value(found).is_some()
}

/// Writes `token` to a new 0600 file in `dir` and returns its path, for `--token-file`.
pub fn token_file(dir: &Path, name: &str, token: &str) -> PathBuf {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .expect("create token file");
    writeln!(file, "{token}").expect("write token");
    path
}

/// The bytes of a tarpc request as a client sends them (without the length prefix), due in
/// `deadline`.
pub fn encode_request(
    id: u64,
    message: securestore_proto::SecureStoreRequest,
    deadline: Duration,
) -> Vec<u8> {
    let mut context = tarpc::context::current();
    context.deadline = Instant::now() + deadline;
    let request = tarpc::ClientMessage::Request(tarpc::Request {
        context,
        id,
        message,
    });
    securestore_proto::codec::encode(&request, 1 << 20).expect("encode request")
}

/// A whole frame asking the daemon to drop request `request_id` (what a client sends when a call
/// is given up).
pub fn cancel_frame(request_id: u64) -> Vec<u8> {
    let cancel: tarpc::ClientMessage<securestore_proto::SecureStoreRequest> =
        tarpc::ClientMessage::Cancel {
            trace_context: tarpc::context::current().trace_context,
            request_id,
        };
    frame(&securestore_proto::codec::encode(&cancel, 1 << 20).expect("encode cancel"))
}

/// A whole frame of request `id`: a long poll of watcher `watcher` (20 s) with `deadline`.
pub fn poll_frame(id: u64, watcher: u64, deadline: Duration) -> Vec<u8> {
    let message = securestore_proto::SecureStoreRequest::PollEvents {
        watcher,
        wait_millis: 20_000,
    };
    frame(&encode_request(id, message, deadline))
}

/// Encodes one frame as the wire carries it: a u32 big-endian length, then the body.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// The value the crash writer `writer` sets at `seq`: a header, then a body derived from the seq.
pub fn crash_value(writer: u32, seq: u64) -> String {
    let header = format!("w{writer}-s{seq}-");
    let body: String = seq.to_string().chars().cycle().take(200).collect();
    format!("{header}{body}")
}

/// The (writer, seq) of a value [`crash_value`] made, or `None` if `found` is not exactly one.
pub fn parse_crash_value(found: &str) -> Option<(u32, u64)> {
    let rest = found.strip_prefix('w')?;
    let (writer, rest) = rest.split_once("-s")?;
    let (seq, _) = rest.split_once('-')?;
    let (writer, seq) = (writer.parse().ok()?, seq.parse().ok()?);
    (found == crash_value(writer, seq)).then_some((writer, seq))
}
