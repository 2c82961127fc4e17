//! Floods the existing fairness test does not try: each kind of request a peer can pipeline, many
//! flooding connections at once, a flood beside a frame waiting for the whole budget. Each asserts
//! that another client is served within a bound while the flood goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use securestore_e2e::{Daemon, PROJECT, cancel_frame, encode_request, frame, raw_hello};
use securestore_proto::handshake::{Hello, HelloReply};
use securestore_proto::{GetOptions as WireGet, SecureStoreRequest, SetOptions as WireSet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

async fn bound_stream(daemon: &Daemon) -> UnixStream {
    let (reply, frames) = raw_hello(&daemon.socket(), &Hello::project(PROJECT, None)).await;
    assert!(matches!(reply, HelloReply::Accepted(_)), "{reply:?}");
    frames.into_inner()
}

fn req(id: u64, message: SecureStoreRequest) -> Vec<u8> {
    frame(&encode_request(id, message, Duration::from_secs(10)))
}

/// Median and max latency of 100 gets by `client`, bounded to 60 s in all.
async fn probe(client: &securestore_client::Client) -> (Duration, Duration) {
    let run = async {
        let mut times = Vec::new();
        for _ in 0..100 {
            let started = Instant::now();
            assert_eq!(
                securestore_e2e::value_of(client, "k", None)
                    .await
                    .as_deref(),
                Some("v")
            );
            times.push(started.elapsed());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.sort_unstable();
        (times[times.len() / 2], times[times.len() - 1])
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the other client is served during the flood")
}

/// `connections` raw connections each write `burst` again and again (reading whatever comes back)
/// while a client probes; returns the probe's latencies.
/// `connections` bound connections, each writing `burst` over and over and discarding every
/// answer, until `stop` is set.
async fn spawn_flooders(
    daemon: &Daemon,
    connections: usize,
    burst: &Arc<Vec<u8>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut flooders = Vec::new();
    for _ in 0..connections {
        let (mut read, mut write) = bound_stream(daemon).await.into_split();
        let (stop, burst) = (stop.clone(), burst.clone());
        flooders.push(tokio::spawn(async move {
            let writer = async {
                while !stop.load(Ordering::Relaxed) {
                    if write.write_all(&burst).await.is_err() {
                        break;
                    }
                }
            };
            let reader = async {
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    match read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            };
            tokio::join!(writer, reader);
        }));
    }
    flooders
}

async fn flood(daemon: &Daemon, connections: usize, burst: Vec<u8>) -> (Duration, Duration) {
    let client = daemon.client(PROJECT).await;
    client
        .set_item("k", "v", securestore_client::SetOptions::default())
        .await
        .expect("set");
    let quiet = probe(&client).await;
    let stop = Arc::new(AtomicBool::new(false));
    let burst = Arc::new(burst);
    let flooders = spawn_flooders(daemon, connections, &burst, &stop).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flooded = probe(&client).await;
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.abort();
    }
    println!("quiet {quiet:?}, flooded {flooded:?}");
    flooded
}

fn burst(n: u64, make: impl Fn(u64) -> SecureStoreRequest) -> Vec<u8> {
    (0..n).flat_map(|id| req(id, make(id))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_contains() {
    let daemon = Daemon::start();
    flood(
        &daemon,
        2,
        burst(2000, |_| SecureStoreRequest::Contains {
            key: "k".into(),
            service: None,
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_list_keys() {
    let daemon = Daemon::start();
    flood(
        &daemon,
        2,
        burst(2000, |_| SecureStoreRequest::ListKeys {
            service: None,
            after: None,
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_pipelined_sets() {
    let daemon = Daemon::start();
    flood(
        &daemon,
        2,
        burst(2000, |id| SecureStoreRequest::SetItem {
            key: format!("s{}", id % 50),
            value: "x".into(),
            options: WireSet::default(),
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_cancels() {
    let daemon = Daemon::start();
    flood(&daemon, 2, (0..4000).flat_map(cancel_frame).collect()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_gets_from_eight_connections() {
    let daemon = Daemon::start();
    flood(
        &daemon,
        8,
        burst(2000, |_| SecureStoreRequest::GetItem {
            key: "k".into(),
            options: WireGet::default(),
        }),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_of_bad_polls() {
    let daemon = Daemon::start();
    flood(
        &daemon,
        2,
        burst(2000, |_| SecureStoreRequest::PollEvents {
            watcher: 12345,
            wait_millis: 0,
        }),
    )
    .await;
}

/// Four connections pipeline sets (each holding its share of a small budget until its commit)
/// while another sends one set whose frame costs nearly the whole budget: it waits, but nothing
/// overtakes it for ever, and it is answered while the flood goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_frame_waiting_for_budget_is_served_during_a_flood_of_sets() {
    let daemon = Daemon::start_with(&["--max-request-bytes", "65536"]);
    let stop = Arc::new(AtomicBool::new(false));
    let burst = Arc::new(burst(500, |id| SecureStoreRequest::SetItem {
        key: format!("s{}", id % 50),
        value: "x".into(),
        options: WireSet::default(),
    }));
    let flooders = spawn_flooders(&daemon, 4, &burst, &stop).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut big = bound_stream(&daemon).await;
    let started = Instant::now();
    for id in 0..5 {
        let set = SecureStoreRequest::SetItem {
            key: "big".into(),
            value: "y".repeat(60 * 1024).into(),
            options: WireSet::default(),
        };
        big.write_all(&req(id, set)).await.expect("big set");
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(30), big.read_exact(&mut len))
            .await
            .expect("the big frame is granted the budget during the flood")
            .expect("answer");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        big.read_exact(&mut body).await.expect("body");
    }
    println!("5 big sets during the flood took {:?}", started.elapsed());
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.abort();
    }
}

/// While two connections flood gets, a client that pipelines gets of a 60 KiB value and never
/// reads its answers is still closed about a frame timeout after it stopped taking them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_closed_during_a_flood() {
    let daemon = Daemon::start_with(&["--frame-timeout-ms", "1000"]);
    let client = daemon.client(PROJECT).await;
    client
        .set_item(
            "big",
            "y".repeat(60 * 1024).as_str(),
            securestore_client::SetOptions::default(),
        )
        .await
        .expect("set");
    let stop = Arc::new(AtomicBool::new(false));
    let gets = Arc::new(burst(2000, |_| SecureStoreRequest::GetItem {
        key: "k".into(),
        options: WireGet::default(),
    }));
    let flooders = spawn_flooders(&daemon, 2, &gets, &stop).await;
    let mut stuck = bound_stream(&daemon).await;
    let bursts: Vec<u8> = (0..200)
        .flat_map(|id| {
            req(
                id,
                SecureStoreRequest::GetItem {
                    key: "big".into(),
                    options: WireGet::default(),
                },
            )
        })
        .collect();
    let _ = tokio::time::timeout(Duration::from_secs(2), stuck.write_all(&bursts)).await;
    // Now it reads nothing for 8 s, then drains what is there: the daemon must have closed it.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stuck.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false);
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.abort();
    }
    assert!(
        closed,
        "a client that stopped reading was not closed during the flood"
    );
}

/// A pipelined mix of every cheap request kind on one connection, while two others flood gets:
/// every request gets exactly one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_mix_is_answered_in_full_during_a_flood() {
    let daemon = Daemon::start();
    let stop = Arc::new(AtomicBool::new(false));
    let gets = Arc::new(burst(2000, |_| SecureStoreRequest::GetItem {
        key: "k".into(),
        options: WireGet::default(),
    }));
    let flooders = spawn_flooders(&daemon, 2, &gets, &stop).await;
    const N: u64 = 3000;
    let mix = burst(N, |id| match id % 4 {
        0 => SecureStoreRequest::SetItem {
            key: format!("m{}", id % 30),
            value: "v".into(),
            options: WireSet::default(),
        },
        1 => SecureStoreRequest::GetItem {
            key: format!("m{}", id % 30),
            options: WireGet::default(),
        },
        2 => SecureStoreRequest::Contains {
            key: "k".into(),
            service: None,
        },
        _ => SecureStoreRequest::ListKeys {
            service: None,
            after: None,
        },
    });
    let (mut read, mut write) = bound_stream(&daemon).await.into_split();
    let writer = tokio::spawn(async move { write.write_all(&mix).await.map(|()| write) });
    let mut seen = vec![0u32; N as usize];
    let mut throttled = 0;
    for _ in 0..N {
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(30), read.read_exact(&mut len))
            .await
            .expect("an answer within 30 s")
            .expect("answer");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        read.read_exact(&mut body).await.expect("body");
        let answer: securestore_proto::tarpc::Response<securestore_proto::SecureStoreResponse> =
            securestore_proto::codec::decode(&body, 1 << 20).expect("decode");
        if answer.message.is_err() {
            throttled += 1;
        }
        seen[answer.request_id as usize] += 1;
    }
    let _write = writer.await.expect("writer");
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.abort();
    }
    assert!(seen.iter().all(|&n| n == 1), "each request answered once");
    println!("{N} answered ({throttled} refused as throttled)");
}

/// Four tasks connect, bind, send one tiny frame that does not decode and wait for the close, again
/// and again, while a client probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_churn_of_malformed_frames_does_not_starve_another_client() {
    let daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    client
        .set_item("k", "v", securestore_client::SetOptions::default())
        .await
        .expect("set");
    let stop = Arc::new(AtomicBool::new(false));
    let socket = daemon.socket();
    let mut churners = Vec::new();
    for _ in 0..4 {
        let (stop, socket) = (stop.clone(), socket.clone());
        churners.push(tokio::spawn(async move {
            let mut rounds = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (reply, frames) = raw_hello(&socket, &Hello::project(PROJECT, None)).await;
                assert!(matches!(reply, HelloReply::Accepted(_)), "{reply:?}");
                let mut stream = frames.into_inner();
                let junk: Vec<u8> = (0..64).flat_map(|_| frame(&[0xff; 7])).collect();
                let _ = stream.write_all(&junk).await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
                rounds += 1;
            }
            rounds
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flooded = probe(&client).await;
    stop.store(true, Ordering::Relaxed);
    let mut rounds = 0;
    for churner in churners {
        rounds += tokio::time::timeout(Duration::from_secs(20), churner)
            .await
            .expect("churner ends")
            .expect("churner");
    }
    println!("{rounds} malformed connections; probe {flooded:?}");
    client
        .set_item("after", "v", securestore_client::SetOptions::default())
        .await
        .expect("still serving");
}

/// Two connections each open a watcher and flood polls of it that wait 0 ms, while a client sets
/// keys (events for both watchers) and another probes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_polls_of_real_watchers_does_not_starve_another_client() {
    let daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    client
        .set_item("k", "v", securestore_client::SetOptions::default())
        .await
        .expect("set");
    let stop = Arc::new(AtomicBool::new(false));
    let mut flooders = Vec::new();
    for _ in 0..2 {
        let mut stream = bound_stream(&daemon).await;
        let watch = SecureStoreRequest::Watch {
            filter: securestore_proto::WatchFilter {
                service: None,
                key: None,
            },
        };
        stream
            .write_all(&req(u64::MAX, watch))
            .await
            .expect("watch");
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.expect("watch answer");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut body).await.expect("body");
        let answer: securestore_proto::tarpc::Response<securestore_proto::SecureStoreResponse> =
            securestore_proto::codec::decode(&body, 1 << 20).expect("decode");
        let Ok(securestore_proto::SecureStoreResponse::Watch(Ok(watcher))) = answer.message else {
            panic!("watch: {:?}", answer.message);
        };
        let polls = burst(2000, |_| SecureStoreRequest::PollEvents {
            watcher,
            wait_millis: 0,
        });
        let (mut read, mut write) = stream.into_split();
        let stop = stop.clone();
        flooders.push(tokio::spawn(async move {
            let writer = async {
                while !stop.load(Ordering::Relaxed) {
                    if write.write_all(&polls).await.is_err() {
                        break;
                    }
                }
            };
            let reader = async {
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    match read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            };
            tokio::join!(writer, reader);
        }));
    }
    let setter = {
        let client = daemon.client(PROJECT).await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                client
                    .set_item(
                        &format!("w{}", n % 20),
                        "v",
                        securestore_client::SetOptions::default(),
                    )
                    .await
                    .expect("set during the flood");
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flooded = probe(&client).await;
    stop.store(true, Ordering::Relaxed);
    let sets = tokio::time::timeout(Duration::from_secs(20), setter)
        .await
        .expect("the setter ends")
        .expect("setter");
    // Aborted, not awaited: a flooder whose reader stopped first leaves its writer blocked on a
    // daemon that (rightly) stops reading a peer that takes no answers.
    for flooder in flooders {
        flooder.abort();
    }
    println!("probe {flooded:?}; {sets} sets during the flood");
}
