//! Checking the folders and files secrets live in before trusting them, as OpenSSH (`safe_path`)
//! and tmux check theirs.
//!
//! - A **private folder** (socket folder, data folder, key folder) must be a real folder, not a
//!   symbolic link, owned by this process's user, with no access for group or others (0700).
//! - Every **folder above** it must be owned by this user or root and not writable by group or
//!   others, unless sticky (as `/tmp` is: others may add names there but not replace ours). A
//!   symbolic link above is followed, and the folders it leads to are checked the same way.
//! - A **private file** is opened without following a symbolic link (`O_NOFOLLOW`) and checked on
//!   the open descriptor, so what is checked is what is read: a regular file, owned by this user,
//!   with no access for group or others (0600). Reads are bounded.
//! - A **temporary file** is created fresh (`O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600), never
//!   opened through a link or over a file someone else left there.
//!
//! Every refusal is a [`BackendError::UnsafePath`] naming the path and the problem in one line.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use rustix::fs::OFlags;
use zeroize::Zeroizing;

use crate::BackendError;

/// The sticky bit: in such a folder only a name's owner may remove or rename it.
const STICKY: u32 = 0o1000;
/// Any permission for group or others.
const ANY_ACCESS_BY_OTHERS: u32 = 0o077;

/// Android's `system` user and group (`AID_SYSTEM`), which own `/data/data` (mode 0771) above every
/// app's private folder; as trusted there as root.
#[cfg(target_os = "android")]
const ANDROID_SYSTEM: u32 = 1000;

/// Whether `id` (an owner or group) is as trusted as this user: root, and on Android the `system`
/// user.
fn trusted_id(id: u32, uid: u32) -> bool {
    #[cfg(target_os = "android")]
    if id == ANDROID_SYSTEM {
        return true;
    }
    id == uid || id == 0
}

/// Whether someone other than this user, root (or Android's `system`) may write into the folder
/// `meta` describes and replace what it holds: others with write permission, or a group that is not
/// root's with write permission — unless the folder is sticky, where only a name's owner may remove
/// or rename it. (Android gives each app a group of its own, equal to its uid, and a 0771 folder.)
fn writable_by_others(meta: &Metadata, uid: u32) -> bool {
    let mode = meta.mode();
    if mode & STICKY != 0 {
        return false;
    }
    let group_is_trusted =
        meta.gid() == 0 || (cfg!(target_os = "android") && trusted_id(meta.gid(), uid));
    mode & 0o002 != 0 || (mode & 0o020 != 0 && !group_is_trusted)
}

