//! End-to-end backpressure for QoS 1/2 (`overload_policy backpressure`):
//! a subscriber whose queue is past its limits pauses the publishers that
//! feed it, instead of dropping what they were acknowledged for.
//!
//! Per publisher, so that fairness comes for free: a routed message
//! carries its [`Origin`] (shard and session). When an online
//! subscriber's queue takes a QoS 1/2 message past `max_queued_*` (into
//! the bounded headroom, see [`Delivery::Held`](super::session::Delivery)),
//! the subscriber's shard records the origin in the subscriber's
//! [`Pressing`] set and pauses it: directly if the publisher is local, by
//! a [`ShardMsg::Pressure`] to its shard otherwise. A paused 5.0
//! publisher's PUBACK/PUBREC are kept back until it is released, so its
//! own Receive Maximum stops it while it is read on; any other paused
//! publisher is not read, its input stopping before the next PUBLISH (see
//! `handler::process`): TCP flow control holds the client back.
//! Publishers to other, healthy subscribers are never paused.
//!
//! A subscriber releases every publisher it paused once its queue is at
//! half its limits, when its connection ends, or when it is cut as a slow
//! consumer: after `overload_stall_timeout` seconds holding publishers
//! back without progress, it is disconnected (5.0: Quota exceeded), its
//! session keeps `max_queued_*` and counts the rest as dropped. A
//! publisher is never paused by its own subscription (it would stop
//! reading the acknowledgements that drain it). A subscriber held back as
//! a publisher gets twice the bound (it is not read meanwhile), so the
//! one holding it is cut first, and a cycle of clients holding each other
//! back ends at twice the bound.

use std::collections::HashMap;
use std::rc::Rc;

use ahash::RandomState;

use super::conn::{CloseReason, ConnShared};
use super::durable::Mark;
use super::session::SessionId;
use super::{Shard, Stats};
use crate::limits::PRESSURE_PUBLISHERS_MAX;
use crate::mesh::{Origin, ShardMsg};
use crate::protocol::{Packet, ReasonCode};

/// What a subscriber cut as a slow consumer is told (5.0).
const SLOW_CONSUMER: &str = "slow consumer: no progress while holding publishers back";

/// One subscriber holding publishers back: a session on its home shard
/// (progress in shard-clock seconds), or a bridge link on the bridge
/// thread (progress an `Instant`, see `bridge::pressure`). Owned by that
/// thread; never crosses the mesh.
pub(crate) struct Pressing<T> {
    /// The publishers it paused, each once; at most
    /// [`PRESSURE_PUBLISHERS_MAX`].
    origins: Vec<Origin>,
    /// When it last made progress (an acknowledgement, a drained buffer),
    /// or first paused a publisher.
    pub(crate) progress: T,
}

impl<T> Pressing<T> {
    pub(crate) fn new(now: T) -> Self {
        Pressing {
            origins: Vec::new(),
            progress: now,
        }
    }

    /// Records that it holds `origin` back; true if it did not yet (the
    /// publisher must then be paused). False too past
    /// [`PRESSURE_PUBLISHERS_MAX`] publishers.
    pub(crate) fn press(&mut self, origin: Origin) -> bool {
        if self.origins.contains(&origin) || self.origins.len() >= PRESSURE_PUBLISHERS_MAX {
            return false;
        }
        self.origins.push(origin);
        true
    }

    /// How many publishers it holds back.
    pub(crate) fn len(&self) -> usize {
        self.origins.len()
    }

    /// The publishers to resume, each once, as it ends.
    pub(crate) fn into_origins(self) -> Vec<Origin> {
        self.origins
    }
}

/// A shard's backpressure bookkeeping, both sides. Shard-local; never
/// crosses the mesh (pressure changes cross as [`ShardMsg::Pressure`]).
///
/// Invariants: every publisher a subscriber's `origins` names was paused
/// once for it (a count in `paused` on the publisher's shard), and is
/// resumed once when the entry goes; `paused` only counts sessions that
/// exist on this shard (an ending session's count goes with it).
#[derive(Default)]
pub struct Pressure {
    /// Subscribers on this shard holding publishers back.
    pressing: HashMap<SessionId, Pressing<u64>, RandomState>,
    /// Publishers on this shard that are paused, with how many
    /// subscribers (on any shard) hold them.
    paused: HashMap<SessionId, u32, RandomState>,
}

impl Pressure {
    /// Records that subscriber `sub` holds `origin` back; true if it did
    /// not yet (the publisher must then be paused).
    fn press(&mut self, sub: SessionId, origin: Origin, now: u64) -> bool {
        let entry = self
            .pressing
            .entry(sub)
            .or_insert_with(|| Pressing::new(now));
        entry.press(origin)
    }

