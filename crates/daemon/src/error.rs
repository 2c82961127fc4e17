//! The wire boundary for failures: every storage error becomes a stable answer here, and is logged here.

use securestore_backends::BackendError;
use securestore_proto::ServiceError;

/// Why a storage call did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The backend failed.
    Backend(BackendError),
    /// The write's connection lost its right to the project (removed, or its token replaced)
    /// before the owner applied it, so it was not applied.
    Revoked,
}

impl From<BackendError> for Failure {
    fn from(err: BackendError) -> Self {
        Self::Backend(err)
    }
}

/// Turns a storage failure into the answer a client gets, logging it with its full cause chain.
///
/// Messages name keys and services, never values.
pub(crate) fn to_wire(err: impl Into<Failure>) -> ServiceError {
    let err = match err.into() {
        Failure::Backend(err) => err,
        Failure::Revoked => {
            return ServiceError::Refused {
                reason: "the project was removed, or its token replaced, before this write was applied; it was not applied. Reconnect".to_owned(),
            };
        }
    };
    match err {
        BackendError::CannotDecrypt { service, key } => {
            tracing::warn!(%service, %key, "stored item failed authentication (altered or moved)");
            ServiceError::CannotDecrypt { key, service }
        }
        BackendError::StorageFull => {
            tracing::error!("storage full: a write was refused");
            ServiceError::StorageFull
        }
        BackendError::Locked { service, key } => {
            tracing::debug!(%service, %key, "an item is unavailable while the device is locked");
            ServiceError::Locked { service, key }
        }
        BackendError::PasscodeNotSet => ServiceError::PasscodeNotSet,
        BackendError::Unsupported(what) => ServiceError::Unsupported {
            what: what.to_owned(),
        },
        err @ (BackendError::WrongUnlockSecret
        | BackendError::UnlockSecretRequired
        | BackendError::InvalidUnlockSecret(_)) => {
            tracing::warn!(error = %err, "an unlock was refused");
            ServiceError::Refused {
                reason: err.to_string(),
            }
        }
        err @ BackendError::OutcomeUnknown { .. } => {
            tracing::error!(error = %err, "a write's outcome is unknown after an I/O error");
            ServiceError::OutcomeUnknown
        }
        other => {
            let message = other.to_string();
            tracing::error!(error = %format!("{:#}", anyhow::Error::from(other)), "storage failure");
            ServiceError::Storage { message }
        }
    }
}
