//! The accept loop: caps connections, makes room for a newcomer by closing the connection idle
//! longest, hands each to [`crate::connection`], and shuts down in order.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use securestore_backends::Backend;
use tokio::io::DuplexStream;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::budget::Budget;
use crate::connection::{self, Origin, Shared};
use crate::direct::Lane;
use crate::slots::Slots;
use crate::store;

/// While a newcomer waits for a slot, how often the accept loop asks another idle connection to close
/// (the one asked may have turned busy and declined).
const ASK_AGAIN: std::time::Duration = std::time::Duration::from_millis(100);

/// Serves clients on `listener` from `backend` until `shutdown` completes.
///
/// At shutdown it stops accepting, lets requests under way finish (up to
/// [`Config::drain_timeout`]), then closes the backend and returns. Removing the socket file is the
/// caller's job (see [`crate::socket::bind`]). `shutdown` is first polled once the storage threads
/// are up and the accept loop is running, so it may announce readiness (`securestored` sends
/// systemd's `READY=1` from it).
///
/// # Errors
/// If the storage owner thread cannot be started or panicked. A failing client connection is never
/// an error here: it is logged and closed.
pub async fn run(
    listener: UnixListener,
    backend: Box<dyn Backend>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve(listener, None, None, backend, config, shutdown).await
}

/// Longest wait at shutdown for the readers the direct lane has out (each is one indexed read).
const READERS_BACK: std::time::Duration = std::time::Duration::from_secs(2);

/// A peer waiting for a connection slot.
enum Peer {
    /// A client on the socket; its uid comes from the kernel.
    Socket(UnixStream),
    /// A client in this process (see [`crate::Host`]).
    InProcess(DuplexStream),
}

/// As [`run`], also serving the in-process peers that arrive on `in_process` (see [`crate::Host`]).
/// They share the socket peers' connection cap and go through the same connection code.
///
/// With `lane`, the in-process direct lane ([`crate::direct`]) is sent there once the store is open:
/// the reader pool and what admission needs, never a store handle. At shutdown, once the
/// connections are done, the pool is closed (see `ReaderPool::close`) before the store is.
pub(crate) async fn serve(
    listener: UnixListener,
    mut in_process: Option<mpsc::Receiver<DuplexStream>>,
    lane: Option<std::sync::mpsc::Sender<Lane>>,
    backend: Box<dyn Backend>,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    crate::panics::install();
    let backend = securestore_backends::Gated::new(backend, config.device)
        .context("cannot apply the device state to the store")?;
    let (store, storage_threads) =
        store::spawn(backend).context("cannot start the storage threads")?;
    let token = CancellationToken::new();
    let budget = Budget::new(
        config.max_request_bytes,
        config.max_request_bytes_per_connection,
        securestore_proto::limits::max_frame_len(config.max_value_bytes),
    );
    let shared = Arc::new(Shared {
        uid: rustix::process::getuid().as_raw(),
        store,
        shutdown: token.clone(),
        budget,
        slots: Arc::new(Slots::default()),
        config,
    });
    let readers = shared.store.reader_pool();
    if let Some(lane) = lane {
        let _ = lane.send(Lane {
            pool: readers.clone(),
            shutdown: token.clone(),
            config: shared.config.clone(),
        });
    }
    let limit = Arc::new(Semaphore::new(shared.config.max_connections));
    let connections = TaskTracker::new();
    tracing::info!(
        max_connections = shared.config.max_connections,
        max_value_bytes = shared.config.max_value_bytes,
        max_request_bytes = shared.budget.total_bytes(),
        "accepting connections"
    );

    tokio::pin!(shutdown);
    loop {
        // With a free slot, take it before accepting. With none, accept one newcomer anyway (excess
        // clients beyond it queue in the kernel's backlog, not in the daemon's memory) and make room
        // for it: an idle connection must not lock out a client that has something to do.
        let free = limit.clone().try_acquire_owned().ok();
        let peer = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => Peer::Socket(stream),
                Err(err) => {
                    // Typically EMFILE: back off briefly rather than spin.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(peer) = next_in_process(&mut in_process) => Peer::InProcess(peer),
            () = &mut shutdown => break,
        };
        let permit = match free {
            Some(permit) => permit,
            None => {
                let wait_for_room = async {
                    loop {
                        if let Ok(permit) = limit.clone().try_acquire_owned() {
                            return Ok(permit);
                        }
                        let asked = shared.slots.ask_longest_idle();
                        tracing::debug!(asked, "all connection slots taken; making room");
                        tokio::select! {
                            permit = limit.clone().acquire_owned() => return permit,
                            () = tokio::time::sleep(ASK_AGAIN) => {}
                        }
                    }
                };
                tokio::select! {
                    permit = wait_for_room => permit.context("connection limit closed")?,
                    () = &mut shutdown => break,
                }
            }
        };
        let shared = shared.clone();
        connections.spawn(async move {
            match peer {
                Peer::Socket(stream) => connection::serve(stream, shared).await,
                Peer::InProcess(stream) => {
                    // The peer is this process, so its uid is the daemon's own.
                    let uid = shared.uid;
                    connection::serve_peer(stream, uid, Origin::InProcess, shared).await;
                }
            }
            drop(permit);
        });
    }

    tracing::info!("shutting down: no new connections; finishing requests under way");
    drop(listener);
    token.cancel();
    connections.close();
    // Each connection drains within `drain_timeout`; the margin covers the last answers' flush.
    let deadline = shared.config.drain_timeout + std::time::Duration::from_secs(2);
    let drained = tokio::time::timeout(deadline, connections.wait())
        .await
        .is_ok();
    // Direct-lane handles may outlive the daemon: from now on they find no reader, and no reader
    // is left open on the store files once this returns (bar one stuck past `READERS_BACK`).
    let still_out = tokio::task::spawn_blocking(move || readers.close(READERS_BACK))
        .await
        .unwrap_or(0);
    if still_out > 0 {
        tracing::error!(still_out, "direct-lane reads did not finish in time");
    }
    if !drained {
        // A connection is stuck past its own bounds (a bug). Its storage handle keeps the owner
        // alive, so do not wait for the storage threads: every acknowledged write is durable already.
        tracing::error!("connections did not finish in time; stopping without closing the store");
        return Ok(());
    }
    let stats = shared.store.stats.clone();
    tracing::info!(
        writes = stats.writes.load(std::sync::atomic::Ordering::Relaxed),
        batches = stats.batches.load(std::sync::atomic::Ordering::Relaxed),
        "writes applied this run, and the group-commit batches they shared"
    );
    // The last handle goes with `shared`; the owner then closes the backend and ends.
    drop(shared);
    for thread in storage_threads {
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .context("cannot join a storage thread")?
            .map_err(|_| anyhow::anyhow!("a storage thread panicked"))?;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The next in-process peer; never completes when there is no channel.
async fn next_in_process(
    in_process: &mut Option<mpsc::Receiver<DuplexStream>>,
) -> Option<DuplexStream> {
    match in_process {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}
