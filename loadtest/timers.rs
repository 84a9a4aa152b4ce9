//! A worker's connection timers: one min-heap per [`Kind`], lazy deletion.
//!
//! A connection arms at most one timer of each kind at a time; the time it
//! armed is kept on the connection ([`Armed`]). Arming a later time than
//! the one armed does nothing: the earlier timer fires, the connection finds
//! nothing due yet and arms again. Arming an earlier time pushes a new entry
//! and leaves the old one in the heap, stale; a popped entry counts only if
//! its connection (same slab key *and* serial) still has exactly that time
//! armed. Stale entries are few (a connection moves a timer earlier only on
//! a state change), and [`Timers::compact`] bounds them anyway.
//!
//! Worker-local; never crosses threads.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Which heap: the two are waited for differently (see the worker's
/// `next_deadline`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Open-loop send times: met to the microsecond (the worker spins
    /// through the last millisecond before one).
    Send,
    /// Keepalive pings, connect and goodbye deadlines: a millisecond late
    /// is fine.
    Tick,
}

/// The times a connection has armed, one per [`Kind`]; `None` when none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Armed {
    pub send: Option<u64>,
    pub tick: Option<u64>,
}

impl Armed {
    fn slot(&mut self, kind: Kind) -> &mut Option<u64> {
        match kind {
            Kind::Send => &mut self.send,
            Kind::Tick => &mut self.tick,
        }
    }
}

/// One heap entry: `(time, serial, slab key)`, ordered by time first.
type Entry = Reverse<(u64, u64, usize)>;

/// Both heaps of one worker.
#[derive(Debug, Default)]
pub struct Timers {
    send: BinaryHeap<Entry>,
    tick: BinaryHeap<Entry>,
}

impl Timers {
    fn heap(&mut self, kind: Kind) -> &mut BinaryHeap<Entry> {
        match kind {
            Kind::Send => &mut self.send,
            Kind::Tick => &mut self.tick,
        }
    }

    /// Arms `kind` at `at_ns` for connection `(key, serial)` unless it has
    /// an earlier (or the same) time armed.
    pub fn arm(&mut self, armed: &mut Armed, kind: Kind, key: usize, serial: u64, at_ns: u64) {
        let slot = armed.slot(kind);
        if slot.is_some_and(|t| t <= at_ns) {
            return;
        }
        *slot = Some(at_ns);
        self.heap(kind).push(Reverse((at_ns, serial, key)));
    }

    /// The earliest time in the `kind` heap (possibly stale: then the pop
    /// finds nothing to fire, which is allowed).
    pub fn next(&self, kind: Kind) -> Option<u64> {
        let heap = match kind {
            Kind::Send => &self.send,
            Kind::Tick => &self.tick,
        };
        heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Pops the earliest `kind` entry due at `now_ns`, if any, and returns
    /// its `(key, serial, time)`. The caller checks it against the
    /// connection with [`Timers::take_if_armed`].
    pub fn pop_due(&mut self, kind: Kind, now_ns: u64) -> Option<(usize, u64, u64)> {
        let heap = self.heap(kind);
        match heap.peek() {
            Some(Reverse((at, _, _))) if *at <= now_ns => heap
                .pop()
                .map(|Reverse((at, serial, key))| (key, serial, at)),
            _ => None,
        }
    }

    /// For a popped entry at `at_ns`: true (and the slot disarmed) if the
    /// connection still has exactly that time armed, false if it is stale.
    pub fn take_if_armed(armed: &mut Armed, kind: Kind, at_ns: u64) -> bool {
        let slot = armed.slot(kind);
        if *slot == Some(at_ns) {
            *slot = None;
            true
        } else {
            false
        }
    }

    /// Entries in both heaps, stale ones included.
    pub fn len(&self) -> usize {
        self.send.len() + self.tick.len()
    }

    /// Rebuilds both heaps from the connections' armed times, dropping every
    /// stale entry. `live` yields `(key, serial, armed)`.
    pub fn compact(&mut self, live: impl Iterator<Item = (usize, u64, Armed)>) {
        self.send.clear();
        self.tick.clear();
        for (key, serial, armed) in live {
            if let Some(at) = armed.send {
                self.send.push(Reverse((at, serial, key)));
            }
            if let Some(at) = armed.tick {
                self.tick.push(Reverse((at, serial, key)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_arms_are_absorbed_and_earlier_ones_leave_stale_entries() {
        let mut t = Timers::default();
        let mut a = Armed::default();
        t.arm(&mut a, Kind::Tick, 3, 9, 100);
        t.arm(&mut a, Kind::Tick, 3, 9, 200);
        assert_eq!((t.len(), a.tick), (1, Some(100)));
        t.arm(&mut a, Kind::Tick, 3, 9, 50);
        assert_eq!((t.len(), a.tick), (2, Some(50)));

        assert_eq!(t.pop_due(Kind::Tick, 49), None);
        let (key, serial, at) = t.pop_due(Kind::Tick, 120).expect("due");
        assert_eq!((key, serial, at), (3, 9, 50));
        assert!(Timers::take_if_armed(&mut a, Kind::Tick, at));
        let (_, _, at) = t.pop_due(Kind::Tick, 120).expect("stale entry");
        assert!(!Timers::take_if_armed(&mut a, Kind::Tick, at));
        assert_eq!((t.len(), a), (0, Armed::default()));
    }

    #[test]
    fn compact_keeps_only_armed_times() {
        let mut t = Timers::default();
        let mut a = Armed::default();
        for at in (0..100).rev() {
            t.arm(&mut a, Kind::Send, 1, 1, at);
        }
        assert_eq!(t.len(), 100);
        t.compact([(1, 1, a)].into_iter());
        assert_eq!((t.len(), t.next(Kind::Send)), (1, Some(0)));
    }
}
