//! The live progress line on stderr: once per second, only on a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::control::{Control, Snapshot};
use crate::stats::new_histogram;

/// Prints `[  3s] phase  conns 6  sent 1000/s  delivered 5000/s  p99 1s 0.4ms / so far 0.5ms  errors 0`.
pub struct Progress {
    enabled: bool,
    started: Instant,
    last: Instant,
    last_snap: Snapshot,
    /// Latencies of the current second, merged from the workers.
    second: Histogram<u64>,
    /// Latencies since the start (warm-up included).
    so_far: Histogram<u64>,
}

impl Progress {
    /// A progress line, enabled only when stderr is a terminal.
    pub fn new() -> Progress {
        let now = Instant::now();
        Progress {
            enabled: std::io::stderr().is_terminal(),
            started: now,
            last: now,
            last_snap: Snapshot::default(),
            second: new_histogram(),
            so_far: new_histogram(),
        }
    }

    /// No line at all (child processes, whose stderr is the parent's).
    pub fn quiet() -> Progress {
        Progress {
            enabled: false,
            ..Progress::new()
        }
    }

    /// Prints the line if a second has passed since the last one.
    pub fn tick(&mut self, control: &Control, phase: &str) {
        for h in control.drain_intervals() {
            let _ = self.second.add(&h);
            let _ = self.so_far.add(&h);
        }
        let elapsed = self.last.elapsed();
        if !self.enabled || elapsed < Duration::from_secs(1) {
            return;
        }
        let snap = control.snapshot();
        let per_s =
            |now: u64, before: u64| (now.saturating_sub(before)) as f64 / elapsed.as_secs_f64();
        let p99 = |h: &Histogram<u64>| match h.len() {
            0 => "-".to_string(),
            _ => format!("{:.3}ms", h.value_at_quantile(0.99) as f64 / 1e6),
        };
        eprint!(
            "\r\x1b[2K[{:>4.0}s] {phase:<10} conns {}  sent {:.0}/s  delivered {:.0}/s  \
             p99 1s {} / so far {}  errors {}",
            self.started.elapsed().as_secs_f64(),
            snap.ready,
            per_s(snap.sent, self.last_snap.sent),
            per_s(snap.delivered, self.last_snap.delivered),
            p99(&self.second),
            p99(&self.so_far),
            snap.errors + snap.failed,
        );
        let _ = std::io::stderr().flush();
        self.second.reset();
        self.last = Instant::now();
        self.last_snap = snap;
    }

    /// Clears the line.
    pub fn finish(&mut self) {
        if self.enabled {
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        }
    }
}
