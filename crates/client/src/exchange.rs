//! One connection's calls without a dispatch task: each caller sends its own request and reads
//! answers until its own arrives.
//!
//! tarpc's client runs a task per connection that owns the socket: a call goes to it through a
//! channel and its answer comes back through a oneshot, two hand-offs between tasks (on a
//! multi-threaded runtime, often between threads) and the wake-ups that go with them, on every call.
//! [`Exchange`] speaks the same wire (tarpc's `ClientMessage` and `Response`, through the one codec)
//! but does the work on the caller's own task:
//!
//! - A request is encoded and queued in the poll that begins its call, so requests reach the daemon
//!   in the order their calls began (the daemon keeps each connection's order; the client's turns
//!   rely on it). Whoever holds the writer sends everything queued.
//! - Whoever holds the reader reads answers, keeps its own, and hands the others to their callers,
//!   who wait for either their answer or their turn to read.
//! - Each half of the socket is held only within one poll of a call, never across a wait, and the
//!   socket wakes every waiting call: a call kept pending without being polled (a future pinned
//!   across a `select!` loop) holds up nobody, as the dispatch task never did. A call reads before
//!   it writes, so answers already there are taken before a write can find the connection closed.
//!
//! With one call at a time on a connection, a call is one write and one read on the caller's task.
//! A call given up (dropped, or past its deadline) before it was sent is never sent (sent: handed to
//! the sink, which keeps one frame and a few kilobytes of them before the socket takes them); one
//! given up after is cancelled with the next request sent on the connection (tarpc's dispatch task
//! sent it at once; a task spawned here to do so would take over the socket's waker from the
//! waiting calls). Its answer, if it comes, is dropped. Any failure to read or write breaks the connection for every call, present and
//! future, as a lost connection: [`crate::Client`] decides from the daemon's goodbye whether a call
//! may be sent again.

use std::collections::{HashMap, VecDeque};
use std::error::Error as StdError;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker, ready};

use bytes::{Bytes, BytesMut};
use futures::{Sink, Stream};
use securestore_proto::codec;
use securestore_proto::handshake::Frames;
use securestore_proto::tarpc::client::RpcError;
use securestore_proto::tarpc::client::stub::Stub;
use securestore_proto::tarpc::{ChannelError, ClientMessage, Request, Response, context, trace};
use securestore_proto::{SecureStoreRequest, SecureStoreResponse};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

type Outgoing = Pin<Box<dyn Sink<Bytes, Error = io::Error> + Send>>;
type Incoming = Pin<Box<dyn Stream<Item = io::Result<BytesMut>> + Send>>;
type Answer = Result<SecureStoreResponse, RpcError>;

/// The calls of one connection. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub(crate) struct Exchange {
    shared: Arc<Shared>,
}

struct Shared {
    /// The largest frame either way, as the handshake set it.
    limit: usize,
    state: Mutex<State>,
    /// The socket's halves, each locked only within one poll of a call, never across a wait: a
    /// call kept pending without being polled (a future pinned across a `select!` loop) must not
    /// keep the others from sending or reading.
    writer: Mutex<Outgoing>,
    reader: Mutex<Incoming>,
    /// The calls waiting on the socket.
    waiters: Arc<Waiters>,
    /// What the socket wakes when it can be read or written: every waiting call, so that whichever
    /// is still polled goes on for all.
    wake_all: Waker,
}

/// The wakers of the calls waiting on the socket, by request id.
#[derive(Default)]
struct Waiters(Mutex<HashMap<u64, Waker>>);

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Waker>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Wake for Waiters {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let waiting = std::mem::take(&mut *self.lock());
        for waker in waiting.into_values() {
            waker.wake();
        }
    }
}

#[derive(Default)]
struct State {
    next_id: u64,
    /// Encoded frames not yet handed to the socket, with their request ids, in the order their
    /// calls began.
    outbox: VecDeque<(u64, Bytes)>,
    /// Calls sent and not answered: whoever reads their answer hands it over here.
    waiting: HashMap<u64, oneshot::Sender<Answer>>,
    /// Why the connection can no longer be used, once it cannot.
    broken: Option<Broken>,
}

