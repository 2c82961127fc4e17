//! [`Session`]: a connection bound to one project, with blocking calls for foreign callers.
//!
//! An in-process session (the host is in this process) also holds the daemon's direct lane
//! ([`securestore_daemon::Direct`]): its gets and contains are answered on the calling thread, with
//! no pipe and no thread hop, whenever the session has no write in flight. With a write in flight
//! they go through the pipe, behind it, so a get never overtakes a write sent before it on the same
//! session (`docs/consistency.md`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use securestore_client::{Client, ConnectOptions};
use securestore_daemon::{Direct, Outcome};
use securestore_proto::backup::{Backup, KdfParams, MAX_BACKUP_BYTES};
use securestore_proto::{
    BatchOp, ChangeKind, DeleteOptions, Events, ExportedItem, GetOptions, ImportReport,
    KeychainAccessible, SecretString, SetOptions, WatchFilter,
};

use crate::{BridgeError, ErrorCode, HostHandle, runtime};

/// A connection to the daemon bound to one project. Every method takes `&self` and may be called
/// from many threads at once: the requests share the connection and are answered as they finish.
#[derive(Debug)]
pub struct Session {
    client: Client,
    /// In-process sessions only: the direct lane for gets and contains.
    direct: Option<DirectLane>,
}

/// A session's direct lane, and what decides whether a read may take it.
#[derive(Debug)]
struct DirectLane {
    direct: Direct,
    /// This session's writes sent through the pipe and not yet returned. Raised before a write is
    /// sent and lowered once its answer is back (it is then durable, or refused): a read that sees
    /// zero here cannot be ordered before any write of this session that was sent before it.
    writes: AtomicUsize,
    /// Set for good once a write ended without a certain outcome (timed out, connection lost, a
    /// panic): it may still be applied later, behind the pipe, where a direct read would not wait
    /// for it. Every read then takes the pipe.
    off: AtomicBool,
    /// Reads answered on the lane, for [`Session::reads_answered_directly`].
    answered: AtomicU64,
}

impl DirectLane {
    /// The direct handle when a read may use it now.
    fn usable(&self) -> Option<&Direct> {
        let idle = self.writes.load(Ordering::SeqCst) == 0 && !self.off.load(Ordering::SeqCst);
        idle.then_some(&self.direct)
    }
}

impl Session {
    /// Connects to the daemon at `socket` and binds the connection to `project`, presenting `token`
    /// if the project is registered. `timeout` bounds the connection and each call (default 10 s).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidProject`], [`ErrorCode::Unreachable`], [`ErrorCode::Refused`],
    /// [`ErrorCode::TimedOut`].
    pub fn connect(
        socket: &str,
        project: &str,
        token: Option<SecretString>,
        timeout: Option<Duration>,
    ) -> Result<Self, BridgeError> {
        let options = options(token, timeout);
        let client = runtime().block_on(Client::connect_with(socket, project, options))?;
        Ok(Self {
            client,
            direct: None,
        })
    }

    /// Connects to the daemon `host` runs in this process, without a socket: same handshake, same
    /// binding, same token check.
    ///
    /// # Errors
    /// As [`Session::connect`]; [`ErrorCode::Unreachable`] once the host has stopped.
    pub fn connect_in_process(
        host: &HostHandle,
        project: &str,
        token: Option<SecretString>,
        timeout: Option<Duration>,
    ) -> Result<Self, BridgeError> {
        let options = options(token.clone(), timeout);
        let client = runtime().block_on(async {
            let stream = host
                .host()
                .open_stream()
                .await
                .map_err(|err| BridgeError::new(ErrorCode::Unreachable, format!("{err:#}")))?;
            Ok::<_, BridgeError>(Client::connect_stream(stream, project, options).await?)
        })?;
        // Bound and checked by the handshake already; the direct handle binds the same way.
        let direct = host.host().open_direct(project, token.as_ref())?;
        Ok(Self {
            client,
            direct: Some(DirectLane {
                direct,
                writes: AtomicUsize::new(0),
                off: AtomicBool::new(false),
                answered: AtomicU64::new(0),
            }),
        })
    }

