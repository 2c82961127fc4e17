//! Every size bound of the protocol, in one place.
//!
//! A frame is rejected by its length prefix before any of it is buffered, so these numbers are also the
//! most memory one connection can make the daemon allocate for a single message.

/// Default largest value, in bytes of UTF-8, that the daemon accepts (`--max-value-bytes`).
pub const DEFAULT_MAX_VALUE_BYTES: u32 = 64 * 1024;

/// The largest `--max-value-bytes` a daemon may be configured with.
pub const MAX_VALUE_BYTES_CEILING: u32 = 16 * 1024 * 1024;

/// Longest key, in bytes. Expo sets no bound; ours keeps one request inside one small frame.
pub const MAX_KEY_BYTES: usize = 1024;

/// Longest `keychainService`, in bytes.
pub const MAX_SERVICE_BYTES: usize = 255;

/// Longest project id, in bytes (ids are ASCII, so also in characters).
pub const MAX_PROJECT_BYTES: usize = 255;

/// Largest handshake frame, in either direction. A hello carries a project id, a token and a few
/// integers.
pub const MAX_HANDSHAKE_FRAME: usize = 4 * 1024;

/// Largest admin answer frame: room for [`MAX_PROJECTS`] ids of [`MAX_PROJECT_BYTES`] each. bincode
/// spends 3 bytes on each such id's length and a few on the enum tags and the list's length, so
/// 4096 × 258 + 5 = 1,056,773 bytes are needed of the 1,078,272 allowed (checked by a unit test). The
/// daemon's registry never holds more than [`MAX_PROJECTS`], so every list it sends fits.
pub const MAX_ADMIN_FRAME: usize = MAX_PROJECTS * (MAX_PROJECT_BYTES + 8) + 1024;

/// Most projects the registry holds.
pub const MAX_PROJECTS: usize = 4096;

/// Longest access token, in bytes, accepted in a handshake or a token file.
pub const MAX_TOKEN_BYTES: usize = 128;

/// Latest deadline a request may carry; a client asking for more gets this.
pub const MAX_REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Most names in one listing answer ([`crate::Page`]); a listing also stops early once its names
/// total more than the value limit, so each answer fits one frame.
pub const MAX_LIST_NAMES: usize = 1000;
/// Most events one watcher keeps queued; past it, the oldest are dropped and counted as missed.
pub const MAX_WATCH_QUEUE: usize = 1024;
/// Most watchers one connection may have.
pub const MAX_WATCHERS_PER_CONNECTION: usize = 16;
/// Longest wait of one `poll_events`, in milliseconds.
pub const MAX_WATCH_WAIT_MILLIS: u32 = 30_000;
/// Most operations in one `write_batch`. Their keys, services and values together must also fit the
/// daemon's value limit (`--max-value-bytes`), so the batch fits one frame.
pub const MAX_BATCH_OPS: usize = 128;

/// Most items in one export page or one import request. With their bytes bounded by the value
/// limit (the daemon and the client fill a page or a request up to `max_value_bytes` of names and
/// values, at least one item), a page fits one frame.
pub const MAX_EXPORT_ITEMS: usize = 64;
/// Room in a request frame for everything but the value: the tarpc envelope (request id, deadline,
/// trace context), the key, the service and the enum tags, with ample slack.
const REQUEST_OVERHEAD: usize = MAX_KEY_BYTES + MAX_SERVICE_BYTES + 2 * 1024 + BATCH_OVERHEAD;
/// Room for a full batch's per-operation encoding (enum tags, length prefixes, options): at most 19
/// bytes each, 24 allowed.
const BATCH_OVERHEAD: usize = MAX_BATCH_OPS * 24;

/// The largest frame either end accepts once a connection is open, derived from the value limit.
///
/// Both ends set this on their `LengthDelimitedCodec` and as the bincode limit of [`crate::codec`].
pub fn max_frame_len(max_value_bytes: u32) -> usize {
    // A u32 always fits in usize on the 32- and 64-bit targets this crate builds for.
    max_value_bytes as usize + REQUEST_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_project_list_fits_an_admin_frame() {
        use crate::handshake::{AdminAnswer, HelloReply};
        let longest = |i: usize| format!("@{i:0>width$}", width = MAX_PROJECT_BYTES - 1);
        let projects: Vec<String> = (0..MAX_PROJECTS).map(longest).collect();
        assert!(projects.iter().all(|id| id.len() == MAX_PROJECT_BYTES));
        let reply = HelloReply::Admin(AdminAnswer::Projects(projects));
        let bytes = crate::codec::encode(&reply, MAX_ADMIN_FRAME).expect("fits the admin frame");
        println!(
            "largest project list: {} bytes of {MAX_ADMIN_FRAME} allowed",
            bytes.len()
        );
        let back: HelloReply = crate::codec::decode(&bytes, MAX_ADMIN_FRAME).expect("decodes");
        assert!(
            matches!(back, HelloReply::Admin(AdminAnswer::Projects(ids)) if ids.len() == MAX_PROJECTS)
        );
    }

    #[test]
    fn frame_limit_grows_with_value_limit() {
        assert!(max_frame_len(0) > MAX_KEY_BYTES + MAX_SERVICE_BYTES);
        assert_eq!(
            max_frame_len(DEFAULT_MAX_VALUE_BYTES) - max_frame_len(0),
            DEFAULT_MAX_VALUE_BYTES as usize
        );
    }
}
