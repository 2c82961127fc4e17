//! Inputs the fuzzers once tripped on (`fuzz/regressions/<target>/`), replayed on every test run.
//!
//! - `handshake/noncanonical-varint`: decodes fine (bincode accepts a 0 written in three bytes); the
//!   fuzz property was too strict, and now compares messages, not bytes.
//! - `request_frame/deadline-overflow`: a deadline of ~2^64 seconds makes tarpc's decoding panic
//!   (Instant + Duration overflow); `codec::decode` contains it and reports a malformed message.

use std::path::PathBuf;

use securestore_proto::SecureStoreRequest;
use securestore_proto::codec::{decode, encode};
use securestore_proto::handshake::Hello;
use securestore_proto::limits::{MAX_HANDSHAKE_FRAME, max_frame_len};
use securestore_proto::tarpc::ClientMessage;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions")
        .join(target);
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read");
            (path, bytes)
        })
        .collect();
    found.sort();
    assert!(
        !found.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    found
}

#[test]
fn handshake_regressions_round_trip_as_messages() {
    for (path, bytes) in inputs("handshake") {
        if let Ok(hello) = decode::<Hello>(&bytes, MAX_HANDSHAKE_FRAME) {
            let canonical = encode(&hello, MAX_HANDSHAKE_FRAME).expect("re-encode");
            let again = decode::<Hello>(&canonical, MAX_HANDSHAKE_FRAME).expect("re-decode");
            assert_eq!(
                encode(&again, MAX_HANDSHAKE_FRAME).expect("re-encode"),
                canonical,
                "{}",
                path.display()
            );
        }
    }
}

#[test]
fn request_frame_regressions_are_rejected_without_unwinding() {
    // Silence the expected panic message; the assertion below is what matters.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let results: Vec<_> = inputs("request_frame")
        .into_iter()
        .map(|(path, bytes)| {
            (
                path,
                decode::<ClientMessage<SecureStoreRequest>>(&bytes, max_frame_len(64 * 1024))
                    .is_err(),
            )
        })
        .collect();
    std::panic::set_hook(previous);
    for (path, rejected) in results {
        assert!(rejected, "{} must be rejected as malformed", path.display());
    }
}
