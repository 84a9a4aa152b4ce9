//! A journal compaction taken in slices: the loop's share of it is bounded
//! whatever the shard's live state, and the rest (encoding, writing) runs
//! off the loop (see `persist::journal`).
//!
//! When the journal is due (twice its live state, see
//! [`Durable::due_for_compaction`]), the shard, at the end of a turn:
//!
//! 1. **Begins**: the journal keeps a copy of every batch handed over from
//!    now on ([`Durable::begin_compaction`]), and the ids of the shard's
//!    sessions are listed (a copy of the map's keys: the only step that
//!    grows with the number of sessions, a few nanoseconds each).
//! 2. **Slices**, one per turn: at most [`COMPACTION_SLICE`] records'
//!    worth, in list order; a session's own state (version, expiry,
//!    subscriptions, inbound QoS 2 ids, will) in one piece, then its
//!    journaled deliveries (in flight or queued) by ranges of delivery ids,
//!    each range whole as of the turn it is taken. The loop does not park
//!    meanwhile (its next deadline is now). A session gone when its turn
//!    comes is skipped.
//! 3. **Hands off** (the last slice also takes the retained topics this
//!    shard owns, in one walk): the slices are encoded and written off the
//!    loop, then every batch kept since step 1, then the batches after.
//!
//! Why this is recovered as the live state: each part of the snapshot is
//! the state of one thing (a session's header, a delivery, a retained
//! topic) at some time after the start, and every change made after the
//! start is in the batches kept, which fold on top of the snapshot, in
//! order. Every entry sets or removes one keyed thing (`persist::entry`):
//! `Session` (version and expiry), `Subscribe`/`Unsubscribe` (by filter),
//! `Qos2In`/`Qos2InDone` (by packet id, no duplicate), `Will`/`WillGone`,
//! `Enqueue` (by delivery id: a delivery queued again replaces itself,
//! never a second copy; its message is in the same kept batch), `Sent`,
//! `Released`, `Done` (by delivery id; one no longer there is ignored),
//! `SessionEnd` (removes the session and its deliveries; what came after it
//! is kept too), `Retain` (the latest stamp wins). So replaying a change
//! that a part already shows is harmless, and the last change of each
//! thing decides, as it did live. A delivery live at the start and at the
//! end is in exactly one range, taken while it was live (a delivery never
//! comes back after `Done`, and moving from the queue into flight keeps its
//! id); one made after the start is in the kept batches whole.
//!
//! The ranges rely on one order: journaled deliveries are queued in
//! delivery id order (ids come from one counter when queued, and the queue
//! is only pushed at its back), so a range of the queue is found by binary
//! search (`Session::snapshot_deliveries`). Those in flight are few (the
//! receive maximum) and are looked through whole for each range.
//!
//! Shard-local.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::durable::Durable;
use super::session::{Session, SessionId};
use super::{home_shard, Shard};
use crate::index::RetainStamp;
use crate::limits::COMPACTION_SLICE;
use crate::mesh::Message;
use crate::persist::state::{delivery_entries, session_entries};
use crate::persist::{Entry, StoredDelivery, StoredSession, StoredWill};

/// A compaction being taken, one slice per loop turn. Shard-local.
pub struct Slicing {
    /// The shard's sessions when it began, taken in this order.
    sids: Vec<SessionId>,
    /// The next of `sids` to take.
    next: usize,
    /// Within `sids[next]`: `None` before its own state is taken; then the
    /// highest delivery id taken so far (every delivery up to it is).
    after: Option<u64>,
    live: LiveState,
    turns: u32,
    /// The longest slice, and all of them, on the loop.
    longest: Duration,
    total: Duration,
}

