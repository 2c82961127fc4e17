//! Device signals from the host and backups through a session, as the Java and C bindings call
//! them: a real in-process daemon, a real SQLite store, real files.

use securestore_bridge::{
    DeviceStatus, ErrorCode, HostHandle, HostOptions, KdfParams, KeychainAccessible, LockState,
    SecretString, Session,
};
use tempfile::TempDir;

/// Cheap Argon2id parameters, so the tests do not spend seconds deriving keys.
const CHEAP: KdfParams = KdfParams {
    m_cost_kib: 64,
    t_cost: 1,
    p_cost: 1,
};

fn host(dir: &TempDir, device: DeviceStatus) -> HostHandle {
    HostHandle::start(
        HostOptions {
            device,
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

fn set(session: &Session, key: &str, value: &str, class: KeychainAccessible) {
    session
        .set(key, value.into(), None, class)
        .unwrap_or_else(|err| panic!("set {key}: {err:?}"));
}

#[test]
fn lock_state_decides_what_a_session_may_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(&dir, DeviceStatus::BEFORE_FIRST_UNLOCK);
    let status = host.device_status().expect("status");
    assert_eq!(status, DeviceStatus::BEFORE_FIRST_UNLOCK);
    let session = Session::connect_in_process(&host, "@dev/app", None, None).expect("connect");

    // Before the first unlock only ALWAYS* classes are available; the rest answer Locked.
    set(&session, "always", "a", KeychainAccessible::Always);
    let refused = session
        .set(
            "afu",
            "x".into(),
            None,
            KeychainAccessible::AfterFirstUnlock,
        )
        .expect_err("after-first-unlock before the first unlock");
    assert_eq!(refused.code, ErrorCode::Locked, "{refused:?}");

    let unlocked = host.unlock(None).expect("unlock");
    assert_eq!(unlocked.lock, LockState::Unlocked);
    set(&session, "afu", "b", KeychainAccessible::AfterFirstUnlock);
    set(&session, "wu", "c", KeychainAccessible::WhenUnlocked);

    let locked = host.lock().expect("lock");
    assert_eq!(locked.lock, LockState::Locked);
    assert_eq!(
        host.device_status().expect("status").lock,
        LockState::Locked
    );
    assert_eq!(get(&session, "wu"), Err(ErrorCode::Locked), "never absent");
    assert_eq!(get(&session, "afu").expect("afu"), Some("b".to_owned()));
    assert_eq!(
        get(&session, "always").expect("always"),
        Some("a".to_owned())
    );

    host.unlock(None).expect("unlock again");
    assert_eq!(get(&session, "wu").expect("wu"), Some("c".to_owned()));
    host.stop().expect("stop");
}

#[test]
fn removing_the_passcode_deletes_passcode_items_and_setting_one_allows_them_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(&dir, DeviceStatus::BEFORE_FIRST_UNLOCK);
    host.unlock(None).expect("unlock");
    let session = Session::connect_in_process(&host, "@dev/app", None, None).expect("connect");
    let class = KeychainAccessible::WhenPasscodeSetThisDeviceOnly;
    let refused = session
        .set("pin", "1".into(), None, class)
        .expect_err("no passcode yet");
    assert_eq!(refused.code, ErrorCode::PasscodeNotSet, "{refused:?}");

    assert!(host.passcode_set().expect("passcode set").passcode_set);
    set(&session, "pin", "1", class);
    set(&session, "plain", "2", KeychainAccessible::WhenUnlocked);
    assert_eq!(get(&session, "pin").expect("pin"), Some("1".to_owned()));

    assert!(!host.passcode_removed().expect("removed").passcode_set);
    assert_eq!(get(&session, "pin").expect("pin after removal"), None);
    assert_eq!(get(&session, "plain").expect("plain"), Some("2".to_owned()));
    host.stop().expect("stop");
}

#[test]
fn a_wrong_unlock_secret_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(&dir, DeviceStatus::BEFORE_FIRST_UNLOCK);
    host.unlock(Some(SecretString::from("first secret")))
        .expect("the first secret binds");
    host.lock().expect("lock");
    let wrong = host
        .unlock(Some(SecretString::from("another")))
        .expect_err("wrong secret");
    assert_eq!(wrong.code, ErrorCode::Refused, "{wrong:?}");
    assert_eq!(
        host.device_status().expect("status").lock,
        LockState::Locked
    );
    let right = host
        .unlock(Some(SecretString::from("first secret")))
        .expect("right secret");
    assert_eq!(right.lock, LockState::Unlocked);
    host.stop().expect("stop");
}

