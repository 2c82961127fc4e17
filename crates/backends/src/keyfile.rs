//! The master key file: 32 random bytes in a 0600 file of the daemon's user, created once, replaced
//! never.

use std::fs::{self, DirBuilder, File};
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::BackendError;
use crate::crypto::KEY_LEN;
use crate::paths;

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> BackendError + 'a {
    move |source| BackendError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The folder holding `path` (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates `dir` and its missing parents with mode 0700, durably: each folder that gains an entry
/// is synced, so a new folder (and what is later put in it) survives a power loss.
///
/// # Errors
/// [`BackendError::Io`] (or [`BackendError::StorageFull`]) naming the folder.
pub fn create_private_dir(dir: &Path) -> Result<(), BackendError> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .collect();
    for new in missing.into_iter().rev() {
        match DirBuilder::new().mode(0o700).create(new) {
            Ok(()) => {}
            // Made meanwhile by someone else: theirs to sync, and a folder all the same.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(BackendError::io("cannot create folder", new, e)),
        }
        sync_dir(
            new.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        )?;
    }
    Ok(())
}

/// Syncs folder `dir`, so the entries created or renamed in it are durable.
///
/// # Errors
/// [`BackendError::Io`] naming the folder.
pub fn sync_dir(dir: &Path) -> Result<(), BackendError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackendError::io("cannot sync folder", dir, e))
}

/// Reads the key at `path`, or, when `may_create` and there is no file, makes and stores a new one.
///
/// The key's folder must be this user's and not writable by others, and the key file a regular file
/// of this user's that nobody else may read ([`crate::paths`]); it is opened without following a
/// symbolic link.
///
/// # Errors
/// [`BackendError::BadKeyFile`] for a file of the wrong size; [`BackendError::UnsafePath`] for a key
/// file or folder that is a symbolic link, someone else's, or open to others; [`BackendError::Io`]
/// when the file cannot be read or written. A missing file when `!may_create` comes back as
/// `Ok(None)` so the caller can name the database that needs it.
pub(crate) fn load_or_create(
    path: &Path,
    may_create: bool,
) -> Result<Option<Zeroizing<[u8; KEY_LEN]>>, BackendError> {
    let dir = folder_of(path);
    if may_create {
        paths::ensure_owned_dir(dir)?;
    } else if fs::symlink_metadata(dir).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
        return Ok(None);
    } else {
        paths::check_owned_dir(dir)?;
    }
    match paths::open_private_file(path)? {
        Some(file) => read_key(path, file).map(Some),
        None if may_create => create(path).map(Some),
        None => Ok(None),
    }
}

/// Reads a key from `file`, already checked by [`paths::open_private_file`].
fn read_key(path: &Path, mut file: File) -> Result<Zeroizing<[u8; KEY_LEN]>, BackendError> {
    let bad = |reason: String| BackendError::BadKeyFile {
        path: path.to_owned(),
        reason,
    };
    let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
    // Read one byte more than a key so a longer file is noticed without reading all of it.
    (&mut file)
        .take(KEY_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error("cannot read master key file", path))?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() != KEY_LEN {
        return Err(bad(format!(
            "it holds {} bytes; a key is exactly {KEY_LEN}",
            bytes.len()
        )));
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// Writes a new key beside `path`, syncs it, then links it into place without replacing anything, so
/// a crash leaves either no key file or a whole one, and of two processes creating a key at once the
/// second adopts the first's key instead of overwriting it.
fn create(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>, BackendError> {
    let dir = folder_of(path);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(key.as_mut_slice())
        .map_err(|e| BackendError::Crypto(format!("no randomness: {e}")))?;

    let tmp: PathBuf = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = paths::create_temp_file(&tmp)?;
    let mut write = || -> std::io::Result<()> {
        file.write_all(key.as_slice())?;
        file.sync_all()?;
        // `link` fails if `path` exists, where `rename` would replace it.
        let linked = fs::hard_link(&tmp, path);
        fs::remove_file(&tmp)?;
        linked?;
        File::open(dir)?.sync_all()
    };
    match write() {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created a new master key");
            Ok(key)
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            let file = paths::open_private_file(path)?
                .ok_or_else(|| io_error("cannot open master key file", path)(err))?;
            read_key(path, file)
        }
        Err(err) => {
            let _ = fs::remove_file(&tmp);
            Err(io_error("cannot write master key file", path)(err))
        }
    }
}

/// The file a rotation writes the new master key to before it takes the place of `path`.
pub(crate) fn next_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".next");
    path.with_file_name(name)
}

