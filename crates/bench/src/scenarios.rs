//! securestore itself, through the client library: get and set latency and throughput from many
//! connections, the daemon's memory, and its start-up time.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use securestore_client::{Client, GetOptions, SetOptions};

use crate::daemon::{Daemon, Readiness};
use crate::fixtures::{self, Store, ValueSize};
use crate::measure::{Recorder, Stats, Window, join_workers};
use crate::rng::Rng;
use crate::settings::Settings;
use crate::usage::{Cost, Usage};

/// Which call a scenario makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `get_item` of a random existing key.
    Get,
    /// `set_item` over a random existing key, with a value of the same size.
    Set,
}

/// One measured combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scenario {
    /// The call made.
    pub call: Call,
    /// The size of the values read or written.
    pub size: ValueSize,
    /// Concurrent clients, each on its own connection with one request in flight.
    pub clients: usize,
    /// Items in the store.
    pub items: u64,
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let call = match self.call {
            Call::Get => "get",
            Call::Set => "set",
        };
        write!(
            f,
            "{call} {}, {} items",
            self.size.label(),
            crate::report::thousands(self.items)
        )
    }
}

/// A scenario and what it measured.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// What was measured.
    pub scenario: Scenario,
    /// The figures.
    pub stats: Stats,
    /// What each call cost the daemon (context switches, CPU), over the same window.
    pub cost: Cost,
}

/// Everything measured on one store in one daemon's lifetime.
#[derive(Debug)]
pub struct StoreRun {
    /// Items in the store.
    pub items: u64,
    /// Every get and set scenario.
    pub rows: Vec<Row>,
    /// The daemon's RSS right after it answered its first get.
    pub rss_started: u64,
    /// Its RSS after all the scenarios.
    pub rss_after: u64,
}

/// Starts a daemon on `store`, runs every get and set scenario against it, and stops it.
///
/// # Errors
/// When the daemon fails or a call fails (a get that finds nothing is a failure: the store is broken).
pub async fn run_store(
    binary: &Path,
    store: &Store,
    settings: &Settings,
) -> anyhow::Result<StoreRun> {
    let warmed = store.dir.warm_page_cache()?;
    eprintln!(
        "  read {} MiB of store files into the page cache",
        warmed >> 20
    );
    let (daemon, _) = Daemon::start(binary, &store.dir).await?;
    let rss_started = daemon.rss_bytes()?;
    let mut rows = Vec::new();
    for call in [Call::Get, Call::Set] {
        for size in ValueSize::ALL {
            for clients in settings.client_counts() {
                let scenario = Scenario {
                    call,
                    size,
                    clients,
                    items: store.items,
                };
                eprintln!("  {scenario}, clients: {clients}");
                let (stats, cost) = measure(&daemon, scenario, settings).await?;
                rows.push(Row {
                    scenario,
                    stats,
                    cost,
                });
            }
        }
    }
    let rss_after = daemon.rss_bytes()?;
    daemon.stop()?;
    Ok(StoreRun {
        items: store.items,
        rows,
        rss_started,
        rss_after,
    })
}

/// Connects the scenario's clients, then runs them all over one window, reading the daemon's
/// counters as the window opens and closes.
async fn measure(
    daemon: &Daemon,
    scenario: Scenario,
    settings: &Settings,
) -> anyhow::Result<(Stats, Cost)> {
    let clients = daemon.connect_many(scenario.clients).await?;
    let window = settings.window();
    let pid = daemon.pid()?;
    let counters = tokio::spawn(async move {
        tokio::time::sleep_until(window.start.into()).await;
        let opened = Usage::of(pid)?;
        tokio::time::sleep_until(window.end.into()).await;
        anyhow::Ok((opened, Usage::of(pid)?))
    });
    let workers = clients
        .into_iter()
        .zip(1..)
        .map(|(client, seed)| tokio::spawn(worker(client, scenario, Rng::seeded(seed), window)))
        .collect();
    let stats = join_workers(workers, window).await?;
    let (opened, closed) = counters.await.context("the counter reader panicked")??;
    let ops = stats.ops_per_sec * window.length().as_secs_f64();
    Ok((stats, closed.per_op(opened, ops)))
}

/// One client: picks a key (untimed), then times the call, until the window closes.
pub async fn worker(
    client: Client,
    scenario: Scenario,
    mut rng: Rng,
    window: Window,
) -> anyhow::Result<Vec<u64>> {
    let value = fixtures::value(scenario.size, rng.next_u64());
    let mut recorder = Recorder::new(window);
    while recorder.running() {
        let key = fixtures::key(fixtures::pick(&mut rng, scenario.items, scenario.size));
        let began = Instant::now();
        match scenario.call {
            Call::Get => {
                let found = client.get_item(&key, GetOptions::default()).await?;
                ensure!(found.is_some(), "{key} is missing from the bench store");
            }
            Call::Set => {
                client
                    .set_item(&key, value.as_str(), SetOptions::default())
                    .await?;
            }
        }
        recorder.record(began);
    }
    Ok(recorder.into_samples())
}

/// Median start-up times over several launches.
#[derive(Debug, Clone, Copy)]
pub struct Startup {
    /// Items in the store.
    pub items: u64,
    /// Launches measured.
    pub launches: usize,
    /// Median of each readiness step.
    pub median: Readiness,
}

/// Launches the daemon on `store` `launches` times, stopping it cleanly in between.
///
/// # Errors
/// When a launch fails.
pub async fn startup(binary: &Path, store: &Store, launches: usize) -> anyhow::Result<Startup> {
    let mut seen = Vec::with_capacity(launches);
    for _ in 0..launches {
        let (daemon, readiness) = Daemon::start(binary, &store.dir).await?;
        daemon.stop()?;
        seen.push(readiness);
    }
    let median = |step: fn(&Readiness) -> Duration| {
        let mut times: Vec<Duration> = seen.iter().map(step).collect();
        times.sort_unstable();
        times.get(times.len() / 2).copied().unwrap_or_default()
    };
    Ok(Startup {
        items: store.items,
        launches,
        median: Readiness {
            bound: median(|r| r.bound),
            handshake: median(|r| r.handshake),
            first_get: median(|r| r.first_get),
        },
    })
}
