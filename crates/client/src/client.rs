//! The async [`Client`]: connect, handshake, then Expo's three calls.

use std::path::Path;
use std::time::{Duration, Instant};

use securestore_proto::handshake::{self, Frames, Hello, HelloReply, PROTOCOL_VERSION, Purpose};
use securestore_proto::limits::MAX_REQUEST_DEADLINE;
use securestore_proto::tarpc::{self, context};
use securestore_proto::{
    DeleteOptions, GetOptions, Item, Key, ProjectId, SecretString, SecureStoreClient, ServiceError,
    ServiceName, SetOptions,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;

use crate::Error;

/// How a [`Client`] connects and how long it waits.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Longest wait for the connection and handshake, and for each call's answer.
    pub timeout: Duration,
    /// The project's access token, required when the project is registered with the daemon.
    pub token: Option<SecretString>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            token: None,
        }
    }
}

/// A connection to the daemon, bound to one project. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    rpc: SecureStoreClient,
    project: ProjectId,
    max_value_bytes: u32,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("project", &self.project)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the daemon at `socket` and binds the connection to `project`.
    ///
    /// # Errors
    /// [`Error::Service`] with [`ServiceError::InvalidProject`] for a bad id (checked before
    /// connecting) or [`ServiceError::Refused`] when the daemon will not serve this peer;
    /// [`Error::Unreachable`] when nothing answers at `socket`; [`Error::TimedOut`].
    pub async fn connect(socket: impl AsRef<Path>, project: &str) -> Result<Self, Error> {
        Self::connect_with(socket, project, ConnectOptions::default()).await
    }

    /// As [`Client::connect`], with explicit options.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn connect_with(
        socket: impl AsRef<Path>,
        project: &str,
        options: ConnectOptions,
    ) -> Result<Self, Error> {
        let project = ProjectId::parse(project)?;
        let timeout = options.timeout;
        tokio::time::timeout(timeout, Self::open(socket.as_ref(), project, options))
            .await
            .map_err(|_| Error::TimedOut)?
    }

    /// Binds an already-connected `stream` to `project`, with the same handshake as
    /// [`Client::connect_with`]. This is how a process that hosts the daemon reaches it without a
    /// socket (`securestore_daemon::Host::open_stream`).
    ///
    /// There is no peer-credential check of the daemon here, unlike a socket connection: an
    /// in-process pipe has no credentials to read, and its other end is this very process. Pass only
    /// streams whose other end you trust to be the daemon.
    ///
    /// # Errors
    /// As [`Client::connect`], except [`Error::Unreachable`].
    pub async fn connect_stream<S>(
        stream: S,
        project: &str,
        options: ConnectOptions,
    ) -> Result<Self, Error>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let project = ProjectId::parse(project)?;
        let timeout = options.timeout;
        let bind = async move {
            let hello = Hello::project(project.as_str(), options.token.clone());
            let (reply, frames) = exchange(handshake::frames(stream), &hello).await?;
            Self::accept(reply, frames, project, options)
        };
        tokio::time::timeout(timeout, bind)
            .await
            .map_err(|_| Error::TimedOut)?
    }

    async fn open(
        socket: &Path,
        project: ProjectId,
        options: ConnectOptions,
    ) -> Result<Self, Error> {
        let hello = Hello::project(project.as_str(), options.token.clone());
        let (reply, frames) = greet(socket, &hello).await?;
        Self::accept(reply, frames, project, options)
    }

    /// Turns the daemon's reply to a project hello into a client on `frames`.
    fn accept<S>(
        reply: HelloReply,
        frames: Frames<S>,
        project: ProjectId,
        options: ConnectOptions,
    ) -> Result<Self, Error>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let accepted = match reply {
            HelloReply::Accepted(accepted) => accepted,
            HelloReply::Rejected(refusal) => return Err(Error::Service(refusal)),
            HelloReply::Admin(_) => {
                return Err(Error::Protocol(
                    "a registry answer to a project hello".to_owned(),
                ));
            }
        };
        if accepted.protocol_version != PROTOCOL_VERSION {
            return Err(Error::Protocol(format!(
                "the daemon speaks protocol {}, this client {PROTOCOL_VERSION}",
                accepted.protocol_version
            )));
        }
        let transport = handshake::client_transport(frames, accepted);
        let rpc = SecureStoreClient::new(tarpc::client::Config::default(), transport).spawn();
        Ok(Self {
            rpc,
            project,
            max_value_bytes: accepted.max_value_bytes,
            timeout: options.timeout,
        })
    }

    /// The project this client is bound to.
    pub fn project(&self) -> &str {
        self.project.as_str()
    }

    /// The daemon's value limit, in bytes, as announced when connecting.
    pub fn max_value_bytes(&self) -> u32 {
        self.max_value_bytes
    }

    fn context(&self) -> context::Context {
        let mut ctx = context::current();
        // The daemon clamps deadlines to this anyway; tarpc's own timers cannot hold much more.
        ctx.deadline = Instant::now() + self.timeout.min(MAX_REQUEST_DEADLINE);
        ctx
    }

    /// `setItemAsync`: stores `value` under `key`. Returns once the daemon has made it durable.
    ///
    /// # Errors
    /// [`ServiceError::InvalidKey`], [`ServiceError::InvalidService`] or [`ServiceError::ValueTooLarge`]
    /// (checked here before sending, and again by the daemon); storage failures; transport failures.
    pub async fn set_item(
        &self,
        key: &str,
        value: impl Into<SecretString>,
        options: SetOptions,
    ) -> Result<(), Error> {
        let value = value.into();
        check(key, options.keychain_service.as_deref())?;
        if value.len() > self.max_value_bytes as usize {
            return Err(ServiceError::ValueTooLarge {
                size: value.len() as u64,
                limit: u64::from(self.max_value_bytes),
            }
            .into());
        }
        Ok(self
            .rpc
            .set_item(self.context(), key.to_owned(), value, options)
            .await??)
    }

    /// `getItemAsync`: the value under `key`, or `None` when there is none.
    ///
    /// # Errors
    /// [`ServiceError::InvalidKey`], [`ServiceError::InvalidService`], [`ServiceError::CannotDecrypt`],
    /// storage and transport failures.
    pub async fn get_item(
        &self,
        key: &str,
        options: GetOptions,
    ) -> Result<Option<SecretString>, Error> {
        Ok(self
            .get_item_entry(key, options)
            .await?
            .map(|item| item.value))
    }

    /// As [`Client::get_item`], also returning the accessibility class the item was stored with.
    ///
    /// # Errors
    /// As [`Client::get_item`].
    pub async fn get_item_entry(
        &self,
        key: &str,
        options: GetOptions,
    ) -> Result<Option<Item>, Error> {
        check(key, options.keychain_service.as_deref())?;
        Ok(self
            .rpc
            .get_item(self.context(), key.to_owned(), options)
            .await??)
    }

    /// `deleteItemAsync`: removes the item under `key`; removing a missing item succeeds.
    ///
    /// # Errors
    /// [`ServiceError::InvalidKey`], [`ServiceError::InvalidService`], storage and transport failures.
    pub async fn delete_item(&self, key: &str, options: DeleteOptions) -> Result<(), Error> {
        check(key, options.keychain_service.as_deref())?;
        Ok(self
            .rpc
            .delete_item(self.context(), key.to_owned(), options)
            .await??)
    }
}

