//! Store, read and delete a secret through a running `securestored`.
//!
//! ```sh
//! cargo run --release -p securestore-daemon &                          # the daemon, default paths
//! cargo run -p securestore-client --example quickstart -- @acme/wallet  # this example
//! ```
//!
//! The socket comes from `SECURESTORE_SOCKET` or the default path; the project from the first argument.

use securestore_client::{
    Client, DeleteOptions, GetOptions, KeychainAccessible, SOCKET_ENV, SetOptions,
    default_socket_path,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), securestore_client::Error> {
    let project = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "@example/quickstart".to_owned());
    let socket = std::env::var_os(SOCKET_ENV).map_or_else(default_socket_path, Into::into);

    let client = Client::connect(&socket, &project).await?;
    let options = SetOptions {
        keychain_service: Some("auth".to_owned()),
        keychain_accessible: KeychainAccessible::AfterFirstUnlock,
    };
    client.set_item("refresh_token", "r-123", options).await?;

    let read = GetOptions {
        keychain_service: Some("auth".to_owned()),
    };
    let token = client.get_item("refresh_token", read.clone()).await?;
    println!(
        "stored and read back: {}",
        token.as_ref().map_or("(none)", |t| t.expose_secret())
    );

    client
        .delete_item(
            "refresh_token",
            DeleteOptions {
                keychain_service: read.keychain_service.clone(),
            },
        )
        .await?;
    assert!(client.get_item("refresh_token", read).await?.is_none());
    println!("deleted");
    Ok(())
}
