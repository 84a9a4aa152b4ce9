//! The queues between shard threads: one bounded `crossbeam-channel` per
//! ordered pair of shards, used single-producer single-consumer, and the
//! wake-ups that go with them.
//!
//! (Named `spsc` rather than `mesh`: the crate's `mesh` module, which
//! batches [`crate::mesh::ShardMsg`]s, is this module's user.)
//!
//! # Wake-ups
//!
//! - A successful [`MeshEnd::try_send`] calls [`Wake::notify`] on the
//!   receiver: a syscall only if the receiver announced it is parking.
//! - A send that finds the queue full sets the queue's `sender_waiting`
//!   flag and hands the message back ([`TrySendError::Full`]). The sender
//!   keeps it and retries from `Driver::run_pending` (it is queued work).
//!   The receiver, after taking messages from a queue whose flag is set,
//!   clears it and notifies the sender. The sender's park re-check and the
//!   receiver's check of the flag are fenced like the wake-up itself, so a
//!   parked sender is always woken when room appears, and no timer polling
//!   is needed.
//!
//! # Shutdown
//!
//! Dropping a [`MeshEnd`] closes its queues: peers get
//! [`TrySendError::Closed`] on sending to it, receive what it had sent, and
//! then see [`MeshEnd::is_closed`]. The drop notifies every peer so that a
//! parked one looks.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, Sender};

use super::reactor::Wake;
use crate::limits::MAX_SHARDS;

/// Builds the mesh between `wakes.len()` shards (shard `i` is woken through
/// `wakes[i]`), with `capacity` messages per queue: `n * (n - 1)` queues.
/// Returns one end per shard, in shard order, to move into its thread.
///
/// Panics if there are no shards, more than [`MAX_SHARDS`], or
/// `capacity == 0` (a rendezvous queue would make every send wait).
pub fn full_mesh<T: Send>(wakes: &[Arc<Wake>], capacity: usize) -> Vec<MeshEnd<T>> {
    let n = wakes.len();
    assert!(
        (1..=MAX_SHARDS).contains(&n),
        "mesh of {n} shards: must be 1..={MAX_SHARDS}"
    );
    assert!(capacity > 0, "mesh queue capacity must be at least 1");
    let wakes: Arc<[Arc<Wake>]> = wakes.iter().cloned().collect();
    let mut ends: Vec<MeshEnd<T>> = (0..n)
        .map(|me| MeshEnd {
            me,
            wakes: Arc::clone(&wakes),
            out: (0..n).map(|_| None).collect(),
            inbound: (0..n).map(|_| None).collect(),
            _one_thread: PhantomData,
        })
        .collect();
    for from in 0..n {
        for to in (0..n).filter(|&to| to != from) {
            let (tx, rx) = bounded(capacity);
            let link = Arc::new(Link {
                sender_waiting: AtomicBool::new(false),
            });
            ends[from].out[to] = Some(Outbound {
                tx,
                link: Arc::clone(&link),
            });
            ends[to].inbound[from] = Some(Inbound {
                rx,
                link,
                closed: Cell::new(false),
            });
        }
    }
    ends
}

/// One shard's end of the mesh: a sender to and a receiver from each peer.
///
/// Owned by one shard thread: `Send` (moved into the thread at start),
/// `!Sync`. Peer ids are shard ids, `0..peers()`; naming `me()` or an id
/// out of range as a peer is a bug and panics.
pub struct MeshEnd<T> {
    me: usize,
    /// Every shard's wake line, indexed by shard id.
    wakes: Arc<[Arc<Wake>]>,
    /// Queue to each peer; `None` at `me`.
    out: Vec<Option<Outbound<T>>>,
    /// Queue from each peer; `None` at `me`.
    inbound: Vec<Option<Inbound<T>>>,
    _one_thread: PhantomData<Cell<()>>,
}

struct Outbound<T> {
    tx: Sender<T>,
    link: Arc<Link>,
}

struct Inbound<T> {
    rx: Receiver<T>,
    link: Arc<Link>,
    /// Set once the peer's end is dropped and its queue is drained.
    closed: Cell<bool>,
}

/// State one queue's two ends share besides the channel.
///
/// Own cache lines: written by the sender on a full queue and by the
/// receiver when it clears the flag, never on the common path.
#[repr(align(128))]
struct Link {
    /// Set by the sender when a send found the queue full; cleared by the
    /// receiver (which then notifies the sender) after it took messages.
    sender_waiting: AtomicBool,
}

