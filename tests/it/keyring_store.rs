//! The keyring store (`securestore-keyring`): keyring-core's own usage pattern run against the real
//! daemon, checked both through keyring and through securestore's own client and CLI.

use std::collections::HashMap;
use std::sync::Arc;

use keyring_core::api::CredentialStore;
use keyring_core::{Entry, Error};
use securestore_client::blocking::Client;
use securestore_client::{GetOptions, SetOptions};
use securestore_e2e::{Daemon, PROJECT, token_file};
use securestore_keyring::{Config, Store};

fn store_on(daemon: &Daemon, project: &str) -> Arc<CredentialStore> {
    let store: Arc<CredentialStore> =
        Store::open(Config::new(project).socket(daemon.socket())).expect("store opens");
    store
}

fn entry(store: &Arc<CredentialStore>, service: &str, user: &str) -> Entry {
    Entry::new_in_store(store, service, user)
        .unwrap_or_else(|e| panic!("entry <{service:?}, {user:?}>: {e}"))
}

/// The daemon's own view of an item, through the plain blocking client.
fn raw_get(daemon: &Daemon, project: &str, service: &str, key: &str) -> Option<String> {
    let client = Client::connect(daemon.socket(), project).expect("client");
    let options = GetOptions {
        keychain_service: Some(service.to_owned()),
    };
    client
        .get_item(key, options)
        .expect("get")
        .map(|v| v.expose_secret().to_owned())
}

fn raw_set(daemon: &Daemon, project: &str, service: &str, key: &str, value: &str) {
    let client = Client::connect(daemon.socket(), project).expect("client");
    let options = SetOptions {
        keychain_service: Some(service.to_owned()),
        ..SetOptions::default()
    };
    client.set_item(key, value, options).expect("set");
}

/// A 64-byte secret that is not UTF-8 (0xff never occurs in UTF-8), with every byte value mixed in.
fn binary_secret() -> Vec<u8> {
    let mut secret: Vec<u8> = (0..63u8).map(|i| i.wrapping_mul(37)).collect();
    secret.push(0xff);
    secret
}

/// keyring-core's `examples/usage.rs` and its sample store's round-trip tests, step by step.
#[test]
fn keyrings_usage_pattern_round_trips_through_the_daemon() {
    let daemon = Daemon::start();
    let store = store_on(&daemon, PROJECT);
    let entry = entry(&store, "my-service", "my-name");

    // No credential until the first set.
    assert!(matches!(entry.get_credential(), Err(Error::NoEntry)));
    assert!(matches!(entry.get_password(), Err(Error::NoEntry)));
    assert!(matches!(entry.get_secret(), Err(Error::NoEntry)));
    assert!(matches!(entry.delete_credential(), Err(Error::NoEntry)));

    entry.set_password("test ascii password").expect("set");
    assert_eq!(entry.get_password().expect("get"), "test ascii password");
    // The same item is visible to securestore's own client, under service → keychainService.
    assert_eq!(
        raw_get(&daemon, PROJECT, "my-service", "my-name").as_deref(),
        Some("test ascii password")
    );
    // Update, non-ASCII, and a password's bytes read as a secret.
    entry
        .set_password("このきれいな花は桜です")
        .expect("update");
    assert_eq!(entry.get_password().expect("get"), "このきれいな花は桜です");
    assert_eq!(
        entry.get_secret().expect("secret"),
        "このきれいな花は桜です".as_bytes()
    );
    assert!(entry.get_credential().is_ok(), "exists now");
    assert_eq!(
        entry.get_specifiers(),
        Some(("my-service".to_owned(), "my-name".to_owned()))
    );

    // A binary secret: round trip, and as a password it is BadEncoding with the bytes attached.
    let secret = binary_secret();
    entry.set_secret(&secret).expect("set secret");
    assert_eq!(entry.get_secret().expect("get secret"), secret);
    assert!(matches!(entry.get_password(), Err(Error::BadEncoding(bytes)) if bytes == secret));

    // Delete: the secret goes with it, and a second delete is NoEntry.
    entry.delete_credential().expect("delete");
    assert!(matches!(entry.get_secret(), Err(Error::NoEntry)));
    assert!(matches!(entry.get_password(), Err(Error::NoEntry)));
    assert!(matches!(entry.delete_credential(), Err(Error::NoEntry)));
    assert_eq!(raw_get(&daemon, PROJECT, "my-service", "my-name"), None);

    // Set after delete recreates it; empty passwords are passwords.
    entry.set_password("").expect("empty password");
    assert_eq!(entry.get_password().expect("get"), "");
    entry.delete_credential().expect("delete");

    // Two entries on one pair share one credential (keyring's test_duplicate_entries).
    let e1 = self::entry(&store, "dup", "dup");
    let e2 = self::entry(&store, "dup", "dup");
    e1.set_password("password for entry1").expect("set");
    assert_eq!(e2.get_password().expect("get"), "password for entry1");
    e2.set_password("password for entry2").expect("set");
    assert_eq!(e1.get_password().expect("get"), "password for entry2");
    e1.delete_credential().expect("delete");
    assert!(matches!(e2.delete_credential(), Err(Error::NoEntry)));
}