/// The user this process runs as (effective uid): the owner every private folder and file must have.
pub fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn refuse(path: &Path, problem: impl Into<String>) -> BackendError {
    BackendError::UnsafePath {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

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

/// `O_NOFOLLOW`, and `O_NONBLOCK` so that opening a FIFO planted in place of a file cannot hang
/// (regular files ignore it).
fn no_follow_flags() -> i32 {
    // The flag values fit in an i32 on every Unix; `custom_flags` takes the C int.
    (OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32
}

/// What `open` says when `O_NOFOLLOW` met a symbolic link.
fn is_symlink_refusal(err: &std::io::Error) -> bool {
    err.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}

fn check_ancestor(
    ancestor: &Path,
    meta: &Metadata,
    uid: u32,
    below: &Path,
) -> Result<(), BackendError> {
    let owner_ok = trusted_id(meta.uid(), uid);
    if meta.file_type().is_symlink() {
        // Its target is checked after the walk; the link itself can be replaced only by its owner or
        // by whoever may write the folder holding it, which the walk checks too.
        if !owner_ok {
            return Err(refuse(
                ancestor,
                format!(
                    "a symbolic link above {} owned by uid {}; it must belong to uid {uid} or root",
                    below.display(),
                    meta.uid()
                ),
            ));
        }
        return Ok(());
    }
    if !meta.is_dir() {
        return Err(refuse(
            ancestor,
            format!("it is above {} but is not a folder", below.display()),
        ));
    }
    if !owner_ok {
        return Err(refuse(
            ancestor,
            format!(
                "a folder above {} is owned by uid {}; it must belong to uid {uid} or root",
                below.display(),
                meta.uid()
            ),
        ));
    }
    let mode = meta.mode();
    if writable_by_others(meta, uid) {
        return Err(refuse(
            ancestor,
            format!(
                "a folder above {} is writable by group or others (mode {:04o}) and not sticky, so they could replace what it holds",
                below.display(),
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Checks every folder above `path` (not `path` itself): owned by this user or root, not writable by
/// group or others unless sticky. Folders that do not exist yet are skipped, so this can run before
/// creating them. Symbolic links on the way are allowed if this user or root owns them, and the real
/// folders they lead to are checked as well.
///
/// # Errors
/// [`BackendError::UnsafePath`] naming the first folder that fails; [`BackendError::Io`] if one
/// cannot be inspected.
pub fn check_ancestors(path: &Path) -> Result<(), BackendError> {
    let uid = current_uid();
    let absolute = std::path::absolute(path).map_err(io_error("cannot resolve", path))?;
    let mut above: Vec<&Path> = absolute.ancestors().skip(1).collect();
    above.reverse();
    let mut deepest = None;
    for ancestor in above {
        match fs::symlink_metadata(ancestor) {
            Ok(meta) => {
                check_ancestor(ancestor, &meta, uid, path)?;
                deepest = Some(ancestor);
            }
            Err(err) if err.kind() == ErrorKind::NotFound => break,
            Err(err) => return Err(io_error("cannot inspect", ancestor)(err)),
        }
    }
    // The walk above went through any symbolic link by name; check where they really lead.
    if let Some(deepest) = deepest {
        let real = fs::canonicalize(deepest).map_err(io_error("cannot resolve", deepest))?;
        for ancestor in real.ancestors() {
            let meta = fs::metadata(ancestor).map_err(io_error("cannot inspect", ancestor))?;
            check_ancestor(ancestor, &meta, uid, path)?;
        }
    }
    Ok(())
}

/// Checks that `dir` is a private folder: a real folder (not a symbolic link) owned by this user
/// with mode 0700, below folders that pass [`check_ancestors`]. For the socket's folder, where the
/// folder's mode is what keeps others from connecting.
///
/// # Errors
/// [`BackendError::UnsafePath`] naming the problem; [`BackendError::Io`] if it does not exist or
/// cannot be inspected.
pub fn check_private_dir(dir: &Path) -> Result<(), BackendError> {
    check_dir(dir, true)
}

/// Checks that `dir` is a folder of this user's: a real folder (not a symbolic link) owned by this
/// user that others cannot write to (nor a group but root's, or on Android the app's own), below
/// folders that pass [`check_ancestors`]. For
/// the data and key folders, whose files are each 0600: others seeing the file names is harmless,
/// others adding, replacing or removing them is not.
///
/// # Errors
/// As [`check_private_dir`].
pub fn check_owned_dir(dir: &Path) -> Result<(), BackendError> {
    check_dir(dir, false)
}

/// `owner_only`: no access at all for group or others (0700), else none may write.
fn check_dir(dir: &Path, owner_only: bool) -> Result<(), BackendError> {
    check_ancestors(dir)?;
    let meta = fs::symlink_metadata(dir).map_err(io_error("cannot inspect folder", dir))?;
    let uid = current_uid();
    let rule = if owner_only {
        format!("owned by uid {uid} with mode 0700")
    } else {
        format!("owned by uid {uid} and not writable by group or others (e.g. mode 0700)")
    };
    if meta.file_type().is_symlink() {
        return Err(refuse(
            dir,
            format!("it is a symbolic link; it must be a real folder {rule}"),
        ));
    }
    if !meta.is_dir() {
        return Err(refuse(dir, "it is not a folder"));
    }
    let open_to_others = if owner_only {
        meta.mode() & ANY_ACCESS_BY_OTHERS != 0
    } else {
        writable_by_others(&meta, uid)
    };
    if meta.uid() != uid || open_to_others {
        return Err(refuse(
            dir,
            format!(
                "it must be {rule}, and is owned by uid {} with mode {:04o}; use a private folder",
                meta.uid(),
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Creates `dir` (and missing folders above it) with mode 0700 when missing, then checks it with
/// [`check_private_dir`]. The folders above are checked before anything is created.
///
/// # Errors
/// As [`check_private_dir`]; [`BackendError::Io`] if it cannot be created.
pub fn ensure_private_dir(dir: &Path) -> Result<(), BackendError> {
    create_dir(dir)?;
    check_private_dir(dir)
}

/// As [`ensure_private_dir`], then checks it with [`check_owned_dir`].
///
/// # Errors
/// As [`check_owned_dir`]; [`BackendError::Io`] if it cannot be created.
pub fn ensure_owned_dir(dir: &Path) -> Result<(), BackendError> {
    create_dir(dir)?;
    check_owned_dir(dir)
}

fn create_dir(dir: &Path) -> Result<(), BackendError> {
    check_ancestors(dir)?;
    // Each new folder is synced into its parent, so it survives a power loss.
    crate::keyfile::create_private_dir(dir)
}

/// Checks an open file: a regular file owned by this user with no access for group or others.
///
/// # Errors
/// [`BackendError::UnsafePath`] naming the problem.
pub fn check_private_file(file: &File, path: &Path) -> Result<(), BackendError> {
    let meta = file.metadata().map_err(io_error("cannot inspect", path))?;
    let uid = current_uid();
    if !meta.is_file() {
        return Err(refuse(path, "it is not a regular file"));
    }
    if meta.uid() != uid {
        return Err(refuse(
            path,
            format!(
                "it is owned by uid {}; it must belong to uid {uid}, the user this runs as",
                meta.uid()
            ),
        ));
    }
    let mode = meta.mode();
    if mode & ANY_ACCESS_BY_OTHERS != 0 {
        return Err(refuse(
            path,
            format!(
                "its mode is {:04o}; it must be readable and writable by its owner only (chmod 600)",
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Opens `path` for reading without following a symbolic link, and checks it with
/// [`check_private_file`]. `Ok(None)` when there is no such file.
///
/// # Errors
/// [`BackendError::UnsafePath`] for a symbolic link or a file that fails the check;
/// [`BackendError::Io`] when it cannot be opened.
pub fn open_private_file(path: &Path) -> Result<Option<File>, BackendError> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(no_follow_flags())
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(None),
        Err(err) if is_symlink_refusal(&err) => {
            return Err(refuse(
                path,
                "it is a symbolic link; it must be a regular file",
            ));
        }
        Err(err) => return Err(io_error("cannot open", path)(err)),
    };
    check_private_file(&file, path)?;
    Ok(Some(file))
}

/// Reads the whole of the private file at `path` (see [`open_private_file`]), refusing one larger
/// than `limit` bytes without reading past it. `Ok(None)` when there is no such file.
///
/// # Errors
/// As [`open_private_file`]; [`BackendError::UnsafePath`] for a file over `limit`.
pub fn read_private_file(
    path: &Path,
    limit: u64,
) -> Result<Option<Zeroizing<Vec<u8>>>, BackendError> {
    let Some(file) = open_private_file(path)? else {
        return Ok(None);
    };
    let size = file.metadata().map_or(0, |m| m.len()).min(limit);
    // Sized up front so the buffer is not reallocated (leaving unzeroized copies) while it fills.
    let mut bytes = Zeroizing::new(Vec::with_capacity(
        usize::try_from(size).unwrap_or(0).saturating_add(1),
    ));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io_error("cannot read", path))?;
    if bytes.len() as u64 > limit {
        return Err(refuse(
            path,
            format!("it is larger than {limit} bytes, more than it can validly hold"),
        ));
    }
    Ok(Some(bytes))
}

/// Opens `path` for reading and writing, creating it with mode 0600 when missing, never through a
/// symbolic link; an existing file must pass [`check_private_file`].
///
/// # Errors
/// [`BackendError::UnsafePath`] for a symbolic link or a file that fails the check;
/// [`BackendError::Io`] when it cannot be opened or created.
pub fn open_or_create_private_file(path: &Path) -> Result<File, BackendError> {
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(no_follow_flags())
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(err) if is_symlink_refusal(&err) => {
            return Err(refuse(
                path,
                "it is a symbolic link; it must be a regular file",
            ));
        }
        Err(err) => return Err(io_error("cannot open or create", path)(err)),
    };
    check_private_file(&file, path)?;
    Ok(file)
}

/// Creates the temporary file `tmp` for writing, fresh and with mode 0600: with `O_EXCL` and
/// `O_NOFOLLOW`, so never through a symbolic link and never into a file that was already there. A
/// leftover of this user's (a crash between create and rename) is removed first; unlinking removes
/// a link itself, never its target. Anything else in its place is refused.
///
/// # Errors
/// [`BackendError::UnsafePath`] if something this user does not own is in the way;
/// [`BackendError::Io`] when it cannot be created.
pub fn create_temp_file(tmp: &Path) -> Result<File, BackendError> {
    match fs::symlink_metadata(tmp) {
        Ok(meta)
            if meta.uid() == current_uid() && (meta.is_file() || meta.file_type().is_symlink()) =>
        {
            tracing::info!(path = %tmp.display(), "removing a leftover temporary file");
            fs::remove_file(tmp).map_err(io_error("cannot remove the leftover", tmp))?;
        }
        Ok(meta) => {
            return Err(refuse(
                tmp,
                format!(
                    "a leftover owned by uid {} that is not a regular file of ours is in the way; remove it by hand",
                    meta.uid()
                ),
            ));
        }
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(io_error("cannot inspect", tmp)(err)),
    }
    create_new_private_file(tmp)
}

/// Creates `path` for writing with mode 0600, failing if anything (a file, a symbolic link) is
/// already there: `O_CREAT | O_EXCL | O_NOFOLLOW`.
///
/// # Errors
/// [`BackendError::Io`] when it cannot be created, including when the name is taken.
pub fn create_new_private_file(path: &Path) -> Result<File, BackendError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(io_error("cannot create", path))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn problem(err: BackendError) -> (std::path::PathBuf, String) {
        match err {
            BackendError::UnsafePath { path, problem } => (path, problem),
            other => panic!("expected UnsafePath, got {other:?}"),
        }
    }

    #[test]
    fn a_private_folder_is_created_0700_and_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let private = dir.path().join("a/b");
        ensure_private_dir(&private).expect("create");
        assert_eq!(fs::metadata(&private).expect("stat").mode() & 0o777, 0o700);
        ensure_private_dir(&private).expect("again");
        check_private_dir(&private).expect("check");
    }

    #[test]
    fn open_or_symlinked_private_folders_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = dir.path().join("open");
        fs::create_dir(&open).expect("mkdir");
        chmod(&open, 0o755);
        let (path, why) = problem(check_private_dir(&open).expect_err("0755"));
        assert_eq!(path, open);
        assert!(why.contains("mode 0700") && why.contains("0755"), "{why}");

        ensure_owned_dir(&open).expect("others may read a data folder");
        chmod(&open, 0o757);
        let (_, why) = problem(check_owned_dir(&open).expect_err("others may write"));
        assert!(why.contains("not writable by group or others"), "{why}");

        let real = dir.path().join("real");
        ensure_private_dir(&real).expect("real");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        let (path, why) = problem(ensure_private_dir(&link).expect_err("symlink"));
        assert_eq!(path, link);
        assert!(why.contains("symbolic link"), "{why}");
    }

    #[test]
    fn an_ancestor_others_may_write_is_refused_unless_sticky() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).expect("mkdir");
        chmod(&shared, 0o777);
        let private = shared.join("mine");
        let (path, why) = problem(ensure_private_dir(&private).expect_err("0777 parent"));
        assert_eq!(path, shared);
        assert!(why.contains("writable by group or others"), "{why}");
        assert!(
            !private.exists(),
            "nothing is created below an unsafe folder"
        );

        chmod(&shared, 0o1777);
        ensure_private_dir(&private).expect("a sticky folder is fine, as /tmp is");

        // Group-writable: refused unless the group is root's.
        chmod(&shared, 0o770);
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&shared, None, Some(65534)).expect("chgrp");
        }
        if fs::metadata(&shared).expect("stat").gid() != 0 {
            let (path, _) = problem(check_private_dir(&private).expect_err("group-writable"));
            assert_eq!(path, shared);
        }
    }

    #[test]
    fn a_symlink_above_is_followed_and_its_target_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        fs::create_dir(&target).expect("mkdir");
        let link = dir.path().join("via");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let private = link.join("mine");
        ensure_private_dir(&private).expect("a safe target is fine");
        chmod(&target, 0o777);
        let (path, why) = problem(check_private_dir(&private).expect_err("unsafe target"));
        assert!(path.ends_with("target"), "{}", path.display());
        assert!(why.contains("writable"), "{why}");
    }

    #[test]
    fn private_files_are_checked_on_the_open_descriptor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("f");
        assert!(read_private_file(&file, 10).expect("missing").is_none());
        fs::write(&file, b"hello").expect("write");
        chmod(&file, 0o644);
        let (_, why) = problem(read_private_file(&file, 10).expect_err("0644"));
        assert!(why.contains("chmod 600"), "{why}");
        chmod(&file, 0o600);
        assert_eq!(
            read_private_file(&file, 10)
                .expect("read")
                .map(|bytes| bytes.to_vec()),
            Some(b"hello".to_vec())
        );
        let (_, why) = problem(read_private_file(&file, 4).expect_err("over the limit"));
        assert!(why.contains("larger than 4 bytes"), "{why}");

        let link = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &link).expect("symlink");
        let (_, why) = problem(read_private_file(&link, 1 << 30).expect_err("symlink"));
        assert!(why.contains("symbolic link"), "{why}");
        let (_, why) = problem(open_or_create_private_file(&link).expect_err("symlink"));
        assert!(why.contains("symbolic link"), "{why}");

        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        let (_, why) = problem(read_private_file(&fifo, 10).expect_err("a fifo"));
        assert!(why.contains("not a regular file"), "{why}");
    }

    #[test]
    fn temp_files_never_follow_a_planted_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        fs::write(&victim, b"untouched").expect("write");
        let tmp = dir.path().join("x.tmp");
        std::os::unix::fs::symlink(&victim, &tmp).expect("symlink");
        let mut file = create_temp_file(&tmp).expect("a link of our own is removed first");
        std::io::Write::write_all(&mut file, b"new").expect("write");
        assert_eq!(fs::read(&victim).expect("read"), b"untouched");
        assert!(fs::symlink_metadata(&tmp).expect("stat").is_file());
        assert_eq!(fs::metadata(&tmp).expect("stat").mode() & 0o777, 0o600);

        fs::remove_file(&tmp).expect("rm");
        fs::create_dir(&tmp).expect("a folder in the way");
        let (path, _) = problem(create_temp_file(&tmp).expect_err("not ours to remove"));
        assert_eq!(path, tmp);
    }
}
