//! `securestore-hammer`: one client process of the concurrency test.
//!
//! Usage: `securestore-hammer SOCKET PROJECT WRITER_ID ROUNDS KEYS`. Sets each shared key `ROUNDS`
//! times with a self-checking value (see [`whole_value`]), reading a key back after each set and checking
//! that what it reads is whole. Exits non-zero on the first failure.

use securestore_client::{GetOptions, SetOptions, blocking::Client};
use securestore_e2e::{is_whole_value, whole_value};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, project, writer, rounds, keys] = args.as_slice() else {
        eprintln!("usage: securestore-hammer SOCKET PROJECT WRITER_ID ROUNDS KEYS");
        std::process::exit(2);
    };
    let writer: u32 = writer.parse().expect("writer id");
    let rounds: u32 = rounds.parse().expect("rounds");
    let keys: u32 = keys.parse().expect("keys");
    let client = Client::connect(socket, project).expect("connect");
    for round in 0..rounds {
        for k in 0..keys {
            let key = format!("shared-{k}");
            client
                .set_item(&key, whole_value(writer, round), SetOptions::default())
                .expect("set");
            let found = client
                .get_item(&key, GetOptions::default())
                .expect("get")
                .expect("present");
            if !is_whole_value(found.expose_secret()) {
                eprintln!("torn value under {key}");
                std::process::exit(1);
            }
        }
    }
}
