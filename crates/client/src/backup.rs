//! Sealing and opening backup files (`securestore export` / `import`): the payload is sealed with
//! XChaCha20-Poly1305 under a key derived from a passphrase with Argon2id (RustCrypto's `argon2`),
//! its parameters recorded in the file. The layout is `securestore_proto::backup`.
//!
//! Opening checks everything before anything is imported: a wrong passphrase, a truncated or altered
//! file, a newer format, or an item that must never leave its device refuses the whole file.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use securestore_proto::SecretString;
use securestore_proto::backup::{
    self, Backup, BackupFormatError, Header, KdfParams, NONCE_LEN, SALT_LEN,
};
use zeroize::Zeroizing;

/// Why a backup could not be made or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The file is not one this build can open.
    #[error(transparent)]
    Format(#[from] BackupFormatError),
    /// The passphrase is wrong, or the file was altered or truncated (the two cannot be told apart).
    #[error("wrong passphrase, or the backup file is damaged or altered; nothing was imported")]
    WrongPassphraseOrDamaged,
    /// The payload authenticated but holds an item that must never leave its device.
    #[error(
        "the backup holds '{key}' under keychainService '{service}' of class {class}, which never leaves its device; refusing the whole file"
    )]
    ThisDeviceOnly {
        /// The item's service.
        service: String,
        /// The item's key.
        key: String,
        /// Its class.
        class: securestore_proto::KeychainAccessible,
    },
    /// An empty passphrase.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// Key derivation, randomness or encoding failed.
    #[error("cannot seal the backup: {0}")]
    Crypto(String),
}

fn derive(passphrase: &SecretString, header: &Header) -> Result<Zeroizing<[u8; 32]>, BackupError> {
    let params = Params::new(
        header.kdf.m_cost_kib,
        header.kdf.t_cost,
        header.kdf.p_cost,
        Some(32),
    )
    .map_err(|e| BackupFormatError::BadParameters(e.to_string()))?;
    let mut key = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(
            passphrase.expose_secret().as_bytes(),
            &header.salt,
            key.as_mut_slice(),
        )
        .map_err(|e| BackupError::Crypto(e.to_string()))?;
    Ok(key)
}

/// Seals `backup` under `passphrase` with the default Argon2id parameters.
///
/// # Errors
/// [`BackupError::EmptyPassphrase`]; [`BackupError::Crypto`].
pub fn seal(backup: &Backup, passphrase: &SecretString) -> Result<Vec<u8>, BackupError> {
    seal_with(backup, passphrase, KdfParams::DEFAULT)
}

/// Seals `backup` under `passphrase` with the given Argon2id parameters (tests use cheap ones).
///
/// # Errors
/// As [`seal`]; out-of-bounds parameters.
pub fn seal_with(
    backup: &Backup,
    passphrase: &SecretString,
    kdf: KdfParams,
) -> Result<Vec<u8>, BackupError> {
    if passphrase.is_empty() {
        return Err(BackupError::EmptyPassphrase);
    }
    let mut header = Header {
        kdf,
        salt: [0; SALT_LEN],
        nonce: [0; NONCE_LEN],
    };
    getrandom::fill(&mut header.salt).map_err(|e| BackupError::Crypto(e.to_string()))?;
    getrandom::fill(&mut header.nonce).map_err(|e| BackupError::Crypto(e.to_string()))?;
    // Check our own header as a reader will, so we never write a file we would refuse.
    let mut file = header.to_bytes();
    Header::parse(&file)?;
    let key = derive(passphrase, &header)?;
    let mut body = Zeroizing::new(
        backup::encode_payload(backup).map_err(|e| BackupError::Crypto(e.to_string()))?,
    );
    let cipher = XChaCha20Poly1305::new_from_slice(key.as_slice())
        .map_err(|e| BackupError::Crypto(e.to_string()))?;
    let mut sealed = body.to_vec();
    body.iter_mut().for_each(|b| *b = 0);
    cipher
        .encrypt_in_place(&XNonce::from(header.nonce), &file, &mut sealed)
        .map_err(|_| BackupError::Crypto("encryption failed".to_owned()))?;
    file.extend_from_slice(&sealed);
    Ok(file)
}