#[derive(Clone)]
enum Broken {
    /// The daemon closed the connection.
    Closed,
    /// Reading failed, or an answer could not be decoded.
    Read(Arc<dyn StdError + Send + Sync>),
    /// Writing failed.
    Write(Arc<dyn StdError + Send + Sync>),
}

impl Broken {
    fn error(&self) -> RpcError {
        match self {
            Self::Closed => RpcError::Shutdown,
            Self::Read(source) => RpcError::Channel(ChannelError::Read(source.clone())),
            Self::Write(source) => RpcError::Channel(ChannelError::Write(source.clone())),
        }
    }
}

impl Exchange {
    /// Takes over `frames`, whose length limit the handshake has already raised to `limit`.
    pub(crate) fn new<S>(frames: Frames<S>, limit: usize) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (writer, reader) = futures::StreamExt::split::<Bytes>(frames);
        let waiters = Arc::<Waiters>::default();
        Self {
            shared: Arc::new(Shared {
                limit,
                state: Mutex::default(),
                writer: Mutex::new(Box::pin(writer)),
                reader: Mutex::new(Box::pin(reader)),
                wake_all: Waker::from(waiters.clone()),
                waiters,
            }),
        }
    }
}

impl Stub for Exchange {
    type Req = SecureStoreRequest;
    type Resp = SecureStoreResponse;

    async fn call(&self, ctx: context::Context, request: SecureStoreRequest) -> Answer {
        let deadline = tokio::time::Instant::from_std(ctx.deadline);
        let mut call = self.shared.begin(ctx, request)?;
        tokio::time::timeout_at(deadline, call.finish())
            .await
            .unwrap_or(Err(RpcError::DeadlineExceeded))
    }
}

