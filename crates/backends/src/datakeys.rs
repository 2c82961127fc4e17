//! The default backend's key hierarchy (after Android keystore2's super-encryption): one data key
//! per availability group, each wrapped by the master key and, for the groups that need an unlocked
//! device once the host gives an unlock secret, by a key derived from that secret too.
//!
//! ```text
//! master key (file) ──wraps──▶ data key ALWAYS            ──seals──▶ ALWAYS* rows
//!                    ──wraps──▶ [unlock key ─wraps─▶] AFTER_FIRST_UNLOCK ─▶ AFTER_FIRST_UNLOCK* rows
//!                    ──wraps──▶ [unlock key ─wraps─▶] WHEN_UNLOCKED      ─▶ WHEN_UNLOCKED*, WHEN_PASSCODE_SET* rows
//! ```
//!
//! A wrapped data key lives in `meta` as `data_key/<group>`: the master key seals
//! `mode ‖ payload`, where mode 0 means the payload is the data key and mode 1 that it is the data
//! key sealed under the unlock key. In memory, [`DataKeys`] holds the unwrapped keys the device
//! state allows; on lock the `WHEN_UNLOCKED` key is dropped, and the cipher zeroizes it, so no code
//! path can open those rows until the next unlock brings it back.

use std::sync::RwLock;

use securestore_proto::Availability;
use sha2::Digest;
use zeroize::Zeroizing;

use crate::BackendError;
use crate::SecretString;
use crate::crypto::{KEY_LEN, Sealer};

/// How a data key is stored under the master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The master key alone wraps it.
    Master = 0,
    /// The unlock key wraps it inside the master key's wrap.
    Unlock = 1,
}

/// The `meta` row of `group`'s wrapped data key.
pub(crate) fn meta_name(group: Availability) -> String {
    format!("data_key/{}", group.index())
}

fn outer_aad(group: Availability) -> Vec<u8> {
    let mut aad = b"securestore/data-key/v1/".to_vec();
    aad.push(group.index() as u8);
    aad
}

fn inner_aad(group: Availability) -> Vec<u8> {
    let mut aad = b"securestore/data-key/unlock/v1/".to_vec();
    aad.push(group.index() as u8);
    aad
}

/// The key the host's unlock secret stands for. The host hands over a secret derived from the
/// user's credential (high entropy, stretched on its side), so one hash with a domain tag suffices.
pub(crate) fn unlock_key(secret: &SecretString) -> Sealer {
    let mut hash = sha2::Sha256::new();
    hash.update(b"securestore/unlock-secret/v1\0");
    hash.update(secret.expose_secret().as_bytes());
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&hash.finalize());
    Sealer::new(&key)
}

/// A fresh random data key.
pub(crate) fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, BackendError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(key.as_mut_slice())
        .map_err(|e| BackendError::Crypto(format!("no randomness: {e}")))?;
    Ok(key)
}

/// Wraps `key` for `group` under `master` (and `unlock`, when given).
pub(crate) fn wrap(
    master: &Sealer,
    group: Availability,
    key: &Zeroizing<[u8; KEY_LEN]>,
    unlock: Option<&Sealer>,
) -> Result<Vec<u8>, BackendError> {
    let mut inner = Zeroizing::new(Vec::with_capacity(1 + KEY_LEN + 64));
    match unlock {
        None => {
            inner.push(Mode::Master as u8);
            inner.extend_from_slice(key.as_slice());
        }
        Some(unlock) => {
            inner.push(Mode::Unlock as u8);
            inner.extend_from_slice(&unlock.seal(&inner_aad(group), key.as_slice())?);
        }
    }
    master.seal(&outer_aad(group), &inner)
}

/// A wrapped data key with the master key's layer removed.
pub(crate) struct Unwrapped {
    mode: Mode,
    payload: Zeroizing<Vec<u8>>,
}

