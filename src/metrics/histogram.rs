//! Latency histograms with fixed buckets (a 1-2-5 series from 1 µs to
//! 10 s, and one above): cheap to record on a shard's hot path (a search
//! of 22 bounds and two `Cell` adds, no allocation, no syscall), cheap to
//! publish (23 relaxed stores), and the buckets Prometheus exposes as they
//! are.
//!
//! [`LocalHistogram`] is shard-local; its owner copies it into its
//! [`HistogramCell`] once per tick; readers (the metrics endpoint) take
//! [`HistogramSnapshot`]s from the cell. [`HistogramSnapshot`] also serves
//! the harness, which diffs two scrapes and reads percentiles from them.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in nanoseconds (inclusive, as Prometheus's
/// `le`). A value above the last one falls in the overflow bucket.
pub const BOUNDS_NS: [u64; 22] = [
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    200_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Buckets: one per bound and the overflow one.
pub const BUCKETS: usize = BOUNDS_NS.len() + 1;

const _: () = {
    let mut i = 1;
    while i < BOUNDS_NS.len() {
        assert!(BOUNDS_NS[i - 1] < BOUNDS_NS[i], "bounds must increase");
        i += 1;
    }
};

/// The bucket a value of `ns` nanoseconds falls in.
fn bucket(ns: u64) -> usize {
    BOUNDS_NS.partition_point(|&bound| bound < ns)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A histogram one shard records into. Shard-local (`Cell`s).
#[derive(Debug, Default)]
pub struct LocalHistogram {
    counts: [Cell<u64>; BUCKETS],
    sum_ns: Cell<u64>,
}

impl LocalHistogram {
    /// Records `n` values of `d` each.
    pub fn record_n(&self, d: Duration, n: u64) {
        let ns = nanos(d);
        let slot = &self.counts[bucket(ns)];
        slot.set(slot.get() + n);
        self.sum_ns
            .set(self.sum_ns.get().saturating_add(ns.saturating_mul(n)));
    }

    /// Records one value.
    pub fn record(&self, d: Duration) {
        self.record_n(d, 1);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].get()),
            sum_ns: self.sum_ns.get(),
        }
    }
}

/// A shard's published copy of one [`LocalHistogram`]: written by that
/// shard on its tick only, read by the metrics endpoint. `Send + Sync`.
#[derive(Debug, Default)]
pub struct HistogramCell {
    counts: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl HistogramCell {
    /// Publishes the owner's histogram (called by the owning shard only).
    pub fn publish(&self, h: &LocalHistogram) {
        let s = h.snapshot();
        for (slot, value) in self.counts.iter().zip(s.counts) {
            slot.store(value, Ordering::Relaxed);
        }
        self.sum_ns.store(s.sum_ns, Ordering::Relaxed);
    }

    /// The last published histogram.
    pub fn read(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// Counts per bucket (not cumulative) and the sum of the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramSnapshot {
    pub counts: [u64; BUCKETS],
    pub sum_ns: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        HistogramSnapshot {
            counts: [0; BUCKETS],
            sum_ns: 0,
        }
    }
}

impl HistogramSnapshot {
    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Both histograms' values together (shards summed).
    pub fn merged(&self, o: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.counts[i] + o.counts[i]),
            sum_ns: self.sum_ns + o.sum_ns,
        }
    }

    /// What was recorded since `earlier` (a snapshot of the same
    /// histogram taken before): the values of a run.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].saturating_sub(earlier.counts[i])),
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
        }
    }

    /// The `q` quantile (0..=1), linearly interpolated within its bucket;
    /// the last bound for values in the overflow bucket. `None` if empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut below = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            if n == 0 || ((below + n) as f64) < rank {
                below += n;
                continue;
            }
            let Some(&hi) = BOUNDS_NS.get(i) else {
                break;
            };
            let lo = if i == 0 { 0 } else { BOUNDS_NS[i - 1] };
            let within = (rank - below as f64) / n as f64;
            return Some(Duration::from_nanos(
                lo + ((hi - lo) as f64 * within) as u64,
            ));
        }
        BOUNDS_NS.last().map(|&ns| Duration::from_nanos(ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_in_the_bucket_whose_bound_is_the_first_at_or_above_them() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1_000), 0);
        assert_eq!(bucket(1_001), 1);
        assert_eq!(bucket(10_000_000_000), BUCKETS - 2);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn a_published_histogram_reads_back_and_diffs() {
        let h = LocalHistogram::default();
        h.record(Duration::from_micros(3));
        h.record_n(Duration::from_millis(3), 9);
        let cell = HistogramCell::default();
        cell.publish(&h);
        let before = cell.read();
        assert_eq!(before.count(), 10);
        assert_eq!(before.sum_ns, 3_000 + 27_000_000);
        h.record(Duration::from_secs(60));
        cell.publish(&h);
        let run = cell.read().since(&before);
        assert_eq!(run.count(), 1);
        assert_eq!(run.counts[BUCKETS - 1], 1);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let h = LocalHistogram::default();
        h.record_n(Duration::from_micros(150), 100);
        let cell = HistogramCell::default();
        cell.publish(&h);
        let s = cell.read();
        let p50 = s.quantile(0.5).expect("values");
        assert_eq!(p50, Duration::from_micros(150));
        assert_eq!(s.quantile(1.0), Some(Duration::from_micros(200)));
        assert_eq!(HistogramSnapshot::default().quantile(0.5), None);
    }
}
