//! Per-shard counters.
//!
//! [`Stats`] is shard-local (plain `Cell`s, bumped on the data path). Once
//! per tick the shard copies it into its [`StatsCell`], a set of atomics
//! that only this shard writes and that the control plane
//! (`BrokerHandle::stats`, the `$SYS` tree built by shard 0, the metrics
//! endpoint) reads. Nothing on the data path reads another shard's
//! counters.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Declares the counters once: the shard-local [`Stats`], the
/// [`StatsSnapshot`] the control plane sees (counters plus gauges), and
/// the atomics of [`StatsCell`] in between.
macro_rules! shard_stats {
    (
        counters { $($(#[$cdoc:meta])* $c:ident,)* }
        gauges { $($(#[$gdoc:meta])* $g:ident,)* }
    ) => {
        /// Counters of one shard (monotonic). Shard-local.
        #[derive(Default, Debug)]
        pub struct Stats {
            $($(#[$cdoc])* pub $c: Cell<u64>,)*
        }

        /// What one shard measures now (not counted): filled in at each
        /// tick. Shard-local.
        #[derive(Default, Debug, Clone, Copy)]
        pub struct Gauges {
            $($(#[$gdoc])* pub $g: u64,)*
        }

        /// A copy of the counters, plus gauges, as the control plane sees them.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct StatsSnapshot {
            $($(#[$cdoc])* pub $c: u64,)*
            $($(#[$gdoc])* pub $g: u64,)*
        }

        impl std::ops::Add for StatsSnapshot {
            type Output = StatsSnapshot;

            /// Sums every field (the `max_turn_us` gauge too: take the
            /// maximum per shard where that matters).
            fn add(self, o: StatsSnapshot) -> StatsSnapshot {
                StatsSnapshot {
                    $($c: self.$c + o.$c,)*
                    $($g: self.$g + o.$g,)*
                }
            }
        }

        impl StatsSnapshot {
            fn to_array(self) -> [u64; FIELDS] {
                [$(self.$c,)* $(self.$g,)*]
            }

            fn from_array(v: [u64; FIELDS]) -> StatsSnapshot {
                let mut it = v.into_iter();
                StatsSnapshot {
                    $($c: it.next().unwrap_or(0),)*
                    $($g: it.next().unwrap_or(0),)*
                }
            }
        }

        impl Stats {
            /// The counters with the given gauges, ready to publish.
            pub fn snapshot(&self, g: Gauges) -> StatsSnapshot {
                StatsSnapshot {
                    $($c: self.$c.get(),)*
                    $($g: g.$g,)*
                }
            }
        }

        const FIELDS: usize = [$(stringify!($c),)* $(stringify!($g),)*].len();
    };
}

shard_stats! {
    counters {
        /// PUBLISH packets received from clients.
        received,
        /// Messages written to subscribers' connections.
        sent,
        /// Messages queued for offline or slow subscribers.
        queued,
        /// Messages dropped (slow consumer QoS 0, full queues, too large).
        dropped,
        /// Messages forwarded to other shards (once per destination shard).
        forwarded,
        /// Connections accepted by this shard's listeners.
        accepted,
        /// Accepted connections closed at once: their listener was at its
        /// `max_connections`.
        refused,
        /// CONNECTs refused with Server busy (0x89; 3.1.1: server unavailable)
        /// because this shard was overloaded (its mesh outboxes congested).
        busy,
        /// Accepted connections handed to their session's home shard.
        handed_over,
        /// Sessions taken over from a live connection (always on the home shard).
        taken_over,
        /// Connection readiness events handled (an idle connection causes none).
        events,
        /// Bytes read from clients' sockets (after TLS and WebSocket framing).
        bytes_received,
        /// Bytes written to clients' sockets (before TLS and WebSocket framing).
        bytes_sent,
        /// Payload bytes of the PUBLISH packets received from clients.
        publish_bytes_received,
        /// Payload bytes of the messages written to subscribers.
        publish_bytes_sent,
        /// CONNECTs accepted (a session attached).
        connects,
        /// Offline sessions ended because their expiry passed.
        expired,
        /// Messages put on the mesh for other shards (every kind).
        mesh_sent,
        /// Messages taken from the mesh from other shards (every kind).
        mesh_received,
        /// Loop turns run.
        turns,
        /// QoS 1/2 messages queued past a subscriber's limits, in the
        /// backpressure headroom, pausing their publisher.
        held,
        /// Subscribers cut as slow consumers (`overload_stall_timeout`).
        slow_consumers,
        /// `log_dest topic` lines dropped because their queue was full
        /// (`logging::topic::dropped`): process-wide, so shard 0's only
        /// (0 on the others).
        log_dropped,
    }
    gauges {
        /// Connections attached to sessions on this shard now.
        connections,
        /// Sessions (online and offline) homed on this shard now.
        sessions,
        /// Subscriptions of the sessions homed on this shard now.
        subscriptions,
        /// Retained messages in this shard's replica of the store (every
        /// shard holds them all).
        retained,
        /// Messages in this shard's mesh outboxes, not yet taken by a queue.
        mesh_queued,
        /// The longest loop turn since the last tick, in microseconds.
        max_turn_us,
        /// Publishers on this shard held back by backpressure now.
        publishers_held,
        /// Subscribers on this shard holding publishers back now.
        subscribers_pressing,
        /// Messages in the queues of the sessions homed on this shard now
        /// (`store::queued`).
        queued_messages,
        /// Payload bytes of those messages.
        queued_bytes,
        /// Payload bytes of the retained messages in this shard's replica
        /// (every shard holds them all).
        retained_bytes,
    }
}

impl Stats {
    /// Adds one to a counter.
    pub fn bump(counter: &Cell<u64>) {
        counter.set(counter.get() + 1);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &Cell<u64>, n: usize) {
        counter.set(counter.get() + n as u64);
    }
}

/// One shard's published counters: written by that shard on its tick only,
/// read by the control plane. `Send + Sync`.
#[derive(Debug)]
pub struct StatsCell {
    values: [AtomicU64; FIELDS],
}

impl Default for StatsCell {
    /// All zero. (Written out: arrays derive `Default` up to 32 only.)
    fn default() -> StatsCell {
        StatsCell {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl StatsCell {
    /// Publishes a snapshot (called by the owning shard only).
    pub fn publish(&self, s: &StatsSnapshot) {
        for (slot, value) in self.values.iter().zip(s.to_array()) {
            slot.store(value, Ordering::Relaxed);
        }
    }

    /// The last published snapshot.
    pub fn read(&self) -> StatsSnapshot {
        StatsSnapshot::from_array(std::array::from_fn(|i| {
            self.values[i].load(Ordering::Relaxed)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_snapshot_reads_back_field_for_field() {
        let stats = Stats::default();
        Stats::bump(&stats.received);
        Stats::add(&stats.bytes_sent, 42);
        Stats::bump(&stats.turns);
        let gauges = Gauges {
            connections: 3,
            max_turn_us: 7,
            ..Gauges::default()
        };
        let cell = StatsCell::default();
        cell.publish(&stats.snapshot(gauges));
        let s = cell.read();
        assert_eq!((s.received, s.bytes_sent, s.turns), (1, 42, 1));
        assert_eq!((s.connections, s.max_turn_us, s.sessions), (3, 7, 0));
    }
}
