//! Trust both ways, the daemon's side: a flood of pipelined requests stays inside the memory budget,
//! idle connections cannot hold every slot, crafted frames cannot flood the log, and the handshake
//! answers what it used to drop in silence.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::join_all;
use securestore_client::{Client, ConnectOptions, Error, GetOptions, SecretString, SetOptions};
use securestore_e2e::{
    Daemon, PROJECT, bin, closed_after, encode_request, frame, raw_hello, securestored_in,
    value_of,
};
use securestore_proto::handshake::{self, Hello, HelloReply};
use securestore_proto::{SecureStoreRequest, ServiceError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const MIB: u64 = 1024 * 1024;

/// A line of `/proc/<pid>/status`, in bytes (the kernel reports kB).
fn proc_status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field}"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a number");
    kb * 1024
}

/// A bound raw connection.
async fn bound_stream(daemon: &Daemon, project: &str) -> UnixStream {
    let (reply, frames) = raw_hello(&daemon.socket(), &Hello::project(project, None)).await;
    assert!(matches!(reply, HelloReply::Accepted(_)), "{reply:?}");
    frames.into_inner()
}

/// Reads one answer frame and returns its length; `None` at the end of the stream.
async fn read_frame(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(body)
}

/// Finding 4: 200 connections each pipelining 64 sets of 64 KiB took the daemon from 6 MiB to
/// 825 MiB, and it kept the memory after they closed. Now frames wait for the budget in the kernel's
/// socket buffers, and a well-behaved client is served throughout. The flood runs for
/// [`FLOOD_FOR`] (a debug daemon seals and syncs 800 MiB slowly), then every connection closes,
/// answered or not.
const FLOOD_FOR: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pipelined_flood_stays_inside_the_memory_budget() {
    const CONNECTIONS: usize = 200;
    const PIPELINED: u64 = 64;
    let daemon = Daemon::start_logging(&[], "info");
    let pid = daemon.pid();
    let before = proc_status(pid, "VmRSS");

    let done = Arc::new(AtomicBool::new(false));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let sampler = tokio::spawn({
        let (done, peak_rss) = (done.clone(), peak_rss.clone());
        async move {
            while !done.load(Ordering::Relaxed) {
                peak_rss.fetch_max(proc_status(pid, "VmRSS"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    // A well-behaved client, served all along.
    let well_behaved = tokio::spawn({
        // Its calls queue behind the flood's requests in flight: patient, and the wait is printed.
        let options = ConnectOptions {
            timeout: Duration::from_secs(60),
            ..ConnectOptions::default()
        };
        let client = Client::connect_with(daemon.socket(), PROJECT, options)
            .await
            .expect("connect");
        let done = done.clone();
        async move {
            let (mut calls, mut slowest) = (0u32, Duration::ZERO);
            while !done.load(Ordering::Relaxed) || calls == 0 {
                let started = Instant::now();
                client
                    .set_item("polite", format!("v{calls}"), SetOptions::default())
                    .await
                    .expect("the well-behaved client's set");
                assert_eq!(
                    value_of(&client, "polite", None).await.as_deref(),
                    Some(format!("v{calls}").as_str())
                );
                slowest = slowest.max(started.elapsed());
                calls += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (calls, slowest)
        }
    });

    let value = Arc::new("x".repeat(64 * 1024));
    let answered = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let flooders = (0..CONNECTIONS).map(|n| {
        let value = value.clone();
        let answered = answered.clone();
        let daemon = &daemon;
        async move {
            let stream = bound_stream(daemon, PROJECT).await;
            let (mut read, mut write) = stream.into_split();
            let writer = async move {
                for id in 0..PIPELINED {
                    let set = SecureStoreRequest::SetItem {
                        key: format!("flood{n}"),
                        value: SecretString::from(value.as_str().to_owned()),
                        options: securestore_proto::SetOptions::default(),
                    };
                    let bytes = frame(&encode_request(id, set, Duration::from_secs(60)));
                    write.write_all(&bytes).await.expect("pipeline a set");
                }
                write
            };
            let reader = async move {
                let mut answers = 0;
                while answers < PIPELINED && read_frame(&mut read).await.is_some() {
                    answers += 1;
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                answers
            };
            let (_write, answers) = tokio::join!(writer, reader);
            answers
        }
    });
    let flood = tokio::time::timeout(FLOOD_FOR, join_all(flooders)).await;
    let flood_time = started.elapsed();
    let answers = flood.map(|answered| answered.into_iter().sum::<u64>());
    let answered = answered.load(Ordering::Relaxed);
    done.store(true, Ordering::Relaxed);
    sampler.await.expect("sampler");
    let (calls, slowest) = well_behaved.await.expect("the well-behaved client");
    let hwm = proc_status(pid, "VmHWM");

    // Every connection is closed now; give the allocator a moment to hand memory back.
    let mut after = proc_status(pid, "VmRSS");
    for _ in 0..50 {
        if after < 96 * MIB {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = proc_status(pid, "VmRSS");
    }
    println!(
        "flood of {CONNECTIONS} x {PIPELINED} x 64 KiB sets: {answered} answered in {flood_time:?} ({answers:?}: Err if cut short); daemon \
         RSS {} MiB before, peak {} MiB sampled (VmHWM {} MiB), {} MiB after all closed; well-behaved \
         client: {calls} set+get rounds, slowest {slowest:?}",
        before / MIB,
        peak_rss.load(Ordering::Relaxed) / MIB,
        hwm / MIB,
        after / MIB
    );
    if let Ok(answers) = answers {
        assert_eq!(answers, CONNECTIONS as u64 * PIPELINED, "every set answered");
    }
    assert!(calls > 0);
    assert!(hwm < 256 * MIB, "peak {} MiB", hwm / MIB);
    assert!(after < 96 * MIB, "after {} MiB", after / MIB);
    daemon.assert_serving().await;
}
