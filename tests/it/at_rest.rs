//! No value is ever in clear: not in the database, its WAL, the key folder, or the daemon's log;
//! and neither the master key nor an access token reaches the log.

use std::path::Path;

use securestore_client::{ConnectOptions, GetOptions, SetOptions};
use securestore_e2e::{Daemon, PROJECT};

const MARKER: &str = "CLEARTEXT-CANARY-4b1d";

fn assert_no_marker_in(dir: &Path, when: &str) -> usize {
    let mut scanned = 0;
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            let bytes = std::fs::read(&path).expect("read");
            assert!(
                !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
                "{} holds a value in clear ({when})",
                path.display()
            );
            scanned += 1;
        }
    }
    scanned
}

#[tokio::test]
async fn files_and_logs_hold_no_value_in_clear() {
    let mut daemon = Daemon::start_logging(&[], "trace");
    // A registered project, so a token crosses the wire and must stay out of the log too.
    let token = securestore_client::admin::add_project(
        daemon.socket(),
        PROJECT,
        &ConnectOptions::default(),
    )
    .await
    .expect("add");
    let options = securestore_client::ConnectOptions {
        token: Some(token.clone()),
        ..Default::default()
    };
    let client = securestore_client::Client::connect_with(daemon.socket(), PROJECT, options)
        .await
        .expect("connect");
    for i in 0..100 {
        let value = format!("{MARKER}-{i}-{}", "x".repeat(i * 10));
        client
            .set_item(&format!("key-{i}"), value, SetOptions::default())
            .await
            .expect("set");
    }
    for i in 0..100 {
        let found = client
            .get_item(&format!("key-{i}"), GetOptions::default())
            .await
            .expect("get");
        assert!(found.expect("present").expose_secret().starts_with(MARKER));
    }
    drop(client);

    assert!(
        daemon.data_dir().join("securestore.db-wal").exists(),
        "the WAL is scanned while live"
    );
    assert!(assert_no_marker_in(&daemon.data_dir(), "running") >= 2);
    assert_no_marker_in(daemon.key_file().parent().expect("key folder"), "running");
    daemon.stop();
    assert!(assert_no_marker_in(&daemon.data_dir(), "stopped") >= 1);

    let log = daemon.log();
    assert!(
        log.contains("key-42"),
        "the trace log names keys, so it really was written: {log}"
    );
    assert!(!log.contains(MARKER), "the trace log holds a value");
    assert!(
        !log.contains(token.expose_secret()),
        "the trace log holds the access token"
    );
    assert!(
        !log.contains(&token.expose_secret()[5..20]),
        "the trace log holds part of the access token"
    );
    let key = std::fs::read(daemon.key_file()).expect("key");
    let key_hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!log.contains(&key_hex), "the log holds the master key");
}
