//! Tampering with the database: a changed or moved ciphertext is detected, never mistaken for a value.

use securestore_client::SetOptions;
use securestore_e2e::{Daemon, PROJECT, value_of};

fn sealed(db: &rusqlite::Connection, key: &str) -> Vec<u8> {
    db.query_row("SELECT sealed FROM items WHERE key = ?1", [key], |row| {
        row.get(0)
    })
    .expect("read sealed")
}

fn store(db: &rusqlite::Connection, key: &str, sealed: &[u8]) {
    db.execute(
        "UPDATE items SET sealed = ?1 WHERE key = ?2",
        rusqlite::params![sealed, key],
    )
    .expect("write sealed");
}

#[tokio::test]
async fn flipped_and_swapped_ciphertexts_are_reported_by_key_and_service() {
    let mut daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    for key in ["flipped", "swap-a", "swap-b", "intact"] {
        client
            .set_item(key, format!("value of {key}"), SetOptions::default())
            .await
            .expect("set");
    }
    drop(client);
    daemon.stop();

    let db = rusqlite::Connection::open(daemon.data_dir().join("securestore.db")).expect("open db");
    let mut flipped = sealed(&db, "flipped");
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x40;
    store(&db, "flipped", &flipped);
    let (a, b) = (sealed(&db, "swap-a"), sealed(&db, "swap-b"));
    store(&db, "swap-a", &b);
    store(&db, "swap-b", &a);
    drop(db);

    daemon.spawn().expect("restart");
    for key in ["flipped", "swap-a", "swap-b"] {
        let out = daemon
            .cli()
            .args(["--project", PROJECT, "get", key])
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{key}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "cannot decrypt the value for key '{key}' under keychainService 'app'"
            )),
            "{stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "nothing is printed for a tampered item"
        );
    }
    let client = daemon.client(PROJECT).await;
    assert_eq!(
        value_of(&client, "intact", None).await.as_deref(),
        Some("value of intact")
    );
    // Overwriting a damaged item repairs it.
    client
        .set_item("flipped", "fresh", SetOptions::default())
        .await
        .expect("set");
    assert_eq!(
        value_of(&client, "flipped", None).await.as_deref(),
        Some("fresh")
    );
}