    /// Runs `call`, a write through the pipe, counted as this session's write in flight while it
    /// runs, so reads take the pipe (behind it) meanwhile.
    fn write<T>(&self, call: impl FnOnce() -> Result<T, BridgeError>) -> Result<T, BridgeError> {
        let Some(lane) = &self.direct else {
            return call();
        };
        lane.writes.fetch_add(1, Ordering::SeqCst);
        // No guard: a panic leaves the count raised, which keeps reads on the pipe for good, as an
        // uncertain outcome must.
        let result = call();
        if let Err(err) = &result
            && matches!(
                err.code,
                ErrorCode::TimedOut | ErrorCode::Unreachable | ErrorCode::Internal
            )
        {
            lane.off.store(true, Ordering::SeqCst);
        }
        lane.writes.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// A read on the direct lane when this session may take it now; `None` sends it to the pipe.
    fn direct<T>(
        &self,
        read: impl FnOnce(&Direct) -> Outcome<T>,
    ) -> Option<Result<T, BridgeError>> {
        let lane = self.direct.as_ref()?;
        match read(lane.usable()?) {
            Outcome::Done(answer) => {
                lane.answered.fetch_add(1, Ordering::Relaxed);
                Some(answer.map_err(BridgeError::from))
            }
            Outcome::Elsewhere => None,
        }
    }

    /// How many gets and contains this session had answered on the in-process direct lane (the
    /// rest went through the connection); always 0 for a socket session. For tests and diagnostics.
    pub fn reads_answered_directly(&self) -> u64 {
        self.direct
            .as_ref()
            .map_or(0, |lane| lane.answered.load(Ordering::Relaxed))
    }

    /// The project this session is bound to.
    pub fn project(&self) -> &str {
        self.client.project()
    }

    /// The daemon's value limit, in bytes.
    pub fn max_value_bytes(&self) -> u32 {
        self.client.max_value_bytes()
    }

    /// `getItem`: the value under `key` in `service` (the default service when `None`), or `None`.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidKey`], [`ErrorCode::InvalidService`], [`ErrorCode::Storage`], transport.
    pub fn get(
        &self,
        key: &str,
        service: Option<&str>,
    ) -> Result<Option<SecretString>, BridgeError> {
        if let Some(answer) = self.direct(|direct| direct.get(key, service)) {
            return answer.map(|item| item.map(|item| item.value));
        }
        let options = GetOptions {
            keychain_service: service.map(str::to_owned),
        };
        Ok(runtime().block_on(self.client.get_item(key, options))?)
    }

    /// `setItem`: stores `value` under `key`; returns once it is durable.
    ///
    /// # Errors
    /// As [`Session::get`], and [`ErrorCode::ValueTooLarge`].
    pub fn set(
        &self,
        key: &str,
        value: SecretString,
        service: Option<&str>,
        accessible: KeychainAccessible,
    ) -> Result<(), BridgeError> {
        let options = SetOptions {
            keychain_service: service.map(str::to_owned),
            keychain_accessible: accessible,
        };
        self.write(|| Ok(runtime().block_on(self.client.set_item(key, value, options))?))
    }

    /// `deleteItem`: removes the item; removing a missing item succeeds.
    ///
    /// # Errors
    /// As [`Session::get`].
    pub fn delete(&self, key: &str, service: Option<&str>) -> Result<(), BridgeError> {
        let options = DeleteOptions {
            keychain_service: service.map(str::to_owned),
        };
        self.write(|| Ok(runtime().block_on(self.client.delete_item(key, options))?))
    }
}

impl Session {
    /// Whether an item is stored under `key` in `service`; the value is not sent.
    ///
    /// # Errors
    /// As [`Session::get`]; [`ErrorCode::Unsupported`] from an older daemon.
    pub fn contains(&self, key: &str, service: Option<&str>) -> Result<bool, BridgeError> {
        if let Some(answer) = self.direct(|direct| direct.contains(key, service)) {
            return answer;
        }
        Ok(runtime().block_on(self.client.contains(key, service))?)
    }

    /// Every key of `service`, sorted (fetched page by page).
    ///
    /// # Errors
    /// As [`Session::contains`].
    pub fn list_keys(&self, service: Option<&str>) -> Result<Vec<String>, BridgeError> {
        Ok(runtime().block_on(self.client.list_keys(service))?)
    }

    /// Every service holding items, sorted.
    ///
    /// # Errors
    /// As [`Session::contains`].
    pub fn list_services(&self) -> Result<Vec<String>, BridgeError> {
        Ok(runtime().block_on(self.client.list_services())?)
    }

