//! The default backend: one SQLite file, every value sealed under a master key kept in another file;
//! and the durable row store that other sealers (the Android Keystore) share.
//!
//! Layout: `<data-dir>/securestore.db` (mode 0600, WAL journal beside it) and the master key file named
//! by [`SqliteConfig::key_file`]. A single write, or a batch of them (`write_batch`, group commit), is
//! one transaction with `synchronous=FULL`, so it is on disk before the call returns. The database records its format in `PRAGMA user_version` and a
//! key check in `meta`, so a wrong or missing key is refused at open instead of starting empty.
//!
//! The rows and their durability live in [`SealedStore`], which never sees a value in clear: it hands
//! each value to a [`RowSealer`] with the row's identity, and stores what comes back. The master key
//! ([`MasterKey`]) is one sealer; `android::KeystoreSealer` is another.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use securestore_proto::Availability;

use crate::crypto::{Sealer, item_aad};
use crate::datakeys::{self, DataKeys, Mode, Unwrapped};
use crate::paths;
use crate::{
    Applied, Backend, BackendError, DeviceStatus, Exported, Item, ItemName, Key,
    KeychainAccessible, ProjectScope, Reader, SecretString, ServiceName, Write,
};
use crate::{failpoint, keyfile};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, params};
use zeroize::Zeroizing;

/// File name of the database inside the data folder.
pub const DATABASE_FILE: &str = "securestore.db";

/// SQLite's `unix-excl` VFS: the store's own read-write connection takes an exclusive lock on the
/// database file once and holds it, so no other process can open the database while the store is
/// open (one daemon per data folder is already the rule, `daemon/src/lock.rs`), and every lock
/// between this process's own connections — the WAL's read and write locks taken by each
/// transaction — is kept in memory, with no `fcntl` call, and no `-shm` file.
const VFS: &str = "unix-excl";

/// A database's format as found when it was opened (`PRAGMA user_version`; 0 for a new database).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Format(pub(crate) i64);

impl Format {
    /// The schema was created by this open.
    pub(crate) fn created(self) -> bool {
        self.0 < 1
    }

    /// Rows may still be sealed by the master key itself (formats 1 and 2, before data keys and
    /// `items.key_id`).
    fn before_data_keys(self) -> bool {
        self.0 < 3
    }
}

/// The format version this build writes, recorded in `PRAGMA user_version`.
///
/// - 1: `meta` (the key check) and `items`.
/// - 2: `items.written_at`, the time of the item's last write (Unix milliseconds; 0 for items written
///   by format 1), for listing and change notification.
/// - 3: `items.key_id`, the data key that sealed the row (see `datakeys.rs`; 0 for a row sealed
///   directly by the master key, as formats 1 and 2 did, re-sealed by the migration), and the
///   wrapped data keys in `meta`.
/// - 4: `items` becomes a rowid table, its primary key an index beside it. As a `WITHOUT ROWID`
///   table it kept whole rows, sealed values included, in the b-tree's interior pages too, so a
///   page held a handful of keys and a lookup among 1,000,000 items went four or five pages deep,
///   through the overflow pages of 2 KiB values (`docs/performance.md`, item 13).
pub const FORMAT_VERSION: i64 = 4;

/// The `meta` table: the key check and the wrapped data keys, by name.
const META_TABLE: &str = "
    CREATE TABLE meta (
        name  TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID;";

/// The `items` table in the current format: one row per item, its value sealed.
const ITEMS_TABLE: &str = "
    CREATE TABLE items (
        project    TEXT    NOT NULL,
        service    TEXT    NOT NULL,
        key        TEXT    NOT NULL,
        accessible INTEGER NOT NULL,
        sealed     BLOB    NOT NULL,
        written_at INTEGER NOT NULL DEFAULT 0,
        key_id     INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (project, service, key)
    );";

/// Format 3 to 4, SQLite's way to change a table's kind: rename the old table, create the new one,
/// move the rows, drop the old (all in the migration's one transaction). [`ITEMS_TABLE`] runs
/// between the first statement and the moves.
const ITEMS_V3_ASIDE: &str = "ALTER TABLE items RENAME TO items_v3;";
/// One step of the move: the first rows of the old table, in its key order, copied to the new
/// one, then deleted from the old, so that the pages they free take the next rows. (Copying the
/// whole table before dropping the old one appended the copy to the file: a 936 MB database of
/// 200,000 items of 2 KiB grew to 1.76 GB, half of it free pages, and needed the room for the copy
/// twice during the migration, once in the WAL and once in the file at its checkpoint. Moved in
/// steps, it takes 936.4 MB, in 7.8 s on the bench machine; 1,000,000 small items, 4.2 s.)
const ITEMS_FROM_V3_STEP: &str = "
    INSERT INTO items (project, service, key, accessible, sealed, written_at, key_id)
        SELECT project, service, key, accessible, sealed, written_at, key_id FROM items_v3
        ORDER BY project, service, key LIMIT ?1;";
const ITEMS_V3_MOVED: &str = "
    DELETE FROM items_v3 WHERE (project, service, key) IN
        (SELECT project, service, key FROM items_v3 ORDER BY project, service, key LIMIT ?1);";
const ITEMS_V3_DROP: &str = "DROP TABLE items_v3;";
/// Rows moved by one step.
const ITEMS_MOVE_STEP: i64 = 100;

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

/// Turns SQLite's failures into [`BackendError`]: the one place its error codes are read.
pub(crate) fn sqlite_error<'a>(
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

/// As [`sqlite_error`], for a statement that commits (a `COMMIT`, or a write outside a transaction):
/// an I/O error there may strike after the transaction reached the WAL and was synced (SQLite then
/// fails growing its shared-memory index, `SQLITE_IOERR_SHMSIZE`, or cannot confirm a sync), so the
/// write may be durable: [`BackendError::OutcomeUnknown`], never a plain failure.
pub(crate) fn sqlite_commit_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl Fn(rusqlite::Error) -> BackendError + 'a {
    move |source| match source.sqlite_error_code() {
        Some(ErrorCode::SystemIoFailure) => BackendError::OutcomeUnknown {
            action,
            detail: source.to_string(),
        },
        _ => sqlite_error(action, path)(source),
    }
}

/// One item's identity as a sealer binds it: the row's key columns and its class.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row<'a> {
    /// The bound project.
    pub(crate) project: &'a str,
    /// The item's service.
    pub(crate) service: &'a str,
    /// The item's key.
    pub(crate) key: &'a str,
    /// The item's class, as Expo numbers it; bound too, so a changed class fails to open.
    pub(crate) class: u8,
    /// Which key sealed the stored value (`items.key_id`); 0 when sealing.
    pub(crate) key_id: i64,
}

impl<'a> Row<'a> {
    fn new(project: &'a ProjectScope, name: &'a ItemName, class: u8) -> Self {
        Self {
            project: project.project().as_str(),
            service: name.service.as_str(),
            key: name.key.as_str(),
            class,
            key_id: 0,
        }
    }

    /// [`BackendError::Locked`] for this row.
    fn locked(&self) -> BackendError {
        BackendError::Locked {
            service: self.service.to_owned(),
            key: self.key.to_owned(),
        }
    }

    /// The availability group of the row's class (`None` for a class no build wrote).
    fn group(&self) -> Option<Availability> {
        KeychainAccessible::try_from(self.class)
            .ok()
            .map(KeychainAccessible::availability)
    }

    /// The associated data every sealer binds a value to.
    pub(crate) fn aad(&self) -> Vec<u8> {
        item_aad(self.project, self.service, self.key, self.class)
    }
}

/// What opening a sealed value gave.
pub(crate) enum Opened {
    /// The value, authenticated against its row.
    Value(Zeroizing<Vec<u8>>),
    /// The value was altered, or moved from another row: reported as
    /// [`BackendError::CannotDecrypt`].
    NotAuthentic,
    /// The key that sealed the value no longer exists (a platform keystore lost it): the item is
    /// unrecoverable and is removed, as Expo does.
    #[cfg_attr(not(feature = "android"), allow(dead_code))]
    KeyGone,
}

/// Seals values for a [`SealedStore`]: one implementation per place keys live.
pub(crate) trait RowSealer: Send {
    /// The backend name for logs, e.g. `"sqlite"`.
    fn name(&self) -> &'static str;

