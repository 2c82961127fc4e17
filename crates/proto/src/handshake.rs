//! The handshake that opens every connection, and the transports built after it.
//!
//! The client sends one [`Hello`] naming its project; the daemon answers one [`HelloReply`]. Only after
//! an [`Accepted`] reply do tarpc messages flow, on the same socket, with the frame limit the daemon
//! announced. The binding lives in the daemon's connection state for the connection's whole life.

use std::io;

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tarpc::{ClientMessage, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::codec::{self, Codec};
use crate::limits::{MAX_HANDSHAKE_FRAME, max_frame_len};
use crate::{SecureStoreRequest, SecureStoreResponse, ServiceError};

/// The protocol version this crate speaks. Bumped on any incompatible change to a wire type.
pub const PROTOCOL_VERSION: u16 = 1;

/// The client's first message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the client.
    pub protocol_version: u16,
    /// The project this connection acts for, checked with [`crate::ProjectId::parse`].
    pub project: String,
}

/// The daemon's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// The connection is bound to the project; requests may follow.
    Accepted(Accepted),
    /// The connection is refused and will be closed.
    Rejected(ServiceError),
}

/// What a client learns when its connection is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// [`PROTOCOL_VERSION`] of the daemon.
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
    let bytes = codec::encode(message, MAX_HANDSHAKE_FRAME)?;
    frames.send(bytes::Bytes::from(bytes)).await
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
    match frames.next().await {
        Some(frame) => codec::decode(&frame?, MAX_HANDSHAKE_FRAME),
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the peer closed the connection during the handshake",
        )),
    }
}

/// Raises the frame limit to the one `max_value_bytes` implies and wraps the frames for tarpc.
fn into_transport<S, Item, SinkItem>(
    mut frames: Frames<S>,
    max_value_bytes: u32,
) -> tarpc::serde_transport::Transport<S, Item, SinkItem, Codec<Item, SinkItem>>
where
    S: AsyncRead + AsyncWrite,
    Item: DeserializeOwned,
    SinkItem: Serialize,
{
    let limit = max_frame_len(max_value_bytes);
    frames.codec_mut().set_max_frame_length(limit);
    tarpc::serde_transport::new(frames, Codec::new(limit))
}

/// The client's transport once the daemon has [`Accepted`] it.
pub fn client_transport<S: AsyncRead + AsyncWrite>(
    frames: Frames<S>,
    accepted: Accepted,
) -> ClientTransport<S> {
    into_transport(frames, accepted.max_value_bytes)
}

/// The daemon's transport once it has accepted a client, with its own value limit.
pub fn server_transport<S: AsyncRead + AsyncWrite>(
    frames: Frames<S>,
    max_value_bytes: u32,
) -> ServerTransport<S> {
    into_transport(frames, max_value_bytes)
}
