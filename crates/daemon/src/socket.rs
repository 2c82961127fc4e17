//! Binding the socket safely: a private folder, a 0600 socket, no second daemon, no stale file; and
//! adopting one systemd bound (socket activation) only after the same checks.

use std::fs;
use std::io::ErrorKind;
use std::os::fd::OwnedFd;
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
    /// `None` for a socket systemd bound ([`adopt`]): it stays for the next activation.
    identity: Option<(u64, u64)>,
    /// `<socket>.lock`, held while the socket is ours, so two daemons starting at once cannot both
    /// take the path. Dropped after the socket is removed (fields drop after `drop` runs).
    _lock: LockFile,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let Some(identity) = self.identity else {
            return;
        };
        let ours = fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == identity);
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
        identity: Some((meta.dev(), meta.ino())),
        _lock: lock,
    };
    Ok((listener, guard))
}

/// Takes over a listening socket the service manager passed (systemd socket activation,
/// `sd_listen_fds(3)`), after the checks [`bind`] makes on a socket it creates.
///
/// `fd` must be a Unix stream socket that is already listening, bound to an absolute path (not
/// abstract, not unnamed). That path's folder must pass [`paths::check_private_dir`] (it is not
/// created here: systemd creates it, with `DirectoryMode=0700`), and the socket file must be a socket
/// owned by this user with no access for group or others (`SocketMode=0600`). When `expected` is
/// given (`--socket`, `SECURESTORE_SOCKET`), the socket must be bound there. `<socket>.lock` is held
/// as for [`bind`], so no daemon started by hand can take the same path meanwhile. The returned guard
/// leaves the socket file in place: it belongs to systemd, which keeps listening on it after this
/// daemon stops and starts the daemon again on the next connection.
///
/// # Errors
/// When `fd` is not a listening Unix stream socket, has no path, is bound elsewhere than
/// `expected`, or its folder or file fails a check; each error names what to change.
pub fn adopt(fd: OwnedFd, expected: Option<&Path>) -> anyhow::Result<(UnixListener, SocketGuard)> {
    check_listening_unix_stream(&fd)?;
    let listener = std::os::unix::net::UnixListener::from(fd);
    let address = listener
        .local_addr()
        .context("cannot read the passed socket's address")?;
    let path = match address.as_pathname() {
        Some(path) if path.is_absolute() => path.to_owned(),
        Some(path) => bail!(
            "the socket systemd passed is bound to the relative path {}; bind it to an absolute path",
            path.display()
        ),
        // An abstract or unnamed socket has no file whose permissions keep other users out.
        None => bail!("the socket systemd passed has no path (abstract or unnamed); use a path"),
    };
    if let Some(expected) = expected
        && expected != path
    {
        bail!(
            "systemd passed a socket bound to {}, but the socket to serve is {} (--socket or {}); make them agree",
            path.display(),
            expected.display(),
            securestore_proto::paths::SOCKET_ENV
        );
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    paths::check_private_dir(dir).context("the socket folder is not safe (DirectoryMode=0700)")?;

    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = LockFile::acquire(
        Path::new(&lock_path),
        &format!("the socket {}", path.display()),
    )?;

    let meta =
        fs::symlink_metadata(&path).with_context(|| format!("cannot stat {}", path.display()))?;
    if !meta.file_type().is_socket() {
        bail!(
            "{} is not a socket, yet systemd passed a socket bound there",
            path.display()
        );
    }
    let uid = paths::current_uid();
    if meta.uid() != uid {
        bail!(
            "the socket {} is owned by uid {}; it must belong to uid {uid}",
            path.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        bail!(
            "the socket {} is open to group or others (mode {:04o}); set SocketMode=0600",
            path.display(),
            meta.mode() & 0o7777
        );
    }

    listener
        .set_nonblocking(true)
        .context("cannot make the passed socket non-blocking")?;
    let listener = UnixListener::from_std(listener).context("cannot register the passed socket")?;
    let guard = SocketGuard {
        path,
        identity: None,
        _lock: lock,
    };
    Ok((listener, guard))
}

/// Whether `fd` is a Unix stream socket that listens (what `ListenStream=<path>` passes).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn check_listening_unix_stream(fd: &OwnedFd) -> anyhow::Result<()> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let stat = rustix::fs::fstat(fd).context("cannot inspect the socket systemd passed")?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::Socket {
        bail!("the file descriptor systemd passed is not a socket");
    }
    if sockopt::socket_domain(fd).context("cannot read the passed socket's family")?
        != AddressFamily::UNIX
    {
        bail!("the socket systemd passed is not a Unix socket; use ListenStream=<path>");
    }
    if sockopt::socket_type(fd).context("cannot read the passed socket's type")?
        != SocketType::STREAM
    {
        bail!("the socket systemd passed is not a stream socket; use ListenStream=<path>");
    }
    if !sockopt::socket_acceptconn(fd).context("cannot ask whether the passed socket listens")? {
        bail!("the socket systemd passed is not listening (is Accept=yes set? it must not be)");
    }
    Ok(())
}

/// Socket activation is systemd's, so Linux's; elsewhere `SO_DOMAIN` and `SO_ACCEPTCONN` may not
/// exist (Apple), and a passed descriptor cannot be checked.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn check_listening_unix_stream(_fd: &OwnedFd) -> anyhow::Result<()> {
    bail!("socket activation (LISTEN_FDS) is supported on Linux only")
}

impl SocketGuard {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::fs::File;

    /// A listening socket at `<dir>/s.sock` with `mode`, as systemd would pass it, in a 0700 folder.
    fn passed(dir: &Path, mode: u32) -> (PathBuf, OwnedFd) {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).expect("chmod folder");
        let path = dir.join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
        (path, OwnedFd::from(listener))
    }

    #[tokio::test]
    async fn a_private_listening_socket_is_adopted_and_left_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, fd) = passed(dir.path(), 0o600);
        let (listener, guard) = adopt(fd, Some(&path)).expect("adopted");
        assert_eq!(guard.path(), path);
        let client = tokio::net::UnixStream::connect(&path);
        let (accepted, client) = tokio::join!(listener.accept(), client);
        accepted.expect("accept");
        client.expect("connect");
        drop(guard);
        assert!(path.exists(), "the socket belongs to systemd and stays");
    }

    #[tokio::test]
    async fn each_check_refuses_with_its_own_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, fd) = passed(dir.path(), 0o666);
        let err = adopt(fd, None).expect_err("open to others");
        assert!(
            format!("{err:#}").contains("set SocketMode=0600"),
            "{err:#}"
        );
        fs::remove_file(&path).expect("remove");

        let (_, fd) = passed(dir.path(), 0o600);
        let err = adopt(fd, Some(&dir.path().join("other.sock"))).expect_err("elsewhere");
        assert!(format!("{err:#}").contains("make them agree"), "{err:#}");

        let (stream, _peer) = std::os::unix::net::UnixStream::pair().expect("pair");
        let err = adopt(OwnedFd::from(stream), None).expect_err("not listening");
        assert!(format!("{err:#}").contains("is not listening"), "{err:#}");

        let datagram = std::os::unix::net::UnixDatagram::unbound().expect("datagram");
        let err = adopt(OwnedFd::from(datagram), None).expect_err("datagram");
        assert!(
            format!("{err:#}").contains("not a stream socket"),
            "{err:#}"
        );

        let file = File::open(dir.path()).expect("open the folder");
        let err = adopt(OwnedFd::from(file), None).expect_err("a folder");
        assert!(format!("{err:#}").contains("is not a socket"), "{err:#}");
    }
}
