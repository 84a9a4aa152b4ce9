//! Starting executors: one OS thread each, optionally pinned to a core.

use std::future::Future;
use std::io;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

/// Memory glommio pins per executor for registered I/O buffers. Its default,
/// 10 MiB, would exceed an 8 MiB `ulimit -l` with a single executor; the
/// broker does socket I/O only, which needs none of it.
pub const IO_MEMORY: usize = 128 * 1024;

/// Submission ring depth per executor.
const RING_DEPTH: usize = 256;

/// How an executor thread is named and placed.
#[derive(Debug, Clone)]
pub struct ExecutorSpec {
    /// Thread name prefix (`shard-0`, `load-3`...).
    pub name: String,
    /// Core to pin to; `None` lets the kernel schedule it.
    pub core: Option<usize>,
    /// How long an idle executor spins before it parks. Zero saves CPU;
    /// a few tens of microseconds cut cross-core wake-up latency.
    pub spin_before_park: Duration,
}

impl ExecutorSpec {
    /// An executor pinned to `core` (or unpinned with `None`), no spinning.
    pub fn new(name: impl Into<String>, core: Option<usize>) -> ExecutorSpec {
        ExecutorSpec {
            name: name.into(),
            core,
            spin_before_park: Duration::ZERO,
        }
    }
}

/// A running executor thread.
pub struct ExecutorHandle<T: Send + 'static> {
    inner: glommio::ExecutorJoinHandle<T>,
}

impl<T: Send + 'static> ExecutorHandle<T> {
    /// Waits for the executor's main future to finish.
    pub fn join(self) -> io::Result<T> {
        self.inner
            .join()
            .map_err(|e| io::Error::other(e.to_string()))
    }
}

/// Starts an executor thread running the future that `make` builds on it.
///
/// `make` runs on the new thread, so the future (and everything it owns) may
/// be `!Send`: that is how shard state stays on its core.
pub fn start<G, F, T>(spec: &ExecutorSpec, make: G) -> io::Result<ExecutorHandle<T>>
where
    G: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + 'static,
    T: Send + 'static,
{
    let placement = match spec.core {
        Some(core) => Placement::Fixed(core),
        None => Placement::Unbound,
    };
    let mut builder = LocalExecutorBuilder::new(placement)
        .name(&spec.name)
        .io_memory(IO_MEMORY)
        .ring_depth(RING_DEPTH)
        .preempt_timer(Duration::from_millis(10));
    if !spec.spin_before_park.is_zero() {
        builder = builder.spin_before_park(spec.spin_before_park);
    }
    let inner = builder
        .spawn(make)
        .map_err(|e| io::Error::other(format!("starting executor {}: {e}", spec.name)))?;
    Ok(ExecutorHandle { inner })
}

/// The cores this process may run on, in order.
pub fn available_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}