    /// Encrypts `plaintext` bound to `row`.
    fn seal(&mut self, row: &Row<'_>, plaintext: &[u8]) -> Result<Vec<u8>, BackendError>;

    /// Decrypts `sealed`, checking it belongs to `row`.
    ///
    /// # Errors
    /// [`BackendError::Locked`] when the key for the row's class is not in memory.
    fn open(&mut self, row: &Row<'_>, sealed: &[u8]) -> Result<Opened, BackendError>;

    /// The `items.key_id` to record beside a value [`RowSealer::seal`] sealed for `row`.
    fn key_id(&self, _row: &Row<'_>) -> i64 {
        0
    }

    /// Loads or wipes keys for the device state `state` ([`Backend::device_changed`]).
    fn device_changed(
        &mut self,
        _conn: &Connection,
        _database: &Path,
        _state: DeviceStatus,
        _secret: Option<&SecretString>,
    ) -> Result<(), BackendError> {
        Ok(())
    }

    /// Replaces the master key ([`Backend::rotate_master_key`]).
    fn rotate(&mut self, _conn: &mut Connection, _database: &Path) -> Result<(), BackendError> {
        Err(BackendError::Unsupported(
            "master-key rotation (the platform keystore holds this backend's keys)",
        ))
    }

    /// Runs inside the transaction that opens the database: records this sealer's check in `meta`
    /// when the schema was just created (`found` is the format the database had before this open, 0
    /// for a new one), and verifies it otherwise, so a store is never opened with the wrong keys.
    fn check_store(
        &mut self,
        tx: &Transaction<'_>,
        found: Format,
        database: &Path,
    ) -> Result<(), BackendError>;

    /// Deletes, durably, the keys kept for `project` alone. Called before the project's rows are
    /// deleted, in the same write; a key deleted here is never used again.
    fn forget_project(&mut self, _project: &str) -> Result<(), BackendError> {
        Ok(())
    }

    /// A sealer for the reader thread, when this one may be copied to another thread.
    fn for_reader(&self) -> Option<Box<dyn RowSealer>> {
        None
    }
}

/// The master key and the data keys it wraps, as a [`RowSealer`]: XChaCha20-Poly1305 in-process
/// (`crypto.rs`), one data key per availability group (`datakeys.rs`).
pub(crate) struct MasterKey {
    /// Wraps the data keys; `None` in the reader's copy, which only opens rows.
    master: Option<Sealer>,
    /// The data keys the device state allows, shared with the reader's copy.
    keys: Arc<DataKeys>,
    /// Named in the error when the key does not open the database; rotation replaces it.
    key_file: PathBuf,
}

impl MasterKey {
    fn new(key: &zeroize::Zeroizing<[u8; crate::crypto::KEY_LEN]>, key_file: &Path) -> Self {
        let sealer = Sealer::new(key);
        tracing::debug!(locked = sealer.is_locked(), "master key loaded");
        Self {
            master: Some(sealer),
            keys: Arc::new(DataKeys::default()),
            key_file: key_file.to_owned(),
        }
    }

    fn master(&self) -> Result<&Sealer, BackendError> {
        self.master
            .as_ref()
            .ok_or_else(|| BackendError::Internal("the reader has no master key".to_owned()))
    }

    /// The wrapped data key of `group`, from `meta`, with the master key's layer removed.
    fn unwrapped(
        &self,
        conn: &Connection,
        database: &Path,
        group: Availability,
    ) -> Result<Option<Unwrapped>, BackendError> {
        let wrapped: Option<Vec<u8>> = conn
            .query_row(
                "SELECT value FROM meta WHERE name = ?1",
                [datakeys::meta_name(group)],
                |row| row.get(0),
            )
            .optional()
            .map_err(sqlite_error("cannot read a data key", database))?;
        let Some(wrapped) = wrapped else {
            return Ok(None);
        };
        Unwrapped::open(self.master()?, group, &wrapped)
            .map(Some)
            .ok_or_else(|| {
                BackendError::Crypto(format!(
                    "the wrapped data key of group {} does not open",
                    group.index()
                ))
            })
    }

    /// As [`Self::unwrapped`], for a data key that must exist (every database past its open has
    /// all three).
    fn existing(
        &self,
        conn: &Connection,
        database: &Path,
        group: Availability,
    ) -> Result<Unwrapped, BackendError> {
        self.unwrapped(conn, database, group)?.ok_or_else(|| {
            BackendError::Internal(format!("data key of group {} missing", group.index()))
        })
    }

    /// Makes the data keys a new database (or one from format 2) lacks, loads those the master key
    /// alone opens, and re-seals rows sealed directly by the master key under their data keys.
    fn prepare_data_keys(
        &self,
        tx: &Transaction<'_>,
        found: Format,
        database: &Path,
    ) -> Result<(), BackendError> {
        let err = sqlite_error("cannot prepare the data keys", database);
        for group in Availability::ALL {
            let opened = match self.unwrapped(tx, database, group)? {
                Some(opened) => opened,
                None => {
                    let key = datakeys::random_key()?;
                    let wrapped = datakeys::wrap(self.master()?, group, &key, None)?;
                    tx.execute(
                        "INSERT INTO meta (name, value) VALUES (?1, ?2)",
                        params![datakeys::meta_name(group), wrapped],
                    )
                    .map_err(&err)?;
                    self.keys.load(group, &key);
                    continue;
                }
            };
            // Keys bound to the host's unlock secret wait for the unlock that gives it.
            if opened.mode() == Mode::Master {
                self.keys.load(group, &opened.key(group, None)?);
            }
        }
        // Rows of formats 1 and 2 were sealed by the master key itself: seal them under their
        // group's data key, in this (the migration's) transaction. Only a database that had one of
        // those formats can hold such rows (the scan reads every row: at 1,000,000 items it was most
        // of a start-up's work).
        if !found.before_data_keys() {
            return Ok(());
        }
        let legacy: Vec<(String, String, String, u8, Vec<u8>)> = tx
            .prepare("SELECT project, service, key, accessible, sealed FROM items WHERE key_id = 0")
            .and_then(|mut stmt| {
                stmt.query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect()
            })
            .map_err(&err)?;
        if !legacy.is_empty() {
            tracing::info!(
                rows = legacy.len(),
                "sealing existing rows under their data keys"
            );
        }
        for (project, service, key, class, sealed) in legacy {
            let row = Row {
                project: &project,
                service: &service,
                key: &key,
                class,
                key_id: 0,
            };
            // A row that does not open stays as it is, and reads as damaged.
            let Some(plaintext) = self.master()?.open(&row.aad(), &sealed) else {
                continue;
            };
            let Some(group) = row.group() else { continue };
            let resealed = self
                .keys
                .with(group, |sealer| sealer.seal(&row.aad(), &plaintext))
                .ok_or_else(|| row.locked())??;
            tx.execute(
                "UPDATE items SET sealed = ?4, key_id = ?5 WHERE project = ?1 AND service = ?2 AND key = ?3",
                params![project, service, key, resealed, key_id_of(group)],
            )
            .map_err(&err)?;
        }
        Ok(())
    }
}

/// Whether `sealer` opens the database's key check: whether it is the master key the database needs.
fn key_check_opens(
    conn: &Connection,
    sealer: &Sealer,
    database: &Path,
) -> Result<bool, BackendError> {
    let check: Option<Vec<u8>> = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'key_check'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(sqlite_error("cannot check the master key", database))?;
    Ok(check.is_some_and(|check| sealer.open(KEY_CHECK_AAD, &check).is_some()))
}

/// The `items.key_id` of rows sealed by `group`'s data key.
fn key_id_of(group: Availability) -> i64 {
    group.index() as i64 + 1
}

impl RowSealer for MasterKey {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn seal(&mut self, row: &Row<'_>, plaintext: &[u8]) -> Result<Vec<u8>, BackendError> {
        let group = row
            .group()
            .ok_or_else(|| BackendError::Internal(format!("unknown class {}", row.class)))?;
        self.keys
            .with(group, |sealer| sealer.seal(&row.aad(), plaintext))
            .ok_or_else(|| row.locked())?
    }

    fn key_id(&self, row: &Row<'_>) -> i64 {
        row.group().map_or(0, key_id_of)
    }

    fn open(&mut self, row: &Row<'_>, sealed: &[u8]) -> Result<Opened, BackendError> {
        let Some(group) = row.group().filter(|group| key_id_of(*group) == row.key_id) else {
            return Ok(Opened::NotAuthentic);
        };
        let opened = self
            .keys
            .with(group, |sealer| sealer.open(&row.aad(), sealed))
            .ok_or_else(|| row.locked())?;
        Ok(match opened {
            Some(plaintext) => Opened::Value(plaintext),
            None => Opened::NotAuthentic,
        })
    }

    fn check_store(
        &mut self,
        tx: &Transaction<'_>,
        found: Format,
        database: &Path,
    ) -> Result<(), BackendError> {
        let err = sqlite_error("cannot check the master key", database);
        let master = self.master()?;
        if found.created() {
            let check = master.seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)?;
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('key_check', ?1)",
                params![check],
            )
            .map_err(&err)?;
        }
        if !key_check_opens(tx, master, database)? {
            return Err(BackendError::WrongMasterKey {
                key_file: self.key_file.clone(),
                database: database.to_owned(),
            });
        }
        self.prepare_data_keys(tx, found, database)
    }

