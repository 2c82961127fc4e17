//! Where securestore keeps values: the [`Backend`] trait and the backends that implement it.
//!
//! The daemon's single storage owner drives exactly one backend. Every function takes the
//! connection's [`ProjectScope`] first, so a backend addresses rows by (project, service, key) and no
//! call can name another project's rows. The default backend, [`sqlite::SqliteBackend`], seals every
//! value with an AEAD bound to its row and commits durably before it returns.
// `unsafe` is denied everywhere but `locked`, which pins the master key's memory (one syscall).
#![deny(unsafe_code)]

#[cfg(feature = "android")]
pub mod android;
pub mod apple;
mod crypto;
mod error;
mod keyfile;
mod locked;
pub mod memory;
pub mod paths;
pub mod sqlite;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use error::BackendError;
pub use keyfile::{create_private_dir, sync_dir};
pub use securestore_proto::{Item, Key, KeychainAccessible, ProjectId, SecretString, ServiceName};

/// The project a connection was bound to in its handshake.
///
/// Only the daemon's handshake creates one, from the project the peer proved it may use; the storage
/// layer takes it as the first argument of every call and never takes a project from anywhere else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProjectScope(ProjectId);

impl ProjectScope {
    /// Binds to `project`. Call this only where a connection's identity is established.
    pub fn bind(project: ProjectId) -> Self {
        Self(project)
    }

    /// The bound project.
    pub fn project(&self) -> &ProjectId {
        &self.0
    }
}

/// Which item inside a project: its service and key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemName {
    /// The `keychainService` namespace.
    pub service: ServiceName,
    /// The key inside that service.
    pub key: Key,
}

/// One write, as the daemon's storage owner hands them over in batches.
#[derive(Debug)]
pub enum Write {
    /// [`Backend::set`].
    Set {
        /// The connection's binding.
        project: ProjectScope,
        /// The item.
        name: ItemName,
        /// The value.
        value: SecretString,
        /// Its class.
        accessible: KeychainAccessible,
    },
    /// [`Backend::delete`].
    Delete {
        /// The connection's binding.
        project: ProjectScope,
        /// The item.
        name: ItemName,
    },
    /// [`Backend::delete_project`].
    DeleteProject {
        /// The project to empty.
        project: ProjectScope,
    },
}

/// Reads served on their own thread, beside the owner's writes, so a read never waits for a
/// write's sync. A backend offers one through [`Backend::reader`] when its storage allows it.
pub trait Reader: Send {
    /// As [`Backend::get`]; sees every write that has been acknowledged.
    ///
    /// # Errors
    /// As [`Backend::get`].
    fn get(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
    ) -> Result<Option<Item>, BackendError>;
}

/// A place values are stored. Driven by one owner thread; blocking calls are expected.
///
/// Implementations turn their platform's failures into [`BackendError`] in one place.
pub trait Backend: Send {
    /// A short name for logs, e.g. `"sqlite"`.
    fn name(&self) -> &'static str;

    /// The item `name` in `project`, or `None`.
    ///
    /// # Errors
    /// [`BackendError::CannotDecrypt`] if the stored item fails authentication; other variants for
    /// storage failures.
    fn get(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
    ) -> Result<Option<Item>, BackendError>;

    /// Stores `value` as item `name` in `project`, replacing any earlier one; returns once durable.
    ///
    /// # Errors
    /// [`BackendError::StorageFull`] when there is no room; other variants for storage failures.
    fn set(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
        value: &SecretString,
        accessible: KeychainAccessible,
    ) -> Result<(), BackendError>;

    /// Removes item `name` from `project`; a missing item is not an error. Returns once durable.
    ///
    /// # Errors
    /// Storage failures.
    fn delete(&mut self, project: &ProjectScope, name: &ItemName) -> Result<(), BackendError>;

    /// Removes every item of `project`, in every service. Used when a project is unregistered, so a
    /// project id registered again starts empty.
    ///
    /// # Errors
    /// Storage failures; on failure no item is removed.
    fn delete_project(&mut self, project: &ProjectScope) -> Result<(), BackendError>;

    /// Applies one [`Write`] with the single-item calls above.
    ///
    /// # Errors
    /// As the call it makes.
    fn apply(&mut self, write: &Write) -> Result<(), BackendError> {
        match write {
            Write::Set {
                project,
                name,
                value,
                accessible,
            } => self.set(project, name, value, *accessible),
            Write::Delete { project, name } => self.delete(project, name),
            Write::DeleteProject { project } => self.delete_project(project),
        }
    }

    /// Applies `writes` in order, as one durable unit where the backend can (one transaction, one
    /// sync: group commit), and returns each write's own result. Every write is durable when this
    /// returns. The default applies them one by one.
    fn write_batch(&mut self, writes: &[Write]) -> Vec<Result<(), BackendError>> {
        writes.iter().map(|write| self.apply(write)).collect()
    }

    /// A [`Reader`] on the same storage, for a thread of its own; `None` if reads must go through
    /// this backend.
    ///
    /// # Errors
    /// If the backend offers a reader but cannot open one.
    fn reader(&mut self) -> Result<Option<Box<dyn Reader>>, BackendError> {
        Ok(None)
    }

    /// Flushes and releases the store. Called once, at shutdown.
    ///
    /// # Errors
    /// Storage failures while closing; the data already acknowledged is durable regardless.
    fn close(self: Box<Self>) -> Result<(), BackendError>;
}
