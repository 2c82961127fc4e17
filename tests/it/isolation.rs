//! Projects never see each other; services are namespaces inside a project.

use securestore_client::{DeleteOptions, SetOptions};
use securestore_e2e::{Daemon, PROJECT, value_of};

#[tokio::test]
async fn two_projects_with_the_same_key_never_meet() {
    let daemon = Daemon::start();
    let a = daemon.client("@owner/app-a").await;
    let b = daemon.client("@owner/app-b").await;

    a.set_item("token", "a's secret", SetOptions::default())
        .await
        .expect("set");
    assert_eq!(
        value_of(&b, "token", None).await,
        None,
        "b cannot read a's item"
    );

    b.set_item("token", "b's secret", SetOptions::default())
        .await
        .expect("set");
    assert_eq!(
        value_of(&a, "token", None).await.as_deref(),
        Some("a's secret"),
        "b's write stays in b"
    );
    assert_eq!(
        value_of(&b, "token", None).await.as_deref(),
        Some("b's secret")
    );

    b.delete_item("token", DeleteOptions::default())
        .await
        .expect("delete");
    assert_eq!(
        value_of(&a, "token", None).await.as_deref(),
        Some("a's secret"),
        "b's delete stays in b"
    );
    assert_eq!(value_of(&b, "token", None).await, None);
}

#[tokio::test]
async fn a_project_id_that_prefixes_another_is_still_apart() {
    // Guards against any key-concatenation scheme: "@o/a" + "pp" must not meet "@o/app".
    let daemon = Daemon::start();
    let short = daemon.client("@o/a").await;
    let long = daemon.client("@o/app").await;
    short
        .set_item("pp", "short", SetOptions::default())
        .await
        .expect("set");
    let service = SetOptions {
        keychain_service: Some("pp".to_owned()),
        ..SetOptions::default()
    };
    long.set_item("x", "long", service).await.expect("set");
    assert_eq!(value_of(&long, "pp", None).await, None);
    assert_eq!(value_of(&short, "x", Some("pp")).await, None);
}

#[tokio::test]
async fn services_are_namespaces() {
    let daemon = Daemon::start();
    let client = daemon.client(PROJECT).await;
    let in_auth = SetOptions {
        keychain_service: Some("auth".to_owned()),
        ..SetOptions::default()
    };
    client
        .set_item("token", "auth's", in_auth)
        .await
        .expect("set");
    assert_eq!(
        value_of(&client, "token", None).await,
        None,
        "not found without its service"
    );
    assert_eq!(
        value_of(&client, "token", Some("app")).await,
        None,
        "nor under the default service"
    );
    assert_eq!(
        value_of(&client, "token", Some("auth")).await.as_deref(),
        Some("auth's")
    );

    client
        .set_item("token", "default's", SetOptions::default())
        .await
        .expect("set");
    assert_eq!(
        value_of(&client, "token", Some("app")).await.as_deref(),
        Some("default's"),
        "default is 'app'"
    );
    client
        .delete_item(
            "token",
            DeleteOptions {
                keychain_service: Some("auth".to_owned()),
            },
        )
        .await
        .expect("delete");
    assert_eq!(value_of(&client, "token", Some("auth")).await, None);
    assert_eq!(
        value_of(&client, "token", None).await.as_deref(),
        Some("default's")
    );
}
