//! Everything a shard waits for in time, and the shutdown sequence.
//!
//! No timer per connection: the housekeeping tick (stats, stop flag,
//! per-second keepalive buckets and session expiry), one FIFO per kind
//! of timed wait, and one ordered set of delayed wills. Each FIFO's waits
//! all have the same length (the CONNECT timeout, the closing flush, the
//! barrier timeout), so deadlines are pushed in order and only the fronts
//! are ever looked at. Entries name a connection by slab slot and serial;
//! a stale one (the connection went on or went away) is skipped when it
//! comes due. Delayed wills have lengths of the client's choosing, so they
//! are kept ordered by due instant, one entry per will held back, removed
//! when the will goes (never stale).

use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use slab::Slab;

use super::conn::{CloseReason, Conn, ConnShared, Phase};
use super::session::SessionId;
use super::Shard;
use crate::limits::{SHUTDOWN_FLUSH, TICK, TOMBSTONE_AGE, TOMBSTONE_PURGE_BATCH, WILLS_WAIT};
use crate::mesh::ShardMsg;

/// A connection's identity in a deadline queue: slab slot and serial.
pub type ConnRef = (usize, u32);

/// The shard's timed waits. Shard-local.
pub struct Deadlines {
    /// Next housekeeping tick.
    pub tick: Instant,
    /// Shard-clock second last handled by the tick.
    last_second: u64,
    /// Accepted connections whose CONNECT must arrive by then.
    pub connect: VecDeque<(Instant, ConnRef)>,
    /// Closing connections whose last bytes may flush until then.
    pub closing: VecDeque<(Instant, ConnRef)>,
    /// SUBSCRIBE barriers answered by then at the latest.
    pub barrier: VecDeque<(Instant, u64)>,
    /// Delayed wills (5.0 Will Delay Interval) by due instant: waits of
    /// any length, so ordered rather than a FIFO. One entry per will held
    /// in an offline session (see `will`): never stale, at most one per
    /// session.
    pub wills: BTreeSet<(Instant, SessionId)>,
}

impl Deadlines {
    /// The first tick one [`TICK`] after `start`.
    pub fn new(start: Instant) -> Deadlines {
        Deadlines {
            tick: start + TICK,
            last_second: 0,
            connect: VecDeque::new(),
            closing: VecDeque::new(),
            barrier: VecDeque::new(),
            wills: BTreeSet::new(),
        }
    }

    /// The earliest of them all.
    fn earliest(&self) -> Instant {
        let fronts = [
            self.connect.front().map(|d| d.0),
            self.closing.front().map(|d| d.0),
            self.barrier.front().map(|d| d.0),
            self.wills.first().map(|d| d.0),
        ];
        fronts.into_iter().flatten().fold(self.tick, Instant::min)
    }
}

/// How far shutdown has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopping {
    Running,
    /// Wills published and `WillsSent` broadcast; waiting for every peer's
    /// (so wills reach subscribers everywhere) until then.
    Wills {
        until: Instant,
    },
    /// Every connection was asked to close; flushing until then.
    Closing {
        until: Instant,
    },
    /// The loop may end.
    Done,
}

/// Drops the entries of `queue` whose connection went on (or away) once
/// they outnumber the `live` connections: its length stays within twice
/// the connections however fast they come and go (amortised O(1)).
fn compact<T: Copy>(queue: &mut VecDeque<(Instant, T)>, live: usize, is_live: impl Fn(T) -> bool) {
    if queue.len() > 2 * live + 64 {
        queue.retain(|&(_, item)| is_live(item));
    }
}

/// Pops the entries of `queue` due at `now`.
fn due<T: Copy>(queue: &mut VecDeque<(Instant, T)>, now: Instant) -> Vec<T> {
    let mut out = Vec::new();
    while let Some(&(at, item)) = queue.front() {
        if at > now {
            break;
        }
        queue.pop_front();
        out.push(item);
    }
    out
}

impl Shard {
    /// When the loop must call [`Shard::on_timer`] next.
    pub(super) fn next_deadline(&self) -> Instant {
        let mut at = self.deadlines.borrow().earliest();
        if let Some(paused) = self.accept_paused.get() {
            at = at.min(paused);
        }
        match self.stopping.get() {
            Stopping::Wills { until } | Stopping::Closing { until } => at.min(until),
            Stopping::Running | Stopping::Done => at,
        }
    }

