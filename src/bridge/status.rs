//! What the control plane sees of the bridge: one [`BridgeStatus`] per
//! link, published by the bridge thread on its tick.

use std::net::SocketAddr;
use std::sync::Mutex;

/// One link's state and counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeStatus {
    /// The `connection` name.
    pub name: String,
    pub connected: bool,
    /// The remote address in use while connected.
    pub address: Option<SocketAddr>,
    /// Messages waiting for the remote (written but unacknowledged ones
    /// included), and their bytes.
    pub queued: usize,
    pub queued_bytes: usize,
    /// QoS 1/2 messages written and not yet acknowledged.
    pub inflight: usize,
    /// Messages written to the remote (resends not counted).
    pub sent: u64,
    /// Messages received from the remote.
    pub received: u64,
    /// Messages dropped: queue full, too large, QoS 0 while down.
    pub dropped: u64,
    /// Connections made after the first.
    pub reconnects: u64,
    /// QoS 1/2 messages queued past the limits while the link was up,
    /// their publishers paused (`overload_policy backpressure`).
    pub held: u64,
    /// Local publishers the link holds back now.
    pub holding: usize,
    /// Reconnects after `overload_stall_timeout` without an
    /// acknowledgement while holding publishers back.
    pub stalls: u64,
    /// Local subscribers its messages press hold the link back as a
    /// publisher: its socket is not read.
    pub paused: bool,
}

/// The last published statuses. Written by the bridge thread once per
/// tick, read by `BrokerHandle::bridges`; never touched on the data path.
#[derive(Debug, Default)]
pub struct StatusBoard(Mutex<Vec<BridgeStatus>>);

impl StatusBoard {
    /// Replaces the statuses (bridge thread only).
    pub fn publish(&self, statuses: Vec<BridgeStatus>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = statuses;
    }

    /// The statuses as last published.
    pub fn read(&self) -> Vec<BridgeStatus> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
