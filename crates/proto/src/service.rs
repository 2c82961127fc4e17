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
/// names it in errors): 1 for Expo's three, 2 for the rest.
pub fn version_of(request: &SecureStoreRequest) -> u16 {
    match request {
        SecureStoreRequest::SetItem { .. }
        | SecureStoreRequest::GetItem { .. }
        | SecureStoreRequest::DeleteItem { .. } => 1,
        _ => 2,
    }
}
