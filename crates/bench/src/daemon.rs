//! The real `securestored`, started as a child process on a socket in a temp folder, with its
//! database and master key in a bench store folder.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use securestore_client::{Client, ConnectOptions, GetOptions};
use tempfile::TempDir;

use crate::fixtures::PROJECT;

/// The daemon binary's file name.
const BINARY: &str = "securestored";
/// How long a daemon may take to serve its first request before the bench gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How often readiness is polled, so start-up is timed to about this precision.
const POLL_EVERY: Duration = Duration::from_millis(1);

/// `securestored` next to this executable (`target/release/` for a release run), or `chosen`
/// (`--daemon`) when given.
///
/// # Errors
/// When it has not been built, with the command that builds it.
pub fn binary(chosen: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = chosen {
        if !path.is_file() {
            bail!("--daemon {}: no such file", path.display());
        }
        return Ok(path.to_owned());
    }
    let exe = std::env::current_exe().context("cannot find the bench's own executable")?;
    let dir = exe.parent().context("the bench executable has no folder")?;
    let path = dir.join(BINARY);
    if !path.is_file() {
        bail!(
            "{} is missing: build the daemon first with `cargo build --release --workspace`",
            path.display()
        );
    }
    Ok(path)
}

/// The folders of one store: `data/` (database), `state/master.key`, and `daemon.log`.
#[derive(Debug, Clone)]
pub struct StoreDir {
    /// The store's root folder.
    pub root: PathBuf,
}

impl StoreDir {
    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Reads every file of the store's database folder once, so its pages are in the kernel's page
    /// cache before the daemon starts: the scale rows then compare b-tree lookups at 1,000 and at
    /// 1,000,000 items, not a shared disk's random reads (a store left cold by other work on the
    /// machine made 1,000,000-item gets 100× slower in one run). Returns the bytes read.
    ///
    /// # Errors
    /// When the folder or a file cannot be read.
    pub fn warm_page_cache(&self) -> anyhow::Result<u64> {
        use std::io::Read as _;
        let dir = self.data_dir();
        let mut total = 0;
        let mut buffer = vec![0; 1 << 20];
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let path = entry?.path();
            if !path.is_file() {
                continue;
            }
            let mut file =
                File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            loop {
                let n = file
                    .read(&mut buffer)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
        }
        Ok(total)
    }

    fn key_file(&self) -> PathBuf {
        self.root.join("state/master.key")
    }

    fn log_file(&self) -> PathBuf {
        self.root.join("daemon.log")
    }
}

/// When a freshly launched daemon became usable, measured from just before `spawn`.
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    /// The socket accepted a connection. `securestored` binds before it opens the store, so this
    /// alone does not mean requests are served.
    pub bound: Duration,
    /// The handshake was answered: the store is open and the accept loop runs.
    pub handshake: Duration,
    /// The first get was answered (the moment an app's start-up read would return).
    pub first_get: Duration,
}

/// How to launch a daemon beyond the flags every bench daemon gets.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// A program and its arguments that run the daemon (e.g. `valgrind --tool=callgrind`).
    pub wrapper: Vec<OsString>,
    /// Extra flags for `securestored` (e.g. `--max-connections 1024`).
    pub args: Vec<OsString>,
}

/// A running `securestored`, killed if dropped without [`Daemon::stop`].
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    store: StoreDir,
    /// Holds the socket; removed when the daemon is done.
    run_dir: TempDir,
    launched: Instant,
}

impl Daemon {
    /// Launches the daemon on `store` and waits until it answers a get.
    ///
    /// # Errors
    /// When it cannot be spawned, exits, or is not ready within a minute.
    pub async fn start(binary: &Path, store: &StoreDir) -> anyhow::Result<(Self, Readiness)> {
        Self::start_with(binary, store, &Launch::default()).await
    }

    /// As [`Daemon::start`], with extra flags or under a wrapper (valgrind).
    ///
    /// # Errors
    /// As [`Daemon::start`].
    pub async fn start_with(
        binary: &Path,
        store: &StoreDir,
        launch: &Launch,
    ) -> anyhow::Result<(Self, Readiness)> {
        let mut daemon = Self::launch(binary, store, launch)?;
        let readiness = daemon.wait_ready().await?;
        Ok((daemon, readiness))
    }

