//! The Android Keystore backend: values sealed by AES-256-GCM keys that live in a Java `KeyStore`
//! and are used only through `javax.crypto.Cipher`, over JNI; the ciphertexts kept in the same
//! durable SQLite store as the default backend.
//!
//! - **Keys.** One AES-256 key per (project, service), created inside the keystore and never exported.
//!   On a device the keystore is `"AndroidKeyStore"` (keys made with `KeyGenParameterSpec`, held by
//!   the system's keystore, in hardware where the device has it); on a desktop JVM it is a `"PKCS12"`
//!   file in the data folder, which is how this module is tested here. See [`key_alias`] for names.
//! - **Values.** `AES/GCM/NoPadding` with a keystore-chosen 12-byte IV and a 128-bit tag; the
//!   (project, service, key, class) binding is the GCM associated data, so a ciphertext moved to
//!   another row fails to open. A sealed value is `2 ‖ iv length ‖ iv ‖ ciphertext ‖ tag`, stored in
//!   `<data-dir>/securestore-android.db` with the same schema, WAL and `synchronous=FULL` as SQLite.
//! - **Failure policy**, like Expo's: when an item's key is missing from the keystore (the app was
//!   reinstalled, or its data restored from a backup without the keys), the item reads as absent, is
//!   removed, and a warning is logged. A tag mismatch is [`BackendError::CannotDecrypt`] naming the
//!   key and service; the row is kept, so the evidence stays.
//!
//! All JNI lives in this module: `java.rs` wraps one Java class per struct; `keystore.rs` is the
//! sealer; `jvm.rs` (feature `jvm`) starts a JVM in-process for desktop use and tests. No `unsafe`:
//! the host turns its raw `JavaVM*` into a [`JavaVM`] (see `docs/backends.md`).

mod java;
#[cfg(feature = "jvm")]
mod jvm;
mod keystore;

use std::path::{Path, PathBuf};

pub use jni::JavaVM;
#[cfg(feature = "jvm")]
pub use jvm::desktop_jvm;

use crate::sqlite::{SealedStore, delegate_to_store};
use crate::{BackendError, SecretString};
use keystore::KeystoreSealer;

/// File name of the Android backend's database inside its data folder.
pub const DATABASE_FILE: &str = "securestore-android.db";

/// File name of the desktop keystore ([`KeystoreKind::Pkcs12`]) when kept in the data folder.
pub const PKCS12_FILE: &str = "keystore.p12";

/// Which Java `KeyStore` holds the keys.
#[derive(Debug, Clone)]
pub enum KeystoreKind {
    /// `"AndroidKeyStore"`, on a device: keys generated inside it with `KeyGenParameterSpec` and
    /// never exported; they survive neither an uninstall nor a restore to another device.
    AndroidKeyStore,
    /// `"PKCS12"`, a file, on a desktop JVM: for tests and for running this backend off-device. It
    /// protects the keys only as well as the file's permissions (0600) and its password do.
    Pkcs12 {
        /// The keystore file; created (0600, written then renamed, synced) on first start.
        file: PathBuf,
        /// The password of the file and of its entries.
        password: SecretString,
    },
}

impl KeystoreKind {
    /// The Java `KeyStore` type.
    pub fn java_type(&self) -> &'static str {
        match self {
            Self::AndroidKeyStore => "AndroidKeyStore",
            Self::Pkcs12 { .. } => "PKCS12",
        }
    }
}

/// Where the Android backend keeps its data and keys.
#[derive(Debug, Clone)]
pub struct AndroidConfig {
    /// Folder of the database; created with mode 0700 when missing. On a device, a folder under
    /// `Context.getNoBackupFilesDir()`, so the ciphertexts are not restored without their keys.
    pub data_dir: PathBuf,
    /// The keystore holding the keys.
    pub keystore: KeystoreKind,
}

/// The Android Keystore backend.
pub struct AndroidKeystoreBackend {
    store: SealedStore<KeystoreSealer>,
}

