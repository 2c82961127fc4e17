//! The storage owner: one thread that holds the backend and applies every write, in batches, plus a
//! reader thread for gets when the backend offers one.
//!
//! Async code sends a [`Command`] over a bounded channel and awaits its answer, so blocking storage
//! work never runs on the executor's threads and no two writes touch the backend at once.
//!
//! Group commit: the owner takes the first waiting write, then every write already queued behind it
//! (up to [`MAX_BATCH`]), and hands them to [`Backend::write_batch`] as one durable unit, one sync.
//! It never waits for more to arrive, so a lone writer's set is committed at once; under load, the
//! writes that queue up during one sync share the next. Each write is still answered only after its
//! own batch is durable. Gets go to the reader thread, so they never wait behind a sync, unless the
//! asking connection still has a write queued: then the get goes behind it, to the owner, so a
//! connection always reads its own writes (see `docs/consistency.md`).
//!
//! A write whose caller has gone (its deadline passed, it was cancelled, or its connection closed)
//! before the owner takes it is dropped unapplied: nobody is waiting for its answer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;

use securestore_backends::{
    Applied, Backend, BackendError, DeviceSignal, DeviceStatus, Exported, Gated, Item, ItemName,
    Key, ProjectScope, Reader, ServiceName, Write,
};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::error::Failure;
use crate::registry::{Registry, TokenHash};

use crate::changes::Hub;

/// Commands waiting for a thread; past this, senders wait (backpressure on clients).
const QUEUE_DEPTH: usize = 1024;

/// Most writes in one batch, bounding one transaction's size and the wait of its first writer.
pub(crate) const MAX_BATCH: usize = 256;

type Reply<T> = oneshot::Sender<Result<T, Failure>>;

/// A read, served by the reader thread (or by the owner, behind the connection's own writes).
#[derive(Debug)]
pub(crate) enum Query {
    /// [`Backend::get`].
    Get(ItemName),
    /// [`Backend::contains`].
    Contains(ItemName),
    /// [`Backend::list_keys`].
    Keys {
        service: ServiceName,
        after: Option<Key>,
        limit: usize,
    },
    /// [`Backend::list_services`].
    Services {
        after: Option<ServiceName>,
        limit: usize,
    },
    /// [`Backend::export`]; served by the owner only.
    Export {
        service: Option<ServiceName>,
        after: Option<ItemName>,
        limit: usize,
    },
}

/// What a [`Query`] found.
#[derive(Debug)]
pub(crate) enum Found {
    Item(Option<Item>),
    Contains(bool),
    Keys(Vec<Key>),
    Services(Vec<ServiceName>),
    Exported(Vec<Exported>),
}

impl Query {
    /// A read of one item: cheap enough to serve on the calling thread.
    fn is_point_read(&self) -> bool {
        matches!(self, Self::Get(_) | Self::Contains(_))
    }

    fn on_backend(
        self,
        backend: &mut dyn Backend,
        project: &ProjectScope,
    ) -> Result<Found, BackendError> {
        Ok(match self {
            Self::Get(name) => Found::Item(backend.get(project, &name)?),
            Self::Contains(name) => Found::Contains(backend.contains(project, &name)?),
            Self::Keys {
                service,
                after,
                limit,
            } => Found::Keys(backend.list_keys(project, &service, after.as_ref(), limit)?),
            Self::Services { after, limit } => {
                Found::Services(backend.list_services(project, after.as_ref(), limit)?)
            }
            Self::Export {
                service,
                after,
                limit,
            } => {
                Found::Exported(backend.export(project, service.as_ref(), after.as_ref(), limit)?)
            }
        })
    }

    fn on_reader(
        self,
        reader: &mut dyn Reader,
        project: &ProjectScope,
    ) -> Result<Found, BackendError> {
        Ok(match self {
            Self::Get(name) => Found::Item(reader.get(project, &name)?),
            Self::Contains(name) => Found::Contains(reader.contains(project, &name)?),
            Self::Keys {
                service,
                after,
                limit,
            } => Found::Keys(reader.list_keys(project, &service, after.as_ref(), limit)?),
            Self::Services { after, limit } => {
                Found::Services(reader.list_services(project, after.as_ref(), limit)?)
            }
            // Never sent here: `submit_query` sends exports to the owner.
            Self::Export { .. } => {
                return Err(BackendError::Internal(
                    "an export reached the reader".to_owned(),
                ));
            }
        })
    }
}

enum Command {
    Get {
        project: ProjectScope,
        query: Query,
        reply: Reply<Found>,
        /// For a read on the reader: counts it as its connection's until it is answered.
        _unsettled: Option<UnsettledGuard>,
    },
    Write {
        write: Write,
        reply: Reply<Applied>,
        /// Counts this write as its connection's until the owner is done with it (dropped with the
        /// command, after the answer is sent).
        _unsettled: Option<UnsettledGuard>,
        /// The connection's right to the project, checked again as the owner takes the write.
        admission: Option<Admission>,
    },
    /// A device signal (or, with `None`, a question for the state), in order with the writes.
    Device {
        signal: Option<DeviceSignal>,
        reply: Reply<DeviceStatus>,
    },
    /// [`Backend::rotate_master_key`].
    RotateKey { reply: Reply<()> },
}

/// A connection's admission to its project, as the owner re-checks it when it takes each write.
///
/// A project removal marks the project in the registry *before* it queues the deletion of its
/// items, so a write taken before the mark is queued before the deletion (and deleted with the
/// rest), and a write taken after it is refused: no write of a removed project's connection can
/// land after its items were deleted.
#[derive(Clone)]
pub(crate) struct Admission {
    /// The registry whose word counts.
    pub(crate) registry: Arc<Registry>,
    /// What the connection was admitted with (see [`Registry::still_admits`]).
    pub(crate) token_hash: Option<TokenHash>,
}

