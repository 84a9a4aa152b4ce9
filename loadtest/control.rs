//! The control plane between the run's controller thread and its worker
//! threads: start/stop flags, per-worker progress counters and a bounded
//! error log. Shared through an `Arc`; everything here is atomic or locked
//! briefly, and workers add to their counters once per loop turn, never
//! per message. A flag change is followed by a wake-up of every worker
//! (see [`crate::fleet`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;

/// Distinct error messages kept (further ones are only counted).
pub const MAX_ERROR_SAMPLES: usize = 8;
/// Interval histograms queued for the progress line before workers drop them.
const INTERVAL_QUEUE: usize = 256;

/// One worker's running totals; padded so workers do not share cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Counters {
    /// Connections established (and subscribed).
    pub ready: AtomicU64,
    /// Connections that failed to establish.
    pub failed: AtomicU64,
    /// Messages (or connection attempts) sent.
    pub sent: AtomicU64,
    /// Messages (or CONNACKs) received.
    pub delivered: AtomicU64,
    /// Errors after establishment (lost connections, protocol errors).
    pub errors: AtomicU64,
}

/// Sum of all workers' counters at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub ready: u64,
    pub failed: u64,
    pub sent: u64,
    pub delivered: u64,
    pub errors: u64,
}

/// Start/stop flags, counters and errors of one run.
pub struct Control {
    /// Clock time publishers start at; 0 until the controller sets it.
    start_ns: AtomicU64,
    stop: AtomicBool,
    /// Indexed by worker.
    pub counters: Vec<Counters>,
    error_count: AtomicU64,
    error_samples: Mutex<Vec<String>>,
    intervals_tx: Sender<Histogram<u64>>,
    intervals_rx: Receiver<Histogram<u64>>,
}

impl Control {
    /// Control for `workers` workers.
    pub fn new(workers: usize) -> Control {
        let (intervals_tx, intervals_rx) = crossbeam_channel::bounded(INTERVAL_QUEUE);
        Control {
            start_ns: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            counters: (0..workers).map(|_| Counters::default()).collect(),
            error_count: AtomicU64::new(0),
            error_samples: Mutex::new(Vec::new()),
            intervals_tx,
            intervals_rx,
        }
    }

    /// Lets publishers start, with message schedules anchored at `at_ns`.
    pub fn start_at(&self, at_ns: u64) {
        self.start_ns.store(at_ns.max(1), Relaxed);
    }

    /// The start time, once set.
    pub fn start_ns(&self) -> Option<u64> {
        Some(self.start_ns.load(Relaxed)).filter(|&t| t != 0)
    }

    /// Tells every worker to close its connections and return.
    pub fn stop(&self) {
        self.stop.store(true, Relaxed);
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Totals over all workers.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for c in &self.counters {
            s.ready += c.ready.load(Relaxed);
            s.failed += c.failed.load(Relaxed);
            s.sent += c.sent.load(Relaxed);
            s.delivered += c.delivered.load(Relaxed);
            s.errors += c.errors.load(Relaxed);
        }
        s
    }

    /// Records an error message (kept if it is among the first distinct ones).
    pub fn error(&self, msg: String) {
        self.error_count.fetch_add(1, Relaxed);
        if let Ok(mut samples) = self.error_samples.lock() {
            if samples.len() < MAX_ERROR_SAMPLES && !samples.contains(&msg) {
                samples.push(msg);
            }
        }
    }

    /// The first distinct error messages.
    pub fn error_samples(&self) -> Vec<String> {
        self.error_samples
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Queues a worker's latency histogram of the last second for the
    /// progress line; dropped if the controller is not keeping up.
    pub fn push_interval(&self, h: Histogram<u64>) {
        let _ = self.intervals_tx.try_send(h);
    }

    /// Takes every queued interval histogram.
    pub fn drain_intervals(&self) -> impl Iterator<Item = Histogram<u64>> + '_ {
        self.intervals_rx.try_iter()
    }
}