    /// Deletes every item of `service` (of every service when `all_services`); returns how many.
    ///
    /// # Errors
    /// As [`Session::contains`].
    pub fn clear(&self, service: Option<&str>, all_services: bool) -> Result<u64, BridgeError> {
        self.write(|| {
            if all_services {
                Ok(runtime().block_on(self.client.clear_all())?)
            } else {
                Ok(runtime().block_on(self.client.clear(service))?)
            }
        })
    }

    /// Stores `value` only if the current value equals `expected` (`None`: only if absent).
    ///
    /// # Errors
    /// [`ErrorCode::Conflict`] when it does not (nothing changed); as [`Session::set`].
    pub fn set_if(
        &self,
        key: &str,
        expected: Option<SecretString>,
        value: SecretString,
        service: Option<&str>,
        accessible: KeychainAccessible,
    ) -> Result<(), BridgeError> {
        let options = SetOptions {
            keychain_service: service.map(str::to_owned),
            keychain_accessible: accessible,
        };
        self.write(|| Ok(runtime().block_on(self.client.set_if(key, expected, value, options))?))
    }

    /// Deletes the item only if its current value equals `expected`.
    ///
    /// # Errors
    /// As [`Session::set_if`].
    pub fn delete_if(
        &self,
        key: &str,
        expected: Option<SecretString>,
        service: Option<&str>,
    ) -> Result<(), BridgeError> {
        let options = DeleteOptions {
            keychain_service: service.map(str::to_owned),
        };
        self.write(|| Ok(runtime().block_on(self.client.delete_if(key, expected, options))?))
    }
}

impl Session {
    /// Starts watching this project's changes in `service` (every service when `None`) to `key`
    /// (every key when `None`); returns the watcher's id on this session.
    ///
    /// # Errors
    /// As [`Session::contains`].
    pub fn watch(&self, service: Option<&str>, key: Option<&str>) -> Result<u64, BridgeError> {
        let filter = WatchFilter {
            service: service.map(str::to_owned),
            key: key.map(str::to_owned),
        };
        Ok(runtime().block_on(self.client.watch(filter))?)
    }

    /// The watcher's next events, waiting up to `wait` for one.
    ///
    /// # Errors
    /// As [`Session::contains`].
    pub fn poll_events(&self, watcher: u64, wait: Duration) -> Result<Events, BridgeError> {
        Ok(runtime().block_on(self.client.poll_events(watcher, wait))?)
    }

    /// Ends a watcher.
    ///
    /// # Errors
    /// As [`Session::contains`].
    pub fn unwatch(&self, watcher: u64) -> Result<(), BridgeError> {
        Ok(runtime().block_on(self.client.unwatch(watcher))?)
    }
}

impl Session {
    /// Every exportable item of this project (of `service`, if given): never a `*_THIS_DEVICE_ONLY`
    /// one. Values are in the result: keep it no longer than needed.
    ///
    /// # Errors
    /// [`ErrorCode::Locked`] when an exportable item is unavailable in the device's state; as
    /// [`Session::contains`].
    pub fn export(&self, service: Option<&str>) -> Result<Vec<ExportedItem>, BridgeError> {
        Ok(runtime().block_on(self.client.export(service))?)
    }

    /// Stores `items` in this project; an item that exists is kept (skipped) unless `replace`.
    ///
    /// # Errors
    /// [`ErrorCode::Refused`] for a `*_THIS_DEVICE_ONLY` item (nothing is sent);
    /// [`ErrorCode::Locked`]; as [`Session::contains`].
    pub fn import(
        &self,
        items: &[ExportedItem],
        replace: bool,
    ) -> Result<ImportReport, BridgeError> {
        self.write(|| Ok(runtime().block_on(self.client.import(items, replace))?))
    }

    /// A backup file of this project's exportable items (of `service`, if given), sealed under
    /// `passphrase` (Argon2id, XChaCha20-Poly1305): the same file `securestore export` writes.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for an empty passphrase; as [`Session::export`].
    pub fn export_backup(
        &self,
        service: Option<&str>,
        passphrase: &SecretString,
    ) -> Result<Vec<u8>, BridgeError> {
        self.export_backup_with(service, passphrase, KdfParams::DEFAULT)
    }

