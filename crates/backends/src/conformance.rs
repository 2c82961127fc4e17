//! One suite every backend must pass, written once.
//!
//! A backend's test module calls [`run`] with a function that opens the backend afresh on the same
//! storage (so persistence is checked too), or [`run_with_faults`] with [`Faults`] that can damage
//! that storage, which adds the failure policies. Adding a backend to the suite is one call.

use std::path::PathBuf;

use securestore_proto::limits::{DEFAULT_MAX_VALUE_BYTES, MAX_VALUE_BYTES_CEILING};

use crate::{
    Action, Applied, Backend, BackendError, Change, Expect, ItemName, Key, KeychainAccessible,
    ProjectId, ProjectScope, SecretString, ServiceName, Write,
};

/// Damage done to a backend's storage while it is closed, to check its failure policies.
pub trait Faults {
    /// Flips one bit of the stored ciphertext of `name` in `project`.
    fn flip_ciphertext(&mut self, project: &ProjectScope, name: &ItemName);

    /// Whether anything is still stored for `name` in `project`.
    fn is_stored(&mut self, project: &ProjectScope, name: &ItemName) -> bool;

    /// Deletes the platform key that protects `name` in `project` (a keystore entry), as an app
    /// reinstall or a restored backup would; `false` when the backend has no such key, and the
    /// lost-key checks are skipped.
    fn delete_platform_key(&mut self, project: &ProjectScope, name: &ItemName) -> bool;
}

/// [`Faults`] on a securestore SQLite database file, where the SQLite and Android backends keep rows.
/// It has no platform key to delete.
#[derive(Debug, Clone)]
pub struct SqliteFaults {
    /// The database file.
    pub database: PathBuf,
}

impl SqliteFaults {
    fn connection(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.database).expect("open the database")
    }
}

impl Faults for SqliteFaults {
    fn flip_ciphertext(&mut self, project: &ProjectScope, name: &ItemName) {
        let conn = self.connection();
        let where_row = "project = ?1 AND service = ?2 AND key = ?3";
        let row = (
            project.project().as_str(),
            name.service.as_str(),
            name.key.as_str(),
        );
        let mut sealed: Vec<u8> = conn
            .query_row(
                &format!("SELECT sealed FROM items WHERE {where_row}"),
                row,
                |r| r.get(0),
            )
            .expect("the row to flip");
        // The last byte is inside the tag for every sealer: a bit flip no cipher may miss.
        let last = sealed.len() - 1;
        sealed[last] ^= 0x01;
        conn.execute(
            &format!("UPDATE items SET sealed = ?4 WHERE {where_row}"),
            (row.0, row.1, row.2, sealed),
        )
        .expect("flip");
    }

    fn is_stored(&mut self, project: &ProjectScope, name: &ItemName) -> bool {
        self.connection()
            .query_row(
                "SELECT count(*) FROM items WHERE project = ?1 AND service = ?2 AND key = ?3",
                (
                    project.project().as_str(),
                    name.service.as_str(),
                    name.key.as_str(),
                ),
                |r| r.get::<_, i64>(0),
            )
            .expect("count")
            > 0
    }

    fn delete_platform_key(&mut self, _project: &ProjectScope, _name: &ItemName) -> bool {
        false
    }
}

/// A value of exactly `bytes` UTF-8 bytes, mostly two-byte characters.
fn value_of_size(bytes: usize) -> String {
    let mut value = "é".repeat(bytes / 2);
    if bytes % 2 == 1 {
        value.push('x');
    }
    value
}

fn scope(id: &str) -> ProjectScope {
    ProjectScope::bind(ProjectId::parse(id).expect("valid project"))
}

fn name(service: Option<&str>, key: &str) -> ItemName {
    ItemName {
        service: ServiceName::parse(service).expect("valid service"),
        key: Key::parse(key).expect("valid key"),
    }
}

fn value_of(backend: &mut dyn Backend, project: &ProjectScope, item: &ItemName) -> Option<String> {
    backend
        .get(project, item)
        .expect("get")
        .map(|item| item.value.expose_secret().to_owned())
}

fn set(backend: &mut dyn Backend, project: &ProjectScope, item: &ItemName, value: &str) {
    backend
        .set(
            project,
            item,
            &SecretString::from(value),
            KeychainAccessible::default(),
        )
        .expect("set");
}

