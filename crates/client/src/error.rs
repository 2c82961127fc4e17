//! [`Error`]: transport failures kept apart from the daemon's answers.

use std::path::PathBuf;

use securestore_proto::ServiceError;
use securestore_proto::tarpc::client::RpcError;

/// Why a call failed.
///
/// [`Error::Service`] is an answer: the daemon (or this client, checking the same rule first) turned the
/// request down, and the connection is still good. Every other variant is a transport failure: the
/// request may not have reached the daemon, or its answer may not have come back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No daemon could be reached at the socket: no such file, nobody listening, or no permission.
    #[error("cannot reach the daemon at {}: {source}", path.display())]
    Unreachable {
        /// The socket path tried.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The process listening at the socket runs as another user: it may be an impostor that created
    /// the socket path first. Nothing was sent to it. Name a system-wide daemon's uid in
    /// [`crate::ConnectOptions::expected_daemon_uid`].
    #[error(
        "refusing the daemon at {}: it runs as uid {uid}, not uid {expected} or root; nothing was sent (another user may have created that socket; a system-wide daemon's uid can be named with --daemon-uid or SECURESTORE_DAEMON_UID)",
        path.display()
    )]
    UntrustedDaemon {
        /// The socket path.
        path: PathBuf,
        /// The uid the kernel reports for the listening process.
        uid: u32,
        /// The uid it had to be (besides root).
        expected: u32,
    },
    /// The connection broke before the answer arrived; a write may or may not have been applied.
    #[error("the connection to the daemon was lost")]
    Disconnected(#[source] Option<Box<dyn std::error::Error + Send + Sync>>),
    /// No answer within the client's timeout; a write may or may not have been applied.
    #[error("the daemon did not answer in time")]
    TimedOut,
    /// The daemon declined to run the request, e.g. too many requests under way on this connection.
    #[error("the daemon did not run the request: {0}")]
    Busy(String),
    /// The other end sent something this client cannot understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The daemon speaks an older protocol version that lacks this call; nothing was sent.
    #[error(
        "the daemon does not support {call}; upgrade it (it speaks protocol {daemon}, {call} needs {needs})"
    )]
    Unsupported {
        /// The call, as this client names it.
        call: &'static str,
        /// The version the daemon accepted the connection in.
        daemon: u16,
        /// The version that added the call.
        needs: u16,
    },
    /// The daemon's answer: invalid input, refused, or a storage failure.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

impl Error {
    /// Whether this is a transport failure rather than an answer from the daemon.
    pub fn is_transport(&self) -> bool {
        !matches!(self, Self::Service(_))
    }
}

impl From<RpcError> for Error {
    fn from(err: RpcError) -> Self {
        match err {
            RpcError::DeadlineExceeded => Self::TimedOut,
            RpcError::Shutdown => Self::Disconnected(None),
            RpcError::Send(source) => Self::Disconnected(Some(source)),
            RpcError::Channel(source) => Self::Disconnected(Some(Box::new(source))),
            RpcError::Server(server) => Self::Busy(server.detail),
        }
    }
}
