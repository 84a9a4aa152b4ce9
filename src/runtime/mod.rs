//! The runtime seam: the only module that names glommio or mio.
//!
//! Everything else in the crate boots shard threads, waits for I/O, timers
//! and peers, and does socket I/O through these re-exports and wrappers, so
//! that a change of runtime touches this folder alone.
//!
//! Two runtimes live here while the broker moves from one to the other.
//!
//! The readiness loop (mio), one per pinned shard thread:
//!
//! - [`reactor`]: the loop ([`Reactor`]), the [`Driver`] trait a shard
//!   implements, the [`Wake`] line peers use to wake a parked shard, and
//!   the [`Registrar`] that registers sources.
//! - [`transport`]: non-blocking [`Transport`] (a client's byte stream),
//!   [`Listener`], outgoing `connect_from`.
//! - [`spsc`]: the bounded queue per ordered pair of shards
//!   ([`MeshEnd`]), with wake-ups only into parking shards.
//! - [`thread`]: start a named thread pinned to a core.
//!
//! The glommio executors it replaces:
//!
//! - [`executor`]: start a pinned executor thread per shard (or harness
//!   worker), with a small io_memory (the broker does no DMA file I/O yet).
//! - [`net`], [`client`]: non-buffered TCP streams and listeners.
//! - [`channel`]: the SPSC channel mesh between executors (used by `mesh`).
//! - [`time`]: sleep and timeouts.

pub mod channel;
pub mod client;
pub mod executor;
pub mod net;
pub mod reactor;
pub mod spsc;
pub mod thread;
pub mod time;
pub mod transport;

pub use executor::{start, ExecutorHandle, ExecutorSpec};
pub use reactor::{Driver, Interest, Reactor, Readiness, Registrar, Token, Wake};
pub use spsc::{full_mesh, MeshEnd, TrySendError};
pub use thread::{available_cores, spawn_pinned};
pub use transport::{connect_from, Listener, Transport};

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
