//! One connection's request handler: parses names, checks sizes, and asks the storage owner, in the
//! order the connection sent its requests.

use std::sync::Arc;

use securestore_backends::{Action, Applied, Change, Expect, ItemName, ProjectScope, Write};
use securestore_proto::limits::{
    MAX_BATCH_OPS, MAX_EXPORT_ITEMS, MAX_KEY_BYTES, MAX_LIST_NAMES, MAX_WATCH_WAIT_MILLIS,
    MAX_WATCHERS_PER_CONNECTION,
};
use securestore_proto::tarpc::context::Context;
use securestore_proto::{
    BatchOp, DeleteOptions, Events, ExportPage, ExportedItem, GetOptions, ImportReport, Item,
    ItemRef, Key, Page, SecretString, SecureStore, ServiceError, ServiceName, SetOptions,
    WatchFilter,
};
use tokio_util::sync::CancellationToken;

use crate::changes::Watcher;
use crate::error::to_wire;
use crate::registry::{Registry, TokenHash};
use crate::store::{Admission, Found, Query, StoreHandle, Unsettled, mismatch};
use securestore_proto::order::Turn;

/// Serves one request of a bound connection, in its turn.
pub(crate) struct Handler {
    /// What the whole connection shares.
    pub(crate) bound: Arc<Bound>,
    /// This request's place in the connection's order.
    pub(crate) turn: Turn,
}

/// One bound connection. `scope` was fixed by the handshake; no request can change it.
pub(crate) struct Bound {
    /// The project this connection is bound to.
    pub(crate) scope: Arc<ProjectScope>,
    /// The hash of the token the connection was admitted with, or `None` if its project was
    /// unregistered then. If the project's registration changes, this connection stops being served.
    pub(crate) token_hash: Option<TokenHash>,
    /// The registry, to check `token_hash` against on every request.
    pub(crate) registry: Arc<Registry>,
    /// The way to the storage owner.
    pub(crate) store: StoreHandle,
    /// The daemon's value limit, checked before anything is stored.
    pub(crate) max_value_bytes: u32,
    /// Cancelled at shutdown: requests that arrive after it are turned away.
    pub(crate) shutdown: CancellationToken,
    /// This connection's writes still with the storage owner; its gets go behind them.
    pub(crate) unsettled: Unsettled,
    /// This connection's watchers, by id; they end with it.
    pub(crate) watchers: std::sync::Mutex<Watchers>,
}

/// What every request of a bound connection (or of an in-process [`crate::Direct`]) passes first:
/// the daemon is not shutting down, and the registry still admits `scope`'s project as it was
/// admitted (registration can change while a connection is open).
pub(crate) fn admit(
    shutdown: &CancellationToken,
    registry: &Registry,
    scope: &ProjectScope,
    token_hash: Option<&TokenHash>,
) -> Result<(), ServiceError> {
    if shutdown.is_cancelled() {
        return Err(ServiceError::ShuttingDown);
    }
    if !registry.still_admits(scope.project(), token_hash) {
        return Err(ServiceError::Refused {
            reason: format!(
                "project '{}' was registered, removed or re-registered since this connection opened; reconnect",
                scope.project()
            ),
        });
    }
    Ok(())
}

/// Refuses a value over `limit` bytes (`--max-value-bytes`).
pub(crate) fn check_size(value: &SecretString, limit: u32) -> Result<(), ServiceError> {
    if value.len() > limit as usize {
        return Err(ServiceError::ValueTooLarge {
            size: value.len() as u64,
            limit: u64::from(limit),
        });
    }
    Ok(())
}

/// A found item as a get answers it: refused when its value, stored under a larger
/// `--max-value-bytes`, is over today's `limit` and so would not fit a frame.
pub(crate) fn readable(item: Option<Item>, limit: u32) -> Result<Option<Item>, ServiceError> {
    if let Some(found) = &item
        && let Err(refusal) = check_size(&found.value, limit)
    {
        tracing::warn!(
            size = found.value.len(),
            "a stored value exceeds the current --max-value-bytes; raise it to read the value"
        );
        return Err(refusal);
    }
    Ok(item)
}

/// A connection's watchers.
#[derive(Debug, Default)]
pub(crate) struct Watchers {
    next: u64,
    by_id: std::collections::HashMap<u64, Arc<Watcher>>,
}