/// keyring's usual start-up: make the store the default, then `Entry::new` everywhere.
#[test]
fn as_the_default_store_entry_new_uses_it() {
    let daemon = Daemon::start();
    let socket = daemon.socket();
    let config = HashMap::from([
        ("project", "@tests/default-store"),
        ("socket", socket.to_str().expect("utf-8 path")),
    ]);
    let store = Store::new_with_configuration(&config).expect("store opens");
    keyring_core::set_default_store(store);
    let entry = Entry::new("cli-tool", "alice").expect("entry");
    entry.set_password("s3cret").expect("set");
    assert_eq!(
        Entry::new("cli-tool", "alice")
            .expect("entry")
            .get_password()
            .expect("get"),
        "s3cret"
    );
    // Nothing in the project the other tests use.
    assert_eq!(raw_get(&daemon, PROJECT, "cli-tool", "alice"), None);
    assert_eq!(
        raw_get(&daemon, "@tests/default-store", "cli-tool", "alice").as_deref(),
        Some("s3cret")
    );
    entry.delete_credential().expect("delete");
    keyring_core::unset_default_store();
}

#[test]
fn odd_user_names_are_escaped_reversibly_and_kept_apart() {
    let daemon = Daemon::start();
    let store = store_on(&daemon, PROJECT);
    // Pairs of (user, key the daemon stores it under).
    let users = [
        ("alice@example.com", "_kr_alice_40example.com"),
        ("a/b c", "_kr_a_2fb_20c"),
        ("", "_kr_"),
        ("桜", "_kr__e6_a1_9c"),
        ("_kr_x", "_kr__5fkr_5fx"),
        // Valid keys stay as they are, even one that looks like another's escape.
        ("alice_40example.com", "alice_40example.com"),
        ("user_name", "user_name"),
        ("__token__", "__token__"),
    ];
    for (i, (user, _)) in users.iter().enumerate() {
        entry(&store, "odd", user)
            .set_password(&format!("password {i}"))
            .expect("set");
    }
    for (i, (user, key)) in users.iter().enumerate() {
        let expected = format!("password {i}");
        assert_eq!(
            entry(&store, "odd", user).get_password().expect("get"),
            expected,
            "{user:?}"
        );
        assert_eq!(
            raw_get(&daemon, PROJECT, "odd", key).as_deref(),
            Some(expected.as_str()),
            "{user:?} is stored under {key:?}"
        );
    }
    let client = Client::connect(daemon.socket(), PROJECT).expect("client");
    let mut keys = client.list_keys(Some("odd")).expect("list");
    keys.sort();
    let mut want: Vec<&str> = users.iter().map(|(_, key)| *key).collect();
    want.sort_unstable();
    assert_eq!(keys, want, "one item per user, no collisions");

    // The CLI reads what keyring wrote, by the stored key.
    let out = daemon
        .cli()
        .args([
            "--project",
            PROJECT,
            "--service",
            "odd",
            "get",
            "_kr_alice_40example.com",
        ])
        .output()
        .expect("run cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "password 0\n");

    // Deleting one leaves the look-alike.
    entry(&store, "odd", "alice@example.com")
        .delete_credential()
        .expect("delete");
    assert_eq!(
        entry(&store, "odd", "alice_40example.com")
            .get_password()
            .expect("look-alike survives"),
        "password 5"
    );

    // A user whose mapping is over the 1024-byte key limit is refused up front.
    let long = "@".repeat(400);
    assert!(matches!(
        Entry::new_in_store(&store, "odd", &long),
        Err(Error::TooLong(attr, 1024)) if attr == "user"
    ));
}

#[test]
fn services_keep_entries_apart_and_map_like_users() {
    let daemon = Daemon::start();
    let store = store_on(&daemon, PROJECT);
    let a = entry(&store, "service-a", "alice");
    let b = entry(&store, "service-b", "alice");
    a.set_password("in a").expect("set a");
    assert!(matches!(b.get_password(), Err(Error::NoEntry)));
    b.set_password("in b").expect("set b");
    assert_eq!(a.get_password().expect("a"), "in a");
    assert_eq!(b.get_password().expect("b"), "in b");
    a.delete_credential().expect("delete a");
    assert_eq!(b.get_password().expect("b survives"), "in b");

    // Services securestore accepts are kept (spaces and non-ASCII included); others are escaped.
    let unicode = entry(&store, "com.example:auth ✓", "alice");
    unicode.set_password("u").expect("set");
    assert_eq!(
        raw_get(&daemon, PROJECT, "com.example:auth ✓", "alice").as_deref(),
        Some("u")
    );
    let empty = entry(&store, "", "");
    empty.set_password("empty pair").expect("set");
    assert_eq!(
        raw_get(&daemon, PROJECT, "_kr_", "_kr_").as_deref(),
        Some("empty pair")
    );
    let control = entry(&store, "tab\there", "alice");
    control.set_password("c").expect("set");
    assert_eq!(
        raw_get(&daemon, PROJECT, "_kr_tab_09here", "alice").as_deref(),
        Some("c")
    );
    // keyring's "app" is securestore's default service, the CLI's default too.
    entry(&store, "app", "alice")
        .set_password("default")
        .expect("set");
    let out = daemon
        .cli()
        .args(["--project", PROJECT, "get", "alice"])
        .output()
        .expect("run cli");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "default\n");
}

