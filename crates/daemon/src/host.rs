//! [`Host`]: the daemon run inside another program (an app, a JVM through the Java bindings) on a
//! thread of its own, serving its Unix socket and, without a socket, the host process itself.
//!
//! A host starts exactly as `securestored` does: bind the socket (its lock file keeps one daemon per
//! socket), lock the data folder, open the backend and the project registry, then [`crate::run`]'s
//! loop. In-process peers get one end of a [`tokio::io::duplex`] pipe, served by the same connection
//! code as a socket peer: the same handshake, the same binding to one project, the same token check.
//! Their uid is the daemon's own, because they are this process.
//!
//! Beside the pipe, [`Host::open_direct`] gives an in-process caller the direct lane
//! ([`crate::direct`]): gets answered on the caller's own thread from the daemon's reader pool. The
//! host learns that pool from [`crate::server::serve`], which sends it once the store is open;
//! [`Host::start`] returns only after it has arrived.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context as _;
use securestore_backends::Backend;
use securestore_proto::{SecretString, ServiceError};
use tokio::io::DuplexStream;
use tokio::sync::{mpsc, oneshot};

use crate::backend::BackendPaths;
use crate::direct::{Direct, Lane};
use crate::lock::LockFile;
use crate::registry::{REGISTRY_FILE, Registry};
use crate::{Config, socket};

/// Bytes buffered in each direction of an in-process pipe; a larger frame simply waits for the
/// reader, as on a socket.
const PIPE_BUFFER: usize = 64 * 1024;

/// In-process connections that may wait to be served before [`Host::open_stream`] waits too.
const PENDING_IN_PROCESS: usize = 64;

/// Where a [`Host`] serves and keeps its data.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The Unix socket other processes connect to.
    pub socket: PathBuf,
    /// The data folder (locked for the host's life) and the master key file.
    pub paths: BackendPaths,
    /// Limits and policy. Its `registry` is replaced by the one in the data folder
    /// ([`REGISTRY_FILE`]), as `securestored` does, so projects registered by either stay registered.
    pub config: Config,
}

