//! The in-process direct lane: an in-process session's gets and contains answered on the calling
//! thread from the daemon's reader pool, with the same answers, refusals and order as the pipe. A
//! real hosted daemon, real SQLite files; `reads_answered_directly` tells which way a read went.

use std::sync::Arc;
use std::time::Duration;

use securestore_bridge::{
    ErrorCode, HostHandle, HostOptions, KeychainAccessible, Policy, SecretString, Session, runtime,
};
use securestore_client::ConnectOptions;
use tempfile::TempDir;

fn start(dir: &TempDir, policy: Policy) -> HostHandle {
    HostHandle::start(
        HostOptions {
            policy,
            ..HostOptions::under(dir.path())
        },
        None,
    )
    .expect("host starts")
}

fn get(session: &Session, key: &str) -> Result<Option<String>, ErrorCode> {
    session
        .get(key, None)
        .map(|v| v.map(|v| v.expose_secret().to_owned()))
        .map_err(|err| err.code)
}

fn set(session: &Session, key: &str, value: &str) {
    session
        .set(key, value.into(), None, KeychainAccessible::WhenUnlocked)
        .unwrap_or_else(|err| panic!("set {key}: {err:?}"));
}

fn some(value: &str) -> Result<Option<String>, ErrorCode> {
    Ok(Some(value.to_owned()))
}

/// Runs `read` on another thread and fails the test if it has not returned within 10 s.
fn within_10s<T: Send + 'static>(read: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the call returned within 10 s (no hang)")
}

#[test]
fn direct_gets_see_completed_writes_of_this_and_other_sessions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start(&dir, Policy::Open);
    let mine = Session::connect_in_process(&host, "@direct/app", None, None).expect("mine");
    let other = Session::connect_in_process(&host, "@direct/app", None, None).expect("other");
    assert_eq!(mine.reads_answered_directly(), 0);

    assert_eq!(get(&mine, "k"), Ok(None));
    set(&mine, "k", "mine");
    assert_eq!(get(&mine, "k"), some("mine"));
    assert!(mine.contains("k", None).expect("contains"));
    set(&other, "k", "other's");
    assert_eq!(get(&mine, "k"), some("other's"));
    set(&other, "k2", "v2");
    assert_eq!(get(&mine, "k2"), some("v2"));
    mine.delete("k", None).expect("delete");
    assert_eq!(get(&mine, "k"), Ok(None), "a delete then a get");
    assert_eq!(get(&other, "k"), Ok(None));
    assert!(!mine.contains("k", None).expect("contains"));
    other
        .set("k3", "s".into(), Some("svc"), KeychainAccessible::Always)
        .expect("set in a service");
    assert_eq!(
        mine.get("k3", Some("svc"))
            .expect("get")
            .map(|v| v.expose_secret().to_owned())
            .as_deref(),
        Some("s")
    );
    assert_eq!(get(&mine, "k3"), Ok(None), "another service");
    assert_eq!(
        mine.reads_answered_directly(),
        9,
        "every read of an idle session took the direct lane"
    );

    // Bad names get the pipe's codes and words.
    let invalid = mine.get("bad key!", None).expect_err("invalid key");
    assert_eq!(invalid.code, ErrorCode::InvalidKey);
    assert!(
        invalid
            .message
            .starts_with("Invalid key provided to SecureStore"),
        "{invalid:?}"
    );
    assert_eq!(
        mine.contains("k", Some("")).expect_err("bad service").code,
        ErrorCode::InvalidService
    );

    // Another project's session sees none of it.
    let elsewhere = Session::connect_in_process(&host, "@direct/other", None, None).expect("b");
    assert_eq!(get(&elsewhere, "k2"), Ok(None));
    // A socket session has no direct lane and reads the same store.
    let socket = host.socket().to_str().expect("utf-8").to_owned();
    let remote = Session::connect(&socket, "@direct/app", None, None).expect("socket");
    assert_eq!(get(&remote, "k2"), some("v2"));
    assert_eq!(remote.reads_answered_directly(), 0);
    host.stop().expect("stop");
}

