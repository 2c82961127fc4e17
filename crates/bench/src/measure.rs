//! Timing: latency samples taken over a fixed window after a warm-up, and the figures drawn from
//! them (p50, p99, operations per second).

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::task::JoinHandle;

/// The span in which operations count. Operations that start before `start` (the warm-up) or end
/// after `end` are run but not recorded, so every worker is measured over the same span.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// When recording begins, after the warm-up.
    pub start: Instant,
    /// When workers stop starting new operations.
    pub end: Instant,
}

impl Window {
    /// A window that opens after `warmup` from now and stays open for `length`.
    pub fn after_warmup(warmup: Duration, length: Duration) -> Self {
        let start = Instant::now() + warmup;
        Self {
            start,
            end: start + length,
        }
    }

    /// How long the window stays open.
    pub fn length(&self) -> Duration {
        self.end - self.start
    }
}

/// One worker's latencies, in nanoseconds.
#[derive(Debug)]
pub struct Recorder {
    window: Window,
    samples: Vec<u64>,
}

impl Recorder {
    /// A recorder for `window`.
    pub fn new(window: Window) -> Self {
        Self {
            window,
            samples: Vec::with_capacity(4096),
        }
    }

    /// Whether the worker should start another operation.
    pub fn running(&self) -> bool {
        Instant::now() < self.window.end
    }

    /// Records an operation that began at `began` and has just finished, if it lies in the window.
    pub fn record(&mut self, began: Instant) {
        let now = Instant::now();
        if began >= self.window.start && now <= self.window.end {
            let nanos = u64::try_from((now - began).as_nanos()).unwrap_or(u64::MAX);
            self.samples.push(nanos);
        }
    }

    /// The recorded latencies.
    pub fn into_samples(self) -> Vec<u64> {
        self.samples
    }
}

/// What one measurement found.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    /// Median latency of one operation.
    pub p50: Duration,
    /// 99th-percentile latency.
    pub p99: Duration,
    /// Completed operations per second of window, over all workers.
    pub ops_per_sec: f64,
}

impl Stats {
    /// Figures from all workers' samples, taken over `window`.
    ///
    /// # Errors
    /// When no operation completed inside the window (the window is shorter than one operation).
    pub fn from_samples(mut samples: Vec<u64>, window: Window) -> anyhow::Result<Self> {
        if samples.is_empty() {
            bail!("no operation completed in {:?}", window.length());
        }
        samples.sort_unstable();
        Ok(Self {
            p50: Duration::from_nanos(percentile(&samples, 0.50)),
            p99: Duration::from_nanos(percentile(&samples, 0.99)),
            ops_per_sec: samples.len() as f64 / window.length().as_secs_f64(),
        })
    }
}

/// Nearest-rank percentile of sorted, non-empty `samples`.
fn percentile(samples: &[u64], fraction: f64) -> u64 {
    let rank = (fraction * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Waits for every worker and merges their samples into one [`Stats`].
///
/// # Errors
/// The first worker's error, a worker that panicked, or no samples at all.
pub async fn join_workers(
    workers: Vec<JoinHandle<anyhow::Result<Vec<u64>>>>,
    window: Window,
) -> anyhow::Result<Stats> {
    let mut samples = Vec::new();
    for worker in workers {
        samples.extend(worker.await.context("a bench worker panicked")??);
    }
    Stats::from_samples(samples, window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 0.50), 50);
        assert_eq!(percentile(&samples, 0.99), 99);
        assert_eq!(percentile(&[7], 0.99), 7);
    }
}
