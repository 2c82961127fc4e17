//! [`ErrorCode`] and [`BridgeError`]: every failure a binding can report, as a stable number.

use securestore_client::Error;
use securestore_client::backup::BackupError;
use securestore_proto::ServiceError;

/// Why a binding call failed. The numbers are part of every binding's ABI (the C header, Java's
/// `SecureStoreException.Code`): only ever add, never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Success (only the C ABI returns it).
    Ok = 0,
    /// The key is empty, too long, or holds a character Expo does not allow.
    InvalidKey = 1,
    /// The `keychainService` is empty, too long, or holds a control character.
    InvalidService = 2,
    /// The project id is empty, too long, or holds a character outside `A-Za-z0-9 . _ - @ /`.
    InvalidProject = 3,
    /// The value is larger than the daemon's limit (the message names it).
    ValueTooLarge = 4,
    /// The daemon will not serve this caller or project (wrong or missing token, strict policy,
    /// another uid, a different protocol, too many requests at once).
    Refused = 5,
    /// No daemon answers, or the connection to it was lost.
    Unreachable = 6,
    /// No answer in time; a write may or may not have been applied.
    TimedOut = 7,
    /// The store failed: full, damaged, or a value that does not decrypt.
    Storage = 8,
    /// An argument the binding itself rejects: a null pointer, text that is not UTF-8, an unknown
    /// option value.
    InvalidArgument = 9,
    /// The daemon could not be started in this process (socket or data folder in use, bad path, the
    /// store would not open).
    HostFailed = 10,
    /// A bug: a panic caught at the boundary, or an answer the client did not understand.
    Internal = 11,
    /// A conditional write (`setIf`, `deleteIf`) found another value: nothing was changed.
    Conflict = 12,
    /// The daemon speaks an older protocol without this call; upgrade it. Nothing was sent.
    Unsupported = 13,
    /// The device is locked (or not unlocked since it started) and the item's `keychainAccessible`
    /// class is not available until it is unlocked; nothing was read or changed. Never "absent".
    Locked = 14,
    /// A `WHEN_PASSCODE_SET_THIS_DEVICE_ONLY` item cannot be stored: no passcode is set.
    PasscodeNotSet = 15,
    /// A backup file cannot be opened: a wrong passphrase, a damaged or altered file, a newer
    /// format, or an item that must never leave its device. Nothing was imported.
    BadBackup = 16,
}

impl ErrorCode {
    /// The stable name, as Java's enum constant spells it (e.g. `"VALUE_TOO_LARGE"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::InvalidKey => "INVALID_KEY",
            Self::InvalidService => "INVALID_SERVICE",
            Self::InvalidProject => "INVALID_PROJECT",
            Self::ValueTooLarge => "VALUE_TOO_LARGE",
            Self::Refused => "REFUSED",
            Self::Unreachable => "UNREACHABLE",
            Self::TimedOut => "TIMED_OUT",
            Self::Storage => "STORAGE",
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::HostFailed => "HOST_FAILED",
            Self::Internal => "INTERNAL",
            Self::Conflict => "CONFLICT",
            Self::Unsupported => "UNSUPPORTED",
            Self::Locked => "LOCKED",
            Self::PasscodeNotSet => "PASSCODE_NOT_SET",
            Self::BadBackup => "BAD_BACKUP",
        }
    }
}

/// A failed binding call: its code and a message for people. Messages name keys, services and
/// projects, never values or tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What happened, in words.
    pub message: String,
}

impl BridgeError {
    /// A failure of kind `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// [`ErrorCode::InvalidArgument`].
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
}

impl std::fmt::Display for BridgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BridgeError {}

impl From<ServiceError> for BridgeError {
    fn from(err: ServiceError) -> Self {
        let code = match &err {
            ServiceError::InvalidKey | ServiceError::KeyTooLong { .. } => ErrorCode::InvalidKey,
            ServiceError::InvalidService { .. } => ErrorCode::InvalidService,
            ServiceError::InvalidProject { .. } => ErrorCode::InvalidProject,
            ServiceError::ValueTooLarge { .. } => ErrorCode::ValueTooLarge,
            ServiceError::Refused { .. }
            | ServiceError::UnsupportedVersion { .. }
            | ServiceError::AlreadyRegistered { .. }
            | ServiceError::TooManyProjects { .. } => ErrorCode::Refused,
            ServiceError::ShuttingDown => ErrorCode::Unreachable,
            ServiceError::CannotDecrypt { .. }
            | ServiceError::StorageFull
            | ServiceError::Storage { .. }
            | ServiceError::OutcomeUnknown => ErrorCode::Storage,
            ServiceError::Conflict => ErrorCode::Conflict,
            ServiceError::Locked { .. } => ErrorCode::Locked,
            ServiceError::PasscodeNotSet => ErrorCode::PasscodeNotSet,
            ServiceError::Unsupported { .. } => ErrorCode::Unsupported,
            ServiceError::TooLarge { .. } => ErrorCode::InvalidArgument,
            // A batch's failure is its first failing operation's.
            ServiceError::InBatch { error, .. } => {
                let code = BridgeError::from(ServiceError::clone(error)).code;
                return Self::new(code, err.to_string());
            }
            _ => ErrorCode::Internal,
        };
        Self::new(code, err.to_string())
    }
}

