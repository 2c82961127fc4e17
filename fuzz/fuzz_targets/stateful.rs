//! Arbitrary sequences of requests from several projects through the daemon's request handler on the
//! real SQLite backend, checked against a model: every answer matches the model, and no project ever
//! sees another project's items.
#![no_main]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use securestore_backends::sqlite::{SqliteBackend, SqliteConfig};
use securestore_daemon::Config;
use securestore_daemon::fuzzing::Harness;
use securestore_proto::{
    DeleteOptions, GetOptions, KeychainAccessible, SecretString, SecureStoreRequest,
    SecureStoreResponse, ServiceError, SetOptions,
};

const MAX_VALUE: u32 = 32;
const KEYS: [&str; 5] = ["a", "b", "token.v2", "bad key", ""];
const SERVICES: [Option<&str>; 4] = [None, Some("app"), Some("auth"), Some("")];

#[derive(Debug, Arbitrary)]
enum Op {
    Set {
        project: u8,
        key: u8,
        service: u8,
        value: Vec<u8>,
        class: u8,
    },
    Get {
        project: u8,
        key: u8,
        service: u8,
    },
    Delete {
        project: u8,
        key: u8,
        service: u8,
    },
}

fn harness() -> &'static Mutex<Harness> {
    static HARNESS: OnceLock<Mutex<Harness>> = OnceLock::new();
    HARNESS.get_or_init(|| {
        // tmpfs keeps SQLite's fsyncs cheap; the directory lives as long as the process.
        let dir = tempfile::Builder::new()
            .prefix("securestore-fuzz")
            .tempdir_in("/dev/shm")
            .expect("tempdir")
            .keep();
        let backend = SqliteBackend::open(&SqliteConfig {
            data_dir: dir.join("data"),
            key_file: dir.join("master.key"),
        })
        .expect("open store");
        let config = Config {
            max_value_bytes: MAX_VALUE,
            ..Config::default()
        };
        Mutex::new(Harness::new(Box::new(backend), config))
    })
}

fuzz_target!(|ops: Vec<Op>| {
    // Fresh project ids for every input, so the model starts empty like the store does for them.
    static RUN: AtomicU64 = AtomicU64::new(0);
    let run = RUN.fetch_add(1, Ordering::Relaxed);
    let project = |p: u8| format!("@run{run}/p{}", p % 3);
    let harness = harness().lock().expect("harness");
    let mut model: HashMap<(u8, &str, &str), (String, KeychainAccessible)> = HashMap::new();

    for op in ops.into_iter().take(64) {
        let (p, key, service) = match &op {
            Op::Set {
                project,
                key,
                service,
                ..
            }
            | Op::Get {
                project,
                key,
                service,
            }
            | Op::Delete {
                project,
                key,
                service,
            } => (
                project % 3,
                KEYS[*key as usize % KEYS.len()],
                SERVICES[*service as usize % SERVICES.len()],
            ),
        };
        let slot = (p, service.unwrap_or("app"), key);
        let key_ok = !key.is_empty() && !key.contains(' ');
        let service_ok = service != Some("");
        let keychain_service = service.map(str::to_owned);
        let request = match &op {
            Op::Set { value, class, .. } => SecureStoreRequest::SetItem {
                key: key.to_owned(),
                value: SecretString::new(String::from_utf8_lossy(value).into_owned()),
                options: SetOptions {
                    keychain_service,
                    keychain_accessible: KeychainAccessible::ALL[*class as usize % 7],
                },
            },
            Op::Get { .. } => SecureStoreRequest::GetItem {
                key: key.to_owned(),
                options: GetOptions { keychain_service },
            },
            Op::Delete { .. } => SecureStoreRequest::DeleteItem {
                key: key.to_owned(),
                options: DeleteOptions { keychain_service },
            },
        };
        let response = harness
            .call(&project(p), request)
            .expect("valid projects bind");

        match (op, response) {
            (_, SecureStoreResponse::SetItem(Err(ServiceError::InvalidKey)))
            | (_, SecureStoreResponse::GetItem(Err(ServiceError::InvalidKey)))
            | (_, SecureStoreResponse::DeleteItem(Err(ServiceError::InvalidKey))) => {
                assert!(!key_ok, "valid key {key:?} refused")
            }
            (_, SecureStoreResponse::SetItem(Err(ServiceError::InvalidService { .. })))
            | (_, SecureStoreResponse::GetItem(Err(ServiceError::InvalidService { .. })))
            | (_, SecureStoreResponse::DeleteItem(Err(ServiceError::InvalidService { .. }))) => {
                assert!(key_ok && !service_ok, "valid service refused")
            }
            (Op::Set { value, class, .. }, SecureStoreResponse::SetItem(result)) => {
                assert!(key_ok && service_ok, "invalid name accepted");
                let text = String::from_utf8_lossy(&value).into_owned();
                if text.len() > MAX_VALUE as usize {
                    assert!(
                        matches!(result, Err(ServiceError::ValueTooLarge { .. })),
                        "{result:?}"
                    );
                } else {
                    assert!(result.is_ok(), "{result:?}");
                    model.insert(slot, (text, KeychainAccessible::ALL[class as usize % 7]));
                }
            }
            (Op::Get { .. }, SecureStoreResponse::GetItem(result)) => {
                assert!(key_ok && service_ok, "invalid name accepted");
                let found = result
                    .expect("get succeeds")
                    .map(|item| (item.value.expose_secret().to_owned(), item.accessible));
                assert_eq!(
                    found.as_ref(),
                    model.get(&slot),
                    "project {p} read something the model does not hold"
                );
            }
            (Op::Delete { .. }, SecureStoreResponse::DeleteItem(result)) => {
                assert!(key_ok && service_ok, "invalid name accepted");
                result.expect("delete succeeds");
                model.remove(&slot);
            }
            (op, response) => panic!("answer of the wrong kind: {op:?} -> {response:?}"),
        }
    }
});