/// Locks one half of the socket, for the length of one poll.
fn lock<T>(half: &Mutex<T>) -> MutexGuard<'_, T> {
    half.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Numbers, encodes and queues the request, before the caller's first await.
    fn begin(
        self: &Arc<Self>,
        ctx: context::Context,
        request: SecureStoreRequest,
    ) -> Result<Call, RpcError> {
        let mut state = self.state();
        if let Some(broken) = &state.broken {
            return Err(broken.error());
        }
        let id = state.next_id;
        let trace_context = ctx.trace_context;
        let message = ClientMessage::Request(Request {
            context: ctx,
            id,
            message: request,
        });
        let frame = codec::encode(&message, self.limit).map_err(|e| RpcError::Send(e.into()))?;
        state.next_id += 1;
        let (answered, answer) = oneshot::channel();
        state.waiting.insert(id, answered);
        state.outbox.push_back((id, frame.into()));
        Ok(Call {
            shared: self.clone(),
            id,
            trace_context,
            answer,
            sent: false,
            done: false,
        })
    }

    /// Sends every queued frame. A frame leaves the queue only when the socket can take it at
    /// once, so a caller that gives up while the socket is full loses nobody's request.
    fn poll_send(&self, cx: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        let mut writer = lock(&self.writer);
        let sent = (|| {
            loop {
                ready!(writer.as_mut().poll_ready(cx))?;
                let Some((_, frame)) = self.state().outbox.pop_front() else {
                    break;
                };
                writer.as_mut().start_send(frame)?;
            }
            writer.as_mut().poll_flush(cx)
        })();
        drop(writer);
        sent.map_err(|e| {
            self.hand_over_what_is_left();
            self.break_with(Broken::Write(Arc::new(e)))
        })
    }

    /// After a failed write: hands every whole answer already received to its call, without
    /// waiting. A write fails on a connection the daemon closed with a goodbye, and answers it sent
    /// before the goodbye (kept by `GoodbyeWatch` when it looked for it) belong to calls that must
    /// get them rather than be sent again.
    fn hand_over_what_is_left(&self) {
        let mut reader = lock(&self.reader);
        let mut cx = Context::from_waker(&self.wake_all);
        while let Poll::Ready(Some(Ok(frame))) = reader.as_mut().poll_next(&mut cx) {
            let Ok(response) = codec::decode::<Response<SecureStoreResponse>>(&frame, self.limit)
            else {
                return;
            };
            if let Some(waiting) = self.state().waiting.remove(&response.request_id) {
                let _ = waiting.send(response.message.map_err(RpcError::Server));
            }
        }
    }

    /// Reads answers, handing over the others', until call `id`'s arrives or nothing is left to read.
    fn poll_read(
        &self,
        id: u64,
        answer: &mut oneshot::Receiver<Answer>,
        cx: &mut Context<'_>,
    ) -> Poll<Answer> {
        let mut reader = lock(&self.reader);
        // Whoever read before us may have read ours.
        if let Ok(answer) = answer.try_recv() {
            return Poll::Ready(answer);
        }
        loop {
            let frame = match ready!(reader.as_mut().poll_next(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    return Poll::Ready(Err(self.break_with(Broken::Read(Arc::new(e)))));
                }
                None => return Poll::Ready(Err(self.break_with(Broken::Closed))),
            };
            let response: Response<SecureStoreResponse> = match codec::decode(&frame, self.limit) {
                Ok(response) => response,
                Err(e) => return Poll::Ready(Err(self.break_with(Broken::Read(Arc::new(e))))),
            };
            let answer = response.message.map_err(RpcError::Server);
            let mut state = self.state();
            let waiting = state.waiting.remove(&response.request_id);
            if response.request_id == id {
                return Poll::Ready(answer);
            }
            // Nobody waits for the daemon's goodbye or for the answer to a call given up.
            if let Some(waiting) = waiting {
                let _ = waiting.send(answer);
            }
        }
    }

    /// Marks the connection unusable and tells every waiting call; returns the error for the caller.
    fn break_with(&self, broken: Broken) -> RpcError {
        let mut state = self.state();
        let broken = state.broken.get_or_insert(broken).clone();
        state.outbox.clear();
        for (_, waiting) in state.waiting.drain() {
            let _ = waiting.send(Err(broken.error()));
        }
        broken.error()
    }
}

/// One call from the moment its request is queued until it is answered or given up.
struct Call {
    shared: Arc<Shared>,
    id: u64,
    trace_context: trace::Context,
    answer: oneshot::Receiver<Answer>,
    /// Our request, and everything queued before it, has been handed to the socket.
    sent: bool,
    done: bool,
}

impl Call {
    async fn finish(&mut self) -> Answer {
        let answer = poll_fn(|cx| self.poll_finish(cx)).await;
        self.done = true;
        answer
    }

    /// Waits for our answer, handed over by whoever read it, while sending the queued requests
    /// (ours among them) and reading answers. A call waiting to send still reads: a daemon that
    /// stops reading while its answers are not taken could otherwise wait on us while we wait on it.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Answer> {
        if let Poll::Ready(answer) = Pin::new(&mut self.answer).poll(cx) {
            return Poll::Ready(answer.unwrap_or(Err(RpcError::Shutdown)));
        }
        // Woken by the socket whoever polled it last, so no call waits on one that is not polled.
        self.shared
            .waiters
            .lock()
            .insert(self.id, cx.waker().clone());
        let mut socket = Context::from_waker(&self.shared.wake_all);
        // Reading first: a write that fails on a connection closed with a goodbye reads what is
        // left on the socket to find it, and answers still there would be lost with it.
        if let Poll::Ready(answer) = self
            .shared
            .poll_read(self.id, &mut self.answer, &mut socket)
        {
            return Poll::Ready(answer);
        }
        if !self.sent {
            match ready!(self.shared.poll_send(&mut socket)) {
                Ok(()) => self.sent = true,
                // Our own answer may have been handed over as the connection broke.
                Err(error) => return Poll::Ready(self.answer.try_recv().unwrap_or(Err(error))),
            }
        }
        Poll::Pending
    }
}

