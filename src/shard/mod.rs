//! A shard: one core's share of the broker.
//!
//! Owns, without locks and without sharing: the connections it accepted or
//! adopted, the sessions homed on it, its local subscription trie, its
//! replica of the other shards' filters, its replica of the retained store,
//! and its end of the mesh. Everything here is `!Send` (`Rc`, `RefCell`), so
//! the compiler keeps it on its core.
//!
//! - [`listener`]: accept loop with back-off.
//! - [`connect`]: CONNECT, home-shard hand-over, takeover, CONNACK.
//! - [`handler`]: the per-connection packet loop after CONNECT.
//! - [`route`]: publish routing, fan-out, retained, subscriptions, mesh input.
//! - [`session`]: session state and the outbound QoS window.
//! - [`conn`]: the connection's shared state and I/O loop.
//! - [`keepalive`]: per-second keepalive buckets.
//!
//! Session placement: every client id has a home shard,
//! `hash(client_id) % shards`. A connection accepted elsewhere is handed to
//! its home shard (socket fd, CONNECT and leftover bytes over the mesh)
//! before anything else happens, so a session is only ever touched by one
//! shard and a takeover is always local to it.

mod conn;
mod connect;
mod encode;
mod handler;
mod keepalive;
mod listener;
mod partial;
mod route;
mod session;
mod signal;
mod stats;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use ahash::RandomState;
use bytes::BytesMut;

pub use stats::{Stats, StatsCell, StatsSnapshot};

use self::conn::{CloseReason, ConnShared};
use self::keepalive::Keepalive;
use self::session::{QueueLimits, Session, SessionId};
use self::signal::Signal;
use crate::config::Config;
use crate::index::{RetainStamp, RetainedStore, SubTrie};
use crate::limits::{READ_CHUNK, SHUTDOWN_FLUSH, TICK, WILLS_WAIT};
use crate::mesh::{Batch, Mesh, Message};
use crate::protocol::{SubscriptionOptions, TopicFilter};
use crate::runtime::channel::ConnectedReceiver;
use crate::runtime::net::TcpListener;

/// The shard that owns the session of `client_id` among `shards` shards
/// (FNV-1a of the id: stable across shards, runs and machines).
pub fn home_shard(client_id: &str, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in client_id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards as u64) as usize
}

/// What a shard shares with the control plane (the owner of the broker).
pub struct Control {
    /// Set to stop the broker; every shard checks it on its tick.
    pub stop: Arc<AtomicBool>,
    /// This shard's published counters.
    pub stats: Arc<StatsCell>,
}

/// The session table of a shard.
#[derive(Default)]
struct Sessions {
    /// Boxed: the table then holds pointers, not 300-byte sessions at a
    /// 7/8 load factor.
    by_id: HashMap<SessionId, Box<Session>, RandomState>,
    by_client: HashMap<Rc<str>, SessionId, RandomState>,
}

/// One core's broker state. Shard-local; never crosses the mesh.
pub struct Shard {
    pub id: usize,
    pub config: Config,
    pub mesh: Rc<Mesh>,
    /// The shard-wide read buffer every connection reads into.
    read_buf: RefCell<BytesMut>,
    started: Instant,
    sessions: RefCell<Sessions>,
    next_session: Cell<SessionId>,
    /// Local subscriptions: filter -> (session, options).
    local: RefCell<SubTrie<SessionId, SubscriptionOptions>>,
    /// Local subscription count per filter; 0 -> 1 and 1 -> 0 are broadcast.
    filter_counts: RefCell<HashMap<TopicFilter, u32, RandomState>>,
    /// Replica of the other shards' filters: filter -> shard.
    replica: RefCell<SubTrie<usize, ()>>,
    retained: RefCell<RetainedStore<Arc<Message>>>,
    last_stamp: Cell<u64>,
    keepalive: RefCell<Keepalive>,
    /// Offline sessions by the shard-clock second their expiry falls due.
    expiries: RefCell<std::collections::BTreeMap<u64, Vec<SessionId>>>,
    /// Barrier token -> (acks still missing, waiting task).
    barriers: RefCell<HashMap<u64, (usize, Option<Waker>), RandomState>>,
    next_barrier: Cell<u64>,
    /// Connections written to during this step, flushed at its end.
    dirty: RefCell<Vec<Rc<ConnShared>>>,
    /// Scratch for fan-out matches, reused.
    matches: RefCell<Vec<(SessionId, SubscriptionOptions)>>,
    queue_limits: QueueLimits,
    connections: Cell<usize>,
    /// This shard's share of `max_connections`.
    conn_quota: usize,
    pub stats: Stats,
    /// Control plane: set by the owner of the broker to stop it.
    stop: Arc<AtomicBool>,
    /// Control plane: where this shard publishes its counters each tick.
    published: Arc<StatsCell>,
    /// Raised when the shard starts shutting down.
    closing: Signal,
    /// Peers that reported `WillsSent` during shutdown.
    wills_from: Cell<usize>,
    /// The shutdown sequence waiting for `WillsSent` from every peer.
    wills_waker: RefCell<Option<Waker>>,
    /// Shard-local pseudo-random state (assigned client ids).
    rng: Cell<u64>,
}

