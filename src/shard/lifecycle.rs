//! A session's life on its home shard: created or resumed at CONNECT,
//! taken over by a newer connection, offline with a deadline, ended.

use std::rc::Rc;

use super::conn::{CloseReason, ConnShared};
use super::session::{Session, SessionId, NEVER_EXPIRES};
use super::will::Will;
use super::{Shard, Stats};
use crate::protocol::{Connect, ProtocolVersion, TopicFilter};

impl Shard {
    /// A client id for a client that sent none, homed on this shard:
    /// `prefix` (its listener's `auto_id_prefix`) and 16 random hex digits.
    pub(super) fn assign_client_id(&self, prefix: &str) -> String {
        loop {
            let id = format!("{prefix}{:016x}", self.random());
            if self.home_of(&id) == self.id {
                return id;
            }
        }
    }

    /// The session lifetime a CONNECT asks for, in seconds.
    pub(super) fn session_expiry(&self, connect: &Connect) -> u32 {
        let asked = if connect.protocol.is_v5() {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            NEVER_EXPIRES
        };
        match self.config.persistent_client_expiration {
            Some(cap) if asked != 0 => {
                asked.min(u32::try_from(cap.as_secs()).unwrap_or(NEVER_EXPIRES - 1))
            }
            _ => asked,
        }
    }

    /// The keepalive a CONNECT gets: the client's, lowered to
    /// `max_keepalive` (in 5.0 also raised from 0, "none", to it).
    /// `max_keepalive 0` sets no limit, as in Mosquitto.
    pub(super) fn granted_keep_alive(&self, connect: &Connect) -> u16 {
        let max = self.config.max_keepalive;
        let ka = connect.keep_alive;
        if max != 0 && (ka > max || (ka == 0 && connect.protocol.is_v5() && max < u16::MAX)) {
            max
        } else {
            ka
        }
    }

    /// Binds `conn` to its client's session: takes over a connected one,
    /// resumes or discards an existing one, or creates one. Returns Session
    /// Present.
    pub(super) fn attach(self: &Rc<Self>, conn: &Rc<ConnShared>, connect: &Connect) -> bool {
        let client_id = Rc::clone(&conn.client_id);
        let existing = self.sessions.borrow().by_client.get(&client_id).copied();
        let mut resumed = None;
        if let Some(sid) = existing {
            self.take_over(sid);
            // A session whose lifetime is its connection's (Clean Session
            // 1, Session Expiry 0) ends with it, taken over or not.
            if connect.clean_start || self.session_ends_with_connection(sid) {
                self.end_session(sid);
            } else {
                resumed = Some(sid);
            }
        }
        let sid = match resumed {
            Some(sid) => sid,
            None => self.new_session(&client_id, connect.protocol),
        };
        conn.set_keepalive(self.granted_keep_alive(connect));
        conn.session.set(sid);
        let expiry = self.session_expiry(connect);
        // Back in time: a will still held back is not sent.
        drop(self.take_delayed_will(sid));
        let mut sessions = self.sessions.borrow_mut();
        if let Some(s) = sessions.by_id.get_mut(&sid) {
            s.conn = Some(Rc::clone(conn));
            s.username = conn.username.clone();
            s.listener = conn.listener;
            s.acl_memo.take();
            s.version = connect.protocol;
            s.will = connect.will.as_ref().map(Will::keep);
            s.expiry = expiry;
            s.set_offline_since(None);
            self.journal_session(s);
            let client_max = connect.properties.receive_maximum.unwrap_or(u16::MAX);
            s.window = self.config.max_inflight_messages.min(client_max).max(1);
        }
        drop(sessions);
        self.journal_will(sid);
        resumed.is_some()
    }

    /// Does session `sid` end when its connection does (expiry 0)?
    fn session_ends_with_connection(&self, sid: SessionId) -> bool {
        self.sessions
            .borrow()
            .by_id
            .get(&sid)
            .is_some_and(|s| s.expiry == 0)
    }

    /// Closes the session's current connection, if any, publishing its will
    /// (or holding it back, see [`Shard::will_on_close`]).
    pub(super) fn take_over(self: &Rc<Self>, sid: SessionId) {
        // What the old connection sent before the new one arrived comes
        // first: a DISCONNECT still unread in its socket (the new CONNECT
        // may come over the mesh ahead of it) must decide about the will.
        let old_token = self
            .sessions
            .borrow()
            .by_id
            .get(&sid)
            .and_then(|s| s.conn.as_ref()?.token());
        if let Some(token) = old_token {
            self.read_conn(token, true);
        }
        let (old, will) = {
            let mut sessions = self.sessions.borrow_mut();
            let Some(s) = sessions.by_id.get_mut(&sid) else {
                return;
            };
            // An offline session's will (one held back) stays.
            let Some(old) = s.conn.take() else {
                return;
            };
            (old, s.will.take())
        };
        // A connection already closing (its DISCONNECT was read this turn;
        // teardown happens at the end of the turn) ends for that reason:
        // a clean DISCONNECT's will is not published by the takeover.
        let reason = old.close_reason().unwrap_or(CloseReason::SessionTakenOver);
        if reason == CloseReason::SessionTakenOver {
            Stats::bump(&self.stats.taken_over);
        }
        self.close_conn(&old, CloseReason::SessionTakenOver);
        if let (true, Some(will)) = (reason.publishes_will(), will) {
            self.will_on_close(sid, will);
        }
    }

