//! The storage owner: one thread that holds the backend and runs every storage call in turn.
//!
//! Async code sends a [`Command`] over a bounded channel and awaits its answer, so blocking SQLite
//! work never runs on the executor's threads and no two calls touch the backend at once. Because one
//! thread applies them one after another, concurrent sets of one key are each applied whole, in the
//! order they arrive.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::thread::JoinHandle;

use securestore_backends::{
    Backend, BackendError, Item, ItemName, KeychainAccessible, ProjectScope, SecretString,
};
use tokio::sync::{mpsc, oneshot};

/// Commands waiting for the owner; past this, senders wait (backpressure on clients).
const QUEUE_DEPTH: usize = 1024;

type Reply<T> = oneshot::Sender<Result<T, BackendError>>;

enum Command {
    Get {
        project: ProjectScope,
        name: ItemName,
        reply: Reply<Option<Item>>,
    },
    Set {
        project: ProjectScope,
        name: ItemName,
        value: SecretString,
        accessible: KeychainAccessible,
        reply: Reply<()>,
    },
    Delete {
        project: ProjectScope,
        name: ItemName,
        reply: Reply<()>,
    },
    DeleteProject {
        project: ProjectScope,
        reply: Reply<()>,
    },
}

/// A cheap, cloneable way to reach the storage owner. The owner stops when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct StoreHandle {
    commands: mpsc::Sender<Command>,
}

/// Starts the owner thread on `backend`. Join the returned thread after dropping every handle; it
/// closes the backend before it ends.
pub(crate) fn spawn(backend: Box<dyn Backend>) -> std::io::Result<(StoreHandle, JoinHandle<()>)> {
    let (commands, queue) = mpsc::channel(QUEUE_DEPTH);
    let thread = std::thread::Builder::new()
        .name("securestore-storage".to_owned())
        .spawn(move || own(backend, queue))?;
    Ok((StoreHandle { commands }, thread))
}

fn own(mut backend: Box<dyn Backend>, mut queue: mpsc::Receiver<Command>) {
    tracing::debug!(backend = backend.name(), "storage owner started");
    while let Some(command) = queue.blocking_recv() {
        // A panic in one call must not end storage for everyone: report it to that caller only.
        // The backends keep no state between calls that a panic could leave half-changed.
        let outcome = catch_unwind(AssertUnwindSafe(|| execute(backend.as_mut(), command)));
        if outcome.is_err() {
            tracing::error!("a storage call panicked; its caller gets an error, storage continues");
        }
    }
    let name = backend.name();
    match backend.close() {
        Ok(()) => tracing::info!(backend = name, "store closed cleanly"),
        Err(err) => {
            tracing::error!(backend = name, error = %anyhow::Error::from(err), "closing the store failed")
        }
    }
}

fn execute(backend: &mut dyn Backend, command: Command) {
    // A caller that gave up (its deadline passed) has dropped its receiver; the work stands regardless.
    match command {
        Command::Get {
            project,
            name,
            reply,
        } => {
            let _ = reply.send(backend.get(&project, &name));
        }
        Command::Set {
            project,
            name,
            value,
            accessible,
            reply,
        } => {
            let _ = reply.send(backend.set(&project, &name, &value, accessible));
        }
        Command::Delete {
            project,
            name,
            reply,
        } => {
            let _ = reply.send(backend.delete(&project, &name));
        }
        Command::DeleteProject { project, reply } => {
            let _ = reply.send(backend.delete_project(&project));
        }
    }
}

fn owner_gone() -> BackendError {
    BackendError::Internal(
        "the storage call was dropped (store closed, or the call panicked)".to_owned(),
    )
}

impl StoreHandle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, BackendError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .await
            .map_err(|_| owner_gone())?;
        answer.await.map_err(|_| owner_gone())?
    }

    pub(crate) async fn get(
        &self,
        project: ProjectScope,
        name: ItemName,
    ) -> Result<Option<Item>, BackendError> {
        self.call(|reply| Command::Get {
            project,
            name,
            reply,
        })
        .await
    }

    pub(crate) async fn set(
        &self,
        project: ProjectScope,
        name: ItemName,
        value: SecretString,
        accessible: KeychainAccessible,
    ) -> Result<(), BackendError> {
        self.call(|reply| Command::Set {
            project,
            name,
            value,
            accessible,
            reply,
        })
        .await
    }

    pub(crate) async fn delete(
        &self,
        project: ProjectScope,
        name: ItemName,
    ) -> Result<(), BackendError> {
        self.call(|reply| Command::Delete {
            project,
            name,
            reply,
        })
        .await
    }

    pub(crate) async fn delete_project(&self, project: ProjectScope) -> Result<(), BackendError> {
        self.call(|reply| Command::DeleteProject { project, reply })
            .await
    }
}
