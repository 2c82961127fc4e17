//! The reversible mapping of a keyring secret (any bytes) to a securestore value (UTF-8 text).
//!
//! In keyring a password is just a secret whose bytes are UTF-8: `set_password(p)` is
//! `set_secret(p.as_bytes())`, and `get_secret` after `set_password` returns those bytes. So only
//! bytes need a reversible encoding, and the rule mirrors the names' one:
//!
//! - Bytes that are UTF-8 and do not start with [`BINARY_PREFIX`] are stored as that text. A password
//!   set through keyring reads the same through the `securestore` CLI or an Expo app, and a value they
//!   set reads as its text through keyring.
//! - Any other bytes (not UTF-8, or text that happens to start with the prefix) are stored as
//!   [`BINARY_PREFIX`] followed by their standard base64 with padding.
//!
//! The two images are disjoint (plain text never starts with the prefix; encoded values always do),
//! so a password that looks like an encoded value still comes back exactly as set. The one value this
//! store reads differently from its text is a value written by another client that starts with the
//! prefix: it is decoded, and one that is not valid base64 is reported as
//! [`keyring_core::Error::BadDataFormat`].

use securestore_proto::SecretString;
use zeroize::Zeroize;

/// What every value holding base64-encoded bytes starts with.
pub const BINARY_PREFIX: &str = "keyring-binary:base64:";

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The value to store for `secret`.
pub fn encode(secret: &[u8]) -> SecretString {
    match std::str::from_utf8(secret) {
        Ok(text) if !text.starts_with(BINARY_PREFIX) => SecretString::from(text),
        _ => {
            let mut out = String::with_capacity(BINARY_PREFIX.len() + secret.len().div_ceil(3) * 4);
            out.push_str(BINARY_PREFIX);
            for chunk in secret.chunks(3) {
                let b = [
                    chunk[0],
                    chunk.get(1).copied().unwrap_or(0),
                    chunk.get(2).copied().unwrap_or(0),
                ];
                let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                for i in 0..4 {
                    if i <= chunk.len() {
                        out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
                    } else {
                        out.push('=');
                    }
                }
            }
            SecretString::new(out)
        }
    }
}

/// Why a stored value that claims to hold base64 does not.
#[derive(Debug)]
pub struct BadBase64;

impl std::fmt::Display for BadBase64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the value starts with {BINARY_PREFIX:?} but the rest is not canonical padded base64"
        )
    }
}

impl std::error::Error for BadBase64 {}

/// The secret bytes a stored value holds.
///
/// # Errors
/// [`BadBase64`] for a value that starts with [`BINARY_PREFIX`] and is not followed by canonical
/// padded base64.
pub fn decode(stored: &str) -> Result<Vec<u8>, BadBase64> {
    let Some(body) = stored.strip_prefix(BINARY_PREFIX) else {
        return Ok(stored.as_bytes().to_vec());
    };
    let body = body.as_bytes();
    if body.len() % 4 != 0 {
        return Err(BadBase64);
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3);
    let quads = body.len() / 4;
    for (q, quad) in body.chunks(4).enumerate() {
        let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && q + 1 != quads) {
            out.zeroize();
            return Err(BadBase64);
        }
        let mut n = 0u32;
        for &c in &quad[..4 - pad] {
            let Some(v) = ALPHABET.iter().position(|&a| a == c) else {
                out.zeroize();
                return Err(BadBase64);
            };
            n = (n << 6) | v as u32;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // Canonical only: the bits the padding drops must be zero, so each value has one encoding.
        if bytes[3 - pad..].iter().any(|&b| b != 0) {
            out.zeroize();
            return Err(BadBase64);
        }
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn text_is_stored_as_itself_and_everything_else_tagged() {
        assert_eq!(encode(b"hunter2").expose_secret(), "hunter2");
        assert_eq!(encode(b"").expose_secret(), "");
        assert_eq!(encode("桜".as_bytes()).expose_secret(), "桜");
        assert_eq!(
            encode(&[0xff, 0x00, 0x10]).expose_secret(),
            "keyring-binary:base64:/wAQ"
        );
        let lookalike = format!("{BINARY_PREFIX}aGk=");
        let stored = encode(lookalike.as_bytes());
        assert_ne!(stored.expose_secret(), lookalike);
        assert_eq!(
            decode(stored.expose_secret()).expect("decodes"),
            lookalike.as_bytes()
        );
    }

    /// The RFC 4648 test vectors, through the binary path.
    #[test]
    fn rfc_4648_vectors() {
        for (plain, b64) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let stored = format!("{BINARY_PREFIX}{b64}");
            assert_eq!(decode(&stored).expect("decodes"), plain.as_bytes());
            let mut bytes = plain.as_bytes().to_vec();
            bytes.push(0xff); // not UTF-8, so the binary path
            let encoded = encode(&bytes);
            assert_eq!(decode(encoded.expose_secret()).expect("decodes"), bytes);
        }
    }

    #[test]
    fn malformed_base64_is_refused() {
        for body in [
            "Zg", "Zg=", "Z===", "Zg==Zg==", "Zh==", "Zm9=", "!!!!", "Zm 9",
        ] {
            assert!(
                decode(&format!("{BINARY_PREFIX}{body}")).is_err(),
                "{body:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_bytes_round_trip(secret in proptest::collection::vec(any::<u8>(), 0..200)) {
            let stored = encode(&secret);
            prop_assert_eq!(decode(stored.expose_secret()).expect("decodes"), secret);
        }

        #[test]
        fn any_text_round_trips(text in any::<String>()) {
            let stored = encode(text.as_bytes());
            prop_assert_eq!(decode(stored.expose_secret()).expect("decodes"), text.as_bytes());
        }

        #[test]
        fn different_secrets_are_stored_differently(
            a in proptest::collection::vec(any::<u8>(), 0..8),
            b in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            prop_assert_eq!(a == b, encode(&a).expose_secret() == encode(&b).expose_secret());
        }
    }
}