impl Drop for Call {
    /// A call given up: unsent, it is taken out of the queue; sent, it is cancelled.
    fn drop(&mut self) {
        self.shared.waiters.lock().remove(&self.id);
        if self.done {
            return;
        }
        let mut state = self.shared.state();
        if state.waiting.remove(&self.id).is_none() || state.broken.is_some() {
            return;
        }
        if let Some(at) = state.outbox.iter().position(|(id, _)| *id == self.id) {
            state.outbox.remove(at);
            return;
        }
        let cancel: ClientMessage<SecureStoreRequest> = ClientMessage::Cancel {
            trace_context: self.trace_context,
            request_id: self.id,
        };
        if let Ok(frame) = codec::encode(&cancel, self.shared.limit) {
            state.outbox.push_back((self.id, frame.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use futures::{SinkExt, StreamExt};
    use securestore_proto::handshake;
    use securestore_proto::{SecretString, SecureStoreClient, ServiceError, SetOptions};
    use tokio::io::DuplexStream;

    use super::*;

    const LIMIT: usize = 64 * 1024;

    type Server = Frames<DuplexStream>;

    /// Frames with the limit of calls, as after the handshake.
    fn framed(io: DuplexStream) -> Server {
        let mut frames = handshake::frames(io);
        frames.codec_mut().set_max_frame_length(LIMIT);
        frames
    }

    fn connected() -> (SecureStoreClient<Exchange>, Exchange, Server) {
        let (client, server) = tokio::io::duplex(LIMIT);
        let exchange = Exchange::new(framed(client), LIMIT);
        (
            SecureStoreClient::from(exchange.clone()),
            exchange,
            framed(server),
        )
    }

    fn within(millis: u64) -> context::Context {
        let mut ctx = context::current();
        ctx.deadline = Instant::now() + Duration::from_millis(millis);
        ctx
    }

    /// The next message the client sent.
    async fn received<S: AsyncRead + AsyncWrite + Unpin>(
        server: &mut Frames<S>,
    ) -> ClientMessage<SecureStoreRequest> {
        let frame = server.next().await.expect("a frame").expect("read");
        codec::decode(&frame, LIMIT).expect("a client message")
    }

    /// The next request, as its id and the service name of its `clear` call.
    async fn clear_request<S: AsyncRead + AsyncWrite + Unpin>(
        server: &mut Frames<S>,
    ) -> (u64, String) {
        match received(server).await {
            ClientMessage::Request(Request {
                id,
                message: SecureStoreRequest::Clear { service },
                ..
            }) => (id, service.expect("a service")),
            other => panic!("expected a clear request, got {other:?}"),
        }
    }

    /// Answers request `id` with `count` items cleared.
    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
        server: &mut Frames<S>,
        id: u64,
        count: u64,
    ) {
        let response = Response {
            request_id: id,
            message: Ok(SecureStoreResponse::Clear(Ok(count))),
        };
        let frame = codec::encode(&response, LIMIT).expect("encode");
        server.send(Bytes::from(frame)).await.expect("answer");
    }

    #[tokio::test]
    async fn requests_leave_in_the_order_their_calls_began_and_each_caller_gets_its_own_answer() {
        let (rpc, _, mut server) = connected();
        let daemon = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                seen.push(clear_request(&mut server).await);
            }
            // Answered last to first: each answer must still reach its own caller.
            for (id, service) in seen.iter().rev() {
                answer(&mut server, *id, service[1..].parse().expect("a number")).await;
            }
            (seen, server)
        });
        let (a, b, c) = tokio::join!(
            rpc.clear(within(5_000), Some("s10".to_owned())),
            rpc.clear(within(5_000), Some("s20".to_owned())),
            rpc.clear(within(5_000), Some("s30".to_owned())),
        );
        let (seen, _server) = daemon.await.expect("the fake daemon");
        let order: Vec<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(order, ["s10", "s20", "s30"]);
        assert_eq!(
            [a.expect("a"), b.expect("b"), c.expect("c")].map(|r| r.expect("cleared")),
            [10, 20, 30]
        );
    }

