//! `securestore-crash-writer`: one writer process of the crash harness.
//!
//! Usage: `securestore-crash-writer SOCKET PROJECT WRITER SEQ_START`. Writes to its own keys
//! (`w<WRITER>-k<0..16>`) until the daemon goes away, printing `S <seq> set|del <key>` before each
//! request and `A <seq>` once the daemon has acknowledged it, so the harness knows what was
//! acknowledged and what was in flight when the daemon died. Set values are `w<WRITER>-s<seq>-`
//! followed by a body derived from the seq, so a torn value is recognisable.

use std::io::Write;

use securestore_client::{DeleteOptions, SetOptions, blocking::Client};
use securestore_e2e::crash_value;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, project, writer, seq_start] = args.as_slice() else {
        eprintln!("usage: securestore-crash-writer SOCKET PROJECT WRITER SEQ_START");
        std::process::exit(2);
    };
    let writer: u32 = writer.parse().expect("writer");
    let mut seq: u64 = seq_start.parse().expect("seq");
    let Ok(client) = Client::connect(socket, project) else {
        return;
    };
    let mut out = std::io::stdout().lock();
    loop {
        seq += 1;
        let key = format!("w{writer}-k{}", seq % 16);
        // One op in eight is a delete, so acknowledged deletes are checked under crashes too.
        let delete = seq.is_multiple_of(8);
        let _ = writeln!(out, "S {seq} {} {key}", if delete { "del" } else { "set" });
        let _ = out.flush();
        let result = if delete {
            client.delete_item(&key, DeleteOptions::default())
        } else {
            client.set_item(&key, crash_value(writer, seq), SetOptions::default())
        };
        if result.is_err() {
            return;
        }
        if writeln!(out, "A {seq}").and_then(|()| out.flush()).is_err() {
            return;
        }
    }
}
