//! `securestored`: the one process that owns secure storage.
//!
//! Clients connect over a Unix socket, bind their connection to one project in a handshake, then send
//! Expo SecureStore's three calls over tarpc. All storage goes through one owner thread. The same
//! [`run`] function serves the `securestored` binary, the tests, and apps that embed the daemon as a
//! background task:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use securestore_backends::sqlite::{SqliteBackend, SqliteConfig};
//! use securestore_daemon::{Config, socket};
//!
//! let (listener, _socket) = socket::bind("/run/user/1000/securestore/securestored.sock".as_ref())?;
//! let backend = SqliteBackend::open(&SqliteConfig {
//!     data_dir: "/home/me/.local/share/securestore".into(),
//!     key_file: "/home/me/.local/state/securestore/master.key".into(),
//! })?;
//! let shutdown = async { tokio::signal::ctrl_c().await.ok(); };
//! securestore_daemon::run(listener, Box::new(backend), Config::default(), shutdown).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

pub mod backend;
mod budget;
mod changes;
mod config;
mod connection;
mod direct;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod handler;
mod harden;
mod host;
pub mod lock;
mod open_files;
mod panics;
mod registry;
mod requests;
mod server;
mod slots;
pub mod socket;
mod store;
mod watch;

pub use config::Config;
pub use direct::{Direct, Outcome};
pub use harden::harden_process;
pub use host::{Host, HostConfig};
pub use open_files::ensure_open_file_limit;
pub use registry::{MAX_REGISTRY_BYTES, Policy, REGISTRY_FILE, Registry};
pub use server::run;
