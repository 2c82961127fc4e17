//! A flood of pipelined gets over in-process pipes (`Host::open_stream`) and another in-process
//! client's latency: the host serves every connection on one thread too.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use securestore_backends::memory::MemoryBackend;
use securestore_daemon::backend::BackendPaths;
use securestore_daemon::{Config, Host, HostConfig};
use securestore_proto::handshake::{self, Hello, HelloReply};
use securestore_proto::tarpc::{self, Response};
use securestore_proto::{GetOptions, SecureStoreRequest, SecureStoreResponse, SetOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const PROJECT: &str = "@flood/host";

fn frame(id: u64, message: SecureStoreRequest) -> Vec<u8> {
    let mut context = tarpc::context::current();
    context.deadline = Instant::now() + Duration::from_secs(30);
    let request = tarpc::ClientMessage::Request(tarpc::Request {
        context,
        id,
        message,
    });
    let body = securestore_proto::codec::encode(&request, 1 << 20).expect("encode");
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

async fn bound(host: &Host) -> DuplexStream {
    let mut frames = handshake::frames(host.open_stream().await.expect("stream"));
    handshake::send(&mut frames, &Hello::project(PROJECT, None))
        .await
        .expect("hello");
    let reply: HelloReply = handshake::recv(&mut frames).await.expect("reply");
    assert!(matches!(reply, HelloReply::Accepted(_)), "{reply:?}");
    frames.into_inner()
}

async fn answer(stream: &mut DuplexStream) -> Response<SecureStoreResponse> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.expect("len");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.expect("body");
    securestore_proto::codec::decode(&body, 1 << 20).expect("decode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_over_in_process_pipes_does_not_starve_another_in_process_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Host::start(
        HostConfig {
            socket: dir.path().join("run/s.sock"),
            paths: BackendPaths {
                data_dir: dir.path().join("data"),
                key_file: dir.path().join("state/master.key"),
            },
            config: Config::default(),
        },
        |_| Ok(Box::new(MemoryBackend::default())),
    )
    .expect("host");
    let mut probe = bound(&host).await;
    let set = SecureStoreRequest::SetItem {
        key: "k".into(),
        value: "v".into(),
        options: SetOptions::default(),
    };
    probe.write_all(&frame(1, set)).await.expect("set");
    answer(&mut probe).await.message.expect("set answered");
    let get = || SecureStoreRequest::GetItem {
        key: "k".into(),
        options: GetOptions::default(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let burst: Arc<Vec<u8>> = Arc::new((0..2000).flat_map(|id| frame(id, get())).collect());
    let mut flooders = Vec::new();
    for _ in 0..2 {
        let (mut read, mut write) = tokio::io::split(bound(&host).await);
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
    tokio::time::sleep(Duration::from_millis(300)).await;
    let probing = async {
        let mut worst = Duration::ZERO;
        for id in 10..110 {
            let started = Instant::now();
            probe.write_all(&frame(id, get())).await.expect("get");
            let got = answer(&mut probe).await;
            assert_eq!(got.request_id, id);
            worst = worst.max(started.elapsed());
        }
        worst
    };
    let worst = tokio::time::timeout(Duration::from_secs(60), probing)
        .await
        .expect("the in-process probe is served during the flood");
    println!("worst probe latency during an in-process flood: {worst:?}");
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.abort();
    }
    drop(probe);
    host.stop().expect("stop");
}
