//! The JNI library behind the `dev.securestore` Java/Kotlin bindings (`bindings/java/`).
//!
//! Every `native` method lives in one Java class, `dev.securestore.Native`; each entry point here is
//! a thin wrapper over one `securestore_bridge` function, run by [`entry`], which catches panics and
//! turns every failure into a `dev.securestore.SecureStoreException` of the matching code (built by
//! the Java side's `SecureStoreException.fromNative`). Native objects are opaque `long` handles
//! (a `Box` pointer) with one destroy function each; the Java side guarantees a handle is never used
//! during or after its destruction.
//!
//! Calls block the calling Java thread until the daemon answers; the Java side documents that they
//! must stay off Android's main thread and offers `CompletableFuture` forms.
// JNI entry points must be `no_mangle`, and handles are raw pointers: both need `unsafe`. The
// pointer dereferences are in `session` and `host` below, each with its SAFETY line.
#![allow(unsafe_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use jni::errors::ThrowRuntimeExAndDefault;
use jni::objects::{JByteArray, JClass, JObject, JString};
use jni::refs::Reference as _;
use jni::sys::{jboolean, jint, jlong};
use jni::{Env, EnvUnowned, JValue, jni_sig, jni_str};
use securestore_bridge::{
    BackendKind, Batch, BridgeError, Condition, DeviceStatus, ErrorCode, HostHandle, HostOptions,
    LockState, OpenBackend, Policy, SecretString, Session, accessible_from, events_text,
};
use zeroize::Zeroizing;

/// Runs one native method's `work`: a panic becomes [`ErrorCode::Internal`], a [`BridgeError`] a
/// thrown `SecureStoreException`, and the return value is then Java's default (null, 0).
fn entry<'local, T: Default>(
    mut unowned: EnvUnowned<'local>,
    work: impl FnOnce(&mut Env<'local>) -> Result<T, BridgeError>,
) -> T {
    unowned
        .with_env(|env| -> jni::errors::Result<T> {
            let outcome = catch_unwind(AssertUnwindSafe(|| work(env)));
            if env.exception_check() {
                // A Java exception raised by a JNI call inside `work` is already on its way.
                return Ok(T::default());
            }
            let err = match outcome {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => err,
                Err(_) => BridgeError::new(
                    ErrorCode::Internal,
                    "internal error in securestore (a bug): a panic was caught at the JNI boundary",
                ),
            };
            throw(env, &err)?;
            Ok(T::default())
        })
        .resolve::<ThrowRuntimeExAndDefault>()
}

/// Throws `SecureStoreException.fromNative(code, message)`.
fn throw(env: &mut Env<'_>, err: &BridgeError) -> jni::errors::Result<()> {
    let message = env.new_string(&err.message)?;
    let exception = env
        .call_static_method(
            jni_str!("dev/securestore/SecureStoreException"),
            jni_str!("fromNative"),
            jni_sig!("(ILjava/lang/String;)Ldev/securestore/SecureStoreException;"),
            &[JValue::Int(err.code as i32), JValue::Object(&message)],
        )?
        .l()?;
    let exception = env.cast_local::<jni::objects::JThrowable<'_>>(exception)?;
    env.throw(exception)
}

/// A JNI failure while reading arguments or building results.
fn jni_failure(err: jni::errors::Error) -> BridgeError {
    BridgeError::new(ErrorCode::Internal, format!("JNI call failed: {err}"))
}

/// A required `String` argument.
fn text(env: &Env<'_>, name: &str, value: &JString<'_>) -> Result<String, BridgeError> {
    optional_text(env, value)?
        .ok_or_else(|| BridgeError::invalid_argument(format!("{name} must not be null")))
}

/// An optional `String` argument (`null` means none).
fn optional_text(env: &Env<'_>, value: &JString<'_>) -> Result<Option<String>, BridgeError> {
    if value.is_null() {
        return Ok(None);
    }
    value.try_to_string(env).map(Some).map_err(jni_failure)
}