    #[tokio::test]
    async fn a_call_given_up_unsent_is_never_sent_and_one_given_up_after_is_cancelled() {
        // A pipe smaller than the first request, which the fake daemon does not read at first: the
        // request fills the pipe and the writer's buffer, and holds back every frame after it.
        let (client, server) = tokio::io::duplex(1024);
        let rpc = SecureStoreClient::from(Exchange::new(framed(client), LIMIT));
        let mut server = framed(server);
        let blocker = rpc.set_item(
            within(5_000),
            "big".to_owned(),
            SecretString::from("v".repeat(16 * 1024)),
            SetOptions::default(),
        );
        tokio::pin!(blocker);
        let early = tokio::time::timeout(Duration::from_millis(20), &mut blocker).await;
        assert!(early.is_err(), "the first request cannot leave whole");
        // The sink takes one more frame than the socket (it keeps it aside until the socket takes
        // it): this call's, which is given up and cancelled.
        let filler = tokio::time::timeout(
            Duration::from_millis(20),
            rpc.clear(within(5_000), Some("filler".to_owned())),
        )
        .await;
        assert!(
            filler.is_err(),
            "the call cannot finish while the socket is full"
        );
        // Unsent: the socket is full when the call begins, and the call is dropped meanwhile.
        let unsent = tokio::time::timeout(
            Duration::from_millis(20),
            rpc.clear(within(5_000), Some("s1".to_owned())),
        )
        .await;
        assert!(
            unsent.is_err(),
            "the call cannot finish while the socket is full"
        );
        let daemon = tokio::spawn(async move {
            let mut late = None;
            let mut cancelled = Vec::new();
            loop {
                match received(&mut server).await {
                    ClientMessage::Request(Request {
                        id,
                        message: SecureStoreRequest::Clear { service },
                        ..
                    }) => match service.as_deref() {
                        Some("s1") => panic!("the call given up unsent was sent"),
                        Some("s2") => late = Some(id),
                        Some("s3") => {
                            let late = late.expect("s2 before s3");
                            assert!(cancelled.contains(&late), "s2 cancelled before s3");
                            // The late answer is ignored.
                            answer(&mut server, late, 99).await;
                            answer(&mut server, id, 3).await;
                            return server;
                        }
                        _ => {}
                    },
                    ClientMessage::Cancel { request_id, .. } => cancelled.push(request_id),
                    _ => {}
                }
            }
        });
        // Sent, then past its deadline without an answer.
        let late = rpc.clear(within(200), Some("s2".to_owned())).await;
        assert!(matches!(late, Err(RpcError::DeadlineExceeded)), "{late:?}");
        // The next call carries the cancel ahead of its own request.
        let next = rpc.clear(within(5_000), Some("s3".to_owned())).await;
        assert_eq!(next.expect("answered").expect("cleared"), 3);
        let _server = daemon.await.expect("the fake daemon");
    }

    #[tokio::test]
    async fn a_lost_connection_fails_every_waiting_call_and_every_later_one() {
        let (rpc, _, mut server) = connected();
        let daemon = tokio::spawn(async move {
            let first = clear_request(&mut server).await;
            let second = clear_request(&mut server).await;
            answer(&mut server, first.0, 1).await;
            // Gone before answering the second.
            drop(server);
            second
        });
        let (a, b) = tokio::join!(
            rpc.clear(within(5_000), Some("s1".to_owned())),
            rpc.clear(within(5_000), Some("s2".to_owned())),
        );
        daemon.await.expect("the fake daemon");
        assert_eq!(a.expect("answered before the loss").expect("cleared"), 1);
        assert!(matches!(b, Err(RpcError::Shutdown)), "{b:?}");
        let later = rpc.clear(within(5_000), Some("s3".to_owned())).await;
        assert!(matches!(later, Err(RpcError::Shutdown)), "{later:?}");
    }

