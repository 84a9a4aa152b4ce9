//! A worker: one pinned thread running the crate's readiness loop
//! ([`Reactor`], the broker's own runtime) over its share of the run's
//! connections, each a state machine ([`Conn`]) in a slab keyed by its
//! reactor token. No task and no future per connection.
//!
//! Life of a worker:
//! 1. open its connections, at most [`CONNECT_WAVE`] establishing at once
//!    (subscribers also SUBSCRIBE), counting each ready or failed;
//! 2. at the start time ([`Control::start_at`], which the fleet follows
//!    with a wake-up) start the publishers' open-loop schedules and the
//!    connect-storm opener;
//! 3. at stop (likewise) hand every role's outcome to the stats, say
//!    DISCONNECT, and close everything within [`GOODBYE_TIMEOUT`]; then
//!    return the [`WorkerStats`].
//!
//! # Timers
//!
//! Publishers' send times and connect-storm attempts are met to the
//! microsecond, since any lateness is added to the latency reported:
//! `epoll_wait` waits whole milliseconds (rounded up), so the worker's
//! alarm, a [`Timer`] (timerfd) registered with its loop, wakes it at the
//! send time, and a send time less than [`SPIN`] away is polled for
//! instead. Keepalive pings, connect and goodbye
//! deadlines and the per-second interval histogram take the plain wait.
//! See [`crate::timers`].
//!
//! # Bounds per turn
//!
//! [`READS_PER_TURN`](crate::conn::READS_PER_TURN) reads per connection
//! (then the backlog, one pass per turn), [`TIMERS_PER_TURN`] timers of
//! each kind, [`CONNECT_WAVE`] connects in progress, and out buffers held
//! near [`OUT_HIGH`](crate::conn::OUT_HIGH).

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shardmq::runtime::{
    spawn_pinned, Driver, Interest, Reactor, Readiness, Registrar, Timer, Token, Wake,
};
use slab::Slab;

use crate::clock::{self, now_ns, ns};
use crate::conn::{Conn, Dial, Phase, ReadOutcome, ReadScratch, RoleState};
use crate::control::{Control, Counters};
use crate::plan::{Role, RunSpec};
use crate::publisher::Publisher;
use crate::stats::{new_histogram, WorkerStats};
use crate::storm::{self, Storm};
use crate::subscriber::Subscriber;
use crate::timers::{Kind, Timers};

/// Connections a worker establishes concurrently.
pub const CONNECT_WAVE: usize = 128;
/// How often interval histograms go to the progress line.
const INTERVAL_EVERY: Duration = Duration::from_secs(1);
/// Time allowed for the goodbye DISCONNECT (at stop, and after each
/// connect-storm CONNACK).
pub const GOODBYE_TIMEOUT: Duration = Duration::from_millis(200);
/// Send times closer than this are polled for rather than left to the
/// alarm: about what arming it and waking on it cost.
const SPIN: Duration = Duration::from_micros(50);
/// The alarm's token (the reactor's own waker has `usize::MAX`; connections
/// are slab keys, far below).
const ALARM: Token = Token(usize::MAX - 1);
/// Timers fired per kind per turn; more due ones fire next turn.
const TIMERS_PER_TURN: usize = 4096;
/// Stale timer entries tolerated beyond the live ones before the heaps
/// are rebuilt.
const TIMER_SLACK: usize = 1024;

/// A started worker thread, seen from the controller.
pub struct WorkerHandle {
    pub thread: JoinHandle<io::Result<WorkerStats>>,
    /// Wakes the worker's loop to look at the [`Control`] flags.
    pub wake: Arc<Wake>,
}

/// Starts worker `index` on `core` with its connections.
pub fn spawn(
    index: usize,
    core: Option<usize>,
    conns: Vec<(usize, Role)>,
    spec: Arc<RunSpec>,
    control: Arc<Control>,
) -> io::Result<WorkerHandle> {
    let mut reactor = Reactor::new()?;
    let wake = reactor.wake_handle();
    let registrar = reactor.registrar()?;
    let thread = spawn_pinned(format!("load-{index}"), core, move || {
        let mut worker = Worker::new(index, conns, spec, control, registrar)?;
        reactor.run(&mut worker)?;
        Ok(worker.ctx.stats)
    })?;
    Ok(WorkerHandle { thread, wake })
}

