//! The daemon checks every name itself: a raw client sends what the real client would refuse.

use securestore_e2e::{Daemon, PROJECT, raw_client, raw_hello, value_of};
use securestore_proto::handshake::{Hello, HelloReply, PROTOCOL_VERSION};
use securestore_proto::tarpc::context;
use securestore_proto::{DeleteOptions, GetOptions, SecretString, ServiceError, SetOptions};

const BAD_KEYS: &[&str] = &[
    "",
    " ",
    "a b",
    "a/b",
    "a:b",
    "ключ",
    "tab\t",
    "nul\0",
    "semi;colon",
];

#[tokio::test]
async fn every_invalid_key_is_refused_and_the_daemon_keeps_serving() {
    let daemon = Daemon::start();
    let raw = raw_client(&daemon.socket(), PROJECT).await.expect("bound");
    for key in BAD_KEYS {
        let set = raw
            .set_item(
                context::current(),
                (*key).to_owned(),
                SecretString::from("v"),
                SetOptions::default(),
            )
            .await
            .expect("answered");
        assert_eq!(set, Err(ServiceError::InvalidKey), "set {key:?}");
        let got = raw
            .get_item(context::current(), (*key).to_owned(), GetOptions::default())
            .await
            .expect("answered");
        assert!(matches!(got, Err(ServiceError::InvalidKey)), "get {key:?}");
        let deleted = raw
            .delete_item(
                context::current(),
                (*key).to_owned(),
                DeleteOptions::default(),
            )
            .await
            .expect("answered");
        assert_eq!(deleted, Err(ServiceError::InvalidKey), "delete {key:?}");
    }
    let long = "k".repeat(1025);
    let got = raw
        .get_item(context::current(), long, GetOptions::default())
        .await
        .expect("answered");
    assert!(
        matches!(got, Err(ServiceError::KeyTooLong { limit: 1024, .. })),
        "{got:?}"
    );

    // The same connection, and a new one, still work.
    let ok = raw
        .set_item(
            context::current(),
            "good".to_owned(),
            SecretString::from("v"),
            SetOptions::default(),
        )
        .await
        .expect("answered");
    assert_eq!(ok, Ok(()));
    let client = daemon.client(PROJECT).await;
    assert_eq!(value_of(&client, "good", None).await.as_deref(), Some("v"));
}

#[tokio::test]
async fn invalid_services_and_oversized_values_are_refused_by_the_daemon() {
    let daemon = Daemon::start_with(&["--max-value-bytes", "8"]);
    let raw = raw_client(&daemon.socket(), PROJECT).await.expect("bound");
    for service in ["", "line\nbreak", &"s".repeat(256)] {
        let options = SetOptions {
            keychain_service: Some(service.to_owned()),
            ..SetOptions::default()
        };
        let answer = raw
            .set_item(
                context::current(),
                "k".to_owned(),
                SecretString::from("v"),
                options,
            )
            .await
            .expect("answered");
        assert!(
            matches!(answer, Err(ServiceError::InvalidService { .. })),
            "{service:?}: {answer:?}"
        );
    }
    let answer = raw
        .set_item(
            context::current(),
            "k".to_owned(),
            SecretString::from("123456789"),
            SetOptions::default(),
        )
        .await
        .expect("answered");
    assert_eq!(
        answer,
        Err(ServiceError::ValueTooLarge { size: 9, limit: 8 })
    );
}

#[tokio::test]
async fn every_invalid_project_id_is_refused_in_the_handshake() {
    let daemon = Daemon::start();
    let too_long = "p".repeat(256);
    for project in [
        "",
        "has space",
        "colon:",
        "back\\slash",
        "ünïcode",
        too_long.as_str(),
    ] {
        let hello = Hello::project(project.to_owned(), None);
        let (reply, _) = raw_hello(&daemon.socket(), &hello).await;
        assert!(
            matches!(
                reply,
                HelloReply::Rejected(ServiceError::InvalidProject { .. })
            ),
            "{project:?}: {reply:?}"
        );
    }
    for project in ["@owner/slug", "com.example.app", "a", &"p".repeat(255)] {
        assert!(
            raw_client(&daemon.socket(), project).await.is_ok(),
            "{project:?} is valid"
        );
    }
}

#[tokio::test]
async fn another_protocol_version_is_refused() {
    let daemon = Daemon::start();
    let hello = Hello {
        protocol_version: 0,
        ..Hello::project(PROJECT.to_owned(), None)
    };
    let (reply, _) = raw_hello(&daemon.socket(), &hello).await;
    let expected = ServiceError::UnsupportedVersion {
        client: 0,
        daemon: PROTOCOL_VERSION,
    };
    assert!(
        matches!(reply, HelloReply::Rejected(ref e) if *e == expected),
        "{reply:?}"
    );
}