fn session<'a>(handle: jlong) -> Result<&'a Session, BridgeError> {
    if handle == 0 {
        return Err(BridgeError::invalid_argument("the SecureStore is closed"));
    }
    // SAFETY: a non-zero handle is a `Box<Session>` pointer from `sessionConnect*`, and the Java side
    // holds its read lock for the call, so `sessionDestroy` cannot run until the call returns.
    Ok(unsafe { &*(handle as *const Session) })
}

fn host<'a>(handle: jlong) -> Result<&'a HostHandle, BridgeError> {
    if handle == 0 {
        return Err(BridgeError::invalid_argument(
            "the SecureStoreHost is stopped",
        ));
    }
    // SAFETY: a non-zero handle is a `Box<HostHandle>` pointer from `hostStart`, and the Java side
    // holds its read lock for the call, so `hostStop` cannot run until the call returns.
    Ok(unsafe { &*(handle as *const HostHandle) })
}

fn into_handle<T>(value: T) -> jlong {
    Box::into_raw(Box::new(value)) as jlong
}

fn timeout(millis: jlong) -> Option<Duration> {
    u64::try_from(millis)
        .ok()
        .filter(|m| *m > 0)
        .map(Duration::from_millis)
}

/// `long Native.sessionConnect(String socket, String project, String token, long timeoutMillis)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionConnect<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    socket: JString<'local>,
    project: JString<'local>,
    token: JString<'local>,
    timeout_millis: jlong,
) -> jlong {
    entry(env, |env| {
        let socket = text(env, "socketPath", &socket)?;
        let project = text(env, "project", &project)?;
        let token = optional_text(env, &token)?.map(SecretString::from);
        let session = Session::connect(&socket, &project, token, timeout(timeout_millis))?;
        Ok(into_handle(session))
    })
}

/// `long Native.sessionConnectInProcess(long host, String project, String token, long timeoutMillis)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionConnectInProcess<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    host_handle: jlong,
    project: JString<'local>,
    token: JString<'local>,
    timeout_millis: jlong,
) -> jlong {
    entry(env, |env| {
        let host = host(host_handle)?;
        let project = text(env, "project", &project)?;
        let token = optional_text(env, &token)?.map(SecretString::from);
        let session = Session::connect_in_process(host, &project, token, timeout(timeout_millis))?;
        Ok(into_handle(session))
    })
}

/// `String Native.sessionGet(long session, String key, String service)`: null when absent.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionGet<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    key: JString<'local>,
    service: JString<'local>,
) -> JObject<'local> {
    entry(env, |env| {
        let session = session(handle)?;
        let key = text(env, "key", &key)?;
        let service = optional_text(env, &service)?;
        match session.get(&key, service.as_deref())? {
            Some(value) => Ok(env
                .new_string(value.expose_secret())
                .map_err(jni_failure)?
                .into()),
            None => Ok(JObject::null()),
        }
    })
}

/// `byte[] Native.sessionGetBytes(long session, String key, String service)`: the value's UTF-8
/// bytes, which the caller can wipe (a `String` cannot be); null when absent.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionGetBytes<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    key: JString<'local>,
    service: JString<'local>,
) -> JByteArray<'local> {
    entry(env, |env| {
        let session = session(handle)?;
        let key = text(env, "key", &key)?;
        let service = optional_text(env, &service)?;
        match session.get(&key, service.as_deref())? {
            Some(value) => env
                .byte_array_from_slice(value.expose_secret().as_bytes())
                .map_err(jni_failure),
            None => Ok(JByteArray::default()),
        }
    })
}

/// `void Native.sessionSet(long session, String key, String value, String service, int accessible)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionSet<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    key: JString<'local>,
    value: JString<'local>,
    service: JString<'local>,
    accessible: jint,
) {
    entry(env, |env| {
        let session = session(handle)?;
        let key = text(env, "key", &key)?;
        let value = SecretString::from(text(env, "value", &value)?);
        let service = optional_text(env, &service)?;
        session.set(
            &key,
            value,
            service.as_deref(),
            accessible_from(accessible)?,
        )
    })
}