/// Runs every check against the backend `open` returns. `open` must reopen the same storage each time.
///
/// # Panics
/// On the first check the backend fails, naming it.
pub fn run(mut open: impl FnMut() -> Result<Box<dyn Backend>, BackendError>) {
    let mut backend = open().expect("open backend");
    let b = backend.as_mut();
    let (a, other) = (scope("@owner/app"), scope("@owner/other"));
    let token = name(None, "token");

    // Round trip, overwrite, missing, delete, delete-missing.
    assert_eq!(value_of(b, &a, &token), None, "a fresh store has no items");
    set(b, &a, &token, "v1");
    assert_eq!(value_of(b, &a, &token).as_deref(), Some("v1"));
    set(b, &a, &token, "v2");
    assert_eq!(value_of(b, &a, &token).as_deref(), Some("v2"), "overwrite");
    b.delete(&a, &token).expect("delete");
    assert_eq!(value_of(b, &a, &token), None, "deleted");
    b.delete(&a, &token)
        .expect("deleting a missing item succeeds");

    // Services are separate namespaces.
    let in_service = name(Some("auth"), "token");
    set(b, &a, &token, "default-service");
    set(b, &a, &in_service, "auth-service");
    assert_eq!(value_of(b, &a, &token).as_deref(), Some("default-service"));
    assert_eq!(
        value_of(b, &a, &in_service).as_deref(),
        Some("auth-service")
    );

    // Projects never see each other: read, overwrite, delete.
    assert_eq!(
        value_of(b, &other, &token),
        None,
        "another project reads nothing"
    );
    set(b, &other, &token, "other's");
    assert_eq!(
        value_of(b, &a, &token).as_deref(),
        Some("default-service"),
        "overwrite stays in its project"
    );
    b.delete(&other, &token).expect("delete");
    assert_eq!(
        value_of(b, &a, &token).as_deref(),
        Some("default-service"),
        "delete stays in its project"
    );

    // Accessibility is stored and returned; unicode and empty values survive.
    for class in KeychainAccessible::ALL {
        let item = name(Some("classes"), class.expo_name());
        b.set(&a, &item, &SecretString::from("x"), class)
            .expect("set");
        assert_eq!(
            b.get(&a, &item).expect("get").map(|i| i.accessible),
            Some(class)
        );
    }
    let unicode = name(None, "unicode");
    set(b, &a, &unicode, "ключ 🔑 \u{0} \n end");
    assert_eq!(
        value_of(b, &a, &unicode).as_deref(),
        Some("ключ 🔑 \u{0} \n end")
    );
    let empty = name(None, "empty");
    set(b, &a, &empty, "");
    assert_eq!(
        value_of(b, &a, &empty).as_deref(),
        Some(""),
        "the empty string is a value, not absence"
    );

    // A changed class takes effect on overwrite.
    let reclassed = name(Some("classes"), "reclassed");
    b.set(
        &a,
        &reclassed,
        &SecretString::from("old"),
        KeychainAccessible::WhenUnlocked,
    )
    .expect("set");
    b.set(
        &a,
        &reclassed,
        &SecretString::from("new"),
        KeychainAccessible::AfterFirstUnlockThisDeviceOnly,
    )
    .expect("set");
    let item = b.get(&a, &reclassed).expect("get").expect("present");
    assert_eq!(
        (item.value.expose_secret(), item.accessible),
        ("new", KeychainAccessible::AfterFirstUnlockThisDeviceOnly),
        "the new class replaces the old"
    );

    // Values up to the daemon's default limit, and up to the largest limit it can be given, survive.
    for size in [DEFAULT_MAX_VALUE_BYTES, MAX_VALUE_BYTES_CEILING] {
        let big = value_of_size(size as usize);
        let item = name(Some("sizes"), &format!("b{size}"));
        set(b, &a, &item, &big);
        assert!(
            value_of(b, &a, &item).as_deref() == Some(big.as_str()),
            "a {size}-byte value round-trips"
        );
        b.delete(&a, &item).expect("delete");
    }

    // Deleting a project removes its items in every service and nothing of any other project.
    let doomed = scope("@owner/doomed");
    set(b, &doomed, &token, "gone");
    set(b, &doomed, &in_service, "gone too");
    set(b, &other, &token, "other stays");
    b.delete_project(&doomed).expect("delete project");
    assert_eq!(value_of(b, &doomed, &token), None);
    assert_eq!(value_of(b, &doomed, &in_service), None);
    assert_eq!(value_of(b, &other, &token).as_deref(), Some("other stays"));
    assert_eq!(value_of(b, &a, &token).as_deref(), Some("default-service"));
    b.delete(&other, &token).expect("delete");

    // A batch applies every write in order and answers each; a reader sees what was acknowledged.
    let batch: Vec<Write> = (0..20)
        .map(|i| Write::Set {
            project: a.clone(),
            name: name(Some("batch"), &format!("k{i}")),
            value: SecretString::from(format!("v{i}")),
            accessible: KeychainAccessible::default(),
        })
        .chain([Write::Delete {
            project: a.clone(),
            name: name(Some("batch"), "k0"),
        }])
        .collect();
    let results = b.write_batch(&batch);
    assert_eq!(results.len(), batch.len());
    assert!(
        results.iter().all(Result::is_ok),
        "every write of the batch succeeds"
    );
    assert_eq!(
        value_of(b, &a, &name(Some("batch"), "k0")),
        None,
        "writes apply in order"
    );
    assert_eq!(
        value_of(b, &a, &name(Some("batch"), "k19")).as_deref(),
        Some("v19")
    );
    if let Some(mut reader) = b.reader().expect("reader") {
        let read = |reader: &mut Box<dyn crate::Reader>, key: &str| {
            reader
                .get(&a, &name(Some("batch"), key))
                .expect("reader get")
                .map(|item| item.value.expose_secret().to_owned())
        };
        assert_eq!(read(&mut reader, "k7").as_deref(), Some("v7"));
        set(b, &a, &name(Some("batch"), "k7"), "changed");
        assert_eq!(
            read(&mut reader, "k7").as_deref(),
            Some("changed"),
            "the reader sees new writes"
        );
        assert_eq!(read(&mut reader, "k0"), None);
    }

    listing_and_clearing(b, &a, &other);
    compare_and_set(b, &a);

    // Persistence across a reopen.
    backend.close().expect("close");
    let mut backend = open().expect("reopen backend");
    let b = backend.as_mut();
    assert_eq!(
        value_of(b, &a, &token).as_deref(),
        Some("default-service"),
        "persisted"
    );
    assert_eq!(
        value_of(b, &a, &in_service).as_deref(),
        Some("auth-service")
    );
    assert_eq!(value_of(b, &a, &empty).as_deref(), Some(""));
    assert_eq!(value_of(b, &other, &token), None);
    backend.close().expect("close");
}