    fn device_changed(
        &mut self,
        conn: &Connection,
        database: &Path,
        state: DeviceStatus,
        secret: Option<&SecretString>,
    ) -> Result<(), BackendError> {
        let unlock = secret.map(datakeys::unlock_key);
        // Work out every change first, so a wrong secret changes nothing.
        let mut load = Vec::new();
        let mut bind = Vec::new();
        for group in [Availability::AfterFirstUnlock, Availability::WhenUnlocked] {
            if !state.allows_group(group) {
                continue;
            }
            let opened = self.existing(conn, database, group)?;
            let check_secret = opened.mode() == Mode::Unlock && unlock.is_some();
            if !self.keys.is_loaded(group) || check_secret {
                load.push((group, opened.key(group, unlock.as_ref())?));
            }
            if opened.mode() == Mode::Master
                && let Some(unlock) = &unlock
            {
                let key = opened.key(group, None)?;
                bind.push((
                    group,
                    datakeys::wrap(self.master()?, group, &key, Some(unlock))?,
                ));
            }
        }
        if !bind.is_empty() {
            // The first unlock that brings a secret binds the keys to it, durably.
            let err =
                sqlite_commit_error("cannot bind the data keys to the unlock secret", database);
            let tx = conn.unchecked_transaction().map_err(&err)?;
            for (group, wrapped) in &bind {
                tx.execute(
                    "UPDATE meta SET value = ?2 WHERE name = ?1",
                    params![datakeys::meta_name(*group), wrapped],
                )
                .map_err(&err)?;
            }
            tx.commit().map_err(&err)?;
            tracing::info!(
                groups = bind.len(),
                "data keys bound to the host's unlock secret"
            );
        }
        for (group, key) in &load {
            self.keys.load(*group, key);
        }
        for group in [Availability::AfterFirstUnlock, Availability::WhenUnlocked] {
            if !state.allows_group(group) {
                self.keys.wipe(group);
            }
        }
        Ok(())
    }

    fn rotate(&mut self, conn: &mut Connection, database: &Path) -> Result<(), BackendError> {
        // A rotation that committed but could not install its key left the only key the database
        // opens with in `.next`: install it before anything could discard it.
        if let Ok(Some(next)) = keyfile::load_next(&self.key_file) {
            let next = Sealer::new(&next);
            if key_check_opens(conn, &next, database)? {
                keyfile::promote_next(&self.key_file)?;
                self.master = Some(next);
                tracing::warn!(key_file = %self.key_file.display(), "installed the key of an earlier rotation that had committed");
            }
        }
        let new_key = datakeys::random_key()?;
        let new = Sealer::new(&new_key);
        // 1. The new key is durable in `<key file>.next` before the database depends on it.
        keyfile::write_next(&self.key_file, &new_key)?;
        failpoint::hit("rotate:next-key-written");
        // 2. One transaction re-wraps the data keys and the key check under the new key.
        let err = sqlite_error("cannot rotate the master key", database);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(&err)?;
        for group in Availability::ALL {
            let opened = self.existing(&tx, database, group)?;
            tx.execute(
                "UPDATE meta SET value = ?2 WHERE name = ?1",
                params![datakeys::meta_name(group), opened.rewrap(&new, group)?],
            )
            .map_err(&err)?;
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'key_check'",
            params![new.seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)?],
        )
        .map_err(&err)?;
        failpoint::hit("rotate:before-commit");
        tx.commit().map_err(sqlite_commit_error(
            "cannot rotate the master key",
            database,
        ))?;
        failpoint::hit("rotate:committed");
        // 3. The database needs only the new key now: it replaces the old one, whose bytes are
        //    overwritten first. A crash before this ends is finished at the next open.
        self.master = Some(new);
        keyfile::promote_next(&self.key_file)?;
        failpoint::hit("rotate:installed");
        tracing::info!(key_file = %self.key_file.display(), "master key rotated");
        Ok(())
    }

    fn for_reader(&self) -> Option<Box<dyn RowSealer>> {
        Some(Box::new(Self {
            master: None,
            keys: self.keys.clone(),
            key_file: self.key_file.clone(),
        }))
    }
}

/// The durable rows: one SQLite database in WAL mode with `synchronous=FULL`, each value sealed by
/// `S` before it is written.
pub(crate) struct SealedStore<S> {
    conn: Connection,
    sealer: S,
    path: PathBuf,
}

/// The encrypted, durable default store.
pub struct SqliteBackend {
    store: SealedStore<MasterKey>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("path", &self.store.path)
            .finish_non_exhaustive()
    }
}

impl SqliteBackend {
    /// Opens the store in `config.data_dir`, creating the folder, database and master key on first
    /// start, and migrating an older format forward.
    ///
    /// # Errors
    /// [`BackendError::MissingMasterKey`] or [`BackendError::WrongMasterKey`] when the key does not
    /// belong to an existing database; [`BackendError::Corrupt`] for a damaged file;
    /// [`BackendError::UnsupportedFormat`] for a newer one; [`BackendError::NoRoomToMigrate`] for an
    /// older one whose migration the disk has no room for; [`BackendError::Io`] for the file system.
    pub fn open(config: &SqliteConfig) -> Result<Self, BackendError> {
        paths::ensure_owned_dir(&config.data_dir)?;
        let path = config.data_dir.join(DATABASE_FILE);
        let database_exists = path.metadata().map(|m| m.len() > 0).unwrap_or(false);

        let key =
            keyfile::load_or_create(&config.key_file, !database_exists)?.ok_or_else(|| {
                BackendError::MissingMasterKey {
                    key_file: config.key_file.clone(),
                    database: path.clone(),
                }
            })?;
        // A rotation that crashed leaves `<key file>.next`. If the database already took the new
        // key, finish installing it; if not, the new key was never used: discard it.
        let store = match SealedStore::open(path.clone(), MasterKey::new(&key, &config.key_file)) {
            Err(BackendError::WrongMasterKey { key_file, database }) => {
                let Some(next) = keyfile::load_next(&config.key_file)? else {
                    return Err(BackendError::WrongMasterKey { key_file, database });
                };
                let store = SealedStore::open(path, MasterKey::new(&next, &config.key_file))?;
                keyfile::promote_next(&config.key_file)?;
                tracing::warn!(key_file = %config.key_file.display(), "finished a master-key rotation that was interrupted");
                store
            }
            Ok(store) => {
                // The database opens with the key file, so whatever `.next` holds (a whole key, a
                // short file a crash or a full disk left, a planted link) is not needed: remove it.
                match keyfile::load_next(&config.key_file) {
                    Ok(None) => {}
                    found => {
                        keyfile::discard_next(&config.key_file)?;
                        tracing::warn!(key_file = %config.key_file.display(), unreadable = found.is_err(), "discarded the new key of a master-key rotation that never committed");
                    }
                }
                store
            }
            Err(err) => return Err(err),
        };
        Ok(Self { store })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.store.path
    }
}