impl Bound {
    fn item_name(&self, key: &str, service: Option<&str>) -> Result<ItemName, ServiceError> {
        self.admit()?;
        Ok(ItemName {
            key: Key::parse(key)?,
            service: ServiceName::parse(service)?,
        })
    }

    /// The checks every request passes first: not shutting down, and still admitted.
    fn admit(&self) -> Result<(), ServiceError> {
        admit(
            &self.shutdown,
            &self.registry,
            &self.scope,
            self.token_hash.as_ref(),
        )
    }

    fn check_size(&self, value: &SecretString) -> Result<(), ServiceError> {
        check_size(value, self.max_value_bytes)
    }

    /// Hands `write` to the storage owner in `turn`, gives the turn up once it is in line, and waits
    /// for it to be durable.
    async fn write(&self, turn: Turn, write: Write) -> Result<Applied, ServiceError> {
        let answer = self
            .store
            .submit_write(write, &self.unsettled, self.admission())
            .await
            .map_err(to_wire)?;
        drop(turn);
        answer.wait().await.map_err(to_wire)
    }

    /// Puts `query` in line in `turn` (behind this connection's unsettled writes, like a get), gives
    /// the turn up, and waits for the answer.
    async fn query(&self, turn: Turn, query: Query) -> Result<Found, ServiceError> {
        let answer = self
            .store
            .submit_query(self.scope(), query, &self.unsettled)
            .await
            .map_err(to_wire)?;
        drop(turn);
        answer.wait().await.map_err(to_wire)
    }

    /// One page of `names` (asked for with one more than [`MAX_LIST_NAMES`], to learn whether more
    /// follow), cut short once the names pass the value limit, so the answer fits one frame.
    fn page(&self, names: Vec<String>) -> Page {
        let budget = self.max_value_bytes as usize + MAX_KEY_BYTES;
        let mut more = names.len() > MAX_LIST_NAMES;
        let mut used = 0;
        let mut page = Vec::new();
        for name in names.into_iter().take(MAX_LIST_NAMES) {
            // A name's length prefix takes at most 3 bytes (names are under 64 KiB).
            let cost = name.len() + 3;
            if !page.is_empty() && used + cost > budget {
                more = true;
                break;
            }
            used += cost;
            page.push(name);
        }
        Page { names: page, more }
    }

    /// A batch operation as a [`Change`], checked as the single call would check it.
    fn change(&self, op: BatchOp) -> Result<Change, ServiceError> {
        let condition = |expected: Option<SecretString>| -> Result<Expect, ServiceError> {
            match expected {
                None => Ok(Expect::Absent),
                Some(value) => {
                    self.check_size(&value)?;
                    Ok(Expect::Value(value))
                }
            }
        };
        let set = |value: SecretString, options: &SetOptions| -> Result<Action, ServiceError> {
            self.check_size(&value)?;
            Ok(Action::Set {
                value,
                accessible: options.keychain_accessible,
            })
        };
        let name = self.item_name(op.key(), op.service())?;
        let (expected, action) = match op {
            BatchOp::Set { value, options, .. } => (Expect::Anything, set(value, &options)?),
            BatchOp::Delete { .. } => (Expect::Anything, Action::Delete),
            BatchOp::SetIf {
                expected,
                value,
                options,
                ..
            } => (condition(expected)?, set(value, &options)?),
            BatchOp::DeleteIf { expected, .. } => (condition(expected)?, Action::Delete),
        };
        Ok(Change {
            name,
            expected,
            action,
        })
    }

    /// The connection's admission, for the owner to check again as it takes a write.
    fn admission(&self) -> Admission {
        Admission {
            registry: self.registry.clone(),
            token_hash: self.token_hash,
        }
    }

    fn scope(&self) -> ProjectScope {
        ProjectScope::clone(&self.scope)
    }
}

