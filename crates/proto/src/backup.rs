//! The backup file `securestore export` writes and `securestore import` reads: its header and its
//! payload, as both ends (the CLI, the Rust and Java APIs) must agree on them. The sealing itself
//! (Argon2id and XChaCha20-Poly1305) is the client's `backup` module.
//!
//! ```text
//! magic "SSBACKUP" (8) ‖ format (1) ‖ Argon2id m_cost KiB (4, BE) ‖ t_cost (4) ‖ p_cost (4)
//!   ‖ salt (16) ‖ nonce (24) ‖ ciphertext of the payload ‖ tag (16)
//! ```
//!
//! The whole header is the AEAD's associated data, so a changed parameter fails like a changed
//! byte of the payload. The payload is a [`Backup`] in the one codec.

use serde::{Deserialize, Serialize};

use crate::service::ExportedItem;

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"SSBACKUP";
/// The format this build writes and the newest it reads.
pub const FORMAT: u8 = 1;
/// Salt length.
pub const SALT_LEN: usize = 16;
/// Nonce length (XChaCha20-Poly1305).
pub const NONCE_LEN: usize = 24;
/// Header length.
pub const HEADER_LEN: usize = MAGIC.len() + 1 + 12 + SALT_LEN + NONCE_LEN;
/// Largest backup file read (and its payload), so a hostile file cannot make the reader allocate
/// without bound.
pub const MAX_BACKUP_BYTES: usize = 512 * 1024 * 1024;
/// Largest Argon2id memory cost a file may ask for, in KiB (256 MiB, four times the default); more
/// is refused unread, so a crafted file cannot make an app's process (bindings) allocate more.
pub const MAX_M_COST_KIB: u32 = 256 * 1024;
/// Largest Argon2id time cost a file may ask for.
pub const MAX_T_COST: u32 = 16;
/// Largest Argon2id parallelism a file may ask for.
pub const MAX_P_COST: u32 = 8;

/// What a backup holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Backup {
    /// The project it was exported from (informational: an import goes to the importer's project).
    pub project: String,
    /// The service it was limited to, if any.
    pub service: Option<String>,
    /// When it was made, in Unix milliseconds.
    pub exported_at: i64,
    /// The items, ordered by (service, key); never a `*_THIS_DEVICE_ONLY` one.
    pub items: Vec<ExportedItem>,
}

/// The Argon2id parameters a file was sealed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory cost, KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl KdfParams {
    /// What `securestore export` uses: 64 MiB, 3 passes, 1 lane (OWASP's Argon2id guidance).
    pub const DEFAULT: Self = Self {
        m_cost_kib: 64 * 1024,
        t_cost: 3,
        p_cost: 1,
    };
}

/// The header of a backup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Key derivation parameters.
    pub kdf: KdfParams,
    /// Argon2id salt.
    pub salt: [u8; SALT_LEN],
    /// AEAD nonce.
    pub nonce: [u8; NONCE_LEN],
}

/// Why a file is not a backup this build can open. Each refuses the whole file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackupFormatError {
    /// Too short, or the wrong first bytes.
    #[error("not a securestore backup file")]
    NotABackup,
    /// Made by a newer securestore.
    #[error(
        "the backup has format {found}; this securestore reads up to format {supported}; upgrade it"
    )]
    NewerFormat {
        /// The file's format.
        found: u8,
        /// The newest this build reads.
        supported: u8,
    },
    /// Key derivation parameters out of bounds.
    #[error("the backup asks for key derivation parameters out of bounds ({0})")]
    BadParameters(String),
    /// Larger than [`MAX_BACKUP_BYTES`].
    #[error("the backup is larger than {MAX_BACKUP_BYTES} bytes")]
    TooLarge,
}

