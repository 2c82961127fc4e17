//! The printed table: every figure of the run, then each target's ratio and PASS or MISS.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::baselines::FrameSizes;
use crate::fixtures::{Creation, ValueSize};
use crate::machine::Machine;
use crate::measure::Stats;
use crate::scenarios::{Call, Row, Startup, StoreRun};
use crate::settings::Settings;

/// Everything one run measured.
#[derive(Debug)]
pub struct Results {
    /// Where it ran.
    pub machine: Machine,
    /// How it ran.
    pub settings: Settings,
    /// The daemon binary measured.
    pub binary: PathBuf,
    /// The get frame sizes baseline A copies.
    pub frames: FrameSizes,
    /// Baseline A with 1 and with 8 clients.
    pub ping: Vec<(usize, Stats)>,
    /// Baseline B, measured before and after the securestore runs: a shared disk's sync cost
    /// can move by an order of magnitude within one run.
    pub durability: [Durability; 2],
    /// Scenarios on the small store.
    pub small: StoreRun,
    /// Scenarios on the large store.
    pub large: StoreRun,
    /// Start-up times.
    pub startup: Startup,
    /// Each store's size and how it was made.
    pub stores: Vec<(u64, Creation)>,
}

/// Baseline B: what making a small write durable costs on the data folder's disk.
#[derive(Debug, Clone, Copy)]
pub struct Durability {
    /// Append 100 B + fdatasync.
    pub fdatasync: Stats,
    /// One-row SQLite transaction, WAL, `synchronous=FULL`.
    pub sqlite: Stats,
}

/// Baseline B moving by more than this factor between its two measurements is reported as noise.
const DRIFT_WARNING: f64 = 1.5;

const RULE: &str = "----------------------------------------------------------------------------------------------------------";

/// Prints the whole report on stdout.
///
/// # Errors
/// When a scenario a target needs is missing from the results (a bug in the bench).
pub fn print(results: &Results) -> anyhow::Result<()> {
    print_header(results);
    print_figures(results);
    print_startup_and_memory(results);
    print_targets(&targets(results)?);
    print_drift(results);
    Ok(())
}

fn print_header(results: &Results) {
    let settings = &results.settings;
    let mode = if settings.quick { "--quick" } else { "full" };
    println!("securestore-bench ({mode} run)");
    println!("machine: {}", results.machine);
    println!("data:    {}", settings.data.display());
    println!("daemon:  {}", results.binary.display());
    println!(
        "each figure: {:.1} s recorded after {:.1} s warm-up; get frames {} B request / {} B answer",
        settings.length.as_secs_f64(),
        settings.warmup.as_secs_f64(),
        results.frames.request,
        results.frames.response,
    );
    println!();
}

fn print_figures(results: &Results) {
    println!(
        "{:<48} {:>7} {:>11} {:>11} {:>10} {:>7} {:>9}",
        "measurement", "clients", "p50", "p99", "ops/s", "cs/op", "cpu/op"
    );
    println!("{RULE}");
    for (clients, stats) in &results.ping {
        print_line("A  socket ping-pong, get-sized frames", *clients, stats);
    }
    for (when, durability) in ["before", "after"].iter().zip(&results.durability) {
        print_line(
            &format!("B  append 100 B + fdatasync ({when})"),
            1,
            &durability.fdatasync,
        );
        print_line(
            &format!("B  SQLite 1-row FULL txn ({when})"),
            1,
            &durability.sqlite,
        );
    }
    for run in [&results.small, &results.large] {
        println!("{RULE}");
        for row in &run.rows {
            print_row(row);
        }
    }
    println!("{RULE}");
}

fn print_line(what: &str, clients: usize, stats: &Stats) {
    println!(
        "{what:<48} {clients:>7} {:>11} {:>11} {:>10}",
        latency(stats.p50),
        latency(stats.p99),
        thousands(stats.ops_per_sec.round() as u64),
    );
}