impl std::fmt::Debug for AndroidKeystoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AndroidKeystoreBackend")
            .field("path", &self.store.path())
            .finish_non_exhaustive()
    }
}

impl AndroidKeystoreBackend {
    /// Opens the store in `config.data_dir` with keys in `config.keystore`, reached through `vm`.
    ///
    /// Call it on the thread that will drive the backend (the daemon's storage owner); each call
    /// attaches the calling thread to `vm` if it is not attached already.
    ///
    /// # Errors
    /// [`BackendError::MissingMasterKey`] when a PKCS12 keystore file is missing beside an existing
    /// database (never replaced by an empty one); [`BackendError::Keystore`] when the keystore cannot
    /// be opened or read; the [`crate::sqlite::SqliteBackend::open`] errors for the database.
    pub fn open(vm: JavaVM, config: &AndroidConfig) -> Result<Self, BackendError> {
        crate::paths::ensure_owned_dir(&config.data_dir)?;
        let path = config.data_dir.join(DATABASE_FILE);
        let database_exists = path.metadata().map(|m| m.len() > 0).unwrap_or(false);
        if let KeystoreKind::Pkcs12 { file, .. } = &config.keystore
            && database_exists
            && !file.exists()
        {
            return Err(BackendError::MissingMasterKey {
                key_file: file.clone(),
                database: path,
            });
        }
        let sealer = KeystoreSealer::open(vm, config.keystore.clone())?;
        Ok(Self {
            store: SealedStore::open(path, sealer)?,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.store.path()
    }
}

delegate_to_store!(AndroidKeystoreBackend, store);

/// The keystore alias of the key that seals every item of `service` in `project`.
///
/// Expo's alias is `AES/GCM/NoPadding:<service>:keystoreUnauthenticated`; ours puts `securestore/`
/// in front, so it can never name one of Expo's keys in the same app (Expo's legacy aliases are any
/// `AES/GCM/NoPadding:<anything>`), and inserts the project:
/// `securestore/AES/GCM/NoPadding:<project>:<service>:keystoreUnauthenticated`.
///
/// Project and service are escaped: every byte outside `a-z 0-9 . _ - @ /` becomes `%xx` (lowercase
/// hex). So neither part contains `:` and the alias is injective over (project, service); and the
/// escaped parts are all lowercase, which matters because a PKCS12 keystore folds aliases to lower
/// case (`App` and `app` would otherwise share a key).
pub fn key_alias(project: &str, service: &str) -> String {
    format!(
        "{}{}:keystoreUnauthenticated",
        project_alias_prefix(project),
        escape(service)
    )
}

/// The alias of the key that seals `service`'s `WHEN_UNLOCKED*` items in `project` (key id 3): on
/// a device it is made with `setUnlockedDeviceRequired(true)`, so the keystore itself refuses it
/// while the device is locked.
pub fn unlocked_key_alias(project: &str, service: &str) -> String {
    format!(
        "{}{}:keystoreUnlockedDeviceRequired",
        project_alias_prefix(project),
        escape(service)
    )
}

/// The start every alias of `project`'s keys shares, and no other project's does. Compare it
/// ignoring ASCII case: a PKCS12 keystore lists its aliases in lower case.
pub(crate) fn project_alias_prefix(project: &str) -> String {
    format!("securestore/AES/GCM/NoPadding:{}:", escape(project))
}

fn escape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for byte in part.bytes() {
        if byte.is_ascii_lowercase()
            || byte.is_ascii_digit()
            || matches!(byte, b'.' | b'_' | b'-' | b'@' | b'/')
        {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_follow_expos_pattern_with_the_project() {
        assert_eq!(
            key_alias("@owner/app", "auth"),
            "securestore/AES/GCM/NoPadding:@owner/app:auth:keystoreUnauthenticated"
        );
        assert_eq!(
            key_alias("p", "My Service:1%"),
            "securestore/AES/GCM/NoPadding:p:%4dy%20%53ervice%3a1%25:keystoreUnauthenticated"
        );
        assert_eq!(
            key_alias("p", "ключ"),
            "securestore/AES/GCM/NoPadding:p:%d0%ba%d0%bb%d1%8e%d1%87:keystoreUnauthenticated"
        );
    }

    #[test]
    fn aliases_are_injective_and_survive_case_folding() {
        let pairs = [
            ("a", "b:c"),
            ("a:b", "c"),
            ("A", "b"),
            ("a", "B"),
            ("a", "b"),
            ("a", "%41"),
            ("a", "A"),
            ("ab", "c"),
            ("a", "bc"),
        ];
        let mut seen = std::collections::HashSet::new();
        for (project, service) in pairs {
            // A PKCS12 keystore compares aliases ignoring case: they must differ even then.
            let alias = key_alias(project, service).to_lowercase();
            assert!(
                seen.insert(alias.clone()),
                "{project:?}/{service:?} collides: {alias}"
            );
        }
    }

    #[test]
    fn a_project_prefix_covers_only_its_own_keys() {
        let prefix = project_alias_prefix("@o/app");
        assert!(key_alias("@o/app", "x").starts_with(&prefix));
        assert!(!key_alias("@o/app2", "x").starts_with(&prefix));
        assert!(!key_alias("@o/ap", "p:x").starts_with(&prefix));
    }
}

/// The Android backend on a desktop JVM with a PKCS12 keystore: the conformance suite with its
/// failure policies, and what only this backend promises.
#[cfg(all(test, feature = "jvm"))]
mod desktop_tests {
    use super::*;
    use crate::conformance::{Faults, SqliteFaults};
    use crate::{Backend, ItemName, Key, KeychainAccessible, ProjectId, ProjectScope};

    fn jvm() -> JavaVM {
        desktop_jvm(None).expect("a JDK (JAVA_HOME is set in .cargo/config.toml)")
    }

    fn config(dir: &Path) -> AndroidConfig {
        let data_dir = dir.join("data");
        AndroidConfig {
            keystore: KeystoreKind::Pkcs12 {
                file: data_dir.join(PKCS12_FILE),
                password: SecretString::from("test password"),
            },
            data_dir,
        }
    }

    /// Row damage through SQLite; a lost key by deleting the keystore entry, as a reinstall does.
    struct AndroidFaults {
        rows: SqliteFaults,
        keystore: KeystoreKind,
    }

    impl Faults for AndroidFaults {
        fn flip_ciphertext(&mut self, project: &ProjectScope, name: &ItemName) {
            self.rows.flip_ciphertext(project, name);
        }

        fn is_stored(&mut self, project: &ProjectScope, name: &ItemName) -> bool {
            self.rows.is_stored(project, name)
        }

        fn delete_platform_key(&mut self, project: &ProjectScope, name: &ItemName) -> bool {
            let mut sealer =
                KeystoreSealer::open(jvm(), self.keystore.clone()).expect("open the keystore");
            sealer
                .delete_key(project.project().as_str(), name.service.as_str())
                .expect("delete the key");
            true
        }
    }

    #[test]
    fn conformance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let mut faults = AndroidFaults {
            rows: SqliteFaults {
                database: config.data_dir.join(DATABASE_FILE),
            },
            keystore: config.keystore.clone(),
        };
        crate::conformance::run_with_faults(
            || Ok(Box::new(AndroidKeystoreBackend::open(jvm(), &config)?)),
            &mut faults,
        );
    }

    #[test]
    fn device_state_conformance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        crate::conformance::run_device_states(|| {
            Ok(Box::new(AndroidKeystoreBackend::open(jvm(), &config)?))
        });
    }

    #[test]
    fn deleting_a_project_deletes_its_keys_and_no_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let scope = |id: &str| ProjectScope::bind(ProjectId::parse(id).expect("project"));
        let item = |service: &str| ItemName {
            service: crate::ServiceName::parse(Some(service)).expect("service"),
            key: Key::parse("k").expect("key"),
        };
        let mut backend = AndroidKeystoreBackend::open(jvm(), &config).expect("open");
        for (project, service) in [("@o/doomed", "A"), ("@o/doomed", "b"), ("@o/doomed2", "A")] {
            backend
                .set(
                    &scope(project),
                    &item(service),
                    &SecretString::from("v"),
                    KeychainAccessible::default(),
                )
                .expect("set");
        }
        backend
            .delete_project(&scope("@o/doomed"))
            .expect("delete project");
        Box::new(backend).close().expect("close");

        let mut sealer = KeystoreSealer::open(jvm(), config.keystore.clone()).expect("keystore");
        let aliases = sealer.aliases().expect("aliases");
        assert_eq!(
            aliases,
            // The default class, WHEN_UNLOCKED, is sealed by the unlocked-only key.
            vec![unlocked_key_alias("@o/doomed2", "A").to_ascii_lowercase()],
            "only the other project's key is left (PKCS12 lists aliases in lower case)"
        );
    }