impl Admission {
    fn admits(&self, write: &Write) -> bool {
        let project = match write {
            Write::Set { project, .. }
            | Write::Delete { project, .. }
            | Write::DeleteProject { project }
            | Write::Clear { project, .. }
            | Write::Change { project, .. }
            | Write::Batch { project, .. }
            | Write::Import { project, .. } => project,
        };
        self.registry
            .still_admits(project.project(), self.token_hash.as_ref())
    }
}

/// What one connection has handed to the storage threads and they have not finished with yet.
///
/// Two threads serve a connection, so its order must hold across both:
/// - a get from a connection with unsettled writes goes behind them, to the owner; a get from a
///   connection with none can go to the reader, which sees every committed write;
/// - a write from a connection with gets still on the reader waits until they are answered, so the
///   owner cannot commit it before a get sent earlier has read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Unsettled(Arc<Counts>);

#[derive(Debug, Default)]
struct Counts {
    /// Writes with the owner.
    writes: AtomicUsize,
    /// Gets with the reader.
    reads: AtomicUsize,
    /// Woken when `reads` falls to zero.
    reads_done: Notify,
}

impl Unsettled {
    fn any_writes(&self) -> bool {
        self.0.writes.load(Ordering::Acquire) > 0
    }

    fn write_guard(&self) -> UnsettledGuard {
        self.0.writes.fetch_add(1, Ordering::AcqRel);
        UnsettledGuard {
            counts: self.0.clone(),
            read: false,
        }
    }

    fn read_guard(&self) -> UnsettledGuard {
        self.0.reads.fetch_add(1, Ordering::AcqRel);
        UnsettledGuard {
            counts: self.0.clone(),
            read: true,
        }
    }

    /// Waits until every get this connection handed to the reader has been answered.
    async fn reads_answered(&self) {
        loop {
            let done = self.0.reads_done.notified();
            tokio::pin!(done);
            // Registered before the check, so a fall to zero in between is not missed.
            done.as_mut().enable();
            if self.0.reads.load(Ordering::Acquire) == 0 {
                return;
            }
            done.await;
        }
    }
}

/// One unsettled command; dropping it (after its answer is sent) settles it.
struct UnsettledGuard {
    counts: Arc<Counts>,
    read: bool,
}

impl Drop for UnsettledGuard {
    fn drop(&mut self) {
        // AcqRel: whoever sees the count fall also sees the commit or read that came before it.
        if !self.read {
            self.counts.writes.fetch_sub(1, Ordering::AcqRel);
        } else if self.counts.reads.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.counts.reads_done.notify_waiters();
        }
    }
}

/// The answer to a command: already known (a get served on the calling thread), or coming from a
/// storage thread's queue.
pub(crate) struct Answer<T>(Coming<T>);

enum Coming<T> {
    Ready(Result<T, Failure>),
    Queued(oneshot::Receiver<Result<T, Failure>>),
}

impl<T> Answer<T> {
    /// Waits for the storage thread's answer.
    pub(crate) async fn wait(self) -> Result<T, Failure> {
        match self.0 {
            Coming::Ready(answer) => answer,
            Coming::Queued(answer) => answer.await.map_err(|_| owner_gone())?,
        }
    }

    /// This answer, turned into another by `f` once it comes.
    fn map<U>(self, f: impl FnOnce(T) -> Result<U, BackendError> + Send + 'static) -> Mapped<T, U> {
        Mapped {
            answer: self,
            f: Box::new(f),
        }
    }
}

/// An [`Answer`] with a conversion applied when it arrives.
pub(crate) struct Mapped<T, U> {
    answer: Answer<T>,
    f: Box<dyn FnOnce(T) -> Result<U, BackendError> + Send>,
}

impl<T, U> Mapped<T, U> {
    /// Waits for the answer and converts it.
    pub(crate) async fn wait(self) -> Result<U, Failure> {
        (self.f)(self.answer.wait().await?).map_err(Failure::from)
    }
}

/// Counters of the owner's work, for logs, tests and the benchmark.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Batches handed to the backend.
    pub(crate) batches: AtomicU64,
    /// Writes in those batches.
    pub(crate) writes: AtomicU64,
    /// Writes dropped unapplied because their caller had gone before the owner took them.
    pub(crate) skipped: AtomicU64,
}

/// A cheap, cloneable way to reach the storage threads. They stop when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct StoreHandle {
    /// Readers a serving thread borrows to answer a get itself: no hop to another thread.
    inline: Arc<ReaderPool>,
    writes: mpsc::Sender<Command>,
    /// The reader thread's queue, or the owner's when the backend has no reader.
    reads: mpsc::Sender<Command>,
    pub(crate) stats: Arc<Stats>,
    /// Where the owner publishes each durable change, for watchers.
    pub(crate) changes: Arc<Hub>,
}

impl StoreHandle {
    /// The readers lent to callers on their own threads: for the in-process direct lane, which must
    /// not hold a whole handle (the owner stops only when every handle is dropped).
    pub(crate) fn reader_pool(&self) -> Arc<ReaderPool> {
        self.inline.clone()
    }
}

/// Starts the owner thread on `backend`, and a reader thread if the backend offers a reader. Join the
/// returned threads after dropping every handle; the owner closes the backend before it ends.
pub(crate) fn spawn(backend: Gated) -> std::io::Result<(StoreHandle, Vec<JoinHandle<()>>)> {
    spawn_with(backend, INLINE_READERS)
}