impl Header {
    /// The header's bytes (also the associated data of the payload).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        out.extend_from_slice(&self.kdf.m_cost_kib.to_be_bytes());
        out.extend_from_slice(&self.kdf.t_cost.to_be_bytes());
        out.extend_from_slice(&self.kdf.p_cost.to_be_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.nonce);
        out
    }

    /// Splits `file` into its header (checked) and the sealed payload.
    ///
    /// # Errors
    /// [`BackupFormatError`]: the file is refused whole.
    pub fn parse(file: &[u8]) -> Result<(Self, &[u8]), BackupFormatError> {
        if file.len() > MAX_BACKUP_BYTES {
            return Err(BackupFormatError::TooLarge);
        }
        if file.len() < HEADER_LEN || &file[..MAGIC.len()] != MAGIC {
            return Err(BackupFormatError::NotABackup);
        }
        let format = file[MAGIC.len()];
        if format > FORMAT {
            return Err(BackupFormatError::NewerFormat {
                found: format,
                supported: FORMAT,
            });
        }
        if format == 0 {
            return Err(BackupFormatError::NotABackup);
        }
        let word = |at: usize| {
            let mut bytes = [0u8; 4];
            bytes.copy_from_slice(&file[at..at + 4]);
            u32::from_be_bytes(bytes)
        };
        let at = MAGIC.len() + 1;
        let kdf = KdfParams {
            m_cost_kib: word(at),
            t_cost: word(at + 4),
            p_cost: word(at + 8),
        };
        if kdf.m_cost_kib > MAX_M_COST_KIB
            || kdf.t_cost == 0
            || kdf.t_cost > MAX_T_COST
            || kdf.p_cost == 0
            || kdf.p_cost > MAX_P_COST
            || kdf.m_cost_kib < 8 * kdf.p_cost
        {
            return Err(BackupFormatError::BadParameters(format!(
                "m={} KiB, t={}, p={}",
                kdf.m_cost_kib, kdf.t_cost, kdf.p_cost
            )));
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&file[at + 12..at + 12 + SALT_LEN]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&file[at + 12 + SALT_LEN..HEADER_LEN]);
        Ok((Self { kdf, salt, nonce }, &file[HEADER_LEN..]))
    }
}

/// Encodes a payload with the one codec.
///
/// # Errors
/// When it is larger than [`MAX_BACKUP_BYTES`].
pub fn encode_payload(backup: &Backup) -> std::io::Result<Vec<u8>> {
    crate::codec::encode(backup, MAX_BACKUP_BYTES)
}

/// Decodes a payload with the one codec.
///
/// # Errors
/// When the bytes are not a payload.
pub fn decode_payload(bytes: &[u8]) -> std::io::Result<Backup> {
    crate::codec::decode(bytes, MAX_BACKUP_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            kdf: KdfParams::DEFAULT,
            salt: [1; SALT_LEN],
            nonce: [2; NONCE_LEN],
        }
    }

    #[test]
    fn a_header_round_trips_and_bad_ones_are_refused() {
        let bytes = header().to_bytes();
        assert_eq!(bytes.len(), HEADER_LEN);
        let mut file = bytes.clone();
        file.extend_from_slice(b"payload");
        let (parsed, rest) = Header::parse(&file).expect("parse");
        assert_eq!(parsed, header());
        assert_eq!(rest, b"payload");

        assert_eq!(
            Header::parse(&file[..HEADER_LEN - 1]),
            Err(BackupFormatError::NotABackup)
        );
        let mut newer = file.clone();
        newer[MAGIC.len()] = FORMAT + 1;
        assert!(matches!(
            Header::parse(&newer),
            Err(BackupFormatError::NewerFormat { .. })
        ));
        let mut greedy = file.clone();
        greedy[MAGIC.len() + 1..MAGIC.len() + 5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Header::parse(&greedy),
            Err(BackupFormatError::BadParameters(_))
        ));
        let mut wrong = file;
        wrong[0] = b'X';
        assert_eq!(Header::parse(&wrong), Err(BackupFormatError::NotABackup));
    }
}
