//! A shard: one core's share of the broker.
//!
//! Owns, without locks and without sharing: the connections it accepted or
//! adopted, the sessions homed on it, its local subscription trie, its
//! replica of the other shards' filters, its replica of the retained store,
//! and its end of the mesh. Everything here is `!Send` (`Rc`, `RefCell`), so
//! the compiler keeps it on its core.
//!
//! - [`driver`]: the shard as the readiness loop's [`Driver`]: what each turn does.
//! - [`io`]: a connection's reads, flushes and teardown.
//! - [`listener`]: accepting, with back-off.
//! - [`connect`]: CONNECT, home-shard hand-over, CONNACK.
//! - [`verify`]: a CONNECT's password checked on a verifier thread.
//! - [`lifecycle`]: a session created, resumed, taken over, offline, ended.
//! - [`handler`]: the packets of an attached connection.
//! - [`reload`]: SIGHUP: the settings every shard swaps live.
//! - [`access`]: ACL checks (publish, will, subscribe, every delivery) against the shard's copy of the rules.
//! - [`route`]: publish routing, fan-out, retained updates.
//! - [`pressure`]: end-to-end backpressure: a subscriber past its queue limits pauses its publishers; slow consumers cut.
//! - [`share`]: shared subscriptions: a member per group, across shards.
//! - [`subscribe`]: SUBSCRIBE (a pending barrier), UNSUBSCRIBE, retained delivery.
//! - [`inbox`]: what arrives over the mesh.
//! - [`sys`]: the `$SYS` tree shard 0 publishes every `sys_interval`, and
//!   [`Shard::publish_broker_message`], how the broker publishes a message of its own.
//! - [`timers`]: deadlines (tick, CONNECT, closing, barriers, delayed wills) and shutdown.
//! - [`session`]: session state and the outbound QoS window.
//! - [`durable`]: the shard's journal: what it appends, the acknowledgements that wait for it, recovery.
//! - [`compaction`]: the journal's compaction, its snapshot taken in slices over loop turns.
//! - [`store`]: the running total of the messages sessions' queues hold (`store/messages/*`).
//! - [`conn`]: a connection's shared state and its slab entry.
//! - [`alias`]: a connection's MQTT 5.0 topic aliases, both ways.
//! - [`auth`]: MQTT 5.0 enhanced authentication: the plug-in API
//!   ([`auth::AuthMethod`]) and the AUTH exchange.
//! - [`mount`]: a listener's `mount_point` on topics and filters.
//! - [`keepalive`]: per-second keepalive buckets.
//! - [`will`]: a session's will, kept small while its connection lives, held
//!   back for its Will Delay Interval after.
//!
//! Session placement: every client id has a home shard,
//! `hash(client_id) % shards`. A connection accepted elsewhere is handed to
//! its home shard (socket fd, CONNECT and leftover bytes over the mesh)
//! before anything else happens, so a session is only ever touched by one
//! shard and a takeover is always local to it.

mod access;
mod alias;
pub mod auth;
mod compaction;
mod conn;
mod connect;
mod driver;
mod durable;
mod encode;
mod handler;
mod inbox;
mod io;
mod keepalive;
mod lifecycle;
mod listener;
mod log_lines;
mod mount;
mod partial;
mod pressure;
mod reload;
mod route;
mod session;
mod share;
mod stats;
mod store;
mod subscribe;
mod sys;
mod timers;
mod verify;
mod will;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::RandomState;
use bytes::BytesMut;
use slab::Slab;

pub use driver::ShardLoop;
pub use listener::{tls_config, tls_configs, ListenerLoad, ListenerTlsConfigs};
pub(crate) use pressure::Pressing;
pub use reload::{Reload, ReloadBoard};
pub use stats::{Gauges, Stats, StatsCell, StatsSnapshot};

