//! The wire contract between `securestored` and its clients.
//!
//! This crate owns everything both ends must agree on: the validated names ([`Key`], [`ServiceName`],
//! [`ProjectId`]), the option and answer types of Expo's SecureStore API, the handshake that binds a
//! connection to one project, the tarpc service definition, the one bincode codec, and the limits that
//! bound every frame. Only this crate derives serde for wire types.
#![forbid(unsafe_code)]

pub mod backup;
pub mod codec;
mod device;
mod error;
pub mod goodbye;
pub mod handshake;
pub mod limits;
mod names;
mod options;
pub mod order;
pub mod paths;
mod secret;
mod service;

pub use device::{Availability, DeviceSignal, DeviceStatus, LockState};
pub use error::ServiceError;
pub use names::{DEFAULT_SERVICE, Key, ProjectId, ServiceName};
pub use options::{DeleteOptions, GetOptions, Item, KeychainAccessible, SetOptions};
pub use secret::SecretString;
pub use service::{
    BatchOp, ChangeEvent, ChangeKind, Events, ExportPage, ExportedItem, ImportReport, ItemRef,
    Lagged, Page, SecureStore, SecureStoreClient, SecureStoreRequest, SecureStoreResponse,
    WatchFilter, version_of,
};

// Re-exported so that the daemon and the clients build transports from one tarpc version.
pub use tarpc;