/// Opens a backup file: checks its header, derives the key, authenticates and decodes the payload,
/// and refuses any item that must never leave its device. Nothing is returned unless all of it is
/// sound.
///
/// # Errors
/// [`BackupError`], refusing the whole file.
pub fn open(file: &[u8], passphrase: &SecretString) -> Result<Backup, BackupError> {
    let (header, sealed) = Header::parse(file)?;
    let key = derive(passphrase, &header)?;
    let cipher = XChaCha20Poly1305::new_from_slice(key.as_slice())
        .map_err(|e| BackupError::Crypto(e.to_string()))?;
    let mut plain = Zeroizing::new(sealed.to_vec());
    cipher
        .decrypt_in_place(
            &XNonce::from(header.nonce),
            &file[..backup::HEADER_LEN],
            &mut *plain,
        )
        .map_err(|_| BackupError::WrongPassphraseOrDamaged)?;
    let backup =
        backup::decode_payload(&plain).map_err(|_| BackupError::WrongPassphraseOrDamaged)?;
    if let Some(item) = backup
        .items
        .iter()
        .find(|i| i.accessible.this_device_only())
    {
        return Err(BackupError::ThisDeviceOnly {
            service: item.service.clone(),
            key: item.key.clone(),
            class: item.accessible,
        });
    }
    Ok(backup)
}

#[cfg(test)]
mod tests {
    use securestore_proto::{ExportedItem, KeychainAccessible};

    use super::*;

    const CHEAP: KdfParams = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    fn backup(class: KeychainAccessible) -> Backup {
        Backup {
            project: "@o/app".to_owned(),
            service: None,
            exported_at: 1,
            items: vec![ExportedItem {
                service: "app".to_owned(),
                key: "token".to_owned(),
                value: SecretString::from("PLAINTEXT-MARKER-backup"),
                accessible: class,
                written_at: 5,
            }],
        }
    }

    #[test]
    fn a_sealed_backup_opens_only_with_its_passphrase_and_unaltered() {
        let pass = SecretString::from("correct horse");
        let file =
            seal_with(&backup(KeychainAccessible::WhenUnlocked), &pass, CHEAP).expect("seal");
        assert!(!file.windows(23).any(|w| w == b"PLAINTEXT-MARKER-backup"));
        let opened = open(&file, &pass).expect("open");
        assert_eq!(
            opened.items[0].value.expose_secret(),
            "PLAINTEXT-MARKER-backup"
        );
        assert!(matches!(
            open(&file, &SecretString::from("wrong")),
            Err(BackupError::WrongPassphraseOrDamaged)
        ));
        for at in [0, 8, 9, 20, backup::HEADER_LEN, file.len() - 1] {
            let mut bad = file.clone();
            bad[at] ^= 1;
            assert!(
                open(&bad, &pass).is_err(),
                "a flip at byte {at} went unnoticed"
            );
        }
        assert!(open(&file[..file.len() - 1], &pass).is_err(), "truncated");
        assert!(matches!(
            seal_with(
                &backup(KeychainAccessible::Always),
                &SecretString::from(""),
                CHEAP
            ),
            Err(BackupError::EmptyPassphrase)
        ));
    }

    #[test]
    fn a_this_device_only_item_refuses_the_whole_file() {
        let pass = SecretString::from("pw");
        let file = seal_with(
            &backup(KeychainAccessible::WhenUnlockedThisDeviceOnly),
            &pass,
            CHEAP,
        )
        .expect("seal");
        assert!(matches!(
            open(&file, &pass),
            Err(BackupError::ThisDeviceOnly { .. })
        ));
    }
}
