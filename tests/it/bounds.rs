//! Every bound holds against a hostile peer, and only that peer's connection pays for it.

use std::time::Duration;

use futures::future::join_all;
use securestore_client::{ConnectOptions, Error, GetOptions, SetOptions};
use securestore_e2e::{
    Daemon, PROJECT, cancel_frame, closed_after, encode_request, frame, poll_frame, raw_client,
    raw_hello,
};
use securestore_proto::handshake::{Hello, HelloReply};
use securestore_proto::tarpc::{Response, context};
use securestore_proto::{
    GetOptions as WireGet, SecureStoreRequest, SecureStoreResponse, ServiceError,
    SetOptions as WireSet,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const LIMIT: usize = 1 << 20;

/// Whether the daemon closes `stream` within `within`, sending nothing more.
async fn closed_within(stream: &mut UnixStream, within: Duration) -> bool {
    closed_after(stream, &[], within).await
}

/// A bound raw connection.
async fn bound_stream(daemon: &Daemon) -> UnixStream {
    let (reply, frames) = raw_hello(&daemon.socket(), &Hello::project(PROJECT, None)).await;
    assert!(matches!(reply, HelloReply::Accepted(_)), "{reply:?}");
    frames.into_inner()
}

async fn read_response(stream: &mut UnixStream) -> Response<SecureStoreResponse> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.expect("answer length");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.expect("answer body");
    securestore_proto::codec::decode(&body, LIMIT).expect("decode answer")
}

fn get_request(id: u64) -> Vec<u8> {
    let message = SecureStoreRequest::GetItem {
        key: "k".to_owned(),
        options: WireGet::default(),
    };
    frame(&encode_request(id, message, Duration::from_secs(10)))
}

#[tokio::test]
async fn truncated_frames_then_silence_are_closed() {
    let daemon =
        Daemon::start_with(&["--handshake-timeout-ms", "300", "--frame-timeout-ms", "300"]);

    // Before the handshake: two bytes of a length prefix, then nothing.
    let mut stream = UnixStream::connect(daemon.socket()).await.expect("connect");
    stream.write_all(&[0, 0]).await.expect("write");
    assert!(
        closed_within(&mut stream, Duration::from_secs(5)).await,
        "half a prefix is not kept"
    );

    // After the handshake: a frame that promises 100 bytes and delivers 10.
    let mut stream = bound_stream(&daemon).await;
    let mut partial = 100u32.to_be_bytes().to_vec();
    partial.extend_from_slice(&[0u8; 10]);
    stream.write_all(&partial).await.expect("write");
    assert!(
        closed_within(&mut stream, Duration::from_secs(5)).await,
        "a stuck frame is not kept"
    );

    // An idle bound connection between frames is not a stuck frame: it stays open and usable.
    let mut idle = bound_stream(&daemon).await;
    assert!(
        !closed_within(&mut idle, Duration::from_millis(1200)).await,
        "idle is allowed"
    );
    idle.write_all(&get_request(1)).await.expect("write");
    let mut len = [0u8; 4];
    idle.read_exact(&mut len).await.expect("an answer arrives");
    daemon.assert_serving().await;
}

#[tokio::test]
async fn absurd_field_values_are_contained() {
    let daemon = Daemon::start();

    // A deadline a century away is clamped, and the request is answered. (Unclamped, it would
    // overflow the timer wheel tarpc keeps deadlines in.)
    let mut stream = bound_stream(&daemon).await;
    let century = Duration::from_secs(100 * 365 * 24 * 3600);
    let get = SecureStoreRequest::GetItem {
        key: "k".into(),
        options: WireGet::default(),
    };
    stream
        .write_all(&frame(&encode_request(1, get, century)))
        .await
        .expect("write");
    let response = read_response(&mut stream).await;
    assert_eq!(response.request_id, 1);
    assert!(
        matches!(response.message, Ok(SecureStoreResponse::GetItem(Ok(None)))),
        "{response:?}"
    );

    // A deadline of u64::MAX seconds overflows tarpc's own decoding (a panic); the daemon catches
    // it, closes only that connection, and keeps serving.
    let mut bytes = encode_request(
        7,
        SecureStoreRequest::GetItem {
            key: "k".into(),
            options: WireGet::default(),
        },
        Duration::from_secs(1000),
    );
    // Layout: variant tag (0), then the deadline's seconds as a varint: 251 + u16 for ~1000.
    assert_eq!(
        (bytes[0], bytes[1]),
        (0, 251),
        "the deadline sits right after the tag"
    );
    let mut patched = vec![0u8, 253];
    patched.extend_from_slice(&u64::MAX.to_le_bytes());
    patched.extend_from_slice(&bytes[4..]);
    bytes = patched;
    let mut stream = bound_stream(&daemon).await;
    stream.write_all(&frame(&bytes)).await.expect("write");
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    daemon.assert_serving().await;

    // An unknown accessibility class (the last byte of a set with default options) is malformed.
    let set = SecureStoreRequest::SetItem {
        key: "k".into(),
        value: "v".into(),
        options: Default::default(),
    };
    let mut bytes = encode_request(8, set, Duration::from_secs(10));
    assert_eq!(bytes.last(), Some(&5), "WHEN_UNLOCKED is last");
    *bytes.last_mut().expect("last") = 9;
    let mut stream = bound_stream(&daemon).await;
    stream.write_all(&frame(&bytes)).await.expect("write");
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);

    // A huge key that still fits the frame is answered, not fatal.
    let raw = raw_client(&daemon.socket(), PROJECT).await.expect("bound");
    let answer = raw
        .get_item(context::current(), "k".repeat(60_000), WireGet::default())
        .await
        .expect("answered");
    assert!(
        matches!(answer, Err(ServiceError::KeyTooLong { .. })),
        "{answer:?}"
    );
    daemon.assert_serving().await;
}

