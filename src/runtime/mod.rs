//! The async runtime seam: the only module that names glommio.
//!
//! Everything else in the crate boots executors, spawns tasks, sleeps and
//! does socket I/O through these re-exports and wrappers, so that the rest of
//! the code reads as "a single-threaded executor per core" and a change of
//! runtime touches this folder alone.
//!
//! - [`executor`]: start a pinned executor thread per shard (or harness
//!   worker), with a small io_memory (the broker does no DMA file I/O yet).
//! - [`net`]: non-buffered TCP streams and listeners.
//! - [`channel`]: the SPSC channel mesh between executors (used by `mesh`).
//! - [`time`]: sleep and timeouts.

pub mod channel;
pub mod client;
pub mod executor;
pub mod net;
pub mod time;

pub use executor::{start, ExecutorHandle, ExecutorSpec};

/// Spawns a task on the current executor and detaches it.
pub fn spawn<F>(future: F)
where
    F: std::future::Future<Output = ()> + 'static,
{
    glommio::spawn_local(future).detach();
}

/// Spawns a task on the current executor and returns a handle to await it.
pub fn spawn_joinable<T: 'static>(
    future: impl std::future::Future<Output = T> + 'static,
) -> impl std::future::Future<Output = Option<T>> {
    glommio::spawn_local(future).detach()
}

/// Yields to other tasks if this one has run for its time slice.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await
}
