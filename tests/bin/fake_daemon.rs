//! `securestore-fake-daemon`: an impostor for the trust test. Listens where a client expects the
//! daemon and records how many bytes each connection sent, without answering.
//!
//! Usage: `securestore-fake-daemon SOCKET_DIR RECORD_FILE`. Creates `SOCKET_DIR` (mode 0711) and
//! `SOCKET_DIR/securestored.sock` (mode 0666), as another user on the machine could, prints `ready`
//! on stdout once listening, then for each connection appends `connection bytes=N` to
//! `RECORD_FILE` when the client closes it (or after 5 s of silence).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, record] = args.as_slice() else {
        eprintln!("usage: securestore-fake-daemon SOCKET_DIR RECORD_FILE");
        std::process::exit(2);
    };
    std::fs::create_dir_all(dir).expect("create the socket folder");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).expect("chmod folder");
    let socket = std::path::Path::new(dir).join("securestored.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))
        .expect("chmod socket");
    println!("ready");
    std::io::stdout().flush().expect("flush");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let record = record.clone();
        std::thread::spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut received = Vec::new();
            let _ = stream.read_to_end(&mut received);
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&record)
                .expect("record file");
            // One write per line: threads append at once, and `writeln!` may split a line in two.
            let line = format!("connection bytes={}\n", received.len());
            file.write_all(line.as_bytes()).expect("record");
        });
    }
}