impl From<Error> for BridgeError {
    fn from(err: Error) -> Self {
        let code = match err {
            Error::Service(answer) => return answer.into(),
            Error::Unreachable { .. } | Error::Disconnected(_) => ErrorCode::Unreachable,
            Error::TimedOut => ErrorCode::TimedOut,
            Error::Busy(_) => ErrorCode::Refused,
            Error::Unsupported { .. } => ErrorCode::Unsupported,
            _ => ErrorCode::Internal,
        };
        Self::new(code, err.to_string())
    }
}

impl From<BackupError> for BridgeError {
    fn from(err: BackupError) -> Self {
        let code = match err {
            BackupError::EmptyPassphrase => ErrorCode::InvalidArgument,
            BackupError::Format(_)
            | BackupError::WrongPassphraseOrDamaged
            | BackupError::ThisDeviceOnly { .. } => ErrorCode::BadBackup,
            _ => ErrorCode::Internal,
        };
        Self::new(code, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_transport_failures_get_their_codes() {
        let invalid: BridgeError = Error::Service(ServiceError::InvalidKey).into();
        assert_eq!(invalid.code, ErrorCode::InvalidKey);
        assert!(
            invalid
                .message
                .starts_with("Invalid key provided to SecureStore")
        );
        let large: BridgeError = ServiceError::ValueTooLarge { size: 9, limit: 8 }.into();
        assert_eq!(large.code, ErrorCode::ValueTooLarge);
        assert!(large.message.contains("the limit is 8 bytes"), "{large}");
        assert_eq!(BridgeError::from(Error::TimedOut).code, ErrorCode::TimedOut);
        assert_eq!(
            BridgeError::from(Error::Disconnected(None)).code,
            ErrorCode::Unreachable
        );
        assert_eq!(ErrorCode::ValueTooLarge as i32, 4);
        assert_eq!(
            BridgeError::from(Error::Service(ServiceError::Conflict)).code,
            ErrorCode::Conflict
        );
        let in_batch = ServiceError::InBatch {
            index: 3,
            error: Box::new(ServiceError::Conflict),
        };
        let in_batch = BridgeError::from(in_batch);
        assert_eq!(in_batch.code, ErrorCode::Conflict);
        assert!(in_batch.message.contains("operation 3"), "{in_batch}");
        let unsupported = Error::Unsupported {
            call: "contains",
            daemon: 1,
            needs: 2,
        };
        assert_eq!(BridgeError::from(unsupported).code, ErrorCode::Unsupported);
        assert_eq!(
            (ErrorCode::Conflict as i32, ErrorCode::Unsupported as i32),
            (12, 13)
        );
        assert_eq!(ErrorCode::Internal.name(), "INTERNAL");
    }

    #[test]
    fn device_state_answers_get_their_own_codes() {
        let locked = ServiceError::Locked {
            service: "app".to_owned(),
            key: "token".to_owned(),
        };
        let locked = BridgeError::from(Error::Service(locked));
        assert_eq!(locked.code, ErrorCode::Locked);
        assert!(locked.message.contains("locked"), "{locked}");
        assert_eq!(
            BridgeError::from(ServiceError::PasscodeNotSet).code,
            ErrorCode::PasscodeNotSet
        );
        let unsupported = ServiceError::Unsupported {
            what: "key rotation".to_owned(),
        };
        assert_eq!(BridgeError::from(unsupported).code, ErrorCode::Unsupported);
        let in_batch = ServiceError::InBatch {
            index: 0,
            error: Box::new(ServiceError::Locked {
                service: String::new(),
                key: "k".to_owned(),
            }),
        };
        assert_eq!(BridgeError::from(in_batch).code, ErrorCode::Locked);
        // Appended after the existing codes: the numbers are ABI.
        assert_eq!(
            (ErrorCode::Locked as i32, ErrorCode::PasscodeNotSet as i32),
            (14, 15)
        );
        assert_eq!(ErrorCode::PasscodeNotSet.name(), "PASSCODE_NOT_SET");
    }
}
