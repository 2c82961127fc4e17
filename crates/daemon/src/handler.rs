//! One connection's request handler: parses names, checks sizes, and asks the storage owner, in the
//! order the connection sent its requests.

use std::sync::Arc;

use securestore_backends::{ItemName, ProjectScope, Write};
use securestore_proto::tarpc::context::Context;
use securestore_proto::{
    DeleteOptions, GetOptions, Item, Key, SecretString, SecureStore, ServiceError, ServiceName,
    SetOptions,
};
use tokio_util::sync::CancellationToken;

use crate::error::to_wire;
use crate::registry::{Registry, TokenHash};
use crate::store::{Admission, StoreHandle, Unsettled};
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
}

impl Bound {
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
        if value.len() > bound.max_value_bytes as usize {
            return Err(ServiceError::ValueTooLarge {
                size: value.len() as u64,
                limit: u64::from(bound.max_value_bytes),
            });
        }
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
        let answer = bound
            .store
            .submit_write(write, &bound.unsettled, bound.admission())
            .await
            .map_err(to_wire)?;
        drop(turn);
        answer.wait().await.map_err(to_wire)
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
        match item {
            // Stored under a larger --max-value-bytes: it would not fit this connection's frames.
            Some(item) if item.value.len() > bound.max_value_bytes as usize => {
                tracing::warn!(
                    size = item.value.len(),
                    "a stored value exceeds the current --max-value-bytes; raise it to read the value"
                );
                Err(ServiceError::ValueTooLarge {
                    size: item.value.len() as u64,
                    limit: u64::from(bound.max_value_bytes),
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
        let answer = bound
            .store
            .submit_write(write, &bound.unsettled, bound.admission())
            .await
            .map_err(to_wire)?;
        drop(turn);
        answer.wait().await.map_err(to_wire)
    }
}
