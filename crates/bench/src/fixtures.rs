//! The bench's stores: which keys hold which value sizes, and creating a store of N items once,
//! through the daemon, in a folder that later runs reuse.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use securestore_client::{BatchOp, Client, SetOptions};

use crate::daemon::{Daemon, StoreDir};
use crate::rng::Rng;

/// The project every bench connection is bound to.
pub const PROJECT: &str = "@bench/app";
/// One item in this many holds a 2 KiB value; the rest hold 100 B. Spreading the large values over
/// the whole key space makes a 2 KiB get search the same b-tree as a 100 B one.
const BIG_EVERY: u64 = 16;
/// Written last, once a store is complete; a folder without it is rebuilt.
const MARKER: &str = "complete";
/// Connections used to fill a store.
const FILL_CONNECTIONS: usize = 8;
/// Sets each filling connection keeps in flight (under the daemon's per-connection cap of 64), so
/// group commit can put many writes in each sync.
const FILL_PER_CONNECTION: usize = 32;
/// Stores of at least this many items are filled with `write_batch` (protocol 2); smaller ones with
/// single sets, which every daemon version understands (`--instructions` fills a store with the
/// daemon of an older commit).
const BATCH_FILL_FROM: u64 = 10_000;
/// Items per `write_batch`: the protocol's limit of 128 operations; 8 of them 2 KiB, about 30 KiB in
/// all, under the default 64 KiB value limit.
const FILL_BATCH: u64 = securestore_proto::limits::MAX_BATCH_OPS as u64;
/// Batches each filling connection keeps in flight.
const BATCHES_PER_CONNECTION: usize = 4;

/// The two value sizes the bench reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueSize {
    /// 100 bytes: a token.
    Small,
    /// 2 KiB: a certificate or a serialized session.
    Big,
}

impl ValueSize {
    /// Both sizes, small first.
    pub const ALL: [Self; 2] = [Self::Small, Self::Big];

    /// The value's length in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Self::Small => 100,
            Self::Big => 2048,
        }
    }

    /// As printed in the table.
    pub fn label(self) -> &'static str {
        match self {
            Self::Small => "100 B",
            Self::Big => "2 KiB",
        }
    }

    fn of_item(n: u64) -> Self {
        if n.is_multiple_of(BIG_EVERY) {
            Self::Big
        } else {
            Self::Small
        }
    }
}

/// The key of item `n`.
pub fn key(n: u64) -> String {
    format!("item-{n}")
}

/// A value of `size` bytes, varied by `salt` so a rewrite stores different bytes.
pub fn value(size: ValueSize, salt: u64) -> String {
    format!("v{salt}-")
        .chars()
        .cycle()
        .take(size.bytes())
        .collect()
}

/// A random existing item holding a value of `size`, in a store of `items` (more than `BIG_EVERY`).
pub fn pick(rng: &mut Rng, items: u64, size: ValueSize) -> u64 {
    match size {
        ValueSize::Big => rng.below(items.div_ceil(BIG_EVERY)) * BIG_EVERY,
        ValueSize::Small => match rng.below(items) {
            n if !n.is_multiple_of(BIG_EVERY) => n,
            n if n + 1 < items => n + 1,
            n => n - 1,
        },
    }
}

/// A store of `items` items in its own folder under the bench data folder.
#[derive(Debug, Clone)]
pub struct Store {
    /// Its folders.
    pub dir: StoreDir,
    /// How many items it holds.
    pub items: u64,
}

/// How a store came to be ready.
#[derive(Debug, Clone, Copy)]
pub struct Creation {
    /// How long filling it took (on the run that created it).
    pub took: Duration,
    /// Whether this run created it, rather than reusing an earlier run's.
    pub this_run: bool,
}

impl Store {
    /// The store of `items` items under `bench_dir` (which need not exist yet).
    pub fn new(bench_dir: &Path, items: u64) -> Self {
        Self {
            dir: StoreDir {
                root: bench_dir.join(format!("store-{items}")),
            },
            items,
        }
    }

