//! The machine a run was measured on: cores, CPU model, kernel, and the data folder's file system.

use std::fmt;
use std::path::{Path, PathBuf};

/// What the table's header states about the machine.
#[derive(Debug)]
pub struct Machine {
    /// Threads the OS lets this process run at once.
    pub cores: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu: String,
    /// `uname -r`.
    pub kernel: String,
    /// File system type and device the bench data lives on, e.g. `ext4 on /dev/vda`.
    pub filesystem: String,
}

impl Machine {
    /// Reads what it can; anything unreadable is reported as `unknown`.
    pub fn describe(data_dir: &Path) -> Self {
        Self {
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            cpu: cpu_model().unwrap_or_else(unknown),
            kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(unknown),
            filesystem: filesystem_of(data_dir).unwrap_or_else(unknown),
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cores, {}, Linux {}, data on {}",
            self.cores, self.cpu, self.kernel, self.filesystem
        )
    }
}

fn unknown() -> String {
    "unknown".to_owned()
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
}

fn cpu_model() -> Option<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    cpuinfo.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == "model name").then(|| value.trim().to_owned())
    })
}

/// The mount holding `dir`: the longest mount point in `/proc/self/mounts` that prefixes it.
fn filesystem_of(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (device, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            let point = PathBuf::from(point.replace("\\040", " "));
            dir.starts_with(&point)
                .then(|| (point.as_os_str().len(), format!("{kind} on {device}")))
        })
        .max_by_key(|(depth, _)| *depth)
        .map(|(_, described)| described)
}
