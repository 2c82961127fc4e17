//! Watching a connection's frames: a frame that starts and never finishes, the request budget, and
//! when the connection was last active.
//!
//! tarpc has no read timeout, so a peer could send half a frame and hold the connection (and a slot
//! under the connection cap) forever. [`FrameWatch`] wraps the socket, follows the length prefixes as
//! bytes arrive, and records when the current frame began; [`Stall::stalled`] completes once a frame
//! has been incomplete for longer than the limit, and the connection is then closed. An idle
//! connection between frames is not stalled.
//!
//! It also pays for each frame from the [`crate::budget`] before handing the decoder the frame's
//! length prefix (the decoder reserves the whole frame as soon as it sees the prefix), and hands the
//! decoder at most one whole frame per read, so the grant of the frame just handed on belongs to the
//! request that frame became. While the budget is spent it reads nothing more from the socket. Time
//! spent waiting for the budget does not count as a stall.
//!
//! Last, it records when a byte last went either way, so that when every slot is taken the daemon can
//! close the connection idle longest ([`crate::server`]); such a connection stops reading first and
//! writes the [`securestore_proto::goodbye`] frame last.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::time::Instant;

use crate::budget::{ConnectionBudget, Grant};

/// Bytes read from the socket at once, ahead of the decoder.
const READ_AHEAD: usize = 8 * 1024;

/// Milliseconds since the first call, on one clock for every connection.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Shared between the reader, the watchdog and the accept loop.
#[derive(Debug)]
pub(crate) struct Stall {
    epoch: Instant,
    /// Milliseconds after `epoch` plus one at which the current partial frame began; 0 when none.
    partial_since: AtomicU64,
    /// Set while the reader waits for the budget: the peer is not the one holding things up.
    waiting_for_budget: AtomicBool,
    /// Bytes read from the socket and not yet handed to the decoder.
    undelivered: AtomicUsize,
    /// [`now_ms`] when a byte was last read or written.
    last_active: AtomicU64,
    /// Set to close the connection for being idle: reads report the end of the stream.
    closing: AtomicBool,
    /// Set once every answer went out after `closing`: the goodbye is written when the socket is
    /// dropped. Never set if answers might be left unsent, or a client could resend a request that ran.
    goodbye: AtomicBool,
}

