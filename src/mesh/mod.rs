//! The mesh: one bounded SPSC queue per ordered pair of shards, and the
//! [`ShardMsg`] enum, the only thing that crosses cores.
//!
//! Messages are batched: a shard gathers what it has for each peer during
//! one loop turn (reads from clients, batches from peers) and sends it as
//! one `Vec` at the end of the turn, so a burst costs one queue slot and at
//! most one wake-up of the peer, and none if the peer is busy. When a
//! peer's queue is full the batch waits in the outbox and is retried when
//! the peer takes from the queue; past [`MESH_OUTBOX_LIMIT`] connections
//! stop reading (backpressure).
//!
//! Only this module and `runtime::spsc` (the queues and their wake-ups)
//! know which channel type is used.

mod message;

use std::cell::{Cell, RefCell};
use std::sync::Arc;

pub use message::{Handover, Message, Origin, Publisher, ShardMsg, SharedDelivery};

use crate::index::{Group, Pick, RetainStamp, RetainedStore, ShardSet, SharedIndex, SubTrie};
use crate::limits::{MESH_BATCH, MESH_DRAIN, MESH_OUTBOX_LIMIT};
use crate::protocol::TopicFilter;
use crate::runtime::{MeshEnd, TrySendError};

/// What travels on one queue: a batch of messages in order.
pub type Batch = Vec<ShardMsg>;

/// One shard's end of the mesh: its queues to and from every peer, and the
/// outboxes that batch what it sends. Shard-local; the queues themselves
/// are the only shared part.
pub struct Mesh {
    end: MeshEnd<Batch>,
    /// Data shards are peers `0..shards`; the bridge thread, when there
    /// is one, is the last peer.
    shards: usize,
    /// Messages gathered per peer, not yet handed to the queue. A batch
    /// that found the queue full stays here (in order) and is retried from
    /// the loop's pending work; the peer wakes us when it takes from it.
    outbox: RefCell<Vec<Batch>>,
    /// Total messages across outboxes (the backpressure measure).
    queued: Cell<usize>,
    /// Messages queued for peers so far (a counter for the statistics).
    sent: Cell<u64>,
}

impl Mesh {
    /// Wraps this thread's end of the queues; peers `0..shards` are data
    /// shards, any peer after them is the bridge thread.
    pub fn new(end: MeshEnd<Batch>, shards: usize) -> Mesh {
        let peers = end.peers();
        assert!(
            (1..=peers).contains(&shards),
            "a mesh of {peers} peers cannot hold {shards} data shards"
        );
        Mesh {
            end,
            shards,
            outbox: RefCell::new((0..peers).map(|_| Vec::new()).collect()),
            queued: Cell::new(0),
            sent: Cell::new(0),
        }
    }

    /// This shard's id.
    pub fn me(&self) -> usize {
        self.end.me()
    }

    /// Number of threads in the mesh, this one included: the data shards
    /// and the bridge thread.
    pub fn peers(&self) -> usize {
        self.end.peers()
    }

    /// Number of data shards (the ones that own sessions).
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The bridge thread's peer id, if the mesh has one.
    pub fn bridge(&self) -> Option<usize> {
        (self.peers() > self.shards).then_some(self.shards)
    }

