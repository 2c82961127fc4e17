//! Raw bytes on the socket: malformed input closes only its own connection.

use std::time::Duration;

use securestore_e2e::{Daemon, PROJECT, closed_after, raw_hello};
use securestore_proto::handshake::{Hello, HelloReply};
use tokio::net::UnixStream;

/// Writes `bytes` and checks the daemon closes the connection (EOF or reset) within 10 s.
async fn assert_closed_after(stream: &mut UnixStream, bytes: &[u8]) {
    let closed = closed_after(stream, bytes, Duration::from_secs(10)).await;
    assert!(closed, "the daemon did not close the connection");
}

#[tokio::test]
async fn garbage_instead_of_a_handshake_closes_that_connection_only() {
    let daemon = Daemon::start();
    let mut stream = UnixStream::connect(daemon.socket()).await.expect("connect");
    // A well-formed frame whose body is not a Hello.
    let mut frame = 6u32.to_be_bytes().to_vec();
    frame.extend_from_slice(b"\xff\xfe\xfdjunk");
    assert_closed_after(&mut stream, &frame).await;
    daemon.assert_serving().await;
}

#[tokio::test]
async fn an_oversized_length_prefix_closes_the_connection() {
    let daemon = Daemon::start();
    // Before the handshake: 4 GiB claimed, nothing sent.
    let mut stream = UnixStream::connect(daemon.socket()).await.expect("connect");
    assert_closed_after(&mut stream, &u32::MAX.to_be_bytes()).await;

    // After the handshake: one byte over the frame limit.
    let hello = Hello::project(PROJECT.to_owned(), None);
    let (reply, frames) = raw_hello(&daemon.socket(), &hello).await;
    assert!(matches!(reply, HelloReply::Accepted(_)));
    let mut stream = frames.into_inner();
    let limit = securestore_proto::limits::max_frame_len(64 * 1024) as u32;
    assert_closed_after(&mut stream, &(limit + 1).to_be_bytes()).await;
    daemon.assert_serving().await;
}

#[tokio::test]
async fn a_malformed_request_after_the_handshake_closes_that_connection_only() {
    let daemon = Daemon::start();
    let hello = Hello::project(PROJECT.to_owned(), None);
    let (_, frames) = raw_hello(&daemon.socket(), &hello).await;
    let mut stream = frames.into_inner();
    let mut frame = 64u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0xAB; 64]);
    assert_closed_after(&mut stream, &frame).await;
    daemon.assert_serving().await;
}
