//! The same contract through the real daemon, for every backend that runs here (the default SQLite
//! store, and the Android Keystore backend on an in-process desktop JVM). Adding a backend is one
//! test of one line.

use securestore_client::{
    DeleteOptions, Error, GetOptions, KeychainAccessible, ServiceError, SetOptions,
};
use securestore_e2e::{Daemon, securestored_in, value_of};

fn in_service(service: &str) -> SetOptions {
    SetOptions {
        keychain_service: Some(service.to_owned()),
        ..SetOptions::default()
    }
}

async fn contract_through_daemon(args: &[&str]) {
    let mut daemon = Daemon::start_with(args);
    let a = daemon.client("@conformance/a").await;
    let b = daemon.client("@conformance/b").await;

    assert_eq!(value_of(&a, "token", None).await, None, "missing");
    a.set_item("token", "v1", SetOptions::default())
        .await
        .expect("set");
    a.set_item("token", "v2", SetOptions::default())
        .await
        .expect("overwrite");
    assert_eq!(value_of(&a, "token", None).await.as_deref(), Some("v2"));
    a.delete_item("token", DeleteOptions::default())
        .await
        .expect("delete");
    assert_eq!(value_of(&a, "token", None).await, None);
    a.delete_item("token", DeleteOptions::default())
        .await
        .expect("delete-missing");

    a.set_item("token", "default", SetOptions::default())
        .await
        .expect("set");
    a.set_item("token", "auth", in_service("auth"))
        .await
        .expect("set");
    assert_eq!(
        value_of(&a, "token", Some("auth")).await.as_deref(),
        Some("auth"),
        "services apart"
    );
    assert_eq!(value_of(&b, "token", None).await, None, "projects apart");
    b.set_item("token", "b's", SetOptions::default())
        .await
        .expect("set");
    assert_eq!(
        value_of(&a, "token", None).await.as_deref(),
        Some("default")
    );

    for class in KeychainAccessible::ALL {
        let options = SetOptions {
            keychain_service: None,
            keychain_accessible: class,
        };
        a.set_item("classed", "x", options).await.expect("set");
        let item = a
            .get_item_entry("classed", GetOptions::default())
            .await
            .expect("get")
            .expect("present");
        assert_eq!(item.accessible, class, "the class is stored and returned");
    }
    a.set_item("unicode", "ключ 🔑", SetOptions::default())
        .await
        .expect("set");
    a.set_item("empty", "", SetOptions::default())
        .await
        .expect("set");
    let err = a
        .set_item("big", "x".repeat(64 * 1024 + 1), SetOptions::default())
        .await
        .expect_err("limit");
    assert!(
        matches!(err, Error::Service(ServiceError::ValueTooLarge { .. })),
        "{err:?}"
    );

    drop((a, b));
    daemon.restart();
    let a = daemon.client("@conformance/a").await;
    let b = daemon.client("@conformance/b").await;
    assert_eq!(
        value_of(&a, "token", None).await.as_deref(),
        Some("default"),
        "persisted"
    );
    assert_eq!(
        value_of(&a, "token", Some("auth")).await.as_deref(),
        Some("auth")
    );
    assert_eq!(
        value_of(&a, "unicode", None).await.as_deref(),
        Some("ключ 🔑")
    );
    assert_eq!(value_of(&a, "empty", None).await.as_deref(), Some(""));
    assert_eq!(value_of(&b, "token", None).await.as_deref(), Some("b's"));
}

#[tokio::test]
async fn sqlite_through_the_daemon() {
    contract_through_daemon(&[]).await;
}

#[tokio::test]
async fn android_keystore_on_a_desktop_jvm_through_the_daemon() {
    contract_through_daemon(&["--backend", "android"]).await;
}

#[test]
fn a_backend_not_built_for_this_target_is_a_clear_start_up_error() {
    if cfg!(target_vendor = "apple") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = securestored_in(dir.path())
        .args(["--backend", "apple"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("only on Apple targets"), "{stderr}");
}

/// The Android backend's failure policies, through the daemon: a keystore key that is gone (app
/// reinstalled, data restored) makes its items read as absent and removes them; a changed ciphertext
/// is a clear "cannot decrypt" naming key and service; other items still read.
#[tokio::test]
async fn android_failure_policies_through_the_daemon() {
    let mut daemon = Daemon::start_with(&["--backend", "android"]);
    let client = daemon.client("@fault/a").await;
    client
        .set_item("flipped", "v", SetOptions::default())
        .await
        .expect("set");
    client
        .set_item("intact", "still here", SetOptions::default())
        .await
        .expect("set");
    client
        .set_item("orphan", "key gone", in_service("other"))
        .await
        .expect("set");
    drop(client);
    daemon.stop();

    // Flip one byte of one ciphertext.
    let db =
        rusqlite::Connection::open(daemon.data_dir().join("securestore-android.db")).expect("db");
    let mut sealed: Vec<u8> = db
        .query_row(
            "SELECT sealed FROM items WHERE key = 'flipped'",
            [],
            |row| row.get(0),
        )
        .expect("read");
    let last = sealed.len() - 1;
    sealed[last] ^= 0x01;
    db.execute(
        "UPDATE items SET sealed = ?1 WHERE key = 'flipped'",
        [&sealed],
    )
    .expect("flip");
    drop(db);

    // Delete the keystore key of service "other", as a reinstall would.
    let java_home =
        std::env::var("JAVA_HOME").unwrap_or_else(|_| "/usr/lib/jvm/java-17-openjdk-amd64".into());
    let password = std::fs::read_to_string(daemon.key_file().with_file_name("keystore.password"))
        .expect("password");
    let status = std::process::Command::new(std::path::Path::new(&java_home).join("bin/keytool"))
        .args(["-delete", "-storetype", "PKCS12", "-alias"])
        .arg("securestore/aes/gcm/nopadding:@fault/a:other:keystoreunlockeddevicerequired")
        .arg("-keystore")
        .arg(daemon.data_dir().join("keystore.p12"))
        .args(["-storepass", password.trim()])
        .status()
        .expect("keytool");
    assert!(status.success(), "keytool deleted the key");

    daemon.spawn().expect("restart");
    let out = daemon
        .cli()
        .args(["--project", "@fault/a", "get", "flipped"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("cannot decrypt the value for key 'flipped' under keychainService 'app'"),
        "{stderr}"
    );

    let client = daemon.client("@fault/a").await;
    assert_eq!(
        value_of(&client, "orphan", Some("other")).await,
        None,
        "a missing key reads as absent"
    );
    assert_eq!(
        value_of(&client, "intact", None).await.as_deref(),
        Some("still here")
    );
    // A running daemon holds its database exclusively (SQLite's `unix-excl`): read it stopped.
    daemon.stop();
    let db =
        rusqlite::Connection::open(daemon.data_dir().join("securestore-android.db")).expect("db");
    let left: i64 = db
        .query_row(
            "SELECT count(*) FROM items WHERE key = 'orphan'",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(left, 0, "the entry whose key is gone was removed");
    assert!(
        daemon.log().contains("orphan"),
        "the removal is logged with a warning naming the key"
    );
}