use self::access::AclState;
use self::conn::{CloseReason, Conn, ConnShared};
use self::durable::Durable;
pub use self::durable::{DurableBoot, Recovered as DurableRecovered};
use self::keepalive::Keepalive;
use self::listener::ListenerSettings;
use self::session::{QueueLimits, Session, SessionId};
use self::subscribe::{PendingSubscribe, RetainedJob, Subscription};
use self::timers::{Deadlines, Stopping};
use crate::config::{Config, OverloadPolicy};
use crate::index::{RetainStamp, RetainedStore, SharedIndex, SubTrie};
use crate::limits::READ_CHUNK;
use crate::mesh::{Mesh, Message};
use crate::protocol::TopicFilter;
use crate::runtime::{Listener, Registrar};
use crate::security::AclTable;

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
    /// Set to stop the broker; every shard checks it each turn.
    pub stop: Arc<AtomicBool>,
    /// This shard's published counters.
    pub stats: Arc<StatsCell>,
    /// Every shard's published counters, by shard id (shard 0 builds
    /// `$SYS` from them).
    pub all_stats: Arc<[Arc<StatsCell>]>,
    /// This shard's published latency histograms (recorded only with a
    /// `metrics_listener`).
    pub histograms: Arc<crate::metrics::ShardHistograms>,
    /// The enhanced authentication methods clients may name.
    pub auth: auth::AuthMethods,
    /// Where the control plane posts reloads (shared by every shard).
    pub reload: Arc<ReloadBoard>,
    /// This shard's journal and recovered state, when persistence is on.
    pub durable: Option<DurableBoot>,
    /// Connections open per listener, over every shard.
    pub listener_load: Arc<ListenerLoad>,
    /// The ACL rules at start (read once by the control plane).
    pub acl: AclTable,
    /// Each listener's password file, as loaded at start.
    pub passwords: crate::password::ListenerPasswords,
    /// This shard's line to the password verifier threads.
    pub verifier: crate::password::VerifierLine,
    /// Each listener's TLS configuration at start (shared by every shard).
    pub tls: ListenerTlsConfigs,
}

/// The session table of a shard.
#[derive(Default)]
struct Sessions {
    /// Boxed: the table then holds pointers, not whole sessions at a 7/8
    /// load factor.
    by_id: HashMap<SessionId, Box<Session>, RandomState>,
    by_client: HashMap<Rc<str>, SessionId, RandomState>,
}

