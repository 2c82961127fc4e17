//! A credential store for the Rust keyring ecosystem that keeps a program's secrets in securestore.
//!
//! A program that stores passwords with keyring (`Entry::new(service, user)?.set_password(..)`)
//! chooses this store once at start-up and is otherwise unchanged:
//!
//! ```no_run
//! # fn main() -> keyring_core::Result<()> {
//! // SECURESTORE_PROJECT (and SECURESTORE_TOKEN_FILE, SECURESTORE_SOCKET) as for the CLI.
//! keyring_core::set_default_store(securestore_keyring::Store::new()?);
//!
//! let entry = keyring_core::Entry::new("my-service", "alice@example.com")?;
//! entry.set_password("hunter2")?;
//! assert_eq!(entry.get_password()?, "hunter2");
//! entry.delete_credential()?;
//! # Ok(()) }
//! ```
//!
//! # Which keyring API
//!
//! This implements [`keyring_core`] 1.x (`CredentialStoreApi` for [`Store`], `CredentialApi` for
//! [`Cred`]): the current release line, on which `keyring` 4 itself is built, and the API that every
//! maintained keyring store now implements. keyring 3.x's `CredentialBuilderApi` is the previous
//! generation, still in many programs: with the `keyring-v3` feature, the `v3` module gives them a
//! builder over the same store, so their `keyring::Entry` code stays as it is and only start-up
//! changes (`keyring::set_default_credential_builder(securestore_keyring::v3::from_env()?)`).
//!
//! `keyring` 4's own `keyring::Entry` (its `v1` feature) chooses the platform store itself on first
//! use and cannot be pointed elsewhere; its `inner` field is a public keyring-core `Entry`, so a
//! program that keeps that type can still build one here with
//! `keyring::Entry { inner: keyring_core::Entry::new_in_store(&store, service, user)? }`. The
//! keyring authors recommend keyring-core directly for programs that choose their store.
//!
//! # Mapping
//!
//! - One store is one securestore project, named in its [`Config`] (socket, project, token: from the
//!   CLI's environment variables, from keyring's string-map configuration, or built in code).
//! - keyring's service becomes the `keychainService` and keyring's user the item key, each kept as
//!   it is when securestore accepts it, else escaped reversibly (`alice@example.com` →
//!   `_kr_alice_40example.com`); see [`names`].
//! - A secret's bytes are stored as their text when they are UTF-8, else tagged base64; see
//!   [`value`]. So passwords look the same to the `securestore` CLI and to Expo apps.
//! - Errors: absent item → `NoEntry`; daemon unreachable, refusing the token, or shutting down →
//!   `NoStorageAccess`; value over the daemon's limit → `Invalid("secret", ..)`; a name too long
//!   after mapping → `TooLong`; a stored value tagged as binary but not base64 → `BadDataFormat`;
//!   anything else from the daemon → `PlatformFailure`. See [`error`].
//!
//! # Where it differs from other keyring stores
//!
//! - No ambiguity: securestore holds one item per `<keychainService, key>`, so `Ambiguous` never
//!   happens, and every entry is both a specifier and a wrapper (`get_credential` answers
//!   `Ok(None)`, the entry itself).
//! - Attributes: `get_attributes` reports `keychain-service`, `key` and `accessible`; only
//!   `accessible` (Expo's `keychainAccessible` class, which the daemon stores with each item) can be
//!   updated or given as a `build` modifier. There are no labels, comments or creation times.
//! - Search: by `service` and/or `user` (exact), listing the project's keys; keys written by other
//!   clients that no keyring name maps to are not reported.
//! - Empty services and users work (they map to `_kr_`), but a user or service that needs escaping
//!   can be at most about a third of securestore's length limits (1024-byte keys, 255-byte services).
//! - Blocking: each call is a round trip to the daemon. Called from inside a Tokio runtime, the call
//!   runs on a short-lived thread (the blocking client cannot run inside another runtime).
//! - A lost connection (daemon restarted) is reopened and the call made once more; every call this
//!   store makes is idempotent.
#![forbid(unsafe_code)]

pub mod config;
mod credential;
pub mod error;
pub mod names;
mod store;
#[cfg(feature = "keyring-v3")]
pub mod v3;
pub mod value;

pub use config::Config;
pub use credential::Cred;
pub use store::{MODIFIERS, SEARCH_KEYS, Store};
