//! [`Cred`]: keyring-core's `CredentialApi` for one `<service, user>` pair, i.e. one securestore item.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use keyring_core::api::{Credential, CredentialApi};
use keyring_core::{Error, Result};
use securestore_client::{
    DeleteOptions, GetOptions, KeychainAccessible, SecretString, ServiceError, SetOptions,
};

use crate::error::{from_client, invalid};
use crate::store::Shared;
use crate::value;

/// How many times [`Cred::update_attributes`] rereads and retries when a writer got in between.
const UPDATE_TRIES: usize = 5;

/// One keyring entry: a service and a user, and the securestore item they map to.
///
/// It is both a specifier and a wrapper in keyring's terms: securestore holds at most one item per
/// `<keychainService, key>`, so the pair names exactly one credential and no entry is ever
/// ambiguous. Setting a deleted credential's secret creates it again.
pub struct Cred {
    pub(crate) shared: Arc<Shared>,
    pub(crate) service: String,
    pub(crate) user: String,
    /// `service` as the daemon stores it (see [`crate::names`]).
    pub(crate) mapped_service: String,
    /// `user` as the daemon stores it.
    pub(crate) mapped_key: String,
    /// The class stored with the item when this entry sets it (the `accessible` modifier).
    pub(crate) accessible: KeychainAccessible,
}

impl std::fmt::Debug for Cred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("securestore_keyring::Cred")
            .field("service", &self.service)
            .field("user", &self.user)
            .field("keychain_service", &self.mapped_service)
            .field("key", &self.mapped_key)
            .field("accessible", &self.accessible)
            .finish_non_exhaustive()
    }
}

impl Cred {
    /// The `keychainService` the entry's item is stored under.
    pub fn keychain_service(&self) -> &str {
        &self.mapped_service
    }

    /// The key the entry's item is stored under.
    pub fn key(&self) -> &str {
        &self.mapped_key
    }

    fn set_options(&self, accessible: KeychainAccessible) -> SetOptions {
        SetOptions {
            keychain_service: Some(self.mapped_service.clone()),
            keychain_accessible: accessible,
        }
    }

    fn get_options(&self) -> GetOptions {
        GetOptions {
            keychain_service: Some(self.mapped_service.clone()),
        }
    }

    /// The stored value and class, or [`Error::NoEntry`].
    fn item(&self) -> Result<securestore_client::Item> {
        self.shared
            .call(|client| client.get_item_entry(&self.mapped_key, self.get_options()))
            .map_err(from_client)?
            .ok_or(Error::NoEntry)
    }
}

impl CredentialApi for Cred {
    /// Stores `secret` (see [`crate::value`] for how bytes become text), creating the item if needed.
    fn set_secret(&self, secret: &[u8]) -> Result<()> {
        let stored = value::encode(secret);
        self.shared
            .call(|client| {
                client.set_item(
                    &self.mapped_key,
                    stored.clone(),
                    self.set_options(self.accessible),
                )
            })
            .map_err(from_client)
    }

    fn get_secret(&self) -> Result<Vec<u8>> {
        let item = self.item()?;
        value::decode(item.value.expose_secret()).map_err(|bad| {
            Error::BadDataFormat(
                item.value.expose_secret().as_bytes().to_vec(),
                Box::new(bad),
            )
        })
    }

    /// The item's securestore coordinates and class: `keychain-service`, `key` (the mapped names)
    /// and `accessible` (the Expo class name).
    fn get_attributes(&self) -> Result<HashMap<String, String>> {
        let item = self.item()?;
        Ok(HashMap::from([
            ("keychain-service".to_owned(), self.mapped_service.clone()),
            ("key".to_owned(), self.mapped_key.clone()),
            (
                "accessible".to_owned(),
                item.accessible.expo_name().to_owned(),
            ),
        ]))
    }

    /// Changes the one attribute that can change, `accessible`, keeping the value: the value is
    /// rewritten with `set_if` on the value just read, so a concurrent write is never undone.
    fn update_attributes(&self, attributes: &HashMap<&str, &str>) -> Result<()> {
        let parsed = keyring_core::attributes::parse_attributes(&["accessible"], Some(attributes))?;
        let Some(name) = parsed.get("accessible") else {
            // Nothing to change, but keyring still expects NoEntry for a missing credential.
            return self.item().map(drop);
        };
        let accessible = name
            .parse::<KeychainAccessible>()
            .map_err(|reason| invalid("accessible", reason))?;
        for _ in 0..UPDATE_TRIES {
            let item = self.item()?;
            let current: SecretString = item.value;
            let done = self.shared.call(|client| {
                client.set_if(
                    &self.mapped_key,
                    Some(current.clone()),
                    current.clone(),
                    self.set_options(accessible),
                )
            });
            match done {
                Err(securestore_client::Error::Service(ServiceError::Conflict)) => continue,
                other => return other.map_err(from_client),
            }
        }
        Err(Error::PlatformFailure(
            format!("the item kept changing; gave up after {UPDATE_TRIES} tries").into(),
        ))
    }

    /// Deletes the item; [`Error::NoEntry`] when there is none, as keyring expects. (The check and
    /// the delete are two calls: if another process deletes the item between them, this still
    /// answers success, which is the state the caller asked for.)
    fn delete_credential(&self) -> Result<()> {
        let service = Some(self.mapped_service.as_str());
        let deleted = self
            .shared
            .call(|client| {
                if !client.contains(&self.mapped_key, service)? {
                    return Ok(false);
                }
                client.delete_item(
                    &self.mapped_key,
                    DeleteOptions {
                        keychain_service: Some(self.mapped_service.clone()),
                    },
                )?;
                Ok(true)
            })
            .map_err(from_client)?;
        if deleted { Ok(()) } else { Err(Error::NoEntry) }
    }

    /// `None` (this entry is its own wrapper) when the item exists; [`Error::NoEntry`] otherwise.
    fn get_credential(&self) -> Result<Option<Arc<Credential>>> {
        let service = Some(self.mapped_service.as_str());
        let exists = self
            .shared
            .call(|client| client.contains(&self.mapped_key, service))
            .map_err(from_client)?;
        if exists {
            Ok(None)
        } else {
            Err(Error::NoEntry)
        }
    }

    fn get_specifiers(&self) -> Option<(String, String)> {
        Some((self.service.clone(), self.user.clone()))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn debug_fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}
