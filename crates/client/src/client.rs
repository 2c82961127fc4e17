//! The async [`Client`]: connect, handshake, then Expo's three calls.
//!
//! When every connection slot of the daemon is taken, it closes the connection idle longest with a
//! goodbye frame ([`securestore_proto::goodbye`]). A client that finds its connection closed that way
//! opens a new one and sends the call there: the goodbye guarantees the daemon never read any request
//! it left unanswered. A connection lost any other way is an error, never retried, as a write may
//! have been applied.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use securestore_proto::goodbye::GoodbyeWatch;
use securestore_proto::handshake::{
    self, Frames, Hello, HelloReply, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, Purpose,
};
use securestore_proto::limits::{
    MAX_BATCH_OPS, MAX_EXPORT_ITEMS, MAX_REQUEST_DEADLINE, max_frame_len,
};
use securestore_proto::order::{Ticketer, Turn};
use securestore_proto::tarpc::client::RpcError;
use securestore_proto::tarpc::context;
use securestore_proto::{
    BatchOp, DeleteOptions, Events, ExportPage, ExportedItem, GetOptions, ImportReport, Item,
    ItemRef, Key, Page, ProjectId, SecretString, SecureStoreClient, ServiceError, ServiceName,
    SetOptions, WatchFilter,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;

use crate::Error;
use crate::exchange::Exchange;

/// How a [`Client`] connects and how long it waits.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Longest wait for the connection and handshake, and for each call's answer.
    pub timeout: Duration,
    /// The project's access token, required when the project is registered with the daemon.
    pub token: Option<SecretString>,
    /// The uid the daemon must run as. `None` (the default): this process's own uid. Root is always
    /// accepted. Set it only for a system-wide daemon that runs as a dedicated user; before sending
    /// anything the client reads the daemon's uid from the kernel and refuses any other, so a
    /// process of another user listening at the socket path never sees a token or a value.
    pub expected_daemon_uid: Option<u32>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            token: None,
            expected_daemon_uid: None,
        }
    }
}

/// Calls sent again on a new connection after the daemon closed an idle one, before giving up.
const MAX_REOPENS: usize = 5;

/// A connection to the daemon, bound to one project. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    current: Arc<Mutex<Connection>>,
    /// Held while a new connection is opened, so clones that lose the old one open just one.
    reopening: Arc<tokio::sync::Mutex<()>>,
    /// Numbers calls in the order they begin, so calls resent after a goodbye reach the new
    /// connection in the order they were first sent (the daemon keeps each connection's order).
    order: Arc<Mutex<Ticketer>>,
    /// Set when a connection replaces one that said goodbye: calls begun on the new one wait for it,
    /// so that the calls sent again are not overtaken by calls begun after them.
    resends_first: Arc<Mutex<Option<Resends>>>,
    /// How to open a new connection when the daemon closed an idle one.
    redial: Redial,
    token: Option<SecretString>,
    project: ProjectId,
    max_value_bytes: u32,
    timeout: Duration,
}

/// The turn after every call begun on a closed connection, for the calls begun on its replacement.
struct Resends {
    /// The replacement (its goodbye flag, which identifies it).
    connection: Arc<AtomicBool>,
    turn: Arc<Turn>,
}

/// Where a [`Client`] opens its next connection.
#[derive(Debug, Clone)]
enum Redial {
    /// The socket, checking the daemon's uid again (`expected_daemon_uid`, or ours or root).
    Socket {
        path: PathBuf,
        expected_daemon_uid: Option<u32>,
    },
    /// Nowhere: an in-process stream cannot be opened again by the client. (The daemon never
    /// closes in-process connections to make room, so it never needs to be.)
    Never,
}

/// The generated client for the service, over this crate's own [`Exchange`].
type Rpc = SecureStoreClient<Exchange>;