    pub(super) fn new_session(&self, client_id: &Rc<str>, version: ProtocolVersion) -> SessionId {
        let sid = self.next_session.get();
        self.next_session.set(sid + 1);
        let mut sessions = self.sessions.borrow_mut();
        sessions.by_id.insert(
            sid,
            Box::new(Session::new(sid, Rc::clone(client_id), version)),
        );
        sessions.by_client.insert(Rc::clone(client_id), sid);
        sid
    }

    /// After CONNACK on a resumed session: resend what was in flight, then
    /// what was queued.
    pub(super) fn resume(&self, conn: &Rc<ConnShared>) {
        let mut sessions = self.sessions.borrow_mut();
        if let Some(s) = sessions.by_id.get_mut(&conn.session.get()) {
            self.count_dropped(s.resend_inflight());
            self.drain_queue(s);
        }
        self.mark_dirty(conn);
    }

    /// The connection ended: publish (or hold back) the will if due, and
    /// end the session or keep it offline, unless another connection took
    /// it over.
    pub(super) fn finish(self: &Rc<Self>, conn: &Rc<ConnShared>, reason: CloseReason) {
        let sid = conn.session.get();
        let (will, ends, held) = {
            let mut sessions = self.sessions.borrow_mut();
            let Some(s) = sessions.by_id.get_mut(&sid) else {
                return;
            };
            if !s.conn.as_ref().is_some_and(|c| Rc::ptr_eq(c, conn)) {
                return; // taken over: the session is someone else's now
            }
            s.conn = None;
            let now = self.now();
            s.set_offline_since(Some(now));
            if s.expiry != 0 && s.expiry != NEVER_EXPIRES {
                let due = now + u64::from(s.expiry);
                self.expiries.borrow_mut().entry(due).or_default().push(sid);
            }
            let ends = s.expiry == 0;
            // Past its limits only while it held publishers back: what
            // an offline session keeps is `max_queued_*`.
            self.count_dropped(s.trim_queue(&self.queue_limits));
            // What it held for shared groups goes to another member (an
            // ending session's, in `end_session`).
            let held = if ends {
                Vec::new()
            } else {
                s.take_shared(false)
            };
            (s.will.take(), ends, held)
        };
        self.release_publishers(sid);
        if let (true, Some(will)) = (reason.publishes_will(), will) {
            self.will_on_close(sid, will);
        }
        self.journal_will(sid);
        if ends {
            self.end_session(sid);
        }
        self.release_shared(held);
        log::debug!("session {sid}: connection closed: {reason:?}");
    }

    /// Sends queued messages after the connection's buffer drained.
    pub fn drain_session(&self, conn: &Rc<ConnShared>) {
        let sid = conn.session.get();
        let drained = {
            let mut sessions = self.sessions.borrow_mut();
            let Some(s) = sessions.by_id.get_mut(&sid) else {
                return self.mark_dirty(conn);
            };
            self.drain_queue(s);
            s.at_low_watermark(&self.queue_limits)
        };
        self.pressure_progress(sid, drained);
        self.mark_dirty(conn);
    }

    /// Removes a session and all its subscriptions, publishing a will it
    /// still held back.
    pub fn end_session(self: &Rc<Self>, sid: SessionId) {
        self.send_delayed_will(sid);
        self.forget_pressure(sid);
        let (filters, held): (Vec<TopicFilter>, _) = {
            let mut sessions = self.sessions.borrow_mut();
            let Some(s) = sessions.by_id.get_mut(&sid) else {
                return;
            };
            let held = s.take_shared(true);
            // One record ends it all (no record per subscription).
            let journaled = std::mem::take(&mut s.journaled);
            if let (Some(d), true) = (&self.durable, journaled) {
                let client_id = s.client_id.to_string();
                d.append(&crate::persist::Entry::SessionEnd { client_id });
            }
            (s.subscriptions.keys().cloned().collect(), held)
        };
        for f in &filters {
            self.remove_subscription(sid, f);
        }
        {
            let mut sessions = self.sessions.borrow_mut();
            if let Some(s) = sessions.by_id.remove(&sid) {
                sessions.by_client.remove(&s.client_id);
            }
        }
        // Once it is no member any more: another one takes them.
        self.release_shared(held);
    }
}