fn set_request(id: u64) -> Vec<u8> {
    let message = SecureStoreRequest::SetItem {
        key: format!("k{id}"),
        value: "v".into(),
        options: WireSet::default(),
    };
    frame(&encode_request(id, message, Duration::from_secs(10)))
}

/// Reads `count` answers; returns how many were turned away by the in-flight cap.
async fn count_turned_away(stream: &mut UnixStream, count: u64) -> u64 {
    let mut turned_away = 0;
    for _ in 0..count {
        if let Err(err) = read_response(stream).await.message {
            assert!(err.detail.contains("throttled"), "{err:?}");
            turned_away += 1;
        }
    }
    turned_away
}

#[tokio::test]
async fn in_flight_requests_per_connection_are_capped_and_every_request_is_answered() {
    let daemon = Daemon::start_with(&["--max-in-flight", "1"]);
    let mut stream = bound_stream(&daemon).await;
    const REQUESTS: u64 = 300;
    // A set waits for its commit, so a burst of sets has many waiting at once.
    let burst: Vec<u8> = (1..=REQUESTS).flat_map(set_request).collect();
    stream.write_all(&burst).await.expect("write burst");
    let turned_away = count_turned_away(&mut stream, REQUESTS).await;
    assert!(
        turned_away > 0,
        "with one request allowed in flight, a burst of {REQUESTS} sets must hit the cap"
    );
    assert!(turned_away < REQUESTS, "the first set is served");

    // A get answered from an inline reader is done as soon as it is read, so it never waits and
    // never counts against the cap: a burst of gets is answered in full.
    let burst: Vec<u8> = (1..=REQUESTS).flat_map(get_request).collect();
    stream.write_all(&burst).await.expect("write burst");
    assert_eq!(count_turned_away(&mut stream, REQUESTS).await, 0);
    daemon.assert_serving().await;
}

#[tokio::test]
async fn the_connection_cap_queues_clients_until_a_slot_frees() {
    let daemon = Daemon::start_with(&["--max-connections", "2"]);
    // Both slots busy (each in the middle of a frame), so neither is closed to make room; idle ones
    // would be (see `budget::idle_connections_cannot_hold_every_slot`).
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = bound_stream(&daemon).await;
        stream.write_all(&[0, 0, 1, 0, 7]).await.expect("write");
        busy.push(stream);
    }
    // Until the daemon has read those bytes, the connections look idle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let short = ConnectOptions {
        timeout: Duration::from_millis(500),
        ..ConnectOptions::default()
    };
    let err = securestore_client::Client::connect_with(daemon.socket(), PROJECT, short.clone())
        .await
        .expect_err("no slot");
    assert!(matches!(err, Error::TimedOut), "{err:?}");

    drop(busy.remove(0));
    let third = securestore_client::Client::connect_with(
        daemon.socket(),
        PROJECT,
        ConnectOptions::default(),
    )
    .await
    .expect("a slot freed");
    third
        .set_item("k", "v", SetOptions::default())
        .await
        .expect("set");
    let mut second = busy.remove(0);
    assert!(
        !closed_within(&mut second, Duration::from_millis(200)).await,
        "the other busy connection is still open"
    );
}

#[tokio::test]
async fn idle_connections_do_not_lock_out_a_real_client() {
    // Far more idle connections than slots: they must time out of their slots (no handshake) and let
    // the real client, queued behind all of them, in.
    let daemon = Daemon::start_with(&["--max-connections", "64", "--handshake-timeout-ms", "300"]);
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(UnixStream::connect(daemon.socket()).await.expect("connect"));
    }
    let options = ConnectOptions {
        timeout: Duration::from_secs(30),
        ..ConnectOptions::default()
    };
    let client = securestore_client::Client::connect_with(daemon.socket(), PROJECT, options)
        .await
        .expect("a real client gets in past 300 idle connections holding 64 slots");
    client
        .set_item("k", "v", SetOptions::default())
        .await
        .expect("set");
    drop(idle);
}

