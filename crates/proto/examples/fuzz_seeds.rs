//! Writes one valid message of each kind into `fuzz/corpus/<target>/`, so the fuzzers start from
//! well-formed frames rather than noise. Run: `cargo run -p securestore-proto --example fuzz_seeds`.

use std::path::Path;
use std::time::{Duration, Instant};

use securestore_proto::codec::encode;
use securestore_proto::handshake::{AdminRequest, Hello};
use securestore_proto::tarpc::{ClientMessage, Request, context};
use securestore_proto::{
    DeleteOptions, GetOptions, KeychainAccessible, SecureStoreRequest, SetOptions,
};

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let limit = 1 << 20;
    let hellos = [
        Hello::project("@owner/app", None),
        Hello::project("com.example", Some("sst1_0123".into())),
        Hello::admin(AdminRequest::AddProject {
            project: "@o/p".into(),
        }),
        Hello::admin(AdminRequest::ListProjects),
    ];
    for (i, hello) in hellos.iter().enumerate() {
        write(
            &root.join("handshake"),
            &format!("seed-{i}"),
            &encode(hello, limit)?,
        )?;
    }
    let requests = [
        SecureStoreRequest::SetItem {
            key: "token".into(),
            value: "value".into(),
            options: SetOptions {
                keychain_service: Some("auth".into()),
                keychain_accessible: KeychainAccessible::AfterFirstUnlock,
            },
        },
        SecureStoreRequest::GetItem {
            key: "token".into(),
            options: GetOptions::default(),
        },
        SecureStoreRequest::DeleteItem {
            key: "token".into(),
            options: DeleteOptions::default(),
        },
    ];
    for (i, message) in requests.into_iter().enumerate() {
        let mut ctx = context::current();
        ctx.deadline = Instant::now() + Duration::from_secs(10);
        let frame = ClientMessage::Request(Request {
            context: ctx,
            id: i as u64,
            message,
        });
        write(
            &root.join("request_frame"),
            &format!("seed-{i}"),
            &encode(&frame, limit)?,
        )?;
    }
    write(
        &root.join("request_frame"),
        "cancel",
        &encode(
            &ClientMessage::<SecureStoreRequest>::Cancel {
                trace_context: Default::default(),
                request_id: 1,
            },
            limit,
        )?,
    )?;
    println!("seeds written under {}", root.display());
    Ok(())
}
