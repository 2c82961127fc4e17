//! What the machine itself allows, measured in the same run as securestore: (A) a bare request and
//! answer over a Unix socket with the frame sizes of a get, and (B) the cost of making a small write
//! durable, with `fdatasync` and with a one-row SQLite transaction.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
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

/// A trivial server on its own runtime (as the daemon has its own process) that answers every
/// request frame with a fixed response frame.
struct EchoServer {
    runtime: Option<Runtime>,
    socket: PathBuf,
    /// Holds the socket.
    _dir: TempDir,
}

impl EchoServer {
    fn start(response_len: usize) -> anyhow::Result<Self> {
        let runtime = Runtime::new().context("cannot start the echo server's runtime")?;
        let dir = tempfile::Builder::new()
            .prefix("securestore-bench-echo")
            .tempdir()
            .context("cannot create the echo socket folder")?;
        let socket = dir.path().join("echo.sock");
        let listener = {
            let _context = runtime.enter();
            UnixListener::bind(&socket).context("cannot bind the echo socket")?
        };
        runtime.spawn(accept_loop(listener, Arc::from(frame(response_len))));
        Ok(Self {
            runtime: Some(runtime),
            socket,
            _dir: dir,
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime may block, which an async caller must not do.
            runtime.shutdown_background();
        }
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

async fn accept_loop(listener: UnixListener, response: Arc<[u8]>) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(echo(stream, Arc::clone(&response)));
    }
}

/// Reads length-prefixed frames through a buffer (one read per frame, like a framed codec) and
/// answers each with `response`, until the peer closes.
async fn echo(stream: UnixStream, response: Arc<[u8]>) -> std::io::Result<()> {
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

/// Baseline A: `clients` connections, each sending a get-sized request and waiting for a get-sized
/// answer, one at a time.
///
/// # Errors
/// When the echo server cannot start or a connection fails.
pub async fn ping_pong(
    frames: FrameSizes,
    clients: usize,
    settings: &Settings,
) -> anyhow::Result<Stats> {
    let server = EchoServer::start(frames.response)?;
    let mut streams = Vec::with_capacity(clients);
    for _ in 0..clients {
        let stream = UnixStream::connect(&server.socket)
            .await
            .context("cannot connect to the echo server")?;
        streams.push(BufReader::new(stream));
    }
    let request: Arc<[u8]> = Arc::from(frame(frames.request));
    let window = settings.window();
    let workers = streams
        .into_iter()
        .map(|stream| {
            let request = Arc::clone(&request);
            tokio::spawn(ping_worker(stream, request, frames.response, window))
        })
        .collect();
    join_workers(workers, window).await
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

/// Baseline B (1): append a 100 B record to a file in `dir` and `fdatasync` it, one at a time.
///
/// # Errors
/// When the file cannot be written or synced.
pub fn fdatasync(dir: &Path, settings: &Settings) -> anyhow::Result<Stats> {
    let path = dir.join("baseline-fdatasync.log");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let record = [b'r'; 100];
    let window = settings.window();
    let mut recorder = Recorder::new(window);
    while recorder.running() {
        let began = Instant::now();
        file.write_all(&record).context("cannot append a record")?;
        file.sync_data().context("fdatasync failed")?;
        recorder.record(began);
    }
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    Stats::from_samples(recorder.into_samples(), window)
}

/// Baseline B (2): one-row transactions (replace a random row's 100 B value) in a WAL database with
/// `synchronous=FULL`, as the daemon's store is configured, in `dir`.
///
/// # Errors
/// When SQLite fails.
pub fn sqlite_full(dir: &Path, settings: &Settings) -> anyhow::Result<Stats> {
    let scratch = tempfile::Builder::new()
        .prefix("baseline-sqlite")
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a folder in {}", dir.display()))?;
    let mut conn = open_full_sync(&scratch.path().join("baseline.sqlite"))?;
    let value = fixtures::value(ValueSize::Small, 0).into_bytes();
    let mut rng = Rng::seeded(7);
    let window = settings.window();
    let mut recorder = Recorder::new(window);
    while recorder.running() {
        let began = Instant::now();
        let row = i64::try_from(rng.below(SQLITE_ROWS)).context("row number out of range")?;
        let tx = conn.transaction().context("cannot begin")?;
        tx.prepare_cached("INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)")
            .and_then(|mut insert| insert.execute(rusqlite::params![row, value]))
            .context("cannot write a row")?;
        tx.commit().context("cannot commit")?;
        recorder.record(began);
    }
    Stats::from_samples(recorder.into_samples(), window)
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
