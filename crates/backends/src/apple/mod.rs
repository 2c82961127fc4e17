//! The iOS Keychain backend: each item is a generic-password Keychain item.
//!
//! - `kSecAttrService` = [`keychain_service`] (project and service, injectively), `kSecAttrAccount` =
//!   the key, `kSecValueData` = the value's UTF-8 bytes.
//! - `kSecAttrAccessible` from the item's class, set through a `SecAccessControl`
//!   ([`Protection::for_class`]); never synchronizable (`kSecAttrSynchronizable` false, in every query
//!   too); in the configured access group, if any.
//! - The Expo class is also kept in `kSecAttrComment` ([`class_comment`]), because two of Expo's
//!   seven classes (the deprecated `ALWAYS` ones) are stored as their Apple-recommended replacements
//!   and a get must return the class that was set.
//! - Unlike Expo, a set that changes an item's class takes effect: the item is deleted and added again
//!   (an in-place update when the class is unchanged).
//!
//! Everything here but `keychain.rs` is plain Rust, built and unit-tested on every target: the names,
//! the class mapping, the query as plain data and the `OSStatus` mapping ([`keychain_error`]).
//! `keychain.rs`, the only code that calls Security.framework, builds only for Apple targets.

#[cfg(target_vendor = "apple")]
mod keychain;

#[cfg(target_vendor = "apple")]
pub use keychain::KeychainBackend;

use crate::{BackendError, ItemName, KeychainAccessible, ProjectScope};

/// What every securestore `kSecAttrService` starts with, so its items never mix with an app's own
/// (Expo's services are `<keychainService>:no-auth`, `…:auth`, or bare).
pub const SERVICE_PREFIX: &str = "securestore:";

/// Options of the Keychain backend.
#[derive(Debug, Clone, Default)]
pub struct KeychainConfig {
    /// `kSecAttrAccessGroup` for every item, to share them with an app extension (both need the
    /// group in their keychain-access-groups entitlement); `None` uses the app's default group.
    pub access_group: Option<String>,
}

/// The `kSecAttrService` of `service`'s items in `project`: `securestore:<project>:<service>`.
///
/// Injective over (project, service): a project id never contains `:`, so the first `:` after the
/// prefix ends the project.
pub fn keychain_service(project: &ProjectScope, name: &ItemName) -> String {
    format!(
        "{}{}",
        project_service_prefix(project.project().as_str()),
        name.service.as_str()
    )
}

/// The start every `kSecAttrService` of `project` shares and no other project's does.
fn project_service_prefix(project: &str) -> String {
    debug_assert!(!project.contains(':'), "project ids never contain ':'");
    format!("{SERVICE_PREFIX}{project}:")
}

/// The securestore service of the Keychain service `attribute`, if it belongs to `project` (for
/// listing and clearing).
pub fn service_in_project<'a>(attribute: &'a str, project: &ProjectScope) -> Option<&'a str> {
    attribute.strip_prefix(&project_service_prefix(project.project().as_str()))
}

/// The page of `names` after `after`, sorted and deduplicated, at most `limit`: the Keychain has no
/// order or cursor of its own, so listing sorts what one search found.
pub fn page_of<T: Ord>(mut names: Vec<T>, after: Option<&T>, limit: usize) -> Vec<T> {
    names.retain(|name| after.is_none_or(|after| name > after));
    names.sort();
    names.dedup();
    names.truncate(limit);
    names
}

/// Whether the Keychain service `attribute` belongs to `project`: what [`service_in_project`]
/// checks before it strips the prefix.
#[cfg(test)]
pub(crate) fn belongs_to(attribute: &str, project: &ProjectScope) -> bool {
    attribute.starts_with(&project_service_prefix(project.project().as_str()))
}

/// `kSecAttrAccessible` values that `SecAccessControl` accepts, named after Apple's constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// `kSecAttrAccessibleWhenPasscodeSetThisDeviceOnly`.
    WhenPasscodeSetThisDeviceOnly,
    /// `kSecAttrAccessibleWhenUnlockedThisDeviceOnly`.
    WhenUnlockedThisDeviceOnly,
    /// `kSecAttrAccessibleWhenUnlocked`.
    WhenUnlocked,
    /// `kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly`.
    AfterFirstUnlockThisDeviceOnly,
    /// `kSecAttrAccessibleAfterFirstUnlock`.
    AfterFirstUnlock,
}

