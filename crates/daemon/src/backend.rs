//! Choosing and opening the storage backend: the one place the daemon names a backend.

use std::path::PathBuf;

#[cfg(feature = "android")]
use anyhow::Context as _;
use anyhow::bail;
use securestore_backends::Backend;
use securestore_backends::sqlite::{SqliteBackend, SqliteConfig};

/// Which backend stores the values (`--backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// The encrypted SQLite store with a master key file: the default, on every platform.
    #[default]
    Sqlite,
    /// AES-256-GCM keys in a Java `KeyStore` through JNI, rows in the same durable SQLite store. On a
    /// desktop, a JVM is started in-process with a PKCS12 keystore file.
    Android,
    /// The iOS / macOS Keychain (generic-password items).
    Apple,
}

impl std::str::FromStr for BackendKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sqlite" => Ok(Self::Sqlite),
            "android" => Ok(Self::Android),
            "apple" => Ok(Self::Apple),
            other => Err(format!(
                "unknown backend '{other}'; expected sqlite, android or apple"
            )),
        }
    }
}

/// Where the backends keep their files.
#[derive(Debug, Clone)]
pub struct BackendPaths {
    /// The data folder (database, registry, desktop keystore).
    pub data_dir: PathBuf,
    /// The master key file of the SQLite backend; its folder also holds the desktop keystore's
    /// password.
    pub key_file: PathBuf,
}

/// Opens the backend `kind` on `paths`.
///
/// # Errors
/// If `kind` is not built into this binary for this target (a clear start-up error), or the backend
/// refuses to open (wrong key, damaged database, no JVM, ...).
pub fn open(kind: BackendKind, paths: &BackendPaths) -> anyhow::Result<Box<dyn Backend>> {
    match kind {
        BackendKind::Sqlite => {
            let config = SqliteConfig {
                data_dir: paths.data_dir.clone(),
                key_file: paths.key_file.clone(),
            };
            Ok(Box::new(SqliteBackend::open(&config)?))
        }
        BackendKind::Android => open_android(paths),
        BackendKind::Apple => open_apple(),
    }
}

#[cfg(feature = "android-jvm")]
fn open_android(paths: &BackendPaths) -> anyhow::Result<Box<dyn Backend>> {
    let vm = securestore_backends::android::desktop_jvm(None)
        .context("cannot start a JVM for the Android backend")?;
    open_android_on(vm, paths)
}

/// Opens the Android backend with its keys reached through `vm`, a JVM this process already runs
/// (an app hosting the daemon, or a desktop JVM that loaded the Java bindings): never a second JVM.
/// On Android the keys live in `AndroidKeyStore`; elsewhere in a PKCS12 file in the data folder,
/// with its password beside the key file, exactly as `--backend android` keeps them.
///
/// # Errors
/// As [`open`].
#[cfg(feature = "android")]
pub fn open_android_on(
    vm: securestore_backends::android::JavaVM,
    paths: &BackendPaths,
) -> anyhow::Result<Box<dyn Backend>> {
    use securestore_backends::android::{AndroidConfig, AndroidKeystoreBackend, KeystoreKind};
    let keystore = if cfg!(target_os = "android") {
        KeystoreKind::AndroidKeyStore
    } else {
        let file = paths
            .data_dir
            .join(securestore_backends::android::PKCS12_FILE);
        let password_file = paths.key_file.with_file_name("keystore.password");
        let password = desktop_password(&password_file, !file.exists())?;
        KeystoreKind::Pkcs12 { file, password }
    };
    let config = AndroidConfig {
        data_dir: paths.data_dir.clone(),
        keystore,
    };
    Ok(Box::new(AndroidKeystoreBackend::open(vm, &config)?))
}

#[cfg(not(feature = "android-jvm"))]
fn open_android(_: &BackendPaths) -> anyhow::Result<Box<dyn Backend>> {
    bail!("this securestored was built without the Android backend (feature `android-jvm`)")
}

#[cfg(target_vendor = "apple")]
fn open_apple() -> anyhow::Result<Box<dyn Backend>> {
    use securestore_backends::apple::{KeychainBackend, KeychainConfig};
    Ok(Box::new(KeychainBackend::open(KeychainConfig {
        access_group: None,
    })?))
}

#[cfg(not(target_vendor = "apple"))]
fn open_apple() -> anyhow::Result<Box<dyn Backend>> {
    bail!(
        "the apple (Keychain) backend exists only on Apple targets; this is {}",
        std::env::consts::OS
    )
}

/// The desktop keystore's password: read from `path`, or made (random, 0600) when the keystore is
/// new. A missing password for an existing keystore is an error, never a fresh password.
#[cfg(feature = "android")]
fn desktop_password(
    path: &std::path::Path,
    may_create: bool,
) -> anyhow::Result<securestore_backends::SecretString> {
    use securestore_backends::paths;
    use std::io::Write;

    // The password sits beside the master key: its folder must be ours and closed to writers.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    paths::ensure_owned_dir(dir)?;
    // Checked as the key file is: a regular file of ours, 0600, read without following links.
    match paths::read_private_file(path, 4096)? {
        Some(bytes) => {
            let text = std::str::from_utf8(&bytes)
                .with_context(|| format!("the keystore password {} is not text", path.display()))?;
            return Ok(text.trim().into());
        }
        None if !may_create => bail!(
            "the keystore password {} is missing but the keystore exists",
            path.display()
        ),
        None => {}
    }
    let password = crate::registry::random_hex(24)?;
    let mut file = paths::create_new_private_file(path)?;
    file.write_all(password.expose_secret().as_bytes())?;
    file.sync_all()?;
    // The new entry must be durable before the keystore it opens is written.
    securestore_backends::sync_dir(dir)?;
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unbuilt_backends_are_clear_errors() {
        assert_eq!("sqlite".parse(), Ok(BackendKind::Sqlite));
        assert_eq!("android".parse(), Ok(BackendKind::Android));
        assert!("keyring".parse::<BackendKind>().is_err());
        if !cfg!(target_vendor = "apple") {
            let dir = tempfile::tempdir().expect("tempdir");
            let paths = BackendPaths {
                data_dir: dir.path().join("data"),
                key_file: dir.path().join("master.key"),
            };
            let err = open(BackendKind::Apple, &paths)
                .err()
                .expect("no Keychain here");
            assert!(err.to_string().contains("only on Apple targets"), "{err}");
        }
    }
}
