//! The wire boundary for failures: every storage error becomes a stable answer here, and is logged here.

use securestore_backends::BackendError;
use securestore_proto::ServiceError;

/// Turns a storage failure into the answer a client gets, logging it with its full cause chain.
///
/// Messages name keys and services, never values.
pub(crate) fn to_wire(err: BackendError) -> ServiceError {
    match err {
        BackendError::CannotDecrypt { service, key } => {
            tracing::warn!(%service, %key, "stored item failed authentication (altered or moved)");
            ServiceError::CannotDecrypt { key, service }
        }
        BackendError::StorageFull => {
            tracing::error!("storage full: a write was refused");
            ServiceError::StorageFull
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