impl Protection {
    /// The protection for an Expo class. Apple deprecated the `Always` classes; like Apple's own
    /// advice, they become `AfterFirstUnlock` (`…ThisDeviceOnly` for `ALWAYS_THIS_DEVICE_ONLY`).
    pub fn for_class(class: KeychainAccessible) -> Self {
        match class {
            KeychainAccessible::AfterFirstUnlock | KeychainAccessible::Always => {
                Self::AfterFirstUnlock
            }
            KeychainAccessible::AfterFirstUnlockThisDeviceOnly
            | KeychainAccessible::AlwaysThisDeviceOnly => Self::AfterFirstUnlockThisDeviceOnly,
            KeychainAccessible::WhenPasscodeSetThisDeviceOnly => {
                Self::WhenPasscodeSetThisDeviceOnly
            }
            KeychainAccessible::WhenUnlocked => Self::WhenUnlocked,
            KeychainAccessible::WhenUnlockedThisDeviceOnly => Self::WhenUnlockedThisDeviceOnly,
        }
    }

    /// The value of the `kSecAttrAccessible` constant, as the Keychain reports it in an item's
    /// attributes (`pdmn`).
    pub fn attribute_value(self) -> &'static str {
        match self {
            Self::WhenPasscodeSetThisDeviceOnly => "akpu",
            Self::WhenUnlockedThisDeviceOnly => "aku",
            Self::WhenUnlocked => "ak",
            Self::AfterFirstUnlockThisDeviceOnly => "cku",
            Self::AfterFirstUnlock => "ck",
        }
    }

    /// The protection whose `kSecAttrAccessible` value is `value`.
    pub fn from_attribute(value: &str) -> Option<Self> {
        [
            Self::WhenPasscodeSetThisDeviceOnly,
            Self::WhenUnlockedThisDeviceOnly,
            Self::WhenUnlocked,
            Self::AfterFirstUnlockThisDeviceOnly,
            Self::AfterFirstUnlock,
        ]
        .into_iter()
        .find(|p| p.attribute_value() == value)
    }
}

const COMMENT_PREFIX: &str = "securestore keychainAccessible=";

/// The `kSecAttrComment` that records an item's Expo class.
pub fn class_comment(class: KeychainAccessible) -> String {
    format!("{COMMENT_PREFIX}{}", class.expo_name())
}

/// An item's class, from its comment (written by [`class_comment`]) or else from its
/// `kSecAttrAccessible` value, for items another writer made.
pub fn class_from_attributes(
    comment: Option<&str>,
    accessible: Option<&str>,
) -> Option<KeychainAccessible> {
    if let Some(class) = comment
        .and_then(|c| c.strip_prefix(COMMENT_PREFIX))
        .and_then(|name| name.parse().ok())
    {
        return Some(class);
    }
    Some(match Protection::from_attribute(accessible?)? {
        Protection::WhenPasscodeSetThisDeviceOnly => {
            KeychainAccessible::WhenPasscodeSetThisDeviceOnly
        }
        Protection::WhenUnlockedThisDeviceOnly => KeychainAccessible::WhenUnlockedThisDeviceOnly,
        Protection::WhenUnlocked => KeychainAccessible::WhenUnlocked,
        Protection::AfterFirstUnlockThisDeviceOnly => {
            KeychainAccessible::AfterFirstUnlockThisDeviceOnly
        }
        Protection::AfterFirstUnlock => KeychainAccessible::AfterFirstUnlock,
    })
}

/// The attributes that identify one item, as plain data. Every query also says
/// `kSecClass = kSecClassGenericPassword` and `kSecAttrSynchronizable = false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemQuery {
    /// `kSecAttrService`.
    pub service: String,
    /// `kSecAttrAccount`: the key.
    pub account: String,
    /// `kSecAttrAccessGroup`, when configured.
    pub access_group: Option<String>,
}

