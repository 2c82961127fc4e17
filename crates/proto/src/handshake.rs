//! The handshake that opens every connection, and the transports built after it.
//!
//! The client sends one [`Hello`] naming its [`Purpose`]; the daemon answers one [`HelloReply`].
//!
//! - [`Purpose::Project`] binds the connection to one project, with the project's access token when it
//!   has one. Only after an [`Accepted`] reply do tarpc messages flow, on the same socket, with the frame
//!   limit the daemon announced. The binding lives in the daemon's connection state for the
//!   connection's whole life.
//! - [`Purpose::Admin`] carries one [`AdminRequest`] on the project registry; the daemon answers with
//!   [`HelloReply::Admin`] and closes the connection.

use std::io;
use std::time::Instant;

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tarpc::{ClientMessage, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::codec::{self, Codec};
use crate::limits::{MAX_ADMIN_FRAME, MAX_HANDSHAKE_FRAME, MAX_REQUEST_DEADLINE, max_frame_len};
use crate::{SecretString, SecureStoreRequest, SecureStoreResponse, ServiceError};

/// The newest protocol version this crate speaks. Bumped whenever calls are added (appended) to the
/// service, or any wire type changes; see `docs/protocol.md` for the compatibility rule.
///
/// - 1: Expo's three calls.
/// - 2: contains, list_keys, list_services, clear, clear_all, set_if, delete_if, write_batch, and
///   the [`ServiceError`] variants `Conflict`, `InBatch` and `TooLarge`.
pub const PROTOCOL_VERSION: u16 = 3;

/// The oldest protocol version the daemon still serves.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

/// The version a daemon speaking [`PROTOCOL_VERSION`] uses with a client that sent `client`: the
/// lower of the two, or `None` if the client is older than [`MIN_PROTOCOL_VERSION`]. A newer client
/// is served in this daemon's version; that client then sends only the calls this version has.
pub fn negotiate(client: u16) -> Option<u16> {
    (client >= MIN_PROTOCOL_VERSION).then(|| client.min(PROTOCOL_VERSION))
}

/// The client's first message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the client.
    pub protocol_version: u16,
    /// What the connection is for.
    pub purpose: Purpose,
}

impl Hello {
    /// A hello that binds the connection to `project`, presenting `token` if the project has one.
    pub fn project(project: impl Into<String>, token: Option<SecretString>) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            purpose: Purpose::Project {
                project: project.into(),
                token,
            },
        }
    }

    /// A hello that carries one registry request.
    pub fn admin(request: AdminRequest) -> Self {
        Self {
            protocol_version: PROTOCOL_VERSION,
            purpose: Purpose::Admin(request),
        }
    }
}

/// What a connection is for, fixed for its whole life.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Purpose {
    /// Serve Expo's calls for one project.
    Project {
        /// The project, checked with [`crate::ProjectId::parse`].
        project: String,
        /// The project's access token, required when the project is registered.
        token: Option<SecretString>,
    },
    /// One request on the project registry.
    Admin(AdminRequest),
}

/// A request on the daemon's project registry. Only the daemon's own uid or root may send one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Register a project and issue its access token.
    AddProject {
        /// The project id.
        project: String,
    },
    /// Unregister a project and delete all of its items. A registered project's own token is
    /// required, so one project's process cannot wipe another's items; none is needed to finish a
    /// removal a crash interrupted, or to delete an unregistered project's items (in every policy).
    RemoveProject {
        /// The project id.
        project: String,
        /// The project's access token (required if it is registered).
        token: Option<SecretString>,
    },
    /// The ids of all registered projects.
    ListProjects,
    /// The way out of a lost [`AdminRequest::AddProject`] answer: revoke the project's token, if it
    /// has one, and issue a new one (answered with [`AdminAnswer::Added`]). No token is needed, which
    /// is the point; the daemon takes it only from its own uid or root, like every registry request.
    /// Connections opened with the old token are refused from then on. (Appended last: the wire
    /// numbers variants by position.)
    ReplaceProject {
        /// The project id.
        project: String,
        /// Delete the project's items too (`true`), or keep them for the new token (`false`).
        wipe: bool,
    },
    /// A change of device state from the host (answered with [`AdminAnswer::Device`]). (Protocol
    /// version 3, like the two below.)
    Device(crate::DeviceSignal),
    /// The current device state (answered with [`AdminAnswer::Device`]).
    DeviceStatus,
    /// Replace the master key: the data keys are wrapped again under a new one, and the old one is
    /// destroyed once nothing needs it (answered with [`AdminAnswer::Rotated`]).
    RotateKey,
}

