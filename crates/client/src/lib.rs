//! Clients of the securestore daemon: an async [`Client`] and a [`blocking::Client`] for synchronous
//! callers, with Expo SecureStore's three calls.
//!
//! A client is bound to one project when it connects; every call then acts inside that project only.
//!
//! ```no_run
//! use securestore_client::{Client, GetOptions, SetOptions};
//!
//! # async fn demo() -> Result<(), securestore_client::Error> {
//! let client = Client::connect(securestore_client::default_socket_path(), "@acme/wallet").await?;
//! client.set_item("refresh_token", "s3cr3t", SetOptions::default()).await?;
//! let token = client.get_item("refresh_token", GetOptions::default()).await?;
//! assert_eq!(token.as_ref().map(|t| t.expose_secret()), Some("s3cr3t"));
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod admin;
pub mod backup;
pub mod blocking;
mod client;
mod error;
mod exchange;

pub use client::{Client, ConnectOptions};
pub use error::Error;
pub use securestore_proto::paths::{SOCKET_ENV, default_socket_path};
pub use securestore_proto::{
    BatchOp, ChangeEvent, ChangeKind, DEFAULT_SERVICE, DeleteOptions, DeviceSignal, DeviceStatus,
    Events, ExportedItem, GetOptions, ImportReport, Item, KeychainAccessible, Lagged, LockState,
    Page, SecretString, ServiceError, SetOptions, WatchFilter,
};
