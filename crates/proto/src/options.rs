//! Expo's option objects and the accessibility classes, as wire types.

use serde::{Deserialize, Serialize};

use crate::secret::SecretString;

/// When an item may be read, as iOS's `kSecAttrAccessible`. Names and numbers are Expo's.
///
/// The daemon stores the class with each item; backends that can enforce it (the iOS Keychain) do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
#[repr(u8)]
pub enum KeychainAccessible {
    /// Readable after the first unlock following a restart.
    AfterFirstUnlock = 0,
    /// As `AfterFirstUnlock`, and never migrated to another device.
    AfterFirstUnlockThisDeviceOnly = 1,
    /// Always readable. Deprecated by Apple; the least protective class.
    Always = 2,
    /// Readable while unlocked, only on a device with a passcode; never migrated.
    WhenPasscodeSetThisDeviceOnly = 3,
    /// As `Always`, and never migrated. Deprecated by Apple.
    AlwaysThisDeviceOnly = 4,
    /// Readable only while the device is unlocked. Expo's default.
    #[default]
    WhenUnlocked = 5,
    /// As `WhenUnlocked`, and never migrated to another device.
    WhenUnlockedThisDeviceOnly = 6,
}

impl KeychainAccessible {
    /// All seven classes, in Expo's numbering.
    pub const ALL: [Self; 7] = [
        Self::AfterFirstUnlock,
        Self::AfterFirstUnlockThisDeviceOnly,
        Self::Always,
        Self::WhenPasscodeSetThisDeviceOnly,
        Self::AlwaysThisDeviceOnly,
        Self::WhenUnlocked,
        Self::WhenUnlockedThisDeviceOnly,
    ];

    /// Expo's constant name, e.g. `"WHEN_UNLOCKED"`.
    pub fn expo_name(self) -> &'static str {
        match self {
            Self::AfterFirstUnlock => "AFTER_FIRST_UNLOCK",
            Self::AfterFirstUnlockThisDeviceOnly => "AFTER_FIRST_UNLOCK_THIS_DEVICE_ONLY",
            Self::Always => "ALWAYS",
            Self::WhenPasscodeSetThisDeviceOnly => "WHEN_PASSCODE_SET_THIS_DEVICE_ONLY",
            Self::AlwaysThisDeviceOnly => "ALWAYS_THIS_DEVICE_ONLY",
            Self::WhenUnlocked => "WHEN_UNLOCKED",
            Self::WhenUnlockedThisDeviceOnly => "WHEN_UNLOCKED_THIS_DEVICE_ONLY",
        }
    }
}

impl From<KeychainAccessible> for u8 {
    fn from(class: KeychainAccessible) -> Self {
        class as u8
    }
}

impl TryFrom<u8> for KeychainAccessible {
    type Error = String;

    fn try_from(n: u8) -> Result<Self, Self::Error> {
        Self::ALL
            .get(usize::from(n))
            .copied()
            .ok_or_else(|| format!("unknown keychainAccessible class {n}; expected 0 to 6"))
    }
}

impl std::str::FromStr for KeychainAccessible {
    type Err = String;

    /// Accepts Expo's names (`WHEN_UNLOCKED`, any case, `-` for `_`) or the numbers 0–6.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(n) = s.parse::<u8>() {
            return Self::try_from(n);
        }
        let wanted = s.to_ascii_uppercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|class| class.expo_name() == wanted)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|c| c.expo_name()).collect();
                format!(
                    "unknown keychainAccessible class '{s}'; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

impl std::fmt::Display for KeychainAccessible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.expo_name())
    }
}

/// Options of `setItemAsync`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetOptions {
    /// The namespace inside the project; `None` means [`crate::DEFAULT_SERVICE`].
    pub keychain_service: Option<String>,
    /// When the item may be read; stored with the item.
    pub keychain_accessible: KeychainAccessible,
}

/// Options of `getItemAsync`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetOptions {
    /// The namespace the item was set in; `None` means [`crate::DEFAULT_SERVICE`].
    pub keychain_service: Option<String>,
}

/// Options of `deleteItemAsync`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteOptions {
    /// The namespace the item was set in; `None` means [`crate::DEFAULT_SERVICE`].
    pub keychain_service: Option<String>,
}

/// A stored item as a get returns it: the value and the class it was stored with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    /// The secret value.
    pub value: SecretString,
    /// The accessibility class given when it was set.
    pub accessible: KeychainAccessible,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_keep_expos_numbers_and_names() {
        assert_eq!(KeychainAccessible::AfterFirstUnlock as u8, 0);
        assert_eq!(KeychainAccessible::WhenUnlocked as u8, 5);
        assert_eq!(KeychainAccessible::WhenUnlockedThisDeviceOnly as u8, 6);
        assert_eq!(
            KeychainAccessible::default(),
            KeychainAccessible::WhenUnlocked
        );
        for (n, class) in KeychainAccessible::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(u8::from(class)), n);
            assert_eq!(class.expo_name().parse::<KeychainAccessible>(), Ok(class));
        }
        assert_eq!(
            "when-unlocked".parse(),
            Ok(KeychainAccessible::WhenUnlocked)
        );
        assert_eq!("2".parse(), Ok(KeychainAccessible::Always));
        assert!("7".parse::<KeychainAccessible>().is_err());
        assert!("SOMETIMES".parse::<KeychainAccessible>().is_err());
    }
}
