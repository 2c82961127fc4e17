//! [`Direct`]: the in-process direct lane, a get or contains answered on the calling thread.
//!
//! An in-process peer of [`crate::Host`] talks to the daemon through a pipe: framing, tarpc, a hop
//! to the host's thread and back, for every call. A get needs none of that: the daemon answers a
//! connection's get from a pool of read-only SQLite readers when the connection has no write in
//! line (`crate::store`). A [`Direct`] borrows a reader from that same pool on the caller's own
//! thread: no channel, no wake-up, no context switch.
//!
//! What a [`Direct`] checks is what a pipe connection checks, in the same words:
//! - at [`crate::Host::open_direct`], the handshake's binding ([`crate::connection::bind`]: the
//!   project name, the registry and policy, the token), and the refusal of a token for a project
//!   that has none;
//! - on every call, what every request of a bound connection passes first (not shutting down, the
//!   registry still admits the project as it was admitted), then the key and service names, then,
//!   for a get, the value limit.
//!
//! The readers come from the [`securestore_backends::Gated`] backend, so the device state's policy
//! (`Locked` for a class unavailable now) is theirs. Their SQLite snapshots see every committed
//! transaction, so a get sees every acknowledged write; it does *not* see a write still in line. The
//! caller must therefore send a get here only when it has no write of its own in flight (the
//! bridge's `Session` counts them), or a get could overtake a write sent before it.
//!
//! A [`Direct`] holds no [`crate::store::StoreHandle`]: the storage owner ends when the last handle
//! is dropped, so a handle kept by an application's session would hang the host's stop. It holds the
//! reader pool, which the daemon closes when it stops (every reader dropped, lent ones as they come
//! back): a [`Direct`] that outlives its host answers [`ServiceError::ShuttingDown`] and never opens
//! the store files after the data-folder lock is released.

use std::sync::Arc;

use securestore_backends::{ItemName, ProjectScope};
use securestore_proto::{Item, Key, SecretString, ServiceError, ServiceName};
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::error::to_wire;
use crate::handler::readable;
use crate::registry::TokenHash;
use crate::store::{Found, Query, ReaderPool, Served, mismatch};

/// What a [`Direct`] needs of a running daemon, handed by `crate::server::serve` to its host once
/// the store is open.
#[derive(Clone)]
pub(crate) struct Lane {
    /// The readers, shared with the socket connections' inline gets.
    pub(crate) pool: Arc<ReaderPool>,
    /// Cancelled when the daemon begins to stop.
    pub(crate) shutdown: CancellationToken,
    /// The registry, policy and value limit the connections are served under.
    pub(crate) config: Config,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("shutting_down", &self.shutdown.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// What became of a call offered to a [`Direct`].
#[derive(Debug)]
#[must_use]
pub enum Outcome<T> {
    /// Answered on the calling thread, exactly as the pipe would have answered it.
    Done(Result<T, ServiceError>),
    /// Not served here: every pooled reader is busy, or the store has none. Send the call through
    /// the pipe.
    Elsewhere,
}

/// A synchronous read handle bound to one project, for a caller in the host's process (see the
/// module documentation). Cheap to call from many threads at once.
pub struct Direct {
    lane: Lane,
    scope: ProjectScope,
    /// What the handle was admitted with, as a connection's `Bound::token_hash`.
    token_hash: Option<TokenHash>,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("project", &self.scope.project().as_str())
            .field("registered", &self.token_hash.is_some())
            .finish_non_exhaustive()
    }
}

impl Direct {
    /// Binds exactly as a connection's handshake does (`connection::serve_peer`).
    pub(crate) fn bind(
        lane: Lane,
        project: &str,
        token: Option<&SecretString>,
    ) -> Result<Self, ServiceError> {
        if lane.shutdown.is_cancelled() {
            return Err(ServiceError::ShuttingDown);
        }
        let (scope, token_hash) = crate::connection::bind(project, token, &lane.config)?;
        Ok(Self {
            lane,
            scope,
            token_hash,
        })
    }

    /// The project this handle is bound to.
    pub fn project(&self) -> &str {
        self.scope.project().as_str()
    }

    /// `getItem` on this thread: the item under `key` in `service` (the default when `None`).
    pub fn get(&self, key: &str, service: Option<&str>) -> Outcome<Option<Item>> {
        let name = match self.item_name(key, service) {
            Ok(name) => name,
            Err(refusal) => return Outcome::Done(Err(refusal)),
        };
        self.read(Query::Get(name), |found| match found {
            Found::Item(item) => readable(item, self.lane.config.max_value_bytes),
            other => Err(to_wire(mismatch(&other))),
        })
    }

    /// `contains` on this thread: whether an item is stored under `key` in `service`.
    pub fn contains(&self, key: &str, service: Option<&str>) -> Outcome<bool> {
        let name = match self.item_name(key, service) {
            Ok(name) => name,
            Err(refusal) => return Outcome::Done(Err(refusal)),
        };
        self.read(Query::Contains(name), |found| match found {
            Found::Contains(found) => Ok(found),
            other => Err(to_wire(mismatch(&other))),
        })
    }

    /// Runs `query` on a pooled reader on this thread and converts what it found.
    fn read<T>(
        &self,
        query: Query,
        convert: impl FnOnce(Found) -> Result<T, ServiceError>,
    ) -> Outcome<T> {
        match self.lane.pool.try_serve(&self.scope, query) {
            Served::Answered(found) => Outcome::Done(found.map_err(to_wire).and_then(convert)),
            Served::Busy(_) => Outcome::Elsewhere,
            // Stopped between the check and the borrow: the pipe would say the same.
            Served::Closed(_) => Outcome::Done(Err(ServiceError::ShuttingDown)),
        }
    }

    /// The connection's per-request checks (`handler::Bound::item_name`), in the same order and
    /// words: shutting down, still admitted, then the names.
    fn item_name(&self, key: &str, service: Option<&str>) -> Result<ItemName, ServiceError> {
        crate::handler::admit(
            &self.lane.shutdown,
            &self.lane.config.registry,
            &self.scope,
            self.token_hash.as_ref(),
        )?;
        Ok(ItemName {
            key: Key::parse(key)?,
            service: ServiceName::parse(service)?,
        })
    }
}
