//! [`Store`]: keyring-core's `CredentialStoreApi` over one connection to the daemon.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use keyring_core::api::{CredentialPersistence, CredentialStoreApi};
use keyring_core::{Entry, Result};
use securestore_client::Error as ClientError;
use securestore_client::KeychainAccessible;
use securestore_client::blocking::Client;

use crate::config::Config;
use crate::credential::Cred;
use crate::error::{from_client, invalid, too_long};
use crate::names::{self, Kind};

/// The modifiers [`Store`]'s `build` accepts.
pub const MODIFIERS: [&str; 1] = ["accessible"];

/// The keys a search spec may hold.
pub const SEARCH_KEYS: [&str; 2] = ["service", "user"];

/// Numbers store instances, so each has its own `id` as keyring asks.
static INSTANCES: AtomicU64 = AtomicU64::new(0);

/// A keyring credential store that keeps every entry in one securestore project.
///
/// Create it once at start-up and make it keyring's default:
/// `keyring_core::set_default_store(securestore_keyring::Store::new()?)`.
#[derive(Debug)]
pub struct Store {
    pub(crate) shared: Arc<Shared>,
    id: String,
}

/// What the store and all its credentials share: the configuration and the connection.
#[derive(Debug)]
pub(crate) struct Shared {
    config: Config,
    /// The open connection, or `None` after one was lost, until the next call opens another.
    client: Mutex<Option<Arc<Client>>>,
}

impl Store {
    /// A store configured from the CLI's environment variables (see [`Config::from_env`]),
    /// connected.
    ///
    /// # Errors
    /// As [`Config::from_env`] and [`Store::open`].
    pub fn new() -> Result<Arc<Self>> {
        Self::open(Config::from_env()?)
    }

    /// A store configured by keyring's string map over the environment (see [`Config::from_map`]),
    /// connected.
    ///
    /// # Errors
    /// As [`Config::from_map`] and [`Store::open`].
    pub fn new_with_configuration(config: &HashMap<&str, &str>) -> Result<Arc<Self>> {
        Self::open(Config::from_map(config)?)
    }

    /// A store on `config`, connected now so that a wrong socket, project or token shows at
    /// start-up rather than at the first secret.
    ///
    /// # Errors
    /// [`keyring_core::Error::NoStorageAccess`] when the daemon cannot be reached or refuses the project or token;
    /// [`keyring_core::Error::Invalid`] on `project` for a malformed project id.
    pub fn open(config: Config) -> Result<Arc<Self>> {
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "securestore-keyring {} #{n}: project {} at {}",
            env!("CARGO_PKG_VERSION"),
            config.project,
            config.socket.display()
        );
        let shared = Arc::new(Shared {
            config,
            client: Mutex::new(None),
        });
        shared.connected().map_err(from_client)?;
        Ok(Arc::new(Self { shared, id }))
    }

    /// The configuration this store runs on.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    pub(crate) fn credential(
        &self,
        service: &str,
        user: &str,
        accessible: KeychainAccessible,
    ) -> Result<Cred> {
        Ok(Cred {
            shared: self.shared.clone(),
            service: service.to_owned(),
            user: user.to_owned(),
            mapped_service: names::encode(Kind::Service, service).map_err(|e| too_long(&e))?,
            mapped_key: names::encode(Kind::User, user).map_err(|e| too_long(&e))?,
            accessible,
        })
    }
}

impl CredentialStoreApi for Store {
    fn vendor(&self) -> String {
        format!("securestore-keyring, {}", env!("CARGO_PKG_REPOSITORY"))
    }

    fn id(&self) -> String {
        self.id.clone()
    }

    /// Builds an entry for `<service, user>`. One modifier is understood: `accessible`, an Expo
    /// `keychainAccessible` class name (`WHEN_UNLOCKED`, `AFTER_FIRST_UNLOCK`, …) stored with the
    /// item when the entry sets it.
    fn build(
        &self,
        service: &str,
        user: &str,
        modifiers: Option<&HashMap<&str, &str>>,
    ) -> Result<Entry> {
        let modifiers = keyring_core::attributes::parse_attributes(&MODIFIERS, modifiers)?;
        let accessible = match modifiers.get("accessible") {
            Some(name) => name
                .parse::<KeychainAccessible>()
                .map_err(|reason| invalid("accessible", reason))?,
            None => KeychainAccessible::default(),
        };
        let cred = self.credential(service, user, accessible)?;
        Ok(Entry::new_with_credential(Arc::new(cred)))
    }

