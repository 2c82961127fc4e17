//! The tarpc service: Expo SecureStore's three calls.
//!
//! No request names a project: the connection was bound to one in the handshake
//! ([`crate::handshake`]), and the daemon answers every request within that binding.

use crate::{DeleteOptions, GetOptions, Item, SecretString, ServiceError, SetOptions};

/// Expo SecureStore's calls, as the daemon serves them.
///
/// Keys and services travel as plain strings; the daemon parses them with [`crate::Key::parse`] and
/// [`crate::ServiceName::parse`] and answers a bad one with a [`ServiceError`].
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
}
