//! Metrics: the latency histograms the shards record, and the Prometheus
//! endpoint that exposes them with every shard's counters.
//!
//! - [`histogram`]: fixed-bucket histograms: shard-local to record, a
//!   cell of atomics to publish, snapshots to read and diff.
//! - [`exposition`]: the counters and histograms of every shard in the
//!   Prometheus text format (through `prometheus-client`).
//! - [`scrape`]: a parser of that format, for the harness and tests.
//! - [`http`]: the `metrics_listener` thread answering `GET /metrics`.
//!
//! The shards never wait for a scrape: each records into its own
//! [`Latency`] and copies it into its [`ShardHistograms`] once per tick;
//! the endpoint reads those copies (and the shards' `StatsCell`s).

pub mod exposition;
pub mod histogram;
pub mod http;
pub mod scrape;

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use self::histogram::{HistogramCell, LocalHistogram};
use crate::limits::LATENCY_RUNS;

/// One shard's published histograms: written by that shard on its tick,
/// read by the metrics endpoint. `Send + Sync`.
#[derive(Debug, Default)]
pub struct ShardHistograms {
    /// From the loop turn that read a PUBLISH to the end of the turn that
    /// wrote it to a subscriber (on whichever shard).
    pub delivery: HistogramCell,
    /// From the loop turn that read a PUBLISH to the drain that wrote it
    /// from a session's queue (the subscriber was offline, or its window
    /// or buffer full): apart, so that offline waits do not swamp
    /// `delivery`.
    pub queued_delivery: HistogramCell,
    /// From the loop turn that read a PUBLISH to its take from the mesh by
    /// another shard.
    pub hop: HistogramCell,
    /// Loop turns: from the end of the wait to the end of the turn's work.
    pub turn: HistogramCell,
}

/// What one shard measures of its own time: the current turn's start, the
/// longest turn since the last tick and, while metrics are on, the latency
/// histograms. Shard-local.
#[derive(Debug)]
pub struct Latency {
    /// Whether the histograms are recorded (a `metrics_listener` is set).
    on: bool,
    /// When the current turn's wait ended.
    turn_start: Cell<Instant>,
    /// The longest turn since [`Latency::take_max_turn`].
    max_turn: Cell<Duration>,
    delivery: LocalHistogram,
    queued_delivery: LocalHistogram,
    hop: LocalHistogram,
    turn: LocalHistogram,
    /// Read times of the messages written this turn, one run per message
    /// (however many subscribers it reached); at most [`LATENCY_RUNS`].
    written: RefCell<Vec<(Instant, u64)>>,
}

impl Latency {
    /// Histograms recorded only if `on`.
    pub fn new(on: bool) -> Latency {
        Latency {
            on,
            turn_start: Cell::new(Instant::now()),
            max_turn: Cell::new(Duration::ZERO),
            delivery: LocalHistogram::default(),
            queued_delivery: LocalHistogram::default(),
            hop: LocalHistogram::default(),
            turn: LocalHistogram::default(),
            written: RefCell::default(),
        }
    }

    /// A turn begins (its wait ended at `now`).
    pub fn turn_started(&self, now: Instant) {
        self.turn_start.set(now);
    }

    /// The read time to stamp on a message read this turn: `None` while
    /// metrics are off (nothing is recorded for it then).
    pub fn read_at(&self) -> Option<Instant> {
        self.on.then(|| self.turn_start.get())
    }

    /// A message read at `read_at` was written to a subscriber this turn.
    pub fn delivered(&self, read_at: Option<Instant>) {
        let Some(at) = read_at else { return };
        let mut written = self.written.borrow_mut();
        if let Some((last, n)) = written.last_mut() {
            if *last == at {
                *n += 1;
                return;
            }
        }
        if written.len() >= LATENCY_RUNS {
            self.record_written(&mut written, Instant::now());
        }
        written.push((at, 1));
    }

    /// A message read at `read_at` was written now from a session's queue.
    pub fn delivered_from_queue(&self, read_at: Option<Instant>) {
        if let Some(at) = read_at {
            self.queued_delivery.record(at.elapsed());
        }
    }

    /// A message read at `read_at` on another shard arrived over the mesh.
    pub fn hopped(&self, read_at: Option<Instant>) {
        if let Some(at) = read_at {
            self.hop.record(at.elapsed());
        }
    }

    /// The turn's work is done and its writes made, at `now`.
    pub fn turn_ended(&self, now: Instant) {
        let took = now.saturating_duration_since(self.turn_start.get());
        if took > self.max_turn.get() {
            self.max_turn.set(took);
        }
        if self.on {
            self.turn.record(took);
            self.record_written(&mut self.written.borrow_mut(), now);
        }
    }

    fn record_written(&self, written: &mut Vec<(Instant, u64)>, now: Instant) {
        for (at, n) in written.drain(..) {
            self.delivery.record_n(now.saturating_duration_since(at), n);
        }
    }

    /// The longest turn since the last call, which starts a new period.
    pub fn take_max_turn(&self) -> Duration {
        self.max_turn.replace(Duration::ZERO)
    }

    /// Copies the histograms into `cell` (the owning shard's, on its tick).
    pub fn publish(&self, cell: &ShardHistograms) {
        if self.on {
            cell.delivery.publish(&self.delivery);
            cell.queued_delivery.publish(&self.queued_delivery);
            cell.hop.publish(&self.hop);
            cell.turn.publish(&self.turn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_of_one_message_make_one_run_recorded_at_the_turn_end() {
        let l = Latency::new(true);
        let start = Instant::now();
        l.turn_started(start);
        let read = l.read_at();
        for _ in 0..3 {
            l.delivered(read);
        }
        assert_eq!(l.written.borrow().len(), 1);
        l.turn_ended(start + Duration::from_millis(3));
        let cell = ShardHistograms::default();
        l.publish(&cell);
        let d = cell.delivery.read();
        assert_eq!(d.count(), 3);
        assert_eq!(d.sum_ns, 9_000_000);
        assert_eq!(cell.turn.read().count(), 1);
        assert_eq!(l.take_max_turn(), Duration::from_millis(3));
        assert_eq!(l.take_max_turn(), Duration::ZERO);
    }

    #[test]
    fn off_it_stamps_nothing_and_records_nothing() {
        let l = Latency::new(false);
        assert_eq!(l.read_at(), None);
        l.delivered(None);
        l.turn_ended(Instant::now());
        let cell = ShardHistograms::default();
        l.publish(&cell);
        assert_eq!(cell.turn.read().count(), 0);
    }
}
