//! Protocol evolution: an old (version 1) client keeps working against this daemon, and this client
//! facing an old daemon refuses the new calls clearly instead of sending them.
//!
//! The version 1 protocol is kept here as fixtures: the hello as hand-encoded bytes, and a copy of
//! the version 1 request and response enums exactly as tarpc generated them from the three-call
//! service (bincode numbers variants by position, so the copy must match it variant for variant).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use securestore_client::{ConnectOptions, Error};
use securestore_e2e::{Daemon, PROJECT, value_of};
use securestore_proto::codec::{self, Codec};
use securestore_proto::handshake::{self, Accepted, Hello, HelloReply, PROTOCOL_VERSION};
use securestore_proto::limits::max_frame_len;
use securestore_proto::tarpc::{self, ClientMessage, Response};
use securestore_proto::{DeleteOptions, GetOptions, Item, SecretString, ServiceError, SetOptions};
use serde::{Deserialize, Serialize};

/// `Hello { protocol_version: 1, purpose: Project { project: "@tests/app", token: None } }` as a
/// version 1 client encodes it (bincode, varint): the version, the `Project` variant index, the
/// id's length and bytes, `None`.
const V1_HELLO: &[u8] = b"\x01\x00\x0a@tests/app\x00";

/// The version 1 requests, as tarpc generated them from Expo's three calls.
#[derive(Debug, Serialize, Deserialize)]
#[allow(clippy::enum_variant_names)] // The names are tarpc's, kept as they were.
enum V1Request {
    SetItem {
        key: String,
        value: SecretString,
        options: SetOptions,
    },
    GetItem {
        key: String,
        options: GetOptions,
    },
    DeleteItem {
        key: String,
        options: DeleteOptions,
    },
}

impl tarpc::RequestName for V1Request {
    fn name(&self) -> &str {
        "v1"
    }
}

/// The version 1 responses.
#[derive(Debug, Serialize, Deserialize)]
#[allow(clippy::enum_variant_names)]
enum V1Response {
    SetItem(Result<(), ServiceError>),
    GetItem(Result<Option<Item>, ServiceError>),
    DeleteItem(Result<(), ServiceError>),
}

#[test]
fn the_v1_hello_fixture_is_what_the_hello_type_encodes_for_version_1() {
    let hello = Hello {
        protocol_version: 1,
        ..Hello::project(PROJECT, None)
    };
    assert_eq!(codec::encode(&hello, 4096).expect("encode"), V1_HELLO);
}

#[tokio::test]
async fn an_old_client_keeps_working_against_the_new_daemon() {
    let daemon = Daemon::start();
    let stream = tokio::net::UnixStream::connect(daemon.socket())
        .await
        .expect("connect");
    let mut frames = handshake::frames(stream);
    frames
        .send(bytes_of(V1_HELLO))
        .await
        .expect("send the v1 hello");
    let reply: HelloReply = handshake::recv(&mut frames).await.expect("reply");
    let HelloReply::Accepted(accepted) = reply else {
        panic!("a v1 hello must be accepted: {reply:?}");
    };
    assert_eq!(
        accepted.protocol_version, 1,
        "the daemon speaks the client's older version"
    );
    let limit = max_frame_len(accepted.max_value_bytes);
    frames.codec_mut().set_max_frame_length(limit);
    let transport = tarpc::serde_transport::new(
        frames,
        Codec::<Response<V1Response>, ClientMessage<V1Request>>::new(limit),
    );
    let v1 = tarpc::client::new(tarpc::client::Config::default(), transport).spawn();

    let set = V1Request::SetItem {
        key: "old".to_owned(),
        value: SecretString::from("from a v1 client"),
        options: SetOptions::default(),
    };
    let answer = v1.call(tarpc::context::current(), set).await.expect("set");
    assert!(matches!(answer, V1Response::SetItem(Ok(()))), "{answer:?}");
    let get = V1Request::GetItem {
        key: "old".to_owned(),
        options: GetOptions::default(),
    };
    match v1.call(tarpc::context::current(), get).await.expect("get") {
        V1Response::GetItem(Ok(Some(item))) => {
            assert_eq!(item.value.expose_secret(), "from a v1 client");
        }
        other => panic!("unexpected answer: {other:?}"),
    }
    let bad = V1Request::GetItem {
        key: "bad key".to_owned(),
        options: GetOptions::default(),
    };
    let answer = v1.call(tarpc::context::current(), bad).await.expect("get");
    assert!(
        matches!(answer, V1Response::GetItem(Err(ServiceError::InvalidKey))),
        "v1 errors still decode: {answer:?}"
    );
    let delete = V1Request::DeleteItem {
        key: "old".to_owned(),
        options: DeleteOptions::default(),
    };
    let answer = v1
        .call(tarpc::context::current(), delete)
        .await
        .expect("delete");
    assert!(
        matches!(answer, V1Response::DeleteItem(Ok(()))),
        "{answer:?}"
    );

    // What the v1 client did is what a v2 client sees.
    let client = daemon.client(PROJECT).await;
    assert_eq!(client.protocol_version(), PROTOCOL_VERSION);
    assert_eq!(value_of(&client, "old", None).await, None);
}

