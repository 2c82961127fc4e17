//! The default backend: one SQLite file, every value sealed under a master key kept in another file.
//!
//! Layout: `<data-dir>/securestore.db` (mode 0600, WAL journal beside it) and the master key file named
//! by [`SqliteConfig::key_file`]. Each write is its own transaction with `synchronous=FULL`, so it is
//! on disk before the call returns. The database records its format in `PRAGMA user_version` and a
//! key check in `meta`, so a wrong or missing key is refused at open instead of starting empty.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::crypto::{Sealer, item_aad};
use crate::keyfile::{self, create_private_dir};
use crate::{
    Backend, BackendError, Item, ItemName, KeychainAccessible, ProjectScope, Reader, SecretString,
    Write,
};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

/// File name of the database inside the data folder.
pub const DATABASE_FILE: &str = "securestore.db";

/// The format version this build writes, recorded in `PRAGMA user_version`.
///
/// - 1: `meta` (the key check) and `items`.
/// - 2: `items.written_at`, the time of the item's last write (Unix milliseconds; 0 for items written
///   by format 1), for listing and change notification.
pub const FORMAT_VERSION: i64 = 2;

const KEY_CHECK_AAD: &[u8] = b"securestore/key-check/v1";
const KEY_CHECK_PLAINTEXT: &[u8] = b"securestore master key check";

/// Where the SQLite backend keeps its files.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Folder of the database; created with mode 0700 when missing.
    pub data_dir: PathBuf,
    /// The master key file. Keep it outside `data_dir`, so a copy of the data folder alone reveals
    /// nothing; created with mode 0600 on first start.
    pub key_file: PathBuf,
}

/// The encrypted, durable default store.
pub struct SqliteBackend {
    conn: Connection,
    sealer: Sealer,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Turns SQLite's failures into [`BackendError`]: the one place its error codes are read.
fn sqlite_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl Fn(rusqlite::Error) -> BackendError + 'a {
    move |source| match source.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => BackendError::StorageFull,
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => BackendError::Corrupt {
            path: path.to_owned(),
            source,
        },
        _ => BackendError::Sqlite { action, source },
    }
}

impl SqliteBackend {
    /// Opens the store in `config.data_dir`, creating the folder, database and master key on first
    /// start, and migrating an older format forward.
    ///
    /// # Errors
    /// [`BackendError::MissingMasterKey`] or [`BackendError::WrongMasterKey`] when the key does not
    /// belong to an existing database; [`BackendError::Corrupt`] for a damaged file;
    /// [`BackendError::UnsupportedFormat`] for a newer one; [`BackendError::Io`] for the file system.
    pub fn open(config: &SqliteConfig) -> Result<Self, BackendError> {
        create_private_dir(&config.data_dir)?;
        let path = config.data_dir.join(DATABASE_FILE);
        let database_exists = path.metadata().map(|m| m.len() > 0).unwrap_or(false);

        let key =
            keyfile::load_or_create(&config.key_file, !database_exists)?.ok_or_else(|| {
                BackendError::MissingMasterKey {
                    key_file: config.key_file.clone(),
                    database: path.clone(),
                }
            })?;
        let sealer = Sealer::new(&key);
        tracing::debug!(locked = sealer.is_locked(), "master key loaded");

        // Create the file ourselves so it is 0600 from its first byte; SQLite gives its WAL and
        // shared-memory files the database's mode.
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| BackendError::Io {
                action: "cannot create database",
                path: path.clone(),
                source,
            })?;
        let conn = Connection::open(&path).map_err(sqlite_error("cannot open database", &path))?;
        let mut backend = Self { conn, sealer, path };
        backend.configure()?;
        backend.migrate(&config.key_file)?;
        Ok(backend)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn configure(&mut self) -> Result<(), BackendError> {
        let err = sqlite_error("cannot configure database", &self.path);
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(&err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(BackendError::Sqlite {
                action: "cannot switch the database to WAL mode",
                source: rusqlite::Error::InvalidQuery,
            });
        }
        // FULL syncs the WAL on every commit: an acknowledged write survives power loss.
        self.conn
            .execute_batch(
                "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA trusted_schema = OFF;",
            )
            .map_err(&err)
    }

