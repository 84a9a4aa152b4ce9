//! The mesh: one bounded SPSC queue per ordered pair of shards, and the
//! [`ShardMsg`] enum, the only thing that crosses cores.
//!
//! Messages are batched: a shard gathers what it has for each peer during
//! one processing step (a read from a client, a batch from a peer) and sends
//! it as one `Vec` at the end of the step, so a burst costs one queue slot
//! and at most one wake-up of the peer. When a peer's queue is full the
//! batch waits in the outbox and a flusher task sends it when space frees;
//! past [`MESH_OUTBOX_LIMIT`] connections stop reading (backpressure).
//!
//! This module is the only one that knows which channel type is used.

mod message;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::task::{Poll, Waker};

pub use message::{Handover, Message, Origin, ShardMsg};

use crate::index::ShardSet;
use crate::limits::{MESH_BATCH, MESH_CAPACITY, MESH_OUTBOX_LIMIT};
use crate::runtime::channel::{
    full_mesh, try_send_to, ConnectedReceiver, Full, MeshBuilder as RtMeshBuilder, Senders,
    TrySendError,
};

/// What travels on one queue: a batch of messages in order.
pub type Batch = Vec<ShardMsg>;

/// The builder every shard joins at start; clone one per shard.
pub type MeshBuilder = RtMeshBuilder<Batch, Full>;

/// A shard's end of the mesh and its receivers (peer id, queue).
pub type Joined = (Rc<Mesh>, Vec<(usize, ConnectedReceiver<Batch>)>);

/// The builder every shard joins at start; clone one per shard.
pub fn builder(shards: usize) -> MeshBuilder {
    full_mesh(shards, MESH_CAPACITY)
}

/// One shard's end of the mesh: senders to every peer and the outboxes.
/// Shard-local (`Rc`); the queues themselves are the only shared part.
pub struct Mesh {
    me: usize,
    peers: usize,
    senders: Senders<Batch>,
    /// Messages gathered per peer, not yet handed to the queue.
    outbox: RefCell<Vec<Batch>>,
    /// Total messages across outboxes (the backpressure measure).
    queued: Cell<usize>,
    /// Peers whose flusher task is waiting for queue space.
    flushing: Cell<ShardSet>,
    /// Connection tasks waiting for the outboxes to drain.
    waiters: RefCell<Vec<Waker>>,
}

impl Mesh {
    /// Joins the mesh; returns this shard's end and its receivers
    /// (peer id, queue).
    pub async fn join(builder: MeshBuilder) -> std::io::Result<Joined> {
        let (senders, mut receivers) = builder
            .join()
            .await
            .map_err(|e| std::io::Error::other(format!("joining the shard mesh: {e:?}")))?;
        let me = senders.peer_id();
        let peers = senders.nr_consumers();
        let mesh = Mesh {
            me,
            peers,
            senders,
            outbox: RefCell::new((0..peers).map(|_| Vec::new()).collect()),
            queued: Cell::new(0),
            flushing: Cell::new(ShardSet::default()),
            waiters: RefCell::new(Vec::new()),
        };
        Ok((Rc::new(mesh), receivers.streams()))
    }

    /// This shard's id.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Number of shards in the mesh, this one included.
    pub fn peers(&self) -> usize {
        self.peers
    }

    /// Ids of every other shard.
    pub fn others(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.peers).filter(move |p| *p != self.me)
    }

    /// Queues `msg` for `peer`; sent at the next [`Mesh::flush`] or when the
    /// batch is full.
    pub fn send(self: &Rc<Self>, peer: usize, msg: ShardMsg) {
        debug_assert!(peer != self.me && peer < self.peers);
        let full = {
            let mut outbox = self.outbox.borrow_mut();
            outbox[peer].push(msg);
            outbox[peer].len() >= MESH_BATCH
        };
        self.queued.set(self.queued.get() + 1);
        if full {
            self.flush_peer(peer);
        }
    }

    /// Queues the message `make` builds for every other shard.
    pub fn broadcast(self: &Rc<Self>, make: impl Fn() -> ShardMsg) {
        for peer in self.others() {
            self.send(peer, make());
        }
    }

    /// Hands every non-empty outbox to its queue (end of a processing step).
    pub fn flush(self: &Rc<Self>) {
        if self.queued.get() == 0 {
            return;
        }
        for peer in self.others() {
            self.flush_peer(peer);
        }
    }

    fn flush_peer(self: &Rc<Self>, peer: usize) {
        if self.flushing.get().contains(peer) {
            return; // the flusher task sends it, in order
        }
        let batch = std::mem::take(&mut self.outbox.borrow_mut()[peer]);
        if batch.is_empty() {
            return;
        }
        let n = batch.len();
        match try_send_to(&self.senders, peer, batch) {
            Ok(()) | Err(TrySendError::Closed(_)) => self.sent(n),
            Err(TrySendError::Full(batch)) => {
                self.outbox.borrow_mut()[peer].splice(0..0, batch);
                self.start_flusher(peer);
            }
        }
    }

    /// Waits for queue space to `peer` and sends its outbox until empty.
    fn start_flusher(self: &Rc<Self>, peer: usize) {
        let mut set = self.flushing.get();
        set.insert(peer);
        self.flushing.set(set);
        let mesh = Rc::clone(self);
        crate::runtime::spawn(async move {
            loop {
                let batch = std::mem::take(&mut mesh.outbox.borrow_mut()[peer]);
                if batch.is_empty() {
                    break;
                }
                let n = batch.len();
                if mesh.senders.send_to(peer, batch).await.is_err() {
                    // The peer is gone (shutdown): nothing left to deliver to.
                    mesh.sent(n);
                    break;
                }
                mesh.sent(n);
            }
            let mut set = ShardSet::default();
            for p in mesh.flushing.get().iter().filter(|p| *p != peer) {
                set.insert(p);
            }
            mesh.flushing.set(set);
        });
    }

    fn sent(&self, n: usize) {
        self.queued.set(self.queued.get() - n);
        if self.queued.get() <= MESH_OUTBOX_LIMIT / 2 {
            for w in self.waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// True when readers should pause until the outboxes drain.
    pub fn congested(&self) -> bool {
        self.queued.get() > MESH_OUTBOX_LIMIT
    }

    /// Ready when not congested; otherwise registers the waker.
    pub fn poll_uncongested(&self, waker: &Waker) -> Poll<()> {
        if !self.congested() {
            return Poll::Ready(());
        }
        self.waiters.borrow_mut().push(waker.clone());
        Poll::Pending
    }
}