/// As [`spawn`], lending `inline_readers` readers to the serving threads (0: every get takes the
/// reader thread).
fn spawn_with(
    mut backend: Gated,
    inline_readers: usize,
) -> std::io::Result<(StoreHandle, Vec<JoinHandle<()>>)> {
    let stats = Arc::new(Stats::default());
    let inline = Arc::new(ReaderPool::open(&mut backend, inline_readers));
    let (writes, write_queue) = mpsc::channel(QUEUE_DEPTH);
    let mut threads = Vec::new();
    let reads = match backend.reader() {
        Ok(Some(reader)) => {
            let (reads, read_queue) = mpsc::channel(QUEUE_DEPTH);
            threads.push(
                std::thread::Builder::new()
                    .name("securestore-reader".to_owned())
                    .spawn(move || read(reader, read_queue))?,
            );
            reads
        }
        Ok(None) => writes.clone(),
        Err(err) => {
            tracing::warn!(error = %anyhow::Error::from(err), "no separate reader; gets go through the owner");
            writes.clone()
        }
    };
    let owner_stats = stats.clone();
    let changes = Arc::new(Hub::default());
    let owner_changes = changes.clone();
    threads.push(
        std::thread::Builder::new()
            .name("securestore-storage".to_owned())
            .spawn(move || own(backend, write_queue, &owner_stats, &owner_changes))?,
    );
    Ok((
        StoreHandle {
            inline,
            writes,
            reads,
            stats,
            changes,
        },
        threads,
    ))
}

/// Readers lent to the serving threads: a get or contains from a connection with no write in
/// line is answered on the thread that decoded it, with no hop to the reader thread and back. A WAL
/// reader never waits for the writer, so this holds an executor thread only for one indexed read.
///
/// The in-process direct lane (`crate::direct`) borrows from the same pool on its caller's thread.
/// So that nothing reads the store files once the daemon has stopped (its data-folder lock is then
/// released), [`ReaderPool::close`] drops every reader, waits for those lent out to come back, and
/// drops them too: a closed pool lends nothing.
pub(crate) struct ReaderPool {
    state: std::sync::Mutex<PoolState>,
    /// Signalled when a lent reader comes back to a closed pool.
    returned: std::sync::Condvar,
}

struct PoolState {
    /// Readers free to borrow.
    idle: Vec<Box<dyn Reader>>,
    /// Readers borrowed and not yet back.
    lent: usize,
    /// Set by [`ReaderPool::close`]: nothing is lent from now on.
    closed: bool,
}

/// How many readers the pool opens: one per executor thread, with room to spare.
const INLINE_READERS: usize = 4;

/// Why the pool lends no reader.
#[derive(Debug)]
enum Unavailable {
    /// Every reader is lent out (or the backend has none).
    Busy,
    /// [`ReaderPool::close`] has run.
    Closed,
}

/// What became of a read offered to the pool.
pub(crate) enum Served {
    /// Answered on the calling thread.
    Answered(Result<Found, Failure>),
    /// No reader was free (or the backend has none): the query, to send another way.
    Busy(Query),
    /// The daemon has stopped and the pool is closed: the query, unread.
    Closed(Query),
}

impl ReaderPool {
    fn open(backend: &mut Gated, count: usize) -> Self {
        let mut readers = Vec::with_capacity(count);
        for _ in 0..count {
            match backend.reader() {
                Ok(Some(reader)) => readers.push(reader),
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(error = %anyhow::Error::from(err), "cannot open an inline reader; gets take the reader thread");
                    break;
                }
            }
        }
        Self {
            state: std::sync::Mutex::new(PoolState {
                idle: readers,
                lent: 0,
                closed: false,
            }),
            returned: std::sync::Condvar::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A free reader, counted as lent until [`ReaderPool::settle`].
    fn take(&self) -> Result<Box<dyn Reader>, Unavailable> {
        let mut state = self.state();
        if state.closed {
            return Err(Unavailable::Closed);
        }
        let reader = state.idle.pop().ok_or(Unavailable::Busy)?;
        state.lent += 1;
        Ok(reader)
    }

    /// Ends a loan: the reader goes back to the pool, or is dropped (`None`: it panicked and may be
    /// half-way through a statement; or the pool has closed meanwhile).
    fn settle(&self, reader: Option<Box<dyn Reader>>) {
        let mut state = self.state();
        state.lent -= 1;
        let dropped = match reader {
            Some(reader) if !state.closed => {
                state.idle.push(reader);
                None
            }
            other => other,
        };
        let last_back = state.closed && state.lent == 0;
        drop(state);
        // Closed outside the lock: closing a SQLite connection does I/O.
        drop(dropped);
        if last_back {
            self.returned.notify_all();
        }
    }

    /// Runs `query` on a borrowed reader, on this thread, containing a panic.
    pub(crate) fn try_serve(&self, project: &ProjectScope, query: Query) -> Served {
        let mut reader = match self.take() {
            Ok(reader) => reader,
            Err(Unavailable::Closed) => return Served::Closed(query),
            Err(Unavailable::Busy) => return Served::Busy(query),
        };
        match catch_unwind(AssertUnwindSafe(|| {
            query.on_reader(reader.as_mut(), project)
        })) {
            Ok(found) => {
                self.settle(Some(reader));
                Served::Answered(found.map_err(Failure::from))
            }
            // The reader may be half-way through a statement: it is dropped, not lent again.
            Err(_) => {
                tracing::error!("an inline read panicked; its caller gets an error");
                self.settle(None);
                Served::Answered(Err(owner_gone()))
            }
        }
    }

    /// Runs `query` on a borrowed reader, or hands it back when none is free (or the pool is
    /// closed: the reader thread then answers, or fails once it has stopped).
    fn serve(&self, project: &ProjectScope, query: Query) -> Result<Result<Found, Failure>, Query> {
        match self.try_serve(project, query) {
            Served::Answered(found) => Ok(found),
            Served::Busy(query) | Served::Closed(query) => Err(query),
        }
    }

    /// Closes the pool for good: drops the free readers, then waits up to `wait` for the lent ones
    /// to come back (each is dropped as it does). Returns how many were still out at the end.
    pub(crate) fn close(&self, wait: std::time::Duration) -> usize {
        let mut state = self.state();
        state.closed = true;
        let idle = std::mem::take(&mut state.idle);
        drop(state);
        drop(idle);
        let state = self.state();
        let (state, _) = self
            .returned
            .wait_timeout_while(state, wait, |state| state.lent > 0)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.lent
    }
}

/// Runs `work`, containing a panic so one bad call cannot end storage for everyone: its callers get
/// an error (their reply senders are dropped). The backends keep no state between calls that a panic
/// could leave half-changed; SQLite rolls back an unfinished transaction.
fn contained(work: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(work)).is_err() {
        tracing::error!("a storage call panicked; its callers get an error, storage continues");
    }
}

