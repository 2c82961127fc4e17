//! An in-process driver of the request handler, for the stateful fuzz target (`fuzz/`).
//!
//! It runs the same code a connection runs after its handshake (binding, name checks, size checks,
//! the storage owner) without a socket, so a fuzzer can send thousands of request sequences a second.
//! Built only with the `fuzzing` feature.

use std::sync::Arc;

use securestore_backends::Backend;
use securestore_proto::tarpc::context;
use securestore_proto::tarpc::server::Serve;
use securestore_proto::{SecureStore, SecureStoreRequest, SecureStoreResponse, ServiceError};
use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::connection::bind;
use crate::handler::{Bound, Handler};
use crate::store::{self, StoreHandle, Unsettled};
use securestore_proto::order::Turn;

/// The request handler on a backend, driven one request at a time.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    store: Option<StoreHandle>,
    threads: Vec<std::thread::JoinHandle<()>>,
    config: Config,
}

impl Harness {
    /// Starts the storage owner on `backend`, with the daemon's default limits and `config`.
    ///
    /// # Panics
    /// If the runtime or the owner thread cannot be started.
    pub fn new(backend: Box<dyn Backend>, config: Config) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let backend = securestore_backends::Gated::new(backend, config.device).expect("gate");
        let (store, threads) = store::spawn(backend).expect("storage threads");
        Self {
            runtime,
            store: Some(store),
            threads,
            config,
        }
    }

    /// Binds `project` as a handshake would, then serves `request` on that binding.
    ///
    /// # Errors
    /// The refusal, if the project cannot be bound.
    pub fn call(
        &self,
        project: &str,
        request: SecureStoreRequest,
    ) -> Result<SecureStoreResponse, ServiceError> {
        let (scope, token_hash) = bind(project, None, &self.config)?;
        let bound = Bound {
            scope: Arc::new(scope),
            token_hash,
            registry: self.config.registry.clone(),
            store: self.store.clone().expect("running"),
            max_value_bytes: self.config.max_value_bytes,
            shutdown: CancellationToken::new(),
            unsettled: Unsettled::default(),
            watchers: Default::default(),
        };
        let handler = Handler {
            bound: Arc::new(bound),
            turn: Turn::alone(),
        };
        let response = self
            .runtime
            .block_on(handler.serve().serve(context::current(), request));
        Ok(response.expect("the handler itself never fails a request"))
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop(self.store.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