/// The daemon running on its own thread inside this process. Dropping it stops it (see [`Host::stop`]).
#[derive(Debug)]
pub struct Host {
    socket: PathBuf,
    max_value_bytes: u32,
    registry: Arc<Registry>,
    /// The reader pool and admission state for [`Host::open_direct`].
    lane: Lane,
    /// Hands the daemon's end of each in-process pipe to the accept loop.
    peers: mpsc::Sender<DuplexStream>,
    /// Fired by [`Host::stop`]: the loop stops accepting and drains.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Host {
    /// Starts the daemon on a new thread and returns once it is serving.
    ///
    /// `open_backend` runs on the host's thread after the socket is bound and the data folder is
    /// locked, so a second host on the same socket or data folder fails before touching the store.
    ///
    /// # Errors
    /// Another daemon (in this or another process) holds the socket or the data folder; the socket
    /// folder is not private; the backend or the registry cannot be opened; no thread can be started.
    pub fn start(
        host: HostConfig,
        open_backend: impl FnOnce(&BackendPaths) -> anyhow::Result<Box<dyn Backend>> + Send + 'static,
    ) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (peers_tx, peers_rx) = mpsc::channel(PENDING_IN_PROCESS);
        let (lane_tx, lane_rx) = std::sync::mpsc::channel();
        let socket_path = host.socket.clone();
        let max_value_bytes = host.config.max_value_bytes;
        let thread = std::thread::Builder::new()
            .name("securestore-host".to_owned())
            .spawn(move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the host's async runtime")?;
                runtime.block_on(async move {
                    let opened = open(&host, open_backend);
                    let (listener, socket_guard, data_lock, backend, config) = match opened {
                        Ok(opened) => opened,
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                            return Ok(());
                        }
                    };
                    let _ = ready_tx.send(Ok(config.registry.clone()));
                    let stopped = async {
                        let _ = stop_rx.await;
                    };
                    let served = crate::server::serve(
                        listener,
                        Some(peers_rx),
                        Some(lane_tx),
                        backend,
                        config,
                        stopped,
                    )
                    .await;
                    drop(socket_guard);
                    drop(data_lock);
                    served
                })
            })
            .context("cannot start the host thread")?;
        let ready = match ready_rx.recv() {
            Ok(Ok(registry)) => lane_rx.recv().map(|lane| (registry, lane)).ok(),
            Ok(Err(err)) => {
                let _ = thread.join();
                return Err(err);
            }
            Err(_) => None,
        };
        // No lane: `serve` failed before the store was open (or the thread died).
        let Some((registry, lane)) = ready else {
            let outcome = thread.join();
            return Err(match outcome {
                Ok(Err(err)) => err,
                _ => anyhow::anyhow!("the host thread ended before it was ready"),
            });
        };
        Ok(Self {
            socket: socket_path,
            max_value_bytes,
            registry,
            lane,
            peers: peers_tx,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The socket this host serves.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The value limit, in bytes.
    pub fn max_value_bytes(&self) -> u32 {
        self.max_value_bytes
    }

    /// The project registry, to register projects and issue their tokens from the host itself.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// A new in-process connection, before its handshake: the caller's end of a pipe whose other end
    /// the daemon now serves exactly as it serves a socket peer. Give it to
    /// `securestore_client::Client::connect_stream` to bind it to a project.
    ///
    /// # Errors
    /// When the host has stopped.
    pub async fn open_stream(&self) -> anyhow::Result<DuplexStream> {
        let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
        self.peers
            .send(theirs)
            .await
            .map_err(|_| anyhow::anyhow!("the securestore host has stopped"))?;
        Ok(ours)
    }

    /// A direct read handle bound to `project`, answering gets and contains on the calling thread
    /// (see [`crate::direct`]). It binds exactly as an in-process connection does: same project
    /// check, same registry, policy and token check. It may outlive the host; it then answers
    /// [`ServiceError::ShuttingDown`].
    ///
    /// The caller must send a get here only when it has no write of its own in flight.
    ///
    /// # Errors
    /// As the handshake refuses a connection: [`ServiceError::InvalidProject`],
    /// [`ServiceError::Refused`]; [`ServiceError::ShuttingDown`] once the host is stopping.
    pub fn open_direct(
        &self,
        project: &str,
        token: Option<&SecretString>,
    ) -> Result<Direct, ServiceError> {
        Direct::bind(self.lane.clone(), project, token)
    }

    /// Stops accepting, lets requests under way finish (up to the drain timeout), closes the store
    /// and removes the socket. In-process clients still open see their connection close.
    ///
    /// # Errors
    /// If the daemon failed while serving (e.g. its storage thread panicked).
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .map_err(|_| anyhow::anyhow!("the host thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Err(err) = self.shut_down() {
            tracing::error!("securestore host: {err:#}");
        }
    }
}

type Opened = (
    tokio::net::UnixListener,
    socket::SocketGuard,
    LockFile,
    Box<dyn Backend>,
    Config,
);

/// The same start-up order as `securestored`'s `main`: bind, lock the data folder, open the store.
fn open(
    host: &HostConfig,
    open_backend: impl FnOnce(&BackendPaths) -> anyhow::Result<Box<dyn Backend>>,
) -> anyhow::Result<Opened> {
    let (listener, socket_guard) = socket::bind(&host.socket)?;
    let data_dir = &host.paths.data_dir;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let data_lock = LockFile::acquire(
        &data_dir.join("securestored.lock"),
        &format!("the data folder {}", data_dir.display()),
    )?;
    let backend = open_backend(&host.paths).context("cannot open the store")?;
    let registry = Registry::open(&data_dir.join(REGISTRY_FILE))
        .context("cannot open the project registry")?;
    let config = Config {
        registry: Arc::new(registry),
        ..host.config.clone()
    };
    tracing::info!(
        socket = %host.socket.display(),
        backend = backend.name(),
        data_dir = %data_dir.display(),
        "securestore host ready"
    );
    Ok((listener, socket_guard, data_lock, backend, config))
}
