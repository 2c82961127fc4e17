//! The tarpc service: Expo SecureStore's three calls, then the calls protocol version 2 added.
//!
//! No request names a project: the connection was bound to one in the handshake
//! ([`crate::handshake`]), and the daemon answers every request within that binding.
//!
//! bincode numbers the request and response variants by their position here, so calls are only ever
//! appended, never reordered or removed; each call notes the protocol version that added it. A
//! client sends a call only when the daemon's [`crate::handshake::Accepted`] version has it.

use serde::{Deserialize, Serialize};

use crate::{DeleteOptions, GetOptions, Item, SecretString, ServiceError, SetOptions};

/// Expo's calls, as the daemon serves them.
///
/// Keys and services travel as plain strings; the daemon parses them with [`crate::Key::parse`] and
/// [`crate::ServiceName::parse`] and answers a bad one with a [`ServiceError`]. A `service` of `None`
/// is [`crate::DEFAULT_SERVICE`].
#[tarpc::service]
pub trait SecureStore {
    /// `setItemAsync`: stores `value` under `key`, replacing any earlier value. Answered only once durable.
    async fn set_item(
        key: String,
        value: SecretString,
        options: SetOptions,
    ) -> Result<(), ServiceError>;
    /// `getItemAsync`: the item under `key`, or `None` when there is none.
    async fn get_item(key: String, options: GetOptions) -> Result<Option<Item>, ServiceError>;
    /// `deleteItemAsync`: removes the item under `key`; removing a missing item succeeds.
    async fn delete_item(key: String, options: DeleteOptions) -> Result<(), ServiceError>;
    /// (v2) Whether an item is stored under `key`; its value never crosses the wire.
    async fn contains(key: String, service: Option<String>) -> Result<bool, ServiceError>;
    /// (v2) The keys of one service, sorted by their bytes, those after `after` only, one
    /// bounded [`Page`] at a time ([`crate::limits::MAX_LIST_NAMES`]).
    async fn list_keys(
        service: Option<String>,
        after: Option<String>,
    ) -> Result<Page, ServiceError>;
    /// (v2) The services holding at least one item, sorted, after `after`, one [`Page`] at a time.
    async fn list_services(after: Option<String>) -> Result<Page, ServiceError>;
    /// (v2) Deletes every item of one service; answers how many there were. Durable like a delete.
    async fn clear(service: Option<String>) -> Result<u64, ServiceError>;
    /// (v2) Deletes every item of every service of the project; answers how many there were.
    async fn clear_all() -> Result<u64, ServiceError>;
    /// (v2) As `set_item`, only if the current value equals `expected` (`None`: only if there is no
    /// item). Otherwise [`ServiceError::Conflict`], and nothing changes; the current value is never
    /// sent back.
    async fn set_if(
        key: String,
        expected: Option<SecretString>,
        value: SecretString,
        options: SetOptions,
    ) -> Result<(), ServiceError>;
    /// (v2) As `delete_item`, only if the current value equals `expected` (`None`: only if there is
    /// no item, which changes nothing). Otherwise [`ServiceError::Conflict`].
    async fn delete_if(
        key: String,
        expected: Option<SecretString>,
        options: DeleteOptions,
    ) -> Result<(), ServiceError>;
    /// (v2) Applies every operation, in order, all or nothing, in one durable transaction. Each
    /// condition sees the operations before it. The first failing operation fails the whole batch
    /// with [`ServiceError::InBatch`] naming its index. At most [`crate::limits::MAX_BATCH_OPS`]
    /// operations, whose keys, services and values together fit in the daemon's value limit.
    async fn write_batch(ops: Vec<BatchOp>) -> Result<(), ServiceError>;
    /// (v2) Starts watching this project's changes that match `filter`; answers the watcher's id on
    /// this connection. The watcher sees every change committed (durably) after it is made, in
    /// commit order; it ends with the connection or [`SecureStore::unwatch`].
    async fn watch(filter: WatchFilter) -> Result<u64, ServiceError>;
    /// (v2) Long poll: the watcher's queued events, as soon as there is one, or none after
    /// `wait_millis` (at most 30 s). [`Events::lagged`] says events were dropped because the queue
    /// was full. Answers fit one frame; more may be waiting.
    async fn poll_events(watcher: u64, wait_millis: u32) -> Result<Events, ServiceError>;
    /// (v2) Ends a watcher. Ending an unknown one succeeds.
    async fn unwatch(watcher: u64) -> Result<(), ServiceError>;
    /// One page of the project's exportable items (every class but the `*_THIS_DEVICE_ONLY` ones),
    /// of `service` or of every service, ordered by (service, key), after `after`. An item that
    /// cannot be read in the device's state fails the page with `Locked`: an export never leaves an
    /// item out silently. (Protocol version 3.)
    async fn export(
        service: Option<String>,
        after: Option<ItemRef>,
    ) -> Result<ExportPage, ServiceError>;
    /// Stores `items` in one transaction: all or none. An item that exists already is kept and
    /// counted as skipped, unless `replace`. A `*_THIS_DEVICE_ONLY` item is refused. (Protocol
    /// version 3.)
    async fn import(items: Vec<ExportedItem>, replace: bool) -> Result<ImportReport, ServiceError>;
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Page {
    /// The names, sorted by their bytes.
    pub names: Vec<String>,
    /// Whether more names follow: ask again with `after` set to the last name of this page.
    pub more: bool,
}

/// One operation of a [`SecureStore::write_batch`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BatchOp {
    /// As `set_item`.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: SecretString,
        /// Its service and class.
        options: SetOptions,
    },
    /// As `delete_item`.
    Delete {
        /// The key.
        key: String,
        /// Its service.
        options: DeleteOptions,
    },
    /// As `set_if`.
    SetIf {
        /// The key.
        key: String,
        /// The value it must have now (`None`: it must not exist).
        expected: Option<SecretString>,
        /// The new value.
        value: SecretString,
        /// Its service and class.
        options: SetOptions,
    },
    /// As `delete_if`.
    DeleteIf {
        /// The key.
        key: String,
        /// The value it must have now (`None`: it must not exist).
        expected: Option<SecretString>,
        /// Its service.
        options: DeleteOptions,
    },
}

