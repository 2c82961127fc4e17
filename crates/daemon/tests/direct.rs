//! `Host::open_direct`: the in-process direct lane binds as a connection's handshake does, answers
//! on the calling thread from the reader pool, says "elsewhere" when there is no reader, and says
//! "shutting down" once its host has stopped. A real hosted daemon on real SQLite files.

use securestore_backends::Backend;
use securestore_backends::memory::MemoryBackend;
use securestore_backends::sqlite::{SqliteBackend, SqliteConfig};
use securestore_daemon::backend::BackendPaths;
use securestore_daemon::{Config, Host, HostConfig, Outcome, Policy};
use securestore_proto::{SecretString, ServiceError};
use tempfile::TempDir;

fn start(dir: &TempDir, policy: Policy, sqlite: bool) -> Host {
    Host::start(
        HostConfig {
            socket: dir.path().join("run/s.sock"),
            paths: BackendPaths {
                data_dir: dir.path().join("data"),
                key_file: dir.path().join("state/master.key"),
            },
            config: Config {
                policy,
                ..Config::default()
            },
        },
        move |paths: &BackendPaths| {
            Ok(if sqlite {
                Box::new(SqliteBackend::open(&SqliteConfig {
                    data_dir: paths.data_dir.clone(),
                    key_file: paths.key_file.clone(),
                })?) as Box<dyn Backend>
            } else {
                Box::new(MemoryBackend::default())
            })
        },
    )
    .expect("host starts")
}

fn refused<T: std::fmt::Debug>(result: Result<T, ServiceError>) -> String {
    match result.expect_err("refused") {
        ServiceError::Refused { reason } => reason,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn open_direct_binds_exactly_as_a_connection_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start(&dir, Policy::Strict, true);
    let token = host.registry().add("@d/reg").expect("register");
    assert!(matches!(
        host.open_direct("bad project!", None),
        Err(ServiceError::InvalidProject { .. })
    ));
    refused(host.open_direct("@d/unreg", None));
    refused(host.open_direct("@d/reg", None));
    refused(host.open_direct("@d/reg", Some(&SecretString::from("wrong"))));
    let direct = host.open_direct("@d/reg", Some(&token)).expect("token");
    assert_eq!(direct.project(), "@d/reg");
    assert!(matches!(direct.get("k", None), Outcome::Done(Ok(None))));
    assert!(matches!(
        direct.contains("k", Some("svc")),
        Outcome::Done(Ok(false))
    ));
    assert!(matches!(
        direct.get("bad key!", None),
        Outcome::Done(Err(ServiceError::InvalidKey))
    ));
    host.stop().expect("stop");

    let dir = tempfile::tempdir().expect("tempdir");
    let host = start(&dir, Policy::Open, true);
    let reason = refused(host.open_direct("@d/unreg", Some(&SecretString::from("t"))));
    assert!(reason.contains("not registered"), "{reason}");
    let direct = host.open_direct("@d/unreg", None).expect("open policy");
    assert!(matches!(direct.get("k", None), Outcome::Done(Ok(None))));
    // Registered since the handle was opened: every later call is refused, as a connection's
    // requests are, before the names are even looked at.
    host.registry().add("@d/unreg").expect("register");
    for outcome in [direct.get("k", None), direct.get("bad key!", None)] {
        let reason = match outcome {
            Outcome::Done(result) => refused(result),
            Outcome::Elsewhere => panic!("not answered"),
        };
        assert!(reason.contains("reconnect"), "{reason}");
    }
    host.stop().expect("stop");
}

#[test]
fn a_store_without_readers_sends_reads_elsewhere_after_the_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start(&dir, Policy::Open, false);
    let direct = host.open_direct("@d/mem", None).expect("bind");
    assert!(matches!(direct.get("k", None), Outcome::Elsewhere));
    assert!(matches!(direct.contains("k", None), Outcome::Elsewhere));
    assert!(matches!(
        direct.get("bad key!", None),
        Outcome::Done(Err(ServiceError::InvalidKey))
    ));
    host.stop().expect("stop");
}

#[test]
fn a_direct_handle_that_outlives_its_host_says_shutting_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start(&dir, Policy::Open, true);
    let direct = host.open_direct("@d/after", None).expect("bind");
    assert!(matches!(direct.get("k", None), Outcome::Done(Ok(None))));
    // Returns: the handle holds no store handle for the owner to wait on.
    host.stop().expect("stop");
    assert!(matches!(
        direct.get("k", None),
        Outcome::Done(Err(ServiceError::ShuttingDown))
    ));
    assert!(matches!(
        direct.contains("k", None),
        Outcome::Done(Err(ServiceError::ShuttingDown))
    ));
}
