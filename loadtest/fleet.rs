//! The set of worker executors of one run, seen from the controller thread:
//! start them, wait for their connections, stop and join them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shardmq::runtime::ExecutorHandle;

use crate::control::{Control, Snapshot};
use crate::error::{LoadError, Result};
use crate::plan::{Plan, RunSpec};
use crate::progress::Progress;
use crate::stats::WorkerStats;

/// How often the controller polls the workers' counters.
pub const POLL: Duration = Duration::from_millis(20);

/// Running workers. Dropping a fleet stops it (without joining).
pub struct Fleet {
    pub control: Arc<Control>,
    handles: Vec<ExecutorHandle<WorkerStats>>,
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
            handles: Vec::new(),
            connections: plan.roles.len(),
        };
        for (i, conns) in plan.deal(workers).into_iter().enumerate() {
            let core = cores.get(i).copied().flatten();
            let h = crate::worker::spawn(i, core, conns, spec.clone(), control.clone()).map_err(
                LoadError::io(format!("starting worker {i} on core {core:?}")),
            )?;
            fleet.handles.push(h);
        }
        Ok(fleet)
    }

    /// Workers running.
    pub fn workers(&self) -> usize {
        self.handles.len()
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

    /// Stops the workers and collects what they measured.
    pub fn finish(mut self) -> Result<Vec<WorkerStats>> {
        self.control.stop();
        let mut out = Vec::with_capacity(self.handles.len());
        for (i, h) in std::mem::take(&mut self.handles).into_iter().enumerate() {
            out.push(
                h.join()
                    .map_err(LoadError::io(format!("worker {i} failed")))?,
            );
        }
        Ok(out)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.control.stop();
    }
}