/// One core's broker state. Shard-local (`Rc`, `RefCell`: `!Send`); never
/// crosses the mesh. Driven by its thread's readiness loop ([`ShardLoop`]).
pub struct Shard {
    pub id: usize,
    pub config: Config,
    pub mesh: Mesh,
    /// Registers sockets with this shard's readiness loop.
    registrar: Registrar,
    /// This shard's accepting sockets (token `LISTENER_TOKEN - i`); emptied
    /// when shutdown begins.
    listeners: RefCell<Vec<Listener>>,
    /// Each listener's port, read once: an accepted socket's local port
    /// (for the "New connection" line) without a `getsockname` each.
    listener_ports: Vec<Option<u16>>,
    /// Connections, by token. Each is a state machine (see [`conn::Conn`]).
    conns: RefCell<Slab<Conn>>,
    next_serial: Cell<u32>,
    /// The shard-wide read buffer every connection reads into.
    read_buf: RefCell<BytesMut>,
    started: Instant,
    /// When the current turn's wait ended: the shard's clock for the turn
    /// (keepalive, expiry), so that a packet does not read the time.
    clock: Cell<Instant>,
    sessions: RefCell<Sessions>,
    next_session: Cell<SessionId>,
    /// Local subscriptions: filter -> (session, options and identifier).
    local: RefCell<SubTrie<SessionId, Subscription>>,
    /// Local subscription count per filter; 0 -> 1 and 1 -> 0 are broadcast.
    filter_counts: RefCell<HashMap<TopicFilter, u32, RandomState>>,
    /// Subscriptions of the sessions here, shared ones included (the sum
    /// of `filter_counts`, kept as it changes).
    subscriptions: Cell<usize>,
    /// Replica of the other shards' filters: filter -> shard.
    replica: RefCell<SubTrie<usize, ()>>,
    /// Shared subscription groups: this shard's members, every shard's
    /// member count.
    shared: RefCell<SharedIndex<SessionId, Subscription>>,
    retained: RefCell<RetainedStore<Arc<Message>>>,
    last_stamp: Cell<u64>,
    keepalive: RefCell<Keepalive>,
    /// Offline sessions by the shard-clock second their expiry falls due.
    expiries: RefCell<BTreeMap<u64, Vec<SessionId>>>,
    /// SUBSCRIBEs waiting for every peer's barrier answer, by token.
    barriers: RefCell<HashMap<u64, PendingSubscribe, RandomState>>,
    next_barrier: Cell<u64>,
    /// Retained messages still to deliver after SUBACKs, a chunk per round.
    retained_jobs: RefCell<VecDeque<RetainedJob>>,
    /// Connections written to (or asked to close) this turn.
    dirty: RefCell<Vec<Rc<ConnShared>>>,
    /// Connections with input left to read or process (a read budget ran
    /// out, a barrier completed, the mesh decongested).
    again: RefCell<Vec<usize>>,
    /// Connections that stopped reading while the mesh was congested.
    stalled: RefCell<Vec<usize>>,
    /// Listeners that may have more connections waiting.
    accept_again: Cell<bool>,
    /// Accepting is paused until then after an error (EMFILE...).
    accept_paused: Cell<Option<Instant>>,
    accept_backoff: Cell<Duration>,
    /// Timed waits: the tick, CONNECT timeouts, closing flushes, barriers.
    deadlines: RefCell<Deadlines>,
    /// Where shutdown is.
    stopping: Cell<Stopping>,
    /// Scratch for fan-out matches, reused.
    matches: RefCell<Vec<(SessionId, Subscription)>>,
    queue_limits: QueueLimits,
    /// Backpressure: subscribers here holding publishers back, and
    /// publishers here held back (see `pressure`).
    pressure: RefCell<pressure::Pressure>,
    /// Per listener, indexed like `Config::listeners` (never empty);
    /// swapped by a reload.
    listener_settings: RefCell<Vec<Rc<ListenerSettings>>>,
    /// Control plane: where reloads are posted.
    reload: Arc<ReloadBoard>,
    /// The ACL rules this shard enforces; swapped by a reload.
    acl: RefCell<AclState>,
    /// Connections attached to sessions here.
    connections: Cell<usize>,
    /// Control plane: connections open per listener, over every shard
    /// (each listener's `max_connections`).
    listener_load: Arc<ListenerLoad>,
    pub stats: Stats,
    /// Control plane: set by the owner of the broker to stop it.
    stop: Arc<AtomicBool>,
    /// Control plane: where this shard publishes its counters each tick.
    published: Arc<StatsCell>,
    /// The turn's clock, the longest turn, and the latency histograms.
    latency: crate::metrics::Latency,
    /// Control plane: where this shard publishes its histograms each tick.
    histograms: Arc<crate::metrics::ShardHistograms>,
    /// The `$SYS` tree: shard 0's only (idle while `sys_interval` is 0).
    sys: Option<RefCell<sys::SysTree>>,
    /// Peers that reported `WillsSent` during shutdown.
    wills_from: Cell<usize>,
    /// Shard-local pseudo-random state (assigned client ids).
    rng: Cell<u64>,
    /// The journal, when persistence is on.
    durable: Option<Rc<Durable>>,
    /// The enhanced authentication methods clients may name (shared with
    /// every shard; each exchange's state is this shard's).
    auth: auth::AuthMethods,
    /// Where password checks go, and their verdicts come back from.
    verifier: crate::password::VerifierLine,
}