    /// Ids of every other peer (data shards and the bridge thread): who a
    /// replica update or barrier goes to.
    pub fn others(&self) -> impl Iterator<Item = usize> + '_ {
        self.end.others()
    }

    /// Queues `msg` for `peer`; sent at the next [`Mesh::flush`] or when the
    /// batch is full.
    pub fn send(&self, peer: usize, msg: ShardMsg) {
        debug_assert!(peer != self.me() && peer < self.peers());
        let full = {
            let mut outbox = self.outbox.borrow_mut();
            outbox[peer].push(msg);
            outbox[peer].len() >= MESH_BATCH
        };
        self.queued.set(self.queued.get() + 1);
        self.sent.set(self.sent.get() + 1);
        if full {
            self.flush_peer(peer);
        }
    }

    /// Queues the message `make` builds for every other shard.
    pub fn broadcast(&self, make: impl Fn() -> ShardMsg) {
        for peer in self.others() {
            self.send(peer, make());
        }
    }

    /// Sends `msg` once to every peer the replica says has a matching
    /// filter (never once per filter or subscriber); returns which.
    pub fn forward(&self, replica: &SubTrie<usize, ()>, msg: &Arc<Message>) -> ShardSet {
        let mut peers = ShardSet::default();
        replica.for_each_match(msg.publish.topic.as_str(), |p, _| peers.insert(*p));
        for peer in peers.iter() {
            self.send(peer, ShardMsg::Forward(Arc::clone(msg)));
        }
        peers
    }

    /// For every shared subscription group `msg` matches, sends it to the
    /// shard `shared` picks; `picked` is told each group and its pick (a
    /// [`Pick::Local`] one is the caller's to deliver). Returns how many
    /// groups matched.
    pub fn share<K: PartialEq + Copy, V>(
        &self,
        shared: &SharedIndex<K, V>,
        msg: &Arc<Message>,
        mut picked: impl FnMut(&Group<K, V>, Pick) -> Option<(u16, u64)>,
    ) -> usize {
        shared.pick(msg.publish.topic.as_str(), |group, pick| {
            let ticket = picked(group, pick);
            if let Pick::Shard(peer) = pick {
                let name = TopicFilter::clone(group.name());
                let mut d = SharedDelivery::new(Arc::clone(msg), name);
                d.ticket = ticket;
                self.send(peer, ShardMsg::Shared(Box::new(d)));
            }
        })
    }

    /// Applies a retained update of `msg` to this thread's `store` with
    /// `stamp`, and sends it to every other peer's replica.
    pub fn retain(
        &self,
        store: &mut RetainedStore<Arc<Message>>,
        msg: &Arc<Message>,
        stamp: RetainStamp,
    ) {
        let value = (!msg.publish.payload.is_empty()).then(|| Arc::clone(msg));
        let topic = &msg.publish.topic;
        store.apply(topic.as_str(), stamp, value.clone());
        self.broadcast(|| ShardMsg::Retain {
            topic: topic.clone(),
            stamp,
            message: value.clone(),
        });
    }

    /// Hands every non-empty outbox to its queue (end of a loop turn, and
    /// retries from the pending work); true if something was sent.
    pub fn flush(&self) -> bool {
        if self.queued.get() == 0 {
            return false;
        }
        let before = self.queued.get();
        for peer in self.others() {
            self.flush_peer(peer);
        }
        self.queued.get() < before
    }

    fn flush_peer(&self, peer: usize) {
        let batch = std::mem::take(&mut self.outbox.borrow_mut()[peer]);
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        match self.end.try_send(peer, batch) {
            Ok(()) | Err(TrySendError::Closed(_)) => self.queued.set(self.queued.get() - n),
            Err(TrySendError::Full(batch)) => {
                // Keep order: what was queued meanwhile goes after it.
                let mut outbox = self.outbox.borrow_mut();
                let later = std::mem::replace(&mut outbox[peer], batch);
                outbox[peer].extend(later);
            }
        }
    }

    /// True once every data shard (other than this one) has closed its end
    /// and everything it sent was taken: the shards have stopped.
    pub fn shards_closed(&self) -> bool {
        (0..self.shards).all(|peer| peer == self.me() || self.end.is_closed(peer))
    }

    /// Messages in the outboxes now, not yet taken by a queue.
    pub fn queued(&self) -> usize {
        self.queued.get()
    }

    /// Messages queued for peers since the start.
    pub fn sent(&self) -> u64 {
        self.sent.get()
    }

    /// True when readers should pause until the outboxes drain.
    pub fn congested(&self) -> bool {
        self.queued.get() > MESH_OUTBOX_LIMIT
    }

    /// Takes up to [`MESH_DRAIN`] batches from every peer, in order per
    /// peer, handing each message to `f`; returns how many batches.
    pub fn receive(&self, mut f: impl FnMut(usize, ShardMsg)) -> usize {
        let mut n = 0;
        for peer in self.others() {
            n += self.end.drain(peer, MESH_DRAIN, |batch| {
                for msg in batch {
                    f(peer, msg);
                }
            });
        }
        n
    }
}