/// What a worker's connections share: the run's settings, the control
/// plane, and what the worker measured. Worker-local (one thread).
pub struct Ctx {
    pub spec: Arc<RunSpec>,
    pub control: Arc<Control>,
    /// This worker's index into `control.counters`.
    index: usize,
    /// The start time, once the controller has set it (publishers may send).
    pub start_ns: Option<u64>,
    /// Set at stop: roles have handed over their outcomes.
    stopping: bool,
    pub stats: WorkerStats,
    /// Plan connections opened and not yet ready or failed.
    establishing: usize,
    /// Sends and deliveries not yet added to the shared counters (added
    /// once per turn, not per message).
    unpublished_sent: u64,
    unpublished_delivered: u64,
}

impl Ctx {
    /// The context of worker `index` of `control`.
    pub fn new(spec: Arc<RunSpec>, control: Arc<Control>, index: usize) -> Ctx {
        Ctx {
            spec,
            control,
            index,
            start_ns: None,
            stopping: false,
            stats: WorkerStats::default(),
            establishing: 0,
            unpublished_sent: 0,
            unpublished_delivered: 0,
        }
    }

    fn counters(&self) -> &Counters {
        &self.control.counters[self.index]
    }

    /// Counts an error of an open connection and keeps its message as a
    /// sample.
    pub fn error(&self, what: &str, e: impl std::fmt::Display) {
        self.counters().errors.fetch_add(1, Relaxed);
        self.control.error(format!("{what}: {e}"));
    }

    /// A plan connection could not be established.
    fn connection_failed(&mut self, name: &str, e: impl std::fmt::Display) {
        self.counters().failed.fetch_add(1, Relaxed);
        self.control.error(format!("connection {name}: {e}"));
    }

    /// A plan connection is established (and subscribed).
    pub fn established(&mut self) {
        self.establishing -= 1;
        self.counters().ready.fetch_add(1, Relaxed);
    }

    /// The measured window (valid once the start time is set).
    pub fn window(&self) -> (u64, u64) {
        self.spec.window(self.start_ns.unwrap_or(0))
    }

    pub fn count_sent(&mut self, n: u64) {
        self.unpublished_sent += n;
    }

    pub fn count_delivered(&mut self, n: u64) {
        self.unpublished_delivered += n;
    }

    /// Adds this turn's sends and deliveries to the shared counters.
    fn publish_counts(&mut self) {
        let (sent, delivered) = (
            std::mem::take(&mut self.unpublished_sent),
            std::mem::take(&mut self.unpublished_delivered),
        );
        if sent > 0 {
            self.counters().sent.fetch_add(sent, Relaxed);
        }
        if delivered > 0 {
            self.counters().delivered.fetch_add(delivered, Relaxed);
        }
    }

    /// Keeps what a role measured.
    fn keep_outcome(&mut self, role: RoleState) {
        match role {
            RoleState::Publisher(p) => self.stats.pubs.push(p.finish()),
            RoleState::Subscriber(s) => self.stats.subs.push(s.finish()),
            RoleState::Idle | RoleState::Attempt { .. } | RoleState::Done => {}
        }
    }
}

/// One worker's loop state: its connections and everything that drives
/// them. Lives on the worker thread; implements [`Driver`].
struct Worker {
    ctx: Ctx,
    registrar: Registrar,
    /// Wakes the loop at the next send time (see the module doc).
    alarm: Timer,
    conns: Slab<Conn>,
    timers: Timers,
    scratch: ReadScratch,
    /// Plan connections not opened yet, in plan order.
    to_open: VecDeque<(usize, Role)>,
    /// This worker's connect-storm opener, if it has one.
    storm: Option<Storm>,
    /// The next [`Conn::serial`].
    next_serial: u64,
    /// Connections with output to flush at the end of the turn, by key and
    /// serial; each at most once ([`Conn::dirty`]).
    dirty: Vec<(usize, u64)>,
    /// Connections still readable after their reads of a turn, likewise
    /// ([`Conn::in_backlog`]).
    backlog: VecDeque<(usize, u64)>,
    /// The backlog had its pass this turn.
    backlog_done: bool,
    /// When the next interval histogram goes to the progress line.
    next_interval: u64,
    /// Set at stop: whatever is still open is dropped at this time.
    stop_deadline: Option<u64>,
}