/// The daemon's answer to an [`AdminRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum AdminAnswer {
    /// The project is registered; this is its token, shown this once.
    Added {
        /// The new access token.
        token: SecretString,
    },
    /// The project is gone, with its items.
    Removed {
        /// Whether it was registered.
        existed: bool,
    },
    /// The registered project ids, sorted.
    Projects(Vec<String>),
    /// The device state, after the signal if the request was one.
    Device(crate::DeviceStatus),
    /// The master key was replaced.
    Rotated,
}

/// The daemon's answer to a [`Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum HelloReply {
    /// The connection is bound to the project; requests may follow.
    Accepted(Accepted),
    /// The connection is refused and will be closed.
    Rejected(ServiceError),
    /// The answer to an [`AdminRequest`]; the connection closes after it.
    Admin(AdminAnswer),
}

/// What a client learns when its connection is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The version both ends speak on this connection: the lower of the client's and the daemon's
    /// (see [`negotiate`]). A client sends no call newer than this.
    pub protocol_version: u16,
    /// The daemon's value size limit, in bytes; also fixes the frame limit ([`max_frame_len`]).
    pub max_value_bytes: u32,
}

/// A socket split into length-prefixed frames (u32, big-endian), at first limited to handshake size.
pub type Frames<S> = Framed<S, LengthDelimitedCodec>;

/// The tarpc transport a client uses after the handshake.
pub type ClientTransport<S> = tarpc::serde_transport::Transport<
    S,
    Response<SecureStoreResponse>,
    ClientMessage<SecureStoreRequest>,
    Codec<Response<SecureStoreResponse>, ClientMessage<SecureStoreRequest>>,
>;

/// The tarpc transport the daemon serves after the handshake.
pub type ServerTransport<S> = tarpc::serde_transport::Transport<
    S,
    ClientMessage<SecureStoreRequest>,
    Response<SecureStoreResponse>,
    Codec<ClientMessage<SecureStoreRequest>, Response<SecureStoreResponse>>,
>;

/// Wraps a fresh connection in frames no larger than [`MAX_HANDSHAKE_FRAME`].
pub fn frames<S: AsyncRead + AsyncWrite>(stream: S) -> Frames<S> {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(MAX_HANDSHAKE_FRAME)
        .new_framed(stream)
}

/// Sends one handshake message.
///
/// # Errors
/// The socket's error, or [`io::ErrorKind::InvalidData`] if the message is over the handshake limit.
pub async fn send<S, T>(frames: &mut Frames<S>, message: &T) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: Serialize,
{
    let limit = frames.codec().max_frame_length();
    let bytes = codec::encode(message, limit)?;
    frames.send(bytes::Bytes::from(bytes)).await
}

/// Raises the frame limit to [`MAX_ADMIN_FRAME`], for the one admin answer (a project list can be
/// larger than a handshake frame). The daemon calls it before sending, the client before receiving.
pub fn allow_admin_answer<S>(frames: &mut Frames<S>) {
    frames.codec_mut().set_max_frame_length(MAX_ADMIN_FRAME);
}

/// Receives one handshake message.
///
/// # Errors
/// [`io::ErrorKind::UnexpectedEof`] if the peer closed first; [`io::ErrorKind::InvalidData`] for an
/// oversized or malformed frame; otherwise the socket's error.
pub async fn recv<S, T>(frames: &mut Frames<S>) -> io::Result<T>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: DeserializeOwned,
{
    let limit = frames.codec().max_frame_length();
    match frames.next().await {
        Some(frame) => codec::decode(&frame?, limit),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer closed the connection during the handshake",
        )),
    }
}

/// Receives the client's [`Hello`]. A hello that is well formed except that a project id or token is
/// not UTF-8 becomes `Ok(Err(refusal))`, so the daemon can answer it rather than close in silence.
///
/// # Errors
/// As [`recv`], for anything else that is not a hello.
pub async fn recv_hello<S>(frames: &mut Frames<S>) -> io::Result<Result<Hello, ServiceError>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let limit = frames.codec().max_frame_length();
    let frame = match frames.next().await {
        Some(frame) => frame?,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed the connection during the handshake",
            ));
        }
    };
    match codec::decode::<Hello>(&frame, limit) {
        Ok(hello) => Ok(Ok(hello)),
        Err(err) => match codec::decode::<RawHello>(&frame, limit) {
            Ok(raw) => Ok(Err(raw.refusal())),
            Err(_) => Err(err),
        },
    }
}

