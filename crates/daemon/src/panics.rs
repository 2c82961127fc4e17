//! Panics caused by hostile bytes stay out of stderr.
//!
//! `proto::codec::decode` catches a decoder's panic and turns it into an error for that frame, but the
//! panic hook runs first: the default hook prints a message (and, with `RUST_BACKTRACE`, resolves a
//! backtrace) for every crafted frame, which lets any client flood the log and stall the executor.
//! [`install`] puts a hook in front that, for a panic inside the decoder, logs one short line through
//! `tracing`, at most once a second daemon-wide (a decoder panic closes its connection, so at most once
//! per connection too), and hands every other panic to the hook that was there before.

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Least time between two log lines about decoder panics.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Installs the hook once per process; later calls do nothing.
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        let start = Instant::now();
        // Milliseconds after `start` of the last line, plus one; 0 before the first.
        let last_logged = AtomicU64::new(0);
        let suppressed = AtomicU64::new(0);
        std::panic::set_hook(Box::new(move |info| {
            if !securestore_proto::codec::in_decoder() {
                return previous(info);
            }
            let now = start.elapsed().as_millis() as u64 + 1;
            let last = last_logged.load(Ordering::Relaxed);
            let due = last == 0 || now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
            if due
                && last_logged
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                let earlier = suppressed.swap(0, Ordering::Relaxed);
                // The location only: the payload could quote the hostile bytes.
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                tracing::warn!(
                    at,
                    not_logged_since_last = earlier,
                    "a malformed frame made the decoder panic; the frame was refused and its connection closed"
                );
            } else {
                suppressed.fetch_add(1, Ordering::Relaxed);
            }
        }));
    });
}
