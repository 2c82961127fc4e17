//! `securestore-counter-client`: one process of the compare-and-set counter test.
//!
//! Usage: `securestore-counter-client SOCKET PROJECT KEY TIMES`. Adds 1 to the decimal counter under
//! `KEY` `TIMES` times, each with a read then a `set_if` expecting what was read (absent counts as 0),
//! retrying on a conflict. Prints `conflicts=<n>` at the end. Any other error ends it with status 1.

use securestore_client::{Client, Error, GetOptions, ServiceError, SetOptions};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, project, key, times] = args.as_slice() else {
        eprintln!("usage: securestore-counter-client SOCKET PROJECT KEY TIMES");
        std::process::exit(2);
    };
    let times: u32 = times.parse().expect("times");
    let client = Client::connect(socket, project).await.expect("connect");
    let mut conflicts = 0u64;
    for _ in 0..times {
        loop {
            let current = client
                .get_item(key, GetOptions::default())
                .await
                .expect("get");
            let count: u64 = current
                .as_ref()
                .map_or(0, |v| v.expose_secret().parse().expect("a number"));
            match client
                .set_if(key, current, (count + 1).to_string(), SetOptions::default())
                .await
            {
                Ok(()) => break,
                Err(Error::Service(ServiceError::Conflict)) => conflicts += 1,
                Err(err) => {
                    eprintln!("set_if failed: {err}");
                    std::process::exit(1);
                }
            }
        }
    }
    println!("conflicts={conflicts}");
}
