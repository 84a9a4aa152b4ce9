//! Keepalive deadlines checked in per-second buckets, not one timer per
//! client (FlashMQ's approach).
//!
//! A connection is filed under the second its deadline falls in. Receiving a
//! packet only updates `last_seen` on the connection: no bucket work. When a
//! bucket comes due each connection in it is either expired or re-filed
//! under its new deadline.
//!
//! Entries name a connection by slab slot and serial and hold nothing of it,
//! so a closed connection's memory is freed at once. Its entry is stale
//! until its bucket comes due; the wheel is compacted when stale entries
//! outnumber live ones, so its size stays within twice the connections it
//! watches however fast clients come and go.

use std::collections::BTreeMap;

use super::timers::ConnRef;

/// Shard-local wheel of keepalive buckets keyed by shard-clock second.
#[derive(Default)]
pub struct Keepalive {
    buckets: BTreeMap<u64, Vec<ConnRef>>,
    /// Entries across all buckets (live and stale).
    entries: usize,
}

impl Keepalive {
    /// Files `conn` under `deadline` (a shard-clock second).
    pub fn watch(&mut self, deadline: u64, conn: ConnRef) {
        self.buckets.entry(deadline).or_default().push(conn);
        self.entries += 1;
    }

    /// Takes every entry whose bucket is due at `now`, for the shard to
    /// expire or re-file.
    pub fn due(&mut self, now: u64) -> Vec<ConnRef> {
        let mut due = Vec::new();
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > now {
                break;
            }
            due.extend(entry.remove());
        }
        self.entries -= due.len();
        due
    }

    /// Drops stale entries once they outnumber the `live` watched
    /// connections (amortised: each compaction at least halves the wheel).
    pub fn compact(&mut self, live: usize, is_live: impl Fn(ConnRef) -> bool) {
        if self.entries <= 2 * live + 64 {
            return;
        }
        self.buckets.retain(|_, bucket| {
            bucket.retain(|c| is_live(*c));
            !bucket.is_empty()
        });
        self.entries = self.buckets.values().map(Vec::len).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_entries_are_compacted_away() {
        let mut k = Keepalive::default();
        for i in 0..1_000 {
            k.watch(90 + i as u64 % 5, (i, 0));
        }
        // Only ten of them are still connected.
        k.compact(10, |(token, _)| token < 10);
        assert_eq!(k.entries, 10);
        let mut due = k.due(1_000);
        due.sort();
        assert_eq!(due, (0..10).map(|t| (t, 0)).collect::<Vec<_>>());
        assert_eq!(k.entries, 0);
    }
}