impl Worker {
    fn new(
        index: usize,
        conns: Vec<(usize, Role)>,
        spec: Arc<RunSpec>,
        control: Arc<Control>,
        registrar: Registrar,
    ) -> io::Result<Worker> {
        let mut storm = None;
        let mut to_open = VecDeque::with_capacity(conns.len());
        for (i, role) in conns {
            match role {
                Role::Storm { index, of } => storm = Some(Storm::new(index, of, &spec)),
                role => to_open.push_back((i, role)),
            }
        }
        let ctx = Ctx::new(spec, control, index);
        if storm.is_some() {
            // The opener needs no connection: it is ready at once.
            ctx.counters().ready.fetch_add(1, Relaxed);
        }
        let mut alarm = Timer::new()?;
        registrar.register(&mut alarm, ALARM, Interest::READABLE)?;
        Ok(Worker {
            ctx,
            registrar,
            alarm,
            conns: Slab::with_capacity(to_open.len().min(CONNECT_WAVE * 8)),
            timers: Timers::default(),
            scratch: ReadScratch::new(),
            to_open,
            storm,
            next_serial: 0,
            dirty: Vec::new(),
            backlog: VecDeque::new(),
            backlog_done: false,
            next_interval: now_ns() + ns(INTERVAL_EVERY),
            stop_deadline: None,
        })
    }

    /// Inserts a connection for `dial`, connecting.
    fn open(&mut self, dial: Dial) -> io::Result<()> {
        let now = now_ns();
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let serial = self.next_serial;
        let conn = Conn::open(&self.ctx.spec, &self.registrar, key, serial, dial, now)?;
        entry.insert(conn);
        self.next_serial += 1;
        self.settle(key, now);
        Ok(())
    }

    /// Opens plan connections while fewer than [`CONNECT_WAVE`] are
    /// establishing. True if it opened any.
    fn open_more(&mut self) -> bool {
        let mut opened = false;
        while !self.ctx.stopping && self.ctx.establishing < CONNECT_WAVE {
            let Some((index, role)) = self.to_open.pop_front() else {
                break;
            };
            opened = true;
            let spec = &self.ctx.spec;
            let (name, state) = match role {
                Role::Publisher { id, topic } => (
                    format!("p{id}"),
                    Publisher::new(id, &run_topic(spec, &topic), spec)
                        .map(|p| RoleState::Publisher(Box::new(p))),
                ),
                Role::Subscriber { id, filter } => (
                    format!("s{id}"),
                    Ok(RoleState::Subscriber(Box::new(Subscriber::new(
                        id,
                        run_topic(spec, &filter),
                    )))),
                ),
                Role::Idle { id } => (format!("i{id}"), Ok(RoleState::Idle)),
                // Not a connection: taken out in `Worker::new`.
                Role::Storm { .. } => continue,
            };
            let result = state.and_then(|role| {
                self.open(Dial {
                    index,
                    name: name.clone(),
                    role,
                })
            });
            match result {
                Ok(()) => self.ctx.establishing += 1,
                Err(e) => self.ctx.connection_failed(&name, e),
            }
        }
        opened
    }

    /// Opens the connect-storm attempts due at `now` (at most a wave).
    fn open_attempts(&mut self, now: u64) {
        for _ in 0..CONNECT_WAVE {
            let Some((due, conn)) = self.storm.as_mut().and_then(|s| s.take_due(now)) else {
                return;
            };
            self.ctx.count_sent(1);
            let dial = Dial {
                index: conn,
                name: format!("c{conn}"),
                role: RoleState::Attempt { due },
            };
            if let Err(e) = self.open(dial) {
                storm::failed(&mut self.ctx, e);
                if let Some(s) = self.storm.as_mut() {
                    s.active -= 1;
                }
            }
        }
    }

