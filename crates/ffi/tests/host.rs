//! The C ABI's in-process host, called as C would call it: start, register a project, connect
//! without a socket (token and policy checked), the contract, a second host refused, stop.
// The test calls the `extern "C"` functions directly, with pointers, as a C caller does.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char};
use std::ptr;

use securestore::securestore_result::{self, *};
use securestore::*;

fn c(text: &str) -> CString {
    CString::new(text).expect("no NUL")
}

/// Takes a message or token the library returned, frees it, and returns it as a `String`.
fn take(text: *mut c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: a NUL-terminated string from the library, freed right after.
    let owned = unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned();
    unsafe { securestore_string_free(text) };
    owned
}

struct Paths {
    _dir: tempfile::TempDir,
    socket: CString,
    data: CString,
    key: CString,
}

fn paths() -> Paths {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |p: &str| c(dir.path().join(p).to_str().expect("utf-8"));
    Paths {
        socket: path("run/s.sock"),
        data: path("data"),
        key: path("state/master.key"),
        _dir: dir,
    }
}

fn start(
    paths: &Paths,
    policy: Option<&str>,
) -> Result<*mut securestore_host, (securestore_result, String)> {
    let policy = policy.map(c);
    let mut host = ptr::null_mut();
    let mut err = ptr::null_mut();
    // SAFETY: valid strings, writable out-pointers.
    let code = unsafe {
        securestore_host_start(
            paths.socket.as_ptr(),
            paths.data.as_ptr(),
            paths.key.as_ptr(),
            ptr::null(),
            0,
            policy.as_ref().map_or(ptr::null(), |p| p.as_ptr()),
            &mut host,
            &mut err,
        )
    };
    if code == SECURESTORE_OK {
        Ok(host)
    } else {
        Err((code, take(err)))
    }
}

fn connect(
    host: *const securestore_host,
    project: &str,
    token: Option<&str>,
) -> Result<*mut securestore_client, securestore_result> {
    let project = c(project);
    let token = token.map(c);
    let mut client = ptr::null_mut();
    // SAFETY: a live host, valid strings, a writable out-pointer; no message asked for.
    let code = unsafe {
        securestore_host_connect(
            host,
            project.as_ptr(),
            token.as_ref().map_or(ptr::null(), |t| t.as_ptr()),
            &mut client,
            ptr::null_mut(),
        )
    };
    if code == SECURESTORE_OK {
        Ok(client)
    } else {
        Err(code)
    }
}

fn set(client: *const securestore_client, key: &str, value: &str) -> securestore_result {
    let key = c(key);
    // SAFETY: a live client, a valid key, `value.len()` readable bytes.
    unsafe {
        securestore_set(
            client,
            key.as_ptr(),
            value.as_ptr(),
            value.len(),
            ptr::null(),
            5,
            ptr::null_mut(),
        )
    }
}

fn get(client: *const securestore_client, key: &str) -> Option<String> {
    let key = c(key);
    let mut value = ptr::null_mut();
    let mut len = 0;
    // SAFETY: a live client, a valid key, writable out-pointers.
    let code = unsafe {
        securestore_get(
            client,
            key.as_ptr(),
            ptr::null(),
            &mut value,
            &mut len,
            ptr::null_mut(),
        )
    };
    assert_eq!(code, SECURESTORE_OK);
    if value.is_null() {
        return None;
    }
    // SAFETY: `len` bytes at `value`, freed right after.
    let text = String::from_utf8(unsafe { std::slice::from_raw_parts(value, len) }.to_vec());
    unsafe { securestore_value_free(value, len) };
    Some(text.expect("utf-8"))
}

