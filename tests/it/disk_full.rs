//! A full disk: a set that cannot be stored fails with "storage full", nothing stored earlier is
//! harmed, nothing half-written is ever returned, and sets succeed again once there is room.
//!
//! Needs root to mount a small tmpfs; elsewhere it prints why it is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;

use securestore_client::{Error, GetOptions, ServiceError, SetOptions};
use securestore_e2e::{Daemon, PROJECT, is_root, value_of};

/// A tmpfs of `size` mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system at `dir` with a ballast file, leaving about `leave` bytes free.
fn fill(dir: &Path, leave: u64) -> PathBuf {
    let stat = rustix::fs::statvfs(dir).expect("statvfs");
    let free = stat.f_bavail * stat.f_frsize;
    let ballast = dir.join("ballast");
    let size = free.saturating_sub(leave) as usize;
    // tmpfs allocates on write, so write real bytes.
    std::fs::write(&ballast, vec![0u8; size]).expect("write ballast");
    ballast
}

#[tokio::test]
async fn a_full_disk_refuses_writes_cleanly_and_recovers() {
    if !is_root() {
        eprintln!(
            "SKIPPED a_full_disk_refuses_writes_cleanly_and_recovers: needs root to mount a tmpfs"
        );
        return;
    }
    let Some(tmpfs) = Tmpfs::mount("4m") else {
        eprintln!(
            "SKIPPED a_full_disk_refuses_writes_cleanly_and_recovers: cannot mount a tmpfs here"
        );
        return;
    };
    let daemon = Daemon::start_with_data_dir(&tmpfs.path().join("data"));
    let client = daemon.client(PROJECT).await;
    for i in 0..10 {
        client
            .set_item(
                &format!("early-{i}"),
                format!("early value {i}"),
                SetOptions::default(),
            )
            .await
            .expect("set");
    }
    let ballast = fill(tmpfs.path(), 256 * 1024);

    let value = "x".repeat(2048);
    let mut stored = 0;
    let refusal = loop {
        match client
            .set_item(
                &format!("fill-{stored}"),
                value.as_str(),
                SetOptions::default(),
            )
            .await
        {
            Ok(()) => stored += 1,
            Err(err) => break err,
        }
        assert!(stored < 10_000, "the disk never filled");
    };
    eprintln!("disk full after {stored} sets of 2 KiB: {refusal}");
    assert!(
        matches!(refusal, Error::Service(ServiceError::StorageFull)),
        "{refusal:?}"
    );
    assert!(refusal.to_string().contains("storage full"), "{refusal}");

    // Earlier items read; the refused item is absent, not half there.
    for i in 0..10 {
        assert_eq!(
            value_of(&client, &format!("early-{i}"), None).await,
            Some(format!("early value {i}")),
            "earlier items still read"
        );
    }
    let refused = client
        .get_item(&format!("fill-{stored}"), GetOptions::default())
        .await
        .expect("get");
    assert!(refused.is_none(), "the refused set left nothing behind");
    for i in (0..stored).step_by(7) {
        assert_eq!(
            value_of(&client, &format!("fill-{i}"), None)
                .await
                .as_deref(),
            Some(value.as_str()),
            "fill-{i}"
        );
    }

    std::fs::remove_file(ballast).expect("free space");
    client
        .set_item("after", "room again", SetOptions::default())
        .await
        .expect("sets succeed once there is room");
    assert_eq!(
        value_of(&client, "after", None).await.as_deref(),
        Some("room again")
    );
}