    /// Looks at the control flags: start, stop. True on a change.
    fn watch_control(&mut self) -> bool {
        if self.ctx.stopping {
            return false;
        }
        if self.ctx.control.is_stopped() {
            self.begin_stop();
            return true;
        }
        if self.ctx.start_ns.is_none() {
            if let Some(start) = self.ctx.control.start_ns() {
                self.go(start);
                return true;
            }
        }
        false
    }

    /// The start time is set: publishers and the storm opener start.
    fn go(&mut self, start: u64) {
        self.ctx.start_ns = Some(start);
        if let Some(s) = self.storm.as_mut() {
            s.start(&self.ctx.spec, start);
        }
        let now = now_ns();
        let publishers: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.phase == Phase::Ready && matches!(c.role, RoleState::Publisher(_)))
            .map(|(key, _)| key)
            .collect();
        for key in publishers {
            if let RoleState::Publisher(p) = &mut self.conns[key].role {
                p.start(&self.ctx.spec, start);
            }
            self.settle(key, now);
        }
    }

    /// The run stops: roles hand over their outcomes, open connections say
    /// goodbye, the rest is dropped.
    fn begin_stop(&mut self) {
        let now = now_ns();
        let deadline = now + ns(GOODBYE_TIMEOUT);
        self.ctx.stopping = true;
        self.stop_deadline = Some(deadline);
        self.to_open.clear();
        // No more attempts; those open are dropped or finish their goodbye.
        self.storm = None;
        let keys: Vec<usize> = self.conns.iter().map(|(key, _)| key).collect();
        for key in keys {
            let conn = &mut self.conns[key];
            match conn.phase {
                Phase::Ready => {
                    let role = conn.take_role();
                    let res = conn.goodbye(&self.ctx, deadline);
                    self.ctx.keep_outcome(role);
                    self.done(key, res, now);
                }
                Phase::Closing => {}
                _ => {
                    let conn = self.conns.remove(key);
                    self.forget(conn);
                }
            }
        }
    }

    /// After a handler ran on connection `key`: count its error and close
    /// it, or settle it.
    fn done(&mut self, key: usize, res: io::Result<()>, now: u64) {
        match res {
            Ok(()) => self.settle(key, now),
            Err(e) => self.fail(key, e),
        }
    }

    /// Brings the worker's view of connection `key` up to date: closes it
    /// if its goodbye is over, lists it for a flush, arms its timers.
    fn settle(&mut self, key: usize, now: u64) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.phase == Phase::Closing && (conn.out.is_empty() || now >= conn.deadline) {
            let conn = self.conns.remove(key);
            self.forget(conn);
            return;
        }
        if !conn.out.is_empty() && !conn.dirty && !conn.writing() {
            conn.dirty = true;
            self.dirty.push((key, conn.serial));
        }
        if let Some(at) = conn.tick_at(&self.ctx.spec) {
            self.timers
                .arm(&mut conn.armed, Kind::Tick, key, conn.serial, at);
        }
        if let Some(at) = conn.send_at() {
            self.timers
                .arm(&mut conn.armed, Kind::Send, key, conn.serial, at);
        }
    }

    /// Connection `key` failed with `e`: counts it by what it was doing,
    /// and closes it.
    fn fail(&mut self, key: usize, e: io::Error) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        match (&conn.role, conn.phase) {
            // A failed goodbye: nothing more to say.
            (_, Phase::Closing) => {}
            (RoleState::Attempt { .. }, _) => storm::failed(&mut self.ctx, e),
            (role, Phase::Ready) => self.ctx.error(role.what(), e),
            _ => self.ctx.connection_failed(&conn.name, e),
        }
        self.forget(conn);
    }

    /// Accounts for a connection removed from the slab (and closes it by
    /// dropping it).
    fn forget(&mut self, mut conn: Conn) {
        if let RoleState::Attempt { .. } = conn.role {
            if let Some(s) = self.storm.as_mut() {
                s.active -= 1;
            }
        } else if conn.phase.establishing() {
            self.ctx.establishing -= 1;
        } else if conn.phase == Phase::Ready {
            self.ctx.keep_outcome(conn.take_role());
        }
    }

    /// Reads connection `key` (one turn's worth).
    fn read(&mut self, key: usize) -> io::Result<()> {
        let conn = &mut self.conns[key];
        match conn.read(&mut self.scratch, &mut self.ctx)? {
            ReadOutcome::Drained => {}
            ReadOutcome::More => {
                if !conn.in_backlog {
                    conn.in_backlog = true;
                    self.backlog.push_back((key, conn.serial));
                }
            }
            ReadOutcome::Paused => conn.read_paused = true,
        }
        Ok(())
    }

    /// Flushes connection `key`; resumes its reading if that waited for room.
    fn flush(&mut self, key: usize, now: u64) -> io::Result<()> {
        let conn = &mut self.conns[key];
        conn.flush(&self.registrar, key, now)?;
        if conn.after_flush() && !conn.in_backlog {
            conn.in_backlog = true;
            self.backlog.push_back((key, conn.serial));
        }
        Ok(())
    }

    /// One pass over the connections that were still readable.
    fn drain_backlog(&mut self) -> bool {
        let n = self.backlog.len();
        let now = now_ns();
        for _ in 0..n {
            let Some((key, serial)) = self.backlog.pop_front() else {
                break;
            };
            let Some(conn) = self.conns.get_mut(key).filter(|c| c.serial == serial) else {
                continue;
            };
            conn.in_backlog = false;
            let res = self.read(key);
            self.done(key, res, now);
        }
        n > 0
    }

    /// Fires the `kind` timers due at `now`.
    fn fire(&mut self, kind: Kind, now: u64) {
        let mut fired = 0;
        while fired < TIMERS_PER_TURN {
            let Some((key, serial, at)) = self.timers.pop_due(kind, now) else {
                return;
            };
            let Some(conn) = self.conns.get_mut(key).filter(|c| c.serial == serial) else {
                continue;
            };
            if !Timers::take_if_armed(&mut conn.armed, kind, at) {
                continue;
            }
            fired += 1;
            let res = match kind {
                Kind::Send => conn.on_send_timer(&mut self.ctx, now),
                Kind::Tick => conn.on_tick(&self.ctx, now),
            };
            self.done(key, res, now);
        }
    }

    /// Drops every connection still open (the goodbye deadline passed).
    fn drop_all(&mut self) {
        for (_, conn) in std::mem::take(&mut self.conns) {
            self.forget(conn);
        }
        self.dirty.clear();
        self.backlog.clear();
    }
}