    /// Lists the entries of the project: `service` limits it to one service, `user` to one user;
    /// an empty spec lists every entry. Keys and services that no keyring name maps to (written by
    /// other clients in a form this store would never write) are left out.
    fn search(&self, spec: &HashMap<&str, &str>) -> Result<Vec<Entry>> {
        let spec = keyring_core::attributes::parse_attributes(&SEARCH_KEYS, Some(spec))?;
        let services = match spec.get("service") {
            Some(service) => {
                vec![names::encode(Kind::Service, service).map_err(|e| too_long(&e))?]
            }
            None => self
                .shared
                .call(|client| client.list_services())
                .map_err(from_client)?,
        };
        let mut found = Vec::new();
        for mapped_service in services {
            let Some(service) = names::decode(Kind::Service, &mapped_service) else {
                continue;
            };
            let keys = self
                .shared
                .call(|client| client.list_keys(Some(&mapped_service)))
                .map_err(from_client)?;
            for key in keys {
                let Some(user) = names::decode(Kind::User, &key) else {
                    continue;
                };
                if spec.get("user").is_some_and(|wanted| *wanted != user) {
                    continue;
                }
                let cred = self.credential(&service, &user, KeychainAccessible::default())?;
                found.push(Entry::new_with_credential(Arc::new(cred)));
            }
        }
        Ok(found)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn persistence(&self) -> CredentialPersistence {
        CredentialPersistence::UntilDelete
    }

    fn debug_fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

impl Shared {
    /// The open connection, opening one if there is none.
    fn connected(&self) -> std::result::Result<Arc<Client>, ClientError> {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let config = &self.config;
        let client = outside_async(|| {
            Client::connect_with(&config.socket, &config.project, config.connect_options())
        })?;
        let client = Arc::new(client);
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Forgets `lost`, so the next call opens a new connection (unless another thread already did).
    fn forget(&self, lost: Arc<Client>) {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        let old = if slot
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, &lost))
        {
            slot.take()
        } else {
            None
        };
        drop(slot);
        dispose(old);
        dispose(Some(lost));
    }

    /// Runs `op` on the connection. When the connection turns out lost (the daemon restarted or
    /// went away), `op` runs once more on a new one: every operation this store makes is
    /// idempotent (set to a value, read, check, list, delete), so a second run cannot do harm
    /// even if the first was applied. (A delete applied the first time answers `NoEntry` the
    /// second: the state is the one asked for, the answer says it was already so.)
    pub(crate) fn call<T: Send>(
        &self,
        op: impl Fn(&Client) -> std::result::Result<T, ClientError> + Sync,
    ) -> std::result::Result<T, ClientError> {
        let client = self.connected()?;
        match outside_async(|| op(&client)) {
            Err(err) if connection_lost(&err) => {
                self.forget(client);
                let client = self.connected()?;
                let done = outside_async(|| op(&client));
                dispose(Some(client));
                done
            }
            done => {
                dispose(Some(client));
                done
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        dispose(client);
    }
}

/// Whether `err` says the connection is gone, so a new one may succeed.
fn connection_lost(err: &ClientError) -> bool {
    matches!(
        err,
        ClientError::Disconnected(_) | ClientError::Unreachable { .. }
    )
}

/// Runs `f` here, or on a short-lived thread when this thread is inside a Tokio runtime.
///
/// The blocking client drives its own runtime with `block_on`, which panics inside another
/// runtime's async context; many keyring programs are async, and keyring's API is blocking. A
/// scoped thread has no runtime context, so the call is made there and this thread waits for it,
/// as any blocking keyring store would make it wait.
fn outside_async<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Lets go of a reference to a client. When it is the last one, the client (and with it its
/// runtime) is dropped outside any async context, where dropping a runtime would panic.
fn dispose(client: Option<Arc<Client>>) {
    if let Some(last) = client.and_then(Arc::into_inner) {
        outside_async(move || drop(last));
    }
}
