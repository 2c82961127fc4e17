//! [`BackendError`]: every way a backend can fail.

use std::path::PathBuf;

/// A backend failure. The daemon maps each variant to a wire answer in one place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// A stored item failed authentication: its ciphertext was altered or moved from another row.
    #[error("cannot decrypt the value for key '{key}' under keychainService '{service}'")]
    CannotDecrypt {
        /// The item's service.
        service: String,
        /// The item's key.
        key: String,
    },
    /// The disk is full; the write was rolled back and earlier items are intact.
    #[error("storage full")]
    StorageFull,
    /// An I/O error struck while a write was being committed: it may or may not be durable. Read the
    /// item back (after a restart, to be sure) to learn which.
    #[error("the outcome of the write is unknown: {action}: {detail}")]
    OutcomeUnknown {
        /// What was being done.
        action: &'static str,
        /// The failure, as the storage reported it.
        detail: String,
    },
    /// The database holds items but its master key file is gone.
    #[error(
        "the master key file {} is missing but the database {} exists; refusing to start empty over existing data (restore the key file, or move the database away to start afresh)",
        key_file.display(),
        database.display()
    )]
    MissingMasterKey {
        /// Where the key file was expected.
        key_file: PathBuf,
        /// The database that needs it.
        database: PathBuf,
    },
    /// The master key does not open the database's key check: it is another database's key.
    #[error("the master key in {} does not match the database {}", key_file.display(), database.display())]
    WrongMasterKey {
        /// The key file that was read.
        key_file: PathBuf,
        /// The database it failed to open.
        database: PathBuf,
    },
    /// The master key file exists but is not a key, or others may read it.
    #[error("bad master key file {}: {reason}", path.display())]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The database file is damaged or is not a securestore database.
    #[error("the database {} is damaged or not a securestore database", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// SQLite's report.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer securestore.
    #[error("the database {} has format version {found}; this securestored reads up to {supported}", path.display())]
    UnsupportedFormat {
        /// The database file.
        path: PathBuf,
        /// The version it records.
        found: i64,
        /// The newest version this build reads.
        supported: i64,
    },
    /// The database must be migrated to this build's format, a migration that copies every item,
    /// and the file system holding it has too little free space for that copy: nothing was changed.
    #[error(
        "cannot migrate the database {} from format {from} to {to}: the migration copies every item and needs about {} MiB free beside it, and {} MiB are free. Nothing was changed: free some space and start again",
        path.display(),
        needed.div_ceil(1 << 20),
        available / (1 << 20)
    )]
    NoRoomToMigrate {
        /// The database file.
        path: PathBuf,
        /// The format it has.
        from: i64,
        /// The format this build writes.
        to: i64,
        /// Bytes the migration needs free, about.
        needed: u64,
        /// Bytes free for it.
        available: u64,
    },
    /// A folder or file that holds secrets, or a folder above one, is not safe to trust: a symbolic
    /// link, someone else's, or open to others (see [`crate::paths`]).
    #[error("refusing {}: {problem}", path.display())]
    UnsafePath {
        /// The folder or file at fault.
        path: PathBuf,
        /// What is wrong with it, and what it must be.
        problem: String,
    },
    /// A file-system operation failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done, e.g. "cannot create folder".
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("sqlite: {action}")]
    Sqlite {
        /// What was being done.
        action: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The call did not complete: the storage owner is gone or the call panicked (a bug, logged).
    #[error("internal storage error: {0}")]
    Internal(String),
    /// The random generator or the cipher failed.
    #[error("crypto failure: {0}")]
    Crypto(String),
    /// The Android Keystore (or the Java runtime reached through JNI) failed.
    #[error("android keystore: {action}: {detail}")]
    Keystore {
        /// What was being done, e.g. "cannot create the key".
        action: &'static str,
        /// The Java exception's class and message, or the JNI failure.
        detail: String,
    },
    /// The iOS Keychain answered with an error status.
    #[error("keychain: {action}: {message} (OSStatus {status})")]
    Keychain {
        /// What was being done, e.g. "cannot add the item".
        action: &'static str,
        /// The `OSStatus`.
        status: i32,
        /// What the status means.
        message: String,
    },
    /// The item exists but its class makes it unreadable now (the device is locked).
    #[error(
        "the value for key '{key}' under keychainService '{service}' cannot be read while the device is locked"
    )]
    Locked {
        /// The item's service.
        service: String,
        /// The item's key.
        key: String,
    },
    /// A `WHEN_PASSCODE_SET_THIS_DEVICE_ONLY` item cannot be stored without a passcode.
    #[error(
        "no passcode is set on this device: WHEN_PASSCODE_SET_THIS_DEVICE_ONLY items cannot be stored"
    )]
    PasscodeNotSet,
    /// The unlock secret does not open the keys it was first given for.
    #[error(
        "the unlock secret is not the one the keys were bound to; the device state did not change"
    )]
    WrongUnlockSecret,
    /// The keys are bound to an unlock secret and the unlock gave none.
    #[error("this store's keys are bound to the host's unlock secret; unlock with it")]
    UnlockSecretRequired,
    /// An unlock secret that cannot be one (empty).
    #[error("{0}")]
    InvalidUnlockSecret(&'static str),
    /// The backend cannot do this.
    #[error("not supported by this backend: {0}")]
    Unsupported(&'static str),
}

impl BackendError {
    /// [`BackendError::Locked`] for `name`.
    pub fn locked(name: &crate::ItemName) -> Self {
        Self::Locked {
            service: name.service.as_str().to_owned(),
            key: name.key.as_str().to_owned(),
        }
    }

    /// A file-system failure: [`BackendError::StorageFull`] when the disk (or the quota) is full,
    /// [`BackendError::Io`] otherwise. File writes of the backends map their errors here.
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        use rustix::io::Errno;
        match Errno::from_io_error(&source) {
            Some(Errno::NOSPC | Errno::DQUOT) => Self::StorageFull,
            _ => Self::Io {
                action,
                path: path.to_owned(),
                source,
            },
        }
    }
}