#[test]
fn a_locked_class_answers_locked_through_the_direct_lane() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start(&dir, Policy::Open);
    let session = Session::connect_in_process(&host, "@direct/device", None, None).expect("c");
    set(&session, "wu", "when unlocked");
    session
        .set("always", "a".into(), None, KeychainAccessible::Always)
        .expect("set always");
    host.lock().expect("lock");
    let before = session.reads_answered_directly();
    let locked = session.get("wu", None).expect_err("locked, never absent");
    assert_eq!(locked.code, ErrorCode::Locked, "{locked:?}");
    assert!(locked.message.contains("locked"), "{locked:?}");
    assert_eq!(get(&session, "always"), some("a"));
    assert_eq!(
        session.reads_answered_directly(),
        before + 2,
        "answered directly"
    );
    host.unlock(None).expect("unlock");
    assert_eq!(get(&session, "wu"), some("when unlocked"));
    host.stop().expect("stop");
}

#[test]
fn registering_replacing_or_removing_the_project_refuses_direct_gets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start(&dir, Policy::Open);
    let socket = host.socket().to_path_buf();

    // Opened unregistered; registered since: refused, as the pipe refuses it.
    let open = Session::connect_in_process(&host, "@direct/open", None, None).expect("open");
    set(&open, "k", "v");
    assert_eq!(get(&open, "k"), some("v"));
    let token = host.register_project("@direct/open").expect("register");
    let before = open.reads_answered_directly();
    let refused = open.get("k", None).expect_err("registered since");
    assert_eq!(refused.code, ErrorCode::Refused, "{refused:?}");
    assert!(refused.message.contains("reconnect"), "{refused:?}");
    assert_eq!(
        open.contains("k", None).expect_err("contains too").code,
        ErrorCode::Refused
    );
    assert_eq!(open.reads_answered_directly(), before + 2);

    // Opened with the token; the token replaced since: refused.
    let with_token =
        Session::connect_in_process(&host, "@direct/open", Some(token.clone()), None).expect("tok");
    assert_eq!(get(&with_token, "k"), some("v"));
    let options = ConnectOptions::default();
    let new_token = runtime()
        .block_on(securestore_client::admin::replace_project(
            &socket,
            "@direct/open",
            false,
            &options,
        ))
        .expect("replace");
    assert_eq!(
        with_token.get("k", None).expect_err("replaced").code,
        ErrorCode::Refused
    );

    // Opened with the new token; the project removed since: refused.
    let last = Session::connect_in_process(&host, "@direct/open", Some(new_token.clone()), None)
        .expect("new token");
    assert_eq!(get(&last, "k"), some("v"));
    let removing = ConnectOptions {
        token: Some(new_token),
        ..ConnectOptions::default()
    };
    let existed = runtime()
        .block_on(securestore_client::admin::remove_project(
            &socket,
            "@direct/open",
            &removing,
        ))
        .expect("remove");
    assert!(existed);
    assert_eq!(
        last.get("k", None).expect_err("removed").code,
        ErrorCode::Refused
    );
    // A new session on the now unregistered project reads it empty.
    let again = Session::connect_in_process(&host, "@direct/open", None, None).expect("again");
    assert_eq!(get(&again, "k"), Ok(None));
    host.stop().expect("stop");
}

#[test]
fn wrong_or_needless_tokens_refuse_the_connect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start(&dir, Policy::Strict);
    let token = host.register_project("@direct/reg").expect("register");
    for wrong in [None, Some(SecretString::from("not-the-token"))] {
        let refused =
            Session::connect_in_process(&host, "@direct/reg", wrong, None).expect_err("refused");
        assert_eq!(refused.code, ErrorCode::Refused, "{refused:?}");
    }
    let strict =
        Session::connect_in_process(&host, "@direct/unreg", None, None).expect_err("strict policy");
    assert_eq!(strict.code, ErrorCode::Refused);
    let session = Session::connect_in_process(&host, "@direct/reg", Some(token), None).expect("ok");
    set(&session, "k", "v");
    assert_eq!(get(&session, "k"), some("v"));
    assert!(session.reads_answered_directly() > 0);
    host.stop().expect("stop");

    let dir = tempfile::tempdir().expect("tempdir");
    let host = start(&dir, Policy::Open);
    let needless = Session::connect_in_process(
        &host,
        "@direct/unreg",
        Some(SecretString::from("a token for nothing")),
        None,
    )
    .expect_err("a token for an unregistered project");
    assert_eq!(needless.code, ErrorCode::Refused);
    assert!(needless.message.contains("not registered"), "{needless:?}");
    host.stop().expect("stop");
}