    /// Handles every wait that came due at `now`.
    pub(super) fn on_timer(self: &Rc<Self>, now: Instant) {
        if now >= self.deadlines.borrow().tick {
            self.tick(now);
        }
        let (connects, closings, barriers, wills) = {
            let mut d = self.deadlines.borrow_mut();
            let later = d.wills.split_off(&(now, SessionId::MAX));
            (
                due(&mut d.connect, now),
                due(&mut d.closing, now),
                due(&mut d.barrier, now),
                std::mem::replace(&mut d.wills, later),
            )
        };
        for conn in connects {
            self.expire_connect(conn);
        }
        for conn in closings {
            self.expire_closing(conn);
        }
        for token in barriers {
            self.barrier_timed_out(token);
        }
        for (_, sid) in wills {
            self.send_delayed_will(sid);
        }
        if self.accept_paused.get().is_some_and(|t| t <= now) {
            self.accept_paused.set(None);
            self.accept_again.set(true);
        }
        self.advance_shutdown(now);
    }

    /// Housekeeping: stats, keepalive buckets, session expiry, tombstones.
    fn tick(self: &Rc<Self>, now: Instant) {
        self.deadlines.borrow_mut().tick = now + TICK;
        self.publish_stats();
        self.publish_log_lines();
        self.update_sys(now);
        let second = self.now();
        let last = std::mem::replace(&mut self.deadlines.borrow_mut().last_second, second);
        if second == last {
            return;
        }
        self.check_keepalives(second);
        self.cut_stalled(second);
        self.expire_sessions(second);
        let cutoff = self
            .next_stamp()
            .nanos
            .saturating_sub(TOMBSTONE_AGE.as_nanos() as u64);
        self.retained.borrow_mut().purge_tombstones(
            crate::index::RetainStamp {
                nanos: cutoff,
                shard: 0,
            },
            TOMBSTONE_PURGE_BATCH,
        );
    }

    /// Deadline bookkeeping for a connection just accepted or adopted.
    pub(super) fn connect_deadline(&self, conn: ConnRef) {
        let at = Instant::now() + self.config.connect_timeout;
        self.conn_deadline(|d| &mut d.connect, conn, at, Phase::before_connack);
    }

    /// Deadline bookkeeping for a connection that starts closing.
    pub(super) fn closing_deadline(&self, conn: ConnRef, at: Instant) {
        self.conn_deadline(|d| &mut d.closing, conn, at, |p| p == Phase::Closing);
    }

    /// Files `conn`, now in a phase `waits` holds for, in the queue `which`
    /// picks (entries of connections past such a phase are stale).
    fn conn_deadline(
        &self,
        which: fn(&mut Deadlines) -> &mut VecDeque<(Instant, ConnRef)>,
        conn: ConnRef,
        at: Instant,
        waits: fn(Phase) -> bool,
    ) {
        let mut d = self.deadlines.borrow_mut();
        let queue = which(&mut d);
        queue.push_back((at, conn));
        let conns = self.conns.borrow();
        compact(queue, conns.len(), |c| self.is_in_phase(&conns, c, waits));
    }

    /// Deadline bookkeeping for a SUBSCRIBE barrier.
    pub(super) fn barrier_deadline(&self, token: u64, at: Instant) {
        let mut d = self.deadlines.borrow_mut();
        d.barrier.push_back((at, token));
        let barriers = self.barriers.borrow();
        compact(&mut d.barrier, barriers.len(), |t| {
            barriers.contains_key(&t)
        });
    }

    /// Whether `conn` still names the same connection, in `phase`.
    fn is_in_phase(
        &self,
        conns: &Slab<Conn>,
        (token, serial): ConnRef,
        phase: fn(Phase) -> bool,
    ) -> bool {
        conns
            .get(token)
            .is_some_and(|c| c.serial == serial && phase(c.phase))
    }

