//! Watching a connection for a frame that starts and never finishes.
//!
//! tarpc has no read timeout, so a peer could send half a frame and hold the connection (and a slot
//! under the connection cap) forever. [`FrameWatch`] wraps the socket, follows the length prefixes as
//! bytes arrive, and records when the current frame began; [`Stall::stalled`] completes once a frame
//! has been incomplete for longer than the limit, and the connection is then closed. An idle
//! connection between frames is not stalled.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Shared between the reader and the watchdog: when the frame being read began.
#[derive(Debug)]
pub(crate) struct Stall {
    epoch: Instant,
    /// Milliseconds after `epoch` plus one at which the current partial frame began; 0 when none.
    partial_since: AtomicU64,
}

impl Stall {
    /// Completes when a frame has been partial for longer than `limit`.
    pub(crate) async fn stalled(&self, limit: Duration) {
        let tick = (limit / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(tick).await;
            let since = self.partial_since.load(Ordering::Relaxed);
            if since != 0
                && self
                    .epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(since - 1))
                    > limit
            {
                return;
            }
        }
    }
}

/// A socket that tracks length-prefixed frames (u32, big-endian) as they are read.
#[derive(Debug)]
pub(crate) struct FrameWatch<S> {
    inner: S,
    stall: Arc<Stall>,
    header: [u8; 4],
    header_len: usize,
    body_left: u64,
}

impl<S> FrameWatch<S> {
    pub(crate) fn new(inner: S) -> Self {
        let stall = Arc::new(Stall {
            epoch: Instant::now(),
            partial_since: AtomicU64::new(0),
        });
        Self {
            inner,
            stall,
            header: [0; 4],
            header_len: 0,
            body_left: 0,
        }
    }

    pub(crate) fn stall(&self) -> Arc<Stall> {
        self.stall.clone()
    }

    /// Follows the frame structure through `bytes` and updates when the current frame began.
    fn advance(&mut self, mut bytes: &[u8]) {
        let was_partial = self.header_len > 0 || self.body_left > 0;
        let mut completed = false;
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let take = bytes
                    .len()
                    .min(usize::try_from(self.body_left).unwrap_or(usize::MAX));
                self.body_left -= take as u64;
                bytes = &bytes[take..];
                completed = self.body_left == 0;
            } else {
                self.header[self.header_len] = bytes[0];
                self.header_len += 1;
                bytes = &bytes[1..];
                if self.header_len == 4 {
                    self.header_len = 0;
                    self.body_left = u64::from(u32::from_be_bytes(self.header));
                    completed = self.body_left == 0;
                }
            }
        }
        let partial = self.header_len > 0 || self.body_left > 0;
        if !partial {
            self.stall.partial_since.store(0, Ordering::Relaxed);
        } else if !was_partial || completed {
            // A new frame began in this read.
            let now = self.stall.epoch.elapsed().as_millis() as u64 + 1;
            self.stall.partial_since.store(now, Ordering::Relaxed);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrameWatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.advance(&buf.filled()[before..]);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrameWatch<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(watch: &FrameWatch<()>) -> bool {
        watch.stall.partial_since.load(Ordering::Relaxed) != 0
    }

    #[test]
    fn follows_frames_split_anywhere() {
        let mut frames = Vec::new();
        for body in [&b"hello"[..], b"", b"x"] {
            frames.extend_from_slice(&(body.len() as u32).to_be_bytes());
            frames.extend_from_slice(body);
        }
        for split in 0..=frames.len() {
            let mut watch = FrameWatch::new(());
            watch.advance(&frames[..split]);
            let boundaries = [0, 9, 13, 18];
            assert_eq!(
                partial(&watch),
                !boundaries.contains(&split),
                "split at {split}"
            );
            watch.advance(&frames[split..]);
            assert!(!partial(&watch), "whole after the rest (split {split})");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stuck_frame_stalls_and_an_idle_one_does_not() {
        let mut watch = FrameWatch::new(());
        let stall = watch.stall();
        let limit = Duration::from_secs(2);
        assert!(
            tokio::time::timeout(Duration::from_secs(10), stall.stalled(limit))
                .await
                .is_err(),
            "idle is fine"
        );
        watch.advance(&[0, 0, 0, 9, 1]);
        assert!(
            tokio::time::timeout(Duration::from_secs(10), stall.stalled(limit))
                .await
                .is_ok(),
            "stuck is not"
        );
    }
}
