//! Where the daemon listens by default, shared by the daemon and its clients.

use std::path::PathBuf;

/// Environment variable that overrides the socket path for both the daemon and the clients.
pub const SOCKET_ENV: &str = "SECURESTORE_SOCKET";

/// The default socket: `$XDG_RUNTIME_DIR/securestore/securestored.sock`, or, where that variable is
/// unset, `/tmp/securestore-<uid>/securestored.sock`.
///
/// The daemon creates the folder with mode 0700 and refuses to use one that others can enter.
pub fn default_socket_path() -> PathBuf {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(runtime) if !runtime.is_empty() => PathBuf::from(runtime).join("securestore"),
        _ => std::env::temp_dir().join(format!(
            "securestore-{}",
            rustix::process::getuid().as_raw()
        )),
    };
    dir.join("securestored.sock")
}