#[test]
fn the_default_host_stays_unlocked_as_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(&dir, DeviceStatus::UNLOCKED);
    assert_eq!(
        host.device_status().expect("status"),
        DeviceStatus::UNLOCKED
    );
    let session = Session::connect_in_process(&host, "@dev/app", None, None).expect("connect");
    set(
        &session,
        "pin",
        "1",
        KeychainAccessible::WhenPasscodeSetThisDeviceOnly,
    );
    host.stop().expect("stop");
}

#[test]
fn a_backup_moves_values_to_another_host_and_a_wrong_passphrase_imports_nothing() {
    let first_dir = tempfile::tempdir().expect("tempdir");
    let second_dir = tempfile::tempdir().expect("tempdir");
    let first = host(&first_dir, DeviceStatus::UNLOCKED);
    let source = Session::connect_in_process(&first, "@dev/app", None, None).expect("connect");
    set(&source, "a", "alpha", KeychainAccessible::WhenUnlocked);
    set(&source, "b", "beta", KeychainAccessible::AfterFirstUnlock);
    set(
        &source,
        "local",
        "stays",
        KeychainAccessible::WhenUnlockedThisDeviceOnly,
    );
    let pass = SecretString::from("correct horse");
    let file = source
        .export_backup_with(None, &pass, CHEAP)
        .expect("export");
    assert!(!file.windows(5).any(|w| w == b"alpha"), "sealed");
    let exported = source.export(None).expect("export items");
    assert_eq!(
        exported.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
        ["a", "b"],
        "this-device-only items never leave"
    );
    first.stop().expect("stop first");

    // A second host: another data folder, another master key.
    let second = host(&second_dir, DeviceStatus::UNLOCKED);
    let target = Session::connect_in_process(&second, "@dev/app", None, None).expect("connect");
    let wrong = target
        .import_backup(&file, &SecretString::from("wrong"), false)
        .expect_err("wrong passphrase");
    assert_eq!(wrong.code, ErrorCode::BadBackup, "{wrong:?}");
    assert!(target.list_keys(None).expect("keys").is_empty(), "nothing");
    let mut altered = file.clone();
    let last = altered.len() - 1;
    altered[last] ^= 1;
    assert_eq!(
        target
            .import_backup(&altered, &pass, false)
            .expect_err("altered")
            .code,
        ErrorCode::BadBackup
    );

    set(&target, "b", "kept", KeychainAccessible::WhenUnlocked);
    let report = target.import_backup(&file, &pass, false).expect("import");
    assert_eq!((report.added, report.replaced, report.skipped), (1, 0, 1));
    assert_eq!(get(&target, "a").expect("a"), Some("alpha".to_owned()));
    assert_eq!(get(&target, "b").expect("b"), Some("kept".to_owned()));
    let report = target.import_backup(&file, &pass, true).expect("replace");
    assert_eq!((report.added, report.replaced, report.skipped), (0, 2, 0));
    assert_eq!(get(&target, "b").expect("b"), Some("beta".to_owned()));
    assert_eq!(
        target
            .export_backup_with(None, &SecretString::from(""), CHEAP)
            .expect_err("empty passphrase")
            .code,
        ErrorCode::InvalidArgument
    );
    second.stop().expect("stop second");
}

#[test]
fn a_locked_export_says_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = host(&dir, DeviceStatus::BEFORE_FIRST_UNLOCK);
    host.unlock(None).expect("unlock");
    let session = Session::connect_in_process(&host, "@dev/app", None, None).expect("connect");
    set(&session, "wu", "v", KeychainAccessible::WhenUnlocked);
    host.lock().expect("lock");
    let err = session
        .export_backup_with(None, &SecretString::from("pw"), CHEAP)
        .expect_err("locked");
    assert_eq!(err.code, ErrorCode::Locked, "{err:?}");
    host.stop().expect("stop");
}