fn own(mut backend: Gated, mut queue: mpsc::Receiver<Command>, stats: &Stats, changes: &Hub) {
    tracing::debug!(backend = backend.name(), "storage owner started");
    let mut pending: Vec<PendingWrite> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        let mut next = Some(first);
        while let Some(command) = next {
            match command {
                Command::Write {
                    write,
                    reply,
                    _unsettled,
                    admission,
                } => {
                    // Its caller is gone (deadline, cancel, closed connection): nobody can learn
                    // the outcome, so it is not applied. Settled when `_unsettled` drops here.
                    if reply.is_closed() {
                        stats.skipped.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("a write's caller gave up before it was applied; skipped");
                    } else if admission.is_some_and(|a| !a.admits(&write)) {
                        tracing::info!("a write of a project removed meanwhile was not applied");
                        let _ = reply.send(Err(Failure::Revoked));
                    } else {
                        pending.push((write, reply, _unsettled));
                    }
                }
                // A get queued behind writes must see them: commit those first.
                Command::Get {
                    project,
                    query,
                    reply,
                    _unsettled,
                } => {
                    commit(&mut backend, &mut pending, stats, changes);
                    contained(|| {
                        let found = query.on_backend(&mut backend, &project);
                        let _ = reply.send(found.map_err(Failure::from));
                    });
                }
                // A state change takes effect after the writes before it and before those after.
                Command::Device { signal, reply } => {
                    commit(&mut backend, &mut pending, stats, changes);
                    contained(|| {
                        let answer = match signal {
                            None => Ok(backend.status()),
                            Some(signal) => backend.signal(&signal).map(|(status, deleted)| {
                                announce_deletions(changes, deleted);
                                status
                            }),
                        };
                        let _ = reply.send(answer.map_err(Failure::from));
                    });
                }
                Command::RotateKey { reply } => {
                    commit(&mut backend, &mut pending, stats, changes);
                    contained(|| {
                        let _ = reply.send(backend.rotate_master_key().map_err(Failure::from));
                    });
                }
            }
            // Take only what is already queued; never wait for more.
            next = if pending.len() < MAX_BATCH {
                queue.try_recv().ok()
            } else {
                None
            };
        }
        commit(&mut backend, &mut pending, stats, changes);
    }
    let name = backend.name();
    match Box::new(backend).close() {
        Ok(()) => tracing::info!(backend = name, "store closed cleanly"),
        Err(err) => {
            tracing::error!(backend = name, error = %anyhow::Error::from(err), "closing the store failed")
        }
    }
}

/// Tells watchers of the items a device signal deleted (a removed passcode), as deletes.
fn announce_deletions(changes: &Hub, deleted: Vec<(ProjectScope, ItemName)>) {
    let writes: Vec<Write> = deleted
        .into_iter()
        .map(|(project, name)| Write::Delete { project, name })
        .collect();
    let results: Vec<Result<Applied, BackendError>> =
        writes.iter().map(|_| Ok(Applied::Done)).collect();
    changes.publish(&writes, &results);
}

/// A write taken from the queue, with its answer and the guard that keeps it unsettled.
type PendingWrite = (Write, Reply<Applied>, Option<UnsettledGuard>);

/// Applies the pending writes as one batch and answers each writer. A caller that gives up while
/// its batch is being applied is not waited for: its write stands, and it learns that by reading.
fn commit(
    backend: &mut dyn Backend,
    pending: &mut Vec<PendingWrite>,
    stats: &Stats,
    changes: &Hub,
) {
    if pending.is_empty() {
        return;
    }
    let mut writes = Vec::with_capacity(pending.len());
    let mut replies = Vec::with_capacity(pending.len());
    // Settled only after every answer of the batch is sent (dropped at the end of this function).
    let mut settled = Vec::with_capacity(pending.len());
    for (write, reply, unsettled) in pending.drain(..) {
        writes.push(write);
        replies.push(reply);
        settled.push(unsettled);
    }
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .writes
        .fetch_add(writes.len() as u64, Ordering::Relaxed);
    tracing::trace!(writes = writes.len(), "committing a batch");
    contained(|| {
        let results = backend.write_batch(&writes);
        // Durable now: watchers learn of the changes before any writer hears back, in commit order.
        changes.publish(&writes, &results);
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result.map_err(Failure::from));
        }
    });
}

fn read(mut reader: Box<dyn Reader>, mut queue: mpsc::Receiver<Command>) {
    while let Some(command) = queue.blocking_recv() {
        match command {
            Command::Get {
                project,
                query,
                reply,
                _unsettled,
            } => contained(|| {
                let found = query.on_reader(reader.as_mut(), &project);
                let _ = reply.send(found.map_err(Failure::from));
            }),
            // Never sent here: writes and device commands always go to the owner.
            other => refuse_on_reader(other),
        }
    }
}

/// Answers a command that only the owner serves and that reached the reader (a bug).
fn refuse_on_reader(command: Command) {
    let bug = || {
        Failure::Backend(BackendError::Internal(
            "a command for the storage owner reached the reader".to_owned(),
        ))
    };
    match command {
        Command::Get { reply, .. } => drop(reply.send(Err(bug()))),
        Command::Write { reply, .. } => drop(reply.send(Err(bug()))),
        Command::Device { reply, .. } => drop(reply.send(Err(bug()))),
        Command::RotateKey { reply } => drop(reply.send(Err(bug()))),
    }
}