impl Stall {
    /// Completes when a frame has been partial for longer than `limit`.
    pub(crate) async fn stalled(&self, limit: Duration) {
        let tick = (limit / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(tick).await;
            let since = self.partial_since.load(Ordering::Relaxed);
            if since != 0
                && !self.waiting_for_budget.load(Ordering::Relaxed)
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

    /// When a byte last went either way, on a clock shared by all connections (milliseconds).
    pub(crate) fn last_active(&self) -> u64 {
        self.last_active.load(Ordering::Relaxed)
    }

    /// Whether everything read so far was handed on as whole frames: nothing half-received, nothing
    /// waiting to be decoded.
    pub(crate) fn is_quiet(&self) -> bool {
        self.partial_since.load(Ordering::Relaxed) == 0
            && self.undelivered.load(Ordering::Relaxed) == 0
    }

    /// Stops reading for good: the next read reports the end of the stream.
    pub(crate) fn stop_reading(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// After [`Stall::stop_reading`] and once every answer is written: the goodbye frame goes out when
    /// the socket is dropped.
    pub(crate) fn say_goodbye(&self) {
        self.goodbye.store(true, Ordering::Relaxed);
    }

    fn touch(&self) {
        self.last_active.store(now_ms(), Ordering::Relaxed);
    }

    fn restart_clock(&self) {
        if self.partial_since.load(Ordering::Relaxed) != 0 {
            let now = self.epoch.elapsed().as_millis() as u64 + 1;
            self.partial_since.store(now, Ordering::Relaxed);
        }
    }
}

/// How long a socket that said goodbye keeps taking (and discarding) what the peer still sends.
const LINGER_AFTER_GOODBYE: Duration = Duration::from_secs(2);

/// A socket the goodbye can be written to without a task context (from `Drop`).
pub(crate) trait Socket {
    /// Writes what the socket takes now, without waiting.
    fn write_now(&self, bytes: &[u8]) -> io::Result<usize>;

    /// After the goodbye: ends our side for writing and keeps reading (and discarding) for a while.
    ///
    /// A peer may be sending a request just as we close. Were the socket closed outright, that
    /// send could fail (`EPIPE`) before the peer read the answers and the goodbye already waiting
    /// for it, and the peer's RPC layer then fails every call it has under way, answered or not:
    /// it could not tell an answered write from one never read. Lingering lets the peer read every
    /// answer, then the goodbye, then the end of the stream; what it sends meanwhile is never run.
    fn linger(&self) {}
}

impl Socket for UnixStream {
    fn write_now(&self, bytes: &[u8]) -> io::Result<usize> {
        self.try_write(bytes)
    }

    fn linger(&self) {
        use std::os::fd::AsFd;
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // A second descriptor keeps the socket open after this one is closed with the connection.
        let Ok(fd) = self.as_fd().try_clone_to_owned() else {
            return;
        };
        let stream = std::os::unix::net::UnixStream::from(fd);
        if stream.shutdown(std::net::Shutdown::Write).is_err() {
            return;
        }
        handle.spawn(async move {
            let Ok(stream) = UnixStream::from_std(stream) else {
                return;
            };
            let discard = async {
                let mut sink = [0u8; 4096];
                loop {
                    stream.readable().await?;
                    match stream.try_read(&mut sink) {
                        Ok(0) => return Ok::<(), io::Error>(()),
                        Ok(_) => {}
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                        Err(err) => return Err(err),
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER_AFTER_GOODBYE, discard).await;
        });
    }
}

/// An in-process pipe is never closed to make room, so it never says goodbye.
impl Socket for tokio::io::DuplexStream {
    fn write_now(&self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no goodbye on an in-process pipe",
        ))
    }
}

#[cfg(test)]
impl Socket for () {
    fn write_now(&self, bytes: &[u8]) -> io::Result<usize> {
        Ok(bytes.len())
    }
}

/// Where the handing-on of frames to the decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deliver {
    /// Collecting the next length prefix; none of it is handed on before the frame is paid for.
    Prefix { have: usize },
    /// The prefix is whole; waiting for the budget.
    Paying,
    /// Handing on the prefix.
    SendPrefix { sent: usize },
    /// Handing on the body.
    Body { left: u64 },
}

type Acquiring = Pin<Box<dyn Future<Output = Grant> + Send>>;

/// A socket that tracks length-prefixed frames (u32, big-endian) as they are read.
pub(crate) struct FrameWatch<S: Socket> {
    inner: S,
    stall: Arc<Stall>,
    /// Frame structure of the bytes read from the socket, for the stall clock.
    header: [u8; 4],
    header_len: usize,
    body_left: u64,
    /// Bytes read ahead of the decoder: `ahead[start..end]`.
    ahead: Box<[u8]>,
    start: usize,
    end: usize,
    /// Frame structure of the bytes handed to the decoder, for the budget.
    deliver: Deliver,
    prefix: [u8; 4],
    budget: Option<ConnectionBudget>,
    acquiring: Option<Acquiring>,
    grant: Option<Grant>,
}

impl<S: Socket> std::fmt::Debug for FrameWatch<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWatch")
            .field("deliver", &self.deliver)
            .finish_non_exhaustive()
    }
}

impl<S: Socket> FrameWatch<S> {
    /// Watches `inner`, paying for frames from `budget` (none: frames are free, for tests).
    pub(crate) fn new(inner: S, budget: Option<ConnectionBudget>) -> Self {
        let stall = Arc::new(Stall {
            epoch: Instant::now(),
            partial_since: AtomicU64::new(0),
            waiting_for_budget: AtomicBool::new(false),
            undelivered: AtomicUsize::new(0),
            last_active: AtomicU64::new(now_ms()),
            closing: AtomicBool::new(false),
            goodbye: AtomicBool::new(false),
        });
        Self {
            inner,
            stall,
            header: [0; 4],
            header_len: 0,
            body_left: 0,
            ahead: vec![0; READ_AHEAD].into_boxed_slice(),
            start: 0,
            end: 0,
            deliver: Deliver::Prefix { have: 0 },
            prefix: [0; 4],
            budget,
            acquiring: None,
            grant: None,
        }
    }

    pub(crate) fn stall(&self) -> Arc<Stall> {
        self.stall.clone()
    }

