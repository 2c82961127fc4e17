//! The printed table: every figure of the run, then each target's ratio and PASS or MISS.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::baselines::{Echo, FrameSizes, PingPong, Synced};
use crate::crowd::{self, Crowd};
use crate::fixtures::{Creation, ValueSize};
use crate::instructions::Counts;
use crate::machine::Machine;
use crate::measure::Stats;
use crate::scenarios::{Call, Row, Startup, StoreRun};
use crate::settings::Settings;
use crate::transports::InProcess;
use crate::usage::Cost;

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
    /// Baseline A: each echo server with 1 and with 8 clients.
    pub ping: Vec<PingPong>,
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
    /// 512 connections open, and 512 connections each making a get a second.
    pub crowd: Crowd,
    /// The in-process get through the bridge session (direct lane), when the transports rows
    /// measured it.
    pub in_process: Option<InProcess>,
    /// With `--with-instructions`: the counts on the 1,000-item and on the large store.
    pub instructions: Option<[Counts; 2]>,
}

/// Baseline B: what making a small write durable costs on the data folder's disk.
#[derive(Debug, Clone, Copy)]
pub struct Durability {
    /// Append 100 B + fdatasync.
    pub fdatasync: Synced,
    /// One-row SQLite transaction, WAL, `synchronous=FULL`.
    pub sqlite: Synced,
}

/// Baseline B moving by more than this factor between its two measurements is reported as noise.
const DRIFT_WARNING: f64 = 1.5;

const RULE: &str = "----------------------------------------------------------------------------------------------------------";

/// Prints the figures on stdout (the targets come last, from [`print_targets`]).
pub fn print(results: &Results) {
    print_header(results);
    print_figures(results);
    print_startup_and_memory(results);
    print_crowd(results);
    print_instructions(results);
}

fn print_instructions(results: &Results) {
    let Some(counts) = &results.instructions else {
        return;
    };
    println!();
    for count in counts {
        println!(
            "daemon instructions (callgrind, {} calls), {} items: {:.0} per get (±{:.0}), \
             {:.0} per set (±{:.0})",
            count.calls,
            thousands(count.items),
            count.per_get.mean,
            count.per_get.spread,
            count.per_set.mean,
            count.per_set.spread,
        );
    }
}

/// Prints every target with its ratio and PASS or MISS, then a note if the disk drifted.
///
/// # Errors
/// When a scenario a target needs is missing from the results (a bug in the bench).
pub fn print_targets(results: &Results) -> anyhow::Result<()> {
    println!();
    print_target_lines(&targets(results)?);
    print_drift(results);
    print_bounds(results)?;
    Ok(())
}

/// What no daemon could beat on this machine, from this run's own floors, beside the set targets
/// they bound: a set is at least a round trip plus a durable transaction, and wakes at least the
/// thread that reads it plus however often the transaction's sync sleeps.
fn print_bounds(results: &Results) -> anyhow::Result<()> {
    let std1 = results
        .ping
        .iter()
        .find(|p| p.echo == Echo::Std && p.clients == 1)
        .context("no std ping-pong figure for 1 client")?;
    let full = sqlite_rate(results);
    let [before, after] = &results.durability;
    let sync_switches = f64::midpoint(before.sqlite.cost.switches, after.sqlite.cost.switches);
    let round_trip = std1.stats.ops_per_sec;
    println!();
    println!("bounds from this run's floors (no daemon could do better on this machine):");
    println!(
        "  set ops/s, 1 client ÷ SQLite FULL: a round trip ({}) then a FULL txn ({}) \
         is at most {:.2}×",
        per_sec(round_trip),
        per_sec(full),
        round_trip / (round_trip + full),
    );
    println!(
        "  cs per set, 1 client: the request's wake-up plus the FULL txn's own {sync_switches:.2} \
         is at least {:.2}; {:.2} when another thread makes the transaction",
        1.0 + sync_switches,
        2.0 + sync_switches,
    );
    Ok(())
}