/// One open connection.
#[derive(Clone)]
struct Connection {
    rpc: Rpc,
    /// Set when the daemon closed this connection for being idle, with nothing of ours read.
    said_goodbye: Arc<AtomicBool>,
    /// The protocol version the daemon accepted this connection in; no newer call is sent on it.
    version: u16,
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
    /// [`Error::UntrustedDaemon`] when the process at `socket` runs as another user (nothing is
    /// sent); [`Error::Unreachable`] when nothing answers at `socket`; [`Error::TimedOut`].
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
            // Nothing on a pipe can say goodbye: the daemon never closes it to make room.
            let (connection, max_value_bytes) = Self::bound(reply, frames, Arc::default())?;
            Ok(Self {
                current: Arc::new(Mutex::new(connection)),
                reopening: Arc::default(),
                order: Arc::default(),
                resends_first: Arc::default(),
                redial: Redial::Never,
                token: options.token,
                project,
                max_value_bytes,
                timeout: options.timeout,
            })
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
        let (connection, max_value_bytes) = Self::dial(
            socket,
            &project,
            options.token.clone(),
            options.expected_daemon_uid,
        )
        .await?;
        Ok(Self {
            current: Arc::new(Mutex::new(connection)),
            reopening: Arc::default(),
            order: Arc::default(),
            resends_first: Arc::default(),
            redial: Redial::Socket {
                path: socket.to_owned(),
                expected_daemon_uid: options.expected_daemon_uid,
            },
            token: options.token,
            project,
            max_value_bytes,
            timeout: options.timeout,
        })
    }

    /// Opens one connection bound to `project`; returns it with the daemon's value limit.
    async fn dial(
        socket: &Path,
        project: &ProjectId,
        token: Option<SecretString>,
        expected_daemon_uid: Option<u32>,
    ) -> Result<(Connection, u32), Error> {
        let hello = Hello::project(project.as_str(), token);
        let (reply, frames) = greet(socket, &hello, expected_daemon_uid).await?;
        let said_goodbye = frames.get_ref().said_goodbye();
        Self::bound(reply, frames, said_goodbye)
    }

    /// Turns the daemon's reply to a project hello on `frames` into a connection.
    fn bound<S>(
        reply: HelloReply,
        frames: Frames<S>,
        said_goodbye: Arc<AtomicBool>,
    ) -> Result<(Connection, u32), Error>
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
        // The daemon answers with the lower of its version and ours: anything else is not a daemon
        // this client can talk to.
        if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&accepted.protocol_version) {
            return Err(Error::Protocol(format!(
                "the daemon accepted protocol {}, this client speaks {MIN_PROTOCOL_VERSION} to {PROTOCOL_VERSION}",
                accepted.protocol_version
            )));
        }
        let limit = max_frame_len(accepted.max_value_bytes);
        let mut frames = frames;
        frames.codec_mut().set_max_frame_length(limit);
        let rpc = SecureStoreClient::from(Exchange::new(frames, limit));
        let connection = Connection {
            rpc,
            said_goodbye,
            version: accepted.protocol_version,
        };
        Ok((connection, accepted.max_value_bytes))
    }

    fn connection(&self) -> Connection {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces `closed` (which said goodbye) with a new connection, unless a clone already did.
    async fn reopen(&self, closed: &Connection) -> Result<Connection, Error> {
        let _one_at_a_time = self.reopening.lock().await;
        let current = self.connection();
        if !Arc::ptr_eq(&current.said_goodbye, &closed.said_goodbye) {
            return Ok(current);
        }
        let Redial::Socket {
            path,
            expected_daemon_uid,
        } = &self.redial
        else {
            return Err(Error::Disconnected(None));
        };
        let dial = Self::dial(
            path,
            &self.project,
            self.token.clone(),
            *expected_daemon_uid,
        );
        let (connection, _) = tokio::time::timeout(self.timeout, dial)
            .await
            .map_err(|_| Error::TimedOut)??;
        // Under the order lock: every call that took its turn before this saw the old connection,
        // every call after it sees the new one and lets the old one's calls go first.
        let mut order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = connection.clone();
        *self
            .resends_first
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Resends {
            connection: connection.said_goodbye.clone(),
            turn: Arc::new(order.next_turn()),
        });
        drop(order);
        Ok(connection)
    }

    /// For a call that took its turn on `connection`: waits until the calls begun on the connection
    /// it replaced have finished, sent again on it if they had to be.
    async fn after_resends(&self, connection: &Connection) {
        let resends = {
            let resends = self
                .resends_first
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match &*resends {
                Some(resends) if Arc::ptr_eq(&resends.connection, &connection.said_goodbye) => {
                    resends.turn.clone()
                }
                _ => return,
            }
        };
        resends.wait().await;
        let mut current = self
            .resends_first
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if current
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(&current.turn, &resends))
        {
            *current = None;
        }
    }

    /// Runs `call` on the current connection; if the daemon closed it for being idle, on a new one.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, Error>
    where
        F: Fn(Rpc) -> Fut,
        Fut: Future<Output = Result<Result<T, ServiceError>, RpcError>>,
    {
        self.call_since(("", 1), call).await
    }

    /// As [`Client::call`], for a call the protocol added in version `needs`: on a connection the
    /// daemon accepted in an older version, it is not sent, and the answer is [`Error::Unsupported`].
    async fn call_since<T, F, Fut>(
        &self,
        (name, needs): (&'static str, u16),
        call: F,
    ) -> Result<T, Error>
    where
        F: Fn(Rpc) -> Fut,
        Fut: Future<Output = Result<Result<T, ServiceError>, RpcError>>,
    {
        // Taken in the same poll that sends the request, so turns follow the order of sending; with
        // the connection, so a call sees a new connection only after the calls begun before it.
        let (turn, mut connection) = {
            let mut order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
            (order.next_turn(), self.connection())
        };
        // On the connection its turn came with (not one it was sent again on).
        let mut first = true;
        for _ in 0..MAX_REOPENS {
            let goodbye = connection.said_goodbye.load(Ordering::Acquire);
            if goodbye || first {
                // Every call sent before this one has finished (answered, failed, or resent and
                // answered): resending now keeps the order in which they were first sent. Not
                // past this call's own timeout: an earlier call may be kept pending unpolled.
                let wait = async {
                    if first {
                        self.after_resends(&connection).await;
                    }
                    if goodbye {
                        turn.wait().await;
                        return self.reopen(&connection).await.map(Some);
                    }
                    Ok(None)
                };
                if let Some(reopened) = tokio::time::timeout(self.timeout, wait)
                    .await
                    .map_err(|_| Error::TimedOut)??
                {
                    connection = reopened;
                    first = false;
                }
            }
            if connection.version < needs {
                return Err(Error::Unsupported {
                    call: name,
                    daemon: connection.version,
                    needs,
                });
            }
            match call(connection.rpc.clone()).await {
                // The goodbye came before our request was read: it never ran, so sending it again on
                // a new connection cannot apply it twice. A deadline is the caller's, and final.
                Err(RpcError::Shutdown | RpcError::Send(_) | RpcError::Channel(_))
                    if connection.said_goodbye.load(Ordering::Acquire) => {}
                answer => return Ok(answer??),
            }
        }
        Err(Error::Disconnected(None))
    }

    /// The project this client is bound to.
    pub fn project(&self) -> &str {
        self.project.as_str()
    }

    /// The protocol version the daemon accepted the current connection in (see
    /// `docs/protocol.md`): calls newer than it fail with [`Error::Unsupported`] without being sent.
    pub fn protocol_version(&self) -> u16 {
        self.connection().version
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
        self.call(|rpc| {
            let (ctx, key, value, options) = (
                self.context(),
                key.to_owned(),
                value.clone(),
                options.clone(),
            );
            async move { rpc.set_item(ctx, key, value, options).await }
        })
        .await
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
        self.call(|rpc| {
            let (ctx, key, options) = (self.context(), key.to_owned(), options.clone());
            async move { rpc.get_item(ctx, key, options).await }
        })
        .await
    }

    /// `deleteItemAsync`: removes the item under `key`; removing a missing item succeeds.
    ///
    /// # Errors
    /// [`ServiceError::InvalidKey`], [`ServiceError::InvalidService`], storage and transport failures.
    pub async fn delete_item(&self, key: &str, options: DeleteOptions) -> Result<(), Error> {
        check(key, options.keychain_service.as_deref())?;
        self.call(|rpc| {
            let (ctx, key, options) = (self.context(), key.to_owned(), options.clone());
            async move { rpc.delete_item(ctx, key, options).await }
        })
        .await
    }

    fn check_value(&self, value: &SecretString) -> Result<(), ServiceError> {
        if value.len() > self.max_value_bytes as usize {
            return Err(ServiceError::ValueTooLarge {
                size: value.len() as u64,
                limit: u64::from(self.max_value_bytes),
            });
        }
        Ok(())
    }

    /// Whether an item is stored under `key` in `service` (`None`: the default service). The value
    /// never leaves the daemon. (Protocol 2.)
    ///
    /// # Errors
    /// [`Error::Unsupported`] from an older daemon; invalid names; storage and transport failures.
    pub async fn contains(&self, key: &str, service: Option<&str>) -> Result<bool, Error> {
        check(key, service)?;
        self.call_since(("contains", 2), |rpc| {
            let (ctx, key, service) = (self.context(), key.to_owned(), service.map(str::to_owned));
            async move { rpc.contains(ctx, key, service).await }
        })
        .await
    }

    /// One page of the keys of `service`, sorted, after `after`. (Protocol 2.)
    ///
    /// # Errors
    /// As [`Client::contains`].
    pub async fn list_keys_page(
        &self,
        service: Option<&str>,
        after: Option<&str>,
    ) -> Result<Page, Error> {
        ServiceName::parse(service)?;
        self.call_since(("list_keys", 2), |rpc| {
            let (ctx, service, after) = (
                self.context(),
                service.map(str::to_owned),
                after.map(str::to_owned),
            );
            async move { rpc.list_keys(ctx, service, after).await }
        })
        .await
    }

    /// Every key of `service`, sorted, fetched page by page. Items written meanwhile may or may not
    /// be listed; each page is consistent on its own.
    ///
    /// # Errors
    /// As [`Client::contains`].
    pub async fn list_keys(&self, service: Option<&str>) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        loop {
            let page = self
                .list_keys_page(service, names.last().map(String::as_str))
                .await?;
            names.extend(page.names);
            if !page.more {
                return Ok(names);
            }
        }
    }

    /// One page of the services holding items, sorted, after `after`. (Protocol 2.)
    ///
    /// # Errors
    /// As [`Client::contains`].
    pub async fn list_services_page(&self, after: Option<&str>) -> Result<Page, Error> {
        self.call_since(("list_services", 2), |rpc| {
            let (ctx, after) = (self.context(), after.map(str::to_owned));
            async move { rpc.list_services(ctx, after).await }
        })
        .await
    }

    /// Every service holding items, sorted, fetched page by page.
    ///
    /// # Errors
    /// As [`Client::contains`].
    pub async fn list_services(&self) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        loop {
            let page = self
                .list_services_page(names.last().map(String::as_str))
                .await?;
            names.extend(page.names);
            if !page.more {
                return Ok(names);
            }
        }
    }

    /// Deletes every item of `service`; returns how many there were. Durable like a delete.
    /// (Protocol 2.)
    ///
    /// # Errors
    /// As [`Client::contains`].
    pub async fn clear(&self, service: Option<&str>) -> Result<u64, Error> {
        ServiceName::parse(service)?;
        self.call_since(("clear", 2), |rpc| {
            let (ctx, service) = (self.context(), service.map(str::to_owned));
            async move { rpc.clear(ctx, service).await }
        })
        .await
    }

    /// Deletes every item of every service of this project; returns how many there were.
    /// (Protocol 2.)
    ///
    /// # Errors
    /// As [`Client::contains`].
    pub async fn clear_all(&self) -> Result<u64, Error> {
        self.call_since(("clear_all", 2), |rpc| {
            let ctx = self.context();
            async move { rpc.clear_all(ctx).await }
        })
        .await
    }

    /// Stores `value` under `key` only if the current value equals `expected` (`None`: only if
    /// there is no item). (Protocol 2.)
    ///
    /// # Errors
    /// [`ServiceError::Conflict`] if the current value differs (nothing changed); as
    /// [`Client::set_item`] otherwise.
    pub async fn set_if(
        &self,
        key: &str,
        expected: Option<SecretString>,
        value: impl Into<SecretString>,
        options: SetOptions,
    ) -> Result<(), Error> {
        let value = value.into();
        check(key, options.keychain_service.as_deref())?;
        self.check_value(&value)?;
        self.call_since(("set_if", 2), |rpc| {
            let (ctx, key, expected, value, options) = (
                self.context(),
                key.to_owned(),
                expected.clone(),
                value.clone(),
                options.clone(),
            );
            async move { rpc.set_if(ctx, key, expected, value, options).await }
        })
        .await
    }

    /// Deletes the item under `key` only if its current value equals `expected`. (Protocol 2.)
    ///
    /// # Errors
    /// As [`Client::set_if`].
    pub async fn delete_if(
        &self,
        key: &str,
        expected: Option<SecretString>,
        options: DeleteOptions,
    ) -> Result<(), Error> {
        check(key, options.keychain_service.as_deref())?;
        self.call_since(("delete_if", 2), |rpc| {
            let (ctx, key, expected, options) = (
                self.context(),
                key.to_owned(),
                expected.clone(),
                options.clone(),
            );
            async move { rpc.delete_if(ctx, key, expected, options).await }
        })
        .await
    }

    /// One page of this project's exportable items (never a `*_THIS_DEVICE_ONLY` one), of `service`
    /// or of all, after `after`. (Protocol 3.)
    ///
    /// # Errors
    /// [`ServiceError::Locked`] when an exportable item is unavailable in the device's state; as
    /// [`Client::contains`].
    pub async fn export_page(
        &self,
        service: Option<&str>,
        after: Option<ItemRef>,
    ) -> Result<ExportPage, Error> {
        if let Some(service) = service {
            ServiceName::parse(Some(service))?;
        }
        self.call_since(("export", 3), |rpc| {
            let (ctx, service, after) = (self.context(), service.map(str::to_owned), after.clone());
            async move { rpc.export(ctx, service, after).await }
        })
        .await
    }

    /// Every exportable item of this project (of `service`, if given), page by page. Each page is
    /// consistent; items written meanwhile may or may not be included.
    ///
    /// # Errors
    /// As [`Client::export_page`].
    pub async fn export(&self, service: Option<&str>) -> Result<Vec<ExportedItem>, Error> {
        let mut items = Vec::new();
        let mut after = None;
        loop {
            let page = self.export_page(service, after).await?;
            items.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(items),
            }
        }
    }

    /// Stores `items` (from a backup) in this project, in requests of at most
    /// [`MAX_EXPORT_ITEMS`] items and the value limit in bytes, each all or nothing. An item that
    /// exists is kept (counted as skipped) unless `replace`. Running it again after an interruption
    /// finishes the job: what the first run stored is skipped (or replaced by the same value).
    /// (Protocol 3.)
    ///
    /// # Errors
    /// [`ServiceError::Refused`] for a `*_THIS_DEVICE_ONLY` item (checked before anything is sent);
    /// [`ServiceError::Locked`]; as [`Client::contains`].
    pub async fn import(
        &self,
        items: &[ExportedItem],
        replace: bool,
    ) -> Result<ImportReport, Error> {
        if let Some(item) = items.iter().find(|i| i.accessible.this_device_only()) {
            return Err(ServiceError::Refused {
                reason: format!(
                    "'{}' under keychainService '{}' is {}, which never leaves its device",
                    item.key, item.service, item.accessible
                ),
            }
            .into());
        }
        // Every item is checked before anything is sent, so a file this daemon cannot take whole
        // imports nothing.
        for item in items {
            check(&item.key, Some(&item.service))?;
            if item.value.len() > self.max_value_bytes as usize {
                return Err(ServiceError::ValueTooLarge {
                    size: item.value.len() as u64,
                    limit: u64::from(self.max_value_bytes),
                }
                .into());
            }
        }
        let mut report = ImportReport::default();
        let budget = self.max_value_bytes as usize;
        let mut start = 0;
        while start < items.len() {
            let mut end = start;
            let mut used = 0;
            while end < items.len()
                && end - start < MAX_EXPORT_ITEMS
                && (end == start || used + items[end].size() <= budget)
            {
                used += items[end].size();
                end += 1;
            }
            let chunk = items[start..end].to_vec();
            report += self
                .call_since(("import", 3), |rpc| {
                    let (ctx, chunk) = (self.context(), chunk.clone());
                    async move { rpc.import(ctx, chunk, replace).await }
                })
                .await?;
            start = end;
        }
        Ok(report)
    }

    /// Applies `ops` all or nothing, in one durable transaction. (Protocol 2.)
    ///
    /// # Errors
    /// [`ServiceError::InBatch`] naming the first failing operation (checked here first for names,
    /// then by the daemon for sizes and conditions); [`ServiceError::TooLarge`] past
    /// [`MAX_BATCH_OPS`] operations or the value limit in bytes; as [`Client::contains`].
    pub async fn write_batch(&self, ops: Vec<BatchOp>) -> Result<(), Error> {
        if ops.len() > MAX_BATCH_OPS {
            return Err(ServiceError::TooLarge {
                what: format!(
                    "{} operations in a batch; the limit is {MAX_BATCH_OPS}",
                    ops.len()
                ),
            }
            .into());
        }
        let size: usize = ops.iter().map(BatchOp::size).sum();
        if size > self.max_value_bytes as usize {
            return Err(ServiceError::TooLarge {
                what: format!(
                    "a batch of {size} bytes of keys, services and values; the limit is {}",
                    self.max_value_bytes
                ),
            }
            .into());
        }
        for (index, op) in ops.iter().enumerate() {
            check(op.key(), op.service()).map_err(|error| ServiceError::InBatch {
                index: index as u64,
                error: Box::new(error),
            })?;
        }
        self.call_since(("write_batch", 2), |rpc| {
            let (ctx, ops) = (self.context(), ops.clone());
            async move { rpc.write_batch(ctx, ops).await }
        })
        .await
    }

    /// Starts watching this project's changes matching `filter`; returns the watcher's id on this
    /// connection, for [`Client::poll_events`]. The watcher sees every change made durable from
    /// now on, in commit order, names only (never values). It ends with the connection: after a
    /// reconnect (the daemon closed an idle connection), polling it fails and a new watch is needed.
    /// (Protocol 2.)
    ///
    /// # Errors
    /// Invalid names; [`ServiceError::TooLarge`] past the watchers one connection may have; as
    /// [`Client::contains`].
    pub async fn watch(&self, filter: WatchFilter) -> Result<u64, Error> {
        if let Some(key) = &filter.key {
            Key::parse(key)?;
        }
        if let Some(service) = &filter.service {
            ServiceName::parse(Some(service))?;
        }
        self.call_since(("watch", 2), |rpc| {
            let (ctx, filter) = (self.context(), filter.clone());
            async move { rpc.watch(ctx, filter).await }
        })
        .await
    }

    /// Long poll: the watcher's events as soon as there is one, or none after `wait` (at most
    /// 30 s, and less than this client's timeout). `Events::lagged` says events were dropped
    /// because the watcher's queue was full. (Protocol 2.)
    ///
    /// # Errors
    /// As [`Client::contains`].
    pub async fn poll_events(&self, watcher: u64, wait: Duration) -> Result<Events, Error> {
        let wait = wait.min(self.timeout.saturating_sub(Duration::from_millis(500)));
        let millis = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        self.call_since(("poll_events", 2), |rpc| {
            let ctx = self.context();
            async move { rpc.poll_events(ctx, watcher, millis).await }
        })
        .await
    }

    /// Ends a watcher. (Protocol 2.)
    ///
    /// # Errors
    /// As [`Client::contains`].
    pub async fn unwatch(&self, watcher: u64) -> Result<(), Error> {
        self.call_since(("unwatch", 2), |rpc| {
            let ctx = self.context();
            async move { rpc.unwatch(ctx, watcher).await }
        })
        .await
    }
}