/// A securestore row: the times, then the daemon's own cost per call (stable where times are not).
fn print_row(row: &Row) {
    println!(
        "{:<48} {:>7} {:>11} {:>11} {:>10} {:>7.2} {:>9}",
        row.scenario.to_string(),
        row.scenario.clients,
        latency(row.stats.p50),
        latency(row.stats.p99),
        thousands(row.stats.ops_per_sec.round() as u64),
        row.cost.switches,
        latency(row.cost.cpu),
    );
}

fn print_startup_and_memory(results: &Results) {
    let startup = &results.startup;
    println!(
        "start-up, {} items, median of {} launches: first get answered {} \
         (socket bound {}, handshake answered {})",
        thousands(startup.items),
        startup.launches,
        millis(startup.median.first_get),
        millis(startup.median.bound),
        millis(startup.median.handshake),
    );
    println!(
        "RSS: {} freshly started on {} items; {} after the {}-item runs",
        mib(results.small.rss_started),
        thousands(results.small.items),
        mib(results.large.rss_after),
        thousands(results.large.items),
    );
    let stores: Vec<String> = results
        .stores
        .iter()
        .map(|(items, creation)| {
            let how = if creation.this_run {
                "created this run"
            } else {
                "reused, created"
            };
            format!(
                "{} items {how} in {:.1} s",
                thousands(*items),
                creation.took.as_secs_f64()
            )
        })
        .collect();
    println!("stores: {}", stores.join("; "));
    println!();
}

/// Whether a measured value must stay under or over its limit.
#[derive(Debug, Clone, Copy)]
enum Bound {
    AtMost(f64),
    AtLeast(f64),
}

/// One target: what is compared, the figures behind it, and the limit.
#[derive(Debug)]
struct Target {
    what: String,
    measured: String,
    value: f64,
    /// How `value` and the limit are printed, e.g. `×` or ` ms`.
    unit: &'static str,
    bound: Bound,
}

impl Target {
    fn ratio(what: String, measured: String, value: f64, bound: Bound) -> Self {
        Self {
            what,
            measured,
            value,
            unit: "×",
            bound,
        }
    }

    fn passes(&self) -> bool {
        match self.bound {
            Bound::AtMost(limit) => self.value <= limit,
            Bound::AtLeast(limit) => self.value >= limit,
        }
    }

    fn limit(&self) -> String {
        match self.bound {
            Bound::AtMost(limit) => format!("≤ {limit}{}", self.unit),
            Bound::AtLeast(limit) => format!("≥ {limit}{}", self.unit),
        }
    }
}

/// The targets, each computed from this run's figures (100 B values throughout).
fn targets(results: &Results) -> anyhow::Result<Vec<Target>> {
    let small = |call, clients| find(&results.small.rows, call, clients);
    let ping = |clients| {
        results
            .ping
            .iter()
            .find(|(n, _)| *n == clients)
            .map(|(_, stats)| *stats)
            .with_context(|| format!("no baseline A figure for {clients} clients"))
    };
    let (get1, get8) = (small(Call::Get, 1)?, small(Call::Get, 8)?);
    let (set1, set64) = (small(Call::Set, 1)?, small(Call::Set, 64)?);
    let large_get1 = find(&results.large.rows, Call::Get, 1)?;
    let (ping1, ping8) = (ping(1)?, ping(8)?);
    let sqlite = sqlite_rate(results);
    let large = thousands(results.large.items);
    Ok(vec![
        Target::ratio(
            "get p50, 1 client ÷ baseline A p50, 1 client".to_owned(),
            format!("{} ÷ {}", latency(get1.p50), latency(ping1.p50)),
            secs(get1.p50) / secs(ping1.p50),
            Bound::AtMost(1.5),
        ),
        Target::ratio(
            "get ops/s, 8 clients ÷ baseline A, 8 clients".to_owned(),
            format!("{} ÷ {}", rate(get8), rate(ping8)),
            get8.ops_per_sec / ping8.ops_per_sec,
            Bound::AtLeast(0.6),
        ),
        Target::ratio(
            "set ops/s, 1 client ÷ SQLite FULL txn/s (mean)".to_owned(),
            format!("{} ÷ {}", rate(set1), per_sec(sqlite)),
            set1.ops_per_sec / sqlite,
            Bound::AtLeast(0.8),
        ),
        Target::ratio(
            "set ops/s, 64 clients ÷ SQLite FULL txn/s (mean)".to_owned(),
            format!("{} ÷ {}", rate(set64), per_sec(sqlite)),
            set64.ops_per_sec / sqlite,
            Bound::AtLeast(8.0),
        ),
        Target::ratio(
            format!("get p50, 1 client: {large} ÷ 1,000 items"),
            format!("{} ÷ {}", latency(large_get1.p50), latency(get1.p50)),
            secs(large_get1.p50) / secs(get1.p50),
            Bound::AtMost(1.3),
        ),
        ready_target(results),
        rss_target("RSS idle", results.small.rss_started, 16.0),
        rss_target(
            &format!("RSS after the {large}-item runs"),
            results.large.rss_after,
            64.0,
        ),
    ])
}

