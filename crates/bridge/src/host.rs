//! [`HostHandle`]: the daemon started inside the binding's process, with the same start-up as
//! `securestored` (socket, data-folder lock, backend, registry).

use std::path::PathBuf;
use std::time::Duration;

use securestore_backends::Backend;
use securestore_daemon::backend::{self, BackendKind, BackendPaths};
use securestore_daemon::{Config, Host, HostConfig, Policy};
use securestore_proto::SecretString;
use securestore_proto::limits::MAX_VALUE_BYTES_CEILING;

use crate::{BridgeError, ErrorCode};

/// Opens the backend on the host's thread, after the socket and data folder are locked. The JNI
/// binding passes one that uses the JVM it runs in.
pub type OpenBackend =
    Box<dyn FnOnce(&BackendPaths) -> anyhow::Result<Box<dyn Backend>> + Send + 'static>;

/// What a host serves and where it keeps its data.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The Unix socket other processes connect to; its folder must be private (0700).
    pub socket: PathBuf,
    /// The data folder: database, registry, lock file.
    pub data_dir: PathBuf,
    /// The master key file (SQLite backend), kept apart from the data folder.
    pub key_file: PathBuf,
    /// `sqlite` or `android`.
    pub backend: BackendKind,
    /// Largest value accepted, in bytes; `None` keeps the daemon's default.
    pub max_value_bytes: Option<u32>,
    /// Which projects peers may open.
    pub policy: Policy,
}

/// The daemon running in this process.
#[derive(Debug)]
pub struct HostHandle {
    host: Host,
}

impl HostHandle {
    /// Starts the daemon on its own thread; `open_backend` replaces the standard opener for
    /// `options.backend` (see [`OpenBackend`]).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for a value limit out of range; [`ErrorCode::HostFailed`] when
    /// the socket or data folder is in use (by this or another process) or the store will not open.
    pub fn start(
        options: HostOptions,
        open_backend: Option<OpenBackend>,
    ) -> Result<Self, BridgeError> {
        let mut config = Config {
            policy: options.policy,
            ..Config::default()
        };
        if let Some(limit) = options.max_value_bytes {
            if limit == 0 || limit > MAX_VALUE_BYTES_CEILING {
                return Err(BridgeError::invalid_argument(format!(
                    "maxValueBytes must be between 1 and {MAX_VALUE_BYTES_CEILING}, not {limit}"
                )));
            }
            config.max_value_bytes = limit;
        }
        // A host inside an app is stopped by the app; a short drain keeps `stop` prompt.
        config.drain_timeout = Duration::from_secs(2);
        let kind = options.backend;
        let open: OpenBackend = match open_backend {
            Some(open) => open,
            None => Box::new(move |paths: &BackendPaths| backend::open(kind, paths)),
        };
        let host = Host::start(
            HostConfig {
                socket: options.socket,
                paths: BackendPaths {
                    data_dir: options.data_dir,
                    key_file: options.key_file,
                },
                config,
            },
            open,
        )
        .map_err(|err| BridgeError::new(ErrorCode::HostFailed, format!("{err:#}")))?;
        Ok(Self { host })
    }

    pub(crate) fn host(&self) -> &Host {
        &self.host
    }

    /// The socket the host serves.
    pub fn socket(&self) -> &std::path::Path {
        self.host.socket()
    }

    /// Registers `project` and returns its new access token (shown this once).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidProject`]; [`ErrorCode::Refused`] if it is already registered;
    /// [`ErrorCode::Storage`] if the registry cannot be saved.
    pub fn register_project(&self, project: &str) -> Result<SecretString, BridgeError> {
        Ok(self.host.registry().add(project)?)
    }

    /// Stops serving, drains, closes the store and removes the socket.
    ///
    /// # Errors
    /// [`ErrorCode::HostFailed`] if the daemon failed while serving.
    pub fn stop(self) -> Result<(), BridgeError> {
        self.host
            .stop()
            .map_err(|err| BridgeError::new(ErrorCode::HostFailed, format!("{err:#}")))
    }
}
