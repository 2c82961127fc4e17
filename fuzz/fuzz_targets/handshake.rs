//! The handshake decoder, as the daemon runs it on a connection's first frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use securestore_proto::codec::{decode, encode};
use securestore_proto::handshake::Hello;
use securestore_proto::limits::MAX_HANDSHAKE_FRAME;

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = decode::<Hello>(data, MAX_HANDSHAKE_FRAME) {
        // Whatever decodes must re-encode, and decode again to the same message. (Not to the same
        // bytes: bincode accepts non-canonical varints, e.g. 0 written in three bytes.)
        let bytes = encode(&hello, MAX_HANDSHAKE_FRAME).expect("re-encode");
        let again = decode::<Hello>(&bytes, MAX_HANDSHAKE_FRAME).expect("re-decode");
        assert_eq!(
            encode(&again, MAX_HANDSHAKE_FRAME).expect("re-encode"),
            bytes
        );
    }
});