/// `void Native.sessionSetBytes(long session, String key, byte[] utf8Value, String service, int
/// accessible)`: the value as UTF-8 bytes, so the caller can wipe its array afterwards.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionSetBytes<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    key: JString<'local>,
    value: JByteArray<'local>,
    service: JString<'local>,
    accessible: jint,
) {
    entry(env, |env| {
        let session = session(handle)?;
        let key = text(env, "key", &key)?;
        if value.is_null() {
            return Err(BridgeError::invalid_argument("value must not be null"));
        }
        let bytes = Zeroizing::new(env.convert_byte_array(&value).map_err(jni_failure)?);
        let value = std::str::from_utf8(&bytes)
            .map_err(|_| BridgeError::invalid_argument("value is not valid UTF-8"))?;
        let value = SecretString::from(value);
        let service = optional_text(env, &service)?;
        session.set(
            &key,
            value,
            service.as_deref(),
            accessible_from(accessible)?,
        )
    })
}

/// `void Native.sessionDelete(long session, String key, String service)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionDelete<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    key: JString<'local>,
    service: JString<'local>,
) {
    entry(env, |env| {
        let session = session(handle)?;
        let key = text(env, "key", &key)?;
        let service = optional_text(env, &service)?;
        session.delete(&key, service.as_deref())
    })
}

/// `boolean Native.sessionContains(long session, String key, String service)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionContains<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    key: JString<'local>,
    service: JString<'local>,
) -> jboolean {
    entry(env, |env| {
        let session = session(handle)?;
        let key = text(env, "key", &key)?;
        let service = optional_text(env, &service)?;
        session.contains(&key, service.as_deref())
    })
}

/// `String Native.sessionList(long session, String service, boolean services)`: the keys of
/// `service` (or, with `services`, the services holding items), sorted, joined by `\n` (no key or
/// service can hold one).
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionList<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    service: JString<'local>,
    services: jboolean,
) -> JObject<'local> {
    entry(env, |env| {
        let session = session(handle)?;
        let service = optional_text(env, &service)?;
        let names = if services {
            session.list_services()?
        } else {
            session.list_keys(service.as_deref())?
        };
        Ok(env
            .new_string(names.join("\n"))
            .map_err(jni_failure)?
            .into())
    })
}

/// `long Native.sessionClear(long session, String service, boolean allServices)`: items deleted.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionClear<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    service: JString<'local>,
    all_services: jboolean,
) -> jlong {
    entry(env, |env| {
        let session = session(handle)?;
        let service = optional_text(env, &service)?;
        let deleted = session.clear(service.as_deref(), all_services)?;
        Ok(jlong::try_from(deleted).unwrap_or(jlong::MAX))
    })
}

/// `void Native.sessionSetIf(long session, String key, String expected, String value, String
/// service, int accessible)`: `expected` null means "only if absent".
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionSetIf<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    key: JString<'local>,
    expected: JString<'local>,
    value: JString<'local>,
    service: JString<'local>,
    accessible: jint,
) {
    entry(env, |env| {
        let session = session(handle)?;
        let key = text(env, "key", &key)?;
        let expected = optional_text(env, &expected)?.map(SecretString::from);
        let value = SecretString::from(text(env, "value", &value)?);
        let service = optional_text(env, &service)?;
        session.set_if(
            &key,
            expected,
            value,
            service.as_deref(),
            accessible_from(accessible)?,
        )
    })
}

/// `void Native.sessionDeleteIf(long session, String key, String expected, String service)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionDeleteIf<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    key: JString<'local>,
    expected: JString<'local>,
    service: JString<'local>,
) {
    entry(env, |env| {
        let session = session(handle)?;
        let key = text(env, "key", &key)?;
        let expected = optional_text(env, &expected)?.map(SecretString::from);
        let service = optional_text(env, &service)?;
        session.delete_if(&key, expected, service.as_deref())
    })
}

/// `long Native.sessionWatch(long session, String service, String key)`: a watcher id; null
/// service or key means all of them.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionWatch<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    service: JString<'local>,
    key: JString<'local>,
) -> jlong {
    entry(env, |env| {
        let session = session(handle)?;
        let service = optional_text(env, &service)?;
        let key = optional_text(env, &key)?;
        let id = session.watch(service.as_deref(), key.as_deref())?;
        Ok(jlong::try_from(id).unwrap_or(jlong::MAX))
    })
}

