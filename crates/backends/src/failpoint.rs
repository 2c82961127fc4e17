//! Crash points for the crash harness: `SECURESTORE_FAILPOINT=<name>` makes the process abort at
//! the named step, as a power cut or `kill -9` there would end it.
//!
//! Only multi-step procedures whose every intermediate state must be recoverable name their steps
//! (master-key rotation). Unset, a check is one load of a cached flag.

use std::sync::OnceLock;

/// The environment variable naming the step to abort at.
pub const VARIABLE: &str = "SECURESTORE_FAILPOINT";

/// Aborts the process here if `SECURESTORE_FAILPOINT` names `step`.
pub fn hit(step: &str) {
    static CHOSEN: OnceLock<Option<String>> = OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| std::env::var(VARIABLE).ok());
    if chosen.as_deref() == Some(step) {
        tracing::error!(step, "failpoint reached; aborting as a crash would");
        std::process::abort();
    }
}
