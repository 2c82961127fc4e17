//! The transports side by side, on one daemon hosted in this process (`securestore_daemon::Host`):
//! get and set from one client over the Unix socket, over the in-process pipe, and a get from a
//! Java client (another process, through JNI and the socket) when the Java bindings are built.
//! Then the get of an in-process `securestore_bridge::Session` (what the Java, C and Swift hosts
//! call), which takes the direct lane, on a second hosted daemon of its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use securestore_backends::sqlite::{SqliteBackend, SqliteConfig};
use securestore_client::{Client, ConnectOptions, GetOptions, SetOptions};
use securestore_daemon::backend::BackendPaths;
use securestore_daemon::{Config, Host, HostConfig};

use crate::baselines::count_over;
use crate::fixtures::{self, ValueSize};
use crate::measure::{Recorder, Stats};
use crate::settings::Settings;
use crate::usage::Cost;

/// Items written before measuring, read and overwritten at random.
const ITEMS: u64 = 1000;
const PROJECT: &str = "@bench/transports";

/// One measured row: a label and its figures, or why it was not measured.
pub struct Row {
    /// What was measured.
    pub label: String,
    /// The figures, or the reason there are none.
    pub stats: Result<Stats, String>,
    /// Context switches and CPU per call of the whole bench process (client and hosted daemon),
    /// where measured: for the in-process pipe this is everything a call costs.
    pub cost: Option<Cost>,
}

/// The in-process 100 B get through the bridge's session (the direct lane), for the targets.
#[derive(Debug, Clone, Copy)]
pub struct InProcess {
    /// Its figures.
    pub stats: Stats,
    /// The bench process's context switches and CPU per get.
    pub cost: Cost,
}

/// The in-process get row of `rows`, if it was measured.
pub fn in_process_get(rows: &[Row]) -> Option<InProcess> {
    rows.iter()
        .find(|row| row.label == IN_PROCESS_GET)
        .and_then(|row| match (&row.stats, row.cost) {
            (Ok(stats), Some(cost)) => Some(InProcess {
                stats: *stats,
                cost,
            }),
            _ => None,
        })
}

/// The row the in-process targets are read from: the session the bindings use.
const IN_PROCESS_GET: &str = "get 100 B, 1 client, in-process (direct)";

/// A daemon hosted in this process on the default store, in a fresh folder under the bench data
/// folder (socket at `run/s.sock`). Keep the folder until the host is dropped.
///
/// # Errors
/// When the folder cannot be made or the host cannot start.
pub fn host_in(settings: &Settings, prefix: &str) -> anyhow::Result<(tempfile::TempDir, Host)> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&settings.data)
        .with_context(|| format!("cannot create the {prefix} bench folder"))?;
    let host = Host::start(
        HostConfig {
            socket: dir.path().join("run/s.sock"),
            paths: BackendPaths {
                data_dir: dir.path().join("data"),
                key_file: dir.path().join("state/master.key"),
            },
            config: Config::default(),
        },
        |paths: &BackendPaths| {
            Ok(Box::new(SqliteBackend::open(&SqliteConfig {
                data_dir: paths.data_dir.clone(),
                key_file: paths.key_file.clone(),
            })?) as Box<dyn securestore_backends::Backend>)
        },
    )?;
    Ok((dir, host))
}

/// Runs every transport's get and set with one client, on a store of [`ITEMS`] 100 B items.
///
/// # Errors
/// When the host cannot start or a client call fails.
pub async fn measure(settings: &Settings) -> anyhow::Result<Vec<Row>> {
    let (dir, host) = host_in(settings, "transports")?;
    let socket = dir.path().join("run/s.sock");
    let over_socket = Client::connect(&socket, PROJECT).await?;
    for i in 0..ITEMS {
        over_socket
            .set_item(
                &fixtures::key(i),
                fixtures::value(ValueSize::Small, i),
                SetOptions::default(),
            )
            .await?;
    }
    let in_process = Client::connect_stream(
        host.open_stream().await?,
        PROJECT,
        ConnectOptions::default(),
    )
    .await?;

    let mut rows = Vec::new();
    for (name, client) in [("socket", &over_socket), ("in-process", &in_process)] {
        for (call, write) in [("get", false), ("set", true)] {
            let (stats, cost) = run(client, write, settings).await?;
            rows.push(Row {
                label: format!("{call} 100 B, 1 client, {name}"),
                stats: Ok(stats),
                cost: Some(cost),
            });
        }
    }
    rows.push(Row {
        label: "get 100 B, 1 client, Java (JNI + socket)".to_owned(),
        stats: java_get(&socket, settings).await,
        cost: None,
    });
    drop((over_socket, in_process));
    tokio::task::spawn_blocking(move || host.stop())
        .await
        .context("the host's stop panicked")??;
    let (stats, cost) = direct_get(settings).await?;
    rows.push(Row {
        label: IN_PROCESS_GET.to_owned(),
        stats: Ok(stats),
        cost: Some(cost),
    });
    Ok(rows)
}