    /// Reuses the store if an earlier run completed it; otherwise creates it through the daemon.
    ///
    /// # Errors
    /// When the folder cannot be prepared or the daemon fails while filling it.
    pub async fn ensure(&self, binary: &Path) -> anyhow::Result<Creation> {
        if let Some(took) = self.recorded_creation() {
            return Ok(Creation {
                took,
                this_run: false,
            });
        }
        let root = &self.dir.root;
        if root.exists() {
            std::fs::remove_dir_all(root)
                .with_context(|| format!("cannot clear the incomplete store {}", root.display()))?;
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        eprintln!("creating {} items in {} …", self.items, root.display());
        let started = Instant::now();
        let (daemon, _) = Daemon::start(binary, &self.dir).await?;
        fill(&daemon, self.items).await?;
        daemon.stop()?;
        let took = started.elapsed();
        let marker = root.join(MARKER);
        std::fs::write(
            &marker,
            format!("items={}\nseconds={:.1}\n", self.items, took.as_secs_f64()),
        )
        .with_context(|| format!("cannot write {}", marker.display()))?;
        Ok(Creation {
            took,
            this_run: true,
        })
    }

    /// The creation time recorded by the run that completed this store, if one did.
    fn recorded_creation(&self) -> Option<Duration> {
        let marker = std::fs::read_to_string(self.dir.root.join(MARKER)).ok()?;
        let seconds = marker
            .lines()
            .find_map(|line| line.strip_prefix("seconds="))?;
        seconds.parse().ok().map(Duration::from_secs_f64)
    }
}

/// Sets items `0..items` from many concurrent writers on a few connections: batches of 128 items
/// for a large store (a 1,000,000-item store is then a few thousand durable transactions, not a
/// million requests), single sets for a small one.
async fn fill(daemon: &Daemon, items: u64) -> anyhow::Result<()> {
    let clients = daemon.connect_many(FILL_CONNECTIONS).await?;
    let next = Arc::new(AtomicU64::new(0));
    let batched = items >= BATCH_FILL_FROM;
    let per_connection = if batched {
        BATCHES_PER_CONNECTION
    } else {
        FILL_PER_CONNECTION
    };
    let mut writers = Vec::new();
    for client in &clients {
        for _ in 0..per_connection {
            let (client, next) = (client.clone(), Arc::clone(&next));
            writers.push(if batched {
                tokio::spawn(fill_batches(client, next, items))
            } else {
                tokio::spawn(fill_writer(client, next, items))
            });
        }
    }
    for writer in writers {
        writer.await.context("a filling writer panicked")??;
    }
    Ok(())
}

/// Takes the next unwritten item and sets it, until all `items` are taken.
async fn fill_writer(client: Client, next: Arc<AtomicU64>, items: u64) -> anyhow::Result<()> {
    let tenth = (items / 10).max(1);
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= items {
            return Ok(());
        }
        let value = value(ValueSize::of_item(n), 0);
        client
            .set_item(&key(n), value.as_str(), SetOptions::default())
            .await
            .with_context(|| format!("cannot set {}", key(n)))?;
        if n > 0 && n.is_multiple_of(tenth) {
            eprintln!("  … {n} of {items}");
        }
    }
}

/// Takes the next [`FILL_BATCH`] unwritten items and sets them in one `write_batch`, until all
/// `items` are taken.
async fn fill_batches(client: Client, next: Arc<AtomicU64>, items: u64) -> anyhow::Result<()> {
    let tenth = (items / 10).max(1);
    loop {
        let first = next.fetch_add(FILL_BATCH, Ordering::Relaxed);
        if first >= items {
            return Ok(());
        }
        let ops = (first..(first + FILL_BATCH).min(items))
            .map(|n| BatchOp::Set {
                key: key(n),
                value: value(ValueSize::of_item(n), 0).into(),
                options: SetOptions::default(),
            })
            .collect();
        client
            .write_batch(ops)
            .await
            .with_context(|| format!("cannot set items {first}.. in a batch"))?;
        if first / tenth != (first + FILL_BATCH) / tenth {
            eprintln!("  … {} of {items}", first + FILL_BATCH);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_stay_in_range_and_in_their_size_class() {
        let mut rng = Rng::seeded(1);
        for items in [17, 1000, 100_000] {
            for _ in 0..10_000 {
                for size in ValueSize::ALL {
                    let n = pick(&mut rng, items, size);
                    assert!(n < items);
                    assert_eq!(ValueSize::of_item(n), size);
                }
            }
        }
    }

    #[test]
    fn values_have_their_size() {
        for size in ValueSize::ALL {
            assert_eq!(value(size, 12_345).len(), size.bytes());
        }
    }
}
