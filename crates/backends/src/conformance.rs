//! One suite every backend must pass, written once.
//!
//! A backend's test module calls [`run`] with a function that opens the backend afresh on the same
//! storage (so persistence is checked too). Adding a backend to the suite is one call.

use crate::{
    Backend, BackendError, ItemName, Key, KeychainAccessible, ProjectId, ProjectScope,
    SecretString, ServiceName, Write,
};

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
