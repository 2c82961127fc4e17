//! Validated names: [`Key`], [`ServiceName`] and [`ProjectId`].
//!
//! The wire carries plain strings so that a bad name earns a clear answer rather than a decode failure;
//! both the client (before sending) and the daemon (before touching storage) parse them into these types,
//! and the storage layer accepts nothing else.

use crate::error::ServiceError;
use crate::limits::{MAX_KEY_BYTES, MAX_PROJECT_BYTES, MAX_SERVICE_BYTES};

/// The service used when a call gives no `keychainService`, as Expo does on iOS.
pub const DEFAULT_SERVICE: &str = "app";

/// An item's key: non-empty ASCII letters, digits, `.`, `-` and `_` (Expo's `/^[\w.-]+$/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// Checks `key` against Expo's rule and [`MAX_KEY_BYTES`].
    ///
    /// # Errors
    /// [`ServiceError::InvalidKey`] for an empty key or a disallowed character,
    /// [`ServiceError::KeyTooLong`] past the length limit.
    pub fn parse(key: &str) -> Result<Self, ServiceError> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_');
        if key.is_empty() || !key.bytes().all(allowed) {
            return Err(ServiceError::InvalidKey);
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(ServiceError::KeyTooLong {
                len: key.len() as u64,
                limit: MAX_KEY_BYTES as u64,
            });
        }
        Ok(Self(key.to_owned()))
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `keychainService`: a namespace inside a project. 1–255 bytes of UTF-8 without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);

impl ServiceName {
    /// Parses an optional service, where `None` means [`DEFAULT_SERVICE`].
    ///
    /// # Errors
    /// [`ServiceError::InvalidService`] naming the broken rule.
    pub fn parse(service: Option<&str>) -> Result<Self, ServiceError> {
        let service = service.unwrap_or(DEFAULT_SERVICE);
        let reason = if service.is_empty() {
            "must not be empty".to_owned()
        } else if service.len() > MAX_SERVICE_BYTES {
            format!("must be at most {MAX_SERVICE_BYTES} bytes")
        } else if service.chars().any(char::is_control) {
            "must not contain control characters".to_owned()
        } else {
            return Ok(Self(service.to_owned()));
        };
        Err(ServiceError::InvalidService { reason })
    }

    /// The service text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A project id: 1–255 characters of `A-Za-z0-9 . _ - @ /`, so Expo scope keys like `@owner/slug` fit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectId(String);

impl ProjectId {
    /// Checks `id` against the project id rule.
    ///
    /// # Errors
    /// [`ServiceError::InvalidProject`] naming the broken rule.
    pub fn parse(id: &str) -> Result<Self, ServiceError> {
        let allowed =
            |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@' | b'/');
        let reason = if id.is_empty() {
            "must not be empty".to_owned()
        } else if id.len() > MAX_PROJECT_BYTES {
            format!("must be at most {MAX_PROJECT_BYTES} characters")
        } else if !id.bytes().all(allowed) {
            "may contain only ASCII letters, digits, '.', '_', '-', '@' and '/'".to_owned()
        } else {
            return Ok(Self(id.to_owned()));
        };
        Err(ServiceError::InvalidProject { reason })
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ProjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_expos_rule() {
        for good in ["a", "A9", "token.v2", "my-key_1", "...", "-", "_"] {
            assert!(Key::parse(good).is_ok(), "{good:?} should be accepted");
        }
        for bad in ["", " ", "a b", "a/b", "ключ", "a:b", "a\0", "tab\t", "é"] {
            assert_eq!(Key::parse(bad), Err(ServiceError::InvalidKey), "{bad:?}");
        }
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(
            Key::parse(&long),
            Err(ServiceError::KeyTooLong { .. })
        ));
        assert!(Key::parse(&long[1..]).is_ok());
    }

    #[test]
    fn invalid_key_message_is_expos() {
        assert_eq!(
            ServiceError::InvalidKey.to_string(),
            "Invalid key provided to SecureStore. Keys must not be empty and contain only \
             alphanumeric characters, \".\", \"-\", and \"_\"."
        );
    }

    #[test]
    fn services_default_and_reject_bad_names() {
        assert_eq!(
            ServiceName::parse(None).map(|s| s.0),
            Ok(DEFAULT_SERVICE.to_owned())
        );
        assert!(ServiceName::parse(Some("com.example:auth ✓")).is_ok());
        for bad in ["", "a\nb", "\u{7f}"] {
            assert!(matches!(
                ServiceName::parse(Some(bad)),
                Err(ServiceError::InvalidService { .. })
            ));
        }
        let long = "s".repeat(MAX_SERVICE_BYTES + 1);
        assert!(ServiceName::parse(Some(&long)).is_err());
    }

    #[test]
    fn project_ids_allow_expo_scope_keys() {
        for good in [
            "@owner/slug",
            "com.example.app",
            "a",
            &"p".repeat(MAX_PROJECT_BYTES),
        ] {
            assert!(ProjectId::parse(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "a b",
            "a:b",
            "a\\b",
            "é",
            &"p".repeat(MAX_PROJECT_BYTES + 1),
        ] {
            assert!(
                matches!(
                    ProjectId::parse(bad),
                    Err(ServiceError::InvalidProject { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