#[test]
fn a_session_that_outlives_its_host_answers_an_error_promptly() {
    for stop in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = start(&dir, Policy::Open);
        let session = Arc::new(
            Session::connect_in_process(&host, "@direct/after", None, None).expect("connect"),
        );
        set(&session, "k", "v");
        assert_eq!(get(&session, "k"), some("v"));
        // Stopping must not wait for the session: it holds no store handle.
        within_10s(move || {
            if stop {
                host.stop().expect("stop");
            } else {
                drop(host);
            }
        });
        for _ in 0..3 {
            let s = session.clone();
            let after = within_10s(move || get(&s, "k"));
            assert_eq!(after, Err(ErrorCode::Unreachable), "stop={stop}");
            let s = session.clone();
            let contains = within_10s(move || s.contains("k", None).map_err(|e| e.code));
            assert_eq!(contains, Err(ErrorCode::Unreachable));
        }
        // The data folder is free again: a new host opens it and finds the item.
        let host = start(&dir, Policy::Open);
        let fresh = Session::connect_in_process(&host, "@direct/after", None, None).expect("c");
        assert_eq!(get(&fresh, "k"), some("v"));
        host.stop().expect("stop");
    }
}

#[test]
fn many_threads_reading_and_writing_one_session_get_correct_answers() {
    const THREADS: usize = 12;
    const ROUNDS: usize = 150;
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start(&dir, Policy::Open);
    let session =
        Arc::new(Session::connect_in_process(&host, "@direct/many", None, None).expect("c"));
    set(&session, "shared", "fixed");
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let session = session.clone();
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    let key = format!("t{t}");
                    // Half the threads write now and then, so reads meet writes in flight (and
                    // take the pipe); all read more often than the 4 pooled readers can serve.
                    if t % 2 == 0 && round % 10 == 0 {
                        let value = format!("{t}-{round}");
                        set(&session, &key, &value);
                        // This thread's own completed write is seen, whichever way the get goes.
                        assert_eq!(get(&session, &key), some(&value));
                    }
                    assert_eq!(get(&session, "shared"), some("fixed"));
                    assert!(session.contains("shared", None).expect("contains"));
                    assert_eq!(get(&session, "never"), Ok(None));
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker");
    }
    for t in (0..THREADS).step_by(2) {
        let last = format!("{t}-{}", ROUNDS - 10);
        assert_eq!(get(&session, &format!("t{t}")), some(&last));
    }
    let direct = session.reads_answered_directly();
    let reads = (THREADS * ROUNDS * 3 + (THREADS / 2) * (ROUNDS / 10)) as u64 + THREADS as u64 / 2;
    println!("{direct} of {reads} reads answered on the direct lane, the rest through the pipe");
    assert!(direct > 0, "the direct lane was used");
    assert!(
        direct < reads,
        "some reads went through the pipe (writes in flight or no reader free)"
    );
    host.stop().expect("stop");
}

#[test]
fn a_store_without_pooled_readers_answers_every_read_through_the_pipe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let memory: securestore_bridge::OpenBackend = Box::new(|_| {
        Ok(
            Box::new(securestore_backends::memory::MemoryBackend::default())
                as Box<dyn securestore_backends::Backend>,
        )
    });
    let host =
        HostHandle::start(HostOptions::under(dir.path()), Some(memory)).expect("host starts");
    let session = Session::connect_in_process(&host, "@direct/mem", None, None).expect("c");
    set(&session, "k", "v");
    assert_eq!(get(&session, "k"), some("v"));
    assert!(session.contains("k", None).expect("contains"));
    assert_eq!(get(&session, "other"), Ok(None));
    assert_eq!(
        session.reads_answered_directly(),
        0,
        "no reader to borrow: the lane hands every read to the pipe"
    );
    host.stop().expect("stop");
}
