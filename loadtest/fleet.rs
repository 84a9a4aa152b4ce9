//! The set of worker threads of one run, seen from the controller thread:
//! start them, wait for their connections, start and stop the run, join.
//!
//! Every change of the [`Control`] flags is followed by a wake-up of each
//! worker's loop ([`Wake::force`](shardmq::runtime::Wake::force)), which
//! then looks at the flags: no worker polls them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::{Control, Snapshot};
use crate::error::{LoadError, Result};
use crate::plan::{Plan, RunSpec};
use crate::progress::Progress;
use crate::stats::WorkerStats;
use crate::worker::WorkerHandle;

/// How often the controller polls the workers' counters.
pub const POLL: Duration = Duration::from_millis(20);

/// Running workers. Dropping a fleet stops it (without joining).
pub struct Fleet {
    pub control: Arc<Control>,
    workers: Vec<WorkerHandle>,
    /// Connections (roles) in the plan.
    pub connections: usize,
}

impl Fleet {
    /// Starts one worker per core (fewer if there are fewer connections),
    /// dealing the plan's connections round-robin.
    pub fn launch(spec: Arc<RunSpec>, plan: &Plan, cores: &[Option<usize>]) -> Result<Fleet> {
        let workers = cores.len().min(plan.roles.len()).max(1);
        let control = Arc::new(Control::new(workers));
        let mut fleet = Fleet {
            control: control.clone(),
            workers: Vec::new(),
            connections: plan.roles.len(),
        };
        for (i, conns) in plan.deal(workers).into_iter().enumerate() {
            let core = cores.get(i).copied().flatten();
            let w = crate::worker::spawn(i, core, conns, spec.clone(), control.clone()).map_err(
                LoadError::io(format!("starting worker {i} on core {core:?}")),
            )?;
            fleet.workers.push(w);
        }
        Ok(fleet)
    }

    /// Workers running.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Waits until every connection is established or has failed, or until
    /// none has for `stall` (each attempt has its own timeout, shorter than
    /// that); returns the counters then.
    pub fn wait_ready(&self, stall: Duration, progress: &mut Progress) -> Snapshot {
        let (mut last, mut changed) = (Snapshot::default(), Instant::now());
        loop {
            let snap = self.control.snapshot();
            if (snap.ready + snap.failed) as usize >= self.connections || changed.elapsed() >= stall
            {
                return snap;
            }
            if snap != last {
                (last, changed) = (snap, Instant::now());
            }
            progress.tick(&self.control, "connecting");
            std::thread::sleep(POLL);
        }
    }

    /// Lets publishers (and connect-storm openers) start, with schedules
    /// anchored at `at_ns`.
    pub fn start_at(&self, at_ns: u64) {
        self.control.start_at(at_ns);
        self.wake_all();
    }

    /// Stops the workers and collects what they measured.
    pub fn finish(mut self) -> Result<Vec<WorkerStats>> {
        self.stop();
        let mut out = Vec::with_capacity(self.workers.len());
        for (i, w) in std::mem::take(&mut self.workers).into_iter().enumerate() {
            let stats = w
                .thread
                .join()
                .map_err(|_| LoadError::Run(format!("worker {i} panicked")))?
                .map_err(LoadError::io(format!("worker {i} failed")))?;
            out.push(stats);
        }
        Ok(out)
    }

    fn stop(&self) {
        self.control.stop();
        self.wake_all();
    }

    fn wake_all(&self) {
        for w in &self.workers {
            w.wake.force();
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}
