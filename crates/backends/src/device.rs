//! The accessibility classes' policy, the same on every backend: [`Gated`] wraps a backend and
//! refuses what the device state does not allow, and tells the backend of each state change so it
//! can load or wipe its keys.
//!
//! The policy check is the floor every backend gets. The default backend also enforces it with keys
//! (a `WHEN_UNLOCKED*` item's data key is wiped from memory on lock, so even a read below this layer
//! fails), and the Keychain enforces it on iOS; this layer makes the answers identical everywhere:
//! [`BackendError::Locked`], never "absent" and never a stale value.

use std::sync::{Arc, RwLock};

use crate::{
    Action, Applied, Backend, BackendError, Change, DeviceSignal, DeviceStatus, Expect, Exported,
    Item, ItemName, Key, KeychainAccessible, ProjectScope, Reader, SecretString, ServiceName,
    Write,
};

/// The device state, shared by the storage owner (which changes it) and the reader thread.
#[derive(Debug)]
pub struct DeviceGate(RwLock<DeviceStatus>);

impl DeviceGate {
    /// The current state.
    pub fn status(&self) -> DeviceStatus {
        // A poisoned lock still holds a whole `Copy` value: read it.
        *self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, status: DeviceStatus) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = status;
    }

    /// Refuses an item of `class` the state does not allow.
    fn check_read(&self, name: &ItemName, class: KeychainAccessible) -> Result<(), BackendError> {
        if self.status().allows(class) {
            Ok(())
        } else {
            Err(BackendError::locked(name))
        }
    }

    /// Refuses an item a read found, if its class is unavailable now.
    fn check_found(
        &self,
        name: &ItemName,
        found: Option<Item>,
    ) -> Result<Option<Item>, BackendError> {
        if let Some(item) = &found {
            self.check_read(name, item.accessible)?;
        }
        Ok(found)
    }

    /// Refuses storing an item of `class` now: without a passcode a passcode class is refused as
    /// such, otherwise as a read would be.
    fn check_store(&self, name: &ItemName, class: KeychainAccessible) -> Result<(), BackendError> {
        if class == KeychainAccessible::WhenPasscodeSetThisDeviceOnly && !self.status().passcode_set
        {
            return Err(BackendError::PasscodeNotSet);
        }
        self.check_read(name, class)
    }
}

/// A backend under the device-state policy. The daemon drives every backend through one.
pub struct Gated {
    inner: Box<dyn Backend>,
    gate: Arc<DeviceGate>,
    /// A removed passcode's items could not all be deleted yet: retried before each later write.
    passcode_items_left: bool,
}

impl std::fmt::Debug for Gated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gated")
            .field("backend", &self.inner.name())
            .field("device", &self.gate.status())
            .finish()
    }
}

impl Gated {
    /// Puts `inner` under the policy, in state `initial`. If the backend cannot take that state
    /// (its keys are bound to an unlock secret nobody has given yet), it starts before the first
    /// unlock instead, and says so in the log.
    ///
    /// # Errors
    /// When the backend refuses even the state before the first unlock.
    pub fn new(mut inner: Box<dyn Backend>, initial: DeviceStatus) -> Result<Self, BackendError> {
        let status = match inner.device_changed(initial, None) {
            Ok(()) => initial,
            Err(BackendError::UnlockSecretRequired) => {
                let fallback = DeviceStatus {
                    passcode_set: initial.passcode_set,
                    ..DeviceStatus::BEFORE_FIRST_UNLOCK
                };
                tracing::warn!(
                    wanted = %initial,
                    state = %fallback,
                    "the store's keys are bound to the host's unlock secret: starting before the first unlock; unlock with the secret"
                );
                inner.device_changed(fallback, None)?;
                fallback
            }
            Err(err) => return Err(err),
        };
        tracing::info!(device = %status, backend = inner.name(), "device state at start");
        Ok(Self {
            inner,
            gate: Arc::new(DeviceGate(RwLock::new(status))),
            passcode_items_left: false,
        })
    }

    /// Retries deleting a removed passcode's items, if an earlier attempt failed.
    fn finish_passcode_removal(&mut self) {
        if !self.passcode_items_left || self.gate.status().passcode_set {
            self.passcode_items_left = false;
            return;
        }
        match self
            .inner
            .delete_class(KeychainAccessible::WhenPasscodeSetThisDeviceOnly)
        {
            Ok(deleted) => {
                tracing::info!(
                    deleted = deleted.len(),
                    "finished deleting the removed passcode's items"
                );
                self.passcode_items_left = false;
            }
            Err(err) => {
                tracing::warn!(error = %err, "still cannot delete the removed passcode's items")
            }
        }
    }