    /// Brings the schema to [`FORMAT_VERSION`] in one transaction and checks the master key.
    fn migrate(&mut self, key_file: &Path) -> Result<(), BackendError> {
        let path = self.path.clone();
        let err = sqlite_error("cannot migrate database", &path);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(&err)?;
        if version > FORMAT_VERSION {
            return Err(BackendError::UnsupportedFormat {
                path: path.clone(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version < 1 {
            tx.execute_batch(
                "CREATE TABLE meta (
                     name  TEXT PRIMARY KEY,
                     value BLOB NOT NULL
                 ) WITHOUT ROWID;
                 CREATE TABLE items (
                     project    TEXT    NOT NULL,
                     service    TEXT    NOT NULL,
                     key        TEXT    NOT NULL,
                     accessible INTEGER NOT NULL,
                     sealed     BLOB    NOT NULL,
                     PRIMARY KEY (project, service, key)
                 ) WITHOUT ROWID;",
            )
            .map_err(&err)?;
            let check = self.sealer.seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)?;
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('key_check', ?1)",
                params![check],
            )
            .map_err(&err)?;
        }
        if version < 2 {
            tx.execute_batch("ALTER TABLE items ADD COLUMN written_at INTEGER NOT NULL DEFAULT 0;")
                .map_err(&err)?;
        }
        // Later formats add their steps here, each `if version < N { ... }`, in this same transaction.
        if version < FORMAT_VERSION && version > 0 {
            tracing::info!(from = version, to = FORMAT_VERSION, database = %path.display(), "migrating the database format");
        }
        tx.pragma_update(None, "user_version", FORMAT_VERSION)
            .map_err(&err)?;

        let check: Option<Vec<u8>> = tx
            .query_row(
                "SELECT value FROM meta WHERE name = 'key_check'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(&err)?;
        let opens = check.is_some_and(|check| self.sealer.open(KEY_CHECK_AAD, &check).is_some());
        if !opens {
            return Err(BackendError::WrongMasterKey {
                key_file: key_file.to_owned(),
                database: path.clone(),
            });
        }
        tx.commit().map_err(&err)
    }
}

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Reads and opens one item; shared by the backend and its [`SqliteReader`].
fn read_item(
    conn: &Connection,
    sealer: &Sealer,
    path: &Path,
    project: &ProjectScope,
    name: &ItemName,
) -> Result<Option<Item>, BackendError> {
    let err = sqlite_error("cannot read item", path);
    let row: Option<(u8, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT accessible, sealed FROM items WHERE project = ?1 AND service = ?2 AND key = ?3",
        )
        .map_err(&err)?
        .query_row(
            params![
                project.project().as_str(),
                name.service.as_str(),
                name.key.as_str()
            ],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()
        .map_err(&err)?;
    let Some((class, sealed)) = row else {
        return Ok(None);
    };
    let cannot_decrypt = || BackendError::CannotDecrypt {
        service: name.service.as_str().to_owned(),
        key: name.key.as_str().to_owned(),
    };
    let aad = item_aad(
        project.project().as_str(),
        name.service.as_str(),
        name.key.as_str(),
        class,
    );
    let plaintext = sealer.open(&aad, &sealed).ok_or_else(cannot_decrypt)?;
    // The class is authenticated by the AAD, so a tampered class has already failed above.
    let accessible = KeychainAccessible::try_from(class).map_err(|_| cannot_decrypt())?;
    let value = std::str::from_utf8(&plaintext).map_err(|_| cannot_decrypt())?;
    Ok(Some(Item {
        value: SecretString::from(value),
        accessible,
    }))
}

/// A second, read-only connection to the same database, for the daemon's reader thread. WAL lets it
/// read while the owner's connection writes and syncs.
pub struct SqliteReader {
    conn: Connection,
    sealer: Sealer,
    path: PathBuf,
}

impl Reader for SqliteReader {
    fn get(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
    ) -> Result<Option<Item>, BackendError> {
        read_item(&self.conn, &self.sealer, &self.path, project, name)
    }
}

impl SqliteBackend {
    /// Applies `writes` inside one transaction: one WAL sync for all of them.
    fn apply_in_one_transaction(&mut self, writes: &[Write]) -> Result<(), BackendError> {
        let path = self.path.clone();
        let err = sqlite_error("cannot commit a batch", &path);
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(&err)?;
        let applied = writes
            .iter()
            .try_for_each(|write| self.apply(write))
            .and_then(|()| self.conn.execute_batch("COMMIT").map_err(&err));
        if applied.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        applied
    }
}

impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn get(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
    ) -> Result<Option<Item>, BackendError> {
        read_item(&self.conn, &self.sealer, &self.path, project, name)
    }

    fn set(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
        value: &SecretString,
        accessible: KeychainAccessible,
    ) -> Result<(), BackendError> {
        let class = u8::from(accessible);
        let aad = item_aad(
            project.project().as_str(),
            name.service.as_str(),
            name.key.as_str(),
            class,
        );
        let sealed = self.sealer.seal(&aad, value.expose_secret().as_bytes())?;
        self.conn
            .prepare_cached(
                "INSERT INTO items (project, service, key, accessible, sealed, written_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (project, service, key) DO UPDATE
                 SET accessible = excluded.accessible, sealed = excluded.sealed,
                     written_at = excluded.written_at",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    project.project().as_str(),
                    name.service.as_str(),
                    name.key.as_str(),
                    class,
                    sealed,
                    unix_millis()
                ])
            })
            .map_err(sqlite_error("cannot write item", &self.path))?;
        Ok(())
    }

    fn delete(&mut self, project: &ProjectScope, name: &ItemName) -> Result<(), BackendError> {
        self.conn
            .prepare_cached("DELETE FROM items WHERE project = ?1 AND service = ?2 AND key = ?3")
            .and_then(|mut stmt| {
                stmt.execute(params![
                    project.project().as_str(),
                    name.service.as_str(),
                    name.key.as_str()
                ])
            })
            .map_err(sqlite_error("cannot delete item", &self.path))?;
        Ok(())
    }

    fn delete_project(&mut self, project: &ProjectScope) -> Result<(), BackendError> {
        self.conn
            .prepare_cached("DELETE FROM items WHERE project = ?1")
            .and_then(|mut stmt| stmt.execute(params![project.project().as_str()]))
            .map_err(sqlite_error("cannot delete project", &self.path))?;
        Ok(())
    }

    fn write_batch(&mut self, writes: &[Write]) -> Vec<Result<(), BackendError>> {
        if writes.len() > 1 {
            match self.apply_in_one_transaction(writes) {
                Ok(()) => return writes.iter().map(|_| Ok(())).collect(),
                // Rolled back: apply each on its own, so each write gets its own error (or success).
                Err(err) => {
                    tracing::debug!(%err, writes = writes.len(), "batch failed; applying its writes one by one")
                }
            }
        }
        writes.iter().map(|write| self.apply(write)).collect()
    }

    fn reader(&mut self) -> Result<Option<Box<dyn Reader>>, BackendError> {
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sqlite_error("cannot open a reader", &self.path))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite_error("cannot configure a reader", &self.path))?;
        Ok(Some(Box::new(SqliteReader {
            conn,
            sealer: self.sealer.clone(),
            path: self.path.clone(),
        })))
    }

    fn close(self: Box<Self>) -> Result<(), BackendError> {
        let path = self.path.clone();
        let err = sqlite_error("cannot close database", &path);
        // Fold the WAL back into the database so a cleanly stopped store is one self-contained file.
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(&err)?;
        self.conn.close().map_err(|(_, e)| err(e))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::{Key, ProjectId, ServiceName};

    struct Fixture {
        _dir: tempfile::TempDir,
        config: SqliteConfig,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = SqliteConfig {
            data_dir: dir.path().join("data"),
            key_file: dir.path().join("state/master.key"),
        };
        Fixture { _dir: dir, config }
    }

    fn scope(id: &str) -> ProjectScope {
        ProjectScope::bind(ProjectId::parse(id).expect("project"))
    }

    fn item(key: &str) -> ItemName {
        ItemName {
            service: ServiceName::parse(None).expect("service"),
            key: Key::parse(key).expect("key"),
        }
    }

    fn put(backend: &mut SqliteBackend, key: &str, value: &str) {
        backend
            .set(
                &scope("p"),
                &item(key),
                &SecretString::from(value),
                KeychainAccessible::default(),
            )
            .expect("set");
    }

    #[test]
    fn conformance() {
        let f = fixture();
        crate::conformance::run(|| Ok(Box::new(SqliteBackend::open(&f.config)?)));
    }

    #[test]
    fn files_are_private_and_hold_no_plaintext() {
        let f = fixture();
        let mut backend = SqliteBackend::open(&f.config).expect("open");
        let marker = "PLAINTEXT-MARKER-7f3a9c";
        for i in 0..50 {
            put(&mut backend, &format!("k{i}"), &format!("{marker}-{i}"));
        }
        // Scan while the WAL still holds the writes, then again after the checkpoint at close.
        let scan = |when: &str| {
            for entry in std::fs::read_dir(&f.config.data_dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                let bytes = std::fs::read(&path).expect("read");
                assert!(
                    !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                    "{} holds a value in clear ({when})",
                    path.display()
                );
                let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
                assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", path.display());
            }
        };
        assert!(
            f.config
                .data_dir
                .join(format!("{DATABASE_FILE}-wal"))
                .exists()
        );
        scan("before checkpoint");
        Box::new(backend).close().expect("close");
        scan("after checkpoint");
    }

    #[test]
    fn refuses_a_missing_or_wrong_master_key() {
        let f = fixture();
        let mut backend = SqliteBackend::open(&f.config).expect("open");
        put(&mut backend, "k", "v");
        Box::new(backend).close().expect("close");

        std::fs::remove_file(&f.config.key_file).expect("remove key");
        let err = SqliteBackend::open(&f.config).expect_err("must refuse");
        assert!(
            matches!(err, BackendError::MissingMasterKey { .. }),
            "{err}"
        );
        assert!(
            !f.config.key_file.exists(),
            "no new key may be made over existing data"
        );

        std::fs::write(&f.config.key_file, [9u8; 32]).expect("write key");
        std::fs::set_permissions(&f.config.key_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        let err = SqliteBackend::open(&f.config).expect_err("must refuse");
        assert!(matches!(err, BackendError::WrongMasterKey { .. }), "{err}");
        assert!(err.to_string().contains(DATABASE_FILE), "{err}");
    }

    #[test]
    fn refuses_a_damaged_database() {
        let f = fixture();
        Box::new(SqliteBackend::open(&f.config).expect("open"))
            .close()
            .expect("close");
        let db = f.config.data_dir.join(DATABASE_FILE);
        std::fs::write(&db, vec![0xA5u8; 8192]).expect("overwrite");
        let err = SqliteBackend::open(&f.config).expect_err("must refuse");
        assert!(matches!(err, BackendError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(DATABASE_FILE), "{err}");
    }

    #[test]
    fn tampered_rows_fail_to_open_and_others_still_read() {
        let f = fixture();
        let mut backend = SqliteBackend::open(&f.config).expect("open");
        for key in ["a", "b", "c"] {
            put(&mut backend, key, &format!("value-{key}"));
        }
        // Swap a's and b's ciphertexts; flip one bit of c's.
        let sealed_of = |backend: &SqliteBackend, key: &str| -> Vec<u8> {
            backend
                .conn
                .query_row("SELECT sealed FROM items WHERE key = ?1", [key], |row| {
                    row.get(0)
                })
                .expect("read sealed")
        };
        let store = |backend: &SqliteBackend, key: &str, sealed: &[u8]| {
            backend
                .conn
                .execute(
                    "UPDATE items SET sealed = ?1 WHERE key = ?2",
                    params![sealed, key],
                )
                .expect("tamper");
        };
        let (a, b) = (sealed_of(&backend, "a"), sealed_of(&backend, "b"));
        store(&backend, "a", &b);
        store(&backend, "b", &a);
        let mut c = sealed_of(&backend, "c");
        c[30] ^= 0x01;
        store(&backend, "c", &c);
        put(&mut backend, "d", "value-d");
        for key in ["a", "b", "c"] {
            let err = backend
                .get(&scope("p"), &item(key))
                .expect_err("tampered row must not open");
            assert!(
                matches!(&err, BackendError::CannotDecrypt { key: k, service } if k == key && service == "app"),
                "{err}"
            );
        }
        let d = backend
            .get(&scope("p"), &item("d"))
            .expect("get")
            .expect("present");
        assert_eq!(d.value.expose_secret(), "value-d");
    }

    /// Process-kill tests cannot tell whether a commit reached the disk; this checks the setting
    /// that makes it so (WAL, synced on every commit).
    #[test]
    fn commits_are_synced_in_wal_mode() {
        let f = fixture();
        let backend = SqliteBackend::open(&f.config).expect("open");
        let journal: String = backend
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("journal");
        let synchronous: i64 = backend
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .expect("sync");
        assert_eq!(
            (journal.as_str(), synchronous),
            ("wal", 2),
            "WAL with synchronous=FULL"
        );
    }

    #[test]
    fn refuses_a_newer_format() {
        let f = fixture();
        let backend = SqliteBackend::open(&f.config).expect("open");
        backend
            .conn
            .pragma_update(None, "user_version", FORMAT_VERSION + 1)
            .expect("bump");
        Box::new(backend).close().expect("close");
        let err = SqliteBackend::open(&f.config).expect_err("must refuse");
        assert!(
            matches!(err, BackendError::UnsupportedFormat { found, .. } if found == FORMAT_VERSION + 1)
        );
    }
}