    /// Pays for every frame from now on from `budget`.
    pub(crate) fn pay_from(&mut self, budget: ConnectionBudget) {
        self.budget = Some(budget);
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

    /// Records the bytes read and not yet handed on, a withheld length prefix included.
    fn set_undelivered(&self) {
        let withheld = match self.deliver {
            Deliver::Prefix { have } => have,
            Deliver::Paying => 4,
            Deliver::SendPrefix { sent } => 4 - sent,
            Deliver::Body { .. } => 0,
        };
        self.stall
            .undelivered
            .store(self.end - self.start + withheld, Ordering::Relaxed);
    }
}

impl<S: Socket + AsyncRead + Unpin> FrameWatch<S> {
    /// Reads more of the socket into `ahead`, which must be empty. `Ready(Ok(false))` at the end of
    /// the stream.
    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut buf = ReadBuf::new(&mut self.ahead);
        std::task::ready!(Pin::new(&mut self.inner).poll_read(cx, &mut buf))?;
        let n = buf.filled().len();
        if n == 0 {
            return Poll::Ready(Ok(false));
        }
        self.start = 0;
        self.end = n;
        self.stall.touch();
        let ahead = std::mem::take(&mut self.ahead);
        self.advance(&ahead[..n]);
        self.ahead = ahead;
        self.set_undelivered();
        Poll::Ready(Ok(true))
    }

    /// Hands `out` bytes of at most one whole frame, paying for the frame before its prefix.
    fn deliver(&mut self, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let result = self.deliver_some(cx, out);
        self.set_undelivered();
        result
    }

    fn deliver_some(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut delivered = false;
        // Returned when nothing more can be handed on now: what was handed on, or wait.
        macro_rules! stop {
            ($pending:expr) => {
                return if delivered {
                    Poll::Ready(Ok(()))
                } else {
                    $pending
                }
            };
        }
        loop {
            if out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let needs_bytes = matches!(self.deliver, Deliver::Prefix { .. } | Deliver::Body { .. });
            if needs_bytes && self.start == self.end {
                if delivered {
                    return Poll::Ready(Ok(()));
                }
                match self.fill(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                    // The end of the stream: hand on nothing, which the decoder reads as such.
                    Poll::Ready(Ok(false)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Ok(true)) => {}
                }
            }
            match self.deliver {
                Deliver::Prefix { mut have } => {
                    while have < 4 && self.start < self.end {
                        self.prefix[have] = self.ahead[self.start];
                        have += 1;
                        self.start += 1;
                    }
                    self.set_undelivered();
                    self.deliver = if have == 4 {
                        Deliver::Paying
                    } else {
                        Deliver::Prefix { have }
                    };
                }
                Deliver::Paying => {
                    if let Some(budget) = &self.budget {
                        let len = u64::from(u32::from_be_bytes(self.prefix));
                        // Most frames find the budget free: no future, no allocation.
                        let ready = match self.acquiring {
                            None => budget.try_acquire(len),
                            Some(_) => None,
                        };
                        if let Some(grant) = ready {
                            self.grant = Some(grant);
                            self.deliver = Deliver::SendPrefix { sent: 0 };
                            continue;
                        }
                        let acquiring = self
                            .acquiring
                            .get_or_insert_with(|| Box::pin(budget.acquire(len)));
                        match acquiring.as_mut().poll(cx) {
                            Poll::Pending => {
                                self.stall.waiting_for_budget.store(true, Ordering::Relaxed);
                                stop!(Poll::Pending)
                            }
                            Poll::Ready(grant) => {
                                self.acquiring = None;
                                self.grant = Some(grant);
                                if self.stall.waiting_for_budget.swap(false, Ordering::Relaxed) {
                                    self.stall.restart_clock();
                                }
                            }
                        }
                    }
                    self.deliver = Deliver::SendPrefix { sent: 0 };
                }
                Deliver::SendPrefix { sent } => {
                    let n = (4 - sent).min(out.remaining());
                    out.put_slice(&self.prefix[sent..sent + n]);
                    delivered = true;
                    if sent + n < 4 {
                        self.deliver = Deliver::SendPrefix { sent: sent + n };
                        continue;
                    }
                    let left = u64::from(u32::from_be_bytes(self.prefix));
                    if left == 0 {
                        self.frame_handed_on();
                        return Poll::Ready(Ok(()));
                    }
                    self.deliver = Deliver::Body { left };
                }
                Deliver::Body { left } => {
                    let n = (self.end - self.start)
                        .min(out.remaining())
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    out.put_slice(&self.ahead[self.start..self.start + n]);
                    self.start += n;
                    self.set_undelivered();
                    delivered = true;
                    if left == n as u64 {
                        self.frame_handed_on();
                        return Poll::Ready(Ok(()));
                    }
                    self.deliver = Deliver::Body {
                        left: left - n as u64,
                    };
                }
            }
        }
    }