/// Why [`MeshEnd::try_send`] did not send; the message is handed back.
pub enum TrySendError<T> {
    /// The peer's queue is full: keep the message and retry it from
    /// `Driver::run_pending`; the peer notifies this shard when it takes
    /// from the queue.
    Full(T),
    /// The peer's end is gone (shutdown).
    Closed(T),
}

impl<T> TrySendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(m) | TrySendError::Closed(m) => m,
        }
    }

    /// Whether the queue was full (rather than closed).
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("sending on a full mesh queue"),
            TrySendError::Closed(_) => f.write_str("sending to a shard whose mesh end is gone"),
        }
    }
}

impl<T> std::error::Error for TrySendError<T> {}

impl<T> MeshEnd<T> {
    /// This shard's id.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Number of shards in the mesh, this one included.
    pub fn peers(&self) -> usize {
        self.wakes.len()
    }

    /// Ids of every other shard.
    pub fn others(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.peers()).filter(move |&p| p != self.me)
    }

    /// Sends `msg` to `peer` without waiting and notifies it.
    pub fn try_send(&self, peer: usize, msg: T) -> Result<(), TrySendError<T>> {
        let out = self.outbound(peer);
        match out.tx.try_send(msg) {
            Ok(()) => {
                self.wakes[peer].notify();
                Ok(())
            }
            Err(crossbeam_channel::TrySendError::Full(msg)) => {
                // Ordered before this shard's park re-check by the fence in
                // the reactor; read by the receiver after it pops.
                out.link.sender_waiting.store(true, Ordering::Relaxed);
                Err(TrySendError::Full(msg))
            }
            Err(crossbeam_channel::TrySendError::Disconnected(msg)) => {
                Err(TrySendError::Closed(msg))
            }
        }
    }

    /// Takes the next message from `peer`, if any.
    pub fn try_recv(&self, peer: usize) -> Option<T> {
        let inbound = self.inbound(peer);
        let msg = Self::pop(inbound)?;
        self.release_sender(peer, inbound);
        Some(msg)
    }

    /// Hands up to `max` messages from `peer` to `f`, in order; returns how
    /// many. Cheaper than [`MeshEnd::try_recv`] in a loop: the full-queue
    /// check runs once.
    pub fn drain(&self, peer: usize, max: usize, mut f: impl FnMut(T)) -> usize {
        let inbound = self.inbound(peer);
        let mut n = 0;
        while n < max {
            match Self::pop(inbound) {
                Some(msg) => {
                    n += 1;
                    f(msg);
                }
                None => break,
            }
        }
        if n > 0 {
            self.release_sender(peer, inbound);
        }
        n
    }

    /// Whether `peer`'s end is gone and everything it sent was received.
    /// Learnt while receiving: `false` until a receive found the queue
    /// closed and empty.
    pub fn is_closed(&self, peer: usize) -> bool {
        self.inbound(peer).closed.get()
    }

    /// Messages waiting in the queue from `peer` (a snapshot).
    pub fn pending(&self, peer: usize) -> usize {
        self.inbound(peer).rx.len()
    }

    fn pop(inbound: &Inbound<T>) -> Option<T> {
        match inbound.rx.try_recv() {
            Ok(msg) => Some(msg),
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => {
                inbound.closed.set(true);
                None
            }
        }
    }

    /// After taking from `peer`'s queue: if its sender found it full,
    /// clear the flag and wake the sender to retry.
    fn release_sender(&self, peer: usize, inbound: &Inbound<T>) {
        // Pairs with the fence of the sender's park: the pop is ordered
        // before this read of the flag.
        fence(Ordering::SeqCst);
        let waiting = &inbound.link.sender_waiting;
        if waiting.load(Ordering::Relaxed) && waiting.swap(false, Ordering::AcqRel) {
            self.wakes[peer].notify();
        }
    }

    fn outbound(&self, peer: usize) -> &Outbound<T> {
        match self.out.get(peer).and_then(Option::as_ref) {
            Some(out) => out,
            None => panic!("mesh: shard {} has no queue to shard {peer}", self.me),
        }
    }

    fn inbound(&self, peer: usize) -> &Inbound<T> {
        match self.inbound.get(peer).and_then(Option::as_ref) {
            Some(inbound) => inbound,
            None => panic!("mesh: shard {} has no queue from shard {peer}", self.me),
        }
    }
}

