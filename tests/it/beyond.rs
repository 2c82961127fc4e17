//! Beyond Expo, through the real daemon: contains, listing with paging, clear, compare-and-set and
//! all-or-nothing batches.

use securestore_client::{
    BatchOp, DeleteOptions, Error, GetOptions, SecretString, ServiceError, SetOptions,
};
use securestore_e2e::{Daemon, PROJECT, raw_client, value_of};
use securestore_proto::limits::{MAX_BATCH_OPS, MAX_LIST_NAMES};
use securestore_proto::tarpc::context;

fn in_service(service: &str) -> SetOptions {
    SetOptions {
        keychain_service: Some(service.to_owned()),
        ..SetOptions::default()
    }
}

fn set(key: &str, value: &str) -> BatchOp {
    BatchOp::Set {
        key: key.to_owned(),
        value: SecretString::from(value),
        options: SetOptions::default(),
    }
}

fn set_if(key: &str, expected: Option<&str>, value: &str) -> BatchOp {
    BatchOp::SetIf {
        key: key.to_owned(),
        expected: expected.map(SecretString::from),
        value: SecretString::from(value),
        options: SetOptions::default(),
    }
}

#[tokio::test]
async fn contains_list_and_clear_stay_in_their_project_and_service() {
    let daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    let other = daemon.client("@tests/other").await;
    for key in ["b", "a", "C"] {
        client
            .set_item(key, "v", in_service("s1"))
            .await
            .expect("set");
    }
    client
        .set_item("x", "v", SetOptions::default())
        .await
        .expect("set");
    other
        .set_item("theirs", "v", in_service("s1"))
        .await
        .expect("set");

    assert!(client.contains("a", Some("s1")).await.expect("contains"));
    assert!(!client.contains("a", None).await.expect("contains"));
    assert!(!other.contains("a", Some("s1")).await.expect("contains"));
    assert_eq!(
        client.list_keys(Some("s1")).await.expect("list"),
        ["C", "a", "b"]
    );
    assert_eq!(other.list_keys(Some("s1")).await.expect("list"), ["theirs"]);
    assert_eq!(
        client.list_services().await.expect("services"),
        ["app", "s1"]
    );
    assert!(matches!(
        client.contains("bad key", None).await,
        Err(Error::Service(ServiceError::InvalidKey))
    ));

    assert_eq!(client.clear(Some("s1")).await.expect("clear"), 3);
    assert!(client.list_keys(Some("s1")).await.expect("list").is_empty());
    assert_eq!(other.list_keys(Some("s1")).await.expect("list"), ["theirs"]);
    assert_eq!(client.clear_all().await.expect("clear all"), 1);
    assert!(client.list_services().await.expect("services").is_empty());
    assert_eq!(
        value_of(&other, "theirs", Some("s1")).await.as_deref(),
        Some("v")
    );

    // A clear is durable like a delete: gone after a restart too.
    let mut daemon = daemon;
    drop((client, other));
    daemon.restart();
    let client = daemon.client(PROJECT).await;
    assert!(client.list_services().await.expect("services").is_empty());
}

#[tokio::test]
async fn listing_pages_are_bounded_and_the_client_follows_them() {
    // A small value limit makes pages stop on bytes before they reach MAX_LIST_NAMES.
    let daemon = Daemon::start_with(&["--max-value-bytes", "1024"]);
    let client = daemon.client(PROJECT).await;
    let keys: Vec<String> = (0..300)
        .map(|i| format!("key-{i:04}-{}", "x".repeat(40)))
        .collect();
    for chunk in keys.chunks(16) {
        let ops = chunk.iter().map(|k| set(k, "")).collect();
        client.write_batch(ops).await.expect("batch");
    }
    let first = client.list_keys_page(None, None).await.expect("page");
    assert!(first.more, "300 long keys do not fit one 1 KiB page");
    assert!(!first.names.is_empty() && first.names.len() < 300);
    println!("a page held {} of 300 names of 49 bytes", first.names.len());
    assert!(first.names.len() <= MAX_LIST_NAMES);
    let all = client.list_keys(None).await.expect("all pages");
    assert_eq!(all, keys, "every key once, sorted, across pages");
}

