//! A blocking [`Client`] for synchronous callers (Expo's `getItem` / `setItem`).
//!
//! It owns a single-threaded Tokio runtime and drives the async client on it, so it must not be used
//! from inside another Tokio runtime's async context.

use std::path::Path;

use securestore_proto::{
    BatchOp, DeleteOptions, Events, GetOptions, Item, SecretString, SetOptions, WatchFilter,
};

use crate::{ConnectOptions, Error};

/// A connection to the daemon, bound to one project, with blocking calls.
#[derive(Debug)]
pub struct Client {
    runtime: tokio::runtime::Runtime,
    inner: crate::Client,
}

impl Client {
    /// Connects to the daemon at `socket` and binds the connection to `project`.
    ///
    /// # Errors
    /// As [`crate::Client::connect`]; [`Error::Protocol`] if the runtime cannot be built.
    pub fn connect(socket: impl AsRef<Path>, project: &str) -> Result<Self, Error> {
        Self::connect_with(socket, project, ConnectOptions::default())
    }

    /// As [`Client::connect`], with explicit options.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub fn connect_with(
        socket: impl AsRef<Path>,
        project: &str,
        options: ConnectOptions,
    ) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Protocol(format!("cannot start a runtime: {e}")))?;
        let inner = runtime.block_on(crate::Client::connect_with(socket, project, options))?;
        Ok(Self { runtime, inner })
    }

    /// The daemon's value limit, in bytes.
    pub fn max_value_bytes(&self) -> u32 {
        self.inner.max_value_bytes()
    }

    /// `setItem`. See [`crate::Client::set_item`].
    ///
    /// # Errors
    /// As [`crate::Client::set_item`].
    pub fn set_item(
        &self,
        key: &str,
        value: impl Into<SecretString>,
        options: SetOptions,
    ) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.set_item(key, value, options))
    }

    /// `getItem`. See [`crate::Client::get_item`].
    ///
    /// # Errors
    /// As [`crate::Client::get_item`].
    pub fn get_item(&self, key: &str, options: GetOptions) -> Result<Option<SecretString>, Error> {
        self.runtime.block_on(self.inner.get_item(key, options))
    }

    /// See [`crate::Client::get_item_entry`].
    ///
    /// # Errors
    /// As [`crate::Client::get_item`].
    pub fn get_item_entry(&self, key: &str, options: GetOptions) -> Result<Option<Item>, Error> {
        self.runtime
            .block_on(self.inner.get_item_entry(key, options))
    }

    /// `deleteItem`. See [`crate::Client::delete_item`].
    ///
    /// # Errors
    /// As [`crate::Client::delete_item`].
    pub fn delete_item(&self, key: &str, options: DeleteOptions) -> Result<(), Error> {
        self.runtime.block_on(self.inner.delete_item(key, options))
    }

    /// The protocol version of the current connection. See [`crate::Client::protocol_version`].
    pub fn protocol_version(&self) -> u16 {
        self.inner.protocol_version()
    }

    /// See [`crate::Client::contains`].
    ///
    /// # Errors
    /// As [`crate::Client::contains`].
    pub fn contains(&self, key: &str, service: Option<&str>) -> Result<bool, Error> {
        self.runtime.block_on(self.inner.contains(key, service))
    }

    /// See [`crate::Client::list_keys`].
    ///
    /// # Errors
    /// As [`crate::Client::list_keys`].
    pub fn list_keys(&self, service: Option<&str>) -> Result<Vec<String>, Error> {
        self.runtime.block_on(self.inner.list_keys(service))
    }

    /// See [`crate::Client::list_services`].
    ///
    /// # Errors
    /// As [`crate::Client::list_services`].
    pub fn list_services(&self) -> Result<Vec<String>, Error> {
        self.runtime.block_on(self.inner.list_services())
    }

    /// See [`crate::Client::clear`].
    ///
    /// # Errors
    /// As [`crate::Client::clear`].
    pub fn clear(&self, service: Option<&str>) -> Result<u64, Error> {
        self.runtime.block_on(self.inner.clear(service))
    }

    /// See [`crate::Client::clear_all`].
    ///
    /// # Errors
    /// As [`crate::Client::clear_all`].
    pub fn clear_all(&self) -> Result<u64, Error> {
        self.runtime.block_on(self.inner.clear_all())
    }

    /// See [`crate::Client::set_if`].
    ///
    /// # Errors
    /// As [`crate::Client::set_if`].
    pub fn set_if(
        &self,
        key: &str,
        expected: Option<SecretString>,
        value: impl Into<SecretString>,
        options: SetOptions,
    ) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.set_if(key, expected, value, options))
    }

    /// See [`crate::Client::delete_if`].
    ///
    /// # Errors
    /// As [`crate::Client::delete_if`].
    pub fn delete_if(
        &self,
        key: &str,
        expected: Option<SecretString>,
        options: DeleteOptions,
    ) -> Result<(), Error> {
        self.runtime
            .block_on(self.inner.delete_if(key, expected, options))
    }

    /// See [`crate::Client::write_batch`].
    ///
    /// # Errors
    /// As [`crate::Client::write_batch`].
    pub fn write_batch(&self, ops: Vec<BatchOp>) -> Result<(), Error> {
        self.runtime.block_on(self.inner.write_batch(ops))
    }

    /// See [`crate::Client::watch`].
    ///
    /// # Errors
    /// As [`crate::Client::watch`].
    pub fn watch(&self, filter: WatchFilter) -> Result<u64, Error> {
        self.runtime.block_on(self.inner.watch(filter))
    }

    /// See [`crate::Client::poll_events`].
    ///
    /// # Errors
    /// As [`crate::Client::poll_events`].
    pub fn poll_events(&self, watcher: u64, wait: std::time::Duration) -> Result<Events, Error> {
        self.runtime.block_on(self.inner.poll_events(watcher, wait))
    }

    /// See [`crate::Client::unwatch`].
    ///
    /// # Errors
    /// As [`crate::Client::unwatch`].
    pub fn unwatch(&self, watcher: u64) -> Result<(), Error> {
        self.runtime.block_on(self.inner.unwatch(watcher))
    }

    /// See [`crate::Client::export`].
    ///
    /// # Errors
    /// As [`crate::Client::export`].
    pub fn export(
        &self,
        service: Option<&str>,
    ) -> Result<Vec<securestore_proto::ExportedItem>, Error> {
        self.runtime.block_on(self.inner.export(service))
    }

    /// See [`crate::Client::import`].
    ///
    /// # Errors
    /// As [`crate::Client::import`].
    pub fn import(
        &self,
        items: &[securestore_proto::ExportedItem],
        replace: bool,
    ) -> Result<securestore_proto::ImportReport, Error> {
        self.runtime.block_on(self.inner.import(items, replace))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use futures::{SinkExt, StreamExt};
    use securestore_proto::limits::max_frame_len;
    use securestore_proto::tarpc::{ClientMessage, Request, Response};
    use securestore_proto::{SecureStoreRequest, SecureStoreResponse, codec};
    use tokio::net::UnixListener;

    use super::*;

    use crate::client::tests::MAX_VALUE;

    /// A fake daemon on its own thread: one connection; the `clear` of service "slow" is answered
    /// late (after `late`), every other at once with the number in its service name.
    fn fake_daemon(path: std::path::PathBuf, late: Duration) -> std::thread::JoinHandle<()> {
        let listener = {
            let std = std::os::unix::net::UnixListener::bind(&path).expect("bind");
            std.set_nonblocking(true).expect("nonblocking");
            std
        };
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = UnixListener::from_std(listener).expect("listener");
                let frames = crate::client::tests::accept(&listener).await;
                let limit = max_frame_len(MAX_VALUE);
                let (mut tx, mut rx) = frames.split();
                let (answers, mut to_send) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
                let writer = tokio::spawn(async move {
                    while let Some((id, n)) = to_send.recv().await {
                        let response = Response {
                            request_id: id,
                            message: Ok(SecureStoreResponse::Clear(Ok(n))),
                        };
                        let frame = codec::encode(&response, limit).expect("encode");
                        if tx.send(bytes::Bytes::from(frame)).await.is_err() {
                            return;
                        }
                    }
                });
                while let Some(Ok(frame)) = rx.next().await {
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
                    let service = service.expect("a service");
                    if service == "slow" {
                        let answers = answers.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(late).await;
                            let _ = answers.send((id, 999));
                        });
                    } else {
                        let n = service[1..].parse().expect("a number");
                        let _ = answers.send((id, n));
                    }
                }
                drop(answers);
                let _ = writer.await;
            });
        })
    }

    #[test]
    fn blocking_calls_from_many_threads_time_out_alone_and_get_their_own_answers() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("daemon.sock");
        let daemon = fake_daemon(path.clone(), Duration::from_millis(700));
        let options = ConnectOptions {
            timeout: Duration::from_millis(500),
            ..ConnectOptions::default()
        };
        let client = Client::connect_with(&path, "@tests/blocking", options).expect("connect");
        std::thread::scope(|threads| {
            for thread in 0..4u64 {
                let client = &client;
                threads.spawn(move || {
                    for i in 0..50u64 {
                        if i % 10 == 3 {
                            let started = Instant::now();
                            let slow = client.clear(Some("slow"));
                            assert!(matches!(slow, Err(Error::TimedOut)), "{slow:?}");
                            assert!(started.elapsed() < Duration::from_secs(2));
                            continue;
                        }
                        let n = thread * 1000 + i;
                        let cleared = client.clear(Some(&format!("s{n}"))).expect("cleared");
                        assert_eq!(cleared, n, "another call's answer");
                    }
                });
            }
        });
        drop(client);
        daemon.join().expect("the fake daemon");
    }
}