/// `String Native.sessionPollEvents(long session, long watcher, long waitMillis)`: the events as
/// `securestore_bridge::events_text` writes them (empty when none came).
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionPollEvents<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    watcher: jlong,
    wait_millis: jlong,
) -> JObject<'local> {
    entry(env, |env| {
        let session = session(handle)?;
        let watcher = u64::try_from(watcher)
            .map_err(|_| BridgeError::invalid_argument("watcher ids are positive"))?;
        let wait = Duration::from_millis(u64::try_from(wait_millis).unwrap_or(0));
        let events = session.poll_events(watcher, wait)?;
        Ok(env
            .new_string(events_text(&events))
            .map_err(jni_failure)?
            .into())
    })
}

/// `void Native.sessionUnwatch(long session, long watcher)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionUnwatch<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    watcher: jlong,
) {
    entry(env, |_| {
        let session = session(handle)?;
        let watcher = u64::try_from(watcher)
            .map_err(|_| BridgeError::invalid_argument("watcher ids are positive"))?;
        session.unwatch(watcher)
    })
}

/// `void Native.sessionWriteBatch(long session, int[] kinds, String[] keys, String[] values,
/// String[] services, int[] accessible, int[] conditions, String[] expected)`: operation `i` is a
/// set (`kinds[i]` 0) or a delete (1) of `keys[i]`, with its condition (0 none, 1 absent, 2 equals
/// `expected[i]`); all arrays have one entry per operation (null entries where unused).
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_dev_securestore_Native_sessionWriteBatch<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    kinds: jni::objects::JIntArray<'local>,
    keys: jni::objects::JObjectArray<'local, JString<'local>>,
    values: jni::objects::JObjectArray<'local, JString<'local>>,
    services: jni::objects::JObjectArray<'local, JString<'local>>,
    accessible: jni::objects::JIntArray<'local>,
    conditions: jni::objects::JIntArray<'local>,
    expected: jni::objects::JObjectArray<'local, JString<'local>>,
) {
    entry(env, |env| {
        let session = session(handle)?;
        let ints = |env: &mut Env<'local>, array: &jni::objects::JIntArray<'local>| {
            let len = array.len(env).map_err(jni_failure)?;
            let mut out = vec![0; len];
            array.get_region(env, 0, &mut out).map_err(jni_failure)?;
            Ok::<_, BridgeError>(out)
        };
        let kinds = ints(env, &kinds)?;
        let accessible = ints(env, &accessible)?;
        let conditions = ints(env, &conditions)?;
        let n = kinds.len();
        if accessible.len() != n || conditions.len() != n {
            return Err(BridgeError::invalid_argument(
                "the batch arrays differ in length",
            ));
        }
        let texts =
            |env: &mut Env<'local>, array: &jni::objects::JObjectArray<'local, JString<'local>>| {
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    let item = array.get_element(env, i).map_err(jni_failure)?;
                    out.push(optional_text(env, &item)?);
                }
                Ok::<_, BridgeError>(out)
            };
        let keys = texts(env, &keys)?;
        let values = texts(env, &values)?;
        let services = texts(env, &services)?;
        let expected = texts(env, &expected)?;
        let batch = Batch::default();
        for i in 0..n {
            let key = keys[i]
                .as_deref()
                .ok_or_else(|| BridgeError::invalid_argument(format!("key {i} is null")))?;
            let condition =
                Condition::from_parts(conditions[i], expected[i].clone().map(SecretString::from))?;
            match kinds[i] {
                0 => {
                    let value = values[i].clone().ok_or_else(|| {
                        BridgeError::invalid_argument(format!("value {i} is null"))
                    })?;
                    batch.set(
                        key,
                        SecretString::from(value),
                        services[i].as_deref(),
                        accessible_from(accessible[i])?,
                        condition,
                    );
                }
                1 => batch.delete(key, services[i].as_deref(), condition),
                other => {
                    return Err(BridgeError::invalid_argument(format!(
                        "unknown batch operation {other}"
                    )));
                }
            }
        }
        session.write_batch(&batch)
    })
}

