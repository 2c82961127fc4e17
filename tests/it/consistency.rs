//! The consistency model of `docs/consistency.md`, checked against the real daemon: one connection's
//! requests take effect in the order sent (pipelined or not), and every history of many client
//! processes is linearizable, across a SIGKILL and restart too.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use securestore_client::{Client, DeleteOptions, GetOptions, SetOptions};
use securestore_e2e::linearizability::{self, Kind, Op};
use securestore_e2e::{Daemon, PROJECT, bin};

const ROUNDS: usize = 300;
const CONNECTIONS: usize = 4;

/// Runs `ROUNDS` rounds of `round` on each of `CONNECTIONS` connections at once.
async fn on_connections<F, Fut>(daemon: &Daemon, round: F)
where
    F: Fn(Client, usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let mut tasks = Vec::new();
    for connection in 0..CONNECTIONS {
        let client = daemon.client(PROJECT).await;
        let round = round.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..ROUNDS {
                round(client.clone(), connection, i).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a connection's rounds");
    }
}

fn text(found: Option<securestore_client::SecretString>) -> Option<String> {
    found.map(|v| v.expose_secret().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_get_sees_the_set_sent_before_it() {
    let daemon = Daemon::start_logging(&[], "info");
    on_connections(&daemon, |client, connection, i| async move {
        let key = format!("c{connection}");
        let value = format!("v{i}");
        // Both requests are in flight at once on one connection: the get is sent before the
        // set's answer comes back.
        let (set, got) = futures::join!(
            client.set_item(&key, value.as_str(), SetOptions::default()),
            client.get_item(&key, GetOptions::default()),
        );
        set.expect("set");
        assert_eq!(
            text(got.expect("get")).as_deref(),
            Some(value.as_str()),
            "round {i}: the get overtook the set sent before it"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_get_sees_the_delete_sent_before_it() {
    let daemon = Daemon::start_logging(&[], "info");
    on_connections(&daemon, |client, connection, i| async move {
        let key = format!("c{connection}");
        client
            .set_item(&key, "there", SetOptions::default())
            .await
            .expect("set");
        let (deleted, got) = futures::join!(
            client.delete_item(&key, DeleteOptions::default()),
            client.get_item(&key, GetOptions::default()),
        );
        deleted.expect("delete");
        assert_eq!(
            text(got.expect("get")),
            None,
            "round {i}: the get overtook the delete"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_get_is_not_changed_by_a_set_sent_after_it() {
    let daemon = Daemon::start_logging(&[], "info");
    on_connections(&daemon, |client, connection, i| async move {
        let key = format!("c{connection}");
        client
            .set_item(&key, "before", SetOptions::default())
            .await
            .expect("set");
        // The get may be served by the reader thread and the set by the owner: the set must still
        // not be committed before the get has read.
        let after = format!("after-{i}");
        let (got, set) = futures::join!(
            client.get_item(&key, GetOptions::default()),
            client.set_item(&key, after.as_str(), SetOptions::default()),
        );
        set.expect("set");
        assert_eq!(
            text(got.expect("get")).as_deref(),
            Some("before"),
            "round {i}: the get saw a set sent after it"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_set_delete_get_take_effect_in_order() {
    let daemon = Daemon::start_logging(&[], "info");
    on_connections(&daemon, |client, connection, i| async move {
        let key = format!("c{connection}");
        let value = format!("v{i}");
        let (first, set, deleted, got, set_again, got_again) = futures::join!(
            client.set_item(&key, "old", SetOptions::default()),
            client.set_item(&key, value.as_str(), SetOptions::default()),
            client.delete_item(&key, DeleteOptions::default()),
            client.get_item(&key, GetOptions::default()),
            client.set_item(&key, value.as_str(), SetOptions::default()),
            client.get_item(&key, GetOptions::default()),
        );
        first.expect("set");
        set.expect("set");
        deleted.expect("delete");
        set_again.expect("set");
        assert_eq!(text(got.expect("get")), None, "round {i}: after the delete");
        assert_eq!(
            text(got_again.expect("get")).as_deref(),
            Some(value.as_str()),
            "round {i}: after the second set"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_calls_beyond_expo_take_effect_in_the_order_sent() {
    let daemon = Daemon::start_logging(&[], "info");
    on_connections(&daemon, |client, connection, i| async move {
        let service = format!("s{connection}");
        let opts = || SetOptions {
            keychain_service: Some(service.clone()),
            ..SetOptions::default()
        };
        let value = format!("v{i}");
        let expected = Some(securestore_client::SecretString::from(value.as_str()));
        // All in flight at once on one connection: each must see the ones sent before it.
        let (set, there, listed, swapped, conflict, cleared, gone, absent_set) = futures::join!(
            client.set_item("k", value.as_str(), opts()),
            client.contains("k", Some(&service)),
            client.list_keys_page(Some(&service), None),
            client.set_if("k", expected.clone(), "next", opts()),
            client.set_if("k", expected, "lost", opts()),
            client.clear(Some(&service)),
            client.contains("k", Some(&service)),
            client.set_if("k", None, "fresh", opts()),
        );
        set.expect("set");
        assert!(
            there.expect("contains"),
            "round {i}: contains overtook the set"
        );
        assert_eq!(listed.expect("list").names, ["k"], "round {i}");
        swapped.expect("the set_if sees the set before it");
        assert!(
            matches!(
                conflict,
                Err(securestore_client::Error::Service(
                    securestore_client::ServiceError::Conflict
                ))
            ),
            "round {i}: the second set_if sees the first: {conflict:?}"
        );
        assert_eq!(cleared.expect("clear"), 1, "round {i}");
        assert!(
            !gone.expect("contains"),
            "round {i}: contains overtook the clear"
        );
        absent_set.expect("the item is absent after the clear");
    })
    .await;
}

/// How one history run goes.
struct Run {
    /// Extra daemon flags (e.g. the backend).
    daemon_args: &'static [&'static str],
    /// How long the clients run.
    millis: u64,
    /// When to SIGKILL and restart the daemon, from the start.
    kills_at: &'static [u64],
}

/// One client process: 4 pipelining, 4 one request at a time; 3 shared keys.
fn spawn_client(daemon: &Daemon, client: u32, millis: u64) -> Child {
    let depth = if client.is_multiple_of(2) { 4 } else { 1 };
    Command::new(bin("securestore-history-client"))
        .arg(daemon.socket())
        .args([
            PROJECT,
            &client.to_string(),
            &millis.to_string(),
            &depth.to_string(),
            &(0x9e37_79b9_u64 * (u64::from(client) + 1)).to_string(),
            "3",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn a history client")
}

fn parse(client: u32, output: &str) -> Vec<Op> {
    output
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let text = |v: &str| (v != "-").then(|| v.to_owned());
            let (call, ret, key, kind) = match fields.as_slice() {
                [call, ret, "cas", key, value, expected, outcome] => {
                    let applied = match *outcome {
                        "ok" => Some(true),
                        "conflict" => Some(false),
                        _ => None,
                    };
                    let kind = Kind::SetIf {
                        expected: text(expected),
                        value: text(value),
                        applied,
                    };
                    (call, ret, key, kind)
                }
                [call, ret, verb, key, value] => {
                    let kind = match *verb {
                        "get" => Kind::Read(text(value)),
                        "set" | "del" => Kind::Write(text(value)),
                        other => panic!("bad verb {other:?}"),
                    };
                    (call, ret, key, kind)
                }
                _ => panic!("bad history line {line:?}"),
            };
            Op {
                client,
                key: (*key).to_owned(),
                kind,
                call: call.parse().expect("call time"),
                ret: if *ret == "?" {
                    Op::UNKNOWN
                } else {
                    ret.parse().expect("return time")
                },
            }
        })
        .collect()
}

/// Runs 8 client processes against a daemon, kills it when asked, and checks the whole history.
async fn history(run: Run) {
    let mut daemon = Daemon::start_logging(run.daemon_args, "info");
    let started = Instant::now();
    let clients: Vec<Child> = (0..8)
        .map(|client| spawn_client(&daemon, client, run.millis))
        .collect();
    for &at in run.kills_at {
        let wait = Duration::from_millis(at).saturating_sub(started.elapsed());
        tokio::time::sleep(wait).await;
        daemon.kill();
        daemon.spawn().expect("the daemon restarts after SIGKILL");
    }
    let mut history = Vec::new();
    for (client, child) in clients.into_iter().enumerate() {
        let output = child.wait_with_output().expect("a history client");
        assert!(
            output.status.success(),
            "client {client}: {}",
            output.status
        );
        history.extend(parse(
            client as u32,
            &String::from_utf8(output.stdout).expect("utf-8"),
        ));
    }
    let unknown = history.iter().filter(|op| op.ret == Op::UNKNOWN).count();
    let reads = history
        .iter()
        .filter(|op| matches!(op.kind, Kind::Read(_)))
        .count();
    let applied = |outcome: Option<bool>| {
        history
            .iter()
            .filter(|op| matches!(op.kind, Kind::SetIf { applied, .. } if applied == outcome))
            .count()
    };
    let (cas_ok, cas_conflict) = (applied(Some(true)), applied(Some(false)));
    let checking = Instant::now();
    let verdict = linearizability::check(&history);
    println!(
        "history {:?}: {} operations ({reads} gets, {} writes of which {unknown} unknown; set_if: {cas_ok} applied, {cas_conflict} conflicts), {} SIGKILLs; checked in {:?}",
        run.daemon_args,
        history.len(),
        history.len() - reads,
        run.kills_at.len(),
        checking.elapsed()
    );
    assert!(
        history.len() > 150,
        "too few operations to mean anything: {}",
        history.len()
    );
    assert!(
        reads > 75,
        "too few gets to mean anything: {reads}\n{}",
        daemon.log()
    );
    assert!(
        cas_ok > 0 && cas_conflict > 0,
        "too few set_if outcomes of each kind to mean anything: {cas_ok} applied, {cas_conflict} conflicts"
    );
    if let Err(violation) = verdict {
        panic!("{violation}");
    }
}

#[tokio::test]
async fn eight_processes_make_a_linearizable_history() {
    history(Run {
        daemon_args: &[],
        millis: 2_000,
        kills_at: &[],
    })
    .await;
}

#[tokio::test]
async fn a_history_cut_by_sigkill_and_restart_stays_linearizable() {
    history(Run {
        daemon_args: &[],
        millis: 3_000,
        kills_at: &[800, 1_900],
    })
    .await;
}

#[tokio::test]
async fn the_android_backend_makes_a_linearizable_history_across_a_kill() {
    history(Run {
        daemon_args: &["--backend", "android"],
        millis: 4_000,
        kills_at: &[1_500],
    })
    .await;
}

/// A connection closed by the daemon to make room (its goodbye) is reopened by the client, and the
/// calls under way are sent again: they must reach the new connection in the order they were first
/// sent, and none may run twice. Another process keeps taking the one slot, so the client is closed
/// for being idle again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_writes_keep_their_order_across_goodbyes() {
    let daemon = Daemon::start_logging(
        &["--max-connections", "1"],
        "securestore_daemon::connection=debug",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (stop, mut cli) = (stop.clone(), daemon.cli());
        cli.args(["--project", "@tests/other", "get", "nothing"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = cli.status();
            }
        })
    };
    let client = daemon.client(PROJECT).await;
    let mut wrong = Vec::new();
    for i in 0..1000 {
        let (first, second) = (format!("first{i}"), format!("second{i}"));
        let (a, b, got) = futures::join!(
            client.set_item("k", first.as_str(), SetOptions::default()),
            client.set_item("k", second.as_str(), SetOptions::default()),
            client.get_item("k", GetOptions::default()),
        );
        let log = || {
            daemon
                .log()
                .lines()
                .rev()
                .take(25)
                .collect::<Vec<_>>()
                .join("\n")
        };
        a.unwrap_or_else(|e| panic!("set: {e:?}\n{}", log()));
        b.unwrap_or_else(|e| panic!("set: {e:?}\n{}", log()));
        let got = text(got.unwrap_or_else(|e| panic!("get: {e:?}\n{}", log())));
        let after = text(
            client
                .get_item("k", GetOptions::default())
                .await
                .expect("get"),
        );
        if got.as_deref() != Some(second.as_str()) || after.as_deref() != Some(second.as_str()) {
            wrong.push(format!("round {i}: pipelined get {got:?}, then {after:?}"));
        }
        // Idle for a moment, so the daemon may pick this connection to make room.
        tokio::time::sleep(Duration::from_micros((i % 7) * 50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().expect("churn");
    let goodbyes = daemon.log().matches("closed while idle").count();
    println!("1000 rounds, {goodbyes} connections closed while idle to make room");
    assert!(
        wrong.is_empty(),
        "{} rounds out of order: {wrong:?}",
        wrong.len()
    );
    assert!(
        goodbyes > 10,
        "the client was not closed for room often enough to mean anything"
    );
}
