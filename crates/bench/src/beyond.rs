//! The calls beyond Expo, on one daemon hosted in this process (`securestore_daemon::Host`) and
//! reached over its Unix socket, every client on its own connection: how soon a watcher hears of a
//! set (1 and 64 watchers), `list_keys` of 10,000 keys, and a contended `set_if` counter (8 and 64
//! clients).
//!
//! Watchers and writers are connections of this process, not other processes; the socket, the
//! daemon and its storage owner are the real ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use securestore_client::{
    BatchOp, Client, Error, GetOptions, ServiceError, SetOptions, WatchFilter,
};

use crate::settings::Settings;

const PROJECT: &str = "@bench/beyond";
/// Keys listed by the `list_keys` row.
const LIST_KEYS: usize = 10_000;

/// One printed row: a label and its figures as text.
pub struct Row {
    /// What was measured.
    pub label: String,
    /// The figures.
    pub figures: String,
}

/// Runs every row on a fresh daemon in a temp folder under the bench data folder.
///
/// # Errors
/// When the host cannot start or a call fails.
pub async fn measure(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let (dir, host) = crate::transports::host_in(settings, "beyond")?;
    let socket = dir.path().join("run/s.sock");
    let sets = if settings.quick { 100 } else { 400 };
    let mut rows = Vec::new();
    for watchers in [1, 64] {
        rows.push(watch_latency(&socket, watchers, sets).await?);
    }
    rows.push(list_keys(&socket).await?);
    let window = if settings.quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3)
    };
    for clients in [8, 64] {
        rows.push(counter(&socket, clients, window).await?);
    }
    rows.push(stalled_watcher(&socket, window).await?);
    drop(host);
    Ok(rows)
}

/// `sets` sets one after another from one connection; each of `watchers` connections records when
/// it hears of each. Latency: from just before the set is sent to the event (the daemon publishes a
/// change before it answers the writer, so this bounds the acknowledgement-to-event time).
async fn watch_latency(
    socket: &std::path::Path,
    watchers: usize,
    sets: usize,
) -> anyhow::Result<Row> {
    let heard: Arc<Mutex<Vec<HashMap<String, Instant>>>> =
        Arc::new(Mutex::new(vec![HashMap::new(); watchers]));
    let mut tasks = Vec::new();
    for w in 0..watchers {
        let client = Client::connect(socket, PROJECT).await?;
        let id = client.watch(WatchFilter::default()).await?;
        let heard = heard.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen = 0;
            while seen < sets {
                let events = client.poll_events(id, Duration::from_secs(5)).await?;
                let now = Instant::now();
                let mut heard = heard
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for event in events.events {
                    if let Some(key) = event.key.filter(|k| k.starts_with("watched-")) {
                        heard[w].insert(key, now);
                        seen += 1;
                    }
                }
            }
            anyhow::Ok(())
        }));
    }
    let writer = Client::connect(socket, PROJECT).await?;
    let mut sent = HashMap::new();
    for i in 0..sets {
        let key = format!("watched-{watchers}-{i}");
        sent.insert(key.clone(), Instant::now());
        writer.set_item(&key, "v", SetOptions::default()).await?;
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .context("a watcher did not hear every set")?
            .context("a watcher panicked")??;
    }
    let heard = heard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut latencies: Vec<Duration> = heard
        .iter()
        .flat_map(|map| {
            map.iter().filter_map(|(key, at)| {
                sent.get(key)
                    .map(|sent| at.saturating_duration_since(*sent))
            })
        })
        .collect();
    latencies.sort_unstable();
    Ok(Row {
        label: format!("watch: set sent → event heard, {watchers} watcher(s)"),
        figures: format!(
            "p50 {:.1} µs, p99 {:.1} µs over {} events",
            percentile(&latencies, 0.50).as_secs_f64() * 1e6,
            percentile(&latencies, 0.99).as_secs_f64() * 1e6,
            latencies.len()
        ),
    })
}