#[tokio::test]
async fn set_if_and_delete_if_apply_only_on_the_expected_value() {
    let daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    let opts = SetOptions::default;
    client
        .set_if("k", None, "1", opts())
        .await
        .expect("set if absent");
    let conflict = client.set_if("k", None, "x", opts()).await;
    assert!(
        matches!(conflict, Err(Error::Service(ServiceError::Conflict))),
        "{conflict:?}"
    );
    let wrong = Some(SecretString::from("0"));
    assert!(matches!(
        client.set_if("k", wrong.clone(), "x", opts()).await,
        Err(Error::Service(ServiceError::Conflict))
    ));
    assert!(matches!(
        client.delete_if("k", wrong, DeleteOptions::default()).await,
        Err(Error::Service(ServiceError::Conflict))
    ));
    assert_eq!(value_of(&client, "k", None).await.as_deref(), Some("1"));
    client
        .set_if("k", Some(SecretString::from("1")), "2", opts())
        .await
        .expect("set if equal");
    client
        .delete_if("k", Some(SecretString::from("2")), DeleteOptions::default())
        .await
        .expect("delete if equal");
    assert_eq!(value_of(&client, "k", None).await, None);

    // The conflict never carries the current value.
    client
        .set_item("k", "the-secret", opts())
        .await
        .expect("set");
    let err = client
        .set_if("k", None, "x", opts())
        .await
        .expect_err("conflict");
    assert!(!format!("{err:?} {err}").contains("the-secret"));
}

#[tokio::test]
async fn a_batch_is_all_or_nothing_and_names_the_first_failing_operation() {
    let daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    client
        .write_batch(vec![
            set("a", "1"),
            set_if("b", None, "1"),
            set_if("a", Some("1"), "2"),
        ])
        .await
        .expect("batch");
    assert_eq!(value_of(&client, "a", None).await.as_deref(), Some("2"));

    let failed = client
        .write_batch(vec![
            set("a", "3"),
            BatchOp::Delete {
                key: "b".to_owned(),
                options: DeleteOptions::default(),
            },
            set_if("b", Some("1"), "x"),
        ])
        .await;
    match failed {
        Err(Error::Service(ServiceError::InBatch { index: 2, error })) => {
            assert_eq!(*error, ServiceError::Conflict);
        }
        other => panic!("expected the third to fail: {other:?}"),
    }
    assert_eq!(
        value_of(&client, "a", None).await.as_deref(),
        Some("2"),
        "nothing applied"
    );
    assert_eq!(
        value_of(&client, "b", None).await.as_deref(),
        Some("1"),
        "nothing applied"
    );

    // Invalid items are named by index, by the daemon too (a raw client skips the client's checks).
    let raw = raw_client(&daemon.socket(), PROJECT).await.expect("raw");
    let answer = raw
        .write_batch(context::current(), vec![set("a", "4"), set("bad key", "v")])
        .await
        .expect("answer");
    assert!(
        matches!(&answer, Err(ServiceError::InBatch { index: 1, error }) if **error == ServiceError::InvalidKey),
        "{answer:?}"
    );
    let too_many: Vec<BatchOp> = (0..=MAX_BATCH_OPS)
        .map(|i| set(&format!("k{i}"), ""))
        .collect();
    let answer = raw
        .write_batch(context::current(), too_many.clone())
        .await
        .expect("answer");
    assert!(
        matches!(answer, Err(ServiceError::TooLarge { .. })),
        "{answer:?}"
    );
    assert!(matches!(
        client.write_batch(too_many).await,
        Err(Error::Service(ServiceError::TooLarge { .. }))
    ));
    assert_eq!(value_of(&client, "a", None).await.as_deref(), Some("2"));
    assert!(
        client.write_batch(Vec::new()).await.is_ok(),
        "an empty batch is nothing"
    );
    let got = client
        .get_item("a", GetOptions::default())
        .await
        .expect("get");
    assert_eq!(got.as_ref().map(SecretString::expose_secret), Some("2"));
}