    fn launch(binary: &Path, store: &StoreDir, launch: &Launch) -> anyhow::Result<Self> {
        let run_dir = tempfile::Builder::new()
            .prefix("securestore-bench")
            .tempdir()
            .context("cannot create the socket folder")?;
        let log = File::create(store.log_file())
            .with_context(|| format!("cannot create {}", store.log_file().display()))?;
        let mut command = match launch.wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut command = Command::new(program);
                command.args(wrapper_args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        command
            .args(&launch.args)
            .arg("--socket")
            .arg(socket_in(&run_dir))
            .arg("--data-dir")
            .arg(store.data_dir())
            .arg("--key-file")
            .arg(store.key_file())
            // Logging every request would be measured too; warnings still reach daemon.log.
            .env("RUST_LOG", "warn")
            .env_remove("SECURESTORE_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let launched = Instant::now();
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(Self {
            child: Some(child),
            store: store.clone(),
            run_dir,
            launched,
        })
    }

    /// Polls every millisecond: first for the socket, then for a handshake and a get.
    async fn wait_ready(&mut self) -> anyhow::Result<Readiness> {
        let deadline = self.launched + READY_TIMEOUT;
        while tokio::net::UnixStream::connect(self.socket())
            .await
            .is_err()
        {
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "securestored did not bind its socket in time{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
        let bound = self.launched.elapsed();
        let client = self.connect().await?;
        let handshake = self.launched.elapsed();
        client
            .get_item("ready-probe", GetOptions::default())
            .await
            .with_context(|| format!("the first get failed{}", self.log_tail()))?;
        Ok(Readiness {
            bound,
            handshake,
            first_get: self.launched.elapsed(),
        })
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        let child = self.child.as_mut().context("the daemon was stopped")?;
        if let Some(status) = child.try_wait().context("cannot check the daemon")? {
            self.child = None;
            bail!("securestored exited with {status}{}", self.log_tail());
        }
        Ok(())
    }

    /// The socket path.
    pub fn socket(&self) -> PathBuf {
        socket_in(&self.run_dir)
    }

    /// A new connection, bound to the bench project.
    ///
    /// # Errors
    /// When the daemon does not accept it.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let options = ConnectOptions {
            timeout: READY_TIMEOUT,
            ..ConnectOptions::default()
        };
        Client::connect_with(self.socket(), PROJECT, options)
            .await
            .with_context(|| format!("cannot connect to securestored{}", self.log_tail()))
    }

    /// `count` connections, each its own socket.
    ///
    /// # Errors
    /// As [`Daemon::connect`].
    pub async fn connect_many(&self, count: usize) -> anyhow::Result<Vec<Client>> {
        let mut clients = Vec::with_capacity(count);
        for _ in 0..count {
            clients.push(self.connect().await?);
        }
        Ok(clients)
    }

    /// The daemon's process id.
    ///
    /// # Errors
    /// When the daemon was stopped.
    pub fn pid(&self) -> anyhow::Result<u32> {
        Ok(self.child.as_ref().context("the daemon was stopped")?.id())
    }

    /// The daemon's resident set size (`VmRSS`), in bytes.
    ///
    /// # Errors
    /// When `/proc/<pid>/status` cannot be read or has no `VmRSS` line.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let child = self.child.as_ref().context("the daemon was stopped")?;
        let path = format!("/proc/{}/status", child.id());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse::<u64>().ok())
            .with_context(|| format!("no VmRSS in {path}"))?;
        Ok(kib * 1024)
    }

    /// Stops the daemon with SIGTERM (it checkpoints its WAL) and waits for a clean exit.
    ///
    /// # Errors
    /// When the signal cannot be sent or the daemon exits with a failure.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let mut child = self
            .child
            .take()
            .context("the daemon was already stopped")?;
        let pid = i32::try_from(child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
            .context("the daemon's pid is not a valid pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .context("cannot send SIGTERM to securestored")?;
        let status = child.wait().context("cannot wait for securestored")?;
        if !status.success() {
            bail!("securestored stopped with {status}{}", self.log_tail());
        }
        Ok(())
    }

    /// The end of the daemon's log, for error messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.store.log_file()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        if tail.is_empty() {
            String::new()
        } else {
            format!(
                "; its log ({}) ends:\n{tail}",
                self.store.log_file().display()
            )
        }
    }
}

/// The socket path in `run_dir`, one folder down: the daemon creates that folder itself with the
/// private mode it insists on.
fn socket_in(run_dir: &TempDir) -> PathBuf {
    run_dir.path().join("run/securestored.sock")
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Best effort on an error path: the bench is already reporting a failure.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
