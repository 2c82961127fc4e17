//! Process hardening, as ssh-agent does: no core dumps, no ptrace attach by same-uid processes.

use anyhow::Context as _;
#[cfg(any(target_os = "linux", target_os = "android"))]
use rustix::process::{DumpableBehavior, set_dumpable_behavior};
use rustix::process::{Resource, Rlimit, setrlimit};

/// Sets `RLIMIT_CORE` to 0 and marks the process not dumpable (`PR_SET_DUMPABLE = 0`), so a crash
/// writes no core file holding secrets and other processes of the same uid cannot attach a debugger
/// or read this process's memory through `/proc`.
///
/// `securestored` calls this first thing; an app embedding the daemon should call it in the host
/// process if that suits the app (it applies to the whole process).
///
/// `PR_SET_DUMPABLE` exists only on Linux and Android; elsewhere (an iOS app hosting the daemon) only
/// core dumps are turned off.
///
/// # Errors
/// If the kernel refuses either setting.
pub fn harden_process() -> anyhow::Result<()> {
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .context("cannot disable core dumps (RLIMIT_CORE)")?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .context("cannot disable ptrace attach (PR_SET_DUMPABLE)")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disables_core_dumps_and_ptrace() {
        harden_process().expect("harden");
        let core = rustix::process::getrlimit(Resource::Core);
        assert_eq!((core.current, core.maximum), (Some(0), Some(0)));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(
            rustix::process::dumpable_behavior().expect("read"),
            DumpableBehavior::NotDumpable
        );
    }
}
