//! Instructions the daemon executes per get and per set, counted by `valgrind --tool=callgrind`:
//! unlike times, context switches or CPU, these do not move with the machine's load, so a change
//! of a few percent in the serving path shows even on a shared VM.
//!
//! `perf stat -e instructions` would be cheaper, but virtual machines often hide the hardware
//! counters (this one reports `<not supported>`), so callgrind it is. Callgrind counts a whole
//! process's life, so the figure is a difference: the daemon is launched under callgrind several
//! times on the same store, each session doing the same start, handshake and warm-up, then either
//! nothing more, or `calls` more gets, or `calls` more sets, and then a clean stop. The extra
//! instructions of a session divided by `calls` is the cost of one call, start-up and shutdown
//! cancelled out. The three sessions run twice; how far the two rounds differ is printed.

use std::path::Path;

use anyhow::{Context as _, bail, ensure};
use securestore_client::{Client, GetOptions, SetOptions};

use crate::daemon::{Daemon, Launch, StoreDir};
use crate::fixtures::{self, Store, ValueSize};
use crate::settings::Settings;

/// Items in the measured store unless `--items` says otherwise; every get finds one.
pub const ITEMS: u64 = 1000;
/// Gets and sets every session makes before its measured calls, so caches and pages are warm.
const WARMUP: u64 = 50;
/// Times the three sessions (idle, gets, sets) are run; the spread of the rounds is printed.
const ROUNDS: usize = 2;

/// What the sessions counted.
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    /// Calls of each kind the differences are over.
    pub calls: u64,
    /// Items in the store.
    pub items: u64,
    /// Instructions of a session with no measured call (start, handshake, warm-up, stop), the
    /// lowest of the rounds.
    pub base: u64,
    /// Daemon instructions per 100 B get.
    pub per_get: Figure,
    /// Daemon instructions per 100 B set (its share of the checkpoint at shutdown included).
    pub per_set: Figure,
}

/// The measured calls of one session.
#[derive(Debug, Clone, Copy)]
struct Session {
    gets: u64,
    sets: u64,
}

