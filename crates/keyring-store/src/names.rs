//! The reversible mapping of keyring's `<service, user>` to securestore's `keychainService` and key.
//!
//! keyring accepts any string as a service or a user; securestore accepts only keys of ASCII letters,
//! digits, `.`, `-` and `_`, and services of 1–255 bytes without control characters. The rule here:
//!
//! - A name our daemon already accepts maps to itself, unless it starts with [`ESCAPE_PREFIX`]. So
//!   `alice`, `user_name` and `token.v2` are the same key for a keyring program, the `securestore`
//!   CLI and an Expo app, which is what makes sharing and moving secrets between them work.
//! - Every other name (an empty one, `alice@example.com`, `a/b c`, non-ASCII, or one that starts
//!   with the prefix itself) becomes [`ESCAPE_PREFIX`] followed by its UTF-8 bytes, each ASCII letter,
//!   digit, `.` and `-` as itself and every other byte, `_` included, as `_` and two lowercase hex
//!   digits: `alice@example.com` → `_kr_alice_40example.com`, `a/b c` → `_kr_a_2fb_20c`, `` → `_kr_`.
//!
//! The mapping is injective: names kept as they are never start with the prefix, escaped ones always
//! do, and the escaping is decodable byte by byte (`_` is only ever the start of an escape). The
//! decoder accepts only the canonical form (it re-encodes what it decoded and compares), so a key
//! written by someone else as `_kr_abc` or `_kr_zz` is not taken for the user `abc` or for anything:
//! every key a search reports names exactly one entry.
//!
//! Lengths are checked after mapping: the mapped key must fit [`MAX_KEY_BYTES`] and the mapped service
//! [`MAX_SERVICE_BYTES`], so a name that needs escaping may be up to three times shorter than that.

use std::fmt::Write as _;

use securestore_proto::limits::{MAX_KEY_BYTES, MAX_SERVICE_BYTES};

/// What every escaped name starts with, and what no name kept as it is starts with.
pub const ESCAPE_PREFIX: &str = "_kr_";

/// Which of securestore's two name kinds a keyring name becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// keyring's service, as a `keychainService`.
    Service,
    /// keyring's user, as an item key.
    User,
}

impl Kind {
    /// The keyring attribute name, as keyring's errors name it.
    pub fn attribute(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::User => "user",
        }
    }

    /// The most bytes a mapped name may have.
    pub fn max_bytes(self) -> usize {
        match self {
            Self::Service => MAX_SERVICE_BYTES,
            Self::User => MAX_KEY_BYTES,
        }
    }

    /// Whether the daemon accepts `name`'s characters for this kind (the length is checked apart).
    /// The same rules as `securestore_proto::names`; a unit test below keeps them in step.
    fn accepts(self, name: &str) -> bool {
        !name.is_empty()
            && match self {
                Self::Service => !name.chars().any(char::is_control),
                Self::User => name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')),
            }
    }
}

/// A name whose mapping is longer than securestore allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLong {
    /// Which name.
    pub kind: Kind,
    /// The length of the mapped name, in bytes.
    pub mapped_len: usize,
}

/// Bytes an escaped name carries as they are; every other byte becomes `_` and two hex digits.
fn is_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// `name` as securestore stores it: itself if the daemon accepts it and it does not start with
/// [`ESCAPE_PREFIX`], else escaped (see the module doc).
///
/// # Errors
/// [`TooLong`] when the mapped name is over [`Kind::max_bytes`].
pub fn encode(kind: Kind, name: &str) -> Result<String, TooLong> {
    let mapped = if kind.accepts(name) && !name.starts_with(ESCAPE_PREFIX) {
        name.to_owned()
    } else {
        escape(name)
    };
    if mapped.len() > kind.max_bytes() {
        return Err(TooLong {
            kind,
            mapped_len: mapped.len(),
        });
    }
    Ok(mapped)
}

/// The keyring name that [`encode`] maps to `mapped`, or `None` when no name maps to it (a key or
/// service written by another client that is not in the canonical form).
pub fn decode(kind: Kind, mapped: &str) -> Option<String> {
    let name = match mapped.strip_prefix(ESCAPE_PREFIX) {
        Some(body) => unescape(body)?,
        None if kind.accepts(mapped) => mapped.to_owned(),
        None => return None,
    };
    (encode(kind, &name).ok()? == mapped).then_some(name)
}

fn escape(name: &str) -> String {
    let mut out = String::with_capacity(ESCAPE_PREFIX.len() + 3 * name.len());
    out.push_str(ESCAPE_PREFIX);
    for &b in name.as_bytes() {
        if is_literal(b) {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "_{b:02x}");
        }
    }
    out
}

