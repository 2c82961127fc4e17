//! Turning the securestore client's errors into keyring's error kinds, in one place.

use keyring_core::Error;
use securestore_client::{Error as ClientError, ServiceError};

use crate::names::TooLong;

/// keyring's kind for a failed securestore call.
///
/// - An absent item never comes here: the calls that can find nothing answer `None` or `false`, and
///   the credential turns that into [`Error::NoEntry`].
/// - The daemon out of reach, refusing this process or its token, or shutting down:
///   [`Error::NoStorageAccess`], as keyring reports a locked or unavailable store.
/// - A value over the daemon's limit: [`Error::Invalid`] on `secret`, keyring's answer for a secret
///   the store cannot hold.
/// - A call the daemon is too old for: [`Error::NotSupportedByStore`].
/// - Everything else (storage failure, undecryptable item, lost connection, timeout):
///   [`Error::PlatformFailure`], with the client's error as the source.
pub fn from_client(err: ClientError) -> Error {
    match err {
        ClientError::Unreachable { .. } | ClientError::UntrustedDaemon { .. } => {
            Error::NoStorageAccess(Box::new(err))
        }
        ClientError::Unsupported { .. } => Error::NotSupportedByStore(err.to_string()),
        ClientError::Service(service) => from_service(service),
        other => Error::PlatformFailure(Box::new(other)),
    }
}

fn from_service(err: ServiceError) -> Error {
    match err {
        ServiceError::Refused { .. } | ServiceError::ShuttingDown => {
            Error::NoStorageAccess(Box::new(err))
        }
        ServiceError::ValueTooLarge { .. } => Error::Invalid("secret".to_owned(), err.to_string()),
        ServiceError::InvalidProject { ref reason } => {
            Error::Invalid("project".to_owned(), reason.clone())
        }
        // The names are mapped to ones the daemon accepts before any call, so these mean the
        // mapping and the daemon disagree: a bug here, reported as the store's failure.
        other => Error::PlatformFailure(Box::new(other)),
    }
}

/// keyring's kind for a name whose mapping does not fit.
pub fn too_long(err: &TooLong) -> Error {
    let limit = u32::try_from(err.kind.max_bytes()).unwrap_or(u32::MAX);
    Error::TooLong(err.kind.attribute().to_owned(), limit)
}

/// keyring's kind for a bad configuration value.
pub fn invalid(attribute: &str, reason: impl Into<String>) -> Error {
    Error::Invalid(attribute.to_owned(), reason.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Kind;

    #[test]
    fn kinds() {
        let unreachable = ClientError::Unreachable {
            path: "/nowhere".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert!(matches!(
            from_client(unreachable),
            Error::NoStorageAccess(_)
        ));
        let refused = ClientError::Service(ServiceError::Refused {
            reason: "wrong access token".to_owned(),
        });
        assert!(matches!(from_client(refused), Error::NoStorageAccess(_)));
        let big = ClientError::Service(ServiceError::ValueTooLarge { size: 9, limit: 8 });
        assert!(matches!(from_client(big), Error::Invalid(a, _) if a == "secret"));
        assert!(matches!(
            from_client(ClientError::TimedOut),
            Error::PlatformFailure(_)
        ));
        let storage = ClientError::Service(ServiceError::StorageFull);
        assert!(matches!(from_client(storage), Error::PlatformFailure(_)));
        let long = TooLong {
            kind: Kind::User,
            mapped_len: 2000,
        };
        assert!(matches!(too_long(&long), Error::TooLong(a, 1024) if a == "user"));
    }
}
