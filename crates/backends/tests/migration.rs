//! A database written by the previous format (a fixture made by securestored at format 1) opens,
//! migrates forward in place, and keeps every item.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use securestore_backends::sqlite::{DATABASE_FILE, FORMAT_VERSION, SqliteBackend, SqliteConfig};
use securestore_backends::{
    Backend, ItemName, Key, KeychainAccessible, ProjectId, ProjectScope, SecretString, ServiceName,
};

fn item(
    backend: &mut SqliteBackend,
    project: &str,
    service: &str,
    key: &str,
) -> Option<(String, KeychainAccessible)> {
    let scope = ProjectScope::bind(ProjectId::parse(project).expect("project"));
    let name = ItemName {
        service: ServiceName::parse(Some(service)).expect("service"),
        key: Key::parse(key).expect("key"),
    };
    backend
        .get(&scope, &name)
        .expect("get")
        .map(|item| (item.value.expose_secret().to_owned(), item.accessible))
}

fn user_version(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row("PRAGMA user_version", [], |row| row.get(0))
        .expect("user_version")
}

#[test]
fn a_format_1_database_migrates_and_keeps_its_items() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-v1");
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).expect("mkdir");
    let db = data_dir.join(DATABASE_FILE);
    std::fs::copy(fixture.join(DATABASE_FILE), &db).expect("copy db");
    let key_file = dir.path().join("master.key");
    std::fs::copy(fixture.join("master.key"), &key_file).expect("copy key");
    // Git keeps no file modes but the executable bit; the key file and database must be private.
    for file in [&key_file, &db] {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    assert_eq!(user_version(&db), 1, "the fixture is format 1");

    let config = SqliteConfig { data_dir, key_file };
    let mut backend = SqliteBackend::open(&config).expect("opens and migrates");
    let wal = std::fs::metadata(db.with_extension("db-wal")).map_or(0, |m| m.len());
    assert_eq!(
        wal, 0,
        "the migration's WAL is folded back into the database at once"
    );
    assert_eq!(
        item(&mut backend, "@fixture/a", "app", "token"),
        Some(("v1 secret".to_owned(), KeychainAccessible::WhenUnlocked))
    );
    assert_eq!(
        item(&mut backend, "@fixture/a", "auth", "session"),
        Some(("sess-1".to_owned(), KeychainAccessible::AfterFirstUnlock))
    );
    assert_eq!(
        item(&mut backend, "@fixture/b", "app", "token"),
        Some(("другой ✓".to_owned(), KeychainAccessible::WhenUnlocked))
    );
    let scope = ProjectScope::bind(ProjectId::parse("@fixture/a").expect("project"));
    let name = ItemName {
        service: ServiceName::parse(None).expect("service"),
        key: Key::parse("new").expect("key"),
    };
    backend
        .set(
            &scope,
            &name,
            &SecretString::from("after migration"),
            KeychainAccessible::default(),
        )
        .expect("writes work after migrating");
    Box::new(backend).close().expect("close");

    assert_eq!(user_version(&db), FORMAT_VERSION);
    let conn = rusqlite::Connection::open(&db).expect("open");
    let stamped: i64 = conn
        .query_row(
            "SELECT written_at FROM items WHERE key = 'new'",
            [],
            |row| row.get(0),
        )
        .expect("written_at");
    let old: i64 = conn
        .query_row(
            "SELECT written_at FROM items WHERE key = 'session'",
            [],
            |row| row.get(0),
        )
        .expect("written_at");
    assert!(
        stamped > 1_700_000_000_000,
        "new writes are stamped: {stamped}"
    );
    assert_eq!(old, 0, "format-1 items get 0");
    // Format 4: `items` is a rowid table (a `WITHOUT ROWID` table has no `rowid` column).
    let rows: i64 = conn
        .query_row("SELECT count(rowid) FROM items", [], |row| row.get(0))
        .expect("items is a rowid table");
    assert_eq!(rows, 4, "the three fixture items and the new one");

    // Opening again is a no-op: the migration ran once.
    drop(conn);
    let mut again = SqliteBackend::open(&config).expect("reopen");
    assert!(item(&mut again, "@fixture/a", "app", "new").is_some());
}