#[test]
fn the_in_process_host_through_the_c_abi() {
    let paths = paths();
    let host = start(&paths, Some("strict")).expect("host starts");

    let project = c("@c/host");
    let mut token = ptr::null_mut();
    // SAFETY: a live host, a valid string, a writable out-pointer.
    let code = unsafe {
        securestore_host_register_project(host, project.as_ptr(), &mut token, ptr::null_mut())
    };
    assert_eq!(code, SECURESTORE_OK);
    let token = take(token);
    assert!(
        token.len() >= 64,
        "a token of 256 random bits, in hex: {} chars",
        token.len()
    );

    assert_eq!(
        connect(host, "@c/host", None).err(),
        Some(SECURESTORE_REFUSED)
    );
    assert_eq!(
        connect(host, "@c/host", Some("wrong")).err(),
        Some(SECURESTORE_REFUSED)
    );
    assert_eq!(
        connect(host, "@c/unregistered", None).err(),
        Some(SECURESTORE_REFUSED),
        "the strict policy refuses unregistered projects"
    );
    let client = connect(host, "@c/host", Some(&token)).expect("with its token");
    assert_eq!(set(client, "k", "v \u{1f510}"), SECURESTORE_OK);
    assert_eq!(get(client, "k").as_deref(), Some("v \u{1f510}"));
    assert_eq!(set(client, "bad key!", "v"), SECURESTORE_INVALID_KEY);
    // SAFETY: a live client and a valid key.
    let deleted =
        unsafe { securestore_delete(client, c("k").as_ptr(), ptr::null(), ptr::null_mut()) };
    assert_eq!(deleted, SECURESTORE_OK);
    assert_eq!(get(client, "k"), None);
    beyond_expo(client);

    let (code, message) = start(&paths, None).expect_err("a second host on the same socket");
    assert_eq!(code, SECURESTORE_HOST_FAILED);
    assert!(message.contains("already"), "{message}");

    // SAFETY: handles from this library, each freed once.
    unsafe { securestore_client_free(client) };
    let mut err = ptr::null_mut();
    assert_eq!(
        unsafe { securestore_host_free(host, &mut err) },
        SECURESTORE_OK
    );
    assert!(err.is_null());
    // Stopped: the socket is free for a new host.
    let again = start(&paths, None).expect("restart");
    assert_eq!(
        unsafe { securestore_host_free(again, ptr::null_mut()) },
        SECURESTORE_OK
    );
}

#[test]
fn bad_host_arguments_are_invalid_arguments() {
    let paths = paths();
    let (code, message) = start(&paths, Some("lenient")).expect_err("unknown policy");
    assert_eq!(code, SECURESTORE_INVALID_ARGUMENT);
    assert!(message.contains("lenient"), "{message}");
    let mut host = ptr::null_mut();
    // SAFETY: null strings are allowed to be passed; the library must refuse them.
    let code = unsafe {
        securestore_host_start(
            ptr::null(),
            ptr::null(),
            ptr::null(),
            ptr::null(),
            0,
            ptr::null(),
            &mut host,
            ptr::null_mut(),
        )
    };
    assert_eq!(code, SECURESTORE_INVALID_ARGUMENT);
    assert!(host.is_null());
    assert_eq!(
        connect(ptr::null(), "@c/x", None).err(),
        Some(SECURESTORE_INVALID_ARGUMENT)
    );
}

