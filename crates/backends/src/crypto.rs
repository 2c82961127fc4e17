//! Sealing values: XChaCha20-Poly1305 under the master key, with the row as associated data.
//!
//! A sealed value is `version (1 byte) ‖ nonce (24 bytes) ‖ ciphertext ‖ tag (16 bytes)`. The
//! associated data names the item's project, service, key and class, so a ciphertext copied to any other
//! row, or given another class, fails to open instead of yielding a wrong secret. Nonces are random;
//! 192 bits make a collision negligible for any number of writes one device will make.

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::BackendError;
use crate::locked::Locked;

/// Length of a master key, in bytes.
pub(crate) const KEY_LEN: usize = 32;
const FORMAT: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Holds the master key (inside the cipher, which zeroizes it on drop, on locked pages) and seals
/// and opens values.
pub(crate) struct Sealer {
    cipher: Locked<XChaCha20Poly1305>,
}

impl Clone for Sealer {
    fn clone(&self) -> Self {
        Self {
            cipher: Locked::new(XChaCha20Poly1305::clone(&self.cipher)),
        }
    }
}

/// The associated data for one item: a domain tag and each part length-prefixed, so no two distinct
/// rows can produce the same bytes.
pub(crate) fn item_aad(project: &str, service: &str, key: &str, accessible: u8) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + project.len() + service.len() + key.len());
    aad.extend_from_slice(b"securestore/item/v1");
    for part in [project, service, key] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad.push(accessible);
    aad
}

impl Sealer {
    pub(crate) fn new(key: &Zeroizing<[u8; KEY_LEN]>) -> Self {
        let cipher = XChaCha20Poly1305::new_from_slice(key.as_slice())
            .expect("the key has the cipher's length");
        Self {
            cipher: Locked::new(cipher),
        }
    }

    /// Whether the key's memory is locked against swapping.
    pub(crate) fn is_locked(&self) -> bool {
        self.cipher.is_locked()
    }

    /// Encrypts `plaintext` bound to `aad`.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, BackendError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| BackendError::Crypto(format!("no randomness: {e}")))?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        sealed.push(FORMAT);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(plaintext);
        let mut body = sealed.split_off(1 + NONCE_LEN);
        let result = self
            .cipher
            .encrypt_in_place(&XNonce::from(nonce), aad, &mut body);
        if result.is_err() {
            // Only a plaintext past the cipher's 256 GiB bound can fail; wipe the copy regardless.
            zeroize::Zeroize::zeroize(&mut body);
            return Err(BackendError::Crypto("encryption failed".to_owned()));
        }
        sealed.append(&mut body);
        Ok(sealed)
    }

    /// Decrypts a sealed value bound to `aad`; `None` when it does not authenticate.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let (&format, rest) = sealed.split_first()?;
        if format != FORMAT || rest.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).ok()?;
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        self.cipher
            .decrypt_in_place(&nonce, aad, &mut *buffer)
            .ok()?;
        Some(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer(byte: u8) -> Sealer {
        Sealer::new(&Zeroizing::new([byte; KEY_LEN]))
    }

    #[test]
    fn opens_only_with_the_same_row_and_key() {
        let s = sealer(7);
        let aad = item_aad("p", "app", "token", 5);
        let sealed = s.seal(&aad, b"secret").expect("seal");
        assert_eq!(
            s.open(&aad, &sealed).as_deref().map(Vec::as_slice),
            Some(&b"secret"[..])
        );
        assert!(
            !sealed.windows(6).any(|w| w == b"secret"),
            "plaintext must not appear"
        );

        for other in [
            item_aad("q", "app", "token", 5),
            item_aad("p", "other", "token", 5),
            item_aad("p", "app", "token2", 5),
            item_aad("p", "app", "token", 0),
        ] {
            assert!(s.open(&other, &sealed).is_none());
        }
        assert!(
            sealer(8).open(&aad, &sealed).is_none(),
            "another key must not open it"
        );
    }

    #[test]
    fn a_flipped_bit_or_truncation_fails() {
        let s = sealer(1);
        let aad = item_aad("p", "s", "k", 5);
        let sealed = s.seal(&aad, b"value").expect("seal");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                s.open(&aad, &bad).is_none(),
                "flip at byte {i} went unnoticed"
            );
        }
        assert!(s.open(&aad, &sealed[..sealed.len() - 1]).is_none());
        assert!(s.open(&aad, &[]).is_none());
    }

    #[test]
    fn parts_are_length_prefixed() {
        assert_ne!(item_aad("ab", "c", "k", 5), item_aad("a", "bc", "k", 5));
    }

    #[test]
    fn empty_values_seal() {
        let s = sealer(2);
        let sealed = s.seal(b"aad", b"").expect("seal");
        assert_eq!(s.open(b"aad", &sealed).map(|v| v.len()), Some(0));
    }
}