/// A daemon hosted through the bridge (`HostHandle`, as the bindings start it) and one in-process
/// `Session` on it, with [`ITEMS`] 100 B items.
type BridgeSetup = (
    tempfile::TempDir,
    securestore_bridge::HostHandle,
    securestore_bridge::Session,
);

/// The bridge session's 100 B get, one caller thread: it takes the direct lane (a pooled reader on
/// the calling thread). Blocking calls, so it runs on its own thread, not on this runtime.
async fn direct_get(settings: &Settings) -> anyhow::Result<(Stats, Cost)> {
    let data = settings.data.clone();
    let setup = tokio::task::spawn_blocking(move || bridge_setup(&data))
        .await
        .context("the bridge setup panicked")??;
    let window = settings.window();
    let counters = count_over(std::process::id(), window);
    let measured = tokio::task::spawn_blocking(move || {
        let mut recorder = Recorder::new(window);
        let mut i = 0u64;
        while recorder.running() {
            let n = i % ITEMS;
            i += 1;
            let began = Instant::now();
            let found = setup.2.get(&fixtures::key(n), None)?;
            if found.is_none() {
                bail!("item {n} is missing");
            }
            recorder.record(began);
        }
        Ok((recorder.into_samples(), setup))
    })
    .await
    .context("the direct get loop panicked")?;
    let (samples, (dir, host, session)) = measured?;
    let stats = Stats::from_samples(samples, window)?;
    let (opened, closed) = counters.await.context("the counter reader panicked")??;
    drop(session);
    tokio::task::spawn_blocking(move || host.stop())
        .await
        .context("the host's stop panicked")??;
    drop(dir);
    let ops = stats.ops_per_sec * window.length().as_secs_f64();
    Ok((stats, closed.per_op(opened, ops)))
}

/// Starts a daemon through the bridge in a fresh folder under `data` and fills it.
fn bridge_setup(data: &Path) -> anyhow::Result<BridgeSetup> {
    use securestore_bridge::{
        Batch, Condition, HostHandle, HostOptions, KeychainAccessible, Session,
    };
    let dir = tempfile::Builder::new()
        .prefix("direct")
        .tempdir_in(data)
        .context("cannot create the direct bench folder")?;
    let host = HostHandle::start(
        HostOptions {
            // Short: the bench folder is deep, and a socket path is at most 108 bytes.
            socket: dir.path().join("run/s.sock"),
            ..HostOptions::under(dir.path())
        },
        None,
    )?;
    let session = Session::connect_in_process(&host, PROJECT, None, None)?;
    let items: Vec<u64> = (0..ITEMS).collect();
    for chunk in items.chunks(securestore_proto::limits::MAX_BATCH_OPS) {
        let batch = Batch::default();
        for &i in chunk {
            batch.set(
                &fixtures::key(i),
                fixtures::value(ValueSize::Small, i).into(),
                None,
                KeychainAccessible::default(),
                Condition::None,
            );
        }
        session.write_batch(&batch)?;
    }
    Ok((dir, host, session))
}

