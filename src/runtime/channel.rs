//! The cross-executor channel type the mesh is built from: glommio's
//! `channel_mesh`, a full mesh of bounded SPSC queues (one per ordered pair
//! of executors) whose receivers wake a parked executor.

pub use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
pub use glommio::channels::shared_channel::ConnectedReceiver;

/// A full mesh between `peers` executors with `capacity` slots per queue.
pub fn full_mesh<T: Send + 'static>(peers: usize, capacity: usize) -> MeshBuilder<T, Full> {
    MeshBuilder::full(peers, capacity)
}