/// Connects to `socket`, sends `hello` and returns the daemon's reply with the open frames.
pub(crate) async fn greet(
    socket: &Path,
    hello: &Hello,
) -> Result<(HelloReply, Frames<UnixStream>), Error> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| Error::Unreachable {
            path: socket.to_owned(),
            source,
        })?;
    let mut frames = handshake::frames(stream);
    let lost = |err: std::io::Error| Error::Disconnected(Some(Box::new(err)));
    handshake::send(&mut frames, hello).await.map_err(lost)?;
    if matches!(hello.purpose, Purpose::Admin(_)) {
        handshake::allow_admin_answer(&mut frames);
    }
    let reply = handshake::recv(&mut frames).await.map_err(lost)?;
    Ok((reply, frames))
}

/// Sends `hello` on fresh `frames` and returns the daemon's reply with the open frames.
async fn exchange<S>(mut frames: Frames<S>, hello: &Hello) -> Result<(HelloReply, Frames<S>), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let lost = |err: std::io::Error| Error::Disconnected(Some(Box::new(err)));
    handshake::send(&mut frames, hello).await.map_err(lost)?;
    let reply = handshake::recv(&mut frames).await.map_err(lost)?;
    Ok((reply, frames))
}

/// The client's own check of the daemon's name rules, so a bad name never costs a round trip.
fn check(key: &str, service: Option<&str>) -> Result<(), ServiceError> {
    Key::parse(key)?;
    ServiceName::parse(service)?;
    Ok(())
}
