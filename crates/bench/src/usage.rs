//! What the daemon spends per call, read from `/proc`: context switches (how many times its threads
//! went to sleep or were preempted, summed over every thread) and CPU time (user + system).
//!
//! Latencies on a shared VM swing with how fast a sleeping thread is woken; these counts do not,
//! so they show a change in the serving path even when the times are noisy.
//!
//! The switch counts are per thread, and a thread's leave `/proc/<pid>/task` when it exits: a
//! measurement must keep the serving threads alive until its closing read (the std echo's
//! connection threads end with their connections, so the ping-pong holds them open). CPU time
//! comes from `/proc/<pid>/stat`, which keeps the time of threads that have ended.

use std::time::Duration;

use anyhow::Context as _;

/// A process's counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// Voluntary plus involuntary context switches, summed over its threads.
    pub switches: u64,
    /// User plus system CPU time.
    pub cpu: Duration,
}

/// What one operation cost the daemon, on average over a measurement window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    /// Context switches per operation.
    pub switches: f64,
    /// CPU time per operation.
    pub cpu: Duration,
}

impl Usage {
    /// Reads the counters of process `pid`.
    ///
    /// # Errors
    /// When `/proc/<pid>` cannot be read (the process is gone).
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let mut switches = 0;
        let tasks = format!("/proc/{pid}/task");
        for task in std::fs::read_dir(&tasks).with_context(|| format!("cannot list {tasks}"))? {
            let path = task?.path().join("status");
            // A thread may end between the listing and the read; it no longer counts.
            let Ok(status) = std::fs::read_to_string(&path) else {
                continue;
            };
            switches += switches_in(&status);
        }
        Ok(Self {
            switches,
            cpu: cpu_in(&format!("/proc/{pid}/stat"))?,
        })
    }

    /// Reads the counters of the calling thread alone (a baseline that runs on one thread, while
    /// the bench's other threads idle).
    ///
    /// # Errors
    /// When `/proc/thread-self` cannot be read.
    pub fn of_this_thread() -> anyhow::Result<Self> {
        let path = "/proc/thread-self/status";
        let status =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
        Ok(Self {
            switches: switches_in(&status),
            cpu: cpu_in("/proc/thread-self/stat")?,
        })
    }

    /// The cost per operation of `ops` operations done between `earlier` and `self`.
    pub fn per_op(self, earlier: Usage, ops: f64) -> Cost {
        if ops <= 0.0 {
            return Cost::default();
        }
        Cost {
            switches: self.switches.saturating_sub(earlier.switches) as f64 / ops,
            cpu: self.cpu.saturating_sub(earlier.cpu).div_f64(ops),
        }
    }
}

/// Voluntary plus involuntary context switches in a `/proc/.../status` text.
fn switches_in(status: &str) -> u64 {
    status
        .lines()
        .filter_map(|line| {
            line.strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
        })
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum()
}

/// User plus system CPU time in a `/proc/<pid>/stat` (every thread's, those ended included) or
/// `/proc/<pid>/task/<tid>/stat` (one thread's) file.
fn cpu_in(stat_path: &str) -> anyhow::Result<Duration> {
    let stat =
        std::fs::read_to_string(stat_path).with_context(|| format!("cannot read {stat_path}"))?;
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime
    // are fields 14 and 15, in clock ticks.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("malformed {stat_path}"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("malformed {stat_path}"))
    };
    let total_ticks = ticks(11)? + ticks(12)?;
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    Ok(Duration::from_nanos(
        total_ticks * 1_000_000_000 / per_second,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_thread_alone() {
        let before = Usage::of_this_thread().expect("own thread's counters");
        // Each sleep is one voluntary switch of this thread, whatever other threads do.
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let after = Usage::of_this_thread().expect("own thread's counters");
        assert!(
            after.switches >= before.switches + 20,
            "{before:?} -> {after:?}"
        );
    }

    #[test]
    fn reads_this_process_and_counts_its_work() {
        let before = Usage::of(std::process::id()).expect("own counters");
        // Burn some CPU and sleep a few times: both counters must move.
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        // 40 sleeps are 40 voluntary switches of this thread; the sum is over the process's live
        // threads, and another test's thread that ends meanwhile takes its few switches with it
        // (the echo test's do), so only half are required.
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let after = Usage::of(std::process::id()).expect("own counters");
        assert!(x != 1);
        assert!(
            after.switches >= before.switches + 20,
            "{before:?} -> {after:?}"
        );
        assert!(after.cpu > before.cpu, "{before:?} -> {after:?}");
        let cost = after.per_op(before, 5.0);
        assert!(cost.switches >= 1.0);
    }
}