impl SecureStore for Handler {
    async fn set_item(
        self,
        _: Context,
        key: String,
        value: SecretString,
        options: SetOptions,
    ) -> Result<(), ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        let name = bound.item_name(&key, options.keychain_service.as_deref())?;
        bound.check_size(&value)?;
        tracing::debug!(
            service = name.service.as_str(),
            key = name.key.as_str(),
            "set"
        );
        let write = Write::Set {
            project: bound.scope(),
            name,
            value,
            accessible: options.keychain_accessible,
        };
        bound.write(turn, write).await.map(|_| ())
    }

    async fn get_item(
        self,
        _: Context,
        key: String,
        options: GetOptions,
    ) -> Result<Option<Item>, ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        let name = bound.item_name(&key, options.keychain_service.as_deref())?;
        tracing::debug!(
            service = name.service.as_str(),
            key = name.key.as_str(),
            "get"
        );
        let answer = bound
            .store
            .submit_get(bound.scope(), name, &bound.unsettled)
            .await
            .map_err(to_wire)?;
        drop(turn);
        let item = answer.wait().await.map_err(to_wire)?;
        readable(item, bound.max_value_bytes)
    }

    async fn delete_item(
        self,
        _: Context,
        key: String,
        options: DeleteOptions,
    ) -> Result<(), ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        let name = bound.item_name(&key, options.keychain_service.as_deref())?;
        tracing::debug!(
            service = name.service.as_str(),
            key = name.key.as_str(),
            "delete"
        );
        let write = Write::Delete {
            project: bound.scope(),
            name,
        };
        bound.write(turn, write).await.map(|_| ())
    }

    async fn contains(
        self,
        _: Context,
        key: String,
        service: Option<String>,
    ) -> Result<bool, ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        let name = bound.item_name(&key, service.as_deref())?;
        tracing::debug!(
            service = name.service.as_str(),
            key = name.key.as_str(),
            "contains"
        );
        match bound.query(turn, Query::Contains(name)).await? {
            Found::Contains(found) => Ok(found),
            other => Err(to_wire(mismatch(&other))),
        }
    }

    async fn list_keys(
        self,
        _: Context,
        service: Option<String>,
        after: Option<String>,
    ) -> Result<Page, ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        bound.admit()?;
        let service = ServiceName::parse(service.as_deref())?;
        let after = after.as_deref().map(Key::parse).transpose()?;
        tracing::debug!(service = service.as_str(), "list keys");
        let query = Query::Keys {
            service,
            after,
            limit: MAX_LIST_NAMES + 1,
        };
        match bound.query(turn, query).await? {
            Found::Keys(keys) => {
                Ok(bound.page(keys.into_iter().map(|k| k.as_str().to_owned()).collect()))
            }
            other => Err(to_wire(mismatch(&other))),
        }
    }

    async fn list_services(self, _: Context, after: Option<String>) -> Result<Page, ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        bound.admit()?;
        let after = after
            .as_deref()
            .map(|after| ServiceName::parse(Some(after)))
            .transpose()?;
        tracing::debug!("list services");
        let query = Query::Services {
            after,
            limit: MAX_LIST_NAMES + 1,
        };
        match bound.query(turn, query).await? {
            Found::Services(services) => Ok(bound.page(
                services
                    .into_iter()
                    .map(|s| s.as_str().to_owned())
                    .collect(),
            )),
            other => Err(to_wire(mismatch(&other))),
        }
    }

    async fn export(
        self,
        _: Context,
        service: Option<String>,
        after: Option<ItemRef>,
    ) -> Result<ExportPage, ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        bound.admit()?;
        let service = service
            .as_deref()
            .map(|service| ServiceName::parse(Some(service)))
            .transpose()?;
        let after = after.as_ref().map(item_ref).transpose()?;
        tracing::debug!("export");
        let query = Query::Export {
            service,
            after,
            limit: MAX_EXPORT_ITEMS + 1,
        };
        match bound.query(turn, query).await? {
            Found::Exported(found) => export_page(found, bound.max_value_bytes as usize),
            other => Err(to_wire(mismatch(&other))),
        }
    }

    async fn import(
        self,
        _: Context,
        items: Vec<ExportedItem>,
        replace: bool,
    ) -> Result<ImportReport, ServiceError> {
        let Self { bound, turn } = self;
        if items.len() > MAX_EXPORT_ITEMS {
            return Err(ServiceError::TooLarge {
                what: format!(
                    "{} items in one import; the limit is {MAX_EXPORT_ITEMS}",
                    items.len()
                ),
            });
        }
        let mut parsed = Vec::with_capacity(items.len());
        for item in items {
            if item.accessible.this_device_only() {
                return Err(ServiceError::Refused {
                    reason: format!(
                        "'{}' under keychainService '{}' is {}: such items never leave their device, so no export carries them",
                        item.key, item.service, item.accessible
                    ),
                });
            }
            let name = item_ref(&ItemRef {
                service: item.service,
                key: item.key,
            })?;
            bound.check_size(&item.value)?;
            parsed.push((name, item.value, item.accessible));
        }
        turn.wait().await;
        bound.admit()?;
        tracing::debug!(items = parsed.len(), replace, "import");
        let write = Write::Import {
            project: bound.scope(),
            items: parsed,
            replace,
        };
        match bound.write(turn, write).await? {
            Applied::Imported(report) => Ok(report),
            other => Err(ServiceError::Storage {
                message: format!("an import was answered with {other:?}"),
            }),
        }
    }

    async fn clear(self, _: Context, service: Option<String>) -> Result<u64, ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        bound.admit()?;
        let service = ServiceName::parse(service.as_deref())?;
        tracing::debug!(service = service.as_str(), "clear");
        let write = Write::Clear {
            project: bound.scope(),
            service: Some(service),
        };
        cleared(bound.write(turn, write).await?)
    }

    async fn clear_all(self, _: Context) -> Result<u64, ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        bound.admit()?;
        tracing::debug!("clear all");
        let write = Write::Clear {
            project: bound.scope(),
            service: None,
        };
        cleared(bound.write(turn, write).await?)
    }

    async fn set_if(
        self,
        _: Context,
        key: String,
        expected: Option<SecretString>,
        value: SecretString,
        options: SetOptions,
    ) -> Result<(), ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        let change = bound.change(BatchOp::SetIf {
            key,
            expected,
            value,
            options,
        })?;
        tracing::debug!(
            service = change.name.service.as_str(),
            key = change.name.key.as_str(),
            "set if"
        );
        let write = Write::Change {
            project: bound.scope(),
            change,
        };
        applied(bound.write(turn, write).await?)
    }

    async fn delete_if(
        self,
        _: Context,
        key: String,
        expected: Option<SecretString>,
        options: DeleteOptions,
    ) -> Result<(), ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        let change = bound.change(BatchOp::DeleteIf {
            key,
            expected,
            options,
        })?;
        tracing::debug!(
            service = change.name.service.as_str(),
            key = change.name.key.as_str(),
            "delete if"
        );
        let write = Write::Change {
            project: bound.scope(),
            change,
        };
        applied(bound.write(turn, write).await?)
    }

    async fn write_batch(self, _: Context, ops: Vec<BatchOp>) -> Result<(), ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        bound.admit()?;
        if ops.len() > MAX_BATCH_OPS {
            return Err(ServiceError::TooLarge {
                what: format!(
                    "{} operations in a batch; the limit is {MAX_BATCH_OPS}",
                    ops.len()
                ),
            });
        }
        let size: usize = ops.iter().map(BatchOp::size).sum();
        if size > bound.max_value_bytes as usize {
            return Err(ServiceError::TooLarge {
                what: format!(
                    "a batch of {size} bytes of keys, services and values; the limit is {}",
                    bound.max_value_bytes
                ),
            });
        }
        let mut changes = Vec::with_capacity(ops.len());
        for (index, op) in ops.into_iter().enumerate() {
            let change = bound.change(op).map_err(|error| ServiceError::InBatch {
                index: index as u64,
                error: Box::new(error),
            })?;
            changes.push(change);
        }
        tracing::debug!(operations = changes.len(), "batch");
        if changes.is_empty() {
            return Ok(());
        }
        let write = Write::Batch {
            project: bound.scope(),
            changes,
        };
        match bound.write(turn, write).await? {
            Applied::Conflict { index } => Err(ServiceError::InBatch {
                index: index as u64,
                error: Box::new(ServiceError::Conflict),
            }),
            _ => Ok(()),
        }
    }

    async fn watch(self, _: Context, filter: WatchFilter) -> Result<u64, ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        bound.admit()?;
        let service = filter
            .service
            .as_deref()
            .map(|s| ServiceName::parse(Some(s)))
            .transpose()?;
        let key = filter.key.as_deref().map(Key::parse).transpose()?;
        let mut watchers = bound.watchers();
        if watchers.by_id.len() >= MAX_WATCHERS_PER_CONNECTION {
            return Err(ServiceError::TooLarge {
                what: format!(
                    "a connection may have {MAX_WATCHERS_PER_CONNECTION} watchers; unwatch one first"
                ),
            });
        }
        // Registered in the connection's turn: it sees every change committed from now on.
        let watcher = bound.store.changes.watch(bound.scope(), service, key);
        watchers.next += 1;
        let id = watchers.next;
        watchers.by_id.insert(id, watcher);
        tracing::debug!(watcher = id, "watch");
        Ok(id)
    }

    async fn poll_events(
        self,
        _: Context,
        watcher: u64,
        wait_millis: u32,
    ) -> Result<Events, ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        bound.admit()?;
        let Some(watcher) = bound.watchers().by_id.get(&watcher).cloned() else {
            return Err(ServiceError::Refused {
                reason: format!("no watcher {watcher} on this connection"),
            });
        };
        // Waiting for events holds nothing of the connection's order.
        drop(turn);
        let budget = bound.max_value_bytes as usize + MAX_KEY_BYTES;
        let wait =
            std::time::Duration::from_millis(u64::from(wait_millis.min(MAX_WATCH_WAIT_MILLIS)));
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let ready = watcher.ready.notified();
            tokio::pin!(ready);
            // Registered before the check, so an event queued in between is not missed.
            ready.as_mut().enable();
            if let Some(events) = watcher.take(budget) {
                return Ok(events);
            }
            // Shutdown ends the wait at once, so a long poll never holds up the drain.
            let woken = tokio::select! {
                () = bound.shutdown.cancelled() => false,
                woken = tokio::time::timeout_at(deadline, ready) => woken.is_ok(),
            };
            if !woken {
                return Ok(Events::default());
            }
        }
    }

    async fn unwatch(self, _: Context, watcher: u64) -> Result<(), ServiceError> {
        let Self { bound, turn } = self;
        turn.wait().await;
        bound.admit()?;
        bound.watchers().by_id.remove(&watcher);
        Ok(())
    }
}

