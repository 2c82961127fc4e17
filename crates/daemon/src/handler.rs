//! One connection's request handler: parses names, checks sizes, and asks the storage owner.

use std::sync::Arc;

use securestore_backends::{ItemName, ProjectScope};
use securestore_proto::tarpc::context::Context;
use securestore_proto::{
    DeleteOptions, GetOptions, Item, Key, SecretString, SecureStore, ServiceError, ServiceName,
    SetOptions,
};
use tokio_util::sync::CancellationToken;

use crate::error::to_wire;
use crate::registry::{Registry, TokenHash};
use crate::store::StoreHandle;

/// Serves one connection. `scope` was fixed by the handshake; no request can change it.
#[derive(Clone)]
pub(crate) struct Handler {
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
}

impl Handler {
    fn item_name(&self, key: &str, service: Option<&str>) -> Result<ItemName, ServiceError> {
        if self.shutdown.is_cancelled() {
            return Err(ServiceError::ShuttingDown);
        }
        // Registration can change while a connection is open: re-check it on every request.
        if !self
            .registry
            .still_admits(self.scope.project(), self.token_hash.as_ref())
        {
            return Err(ServiceError::Refused {
                reason: format!(
                    "project '{}' was registered, removed or re-registered since this connection opened; reconnect",
                    self.scope.project()
                ),
            });
        }
        Ok(ItemName {
            key: Key::parse(key)?,
            service: ServiceName::parse(service)?,
        })
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
        let name = self.item_name(&key, options.keychain_service.as_deref())?;
        if value.len() > self.max_value_bytes as usize {
            return Err(ServiceError::ValueTooLarge {
                size: value.len() as u64,
                limit: u64::from(self.max_value_bytes),
            });
        }
        tracing::debug!(
            service = name.service.as_str(),
            key = name.key.as_str(),
            "set"
        );
        let accessible = options.keychain_accessible;
        self.store
            .set(self.scope(), name, value, accessible)
            .await
            .map_err(to_wire)
    }

    async fn get_item(
        self,
        _: Context,
        key: String,
        options: GetOptions,
    ) -> Result<Option<Item>, ServiceError> {
        let name = self.item_name(&key, options.keychain_service.as_deref())?;
        tracing::debug!(
            service = name.service.as_str(),
            key = name.key.as_str(),
            "get"
        );
        let item = self.store.get(self.scope(), name).await.map_err(to_wire)?;
        match item {
            // Stored under a larger --max-value-bytes: it would not fit this connection's frames.
            Some(item) if item.value.len() > self.max_value_bytes as usize => {
                tracing::warn!(
                    size = item.value.len(),
                    "a stored value exceeds the current --max-value-bytes; raise it to read the value"
                );
                Err(ServiceError::ValueTooLarge {
                    size: item.value.len() as u64,
                    limit: u64::from(self.max_value_bytes),
                })
            }
            item => Ok(item),
        }
    }

    async fn delete_item(
        self,
        _: Context,
        key: String,
        options: DeleteOptions,
    ) -> Result<(), ServiceError> {
        let name = self.item_name(&key, options.keychain_service.as_deref())?;
        tracing::debug!(
            service = name.service.as_str(),
            key = name.key.as_str(),
            "delete"
        );
        self.store.delete(self.scope(), name).await.map_err(to_wire)
    }
}