impl Driver for Worker {
    fn ready(&mut self, token: Token, r: Readiness) {
        if token == ALARM {
            // The send time it was set for is handled by `on_timer`.
            self.alarm.take();
            return;
        }
        let key = token.0;
        let now = now_ns();
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let res = if conn.phase == Phase::Connecting {
            if r.writable || r.closed {
                conn.on_connect_ready(&self.ctx, &self.registrar, key, now)
            } else {
                Ok(())
            }
        } else {
            let mut res = Ok(());
            if r.writable && conn.writing() {
                res = self.flush(key, now);
            }
            if res.is_ok() && (r.readable || r.closed) && !self.conns[key].in_backlog {
                res = self.read(key);
            }
            res
        };
        self.done(key, res, now);
    }

    fn run_pending(&mut self) -> bool {
        let mut did = self.watch_control();
        did |= self.open_more();
        if !self.backlog_done {
            self.backlog_done = true;
            did |= self.drain_backlog();
        }
        did
    }

    fn end_turn(&mut self) {
        let now = now_ns();
        let mut dirty = std::mem::take(&mut self.dirty);
        for &(key, serial) in &dirty {
            let Some(conn) = self.conns.get_mut(key).filter(|c| c.serial == serial) else {
                continue;
            };
            conn.dirty = false;
            let res = self.flush(key, now);
            self.done(key, res, now);
        }
        // A flush leaves `out` empty or waiting for writable: none listed again.
        debug_assert!(self.dirty.is_empty());
        dirty.clear();
        self.dirty = dirty;
        self.backlog_done = false;
        self.ctx.publish_counts();
    }