#[test]
fn two_stores_on_two_projects_are_isolated() {
    let daemon = Daemon::start();
    let one = store_on(&daemon, "@tests/one");
    let two = store_on(&daemon, "@tests/two");
    assert_ne!(one.id(), two.id());
    let e1 = entry(&one, "svc", "alice");
    let e2 = entry(&two, "svc", "alice");
    e1.set_password("one's").expect("set");
    assert!(matches!(e2.get_password(), Err(Error::NoEntry)));
    e2.set_password("two's").expect("set");
    assert_eq!(e1.get_password().expect("one"), "one's");
    e1.delete_credential().expect("delete");
    assert_eq!(e2.get_password().expect("two survives"), "two's");
    assert!(matches!(e1.delete_credential(), Err(Error::NoEntry)));
}

#[test]
fn values_other_clients_wrote_and_values_that_look_encoded() {
    let daemon = Daemon::start();
    let store = store_on(&daemon, PROJECT);
    let e = entry(&store, "values", "alice");

    // A password that looks like this store's binary encoding comes back exactly.
    let lookalike = "keyring-binary:base64:aGk=";
    e.set_password(lookalike).expect("set");
    assert_eq!(e.get_password().expect("get"), lookalike);
    let stored = raw_get(&daemon, PROJECT, "values", "alice").expect("stored");
    assert_ne!(stored, lookalike, "it was tagged, not stored as is");

    // A binary secret is stored as tagged base64.
    e.set_secret(&[0xff, 0x00, 0x10]).expect("set");
    assert_eq!(
        raw_get(&daemon, PROJECT, "values", "alice").as_deref(),
        Some("keyring-binary:base64:/wAQ")
    );

    // A value set with securestore's own client reads as its text.
    raw_set(&daemon, PROJECT, "values", "alice", "set by the CLI");
    assert_eq!(e.get_password().expect("get"), "set by the CLI");
    // A foreign value with the tag but no valid base64 is BadDataFormat, with the raw value.
    raw_set(
        &daemon,
        PROJECT,
        "values",
        "alice",
        "keyring-binary:base64:!!",
    );
    assert!(matches!(
        e.get_secret(),
        Err(Error::BadDataFormat(raw, _)) if raw == b"keyring-binary:base64:!!"
    ));
    // NUL and other control characters are fine in values.
    e.set_password("a\0b\nc").expect("set");
    assert_eq!(e.get_password().expect("get"), "a\0b\nc");
}

#[test]
fn a_secret_over_the_daemons_limit_is_invalid() {
    let daemon = Daemon::start_with(&["--max-value-bytes", "64"]);
    let store = store_on(&daemon, PROJECT);
    let e = entry(&store, "limits", "alice");
    e.set_password(&"x".repeat(64)).expect("at the limit");
    assert!(matches!(
        e.set_password(&"x".repeat(65)),
        Err(Error::Invalid(attr, _)) if attr == "secret"
    ));
    // Base64 grows binary secrets: 31 bytes become 22 + 44 = 66 bytes of text.
    assert!(matches!(
        e.set_secret(&[0xff; 31]),
        Err(Error::Invalid(attr, _)) if attr == "secret"
    ));
    assert_eq!(e.get_password().expect("unchanged"), "x".repeat(64));
}