#[tokio::test]
async fn eight_processes_incrementing_with_set_if_lose_no_update() {
    let daemon = Daemon::start_logging(&[], "info");
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            std::process::Command::new(securestore_e2e::bin("securestore-counter-client"))
                .arg(daemon.socket())
                .args([PROJECT, "counter", "250"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .expect("spawn a counter client")
        })
        .collect();
    let mut conflicts = 0u64;
    for child in clients {
        let output = child.wait_with_output().expect("a counter client");
        assert!(output.status.success(), "{}", output.status);
        let text = String::from_utf8(output.stdout).expect("utf-8");
        conflicts += text
            .trim()
            .strip_prefix("conflicts=")
            .and_then(|n| n.parse::<u64>().ok())
            .expect("a conflict count");
    }
    let client = daemon.client(PROJECT).await;
    let total = value_of(&client, "counter", None).await;
    println!(
        "8 × 250 increments with set_if: {conflicts} conflicts retried, {:?}",
        started.elapsed()
    );
    assert_eq!(total.as_deref(), Some("2000"), "no update was lost");
}

/// A batch being written when the daemon is SIGKILLed is, after the restart, wholly there or wholly
/// absent: every batch writes round `r` into all of its keys, so the keys must agree.
#[tokio::test]
async fn a_batch_cut_by_sigkill_is_applied_wholly_or_not_at_all() {
    const KEYS: usize = 60;
    let mut daemon = Daemon::start_logging(&[], "info");
    let mut rounds_seen = std::collections::BTreeSet::new();
    for kill in 0..12u64 {
        let writer = {
            let client = daemon.client(PROJECT).await;
            tokio::spawn(async move {
                for round in 0u64.. {
                    let value = format!("{kill}-{round}:{}", "v".repeat(1000));
                    let ops = (0..KEYS).map(|k| set(&format!("b{k}"), &value)).collect();
                    if client.write_batch(ops).await.is_err() {
                        return round;
                    }
                }
                unreachable!()
            })
        };
        // Vary the moment of the kill across rounds (no timing is asserted).
        tokio::time::sleep(std::time::Duration::from_millis(40 + kill * 23)).await;
        daemon.kill();
        let batches = writer.await.expect("writer");
        daemon.spawn().expect("restart after SIGKILL");
        let client = daemon.client(PROJECT).await;
        let mut values = std::collections::BTreeSet::new();
        for k in 0..KEYS {
            values.insert(value_of(&client, &format!("b{k}"), None).await);
        }
        assert_eq!(
            values.len(),
            1,
            "kill {kill}: the keys disagree, a batch was torn: {:?}",
            values
                .iter()
                .map(|v| v
                    .as_deref()
                    .map(|v| v.split(':').next().unwrap_or("").to_owned()))
                .collect::<Vec<_>>()
        );
        let value = values.pop_first().flatten();
        let stored = value
            .as_deref()
            .and_then(|v| v.split(':').next())
            .map(str::to_owned);
        // Acknowledged batches are durable: the store holds the last acknowledged one, or the one
        // cut by the kill (its outcome was unknown).
        if batches > 0 {
            let acknowledged = format!("{kill}-{}", batches - 1);
            let cut = format!("{kill}-{batches}");
            assert!(
                stored.as_deref() == Some(acknowledged.as_str())
                    || stored.as_deref() == Some(cut.as_str()),
                "kill {kill}: {batches} batches acknowledged, the store holds {stored:?}"
            );
        }
        println!(
            "kill {kill}: {batches} batches acknowledged before it; the store holds {stored:?}"
        );
        rounds_seen.insert(stored);
    }
    assert!(rounds_seen.len() > 1, "the store moved on between kills");
}

