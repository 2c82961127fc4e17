//! The one Rust implementation behind every foreign-language binding: the JNI library
//! (`crates/jni`) and the C ABI (`crates/ffi`) are thin entry points over these functions, as
//! libsignal's bridge derives each platform's entry points from one operation.
//!
//! Everything here is blocking and may be called from any thread that is not inside a Tokio
//! runtime: calls run on one process-wide runtime ([`runtime`]). Errors are a [`BridgeError`]: a
//! stable [`ErrorCode`] and a message that names no value.
//!
//! A [`Session`] goes through `securestore_client::Client`, so it inherits every check the client
//! makes (names, value size, the daemon's identity) and the daemon checks again.
#![forbid(unsafe_code)]

mod error;
mod host;
mod session;

use std::sync::OnceLock;

pub use error::{BridgeError, ErrorCode};
pub use host::{HostHandle, HostOptions, OpenBackend};
pub use securestore_daemon::backend::{BackendKind, BackendPaths};
pub use securestore_daemon::{Policy, backend};
pub use securestore_proto::backup::KdfParams;
pub use securestore_proto::{
    DeviceStatus, ExportedItem, ImportReport, KeychainAccessible, LockState, SecretString,
};
pub use session::{Batch, Condition, Session, accessible_from, events_text};

/// The runtime every binding call runs on: two worker threads, shared by every session of the
/// process, so a blocking call from a foreign thread never needs a runtime of its own.
///
/// # Panics
/// If the operating system refuses to start the threads (nothing could work then).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("securestore-client")
            .enable_all()
            .build()
            .expect("cannot start the securestore client runtime")
    })
}

/// Runs `work`, turning a panic into [`ErrorCode::Internal`], so no panic crosses a binding.
pub fn guard<T>(work: impl FnOnce() -> Result<T, BridgeError>) -> Result<T, BridgeError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(BridgeError::new(
                ErrorCode::Internal,
                format!("internal error in securestore (a bug): {detail}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_internal_error_and_results_pass_through() {
        let caught = guard::<()>(|| panic!("boom")).expect_err("caught");
        assert_eq!(caught.code, ErrorCode::Internal);
        assert!(caught.message.contains("boom"), "{caught:?}");
        assert_eq!(guard(|| Ok(7)), Ok(7));
        let refused = BridgeError::new(ErrorCode::Refused, "no");
        assert_eq!(guard::<()>(|| Err(refused.clone())), Err(refused));
    }
}
