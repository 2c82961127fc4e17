//! Nothing acknowledged is lost: writers record every acknowledged write and delete while the daemon
//! is killed with SIGKILL at random moments; after each restart every acknowledged operation must
//! read back exactly (or be superseded by that writer's one operation in flight at the kill).
//!
//! Beside the writers, a churner adds items to other projects and removes those projects, so key
//! deletion (Android) and project removal run under the same kills; the writers' project must lose
//! nothing to them, and no item may be dropped as "key gone".
//!
//! The suite runs 5 rounds per backend; `scripts/crash-loop N [sqlite|android]` runs N
//! (`SECURESTORE_CRASH_ROUNDS`).

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use securestore_client::{Client, ConnectOptions, GetOptions, SetOptions, admin};
use securestore_e2e::{Daemon, bin, crash_value, parse_crash_value};

const PROJECT: &str = "@crash/app";
const WRITERS: u32 = 6;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Set(u64),
    Delete(u64),
}

impl Op {
    fn seq(self) -> u64 {
        match self {
            Op::Set(seq) | Op::Delete(seq) => seq,
        }
    }
}

/// Per key: the last acknowledged operation, and the operation in flight when its writer died.
#[derive(Default)]
struct Ledger {
    acknowledged: HashMap<String, Op>,
    in_flight: HashMap<String, Op>,
    acks: u64,
}