fn owner_gone() -> Failure {
    Failure::Backend(BackendError::Internal(
        "the storage call was dropped (store closed, or the call panicked)".to_owned(),
    ))
}

impl StoreHandle {
    /// Puts a command in `queue` and returns its answer to wait for. Once this returns, the command
    /// is in line: later commands of the same queue are taken after it.
    async fn submit<T>(
        queue: &mpsc::Sender<Command>,
        make: impl FnOnce(Reply<T>) -> Command,
    ) -> Result<Answer<T>, Failure> {
        let (reply, answer) = oneshot::channel();
        queue.send(make(reply)).await.map_err(|_| owner_gone())?;
        Ok(Answer(Coming::Queued(answer)))
    }

    /// Queues `write` for the owner once the connection's gets on the reader are answered, counted
    /// as unsettled for its connection until it is done; the owner applies it only if `admission`
    /// still holds when it takes it.
    pub(crate) async fn submit_write(
        &self,
        write: Write,
        unsettled: &Unsettled,
        admission: Admission,
    ) -> Result<Answer<Applied>, Failure> {
        unsettled.reads_answered().await;
        let guard = unsettled.write_guard();
        Self::submit(&self.writes, |reply| Command::Write {
            write,
            reply,
            _unsettled: Some(guard),
            admission: Some(admission),
        })
        .await
    }

    /// Queues a get: behind the connection's own unsettled writes when it has any, so it sees them;
    /// otherwise on the reader thread, which sees every committed write.
    pub(crate) async fn submit_get(
        &self,
        project: ProjectScope,
        name: ItemName,
        unsettled: &Unsettled,
    ) -> Result<Mapped<Found, Option<Item>>, Failure> {
        let found = self
            .submit_query(project, Query::Get(name), unsettled)
            .await?;
        Ok(found.map(|found| match found {
            Found::Item(item) => Ok(item),
            other => Err(mismatch(&other)),
        }))
    }

    /// Queues any [`Query`], on the same path as a get: behind the connection's unsettled writes, or
    /// on the reader.
    pub(crate) async fn submit_query(
        &self,
        project: ProjectScope,
        query: Query,
        unsettled: &Unsettled,
    ) -> Result<Answer<Found>, Failure> {
        let owner_only = matches!(query, Query::Export { .. });
        let query = if !owner_only && !unsettled.any_writes() && query.is_point_read() {
            match self.inline.serve(&project, query) {
                Ok(found) => return Ok(Answer(Coming::Ready(found))),
                Err(query) => query,
            }
        } else {
            query
        };
        let (queue, guard) = if owner_only || unsettled.any_writes() {
            (&self.writes, None)
        } else {
            (&self.reads, Some(unsettled.read_guard()))
        };
        Self::submit(queue, |reply| Command::Get {
            project,
            query,
            reply,
            _unsettled: guard,
        })
        .await
    }

    /// Sends a device signal (or asks for the state, with `None`) to the owner, in order with the
    /// writes, and waits for the state it leads to.
    pub(crate) async fn device(
        &self,
        signal: Option<DeviceSignal>,
    ) -> Result<DeviceStatus, Failure> {
        Self::submit(&self.writes, |reply| Command::Device { signal, reply })
            .await?
            .wait()
            .await
    }

    /// Rotates the master key on the owner, after the writes queued before it.
    pub(crate) async fn rotate_key(&self) -> Result<(), Failure> {
        Self::submit(&self.writes, |reply| Command::RotateKey { reply })
            .await?
            .wait()
            .await
    }

    /// Empties a project (for the registry's removal), and waits until that is durable.
    pub(crate) async fn delete_project(&self, project: ProjectScope) -> Result<(), Failure> {
        Self::submit(&self.writes, |reply| Command::Write {
            write: Write::DeleteProject { project },
            reply,
            _unsettled: None,
            admission: None,
        })
        .await?
        .wait()
        .await
        .map(|_| ())
    }
}

