//! The daemon's goodbye: the last frame on a connection it closes for being idle.
//!
//! When every connection slot is taken, the daemon makes room by closing the connection that has been
//! idle longest. It does so only when that connection has no request under way, no answer unsent and
//! no partial frame, and it stops reading before it decides; so any request the client sent that got
//! no answer before [`frame`] was certainly never read, and is safe to send again on a new
//! connection. The goodbye is a tarpc response to a request id no client uses, so tarpc ignores it;
//! [`GoodbyeWatch`] is how a client notices it.

use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustix::net::RecvFlags;
use tarpc::{Response, ServerError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::SecureStoreResponse;

/// The request id of the goodbye; tarpc clients count up from zero and never reach it.
pub const GOODBYE_REQUEST_ID: u64 = u64::MAX;

/// The goodbye's body (without its length prefix).
fn body() -> &'static [u8] {
    static BODY: OnceLock<Vec<u8>> = OnceLock::new();
    BODY.get_or_init(|| {
        let goodbye: Response<SecureStoreResponse> = Response {
            request_id: GOODBYE_REQUEST_ID,
            message: Err(ServerError::new(
                io::ErrorKind::ConnectionAborted,
                "idle connection closed by the daemon".to_owned(),
            )),
        };
        crate::codec::encode(&goodbye, 1024).expect("the goodbye encodes")
    })
}

/// The whole goodbye frame, length prefix included, as the daemon writes it.
pub fn frame() -> Vec<u8> {
    let body = body();
    let mut frame = u32::try_from(body.len())
        .expect("a small frame")
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(body);
    frame
}

/// A client's socket that watches incoming frames (u32 big-endian length prefixes) for the goodbye.
#[derive(Debug)]
pub struct GoodbyeWatch<S> {
    inner: S,
    said: Arc<AtomicBool>,
    header: [u8; 4],
    header_len: usize,
    body_left: u64,
    /// Bytes of the current frame that matched the goodbye so far; `None` once it cannot be one.
    matched: Option<usize>,
    /// Bytes taken from the socket after a failed write (to look for the goodbye) and not yet read
    /// by the client: answers that came before the goodbye are among them.
    unread: Vec<u8>,
}

impl<S> GoodbyeWatch<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            said: Arc::default(),
            header: [0; 4],
            header_len: 0,
            body_left: 0,
            matched: None,
            unread: Vec::new(),
        }
    }

    /// Set once the daemon's goodbye has arrived whole.
    pub fn said_goodbye(&self) -> Arc<AtomicBool> {
        self.said.clone()
    }

    fn advance(&mut self, mut bytes: &[u8]) {
        let goodbye = body();
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let take = bytes
                    .len()
                    .min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                if let Some(at) = self.matched {
                    self.matched =
                        (goodbye.get(at..at + take) == Some(&bytes[..take])).then_some(at + take);
                }
                self.body_left -= take as u64;
                bytes = &bytes[take..];
                if self.body_left == 0 && self.matched == Some(goodbye.len()) {
                    self.said.store(true, Ordering::Release);
                }
            } else {
                self.header[self.header_len] = bytes[0];
                self.header_len += 1;
                bytes = &bytes[1..];
                if self.header_len == 4 {
                    self.header_len = 0;
                    self.body_left = u64::from(u32::from_be_bytes(self.header));
                    self.matched = (self.body_left == goodbye.len() as u64).then_some(0);
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GoodbyeWatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // Already looked at for the goodbye when they were taken: handed on as they are.
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.drain(..n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.advance(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsFd> GoodbyeWatch<S> {
    /// After a failed write: the daemon may have closed the socket with a goodbye that nobody has read
    /// yet (the client wrote before it read). Reads what is already there to find out, straight from
    /// the socket: the runtime may not have noticed yet that it is readable.
    fn read_what_is_left(&mut self) {
        let mut scratch = [0u8; 512];
        while let Ok((_, n)) = rustix::net::recv(&self.inner, &mut scratch[..], RecvFlags::DONTWAIT)
            && n > 0
        {
            self.advance(&scratch[..n]);
            // Kept for the reader: an answer that came before the goodbye belongs to a call that
            // must get it, not be sent again. (At most what the socket's buffer held.)
            self.unread.extend_from_slice(&scratch[..n]);
        }
    }
}

impl<S: AsFd + AsyncWrite + Unpin> AsyncWrite for GoodbyeWatch<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Err(_)) = written {
            self.read_what_is_left();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.inner).poll_flush(cx);
        if let Poll::Ready(Err(_)) = flushed {
            self.read_what_is_left();
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_the_goodbye_split_anywhere_and_nothing_else() {
        let mut stream = 3u32.to_be_bytes().to_vec();
        stream.extend_from_slice(b"abc");
        let mut lookalike = frame();
        *lookalike.last_mut().expect("bytes") ^= 1;
        stream.extend_from_slice(&lookalike);
        let before_goodbye = stream.len();
        stream.extend_from_slice(&frame());
        for split in 0..=stream.len() {
            let mut watch = GoodbyeWatch::new(());
            watch.advance(&stream[..split]);
            assert_eq!(
                watch.said.load(Ordering::Acquire),
                split == stream.len(),
                "split at {split}"
            );
            watch.advance(&stream[split..]);
            assert!(watch.said.load(Ordering::Acquire));
        }
        let mut watch = GoodbyeWatch::new(());
        watch.advance(&stream[..before_goodbye]);
        assert!(!watch.said.load(Ordering::Acquire), "a near miss is not it");
        let decoded: Response<SecureStoreResponse> =
            crate::codec::decode(body(), 1024).expect("tarpc can read it");
        assert_eq!(decoded.request_id, GOODBYE_REQUEST_ID);
    }

    #[tokio::test]
    async fn a_goodbye_not_yet_read_is_found_when_a_write_fails() {
        use tokio::io::AsyncWriteExt;
        let (ours, daemon) = tokio::net::UnixStream::pair().expect("pair");
        let mut watch = GoodbyeWatch::new(ours);
        let said = watch.said_goodbye();
        let mut sent = 0;
        let goodbye = frame();
        while sent < goodbye.len() {
            sent += daemon.try_write(&goodbye[sent..]).unwrap_or(0);
        }
        drop(daemon);
        assert!(watch.write_all(b"a request").await.is_err(), "broken pipe");
        assert!(said.load(Ordering::Acquire), "found without a read");
    }

    #[tokio::test]
    async fn what_came_before_the_goodbye_is_still_read_after_a_failed_write() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (ours, daemon) = tokio::net::UnixStream::pair().expect("pair");
        let mut watch = GoodbyeWatch::new(ours);
        let said = watch.said_goodbye();
        let mut stream = 6u32.to_be_bytes().to_vec();
        stream.extend_from_slice(b"answer");
        stream.extend_from_slice(&frame());
        let mut sent = 0;
        while sent < stream.len() {
            sent += daemon.try_write(&stream[sent..]).unwrap_or(0);
        }
        drop(daemon);
        assert!(watch.write_all(b"a request").await.is_err(), "broken pipe");
        assert!(said.load(Ordering::Acquire), "found without a read");
        let mut read = Vec::new();
        watch.read_to_end(&mut read).await.expect("read");
        assert_eq!(
            read, stream,
            "the answer and the goodbye, in order, then the end"
        );
    }
}