#[tokio::test]
async fn a_newer_client_is_served_in_the_daemons_version() {
    let daemon = Daemon::start();
    let hello = Hello {
        protocol_version: PROTOCOL_VERSION + 7,
        ..Hello::project(PROJECT, None)
    };
    let (reply, _) = securestore_e2e::raw_hello(&daemon.socket(), &hello).await;
    assert!(
        matches!(reply, HelloReply::Accepted(Accepted { protocol_version, .. }) if protocol_version == PROTOCOL_VERSION),
        "{reply:?}"
    );
}

/// A stand-in for a version 1 daemon: it accepts one connection in version 1, then answers each
/// request it can decode as a version 1 request (a get is answered "absent"), and reports every
/// request it received.
async fn old_daemon(
    listener: tokio::net::UnixListener,
    seen: tokio::sync::mpsc::UnboundedSender<String>,
) {
    let (stream, _) = listener.accept().await.expect("accept");
    let mut frames = handshake::frames(stream);
    let hello: Hello = handshake::recv(&mut frames).await.expect("hello");
    assert!(hello.protocol_version >= 1);
    let accepted = Accepted {
        protocol_version: 1,
        max_value_bytes: 64 * 1024,
    };
    handshake::send(&mut frames, &HelloReply::Accepted(accepted))
        .await
        .expect("accept");
    let limit = max_frame_len(accepted.max_value_bytes);
    frames.codec_mut().set_max_frame_length(limit);
    while let Some(Ok(frame)) = frames.next().await {
        match codec::decode::<ClientMessage<V1Request>>(&frame, limit) {
            Ok(ClientMessage::Request(request)) => {
                let _ = seen.send(format!("{:?}", request.message));
                let message = match request.message {
                    V1Request::GetItem { .. } => V1Response::GetItem(Ok(None)),
                    V1Request::SetItem { .. } => V1Response::SetItem(Ok(())),
                    V1Request::DeleteItem { .. } => V1Response::DeleteItem(Ok(())),
                };
                let response = Response {
                    request_id: request.id,
                    message: Ok(message),
                };
                let bytes = codec::encode(&response, limit).expect("encode");
                frames.send(bytes_of(&bytes)).await.expect("answer");
            }
            Ok(_) => {}
            Err(_) => {
                let _ = seen.send("a request a v1 daemon cannot decode".to_owned());
            }
        }
    }
}

#[tokio::test]
async fn a_new_client_refuses_new_calls_to_an_old_daemon_without_sending_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket = dir.path().join("old.sock");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
    let (seen, mut requests) = tokio::sync::mpsc::unbounded_channel();
    let old = tokio::spawn(old_daemon(listener, seen));
    let options = ConnectOptions {
        timeout: Duration::from_secs(10),
        ..ConnectOptions::default()
    };
    let client = securestore_client::Client::connect_with(&socket, PROJECT, options)
        .await
        .expect("connect to the old daemon");
    assert_eq!(client.protocol_version(), 1);

    // Expo's calls still work.
    assert!(
        client
            .get_item("k", GetOptions::default())
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        requests.recv().await.expect("seen").starts_with("GetItem"),
        "the old daemon decoded the get"
    );

    // Every new call is refused here, in words, and never sent.
    let expected = SecretString::from("0");
    let outcomes: Vec<(&str, Result<(), Error>)> = vec![
        ("contains", client.contains("k", None).await.map(drop)),
        ("list_keys", client.list_keys(None).await.map(drop)),
        ("list_services", client.list_services().await.map(drop)),
        ("clear", client.clear(None).await.map(drop)),
        ("clear_all", client.clear_all().await.map(drop)),
        (
            "set_if",
            client
                .set_if("k", Some(expected.clone()), "1", SetOptions::default())
                .await,
        ),
        (
            "delete_if",
            client
                .delete_if("k", Some(expected), DeleteOptions::default())
                .await,
        ),
        ("write_batch", client.write_batch(Vec::new()).await),
        (
            "watch",
            client
                .watch(securestore_proto::WatchFilter::default())
                .await
                .map(drop),
        ),
        (
            "poll_events",
            client
                .poll_events(1, Duration::from_millis(10))
                .await
                .map(drop),
        ),
        ("unwatch", client.unwatch(1).await),
    ];
    for (call, outcome) in outcomes {
        let err = outcome.expect_err("refused");
        assert!(matches!(err, Error::Unsupported { .. }), "{call}: {err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("the daemon does not support {call}; upgrade it")),
            "{err}"
        );
    }
    drop(client);
    old.await
        .expect("the old daemon ends when the client leaves");
    let mut after = Vec::new();
    while let Ok(request) = requests.try_recv() {
        after.push(request);
    }
    assert!(
        after.is_empty(),
        "nothing new reached the old daemon: {after:?}"
    );
}

fn bytes_of(bytes: &[u8]) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(bytes)
}
