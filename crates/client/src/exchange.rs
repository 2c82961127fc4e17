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
//!
//! With one call at a time on a connection, a call is one write and one read on the caller's task.
//! A call given up (dropped, or past its deadline) before it was sent is never sent; one given up
//! after is cancelled, as tarpc does it: at once where the runtime runs tasks on its own, else with
//! the next request sent on the connection. Its answer, if it comes, is dropped. Any failure to
//! read or write breaks the connection for every call, present and future, as a lost connection:
//! [`crate::Client`] decides from the daemon's goodbye whether a call may be sent again.

use std::collections::{HashMap, VecDeque};
use std::error::Error as StdError;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::ready;

use bytes::{Bytes, BytesMut};
use futures::{Sink, Stream, StreamExt};
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
    writer: tokio::sync::Mutex<Outgoing>,
    reader: tokio::sync::Mutex<Incoming>,
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
        let (writer, reader) = frames.split::<Bytes>();
        Self {
            shared: Arc::new(Shared {
                limit,
                state: Mutex::default(),
                writer: tokio::sync::Mutex::new(Box::pin(writer)),
                reader: tokio::sync::Mutex::new(Box::pin(reader)),
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

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
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
            done: false,
        })
    }

    /// Sends every queued frame. A frame leaves the queue only when the socket can take it at
    /// once, so a caller that gives up while waiting for the writer loses nobody's request.
    async fn send_queued(&self) -> Result<(), RpcError> {
        let mut writer = self.writer.lock().await;
        let sent = poll_fn(|cx| {
            loop {
                ready!(writer.as_mut().poll_ready(cx))?;
                let Some((_, frame)) = self.state().outbox.pop_front() else {
                    break;
                };
                writer.as_mut().start_send(frame)?;
            }
            writer.as_mut().poll_flush(cx)
        })
        .await;
        sent.map_err(|e| self.break_with(Broken::Write(Arc::new(e))))
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
    done: bool,
}

impl Call {
    /// Sends the queued requests (ours among them) while waiting for our answer, so that a caller
    /// waiting to send still reads: a daemon that stops reading while its answers are not taken
    /// could otherwise wait on us while we wait on it.
    async fn finish(&mut self) -> Answer {
        let shared = self.shared.clone();
        let send = shared.send_queued();
        tokio::pin!(send);
        let mut sent = false;
        let answer = {
            let receive = self.receive();
            tokio::pin!(receive);
            loop {
                tokio::select! {
                    biased;
                    answer = &mut receive => break answer,
                    result = &mut send, if !sent => match result {
                        Ok(()) => sent = true,
                        Err(error) => break Err(error),
                    },
                }
            }
        };
        self.done = true;
        answer
    }

    /// Waits for our answer: handed over by whoever reads it, or read by us once the reader is ours.
    async fn receive(&mut self) -> Answer {
        tokio::select! {
            biased;
            answer = &mut self.answer => answer.unwrap_or(Err(RpcError::Shutdown)),
            mut reader = self.shared.reader.lock() => match self.answer.try_recv() {
                // Whoever read before us may have read ours.
                Ok(answer) => answer,
                Err(_) => self.read_until_answered(&mut reader).await,
            },
        }
    }

    /// Reads answers, handing over the others', until this call's arrives.
    async fn read_until_answered(&self, reader: &mut Incoming) -> Answer {
        let shared = &self.shared;
        loop {
            let frame = match reader.next().await {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Err(shared.break_with(Broken::Read(Arc::new(e)))),
                None => return Err(shared.break_with(Broken::Closed)),
            };
            let response: Response<SecureStoreResponse> = match codec::decode(&frame, shared.limit)
            {
                Ok(response) => response,
                Err(e) => return Err(shared.break_with(Broken::Read(Arc::new(e)))),
            };
            let answer = response.message.map_err(RpcError::Server);
            let mut state = shared.state();
            let waiting = state.waiting.remove(&response.request_id);
            if response.request_id == self.id {
                return answer;
            }
            // Nobody waits for the daemon's goodbye or for the answer to a call given up.
            if let Some(waiting) = waiting {
                let _ = waiting.send(answer);
            }
        }
    }
}

impl Drop for Call {
    /// A call given up: unsent, it is taken out of the queue; sent, it is cancelled.
    fn drop(&mut self) {
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
        drop(state);
        // Sent now where the runtime runs tasks on its own (the async client); the blocking
        // client's runtime runs it with its next call.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            runtime.spawn(async move { shared.send_queued().await });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use futures::SinkExt;
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
    async fn received(server: &mut Server) -> ClientMessage<SecureStoreRequest> {
        let frame = server.next().await.expect("a frame").expect("read");
        codec::decode(&frame, LIMIT).expect("a client message")
    }

    /// The next request, as its id and the service name of its `clear` call.
    async fn clear_request(server: &mut Server) -> (u64, String) {
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
    async fn answer(server: &mut Server, id: u64, count: u64) {
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
        let (rpc, exchange, mut server) = connected();
        // Unsent: the writer is busy when the call begins, and the call is dropped meanwhile.
        let writer = exchange.shared.writer.lock().await;
        let unsent = tokio::time::timeout(
            Duration::from_millis(20),
            rpc.clear(within(5_000), Some("s1".to_owned())),
        )
        .await;
        assert!(unsent.is_err(), "the call cannot finish without the writer");
        drop(writer);
        // Sent, then past its deadline without an answer.
        let late = rpc.clear(within(50), Some("s2".to_owned())).await;
        assert!(matches!(late, Err(RpcError::DeadlineExceeded)), "{late:?}");
        let (late_id, service) = clear_request(&mut server).await;
        assert_eq!(service, "s2", "the dropped call was sent");
        // Its cancel follows at once, with no other call to carry it.
        let cancel = tokio::time::timeout(Duration::from_secs(5), received(&mut server)).await;
        match cancel.expect("the cancel is sent without waiting for another call") {
            ClientMessage::Cancel { request_id, .. } => assert_eq!(request_id, late_id),
            other => panic!("expected the cancel, got {other:?}"),
        }
        // The late answer, if it comes, reaches nobody.
        let next = tokio::spawn({
            let rpc = rpc.clone();
            async move { rpc.clear(within(5_000), Some("s3".to_owned())).await }
        });
        let (id, service) = clear_request(&mut server).await;
        assert_eq!(service, "s3");
        answer(&mut server, late_id, 99).await;
        answer(&mut server, id, 3).await;
        let next = next.await.expect("the call").expect("answered");
        assert_eq!(next.expect("cleared"), 3);
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
}