    #[tokio::test]
    async fn a_malformed_answer_breaks_the_connection_instead_of_reaching_a_caller() {
        let (rpc, _, mut server) = connected();
        let daemon = tokio::spawn(async move {
            let _ = clear_request(&mut server).await;
            server
                .send(Bytes::from_static(b"\xff\xff\xff\xff"))
                .await
                .expect("send");
            server
        });
        let answer = rpc.clear(within(5_000), Some("s1".to_owned())).await;
        let _server = daemon.await.expect("the fake daemon");
        assert!(matches!(answer, Err(RpcError::Channel(_))), "{answer:?}");
    }

    #[tokio::test]
    async fn callers_waiting_to_send_still_read_so_a_daemon_blocked_on_its_answers_is_not_waited_on_forever()
     {
        // A pipe smaller than one request and one answer: the fake daemon, like the real one, stops
        // reading while an answer of its cannot be written.
        let (client, server) = tokio::io::duplex(1024);
        let rpc = SecureStoreClient::from(Exchange::new(framed(client), LIMIT));
        let mut server = framed(server);
        let daemon = tokio::spawn(async move {
            for _ in 0..8 {
                let id = match received(&mut server).await {
                    ClientMessage::Request(request) => request.id,
                    other => panic!("expected a request, got {other:?}"),
                };
                let response = Response {
                    request_id: id,
                    message: Ok(SecureStoreResponse::SetItem(Err(ServiceError::Refused {
                        reason: "x".repeat(4096),
                    }))),
                };
                let frame = codec::encode(&response, LIMIT).expect("encode");
                server.send(Bytes::from(frame)).await.expect("answer");
            }
            server
        });
        let calls = (0..8).map(|i| {
            rpc.set_item(
                within(2_000),
                format!("k{i}"),
                SecretString::from("v".repeat(4096)),
                SetOptions::default(),
            )
        });
        let answers = futures::future::join_all(calls).await;
        for answer in answers {
            assert!(
                matches!(answer, Ok(Err(ServiceError::Refused { .. }))),
                "every call is answered, none waits for its deadline: {:?}",
                answer.map(|_| "answered")
            );
        }
        let _server = daemon.await.expect("the fake daemon");
    }

    #[tokio::test]
    async fn a_call_left_pending_unpolled_does_not_keep_other_calls_from_their_answers() {
        // The usual select loop: a long poll kept pinned across iterations, and another call made
        // in a branch while the long poll is not polled.
        let (rpc, _, mut server) = connected();
        let daemon = tokio::spawn(async move {
            let (slow, _) = clear_request(&mut server).await;
            let (fast, _) = clear_request(&mut server).await;
            answer(&mut server, fast, 2).await;
            let _ = received(&mut server).await;
            answer(&mut server, slow, 1).await;
            server
        });
        let slow = rpc.clear(within(5_000), Some("slow".to_owned()));
        tokio::pin!(slow);
        let early = tokio::time::timeout(Duration::from_millis(20), &mut slow).await;
        assert!(early.is_err(), "the slow call is not answered yet");
        let fast = rpc.clear(within(1_000), Some("fast".to_owned())).await;
        assert_eq!(fast.expect("answered in time").expect("cleared"), 2);
        let again = rpc.clear(within(1_000), Some("again".to_owned()));
        let (slow, _) = tokio::join!(slow, again);
        assert_eq!(slow.expect("answered").expect("cleared"), 1);
        let _server = daemon.await.expect("the fake daemon");
    }