/// contains, list, clear and the conditional writes, as C calls them.
fn beyond_expo(client: *const securestore_client) {
    let mut watcher = 0u64;
    // SAFETY: a live client, a writable out-pointer.
    let code = unsafe {
        securestore_watch(
            client,
            ptr::null(),
            ptr::null(),
            &mut watcher,
            ptr::null_mut(),
        )
    };
    assert_eq!(code, SECURESTORE_OK);
    assert_eq!(set(client, "b", "1"), SECURESTORE_OK);
    assert_eq!(set(client, "a", "2"), SECURESTORE_OK);
    let mut events = ptr::null_mut();
    // SAFETY: a live client, a writable out-pointer.
    let code =
        unsafe { securestore_poll_events(client, watcher, 5000, &mut events, ptr::null_mut()) };
    assert_eq!(code, SECURESTORE_OK);
    let events = take(events);
    let lines: Vec<Vec<&str>> = events.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{events:?}");
    assert_eq!(lines[0][1..], ["set", "app", "b"]);
    assert_eq!(lines[1][1..], ["set", "app", "a"]);
    // SAFETY: a live client.
    assert_eq!(
        unsafe { securestore_unwatch(client, watcher, ptr::null_mut()) },
        SECURESTORE_OK
    );
    let mut found = false;
    // SAFETY: a live client, valid strings, writable out-pointers, for every call below.
    let code = unsafe {
        securestore_contains(
            client,
            c("a").as_ptr(),
            ptr::null(),
            &mut found,
            ptr::null_mut(),
        )
    };
    assert_eq!((code, found), (SECURESTORE_OK, true));
    let list = |services: bool| {
        let mut names = ptr::null_mut();
        let code =
            unsafe { securestore_list(client, ptr::null(), services, &mut names, ptr::null_mut()) };
        assert_eq!(code, SECURESTORE_OK);
        take(names)
    };
    assert_eq!(list(false), "a\nb");
    assert_eq!(list(true), "app");

    let set_if = |expected: Option<&str>, value: &str| {
        let (expected_ptr, expected_len) =
            expected.map_or((ptr::null(), 0), |e| (e.as_ptr(), e.len()));
        unsafe {
            securestore_set_if(
                client,
                c("a").as_ptr(),
                expected_ptr,
                expected_len,
                value.as_ptr(),
                value.len(),
                ptr::null(),
                5,
                ptr::null_mut(),
            )
        }
    };
    assert_eq!(set_if(None, "x"), SECURESTORE_CONFLICT, "a exists");
    assert_eq!(set_if(Some("1"), "x"), SECURESTORE_CONFLICT, "a is 2");
    assert_eq!(set_if(Some("2"), "3"), SECURESTORE_OK);
    assert_eq!(get(client, "a").as_deref(), Some("3"));
    let delete_if = |expected: &str| unsafe {
        securestore_delete_if(
            client,
            c("a").as_ptr(),
            expected.as_ptr(),
            expected.len(),
            ptr::null(),
            ptr::null_mut(),
        )
    };
    assert_eq!(delete_if("2"), SECURESTORE_CONFLICT);
    assert_eq!(delete_if("3"), SECURESTORE_OK);
    assert_eq!(get(client, "a"), None);

    // A batch: all or nothing.
    let batch = securestore_batch_new();
    // SAFETY: a live batch and client, valid strings and byte ranges, for every call below.
    unsafe {
        let key = c("t");
        assert_eq!(
            securestore_batch_set(
                batch,
                key.as_ptr(),
                "1".as_ptr(),
                1,
                ptr::null(),
                5,
                1,
                ptr::null(),
                0,
                ptr::null_mut()
            ),
            SECURESTORE_OK
        );
        assert_eq!(
            securestore_batch_set(
                batch,
                key.as_ptr(),
                "2".as_ptr(),
                1,
                ptr::null(),
                5,
                2,
                "1".as_ptr(),
                1,
                ptr::null_mut()
            ),
            SECURESTORE_OK
        );
        assert_eq!(
            securestore_write_batch(client, batch, ptr::null_mut()),
            SECURESTORE_OK
        );
        assert_eq!(get(client, "t").as_deref(), Some("2"));
        let mut err = ptr::null_mut();
        assert_eq!(
            securestore_write_batch(client, batch, &mut err),
            SECURESTORE_CONFLICT,
            "t exists now"
        );
        assert!(take(err).contains("operation 0"));
        assert_eq!(
            securestore_batch_set(
                batch,
                key.as_ptr(),
                "x".as_ptr(),
                1,
                ptr::null(),
                5,
                7,
                ptr::null(),
                0,
                ptr::null_mut()
            ),
            SECURESTORE_INVALID_ARGUMENT
        );
        securestore_batch_free(batch);
        let deletes = securestore_batch_new();
        assert_eq!(
            securestore_batch_delete(
                deletes,
                key.as_ptr(),
                ptr::null(),
                2,
                "2".as_ptr(),
                1,
                ptr::null_mut()
            ),
            SECURESTORE_OK
        );
        assert_eq!(
            securestore_write_batch(client, deletes, ptr::null_mut()),
            SECURESTORE_OK
        );
        securestore_batch_free(deletes);
    }
    assert_eq!(get(client, "t"), None);

    let mut count = 0u64;
    let code = unsafe { securestore_clear(client, ptr::null(), true, &mut count, ptr::null_mut()) };
    assert_eq!((code, count), (SECURESTORE_OK, 1), "b was left");
    assert_eq!(list(true), "");
}