    /// As [`Session::export_backup`], with the given Argon2id parameters.
    ///
    /// # Errors
    /// As [`Session::export_backup`].
    pub fn export_backup_with(
        &self,
        service: Option<&str>,
        passphrase: &SecretString,
        kdf: KdfParams,
    ) -> Result<Vec<u8>, BridgeError> {
        if passphrase.is_empty() {
            return Err(BridgeError::invalid_argument("the passphrase is empty"));
        }
        let items = self.export(service)?;
        let backup = Backup {
            project: self.project().to_owned(),
            service: service.map(str::to_owned),
            exported_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            items,
        };
        Ok(securestore_client::backup::seal_with(
            &backup, passphrase, kdf,
        )?)
    }

    /// Opens a backup file made by [`Session::export_backup`] or `securestore export` and stores
    /// its items in this project (an item that exists is kept unless `replace`). The whole file is
    /// checked first: a wrong passphrase, a damaged or newer file, or a `*_THIS_DEVICE_ONLY` item
    /// imports nothing.
    ///
    /// # Errors
    /// [`ErrorCode::BadBackup`]; [`ErrorCode::InvalidArgument`] for a file over the format's size
    /// bound; as [`Session::import`].
    pub fn import_backup(
        &self,
        file: &[u8],
        passphrase: &SecretString,
        replace: bool,
    ) -> Result<ImportReport, BridgeError> {
        if file.len() > MAX_BACKUP_BYTES {
            return Err(BridgeError::invalid_argument(format!(
                "a backup file holds at most {MAX_BACKUP_BYTES} bytes, not {}",
                file.len()
            )));
        }
        let backup = securestore_client::backup::open(file, passphrase)?;
        self.import(&backup.items, replace)
    }
}

/// A `write_batch` being put together by a binding: operations added one by one, then sent whole.
#[derive(Debug, Default)]
pub struct Batch {
    ops: std::sync::Mutex<Vec<BatchOp>>,
}

/// A batch operation's condition: none, the item must be absent, or it must hold this value.
#[derive(Debug)]
pub enum Condition {
    /// Unconditional.
    None,
    /// The item must not exist.
    Absent,
    /// The item's value must equal this one.
    Equals(SecretString),
}

impl Condition {
    /// From a binding's number: 0 none, 1 absent, 2 equals `expected` (required then).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidArgument`] for another number, or 2 without a value.
    pub fn from_parts(condition: i32, expected: Option<SecretString>) -> Result<Self, BridgeError> {
        match (condition, expected) {
            (0, _) => Ok(Self::None),
            (1, _) => Ok(Self::Absent),
            (2, Some(expected)) => Ok(Self::Equals(expected)),
            (2, None) => Err(BridgeError::invalid_argument(
                "condition 2 (equals) needs an expected value",
            )),
            (other, _) => Err(BridgeError::invalid_argument(format!(
                "unknown condition {other}; expected 0 (none), 1 (absent) or 2 (equals)"
            ))),
        }
    }

    fn expected(self) -> Option<Option<SecretString>> {
        match self {
            Self::None => None,
            Self::Absent => Some(None),
            Self::Equals(value) => Some(Some(value)),
        }
    }
}

impl Batch {
    fn push(&self, op: BatchOp) {
        self.ops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(op);
    }

    /// Adds a set of `key` (only if `condition` holds).
    pub fn set(
        &self,
        key: &str,
        value: SecretString,
        service: Option<&str>,
        accessible: KeychainAccessible,
        condition: Condition,
    ) {
        let options = SetOptions {
            keychain_service: service.map(str::to_owned),
            keychain_accessible: accessible,
        };
        let key = key.to_owned();
        self.push(match condition.expected() {
            None => BatchOp::Set {
                key,
                value,
                options,
            },
            Some(expected) => BatchOp::SetIf {
                key,
                expected,
                value,
                options,
            },
        });
    }

