//! The same store for programs still on `keyring` 3.x (feature `keyring-v3`), whose `keyring::Entry`
//! takes its store from `keyring::set_default_credential_builder`.
//!
//! ```no_run
//! # fn main() -> keyring_v3::Result<()> {
//! // Once, at start-up; SECURESTORE_PROJECT etc. as for the CLI.
//! keyring_v3::set_default_credential_builder(securestore_keyring::v3::from_env()?);
//! // The rest of the program is unchanged.
//! let entry = keyring_v3::Entry::new("my-service", "alice@example.com")?;
//! entry.set_password("hunter2")?;
//! # Ok(()) }
//! ```
//!
//! (In a program the crate is named `keyring`; here it is renamed `keyring_v3` so as not to be
//! taken for keyring 4.) Entries are the very items of the keyring-core [`Store`]: same mapping,
//! same errors where keyring 3 has the kind. keyring 3 lacks `BadDataFormat` and
//! `NotSupportedByStore`; those come as `PlatformFailure` carrying the keyring-core error. keyring 3's
//! `Entry::new_with_target` is refused with `Invalid("target", ..)`: a store is one project, chosen
//! by its configuration.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use keyring_core::api::CredentialApi as _;
use keyring_v3::credential::{
    Credential, CredentialApi, CredentialBuilder, CredentialBuilderApi, CredentialPersistence,
};
use keyring_v3::{Error, Result};
use securestore_client::KeychainAccessible;

use crate::{Cred, Store};

/// keyring 3's credential builder over a [`Store`].
#[derive(Debug)]
pub struct Builder {
    store: Arc<Store>,
}

/// A builder over `store`, for `keyring::set_default_credential_builder`.
pub fn builder(store: Arc<Store>) -> Box<CredentialBuilder> {
    Box::new(Builder { store })
}

/// A builder over a store configured from the CLI's environment variables ([`Store::new`]).
///
/// # Errors
/// As [`Store::new`], in keyring 3's kinds.
pub fn from_env() -> Result<Box<CredentialBuilder>> {
    Ok(builder(Store::new().map_err(to_v3)?))
}

impl CredentialBuilderApi for Builder {
    fn build(&self, target: Option<&str>, service: &str, user: &str) -> Result<Box<Credential>> {
        if target.is_some() {
            return Err(Error::Invalid(
                "target".to_owned(),
                "securestore has no targets: the store's configuration chooses the project"
                    .to_owned(),
            ));
        }
        let cred = self
            .store
            .credential(service, user, KeychainAccessible::default())
            .map_err(to_v3)?;
        Ok(Box::new(V3Cred(cred)))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn persistence(&self) -> CredentialPersistence {
        CredentialPersistence::UntilDelete
    }
}

/// keyring 3's view of a [`Cred`].
#[derive(Debug)]
pub struct V3Cred(pub Cred);

impl CredentialApi for V3Cred {
    fn set_secret(&self, secret: &[u8]) -> Result<()> {
        self.0.set_secret(secret).map_err(to_v3)
    }

    fn get_secret(&self) -> Result<Vec<u8>> {
        self.0.get_secret().map_err(to_v3)
    }

    fn get_attributes(&self) -> Result<HashMap<String, String>> {
        self.0.get_attributes().map_err(to_v3)
    }

    fn update_attributes(&self, attributes: &HashMap<&str, &str>) -> Result<()> {
        self.0.update_attributes(attributes).map_err(to_v3)
    }

    fn delete_credential(&self) -> Result<()> {
        self.0.delete_credential().map_err(to_v3)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn debug_fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// keyring 3's kind for a keyring-core error: the same variant where keyring 3 has it.
fn to_v3(err: keyring_core::Error) -> Error {
    use keyring_core::Error as Core;
    match err {
        Core::PlatformFailure(e) => Error::PlatformFailure(e),
        Core::NoStorageAccess(e) => Error::NoStorageAccess(e),
        Core::NoEntry => Error::NoEntry,
        Core::BadEncoding(bytes) => Error::BadEncoding(bytes),
        Core::TooLong(attr, limit) => Error::TooLong(attr, limit),
        Core::Invalid(attr, reason) => Error::Invalid(attr, reason),
        other => Error::PlatformFailure(Box::new(other)),
    }
}