impl Shard {
    /// End of a turn, after the batch is handed over: begins a compaction
    /// if the journal is due, takes the next slice of one begun, and hands
    /// it off once whole.
    pub(super) fn compact_journal(&self, d: &Durable) {
        let mut slot = d.compaction.borrow_mut();
        if slot.is_none() {
            if !d.due_for_compaction() {
                return;
            }
            d.begin_compaction();
            let sids = self.sessions.borrow().by_id.keys().copied().collect();
            *slot = Some(Slicing::new(sids));
        }
        let Some(s) = slot.as_mut() else {
            return;
        };
        let started = Instant::now();
        let whole = {
            let sessions = self.sessions.borrow();
            s.take(
                |sid| sessions.by_id.get(&sid).map(|s| &**s),
                COMPACTION_SLICE,
            )
        };
        if whole {
            self.take_retained(&mut s.live);
        }
        let took = started.elapsed();
        s.turns += 1;
        s.longest = s.longest.max(took);
        s.total += took;
        if !whole {
            return;
        }
        let Some(s) = slot.take() else {
            return;
        };
        let n = s.live.records();
        d.compact(s.live);
        log::info!(
            "shard {}: journal compaction to {n} records started; the loop paused {:?} \
             at most per turn ({} turns, {:?} in all)",
            self.id,
            s.longest,
            s.turns,
            s.total
        );
    }

    /// True while a compaction is being taken: the loop must come back.
    pub(super) fn compacting(&self) -> bool {
        self.durable
            .as_deref()
            .is_some_and(|d| d.compaction.borrow().is_some())
    }

    /// The retained messages whose topics this shard owns, messages
    /// shared.
    fn take_retained(&self, live: &mut LiveState) {
        let shards = self.mesh.shards();
        self.retained.borrow().for_each(|topic, stamp, msg| {
            if home_shard(topic, shards) == self.id {
                live.retained
                    .push((topic.to_string(), stamp, Arc::clone(msg)));
            }
        });
    }
}

impl Slicing {
    /// A compaction of `sids` (the shard's sessions now).
    fn new(sids: Vec<SessionId>) -> Slicing {
        Slicing {
            sids,
            next: 0,
            after: None,
            live: LiveState::default(),
            turns: 0,
            longest: Duration::ZERO,
            total: Duration::ZERO,
        }
    }

    /// Takes about `budget` records' worth of the sessions still to take
    /// (`session` finds one by id); true once they all are.
    fn take<'a>(
        &mut self,
        session: impl Fn(SessionId) -> Option<&'a Session>,
        mut budget: usize,
    ) -> bool {
        while let Some(&sid) = self.sids.get(self.next) {
            if budget == 0 {
                return false;
            }
            let Some(session) = session(sid).filter(|s| s.journaled) else {
                (self.next, self.after) = (self.next + 1, None);
                continue;
            };
            let after = match self.after {
                Some(after) => after,
                None => {
                    let head = session.snapshot_head();
                    budget = budget.saturating_sub(1 + head.subscriptions.len());
                    self.live.parts.push(Part::Session(Box::new(head)));
                    0
                }
            };
            let mut deliveries = Vec::new();
            let upto = session.snapshot_deliveries(after, budget, &mut deliveries);
            budget = budget.saturating_sub(deliveries.len());
            if !deliveries.is_empty() {
                let client_id = session.client_id.to_string();
                self.live
                    .parts
                    .push(Part::Deliveries(client_id, deliveries));
            }
            if upto == u64::MAX {
                (self.next, self.after) = (self.next + 1, None);
            } else {
                self.after = Some(upto);
            }
        }
        true
    }
}

/// A shard's live state for a compaction, taken on its loop in slices
/// (messages shared, not copied) and encoded off it. `Send`.
#[derive(Default)]
pub struct LiveState {
    parts: Vec<Part>,
    retained: Vec<(String, RetainStamp, Arc<Message>)>,
}

/// One slice's worth of a session.
enum Part {
    /// Its own state.
    Session(Box<SessionSnapshot>),
    /// A range of its deliveries (client id, deliveries).
    Deliveries(String, Vec<SnapshotDelivery>),
}