impl<S: RowSealer> SealedStore<S> {
    /// Opens (creating when missing) the database at `path`, in a folder that already exists, and
    /// brings it to [`FORMAT_VERSION`], with `sealer` checking that it holds this store's keys.
    pub(crate) fn open(path: PathBuf, sealer: S) -> Result<Self, BackendError> {
        let created = !path.exists();
        // Create the file ourselves so it is 0600 from its first byte, never through a symbolic
        // link, and check an existing one is ours and private; SQLite gives its WAL and
        // shared-memory files the database's mode, and any already there must pass the same check.
        paths::open_or_create_private_file(&path)?;
        if created {
            // The new entry must be durable before anything is committed in the file. (SQLite
            // syncs the folder itself when it creates the WAL.)
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            keyfile::sync_dir(dir.unwrap_or(Path::new(".")))?;
        }
        for suffix in ["-wal", "-shm"] {
            let mut side = path.clone().into_os_string();
            side.push(suffix);
            paths::open_private_file(Path::new(&side))?;
        }
        let conn = Connection::open_with_flags_and_vfs(
            &path,
            OpenFlags::default() | OpenFlags::SQLITE_OPEN_NOFOLLOW,
            VFS,
        )
        .map_err(sqlite_error("cannot open database", &path))?;
        let mut store = Self { conn, sealer, path };
        store.configure()?;
        store.migrate()?;
        Ok(store)
    }

    /// The database file.
    #[cfg_attr(not(feature = "android"), allow(dead_code))]
    pub(crate) fn path(&self) -> &Path {
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

    /// Brings the schema to [`FORMAT_VERSION`] in one transaction and lets the sealer check its keys.
    fn migrate(&mut self) -> Result<(), BackendError> {
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
            tx.execute_batch(META_TABLE).map_err(&err)?;
            tx.execute_batch(ITEMS_TABLE).map_err(&err)?;
        } else {
            if version < FORMAT_VERSION {
                // Before the work, which may take a while (format 4 copies every item), so a log
                // that ends in a failure says what was under way.
                tracing::info!(from = version, to = FORMAT_VERSION, database = %path.display(), "migrating the database format");
            }
            if version < 2 {
                tx.execute_batch(
                    "ALTER TABLE items ADD COLUMN written_at INTEGER NOT NULL DEFAULT 0;",
                )
                .map_err(&err)?;
            }
            if version < 3 {
                tx.execute_batch("ALTER TABLE items ADD COLUMN key_id INTEGER NOT NULL DEFAULT 0;")
                    .map_err(&err)?;
            }
            if version < 4 {
                room_to_copy(&tx, &path, version)?;
                for step in [ITEMS_V3_ASIDE, ITEMS_TABLE] {
                    tx.execute_batch(step).map_err(&err)?;
                }
                let mut copy = tx.prepare(ITEMS_FROM_V3_STEP).map_err(&err)?;
                let mut delete = tx.prepare(ITEMS_V3_MOVED).map_err(&err)?;
                loop {
                    let moved = copy.execute([ITEMS_MOVE_STEP]).map_err(&err)?;
                    if moved == 0 {
                        break;
                    }
                    delete
                        .execute([i64::try_from(moved).unwrap_or(i64::MAX)])
                        .map_err(&err)?;
                }
                drop((copy, delete));
                tx.execute_batch(ITEMS_V3_DROP).map_err(&err)?;
            }
            // Later formats add their steps here, each `if version < N { ... }`, and change
            // `META_TABLE` or `ITEMS_TABLE` to match: a new database is made in the current format.
        }
        let migrated = version < FORMAT_VERSION && version > 0;
        // Only when it changes: an open of a database already in this format writes nothing, so a
        // store on a full disk still opens (and serves its reads).
        if version != FORMAT_VERSION {
            tx.pragma_update(None, "user_version", FORMAT_VERSION)
                .map_err(&err)?;
        }
        self.sealer.check_store(&tx, Format(version), &path)?;
        tx.commit().map_err(&err)?;
        if migrated {
            // A migration may rewrite every row (format 4 moves them to a new table): fold that WAL
            // back into the database now rather than keep a WAL as large as the store until
            // shutdown.
            // The migration has committed: a checkpoint that fails (the file could not grow) leaves
            // the rows in the WAL, where reads find them and a later checkpoint folds them back.
            if let Err(source) = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                tracing::warn!(error = %source, database = %path.display(), "the migrated database stays in its WAL for now");
            }
        }
        Ok(())
    }
}