/// contains, list_keys, list_services (with paging), clear and clear-all; never across projects.
fn listing_and_clearing(b: &mut dyn Backend, a: &ProjectScope, other: &ProjectScope) {
    let keys = |b: &mut dyn Backend, p: &ProjectScope, s: &str, after: Option<&str>, limit| {
        let after = after.map(|k| Key::parse(k).expect("key"));
        b.list_keys(p, &service(s), after.as_ref(), limit)
            .expect("list keys")
            .into_iter()
            .map(|k| k.as_str().to_owned())
            .collect::<Vec<_>>()
    };
    for key in ["b", "a", "c.1", "B"] {
        set(b, a, &name(Some("list"), key), "v");
    }
    set(b, other, &name(Some("list"), "theirs"), "v");
    set(b, a, &name(Some("list2"), "x"), "v");
    assert!(b.contains(a, &name(Some("list"), "a")).expect("contains"));
    assert!(!b.contains(a, &name(Some("list"), "zz")).expect("contains"));
    assert!(
        !b.contains(other, &name(Some("list"), "a"))
            .expect("contains"),
        "contains stays in its project"
    );
    assert_eq!(
        keys(b, a, "list", None, 100),
        ["B", "a", "b", "c.1"],
        "sorted by bytes"
    );
    assert_eq!(keys(b, a, "list", None, 2), ["B", "a"], "bounded");
    assert_eq!(
        keys(b, a, "list", Some("a"), 2),
        ["b", "c.1"],
        "paged after a cursor"
    );
    assert!(keys(b, a, "list", Some("c.1"), 2).is_empty());
    assert_eq!(keys(b, other, "list", None, 100), ["theirs"]);
    assert!(keys(b, a, "nothing-here", None, 100).is_empty());
    let services: Vec<String> = b
        .list_services(a, None, 100)
        .expect("services")
        .into_iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    for expected in ["list", "list2"] {
        assert!(services.iter().any(|s| s == expected), "{services:?}");
    }
    let mut sorted = services.clone();
    sorted.sort();
    assert_eq!(services, sorted, "services are sorted");
    let after_list = b
        .list_services(a, Some(&service("list")), 1)
        .expect("services");
    assert_eq!(
        after_list,
        [service("list2")],
        "services page after a cursor"
    );
    if let Some(mut reader) = b.reader().expect("reader") {
        let listed = reader
            .list_keys(a, &service("list"), None, 100)
            .expect("reader list");
        assert_eq!(listed.len(), 4, "the reader lists what was written");
        assert!(
            reader
                .contains(a, &name(Some("list"), "B"))
                .expect("contains")
        );
        assert!(
            !reader
                .list_services(a, None, 100)
                .expect("services")
                .is_empty()
        );
    }

    // clear: one service of one project, counted; then everything of a project.
    assert_eq!(b.clear(a, Some(&service("list"))).expect("clear"), 4);
    assert!(keys(b, a, "list", None, 100).is_empty());
    assert_eq!(
        keys(b, other, "list", None, 100),
        ["theirs"],
        "other projects are untouched"
    );
    assert_eq!(
        keys(b, a, "list2", None, 100),
        ["x"],
        "other services are untouched"
    );
    assert_eq!(b.clear(a, Some(&service("list"))).expect("clear"), 0);
    let doomed = scope("@owner/cleared");
    set(b, &doomed, &name(Some("s1"), "k"), "v");
    set(b, &doomed, &name(Some("s2"), "k"), "v");
    let results = b.write_batch(&[Write::Clear {
        project: doomed.clone(),
        service: None,
    }]);
    assert!(
        matches!(results[..], [Ok(Applied::Cleared(2))]),
        "{results:?}"
    );
    assert!(
        b.list_services(&doomed, None, 100)
            .expect("services")
            .is_empty()
    );
    assert_eq!(keys(b, other, "list", None, 100), ["theirs"]);
    b.delete(other, &name(Some("list"), "theirs"))
        .expect("delete");
    b.delete(a, &name(Some("list2"), "x")).expect("delete");
}

