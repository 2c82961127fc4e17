//! Binding the socket safely: a private folder, a 0600 socket, no second daemon, no stale file.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use securestore_backends::paths;
use tokio::net::UnixListener;

use crate::lock::LockFile;

/// Removes the socket file when dropped, if it is still the one this daemon bound.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
    /// Device and inode of the bound socket, so a successor's socket at the same path is left alone.
    identity: (u64, u64),
    /// `<socket>.lock`, held while the socket is ours, so two daemons starting at once cannot both
    /// take the path. Dropped after the socket is removed (fields drop after `drop` runs).
    _lock: LockFile,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let ours =
            fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours && let Err(err) = fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), %err, "cannot remove the socket");
        }
    }
}

/// Binds a listening socket at `path`.
///
/// The folder is created with mode 0700 when missing, and must be a real folder (not a symbolic
/// link) owned by this user with no access for group or others, below folders only this user or
/// root can write ([`paths::ensure_private_dir`]); the socket itself is made 0600. A socket file nobody listens on is replaced;
/// one a live daemon answers on is not.
///
/// # Errors
/// When the folder is not private, another daemon is listening, the path holds something that is not
/// a socket, or the bind fails.
pub fn bind(path: &Path) -> anyhow::Result<(UnixListener, SocketGuard)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Created 0700 when missing; an existing one (say `/tmp/securestore-<uid>`, made first by
    // someone else) must be a real folder of ours, below folders nobody else can write.
    paths::ensure_private_dir(dir).context("the socket folder is not safe")?;

    // Whoever holds this lock owns the path: probing, replacing and binding happen under it.
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = LockFile::acquire(
        Path::new(&lock_path),
        &format!("the socket {}", path.display()),
    )?;

    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => bail!(
                    "another securestored is already listening on {}",
                    path.display()
                ),
                Err(err) if err.kind() == ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "replacing a stale socket");
                    fs::remove_file(path).with_context(|| {
                        format!("cannot remove the stale socket {}", path.display())
                    })?;
                }
                Err(err) => {
                    return Err(err).with_context(|| {
                        format!("cannot probe the existing socket {}", path.display())
                    });
                }
            }
        }
        Ok(_) => bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot stat {}", path.display())),
    }

    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot bind {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    let meta =
        fs::symlink_metadata(path).with_context(|| format!("cannot stat {}", path.display()))?;
    let guard = SocketGuard {
        path: path.to_owned(),
        identity: (meta.dev(), meta.ino()),
        _lock: lock,
    };
    Ok((listener, guard))
}
