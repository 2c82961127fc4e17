//! An app embedding the daemon as a background task in its own process, and the client talking to it.
//! (Having an integration test here also makes `cargo test --workspace` build the `securestore` CLI.)

use securestore_backends::sqlite::{SqliteBackend, SqliteConfig};
use securestore_client::{Client, GetOptions, SetOptions};

#[tokio::test]
async fn an_embedded_daemon_serves_the_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("run/securestored.sock");
    let (listener, guard) = securestore_daemon::socket::bind(&socket).expect("bind");
    let backend = SqliteBackend::open(&SqliteConfig {
        data_dir: dir.path().join("data"),
        key_file: dir.path().join("state/master.key"),
    })
    .expect("open store");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(securestore_daemon::run(
        listener,
        Box::new(backend),
        securestore_daemon::Config::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let client = Client::connect(&socket, "@host/app")
        .await
        .expect("connect");
    client
        .set_item("k", "embedded", SetOptions::default())
        .await
        .expect("set");
    let found = client
        .get_item("k", GetOptions::default())
        .await
        .expect("get");
    assert_eq!(found.as_ref().map(|v| v.expose_secret()), Some("embedded"));

    stop.send(()).expect("daemon running");
    daemon.await.expect("join").expect("clean stop");
    drop(guard);
    assert!(!socket.exists(), "the guard removes the socket");
}

#[test]
fn the_cli_explains_itself() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_securestore"))
        .arg("--help")
        .output()
        .expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Exit status"), "{help}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_securestore"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "no subcommand is a usage error");
}