#[tokio::test]
async fn a_thousand_connections_at_once_are_all_served() {
    let daemon = Daemon::start();
    let socket = daemon.socket();
    let clients = (0..1000).map(|i| {
        let socket = socket.clone();
        async move {
            let client =
                securestore_client::Client::connect(&socket, &format!("@load/p{}", i % 10)).await?;
            client
                .set_item(&format!("k{i}"), format!("v{i}"), SetOptions::default())
                .await?;
            let found = client
                .get_item(&format!("k{i}"), GetOptions::default())
                .await?;
            Ok::<_, Error>(found.map(|v| v.expose_secret().to_owned()) == Some(format!("v{i}")))
        }
    });
    let results = join_all(clients).await;
    let served = results.iter().filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(
        served,
        1000,
        "first failure: {:?}",
        results.iter().find(|r| !matches!(r, Ok(true)))
    );
}

#[tokio::test]
async fn a_client_that_never_reads_its_answers_hurts_only_itself() {
    let daemon = Daemon::start();
    let mut stream = bound_stream(&daemon).await;
    // Write requests until the daemon stops reading (its answers fill the socket), never reading.
    let writer = tokio::spawn(async move {
        for id in 1..=50_000u64 {
            if stream.write_all(&get_request(id)).await.is_err() {
                break;
            }
        }
        stream
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.assert_serving().await;
    writer.abort();
    daemon.assert_serving().await;
}

#[tokio::test]
async fn garbage_after_the_handshake_closes_only_that_connection() {
    let daemon = Daemon::start();
    let mut stream = bound_stream(&daemon).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    daemon.assert_serving().await;
}

/// A request still waiting after it was read holds one of the connection's `--max-in-flight` places
/// until it is answered, cancelled by the client, or past its deadline; the last two are dropped
/// unanswered, as tarpc drops them, and free their place.
#[tokio::test]
async fn a_waiting_request_ends_on_cancel_or_deadline_and_frees_its_place() {
    let daemon = Daemon::start_with(&["--max-in-flight", "1"]);
    let mut stream = bound_stream(&daemon).await;
    let watch = SecureStoreRequest::Watch {
        filter: securestore_proto::WatchFilter::default(),
    };
    stream
        .write_all(&frame(&encode_request(1, watch, Duration::from_secs(10))))
        .await
        .expect("watch");
    let answer = read_response(&mut stream).await;
    assert_eq!(answer.request_id, 1);
    let Ok(SecureStoreResponse::Watch(Ok(watcher))) = answer.message else {
        panic!("watch: {:?}", answer.message);
    };

    // 2 waits for an event; 3 finds no place.
    let long = Duration::from_secs(20);
    let mut burst = poll_frame(2, watcher, long);
    burst.extend(poll_frame(3, watcher, long));
    stream.write_all(&burst).await.expect("polls");
    let answer = read_response(&mut stream).await;
    assert_eq!(answer.request_id, 3);
    assert!(
        answer
            .message
            .as_ref()
            .is_err_and(|e| e.detail.contains("throttled")),
        "{:?}",
        answer.message
    );
    // The client gives up on 2: its place is free again, and 4 takes it until its deadline passes.
    let mut burst = cancel_frame(2);
    burst.extend(poll_frame(4, watcher, Duration::from_millis(300)));
    stream.write_all(&burst).await.expect("cancel, then 4");
    tokio::time::sleep(Duration::from_millis(600)).await;
    // 4 is past its deadline: 5 takes the place, and is answered by the event of a set made on
    // another connection.
    stream
        .write_all(&poll_frame(5, watcher, long))
        .await
        .expect("5");
    tokio::time::sleep(Duration::from_millis(100)).await;
    daemon
        .client(PROJECT)
        .await
        .set_item("k", "v", SetOptions::default())
        .await
        .expect("set");
    let answer = read_response(&mut stream).await;
    assert_eq!(answer.request_id, 5, "{:?}", answer.message);
    let Ok(SecureStoreResponse::PollEvents(Ok(events))) = answer.message else {
        panic!("5 was not answered with events: {:?}", answer.message);
    };
    assert_eq!(events.events.len(), 1, "{events:?}");
    // Nothing ever came for 2 or 4 (cancelled, expired): the next answer is for the next request.
    stream.write_all(&get_request(7)).await.expect("a last get");
    assert_eq!(read_response(&mut stream).await.request_id, 7);
    daemon.assert_serving().await;
}