impl BatchOp {
    /// The operation's key.
    pub fn key(&self) -> &str {
        match self {
            Self::Set { key, .. }
            | Self::Delete { key, .. }
            | Self::SetIf { key, .. }
            | Self::DeleteIf { key, .. } => key,
        }
    }

    /// The operation's service, as sent.
    pub fn service(&self) -> Option<&str> {
        match self {
            Self::Set { options, .. } | Self::SetIf { options, .. } => {
                options.keychain_service.as_deref()
            }
            Self::Delete { options, .. } | Self::DeleteIf { options, .. } => {
                options.keychain_service.as_deref()
            }
        }
    }

    /// The bytes of value this operation carries (new and expected), counted against a batch's
    /// bound.
    pub fn value_bytes(&self) -> usize {
        let expected = |e: &Option<SecretString>| e.as_ref().map_or(0, SecretString::len);
        match self {
            Self::Set { value, .. } => value.len(),
            Self::Delete { .. } => 0,
            Self::SetIf {
                expected: e, value, ..
            } => value.len() + expected(e),
            Self::DeleteIf { expected: e, .. } => expected(e),
        }
    }

    /// What this operation costs of a batch's byte bound: its key, service and values.
    pub fn size(&self) -> usize {
        self.key().len() + self.service().map_or(0, str::len) + self.value_bytes()
    }
}

/// The protocol version that added `call` (a [`SecureStoreRequest`] variant's name, as the client
/// names it in errors): 1 for Expo's three, 3 for export and import, 2 for the rest.
pub fn version_of(request: &SecureStoreRequest) -> u16 {
    match request {
        SecureStoreRequest::SetItem { .. }
        | SecureStoreRequest::GetItem { .. }
        | SecureStoreRequest::DeleteItem { .. } => 1,
        SecureStoreRequest::Export { .. } | SecureStoreRequest::Import { .. } => 3,
        _ => 2,
    }
}

/// Which changes a watcher wants ([`SecureStore::watch`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchFilter {
    /// Only this service's changes; `None`: every service of the project.
    pub service: Option<String>,
    /// Only this key's changes (in `service`, or in every service); `None`: every key.
    pub key: Option<String>,
}

/// What a change did. Values are never part of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChangeKind {
    /// The item was stored (set, set_if, or a batch's set).
    Set,
    /// The item was deleted (delete, delete_if, or a batch's delete; reported even if nothing was
    /// stored under the key).
    Deleted,
    /// Every item of the service (of every service when the event's `service` is `None`) was
    /// deleted by a clear.
    Cleared,
}

/// One durable change, as a watcher sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// The daemon's commit sequence number: events arrive in commit order, with increasing `seq`.
    pub seq: u64,
    /// The service changed; `None` for a clear of every service.
    pub service: Option<String>,
    /// The key changed; `None` for a clear.
    pub key: Option<String>,
    /// What happened.
    pub kind: ChangeKind,
}

/// Events a watcher lost because its queue was full ([`crate::limits::MAX_WATCH_QUEUE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lagged {
    /// How many events were dropped, all older than the first event of the answer.
    pub missed: u64,
}

/// The answer to [`SecureStore::poll_events`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    /// Changes in commit order.
    pub events: Vec<ChangeEvent>,
    /// Set when events were dropped before these: re-read what matters.
    pub lagged: Option<Lagged>,
}

/// An item's place in an export: its service and key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRef {
    /// The item's service.
    pub service: String,
    /// The item's key.
    pub key: String,
}

/// One item as an export carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportedItem {
    /// Its service.
    pub service: String,
    /// Its key.
    pub key: String,
    /// The value.
    pub value: SecretString,
    /// Its class.
    pub accessible: crate::KeychainAccessible,
    /// When it was last written, in Unix milliseconds (0 if the backend does not record it).
    pub written_at: i64,
}

impl ExportedItem {
    /// Bytes of the item's strings, for page and request budgets.
    pub fn size(&self) -> usize {
        self.service.len() + self.key.len() + self.value.len() + 16
    }
}

/// One page of an export.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExportPage {
    /// The items, ordered by (service, key).
    pub items: Vec<ExportedItem>,
    /// Where the next page starts, or `None` when this was the last.
    pub next: Option<ItemRef>,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Items that did not exist and were stored.
    pub added: u64,
    /// Items that existed and were overwritten (only with `replace`).
    pub replaced: u64,
    /// Items that existed and were kept (without `replace`).
    pub skipped: u64,
}

impl std::ops::AddAssign for ImportReport {
    fn add_assign(&mut self, other: Self) {
        self.added += other.added;
        self.replaced += other.replaced;
        self.skipped += other.skipped;
    }
}