fn unescape(body: &str) -> Option<String> {
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'_' {
            let hex = bytes.get(i + 1..i + 3)?;
            let digit = |d: u8| match d {
                b'0'..=b'9' => Some(d - b'0'),
                b'a'..=b'f' => Some(d - b'a' + 10),
                _ => None,
            };
            out.push((digit(hex[0])? << 4) | digit(hex[1])?);
            i += 3;
        } else if is_literal(b) {
            out.push(b);
            i += 1;
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use securestore_proto::{Key, ServiceName};

    use super::*;

    const KINDS: [Kind; 2] = [Kind::Service, Kind::User];

    #[test]
    fn examples_from_the_docs() {
        let user = |name: &str| encode(Kind::User, name).expect("fits");
        assert_eq!(user("alice"), "alice");
        assert_eq!(user("user_name"), "user_name");
        assert_eq!(user("token.v2"), "token.v2");
        assert_eq!(user("alice@example.com"), "_kr_alice_40example.com");
        assert_eq!(user("a/b c"), "_kr_a_2fb_20c");
        assert_eq!(user(""), "_kr_");
        assert_eq!(user("_kr_x"), "_kr__5fkr_5fx");
        assert_eq!(user("é"), "_kr__c3_a9");
        let service = |name: &str| encode(Kind::Service, name).expect("fits");
        assert_eq!(service("com.example:auth ✓"), "com.example:auth ✓");
        assert_eq!(service(""), "_kr_");
        assert_eq!(service("a\nb"), "_kr_a_0ab");
    }

    /// Every string of up to three characters over an alphabet holding each class the rules
    /// distinguish (literal, `_`, the prefix's own letters, a byte to escape, a control character,
    /// multi-byte UTF-8): no two map to the same name, every mapping is accepted by the daemon's own
    /// parsers, and every one decodes back.
    #[test]
    fn exhaustive_short_names_are_injective_valid_and_round_trip() {
        let alphabet = [
            'a', 'k', 'r', '_', '5', 'f', '.', '-', '@', ' ', '\n', 'é', '✓',
        ];
        let mut names = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..3 {
            frontier = frontier
                .iter()
                .flat_map(|s| {
                    alphabet.iter().map(move |c| {
                        let mut t = s.clone();
                        t.push(*c);
                        t
                    })
                })
                .collect();
            names.extend(frontier.iter().cloned());
        }
        // Also the prefix itself and names around it.
        for extra in ["_kr_", "_kr", "_kr__", "_kr_a", "_kr_5f", "x_kr_"] {
            names.push(extra.to_owned());
        }
        names.sort();
        names.dedup();
        assert!(names.len() > 2000, "{} names", names.len());
        for kind in KINDS {
            let mut seen: HashMap<String, &str> = HashMap::new();
            for name in &names {
                let mapped = encode(kind, name).expect("short names fit");
                check_valid(kind, &mapped);
                assert_eq!(
                    decode(kind, &mapped).as_deref(),
                    Some(name.as_str()),
                    "{kind:?} {name:?}"
                );
                if let Some(other) = seen.insert(mapped.clone(), name) {
                    panic!("{kind:?}: {other:?} and {name:?} both map to {mapped:?}");
                }
            }
        }
    }

    fn check_valid(kind: Kind, mapped: &str) {
        match kind {
            Kind::User => assert!(Key::parse(mapped).is_ok(), "{mapped:?}"),
            Kind::Service => assert!(ServiceName::parse(Some(mapped)).is_ok(), "{mapped:?}"),
        }
    }

    #[test]
    fn names_the_daemon_accepts_map_to_themselves_unless_they_start_with_the_prefix() {
        for name in [
            "a",
            "A9",
            "my-key_1",
            "...",
            "-",
            "_",
            "__token__",
            "_k",
            "kr_",
        ] {
            assert_eq!(encode(Kind::User, name).as_deref(), Ok(name));
            assert_eq!(encode(Kind::Service, name).as_deref(), Ok(name));
        }
        assert_ne!(encode(Kind::User, "_kr_"), Ok("_kr_".to_owned()));
    }

    #[test]
    fn foreign_names_that_are_not_canonical_decode_to_nothing() {
        // Keys the daemon accepts but that no keyring user maps to.
        for key in ["_kr_abc", "_kr_zz", "_kr__", "_kr__6", "_kr__41", "_kr__2F"] {
            assert_eq!(decode(Kind::User, key), None, "{key:?}");
        }
        // A key the daemon would refuse decodes to nothing either.
        assert_eq!(decode(Kind::User, "a b"), None);
        assert_eq!(decode(Kind::Service, ""), None);
    }

    #[test]
    fn lengths_are_checked_after_mapping() {
        let fits = "k".repeat(MAX_KEY_BYTES);
        assert_eq!(encode(Kind::User, &fits).as_deref(), Ok(fits.as_str()));
        let over = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(encode(Kind::User, &over).is_err());
        // 340 '@' escape to 4 + 3 × 340 = 1024 bytes: just fits; one more does not.
        assert!(encode(Kind::User, &"@".repeat(340)).is_ok());
        assert_eq!(
            encode(Kind::User, &"@".repeat(341)),
            Err(TooLong {
                kind: Kind::User,
                mapped_len: 1027
            })
        );
        assert!(encode(Kind::Service, &"s".repeat(MAX_SERVICE_BYTES)).is_ok());
        assert!(encode(Kind::Service, &"s".repeat(MAX_SERVICE_BYTES + 1)).is_err());
    }

    proptest! {
        #[test]
        fn any_name_round_trips_and_maps_to_a_valid_name(name in any::<String>(), service in any::<bool>()) {
            let kind = if service { Kind::Service } else { Kind::User };
            if let Ok(mapped) = encode(kind, &name) {
                check_valid(kind, &mapped);
                prop_assert_eq!(decode(kind, &mapped), Some(name));
            }
        }

        #[test]
        fn different_names_map_to_different_names(a in "[a-z_@ .é-]{0,8}", b in "[a-z_@ .é-]{0,8}") {
            for kind in KINDS {
                let (ma, mb) = (encode(kind, &a), encode(kind, &b));
                prop_assert_eq!(a == b, ma == mb);
            }
        }

        #[test]
        fn decode_only_answers_for_images(mapped in "[a-z0-9_.-]{0,12}") {
            if let Some(name) = decode(Kind::User, &mapped) {
                prop_assert_eq!(encode(Kind::User, &name), Ok(mapped));
            }
        }
    }
}