/// `int Native.sessionMaxValueBytes(long session)`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionMaxValueBytes<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> jint {
    entry(env, |_| {
        Ok(jint::try_from(session(handle)?.max_value_bytes()).unwrap_or(jint::MAX))
    })
}

/// `void Native.sessionDestroy(long session)`: closes the connection. 0 is ignored.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionDestroy<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    entry(env, |_| {
        if handle != 0 {
            // SAFETY: the handle came from `into_handle::<Session>`; the Java side destroys it once,
            // under its write lock, after every call on it has returned.
            drop(unsafe { Box::from_raw(handle as *mut Session) });
        }
        Ok(())
    })
}

/// `long Native.hostStart(String socket, String dataDir, String keyFile, String backend,
/// int maxValueBytes, String policy, String lockState, boolean passcodeSet)`: `maxValueBytes` 0
/// keeps the default; `lockState` is `before-first-unlock`, `locked` or `unlocked`.
#[unsafe(no_mangle)]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_dev_securestore_Native_hostStart<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    socket: JString<'local>,
    data_dir: JString<'local>,
    key_file: JString<'local>,
    backend: JString<'local>,
    max_value_bytes: jint,
    policy: JString<'local>,
    lock_state: JString<'local>,
    passcode_set: jboolean,
) -> jlong {
    entry(env, |env| {
        let backend: BackendKind = text(env, "backend", &backend)?
            .parse()
            .map_err(BridgeError::invalid_argument)?;
        let policy: Policy = text(env, "policy", &policy)?
            .parse()
            .map_err(BridgeError::invalid_argument)?;
        let lock: LockState = text(env, "lockState", &lock_state)?
            .parse()
            .map_err(BridgeError::invalid_argument)?;
        let max_value_bytes = match u32::try_from(max_value_bytes) {
            Ok(0) => None,
            Ok(limit) => Some(limit),
            Err(_) => {
                return Err(BridgeError::invalid_argument(
                    "maxValueBytes must not be negative",
                ));
            }
        };
        let options = HostOptions {
            socket: text(env, "socketPath", &socket)?.into(),
            data_dir: text(env, "dataDir", &data_dir)?.into(),
            key_file: text(env, "keyFile", &key_file)?.into(),
            backend,
            max_value_bytes,
            policy,
            device: DeviceStatus { lock, passcode_set },
        };
        // The Android backend uses this JVM, the one the app (or the desktop test) runs: never a new
        // one, which a process cannot have anyway.
        let open: Option<OpenBackend> = match backend {
            BackendKind::Android => {
                let vm = env.get_java_vm().map_err(jni_failure)?;
                Some(Box::new(move |paths| {
                    securestore_bridge::backend::open_android_on(vm, paths)
                }))
            }
            _ => None,
        };
        Ok(into_handle(HostHandle::start(options, open)?))
    })
}

/// `String Native.hostRegisterProject(long host, String project)`: the new project's token.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_hostRegisterProject<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    project: JString<'local>,
) -> JObject<'local> {
    entry(env, |env| {
        let host = host(handle)?;
        let project = text(env, "project", &project)?;
        let token = host.register_project(&project)?;
        Ok(env
            .new_string(token.expose_secret())
            .map_err(jni_failure)?
            .into())
    })
}

/// `void Native.hostStop(long host)`: stops the daemon and frees the handle. 0 is ignored.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_hostStop<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    entry(env, |_| {
        if handle == 0 {
            return Ok(());
        }
        // SAFETY: the handle came from `into_handle::<HostHandle>`; the Java side stops it once,
        // under its write lock, after every call on it has returned.
        let host = unsafe { Box::from_raw(handle as *mut HostHandle) };
        host.stop()
    })
}

