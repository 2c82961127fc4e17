//! Command-line flags and the run's sizes and durations (`--quick` shortens everything).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::baselines::Echo;
use crate::measure::Window;

/// Printed for `--help`.
pub const USAGE: &str = "\
securestore-bench: measure securestored against this machine's own limits

usage: cargo run --release -p securestore-bench -- [--quick] [--with-instructions] [--transports] [--data DIR]
       securestore-bench --instructions [--calls N] [--daemon PATH] [--data DIR]

  --quick         shorter measurements and a 100,000-item large store instead of 1,000,000
  --with-instructions  also count instructions per get and per set on the small and the large
                  store (as --instructions --items N) and print the scale target on them (~1 min)
  --transports    only the transports rows (socket, in-process, Java) and the ping-pong floor
  --data DIR      where the reusable stores live [default: target/bench-data]
  --instructions  only the instructions the daemon executes per get and per set, counted by
                  `valgrind --tool=callgrind` (stable on a noisy machine; takes about a minute)
  --calls N       gets and sets counted by --instructions [default: 2000]
  --items N       store size for --instructions [default: 1000, a fresh store filled in order;
                  any other size uses (and if need be creates) the bench's store of N items]
  --daemon PATH   the securestored binary to measure [default: the one next to this executable]

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
    /// Whether `--instructions` was given: only the callgrind instruction counts.
    pub instructions: bool,
    /// Whether `--with-instructions` was given: the full report plus instruction counts on the
    /// small and the large store.
    pub with_instructions: bool,
    /// Calls of each kind the instruction counts are taken over.
    pub calls: u64,
    /// Items in the store the instruction counts are taken on.
    pub instruction_items: u64,
    /// `--daemon`: the daemon binary to measure instead of the one next to this executable.
    pub daemon: Option<PathBuf>,
}

/// What the command line asked for.
#[derive(Debug)]
pub enum Parsed {
    /// Run with these settings.
    Run(Settings),
    /// Print [`USAGE`] and stop.
    Help,
    /// Be a ping-pong echo server (the hidden `--echo-server KIND SOCKET RESPONSE_LEN` the bench
    /// starts as a child process).
    Echo {
        /// Which server.
        echo: Echo,
        /// Where to listen.
        socket: PathBuf,
        /// Bytes of every answer frame.
        response_len: usize,
    },
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
            instructions: false,
            with_instructions: false,
            calls: 2000,
            instruction_items: crate::instructions::ITEMS,
            daemon: None,
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
    let mut instructions = false;
    let mut with_instructions = false;
    let mut calls = None;
    let mut items = None;
    let mut daemon = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--echo-server" => {
                let mut next = |what: &str| {
                    args.next()
                        .with_context(|| format!("--echo-server needs {what}"))
                };
                let echo = Echo::parse(&next("a kind")?)?;
                let socket = PathBuf::from(next("a socket")?);
                let response_len = next("a frame length")?
                    .parse()
                    .context("the frame length is not a number")?;
                return Ok(Parsed::Echo {
                    echo,
                    socket,
                    response_len,
                });
            }
            "--quick" => quick = true,
            "--transports" => transports_only = true,
            "--instructions" => instructions = true,
            "--with-instructions" => with_instructions = true,
            "--calls" => {
                let n: u64 = args
                    .next()
                    .context("--calls needs a number")?
                    .parse()
                    .context("--calls needs a number")?;
                anyhow::ensure!(n > 0, "--calls must be at least 1");
                calls = Some(n);
            }
            "--items" => {
                let n: u64 = args
                    .next()
                    .context("--items needs a number")?
                    .parse()
                    .context("--items needs a number")?;
                anyhow::ensure!(n >= 100, "--items must be at least 100");
                items = Some(n);
            }
            "--daemon" => {
                daemon = Some(PathBuf::from(args.next().context("--daemon needs a path")?));
            }
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
    settings.instructions = instructions;
    settings.with_instructions = with_instructions;
    settings.daemon = daemon;
    if let Some(calls) = calls {
        settings.calls = calls;
    }
    if let Some(items) = items {
        settings.instruction_items = items;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str]) -> anyhow::Result<Parsed> {
        parse(args.iter().map(|arg| (*arg).to_owned()))
    }

    #[test]
    fn instructions_flags() {
        let Parsed::Run(settings) = parse_args(&[
            "--instructions",
            "--calls",
            "300",
            "--daemon",
            "/x/securestored",
        ])
        .expect("valid flags") else {
            panic!("not a run");
        };
        assert!(settings.instructions);
        assert_eq!(settings.calls, 300);
        assert_eq!(settings.daemon, Some(PathBuf::from("/x/securestored")));
        assert!(parse_args(&["--calls", "0"]).is_err());
        assert!(parse_args(&["--calls", "many"]).is_err());
    }

    #[test]
    fn echo_server_flags() {
        let Parsed::Echo {
            echo,
            socket,
            response_len,
        } = parse_args(&["--echo-server", "std", "/tmp/e.sock", "111"]).expect("valid flags")
        else {
            panic!("not an echo server");
        };
        assert_eq!(echo, Echo::Std);
        assert_eq!(socket, PathBuf::from("/tmp/e.sock"));
        assert_eq!(response_len, 111);
        assert!(parse_args(&["--echo-server", "fast", "/tmp/e.sock", "111"]).is_err());
        assert!(parse_args(&["--echo-server", "tokio", "/tmp/e.sock"]).is_err());
        for echo in Echo::ALL {
            assert_eq!(Echo::parse(echo.name()).expect("a known name"), echo);
        }
    }
}