/// One persistent session's own durable state (see
/// `Session::snapshot_head`).
pub struct SessionSnapshot {
    pub client_id: String,
    pub version: u8,
    pub expiry: u32,
    /// (filter, options byte, subscription identifier or 0).
    pub subscriptions: Vec<(String, u8, u32)>,
    pub qos2_in: Vec<u16>,
    pub will: Option<StoredWill>,
}

/// A journaled delivery as it is now.
pub struct SnapshotDelivery {
    pub did: u64,
    pub msg: Arc<Message>,
    pub qos: u8,
    pub retain: bool,
    pub pid: Option<u16>,
    pub released: bool,
}

impl LiveState {
    /// How many records it makes (sessions count as one).
    pub fn records(&self) -> usize {
        let parts = self.parts.iter().map(|p| match p {
            Part::Session(_) => 1,
            Part::Deliveries(_, d) => 2 * d.len(),
        });
        parts.sum::<usize>() + self.retained.len()
    }

    /// Its records, as `persist::state` rebuilds a session: each message
    /// keyed by its delivery's id (the ids and the keys the journal uses
    /// come from one counter: no key is used twice in a file).
    pub fn encode(self, out: &mut bytes::BytesMut) {
        let mut entries = Vec::new();
        for part in self.parts {
            match part {
                Part::Session(s) => s.entries(&mut entries),
                Part::Deliveries(client_id, deliveries) => {
                    for d in deliveries {
                        delivery_entries(&mut entries, &client_id, d.did, &d.stored());
                    }
                }
            }
            for e in entries.drain(..) {
                crate::persist::record::append(out, e.kind(), |b| e.write_body(b));
            }
        }
        for (topic, stamp, msg) in self.retained {
            let e = Entry::Retain {
                nanos: stamp.nanos,
                shard: stamp.shard,
                topic,
                expires_at: msg.expires_at_unix(),
                publish: Some(msg.publish.clone()),
            };
            crate::persist::record::append(out, e.kind(), |b| e.write_body(b));
        }
    }
}

impl SnapshotDelivery {
    /// The delivery as recovery rebuilds it.
    fn stored(&self) -> StoredDelivery {
        StoredDelivery {
            publish: self.msg.publish.clone(),
            expires_at: self.msg.expires_at_unix(),
            qos: self.qos,
            retain: self.retain,
            pid: self.pid,
            released: self.released,
        }
    }
}

