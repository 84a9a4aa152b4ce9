//! The cross-executor channel type the mesh is built from: glommio's
//! `channel_mesh`, a full mesh of bounded SPSC queues (one per ordered pair
//! of executors) whose receivers wake a parked executor.

pub use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
pub use glommio::channels::shared_channel::ConnectedReceiver;

/// A full mesh between `peers` executors with `capacity` slots per queue.
pub fn full_mesh<T: Send + 'static>(peers: usize, capacity: usize) -> MeshBuilder<T, Full> {
    MeshBuilder::full(peers, capacity)
}

/// Why a non-blocking send did not happen; the message is handed back.
pub enum TrySendError<T> {
    /// The queue is full: retry later.
    Full(T),
    /// The receiving executor is gone (shutdown).
    Closed(Option<T>),
}

/// Sends without waiting; hands the message back when it cannot.
pub fn try_send_to<T: Send>(
    senders: &Senders<T>,
    peer: usize,
    msg: T,
) -> Result<(), TrySendError<T>> {
    use glommio::{GlommioError, ResourceType};
    match senders.try_send_to(peer, msg) {
        Ok(()) => Ok(()),
        Err(GlommioError::WouldBlock(ResourceType::Channel(m))) => Err(TrySendError::Full(m)),
        Err(GlommioError::Closed(ResourceType::Channel(m))) => Err(TrySendError::Closed(Some(m))),
        Err(_) => Err(TrySendError::Closed(None)),
    }
}
