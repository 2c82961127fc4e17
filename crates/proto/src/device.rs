//! The device state the accessibility classes depend on, and the signals a host sends to change it.
//!
//! Expo's seven `keychainAccessible` classes fall into three availability groups
//! ([`Availability`]); whether an item can be read or written depends only on its group and the
//! [`DeviceStatus`]. Every backend applies the same rule ([`DeviceStatus::allows`]); the default
//! backend also enforces it with keys (see `docs/security.md`).

use serde::{Deserialize, Serialize};

use crate::options::KeychainAccessible;
use crate::secret::SecretString;

/// Whether the device is locked, as the host last signalled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockState {
    /// Started, and not unlocked once since: only `ALWAYS*` items are available.
    BeforeFirstUnlock,
    /// Unlocked at least once since start, locked now: `ALWAYS*` and `AFTER_FIRST_UNLOCK*`.
    Locked,
    /// Unlocked: every class.
    Unlocked,
}

impl LockState {
    /// The name `securestore device status` prints, e.g. `before-first-unlock`.
    pub fn name(self) -> &'static str {
        match self {
            Self::BeforeFirstUnlock => "before-first-unlock",
            Self::Locked => "locked",
            Self::Unlocked => "unlocked",
        }
    }
}

impl std::fmt::Display for LockState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for LockState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::BeforeFirstUnlock, Self::Locked, Self::Unlocked]
            .into_iter()
            .find(|state| state.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown device state '{s}'; expected before-first-unlock, locked or unlocked"
                )
            })
    }
}

/// The device state: lock state and whether the user has a passcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// Locked or not.
    pub lock: LockState,
    /// Whether a passcode is set (`WHEN_PASSCODE_SET_THIS_DEVICE_ONLY` items need one).
    pub passcode_set: bool,
}

impl DeviceStatus {
    /// Unlocked with a passcode: every class available. A Linux daemon that no host signals starts
    /// here, so it behaves as before device states existed.
    pub const UNLOCKED: Self = Self {
        lock: LockState::Unlocked,
        passcode_set: true,
    };

    /// Just booted, no passcode known: what an embedding host starts from before its first signal.
    pub const BEFORE_FIRST_UNLOCK: Self = Self {
        lock: LockState::BeforeFirstUnlock,
        passcode_set: false,
    };

    /// Whether an item of `class` may be read or written now. A
    /// `WHEN_PASSCODE_SET_THIS_DEVICE_ONLY` item also needs a passcode: without one it is never
    /// available (and a removed passcode deletes it).
    pub fn allows(&self, class: KeychainAccessible) -> bool {
        let needs_passcode = class == KeychainAccessible::WhenPasscodeSetThisDeviceOnly;
        (self.passcode_set || !needs_passcode) && self.allows_group(class.availability())
    }

    /// Whether the key of availability group `group` may be in memory now.
    pub fn allows_group(&self, group: Availability) -> bool {
        match group {
            Availability::Always => true,
            Availability::AfterFirstUnlock => self.lock != LockState::BeforeFirstUnlock,
            Availability::WhenUnlocked => self.lock == LockState::Unlocked,
        }
    }

    /// The state after `signal`, if it is a valid change from this one.
    pub fn after(self, signal: &DeviceSignal) -> Self {
        match signal {
            DeviceSignal::Unlock { .. } => Self {
                lock: LockState::Unlocked,
                ..self
            },
            // Locking before the first unlock leaves the device before its first unlock.
            DeviceSignal::Lock => Self {
                lock: match self.lock {
                    LockState::BeforeFirstUnlock => LockState::BeforeFirstUnlock,
                    LockState::Locked | LockState::Unlocked => LockState::Locked,
                },
                ..self
            },
            DeviceSignal::PasscodeSet => Self {
                passcode_set: true,
                ..self
            },
            DeviceSignal::PasscodeRemoved => Self {
                passcode_set: false,
                ..self
            },
        }
    }
}

impl std::fmt::Display for DeviceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let passcode = if self.passcode_set { "set" } else { "not set" };
        write!(f, "{}, passcode {passcode}", self.lock)
    }
}

