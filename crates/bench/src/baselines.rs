//! What the machine itself allows, measured in the same run as securestore: (A) a bare request and
//! answer over a Unix socket with the frame sizes of a get, against a blocking std-thread echo (the
//! floor) and a tokio echo, each in a child process whose context switches and CPU per round trip
//! are read from `/proc` as the daemon's are, and (B) the cost of making a small write durable, with
//! `fdatasync` and with a one-row SQLite transaction, with the context switches and CPU of the
//! thread that makes them.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use securestore_proto::tarpc::{ClientMessage, Request, Response, context};
use securestore_proto::{
    GetOptions, Item, KeychainAccessible, SecretString, SecureStoreRequest, SecureStoreResponse,
    codec,
};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::runtime::Runtime;

use crate::fixtures::{self, ValueSize};
use crate::measure::{Recorder, Stats, Window, join_workers};
use crate::rng::Rng;
use crate::settings::Settings;
use crate::usage::{Cost, Usage};

/// Bytes of a frame's length prefix (u32, big-endian), as `proto::handshake` frames them.
const PREFIX: usize = 4;
/// Rows the SQLite baseline rewrites at random, like a small store.
const SQLITE_ROWS: u64 = 1000;

/// The on-wire length of a get request and of its answer, prefixes included.
#[derive(Debug, Clone, Copy)]
pub struct FrameSizes {
    /// A get of a 100 B item.
    pub request: usize,
    /// Its answer, carrying the value.
    pub response: usize,
}

/// The wire sizes of a get for a 100 B value, encoded by the daemon's own codec.
///
/// # Errors
/// When the codec refuses the messages (it would refuse real ones too).
pub fn get_frame_sizes() -> anyhow::Result<FrameSizes> {
    let request = ClientMessage::Request(Request {
        context: context::current(),
        id: 1,
        message: SecureStoreRequest::GetItem {
            key: fixtures::key(500_001),
            options: GetOptions::default(),
        },
    });
    let item = Item {
        value: SecretString::from(fixtures::value(ValueSize::Small, 0)),
        accessible: KeychainAccessible::default(),
    };
    let response = Response {
        request_id: 1,
        message: Ok(SecureStoreResponse::GetItem(Ok(Some(item)))),
    };
    let encoded = |bytes: std::io::Result<Vec<u8>>| -> anyhow::Result<usize> {
        Ok(PREFIX + bytes.context("cannot encode a get frame")?.len())
    };
    Ok(FrameSizes {
        request: encoded(codec::encode(&request, usize::MAX))?,
        response: encoded(codec::encode(&response, usize::MAX))?,
    })
}

/// Which echo server answers a ping-pong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// Blocking std threads: one accept thread, one thread per connection doing `read`/`write`.
    /// The floor: a request wakes exactly the one thread that answers it.
    Std,
    /// A tokio multi-thread runtime, one task per connection (the shape of an async server).
    Tokio,
}

impl Echo {
    /// Both kinds, the floor first.
    pub const ALL: [Self; 2] = [Self::Std, Self::Tokio];

    /// As given to `--echo-server` and printed in the table.
    pub fn name(self) -> &'static str {
        match self {
            Self::Std => "std",
            Self::Tokio => "tokio",
        }
    }

    /// The kind named `name`.
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse(name: &str) -> anyhow::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|echo| echo.name() == name)
            .with_context(|| format!("unknown echo server {name:?} (std or tokio)"))
    }
}

/// An echo server in a child process (this executable with the hidden `--echo-server` flag), so
/// its context switches and CPU are read from its own `/proc/<pid>` exactly as the daemon's are,
/// and it shares neither threads nor allocator with the bench's clients.
struct EchoServer {
    child: Child,
    socket: PathBuf,
    /// Holds the socket.
    _dir: TempDir,
}

