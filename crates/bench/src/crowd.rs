//! Many connections at once, as on a phone where every app keeps one open: the daemon's memory with
//! 512 idle connections, and the 1-client get figures while 512 other connections each make one
//! get a second.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use securestore_client::{Client, GetOptions};

use crate::baselines::count_over;
use crate::daemon::{Daemon, Launch};
use crate::fixtures::{self, Store, ValueSize};
use crate::measure::{Stats, Window, join_workers};
use crate::rng::Rng;
use crate::scenarios::{Call, Scenario, worker};
use crate::settings::Settings;
use crate::usage::Cost;

/// Connections held open besides the measured client.
pub const CONNECTIONS: usize = 512;

/// What the crowd runs measured.
#[derive(Debug, Clone, Copy)]
pub struct Crowd {
    /// The daemon's `VmRSS` right after it answered its first get.
    pub rss_started: u64,
    /// Its `VmRSS` with [`CONNECTIONS`] connections open (each handshaken, then idle).
    pub rss_open: u64,
    /// The measured client's gets (100 B, 1 client) while the crowd makes its own.
    pub foreground: Stats,
    /// The crowd's gets per second over the same window.
    pub background_per_sec: f64,
    /// The daemon's context switches and CPU per get served, the crowd's gets included.
    pub cost: Cost,
}

/// Runs both crowd measurements on one daemon on `store` (the 1,000-item store). The daemon is
/// started with `--max-connections 1024`: its default, 512, would refuse the measured client; the
/// limit is a semaphore, so it changes no allocation.
///
/// # Errors
/// When the daemon fails or refuses a connection, or a get fails.
pub async fn measure(binary: &Path, store: &Store, settings: &Settings) -> anyhow::Result<Crowd> {
    let launch = Launch {
        args: vec!["--max-connections".into(), "1024".into()],
        ..Launch::default()
    };
    let (daemon, _) = Daemon::start_with(binary, &store.dir, &launch).await?;
    let rss_started = daemon.rss_bytes()?;
    let crowd = daemon.connect_many(CONNECTIONS).await?;
    // Let the daemon settle (handshake buffers freed) before reading its memory.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_open = daemon.rss_bytes()?;

    let window = settings.window();
    let served = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let background: Vec<_> = crowd
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            // Spread the crowd's gets evenly over each second.
            let phase = Duration::from_secs(1).mul_f64(i as f64 / CONNECTIONS as f64);
            tokio::spawn(once_a_second(
                client,
                started + phase,
                store.items,
                i as u64,
                window,
                Arc::clone(&served),
            ))
        })
        .collect();
    let scenario = Scenario {
        call: Call::Get,
        size: ValueSize::Small,
        clients: 1,
        items: store.items,
    };
    let counters = count_over(daemon.pid()?, window);
    let measured = daemon.connect().await?;
    let foreground = join_workers(
        vec![tokio::spawn(worker(
            measured,
            scenario,
            Rng::seeded(1),
            window,
        ))],
        window,
    )
    .await?;
    let (opened, closed) = counters.await.context("the counter reader panicked")??;
    for task in background {
        task.await.context("a crowd connection panicked")??;
    }
    let length = window.length().as_secs_f64();
    let background_gets = served.load(Ordering::Relaxed) as f64;
    let ops = foreground.ops_per_sec * length + background_gets;
    daemon.stop()?;
    Ok(Crowd {
        rss_started,
        rss_open,
        foreground,
        background_per_sec: background_gets / length,
        cost: closed.per_op(opened, ops),
    })
}

/// One crowd connection: a get of a random 100 B item every second from `first`, until `window`
/// closes, counting the gets that start inside the window.
async fn once_a_second(
    client: Client,
    first: Instant,
    items: u64,
    seed: u64,
    window: Window,
    served: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut rng = Rng::seeded(1000 + seed);
    let mut ticks = tokio::time::interval_at(first.into(), Duration::from_secs(1));
    loop {
        let at = ticks.tick().await.into_std();
        if at >= window.end {
            return Ok(());
        }
        let key = fixtures::key(fixtures::pick(&mut rng, items, ValueSize::Small));
        let found = client.get_item(&key, GetOptions::default()).await?;
        ensure!(found.is_some(), "{key} is missing from the bench store");
        if at >= window.start {
            served.fetch_add(1, Ordering::Relaxed);
        }
    }
}
