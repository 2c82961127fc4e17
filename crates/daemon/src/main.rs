//! `securestored`: parses flags, binds the socket (or takes the one systemd passed), opens the store,
//! and calls [`securestore_daemon::run`], telling systemd when it is ready and when it stops.

use std::os::fd::{FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sd_notify::NotifyState;
use securestore_backends::paths;
use securestore_daemon::backend::{self, BackendKind, BackendPaths};
use securestore_daemon::lock::LockFile;
use securestore_daemon::{Config, Policy, REGISTRY_FILE, Registry, socket};
use securestore_proto::handshake::PROTOCOL_VERSION;
use securestore_proto::limits::MAX_VALUE_BYTES_CEILING;
use securestore_proto::paths::{SOCKET_ENV, default_socket_path};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// `--version`: the package version and the newest protocol version served, e.g.
/// `securestored 0.1.0 (protocol 2)`.
static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (protocol {PROTOCOL_VERSION})",
        env!("CARGO_PKG_VERSION")
    )
});

/// The securestore daemon: owns secure storage and serves clients on a Unix socket.
///
/// Runs in the foreground and logs to stderr (filter with RUST_LOG, e.g. RUST_LOG=debug).
/// SIGTERM or SIGINT stops it cleanly. Started by systemd, it serves the socket systemd passes
/// (socket activation) and reports READY=1 and STOPPING=1 to NOTIFY_SOCKET.
#[derive(Debug, Parser)]
#[command(name = "securestored", version = VERSION.as_str())]
struct Args {
    /// Socket to listen on [default: $XDG_RUNTIME_DIR/securestore/securestored.sock]. When systemd
    /// passes a socket, it must be bound here if this is given
    #[arg(long, env = SOCKET_ENV, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Folder of the database [default: $XDG_DATA_HOME/securestore, or ~/.local/share/securestore]
    #[arg(long, env = "SECURESTORE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Master key file, kept apart from the data folder
    /// [default: $XDG_STATE_HOME/securestore/master.key, or ~/.local/state/securestore/master.key]
    #[arg(long, env = "SECURESTORE_KEY_FILE", value_name = "FILE")]
    key_file: Option<PathBuf>,

    /// Largest value accepted, in bytes
    #[arg(long, value_name = "N", default_value_t = Config::default().max_value_bytes,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_VALUE_BYTES_CEILING)))]
    max_value_bytes: u32,

    /// Client connections served at once
    #[arg(long, value_name = "N", default_value_t = Config::default().max_connections as u32,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    max_connections: u32,

    /// Where values are stored: `sqlite` (encrypted SQLite and a master key file), `android` (keys in
    /// a Java KeyStore through JNI; on a desktop, an in-process JVM and a PKCS12 file), `apple` (the
    /// Keychain, Apple targets only)
    #[arg(
        long,
        value_name = "BACKEND",
        default_value = "sqlite",
        env = "SECURESTORE_BACKEND"
    )]
    backend: BackendKind,

    /// Which projects peers may open: `open` (any unregistered project, and registered ones with
    /// their token) or `strict` (only registered projects, with their token)
    #[arg(
        long,
        value_name = "POLICY",
        default_value = "open",
        env = "SECURESTORE_POLICY"
    )]
    policy: Policy,

    /// Bytes of requests held at once across all connections; when spent, the daemon stops reading
    /// sockets until requests finish
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_request_bytes as u64,
          value_parser = clap::value_parser!(u64).range(64 * 1024..=4 * 1024 * 1024 * 1024 - 1))]
    max_request_bytes: u64,

    /// Bytes of requests one connection may hold at once (at least one whole frame)
    #[arg(long, value_name = "BYTES", default_value_t = Config::default().max_request_bytes_per_connection as u64,
          value_parser = clap::value_parser!(u64).range(1..=4 * 1024 * 1024 * 1024 - 1), hide_short_help = true)]
    max_request_bytes_per_connection: u64,

    /// Requests one connection may have waiting at once (for a commit, an event); more are answered
    /// "throttled". A request answered as soon as it is read, like most gets, never waits
    #[arg(long, value_name = "N", default_value_t = Config::default().max_in_flight_per_connection as u32,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_in_flight: u32,

    /// Milliseconds a new connection has to complete its handshake
    #[arg(long, value_name = "MS", default_value_t = Config::default().handshake_timeout.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(10..=600_000), hide_short_help = true)]
    handshake_timeout_ms: u64,

    /// Milliseconds a frame may stay half-received before its connection is closed
    #[arg(long, value_name = "MS", default_value_t = Config::default().frame_timeout.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(10..=600_000), hide_short_help = true)]
    frame_timeout_ms: u64,

    /// Device state at start: `unlocked` (every class available; right for a desktop daemon no host
    /// signals), `locked` or `before-first-unlock` (for a host that sends `securestore device
    /// unlock`)
    #[arg(long, value_name = "STATE", default_value = "unlocked")]
    device_state: securestore_proto::LockState,

    /// Whether the device has a passcode at start (WHEN_PASSCODE_SET_THIS_DEVICE_ONLY items need one)
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    passcode: bool,
}

