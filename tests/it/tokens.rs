//! Project access tokens: registration, presentation, refusal, revocation, and the strict policy.

use std::process::Output;

use securestore_client::{
    ConnectOptions, Error, GetOptions, SecretString, ServiceError, SetOptions, admin,
};
use securestore_e2e::{Daemon, token_file, value_of};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn with_token(token: &SecretString) -> ConnectOptions {
    ConnectOptions {
        token: Some(token.clone()),
        ..ConnectOptions::default()
    }
}

#[test]
fn cli_registers_a_project_and_the_token_file_opens_it() {
    let daemon = Daemon::start();
    let out = daemon
        .cli()
        .args(["project", "add", "@acme/wallet"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8(out.stdout).expect("utf-8");
    let token = token.trim_end_matches('\n');
    assert!(
        token.starts_with("sst1_") && token.len() == 5 + 64,
        "a 256-bit token: {token:?}"
    );

    let file = token_file(daemon.dir.path(), "wallet.token", token);
    let run = |args: &[&str], token_file: Option<&std::path::Path>| {
        let mut cmd = daemon.cli();
        cmd.args(["--project", "@acme/wallet"]);
        if let Some(file) = token_file {
            cmd.arg("--token-file").arg(file);
        }
        cmd.args(args).output().expect("run")
    };
    assert!(run(&["set", "k", "v"], Some(&file)).status.success());
    let out = run(&["get", "k"], Some(&file));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v\n");

    // Missing and wrong tokens: refused, exit 3, one line naming the project and not any token.
    let out = run(&["get", "k"], None);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("requires an access token"),
        "{}",
        stderr(&out)
    );
    let wrong = token_file(
        daemon.dir.path(),
        "wrong.token",
        &format!("sst1_{}", "0".repeat(64)),
    );
    let out = run(&["get", "k"], Some(&wrong));
    assert_eq!(out.status.code(), Some(3));
    assert!(stderr(&out).contains("wrong access token") && !stderr(&out).contains("sst1_"));

    // The token also works from the environment.
    let out = daemon
        .cli()
        .env("SECURESTORE_TOKEN_FILE", &file)
        .args(["--project", "@acme/wallet", "get", "k"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));

    // A second add is refused; list shows ids only.
    let out = daemon
        .cli()
        .args(["project", "add", "@acme/wallet"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = daemon
        .cli()
        .args(["project", "list"])
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "@acme/wallet\n");
}

#[tokio::test]
async fn a_token_replayed_for_another_project_is_refused() {
    let daemon = Daemon::start();
    let a = admin::add_project(daemon.socket(), "@o/a", &ConnectOptions::default())
        .await
        .expect("add a");
    admin::add_project(daemon.socket(), "@o/b", &ConnectOptions::default())
        .await
        .expect("add b");
    let err = securestore_client::Client::connect_with(daemon.socket(), "@o/b", with_token(&a))
        .await
        .expect_err("a's token does not open b");
    assert!(
        matches!(err, Error::Service(ServiceError::Refused { .. })),
        "{err:?}"
    );
    assert!(
        securestore_client::Client::connect_with(daemon.socket(), "@o/a", with_token(&a))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn strict_mode_serves_only_registered_projects() {
    let daemon = Daemon::start_with(&["--policy", "strict"]);
    let err = securestore_client::Client::connect(daemon.socket(), "@o/unregistered")
        .await
        .expect_err("unregistered");
    assert!(err.to_string().contains("strict mode"), "{err}");

    let token = admin::add_project(daemon.socket(), "@o/registered", &ConnectOptions::default())
        .await
        .expect("add");
    let client = securestore_client::Client::connect_with(
        daemon.socket(),
        "@o/registered",
        with_token(&token),
    )
    .await
    .expect("registered with token");
    client
        .set_item("k", "v", SetOptions::default())
        .await
        .expect("set");
}

#[tokio::test]
async fn removing_a_project_revokes_its_token_and_deletes_its_items() {
    let daemon = Daemon::start();
    let token = admin::add_project(daemon.socket(), "@o/doomed", &ConnectOptions::default())
        .await
        .expect("add");
    let client =
        securestore_client::Client::connect_with(daemon.socket(), "@o/doomed", with_token(&token))
            .await
            .expect("connect");
    client
        .set_item("k", "secret", SetOptions::default())
        .await
        .expect("set");
    let bystander = daemon.client("@o/bystander").await;
    bystander
        .set_item("k", "kept", SetOptions::default())
        .await
        .expect("set");

    let err = admin::remove_project(daemon.socket(), "@o/doomed", &ConnectOptions::default())
        .await
        .expect_err("removing a registered project needs its token");
    assert!(
        matches!(err, Error::Service(ServiceError::Refused { .. })),
        "{err:?}"
    );
    assert!(
        admin::remove_project(daemon.socket(), "@o/doomed", &with_token(&token))
            .await
            .expect("remove")
    );
    // The connection that was already open stops being served.
    let err = client
        .get_item("k", GetOptions::default())
        .await
        .expect_err("revoked");
    assert!(
        matches!(err, Error::Service(ServiceError::Refused { .. })),
        "{err:?}"
    );

    // Registering the id again yields a new token and an empty project: no takeover of old items.
    let again = admin::add_project(daemon.socket(), "@o/doomed", &ConnectOptions::default())
        .await
        .expect("add again");
    assert_ne!(again.expose_secret(), token.expose_secret());
    let client =
        securestore_client::Client::connect_with(daemon.socket(), "@o/doomed", with_token(&again))
            .await
            .expect("connect");
    assert!(
        client
            .get_item("k", GetOptions::default())
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        securestore_client::Client::connect_with(daemon.socket(), "@o/doomed", with_token(&token))
            .await
            .is_err(),
        "the old token is dead"
    );
    assert_eq!(
        value_of(&bystander, "k", None).await.as_deref(),
        Some("kept")
    );
}

#[tokio::test]
async fn registrations_survive_a_restart() {
    let mut daemon = Daemon::start_with(&["--policy", "strict"]);
    let token = admin::add_project(daemon.socket(), "@o/p", &ConnectOptions::default())
        .await
        .expect("add");
    daemon.restart();
    assert_eq!(
        admin::list_projects(daemon.socket(), &ConnectOptions::default())
            .await
            .expect("list"),
        vec!["@o/p".to_owned()]
    );
    assert!(
        securestore_client::Client::connect_with(daemon.socket(), "@o/p", with_token(&token))
            .await
            .is_ok()
    );
    let registry =
        std::fs::read_to_string(daemon.data_dir().join("projects")).expect("registry file");
    assert!(
        !registry.contains(token.expose_secret()),
        "only a hash of the token is stored"
    );
}

#[tokio::test]
async fn a_connection_opened_before_registration_loses_access() {
    let daemon = Daemon::start();
    let early = daemon.client("@acme/wallet").await;
    early
        .set_item("k", "before", SetOptions::default())
        .await
        .expect("unregistered: open");

    let token = admin::add_project(daemon.socket(), "@acme/wallet", &ConnectOptions::default())
        .await
        .expect("add");
    let err = early
        .get_item("k", GetOptions::default())
        .await
        .expect_err("the old tokenless connection must not read a now-registered project");
    assert!(
        matches!(err, Error::Service(ServiceError::Refused { .. })),
        "{err:?}"
    );
    let err = early
        .set_item("k", "overwrite", SetOptions::default())
        .await
        .expect_err("nor write");
    assert!(
        matches!(err, Error::Service(ServiceError::Refused { .. })),
        "{err:?}"
    );

    let owner = securestore_client::Client::connect_with(
        daemon.socket(),
        "@acme/wallet",
        with_token(&token),
    )
    .await
    .expect("with its token");
    assert_eq!(value_of(&owner, "k", None).await.as_deref(), Some("before"));
}