async fn run(client: &Client, write: bool, settings: &Settings) -> anyhow::Result<(Stats, Cost)> {
    let window = settings.window();
    let counters = count_over(std::process::id(), window);
    let mut recorder = Recorder::new(window);
    let mut i = 0u64;
    while recorder.running() {
        let n = i % ITEMS;
        i += 1;
        let began = Instant::now();
        if write {
            client
                .set_item(
                    &fixtures::key(n),
                    fixtures::value(ValueSize::Small, i),
                    SetOptions::default(),
                )
                .await?;
        } else {
            let found = client
                .get_item(&fixtures::key(n), GetOptions::default())
                .await?;
            if found.is_none() {
                bail!("item {n} is missing");
            }
        }
        recorder.record(began);
    }
    let stats = Stats::from_samples(recorder.into_samples(), window)?;
    let (opened, closed) = counters.await.context("the counter reader panicked")??;
    let ops = stats.ops_per_sec * window.length().as_secs_f64();
    Ok((stats, closed.per_op(opened, ops)))
}

/// A Java process (`dev.securestore.BenchMain`, built by `bindings/java/run-tests.sh`) getting one
/// item in a loop through the JNI library and the socket; it prints `p50_ns p99_ns ops_per_sec`.
async fn java_get(socket: &Path, settings: &Settings) -> Result<Stats, String> {
    let target = target_dir().map_err(|e| format!("{e:#}"))?;
    let classes = [
        target.join("java/classes"),
        target.join("java/test-classes"),
    ];
    if !classes[1].join("dev/securestore/BenchMain.class").exists() {
        return Err("not measured: run bindings/java/run-tests.sh first".to_owned());
    }
    let library = ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("libsecurestore_jni.so"))
        .find(|path| path.exists())
        .ok_or("not measured: build the JNI library (cargo build --release -p securestore-jni)")?;
    let java_home = std::env::var("JAVA_HOME")
        .unwrap_or_else(|_| "/usr/lib/jvm/java-17-openjdk-amd64".to_owned());
    let classpath = format!("{}:{}", classes[0].display(), classes[1].display());
    let mut command = Command::new(Path::new(&java_home).join("bin/java"));
    command
        .arg(format!("-Dsecurestore.library={}", library.display()))
        .args(["-cp", &classpath, "dev.securestore.BenchMain"])
        .arg(socket)
        .arg(PROJECT)
        .arg(fixtures::key(0))
        .arg(settings.warmup.as_millis().to_string())
        .arg(settings.length.as_millis().to_string());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot run java: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let figures: Vec<f64> = text
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    match (output.status.success(), figures.as_slice()) {
        (true, [p50, p99, ops]) => Ok(Stats {
            p50: Duration::from_nanos(*p50 as u64),
            p99: Duration::from_nanos(*p99 as u64),
            ops_per_sec: *ops,
        }),
        _ => Err(format!(
            "the Java bench failed: {} {}",
            text.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// `target/`, from this executable's `target/<profile>/` folder.
fn target_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the bench's own executable")?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .context("the bench executable is not in a target/<profile> folder")
}

/// Prints the rows under their own heading, beside the socket ping-pong floor measured earlier.
pub fn print(rows: &[Row], ping_floor: Option<&Stats>) {
    println!();
    println!("transports: one daemon hosted in the bench process, one client, 1,000 items");
    println!("(cs/op, cpu/op: the whole bench process, client and hosted daemon together)");
    println!(
        "{:<48} {:>11} {:>11} {:>10} {:>7} {:>9}",
        "measurement", "p50", "p99", "ops/s", "cs/op", "cpu/op"
    );
    if let Some(floor) = ping_floor {
        line("A  socket ping-pong floor (tokio), 1 client", floor, None);
    }
    for row in rows {
        match &row.stats {
            Ok(stats) => line(&row.label, stats, row.cost),
            Err(reason) => println!("{:<48} {reason}", row.label),
        }
    }
}

fn line(label: &str, stats: &Stats, cost: Option<Cost>) {
    let cost = cost.map_or_else(String::new, |cost| {
        format!(
            " {:>7.2} {:>6.1} µs",
            cost.switches,
            cost.cpu.as_secs_f64() * 1e6
        )
    });
    println!(
        "{:<48} {:>8.1} µs {:>8.1} µs {:>10.0}{cost}",
        label,
        stats.p50.as_secs_f64() * 1e6,
        stats.p99.as_secs_f64() * 1e6,
        stats.ops_per_sec
    );
}