#[test]
fn a_registered_project_needs_its_token() {
    let daemon = Daemon::start();
    let out = daemon
        .cli()
        .args(["project", "add", "@tests/locked"])
        .output()
        .expect("run cli");
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).expect("utf-8");
    let file = token_file(daemon.dir.path(), "locked.token", token.trim());

    let without = Store::open(Config::new("@tests/locked").socket(daemon.socket()));
    assert!(
        matches!(without, Err(Error::NoStorageAccess(_))),
        "{without:?}"
    );

    let socket = daemon.socket();
    let config = HashMap::from([
        ("project", "@tests/locked"),
        ("socket", socket.to_str().expect("utf-8")),
        ("token-file", file.to_str().expect("utf-8")),
    ]);
    let store: Arc<CredentialStore> = Store::new_with_configuration(&config).expect("opens");
    let e = entry(&store, "svc", "alice");
    e.set_password("behind a token").expect("set");
    assert_eq!(e.get_password().expect("get"), "behind a token");
    // The store's Debug (which keyring logs) names the project but never shows the token.
    let debug = format!("{store:?}");
    assert!(debug.contains("@tests/locked"), "{debug}");
    assert!(!debug.contains(token.trim()), "{debug}");
}

#[test]
fn no_daemon_is_no_storage_access_and_a_restart_is_survived() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nowhere = Store::open(Config::new(PROJECT).socket(dir.path().join("none.sock")));
    assert!(
        matches!(nowhere, Err(Error::NoStorageAccess(_))),
        "{nowhere:?}"
    );

    let mut daemon = Daemon::start();
    let store = store_on(&daemon, PROJECT);
    let e = entry(&store, "svc", "alice");
    e.set_password("before").expect("set");
    daemon.restart();
    // The store's connection died with the old daemon; the next call reconnects.
    assert_eq!(e.get_password().expect("after restart"), "before");
    daemon.stop();
    assert!(
        matches!(e.get_password(), Err(Error::NoStorageAccess(_))),
        "daemon gone"
    );
}

#[test]
fn search_lists_entries_by_service_and_user() {
    let daemon = Daemon::start();
    let store = store_on(&daemon, PROJECT);
    for (service, user) in [
        ("mail", "alice@example.com"),
        ("mail", "bob"),
        ("chat", "alice@example.com"),
    ] {
        entry(&store, service, user).set_password("p").expect("set");
    }
    // A foreign key no keyring user maps to is left out.
    raw_set(&daemon, PROJECT, "mail", "_kr_zz", "foreign");

    let pairs = |spec: &[(&str, &str)]| {
        let spec: HashMap<&str, &str> = spec.iter().copied().collect();
        let mut found: Vec<(String, String)> = Entry::search_in_store(&store, &spec)
            .expect("search")
            .iter()
            .map(|e| e.get_specifiers().expect("specifiers"))
            .collect();
        found.sort();
        found
    };
    let owned = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(s, u)| ((*s).to_owned(), (*u).to_owned()))
            .collect()
    };
    assert_eq!(
        pairs(&[("service", "mail")]),
        owned(&[("mail", "alice@example.com"), ("mail", "bob")])
    );
    assert_eq!(
        pairs(&[("user", "alice@example.com")]),
        owned(&[("chat", "alice@example.com"), ("mail", "alice@example.com")])
    );
    assert_eq!(pairs(&[]).len(), 3);
    // Found entries work like built ones.
    let found =
        Entry::search_in_store(&store, &HashMap::from([("service", "chat")])).expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].get_password().expect("get"), "p");
    assert!(matches!(
        Entry::search_in_store(&store, &HashMap::from([("label", "x")])),
        Err(Error::Invalid(attr, _)) if attr == "label"
    ));
}

#[test]
fn the_accessible_class_is_a_modifier_and_an_attribute() {
    let daemon = Daemon::start();
    let store = store_on(&daemon, PROJECT);
    let modifiers = HashMap::from([("accessible", "AFTER_FIRST_UNLOCK")]);
    let e = Entry::new_in_store_with_modifiers(&store, "svc", "alice@example.com", &modifiers)
        .expect("entry");
    assert!(matches!(e.get_attributes(), Err(Error::NoEntry)));
    e.set_password("p").expect("set");
    let attrs = e.get_attributes().expect("attributes");
    assert_eq!(attrs["accessible"], "AFTER_FIRST_UNLOCK");
    assert_eq!(attrs["keychain-service"], "svc");
    assert_eq!(attrs["key"], "_kr_alice_40example.com");

    e.update_attributes(&HashMap::from([(
        "accessible",
        "WHEN_UNLOCKED_THIS_DEVICE_ONLY",
    )]))
    .expect("update");
    assert_eq!(
        e.get_attributes().expect("attributes")["accessible"],
        "WHEN_UNLOCKED_THIS_DEVICE_ONLY"
    );
    assert_eq!(e.get_password().expect("value kept"), "p");
    assert!(matches!(
        e.update_attributes(&HashMap::from([("label", "x")])),
        Err(Error::Invalid(attr, _)) if attr == "label"
    ));
    let bad = HashMap::from([("accessible", "SOMETIMES")]);
    assert!(matches!(
        Entry::new_in_store_with_modifiers(&store, "svc", "x", &bad),
        Err(Error::Invalid(attr, _)) if attr == "accessible"
    ));
}