/// Refuses, before anything is written, a move of the `items` table (format 4's migration) that
/// the file system has no room for. The moved rows go to the WAL first, about as many pages as the
/// database uses (the pages the old rows free are reused by the next ones, so the file itself grows
/// by about one step's rows at the checkpoint after the commit); half as much again is kept for the
/// new index, those rows, and the pages SQLite rewrites as it frees. Short of that, the move would
/// fail midway, or commit and then leave the disk full, the database in its WAL. A WAL a killed
/// migration left is overwritten, so its bytes count as free.
fn room_to_copy(conn: &Connection, path: &Path, from: i64) -> Result<(), BackendError> {
    let err = sqlite_error("cannot measure the database", path);
    let pragma = |name: &str| -> Result<u64, BackendError> {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(&err)
    };
    let used = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
    let used = used.saturating_mul(pragma("page_size")?);
    let needed = used.saturating_add(used / 2);
    let folder = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stat = rustix::fs::statvfs(folder)
        .map_err(|errno| BackendError::io("cannot measure the free space", folder, errno.into()))?;
    let mut wal = path.to_owned().into_os_string();
    wal.push("-wal");
    let available = stat
        .f_bavail
        .saturating_mul(stat.f_frsize)
        .saturating_add(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    if available < needed {
        return Err(BackendError::NoRoomToMigrate {
            path: path.to_owned(),
            from,
            to: FORMAT_VERSION,
            needed,
            available,
        });
    }
    Ok(())
}

/// One row as an export reads it: service, key, class, sealed value, key id, written at.
type ExportRow = (String, String, Option<u8>, Option<Vec<u8>>, i64, i64);

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What a read found.
enum Found {
    Item(Item),
    Absent,
    /// The row exists but its key is gone ([`Opened::KeyGone`]).
    KeyGone,
}

/// Reads and opens one item; shared by the store and its [`SqliteReader`].
fn read_item(
    conn: &Connection,
    sealer: &mut dyn RowSealer,
    path: &Path,
    project: &ProjectScope,
    name: &ItemName,
) -> Result<Found, BackendError> {
    let err = sqlite_error("cannot read item", path);
    // Read the columns as whatever SQLite holds: a damaged class or value is the row's problem
    // (`CannotDecrypt`, naming the item), not a storage failure. The sealed value is opened straight
    // from SQLite's row, with no copy of it first.
    let mut statement = conn
        .prepare_cached(
            "SELECT accessible, sealed, key_id FROM items WHERE project = ?1 AND service = ?2 AND key = ?3",
        )
        .map_err(&err)?;
    let mut rows = statement
        .query(params![
            project.project().as_str(),
            name.service.as_str(),
            name.key.as_str()
        ])
        .map_err(&err)?;
    let Some(row) = rows.next().map_err(&err)? else {
        return Ok(Found::Absent);
    };
    let class = match row.get_ref(0).map_err(&err)? {
        ValueRef::Integer(class) => u8::try_from(class).ok(),
        _ => None,
    };
    let sealed = match row.get_ref(1).map_err(&err)? {
        ValueRef::Blob(sealed) => Some(sealed),
        _ => None,
    };
    let key_id = row.get(2).map_err(&err)?;
    open_item(sealer, project, name, class, sealed, key_id)
}

/// Opens one stored row of item `name` into its value and class.
fn open_item(
    sealer: &mut dyn RowSealer,
    project: &ProjectScope,
    name: &ItemName,
    class: Option<u8>,
    sealed: Option<&[u8]>,
    key_id: i64,
) -> Result<Found, BackendError> {
    let cannot_decrypt = || BackendError::CannotDecrypt {
        service: name.service.as_str().to_owned(),
        key: name.key.as_str().to_owned(),
    };
    let (Some(class), Some(sealed)) = (class, sealed) else {
        return Err(cannot_decrypt());
    };
    let row = Row {
        key_id,
        ..Row::new(project, name, class)
    };
    let plaintext = match sealer.open(&row, sealed)? {
        Opened::Value(plaintext) => plaintext,
        Opened::NotAuthentic => return Err(cannot_decrypt()),
        Opened::KeyGone => return Ok(Found::KeyGone),
    };
    // The class is authenticated by the AAD, so a tampered class has already failed above.
    let accessible = KeychainAccessible::try_from(class).map_err(|_| cannot_decrypt())?;
    let value = std::str::from_utf8(&plaintext).map_err(|_| cannot_decrypt())?;
    Ok(Found::Item(Item {
        value: SecretString::from(value),
        accessible,
    }))
}

fn key_gone_warning(backend: &str, project: &ProjectScope, name: &ItemName) {
    tracing::warn!(
        backend,
        project = %project.project(),
        service = name.service.as_str(),
        key = name.key.as_str(),
        "the key that sealed this item is gone (app reinstalled or data restored from a backup); the item cannot be recovered and is removed"
    );
}

/// The keys of one service of a project, sorted by their bytes (SQLite's `BINARY` order, the same
/// as Rust's), after `after`, at most `limit`; shared by the store and its [`SqliteReader`].
fn list_keys_in(
    conn: &Connection,
    path: &Path,
    project: &ProjectScope,
    service: &ServiceName,
    after: Option<&Key>,
    limit: usize,
) -> Result<Vec<Key>, BackendError> {
    let err = sqlite_error("cannot list keys", path);
    let mut stmt = conn
        .prepare_cached(
            "SELECT key FROM items WHERE project = ?1 AND service = ?2 AND key > ?3
             ORDER BY key LIMIT ?4",
        )
        .map_err(&err)?;
    let rows = stmt
        .query_map(
            params![
                project.project().as_str(),
                service.as_str(),
                after.map_or("", Key::as_str),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |row| row.get::<_, String>(0),
        )
        .map_err(&err)?;
    let mut keys = Vec::new();
    for key in rows {
        // A row whose key no longer parses was not written by this store: skip it, as a get would
        // never reach it.
        if let Ok(key) = Key::parse(&key.map_err(&err)?) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// The services of a project with at least one item, sorted, after `after`, at most `limit`.
fn list_services_in(
    conn: &Connection,
    path: &Path,
    project: &ProjectScope,
    after: Option<&ServiceName>,
    limit: usize,
) -> Result<Vec<ServiceName>, BackendError> {
    let err = sqlite_error("cannot list services", path);
    let mut stmt = conn
        .prepare_cached(
            "SELECT DISTINCT service FROM items WHERE project = ?1 AND service > ?2
             ORDER BY service LIMIT ?3",
        )
        .map_err(&err)?;
    let rows = stmt
        .query_map(
            params![
                project.project().as_str(),
                after.map_or("", ServiceName::as_str),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ],
            |row| row.get::<_, String>(0),
        )
        .map_err(&err)?;
    let mut services = Vec::new();
    for service in rows {
        if let Ok(service) = ServiceName::parse(Some(&service.map_err(&err)?)) {
            services.push(service);
        }
    }
    Ok(services)
}

/// A second, read-only connection to the same database, for the daemon's reader thread. WAL lets it
/// read while the owner's connection writes and syncs.
pub struct SqliteReader {
    conn: Connection,
    sealer: Box<dyn RowSealer>,
    path: PathBuf,
}

impl Reader for SqliteReader {
    fn get(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
    ) -> Result<Option<Item>, BackendError> {
        match read_item(&self.conn, self.sealer.as_mut(), &self.path, project, name)? {
            Found::Item(item) => Ok(Some(item)),
            Found::Absent => Ok(None),
            // Only the owner writes; it removes the row the next time it reads the item.
            Found::KeyGone => {
                key_gone_warning(self.sealer.name(), project, name);
                Ok(None)
            }
        }
    }

    fn contains(&mut self, project: &ProjectScope, name: &ItemName) -> Result<bool, BackendError> {
        match read_item(&self.conn, self.sealer.as_mut(), &self.path, project, name) {
            Ok(Found::Item(_)) | Err(BackendError::Locked { .. }) => Ok(true),
            Ok(Found::Absent | Found::KeyGone) => Ok(false),
            Err(err) => Err(err),
        }
    }

    fn list_keys(
        &mut self,
        project: &ProjectScope,
        service: &ServiceName,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Key>, BackendError> {
        list_keys_in(&self.conn, &self.path, project, service, after, limit)
    }

    fn list_services(
        &mut self,
        project: &ProjectScope,
        after: Option<&ServiceName>,
        limit: usize,
    ) -> Result<Vec<ServiceName>, BackendError> {
        list_services_in(&self.conn, &self.path, project, after, limit)
    }
}

impl<S: RowSealer> SealedStore<S> {
    /// How a write statement's failure is reported: a statement outside a transaction commits, so
    /// its I/O errors leave the outcome unknown ([`sqlite_commit_error`]).
    fn write_error(
        &self,
        action: &'static str,
        committing: bool,
    ) -> Box<dyn Fn(rusqlite::Error) -> BackendError + '_> {
        if committing {
            Box::new(sqlite_commit_error(action, &self.path))
        } else {
            Box::new(sqlite_error(action, &self.path))
        }
    }

    /// Rolls back a transaction left open by an earlier call (a panic between `BEGIN` and `COMMIT`, a
    /// failed `ROLLBACK`). Left open, it would silently take in every later write, uncommitted.
    fn close_stray_transaction(&mut self) -> Result<(), BackendError> {
        if self.conn.is_autocommit() {
            return Ok(());
        }
        tracing::error!("a transaction was left open; rolling it back");
        let _ = self.conn.execute_batch("ROLLBACK");
        if self.conn.is_autocommit() {
            Ok(())
        } else {
            Err(BackendError::Internal(
                "a transaction is stuck open".to_owned(),
            ))
        }
    }

    /// Applies `writes` inside one transaction: one WAL sync for all of them.
    fn apply_in_one_transaction(&mut self, writes: &[Write]) -> Result<Vec<Applied>, BackendError> {
        let path = self.path.clone();
        let err = sqlite_error("cannot commit a batch", &path);
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(&err)?;
        let commit_err = sqlite_commit_error("cannot commit a batch", &path);
        let applied = writes
            .iter()
            .map(|write| self.apply(write))
            .collect::<Result<Vec<_>, _>>()
            .and_then(|applied| {
                self.conn
                    .execute_batch("COMMIT")
                    .map_err(&commit_err)
                    .map(|()| applied)
            });
        if applied.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        applied
    }
}

impl<S: RowSealer> Backend for SealedStore<S> {
    fn name(&self) -> &'static str {
        self.sealer.name()
    }

    fn get(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
    ) -> Result<Option<Item>, BackendError> {
        match read_item(&self.conn, &mut self.sealer, &self.path, project, name)? {
            Found::Item(item) => Ok(Some(item)),
            Found::Absent => Ok(None),
            Found::KeyGone => {
                key_gone_warning(self.sealer.name(), project, name);
                self.delete(project, name)?;
                Ok(None)
            }
        }
    }

    /// An item that exists but is locked exists: asking does not need its key.
    fn contains(&mut self, project: &ProjectScope, name: &ItemName) -> Result<bool, BackendError> {
        match self.get(project, name) {
            Ok(found) => Ok(found.is_some()),
            Err(BackendError::Locked { .. }) => Ok(true),
            Err(err) => Err(err),
        }
    }

    fn set(
        &mut self,
        project: &ProjectScope,
        name: &ItemName,
        value: &SecretString,
        accessible: KeychainAccessible,
    ) -> Result<(), BackendError> {
        let committing = self.conn.is_autocommit();
        let class = u8::from(accessible);
        let row = Row::new(project, name, class);
        let sealed = self.sealer.seal(&row, value.expose_secret().as_bytes())?;
        let key_id = self.sealer.key_id(&row);
        self.conn
            .prepare_cached(
                "INSERT INTO items (project, service, key, accessible, sealed, written_at, key_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (project, service, key) DO UPDATE
                 SET accessible = excluded.accessible, sealed = excluded.sealed,
                     written_at = excluded.written_at, key_id = excluded.key_id",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    project.project().as_str(),
                    name.service.as_str(),
                    name.key.as_str(),
                    class,
                    sealed,
                    unix_millis(),
                    key_id
                ])
            })
            .map_err(self.write_error("cannot write item", committing))?;
        Ok(())
    }

    fn delete(&mut self, project: &ProjectScope, name: &ItemName) -> Result<(), BackendError> {
        let committing = self.conn.is_autocommit();
        self.conn
            .prepare_cached("DELETE FROM items WHERE project = ?1 AND service = ?2 AND key = ?3")
            .and_then(|mut stmt| {
                stmt.execute(params![
                    project.project().as_str(),
                    name.service.as_str(),
                    name.key.as_str()
                ])
            })
            .map_err(self.write_error("cannot delete item", committing))?;
        Ok(())
    }

    fn delete_project(&mut self, project: &ProjectScope) -> Result<(), BackendError> {
        // The keys go first, durably, then the rows (in this call, or in the batch's transaction).
        // So no row of the project can be sealed with a key that is later deleted: a write after
        // this one makes a new key. If the rows then fail to go, they stay without their keys and
        // read as gone; the daemon records the removal first and retries it until it completes.
        self.sealer.forget_project(project.project().as_str())?;
        let committing = self.conn.is_autocommit();
        self.conn
            .prepare_cached("DELETE FROM items WHERE project = ?1")
            .and_then(|mut stmt| stmt.execute(params![project.project().as_str()]))
            .map_err(self.write_error("cannot delete project", committing))?;
        Ok(())
    }

    fn list_keys(
        &mut self,
        project: &ProjectScope,
        service: &ServiceName,
        after: Option<&Key>,
        limit: usize,
    ) -> Result<Vec<Key>, BackendError> {
        list_keys_in(&self.conn, &self.path, project, service, after, limit)
    }

    fn list_services(
        &mut self,
        project: &ProjectScope,
        after: Option<&ServiceName>,
        limit: usize,
    ) -> Result<Vec<ServiceName>, BackendError> {
        list_services_in(&self.conn, &self.path, project, after, limit)
    }

    fn clear(
        &mut self,
        project: &ProjectScope,
        service: Option<&ServiceName>,
    ) -> Result<u64, BackendError> {
        let committing = self.conn.is_autocommit();
        let deleted = match service {
            Some(service) => self
                .conn
                .prepare_cached("DELETE FROM items WHERE project = ?1 AND service = ?2")
                .and_then(|mut stmt| {
                    stmt.execute(params![project.project().as_str(), service.as_str()])
                }),
            None => self
                .conn
                .prepare_cached("DELETE FROM items WHERE project = ?1")
                .and_then(|mut stmt| stmt.execute(params![project.project().as_str()])),
        }
        .map_err(self.write_error("cannot clear items", committing))?;
        Ok(deleted as u64)
    }

    fn export(
        &mut self,
        project: &ProjectScope,
        service: Option<&ServiceName>,
        after: Option<&ItemName>,
        limit: usize,
    ) -> Result<Vec<Exported>, BackendError> {
        let err = sqlite_error("cannot export items", &self.path);
        // Classes 1, 3, 4 and 6 are the `*_THIS_DEVICE_ONLY` ones: never exported.
        let rows: Vec<ExportRow> = self
            .conn
            .prepare_cached(
                "SELECT service, key, accessible, sealed, key_id, written_at FROM items
                 WHERE project = ?1 AND (?2 IS NULL OR service = ?2)
                   AND (service > ?3 OR (service = ?3 AND key > ?4))
                   AND accessible NOT IN (1, 3, 4, 6)
                 ORDER BY service, key LIMIT ?5",
            )
            .and_then(|mut stmt| {
                stmt.query_map(
                    params![
                        project.project().as_str(),
                        service.map(ServiceName::as_str),
                        after.map_or("", |a| a.service.as_str()),
                        after.map_or("", |a| a.key.as_str()),
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                        ))
                    },
                )?
                .collect()
            })
            .map_err(&err)?;
        let mut items = Vec::with_capacity(rows.len());
        for (service, key, class, sealed, key_id, written_at) in rows {
            // A row whose names no longer parse was not written by this store: skip it.
            let (Ok(service), Ok(key)) = (ServiceName::parse(Some(&service)), Key::parse(&key))
            else {
                continue;
            };
            let name = ItemName { service, key };
            match open_item(
                &mut self.sealer,
                project,
                &name,
                class,
                sealed.as_deref(),
                key_id,
            )? {
                Found::Item(item) => items.push(Exported {
                    name,
                    item,
                    written_at,
                }),
                Found::Absent | Found::KeyGone => {}
            }
        }
        Ok(items)
    }

    fn delete_class(
        &mut self,
        class: KeychainAccessible,
    ) -> Result<Vec<(ProjectScope, ItemName)>, BackendError> {
        let committing = self.conn.is_autocommit();
        let rows: Vec<(String, String, String)> = self
            .conn
            .prepare_cached(
                "DELETE FROM items WHERE accessible = ?1 RETURNING project, service, key",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![u8::from(class)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect()
            })
            .map_err(self.write_error("cannot delete items of a class", committing))?;
        Ok(rows
            .into_iter()
            .filter_map(|(project, service, key)| {
                Some((
                    ProjectScope::bind(crate::ProjectId::parse(&project).ok()?),
                    ItemName {
                        service: ServiceName::parse(Some(&service)).ok()?,
                        key: Key::parse(&key).ok()?,
                    },
                ))
            })
            .collect())
    }

    fn device_changed(
        &mut self,
        state: DeviceStatus,
        secret: Option<&SecretString>,
    ) -> Result<(), BackendError> {
        self.sealer
            .device_changed(&self.conn, &self.path, state, secret)
    }

    fn rotate_master_key(&mut self) -> Result<(), BackendError> {
        self.close_stray_transaction()?;
        let path = self.path.clone();
        self.sealer.rotate(&mut self.conn, &path)
    }

    fn write_batch(&mut self, writes: &[Write]) -> Vec<Result<Applied, BackendError>> {
        if let Err(err) = self.close_stray_transaction() {
            let message = err.to_string();
            return writes
                .iter()
                .map(|_| Err(BackendError::Internal(message.clone())))
                .collect();
        }
        // A batch of changes must be one transaction even alone: it is all or nothing.
        if writes.len() > 1 || writes.iter().any(needs_transaction) {
            match self.apply_in_one_transaction(writes) {
                Ok(applied) => return applied.into_iter().map(Ok).collect(),
                // The batch may be durable: applying its writes again one by one could answer a
                // write "failed" that is in fact stored. Each writer learns the outcome is unknown.
                Err(BackendError::OutcomeUnknown { action, detail }) => {
                    tracing::error!(%detail, writes = writes.len(), "a batch's commit failed with an I/O error; its outcome is unknown");
                    return writes
                        .iter()
                        .map(|_| {
                            Err(BackendError::OutcomeUnknown {
                                action,
                                detail: detail.clone(),
                            })
                        })
                        .collect();
                }
                // Rolled back: apply each on its own, so each write gets its own error (or success).
                Err(err) => {
                    tracing::debug!(%err, writes = writes.len(), "batch failed; applying its writes one by one");
                    if let Err(err) = self.close_stray_transaction() {
                        let message = err.to_string();
                        return writes
                            .iter()
                            .map(|_| Err(BackendError::Internal(message.clone())))
                            .collect();
                    }
                }
            }
        }
        writes
            .iter()
            .map(|write| {
                if needs_transaction(write) {
                    self.apply_in_one_transaction(std::slice::from_ref(write))
                        .map(|mut applied| applied.pop().unwrap_or(Applied::Done))
                } else {
                    self.apply(write)
                }
            })
            .collect()
    }

    fn reader(&mut self) -> Result<Option<Box<dyn Reader>>, BackendError> {
        let Some(sealer) = self.sealer.for_reader() else {
            return Ok(None);
        };
        // No SQLite mutex: a reader is only ever used by one thread at a time (`&mut self`; the
        // connection is `Send`, not `Sync`), as rusqlite's own default flags assume.
        let conn = Connection::open_with_flags_and_vfs(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NOFOLLOW
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            VFS,
        )
        .map_err(sqlite_error("cannot open a reader", &self.path))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(sqlite_error("cannot configure a reader", &self.path))?;
        Ok(Some(Box::new(SqliteReader {
            conn,
            sealer,
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

/// Whether `write` changes several rows that must change together or not at all.
fn needs_transaction(write: &Write) -> bool {
    matches!(write, Write::Batch { changes, .. } if changes.len() > 1)
        || matches!(write, Write::Import { items, .. } if items.len() > 1)
}

/// Implements [`Backend`] for a public backend type by handing every call to its `SealedStore` field.
macro_rules! delegate_to_store {
    ($backend:ty, $field:ident) => {
        impl $crate::Backend for $backend {
            fn name(&self) -> &'static str {
                $crate::Backend::name(&self.$field)
            }
            fn get(
                &mut self,
                project: &$crate::ProjectScope,
                name: &$crate::ItemName,
            ) -> Result<Option<$crate::Item>, $crate::BackendError> {
                $crate::Backend::get(&mut self.$field, project, name)
            }
            fn set(
                &mut self,
                project: &$crate::ProjectScope,
                name: &$crate::ItemName,
                value: &$crate::SecretString,
                accessible: $crate::KeychainAccessible,
            ) -> Result<(), $crate::BackendError> {
                $crate::Backend::set(&mut self.$field, project, name, value, accessible)
            }
            fn delete(
                &mut self,
                project: &$crate::ProjectScope,
                name: &$crate::ItemName,
            ) -> Result<(), $crate::BackendError> {
                $crate::Backend::delete(&mut self.$field, project, name)
            }
            fn delete_project(
                &mut self,
                project: &$crate::ProjectScope,
            ) -> Result<(), $crate::BackendError> {
                $crate::Backend::delete_project(&mut self.$field, project)
            }
            fn contains(
                &mut self,
                project: &$crate::ProjectScope,
                name: &$crate::ItemName,
            ) -> Result<bool, $crate::BackendError> {
                $crate::Backend::contains(&mut self.$field, project, name)
            }
            fn list_keys(
                &mut self,
                project: &$crate::ProjectScope,
                service: &$crate::ServiceName,
                after: Option<&$crate::Key>,
                limit: usize,
            ) -> Result<Vec<$crate::Key>, $crate::BackendError> {
                $crate::Backend::list_keys(&mut self.$field, project, service, after, limit)
            }
            fn list_services(
                &mut self,
                project: &$crate::ProjectScope,
                after: Option<&$crate::ServiceName>,
                limit: usize,
            ) -> Result<Vec<$crate::ServiceName>, $crate::BackendError> {
                $crate::Backend::list_services(&mut self.$field, project, after, limit)
            }
            fn clear(
                &mut self,
                project: &$crate::ProjectScope,
                service: Option<&$crate::ServiceName>,
            ) -> Result<u64, $crate::BackendError> {
                $crate::Backend::clear(&mut self.$field, project, service)
            }
            fn write_batch(
                &mut self,
                writes: &[$crate::Write],
            ) -> Vec<Result<$crate::Applied, $crate::BackendError>> {
                $crate::Backend::write_batch(&mut self.$field, writes)
            }
            fn export(
                &mut self,
                project: &$crate::ProjectScope,
                service: Option<&$crate::ServiceName>,
                after: Option<&$crate::ItemName>,
                limit: usize,
            ) -> Result<Vec<$crate::Exported>, $crate::BackendError> {
                $crate::Backend::export(&mut self.$field, project, service, after, limit)
            }
            fn delete_class(
                &mut self,
                class: $crate::KeychainAccessible,
            ) -> Result<Vec<($crate::ProjectScope, $crate::ItemName)>, $crate::BackendError> {
                $crate::Backend::delete_class(&mut self.$field, class)
            }
            fn device_changed(
                &mut self,
                state: $crate::DeviceStatus,
                secret: Option<&$crate::SecretString>,
            ) -> Result<(), $crate::BackendError> {
                $crate::Backend::device_changed(&mut self.$field, state, secret)
            }
            fn rotate_master_key(&mut self) -> Result<(), $crate::BackendError> {
                $crate::Backend::rotate_master_key(&mut self.$field)
            }
            fn reader(&mut self) -> Result<Option<Box<dyn $crate::Reader>>, $crate::BackendError> {
                $crate::Backend::reader(&mut self.$field)
            }
            fn close(self: Box<Self>) -> Result<(), $crate::BackendError> {
                $crate::Backend::close(Box::new(self.$field))
            }
        }
    };
}
#[cfg(feature = "android")]
pub(crate) use delegate_to_store;

delegate_to_store!(SqliteBackend, store);

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
        let mut faults = crate::conformance::SqliteFaults {
            database: f.config.data_dir.join(DATABASE_FILE),
        };
        crate::conformance::run_with_faults(
            || Ok(Box::new(SqliteBackend::open(&f.config)?)),
            &mut faults,
        );
    }

    #[test]
    fn device_state_conformance() {
        let f = fixture();
        crate::conformance::run_device_states(|| Ok(Box::new(SqliteBackend::open(&f.config)?)));
    }

    fn locked_state() -> DeviceStatus {
        DeviceStatus {
            lock: crate::LockState::Locked,
            passcode_set: true,
        }
    }

    fn set_class(backend: &mut SqliteBackend, key: &str, class: KeychainAccessible) {
        backend
            .set(
                &scope("p"),
                &item(key),
                &SecretString::from(format!("value of {key}")),
                class,
            )
            .expect("set");
    }

    /// Below the policy layer: the backend itself, and its reader thread, cannot open a
    /// WHEN_UNLOCKED row once the device locked, because its data key is gone from memory.
    #[test]
    fn a_locked_devices_when_unlocked_rows_cannot_be_opened_below_the_policy() {
        let f = fixture();
        let mut backend = SqliteBackend::open(&f.config).expect("open");
        set_class(&mut backend, "wu", KeychainAccessible::WhenUnlocked);
        set_class(&mut backend, "afu", KeychainAccessible::AfterFirstUnlock);
        let mut reader = backend.reader().expect("reader").expect("a reader");
        backend.device_changed(locked_state(), None).expect("lock");
        assert!(
            !backend
                .store
                .sealer
                .keys
                .is_loaded(Availability::WhenUnlocked)
        );
        assert!(matches!(
            backend.get(&scope("p"), &item("wu")),
            Err(BackendError::Locked { .. })
        ));
        assert!(matches!(
            reader.get(&scope("p"), &item("wu")),
            Err(BackendError::Locked { .. })
        ));
        assert!(
            backend
                .get(&scope("p"), &item("afu"))
                .expect("afu")
                .is_some()
        );
        assert!(matches!(
            backend.set(
                &scope("p"),
                &item("wu2"),
                &SecretString::from("x"),
                KeychainAccessible::WhenUnlockedThisDeviceOnly
            ),
            Err(BackendError::Locked { .. })
        ));
        backend
            .device_changed(DeviceStatus::UNLOCKED, None)
            .expect("unlock");
        assert!(reader.get(&scope("p"), &item("wu")).expect("wu").is_some());
    }

    /// With a host unlock secret, the keys of the groups that need an unlocked device are wrapped
    /// by it too: the database and the master key file together no longer open those rows.
    #[test]
    fn keys_bound_to_an_unlock_secret_need_it_after_a_restart() {
        let f = fixture();
        let secret = SecretString::from("derived-from-the-user-credential");
        let mut backend = SqliteBackend::open(&f.config).expect("open");
        set_class(&mut backend, "wu", KeychainAccessible::WhenUnlocked);
        set_class(&mut backend, "always", KeychainAccessible::Always);
        backend
            .device_changed(DeviceStatus::UNLOCKED, Some(&secret))
            .expect("the first secret binds the keys");
        Box::new(backend).close().expect("close");

        let mut backend = SqliteBackend::open(&f.config).expect("reopen");
        assert!(
            !backend
                .store
                .sealer
                .keys
                .is_loaded(Availability::WhenUnlocked),
            "a bound key is not loaded at open"
        );
        assert!(matches!(
            backend.get(&scope("p"), &item("wu")),
            Err(BackendError::Locked { .. })
        ));
        assert!(
            backend
                .get(&scope("p"), &item("always"))
                .expect("always")
                .is_some()
        );
        assert!(matches!(
            backend.device_changed(DeviceStatus::UNLOCKED, None),
            Err(BackendError::UnlockSecretRequired)
        ));
        assert!(matches!(
            backend.device_changed(DeviceStatus::UNLOCKED, Some(&SecretString::from("guess"))),
            Err(BackendError::WrongUnlockSecret)
        ));
        assert!(
            !backend
                .store
                .sealer
                .keys
                .is_loaded(Availability::WhenUnlocked)
        );
        backend
            .device_changed(DeviceStatus::UNLOCKED, Some(&secret))
            .expect("the right secret");
        assert_eq!(
            backend
                .get(&scope("p"), &item("wu"))
                .expect("get")
                .expect("item")
                .value
                .expose_secret(),
            "value of wu"
        );
    }

    #[test]
    fn rotation_replaces_the_key_and_keeps_every_item() {
        let f = fixture();
        let mut backend = SqliteBackend::open(&f.config).expect("open");
        for (i, class) in KeychainAccessible::ALL.into_iter().enumerate() {
            set_class(&mut backend, &format!("k{i}"), class);
        }
        let old = std::fs::read(&f.config.key_file).expect("old key");
        backend.rotate_master_key().expect("rotate");
        let new = std::fs::read(&f.config.key_file).expect("new key");
        assert_ne!(old, new, "a new key is in place");
        assert!(!keyfile::next_path(&f.config.key_file).exists());
        put(&mut backend, "after", "written after the rotation");
        Box::new(backend).close().expect("close");
        let mut backend = SqliteBackend::open(&f.config).expect("reopen with the new key");
        for i in 0..KeychainAccessible::ALL.len() {
            assert!(
                backend
                    .get(&scope("p"), &item(&format!("k{i}")))
                    .expect("get")
                    .is_some()
            );
        }
        Box::new(backend).close().expect("close");
        // The old key no longer opens the database.
        std::fs::write(&f.config.key_file, &old).expect("put the old key back");
        assert!(matches!(
            SqliteBackend::open(&f.config),
            Err(BackendError::WrongMasterKey { .. })
        ));
    }

    /// Breaker finding 5, at the backend: a rotation that committed but could not install its key
    /// leaves `.next` as the only key the database opens with; a retry that then fails before its
    /// own commit (here the database is busy) must not have discarded it. (The e2e version held
    /// the lock from another process; a running daemon now holds its database exclusively.)
    #[test]
    fn a_retried_rotation_keeps_the_key_of_one_that_committed_but_was_not_installed() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: needs root for chattr");
            return;
        }
        let f = fixture();
        let mut backend = SqliteBackend::open(&f.config).expect("open");
        put(&mut backend, "k", "precious");
        let chattr = |flag: &str| {
            std::process::Command::new("chattr")
                .arg(flag)
                .arg(&f.config.key_file)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !chattr("+i") {
            eprintln!("SKIPPED: chattr +i unsupported here");
            return;
        }
        let first = backend.rotate_master_key();
        chattr("-i");
        assert!(first.is_err(), "the immutable key file cannot be replaced");
        assert!(keyfile::next_path(&f.config.key_file).exists());
        // Another connection of this process holds the write lock: the retry cannot commit.
        let holder = Connection::open_with_flags_and_vfs(
            f.config.data_dir.join(DATABASE_FILE),
            OpenFlags::default(),
            VFS,
        )
        .expect("holder");
        holder.execute_batch("BEGIN IMMEDIATE").expect("lock");
        assert!(
            backend.rotate_master_key().is_err(),
            "the retry fails while the database is busy"
        );
        drop(holder);
        Box::new(backend).close().expect("close");
        let mut backend =
            SqliteBackend::open(&f.config).expect("the store still opens with a key it has");
        assert!(backend.get(&scope("p"), &item("k")).expect("get").is_some());
    }

    #[test]
    fn an_interrupted_rotation_is_finished_or_discarded_at_open() {
        let f = fixture();
        let mut backend = SqliteBackend::open(&f.config).expect("open");
        put(&mut backend, "k", "v");
        let old = std::fs::read(&f.config.key_file).expect("old key");
        backend.rotate_master_key().expect("rotate");
        Box::new(backend).close().expect("close");
        let new = std::fs::read(&f.config.key_file).expect("new key");
        let next = keyfile::next_path(&f.config.key_file);
        let private = |path: &Path, bytes: &[u8]| {
            std::fs::write(path, bytes).expect("write");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        };

        // Crashed after the commit, before the new key replaced the old file: finished at open.
        private(&f.config.key_file, &old);
        private(&next, &new);
        let mut backend = SqliteBackend::open(&f.config).expect("open finishes the rotation");
        assert!(backend.get(&scope("p"), &item("k")).expect("get").is_some());
        assert_eq!(std::fs::read(&f.config.key_file).expect("key"), new);
        assert!(!next.exists());
        Box::new(backend).close().expect("close");

        // Crashed before the commit: the new key was never used and is discarded.
        private(&next, &[7u8; 32]);
        let mut backend = SqliteBackend::open(&f.config).expect("open discards the stale key");
        assert!(backend.get(&scope("p"), &item("k")).expect("get").is_some());
        assert_eq!(std::fs::read(&f.config.key_file).expect("key"), new);
        assert!(!next.exists());
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
                .store
                .conn
                .query_row("SELECT sealed FROM items WHERE key = ?1", [key], |row| {
                    row.get(0)
                })
                .expect("read sealed")
        };
        let store = |backend: &SqliteBackend, key: &str, sealed: &[u8]| {
            backend
                .store
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

    /// A transaction left open by an earlier call (a panic mid-batch) must not swallow later writes.
    #[test]
    fn a_stray_open_transaction_is_rolled_back_before_the_next_batch() {
        let f = fixture();
        let mut backend = SqliteBackend::open(&f.config).expect("open");
        backend
            .store
            .conn
            .execute_batch("BEGIN IMMEDIATE")
            .expect("begin");
        let write = |key: &str| Write::Set {
            project: scope("p"),
            name: item(key),
            value: SecretString::from("durable"),
            accessible: KeychainAccessible::default(),
        };
        for batch in [vec![write("one")], vec![write("two"), write("three")]] {
            let results = backend.write_batch(&batch);
            assert!(results.iter().all(Result::is_ok), "{results:?}");
            assert!(
                backend.store.conn.is_autocommit(),
                "no transaction is left open"
            );
        }
        Box::new(backend).close().expect("close");
        let mut reopened = SqliteBackend::open(&f.config).expect("reopen");
        for key in ["one", "two", "three"] {
            assert!(
                reopened
                    .get(&scope("p"), &item(key))
                    .expect("get")
                    .is_some(),
                "{key} was committed"
            );
        }
    }

    /// Process-kill tests cannot tell whether a commit reached the disk; this checks the setting
    /// that makes it so (WAL, synced on every commit).
    #[test]
    fn commits_are_synced_in_wal_mode() {
        let f = fixture();
        let backend = SqliteBackend::open(&f.config).expect("open");
        let journal: String = backend
            .store
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .expect("journal");
        let synchronous: i64 = backend
            .store
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .expect("sync");
        assert_eq!(
            (journal.as_str(), synchronous),
            ("wal", 2),
            "WAL with synchronous=FULL"
        );
    }

    /// Finding 5 of issue 15: an I/O error at commit (here SQLITE_IOERR_SHMSIZE, which SQLite
    /// reported after the transaction was synced to the WAL) may hide a durable write.
    #[test]
    fn an_io_error_at_commit_is_an_unknown_outcome_and_a_full_disk_is_storage_full() {
        let path = Path::new("securestore.db");
        let failure =
            |extended| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(extended), None);
        let shm_size = rusqlite::ffi::SQLITE_IOERR_SHMSIZE;
        assert!(matches!(
            sqlite_commit_error("commit", path)(failure(shm_size)),
            BackendError::OutcomeUnknown { .. }
        ));
        assert!(matches!(
            sqlite_commit_error("commit", path)(failure(rusqlite::ffi::SQLITE_FULL)),
            BackendError::StorageFull
        ));
        assert!(matches!(
            sqlite_error("read", path)(failure(shm_size)),
            BackendError::Sqlite { .. }
        ));
    }

    /// Finding 6 of issue 15: a damaged class column is the row's damage, not a storage failure.
    #[test]
    fn a_damaged_class_or_value_column_cannot_be_decrypted() {
        let f = fixture();
        let mut backend = SqliteBackend::open(&f.config).expect("open");
        for key in ["class", "text", "sealed"] {
            put(&mut backend, key, "v");
        }
        let conn = &backend.store.conn;
        conn.execute("UPDATE items SET accessible = 9999 WHERE key = 'class'", [])
            .expect("damage");
        conn.execute("UPDATE items SET accessible = 'x' WHERE key = 'text'", [])
            .expect("damage");
        conn.execute("UPDATE items SET sealed = 'x' WHERE key = 'sealed'", [])
            .expect("damage");
        for key in ["class", "text", "sealed"] {
            let err = backend.get(&scope("p"), &item(key)).expect_err("damaged");
            assert!(
                matches!(&err, BackendError::CannotDecrypt { key: k, .. } if k == key),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn refuses_a_newer_format() {
        let f = fixture();
        let backend = SqliteBackend::open(&f.config).expect("open");
        backend
            .store
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