    /// The current device state.
    pub fn status(&self) -> DeviceStatus {
        self.gate.status()
    }

    /// Applies a device signal: returns the new state and the items it deleted (a removed passcode
    /// deletes every `WHEN_PASSCODE_SET_THIS_DEVICE_ONLY` item, durably, before it answers).
    ///
    /// An unlock loads keys before the state allows their items; a lock changes the state first,
    /// then wipes the keys, so no read sees the state allow an item whose key is gone.
    ///
    /// # Errors
    /// A wrong or missing unlock secret, or a storage failure; the state is then unchanged.
    pub fn signal(
        &mut self,
        signal: &DeviceSignal,
    ) -> Result<(DeviceStatus, Vec<(ProjectScope, ItemName)>), BackendError> {
        let before = self.gate.status();
        let after = before.after(signal);
        let mut deleted = Vec::new();
        self.finish_passcode_removal();
        match signal {
            DeviceSignal::Unlock { secret } => {
                if secret
                    .as_ref()
                    .is_some_and(|s| s.expose_secret().trim().is_empty())
                {
                    return Err(BackendError::InvalidUnlockSecret(
                        "the unlock secret is empty; give the host's secret, or none",
                    ));
                }
                self.inner.device_changed(after, secret.as_ref())?;
                self.gate.set(after);
            }
            DeviceSignal::Lock => {
                self.gate.set(after);
                if let Err(err) = self.inner.device_changed(after, None) {
                    // Wiping keys cannot fail for our backends; if one does, stay locked by policy.
                    tracing::error!(error = %err, "a backend failed to wipe its keys on lock");
                }
            }
            DeviceSignal::PasscodeSet => self.gate.set(after),
            // Fail closed: the state changes first, so those items are unavailable from now on
            // even if deleting them fails; the deletion is retried until it succeeds.
            DeviceSignal::PasscodeRemoved => {
                self.gate.set(after);
                self.passcode_items_left = true;
                deleted = self
                    .inner
                    .delete_class(KeychainAccessible::WhenPasscodeSetThisDeviceOnly)?;
                self.passcode_items_left = false;
            }
        }
        tracing::info!(signal = signal.name(), from = %before, to = %after, deleted = deleted.len(), "device state changed");
        Ok((after, deleted))
    }

    /// The checks a write passes before it reaches the backend, in the current state.
    fn screen(&mut self, write: &Write) -> Result<(), BackendError> {
        match write {
            Write::Set {
                project,
                name,
                accessible,
                ..
            } => {
                self.gate.check_store(name, *accessible)?;
                self.check_replaceable(project, name)
            }
            Write::Change { project, change } => self.screen_change(project, change),
            Write::Batch { project, changes } => changes
                .iter()
                .try_for_each(|change| self.screen_change(project, change)),
            Write::Import {
                project,
                items,
                replace,
            } => items.iter().try_for_each(|(name, _, class)| {
                self.gate.check_store(name, *class)?;
                if *replace {
                    self.check_replaceable(project, name)?;
                }
                Ok(())
            }),
            Write::Delete { .. } | Write::DeleteProject { .. } | Write::Clear { .. } => Ok(()),
        }
    }

    /// An item the state keeps from being read cannot be replaced either (not even by one of an
    /// available class, which would plant a value and drop its protection). Checked only while not
    /// unlocked.
    fn check_replaceable(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
    ) -> Result<(), BackendError> {
        if self.gate.status() == DeviceStatus::UNLOCKED {
            return Ok(());
        }
        self.get(project, name).map(|_| ())
    }

    /// A change that compares values needs to read the current one, which its class must allow.
    fn screen_change(
        &mut self,
        project: &ProjectScope,
        change: &Change,
    ) -> Result<(), BackendError> {
        if let Action::Set { accessible, .. } = &change.action {
            self.gate.check_store(&change.name, *accessible)?;
            self.check_replaceable(project, &change.name)?;
        }
        if matches!(change.expected, Expect::Value(_)) {
            self.get(project, &change.name)?;
        }
        Ok(())
    }
}

impl Backend for Gated {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn get(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
    ) -> Result<Option<Item>, BackendError> {
        self.gate.check_found(name, self.inner.get(project, name)?)
    }

    fn set(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
        value: &SecretString,
        accessible: KeychainAccessible,
    ) -> Result<(), BackendError> {
        self.gate.check_store(name, accessible)?;
        self.inner.set(project, name, value, accessible)
    }