/// Conditional changes and all-or-nothing batches of them.
fn compare_and_set(b: &mut dyn Backend, a: &ProjectScope) {
    let counter = name(Some("cas"), "counter");
    let change = |expected: Expect, value: Option<&str>| Change {
        name: counter.clone(),
        expected,
        action: match value {
            Some(v) => Action::Set {
                value: SecretString::from(v),
                accessible: KeychainAccessible::default(),
            },
            None => Action::Delete,
        },
    };
    let one = |b: &mut dyn Backend, change: Change| {
        let mut results = b.write_batch(&[Write::Change {
            project: a.clone(),
            change,
        }]);
        results
            .pop()
            .expect("one result")
            .expect("applied or conflict")
    };
    let expect = |v: &str| Expect::Value(SecretString::from(v));
    assert_eq!(
        one(b, change(Expect::Absent, Some("1"))),
        Applied::Done,
        "set if absent"
    );
    assert_eq!(
        one(b, change(Expect::Absent, Some("x"))),
        Applied::Conflict { index: 0 },
        "not absent any more"
    );
    assert_eq!(
        value_of(b, a, &counter).as_deref(),
        Some("1"),
        "unchanged by the conflict"
    );
    assert_eq!(one(b, change(expect("1"), Some("2"))), Applied::Done);
    assert_eq!(
        one(b, change(expect("1"), Some("3"))),
        Applied::Conflict { index: 0 }
    );
    assert_eq!(
        one(b, change(expect("22"), Some("3"))),
        Applied::Conflict { index: 0 }
    );
    assert_eq!(
        one(b, change(expect(""), None)),
        Applied::Conflict { index: 0 }
    );
    assert_eq!(value_of(b, a, &counter).as_deref(), Some("2"));
    assert_eq!(
        one(b, change(expect("2"), None)),
        Applied::Done,
        "delete if"
    );
    assert_eq!(value_of(b, a, &counter), None);
    assert_eq!(
        one(b, change(expect("2"), None)),
        Applied::Conflict { index: 0 }
    );

    // A batch: each condition sees the earlier changes; one failure applies nothing.
    let item = |key: &str| name(Some("cas"), key);
    let set_to = |key: &str, expected: Expect, v: &str| Change {
        name: item(key),
        expected,
        action: Action::Set {
            value: SecretString::from(v),
            accessible: KeychainAccessible::default(),
        },
    };
    let batch = |changes: Vec<Change>| Write::Batch {
        project: a.clone(),
        changes,
    };
    let results = b.write_batch(&[batch(vec![
        set_to("x", Expect::Absent, "1"),
        set_to("x", expect("1"), "2"),
        set_to("y", Expect::Anything, "y"),
    ])]);
    assert!(matches!(results[..], [Ok(Applied::Done)]), "{results:?}");
    assert_eq!(value_of(b, a, &item("x")).as_deref(), Some("2"));
    let results = b.write_batch(&[
        Write::Set {
            project: a.clone(),
            name: item("before"),
            value: SecretString::from("kept"),
            accessible: KeychainAccessible::default(),
        },
        batch(vec![
            set_to("y", Expect::Anything, "changed"),
            Change {
                name: item("x"),
                expected: Expect::Anything,
                action: Action::Delete,
            },
            set_to("z", Expect::Anything, "new"),
            set_to("x", expect("2"), "3"),
        ]),
    ]);
    assert!(
        matches!(
            results[..],
            [Ok(Applied::Done), Ok(Applied::Conflict { index: 3 })]
        ),
        "the fourth change sees the second's delete: {results:?}"
    );
    assert_eq!(
        value_of(b, a, &item("y")).as_deref(),
        Some("y"),
        "nothing applied"
    );
    assert_eq!(
        value_of(b, a, &item("x")).as_deref(),
        Some("2"),
        "nothing applied"
    );
    assert_eq!(value_of(b, a, &item("z")), None, "nothing applied");
    assert_eq!(
        value_of(b, a, &item("before")).as_deref(),
        Some("kept"),
        "a conflict fails only its own write, not the others sharing its commit"
    );
    assert_eq!(b.clear(a, Some(&service("cas"))).expect("clear"), 3);
}