/// keyring-core's `test_simultaneous_*` pattern: entries moved to threads, all at once.
#[test]
fn entries_work_from_many_threads_at_once() {
    let daemon = Daemon::start();
    let store = store_on(&daemon, PROJECT);
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let e = entry(&store, "threads", &format!("user {t}"));
            std::thread::spawn(move || {
                for round in 0..10 {
                    let password = format!("thread {t} round {round}");
                    e.set_password(&password).expect("set");
                    assert_eq!(e.get_password().expect("get"), password);
                    e.delete_credential().expect("delete");
                    assert!(matches!(e.get_password(), Err(Error::NoEntry)));
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("thread");
    }
}

/// Async programs call keyring's blocking API from inside a runtime; the store must not panic
/// there (the blocking client cannot run inside another runtime), in either flavour, and dropping
/// the store inside the runtime must not panic either.
#[test]
fn works_inside_tokio_runtimes() {
    let daemon = Daemon::start();
    let socket = daemon.socket();
    for multi_thread in [false, true] {
        let runtime = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
        } else {
            tokio::runtime::Builder::new_current_thread()
        }
        .enable_all()
        .build()
        .expect("runtime");
        let socket = socket.clone();
        runtime.block_on(async move {
            let store: Arc<CredentialStore> =
                Store::open(Config::new(PROJECT).socket(socket)).expect("opens in async");
            let e = entry(&store, "async", &format!("multi {multi_thread}"));
            e.set_password("from async").expect("set");
            tokio::task::yield_now().await;
            assert_eq!(e.get_password().expect("get"), "from async");
            e.delete_credential().expect("delete");
            drop(e);
            drop(store);
        });
    }
}

/// A program still on keyring 3: its `keyring::Entry` code unchanged, the store chosen at start-up
/// with `set_default_credential_builder` (feature `keyring-v3`). Its entries are the same items as
/// the keyring-core store's.
#[test]
fn keyring_3_programs_use_it_through_the_default_builder() {
    let daemon = Daemon::start();
    let store = Store::open(Config::new("@tests/keyring3").socket(daemon.socket())).expect("opens");
    keyring_v3::set_default_credential_builder(securestore_keyring::v3::builder(store.clone()));

    // keyring 3's own usage: new, set, get, secret, delete, NoEntry.
    let old = keyring_v3::Entry::new("my-service", "alice@example.com").expect("entry");
    assert!(matches!(
        old.get_password(),
        Err(keyring_v3::Error::NoEntry)
    ));
    old.set_password("from keyring 3").expect("set");
    assert_eq!(old.get_password().expect("get"), "from keyring 3");
    assert_eq!(
        raw_get(
            &daemon,
            "@tests/keyring3",
            "my-service",
            "_kr_alice_40example.com"
        )
        .as_deref(),
        Some("from keyring 3")
    );
    // The same item through keyring-core's Entry on the same store.
    let store: Arc<CredentialStore> = store;
    assert_eq!(
        entry(&store, "my-service", "alice@example.com")
            .get_password()
            .expect("core sees it"),
        "from keyring 3"
    );
    let secret = binary_secret();
    old.set_secret(&secret).expect("set secret");
    assert_eq!(old.get_secret().expect("get secret"), secret);
    assert!(matches!(
        old.get_password(),
        Err(keyring_v3::Error::BadEncoding(bytes)) if bytes == secret
    ));
    old.delete_credential().expect("delete");
    assert!(matches!(old.get_secret(), Err(keyring_v3::Error::NoEntry)));
    assert!(matches!(
        old.delete_credential(),
        Err(keyring_v3::Error::NoEntry)
    ));
    assert!(matches!(
        keyring_v3::Entry::new_with_target("login", "my-service", "alice"),
        Err(keyring_v3::Error::Invalid(attr, _)) if attr == "target"
    ));
}