    /// Adds a delete of `key` (only if `condition` holds).
    pub fn delete(&self, key: &str, service: Option<&str>, condition: Condition) {
        let options = DeleteOptions {
            keychain_service: service.map(str::to_owned),
        };
        let key = key.to_owned();
        self.push(match condition.expected() {
            None => BatchOp::Delete { key, options },
            Some(expected) => BatchOp::DeleteIf {
                key,
                expected,
                options,
            },
        });
    }
}

impl Session {
    /// Applies `batch`'s operations all or nothing, in one durable transaction.
    ///
    /// # Errors
    /// The first failing operation's code (e.g. [`ErrorCode::Conflict`]), its index in the message;
    /// as [`Session::contains`].
    pub fn write_batch(&self, batch: &Batch) -> Result<(), BridgeError> {
        let ops = batch
            .ops
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        self.write(|| Ok(runtime().block_on(self.client.write_batch(ops))?))
    }
}

/// `events` as text for the bindings: a first line `lagged<TAB>N` when events were missed, then
/// one line per event, `seq<TAB>kind<TAB>service<TAB>key` (kind `set`, `deleted` or `cleared`; an
/// absent service or key is empty). Names hold no tab or newline (keys are `A-Za-z0-9 . - _`,
/// services have no control character), so the text parses back exactly.
pub fn events_text(events: &Events) -> String {
    let mut lines = Vec::with_capacity(events.events.len() + 1);
    if let Some(lagged) = events.lagged {
        lines.push(format!("lagged\t{}", lagged.missed));
    }
    for event in &events.events {
        let kind = match event.kind {
            ChangeKind::Set => "set",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Cleared => "cleared",
        };
        lines.push(format!(
            "{}\t{kind}\t{}\t{}",
            event.seq,
            event.service.as_deref().unwrap_or(""),
            event.key.as_deref().unwrap_or("")
        ));
    }
    lines.join("\n")
}

fn options(token: Option<SecretString>, timeout: Option<Duration>) -> ConnectOptions {
    let defaults = ConnectOptions::default();
    ConnectOptions {
        timeout: timeout.unwrap_or(defaults.timeout),
        token,
        ..defaults
    }
}

/// Expo's accessibility class from its number (0–6).
///
/// # Errors
/// [`ErrorCode::InvalidArgument`] for any other number.
pub fn accessible_from(number: i32) -> Result<KeychainAccessible, BridgeError> {
    u8::try_from(number)
        .map_err(|_| format!("unknown keychainAccessible class {number}; expected 0 to 6"))
        .and_then(KeychainAccessible::try_from)
        .map_err(BridgeError::invalid_argument)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HostOptions;

    fn host(dir: &tempfile::TempDir) -> HostHandle {
        HostHandle::start(HostOptions::under(dir.path()), None).expect("host starts")
    }

    fn lane(session: &Session) -> &DirectLane {
        session
            .direct
            .as_ref()
            .expect("an in-process session has a lane")
    }

    #[test]
    fn reads_take_the_pipe_while_a_write_is_in_flight_and_after_an_uncertain_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = host(&dir);
        let session = Session::connect_in_process(&host, "@unit/lane", None, None).expect("c");
        session
            .set("k", "v".into(), None, KeychainAccessible::WhenUnlocked)
            .expect("set");
        assert!(session.get("k", None).expect("get").is_some());
        assert_eq!(session.reads_answered_directly(), 1, "idle: direct");

        // While a write call runs, the lane is closed to reads; it opens again once it returns,
        // whatever its (certain) outcome.
        let refused: Result<(), BridgeError> = session.write(|| {
            assert!(lane(&session).usable().is_none(), "a write is in flight");
            assert!(session.get("k", None).expect("get").is_some());
            assert!(session.contains("k", None).expect("contains"));
            Err(BridgeError::new(ErrorCode::Conflict, "a definite answer"))
        });
        assert_eq!(refused.expect_err("passed on").code, ErrorCode::Conflict);
        assert_eq!(
            session.reads_answered_directly(),
            1,
            "the reads under the write went through the pipe"
        );
        assert!(lane(&session).usable().is_some());
        assert!(session.get("k", None).expect("get").is_some());
        assert_eq!(session.reads_answered_directly(), 2);

        // A write with no certain outcome may still land behind the pipe: the lane stays closed.
        let timed_out: Result<(), BridgeError> =
            session.write(|| Err(BridgeError::new(ErrorCode::TimedOut, "no answer in time")));
        assert!(timed_out.is_err());
        assert!(lane(&session).usable().is_none());
        assert!(session.get("k", None).expect("get").is_some());
        assert_eq!(
            session.reads_answered_directly(),
            2,
            "through the pipe for good"
        );
        host.stop().expect("stop");
    }

    #[test]
    fn a_socket_session_has_no_lane() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = host(&dir);
        let socket = host.socket().to_str().expect("utf-8").to_owned();
        let session = Session::connect(&socket, "@unit/socket", None, None).expect("connect");
        assert!(session.direct.is_none());
        assert!(session.get("k", None).expect("get").is_none());
        assert_eq!(session.reads_answered_directly(), 0);
        host.stop().expect("stop");
    }
}