impl Bound {
    fn watchers(&self) -> std::sync::MutexGuard<'_, Watchers> {
        // Two plain fields updated together; a panic cannot leave them half-changed.
        self.watchers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A plain write's answer: applied, or a failed condition.
fn applied(applied: Applied) -> Result<(), ServiceError> {
    match applied {
        Applied::Conflict { .. } => Err(ServiceError::Conflict),
        Applied::Done | Applied::Cleared(_) | Applied::Imported(_) => Ok(()),
    }
}

/// An item reference from the wire, parsed.
fn item_ref(at: &ItemRef) -> Result<ItemName, ServiceError> {
    Ok(ItemName {
        service: ServiceName::parse(Some(&at.service))?,
        key: Key::parse(&at.key)?,
    })
}

/// Fills one export page from `found` (at most `MAX_EXPORT_ITEMS + 1` items): up to
/// `MAX_EXPORT_ITEMS` items and `budget` bytes, at least one; `next` is set when items remain. A
/// value stored under a larger limit than today's cannot fit a frame: refused, as a get of it is.
fn export_page(
    found: Vec<securestore_backends::Exported>,
    budget: usize,
) -> Result<ExportPage, ServiceError> {
    if let Some(big) = found.iter().find(|e| e.item.value.len() > budget) {
        return Err(ServiceError::ValueTooLarge {
            size: big.item.value.len() as u64,
            limit: budget as u64,
        });
    }
    let total = found.len();
    let mut page = ExportPage::default();
    let mut used = 0;
    for exported in found {
        let item = ExportedItem {
            service: exported.name.service.as_str().to_owned(),
            key: exported.name.key.as_str().to_owned(),
            value: exported.item.value,
            accessible: exported.item.accessible,
            written_at: exported.written_at,
        };
        if !page.items.is_empty()
            && (used + item.size() > budget || page.items.len() == MAX_EXPORT_ITEMS)
        {
            break;
        }
        used += item.size();
        page.items.push(item);
    }
    if page.items.len() < total {
        page.next = page.items.last().map(|last| ItemRef {
            service: last.service.clone(),
            key: last.key.clone(),
        });
    }
    Ok(page)
}

/// A clear's answer: how many items it deleted.
fn cleared(applied: Applied) -> Result<u64, ServiceError> {
    match applied {
        Applied::Cleared(count) => Ok(count),
        other => Err(ServiceError::Storage {
            message: format!("a clear was answered with {other:?}"),
        }),
    }
}