/// A change of device state, from the host (the embedding app's lock callbacks, or
/// `securestore device …` on a desktop).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum DeviceSignal {
    /// The user unlocked the device. `secret` is the host's unlock secret (e.g. derived from the
    /// user's credential): when given once, the keys of the groups that need an unlocked device are
    /// wrapped with it too, and every later unlock must give the same one.
    Unlock {
        /// The unlock secret, if the host has one.
        secret: Option<SecretString>,
    },
    /// The device locked: `WHEN_UNLOCKED*` keys are wiped from memory.
    Lock,
    /// The user set a passcode.
    PasscodeSet,
    /// The user removed the passcode: every `WHEN_PASSCODE_SET_THIS_DEVICE_ONLY` item is deleted.
    PasscodeRemoved,
}

impl DeviceSignal {
    /// A name for logs (never the secret).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Unlock { .. } => "unlock",
            Self::Lock => "lock",
            Self::PasscodeSet => "passcode set",
            Self::PasscodeRemoved => "passcode removed",
        }
    }
}

/// When the items of a class are available: the three groups the seven classes fall into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Availability {
    /// `ALWAYS`, `ALWAYS_THIS_DEVICE_ONLY`.
    Always,
    /// `AFTER_FIRST_UNLOCK`, `AFTER_FIRST_UNLOCK_THIS_DEVICE_ONLY`.
    AfterFirstUnlock,
    /// `WHEN_UNLOCKED`, `WHEN_UNLOCKED_THIS_DEVICE_ONLY`, `WHEN_PASSCODE_SET_THIS_DEVICE_ONLY`.
    WhenUnlocked,
}

impl Availability {
    /// The three groups, in the order of their key ids.
    pub const ALL: [Self; 3] = [Self::Always, Self::AfterFirstUnlock, Self::WhenUnlocked];

    /// The group's position in [`Availability::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::Always => 0,
            Self::AfterFirstUnlock => 1,
            Self::WhenUnlocked => 2,
        }
    }
}

impl KeychainAccessible {
    /// The availability group of this class.
    pub fn availability(self) -> Availability {
        match self {
            Self::Always | Self::AlwaysThisDeviceOnly => Availability::Always,
            Self::AfterFirstUnlock | Self::AfterFirstUnlockThisDeviceOnly => {
                Availability::AfterFirstUnlock
            }
            Self::WhenUnlocked
            | Self::WhenUnlockedThisDeviceOnly
            | Self::WhenPasscodeSetThisDeviceOnly => Availability::WhenUnlocked,
        }
    }

    /// Whether items of this class never leave the device (excluded from every export).
    pub fn this_device_only(self) -> bool {
        matches!(
            self,
            Self::AfterFirstUnlockThisDeviceOnly
                | Self::WhenPasscodeSetThisDeviceOnly
                | Self::AlwaysThisDeviceOnly
                | Self::WhenUnlockedThisDeviceOnly
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_is_available_exactly_where_expo_says() {
        use KeychainAccessible as C;
        let bfu = DeviceStatus::BEFORE_FIRST_UNLOCK.after(&DeviceSignal::PasscodeSet);
        let locked = bfu
            .after(&DeviceSignal::Unlock { secret: None })
            .after(&DeviceSignal::Lock);
        let unlocked = locked.after(&DeviceSignal::Unlock { secret: None });
        assert_eq!(locked.lock, LockState::Locked);
        for class in C::ALL {
            assert!(unlocked.allows(class), "{class} unlocked");
            let always = matches!(class, C::Always | C::AlwaysThisDeviceOnly);
            let afu = matches!(
                class,
                C::AfterFirstUnlock | C::AfterFirstUnlockThisDeviceOnly
            );
            assert_eq!(bfu.allows(class), always, "{class} before first unlock");
            assert_eq!(locked.allows(class), always || afu, "{class} locked");
        }
        assert_eq!(
            bfu.after(&DeviceSignal::Lock).lock,
            LockState::BeforeFirstUnlock
        );
        // Without a passcode, a WHEN_PASSCODE_SET item is never available.
        let no_passcode = unlocked.after(&DeviceSignal::PasscodeRemoved);
        assert!(!no_passcode.allows(C::WhenPasscodeSetThisDeviceOnly));
        assert!(no_passcode.allows(C::WhenUnlockedThisDeviceOnly));
    }

    #[test]
    fn only_this_device_only_classes_stay() {
        let staying: Vec<_> = KeychainAccessible::ALL
            .into_iter()
            .filter(|c| c.this_device_only())
            .collect();
        assert_eq!(staying.len(), 4);
        assert!(
            staying
                .iter()
                .all(|c| c.expo_name().ends_with("THIS_DEVICE_ONLY"))
        );
    }
}