    /// Publishers held back here, and subscribers here holding some.
    pub fn gauges(&self) -> (usize, usize) {
        (self.paused.len(), self.pressing.len())
    }

    /// True if session `sid` (a publisher here) is paused.
    pub fn is_paused(&self, sid: SessionId) -> bool {
        !self.paused.is_empty() && self.paused.contains_key(&sid)
    }

    /// True if subscriber `sub` holds publishers back.
    fn is_pressing(&self, sub: SessionId) -> bool {
        !self.pressing.is_empty() && self.pressing.contains_key(&sub)
    }

    /// Subscribers holding publishers back with no progress for `bound`
    /// seconds or more, with how long.
    fn stalled(&self, now: u64, bound: u64) -> Vec<(SessionId, u64)> {
        self.pressing
            .iter()
            .map(|(sid, p)| (*sid, now.saturating_sub(p.progress)))
            .filter(|(_, idle)| *idle >= bound)
            .collect()
    }
}

impl Shard {
    /// A QoS 1/2 message from `origin` was queued for subscriber `sub`
    /// past its limits: pause its publisher, unless it is the subscriber
    /// itself or a message with no client. A message a bridge link brought
    /// in has the bridge thread's peer id and the link's id as its origin:
    /// the bridge thread stops reading that link (see `bridge::pressure`).
    pub(super) fn hold_back(&self, sub: SessionId, origin: Origin) {
        let from = usize::from(origin.shard);
        let own = from == self.id && origin.session == sub;
        if own || origin.session == 0 || from >= self.mesh.peers() {
            return;
        }
        if !self.pressure.borrow_mut().press(sub, origin, self.now()) {
            return;
        }
        self.signal_publisher(origin, true);
    }

    /// Pauses (`on`) or resumes publisher `origin`: directly if it is
    /// local, over the mesh otherwise.
    fn signal_publisher(&self, origin: Origin, on: bool) {
        let to = usize::from(origin.shard);
        match (to == self.id, on) {
            (true, true) => self.pause_publisher(origin.session),
            (true, false) => self.resume_publisher(origin.session),
            (false, _) => {
                let publisher = origin.session;
                self.mesh.send(to, ShardMsg::Pressure { publisher, on });
            }
        }
    }

    /// Subscriber `sub` made progress (acknowledged, drained its buffer);
    /// releases its publishers once its queue is `drained` to half its
    /// limits (see `Session::at_low_watermark`).
    pub(super) fn pressure_progress(&self, sub: SessionId, drained: bool) {
        {
            let mut pressure = self.pressure.borrow_mut();
            if !pressure.is_pressing(sub) {
                return;
            }
            if !drained {
                if let Some(p) = pressure.pressing.get_mut(&sub) {
                    p.progress = self.now();
                }
                return;
            }
        }
        self.release_publishers(sub);
    }

    /// Resumes every publisher subscriber `sub` holds back (its queue
    /// drained, its connection ended or was cut).
    pub(super) fn release_publishers(&self, sub: SessionId) {
        let Some(p) = self.pressure.borrow_mut().pressing.remove(&sub) else {
            return;
        };
        for origin in p.into_origins() {
            self.signal_publisher(origin, false);
        }
    }

    /// True if `conn`'s session is a publisher held back: its input is
    /// not read, nor its next PUBLISH handled.
    /// A client that hung up is not: what it sent before leaving is
    /// handled (bounded by its socket buffer), and it leaves at once. A
    /// publisher held by its acknowledgements is read on.
    pub(super) fn held_back(&self, conn: &ConnShared) -> bool {
        !conn.hung_up.get() && !self.held_by_acks(conn) && self.is_paused(conn)
    }

    /// How a paused publisher is held: a 5.0 one (without persistence,
    /// whose acknowledgements wait for the journal) by its PUBACK/PUBREC,
    /// kept back until it is released, so that its own Receive Maximum
    /// stops it while its socket is read on (its acknowledgements of what
    /// it receives, its PINGREQs); any other by not reading it.
    fn held_by_acks(&self, conn: &ConnShared) -> bool {
        conn.version.is_v5() && self.durable.is_none()
    }

    fn is_paused(&self, conn: &ConnShared) -> bool {
        self.pressure.borrow().is_paused(conn.session.get())
    }

    /// Sends a publisher's PUBACK/PUBREC, or keeps it while the publisher
    /// is held by its acknowledgements. More of them unanswered than the
    /// Receive Maximum we announced is the client's protocol error.
    pub(super) fn acknowledge_publish(
        &self,
        mark: Option<Mark>,
        conn: &Rc<ConnShared>,
        ack: Packet,
    ) -> Result<(), CloseReason> {
        if !(self.held_by_acks(conn) && self.is_paused(conn)) {
            self.ack_when_durable(mark, conn, ack);
            return Ok(());
        }
        if conn.hold_ack(ack) > usize::from(self.config.max_inflight_messages) {
            return Err(CloseReason::Protocol(
                ReasonCode::ReceiveMaximumExceeded,
                "more QoS 1/2 messages in flight than the receive maximum",
            ));
        }
        Ok(())
    }