/// Writes `key` to [`next_path`], durably, replacing a stale one a crashed rotation left.
pub(crate) fn write_next(path: &Path, key: &Zeroizing<[u8; KEY_LEN]>) -> Result<(), BackendError> {
    let next = next_path(path);
    discard_next(path)?;
    let mut file = paths::create_temp_file(&next)?;
    file.write_all(key.as_slice())
        .and_then(|()| file.sync_all())
        .map_err(|e| BackendError::io("cannot write the new master key", &next, e))?;
    sync_dir(folder_of(path))
}

/// The key at [`next_path`], if a rotation left one (checked as the key file is).
pub(crate) fn load_next(path: &Path) -> Result<Option<Zeroizing<[u8; KEY_LEN]>>, BackendError> {
    let next = next_path(path);
    match paths::open_private_file(&next)? {
        Some(file) => read_key(&next, file).map(Some),
        None => Ok(None),
    }
}

/// Removes a [`next_path`] file, if any, durably.
pub(crate) fn discard_next(path: &Path) -> Result<(), BackendError> {
    let next = next_path(path);
    match fs::remove_file(&next) {
        Ok(()) => sync_dir(folder_of(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BackendError::io("cannot remove", &next, e)),
    }
}

/// Makes the [`next_path`] key the master key: overwrites the old key file's bytes with zeros
/// (synced), then renames the new one over it and syncs the folder. Called only once the database
/// no longer needs the old key; a crash at any point leaves the new key in one of the two files.
pub(crate) fn promote_next(path: &Path) -> Result<(), BackendError> {
    use std::os::unix::fs::OpenOptionsExt;
    let next = next_path(path);
    let old = fs::OpenOptions::new()
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path);
    if let Ok(mut old) = old {
        let wiped = old.write_all(&[0u8; KEY_LEN]).and_then(|()| old.sync_all());
        if let Err(err) = wiped {
            tracing::warn!(%err, "could not overwrite the old master key before replacing it");
        }
    }
    fs::rename(&next, path)
        .map_err(|e| BackendError::io("cannot install the new master key", path, e))?;
    sync_dir(folder_of(path))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_once_then_reads_the_same_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/master.key");
        assert!(load_or_create(&path, false).expect("load").is_none());
        let first = load_or_create(&path, true).expect("create").expect("key");
        let again = load_or_create(&path, true).expect("read").expect("key");
        assert_eq!(*first, *again);
        let meta = fs::metadata(&path).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let dir_mode = fs::metadata(path.parent().expect("parent"))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    #[test]
    fn a_key_created_meanwhile_is_adopted_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        let theirs = load_or_create(&path, true).expect("first").expect("key");
        // As if another process made the key between our NotFound and our link.
        let ours = create(&path).expect("second");
        assert_eq!(*ours, *theirs, "the existing key is kept and adopted");
        assert_eq!(
            fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "no temporary file is left"
        );
    }

    #[test]
    fn refuses_a_short_or_readable_key_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        fs::write(&path, [1u8; 31]).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(
            load_or_create(&path, true),
            Err(BackendError::BadKeyFile { .. })
        ));
        fs::write(&path, [1u8; 32]).expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_or_create(&path, true).expect_err("must refuse");
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn refuses_a_symlinked_or_foreign_key_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.key");
        let path = dir.path().join("master.key");
        load_or_create(&real, true).expect("create");
        std::os::unix::fs::symlink(&real, &path).expect("symlink");
        let err = load_or_create(&path, true).expect_err("a link");
        assert!(
            matches!(&err, BackendError::UnsafePath { problem, .. } if problem.contains("symbolic link")),
            "{err}"
        );
        fs::remove_file(&path).expect("rm");
        if rustix::process::geteuid().is_root() {
            fs::copy(&real, &path).expect("copy");
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).expect("chown");
            let err = load_or_create(&path, true).expect_err("someone else's");
            assert!(err.to_string().contains("owned by uid 65534"), "{err}");
        }
    }
}
