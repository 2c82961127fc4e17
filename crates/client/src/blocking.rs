//! A blocking [`Client`] for synchronous callers (Expo's `getItem` / `setItem`).
//!
//! It owns a single-threaded Tokio runtime and drives the async client on it, so it must not be used
//! from inside another Tokio runtime's async context.

use std::path::Path;

use securestore_proto::{DeleteOptions, GetOptions, Item, SecretString, SetOptions};

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
}
