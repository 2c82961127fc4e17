//! Exclusive lock files: one daemon per socket, one daemon per data folder.
//!
//! `flock` locks belong to the open file and vanish when the process dies, so a crashed daemon never
//! leaves a stale lock behind; the file itself is left in place and reused.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rustix::fs::{FlockOperation, flock};

/// An exclusive lock held for as long as this value lives.
#[derive(Debug)]
pub struct LockFile {
    _file: File,
    path: PathBuf,
}

impl LockFile {
    /// Takes the lock at `path` (creating the file, mode 0600), without waiting.
    ///
    /// # Errors
    /// If another process holds it (naming `what` it guards), or the file cannot be opened.
    pub fn acquire(path: &Path, what: &str) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // Never through a symbolic link planted in its place.
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Self {
                _file: file,
                path: path.to_owned(),
            }),
            Err(rustix::io::Errno::WOULDBLOCK) => {
                bail!(
                    "another securestored is already using {what} (its lock {} is held)",
                    path.display()
                )
            }
            Err(err) => Err(err).with_context(|| format!("cannot lock {}", path.display())),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lock");
        let first = LockFile::acquire(&path, "this folder").expect("first");
        let err = LockFile::acquire(&path, "this folder").expect_err("second");
        assert!(
            err.to_string()
                .contains("another securestored is already using this folder"),
            "{err}"
        );
        drop(first);
        LockFile::acquire(&path, "this folder").expect("free again");
    }
}