impl Shard {
    fn new(config: Config, mesh: Rc<Mesh>, control: Control) -> Shard {
        let shards = mesh.peers();
        let conn_quota = config
            .max_connections
            .map_or(usize::MAX, |m| m.div_ceil(shards));
        let queue_limits = QueueLimits {
            max_messages: config.max_queued_messages,
            max_bytes: config.max_queued_bytes,
            queue_qos0: config.queue_qos0_messages,
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Shard {
            id: mesh.me(),
            config,
            read_buf: RefCell::new(BytesMut::with_capacity(READ_CHUNK)),
            started: Instant::now(),
            sessions: RefCell::default(),
            next_session: Cell::new(1),
            local: RefCell::default(),
            filter_counts: RefCell::default(),
            replica: RefCell::default(),
            retained: RefCell::default(),
            last_stamp: Cell::new(0),
            keepalive: RefCell::default(),
            expiries: RefCell::default(),
            barriers: RefCell::default(),
            next_barrier: Cell::new(1),
            dirty: RefCell::default(),
            matches: RefCell::default(),
            queue_limits,
            connections: Cell::new(0),
            conn_quota,
            stats: Stats::default(),
            stop: control.stop,
            published: control.stats,
            closing: Signal::default(),
            wills_from: Cell::new(0),
            wills_waker: RefCell::new(None),
            rng: Cell::new(seed ^ (mesh.me() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            mesh,
        }
    }

    /// Runs a shard on the current executor until the stop flag is set and
    /// the shutdown sequence has finished.
    pub async fn run(
        config: Config,
        mesh: Rc<Mesh>,
        receivers: Vec<(usize, ConnectedReceiver<Batch>)>,
        listeners: Vec<TcpListener>,
        control: Control,
    ) {
        let shard = Rc::new(Shard::new(config, mesh, control));
        for (peer, rx) in receivers {
            crate::runtime::spawn(route::mesh_receiver(Rc::clone(&shard), peer, rx));
        }
        for listener in listeners {
            crate::runtime::spawn(listener::accept_loop(Rc::clone(&shard), listener));
        }
        shard.tick_loop().await;
    }

    /// Seconds since the shard started (the keepalive and expiry clock).
    pub fn now(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The home shard of a client id.
    pub fn home_of(&self, client_id: &str) -> usize {
        home_shard(client_id, self.mesh.peers())
    }

    fn random(&self) -> u64 {
        let mut x = self.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.set(x);
        x
    }

    /// A strictly increasing retained-update stamp.
    fn next_stamp(&self) -> RetainStamp {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let nanos = wall.max(self.last_stamp.get() + 1);
        self.last_stamp.set(nanos);
        RetainStamp {
            nanos,
            shard: self.id as u16,
        }
    }

    /// Files `conn` for the end-of-step flush.
    fn mark_dirty(&self, conn: &Rc<ConnShared>) {
        if conn.mark_dirty() {
            self.dirty.borrow_mut().push(Rc::clone(conn));
        }
    }

    /// End of a processing step: hand batches to the mesh and wake every
    /// connection with new output so its task writes it.
    pub fn end_step(self: &Rc<Self>) {
        self.mesh.flush();
        let dirty = std::mem::take(&mut *self.dirty.borrow_mut());
        for conn in &dirty {
            conn.clear_dirty();
            conn.wake();
        }
        let mut slot = self.dirty.borrow_mut();
        if slot.is_empty() {
            *slot = dirty;
            slot.clear();
        }
    }

    async fn tick_loop(self: &Rc<Self>) {
        let mut last_second = 0;
        loop {
            crate::runtime::time::sleep(TICK).await;
            self.publish_stats();
            if self.stop.load(Ordering::Relaxed) {
                self.shutdown().await;
                self.publish_stats();
                return;
            }
            let now = self.now();
            if now != last_second {
                last_second = now;
                self.keepalive.borrow_mut().check(now);
                self.expire_sessions(now);
                if now % 60 == 0 {
                    let cutoff = self.next_stamp().nanos.saturating_sub(60_000_000_000);
                    self.retained.borrow_mut().purge_tombstones(RetainStamp {
                        nanos: cutoff,
                        shard: 0,
                    });
                }
            }
        }
    }

    fn publish_stats(&self) {
        let sessions = self.sessions.borrow().by_id.len();
        self.published
            .publish(&self.stats.snapshot(self.connections.get(), sessions));
    }

    /// Ends offline sessions whose expiry passed.
    ///
    /// Only the sessions filed under a second that is due are looked at (a
    /// scan of every session each second would stall a shard that holds
    /// many). An entry is stale if the client came back since it was filed.
    fn expire_sessions(self: &Rc<Self>, now: u64) {
        let mut due = Vec::new();
        {
            let mut expiries = self.expiries.borrow_mut();
            while let Some(entry) = expiries.first_entry() {
                if *entry.key() > now {
                    break;
                }
                due.extend(entry.remove());
            }
        }
        let expired: Vec<SessionId> = {
            let sessions = self.sessions.borrow();
            due.into_iter()
                .filter(|sid| {
                    sessions.by_id.get(sid).is_some_and(|s| {
                        s.offline_since.is_some_and(|t| {
                            s.expiry != session::NEVER_EXPIRES && t + u64::from(s.expiry) <= now
                        })
                    })
                })
                .collect()
        };
        if expired.is_empty() {
            return;
        }
        for sid in expired {
            self.end_session(sid);
        }
        self.end_step();
    }

    /// Shutdown: stop accepting, publish every will, wait until every peer
    /// has too (so wills reach subscribers everywhere), then close every
    /// connection (5.0 clients get DISCONNECT 0x8B) and return.
    async fn shutdown(self: &Rc<Self>) {
        self.closing.raise();
        let online: Vec<SessionId> = self
            .sessions
            .borrow()
            .by_id
            .values()
            .filter(|s| s.conn.is_some())
            .map(|s| s.id)
            .collect();
        for sid in online {
            let will = self
                .sessions
                .borrow_mut()
                .by_id
                .get_mut(&sid)
                .and_then(|s| s.will.take());
            if let Some(will) = will {
                self.publish_will(sid, will);
            }
        }
        self.mesh.broadcast(|| crate::mesh::ShardMsg::WillsSent);
        self.end_step();
        let peers = self.mesh.peers() - 1;
        let all_wills = std::future::poll_fn(|cx| {
            if self.wills_from.get() >= peers {
                return std::task::Poll::Ready(());
            }
            *self.wills_waker.borrow_mut() = Some(cx.waker().clone());
            std::task::Poll::Pending
        });
        crate::runtime::time::timeout(WILLS_WAIT, all_wills).await;
        for s in self.sessions.borrow().by_id.values() {
            if let Some(conn) = &s.conn {
                conn.close(CloseReason::ServerShuttingDown);
            }
        }
        let deadline = Instant::now() + SHUTDOWN_FLUSH + Duration::from_millis(500);
        while self.connections.get() > 0 && Instant::now() < deadline {
            crate::runtime::time::sleep(Duration::from_millis(10)).await;
        }
        self.mesh.flush();
    }
}