fn service(s: &str) -> ServiceName {
    ServiceName::parse(Some(s)).expect("service")
}

/// [`run`], then the failure policies, damaging the storage through `faults` between reopens:
///
/// - a flipped ciphertext is [`BackendError::CannotDecrypt`] naming its key and service, the row is
///   kept, other items still read, and a new write replaces it;
/// - a lost platform key (when the backend has one) makes its items read as absent and removes them,
///   leaves other services and projects alone, and a new write works again.
///
/// # Panics
/// On the first check the backend fails.
pub fn run_with_faults(
    mut open: impl FnMut() -> Result<Box<dyn Backend>, BackendError>,
    faults: &mut dyn Faults,
) {
    run(&mut open);
    let (a, other) = (scope("@owner/app"), scope("@owner/other"));

    // A flipped ciphertext.
    let (flipped, intact) = (
        name(Some("faults"), "flipped"),
        name(Some("faults"), "intact"),
    );
    let mut backend = open().expect("open backend");
    set(backend.as_mut(), &a, &flipped, "will be damaged");
    set(backend.as_mut(), &a, &intact, "stays readable");
    backend.close().expect("close");
    faults.flip_ciphertext(&a, &flipped);
    let mut backend = open().expect("reopen backend");
    let b = backend.as_mut();
    match b.get(&a, &flipped) {
        Err(BackendError::CannotDecrypt { service, key }) => {
            assert_eq!((service.as_str(), key.as_str()), ("faults", "flipped"));
        }
        other => panic!("a flipped ciphertext must be CannotDecrypt, got {other:?}"),
    }
    assert_eq!(value_of(b, &a, &intact).as_deref(), Some("stays readable"));
    backend.close().expect("close");
    assert!(
        faults.is_stored(&a, &flipped),
        "a row that fails authentication is kept"
    );
    let mut backend = open().expect("reopen backend");
    set(backend.as_mut(), &a, &flipped, "repaired");
    assert_eq!(
        value_of(backend.as_mut(), &a, &flipped).as_deref(),
        Some("repaired")
    );

    // A platform key lost (app reinstalled, backup restored).
    let (lost, same_key) = (name(Some("lost"), "k1"), name(Some("lost"), "k2"));
    let (elsewhere, other_project) = (name(Some("kept"), "k1"), name(Some("lost"), "k1"));
    set(backend.as_mut(), &a, &lost, "gone");
    set(backend.as_mut(), &a, &same_key, "gone too");
    set(backend.as_mut(), &a, &elsewhere, "another service");
    set(backend.as_mut(), &other, &other_project, "another project");
    backend.close().expect("close");
    if !faults.delete_platform_key(&a, &lost) {
        return;
    }
    let mut backend = open().expect("reopen backend");
    let b = backend.as_mut();
    assert_eq!(
        value_of(b, &a, &lost),
        None,
        "an item whose key is gone reads as absent"
    );
    assert_eq!(
        value_of(b, &a, &same_key),
        None,
        "so does every item under that key"
    );
    assert_eq!(
        value_of(b, &a, &elsewhere).as_deref(),
        Some("another service")
    );
    assert_eq!(
        value_of(b, &other, &other_project).as_deref(),
        Some("another project")
    );
    backend.close().expect("close");
    assert!(
        !faults.is_stored(&a, &lost) && !faults.is_stored(&a, &same_key),
        "items whose key is gone are removed once read"
    );
    assert!(faults.is_stored(&other, &other_project));
    let mut backend = open().expect("reopen backend");
    set(backend.as_mut(), &a, &lost, "fresh");
    backend.close().expect("close");
    let mut backend = open().expect("reopen backend");
    assert_eq!(
        value_of(backend.as_mut(), &a, &lost).as_deref(),
        Some("fresh"),
        "a new key is made and persisted"
    );
    backend.close().expect("close");
}