    fn set(backend: &mut AndroidKeystoreBackend, project: &str, service: &str, key: &str) {
        backend
            .set(
                &ProjectScope::bind(ProjectId::parse(project).expect("project")),
                &ItemName {
                    service: crate::ServiceName::parse(Some(service)).expect("service"),
                    key: Key::parse(key).expect("key"),
                },
                &SecretString::from(format!("value of {key}")),
                KeychainAccessible::default(),
            )
            .expect("set");
    }

    fn value(
        backend: &mut AndroidKeystoreBackend,
        project: &str,
        service: &str,
        key: &str,
    ) -> Option<String> {
        backend
            .get(
                &ProjectScope::bind(ProjectId::parse(project).expect("project")),
                &ItemName {
                    service: crate::ServiceName::parse(Some(service)).expect("service"),
                    key: Key::parse(key).expect("key"),
                },
            )
            .expect("get")
            .map(|item| item.value.expose_secret().to_owned())
    }

    /// Finding 1 of issue 15: the cache evicted keys by the names the keystore lists (lower case),
    /// kept the deleted key under its mixed-case alias, and sealed later writes with it.
    #[test]
    fn writes_after_a_project_is_deleted_and_used_again_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let mut backend = AndroidKeystoreBackend::open(jvm(), &config).expect("open");
        set(&mut backend, "@o/p", "Auth", "a");
        backend
            .delete_project(&ProjectScope::bind(
                ProjectId::parse("@o/p").expect("project"),
            ))
            .expect("delete project");
        set(&mut backend, "@o/p", "Auth", "b");
        Box::new(backend).close().expect("close");
        let mut backend = AndroidKeystoreBackend::open(jvm(), &config).expect("reopen");
        assert_eq!(value(&mut backend, "@o/p", "Auth", "a"), None);
        assert_eq!(
            value(&mut backend, "@o/p", "Auth", "b").as_deref(),
            Some("value of b"),
            "the write after the deletion was sealed with a key that is in the keystore"
        );
    }

    /// Finding 2 of issue 15: in one batch [delete project, set], the keys were forgotten after the
    /// commit, including the one that sealed the acknowledged set.
    #[test]
    fn a_set_batched_after_its_projects_deletion_keeps_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let scope = ProjectScope::bind(ProjectId::parse("@o/p").expect("project"));
        let item = |key: &str| ItemName {
            service: crate::ServiceName::parse(Some("s")).expect("service"),
            key: Key::parse(key).expect("key"),
        };
        let put = |key: &str| crate::Write::Set {
            project: scope.clone(),
            name: item(key),
            value: SecretString::from(format!("value of {key}")),
            accessible: KeychainAccessible::default(),
        };
        let mut backend = AndroidKeystoreBackend::open(jvm(), &config).expect("open");
        set(&mut backend, "@o/p", "s", "old");
        let batch = [
            put("before"),
            crate::Write::DeleteProject {
                project: scope.clone(),
            },
            put("after-1"),
            put("after-2"),
        ];
        let results = backend.write_batch(&batch);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        Box::new(backend).close().expect("close");
        let mut backend = AndroidKeystoreBackend::open(jvm(), &config).expect("reopen");
        assert_eq!(value(&mut backend, "@o/p", "s", "old"), None);
        assert_eq!(value(&mut backend, "@o/p", "s", "before"), None);
        for key in ["after-1", "after-2"] {
            assert_eq!(
                value(&mut backend, "@o/p", "s", key).as_deref(),
                Some(format!("value of {key}").as_str()),
                "{key} was acknowledged after the deletion in the same batch"
            );
        }
    }

    /// Finding 3 of issue 15: a key whose keystore save failed stayed in memory and sealed the next
    /// writes, which were acknowledged and then lost at the next start.
    #[test]
    fn a_key_that_could_not_be_saved_seals_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let KeystoreKind::Pkcs12 { file, .. } = &config.keystore else {
            unreachable!()
        };
        let mut backend = AndroidKeystoreBackend::open(jvm(), &config).expect("open");
        // The save writes `<file>.tmp-<pid>` first: a folder in its place makes every save fail.
        let blocker = file.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::create_dir(&blocker).expect("block saves");
        let scope = ProjectScope::bind(ProjectId::parse("@o/p").expect("project"));
        let name = ItemName {
            service: crate::ServiceName::parse(Some("new")).expect("service"),
            key: Key::parse("k").expect("key"),
        };
        for attempt in 0..3 {
            let err = backend
                .set(
                    &scope,
                    &name,
                    &SecretString::from("v"),
                    KeychainAccessible::default(),
                )
                .expect_err("no key can be saved, so nothing may be sealed");
            assert!(
                // The folder in the temp file's place is refused before any write is tried.
                matches!(
                    err,
                    BackendError::Io { .. } | BackendError::UnsafePath { .. }
                ),
                "attempt {attempt}: {err}"
            );
        }
        let batch: Vec<_> = (0..3)
            .map(|i| crate::Write::Set {
                project: scope.clone(),
                name: ItemName {
                    service: name.service.clone(),
                    key: Key::parse(&format!("b{i}")).expect("key"),
                },
                value: SecretString::from("v"),
                accessible: KeychainAccessible::default(),
            })
            .collect();
        assert!(backend.write_batch(&batch).iter().all(Result::is_err));
        std::fs::remove_dir(&blocker).expect("unblock");
        set(&mut backend, "@o/p", "new", "later");
        Box::new(backend).close().expect("close");
        let mut backend = AndroidKeystoreBackend::open(jvm(), &config).expect("reopen");
        assert_eq!(value(&mut backend, "@o/p", "new", "k"), None);
        assert_eq!(
            value(&mut backend, "@o/p", "new", "later").as_deref(),
            Some("value of later")
        );
    }

    /// Two items under one key: only the associated data tells their rows apart.
    #[test]
    fn a_ciphertext_moved_to_another_row_under_the_same_key_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let project = ProjectScope::bind(ProjectId::parse("p").expect("project"));
        let item = |key: &str| ItemName {
            service: crate::ServiceName::parse(None).expect("service"),
            key: Key::parse(key).expect("key"),
        };
        let mut backend = AndroidKeystoreBackend::open(jvm(), &config).expect("open");
        for key in ["a", "b"] {
            backend
                .set(
                    &project,
                    &item(key),
                    &SecretString::from(format!("value-{key}")),
                    KeychainAccessible::default(),
                )
                .expect("set");
        }
        Box::new(backend).close().expect("close");

        let conn = rusqlite::Connection::open(config.data_dir.join(DATABASE_FILE)).expect("db");
        conn.execute(
            "UPDATE items SET sealed = (SELECT sealed FROM items WHERE key = 'b') WHERE key = 'a'",
            [],
        )
        .expect("move");
        drop(conn);

        let mut backend = AndroidKeystoreBackend::open(jvm(), &config).expect("reopen");
        let err = backend
            .get(&project, &item("a"))
            .expect_err("must not open");
        assert!(
            matches!(&err, BackendError::CannotDecrypt { key, service } if key == "a" && service == "app"),
            "{err}"
        );
        let b = backend
            .get(&project, &item("b"))
            .expect("get")
            .expect("present");
        assert_eq!(b.value.expose_secret(), "value-b");
    }
}
