//! Starting a JVM inside this process (feature `jvm`): for the desktop build of the Android backend
//! and for its tests. On a device the app's JVM is already running and hands over its `JavaVM`.

use std::path::Path;
use std::sync::OnceLock;

use jni::{InitArgsBuilder, JNIVersion, JavaVM};

use crate::BackendError;

/// The process's JVM, started on first use; a process can only ever start one.
///
/// `libjvm` names the `libjvm.so` to load; `None` finds it under `JAVA_HOME` (or from the `java` on
/// `PATH`). The JVM runs with `-Xrs`, so it leaves SIGINT, SIGTERM and SIGQUIT to the daemon. Later
/// calls return the JVM the first one started, whatever `libjvm` they name.
///
/// # Errors
/// [`BackendError::Keystore`] when no JVM library is found or the JVM does not start (the error is
/// the same on every later call).
pub fn desktop_jvm(libjvm: Option<&Path>) -> Result<JavaVM, BackendError> {
    static JVM: OnceLock<Result<JavaVM, String>> = OnceLock::new();
    JVM.get_or_init(|| {
        if let Ok(vm) = JavaVM::singleton() {
            return Ok(vm);
        }
        let args = InitArgsBuilder::new()
            .version(JNIVersion::V1_8)
            .option("-Xrs")
            .build()
            .map_err(|e| e.to_string())?;
        let started = match libjvm {
            Some(path) => JavaVM::with_libjvm(args, || Ok(path.to_owned())),
            None => JavaVM::new(args),
        };
        started.map_err(|e| e.to_string())
    })
    .clone()
    .map_err(|detail| BackendError::Keystore {
        action: "cannot start a JVM (set JAVA_HOME to a JDK, e.g. /usr/lib/jvm/java-17-openjdk-amd64)",
        detail,
    })
}