#[tokio::test]
async fn a_watcher_sees_durable_changes_in_commit_order_names_only_and_only_its_project() {
    use securestore_client::{ChangeKind, WatchFilter};
    use std::time::Duration;
    let daemon = Daemon::start();
    let watcher_client = daemon.client(PROJECT).await;
    let writer = daemon.client(PROJECT).await;
    let stranger = daemon.client("@tests/other").await;
    let all = watcher_client
        .watch(WatchFilter::default())
        .await
        .expect("watch");
    let only_s = watcher_client
        .watch(WatchFilter {
            service: Some("s".to_owned()),
            key: None,
        })
        .await
        .expect("watch");
    let nothing = watcher_client
        .poll_events(all, Duration::from_millis(50))
        .await
        .expect("poll");
    assert!(nothing.events.is_empty() && nothing.lagged.is_none());

    writer
        .set_item("a", "secret-1", SetOptions::default())
        .await
        .expect("set");
    stranger
        .set_item("a", "theirs", SetOptions::default())
        .await
        .expect("set");
    writer
        .set_item("k", "secret-2", in_service("s"))
        .await
        .expect("set");
    let conflict = writer.set_if("a", None, "x", SetOptions::default()).await;
    assert!(
        conflict.is_err(),
        "a conflict changes nothing and makes no event"
    );
    writer
        .write_batch(vec![set("b1", "v"), set("b2", "v")])
        .await
        .expect("batch");
    writer
        .delete_item("a", DeleteOptions::default())
        .await
        .expect("delete");
    assert_eq!(writer.clear(Some("s")).await.expect("clear"), 1);

    let mut events = Vec::new();
    while events.len() < 6 {
        let got = watcher_client
            .poll_events(all, Duration::from_secs(5))
            .await
            .expect("poll");
        assert!(got.lagged.is_none());
        assert!(!got.events.is_empty(), "the events come: {events:?}");
        events.extend(got.events);
    }
    let seen: Vec<(Option<&str>, Option<&str>, ChangeKind)> = events
        .iter()
        .map(|e| (e.service.as_deref(), e.key.as_deref(), e.kind))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("app"), Some("a"), ChangeKind::Set),
            (Some("s"), Some("k"), ChangeKind::Set),
            (Some("app"), Some("b1"), ChangeKind::Set),
            (Some("app"), Some("b2"), ChangeKind::Set),
            (Some("app"), Some("a"), ChangeKind::Deleted),
            (Some("s"), None, ChangeKind::Cleared),
        ],
        "in commit order, not the other project's"
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(!format!("{events:?}").contains("secret"), "never values");
    let in_s = watcher_client
        .poll_events(only_s, Duration::from_secs(5))
        .await
        .expect("poll");
    let kinds: Vec<ChangeKind> = in_s.events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [ChangeKind::Set, ChangeKind::Cleared],
        "only service s"
    );
    watcher_client.unwatch(only_s).await.expect("unwatch");
    assert!(
        watcher_client
            .poll_events(only_s, Duration::ZERO)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_watcher_that_falls_behind_is_told_how_many_events_it_missed() {
    use securestore_client::WatchFilter;
    use securestore_proto::limits::MAX_WATCH_QUEUE;
    use std::time::Duration;
    let daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    let watcher = client.watch(WatchFilter::default()).await.expect("watch");
    let rounds = MAX_WATCH_QUEUE / MAX_BATCH_OPS + 1;
    for round in 0..rounds {
        let ops = (0..MAX_BATCH_OPS)
            .map(|i| set(&format!("k{round}-{i}"), ""))
            .collect();
        client.write_batch(ops).await.expect("batch");
    }
    let written = (rounds * MAX_BATCH_OPS) as u64;
    let mut missed = 0;
    let mut received = 0u64;
    loop {
        let got = client
            .poll_events(watcher, Duration::from_millis(200))
            .await
            .expect("poll");
        if got.events.is_empty() && got.lagged.is_none() {
            break;
        }
        missed += got.lagged.map_or(0, |l| l.missed);
        received += got.events.len() as u64;
    }
    println!("{written} events: {received} received, {missed} missed");
    assert_eq!(
        missed,
        written - MAX_WATCH_QUEUE as u64,
        "the queue is bounded and says so"
    );
    assert_eq!(
        received + missed,
        written,
        "every event is received or counted"
    );
}
