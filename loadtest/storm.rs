//! connect-storm: each worker opens connections at its share of the rate
//! (open loop), measures due time -> CONNACK latency, then disconnects.
//! At most `concurrency / workers` attempts are in flight per worker; when
//! that many are pending the next ones start late, and their latency
//! (measured from the due time) shows it.
//!
//! The [`Storm`] opener says which attempt is due; the worker opens it as a
//! connection with [`crate::conn::RoleState::Attempt`], whose CONNACK ends
//! in [`connected`] and whose failure in [`failed`].

use crate::clock::now_ns;
use crate::plan::RunSpec;
use crate::rate::Schedule;
use crate::worker::Ctx;

/// Opener `index` of `of`: the schedule of this worker's attempts.
/// Worker-local.
pub struct Storm {
    index: u32,
    of: u32,
    /// Set at the start time; `None` before.
    sched: Option<Schedule>,
    /// The next attempt of this opener.
    k: u64,
    /// Attempts open (connecting, or saying goodbye).
    pub active: usize,
    /// Most attempts open at once.
    limit: usize,
}

impl Storm {
    pub fn new(index: u32, of: u32, spec: &RunSpec) -> Storm {
        Storm {
            index,
            of,
            sched: None,
            k: 0,
            active: 0,
            limit: (spec.storm_concurrency / of.max(1) as usize).max(1),
        }
    }

    /// Starts the schedule anchored at `start_ns`.
    pub fn start(&mut self, spec: &RunSpec, start_ns: u64) {
        let (_, end) = spec.window(start_ns);
        self.sched = Some(Schedule::staggered(
            spec.rate,
            self.index as usize,
            self.of as usize,
            start_ns,
            end,
        ));
    }

    /// When the next attempt is due, unless the concurrency limit holds it
    /// back (an attempt ending lets it go) or the schedule is over.
    pub fn next_due(&self) -> Option<u64> {
        if self.active >= self.limit {
            return None;
        }
        self.sched?.due(self.k)
    }

    /// Takes the next attempt if it is due at `now` and allowed: its due
    /// time and connection number (which spreads source addresses and names
    /// the client). Counts it active.
    pub fn take_due(&mut self, now: u64) -> Option<(u64, usize)> {
        let due = self.next_due().filter(|&d| d <= now)?;
        let conn = (self.k * u64::from(self.of) + u64::from(self.index)) as usize;
        self.k += 1;
        self.active += 1;
        Some((due, conn))
    }
}

/// Attempt due at `due` got its CONNACK now.
pub fn connected(ctx: &mut Ctx, due: u64) {
    let now = now_ns();
    let window = ctx.window();
    let stats = &mut ctx.stats;
    stats.storm.attempts += 1;
    stats.storm.connected += 1;
    if stats.sample(due, now, window) {
        stats.storm.connected_measured += 1;
    }
    ctx.count_delivered(1);
}

/// An attempt failed (refused, timed out...).
pub fn failed(ctx: &mut Ctx, e: impl std::fmt::Display) {
    ctx.stats.storm.attempts += 1;
    ctx.stats.storm.failed += 1;
    ctx.error("connect", e);
}