/// An answer of the wrong kind: a bug, reported rather than panicked on.
pub(crate) fn mismatch(found: &Found) -> BackendError {
    BackendError::Internal(format!(
        "a query was answered with the wrong kind: {found:?}"
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use securestore_backends::memory::MemoryBackend;
    use securestore_backends::{Key, KeychainAccessible, ProjectId, SecretString, ServiceName};

    use super::*;

    /// A memory backend that records the size of every batch and takes `sync` to "sync" each one.
    struct Recording {
        inner: MemoryBackend,
        batches: Arc<Mutex<Vec<usize>>>,
        sync: Duration,
        /// When set, the backend has a reader whose reads wait for the test to let each one go.
        held_reads: Option<Arc<Mutex<std::sync::mpsc::Receiver<()>>>>,
    }

    impl Backend for Recording {
        fn name(&self) -> &'static str {
            "recording"
        }
        fn get(&mut self, p: &ProjectScope, n: &ItemName) -> Result<Option<Item>, BackendError> {
            self.inner.get(p, n)
        }
        fn set(
            &mut self,
            p: &ProjectScope,
            n: &ItemName,
            v: &SecretString,
            a: KeychainAccessible,
        ) -> Result<(), BackendError> {
            self.inner.set(p, n, v, a)
        }
        fn delete(&mut self, p: &ProjectScope, n: &ItemName) -> Result<(), BackendError> {
            self.inner.delete(p, n)
        }
        fn delete_project(&mut self, p: &ProjectScope) -> Result<(), BackendError> {
            self.inner.delete_project(p)
        }
        fn list_keys(
            &mut self,
            p: &ProjectScope,
            s: &ServiceName,
            after: Option<&Key>,
            limit: usize,
        ) -> Result<Vec<Key>, BackendError> {
            self.inner.list_keys(p, s, after, limit)
        }
        fn list_services(
            &mut self,
            p: &ProjectScope,
            after: Option<&ServiceName>,
            limit: usize,
        ) -> Result<Vec<ServiceName>, BackendError> {
            self.inner.list_services(p, after, limit)
        }
        fn clear(
            &mut self,
            p: &ProjectScope,
            s: Option<&ServiceName>,
        ) -> Result<u64, BackendError> {
            self.inner.clear(p, s)
        }
        fn reader(&mut self) -> Result<Option<Box<dyn Reader>>, BackendError> {
            Ok(self
                .held_reads
                .clone()
                .map(|held| Box::new(HeldReader(held)) as Box<dyn Reader>))
        }
        fn write_batch(&mut self, writes: &[Write]) -> Vec<Result<Applied, BackendError>> {
            self.batches.lock().expect("lock").push(writes.len());
            std::thread::sleep(self.sync);
            writes.iter().map(|w| self.inner.apply(w)).collect()
        }
        fn close(self: Box<Self>) -> Result<(), BackendError> {
            Ok(())
        }
    }

    /// Batch sizes, in the order the backend saw them.
    type Batches = Arc<Mutex<Vec<usize>>>;

    fn start(sync: Duration) -> (StoreHandle, Vec<JoinHandle<()>>, Batches) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let backend = Recording {
            inner: MemoryBackend::default(),
            batches: batches.clone(),
            sync,
            held_reads: None,
        };
        let (store, threads) = spawn(gated(backend)).expect("spawn");
        (store, threads, batches)
    }

    fn gated(backend: impl Backend + 'static) -> Gated {
        Gated::new(Box::new(backend), DeviceStatus::UNLOCKED).expect("gate")
    }

    fn item(key: &str) -> (ProjectScope, ItemName) {
        let project = ProjectScope::bind(ProjectId::parse("p").expect("project"));
        let name = ItemName {
            service: ServiceName::parse(None).expect("service"),
            key: Key::parse(key).expect("key"),
        };
        (project, name)
    }

    fn set_write(key: &str) -> Write {
        let (project, name) = item(key);
        Write::Set {
            project,
            name,
            value: SecretString::from(key),
            accessible: KeychainAccessible::default(),
        }
    }

    /// The admission of a connection to an unregistered project: always admitted.
    fn open() -> Admission {
        Admission {
            registry: Arc::new(Registry::in_memory()),
            token_hash: None,
        }
    }

    /// A set from its own connection, waited for.
    async fn set(store: &StoreHandle, key: &str) {
        store
            .submit_write(set_write(key), &Unsettled::default(), open())
            .await
            .expect("queued")
            .wait()
            .await
            .expect("set");
    }

    /// A get from a connection with no writes of its own under way.
    async fn get(store: &StoreHandle, key: &str) -> Option<Item> {
        let (project, name) = item(key);
        store
            .submit_get(project, name, &Unsettled::default())
            .await
            .expect("queued")
            .wait()
            .await
            .expect("get")
    }

    #[tokio::test]
    async fn a_lone_writer_commits_each_set_at_once() {
        let (store, threads, batches) = start(Duration::from_millis(1));
        for i in 0..20 {
            set(&store, &format!("k{i}")).await;
        }
        drop(store);
        threads.into_iter().for_each(|t| t.join().expect("join"));
        // Each set was its own batch: the owner never waited for company.
        assert_eq!(*batches.lock().expect("lock"), vec![1; 20]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_share_syncs_and_every_write_lands() {
        let (store, threads, batches) = start(Duration::from_millis(20));
        let writers: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { set(&store, &format!("k{i}")).await })
            })
            .collect();
        for writer in writers {
            writer.await.expect("writer");
        }
        for i in 0..64 {
            let found = get(&store, &format!("k{i}")).await.expect("present");
            assert_eq!(found.value.expose_secret(), format!("k{i}"));
        }
        assert_eq!(store.stats.writes.load(Ordering::Relaxed), 64);
        drop(store);
        threads.into_iter().for_each(|t| t.join().expect("join"));
        let batches = batches.lock().expect("lock");
        assert_eq!(
            batches.iter().sum::<usize>(),
            64,
            "every write was in exactly one batch"
        );
        assert!(
            batches.len() < 64,
            "64 concurrent writers behind a 20 ms sync must share: {batches:?}"
        );
        assert!(batches.iter().all(|&n| n <= MAX_BATCH));
    }

    /// A backend whose writes hang until the test lets them go, with a reader of its own.
    struct Stuck {
        release: Arc<Mutex<std::sync::mpsc::Receiver<()>>>,
    }

    /// A reader that finds nothing; with a counter, it counts its drops (a closed SQLite
    /// connection).
    struct EmptyReader(Option<Arc<AtomicUsize>>);

    impl Drop for EmptyReader {
        fn drop(&mut self) {
            if let Some(dropped) = &self.0 {
                dropped.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    impl Reader for EmptyReader {
        fn get(&mut self, _: &ProjectScope, _: &ItemName) -> Result<Option<Item>, BackendError> {
            Ok(None)
        }
        fn list_keys(
            &mut self,
            _: &ProjectScope,
            _: &ServiceName,
            _: Option<&Key>,
            _: usize,
        ) -> Result<Vec<Key>, BackendError> {
            Ok(Vec::new())
        }
        fn list_services(
            &mut self,
            _: &ProjectScope,
            _: Option<&ServiceName>,
            _: usize,
        ) -> Result<Vec<ServiceName>, BackendError> {
            Ok(Vec::new())
        }
    }

    impl Backend for Stuck {
        fn name(&self) -> &'static str {
            "stuck"
        }
        fn get(&mut self, _: &ProjectScope, _: &ItemName) -> Result<Option<Item>, BackendError> {
            Ok(None)
        }
        fn set(
            &mut self,
            _: &ProjectScope,
            _: &ItemName,
            _: &SecretString,
            _: KeychainAccessible,
        ) -> Result<(), BackendError> {
            // A sync that takes as long as the test wants.
            self.release.lock().expect("lock").recv().expect("released");
            Ok(())
        }
        fn delete(&mut self, _: &ProjectScope, _: &ItemName) -> Result<(), BackendError> {
            Ok(())
        }
        fn delete_project(&mut self, _: &ProjectScope) -> Result<(), BackendError> {
            Ok(())
        }
        fn list_keys(
            &mut self,
            _: &ProjectScope,
            _: &ServiceName,
            _: Option<&Key>,
            _: usize,
        ) -> Result<Vec<Key>, BackendError> {
            Ok(Vec::new())
        }
        fn list_services(
            &mut self,
            _: &ProjectScope,
            _: Option<&ServiceName>,
            _: usize,
        ) -> Result<Vec<ServiceName>, BackendError> {
            Ok(Vec::new())
        }
        fn clear(
            &mut self,
            _: &ProjectScope,
            _: Option<&ServiceName>,
        ) -> Result<u64, BackendError> {
            Ok(0)
        }
        fn reader(&mut self) -> Result<Option<Box<dyn Reader>>, BackendError> {
            Ok(Some(Box::new(EmptyReader(None))))
        }
        fn close(self: Box<Self>) -> Result<(), BackendError> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_never_wait_behind_a_sync() {
        let (release, released) = std::sync::mpsc::channel();
        let backend = Stuck {
            release: Arc::new(Mutex::new(released)),
        };
        let (store, threads) = spawn(gated(backend)).expect("spawn");
        let writer = {
            let store = store.clone();
            tokio::spawn(async move { set(&store, "slow").await })
        };
        // Wait until the owner has taken the write (it is now "syncing", held by the test).
        while store.stats.batches.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        // A get is answered while that sync is still under way.
        assert!(get(&store, "other").await.is_none());
        assert!(
            !writer.is_finished(),
            "the write is still syncing: the get did not wait for it"
        );
        release.send(()).expect("release");
        writer.await.expect("writer");
        drop(store);
        threads.into_iter().for_each(|t| t.join().expect("join"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_get_with_no_write_in_line_is_answered_on_the_calling_thread() {
        let (release, released) = std::sync::mpsc::channel();
        let backend = Stuck {
            release: Arc::new(Mutex::new(released)),
        };
        let (store, threads) = spawn(gated(backend)).expect("spawn");
        let (project, name) = item("k");
        let idle = Unsettled::default();
        let answer = store
            .submit_query(project.clone(), Query::Get(name.clone()), &idle)
            .await
            .expect("answered");
        assert!(
            matches!(answer.0, Coming::Ready(Ok(Found::Item(None)))),
            "served inline, before submit returned"
        );
        // With a write of its own in line, the get goes behind it, to the owner.
        let busy = Unsettled::default();
        let write = store
            .submit_write(set_write("k"), &busy, open())
            .await
            .expect("queued");
        let answer = store
            .submit_query(project, Query::Get(name), &busy)
            .await
            .expect("queued");
        assert!(matches!(answer.0, Coming::Queued(_)));
        release.send(()).expect("release");
        write.wait().await.expect("write");
        answer.wait().await.expect("get");
        drop(store);
        threads.into_iter().for_each(|t| t.join().expect("join"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_reads_its_own_queued_write_and_others_do_not_wait_for_it() {
        let (release, released) = std::sync::mpsc::channel();
        let backend = Stuck {
            release: Arc::new(Mutex::new(released)),
        };
        let (store, threads) = spawn(gated(backend)).expect("spawn");
        let mine = Unsettled::default();
        let write = store
            .submit_write(set_write("k"), &mine, open())
            .await
            .expect("queued");
        assert!(
            mine.any_writes(),
            "the write counts as unsettled once queued"
        );
        // The same connection's get goes behind its write: no answer while the write is held.
        let (project, name) = item("k");
        let own_get = store
            .submit_get(project, name, &mine)
            .await
            .expect("queued");
        let own_get = tokio::spawn(own_get.wait());
        // Another connection's get is answered by the reader meanwhile.
        assert!(get(&store, "k").await.is_none());
        assert!(!own_get.is_finished(), "the own get waits for the write");
        release.send(()).expect("release");
        write.wait().await.expect("set");
        // `Stuck` answers every get with "absent" (it stores nothing); what matters is the order:
        // the get was answered by the owner after the write, and the count is settled.
        assert!(own_get.await.expect("join").expect("get").is_none());
        assert!(!mine.any_writes(), "settled once answered");
        drop(store);
        threads.into_iter().for_each(|t| t.join().expect("join"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_whose_caller_left_before_it_was_taken_is_not_applied() {
        let (store, threads, batches) = start(Duration::from_millis(50));
        // The first write occupies the owner for one "sync"; the second waits in the queue.
        let first = store
            .submit_write(set_write("first"), &Unsettled::default(), open())
            .await
            .expect("queued");
        while store.stats.batches.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        let gone = Unsettled::default();
        let abandoned = store
            .submit_write(set_write("abandoned"), &gone, open())
            .await
            .expect("queued");
        drop(abandoned); // the caller gives up (deadline, cancel, closed connection)
        first.wait().await.expect("first");
        // Wait for the owner to take and drop the abandoned write.
        while gone.any_writes() {
            tokio::task::yield_now().await;
        }
        assert!(get(&store, "first").await.is_some());
        assert!(get(&store, "abandoned").await.is_none(), "never applied");
        assert_eq!(store.stats.skipped.load(Ordering::Relaxed), 1);
        drop(store);
        threads.into_iter().for_each(|t| t.join().expect("join"));
        assert_eq!(*batches.lock().expect("lock"), vec![1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_queued_before_its_project_was_removed_is_refused_not_applied() {
        let (store, threads, _) = start(Duration::from_millis(50));
        let registry = Arc::new(Registry::in_memory());
        let token = registry.add("p").expect("add");
        let project = ProjectId::parse("p").expect("project");
        let token_hash = registry
            .admit(&project, Some(&token), crate::Policy::Open)
            .expect("admitted");
        let admission = Admission {
            registry: registry.clone(),
            token_hash,
        };
        // The first write occupies the owner; the second waits in the queue.
        let first = store
            .submit_write(set_write("first"), &Unsettled::default(), admission.clone())
            .await
            .expect("queued");
        while store.stats.batches.load(Ordering::Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        let late = store
            .submit_write(set_write("late"), &Unsettled::default(), admission)
            .await
            .expect("queued");
        // The removal is recorded while the write waits; the owner sees it when it takes the write.
        registry.begin_removal(&project).expect("removal recorded");
        first.wait().await.expect("applied before the removal");
        assert!(matches!(late.wait().await, Err(Failure::Revoked)));
        assert!(get(&store, "late").await.is_none(), "never applied");
        drop(store);
        threads.into_iter().for_each(|t| t.join().expect("join"));
    }

    fn pool_of(readers: usize, dropped: &Arc<AtomicUsize>) -> ReaderPool {
        ReaderPool {
            state: Mutex::new(PoolState {
                idle: (0..readers)
                    .map(|_| Box::new(EmptyReader(Some(dropped.clone()))) as Box<dyn Reader>)
                    .collect(),
                lent: 0,
                closed: false,
            }),
            returned: std::sync::Condvar::new(),
        }
    }

    #[test]
    fn a_pool_with_no_free_reader_hands_the_query_back() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let (project, name) = item("k");
        let empty = pool_of(0, &dropped);
        assert!(matches!(
            empty.try_serve(&project, Query::Get(name.clone())),
            Served::Busy(Query::Get(_))
        ));
        let one = pool_of(1, &dropped);
        let lent = one.take().expect("one free");
        assert!(matches!(
            one.try_serve(&project, Query::Get(name.clone())),
            Served::Busy(_)
        ));
        one.settle(Some(lent));
        assert!(matches!(
            one.try_serve(&project, Query::Get(name)),
            Served::Answered(Ok(Found::Item(None)))
        ));
        assert_eq!(dropped.load(Ordering::SeqCst), 0, "lent again, not dropped");
    }

    #[test]
    fn closing_the_pool_drops_every_reader_and_waits_for_the_lent_ones() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let pool = Arc::new(pool_of(2, &dropped));
        let lent = pool.take().expect("free");
        let closer = {
            let pool = pool.clone();
            std::thread::spawn(move || pool.close(Duration::from_secs(30)))
        };
        // The free reader goes at once; the lent one is waited for.
        while dropped.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        assert!(!closer.is_finished(), "close waits for the lent reader");
        let (project, name) = item("k");
        assert!(matches!(
            pool.try_serve(&project, Query::Get(name)),
            Served::Closed(_)
        ));
        pool.settle(Some(lent));
        assert_eq!(closer.join().expect("join"), 0, "none left out");
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            2,
            "given back to a closed pool: dropped"
        );
        assert!(pool.state().idle.is_empty());
    }

    /// A reader that holds each read until the test lets it go.
    struct HeldReader(Arc<Mutex<std::sync::mpsc::Receiver<()>>>);

    impl HeldReader {
        fn hold(&self) {
            self.0.lock().expect("lock").recv().expect("released");
        }
    }

    impl Reader for HeldReader {
        fn get(&mut self, _: &ProjectScope, _: &ItemName) -> Result<Option<Item>, BackendError> {
            self.hold();
            Ok(None)
        }
        fn list_keys(
            &mut self,
            _: &ProjectScope,
            _: &ServiceName,
            _: Option<&Key>,
            _: usize,
        ) -> Result<Vec<Key>, BackendError> {
            self.hold();
            Ok(Vec::new())
        }
        fn list_services(
            &mut self,
            _: &ProjectScope,
            _: Option<&ServiceName>,
            _: usize,
        ) -> Result<Vec<ServiceName>, BackendError> {
            self.hold();
            Ok(Vec::new())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_waits_for_its_own_connections_earlier_get_on_the_reader() {
        let (release, released) = std::sync::mpsc::channel();
        let backend = Recording {
            inner: MemoryBackend::default(),
            batches: Arc::default(),
            sync: Duration::ZERO,
            held_reads: Some(Arc::new(Mutex::new(released))),
        };
        // This checks the reader thread's path: no reader is lent to the serving threads.
        let (store, threads) = spawn_with(gated(backend), 0).expect("spawn");
        let mine = Unsettled::default();
        let (project, name) = item("k");
        let held_get = store
            .submit_get(project, name, &mine)
            .await
            .expect("queued on the reader");
        // The same connection's next write must not reach the owner while that get is unread,
        // or the owner could commit it first and the get would see a write sent after it.
        let write = {
            let (store, mine) = (store.clone(), mine.clone());
            tokio::spawn(async move { store.submit_write(set_write("k"), &mine, open()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!write.is_finished(), "the write waits for the earlier get");
        assert_eq!(store.stats.batches.load(Ordering::Relaxed), 0);
        // Another connection's write is not held up.
        set(&store, "other").await;
        release.send(()).expect("release the get");
        assert!(held_get.wait().await.expect("get").is_none());
        write
            .await
            .expect("join")
            .expect("queued")
            .wait()
            .await
            .expect("set");
        drop(store);
        threads.into_iter().for_each(|t| t.join().expect("join"));
    }
}