    /// A subscriber (here or on another shard) holds local session `sid`
    /// back. Counted only while the session exists.
    pub(super) fn pause_publisher(&self, sid: SessionId) {
        if !self.sessions.borrow().by_id.contains_key(&sid) {
            return;
        }
        *self.pressure.borrow_mut().paused.entry(sid).or_insert(0) += 1;
    }

    /// A subscriber released local session `sid`: once none holds it, its
    /// connection is read again (its earlier readiness edges were passed
    /// over, so it is revisited from the pending work).
    pub(super) fn resume_publisher(&self, sid: SessionId) {
        {
            let mut pressure = self.pressure.borrow_mut();
            let Some(count) = pressure.paused.get_mut(&sid) else {
                return;
            };
            *count -= 1;
            if *count > 0 {
                return;
            }
            pressure.paused.remove(&sid);
        }
        let Some(conn) = self.online_conn(sid) else {
            return;
        };
        for ack in conn.take_held_acks() {
            self.send_packet(&conn, &ack);
        }
        if let Some(token) = conn.token() {
            self.again.borrow_mut().push(token);
        }
    }

    /// The connection of session `sid`, if it is online.
    fn online_conn(&self, sid: SessionId) -> Option<Rc<ConnShared>> {
        let sessions = self.sessions.borrow();
        sessions.by_id.get(&sid).and_then(|s| s.conn.clone())
    }

    /// Session `sid` ends: it holds nobody back and nobody holds it.
    pub(super) fn forget_pressure(&self, sid: SessionId) {
        self.release_publishers(sid);
        self.pressure.borrow_mut().paused.remove(&sid);
    }

    /// Once a second: cuts subscribers that held publishers back for
    /// `overload_stall_timeout` seconds without progress.
    pub(super) fn cut_stalled(&self, now: u64) {
        if self.pressure.borrow().pressing.is_empty() {
            return;
        }
        let bound = u64::from(self.config.overload_stall_timeout);
        let stalled = self.pressure.borrow().stalled(now, bound);
        for (sid, idle) in stalled {
            let conn = self.online_conn(sid);
            // One held back as a publisher itself is not read: its silence
            // is partly ours. It gets twice the bound, so that the
            // subscriber holding it is cut first (and a cycle of clients
            // holding each other back still ends).
            if idle < 2 * bound && conn.as_ref().is_some_and(|c| self.held_back(c)) {
                continue;
            }
            log::info!("session {sid}: cut as a slow consumer ({bound} s without progress)");
            Stats::bump(&self.stats.slow_consumers);
            match conn {
                Some(conn) => {
                    let reason = CloseReason::Protocol(ReasonCode::QuotaExceeded, SLOW_CONSUMER);
                    self.close_conn(&conn, reason);
                }
                None => self.release_publishers(sid),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(shard: u16, session: u64) -> Origin {
        Origin { shard, session }
    }

    #[test]
    fn a_publisher_is_pressed_once_per_subscriber() {
        let mut p = Pressure::default();
        assert!(p.press(1, origin(0, 7), 10));
        assert!(!p.press(1, origin(0, 7), 11), "already held");
        assert!(p.press(1, origin(1, 7), 11), "another shard's session 7");
        assert!(p.press(2, origin(0, 7), 11), "another subscriber");
        assert!(p.is_pressing(1) && p.is_pressing(2) && !p.is_pressing(3));
    }

    #[test]
    fn the_set_of_paused_publishers_is_bounded() {
        let mut p = Pressure::default();
        for s in 0..PRESSURE_PUBLISHERS_MAX as u64 {
            assert!(p.press(1, origin(0, s + 1), 0));
        }
        assert!(!p.press(1, origin(0, u64::MAX), 0));
        assert_eq!(p.pressing[&1].origins.len(), PRESSURE_PUBLISHERS_MAX);
    }

    #[test]
    fn a_subscriber_without_progress_stalls_after_the_bound() {
        let mut p = Pressure::default();
        p.press(1, origin(0, 7), 10);
        p.press(2, origin(0, 7), 13);
        assert!(p.stalled(14, 5).is_empty());
        assert_eq!(p.stalled(15, 5), vec![(1, 5)]);
        let mut both = p.stalled(18, 5);
        both.sort_unstable();
        assert_eq!(both, vec![(1, 8), (2, 5)]);
    }
}