    /// The frame is whole in the decoder's hands: the request it becomes takes its grant (see
    /// [`ConnectionBudget::take`]).
    fn frame_handed_on(&mut self) {
        if let (Some(budget), Some(grant)) = (&self.budget, self.grant.take()) {
            budget.hand_on(grant);
        }
        self.deliver = Deliver::Prefix { have: 0 };
    }
}

impl<S: Socket + AsyncRead + Unpin> AsyncRead for FrameWatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.stall.closing.load(Ordering::Relaxed) {
            // Closing for being idle: read nothing more, so nothing sent from now on is ever run.
            return Poll::Ready(Ok(()));
        }
        // The decoder asks for more only once it has decoded every whole frame it was given, and each
        // request is taken up as it is decoded: a grant still handed on belongs to no request.
        if let Some(budget) = &this.budget {
            budget.release_unclaimed();
        }
        this.deliver(cx, buf)
    }
}

impl<S: Socket + AsyncWrite + Unpin> AsyncWrite for FrameWatch<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written
            && n > 0
        {
            self.stall.touch();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: Socket> Drop for FrameWatch<S> {
    fn drop(&mut self) {
        if !self.stall.goodbye.load(Ordering::Relaxed) {
            return;
        }
        // Every answer went out before the reads stopped (see `connection`); best effort, as the peer
        // may have stopped reading too.
        let goodbye = securestore_proto::goodbye::frame();
        let mut sent = 0;
        while sent < goodbye.len() {
            match self.inner.write_now(&goodbye[sent..]) {
                Ok(0) | Err(_) => return,
                Ok(n) => sent += n,
            }
        }
        self.inner.linger();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Budget;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
            let mut watch = FrameWatch::new((), None);
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
        let mut watch = FrameWatch::new((), None);
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

    /// A test socket: a duplex stream that also takes the goodbye.
    struct Pipe(tokio::io::DuplexStream);

    impl Socket for Pipe {
        fn write_now(&self, bytes: &[u8]) -> io::Result<usize> {
            Ok(bytes.len())
        }
    }

    impl AsyncRead for Pipe {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    #[tokio::test]
    async fn frames_are_paid_for_before_their_prefix_and_handed_on_one_at_a_time() {
        let budget = Budget::new(5_000, 5_000, 0);
        let (mut peer, ours) = tokio::io::duplex(64 * 1024);
        let conn = budget.connection();
        let mut watch = FrameWatch::new(Pipe(ours), Some(conn.clone()));
        let mut sent = Vec::new();
        for body in [&[1u8; 3000][..], &[2u8; 3000][..], b""] {
            sent.extend_from_slice(&(body.len() as u32).to_be_bytes());
            sent.extend_from_slice(body);
        }
        peer.write_all(&sent).await.expect("write");

        // The first frame, and no byte of the second.
        let mut got = vec![0u8; 3004];
        watch.read_exact(&mut got).await.expect("first frame");
        assert_eq!(got[..], sent[..3004]);
        let first = conn.take().expect("the first frame's grant");
        assert!(budget.available() < 2_000);

        // The second frame does not fit the budget while the first is held: its prefix waits.
        let mut byte = [0u8; 1];
        assert!(
            tokio::time::timeout(Duration::from_millis(50), watch.read(&mut byte))
                .await
                .is_err(),
            "no byte before the frame is paid for"
        );
        drop(first);
        let mut got = vec![0u8; 3004];
        watch.read_exact(&mut got).await.expect("second frame");
        assert_eq!(got[..], sent[3004..6008]);
        // Not taken by a request: given back by the next read.
        let mut empty = [0u8; 4];
        watch.read_exact(&mut empty).await.expect("empty frame");
        assert!(conn.take().is_some(), "the empty frame's grant");
        assert_eq!(budget.available(), 5_000);
        assert!(watch.stall.is_quiet());

        // Closing: reads report the end of the stream, whatever the peer sends.
        peer.write_all(&[0, 0, 0, 1, 7]).await.expect("write");
        tokio::time::sleep(Duration::from_millis(10)).await;
        watch.stall.stop_reading();
        assert_eq!(watch.read(&mut byte).await.expect("read"), 0);
    }
}
