//! A bound connection's request loop: decodes each tarpc request, runs it inside this connection's
//! own task, and writes its answer.
//!
//! This replaces tarpc's `BaseChannel` with one task per request (issue 11: that machinery was a
//! third of a get's instructions). The wire is unchanged: tarpc's `ClientMessage` and `Response`,
//! through the same codec and frames. What `BaseChannel` did is done here, more cheaply:
//!
//! - A request is polled once as soon as it is decoded. A get or contains answered from an inline
//!   reader is ready then, and its answer is written with no task, channel, timer or map entry.
//! - A request still pending after that first poll (a write waiting for its commit, a watch poll)
//!   joins this connection's in-flight set, with its deadline and an abort handle for the client's
//!   `Cancel`. At most `max_in_flight` wait at once; a request beyond that is answered "throttled"
//!   (`WouldBlock`), as tarpc's `max_concurrent_requests` answered.
//! - A request whose deadline passes or that the client cancels is dropped unanswered, as tarpc
//!   drops it: a write not yet taken by the storage owner is then not applied (`store.rs`). One
//!   already past its deadline when it is decoded is not run at all.
//! - Answers are written as they come and flushed when nothing else is ready, so a burst of
//!   requests is answered with few writes.
//! - A panicking request ends this connection only (the caller logs it); the daemon goes on.
//!
//! Order: requests take their turn ([`Ticketer`]) in the order they are decoded, exactly as before,
//! so what one connection sends takes effect in that order.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures::future::{AbortHandle, Abortable, Aborted};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, SinkExt, StreamExt};
use securestore_proto::handshake::ServerTransport;
use securestore_proto::order::Ticketer;
use securestore_proto::tarpc::server::Serve;
use securestore_proto::tarpc::{ClientMessage, Response, ServerError};
use securestore_proto::{SecureStore, SecureStoreResponse};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::task::TaskTracker;

use crate::budget::ConnectionBudget;
use crate::handler::{Bound, Handler};

/// A connection's bounds, from the daemon's `Config`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Requests that may wait at once (`--max-in-flight`).
    pub(crate) max_in_flight: usize,
    /// How long the peer may take none of its answers before the connection is closed (the frame
    /// timeout: a peer must keep both directions moving).
    pub(crate) write_timeout: std::time::Duration,
}

/// Why a connection's request loop ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The peer closed its end (or reads were stopped), and every answer was written.
    Closed,
    /// Reading or writing failed, or a frame did not decode: the connection is dropped.
    Failed(std::io::Error),
    /// A request's handler panicked.
    Panicked,
}

/// What a request comes to: its answer, or nothing (cancelled, past its deadline).
type Outcome = Option<Result<SecureStoreResponse, ServerError>>;

/// A request still waiting after its first poll.
type Waiting = Pin<Box<dyn Future<Output = (u64, std::thread::Result<Outcome>)> + Send>>;

/// Serves `transport`'s requests for `bound` until the peer leaves, reading fails or a handler
/// panics. `in_flight` counts every request from decoding until it ends (the slot table asks it
/// whether the connection is idle, shutdown waits for it); an answer still to be written is not
/// counted, so a peer that does not read cannot make the connection look busy. The transport is
/// borrowed, not taken: the caller drops the socket, and only after it has decided whether the
/// socket says goodbye as it goes (`watch::FrameWatch`).
pub(crate) async fn serve<S>(
    transport: &mut ServerTransport<S>,
    bound: Arc<Bound>,
    budget: ConnectionBudget,
    in_flight: TaskTracker,
    limits: Limits,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut ticketer = Ticketer::default();
    let mut waiting: FuturesUnordered<Waiting> = FuturesUnordered::new();
    let mut cancels: HashMap<u64, AbortHandle> = HashMap::new();
    let mut reading = true;
    let mut unflushed = false;
    loop {
        // Fairness: a peer that always has requests ready (a pipelined flood answered from inline
        // readers) would keep this loop from ever returning `Pending`, and the one serving thread
        // from serving any other connection. Each turn spends a unit of the task's budget, and the
        // task yields to the others when it is spent (tokio's cooperative scheduling; 128 units
        // per poll).
        tokio::task::consume_budget().await;
        // Something already there is handled before the answers written so far are flushed.
        let event = match next_event(transport, &mut waiting, reading).now_or_never() {
            Some(event) => event,
            None if unflushed => {
                if let Err(err) = bounded(limits.write_timeout, transport.flush()).await {
                    return Ended::Failed(err);
                }
                unflushed = false;
                continue;
            }
            None => next_event(transport, &mut waiting, reading).await,
        };
        match event {
            Event::Message(Some(Ok(ClientMessage::Request(request)))) => {
                let id = request.id;
                let grant = budget.take();
                // Past its deadline already: its caller has given up, so it is not run at all
                // (rather than run and left unanswered), as one that expires while waiting.
                if request.context.deadline <= std::time::Instant::now() {
                    drop(grant);
                    tracing::trace!(id, "request past its deadline on arrival; dropped");
                    continue;
                }
                if let Some(refusal) = refusal(id, &cancels, waiting.len(), limits.max_in_flight) {
                    drop(grant);
                    if let Err(err) =
                        bounded(limits.write_timeout, answer(transport, id, Err(refusal))).await
                    {
                        return Ended::Failed(err);
                    }
                    unflushed = true;
                    continue;
                }
                let deadline = request.context.deadline;
                let handler = Handler {
                    bound: bound.clone(),
                    turn: ticketer.next_turn(),
                };
                let run = async move {
                    // The request holds its frame's share of the budget until it ends.
                    let _grant = grant;
                    handler
                        .serve()
                        .serve(request.context, request.message)
                        .await
                };
                let mut run =
                    Box::pin(in_flight.track_future(AssertUnwindSafe(run).catch_unwind()));
                let polled = futures::poll!(run.as_mut());
                match polled {
                    std::task::Poll::Ready(Ok(message)) => {
                        // Ended: no longer under way (nor holding its grant) while the answer
                        // waits for a peer that may not read it, as for a request that waited.
                        drop(run);
                        if let Err(err) =
                            bounded(limits.write_timeout, answer(transport, id, message)).await
                        {
                            return Ended::Failed(err);
                        }
                        unflushed = true;
                    }
                    std::task::Poll::Ready(Err(_)) => return Ended::Panicked,
                    std::task::Poll::Pending => {
                        let (handle, waits) = wait(id, deadline, run);
                        cancels.insert(id, handle);
                        waiting.push(waits);
                    }
                }
            }
            Event::Message(Some(Ok(ClientMessage::Cancel { request_id, .. }))) => {
                budget.release_unclaimed();
                // The handle stays until the aborted request leaves the waiting set (`Done`), so
                // its id counts as under way until then, and a new request reusing the id before
                // that is refused rather than losing its own handle to the old one's end.
                if let Some(handle) = cancels.get(&request_id) {
                    tracing::trace!(request_id, "request cancelled by the client");
                    handle.abort();
                }
            }
            Event::Message(Some(Ok(_))) => budget.release_unclaimed(),
            Event::Message(Some(Err(err))) => return Ended::Failed(err),
            Event::Message(None) => {
                tracing::trace!("no more requests to read");
                reading = false;
            }
            Event::Done((id, outcome)) => {
                cancels.remove(&id);
                match outcome {
                    Ok(Some(message)) => {
                        if let Err(err) =
                            bounded(limits.write_timeout, answer(transport, id, message)).await
                        {
                            return Ended::Failed(err);
                        }
                        unflushed = true;
                    }
                    Ok(None) => tracing::trace!(
                        id,
                        "request ended unanswered (cancelled or past its deadline)"
                    ),
                    Err(_) => return Ended::Panicked,
                }
            }
            Event::Idle => {
                // Nothing more to read and nothing waiting: write what is left and end.
                tracing::trace!(unflushed, "every request answered");
                if unflushed
                    && let Err(err) = bounded(limits.write_timeout, transport.flush()).await
                {
                    return Ended::Failed(err);
                }
                return Ended::Closed;
            }
        }
    }
}

