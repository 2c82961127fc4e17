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
mod datakeys;
pub mod device;
mod error;
pub mod failpoint;
mod keyfile;
mod locked;
pub mod memory;
pub mod paths;
pub mod sqlite;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use device::{DeviceGate, Gated};
pub use error::BackendError;
pub use keyfile::{create_private_dir, sync_dir};
pub use securestore_proto::{
    DeviceSignal, DeviceStatus, ImportReport, Item, Key, KeychainAccessible, LockState, ProjectId,
    SecretString, ServiceName,
};

/// One item of an export: its name, its value and class, and when it was last written.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The item.
    pub name: ItemName,
    /// Its value and class.
    pub item: Item,
    /// When it was last written, in Unix milliseconds; 0 when the backend does not record it.
    pub written_at: i64,
}

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
    /// [`Backend::clear`]: answered with [`Applied::Cleared`].
    Clear {
        /// The connection's binding.
        project: ProjectScope,
        /// The service to empty, or `None` for every service of the project.
        service: Option<ServiceName>,
    },
    /// One [`Change`] (compare-and-set): answered with [`Applied::Conflict`] if its condition fails.
    Change {
        /// The connection's binding.
        project: ProjectScope,
        /// The change.
        change: Change,
    },
    /// Several [`Change`]s, all or nothing, in one transaction: if any condition fails, nothing is
    /// applied and the answer is [`Applied::Conflict`] with the index of the first that failed.
    Batch {
        /// The connection's binding.
        project: ProjectScope,
        /// The changes, applied in order; each condition sees the earlier changes.
        changes: Vec<Change>,
    },
    /// Items restored from an export, all or nothing: answered with [`Applied::Imported`]. An item
    /// that exists already is kept (counted as skipped) unless `replace`.
    Import {
        /// The connection's binding.
        project: ProjectScope,
        /// The items: name, value, class.
        items: Vec<(ItemName, SecretString, KeychainAccessible)>,
        /// Overwrite items that exist.
        replace: bool,
    },
}

/// One change of an item, optionally conditional on its current value.
#[derive(Debug, Clone)]
pub struct Change {
    /// The item.
    pub name: ItemName,
    /// What its current value must be for the change to apply.
    pub expected: Expect,
    /// What to do with it.
    pub action: Action,
}

/// A change's condition on the item's current value.
#[derive(Debug, Clone)]
pub enum Expect {
    /// No condition.
    Anything,
    /// The item must not exist.
    Absent,
    /// The item must exist with exactly this value (compared in constant time).
    Value(SecretString),
}

impl Expect {
    /// Whether `current` meets the condition. Values are compared in constant time over their
    /// bytes (their lengths are not hidden), so timing says nothing about where they differ.
    pub fn holds(&self, current: Option<&SecretString>) -> bool {
        use subtle::ConstantTimeEq;
        match (self, current) {
            (Self::Anything, _) | (Self::Absent, None) => true,
            (Self::Absent, Some(_)) | (Self::Value(_), None) => false,
            (Self::Value(expected), Some(current)) => bool::from(
                expected
                    .expose_secret()
                    .as_bytes()
                    .ct_eq(current.expose_secret().as_bytes()),
            ),
        }
    }
}

/// What a [`Change`] does once its condition holds.
#[derive(Debug, Clone)]
pub enum Action {
    /// Store this value, as [`Backend::set`].
    Set {
        /// The value.
        value: SecretString,
        /// Its class.
        accessible: KeychainAccessible,
    },
    /// Remove the item, as [`Backend::delete`].
    Delete,
}

/// What an applied [`Write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The write took effect.
    Done,
    /// A [`Write::Clear`] deleted this many items.
    Cleared(u64),
    /// A condition did not hold: nothing of the write was applied. `index` is the failing change's
    /// position in a [`Write::Batch`] (0 for a [`Write::Change`]).
    Conflict {
        /// The first change whose condition failed.
        index: usize,
    },
    /// A [`Write::Import`] was applied.
    Imported(ImportReport),
}

