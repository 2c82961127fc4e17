//! Expo SecureStore's contract through the async and blocking Rust clients.

use securestore_client::{
    DeleteOptions, Error, GetOptions, KeychainAccessible, ServiceError, SetOptions, blocking,
};
use securestore_e2e::{Daemon, PROJECT, value_of};

fn get(service: Option<&str>) -> GetOptions {
    GetOptions {
        keychain_service: service.map(str::to_owned),
    }
}

#[tokio::test]
async fn round_trip_overwrite_missing_delete() {
    let daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;

    assert!(
        client
            .get_item("token", get(None))
            .await
            .expect("get")
            .is_none(),
        "missing → None"
    );
    client
        .set_item("token", "v1", SetOptions::default())
        .await
        .expect("set");
    assert_eq!(
        value_of(&client, "token", None).await.as_deref(),
        Some("v1")
    );

    client
        .set_item("token", "v2", SetOptions::default())
        .await
        .expect("overwrite");
    assert_eq!(
        value_of(&client, "token", None).await.as_deref(),
        Some("v2")
    );

    client
        .delete_item("token", DeleteOptions::default())
        .await
        .expect("delete");
    assert!(
        client
            .get_item("token", get(None))
            .await
            .expect("get")
            .is_none(),
        "deleted"
    );
    client
        .delete_item("token", DeleteOptions::default())
        .await
        .expect("deleting a missing item succeeds");
}

#[tokio::test]
async fn empty_unicode_and_accessibility_round_trip() {
    let daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;

    client
        .set_item("empty", "", SetOptions::default())
        .await
        .expect("set");
    assert_eq!(
        value_of(&client, "empty", None).await.as_deref(),
        Some(""),
        "empty is a value, not absence"
    );

    let text = "пароль 🔑 \"quoted\"\n\ttabbed \u{0} nul";
    client
        .set_item("unicode", text, SetOptions::default())
        .await
        .expect("set");
    assert_eq!(
        value_of(&client, "unicode", None).await.as_deref(),
        Some(text)
    );

    for class in KeychainAccessible::ALL {
        let options = SetOptions {
            keychain_service: None,
            keychain_accessible: class,
        };
        client.set_item("classed", "x", options).await.expect("set");
        let item = client
            .get_item_entry("classed", get(None))
            .await
            .expect("get")
            .expect("present");
        assert_eq!(item.accessible, class);
    }
    let default = SetOptions::default();
    client.set_item("classed", "x", default).await.expect("set");
    let item = client
        .get_item_entry("classed", get(None))
        .await
        .expect("get")
        .expect("present");
    assert_eq!(
        item.accessible,
        KeychainAccessible::WhenUnlocked,
        "the default class"
    );
}

#[tokio::test]
async fn value_size_limit_is_enforced_and_named() {
    let daemon = Daemon::start_with(&["--max-value-bytes", "100"]);
    let client = daemon.client(PROJECT).await;
    assert_eq!(client.max_value_bytes(), 100);

    client
        .set_item("fits", "x".repeat(100), SetOptions::default())
        .await
        .expect("at the limit");
    let err = client
        .set_item("too-big", "x".repeat(101), SetOptions::default())
        .await
        .expect_err("over the limit");
    assert!(
        matches!(
            err,
            Error::Service(ServiceError::ValueTooLarge {
                size: 101,
                limit: 100
            })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("100 bytes"),
        "the message names the limit: {err}"
    );
    assert!(
        client
            .get_item("too-big", get(None))
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test]
async fn default_limit_is_64_kib() {
    let daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    let max = "v".repeat(64 * 1024);
    client
        .set_item("max", max.as_str(), SetOptions::default())
        .await
        .expect("64 KiB fits");
    let found = client
        .get_item("max", get(None))
        .await
        .expect("get")
        .expect("present");
    assert_eq!(found.expose_secret(), max);
    let err = client
        .set_item("over", "v".repeat(64 * 1024 + 1), SetOptions::default())
        .await
        .expect_err("one byte more is refused");
    assert!(
        matches!(err, Error::Service(ServiceError::ValueTooLarge { .. })),
        "{err:?}"
    );
}

#[test]
fn blocking_client_works_the_same() {
    let daemon = Daemon::start();
    let client = blocking::Client::connect(daemon.socket(), PROJECT).expect("connect");
    client
        .set_item("sync", "value", SetOptions::default())
        .expect("set");
    let found = client.get_item("sync", get(None)).expect("get");
    assert_eq!(found.as_ref().map(|v| v.expose_secret()), Some("value"));
    client
        .delete_item("sync", DeleteOptions::default())
        .expect("delete");
    assert!(client.get_item("sync", get(None)).expect("get").is_none());
}

#[tokio::test]
async fn client_checks_names_before_sending() {
    let daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    let err = client
        .set_item("bad key", "v", SetOptions::default())
        .await
        .expect_err("invalid");
    assert!(
        matches!(err, Error::Service(ServiceError::InvalidKey)),
        "{err:?}"
    );
    assert!(!err.is_transport());
    let err = securestore_client::Client::connect(daemon.socket(), "bad project!")
        .await
        .expect_err("invalid project");
    assert!(
        matches!(err, Error::Service(ServiceError::InvalidProject { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn unreachable_daemon_is_a_transport_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = securestore_client::Client::connect(dir.path().join("none.sock"), PROJECT)
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.is_transport());
}

#[test]
fn the_blocking_client_has_the_calls_beyond_expo() {
    let daemon = Daemon::start();
    let client = blocking::Client::connect(daemon.socket(), PROJECT).expect("connect");
    let watcher = client
        .watch(securestore_client::WatchFilter::default())
        .expect("watch");
    client
        .set_if("k", None, "1", SetOptions::default())
        .expect("set if absent");
    assert!(client.contains("k", None).expect("contains"));
    assert_eq!(client.list_keys(None).expect("list"), ["k"]);
    assert_eq!(client.list_services().expect("services"), ["app"]);
    assert!(matches!(
        client.delete_if("k", Some("0".into()), DeleteOptions::default()),
        Err(Error::Service(ServiceError::Conflict))
    ));
    client
        .write_batch(vec![securestore_client::BatchOp::Delete {
            key: "k".to_owned(),
            options: DeleteOptions::default(),
        }])
        .expect("batch");
    client
        .set_item("x", "v", SetOptions::default())
        .expect("set");
    assert_eq!(client.clear(None).expect("clear"), 1);
    assert_eq!(client.clear_all().expect("clear all"), 0);
    let events = client
        .poll_events(watcher, std::time::Duration::from_secs(5))
        .expect("poll");
    assert!(!events.events.is_empty());
    client.unwatch(watcher).expect("unwatch");
}
