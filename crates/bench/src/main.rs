//! `securestore-bench`: measures the real `securestored` through the client library and, in the same
//! run, what the machine itself allows (a bare socket round trip, `fdatasync`, a SQLite transaction),
//! then prints one table with the ratios against the targets of `docs/performance.md`.

mod baselines;
mod beyond;
mod crowd;
mod daemon;
mod fixtures;
mod instructions;
mod machine;
mod measure;
mod report;
mod rng;
mod scenarios;
mod settings;
mod transports;
mod usage;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::baselines::Echo;
use crate::fixtures::{Creation, Store};
use crate::machine::Machine;
use crate::report::{Durability, Results};
use crate::settings::{Parsed, Settings};

fn main() -> ExitCode {
    let settings = match settings::parse(std::env::args().skip(1)) {
        Ok(Parsed::Run(settings)) => settings,
        Ok(Parsed::Help) => {
            println!("{}", settings::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Echo {
            echo,
            socket,
            response_len,
        }) => {
            return match baselines::serve_echo(echo, &socket, response_len) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("securestore-bench echo server: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Err(err) => {
            eprintln!("securestore-bench: {err:#}");
            return ExitCode::from(2);
        }
    };
    if cfg!(debug_assertions) {
        eprintln!("securestore-bench: a debug build measures debug binaries; use --release");
    }
    let outcome = tokio::runtime::Runtime::new()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run(settings)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("securestore-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The stores a run uses, by role.
struct Stores {
    small: Store,
    large: Store,
    startup: Store,
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    if settings.transports_only {
        return run_transports(&settings).await;
    }
    let binary = daemon::binary(settings.daemon.as_deref())?;
    if settings.instructions {
        let counts = instructions::measure(&binary, &settings).await?;
        instructions::print(&binary, &counts);
        return Ok(());
    }
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("cannot create {}", settings.data.display()))?;
    let stores = Stores {
        small: Store::new(&settings.data, settings.small_items),
        large: Store::new(&settings.data, settings.large_items),
        startup: Store::new(&settings.data, settings.startup_items),
    };
    let created = prepare(&binary, &stores).await?;

    eprintln!("baseline A: socket ping-pong, std and tokio echo");
    let frames = baselines::get_frame_sizes()?;
    let mut ping = Vec::new();
    for echo in Echo::ALL {
        for clients in [1, 8] {
            ping.push(baselines::ping_pong(echo, frames, clients, &settings).await?);
        }
    }
    eprintln!("baseline B, before: fdatasync, SQLite");
    let durability_before = durability(&settings).await?;

    eprintln!("securestore, {} items", stores.small.items);
    let small = scenarios::run_store(&binary, &stores.small, &settings).await?;
    eprintln!("securestore, {} items", stores.large.items);
    let large = scenarios::run_store(&binary, &stores.large, &settings).await?;
    eprintln!("crowd: {} connections", crowd::CONNECTIONS);
    let crowd = crowd::measure(&binary, &stores.small, &settings).await?;
    eprintln!("start-up, {} items", stores.startup.items);
    let startup = scenarios::startup(&binary, &stores.startup, settings.launches).await?;
    eprintln!("baseline B, after: fdatasync, SQLite");
    let durability_after = durability(&settings).await?;

    eprintln!("transports: socket, in-process, Java");
    let transports = transports::measure(&settings).await?;
    eprintln!("beyond Expo: watch, list_keys, set_if");
    let beyond = beyond::measure(&settings).await?;
    let instructions = if settings.with_instructions {
        let mut counts = Vec::new();
        for items in [instructions::ITEMS, stores.large.items] {
            eprintln!("instructions, {items} items");
            let mut counting = settings.clone();
            counting.instruction_items = items;
            counts.push(instructions::measure(&binary, &counting).await?);
        }
        match counts[..] {
            [small, large] => Some([small, large]),
            _ => None,
        }
    } else {
        None
    };
    let ping_floor = ping
        .iter()
        .find(|p| p.echo == Echo::Tokio && p.clients == 1)
        .map(|p| p.stats);

    let results = Results {
        machine: Machine::describe(&settings.data),
        settings,
        binary,
        frames,
        ping,
        durability: [durability_before, durability_after],
        small,
        large,
        startup,
        stores: created,
        crowd,
        in_process: transports::in_process_get(&transports),
        instructions,
    };
    report::print(&results);
    transports::print(&transports, ping_floor.as_ref());
    beyond::print(&beyond);
    report::print_targets(&results)
}

/// `--transports`: the transports rows beside the 1-client ping-pong floor, nothing else.
async fn run_transports(settings: &Settings) -> anyhow::Result<()> {
    std::fs::create_dir_all(&settings.data)
        .with_context(|| format!("cannot create {}", settings.data.display()))?;
    let frames = baselines::get_frame_sizes()?;
    let floor = baselines::ping_pong(Echo::Tokio, frames, 1, settings)
        .await?
        .stats;
    let rows = transports::measure(settings).await?;
    let beyond = beyond::measure(settings).await?;
    println!("securestore-bench --transports");
    println!("machine: {}", Machine::describe(&settings.data));
    transports::print(&rows, Some(&floor));
    beyond::print(&beyond);
    Ok(())
}

/// Creates whichever stores earlier runs have not left behind.
async fn prepare(binary: &Path, stores: &Stores) -> anyhow::Result<Vec<(u64, Creation)>> {
    let mut created: Vec<(u64, Creation)> = Vec::new();
    for store in [&stores.small, &stores.startup, &stores.large] {
        if created.iter().any(|(items, _)| *items == store.items) {
            continue; // --quick: the large store is the start-up store
        }
        created.push((store.items, store.ensure(binary).await?));
    }
    Ok(created)
}

/// Baseline B, both parts.
async fn durability(settings: &Settings) -> anyhow::Result<Durability> {
    Ok(Durability {
        fdatasync: blocking(settings, baselines::fdatasync).await?,
        sqlite: blocking(settings, baselines::sqlite_full).await?,
    })
}

/// Runs a synchronous baseline on a blocking thread, in the bench data folder.
async fn blocking(
    settings: &Settings,
    baseline: fn(&Path, &Settings) -> anyhow::Result<baselines::Synced>,
) -> anyhow::Result<baselines::Synced> {
    let settings = settings.clone();
    tokio::task::spawn_blocking(move || baseline(&settings.data, &settings))
        .await
        .context("a baseline panicked")?
}