/// Starts a host in `lock_state` without a passcode, as an app with lock callbacks does.
fn start_in_state(
    paths: &Paths,
    lock_state: i32,
) -> Result<*mut securestore_host, (securestore_result, String)> {
    let mut host = ptr::null_mut();
    let mut err = ptr::null_mut();
    // SAFETY: valid strings, writable out-pointers.
    let code = unsafe {
        securestore_host_start_in_state(
            paths.socket.as_ptr(),
            paths.data.as_ptr(),
            paths.key.as_ptr(),
            ptr::null(),
            0,
            ptr::null(),
            lock_state,
            false,
            &mut host,
            &mut err,
        )
    };
    if code == SECURESTORE_OK {
        Ok(host)
    } else {
        Err((code, take(err)))
    }
}

/// `securestore_set` with an accessibility class; the code and message.
fn set_class(
    client: *const securestore_client,
    key: &str,
    value: &str,
    class: i32,
) -> (securestore_result, String) {
    let key = c(key);
    let mut err = ptr::null_mut();
    // SAFETY: a live client, a valid key, `value.len()` readable bytes, a writable out-pointer.
    let code = unsafe {
        securestore_set(
            client,
            key.as_ptr(),
            value.as_ptr(),
            value.len(),
            ptr::null(),
            class,
            &mut err,
        )
    };
    (code, take(err))
}

/// `securestore_get`'s code, and the value when it succeeded.
fn get_code(client: *const securestore_client, key: &str) -> (securestore_result, Option<String>) {
    let key = c(key);
    let mut value = ptr::null_mut();
    let mut len = 0;
    // SAFETY: a live client, a valid key, writable out-pointers.
    let code = unsafe {
        securestore_get(
            client,
            key.as_ptr(),
            ptr::null(),
            &mut value,
            &mut len,
            ptr::null_mut(),
        )
    };
    if value.is_null() {
        return (code, None);
    }
    // SAFETY: `len` bytes at `value`, freed right after.
    let text = String::from_utf8(unsafe { std::slice::from_raw_parts(value, len) }.to_vec());
    unsafe { securestore_value_free(value, len) };
    (code, Some(text.expect("utf-8")))
}

type DeviceCall = unsafe extern "C" fn(
    *const securestore_host,
    *mut securestore_device_status,
    *mut *mut c_char,
) -> securestore_result;

/// Runs a device call and returns the state it reported.
fn device(host: *const securestore_host, call: DeviceCall) -> securestore_device_status {
    let mut status = securestore_device_status {
        lock: securestore_lock_state::SECURESTORE_LOCK_UNLOCKED,
        passcode_set: true,
    };
    let mut err = ptr::null_mut();
    // SAFETY: a live host, writable out-pointers.
    let code = unsafe { call(host, &mut status, &mut err) };
    assert_eq!(code, SECURESTORE_OK, "{}", take(err));
    status
}

/// `securestore_host_unlock` with `secret` (or none); the code and the state it reported.
fn unlock(
    host: *const securestore_host,
    secret: Option<&str>,
) -> (securestore_result, securestore_device_status) {
    let (secret_ptr, secret_len) = secret.map_or((ptr::null(), 0), |s| (s.as_ptr(), s.len()));
    let mut status = securestore_device_status {
        lock: securestore_lock_state::SECURESTORE_LOCK_BEFORE_FIRST_UNLOCK,
        passcode_set: false,
    };
    // SAFETY: a live host, `secret_len` readable bytes or null, writable out-pointers.
    let code = unsafe {
        securestore_host_unlock(host, secret_ptr, secret_len, &mut status, ptr::null_mut())
    };
    (code, status)
}

