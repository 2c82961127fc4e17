//! The one place bytes become messages: bincode 1.3 with a size limit.
//!
//! Every message on the wire, handshake or tarpc, is encoded and decoded here, so the format can be
//! swapped in this file alone. Decoding never allocates past the limit it is given, and a panic inside
//! a decoder (tarpc's deadline arithmetic can overflow on hostile input) becomes an error for that one
//! frame instead of unwinding through the connection. [`in_decoder`] tells a panic hook that the panic
//! came from hostile bytes, so the daemon can keep it out of the default hook's stderr output.

use std::cell::Cell;
use std::io;
use std::marker::PhantomData;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;

use bincode::Options;
use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

fn options(limit: usize) -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(limit as u64)
        .reject_trailing_bytes()
}

fn invalid_data(what: &str, err: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {err}"))
}

thread_local! {
    /// Set while this thread runs a decoder inside [`decode`]'s `catch_unwind`.
    static DECODING: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is inside [`decode`]: a panic hook asks this to tell a panic caught
/// here (caused by the bytes a peer sent, and turned into an error) from a bug elsewhere.
pub fn in_decoder() -> bool {
    DECODING.with(Cell::get)
}

/// Clears the flag even if the decoder unwinds.
struct Decoding;

impl Decoding {
    fn enter() -> Self {
        DECODING.with(|flag| flag.set(true));
        Self
    }
}

impl Drop for Decoding {
    fn drop(&mut self) {
        DECODING.with(|flag| flag.set(false));
    }
}

/// Encodes `item`, failing if the encoding would exceed `limit` bytes.
///
/// # Errors
/// An [`io::ErrorKind::InvalidData`] error if the item is over the limit or cannot be encoded.
pub fn encode<T: Serialize + ?Sized>(item: &T, limit: usize) -> io::Result<Vec<u8>> {
    options(limit)
        .serialize(item)
        .map_err(|e| invalid_data("cannot encode message", e))
}

/// Decodes one whole message from `bytes`, reading at most `limit` bytes' worth of data.
///
/// # Errors
/// An [`io::ErrorKind::InvalidData`] error if the bytes are malformed, over the limit, followed by
/// trailing bytes, or make the decoder panic.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> io::Result<T> {
    // bincode skips its limit when decoding from a slice, trusting the slice's own length, and checks
    // every claimed length against the bytes left before allocating. So bounding the slice bounds it all.
    if bytes.len() > limit {
        return Err(invalid_data(
            "malformed message",
            format_args!("{} bytes, the limit is {limit}", bytes.len()),
        ));
    }
    // The decoder touches no state outside this call, so nothing is left half-updated by a panic.
    let caught = catch_unwind(AssertUnwindSafe(|| {
        let _decoding = Decoding::enter();
        options(limit).deserialize(bytes)
    }));
    match caught {
        Ok(Ok(item)) => Ok(item),
        Ok(Err(e)) => Err(invalid_data("malformed message", e)),
        Err(_) => Err(invalid_data("malformed message", "the decoder panicked")),
    }
}

/// A `tokio-serde` codec over [`encode`] and [`decode`], for tarpc's serde transport.
pub struct Codec<Item, SinkItem> {
    limit: usize,
    /// Applied to every decoded item before it is handed on (the daemon clamps deadlines here).
    on_decode: fn(&mut Item),
    _marker: PhantomData<fn(SinkItem) -> Item>,
}

impl<Item, SinkItem> Codec<Item, SinkItem> {
    /// A codec that refuses any message over `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self::with_decode_hook(limit, |_| {})
    }

    /// As [`Codec::new`], passing every decoded item through `on_decode`.
    pub fn with_decode_hook(limit: usize, on_decode: fn(&mut Item)) -> Self {
        Self {
            limit,
            on_decode,
            _marker: PhantomData,
        }
    }
}

impl<Item: DeserializeOwned, SinkItem> tokio_serde::Deserializer<Item> for Codec<Item, SinkItem> {
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> io::Result<Item> {
        let mut item = decode(src, self.limit)?;
        (self.on_decode)(&mut item);
        Ok(item)
    }
}

impl<Item, SinkItem: Serialize> tokio_serde::Serializer<SinkItem> for Codec<Item, SinkItem> {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &SinkItem) -> io::Result<Bytes> {
        encode(item, self.limit).map(Bytes::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_trailing_bytes() {
        let bytes = encode(&("key", 7u32), 64).expect("encode");
        assert_eq!(
            decode::<(String, u32)>(&bytes, 64).expect("decode"),
            ("key".to_owned(), 7)
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<(String, u32)>(&longer, 64).is_err());
    }

    #[test]
    fn limit_bounds_both_directions() {
        let big = "x".repeat(100);
        assert!(encode(&big, 50).is_err());
        let bytes = encode(&big, 200).expect("encode");
        assert!(decode::<String>(&bytes, 50).is_err());
    }

    #[test]
    fn a_lying_length_does_not_allocate_it() {
        // A string that claims u64::MAX bytes: bincode checks the claim against the limit first.
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = decode::<String>(&bytes, 1024).expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_panicking_decoder_is_an_error() {
        #[derive(Debug)]
        struct Boom;
        impl<'de> serde::Deserialize<'de> for Boom {
            fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
                panic!("decoder bug")
            }
        }
        assert!(!in_decoder());
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let previous = std::panic::take_hook();
        let flag = seen.clone();
        std::panic::set_hook(Box::new(move |_| {
            flag.store(in_decoder(), std::sync::atomic::Ordering::SeqCst);
        }));
        let result = decode::<Boom>(&[0], 16);
        std::panic::set_hook(previous);
        assert!(result.is_err());
        assert!(
            seen.load(std::sync::atomic::Ordering::SeqCst),
            "the hook saw the flag"
        );
        assert!(!in_decoder(), "cleared after the unwind");
    }
}