impl<T> Drop for MeshEnd<T> {
    fn drop(&mut self) {
        // Close the queues first, then tell parked peers to look.
        self.out.clear();
        self.inbound.clear();
        for peer in (0..self.wakes.len()).filter(|&p| p != self.me) {
            self.wakes[peer].notify();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::runtime::reactor::tests::run_within;
    use crate::runtime::reactor::{Driver, Reactor, Readiness, Token};

    fn two_ends<T: Send>(capacity: usize) -> (Reactor, Reactor, MeshEnd<T>, MeshEnd<T>) {
        let r0 = Reactor::new().expect("reactor");
        let r1 = Reactor::new().expect("reactor");
        let mut ends = full_mesh(&[r0.wake_handle(), r1.wake_handle()], capacity);
        let e1 = ends.pop().expect("end 1");
        let e0 = ends.pop().expect("end 0");
        (r0, r1, e0, e1)
    }

    #[test]
    fn queues_are_per_ordered_pair_and_in_order() {
        let wakes: Vec<_> = (0..3)
            .map(|_| Reactor::new().expect("reactor").wake_handle())
            .collect();
        let ends = full_mesh::<(usize, u32)>(&wakes, 8);
        assert_eq!(ends.len(), 3);
        for end in &ends {
            assert_eq!(end.peers(), 3);
            for peer in end.others() {
                for i in 0..3 {
                    end.try_send(peer, (end.me(), i)).expect("send");
                }
            }
        }
        for end in &ends {
            for peer in end.others() {
                let mut got = Vec::new();
                assert_eq!(end.drain(peer, 100, |m| got.push(m)), 3);
                assert_eq!(got, [(peer, 0), (peer, 1), (peer, 2)]);
                assert_eq!(end.try_recv(peer), None);
            }
        }
    }

    #[test]
    fn a_dropped_end_closes_its_queues() {
        let (_r0, _r1, e0, e1) = two_ends::<u32>(4);
        e1.try_send(0, 7).expect("send");
        drop(e1);
        assert!(matches!(e0.try_send(1, 1), Err(TrySendError::Closed(1))));
        assert!(!e0.is_closed(1));
        assert_eq!(
            e0.try_recv(1),
            Some(7),
            "what was sent before the drop arrives"
        );
        assert_eq!(e0.try_recv(1), None);
        assert!(e0.is_closed(1));
    }

    /// Sends `total` messages to peer 1, keeping the one a full queue
    /// handed back and retrying it from `run_pending`.
    struct Flood {
        end: MeshEnd<u32>,
        next: u32,
        total: u32,
        held: Option<u32>,
        fulls: u32,
    }

    impl Driver for Flood {
        fn ready(&mut self, _: Token, _: Readiness) {}
        fn run_pending(&mut self) -> bool {
            let mut sent = false;
            for _ in 0..64 {
                let msg = match self.held.take() {
                    Some(m) => m,
                    None if self.next < self.total => {
                        self.next += 1;
                        self.next - 1
                    }
                    None => break,
                };
                match self.end.try_send(1, msg) {
                    Ok(()) => sent = true,
                    Err(TrySendError::Full(m)) => {
                        self.fulls += 1;
                        self.held = Some(m);
                        break;
                    }
                    Err(TrySendError::Closed(_)) => panic!("receiver gone"),
                }
            }
            sent
        }
        fn end_turn(&mut self) {}
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
        fn on_timer(&mut self, _: Instant) {}
        fn finished(&self) -> bool {
            self.held.is_none() && self.next == self.total
        }
    }

    #[test]
    fn a_sender_parked_on_a_full_queue_is_woken_when_room_appears() {
        let (r0, _r1, e0, e1) = two_ends::<u32>(2);
        let sender_wake = r0.wake_handle();
        const TOTAL: u32 = 200;
        let flood = Flood {
            end: e0,
            next: 0,
            total: TOTAL,
            held: None,
            fulls: 0,
        };
        let sending = thread::spawn(move || run_within(r0, flood, Duration::from_secs(5)));
        // A slow receiver: the sender fills the queue and parks each time.
        let start = Instant::now();
        let mut got = Vec::new();
        while got.len() < TOTAL as usize {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "stalled at {}",
                got.len()
            );
            thread::sleep(Duration::from_micros(200));
            e1.drain(0, 1, |m| got.push(m));
        }
        let flood = sending.join().expect("sender");
        assert_eq!(got, (0..TOTAL).collect::<Vec<_>>());
        assert!(flood.fulls > 0, "the queue never filled");
        assert!(sender_wake.wake_count() > 0, "the sender was never woken");
    }
}