impl ItemQuery {
    /// The query for `name` in `project`.
    pub fn new(project: &ProjectScope, name: &ItemName, config: &KeychainConfig) -> Self {
        Self {
            service: keychain_service(project, name),
            account: name.key.as_str().to_owned(),
            access_group: config.access_group.clone(),
        }
    }
}

/// What a set writes besides the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    /// Which item.
    pub query: ItemQuery,
    /// `kSecAttrAccessible`, through `SecAccessControl`.
    pub protection: Protection,
    /// `kSecAttrComment`: the Expo class.
    pub comment: String,
}

impl NewItem {
    /// The item `name` of `project` with class `class`.
    pub fn new(
        project: &ProjectScope,
        name: &ItemName,
        class: KeychainAccessible,
        config: &KeychainConfig,
    ) -> Self {
        Self {
            query: ItemQuery::new(project, name, config),
            protection: Protection::for_class(class),
            comment: class_comment(class),
        }
    }
}

/// `errSecItemNotFound`: not an error for get and delete.
pub const ERR_SEC_ITEM_NOT_FOUND: i32 = -25300;
/// `errSecDuplicateItem`.
pub const ERR_SEC_DUPLICATE_ITEM: i32 = -25299;
/// `errSecInteractionNotAllowed`: the item's class keeps it unreadable now (device locked).
pub const ERR_SEC_INTERACTION_NOT_ALLOWED: i32 = -25308;
/// `errSecDiskFull`.
pub const ERR_SEC_DISK_FULL: i32 = -34;
/// `errSecMissingEntitlement`: the app lacks the keychain entitlement (or the access group).
pub const ERR_SEC_MISSING_ENTITLEMENT: i32 = -34018;

/// Turns a Keychain `OSStatus` into [`BackendError`]: the one place they are read. `name` is the
/// item the call was about, if any. (`errSecItemNotFound` is handled by the callers, where it means
/// absence.)
pub fn keychain_error(action: &'static str, status: i32, name: Option<&ItemName>) -> BackendError {
    match (status, name) {
        (ERR_SEC_INTERACTION_NOT_ALLOWED, Some(name)) => BackendError::Locked {
            service: name.service.as_str().to_owned(),
            key: name.key.as_str().to_owned(),
        },
        (ERR_SEC_DISK_FULL, _) => BackendError::StorageFull,
        _ => BackendError::Keychain {
            action,
            status,
            message: status_message(status).to_owned(),
        },
    }
}