/// The item of `class` the device-state checks use: one per class, in service `classes`.
fn class_item(class: KeychainAccessible) -> ItemName {
    name(Some("classes"), &format!("c{}", u8::from(class)))
}

/// What a get of `class`'s item must give in state `status`: its value, or `Locked`.
fn check_class_read(
    b: &mut dyn Backend,
    a: &ProjectScope,
    class: KeychainAccessible,
    status: crate::DeviceStatus,
) {
    let item = class_item(class);
    match b.get(a, &item) {
        Ok(Some(found)) if status.allows(class) => {
            assert_eq!(found.value.expose_secret(), format!("v-{class}"));
            assert_eq!(found.accessible, class);
        }
        Err(BackendError::Locked { service, key }) if !status.allows(class) => {
            assert_eq!(
                (service.as_str(), key.as_str()),
                ("classes", item.key.as_str())
            );
        }
        other => panic!(
            "{class} in state '{status}': expected {}, got {other:?}",
            if status.allows(class) {
                "its value"
            } else {
                "Locked"
            }
        ),
    }
}

/// Runs the accessibility-class checks, through [`crate::Gated`], against the backend `open`
/// returns (fresh storage, reopened on the same storage each time): every class in every device
/// state (before the first unlock, locked, unlocked), stores and compare-and-sets refused while
/// locked, export leaving out the `*_THIS_DEVICE_ONLY` classes and refusing while an exportable
/// item is locked, a removed passcode deleting `WHEN_PASSCODE_SET_THIS_DEVICE_ONLY` items durably,
/// and a reader thread (when the backend has one) under the same state.
///
/// # Panics
/// On the first check the backend fails.
pub fn run_device_states(mut open: impl FnMut() -> Result<Box<dyn Backend>, BackendError>) {
    use crate::{DeviceSignal, DeviceStatus, Gated, LockState};
    let a = scope("@owner/classes");
    let unlocked = DeviceStatus::UNLOCKED;
    let mut gated = Gated::new(open().expect("open backend"), unlocked).expect("gate");
    for class in KeychainAccessible::ALL {
        gated
            .set(
                &a,
                &class_item(class),
                &SecretString::from(format!("v-{class}")),
                class,
            )
            .unwrap_or_else(|e| panic!("set {class} while unlocked: {e}"));
    }
    for class in KeychainAccessible::ALL {
        check_class_read(&mut gated, &a, class, unlocked);
    }
    let exported = gated
        .export(&a, None, None, 100)
        .expect("export while unlocked");
    let mut classes: Vec<_> = exported.iter().map(|e| e.item.accessible).collect();
    classes.sort_by_key(|c| u8::from(*c));
    assert_eq!(
        classes,
        [
            KeychainAccessible::AfterFirstUnlock,
            KeychainAccessible::Always,
            KeychainAccessible::WhenUnlocked
        ],
        "an export carries every class but the *_THIS_DEVICE_ONLY ones"
    );

    // Locked.
    let (locked, deleted) = gated.signal(&DeviceSignal::Lock).expect("lock");
    assert!(deleted.is_empty());
    assert_eq!(locked.lock, LockState::Locked);
    let mut reader = gated.reader().expect("reader");
    for class in KeychainAccessible::ALL {
        check_class_read(&mut gated, &a, class, locked);
        assert!(
            gated.contains(&a, &class_item(class)).expect("contains"),
            "{class} still exists"
        );
        if let Some(reader) = reader.as_mut() {
            let read = reader.get(&a, &class_item(class));
            assert_eq!(
                matches!(read, Err(BackendError::Locked { .. })),
                !locked.allows(class),
                "the reader thread sees the same state ({class}): {read:?}"
            );
        }
    }
    let fresh = name(Some("classes"), "fresh");
    assert!(
        matches!(
            gated.set(
                &a,
                &fresh,
                &SecretString::from("x"),
                KeychainAccessible::WhenUnlocked
            ),
            Err(BackendError::Locked { .. })
        ),
        "a WHEN_UNLOCKED item cannot be stored while locked"
    );
    gated
        .set(
            &a,
            &fresh,
            &SecretString::from("x"),
            KeychainAccessible::AfterFirstUnlock,
        )
        .expect("an AFTER_FIRST_UNLOCK item can be stored while locked");
    let compare = Write::Change {
        project: a.clone(),
        change: Change {
            name: class_item(KeychainAccessible::WhenUnlocked),
            expected: Expect::Value(SecretString::from("v-WHEN_UNLOCKED")),
            action: Action::Delete,
        },
    };
    assert!(
        matches!(
            gated.write_batch(std::slice::from_ref(&compare)).pop(),
            Some(Err(BackendError::Locked { .. }))
        ),
        "a compare-and-set cannot read a locked item"
    );
    assert!(
        matches!(
            gated.export(&a, None, None, 100),
            Err(BackendError::Locked { .. })
        ),
        "an export never leaves a locked item out silently"
    );
    Box::new(gated).close().expect("close");

    // A restart: before the first unlock, then unlocked; every value survived.
    let mut gated =
        Gated::new(open().expect("reopen"), DeviceStatus::BEFORE_FIRST_UNLOCK).expect("gate");
    let bfu = gated.status();
    assert_eq!(bfu.lock, LockState::BeforeFirstUnlock);
    for class in KeychainAccessible::ALL {
        check_class_read(&mut gated, &a, class, bfu);
    }
    assert!(matches!(
        gated.set(
            &a,
            &fresh,
            &SecretString::from("y"),
            KeychainAccessible::AfterFirstUnlock
        ),
        Err(BackendError::Locked { .. })
    ));
    let (status, _) = gated
        .signal(&DeviceSignal::Unlock { secret: None })
        .expect("unlock");
    assert_eq!(status.lock, LockState::Unlocked);
    assert!(
        matches!(
            gated.set(
                &a,
                &fresh,
                &SecretString::from("z"),
                KeychainAccessible::WhenPasscodeSetThisDeviceOnly
            ),
            Err(BackendError::PasscodeNotSet)
        ),
        "no passcode is known at boot"
    );
    gated
        .signal(&DeviceSignal::PasscodeSet)
        .expect("passcode set");
    for class in KeychainAccessible::ALL {
        check_class_read(&mut gated, &a, class, DeviceStatus::UNLOCKED);
    }

    // The passcode removed: every WHEN_PASSCODE_SET_THIS_DEVICE_ONLY item goes, durably.
    let passcode_item = class_item(KeychainAccessible::WhenPasscodeSetThisDeviceOnly);
    let (status, deleted) = gated
        .signal(&DeviceSignal::PasscodeRemoved)
        .expect("passcode removed");
    assert!(!status.passcode_set);
    assert_eq!(deleted, vec![(a.clone(), passcode_item.clone())]);
    assert!(gated.get(&a, &passcode_item).expect("get").is_none());
    assert!(matches!(
        gated.set(
            &a,
            &passcode_item,
            &SecretString::from("again"),
            KeychainAccessible::WhenPasscodeSetThisDeviceOnly
        ),
        Err(BackendError::PasscodeNotSet)
    ));
    Box::new(gated).close().expect("close");
    let mut backend = open().expect("reopen");
    assert!(
        backend.get(&a, &passcode_item).expect("get").is_none(),
        "the deletion was durable"
    );
    backend.close().expect("close");
}
