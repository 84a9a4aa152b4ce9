//! Keepalive deadlines checked in per-second buckets, not one timer per
//! client (FlashMQ's approach).
//!
//! A connection is filed under the second its deadline falls in. Receiving a
//! packet only updates `last_seen` on the connection: no bucket work. When a
//! bucket comes due each connection in it is either expired or re-filed
//! under its new deadline.

use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use super::conn::ConnShared;

/// Shard-local wheel of keepalive buckets keyed by shard-clock second.
#[derive(Default)]
pub struct Keepalive {
    buckets: BTreeMap<u64, Vec<Weak<ConnShared>>>,
}

impl Keepalive {
    /// Files `conn` under its current deadline (no-op without keepalive).
    pub fn watch(&mut self, conn: &Rc<ConnShared>) {
        if let Some(deadline) = conn.keepalive_deadline() {
            self.buckets
                .entry(deadline)
                .or_default()
                .push(Rc::downgrade(conn));
        }
    }

    /// Re-files every connection whose bucket is due at `now` and is still
    /// seen in time; returns those whose keepalive expired.
    pub fn check(&mut self, now: u64) -> Vec<Rc<ConnShared>> {
        let mut expired = Vec::new();
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > now {
                break;
            }
            for weak in entry.remove() {
                let Some(conn) = weak.upgrade() else { continue };
                if conn.is_closing() {
                    continue;
                }
                match conn.keepalive_deadline() {
                    Some(deadline) if deadline > now => {
                        self.buckets.entry(deadline).or_default().push(weak);
                    }
                    _ => expired.push(conn),
                }
            }
        }
        expired
    }
}