impl Shard {
    /// A shard with no connections yet, on the thread that will run it.
    pub fn new(
        config: Config,
        mesh: Mesh,
        registrar: Registrar,
        listeners: Vec<Listener>,
        control: Control,
    ) -> Rc<Shard> {
        let queue_limits = QueueLimits {
            max_messages: config.max_queued_messages,
            max_bytes: config.max_queued_bytes,
            queue_qos0: config.queue_qos0_messages,
            max_inflight_bytes: config.max_inflight_bytes,
            backpressure: config.overload_policy == OverloadPolicy::Backpressure,
        };
        let listener_settings = ListenerSettings::all(&config, &control.passwords, &control.tls)
            .into_iter()
            .map(Rc::new)
            .collect();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let id = mesh.me();
        let strategy = config.shared_subscription_strategy;
        let acl = AclState::new(control.acl, config.check_retain_source);
        let started = Instant::now();
        // Shard 0 keeps the tree even while `sys_interval` is 0: a reload
        // may set one.
        let sys = (id == 0).then(|| {
            RefCell::new(sys::SysTree::new(
                config.sys_interval,
                started,
                control.all_stats,
            ))
        });
        let latency = crate::metrics::Latency::new(config.metrics_listener.is_some());
        let (durable, recovered) = match control.durable {
            Some(boot) => {
                let (journal, next, recovered) = boot.into_parts();
                let compact_min = config.persistence_compact_size;
                let shards = mesh.shards();
                // Peers that confirm: the data shards and the bridge thread.
                let peers = shards + 1;
                let durable = Rc::new(Durable::new(journal, peers, next, compact_min));
                durable::install(&durable);
                (Some(durable), Some(recovered))
            }
            None => (None, None),
        };
        let shard = Rc::new(Shard {
            id,
            config,
            mesh,
            registrar,
            listener_ports: listeners
                .iter()
                .map(|l| l.local_addr().ok().map(|a| a.port()))
                .collect(),
            listeners: RefCell::new(listeners),
            conns: RefCell::new(Slab::new()),
            next_serial: Cell::new(0),
            read_buf: RefCell::new(BytesMut::with_capacity(READ_CHUNK)),
            started,
            clock: Cell::new(started),
            sessions: RefCell::default(),
            next_session: Cell::new(1),
            local: RefCell::default(),
            filter_counts: RefCell::default(),
            subscriptions: Cell::new(0),
            replica: RefCell::default(),
            shared: RefCell::new(SharedIndex::new(id, strategy)),
            retained: RefCell::default(),
            last_stamp: Cell::new(0),
            keepalive: RefCell::default(),
            expiries: RefCell::default(),
            barriers: RefCell::default(),
            next_barrier: Cell::new(1),
            retained_jobs: RefCell::default(),
            dirty: RefCell::default(),
            again: RefCell::default(),
            stalled: RefCell::default(),
            accept_again: Cell::new(false),
            accept_paused: Cell::new(None),
            accept_backoff: Cell::new(Duration::ZERO),
            deadlines: RefCell::new(Deadlines::new(started)),
            stopping: Cell::new(Stopping::Running),
            matches: RefCell::default(),
            queue_limits,
            pressure: RefCell::default(),
            listener_settings: RefCell::new(listener_settings),
            reload: control.reload,
            acl: RefCell::new(acl),
            connections: Cell::new(0),
            listener_load: control.listener_load,
            stats: Stats::default(),
            stop: control.stop,
            published: control.stats,
            latency,
            histograms: control.histograms,
            sys,
            wills_from: Cell::new(0),
            auth: control.auth,
            verifier: control.verifier,
            rng: Cell::new(seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            durable,
        });
        if let Some(recovered) = recovered {
            shard.restore(recovered);
        }
        shard
    }

    /// Seconds since the shard started (the keepalive and expiry clock),
    /// as of the current turn's start.
    pub fn now(&self) -> u64 {
        self.clock
            .get()
            .saturating_duration_since(self.started)
            .as_secs()
    }

    /// The home shard of a client id.
    pub fn home_of(&self, client_id: &str) -> usize {
        home_shard(client_id, self.mesh.shards())
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
        let stamp = RetainStamp::next(self.last_stamp.get(), self.id as u16);
        self.last_stamp.set(stamp.nanos);
        stamp
    }

    /// Files `conn` for the end-of-turn flush.
    fn mark_dirty(&self, conn: &Rc<ConnShared>) {
        if conn.mark_dirty() {
            self.dirty.borrow_mut().push(Rc::clone(conn));
        }
    }

    /// Asks for `conn` to be closed at the end of the turn (first reason wins).
    fn close_conn(&self, conn: &Rc<ConnShared>, reason: CloseReason) {
        conn.close(reason);
        self.mark_dirty(conn);
    }

    fn publish_stats(&self) {
        self.stats.mesh_sent.set(self.mesh.sent());
        if self.id == 0 {
            self.stats.log_dropped.set(crate::logging::topic::dropped());
        }
        let (held, pressing) = self.pressure.borrow().gauges();
        let (queued_messages, queued_bytes) = store::queued();
        let retained = self.retained.borrow();
        let gauges = Gauges {
            connections: self.connections.get() as u64,
            sessions: self.sessions.borrow().by_id.len() as u64,
            subscriptions: self.subscriptions.get() as u64,
            retained: retained.len() as u64,
            retained_bytes: retained.bytes() as u64,
            queued_messages,
            queued_bytes,
            mesh_queued: self.mesh.queued() as u64,
            max_turn_us: self.latency.take_max_turn().as_micros() as u64,
            publishers_held: held as u64,
            subscribers_pressing: pressing as u64,
        };
        self.published.publish(&self.stats.snapshot(gauges));
        self.latency.publish(&self.histograms);
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
                        s.offline_since().is_some_and(|t| {
                            s.expiry != session::NEVER_EXPIRES && t + u64::from(s.expiry) <= now
                        })
                    })
                })
                .collect()
        };
        Stats::add(&self.stats.expired, expired.len());
        for sid in expired {
            self.end_session(sid);
        }
    }
}
