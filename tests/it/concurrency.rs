//! Many client processes hammering the same keys: every write is applied whole, none is lost.

use std::collections::HashMap;
use std::process::Command;

use securestore_client::GetOptions;
use securestore_e2e::{Daemon, PROJECT, bin, parse_whole_value, value_of};

const WRITERS: u32 = 8;
const ROUNDS: u32 = 15;
const KEYS: u32 = 4;

#[tokio::test]
async fn eight_processes_on_shared_keys_leave_whole_values() {
    let daemon = Daemon::start();
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            Command::new(bin("securestore-hammer"))
                .arg(daemon.socket())
                .args([
                    PROJECT,
                    &writer.to_string(),
                    &ROUNDS.to_string(),
                    &KEYS.to_string(),
                ])
                .spawn()
                .expect("spawn writer")
        })
        .collect();
    for mut writer in writers {
        let status = writer.wait().expect("wait");
        assert!(
            status.success(),
            "a writer saw a torn value or failed: {status}\n{}",
            daemon.log()
        );
    }

    let client = daemon.client(PROJECT).await;
    let mut last_writers = HashMap::new();
    for k in 0..KEYS {
        let key = format!("shared-{k}");
        let found = client
            .get_item(&key, GetOptions::default())
            .await
            .expect("get")
            .expect("present");
        let (writer, round) =
            parse_whole_value(found.expose_secret()).expect("a whole value some writer wrote");
        // Each writer's last set of a key is its final round; whoever wrote last, it was that round.
        assert_eq!(
            round,
            ROUNDS - 1,
            "{key}: the final value is some writer's last write"
        );
        last_writers.insert(key, writer);
    }
    assert_eq!(last_writers.len() as u32, KEYS);
}

#[tokio::test]
async fn sixty_four_concurrent_writers_are_all_committed() {
    let daemon = Daemon::start();
    let socket = daemon.socket();
    let writers = (0..64).map(|w| {
        let socket = socket.clone();
        tokio::spawn(async move {
            let client = securestore_client::Client::connect(&socket, PROJECT)
                .await
                .expect("connect");
            for i in 0..10 {
                client
                    .set_item(
                        &format!("w{w}-k{i}"),
                        format!("w{w}-v{i}"),
                        securestore_client::SetOptions::default(),
                    )
                    .await
                    .expect("set");
            }
        })
    });
    for writer in futures::future::join_all(writers).await {
        writer.expect("writer");
    }
    let client = daemon.client(PROJECT).await;
    for w in 0..64 {
        for i in 0..10 {
            assert_eq!(
                value_of(&client, &format!("w{w}-k{i}"), None).await,
                Some(format!("w{w}-v{i}"))
            );
        }
    }
    let mut daemon = daemon;
    daemon.stop();
    let log = daemon.log();
    let totals = log
        .lines()
        .find(|l| l.contains("group-commit batches"))
        .expect("totals logged");
    assert!(totals.contains("writes=640"), "{totals}");
}