/// `$VAR/securestore`, or `~/<fallback>/securestore` when the variable is unset or empty.
fn xdg_dir(var: &str, fallback: &str) -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os(var) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let home = std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .with_context(|| {
                    format!("neither {var} nor HOME is set; pass the path explicitly")
                })?;
            Path::new(&home).join(fallback)
        }
    };
    Ok(base.join("securestore"))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // jni logs "detached thread" from a thread-local destructor when an attached thread ends;
        // reaching the subscriber from there panics inside a destructor and aborts the process.
        .add_directive("jni=warn".parse().expect("a valid directive"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// SIGTERM and SIGINT, caught from the moment [`StopSignals::install`] runs. Installed before the
/// socket is bound, so a supervisor that stops the daemon as soon as the socket appears (while the
/// store is still opening, a migration perhaps under way) stops it cleanly once it is ready,
/// instead of killing it with the store half-open and the socket left behind.
struct StopSignals(Option<(Signal, Signal)>);

impl StopSignals {
    fn install() -> Self {
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Self(Some((term, int))),
            _ => {
                tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
                Self(None)
            }
        }
    }

    /// Completes on the first SIGTERM or SIGINT since [`StopSignals::install`].
    async fn received(self) {
        let Some((mut term, mut int)) = self.0 else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

/// Takes the sockets the service manager passed (`LISTEN_FDS`, for this process by `LISTEN_PID`),
/// each with its `LISTEN_FDNAMES` name; none when not socket-activated.
///
/// Must run first in `main`, before anything opens a file descriptor or starts a thread.
#[allow(unsafe_code)]
fn take_listen_fds() -> anyhow::Result<Vec<(OwnedFd, String)>> {
    let fds = sd_notify::listen_fds_with_names()
        .context("cannot read the sockets systemd passed (LISTEN_FDS, LISTEN_FDNAMES)")?;
    Ok(fds
        .map(|(fd, name)| {
            // SAFETY: sd-notify returns descriptors only when LISTEN_PID is this process's id, so
            // the service manager opened them for this process (sd_listen_fds(3)), and it has
            // checked each is open (F_GETFD, F_SETFD). They were inherited, so no object in this
            // process owns them, and this runs once: each is owned, and closed, exactly once.
            (unsafe { OwnedFd::from_raw_fd(fd) }, name)
        })
        .collect())
}

/// Tells the service manager about a change of state, when it asked to be told (`NOTIFY_SOCKET`).
fn notify(state: NotifyState<'_>) {
    if let Err(err) = sd_notify::notify(std::slice::from_ref(&state)) {
        tracing::warn!(%err, %state, "cannot notify the service manager");
    }
}

async fn serve(args: Args, mut passed: Vec<(OwnedFd, String)>) -> anyhow::Result<()> {
    let stop = StopSignals::install();
    // Before binding: a daemon that could not accept its --max-connections must not start at all.
    securestore_daemon::ensure_open_file_limit(args.max_connections as usize)?;
    let storage = BackendPaths {
        data_dir: match args.data_dir {
            Some(dir) => dir,
            None => xdg_dir("XDG_DATA_HOME", ".local/share")?,
        },
        key_file: match args.key_file {
            Some(file) => file,
            None => xdg_dir("XDG_STATE_HOME", ".local/state")?.join("master.key"),
        },
    };
    // Bind first: if another daemon owns this socket, we must not open its store. Then lock the data
    // folder, so a second daemon on another socket cannot share the database and registry.
    let (listener, socket_guard) = match passed.len() {
        0 => socket::bind(&args.socket.unwrap_or_else(default_socket_path))?,
        1 => {
            let (fd, name) = passed.remove(0);
            tracing::info!(name, "serving the socket systemd passed");
            socket::adopt(fd, args.socket.as_deref())?
        }
        _ => {
            let names: Vec<_> = passed.iter().map(|(_, name)| name.as_str()).collect();
            anyhow::bail!(
                "systemd passed {} sockets ({}); give securestored exactly one ListenStream=",
                passed.len(),
                names.join(", ")
            );
        }
    };
    let socket_path = socket_guard.path().to_owned();
    // A data folder someone else owns or may write to could hand us their database or registry, or
    // take the files we write: refuse it before opening anything inside. A new one is created 0700
    // and synced into its parent.
    paths::ensure_owned_dir(&storage.data_dir).context("the data folder is not safe")?;
    let _data_lock = LockFile::acquire(
        &storage.data_dir.join("securestored.lock"),
        &format!("the data folder {}", storage.data_dir.display()),
    )?;
    let mut backend = backend::open(args.backend, &storage)
        .with_context(|| format!("cannot open the {:?} store", args.backend))?;
    let registry = Registry::open(&storage.data_dir.join(REGISTRY_FILE))
        .context("cannot open the project registry")?;
    // Before any peer is served: a removal a crash interrupted is finished, never exposed.
    registry.finish_interrupted_removals(backend.as_mut());
    let config = Config {
        max_value_bytes: args.max_value_bytes,
        max_connections: args.max_connections as usize,
        max_request_bytes: usize::try_from(args.max_request_bytes).unwrap_or(usize::MAX),
        max_request_bytes_per_connection: usize::try_from(args.max_request_bytes_per_connection)
            .unwrap_or(usize::MAX),
        max_in_flight_per_connection: args.max_in_flight as usize,
        handshake_timeout: Duration::from_millis(args.handshake_timeout_ms),
        frame_timeout: Duration::from_millis(args.frame_timeout_ms),
        policy: args.policy,
        registry: Arc::new(registry),
        device: securestore_proto::DeviceStatus {
            lock: args.device_state,
            passcode_set: args.passcode,
        },
        ..Config::default()
    };
    tracing::info!(
        socket = %socket_path.display(),
        backend = backend.name(),
        data_dir = %storage.data_dir.display(),
        key_file = %storage.key_file.display(),
        policy = ?config.policy,
        "securestored ready"
    );
    let shutdown = async {
        // `run` first polls this once its storage threads are up and its accept loop is waiting:
        // the store is open and the socket is served, which is what READY=1 promises.
        notify(NotifyState::Ready);
        stop.received().await;
        notify(NotifyState::Stopping);
    };
    securestore_daemon::run(listener, backend, config, shutdown).await?;
    drop(socket_guard);
    Ok(())
}

fn main() -> ExitCode {
    // First of all: nothing may have opened a descriptor or started a thread before these are owned.
    let passed = take_listen_fds();
    let args = Args::parse();
    init_logging();
    let passed = match passed {
        Ok(passed) => passed,
        Err(err) => {
            eprintln!("securestored: {err:#}");
            return ExitCode::FAILURE;
        }
    };
    // Before any secret is in memory: no core dumps, no ptrace attach.
    if let Err(err) = securestore_daemon::harden_process() {
        eprintln!("securestored: {err:#}");
        return ExitCode::FAILURE;
    }
    // One async thread: connection work is light (framing, decoding), storage runs on its own
    // threads, and a single executor thread avoids cross-thread wake-ups on every request.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("securestored: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args, passed)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("securestored: {err:#}");
            ExitCode::FAILURE
        }
    }
}
