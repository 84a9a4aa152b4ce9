//! Per-shard counters. Shard-local; a later `$SYS`/metrics issue gathers
//! them over the control plane.

use std::cell::Cell;

/// Counters of one shard (monotonic).
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
    /// Connections accepted.
    pub accepted: Cell<u64>,
    /// Connections handed to their home shard.
    pub handed_over: Cell<u64>,
}

impl Stats {
    /// Adds one to a counter.
    pub fn bump(counter: &Cell<u64>) {
        counter.set(counter.get() + 1);
    }
}
