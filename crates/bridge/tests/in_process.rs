//! The in-process transport: a process that hosts the daemon reaches it through a pipe, with the
//! same handshake, project binding and token check as a socket peer. The same contract cases as
//! through the socket, and the isolation between projects.

use securestore_bridge::{
    ErrorCode, HostHandle, HostOptions, KeychainAccessible, Policy, SecretString, Session,
};
use tempfile::TempDir;

const LIMIT: u32 = 512;

fn host(dir: &TempDir, policy: Policy) -> HostHandle {
    HostHandle::start(
        HostOptions {
            max_value_bytes: Some(LIMIT),
            policy,
            ..HostOptions::under(dir.path())
        },
        None,
    )
    .expect("host starts")
}

fn value(session: &Session, key: &str, service: Option<&str>) -> Option<String> {
    session
        .get(key, service)
        .expect("get")
        .map(|v| v.expose_secret().to_owned())
}

fn set(session: &Session, key: &str, value: &str, service: Option<&str>) -> Result<(), ErrorCode> {
    session
        .set(key, value.into(), service, KeychainAccessible::WhenUnlocked)
        .map_err(|err| err.code)
}

#[test]
fn the_contract_holds_in_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(&dir, Policy::Open);
    let session = Session::connect_in_process(&host, "@inproc/app", None, None).expect("connect");
    assert_eq!(session.project(), "@inproc/app");
    assert_eq!(session.max_value_bytes(), LIMIT);

    set(&session, "token", "s3cr3t", None).expect("set");
    assert_eq!(value(&session, "token", None).as_deref(), Some("s3cr3t"));
    assert_eq!(value(&session, "never_set", None), None);
    set(
        &session,
        "token",
        "h\u{e9}llo \u{2713} \u{65e5}\u{672c} \u{1f510}",
        None,
    )
    .expect("utf8");
    assert_eq!(
        value(&session, "token", None).as_deref(),
        Some("h\u{e9}llo \u{2713} \u{65e5}\u{672c} \u{1f510}")
    );
    session.delete("token", None).expect("delete");
    assert_eq!(value(&session, "token", None), None);
    session
        .delete("token", None)
        .expect("delete of a missing item");

    set(&session, "k", "a", Some("svc.a")).expect("set a");
    set(&session, "k", "b", Some("svc.b")).expect("set b");
    assert_eq!(value(&session, "k", Some("svc.a")).as_deref(), Some("a"));
    assert_eq!(value(&session, "k", Some("svc.b")).as_deref(), Some("b"));
    assert_eq!(value(&session, "k", None), None);

    let invalid = session.get("bad key!", None).expect_err("invalid key");
    assert_eq!(invalid.code, ErrorCode::InvalidKey);
    assert!(
        invalid
            .message
            .starts_with("Invalid key provided to SecureStore")
    );
    assert_eq!(set(&session, "", "x", None), Err(ErrorCode::InvalidKey));
    assert_eq!(
        set(&session, "k", "x", Some("")),
        Err(ErrorCode::InvalidService)
    );
    set(&session, "big", &"v".repeat(LIMIT as usize), None).expect("at the limit");
    let large = session
        .set(
            "big",
            "v".repeat(LIMIT as usize + 1).into(),
            None,
            KeychainAccessible::WhenUnlocked,
        )
        .expect_err("over the limit");
    assert_eq!(large.code, ErrorCode::ValueTooLarge);
    assert!(large.message.contains("512"), "{large:?}");
    let bad_project =
        Session::connect_in_process(&host, "bad project!", None, None).expect_err("bad project");
    assert_eq!(bad_project.code, ErrorCode::InvalidProject);

    // A socket client sees what the in-process one wrote: one store behind both transports.
    let socket = host.socket().to_str().expect("utf-8 path").to_owned();
    let remote = Session::connect(&socket, "@inproc/app", None, None).expect("socket connect");
    assert_eq!(value(&remote, "k", Some("svc.a")).as_deref(), Some("a"));
    set(&remote, "from_socket", "1", None).expect("socket set");
    assert_eq!(value(&session, "from_socket", None).as_deref(), Some("1"));
    host.stop().expect("stop");
    assert_eq!(
        session.get("k", None).expect_err("host stopped").code,
        ErrorCode::Unreachable
    );
}

#[test]
fn an_in_process_client_sees_only_its_own_project() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(&dir, Policy::Open);
    let a = Session::connect_in_process(&host, "@inproc/a", None, None).expect("a");
    let b = Session::connect_in_process(&host, "@inproc/b", None, None).expect("b");
    set(&a, "shared_name", "a's secret", None).expect("a sets");
    assert_eq!(
        value(&b, "shared_name", None),
        None,
        "b must not see a's item"
    );
    set(&b, "shared_name", "b's secret", None).expect("b sets");
    assert_eq!(
        value(&a, "shared_name", None).as_deref(),
        Some("a's secret")
    );
    b.delete("shared_name", None).expect("b deletes its own");
    assert_eq!(
        value(&a, "shared_name", None).as_deref(),
        Some("a's secret")
    );
}

#[test]
fn tokens_and_policy_are_checked_in_process_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(&dir, Policy::Strict);
    let token = host
        .register_project("@inproc/registered")
        .expect("register");
    let refused =
        Session::connect_in_process(&host, "@inproc/registered", None, None).expect_err("no token");
    assert_eq!(refused.code, ErrorCode::Refused);
    let wrong = Session::connect_in_process(
        &host,
        "@inproc/registered",
        Some(SecretString::from("not-the-token")),
        None,
    )
    .expect_err("wrong token");
    assert_eq!(wrong.code, ErrorCode::Refused);
    let strict = Session::connect_in_process(&host, "@inproc/unregistered", None, None)
        .expect_err("strict policy");
    assert_eq!(strict.code, ErrorCode::Refused);
    let session =
        Session::connect_in_process(&host, "@inproc/registered", Some(token), None).expect("token");
    set(&session, "k", "v", None).expect("set");
}

#[test]
fn a_second_host_on_the_same_socket_or_data_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = host(&dir, Policy::Open);
    let again = HostHandle::start(
        HostOptions {
            data_dir: dir.path().join("data2"),
            key_file: dir.path().join("state/master2.key"),
            ..HostOptions::under(dir.path())
        },
        None,
    )
    .expect_err("same socket");
    assert_eq!(again.code, ErrorCode::HostFailed);
    assert!(again.message.contains("already"), "{again:?}");
    let same_data = HostHandle::start(
        HostOptions {
            socket: dir.path().join("run/other.sock"),
            ..HostOptions::under(dir.path())
        },
        None,
    )
    .expect_err("same data folder");
    assert_eq!(same_data.code, ErrorCode::HostFailed);
    assert!(same_data.message.contains("data folder"), "{same_data:?}");
    first.stop().expect("stop");
    // Stopped cleanly: the socket and the data folder are free again.
    host(&dir, Policy::Open).stop().expect("restart and stop");
}
