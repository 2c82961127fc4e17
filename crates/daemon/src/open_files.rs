//! The open-file limit must cover `--max-connections`, or `accept` fails with EMFILE under load and
//! the accept loop can only back off and retry.

use anyhow::bail;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Files the daemon keeps open besides its connections: the socket, lock files, SQLite's database,
/// WAL and shared-memory files, the key file, the runtime's own descriptors, a JVM's jars, with room.
pub const RESERVED_FILES: u64 = 128;

/// Makes sure the process may open `max_connections` sockets plus [`RESERVED_FILES`], raising the
/// soft `RLIMIT_NOFILE` up to the hard limit if it must. Returns the soft limit in force.
///
/// # Errors
/// If the hard limit is too low, naming both numbers and the ways out; or if raising the soft limit
/// fails.
pub fn ensure_open_file_limit(max_connections: usize) -> anyhow::Result<u64> {
    let needed = max_connections as u64 + RESERVED_FILES;
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= needed {
        return Ok(soft);
    }
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if hard < needed {
        bail!(
            "--max-connections {max_connections} needs about {needed} open files, but the open-file \
             limit (RLIMIT_NOFILE) is {soft} and cannot be raised past {hard}; lower \
             --max-connections to at most {} or raise the hard limit (ulimit -Hn, LimitNOFILE=)",
            hard.saturating_sub(RESERVED_FILES)
        );
    }
    // An unlimited hard limit: ask for what is needed (the kernel caps files at fs.nr_open anyway).
    let raised = limit.maximum.unwrap_or(needed);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(raised),
            maximum: limit.maximum,
        },
    )
    .map_err(|err| {
        anyhow::anyhow!("cannot raise the open-file limit from {soft} to {raised}: {err}")
    })?;
    tracing::info!(
        from = soft,
        to = raised,
        "raised the open-file limit to cover --max-connections"
    );
    Ok(raised)
}
