//! The Android backend through its public API on the desktop JVM, as the daemon will drive it:
//! opened on one thread, used on another (the storage owner), reopened after a restart.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use securestore_backends::android::{
    AndroidConfig, AndroidKeystoreBackend, DATABASE_FILE, KeystoreKind, PKCS12_FILE, desktop_jvm,
};
use securestore_backends::{
    Backend, BackendError, ItemName, Key, KeychainAccessible, ProjectId, ProjectScope,
    SecretString, ServiceName,
};

fn config(dir: &Path, password: &str) -> AndroidConfig {
    let data_dir = dir.join("data");
    AndroidConfig {
        keystore: KeystoreKind::Pkcs12 {
            file: data_dir.join(PKCS12_FILE),
            password: SecretString::from(password),
        },
        data_dir,
    }
}

fn open(config: &AndroidConfig) -> Result<AndroidKeystoreBackend, BackendError> {
    AndroidKeystoreBackend::open(desktop_jvm(None).expect("a JDK"), config)
}

fn project() -> ProjectScope {
    ProjectScope::bind(ProjectId::parse("@owner/app").expect("project"))
}

fn item(key: &str) -> ItemName {
    ItemName {
        service: ServiceName::parse(Some("auth")).expect("service"),
        key: Key::parse(key).expect("key"),
    }
}

const MARKER: &str = "PLAINTEXT-MARKER-android-5d1e";

#[test]
fn an_owner_thread_drives_it_and_a_restart_keeps_values_and_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), "pw");
    let backend: Box<dyn Backend> = Box::new(open(&config).expect("open"));

    // The daemon opens the backend, then hands it to its storage owner thread.
    std::thread::spawn(move || {
        let mut backend = backend;
        backend
            .set(
                &project(),
                &item("token"),
                &SecretString::from(MARKER),
                KeychainAccessible::WhenUnlockedThisDeviceOnly,
            )
            .expect("set on the owner thread");
        backend.close().expect("close");
    })
    .join()
    .expect("owner thread");

    for entry in std::fs::read_dir(&config.data_dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        assert!(
            !bytes.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()),
            "{} holds the value in clear",
            path.display()
        );
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", path.display());
    }
    assert!(config.data_dir.join(DATABASE_FILE).exists());

    // A restart: a new backend (new KeyStore object, read from the PKCS12 file) on a new thread.
    let config2 = config.clone();
    let found = std::thread::spawn(move || {
        let mut backend = open(&config2).expect("reopen");
        let found = backend.get(&project(), &item("token")).expect("get");
        Box::new(backend).close().expect("close");
        found
    })
    .join()
    .expect("thread")
    .expect("the value survives a restart");
    assert_eq!(found.value.expose_secret(), MARKER);
    assert_eq!(
        found.accessible,
        KeychainAccessible::WhenUnlockedThisDeviceOnly
    );
}

#[test]
fn a_missing_keystore_file_is_refused_never_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), "pw");
    let mut backend = open(&config).expect("open");
    backend
        .set(
            &project(),
            &item("k"),
            &SecretString::from("v"),
            KeychainAccessible::default(),
        )
        .expect("set");
    Box::new(backend).close().expect("close");

    let KeystoreKind::Pkcs12 { file, .. } = &config.keystore else {
        unreachable!("a PKCS12 config")
    };
    std::fs::remove_file(file).expect("remove the keystore");
    let err = open(&config).expect_err("must refuse");
    assert!(
        matches!(&err, BackendError::MissingMasterKey { key_file, .. } if key_file == file),
        "{err}"
    );
    assert!(!file.exists(), "no empty keystore may replace the lost one");
}

#[test]
fn a_wrong_keystore_password_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    Box::new(open(&config(dir.path(), "right")).expect("open"))
        .close()
        .expect("close");
    let err = open(&config(dir.path(), "wrong")).expect_err("must refuse");
    assert!(
        matches!(
            &err,
            BackendError::Keystore {
                action: "cannot open the keystore",
                ..
            }
        ),
        "{err}"
    );
}