impl SessionSnapshot {
    /// The entries that rebuild the session's own state.
    fn entries(self, out: &mut Vec<Entry>) {
        let mut stored = StoredSession {
            version: self.version,
            expiry: self.expiry,
            qos2_in: self.qos2_in,
            will: self.will,
            ..StoredSession::default()
        };
        for (filter, options, id) in self.subscriptions {
            stored.subscriptions.insert(filter, (options, id));
        }
        let mut next = 0;
        out.extend(session_entries(&self.client_id, &stored, &mut next));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::rc::Rc;

    use bytes::Bytes;

    use super::*;
    use crate::mesh::Origin;
    use crate::persist::{Durability, DurableState, Journal};
    use crate::protocol::{
        PacketId, Properties, ProtocolVersion, Publish, QoS, SubscriptionOptions, TopicFilter,
        TopicName,
    };
    use crate::shard::conn::ConnShared;
    use crate::shard::durable::{self, Durable};
    use crate::shard::encode::EncodeCache;
    use crate::shard::session::{OutAck, QueueLimits};
    use crate::shard::subscribe::Subscription;

    const V5: ProtocolVersion = ProtocolVersion::V5;

    const LIMITS: QueueLimits = QueueLimits {
        max_messages: 100_000,
        max_bytes: 0,
        queue_qos0: true,
        max_inflight_bytes: 0,
        backpressure: false,
    };

    /// Persistent sessions journaling as the shard's do, changed by hand.
    struct World {
        d: Rc<Durable>,
        sessions: HashMap<SessionId, Session>,
        cache: EncodeCache,
        published: u32,
        /// Per online session: the packet ids acknowledged so far.
        acked: HashMap<SessionId, u16>,
    }

    impl World {
        fn client(sid: SessionId) -> Entry {
            Entry::Session {
                client_id: format!("c{}", sid % 8),
                version: V5 as u8,
                expiry: 3600,
            }
        }

        /// A new session `sid` (client id `c<sid % 8>`), online or not.
        fn open(&mut self, sid: SessionId, online: bool) {
            let mut s = Session::new(sid, Rc::from(format!("c{}", sid % 8)), V5);
            s.expiry = 3600;
            s.journaled = true;
            self.d.append(&World::client(sid));
            if online {
                self.online(&mut s);
            }
            self.sessions.insert(sid, s);
        }

        fn online(&mut self, s: &mut Session) {
            s.conn = Some(Rc::new(ConnShared::new(V5, u32::MAX, 0)));
            self.acked.insert(s.id, 0);
            s.drain(&LIMITS, &mut |_| {});
        }

        /// `n` QoS 1 messages to session `sid`: sent if it is online and
        /// its window has room, else queued.
        fn queue(&mut self, sid: SessionId, n: u32) {
            let Some(s) = self.sessions.get_mut(&sid) else {
                return;
            };
            for _ in 0..n {
                self.published += 1;
                let publish = Publish {
                    dup: false,
                    qos: QoS::AtLeastOnce,
                    retain: false,
                    topic: TopicName::from_str("t/x").expect("valid"),
                    packet_id: None,
                    payload: Bytes::from(format!("m{}", self.published)),
                    properties: Properties::default(),
                };
                let origin = Origin {
                    shard: 0,
                    session: 0,
                };
                let msg = Arc::new(Message::new(publish, origin));
                s.deliver(&msg, QoS::AtLeastOnce, false, &mut self.cache, &LIMITS);
            }
        }

        /// Online session `sid` acknowledges its oldest delivery in flight.
        fn ack(&mut self, sid: SessionId) {
            let (Some(s), Some(acked)) = (self.sessions.get_mut(&sid), self.acked.get_mut(&sid))
            else {
                return;
            };
            *acked += 1;
            let pid = PacketId::new(*acked).expect("non-zero");
            s.acknowledge(pid, OutAck::Ack);
            s.drain(&LIMITS, &mut |_| {});
        }

        fn subscribe(&mut self, sid: SessionId, filter: &str) {
            let Some(s) = self.sessions.get_mut(&sid) else {
                return;
            };
            let opts = SubscriptionOptions::from_byte(1, V5).expect("valid");
            let f = TopicFilter::from_str(filter).expect("valid");
            s.subscriptions.insert(f, Subscription { opts, id: None });
            self.d.append(&Entry::Subscribe {
                client_id: s.client_id.to_string(),
                filter: filter.to_string(),
                options: opts.to_byte(V5),
                id: 0,
            });
        }

        fn unsubscribe(&mut self, sid: SessionId, filter: &str) {
            let Some(s) = self.sessions.get_mut(&sid) else {
                return;
            };
            s.subscriptions
                .remove(&TopicFilter::from_str(filter).expect("valid"));
            let client_id = s.client_id.to_string();
            let filter = filter.to_string();
            self.d.append(&Entry::Unsubscribe { client_id, filter });
        }

        fn end(&mut self, sid: SessionId) {
            if let Some(s) = self.sessions.remove(&sid) {
                let client_id = s.client_id.to_string();
                self.d.append(&Entry::SessionEnd { client_id });
            }
        }

        /// The changes made between two slices, by turn.
        fn change(&mut self, turn: u32) {
            match turn % 6 {
                0 => (1..=9).for_each(|sid| self.queue(sid, 3)),
                1 => self.ack(1),
                2 => self.subscribe(turn as u64 % 6 + 1, &format!("s/{turn}")),
                3 => self.unsubscribe(turn as u64 % 6 + 1, &format!("s/{}", turn - 1)),
                _ => {}
            }
            self.ack(2);
            match turn {
                // Queued deliveries go in flight before their range is
                // taken (`Sent`, ids kept).
                2 => {
                    if let Some(mut s) = self.sessions.remove(&3) {
                        self.online(&mut s);
                        self.sessions.insert(3, s);
                    }
                }
                3 => self.end(5),
                5 => {
                    self.open(7, false);
                    self.queue(7, 12);
                }
                6 => {
                    if let Some(s) = self.sessions.get_mut(&4) {
                        s.qos2_remove(7);
                        s.qos2_insert(9);
                        s.expiry = 7200;
                    }
                    self.d.append(&Entry::Session {
                        client_id: "c4".into(),
                        version: V5 as u8,
                        expiry: 7200,
                    });
                }
                // Session 5's client id again, a new session.
                8 => {
                    self.open(13, false);
                    self.queue(13, 4);
                }
                9 => self.end(1),
                _ => {}
            }
        }

        /// The live state as recovery rebuilds it.
        fn live(&self) -> BTreeMap<String, StoredSession> {
            let stored = self.sessions.values().map(|s| {
                let head = s.snapshot_head();
                let mut deliveries = Vec::new();
                s.snapshot_deliveries(0, usize::MAX, &mut deliveries);
                deliveries.sort_by_key(|d| d.did);
                let mut qos2_in = head.qos2_in;
                qos2_in.sort_unstable();
                let subscriptions = head.subscriptions.into_iter();
                let stored = StoredSession {
                    version: head.version,
                    expiry: head.expiry,
                    subscriptions: subscriptions.map(|(f, o, id)| (f, (o, id))).collect(),
                    deliveries: deliveries.iter().map(SnapshotDelivery::stored).collect(),
                    qos2_in,
                    will: head.will,
                };
                (head.client_id, stored)
            });
            stored.collect()
        }
    }

    #[test]
    fn a_compaction_taken_over_many_turns_while_sessions_change_recovers_the_live_state() {
        let dir = std::env::temp_dir().join(format!("shardmq-slices-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (journal, _) = Journal::open(&dir, 0, Durability::Written, || {}).expect("opens");
        let d = Rc::new(Durable::new(journal, 1, 1, 0));
        durable::install(&d);
        let mut w = World {
            d: Rc::clone(&d),
            sessions: HashMap::new(),
            cache: EncodeCache::default(),
            published: 0,
            acked: HashMap::new(),
        };
        for sid in 1..=6 {
            w.open(sid, sid <= 2);
            w.subscribe(sid, "a/#");
            w.subscribe(sid, "s/0");
            w.queue(sid, 30);
        }
        if let Some(s) = w.sessions.get_mut(&4) {
            s.qos2_insert(7);
        }
        d.submit();

        // Slices of 7 records: many turns, a change between each.
        d.begin_compaction();
        let mut slicing = Slicing::new(w.sessions.keys().copied().collect());
        let mut turn = 0;
        loop {
            let whole = slicing.take(|sid| w.sessions.get(&sid), 7);
            if whole {
                break;
            }
            turn += 1;
            w.change(turn);
            d.submit();
        }
        assert!(turn >= 10, "taken in {turn} turns");
        d.compact(slicing.live);
        for more in 0..6 {
            w.change(turn + more);
            d.submit();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while d.compaction_running() {
            assert!(Instant::now() < deadline, "the compaction never finished");
            std::thread::sleep(Duration::from_millis(5));
            d.submit();
        }
        w.queue(3, 2);
        d.submit();

        let (_reader, recovered) =
            Journal::open(&dir, 0, Durability::Written, || {}).expect("reopens");
        let mut state = DurableState::default();
        state.fold_file("shard-0", &recovered.records);
        assert!(state.damage.is_empty(), "{:?}", state.damage);
        for s in state.sessions.values_mut() {
            s.qos2_in.sort_unstable();
        }
        let live = w.live();
        assert!(live.values().map(|s| s.deliveries.len()).sum::<usize>() > 150);
        assert_eq!(state.sessions, live);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