impl EchoServer {
    fn start(echo: Echo, response_len: usize) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("securestore-bench-echo")
            .tempdir()
            .context("cannot create the echo socket folder")?;
        let socket = dir.path().join("echo.sock");
        let exe = std::env::current_exe().context("cannot find the bench's own executable")?;
        let child = Command::new(exe)
            .arg("--echo-server")
            .arg(echo.name())
            .arg(&socket)
            .arg(response_len.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("cannot start the echo server process")?;
        let mut server = Self {
            child,
            socket,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&server.socket).is_err() {
            if let Some(status) = server.child.try_wait().context("cannot check the echo")? {
                bail!("the echo server exited with {status}");
            }
            ensure!(Instant::now() < deadline, "the echo server did not bind");
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // It holds nothing worth a clean exit.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A frame of `len` bytes in all, prefix included.
fn frame(len: usize) -> Vec<u8> {
    let body = len.saturating_sub(PREFIX);
    let mut bytes = u32::try_from(body)
        .unwrap_or(u32::MAX)
        .to_be_bytes()
        .to_vec();
    bytes.resize(PREFIX + body, 0);
    bytes
}

/// The body of the `--echo-server KIND SOCKET RESPONSE_LEN` child: binds `socket` and answers every
/// request frame with a `response_len`-byte frame until killed.
///
/// # Errors
/// When the socket cannot be bound or the runtime cannot start.
pub fn serve_echo(echo: Echo, socket: &Path, response_len: usize) -> anyhow::Result<()> {
    let response: Arc<[u8]> = Arc::from(frame(response_len));
    match echo {
        Echo::Std => {
            let listener = std::os::unix::net::UnixListener::bind(socket)
                .context("cannot bind the echo socket")?;
            for stream in listener.incoming() {
                let stream = stream.context("cannot accept")?;
                let response = Arc::clone(&response);
                std::thread::spawn(move || std_echo(stream, &response));
            }
            Ok(())
        }
        Echo::Tokio => {
            let runtime = Runtime::new().context("cannot start the echo server's runtime")?;
            runtime.block_on(async {
                let listener = UnixListener::bind(socket).context("cannot bind the echo socket")?;
                while let Ok((stream, _)) = listener.accept().await {
                    tokio::spawn(tokio_echo(stream, Arc::clone(&response)));
                }
                Ok(())
            })
        }
    }
}

/// Reads length-prefixed frames through a buffer (one read per frame, like a framed codec) and
/// answers each with `response`, blocking, until the peer closes.
fn std_echo(stream: std::os::unix::net::UnixStream, response: &[u8]) -> std::io::Result<()> {
    use std::io::Read as _;
    let mut writer = stream.try_clone()?;
    let mut reader = std::io::BufReader::new(stream);
    let mut body = Vec::new();
    loop {
        let mut prefix = [0; PREFIX];
        if reader.read_exact(&mut prefix).is_err() {
            return Ok(());
        }
        body.resize(u32::from_be_bytes(prefix) as usize, 0);
        reader.read_exact(&mut body)?;
        writer.write_all(response)?;
    }
}

/// [`std_echo`] as a tokio task.
async fn tokio_echo(stream: UnixStream, response: Arc<[u8]>) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    let mut body = Vec::new();
    loop {
        let mut prefix = [0; PREFIX];
        if stream.read_exact(&mut prefix).await.is_err() {
            return Ok(());
        }
        body.resize(u32::from_be_bytes(prefix) as usize, 0);
        stream.read_exact(&mut body).await?;
        stream.get_mut().write_all(&response).await?;
    }
}

/// One ping-pong measurement: the clients' figures and what each round trip cost the echo process.
#[derive(Debug, Clone, Copy)]
pub struct PingPong {
    /// The echo server measured.
    pub echo: Echo,
    /// Concurrent clients.
    pub clients: usize,
    /// Latency and throughput.
    pub stats: Stats,
    /// The echo process's context switches and CPU per round trip.
    pub cost: Cost,
}

/// Baseline A: `clients` connections, each sending a get-sized request and waiting for a get-sized
/// answer, one at a time, against `echo`. The std echo is driven by blocking std threads (one per
/// client), the tokio echo by tokio tasks in the bench's runtime, as before.
///
/// # Errors
/// When the echo server cannot start or a connection fails.
pub async fn ping_pong(
    echo: Echo,
    frames: FrameSizes,
    clients: usize,
    settings: &Settings,
) -> anyhow::Result<PingPong> {
    let server = EchoServer::start(echo, frames.response)?;
    let request: Arc<[u8]> = Arc::from(frame(frames.request));
    let window = settings.window();
    let counters = count_over(server.pid(), window);
    let mut held = Vec::new();
    let stats = match echo {
        Echo::Tokio => {
            let mut workers = Vec::with_capacity(clients);
            for _ in 0..clients {
                let stream = UnixStream::connect(&server.socket)
                    .await
                    .context("cannot connect to the echo server")?;
                let request = Arc::clone(&request);
                workers.push(tokio::spawn(ping_worker(
                    BufReader::new(stream),
                    request,
                    frames.response,
                    window,
                )));
            }
            join_workers(workers, window).await?
        }
        Echo::Std => {
            let mut threads = Vec::with_capacity(clients);
            for _ in 0..clients {
                let stream = std::os::unix::net::UnixStream::connect(&server.socket)
                    .context("cannot connect to the echo server")?;
                let request = Arc::clone(&request);
                threads.push(std::thread::spawn(move || {
                    std_ping_worker(stream, &request, frames.response, window)
                }));
            }
            let (stats, streams) = tokio::task::spawn_blocking(move || {
                let mut samples = Vec::new();
                let mut streams = Vec::new();
                for thread in threads {
                    let (done, stream) = thread
                        .join()
                        .map_err(|_| anyhow::anyhow!("a ping-pong thread panicked"))??;
                    samples.extend(done);
                    streams.push(stream);
                }
                anyhow::Ok((Stats::from_samples(samples, window)?, streams))
            })
            .await
            .context("the ping-pong join panicked")??;
            // A closed connection ends its echo thread, and a thread's counters leave
            // `/proc/<pid>/task` with it: hold the connections until the counters are read.
            held = streams;
            stats
        }
    };
    let (opened, closed) = counters.await.context("the counter reader panicked")??;
    drop(held);
    let ops = stats.ops_per_sec * window.length().as_secs_f64();
    Ok(PingPong {
        echo,
        clients,
        stats,
        cost: closed.per_op(opened, ops),
    })
}

/// Reads the counters of process `pid` as `window` opens and as it closes.
pub fn count_over(
    pid: u32,
    window: Window,
) -> tokio::task::JoinHandle<anyhow::Result<(Usage, Usage)>> {
    tokio::spawn(async move {
        tokio::time::sleep_until(window.start.into()).await;
        let opened = Usage::of(pid)?;
        tokio::time::sleep_until(window.end.into()).await;
        anyhow::Ok((opened, Usage::of(pid)?))
    })
}

async fn ping_worker(
    mut stream: BufReader<UnixStream>,
    request: Arc<[u8]>,
    response_len: usize,
    window: Window,
) -> anyhow::Result<Vec<u64>> {
    let mut answer = vec![0; response_len];
    let mut recorder = Recorder::new(window);
    while recorder.running() {
        let began = Instant::now();
        stream.get_mut().write_all(&request).await?;
        stream.read_exact(&mut answer).await?;
        recorder.record(began);
    }
    Ok(recorder.into_samples())
}

/// [`ping_worker`] on a blocking thread; hands its connection back, still open.
fn std_ping_worker(
    mut stream: std::os::unix::net::UnixStream,
    request: &[u8],
    response_len: usize,
    window: Window,
) -> anyhow::Result<(Vec<u64>, std::os::unix::net::UnixStream)> {
    use std::io::Read as _;
    let mut answer = vec![0; response_len];
    let mut recorder = Recorder::new(window);
    while recorder.running() {
        let began = Instant::now();
        stream.write_all(request)?;
        stream.read_exact(&mut answer)?;
        recorder.record(began);
    }
    Ok((recorder.into_samples(), stream))
}

/// A baseline B figure: its times, and what each operation cost the one thread that made it (the
/// sync's own sleeps: how many wake-ups making a write durable takes on this disk).
#[derive(Debug, Clone, Copy)]
pub struct Synced {
    pub stats: Stats,
    pub cost: Cost,
}

/// Runs `op` until `window` closes, recording the operations inside it, and reads this thread's
/// counters around all of them.
fn synced(window: Window, mut op: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Synced> {
    let mut recorder = Recorder::new(window);
    let opened = Usage::of_this_thread()?;
    let mut ops = 0u32;
    while recorder.running() {
        let began = Instant::now();
        op()?;
        recorder.record(began);
        ops += 1;
    }
    let cost = Usage::of_this_thread()?.per_op(opened, f64::from(ops));
    Ok(Synced {
        stats: Stats::from_samples(recorder.into_samples(), window)?,
        cost,
    })
}

/// Baseline B (1): append a 100 B record to a file in `dir` and `fdatasync` it, one at a time.
///
/// # Errors
/// When the file cannot be written or synced.
pub fn fdatasync(dir: &Path, settings: &Settings) -> anyhow::Result<Synced> {
    let path = dir.join("baseline-fdatasync.log");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let record = [b'r'; 100];
    let synced = synced(settings.window(), || {
        file.write_all(&record).context("cannot append a record")?;
        file.sync_data().context("fdatasync failed")
    })?;
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    Ok(synced)
}

/// Baseline B (2): one-row transactions (replace a random row's 100 B value) in a WAL database with
/// `synchronous=FULL`, as the daemon's store is configured, in `dir`.
///
/// # Errors
/// When SQLite fails.
pub fn sqlite_full(dir: &Path, settings: &Settings) -> anyhow::Result<Synced> {
    let scratch = tempfile::Builder::new()
        .prefix("baseline-sqlite")
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a folder in {}", dir.display()))?;
    let mut conn = open_full_sync(&scratch.path().join("baseline.sqlite"))?;
    let value = fixtures::value(ValueSize::Small, 0).into_bytes();
    let mut rng = Rng::seeded(7);
    synced(settings.window(), || {
        let row = i64::try_from(rng.below(SQLITE_ROWS)).context("row number out of range")?;
        let tx = conn.transaction().context("cannot begin")?;
        tx.prepare_cached("INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)")
            .and_then(|mut insert| insert.execute(rusqlite::params![row, value]))
            .context("cannot write a row")?;
        tx.commit().context("cannot commit")
    })
}

fn open_full_sync(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .context("cannot turn on WAL")?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "SQLite kept journal mode {mode}"
    );
    conn.pragma_update(None, "synchronous", "FULL")
        .context("cannot set synchronous=FULL")?;
    conn.execute(
        "CREATE TABLE kv (k INTEGER PRIMARY KEY, v BLOB NOT NULL)",
        [],
    )
    .context("cannot create the table")?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    /// Each echo answers every request frame with exactly one answer frame of the asked length.
    #[test]
    fn echo_servers_answer_each_frame() {
        for echo in Echo::ALL {
            let dir = tempfile::tempdir().expect("temp dir");
            let socket = dir.path().join("echo.sock");
            let path = socket.clone();
            // The server runs until the test process ends.
            std::thread::spawn(move || serve_echo(echo, &path, 111));
            let mut stream = loop {
                match std::os::unix::net::UnixStream::connect(&socket) {
                    Ok(stream) => break stream,
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            };
            let request = frame(44);
            assert_eq!(request.len(), 44);
            assert_eq!(&request[..PREFIX], &40u32.to_be_bytes());
            for _ in 0..3 {
                stream.write_all(&request).expect("send");
                let mut answer = [0; 111];
                stream.read_exact(&mut answer).expect("answer");
                assert_eq!(&answer[..PREFIX], &107u32.to_be_bytes(), "{echo:?}");
            }
            // Nothing more than the three answers was sent.
            stream
                .set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            let mut extra = [0; 1];
            assert!(
                stream.read(&mut extra).is_err(),
                "{echo:?} sent extra bytes"
            );
        }
    }
}