/// Connects to `socket`, checks whom it reached, sends `hello` and returns the daemon's reply with
/// the open frames.
///
/// The one way every client in this crate (async, blocking, admin, the CLI) opens a connection, so
/// all of them check the daemon's identity the same way.
pub(crate) async fn greet(
    socket: &Path,
    hello: &Hello,
    expected_daemon_uid: Option<u32>,
) -> Result<(HelloReply, Frames<GoodbyeWatch<UnixStream>>), Error> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| Error::Unreachable {
            path: socket.to_owned(),
            source,
        })?;
    check_daemon(&stream, socket, expected_daemon_uid)?;
    let mut frames = handshake::frames(GoodbyeWatch::new(stream));
    let lost = |err: std::io::Error| Error::Disconnected(Some(Box::new(err)));
    handshake::send(&mut frames, hello).await.map_err(lost)?;
    if matches!(hello.purpose, Purpose::Admin(_)) {
        handshake::allow_admin_answer(&mut frames);
    }
    let reply = handshake::recv(&mut frames).await.map_err(lost)?;
    Ok((reply, frames))
}

/// Reads the uid of the process listening at the other end from the kernel (`SO_PEERCRED`, or
/// `getpeereid` on the BSDs and macOS) and refuses it unless it is `expected` (by default our own
/// uid) or root, before a byte is sent: whoever made the socket path first, say
/// `/tmp/securestore-<uid>` on a shared machine, must not be handed a token or a value.
fn check_daemon(stream: &UnixStream, socket: &Path, expected: Option<u32>) -> Result<(), Error> {
    let expected = expected.unwrap_or_else(|| rustix::process::geteuid().as_raw());
    let uid = stream
        .peer_cred()
        .map_err(|err| Error::Unreachable {
            path: socket.to_owned(),
            source: std::io::Error::new(
                err.kind(),
                format!("cannot read the daemon's credentials, so it cannot be trusted: {err}"),
            ),
        })?
        .uid();
    if uid == expected || uid == 0 {
        Ok(())
    } else {
        Err(Error::UntrustedDaemon {
            path: socket.to_owned(),
            uid,
            expected,
        })
    }
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

#[cfg(test)]
pub(crate) mod tests {
    use futures::{SinkExt, StreamExt};
    use securestore_proto::handshake::Accepted;
    use securestore_proto::tarpc::{ClientMessage, Request, Response};
    use securestore_proto::{SecureStoreRequest, SecureStoreResponse, codec, goodbye};
    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixListener;

    use super::*;

    pub(crate) const MAX_VALUE: u32 = 64 * 1024;
    const PROJECT: &str = "@tests/exchange";

    /// A fake daemon's socket in a fresh folder.
    fn listen() -> (tempfile::TempDir, PathBuf, UnixListener) {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("daemon.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        (dir, path, listener)
    }

    /// Accepts one connection and accepts its hello, as the daemon does.
    pub(crate) async fn accept(listener: &UnixListener) -> Frames<UnixStream> {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut frames = handshake::frames(stream);
        handshake::recv_hello(&mut frames)
            .await
            .expect("a hello")
            .expect("a project hello");
        let accepted = HelloReply::Accepted(Accepted {
            protocol_version: PROTOCOL_VERSION,
            max_value_bytes: MAX_VALUE,
        });
        handshake::send(&mut frames, &accepted)
            .await
            .expect("reply");
        frames
            .codec_mut()
            .set_max_frame_length(max_frame_len(MAX_VALUE));
        frames
    }

    /// Closes `frames` with the goodbye, having read nothing, as the daemon closes an idle connection.
    async fn say_goodbye(frames: Frames<UnixStream>) {
        let mut stream = frames.into_inner();
        stream.write_all(&goodbye::frame()).await.expect("goodbye");
    }

    async fn connect(path: &Path, timeout: Duration) -> Client {
        let options = ConnectOptions {
            timeout,
            ..ConnectOptions::default()
        };
        Client::connect_with(path, PROJECT, options)
            .await
            .expect("connect")
    }

    #[tokio::test]
    async fn a_call_waiting_for_its_turn_to_be_resent_still_times_out() {
        let (_dir, path, listener) = listen();
        let daemon = tokio::spawn(async move {
            say_goodbye(accept(&listener).await).await;
            // The next connection is taken and never answered.
            let next = listener.accept().await.expect("accept");
            std::future::pending::<()>().await;
            drop(next);
        });
        let client = connect(&path, Duration::from_millis(500)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The first call finds the goodbye and waits for a new connection; then it is kept pending,
        // no longer polled (a future pinned across a select! loop).
        let first = client.clear(Some("first"));
        tokio::pin!(first);
        let early = tokio::time::timeout(Duration::from_millis(100), &mut first).await;
        assert!(early.is_err(), "no new connection yet");
        // The second waits for the first to be resent before its own resend, but not forever.
        let second = tokio::time::timeout(Duration::from_secs(5), client.clear(Some("second")))
            .await
            .expect("the call gives up within its timeout");
        assert!(matches!(second, Err(Error::TimedOut)), "{second:?}");
        daemon.abort();
    }

    #[tokio::test]
    async fn calls_resent_after_a_goodbye_are_not_overtaken_by_calls_begun_after_them() {
        let (_dir, path, listener) = listen();
        let daemon = tokio::spawn(async move {
            say_goodbye(accept(&listener).await).await;
            record_clears(&listener).await
        });
        let client = connect(&path, Duration::from_secs(5)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        // Pipelined: a call begins as soon as an earlier one is answered.
        let client_ref = &client;
        let answers: Vec<_> = futures::stream::iter(0..12)
            .map(|n| async move { client_ref.clear(Some(&format!("s{n:02}"))).await })
            .buffered(4)
            .collect()
            .await;
        for answer in answers {
            answer.expect("cleared");
        }
        drop(client);
        let order = daemon.await.expect("the fake daemon");
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(
            order, sorted,
            "requests reached the new connection out of order"
        );
    }

    /// A fake daemon's next connection: the services of the `clear` requests it reads, each answered.
    async fn record_clears(listener: &UnixListener) -> Vec<String> {
        let mut frames = accept(listener).await;
        let limit = max_frame_len(MAX_VALUE);
        let mut order = Vec::new();
        while let Some(Ok(frame)) = frames.next().await {
            let message: ClientMessage<SecureStoreRequest> =
                codec::decode(&frame, limit).expect("a message");
            let ClientMessage::Request(Request {
                id,
                message: SecureStoreRequest::Clear { service },
                ..
            }) = message
            else {
                continue;
            };
            order.push(service.expect("a service"));
            let response = Response {
                request_id: id,
                message: Ok(SecureStoreResponse::Clear(Ok(7))),
            };
            let frame = codec::encode(&response, limit).expect("encode");
            frames
                .send(bytes::Bytes::from(frame))
                .await
                .expect("answer");
        }
        order
    }

    #[tokio::test]
    async fn an_answer_there_before_the_goodbye_reaches_its_call_which_is_not_sent_again() {
        let (_dir, path, listener) = listen();
        let daemon = tokio::spawn(async move {
            let mut frames = accept(&listener).await;
            let limit = max_frame_len(MAX_VALUE);
            let frame = frames.next().await.expect("a request").expect("read");
            let Ok(ClientMessage::Request(Request { id, .. })) =
                codec::decode::<ClientMessage<SecureStoreRequest>>(&frame, limit)
            else {
                panic!("expected a request");
            };
            let response = Response {
                request_id: id,
                message: Ok(SecureStoreResponse::Clear(Ok(1))),
            };
            let frame = codec::encode(&response, limit).expect("encode");
            frames
                .send(bytes::Bytes::from(frame))
                .await
                .expect("answer");
            // Idle now: closed with the goodbye, to make room.
            say_goodbye(frames).await;
            record_clears(&listener).await
        });
        let client = connect(&path, Duration::from_secs(5)).await;
        {
            // Sent, then not polled while the answer and the goodbye arrive.
            let first = client.clear(Some("first"));
            tokio::pin!(first);
            assert!(futures::poll!(&mut first).is_pending());
            tokio::time::sleep(Duration::from_millis(100)).await;
            // The next call writes on the closed connection (before the first is polled again),
            // then is sent again on a new one.
            let (second, first) = futures::join!(client.clear(Some("second")), first);
            assert_eq!(second.expect("cleared on the new connection"), 7);
            assert_eq!(first.expect("answered before the goodbye"), 1);
        }
        drop(client);
        let resent = daemon.await.expect("the fake daemon");
        assert_eq!(resent, ["second"], "only the unanswered call is sent again");
    }
}