impl Unwrapped {
    /// Removes the master key's layer; `None` when `wrapped` does not authenticate.
    pub(crate) fn open(master: &Sealer, group: Availability, wrapped: &[u8]) -> Option<Self> {
        let inner = master.open(&outer_aad(group), wrapped)?;
        let (&mode, payload) = inner.split_first()?;
        let mode = match mode {
            0 => Mode::Master,
            1 => Mode::Unlock,
            _ => return None,
        };
        Some(Self {
            mode,
            payload: Zeroizing::new(payload.to_vec()),
        })
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// The data key, opening the unlock layer with `unlock` if there is one.
    pub(crate) fn key(
        &self,
        group: Availability,
        unlock: Option<&Sealer>,
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, BackendError> {
        let bytes = match (self.mode, unlock) {
            (Mode::Master, _) => Zeroizing::new(self.payload.to_vec()),
            (Mode::Unlock, None) => return Err(BackendError::UnlockSecretRequired),
            (Mode::Unlock, Some(unlock)) => unlock
                .open(&inner_aad(group), &self.payload)
                .ok_or(BackendError::WrongUnlockSecret)?,
        };
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return Err(BackendError::Crypto(
                "a data key has the wrong length".to_owned(),
            ));
        }
        key.copy_from_slice(&bytes);
        Ok(key)
    }

    /// The same data key wrapped again under `master` (for rotation), keeping the unlock layer.
    pub(crate) fn rewrap(
        &self,
        master: &Sealer,
        group: Availability,
    ) -> Result<Vec<u8>, BackendError> {
        let mut inner = Zeroizing::new(Vec::with_capacity(1 + self.payload.len()));
        inner.push(self.mode as u8);
        inner.extend_from_slice(&self.payload);
        master.seal(&outer_aad(group), &inner)
    }
}

/// The unwrapped data keys the device state allows, shared by the owner and the reader thread.
#[derive(Default)]
pub(crate) struct DataKeys {
    slots: [RwLock<Option<Sealer>>; 3],
}

impl DataKeys {
    /// Runs `work` with `group`'s key; `None` when it is not in memory (the device is locked).
    pub(crate) fn with<T>(
        &self,
        group: Availability,
        work: impl FnOnce(&Sealer) -> T,
    ) -> Option<T> {
        let slot = self.slots[group.index()]
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.as_ref().map(work)
    }

    pub(crate) fn is_loaded(&self, group: Availability) -> bool {
        self.with(group, |_| ()).is_some()
    }

    pub(crate) fn load(&self, group: Availability, key: &Zeroizing<[u8; KEY_LEN]>) {
        *self.slots[group.index()]
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Sealer::new(key));
    }

    /// Drops `group`'s key: the cipher zeroizes it as it is dropped.
    pub(crate) fn wipe(&self, group: Availability) {
        let old = self.slots[group.index()]
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master(byte: u8) -> Sealer {
        Sealer::new(&Zeroizing::new([byte; KEY_LEN]))
    }

    #[test]
    fn a_wrapped_key_opens_only_with_its_master_group_and_secret() {
        let key = random_key().expect("key");
        let group = Availability::WhenUnlocked;
        let plain = wrap(&master(1), group, &key, None).expect("wrap");
        let opened = Unwrapped::open(&master(1), group, &plain).expect("open");
        assert_eq!(opened.mode(), Mode::Master);
        assert_eq!(*opened.key(group, None).expect("key"), *key);
        assert!(Unwrapped::open(&master(2), group, &plain).is_none());
        assert!(Unwrapped::open(&master(1), Availability::Always, &plain).is_none());

        let secret = SecretString::from("user credential");
        let bound = wrap(&master(1), group, &key, Some(&unlock_key(&secret))).expect("wrap");
        let opened = Unwrapped::open(&master(1), group, &bound).expect("open");
        assert!(matches!(
            opened.key(group, None),
            Err(BackendError::UnlockSecretRequired)
        ));
        let wrong = unlock_key(&SecretString::from("guess"));
        assert!(matches!(
            opened.key(group, Some(&wrong)),
            Err(BackendError::WrongUnlockSecret)
        ));
        assert_eq!(
            *opened.key(group, Some(&unlock_key(&secret))).expect("key"),
            *key
        );

        let rewrapped = opened.rewrap(&master(3), group).expect("rewrap");
        let again = Unwrapped::open(&master(3), group, &rewrapped).expect("open");
        assert_eq!(
            *again.key(group, Some(&unlock_key(&secret))).expect("key"),
            *key
        );
    }

    #[test]
    fn a_wiped_slot_has_no_key() {
        let keys = DataKeys::default();
        keys.load(Availability::WhenUnlocked, &random_key().expect("key"));
        assert!(keys.is_loaded(Availability::WhenUnlocked));
        keys.wipe(Availability::WhenUnlocked);
        assert!(!keys.is_loaded(Availability::WhenUnlocked));
        assert!(keys.with(Availability::WhenUnlocked, |_| ()).is_none());
    }
}