/// Runs the callgrind sessions against `binary` on a fresh 1,000-item store under the bench data
/// folder (created by the same binary, so an older daemon reads a store it wrote itself).
///
/// # Errors
/// When valgrind is missing, a daemon fails, or callgrind writes no total.
pub async fn measure(binary: &Path, settings: &Settings) -> anyhow::Result<Counts> {
    let version = std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .context("cannot run valgrind (install it to count instructions)")?;
    ensure!(version.status.success(), "valgrind --version failed");
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("cannot create {}", settings.data.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("instructions")
        .tempdir_in(&settings.data)
        .context("cannot create the instructions folder")?;
    let items = settings.instruction_items;
    let store = if items == ITEMS {
        let store = StoreDir {
            root: scratch.path().join("store"),
        };
        fill_in_order(binary, &store).await?;
        store
    } else {
        // A large store is the bench's own (filled concurrently with batches, then reused): its
        // shape is fixed once made, so every session and every run reads the same pages.
        let store = Store::new(&settings.data, items);
        store.ensure(binary).await?;
        store.dir
    };

    let calls = settings.calls;
    let idle = Session { gets: 0, sets: 0 };
    let gets = Session {
        gets: calls,
        sets: 0,
    };
    let sets = Session {
        gets: 0,
        sets: calls,
    };
    let (mut per_get, mut per_set, mut base) = (Vec::new(), Vec::new(), u64::MAX);
    for round in 1..=ROUNDS {
        let mut totals = Vec::with_capacity(3);
        for (label, session) in [("idle", idle), ("gets", gets), ("sets", sets)] {
            let out = scratch
                .path()
                .join(format!("callgrind.{label}.{round}.out"));
            eprintln!(
                "  callgrind round {round}, {label}: {} gets, {} sets",
                session.gets, session.sets
            );
            let total = count_session(binary, &store, items, session, &out).await?;
            eprintln!("    {total} instructions");
            totals.push(total);
            // Keep the profiles of the calls, for `callgrind_annotate`: the calls are most of them.
            if round == 1 && label != "idle" {
                let kept = settings.data.join(format!("callgrind.{label}.{items}.out"));
                std::fs::copy(&out, &kept)
                    .with_context(|| format!("cannot keep {}", kept.display()))?;
                eprintln!("    profile: {}", kept.display());
            }
        }
        let [idle_total, gets_total, sets_total] = totals[..] else {
            bail!("a callgrind session is missing");
        };
        let per_call = |total: u64| total.saturating_sub(idle_total) as f64 / calls as f64;
        per_get.push(per_call(gets_total));
        per_set.push(per_call(sets_total));
        base = base.min(idle_total);
    }
    Ok(Counts {
        calls,
        items,
        base,
        per_get: Figure::of(&per_get),
        per_set: Figure::of(&per_set),
    })
}

/// One count, over [`ROUNDS`] rounds.
#[derive(Debug, Clone, Copy)]
pub struct Figure {
    /// The mean of the rounds.
    pub mean: f64,
    /// Half the distance between the lowest and the highest round.
    pub spread: f64,
}

impl Figure {
    fn of(rounds: &[f64]) -> Self {
        let lowest = rounds.iter().copied().fold(f64::INFINITY, f64::min);
        let highest = rounds.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Self {
            mean: rounds.iter().sum::<f64>() / rounds.len().max(1) as f64,
            spread: (highest - lowest) / 2.0,
        }
    }
}

/// Sets the [`ITEMS`] items one at a time, in order, from one connection, with the daemon under
/// test (not under valgrind): the same sequence of writes gives the same database pages every time,
/// where concurrent writers would leave a different b-tree and WAL on each run.
async fn fill_in_order(binary: &Path, store: &StoreDir) -> anyhow::Result<()> {
    eprintln!("  filling {ITEMS} items in order");
    std::fs::create_dir_all(&store.root)
        .with_context(|| format!("cannot create {}", store.root.display()))?;
    let (daemon, _) = Daemon::start(binary, store).await?;
    let client = daemon.connect().await?;
    for n in 0..ITEMS {
        let size = if n.is_multiple_of(16) {
            ValueSize::Big
        } else {
            ValueSize::Small
        };
        client
            .set_item(
                &fixtures::key(n),
                fixtures::value(size, 0).as_str(),
                SetOptions::default(),
            )
            .await?;
    }
    drop(client);
    daemon.stop()
}

/// One daemon life under callgrind; returns its total instruction count.
async fn count_session(
    binary: &Path,
    store: &StoreDir,
    items: u64,
    session: Session,
    out: &Path,
) -> anyhow::Result<u64> {
    let launch = Launch {
        wrapper: vec![
            "valgrind".into(),
            "--tool=callgrind".into(),
            "--quiet".into(),
            format!("--callgrind-out-file={}", out.display()).into(),
        ],
        args: Vec::new(),
    };
    let (daemon, _) = Daemon::start_with(binary, store, &launch).await?;
    let client = daemon.connect().await?;
    calls(&client, WARMUP, WARMUP, items).await?;
    calls(&client, session.gets, session.sets, items).await?;
    drop(client);
    daemon.stop()?;
    read_total(out)
}

/// `gets` gets then `sets` sets of 100 B items of a store of `items`, one at a time, in a fixed
/// order.
async fn calls(client: &Client, gets: u64, sets: u64, items: u64) -> anyhow::Result<()> {
    let value = fixtures::value(ValueSize::Small, 1);
    for i in 0..gets {
        let key = fixtures::key(small_item(i, items));
        let found = client.get_item(&key, GetOptions::default()).await?;
        ensure!(
            found.is_some(),
            "{key} is missing from the instructions store"
        );
    }
    for i in 0..sets {
        client
            .set_item(
                &fixtures::key(small_item(i, items)),
                value.as_str(),
                SetOptions::default(),
            )
            .await?;
    }
    Ok(())
}

/// The `i`-th 100 B item of a store of `items`, stepping through the store by a prime so the calls
/// spread over the whole b-tree (every 16th item holds 2 KiB and is skipped).
fn small_item(i: u64, items: u64) -> u64 {
    let n = (i * 7919) % items;
    if n.is_multiple_of(16) { n + 1 } else { n }
}

/// The total of callgrind's output file: its `summary:` line (or `totals:`).
fn read_total(out: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(out)
        .with_context(|| format!("callgrind wrote no {}", out.display()))?;
    text.lines()
        .find_map(|line| line.strip_prefix("summary:"))
        .or_else(|| text.lines().find_map(|line| line.strip_prefix("totals:")))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no total in {}", out.display()))
}

/// Prints the counts, one figure a line, in a form `scripts/compare-instructions.sh` reads.
pub fn print(binary: &Path, counts: &Counts) {
    println!("securestore-bench --instructions");
    println!("daemon: {}", binary.display());
    println!(
        "calls: {} of each, 100 B values, {}-item store, one connection",
        counts.calls,
        crate::report::thousands(counts.items)
    );
    println!("idle session: {} instructions", counts.base);
    println!(
        "spread over {ROUNDS} rounds: get ±{:.0}, set ±{:.0} instructions per call",
        counts.per_get.spread, counts.per_set.spread
    );
    println!("instructions per get: {:.0}", counts.per_get.mean);
    println!("instructions per set: {:.0}", counts.per_set.mean);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("callgrind.out");
        std::fs::write(&out, "events: Ir\nsummary: 123456\ntotals: 9\n").expect("write");
        assert_eq!(read_total(&out).expect("total"), 123_456);
        std::fs::write(&out, "events: Ir\n").expect("write");
        assert!(read_total(&out).is_err());
    }

    #[test]
    fn cycles_through_small_items() {
        for items in [ITEMS, 1_000_000] {
            let mut seen = std::collections::HashSet::new();
            for i in 0..5000 {
                let n = small_item(i, items);
                assert!(n < items);
                assert!(!n.is_multiple_of(16));
                seen.insert(n);
            }
            // Every 100 B item of the small store is visited; the large one gets no repeats.
            let expected = if items == ITEMS { 937 } else { 5000 };
            assert_eq!(seen.len(), expected, "{items} items");
        }
    }
}
