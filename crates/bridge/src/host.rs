//! [`HostHandle`]: the daemon started inside the binding's process, with the same start-up as
//! `securestored` (socket, data-folder lock, backend, registry).

use std::path::{Path, PathBuf};
use std::time::Duration;

use securestore_backends::Backend;
use securestore_client::Error;
use securestore_daemon::backend::{self, BackendKind, BackendPaths};
use securestore_daemon::{Config, Host, HostConfig, Policy};
use securestore_proto::handshake::{self, AdminAnswer, AdminRequest, Hello, HelloReply};
use securestore_proto::limits::MAX_VALUE_BYTES_CEILING;
use securestore_proto::{DeviceSignal, DeviceStatus, SecretString};

use crate::{BridgeError, ErrorCode, runtime};

/// How long a device signal may take. Generous: removing the passcode deletes every
/// `WHEN_PASSCODE_SET_THIS_DEVICE_ONLY` item, and the first unlock with a secret wraps keys again.
const DEVICE_SIGNAL_TIMEOUT: Duration = Duration::from_secs(60);

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
    /// The device state at start. [`DeviceStatus::UNLOCKED`] keeps every class available, as before
    /// device states existed; an app that signals its lock callbacks starts from
    /// [`DeviceStatus::BEFORE_FIRST_UNLOCK`] (or what it knows) and calls [`HostHandle::unlock`]
    /// and the others as the device changes.
    pub device: DeviceStatus,
}

impl HostOptions {
    /// Everything kept under one private `folder`: the socket at `run/securestored.sock`, the
    /// data in `data/`, the master key at `state/master.key`; the SQLite backend, the daemon's
    /// value limit, the open policy and an unlocked device. Change a field with struct update
    /// syntax (`HostOptions { policy, ..HostOptions::under(folder) }`).
    pub fn under(folder: &Path) -> Self {
        Self {
            socket: folder.join("run/securestored.sock"),
            data_dir: folder.join("data"),
            key_file: folder.join("state/master.key"),
            backend: BackendKind::Sqlite,
            max_value_bytes: None,
            policy: Policy::Open,
            device: DeviceStatus::UNLOCKED,
        }
    }
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
            device: options.device,
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

    /// The device was locked: `WHEN_UNLOCKED*` items answer [`ErrorCode::Locked`] until
    /// [`HostHandle::unlock`]. Returns the state it led to.
    ///
    /// # Errors
    /// [`ErrorCode::Storage`]; [`ErrorCode::Unreachable`] once the host has stopped.
    pub fn lock(&self) -> Result<DeviceStatus, BridgeError> {
        self.signal(DeviceSignal::Lock)
    }

    /// The device was unlocked. `secret` is the host's unlock secret, if it has one: the first one
    /// given binds the keys of the classes that need an unlocked device, and every later unlock must
    /// give the same one.
    ///
    /// # Errors
    /// [`ErrorCode::Refused`] for a wrong or missing secret (the state does not change);
    /// [`ErrorCode::Storage`]; [`ErrorCode::Unreachable`] once the host has stopped.
    pub fn unlock(&self, secret: Option<SecretString>) -> Result<DeviceStatus, BridgeError> {
        self.signal(DeviceSignal::Unlock { secret })
    }

    /// The user set a passcode: `WHEN_PASSCODE_SET_THIS_DEVICE_ONLY` items may be stored.
    ///
    /// # Errors
    /// As [`HostHandle::lock`].
    pub fn passcode_set(&self) -> Result<DeviceStatus, BridgeError> {
        self.signal(DeviceSignal::PasscodeSet)
    }

    /// The user removed the passcode: every `WHEN_PASSCODE_SET_THIS_DEVICE_ONLY` item of every
    /// project is deleted, as the Keychain does.
    ///
    /// # Errors
    /// As [`HostHandle::lock`].
    pub fn passcode_removed(&self) -> Result<DeviceStatus, BridgeError> {
        self.signal(DeviceSignal::PasscodeRemoved)
    }

    /// The device state the host last received.
    ///
    /// # Errors
    /// [`ErrorCode::Unreachable`] once the host has stopped.
    pub fn device_status(&self) -> Result<DeviceStatus, BridgeError> {
        self.device_request(AdminRequest::DeviceStatus)
    }

    fn signal(&self, signal: DeviceSignal) -> Result<DeviceStatus, BridgeError> {
        self.device_request(AdminRequest::Device(signal))
    }

    /// Sends one device request to the daemon over an in-process pipe: the same handshake and the
    /// same rules as `securestore device …` on the socket (this process is the daemon's own uid),
    /// and the signal is ordered with the writes before and after it by the storage owner.
    fn device_request(&self, request: AdminRequest) -> Result<DeviceStatus, BridgeError> {
        let lost =
            |err: std::io::Error| BridgeError::from(Error::Disconnected(Some(Box::new(err))));
        let answer = runtime().block_on(async {
            let exchange = async {
                let stream =
                    self.host.open_stream().await.map_err(|err| {
                        BridgeError::new(ErrorCode::Unreachable, format!("{err:#}"))
                    })?;
                let mut frames = handshake::frames(stream);
                handshake::send(&mut frames, &Hello::admin(request))
                    .await
                    .map_err(lost)?;
                handshake::allow_admin_answer(&mut frames);
                handshake::recv::<_, HelloReply>(&mut frames)
                    .await
                    .map_err(lost)
            };
            tokio::time::timeout(DEVICE_SIGNAL_TIMEOUT, exchange)
                .await
                .map_err(|_| BridgeError::from(Error::TimedOut))?
        })?;
        match answer {
            HelloReply::Admin(AdminAnswer::Device(status)) => Ok(status),
            HelloReply::Rejected(refusal) => Err(refusal.into()),
            HelloReply::Admin(_) | HelloReply::Accepted(_) => Err(BridgeError::new(
                ErrorCode::Internal,
                "the daemon answered a device request with something else",
            )),
        }
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
