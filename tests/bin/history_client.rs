//! `securestore-history-client`: one client process of the linearizability test.
//!
//! Usage: `securestore-history-client SOCKET PROJECT CLIENT MILLIS DEPTH SEED KEYS`. For `MILLIS`
//! milliseconds it runs random set / get / delete on keys `k0..KEYS`, `DEPTH` operations at a time on
//! one connection (1 = one after another; more = pipelined, several requests in flight), with values
//! unique to this client (`c<CLIENT>-<n>`). It prints one line per operation:
//!
//! `<call_ns> <ret_ns or ?> <set|del|get> <key> <value or ->`
//!
//! with times from `CLOCK_MONOTONIC`. A write whose answer never came or was an error (the daemon was
//! killed, the call timed out) is printed with `?`: it may or may not have taken effect. A get without
//! an answer is not printed. After a failure it reconnects until `MILLIS` is up.

use std::io::Write;
use std::time::Duration;

use futures::future::join_all;
use securestore_client::{Client, ConnectOptions, DeleteOptions, GetOptions, SetOptions};
use securestore_e2e::monotonic_ns;

/// One finished operation, as printed.
struct Line {
    call: u64,
    ret: Option<u64>,
    verb: &'static str,
    key: String,
    value: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, project, client_id, millis, depth, seed, keys] = args.as_slice() else {
        eprintln!("usage: securestore-history-client SOCKET PROJECT CLIENT MILLIS DEPTH SEED KEYS");
        std::process::exit(2);
    };
    let client_id: u32 = client_id.parse().expect("client");
    let depth: usize = depth.parse().expect("depth");
    let keys: u64 = keys.parse().expect("keys");
    let mut rng: u64 = seed.parse::<u64>().expect("seed") | 1;
    let end = monotonic_ns() + millis.parse::<u64>().expect("millis") * 1_000_000;
    let options = ConnectOptions {
        timeout: Duration::from_secs(2),
        ..ConnectOptions::default()
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut next_value = 0u64;
    let mut client: Option<Client> = None;
    while monotonic_ns() < end {
        let Some(connected) = client.clone() else {
            match Client::connect_with(socket, project, options.clone()).await {
                Ok(c) => client = Some(c),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
            continue;
        };
        let mut round = Vec::with_capacity(depth);
        for _ in 0..depth {
            // xorshift64: reproducible from the seed, no dependency.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let key = format!("k{}", rng % keys);
            let op = (rng >> 32) % 10;
            let client = connected.clone();
            if op < 4 {
                next_value += 1;
                let value = format!("c{client_id}-{next_value}");
                round.push(Box::pin(async move {
                    let call = monotonic_ns();
                    let done = client
                        .set_item(&key, value.as_str(), SetOptions::default())
                        .await;
                    let ret = done.is_ok().then(monotonic_ns);
                    let ok = done.is_ok();
                    (
                        ok,
                        Some(Line {
                            call,
                            ret,
                            verb: "set",
                            key,
                            value: Some(value),
                        }),
                    )
                })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>);
            } else if op < 5 {
                round.push(Box::pin(async move {
                    let call = monotonic_ns();
                    let done = client.delete_item(&key, DeleteOptions::default()).await;
                    let ret = done.is_ok().then(monotonic_ns);
                    (
                        done.is_ok(),
                        Some(Line {
                            call,
                            ret,
                            verb: "del",
                            key,
                            value: None,
                        }),
                    )
                }));
            } else {
                round.push(Box::pin(async move {
                    let call = monotonic_ns();
                    match client.get_item(&key, GetOptions::default()).await {
                        Ok(found) => {
                            let ret = monotonic_ns();
                            let value = found.map(|v| v.expose_secret().to_owned());
                            (
                                true,
                                Some(Line {
                                    call,
                                    ret: Some(ret),
                                    verb: "get",
                                    key,
                                    value,
                                }),
                            )
                        }
                        Err(_) => (false, None),
                    }
                }));
            }
        }
        let mut failed = false;
        for (ok, line) in join_all(round).await {
            failed |= !ok;
            if let Some(line) = line {
                let ret = line.ret.map_or_else(|| "?".to_owned(), |r| r.to_string());
                let value = line.value.as_deref().unwrap_or("-");
                let _ = writeln!(
                    out,
                    "{} {ret} {} {} {value}",
                    line.call, line.verb, line.key
                );
            }
        }
        if failed {
            // The connection may be gone (daemon killed): start a new one.
            client = None;
        }
    }
    let _ = out.flush();
}
