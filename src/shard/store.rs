//! The messages this shard's sessions hold in their queues, as counted for
//! Mosquitto's `store/messages/count` and `store/messages/bytes`.
//!
//! A running total, not a walk of the sessions: each [`Held`] (a session's
//! queue keeps one, see `session::Flow`) adds what it takes on and
//! subtracts what it lets go, its `Drop` included, so a queue that goes
//! with its session or flow takes its share with it.
//!
//! The total is per thread, and so per shard: a shard is one thread, and a
//! [`Held`] lives in a session, which is `!Send`, so every addition and
//! the subtraction that matches it happen on the same shard's thread.

use std::cell::Cell;

thread_local! {
    /// This thread's (shard's) queued messages and their payload bytes.
    static QUEUED: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Queued messages and their payload bytes on this shard now.
pub fn queued() -> (u64, u64) {
    QUEUED.with(Cell::get)
}

/// Moves this shard's total by `f`.
fn update(f: impl FnOnce(u64, u64) -> (u64, u64)) {
    QUEUED.with(|q| {
        let (m, b) = q.get();
        q.set(f(m, b));
    });
}

/// One queue's share of the shard's total: messages and payload bytes.
/// Shard-local (`!Send`); gives its share back when dropped.
#[derive(Debug, Default)]
pub struct Held {
    messages: u64,
    bytes: u64,
    /// A share is of its thread's total only.
    _shard_local: std::marker::PhantomData<*const ()>,
}

impl Held {
    /// A message of `payload` bytes taken on.
    pub fn add(&mut self, payload: usize) {
        self.messages += 1;
        self.bytes += payload as u64;
        update(|m, b| (m + 1, b + payload as u64));
    }

    /// A message of `payload` bytes let go (one that was added).
    pub fn remove(&mut self, payload: usize) {
        debug_assert!(self.messages > 0 && self.bytes >= payload as u64);
        self.messages -= 1;
        self.bytes -= payload as u64;
        update(|m, b| (m - 1, b - payload as u64));
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let (messages, bytes) = (self.messages, self.bytes);
        update(|m, b| (m - messages, b - bytes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_adds_removes_and_gives_back_what_is_left_when_dropped() {
        let mut a = Held::default();
        let mut b = Held::default();
        a.add(10);
        a.add(5);
        b.add(1);
        assert_eq!(queued(), (3, 16));
        a.remove(10);
        assert_eq!(queued(), (2, 6));
        drop(a);
        assert_eq!(queued(), (1, 1));
        drop(b);
        assert_eq!(queued(), (0, 0));
    }
}