fn ready_target(results: &Results) -> Target {
    let ready = results.startup.median.first_get;
    Target {
        what: format!(
            "ready (first get) after launch, {} items",
            thousands(results.startup.items)
        ),
        measured: millis(ready),
        value: secs(ready) * 1e3,
        unit: " ms",
        bound: Bound::AtMost(50.0),
    }
}

fn rss_target(what: &str, bytes: u64, limit_mib: f64) -> Target {
    Target {
        what: what.to_owned(),
        measured: mib(bytes),
        value: bytes as f64 / (1024.0 * 1024.0),
        unit: " MiB",
        bound: Bound::AtMost(limit_mib),
    }
}

fn print_targets(targets: &[Target]) {
    println!(
        "{:<50} {:<24} {:>9} {:>10} {:>6}",
        "target", "measured", "value", "target", "result"
    );
    println!("{RULE}");
    for target in targets {
        let value = if target.unit == "×" {
            format!("{:.2}×", target.value)
        } else {
            format!("{:.1}{}", target.value, target.unit)
        };
        println!(
            "{:<50} {:<24} {:>9} {:>10} {:>6}",
            target.what,
            target.measured,
            value,
            target.limit(),
            if target.passes() { "PASS" } else { "MISS" },
        );
    }
}

/// Warns when baseline B moved during the run, which makes the set ratios unreliable.
fn print_drift(results: &Results) {
    let [before, after] = &results.durability;
    let (a, b) = (before.sqlite.ops_per_sec, after.sqlite.ops_per_sec);
    let drift = a.max(b) / a.min(b);
    if drift > DRIFT_WARNING {
        println!(
            "note: the SQLite FULL rate moved {drift:.1}× between the start and the end of the run \
             (the disk is shared); the set ratios use their mean and are unreliable"
        );
    }
}

/// The 100 B small- or large-store figure for `call` with `clients` clients.
fn find(rows: &[Row], call: Call, clients: usize) -> anyhow::Result<Stats> {
    rows.iter()
        .find(|row| {
            let s = row.scenario;
            s.call == call && s.clients == clients && s.size == ValueSize::Small
        })
        .map(|row| row.stats)
        .with_context(|| format!("no {call:?} figure for {clients} clients"))
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// The SQLite FULL transaction rate the set targets compare with: the mean of its two measurements.
fn sqlite_rate(results: &Results) -> f64 {
    let [before, after] = &results.durability;
    (before.sqlite.ops_per_sec + after.sqlite.ops_per_sec) / 2.0
}

fn rate(stats: Stats) -> String {
    per_sec(stats.ops_per_sec)
}

fn per_sec(rate: f64) -> String {
    format!("{}/s", thousands(rate.round() as u64))
}

/// A latency in µs below 10 ms, in ms above.
fn latency(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros < 10_000.0 {
        format!("{micros:.1} µs")
    } else {
        format!("{:.1} ms", micros / 1e3)
    }
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