    /// A small deterministic generator, so the stress test needs no dependency.
    fn next_random(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_tasks_dropping_calls_anywhere_each_get_their_own_answer_and_leave_nothing_behind()
    {
        // A pipe smaller than a handful of frames, so sending and reading wait on each other.
        let (client, server) = tokio::io::duplex(512);
        let exchange = Exchange::new(framed(client), LIMIT);
        let rpc = SecureStoreClient::from(exchange.clone());
        let mut server = framed(server);
        let daemon = tokio::spawn(async move {
            let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
            let mut seen = std::collections::HashSet::new();
            let mut pending: Vec<(u64, u64)> = Vec::new();
            loop {
                let next = tokio::time::timeout(Duration::from_millis(1), server.next()).await;
                match next {
                    Ok(None) => return seen.len(),
                    Ok(Some(frame)) => {
                        let frame = frame.expect("read");
                        match codec::decode(&frame, LIMIT).expect("a client message") {
                            ClientMessage::Request(Request {
                                id,
                                message: SecureStoreRequest::Clear { service },
                                ..
                            }) => {
                                assert!(seen.insert(id), "request {id} sent twice");
                                let n = service.expect("a service")[1..].parse().expect("n");
                                pending.push((id, n));
                            }
                            ClientMessage::Cancel { .. } => {}
                            other => panic!("unexpected {other:?}"),
                        }
                    }
                    Err(_) => {}
                }
                // Answer some of what is pending, in any order, with the odd stray answer.
                while !pending.is_empty() && !next_random(&mut seed).is_multiple_of(3) {
                    let at = (next_random(&mut seed) % pending.len() as u64) as usize;
                    let (id, n) = pending.swap_remove(at);
                    let mut answers = vec![(id, n)];
                    if next_random(&mut seed).is_multiple_of(8) {
                        answers.extend([(id, n + 1), (u64::MAX - 1, 0)]);
                    }
                    for (id, n) in answers {
                        let response = Response {
                            request_id: id,
                            message: Ok(SecureStoreResponse::Clear(Ok(n))),
                        };
                        let frame = codec::encode(&response, LIMIT).expect("encode");
                        if server.send(Bytes::from(frame)).await.is_err() {
                            // The client is gone: the test is over.
                            return seen.len();
                        }
                    }
                }
            }
        });
        let tasks: Vec<_> = (0..8u64)
            .map(|task| {
                let rpc = rpc.clone();
                tokio::spawn(async move {
                    let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ (task + 1);
                    let mut answered = 0;
                    for i in 0..150u64 {
                        let n = task * 1_000_000 + i;
                        let call = rpc.clear(within(10_000), Some(format!("c{n}")));
                        let answer = match next_random(&mut seed) % 4 {
                            0 => {
                                let micros = next_random(&mut seed) % 2_000;
                                match tokio::time::timeout(Duration::from_micros(micros), call)
                                    .await
                                {
                                    Ok(answer) => answer,
                                    Err(_) => continue,
                                }
                            }
                            1 => {
                                tokio::pin!(call);
                                tokio::select! {
                                    answer = &mut call => answer,
                                    () = tokio::task::yield_now() => continue,
                                }
                            }
                            _ => call.await,
                        };
                        let cleared = answer.expect("answered before the deadline");
                        assert_eq!(cleared.expect("cleared"), n, "another call's answer");
                        answered += 1;
                    }
                    answered
                })
            })
            .collect();
        let mut answered = 0;
        for task in tasks {
            answered += task.await.expect("a task");
        }
        assert!(answered > 0);
        {
            let state = exchange.shared.state();
            assert!(
                state.waiting.is_empty(),
                "{} calls left waiting",
                state.waiting.len()
            );
            assert!(
                state.outbox.iter().all(|(id, frame)| {
                    matches!(
                        codec::decode::<ClientMessage<SecureStoreRequest>>(frame, LIMIT),
                        Ok(ClientMessage::Cancel { request_id, .. }) if request_id == *id
                    )
                }),
                "only cancels may be left queued"
            );
            assert!(
                exchange.shared.waiters.lock().is_empty(),
                "wakers left behind"
            );
        }
        drop((rpc, exchange));
        let requests = daemon.await.expect("the fake daemon");
        assert!(requests >= answered);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_lost_under_many_tasks_ends_every_call_at_once() {
        let (client, server) = tokio::io::duplex(512);
        let exchange = Exchange::new(framed(client), LIMIT);
        let rpc = SecureStoreClient::from(exchange.clone());
        let mut server = framed(server);
        let daemon = tokio::spawn(async move {
            // Answers a hundred requests, then reads a few more and goes away in the middle of it
            // all.
            let mut requests = 0;
            while requests < 104 {
                if let ClientMessage::Request(request) = received(&mut server).await {
                    requests += 1;
                    if requests <= 100 {
                        answer(&mut server, request.id, request.id).await;
                    }
                }
            }
        });
        let started = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let rpc = rpc.clone();
                tokio::spawn(async move {
                    loop {
                        match rpc.clear(within(30_000), Some("s".to_owned())).await {
                            Ok(cleared) => assert!(cleared.is_ok()),
                            Err(RpcError::Shutdown | RpcError::Channel(_)) => return,
                            Err(other) => panic!("{other:?}"),
                        }
                    }
                })
            })
            .collect();
        daemon.await.expect("the fake daemon");
        for task in tasks {
            task.await.expect("a task");
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "calls waited for their deadlines"
        );
        let state = exchange.shared.state();
        assert!(state.waiting.is_empty() && state.outbox.is_empty());
    }