/// Applies a [`Write::Import`] with single-item calls; a backend that applies writes in a
/// transaction makes it all or nothing.
fn import_items<B: Backend + ?Sized>(
    backend: &mut B,
    project: &ProjectScope,
    items: &[(ItemName, SecretString, KeychainAccessible)],
    replace: bool,
) -> Result<Applied, BackendError> {
    let mut report = ImportReport::default();
    for (name, value, accessible) in items {
        let exists = backend.contains(project, name)?;
        if exists && !replace {
            report.skipped += 1;
            continue;
        }
        backend.set(project, name, value, *accessible)?;
        if exists {
            report.replaced += 1;
        } else {
            report.added += 1;
        }
    }
    Ok(Applied::Imported(report))
}

/// The default [`Backend::export`]: walks the listing and reads each item.
fn export_by_listing<B: Backend + ?Sized>(
    backend: &mut B,
    project: &ProjectScope,
    service: Option<&ServiceName>,
    after: Option<&ItemName>,
    limit: usize,
) -> Result<Vec<Exported>, BackendError> {
    let mut services = Vec::new();
    match service {
        Some(service) => services.push(service.clone()),
        None => {
            let mut from: Option<ServiceName> = None;
            loop {
                let page = backend.list_services(project, from.as_ref(), 256)?;
                let Some(last) = page.last().cloned() else {
                    break;
                };
                services.extend(page);
                from = Some(last);
            }
        }
    }
    let mut out = Vec::new();
    for service in services {
        let mut from = match after {
            Some(after) if after.service > service => continue,
            Some(after) if after.service == service => Some(after.key.clone()),
            _ => None,
        };
        loop {
            let keys = backend.list_keys(project, &service, from.as_ref(), 256)?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            for key in keys {
                let name = ItemName {
                    service: service.clone(),
                    key,
                };
                if let Some(item) = backend.get(project, &name)?
                    && !item.accessible.this_device_only()
                {
                    out.push(Exported {
                        name,
                        item,
                        written_at: 0,
                    });
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            from = Some(last);
        }
    }
    Ok(out)
}

/// Checks every condition of `changes` in order (each against the state the earlier changes leave),
/// then, only if all hold, applies them all. The owner thread is the only writer, so nothing can
/// change between the check and the writes.
fn apply_changes<B: Backend + ?Sized>(
    backend: &mut B,
    project: &ProjectScope,
    changes: &[Change],
) -> Result<Applied, BackendError> {
    let mut planned: std::collections::HashMap<&ItemName, Option<&SecretString>> =
        std::collections::HashMap::new();
    for (index, change) in changes.iter().enumerate() {
        if !matches!(change.expected, Expect::Anything) {
            let holds = match planned.get(&change.name) {
                Some(value) => change.expected.holds(*value),
                None => {
                    let current = backend.get(project, &change.name)?;
                    change
                        .expected
                        .holds(current.as_ref().map(|item| &item.value))
                }
            };
            if !holds {
                return Ok(Applied::Conflict { index });
            }
        }
        let after = match &change.action {
            Action::Set { value, .. } => Some(value),
            Action::Delete => None,
        };
        planned.insert(&change.name, after);
    }
    for change in changes {
        match &change.action {
            Action::Set { value, accessible } => {
                backend.set(project, &change.name, value, *accessible)?;
            }
            Action::Delete => backend.delete(project, &change.name)?,
        }
    }
    Ok(Applied::Done)
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

    /// As [`Backend::contains`].
    ///
    /// # Errors
    /// As [`Backend::get`].
    fn contains(&mut self, project: &ProjectScope, name: &ItemName) -> Result<bool, BackendError> {
        Ok(self.get(project, name)?.is_some())
    }

    /// As [`Backend::list_keys`].
    ///
    /// # Errors
    /// Storage failures.
    fn list_keys(
        &mut self,
        project: &ProjectScope,
        service: &ServiceName,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Key>, BackendError>;

    /// As [`Backend::list_services`].
    ///
    /// # Errors
    /// Storage failures.
    fn list_services(
        &mut self,
        project: &ProjectScope,
        after: Option<&ServiceName>,
        limit: usize,
    ) -> Result<Vec<ServiceName>, BackendError>;
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

    /// Whether item `name` exists in `project`: a get that does not hand the value on.
    ///
    /// # Errors
    /// As [`Backend::get`].
    fn contains(&mut self, project: &ProjectScope, name: &ItemName) -> Result<bool, BackendError> {
        Ok(self.get(project, name)?.is_some())
    }

    /// The keys of `service` in `project`, sorted by their bytes, only those after `after`, at most
    /// `limit` of them.
    ///
    /// # Errors
    /// Storage failures.
    fn list_keys(
        &mut self,
        project: &ProjectScope,
        service: &ServiceName,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Key>, BackendError>;

    /// The services of `project` holding at least one item, sorted, after `after`, at most `limit`.
    ///
    /// # Errors
    /// Storage failures.
    fn list_services(
        &mut self,
        project: &ProjectScope,
        after: Option<&ServiceName>,
        limit: usize,
    ) -> Result<Vec<ServiceName>, BackendError>;

    /// Deletes every item of `service` in `project` (of every service when `None`), and returns how
    /// many there were. Durable like a delete.
    ///
    /// # Errors
    /// Storage failures.
    fn clear(
        &mut self,
        project: &ProjectScope,
        service: Option<&ServiceName>,
    ) -> Result<u64, BackendError>;

    /// Applies one [`Write`] with the single-item calls above. Conditions are checked before anything
    /// is changed; a backend that applies writes in a transaction makes a [`Write::Batch`] atomic.
    ///
    /// # Errors
    /// As the call it makes.
    fn apply(&mut self, write: &Write) -> Result<Applied, BackendError> {
        match write {
            Write::Set {
                project,
                name,
                value,
                accessible,
            } => self
                .set(project, name, value, *accessible)
                .map(|()| Applied::Done),
            Write::Delete { project, name } => self.delete(project, name).map(|()| Applied::Done),
            Write::DeleteProject { project } => {
                self.delete_project(project).map(|()| Applied::Done)
            }
            Write::Clear { project, service } => {
                self.clear(project, service.as_ref()).map(Applied::Cleared)
            }
            Write::Change { project, change } => {
                apply_changes(self, project, std::slice::from_ref(change))
            }
            Write::Batch { project, changes } => apply_changes(self, project, changes),
            Write::Import {
                project,
                items,
                replace,
            } => import_items(self, project, items, *replace),
        }
    }

    /// Exportable items of `project` (every class but the `*_THIS_DEVICE_ONLY` ones), of `service`
    /// or of every service, ordered by (service, key), after `after`, at most `limit`.
    ///
    /// # Errors
    /// As [`Backend::get`] for any item it reads, [`BackendError::Locked`] among them.
    fn export(
        &mut self,
        project: &ProjectScope,
        service: Option<&ServiceName>,
        after: Option<&ItemName>,
        limit: usize,
    ) -> Result<Vec<Exported>, BackendError> {
        export_by_listing(self, project, service, after, limit)
    }

    /// Deletes, durably, every item of `class` in every project, and returns which. Used when the
    /// passcode is removed, for `WHEN_PASSCODE_SET_THIS_DEVICE_ONLY`.
    ///
    /// Every backend the daemon ships implements it (the conformance suite checks); the default is
    /// for test doubles.
    ///
    /// # Errors
    /// Storage failures; on failure none is deleted.
    fn delete_class(
        &mut self,
        _class: KeychainAccessible,
    ) -> Result<Vec<(ProjectScope, ItemName)>, BackendError> {
        Err(BackendError::Unsupported("deleting the items of a class"))
    }

    /// Told of every device state change before it takes effect (an unlock) or after (a lock), so a
    /// backend that keeps keys per availability group can load or wipe them. `secret` is the host's
    /// unlock secret, with an unlock.
    ///
    /// # Errors
    /// [`BackendError::WrongUnlockSecret`] or [`BackendError::UnlockSecretRequired`]: the state does
    /// not change.
    fn device_changed(
        &mut self,
        _state: DeviceStatus,
        _secret: Option<&SecretString>,
    ) -> Result<(), BackendError> {
        Ok(())
    }

    /// Replaces the master key, crash-safely; see the default backend.
    ///
    /// # Errors
    /// [`BackendError::Unsupported`] for backends whose keys live in a platform keystore.
    fn rotate_master_key(&mut self) -> Result<(), BackendError> {
        Err(BackendError::Unsupported(
            "master-key rotation (the platform keystore holds this backend's keys)",
        ))
    }

    /// Applies `writes` in order, as one durable unit where the backend can (one transaction, one
    /// sync: group commit), and returns each write's own result. Every write is durable when this
    /// returns. The default applies them one by one.
    fn write_batch(&mut self, writes: &[Write]) -> Vec<Result<Applied, BackendError>> {
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
