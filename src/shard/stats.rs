//! Per-shard counters.
//!
//! [`Stats`] is shard-local (plain `Cell`s, bumped on the data path). Once
//! per tick the shard copies it into its [`StatsCell`], a set of atomics
//! that only this shard writes and that the control plane
//! (`BrokerHandle::stats`, later `$SYS` and metrics) reads. Nothing on the
//! data path reads another shard's counters.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one shard (monotonic). Shard-local.
#[derive(Default, Debug)]
pub struct Stats {
    /// PUBLISH packets received from clients.
    pub received: Cell<u64>,
    /// Messages written to subscribers' connections.
    pub sent: Cell<u64>,
    /// Messages queued for offline or slow subscribers.
    pub queued: Cell<u64>,
    /// Messages dropped (slow consumer QoS 0, full queues, too large).
    pub dropped: Cell<u64>,
    /// Messages forwarded to other shards (once per destination shard).
    pub forwarded: Cell<u64>,
    /// Connections accepted by this shard's listeners.
    pub accepted: Cell<u64>,
    /// Accepted connections closed at once: their listener was at its
    /// `max_connections`.
    pub refused: Cell<u64>,
    /// CONNECTs refused with Server busy (0x89; 3.1.1: server unavailable)
    /// because this shard was overloaded (its mesh outboxes congested).
    pub busy: Cell<u64>,
    /// Accepted connections handed to their session's home shard.
    pub handed_over: Cell<u64>,
    /// Sessions taken over from a live connection (always on the home shard).
    pub taken_over: Cell<u64>,
    /// Connection readiness events handled (an idle connection causes none).
    pub events: Cell<u64>,
    /// QoS 1/2 messages queued past a subscriber's limits, in the
    /// backpressure headroom, pausing their publisher.
    pub held: Cell<u64>,
    /// Subscribers cut as slow consumers (`overload_stall_timeout`).
    pub slow_consumers: Cell<u64>,
}

impl Stats {
    /// Adds one to a counter.
    pub fn bump(counter: &Cell<u64>) {
        counter.set(counter.get() + 1);
    }
}

/// A copy of the counters, plus gauges, as the control plane sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub received: u64,
    pub sent: u64,
    pub queued: u64,
    pub dropped: u64,
    pub forwarded: u64,
    pub accepted: u64,
    /// Connections closed at accept: the listener was at `max_connections`.
    pub refused: u64,
    /// CONNECTs refused because the shard was overloaded.
    pub busy: u64,
    pub handed_over: u64,
    pub taken_over: u64,
    pub events: u64,
    pub held: u64,
    pub slow_consumers: u64,
    /// Connections attached to sessions on this shard now.
    pub connections: u64,
    /// Sessions (online and offline) homed on this shard now.
    pub sessions: u64,
    /// Publishers on this shard held back by backpressure now.
    pub publishers_held: u64,
    /// Subscribers on this shard holding publishers back now.
    pub subscribers_pressing: u64,
}

impl std::ops::Add for StatsSnapshot {
    type Output = StatsSnapshot;

    fn add(self, o: StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            received: self.received + o.received,
            sent: self.sent + o.sent,
            queued: self.queued + o.queued,
            dropped: self.dropped + o.dropped,
            forwarded: self.forwarded + o.forwarded,
            accepted: self.accepted + o.accepted,
            refused: self.refused + o.refused,
            busy: self.busy + o.busy,
            handed_over: self.handed_over + o.handed_over,
            taken_over: self.taken_over + o.taken_over,
            events: self.events + o.events,
            held: self.held + o.held,
            slow_consumers: self.slow_consumers + o.slow_consumers,
            connections: self.connections + o.connections,
            sessions: self.sessions + o.sessions,
            publishers_held: self.publishers_held + o.publishers_held,
            subscribers_pressing: self.subscribers_pressing + o.subscribers_pressing,
        }
    }
}

/// One shard's published counters: written by that shard on its tick only,
/// read by the control plane. `Send + Sync`.
#[derive(Debug, Default)]
pub struct StatsCell {
    values: [AtomicU64; 17],
}

impl StatsCell {
    /// Publishes a snapshot (called by the owning shard only).
    pub fn publish(&self, s: &StatsSnapshot) {
        let v = [
            s.received,
            s.sent,
            s.queued,
            s.dropped,
            s.forwarded,
            s.accepted,
            s.refused,
            s.busy,
            s.handed_over,
            s.taken_over,
            s.events,
            s.held,
            s.slow_consumers,
            s.connections,
            s.sessions,
            s.publishers_held,
            s.subscribers_pressing,
        ];
        for (slot, value) in self.values.iter().zip(v) {
            slot.store(value, Ordering::Relaxed);
        }
    }

    /// The last published snapshot.
    pub fn read(&self) -> StatsSnapshot {
        let v: Vec<u64> = self
            .values
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .collect();
        StatsSnapshot {
            received: v[0],
            sent: v[1],
            queued: v[2],
            dropped: v[3],
            forwarded: v[4],
            accepted: v[5],
            refused: v[6],
            busy: v[7],
            handed_over: v[8],
            taken_over: v[9],
            events: v[10],
            held: v[11],
            slow_consumers: v[12],
            connections: v[13],
            sessions: v[14],
            publishers_held: v[15],
            subscribers_pressing: v[16],
        }
    }
}

impl Stats {
    /// The counters with the given gauges, ready to publish.
    pub fn snapshot(&self, connections: usize, sessions: usize) -> StatsSnapshot {
        StatsSnapshot {
            received: self.received.get(),
            sent: self.sent.get(),
            queued: self.queued.get(),
            dropped: self.dropped.get(),
            forwarded: self.forwarded.get(),
            accepted: self.accepted.get(),
            refused: self.refused.get(),
            busy: self.busy.get(),
            handed_over: self.handed_over.get(),
            taken_over: self.taken_over.get(),
            events: self.events.get(),
            held: self.held.get(),
            slow_consumers: self.slow_consumers.get(),
            connections: connections as u64,
            sessions: sessions as u64,
            publishers_held: 0,
            subscribers_pressing: 0,
        }
    }
}