/// Why request `id` is refused before it runs, if it is: its id is already under way, or
/// `max_in_flight` requests already wait.
fn refusal(
    id: u64,
    cancels: &HashMap<u64, AbortHandle>,
    waiting: usize,
    max_in_flight: usize,
) -> Option<ServerError> {
    if cancels.contains_key(&id) {
        Some(ServerError::new(
            std::io::ErrorKind::AlreadyExists,
            "a request with this id is already under way".to_owned(),
        ))
    } else if waiting >= max_in_flight {
        Some(ServerError::new(
            std::io::ErrorKind::WouldBlock,
            "server throttled the request.".to_owned(),
        ))
    } else {
        None
    }
}

/// A request that did not finish on its first poll, made to end by `deadline` or by the returned
/// handle (the client's `Cancel`), whichever comes first: it then ends unanswered.
fn wait(
    id: u64,
    deadline: std::time::Instant,
    run: impl Future<Output = std::thread::Result<Result<SecureStoreResponse, ServerError>>>
    + Send
    + 'static,
) -> (AbortHandle, Waiting) {
    let (handle, registration) = AbortHandle::new_pair();
    let deadline = tokio::time::Instant::from_std(deadline);
    let waits = Box::pin(async move {
        let run = Abortable::new(run, registration);
        let outcome = match tokio::time::timeout_at(deadline, run).await {
            Ok(Ok(Ok(message))) => Ok(Some(message)),
            Ok(Ok(Err(panic))) => Err(panic),
            Ok(Err(Aborted)) | Err(_) => Ok(None),
        };
        (id, outcome)
    });
    (handle, waits)
}

enum Event {
    Message(Option<std::io::Result<ClientMessage<securestore_proto::SecureStoreRequest>>>),
    Done((u64, std::thread::Result<Outcome>)),
    /// Reads have ended and no request is waiting.
    Idle,
}

/// The next thing to do: a finished request first (its answer frees room), then a new message.
async fn next_event<S>(
    transport: &mut ServerTransport<S>,
    waiting: &mut FuturesUnordered<Waiting>,
    reading: bool,
) -> Event
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        biased;
        Some(done) = waiting.next(), if !waiting.is_empty() => Event::Done(done),
        message = transport.next(), if reading => Event::Message(message),
        else => Event::Idle,
    }
}

/// Runs a write of the loop, and fails it if the peer takes nothing for `limit`: a peer that stopped
/// reading would otherwise keep its connection (and its slot) for good, as nothing of it is ever
/// half-read or under way. The timer is set only when the write has to wait.
async fn bounded(
    limit: std::time::Duration,
    write: impl Future<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    let mut write = std::pin::pin!(write);
    match futures::poll!(write.as_mut()) {
        std::task::Poll::Ready(written) => written,
        std::task::Poll::Pending => tokio::time::timeout(limit, write)
            .await
            .unwrap_or_else(|_| {
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the peer took none of its answers within the frame timeout",
                ))
            }),
    }
}

/// Queues one answer for writing (flushed by the loop).
async fn answer<S>(
    transport: &mut ServerTransport<S>,
    request_id: u64,
    message: Result<SecureStoreResponse, ServerError>,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    transport
        .feed(Response {
            request_id,
            message,
        })
        .await
}