/// Writes [`LIST_KEYS`] keys in batches, then times whole `list_keys` calls (the client follows the
/// pages).
async fn list_keys(socket: &std::path::Path) -> anyhow::Result<Row> {
    let client = Client::connect(socket, PROJECT).await?;
    let options = SetOptions {
        keychain_service: Some("listed".to_owned()),
        ..SetOptions::default()
    };
    for chunk in (0..LIST_KEYS).collect::<Vec<_>>().chunks(100) {
        let ops = chunk
            .iter()
            .map(|i| BatchOp::Set {
                key: format!("key-{i:05}"),
                value: "v".into(),
                options: options.clone(),
            })
            .collect();
        client.write_batch(ops).await?;
    }
    let mut times = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        let names = client.list_keys(Some("listed")).await?;
        times.push(start.elapsed());
        anyhow::ensure!(names.len() == LIST_KEYS, "listed {} keys", names.len());
    }
    times.sort_unstable();
    Ok(Row {
        label: format!("list_keys of {LIST_KEYS} keys (all pages)"),
        figures: format!(
            "p50 {:.2} ms, max {:.2} ms over 10 calls",
            percentile(&times, 0.50).as_secs_f64() * 1e3,
            times.last().copied().unwrap_or_default().as_secs_f64() * 1e3
        ),
    })
}

/// `clients` connections add 1 to one counter with get + `set_if` retry loops for `window`.
async fn counter(
    socket: &std::path::Path,
    clients: usize,
    window: Duration,
) -> anyhow::Result<Row> {
    let key = format!("counter-{clients}");
    let setup = Client::connect(socket, PROJECT).await?;
    setup.set_item(&key, "0", SetOptions::default()).await?;
    let end = Instant::now() + window;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = Client::connect(socket, PROJECT).await?;
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let (mut won, mut lost) = (0u64, 0u64);
            while Instant::now() < end {
                let current = client
                    .get_item(&key, GetOptions::default())
                    .await?
                    .context("the counter is gone")?;
                let next: u64 = current.expose_secret().parse::<u64>()? + 1;
                match client
                    .set_if(&key, Some(current), next.to_string(), SetOptions::default())
                    .await
                {
                    Ok(()) => won += 1,
                    Err(Error::Service(ServiceError::Conflict)) => lost += 1,
                    Err(err) => return Err(err.into()),
                }
            }
            anyhow::Ok((won, lost))
        }));
    }
    let (mut won, mut lost) = (0, 0);
    for task in tasks {
        let (w, l) = task.await.context("a counter client panicked")??;
        won += w;
        lost += l;
    }
    let last: u64 = setup
        .get_item(&key, GetOptions::default())
        .await?
        .context("the counter is gone")?
        .expose_secret()
        .parse()?;
    anyhow::ensure!(
        last == won,
        "lost update: counter {last}, successful increments {won}"
    );
    Ok(Row {
        label: format!("set_if counter, {clients} clients"),
        figures: format!(
            "{:.0} increments/s, {:.0} conflicts/s (counter = increments: {last})",
            won as f64 / window.as_secs_f64(),
            lost as f64 / window.as_secs_f64()
        ),
    })
}

/// Sets per second from 8 writers, first with no watcher, then beside a watcher that never polls
/// (its queue fills and lags): a stuck watcher must not slow writers.
async fn stalled_watcher(socket: &std::path::Path, window: Duration) -> anyhow::Result<Row> {
    let alone = set_rate(socket, 8, window).await?;
    let stuck = Client::connect(socket, PROJECT).await?;
    let _id = stuck.watch(WatchFilter::default()).await?;
    let beside = set_rate(socket, 8, window).await?;
    drop(stuck);
    Ok(Row {
        label: "sets/s, 8 writers: stalled watcher ÷ none".to_owned(),
        figures: format!(
            "{beside:.0} ÷ {alone:.0} = {:.2}× (target ≥ 0.9×)",
            beside / alone.max(1.0)
        ),
    })
}

/// Sets per second from `clients` connections over `window`.
async fn set_rate(
    socket: &std::path::Path,
    clients: usize,
    window: Duration,
) -> anyhow::Result<f64> {
    let end = Instant::now() + window;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = Client::connect(socket, PROJECT).await?;
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while Instant::now() < end {
                let key = format!("rate-{c}-{}", done % 64);
                client.set_item(&key, "v", SetOptions::default()).await?;
                done += 1;
            }
            anyhow::Ok(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.context("a writer panicked")??;
    }
    Ok(total as f64 / window.as_secs_f64())
}

/// Nearest-rank percentile of sorted `samples` (zero when empty).
fn percentile(samples: &[Duration], fraction: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let rank = (fraction * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Prints the rows under their own heading.
pub fn print(rows: &[Row]) {
    println!();
    println!("beyond Expo: one daemon hosted in the bench process, clients over its socket");
    for row in rows {
        println!("{:<48} {}", row.label, row.figures);
    }
}
