//! Protocol fuzzing against the live daemon: thousands of random and mutated frames over many
//! connections, with a well-formed client checking after every batch that the daemon is alive and
//! still answers correctly.
//!
//! Deterministic for a seed: set `SECURESTORE_FUZZ_SEED` to replay a run; the seed used is printed.
//! `SECURESTORE_FUZZ_BATCHES` runs longer.

use std::time::Duration;

use futures::future::join_all;
use securestore_client::{GetOptions, SetOptions};
use securestore_e2e::{Daemon, encode_request, frame};
use securestore_proto::codec::encode;
use securestore_proto::handshake::{AdminRequest, Hello};
use securestore_proto::{
    DeleteOptions, GetOptions as WireGet, KeychainAccessible, SecretString, SecureStoreRequest,
    SetOptions as WireSet,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// splitmix64: small, fast, and good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Up to `max` random bytes.
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const LIMIT: usize = 1 << 20;
const PROJECTS: [&str; 3] = ["@fuzz/a", "@fuzz/b", "com.example.fuzz"];
const KEYS: [&str; 4] = ["k", "token.v2", "bad key", ""];

fn hello_body(rng: &mut Rng) -> Vec<u8> {
    let hello = match rng.below(4) {
        0 => Hello::admin(AdminRequest::ListProjects),
        1 => Hello::project(
            PROJECTS[rng.below(3)],
            Some(SecretString::from("sst1_not-a-token")),
        ),
        _ => Hello::project(PROJECTS[rng.below(3)], None),
    };
    encode(&hello, LIMIT).expect("encode hello")
}

fn request_body(rng: &mut Rng, id: u64) -> Vec<u8> {
    let key = KEYS[rng.below(KEYS.len())].to_owned();
    let service = [None, Some("app".to_owned()), Some("auth".to_owned())][rng.below(3)].clone();
    let message = match rng.below(3) {
        0 => SecureStoreRequest::SetItem {
            key,
            value: SecretString::new("v".repeat(rng.below(64))),
            options: WireSet {
                keychain_service: service,
                keychain_accessible: KeychainAccessible::ALL[rng.below(7)],
            },
        },
        1 => SecureStoreRequest::GetItem {
            key,
            options: WireGet {
                keychain_service: service,
            },
        },
        _ => SecureStoreRequest::DeleteItem {
            key,
            options: DeleteOptions {
                keychain_service: service,
            },
        },
    };
    encode_request(id, message, Duration::from_secs(5))
}

/// One of a handful of mutations of a framed message, most keeping the frame roughly plausible.
fn mutate(rng: &mut Rng, framed: &mut Vec<u8>, donor: &[u8]) {
    let len = framed.len();
    match rng.below(9) {
        0 => framed[rng.below(len)] ^= 1 << rng.below(8),
        1 => framed[rng.below(len)] = rng.next() as u8,
        2 => {
            let at = rng.below(len + 1);
            let extra = rng.bytes(8);
            framed.splice(at..at, extra);
        }
        3 => {
            let at = rng.below(len);
            let end = (at + 1 + rng.below(8)).min(len);
            framed.drain(at..end);
        }
        4 => framed.truncate(rng.below(len)),
        5 => {
            // Splice the tail of another valid frame onto this one's head.
            let cut = rng.below(len);
            let from = rng.below(donor.len());
            framed.truncate(cut);
            framed.extend_from_slice(&donor[from..]);
        }
        6 => {
            // A body byte becomes a bincode varint marker, claiming a large number.
            let markers = [251u8, 252, 253, 254, 255];
            if len > 4 {
                framed[4 + rng.below(len - 4)] = markers[rng.below(5)];
            }
        }
        7 => {
            // Rewrite the length prefix so it disagrees with the body.
            let claimed = match rng.below(3) {
                0 => rng.next() as u32,
                1 => (len as u32)
                    .saturating_sub(4)
                    .wrapping_add(rng.below(16) as u32),
                _ => u32::MAX,
            };
            if len >= 4 {
                framed[..4].copy_from_slice(&claimed.to_be_bytes());
            }
        }
        _ => *framed = frame(&rng.bytes(48)),
    }
}

/// Throws `frames` frames at one connection; returns how many were written.
async fn attack(socket: std::path::PathBuf, seed: u64, frames: usize) -> usize {
    let mut rng = Rng(seed);
    let Ok(mut stream) = UnixStream::connect(&socket).await else {
        return 0;
    };
    let (mut reader, mut writer) = stream.split();
    let drain = async {
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), reader.read(&mut buf)).await
        {
            if n == 0 {
                break;
            }
        }
    };
    let send = async {
        let mut sent = 0;
        for i in 0..frames {
            let mut bytes = if i == 0 {
                frame(&hello_body(&mut rng))
            } else {
                frame(&request_body(&mut rng, i as u64))
            };
            // The handshake is valid half the time, so requests reach the tarpc decoder too.
            let mutations = if i == 0 && rng.below(2) == 0 {
                0
            } else {
                rng.below(3)
            };
            let donor = frame(&request_body(&mut rng, 0));
            for _ in 0..mutations {
                if bytes.len() > 1 {
                    mutate(&mut rng, &mut bytes, &donor);
                }
            }
            if rng.below(10) == 0 {
                bytes = rng.bytes(64);
            }
            sent += 1;
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
        sent
    };
    let (sent, ()) = tokio::join!(send, drain);
    sent
}

#[tokio::test]
async fn ten_thousand_hostile_frames_leave_the_daemon_alive_and_correct() {
    let seed = std::env::var("SECURESTORE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let batches: usize = std::env::var("SECURESTORE_FUZZ_BATCHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    eprintln!(
        "protocol fuzz: seed {seed} ({batches} batches); replay with SECURESTORE_FUZZ_SEED={seed}"
    );

    let mut daemon =
        Daemon::start_with(&["--frame-timeout-ms", "500", "--handshake-timeout-ms", "500"]);
    let checker = daemon.client("@fuzz/checker").await;
    let mut rng = Rng(seed);
    let mut total = 0;
    for batch in 0..batches {
        let attacks = (0..30).map(|_| attack(daemon.socket(), rng.next(), 24));
        total += join_all(attacks).await.into_iter().sum::<usize>();

        assert!(
            daemon.is_running(),
            "the daemon died in batch {batch} (seed {seed})\n{}",
            daemon.log()
        );
        let value = format!("batch-{batch}");
        checker
            .set_item("canary", value.as_str(), SetOptions::default())
            .await
            .expect("set after batch");
        let found = checker
            .get_item("canary", GetOptions::default())
            .await
            .expect("get after batch");
        assert_eq!(
            found.as_ref().map(|v| v.expose_secret()),
            Some(value.as_str()),
            "batch {batch}"
        );
    }
    eprintln!(
        "protocol fuzz: {total} frames over {} connections",
        batches * 30
    );
    assert!(
        total >= 10_000 || batches < 30,
        "only {total} frames were sent"
    );
}