    fn delete(&mut self, project: &ProjectScope, name: &ItemName) -> Result<(), BackendError> {
        self.inner.delete(project, name)
    }

    fn delete_project(&mut self, project: &ProjectScope) -> Result<(), BackendError> {
        self.inner.delete_project(project)
    }

    fn contains(&mut self, project: &ProjectScope, name: &ItemName) -> Result<bool, BackendError> {
        self.inner.contains(project, name)
    }

    fn list_keys(
        &mut self,
        project: &ProjectScope,
        service: &ServiceName,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Key>, BackendError> {
        self.inner.list_keys(project, service, after, limit)
    }

    fn list_services(
        &mut self,
        project: &ProjectScope,
        after: Option<&ServiceName>,
        limit: usize,
    ) -> Result<Vec<ServiceName>, BackendError> {
        self.inner.list_services(project, after, limit)
    }

    fn clear(
        &mut self,
        project: &ProjectScope,
        service: Option<&ServiceName>,
    ) -> Result<u64, BackendError> {
        self.inner.clear(project, service)
    }

    fn apply(&mut self, write: &Write) -> Result<Applied, BackendError> {
        self.screen(write)?;
        self.inner.apply(write)
    }

    fn write_batch(&mut self, writes: &[Write]) -> Vec<Result<Applied, BackendError>> {
        self.finish_passcode_removal();
        // Unlocked with a passcode, every write passes: hand the batch over whole (group commit).
        if self.gate.status() == DeviceStatus::UNLOCKED {
            return self.inner.write_batch(writes);
        }
        let screened: Vec<Result<(), BackendError>> =
            writes.iter().map(|write| self.screen(write)).collect();
        if screened.iter().all(Result::is_ok) {
            return self.inner.write_batch(writes);
        }
        // Some are refused: apply the others one by one (rare; only while locked).
        writes
            .iter()
            .zip(screened)
            .map(|(write, screened)| {
                screened?;
                self.inner
                    .write_batch(std::slice::from_ref(write))
                    .pop()
                    .unwrap_or(Err(BackendError::Internal(
                        "no result for a write".to_owned(),
                    )))
            })
            .collect()
    }

    fn export(
        &mut self,
        project: &ProjectScope,
        service: Option<&ServiceName>,
        after: Option<&ItemName>,
        limit: usize,
    ) -> Result<Vec<Exported>, BackendError> {
        let items = self.inner.export(project, service, after, limit)?;
        for exported in &items {
            self.gate
                .check_read(&exported.name, exported.item.accessible)?;
        }
        Ok(items)
    }

    fn delete_class(
        &mut self,
        class: KeychainAccessible,
    ) -> Result<Vec<(ProjectScope, ItemName)>, BackendError> {
        self.inner.delete_class(class)
    }

    fn device_changed(
        &mut self,
        state: DeviceStatus,
        secret: Option<&SecretString>,
    ) -> Result<(), BackendError> {
        self.inner.device_changed(state, secret)
    }

    fn rotate_master_key(&mut self) -> Result<(), BackendError> {
        self.inner.rotate_master_key()
    }

    fn reader(&mut self) -> Result<Option<Box<dyn Reader>>, BackendError> {
        Ok(self.inner.reader()?.map(|inner| {
            Box::new(GatedReader {
                inner,
                gate: self.gate.clone(),
            }) as Box<dyn Reader>
        }))
    }

    fn close(self: Box<Self>) -> Result<(), BackendError> {
        self.inner.close()
    }
}

/// A [`Reader`] under the same policy and state as its [`Gated`] backend.
struct GatedReader {
    inner: Box<dyn Reader>,
    gate: Arc<DeviceGate>,
}

impl Reader for GatedReader {
    fn get(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
    ) -> Result<Option<Item>, BackendError> {
        self.gate.check_found(name, self.inner.get(project, name)?)
    }

    fn contains(&mut self, project: &ProjectScope, name: &ItemName) -> Result<bool, BackendError> {
        self.inner.contains(project, name)
    }

    fn list_keys(
        &mut self,
        project: &ProjectScope,
        service: &ServiceName,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Key>, BackendError> {
        self.inner.list_keys(project, service, after, limit)
    }

    fn list_services(
        &mut self,
        project: &ProjectScope,
        after: Option<&ServiceName>,
        limit: usize,
    ) -> Result<Vec<ServiceName>, BackendError> {
        self.inner.list_services(project, after, limit)
    }
}