fn status_message(status: i32) -> &'static str {
    match status {
        -4 => "not implemented",
        -34 => "disk full",
        -36 => "I/O error",
        -50 => "invalid parameter",
        -108 => "out of memory",
        -128 => "canceled by the user",
        -25291 => "no keychain is available",
        -25293 => "authentication failed",
        ERR_SEC_DUPLICATE_ITEM => "the item already exists",
        ERR_SEC_ITEM_NOT_FOUND => "the item was not found",
        ERR_SEC_INTERACTION_NOT_ALLOWED => "user interaction is not allowed (device locked)",
        -26275 => "the data cannot be decoded",
        ERR_SEC_MISSING_ENTITLEMENT => {
            "missing entitlement: the app is not signed for this keychain access group"
        }
        _ => "unexpected keychain status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Key, ProjectId, ServiceName};

    fn scope(id: &str) -> ProjectScope {
        ProjectScope::bind(ProjectId::parse(id).expect("project"))
    }

    fn item(service: &str, key: &str) -> ItemName {
        ItemName {
            service: ServiceName::parse(Some(service)).expect("service"),
            key: Key::parse(key).expect("key"),
        }
    }

    #[test]
    fn listing_finds_the_service_of_its_own_project_only_and_pages_in_order() {
        let (a, ab) = (scope("@o/a"), scope("@o/a.b"));
        let attribute = keychain_service(&a, &item("auth", "k"));
        assert_eq!(service_in_project(&attribute, &a), Some("auth"));
        assert_eq!(service_in_project(&attribute, &ab), None);
        let page = page_of(vec![3, 1, 2, 2, 5], Some(&1), 2);
        assert_eq!(page, vec![2, 3]);
    }

    #[test]
    fn services_are_injective_and_scoped_to_their_project() {
        let q = |p: &str, s: &str| keychain_service(&scope(p), &item(s, "k"));
        assert_eq!(q("@owner/app", "auth"), "securestore:@owner/app:auth");
        assert!(
            ProjectId::parse("a:b").is_err(),
            "injectivity rests on project ids never holding ':'"
        );
        assert_ne!(q("ab", "c"), q("a", "bc"));
        assert_ne!(q("a", "b"), q("a", "B"), "case matters in the Keychain");

        let project = scope("@o/app");
        assert!(belongs_to(&q("@o/app", "x:y"), &project));
        assert!(!belongs_to(&q("@o/app2", "x"), &project));
        assert!(!belongs_to(&q("@o/ap", "p:x"), &project));
        assert!(
            !belongs_to("@o/app:x", &project),
            "an item without our prefix"
        );
    }

    #[test]
    fn every_class_maps_to_a_protection_and_comes_back() {
        for class in KeychainAccessible::ALL {
            let protection = Protection::for_class(class);
            assert_eq!(
                Protection::from_attribute(protection.attribute_value()),
                Some(protection)
            );
            let comment = class_comment(class);
            assert_eq!(
                class_from_attributes(Some(&comment), Some(protection.attribute_value())),
                Some(class),
                "{class} is returned as set"
            );
        }
        assert_eq!(
            Protection::for_class(KeychainAccessible::Always),
            Protection::AfterFirstUnlock
        );
        assert_eq!(
            Protection::for_class(KeychainAccessible::AlwaysThisDeviceOnly),
            Protection::AfterFirstUnlockThisDeviceOnly
        );
        // An item another writer made: read the class from kSecAttrAccessible.
        assert_eq!(
            class_from_attributes(None, Some("aku")),
            Some(KeychainAccessible::WhenUnlockedThisDeviceOnly)
        );
        assert_eq!(
            class_from_attributes(Some("a note"), Some("ck")),
            Some(KeychainAccessible::AfterFirstUnlock)
        );
        assert_eq!(class_from_attributes(None, Some("dk")), None);
        assert_eq!(class_from_attributes(None, None), None);
    }

    #[test]
    fn a_new_item_carries_its_query_protection_and_class() {
        let config = KeychainConfig {
            access_group: Some("TEAMID.com.example.shared".to_owned()),
        };
        let new = NewItem::new(
            &scope("p"),
            &item("app", "token"),
            KeychainAccessible::WhenUnlockedThisDeviceOnly,
            &config,
        );
        assert_eq!(
            new,
            NewItem {
                query: ItemQuery {
                    service: "securestore:p:app".to_owned(),
                    account: "token".to_owned(),
                    access_group: Some("TEAMID.com.example.shared".to_owned()),
                },
                protection: Protection::WhenUnlockedThisDeviceOnly,
                comment: "securestore keychainAccessible=WHEN_UNLOCKED_THIS_DEVICE_ONLY".to_owned(),
            }
        );
    }

    #[test]
    fn statuses_map_to_errors_naming_the_item() {
        let name = item("auth", "token");
        match keychain_error("get", ERR_SEC_INTERACTION_NOT_ALLOWED, Some(&name)) {
            BackendError::Locked { service, key } => {
                assert_eq!((service.as_str(), key.as_str()), ("auth", "token"));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        assert!(matches!(
            keychain_error("set", ERR_SEC_DISK_FULL, Some(&name)),
            BackendError::StorageFull
        ));
        let err = keychain_error("cannot add the item", ERR_SEC_MISSING_ENTITLEMENT, None);
        assert!(
            matches!(err, BackendError::Keychain { status: -34018, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "keychain: cannot add the item: missing entitlement: the app is not signed for this keychain access group (OSStatus -34018)"
        );
        assert!(
            keychain_error("x", -99999, None)
                .to_string()
                .contains("unexpected keychain status (OSStatus -99999)")
        );
    }
}
