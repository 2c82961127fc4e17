//! Command-line flags and the run's sizes and durations (`--quick` shortens everything).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::measure::Window;

/// Printed for `--help`.
pub const USAGE: &str = "\
securestore-bench: measure securestored against this machine's own limits

usage: cargo run --release -p securestore-bench -- [--quick] [--transports] [--data DIR]

  --quick       shorter measurements and a 100,000-item large store instead of 1,000,000
  --transports  only the transports rows (socket, in-process, Java) and the ping-pong floor
  --data DIR  where the reusable stores live [default: target/bench-data]

Build the daemon first: cargo build --release --workspace";

/// What one run measures, and for how long.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether `--quick` was given.
    pub quick: bool,
    /// Whether `--transports` was given: only the transports rows and the ping-pong floor.
    pub transports_only: bool,
    /// The bench data folder: reusable stores and the durability baselines' scratch files.
    pub data: PathBuf,
    /// Run but not recorded at the start of each measurement, so connections and caches are warm.
    pub warmup: Duration,
    /// Recorded span of each measurement.
    pub length: Duration,
    /// Items in the small store.
    pub small_items: u64,
    /// Items in the large store (1,000,000; 100,000 with `--quick`).
    pub large_items: u64,
    /// Items in the store whose start-up is timed.
    pub startup_items: u64,
    /// Launches whose median start-up time is reported.
    pub launches: usize,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these settings.
    Run(Settings),
    /// Print [`USAGE`] and stop.
    Help,
}

impl Settings {
    /// A fresh measurement window: warm-up from now, then the recorded span.
    pub fn window(&self) -> Window {
        Window::after_warmup(self.warmup, self.length)
    }

    /// Concurrent client counts each securestore scenario runs with.
    pub fn client_counts(&self) -> [usize; 3] {
        [1, 8, 64]
    }

    fn new(quick: bool, data: PathBuf) -> Self {
        Self {
            quick,
            transports_only: false,
            data,
            warmup: Duration::from_millis(if quick { 100 } else { 300 }),
            length: Duration::from_millis(if quick { 500 } else { 2000 }),
            small_items: 1000,
            large_items: if quick { 100_000 } else { 1_000_000 },
            startup_items: 100_000,
            launches: if quick { 3 } else { 7 },
        }
    }
}

/// Parses the flags (without the program name).
///
/// # Errors
/// An unknown flag or a missing `--data` folder.
pub fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Parsed> {
    let mut quick = false;
    let mut transports_only = false;
    let mut data = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--transports" => transports_only = true,
            "--data" => data = Some(PathBuf::from(args.next().context("--data needs a folder")?)),
            "-h" | "--help" => return Ok(Parsed::Help),
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    let data = match data {
        Some(data) => data,
        None => default_data_dir()?,
    };
    let mut settings = Settings::new(quick, data);
    settings.transports_only = transports_only;
    Ok(Parsed::Run(settings))
}

/// `target/bench-data`: beside the profile folder this executable was built into.
fn default_data_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the bench's own executable")?;
    let target = exe
        .parent()
        .and_then(std::path::Path::parent)
        .context("the bench executable is not in a target/<profile> folder")?;
    Ok(target.join("bench-data"))
}
