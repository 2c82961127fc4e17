//! [`ServiceError`]: every answer the daemon can give instead of a result.

use serde::{Deserialize, Serialize};

/// Why the daemon (or a client's own check of the same rule) turned a request down.
///
/// These are answers, not transport failures: the connection is still good after any of them. They
/// cross the wire, so variants are only ever added, never renumbered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The key is empty or holds a character other than ASCII letters, digits, `.`, `-` and `_`.
    // The text is Expo's own, word for word, so apps porting from Expo see the message they know.
    #[error(
        "Invalid key provided to SecureStore. Keys must not be empty and contain only alphanumeric characters, \".\", \"-\", and \"_\"."
    )]
    InvalidKey,
    /// The key is longer than [`crate::limits::MAX_KEY_BYTES`].
    #[error("key too long: {len} bytes, the limit is {limit}")]
    KeyTooLong {
        /// Length of the key that was sent.
        len: u64,
        /// The limit it broke.
        limit: u64,
    },
    /// The `keychainService` is empty, too long, or holds a control character.
    #[error("invalid keychainService: {reason}")]
    InvalidService {
        /// Which rule it broke.
        reason: String,
    },
    /// The project id is empty, too long, or holds a character outside `A-Za-z0-9 . _ - @ /`.
    #[error("invalid project id: {reason}")]
    InvalidProject {
        /// Which rule it broke.
        reason: String,
    },
    /// The value is larger than the daemon's `--max-value-bytes`.
    #[error("value too large: {size} bytes, the limit is {limit} bytes")]
    ValueTooLarge {
        /// Size of the value that was sent, in bytes.
        size: u64,
        /// The daemon's limit, in bytes.
        limit: u64,
    },
    /// The daemon will not serve this peer or this project.
    #[error("refused by the daemon: {reason}")]
    Refused {
        /// Why, in words safe to show to the peer.
        reason: String,
    },
    /// The client speaks a protocol version the daemon does not.
    #[error("unsupported protocol version {client}; the daemon speaks {daemon}")]
    UnsupportedVersion {
        /// The version the client sent.
        client: u16,
        /// The version the daemon speaks.
        daemon: u16,
    },
    /// A stored item exists but its ciphertext did not authenticate: it was altered or moved.
    #[error("cannot decrypt the value for key '{key}' under keychainService '{service}'")]
    CannotDecrypt {
        /// The item's key.
        key: String,
        /// The item's service.
        service: String,
    },
    /// The store has no room left for the write; earlier items are intact.
    #[error("storage full: the write was not stored")]
    StorageFull,
    /// The store failed for another reason; the daemon's log has the details.
    #[error("storage failure: {message}")]
    Storage {
        /// A summary without secrets.
        message: String,
    },
    /// The project is already registered; remove it first to issue a new token.
    #[error("project '{project}' is already registered")]
    AlreadyRegistered {
        /// The project id.
        project: String,
    },
    /// The registry holds as many projects as it may.
    #[error("too many registered projects: the limit is {limit}")]
    TooManyProjects {
        /// The limit.
        limit: u64,
    },
    /// The daemon is shutting down and takes no new requests.
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// An I/O error struck while the write was being committed: it may or may not be stored. Never
    /// assume it failed: write again, or read the item back once the daemon has restarted (until
    /// then it may still serve the earlier value). (Appended last: the wire numbers variants by
    /// position.)
    #[error(
        "storage failure: the outcome of the write is unknown (it may be stored); write it again"
    )]
    OutcomeUnknown,
    /// A compare-and-set's condition did not hold: the item's current value is not the expected one
    /// (or it exists when it had to be absent). Nothing was changed, and the current value is not
    /// told. (Protocol version 2; appended last.)
    #[error("conflict: the item's current value is not the expected one; nothing was changed")]
    Conflict,
    /// One operation of a batch failed, so none of the batch was applied. (Protocol version 2.)
    #[error("batch operation {index} failed, so none was applied: {error}")]
    InBatch {
        /// The position of the first failing operation in the batch.
        index: u64,
        /// Why it failed.
        error: Box<ServiceError>,
    },
    /// The request is larger than the protocol allows (too many operations in a batch, or too
    /// many bytes). (Protocol version 2.)
    #[error("request too large: {what}")]
    TooLarge {
        /// Which bound it broke.
        what: String,
    },
    /// The item's class makes it unavailable in the device's current state (locked, or not yet
    /// unlocked since start): nothing was read or written. Never answered as "absent". (Protocol
    /// version 3.)
    #[error(
        "the device is locked: the item '{key}' under keychainService '{service}' is not available until the device is unlocked"
    )]
    Locked {
        /// The item's service (empty when the request named none, as an export).
        service: String,
        /// The item's key (empty when the request named none).
        key: String,
    },
    /// A `WHEN_PASSCODE_SET_THIS_DEVICE_ONLY` item cannot be stored while no passcode is set.
    /// (Protocol version 3.)
    #[error(
        "no passcode is set on this device: WHEN_PASSCODE_SET_THIS_DEVICE_ONLY items cannot be stored"
    )]
    PasscodeNotSet,
    /// The request is valid but this backend cannot do it (e.g. master-key rotation on a platform
    /// keystore). (Protocol version 3.)
    #[error("not supported by this backend: {what}")]
    Unsupported {
        /// What was asked.
        what: String,
    },
}