/// The device state as one `int` for Java: the lock state's number (0 before the first unlock,
/// 1 locked, 2 unlocked) times two, plus 1 when a passcode is set.
fn device_int(status: DeviceStatus) -> jint {
    let lock = match status.lock {
        LockState::BeforeFirstUnlock => 0,
        LockState::Locked => 1,
        LockState::Unlocked => 2,
    };
    lock * 2 + jint::from(status.passcode_set)
}

/// `int Native.hostDevice(long host, int signal, byte[] secret)`: signal 0 only reads the state,
/// 1 lock, 2 unlock (with `secret`'s UTF-8 bytes, or null for none), 3 passcode set, 4 passcode
/// removed. Returns the state after it, as `device_int` packs it.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_hostDevice<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    signal: jint,
    secret: JByteArray<'local>,
) -> jint {
    entry(env, |env| {
        let host = host(handle)?;
        let status = match signal {
            0 => host.device_status()?,
            1 => host.lock()?,
            2 => {
                let secret = if secret.is_null() {
                    None
                } else {
                    let bytes =
                        Zeroizing::new(env.convert_byte_array(&secret).map_err(jni_failure)?);
                    let text = std::str::from_utf8(&bytes).map_err(|_| {
                        BridgeError::invalid_argument("the unlock secret is not valid UTF-8")
                    })?;
                    Some(SecretString::from(text))
                };
                host.unlock(secret)?
            }
            3 => host.passcode_set()?,
            4 => host.passcode_removed()?,
            other => {
                return Err(BridgeError::invalid_argument(format!(
                    "unknown device signal {other}"
                )));
            }
        };
        Ok(device_int(status))
    })
}

/// A passphrase from a Java `char[]` (UTF-16), copied into a secret string; the copies made here
/// are wiped. The caller wipes its own array.
fn passphrase(
    env: &Env<'_>,
    chars: &jni::objects::JCharArray<'_>,
) -> Result<SecretString, BridgeError> {
    if chars.is_null() {
        return Err(BridgeError::invalid_argument("passphrase must not be null"));
    }
    let len = chars.len(env).map_err(jni_failure)?;
    let mut units = Zeroizing::new(vec![0u16; len]);
    chars.get_region(env, 0, &mut units).map_err(jni_failure)?;
    let text = String::from_utf16(&units)
        .map_err(|_| BridgeError::invalid_argument("the passphrase is not valid UTF-16"))?;
    Ok(SecretString::from(text))
}

/// `byte[] Native.sessionExportBackup(long session, String service, char[] passphrase)`: a backup
/// file of the project's exportable items (of `service`, or all when null), sealed under
/// `passphrase`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionExportBackup<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    service: JString<'local>,
    pass: jni::objects::JCharArray<'local>,
) -> JByteArray<'local> {
    entry(env, |env| {
        let session = session(handle)?;
        let service = optional_text(env, &service)?;
        let pass = passphrase(env, &pass)?;
        let file = session.export_backup(service.as_deref(), &pass)?;
        env.byte_array_from_slice(&file).map_err(jni_failure)
    })
}

/// `long[] Native.sessionImportBackup(long session, byte[] file, char[] passphrase, boolean
/// replace)`: `{added, replaced, skipped}`.
#[unsafe(no_mangle)]
pub extern "system" fn Java_dev_securestore_Native_sessionImportBackup<'local>(
    env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    file: JByteArray<'local>,
    pass: jni::objects::JCharArray<'local>,
    replace: jboolean,
) -> jni::objects::JLongArray<'local> {
    entry(env, |env| {
        let session = session(handle)?;
        if file.is_null() {
            return Err(BridgeError::invalid_argument("file must not be null"));
        }
        let file = env.convert_byte_array(&file).map_err(jni_failure)?;
        let pass = passphrase(env, &pass)?;
        let report = session.import_backup(&file, &pass, replace)?;
        let counts = [report.added, report.replaced, report.skipped]
            .map(|n| jlong::try_from(n).unwrap_or(jlong::MAX));
        let array = env.new_long_array(counts.len()).map_err(jni_failure)?;
        array.set_region(env, 0, &counts).map_err(jni_failure)?;
        Ok(array)
    })
}
