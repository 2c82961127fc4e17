//! The project registry, from a host process or the `securestore project` commands.
//!
//! Each call opens its own connection, sends one request and reads one answer, within
//! [`ConnectOptions::timeout`]. The daemon accepts them only from its own uid or root, and, as for
//! every connection, the client first checks that the daemon runs as the expected uid or root
//! ([`ConnectOptions::expected_daemon_uid`]).

use std::path::Path;

use securestore_proto::handshake::{AdminAnswer, AdminRequest, Hello, HelloReply};
use securestore_proto::{DeviceSignal, DeviceStatus, ProjectId, SecretString};

use crate::client::greet;
use crate::{ConnectOptions, Error};

async fn ask(
    socket: &Path,
    request: AdminRequest,
    options: &ConnectOptions,
) -> Result<AdminAnswer, Error> {
    let hello = Hello::admin(request);
    let greeting = tokio::time::timeout(
        options.timeout,
        greet(socket, &hello, options.expected_daemon_uid),
    );
    match greeting.await.map_err(|_| Error::TimedOut)??.0 {
        HelloReply::Admin(answer) => Ok(answer),
        HelloReply::Rejected(refusal) => Err(Error::Service(refusal)),
        HelloReply::Accepted(_) => Err(Error::Protocol(
            "a project answer to a registry request".to_owned(),
        )),
    }
}

fn unexpected(answer: &AdminAnswer) -> Error {
    let kind = match answer {
        AdminAnswer::Added { .. } => "added",
        AdminAnswer::Removed { .. } => "removed",
        AdminAnswer::Projects(_) => "projects",
        AdminAnswer::Device(_) => "device",
        AdminAnswer::Rotated => "rotated",
    };
    Error::Protocol(format!("unexpected registry answer '{kind}'"))
}

/// Registers `project` and returns its access token. The daemon keeps only a hash: this is the one
/// time the token can be read, so hand it to the project's processes now (e.g. in a 0600 file).
///
/// # Errors
/// [`securestore_proto::ServiceError::AlreadyRegistered`] if it is registered already;
/// [`securestore_proto::ServiceError::InvalidProject`]; transport failures.
pub async fn add_project(
    socket: impl AsRef<Path>,
    project: &str,
    options: &ConnectOptions,
) -> Result<SecretString, Error> {
    ProjectId::parse(project)?;
    let request = AdminRequest::AddProject {
        project: project.to_owned(),
    };
    match ask(socket.as_ref(), request, options).await? {
        AdminAnswer::Added { token } => Ok(token),
        other => Err(unexpected(&other)),
    }
}

/// Revokes `project`'s access token (if it has one) and issues a new one, for when the answer to
/// [`add_project`] was lost: no token is needed. With `wipe`, the project's items are deleted too;
/// without it, they stay and the new token reads them. Connections opened with the old token are
/// refused from then on. The daemon accepts this only from its own uid or root.
///
/// # Errors
/// [`securestore_proto::ServiceError::InvalidProject`]; storage and transport failures.
pub async fn replace_project(
    socket: impl AsRef<Path>,
    project: &str,
    wipe: bool,
    options: &ConnectOptions,
) -> Result<SecretString, Error> {
    ProjectId::parse(project)?;
    let request = AdminRequest::ReplaceProject {
        project: project.to_owned(),
        wipe,
    };
    match ask(socket.as_ref(), request, options).await? {
        AdminAnswer::Added { token } => Ok(token),
        other => Err(unexpected(&other)),
    }
}

/// Unregisters `project` and deletes all of its items; returns whether it was registered. A
/// registered project's own token must be in `options.token`.
///
/// # Errors
/// [`securestore_proto::ServiceError::Refused`] without the project's token;
/// [`securestore_proto::ServiceError::InvalidProject`]; storage and transport failures.
pub async fn remove_project(
    socket: impl AsRef<Path>,
    project: &str,
    options: &ConnectOptions,
) -> Result<bool, Error> {
    ProjectId::parse(project)?;
    let request = AdminRequest::RemoveProject {
        project: project.to_owned(),
        token: options.token.clone(),
    };
    match ask(socket.as_ref(), request, options).await? {
        AdminAnswer::Removed { existed } => Ok(existed),
        other => Err(unexpected(&other)),
    }
}

/// The registered project ids, sorted.
///
/// # Errors
/// Transport failures, or a refusal.
pub async fn list_projects(
    socket: impl AsRef<Path>,
    options: &ConnectOptions,
) -> Result<Vec<String>, Error> {
    match ask(socket.as_ref(), AdminRequest::ListProjects, options).await? {
        AdminAnswer::Projects(projects) => Ok(projects),
        other => Err(unexpected(&other)),
    }
}

/// Longest unlock secret: it travels in the handshake frame (4 KiB). A host secret is a derived
/// key, a few dozen bytes.
pub const MAX_UNLOCK_SECRET_BYTES: usize = 1024;

/// Signals a change of device state (the host's lock callbacks, or `securestore device …`); returns
/// the state it led to. Taken in order with the writes before and after it. Only the daemon's own
/// uid or root may send one.
///
/// # Errors
/// [`securestore_proto::ServiceError::Refused`] for a wrong or missing unlock secret (the state
/// does not change); storage and transport failures.
pub async fn device_signal(
    socket: impl AsRef<Path>,
    signal: DeviceSignal,
    options: &ConnectOptions,
) -> Result<DeviceStatus, Error> {
    if let DeviceSignal::Unlock {
        secret: Some(secret),
    } = &signal
        && secret.len() > MAX_UNLOCK_SECRET_BYTES
    {
        return Err(Error::Service(securestore_proto::ServiceError::TooLarge {
            what: format!(
                "an unlock secret of {} bytes; the limit is {MAX_UNLOCK_SECRET_BYTES}",
                secret.len()
            ),
        }));
    }
    match ask(socket.as_ref(), AdminRequest::Device(signal), options).await? {
        AdminAnswer::Device(status) => Ok(status),
        other => Err(unexpected(&other)),
    }
}

/// The daemon's current device state.
///
/// # Errors
/// Transport failures, or a refusal.
pub async fn device_status(
    socket: impl AsRef<Path>,
    options: &ConnectOptions,
) -> Result<DeviceStatus, Error> {
    match ask(socket.as_ref(), AdminRequest::DeviceStatus, options).await? {
        AdminAnswer::Device(status) => Ok(status),
        other => Err(unexpected(&other)),
    }
}

/// Replaces the daemon's master key (the default backend): the data keys are wrapped again under a
/// new key, and the old key is destroyed once nothing needs it. Crash-safe at every step.
///
/// # Errors
/// [`securestore_proto::ServiceError::Unsupported`] on a platform keystore backend; storage and
/// transport failures.
pub async fn rotate_key(socket: impl AsRef<Path>, options: &ConnectOptions) -> Result<(), Error> {
    match ask(socket.as_ref(), AdminRequest::RotateKey, options).await? {
        AdminAnswer::Rotated => Ok(()),
        other => Err(unexpected(&other)),
    }
}
