//! `securestore-history-client`: one client process of the linearizability test.
//!
//! Usage: `securestore-history-client SOCKET PROJECT CLIENT MILLIS DEPTH SEED KEYS`. For `MILLIS`
//! milliseconds it runs random set / get / delete / set_if on keys `k0..KEYS`, `DEPTH` operations at a time on
//! one connection (1 = one after another; more = pipelined, several requests in flight), with values
//! unique to this client (`c<CLIENT>-<n>`). It prints one line per operation:
//!
//! `<call_ns> <ret_ns or ?> <set|del|get> <key> <value or ->`
//!
//! and for a compare-and-set (`set_if`, expecting the value this client last saw for the key):
//!
//! `<call_ns> <ret_ns or ?> cas <key> <value> <expected or -> <ok|conflict|?>`
//!
//! with times from `CLOCK_MONOTONIC`. A write whose answer never came or was an error (the daemon was
//! killed, the call timed out) is printed with `?`: it may or may not have taken effect. A get without
//! an answer is not printed. After a failure it reconnects until `MILLIS` is up.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use futures::future::join_all;
use securestore_client::{
    Client, ConnectOptions, DeleteOptions, Error, GetOptions, SecretString, ServiceError,
    SetOptions,
};
use securestore_e2e::monotonic_ns;

/// One finished operation, as printed.
struct Line {
    call: u64,
    ret: Option<u64>,
    verb: &'static str,
    key: String,
    value: Option<String>,
    /// For a compare-and-set: the expected value, and whether it applied (`None`: unknown).
    cas: Option<(Option<String>, Option<bool>)>,
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
    // The value this client last saw under each key, which its compare-and-sets expect.
    let mut last_seen: HashMap<String, Option<String>> = HashMap::new();
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
            if (3..5).contains(&op) {
                next_value += 1;
                let value = format!("c{client_id}-{next_value}");
                let expected = last_seen.get(&key).cloned().flatten();
                round.push(Box::pin(async move {
                    let call = monotonic_ns();
                    let done = client
                        .set_if(
                            &key,
                            expected.clone().map(SecretString::from),
                            value.as_str(),
                            SetOptions::default(),
                        )
                        .await;
                    let applied = match done {
                        Ok(()) => Some(true),
                        Err(Error::Service(ServiceError::Conflict)) => Some(false),
                        Err(_) => None,
                    };
                    let ret = applied.is_some().then(monotonic_ns);
                    (
                        applied.is_some(),
                        Some(Line {
                            call,
                            ret,
                            verb: "cas",
                            key,
                            value: Some(value),
                            cas: Some((expected, applied)),
                        }),
                    )
                })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>);
            } else if op < 3 {
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
                            cas: None,
                        }),
                    )
                })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = _>>>);
            } else if op < 6 {
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
                            cas: None,
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
                                    cas: None,
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
                match &line.cas {
                    None => {
                        let _ = writeln!(
                            out,
                            "{} {ret} {} {} {value}",
                            line.call, line.verb, line.key
                        );
                        if line.ret.is_some() {
                            last_seen.insert(line.key.clone(), line.value.clone());
                        }
                    }
                    Some((expected, applied)) => {
                        let outcome = match applied {
                            Some(true) => "ok",
                            Some(false) => "conflict",
                            None => "?",
                        };
                        let expected = expected.as_deref().unwrap_or("-");
                        let _ = writeln!(
                            out,
                            "{} {ret} cas {} {value} {expected} {outcome}",
                            line.call, line.key
                        );
                        if *applied == Some(true) {
                            last_seen.insert(line.key.clone(), line.value.clone());
                        }
                    }
                }
            }
        }
        if failed {
            // The connection may be gone (daemon killed): start a new one.
            client = None;
        }
    }
    let _ = out.flush();
}