    /// Files attached connection `token` in the keepalive wheel.
    pub(super) fn watch_keepalive(&self, token: usize, conn: &ConnShared) {
        let Some(deadline) = conn.keepalive_deadline() else {
            return;
        };
        let Some(serial) = self.conns.borrow().get(token).map(|c| c.serial) else {
            return;
        };
        let mut wheel = self.keepalive.borrow_mut();
        wheel.watch(deadline, (token, serial));
        let conns = self.conns.borrow();
        wheel.compact(self.connections.get(), |c| {
            self.is_in_phase(&conns, c, |p| p == Phase::Attached)
        });
    }

    /// Closes connections silent past their keepalive; re-files the others.
    fn check_keepalives(&self, now: u64) {
        let due = self.keepalive.borrow_mut().due(now);
        for (token, serial) in due {
            let conn = {
                let conns = self.conns.borrow();
                match conns.get(token) {
                    Some(c) if c.serial == serial && c.phase == Phase::Attached => c.shared.clone(),
                    _ => None,
                }
            };
            let Some(conn) = conn else { continue };
            if self.held_back(&conn) {
                // Not read while held back: its silence is ours.
                conn.seen(now);
            }
            match conn.keepalive_deadline() {
                Some(deadline) if deadline > now => {
                    self.keepalive.borrow_mut().watch(deadline, (token, serial))
                }
                _ => self.close_conn(&conn, CloseReason::KeepAliveTimeout),
            }
        }
    }

    fn expire_connect(&self, (token, serial): (usize, u32)) {
        let waiting = self
            .conns
            .borrow()
            .get(token)
            .is_some_and(|c| c.serial == serial && c.phase.before_connack());
        if waiting {
            log::info!(
                "connection {token}: no CONNECT, or no end to its authentication, within {:?}; closed",
                self.config.connect_timeout
            );
            self.drop_conn(token);
        }
    }

    fn expire_closing(&self, (token, serial): (usize, u32)) {
        let closing = self
            .conns
            .borrow()
            .get(token)
            .is_some_and(|c| c.serial == serial && c.phase == Phase::Closing);
        if closing {
            self.drop_conn(token);
        }
    }

    /// True once the stop flag is set and shutdown has not begun; begins it.
    pub(super) fn check_stop(self: &Rc<Self>) -> bool {
        if self.stopping.get() != Stopping::Running || !self.stop.load(Ordering::Relaxed) {
            return false;
        }
        self.begin_shutdown();
        true
    }

    /// Shutdown: stop accepting, publish every will (those of connected
    /// clients and those held back), and tell the peers.
    fn begin_shutdown(self: &Rc<Self>) {
        self.listeners.borrow_mut().clear();
        self.deadlines.borrow_mut().wills.clear();
        let with_will: Vec<_> = self
            .sessions
            .borrow()
            .by_id
            .values()
            .filter(|s| s.will.is_some())
            .map(|s| s.id)
            .collect();
        for sid in with_will {
            let will = self
                .sessions
                .borrow_mut()
                .by_id
                .get_mut(&sid)
                .and_then(|s| s.will.take());
            if let Some(will) = will {
                self.publish_will(sid, *will);
            }
        }
        self.mesh.broadcast(|| ShardMsg::WillsSent);
        self.stopping.set(Stopping::Wills {
            until: Instant::now() + WILLS_WAIT,
        });
    }

    /// Moves shutdown on when what it waits for has happened or timed out.
    pub(super) fn advance_shutdown(&self, now: Instant) {
        match self.stopping.get() {
            Stopping::Wills { until }
                if self.wills_from.get() + 1 >= self.mesh.shards() || now >= until =>
            {
                for s in self.sessions.borrow().by_id.values() {
                    if let Some(conn) = &s.conn {
                        self.close_conn(conn, CloseReason::ServerShuttingDown);
                    }
                }
                // Connections that never finished their CONNECT just go.
                let connecting: Vec<usize> = self
                    .conns
                    .borrow()
                    .iter()
                    .filter(|(_, c)| c.phase.before_connack())
                    .map(|(token, _)| token)
                    .collect();
                for token in connecting {
                    self.drop_conn(token);
                }
                let until = now + SHUTDOWN_FLUSH + SHUTDOWN_FLUSH / 2;
                self.stopping.set(Stopping::Closing { until });
            }
            Stopping::Closing { until } if self.conns.borrow().is_empty() || now >= until => {
                self.stopping.set(Stopping::Done);
            }
            _ => {}
        }
    }
}