#[test]
fn the_device_state_through_the_c_abi() {
    use securestore_lock_state::*;
    const AFTER_FIRST_UNLOCK: i32 = 0;
    const WHEN_PASSCODE_SET: i32 = 3;
    const WHEN_UNLOCKED: i32 = 5;

    let paths = paths();
    let host = start_in_state(&paths, SECURESTORE_LOCK_BEFORE_FIRST_UNLOCK as i32).expect("host");
    let status = device(host, securestore_host_device_status);
    assert_eq!(
        (status.lock, status.passcode_set),
        (SECURESTORE_LOCK_BEFORE_FIRST_UNLOCK, false)
    );
    let client = connect(host, "@c/device", None).expect("connect");
    let (code, message) = set_class(client, "afu", "1", AFTER_FIRST_UNLOCK);
    assert_eq!(code, SECURESTORE_LOCKED, "{message}");

    let (code, status) = unlock(host, Some("app secret"));
    assert_eq!(
        (code, status.lock),
        (SECURESTORE_OK, SECURESTORE_LOCK_UNLOCKED)
    );
    assert_eq!(
        set_class(client, "afu", "1", AFTER_FIRST_UNLOCK).0,
        SECURESTORE_OK
    );
    assert_eq!(
        set_class(client, "wu", "2", WHEN_UNLOCKED).0,
        SECURESTORE_OK
    );
    let (code, message) = set_class(client, "pin", "3", WHEN_PASSCODE_SET);
    assert_eq!(code, SECURESTORE_PASSCODE_NOT_SET, "{message}");

    assert_eq!(
        device(host, securestore_host_lock).lock,
        SECURESTORE_LOCK_LOCKED
    );
    assert_eq!(
        get_code(client, "wu"),
        (SECURESTORE_LOCKED, None),
        "never absent"
    );
    assert_eq!(
        get_code(client, "afu"),
        (SECURESTORE_OK, Some("1".to_owned()))
    );
    assert_eq!(unlock(host, Some("wrong")).0, SECURESTORE_REFUSED);
    assert_eq!(
        unlock(host, None).0,
        SECURESTORE_REFUSED,
        "the secret is bound"
    );
    assert_eq!(
        device(host, securestore_host_device_status).lock,
        SECURESTORE_LOCK_LOCKED,
        "a refused unlock changes nothing"
    );
    assert_eq!(unlock(host, Some("app secret")).0, SECURESTORE_OK);
    assert_eq!(
        get_code(client, "wu"),
        (SECURESTORE_OK, Some("2".to_owned()))
    );

    assert!(device(host, securestore_host_passcode_set).passcode_set);
    assert_eq!(
        set_class(client, "pin", "3", WHEN_PASSCODE_SET).0,
        SECURESTORE_OK
    );
    assert_eq!(
        get_code(client, "pin"),
        (SECURESTORE_OK, Some("3".to_owned()))
    );
    assert!(!device(host, securestore_host_passcode_removed).passcode_set);
    assert_eq!(get_code(client, "pin"), (SECURESTORE_OK, None), "deleted");
    assert_eq!(
        get_code(client, "wu"),
        (SECURESTORE_OK, Some("2".to_owned()))
    );

    // Null arguments and unknown states are refused, never trusted.
    // SAFETY: null handles are allowed to be passed; the library must refuse them.
    let code = unsafe { securestore_host_lock(ptr::null(), ptr::null_mut(), ptr::null_mut()) };
    assert_eq!(code, SECURESTORE_INVALID_ARGUMENT);
    // SAFETY: a live host; a null secret with a length must be refused.
    let code =
        unsafe { securestore_host_unlock(host, ptr::null(), 3, ptr::null_mut(), ptr::null_mut()) };
    assert_eq!(code, SECURESTORE_INVALID_ARGUMENT);

    // SAFETY: handles from this library, each freed once.
    unsafe { securestore_client_free(client) };
    assert_eq!(
        unsafe { securestore_host_free(host, ptr::null_mut()) },
        SECURESTORE_OK
    );
    let (code, message) = start_in_state(&paths, 7).expect_err("unknown lock state");
    assert_eq!(code, SECURESTORE_INVALID_ARGUMENT);
    assert!(message.contains("unknown lock state 7"), "{message}");
    assert_eq!(
        (SECURESTORE_LOCKED as i32, SECURESTORE_BAD_BACKUP as i32),
        (14, 16)
    );
}

/// `securestore_export_backup` under `passphrase`; the file, or the code.
fn export_backup(
    client: *const securestore_client,
    passphrase: &str,
) -> Result<Vec<u8>, securestore_result> {
    let mut file = ptr::null_mut();
    let mut len = 0;
    // SAFETY: a live client, `passphrase.len()` readable bytes, writable out-pointers.
    let code = unsafe {
        securestore_export_backup(
            client,
            ptr::null(),
            passphrase.as_ptr(),
            passphrase.len(),
            &mut file,
            &mut len,
            ptr::null_mut(),
        )
    };
    if code != SECURESTORE_OK {
        assert!(file.is_null());
        return Err(code);
    }
    // SAFETY: `len` bytes at `file`, freed right after.
    let bytes = unsafe { std::slice::from_raw_parts(file, len) }.to_vec();
    unsafe { securestore_value_free(file, len) };
    Ok(bytes)
}