    #[tokio::test]
    async fn a_frame_past_the_limit_breaks_the_connection_without_being_read() {
        use tokio::io::AsyncWriteExt;
        let (rpc, _, mut server) = connected();
        let daemon = tokio::spawn(async move {
            let _ = clear_request(&mut server).await;
            // A length prefix of 4 GiB, then nothing.
            server
                .get_mut()
                .write_all(&u32::MAX.to_be_bytes())
                .await
                .expect("send");
            server
        });
        let answer = rpc.clear(within(5_000), Some("s1".to_owned())).await;
        let _server = daemon.await.expect("the fake daemon");
        assert!(matches!(answer, Err(RpcError::Channel(_))), "{answer:?}");
        let later = rpc.clear(within(5_000), Some("s2".to_owned())).await;
        assert!(matches!(later, Err(RpcError::Channel(_))), "{later:?}");
    }

    #[tokio::test]
    async fn answers_received_before_a_failed_write_reach_their_calls() {
        use securestore_proto::goodbye::{self, GoodbyeWatch};
        let (ours, theirs) = tokio::net::UnixStream::pair().expect("pair");
        let watch = GoodbyeWatch::new(ours);
        let said_goodbye = watch.said_goodbye();
        let mut frames = handshake::frames(watch);
        frames.codec_mut().set_max_frame_length(LIMIT);
        let exchange = Exchange::new(frames, LIMIT);
        let shared = exchange.shared.clone();
        let request = |service: &str| SecureStoreRequest::Clear {
            service: Some(service.to_owned()),
        };
        let mut first = shared.begin(within(5_000), request("s1")).expect("begin");
        poll_fn(|cx| shared.poll_send(cx)).await.expect("sent");
        // The daemon answers it, says goodbye and closes; nothing of ours reads meanwhile.
        let mut daemon = handshake::frames(theirs);
        daemon.codec_mut().set_max_frame_length(LIMIT);
        let (id, _) = clear_request(&mut daemon).await;
        answer(&mut daemon, id, 7).await;
        let mut daemon = daemon.into_inner();
        tokio::io::AsyncWriteExt::write_all(&mut daemon, &goodbye::frame())
            .await
            .expect("goodbye");
        drop(daemon);
        // The next write fails on the closed socket: the answer before the goodbye still reaches
        // its call, so it is not sent again.
        let _second = shared.begin(within(5_000), request("s2")).expect("begin");
        let failed = poll_fn(|cx| shared.poll_send(cx)).await;
        assert!(failed.is_err(), "the socket is closed");
        assert!(said_goodbye.load(std::sync::atomic::Ordering::Acquire));
        match first.answer.try_recv() {
            Ok(Ok(SecureStoreResponse::Clear(Ok(7)))) => {}
            other => panic!("the answer before the goodbye was lost: {other:?}"),
        }
        first.done = true;
    }
}