/// A [`Hello`] with every text field as raw bytes: bincode lays out a `String` and a `Vec<u8>` alike,
/// so a hello that failed to decode only because of bad UTF-8 decodes as this.
#[derive(Deserialize)]
struct RawHello {
    #[allow(dead_code)] // Read only to keep the layout.
    protocol_version: u16,
    purpose: RawPurpose,
}

// The tokens are read only to keep the layout.
#[allow(dead_code)]
#[derive(Deserialize)]
enum RawPurpose {
    Project {
        project: Vec<u8>,
        token: Option<Vec<u8>>,
    },
    Admin(RawAdminRequest),
}

#[allow(dead_code)]
#[derive(Deserialize)]
enum RawAdminRequest {
    AddProject {
        project: Vec<u8>,
    },
    RemoveProject {
        project: Vec<u8>,
        token: Option<Vec<u8>>,
    },
    ListProjects,
}

impl RawHello {
    fn refusal(self) -> ServiceError {
        let project = match self.purpose {
            RawPurpose::Project { project, .. }
            | RawPurpose::Admin(RawAdminRequest::AddProject { project })
            | RawPurpose::Admin(RawAdminRequest::RemoveProject { project, .. }) => project,
            RawPurpose::Admin(RawAdminRequest::ListProjects) => Vec::new(),
        };
        if std::str::from_utf8(&project).is_err() {
            ServiceError::InvalidProject {
                reason: format!(
                    "'{}' is not valid UTF-8",
                    String::from_utf8_lossy(&project).escape_debug()
                ),
            }
        } else {
            ServiceError::Refused {
                reason: "the access token is not valid UTF-8".to_owned(),
            }
        }
    }
}

/// Raises the frame limit to the one `max_value_bytes` implies and wraps the frames for tarpc.
fn into_transport<S, Item, SinkItem>(
    mut frames: Frames<S>,
    max_value_bytes: u32,
    on_decode: fn(&mut Item),
) -> tarpc::serde_transport::Transport<S, Item, SinkItem, Codec<Item, SinkItem>>
where
    S: AsyncRead + AsyncWrite,
    Item: DeserializeOwned,
    SinkItem: Serialize,
{
    let limit = max_frame_len(max_value_bytes);
    frames.codec_mut().set_max_frame_length(limit);
    tarpc::serde_transport::new(frames, Codec::with_decode_hook(limit, on_decode))
}

/// Caps a request's deadline at [`MAX_REQUEST_DEADLINE`] from now, so no client can make the daemon
/// keep a request alive for longer.
pub fn clamp_deadline(message: &mut ClientMessage<SecureStoreRequest>) {
    if let ClientMessage::Request(request) = message {
        let latest = Instant::now() + MAX_REQUEST_DEADLINE;
        if request.context.deadline > latest {
            request.context.deadline = latest;
        }
    }
}

/// The client's transport once the daemon has [`Accepted`] it.
pub fn client_transport<S: AsyncRead + AsyncWrite>(
    frames: Frames<S>,
    accepted: Accepted,
) -> ClientTransport<S> {
    into_transport(frames, accepted.max_value_bytes, |_| {})
}

/// The daemon's transport once it has accepted a client, with its own value limit. Every request's
/// deadline passes through [`clamp_deadline`] as it is decoded.
pub fn server_transport<S: AsyncRead + AsyncWrite>(
    frames: Frames<S>,
    max_value_bytes: u32,
) -> ServerTransport<S> {
    into_transport(frames, max_value_bytes, clamp_deadline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::SinkExt;

    #[tokio::test]
    async fn a_hello_with_a_non_utf8_project_is_answered_not_dropped() {
        let mut bytes = codec::encode(&Hello::project("@o/abc", None), 4096).expect("encode");
        let at = bytes
            .windows(3)
            .position(|w| w == b"abc")
            .expect("the id is in the frame");
        bytes[at] = 0xff;
        let (client, server) = tokio::io::duplex(4096);
        let mut client = frames(client);
        let mut server = frames(server);
        client.send(bytes::Bytes::from(bytes)).await.expect("send");
        let refusal = recv_hello(&mut server)
            .await
            .expect("a frame")
            .expect_err("refused");
        assert!(
            matches!(refusal, ServiceError::InvalidProject { .. }),
            "{refusal:?}"
        );

        client
            .send(bytes::Bytes::from_static(&[9, 9]))
            .await
            .expect("send");
        assert!(
            recv_hello(&mut server).await.is_err(),
            "garbage stays an error"
        );
    }
}