/// `securestore_import_backup`; the code and the report.
fn import_backup(
    client: *const securestore_client,
    file: &[u8],
    passphrase: &str,
    replace: bool,
) -> (securestore_result, securestore_import_report) {
    let mut report = securestore_import_report {
        added: 99,
        replaced: 99,
        skipped: 99,
    };
    // SAFETY: a live client, readable byte ranges, a writable out-pointer.
    let code = unsafe {
        securestore_import_backup(
            client,
            file.as_ptr(),
            file.len(),
            passphrase.as_ptr(),
            passphrase.len(),
            replace,
            &mut report,
            ptr::null_mut(),
        )
    };
    (code, report)
}

#[test]
fn a_backup_through_the_c_abi_restores_on_another_host() {
    const WHEN_UNLOCKED: i32 = 5;
    const THIS_DEVICE_ONLY: i32 = 6;
    let first_paths = paths();
    let first = start(&first_paths, None).expect("first host");
    let source = connect(first, "@c/backup", None).expect("connect");
    assert_eq!(
        set_class(source, "a", "alpha", WHEN_UNLOCKED).0,
        SECURESTORE_OK
    );
    assert_eq!(
        set_class(source, "b", "beta", WHEN_UNLOCKED).0,
        SECURESTORE_OK
    );
    assert_eq!(
        set_class(source, "local", "stays", THIS_DEVICE_ONLY).0,
        SECURESTORE_OK
    );
    let file = export_backup(source, "correct horse").expect("export");
    assert!(file.starts_with(b"SSBACKUP"), "the CLI's format");
    assert!(!file.windows(5).any(|w| w == b"alpha"), "sealed");
    assert_eq!(
        export_backup(source, "").err(),
        Some(SECURESTORE_INVALID_ARGUMENT)
    );
    // SAFETY: handles from this library, each freed once.
    unsafe { securestore_client_free(source) };
    assert_eq!(
        unsafe { securestore_host_free(first, ptr::null_mut()) },
        SECURESTORE_OK
    );

    // Another data folder and master key.
    let second_paths = paths();
    let second = start(&second_paths, None).expect("second host");
    let target = connect(second, "@c/backup", None).expect("connect");
    let (code, report) = import_backup(target, &file, "wrong horse", false);
    assert_eq!(code, SECURESTORE_BAD_BACKUP);
    assert_eq!(
        report,
        securestore_import_report::default(),
        "zeroed on failure"
    );
    assert_eq!(
        get_code(target, "a"),
        (SECURESTORE_OK, None),
        "nothing imported"
    );
    assert_eq!(
        set_class(target, "b", "kept", WHEN_UNLOCKED).0,
        SECURESTORE_OK
    );
    let (code, report) = import_backup(target, &file, "correct horse", false);
    assert_eq!(code, SECURESTORE_OK);
    assert_eq!((report.added, report.replaced, report.skipped), (1, 0, 1));
    assert_eq!(
        get_code(target, "a"),
        (SECURESTORE_OK, Some("alpha".to_owned()))
    );
    assert_eq!(
        get_code(target, "b"),
        (SECURESTORE_OK, Some("kept".to_owned()))
    );
    assert_eq!(
        get_code(target, "local"),
        (SECURESTORE_OK, None),
        "never exported"
    );
    let (code, report) = import_backup(target, &file, "correct horse", true);
    assert_eq!((code, report.replaced), (SECURESTORE_OK, 2));
    assert_eq!(
        get_code(target, "b"),
        (SECURESTORE_OK, Some("beta".to_owned()))
    );
    // SAFETY: handles from this library, each freed once.
    unsafe { securestore_client_free(target) };
    assert_eq!(
        unsafe { securestore_host_free(second, ptr::null_mut()) },
        SECURESTORE_OK
    );
}