impl Ledger {
    /// Reads one writer's `S`/`A` lines.
    fn record(&mut self, output: &[u8]) {
        let mut sent: Option<(String, Op)> = None;
        for line in output.lines() {
            let line = line.expect("utf-8");
            let parts: Vec<&str> = line.split(' ').collect();
            match parts.as_slice() {
                ["S", seq, kind, key] => {
                    let seq = seq.parse().expect("seq");
                    let op = if *kind == "del" {
                        Op::Delete(seq)
                    } else {
                        Op::Set(seq)
                    };
                    sent = Some(((*key).to_owned(), op));
                }
                ["A", seq] => {
                    let (key, op) = sent.take().expect("an ack follows a send");
                    assert_eq!(op.seq(), seq.parse::<u64>().expect("seq"));
                    self.in_flight.remove(&key);
                    self.acknowledged.insert(key, op);
                    self.acks += 1;
                }
                _ => {} // A line cut short by the kill.
            }
        }
        if let Some((key, op)) = sent {
            self.in_flight.insert(key, op);
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    rounds: u32,
    acknowledged: u64,
    lost: u64,
    corrupt: u64,
}

fn spawn_writer(daemon: &Daemon, writer: u32, seq_start: u64) -> Child {
    Command::new(bin("securestore-crash-writer"))
        .arg(daemon.socket())
        .args([PROJECT, &writer.to_string(), &seq_start.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer")
}

/// Checks every key the ledger knows against the daemon; returns (lost, corrupt).
async fn verify(daemon: &Daemon, ledger: &Ledger) -> (u64, u64) {
    let client = daemon.client(PROJECT).await;
    let (mut lost, mut corrupt) = (0, 0);
    for (key, acknowledged) in &ledger.acknowledged {
        let writer: u32 = key[1..key.find('-').expect("w<N>-")]
            .parse()
            .expect("writer");
        let found = client
            .get_item(key, GetOptions::default())
            .await
            .expect("get");
        let in_flight = ledger.in_flight.get(key).copied();
        let ok = match (found.as_ref().map(|v| v.expose_secret()), *acknowledged) {
            (Some(value), _) if parse_crash_value(value).is_none() => {
                corrupt += 1;
                eprintln!("corrupt value under {key}");
                continue;
            }
            (Some(value), Op::Set(seq)) => {
                value == crash_value(writer, seq)
                    || in_flight.is_some_and(|op| value == crash_value(writer, op.seq()))
            }
            (Some(value), Op::Delete(_)) => {
                in_flight.is_some_and(|op| value == crash_value(writer, op.seq()))
            }
            (None, Op::Delete(_)) => true,
            (None, Op::Set(_)) => matches!(in_flight, Some(Op::Delete(_))),
        };
        if !ok {
            lost += 1;
            eprintln!(
                "lost: {key} acknowledged {acknowledged:?}, in flight {in_flight:?}, found {:?}",
                found.map(|v| v.expose_secret().to_owned())
            );
        }
    }
    (lost, corrupt)
}

/// Until `stop`, puts items in two services of a fresh project and removes it, over and over.
/// Returns how many removals were answered.
async fn churn(socket: std::path::PathBuf, stop: tokio::sync::watch::Receiver<bool>) -> u64 {
    let mut removed = 0;
    for n in 0u64.. {
        if *stop.borrow() {
            break;
        }
        let project = format!("@crash/churn-{n}");
        let Ok(client) = Client::connect(&socket, &project).await else {
            break;
        };
        for service in ["a", "B"] {
            let options = SetOptions {
                keychain_service: Some(service.to_owned()),
                ..SetOptions::default()
            };
            let _ = client.set_item("k", "churn", options).await;
        }
        drop(client);
        match admin::remove_project(&socket, &project, &ConnectOptions::default()).await {
            Ok(_) => removed += 1,
            Err(_) => break,
        }
        // Leave the writers most of the owner's time: each Android key change rewrites the keystore.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    removed
}

#[tokio::test]
async fn acknowledged_writes_and_deletes_survive_sigkill() {
    crash_loop(&[], 50).await;
}

#[tokio::test]
async fn android_acknowledged_writes_and_deletes_survive_sigkill() {
    // A restarted JVM takes most of a second to warm up its first cipher and keystore save.
    crash_loop(&["--backend", "android"], 1000).await;
}

/// Kills the daemon `min_ms` to `min_ms + 250` ms into each round.
async fn crash_loop(args: &[&str], min_ms: u64) {
    let rounds: u32 = std::env::var("SECURESTORE_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut daemon = Daemon::start_with(args);
    let mut removals = 0;
    let mut ledger = Ledger::default();
    let mut tally = Tally::default();
    let mut seed = std::process::id() as u64;

    for round in 0..rounds {
        let writers: Vec<Child> = (0..WRITERS)
            .map(|w| spawn_writer(&daemon, w, u64::from(round) * 1_000_000_000))
            .collect();
        let (stop_churn, churn_stop) = tokio::sync::watch::channel(false);
        let churner = tokio::spawn(churn(daemon.socket(), churn_stop));
        // A pseudo-random moment, in the round's 250 ms window.
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        tokio::time::sleep(Duration::from_millis(min_ms + (seed >> 33) % 250)).await;
        daemon.kill();
        let _ = stop_churn.send(true);
        removals += churner.await.expect("churner");
        for writer in writers {
            let output = writer.wait_with_output().expect("writer output");
            ledger.record(&output.stdout);
        }
        daemon.spawn().unwrap_or_else(|log| {
            panic!("the daemon must always start again (round {round}):\n{log}")
        });
        let (lost, corrupt) = verify(&daemon, &ledger).await;
        tally.rounds += 1;
        tally.lost += lost;
        tally.corrupt += corrupt;
        // Later rounds start from what is now on disk: the in-flight ops are settled either way.
        ledger.in_flight.clear();
        resettle(&daemon, &mut ledger).await;
    }
    tally.acknowledged = ledger.acks;
    let key_gone = daemon
        .log()
        .matches("the key that sealed this item is gone")
        .count();
    eprintln!(
        "crash loop ({}): rounds {}, acknowledged writes {}, lost {}, corrupt {}, project removals {removals}, items dropped as key gone {key_gone}",
        if args.is_empty() { "sqlite" } else { "android" },
        tally.rounds,
        tally.acknowledged,
        tally.lost,
        tally.corrupt
    );
    assert_eq!(key_gone, 0, "no item may be dropped as key gone");
    assert!(
        tally.acknowledged > u64::from(rounds) * 10,
        "writers made too little progress: {tally:?}"
    );
    assert_eq!((tally.lost, tally.corrupt), (0, 0), "{tally:?}");
}

/// After a round, what is stored is the truth for the next: record each key's current state as
/// acknowledged, so an in-flight write that did land is expected from now on.
async fn resettle(daemon: &Daemon, ledger: &mut Ledger) {
    let client = daemon.client(PROJECT).await;
    for (key, op) in ledger.acknowledged.iter_mut() {
        let found = client
            .get_item(key, GetOptions::default())
            .await
            .expect("get");
        *op = match found
            .as_ref()
            .and_then(|v| parse_crash_value(v.expose_secret()))
        {
            Some((_, seq)) => Op::Set(seq),
            None => Op::Delete(op.seq()),
        };
    }
}