    fn next_deadline(&self) -> Option<Instant> {
        let now = now_ns();
        let spin = ns(SPIN);
        let storm = self.storm.as_ref().and_then(Storm::next_due);
        let send = [self.timers.next(Kind::Send), storm]
            .into_iter()
            .flatten()
            .min()
            .map(|at| {
                if at > now + spin {
                    if let Err(e) = self.alarm.set_after(Duration::from_nanos(at - now)) {
                        self.ctx.error("arming the send-time alarm", e);
                    }
                    at
                } else {
                    // Due (or nearly): a deadline passed means "poll, do
                    // not wait", until it is met.
                    at.saturating_sub(spin)
                }
            });
        let tick = [
            self.timers.next(Kind::Tick),
            Some(self.next_interval),
            self.stop_deadline,
        ]
        .into_iter()
        .flatten()
        .min();
        [send, tick]
            .into_iter()
            .flatten()
            .min()
            .map(clock::instant_of)
    }

    fn on_timer(&mut self, now: Instant) {
        let now = clock::ns_of(now);
        self.fire(Kind::Send, now);
        self.fire(Kind::Tick, now);
        self.open_attempts(now);
        if now >= self.next_interval {
            self.next_interval = now + ns(INTERVAL_EVERY);
            let h = std::mem::replace(&mut self.ctx.stats.interval, new_histogram());
            self.ctx.control.push_interval(h);
        }
        if self.stop_deadline.is_some_and(|d| now >= d) {
            self.drop_all();
        }
        if self.timers.len() > 2 * self.conns.len() + TIMER_SLACK {
            let live = self.conns.iter().map(|(key, c)| (key, c.serial, c.armed));
            self.timers.compact(live);
        }
    }

    fn finished(&self) -> bool {
        self.ctx.stopping && self.conns.is_empty()
    }
}

/// The topic or filter a connection of this run uses. With
/// `--persistent-sessions`, prefixed with the run's tag: the sessions a run
/// leaves behind are persistent, and each step of a saturation search is a
/// run with a tag of its own, so a later step's messages must not match
/// (and be queued for) an earlier step's offline subscribers. A shared
/// subscription keeps its `$share/<group>/` in front.
pub fn run_topic(spec: &RunSpec, topic: &str) -> String {
    if !spec.persistent {
        return topic.to_string();
    }
    match topic
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
    {
        Some((group, inner)) => format!("$share/{group}/{}/{inner}", spec.tag),
        None => format!("{}/{topic}", spec.tag),
    }
}

/// A worker context for unit tests of the roles: 1 publisher, one worker.
#[cfg(test)]
pub fn test_ctx(qos: shardmq::protocol::QoS, inflight: u16, rate: f64) -> Ctx {
    let spec = RunSpec {
        broker: ([127, 0, 0, 1], 1883).into(),
        upstream: None,
        version: crate::plan::protocol_version(3),
        qos,
        payload: crate::payload::HEADER_LEN,
        inflight,
        keep_alive: 60,
        connect_timeout: Duration::from_secs(1),
        warmup: Duration::ZERO,
        duration: Duration::from_secs(10),
        rate,
        publishers: 1,
        drop_every: None,
        no_backlog: false,
        sources: Vec::new(),
        storm_concurrency: 1,
        tag: "test".into(),
        persistent: false,
        tls: None,
    };
    Ctx::new(Arc::new(spec), Arc::new(Control::new(1)), 0)
}

#[cfg(test)]
mod run_topic_tests {
    use super::*;

    #[test]
    fn persistent_runs_keep_their_topics_apart() {
        let ctx = test_ctx(shardmq::protocol::QoS::AtLeastOnce, 1, 1.0);
        let mut spec = (*ctx.spec).clone();
        assert_eq!(run_topic(&spec, "a/b"), "a/b", "clean sessions: as planned");
        spec.persistent = true;
        spec.tag = "r7".into();
        assert_eq!(run_topic(&spec, "a/+"), "r7/a/+");
        assert_eq!(run_topic(&spec, "$share/g/a/#"), "$share/g/r7/a/#");
    }
}