fn print_header(results: &Results) {
    let settings = &results.settings;
    let mode = if settings.quick { "--quick" } else { "full" };
    println!("securestore-bench ({mode} run)");
    println!("machine: {}", results.machine);
    println!("data:    {}", settings.data.display());
    println!("daemon:  {}", results.binary.display());
    // Other work on the machine moves times (and, less, CPU per call); say how busy it was.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let averages: Vec<&str> = load.split_whitespace().take(3).collect();
        println!(
            "load:    {} (1, 5, 15 min averages as the run ended)",
            averages.join(" ")
        );
    }
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
    for ping in &results.ping {
        let what = match ping.echo {
            Echo::Std => "A  ping-pong, std threads echo (the floor)",
            Echo::Tokio => "A  socket ping-pong, get-sized frames (tokio)",
        };
        print_costed(what, ping.clients, &ping.stats, ping.cost);
    }
    for (when, durability) in ["before", "after"].iter().zip(&results.durability) {
        print_costed(
            &format!("B  append 100 B + fdatasync ({when})"),
            1,
            &durability.fdatasync.stats,
            durability.fdatasync.cost,
        );
        print_costed(
            &format!("B  SQLite 1-row FULL txn ({when})"),
            1,
            &durability.sqlite.stats,
            durability.sqlite.cost,
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

/// A securestore row: the times, then the daemon's own cost per call (stable where times are not).
fn print_row(row: &Row) {
    print_costed(
        &row.scenario.to_string(),
        row.scenario.clients,
        &row.stats,
        row.cost,
    );
}

/// A row with the serving process's context switches and CPU per call beside the times.
fn print_costed(what: &str, clients: usize, stats: &Stats, cost: Cost) {
    println!(
        "{what:<48} {clients:>7} {:>11} {:>11} {:>10} {:>7.2} {:>9}",
        latency(stats.p50),
        latency(stats.p99),
        thousands(stats.ops_per_sec.round() as u64),
        cost.switches,
        latency(cost.cpu),
    );
}

fn print_crowd(results: &Results) {
    let crowd = &results.crowd;
    println!(
        "crowd, 1,000 items: RSS {} after start, {} with {} connections open",
        mib(crowd.rss_started),
        mib(crowd.rss_open),
        crowd::CONNECTIONS,
    );
    print_costed(
        &format!(
            "get 100 B beside {} conns at 1 get/s each",
            crowd::CONNECTIONS
        ),
        1,
        &crowd.foreground,
        crowd.cost,
    );
    println!(
        "  (the {} connections made {}/s; cs/op and cpu/op are per get served, theirs included)",
        crowd::CONNECTIONS,
        thousands(crowd.background_per_sec.round() as u64),
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

    fn count(what: String, measured: String, value: f64, bound: Bound) -> Self {
        Self {
            what,
            measured,
            value,
            unit: "",
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

/// The targets of issue 11 (and the earlier ones it does not replace), each computed from this
/// run's figures (100 B values throughout).
fn targets(results: &Results) -> anyhow::Result<Vec<Target>> {
    let small = |call, clients| find_row(&results.small.rows, call, clients);
    let large = |call, clients| find_row(&results.large.rows, call, clients);
    let ping = |echo, clients| {
        results
            .ping
            .iter()
            .find(|p| p.echo == echo && p.clients == clients)
            .copied()
            .with_context(|| format!("no {echo:?} baseline A figure for {clients} clients"))
    };
    let (get1, get8) = (small(Call::Get, 1)?, small(Call::Get, 8)?);
    let (set1, set64) = (small(Call::Set, 1)?, small(Call::Set, 64)?);
    let std8 = ping(Echo::Std, 8)?;
    let tokio1 = ping(Echo::Tokio, 1)?;
    let sqlite = sqlite_rate(results);
    let items = thousands(results.large.items);
    let mut targets = vec![
        Target::count(
            "wake-ups (daemon cs) per get, 1 client".to_owned(),
            format!("{:.2} cs/get", get1.cost.switches),
            get1.cost.switches,
            Bound::AtMost(1.5),
        ),
        Target::count(
            "wake-ups (daemon cs) per set, 1 client".to_owned(),
            format!("{:.2} cs/set", set1.cost.switches),
            set1.cost.switches,
            Bound::AtMost(3.0),
        ),
        Target::ratio(
            "daemon CPU/get, 8 clients ÷ std echo CPU/rt".to_owned(),
            format!("{} ÷ {}", latency(get8.cost.cpu), latency(std8.cost.cpu)),
            secs(get8.cost.cpu) / secs(std8.cost.cpu),
            Bound::AtMost(2.5),
        ),
        Target::ratio(
            "get ops/s, 8 clients ÷ std ping-pong, 8 clients".to_owned(),
            format!("{} ÷ {}", rate(get8.stats), rate(std8.stats)),
            get8.stats.ops_per_sec / std8.stats.ops_per_sec,
            Bound::AtLeast(0.5),
        ),
        Target::ratio(
            "set ops/s, 1 client ÷ SQLite FULL txn/s (mean)".to_owned(),
            format!("{} ÷ {}", rate(set1.stats), per_sec(sqlite)),
            set1.stats.ops_per_sec / sqlite,
            Bound::AtLeast(0.9),
        ),
        Target::ratio(
            "set ops/s, 64 clients ÷ SQLite FULL txn/s (mean)".to_owned(),
            format!("{} ÷ {}", rate(set64.stats), per_sec(sqlite)),
            set64.stats.ops_per_sec / sqlite,
            Bound::AtLeast(10.0),
        ),
    ];
    targets.extend(in_process_targets(results.in_process));
    let (large_get1, large_set1) = (large(Call::Get, 1)?, large(Call::Set, 1)?);
    let (large_get8, large_set64) = (large(Call::Get, 8)?, large(Call::Set, 64)?);
    targets.extend([
        Target::ratio(
            format!("get p50, 1 client: {items} ÷ 1,000 items"),
            format!(
                "{} ÷ {}",
                latency(large_get1.stats.p50),
                latency(get1.stats.p50)
            ),
            secs(large_get1.stats.p50) / secs(get1.stats.p50),
            Bound::AtMost(1.3),
        ),
        slowdown(&items, "get", 8, get8.stats, large_get8.stats),
        slowdown(&items, "set", 1, set1.stats, large_set1.stats),
        slowdown(&items, "set", 64, set64.stats, large_set64.stats),
        worst_scale(results)?,
    ]);
    if let Some([small, large]) = &results.instructions {
        for (call, small, large) in [
            ("get", small.per_get.mean, large.per_get.mean),
            ("set", small.per_set.mean, large.per_set.mean),
        ] {
            targets.push(Target::ratio(
                format!("instructions per {call}: {items} ÷ 1,000 items"),
                format!("{large:.0} ÷ {small:.0}"),
                large / small,
                Bound::AtMost(1.3),
            ));
        }
    }
    targets.extend([
        rss_target("RSS idle", results.small.rss_started, 16.0),
        rss_target(
            &format!("RSS, {} connections open", crowd::CONNECTIONS),
            results.crowd.rss_open,
            64.0,
        ),
        rss_target(
            &format!("RSS after the {items}-item runs"),
            results.large.rss_after,
            64.0,
        ),
        Target::count(
            format!("cs per get, 1 client + {} at 1 get/s", crowd::CONNECTIONS),
            format!("{:.2} cs/get", results.crowd.cost.switches),
            results.crowd.cost.switches,
            Bound::AtMost(1.5),
        ),
        Target::ratio(
            "(earlier) get p50, 1 client ÷ tokio ping-pong p50".to_owned(),
            format!(
                "{} ÷ {}",
                latency(get1.stats.p50),
                latency(tokio1.stats.p50)
            ),
            secs(get1.stats.p50) / secs(tokio1.stats.p50),
            Bound::AtMost(1.5),
        ),
        ready_target(results),
    ]);
    Ok(targets)
}

/// The in-process get targets, on the bridge session's get (the direct lane, what the bindings
/// call): p50 ≤ 10 µs and no context switch per get (counted over the whole bench process, client
/// and hosted daemon; "none" allows 1 in 100 for a stray timer).
fn in_process_targets(in_process: Option<InProcess>) -> Vec<Target> {
    let Some(in_process) = in_process else {
        return Vec::new();
    };
    vec![
        Target {
            what: "in-process get p50, 1 client".to_owned(),
            measured: latency(in_process.stats.p50),
            value: secs(in_process.stats.p50) * 1e6,
            unit: " µs",
            bound: Bound::AtMost(10.0),
        },
        Target::count(
            "in-process get: cs per get (whole process)".to_owned(),
            format!("{:.2} cs/get", in_process.cost.switches),
            in_process.cost.switches,
            Bound::AtMost(0.01),
        ),
    ]
}

/// How much slower `call` with `clients` clients runs on the large store: the 1,000-item ops/s
/// over the large store's.
fn slowdown(items: &str, call: &str, clients: usize, small: Stats, large: Stats) -> Target {
    Target::ratio(
        format!("{call} ops/s, {clients} clients: 1,000 ÷ {items} items"),
        format!("{} ÷ {}", rate(small), rate(large)),
        small.ops_per_sec / large.ops_per_sec,
        Bound::AtMost(1.3),
    )
}

/// The worst slowdown from the 1,000-item to the large store over every get and set row (both
/// sizes, all client counts), by p50 and by ops/s.
fn worst_scale(results: &Results) -> anyhow::Result<Target> {
    let mut worst: Option<(f64, String)> = None;
    for row in &results.small.rows {
        let s = row.scenario;
        let large = results
            .large
            .rows
            .iter()
            .find(|r| {
                let l = r.scenario;
                l.call == s.call && l.size == s.size && l.clients == s.clients
            })
            .with_context(|| format!("no large-store row for {s}"))?;
        let by_p50 = secs(large.stats.p50) / secs(row.stats.p50);
        let by_rate = row.stats.ops_per_sec / large.stats.ops_per_sec;
        let (ratio, how) = if by_p50 >= by_rate {
            (by_p50, "p50")
        } else {
            (by_rate, "ops/s")
        };
        if worst.as_ref().is_none_or(|(w, _)| ratio > *w) {
            let call = match s.call {
                Call::Get => "get",
                Call::Set => "set",
            };
            worst = Some((
                ratio,
                format!("{call} {}, {} cl, {how}", s.size.label(), s.clients),
            ));
        }
    }
    let (value, measured) = worst.context("no get or set rows")?;
    Ok(Target::ratio(
        format!(
            "worst get/set figure: {} ÷ 1,000 items",
            thousands(results.large.items)
        ),
        measured,
        value,
        Bound::AtMost(1.3),
    ))
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

fn print_target_lines(targets: &[Target]) {
    println!(
        "{:<50} {:<24} {:>9} {:>10} {:>6}",
        "target", "measured", "value", "target", "result"
    );
    println!("{RULE}");
    for target in targets {
        let value = if target.unit == "×" {
            format!("{:.2}×", target.value)
        } else if target.unit.is_empty() {
            format!("{:.2}", target.value)
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
    let (a, b) = (
        before.sqlite.stats.ops_per_sec,
        after.sqlite.stats.ops_per_sec,
    );
    let drift = a.max(b) / a.min(b);
    if drift > DRIFT_WARNING {
        println!(
            "note: the SQLite FULL rate moved {drift:.1}× between the start and the end of the run \
             (the disk is shared); the set ratios use their mean and are unreliable"
        );
    }
}

/// The 100 B small- or large-store row for `call` with `clients` clients.
fn find_row(rows: &[Row], call: Call, clients: usize) -> anyhow::Result<Row> {
    rows.iter()
        .find(|row| {
            let s = row.scenario;
            s.call == call && s.clients == clients && s.size == ValueSize::Small
        })
        .copied()
        .with_context(|| format!("no {call:?} figure for {clients} clients"))
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

/// The SQLite FULL transaction rate the set targets compare with: the mean of its two measurements.
fn sqlite_rate(results: &Results) -> f64 {
    let [before, after] = &results.durability;
    (before.sqlite.stats.ops_per_sec + after.sqlite.stats.ops_per_sec) / 2.0
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
