//! Durable state on a shard: its journal, what it appends, and the
//! acknowledgements that wait for it (see `crate::persist`).
//!
//! What is journaled: persistent sessions (Session Expiry > 0, or clean
//! session 0), their subscriptions, every QoS 1/2 delivery to them from
//! queue to completion, their inbound QoS 2 ids, and the retained updates
//! this shard originates. Clean sessions cost nothing.
//!
//! When a publisher's PUBACK/PUBREC goes out: once the journal batch that
//! holds what this shard did for the message is durable, and once every
//! data shard (and the bridge thread, which journals its links' queues)
//! it forwarded the message to has said the same of its own
//! journal (`ShardMsg::Durable`, a running count of the QoS 1/2 messages
//! forwarded to it: mesh queues keep order, so one number confirms them
//! all). A shared subscription delivery, which may be passed from shard
//! to shard, carries a ticket instead, confirmed by the shard that takes
//! it (`ShardMsg::SharedDurable`). No shard's loop waits on another or on
//! the disk; an
//! acknowledgement waits, which is what "acknowledged means durable" asks.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet, VecDeque};
use std::num::{NonZeroU16, NonZeroU32};
use std::rc::Rc;
use std::sync::Arc;

use super::compaction::{LiveState, Slicing};
use super::conn::ConnShared;
use super::session::{Session, SessionId, NEVER_EXPIRES};
use super::subscribe::Subscription;
use super::will::Will;
use super::{home_shard, Shard};
use crate::index::{RetainStamp, ShardSet};
use crate::limits::MAX_SHARDS;
use crate::mesh::{Message, Origin, ShardMsg};
use crate::persist::entry;
use crate::persist::{Entry, Journal, StoredRetained, StoredSession};
use crate::protocol::{Packet, ProtocolVersion, QoS, SubscriptionOptions, TopicFilter, TopicName};

/// Per data shard, a running count of messages.
type Counts = Vec<(usize, u64)>;

/// Shared deliveries' tickets: (the shard that issued it, ticket).
type Tickets = Vec<(usize, u64)>;

/// A publisher's acknowledgement waiting for durability.
struct Waiting {
    /// The journal batch that must be durable.
    batch: u64,
    /// Per data shard forwarded to: the count its confirmation must reach.
    peers: Counts,
    /// Shared deliveries' tickets that must be confirmed.
    tickets: Vec<u64>,
    conn: Rc<ConnShared>,
    ack: Packet,
}

/// A shard's journal and its bookkeeping. Shard-local.
pub struct Durable {
    journal: RefCell<Journal>,
    /// Message keys and delivery ids come from this one counter, so that
    /// a compaction can key a delivery's message by the delivery's id.
    next_id: Cell<u64>,
    /// Messages journaled in the current batch, by address, with their
    /// key (the batch's `Arc`s keep the addresses valid until it is
    /// handed over, when this is cleared).
    keys: RefCell<HashMap<*const Message, u64>>,
    /// Records appended since the last [`Durable::mark`].
    appended: Cell<u64>,
    waiting: RefCell<VecDeque<Waiting>>,
    /// Per peer (data shard or the bridge thread): QoS 1/2 messages
    /// forwarded to it, and how many of them it has confirmed.
    sent: RefCell<Vec<u64>>,
    confirmed: RefCell<Vec<u64>>,
    /// Per data shard: QoS 1/2 messages it forwarded here, and the counts
    /// to confirm once a batch is durable.
    received: RefCell<Vec<u64>>,
    to_confirm: RefCell<VecDeque<(u64, Counts)>>,
    /// Peers whose count moved since the last batch.
    moved: Cell<ShardSet>,
    /// Data shards forwarded to since the last [`Durable::mark`].
    forwarded_to: Cell<ShardSet>,
    /// Shared deliveries: the next ticket, the tickets issued and not yet
    /// confirmed, and those issued since the last [`Durable::mark`].
    next_ticket: Cell<u64>,
    open_tickets: RefCell<HashSet<u64>>,
    tickets_since_mark: RefCell<Vec<u64>>,
    /// Tickets of other shards' deliveries taken this turn, and those to
    /// confirm once their batch is durable (issuer, ticket).
    taken: RefCell<Tickets>,
    tickets_to_confirm: RefCell<VecDeque<(u64, Tickets)>>,
    /// No compaction before the journal holds this many bytes
    /// (`persistence_compact_size`).
    compact_min: u64,
    /// The compaction being taken in slices, one per loop turn.
    pub(super) compaction: RefCell<Option<Slicing>>,
}

thread_local! {
    /// The journal of the shard this thread runs, if persistence is on.
    /// A shard is one thread: sessions reach their shard's journal here
    /// instead of each holding a pointer to it.
    static JOURNAL: RefCell<Option<Rc<Durable>>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's shard journal, if there is one.
pub fn with_journal<T>(f: impl FnOnce(&Durable) -> T) -> Option<T> {
    JOURNAL.with(|j| j.borrow().as_deref().map(f))
}

/// Makes `durable` this thread's shard journal.
pub(super) fn install(durable: &Rc<Durable>) {
    JOURNAL.with(|j| *j.borrow_mut() = Some(Rc::clone(durable)));
}

/// What a [`Durable::mark`] saw: compared after routing a message to tell
/// whether its acknowledgement must wait.
pub struct Mark {
    appended: u64,
}

impl Durable {
    /// Wraps an open journal whose recovered records used keys and
    /// delivery ids below `next`; `peers` counts the mesh peers that
    /// confirm (the data shards and the bridge thread).
    pub fn new(journal: Journal, peers: usize, next: u64, compact_min: u64) -> Durable {
        Durable {
            journal: RefCell::new(journal),
            next_id: Cell::new(next),
            keys: RefCell::default(),
            appended: Cell::new(0),
            waiting: RefCell::default(),
            sent: RefCell::new(vec![0; peers]),
            confirmed: RefCell::new(vec![0; peers]),
            received: RefCell::new(vec![0; peers]),
            to_confirm: RefCell::default(),
            moved: Cell::new(ShardSet::default()),
            forwarded_to: Cell::new(ShardSet::default()),
            next_ticket: Cell::new(1),
            open_tickets: RefCell::default(),
            tickets_since_mark: RefCell::default(),
            taken: RefCell::default(),
            tickets_to_confirm: RefCell::default(),
            compact_min,
            compaction: RefCell::default(),
        }
    }

    /// Appends `entry` to the current batch.
    pub fn append(&self, entry: &Entry) {
        self.journal
            .borrow_mut()
            .append(entry.kind(), |b| entry.write_body(b));
        self.appended.set(self.appended.get() + 1);
    }

    /// Journals a QoS 1/2 delivery of `msg` to `client_id` (the message
    /// body once per batch); returns the delivery's id.
    pub fn enqueue(&self, client_id: &str, msg: &Arc<Message>, qos: u8, retain: bool) -> u64 {
        let key = self.key_of(msg);
        let delivery = self.next_id();
        // Written from references: no owned entry per delivery.
        self.journal.borrow_mut().append(entry::ENQUEUE, |b| {
            entry::write_enqueue(b, (delivery, client_id), key, qos, retain)
        });
        self.appended.set(self.appended.get() + 1);
        delivery
    }

    fn key_of(&self, msg: &Arc<Message>) -> u64 {
        let ptr = Arc::as_ptr(msg);
        if let Some(key) = self.keys.borrow().get(&ptr) {
            return *key;
        }
        let key = self.next_id();
        let expires_at = msg.expires_at_unix();
        self.journal.borrow_mut().append(entry::MESSAGE, |b| {
            entry::write_message(b, key, expires_at, &msg.publish)
        });
        self.appended.set(self.appended.get() + 1);
        self.keys.borrow_mut().insert(ptr, key);
        key
    }

    fn next_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    /// Where the journal and the forward counts are now.
    /// (Routing is synchronous: nothing else forwards between a mark and
    /// its [`hold`](Self::hold).)
    pub fn mark(&self) -> Mark {
        self.forwarded_to.set(ShardSet::default());
        self.tickets_since_mark.borrow_mut().clear();
        Mark {
            appended: self.appended.get(),
        }
    }

    /// A ticket for a QoS 1/2 shared delivery that may be passed on
    /// from shard to shard: what routes it waits for the ticket.
    pub fn ticket(&self) -> u64 {
        let t = self.next_ticket.get();
        self.next_ticket.set(t + 1);
        self.open_tickets.borrow_mut().insert(t);
        self.tickets_since_mark.borrow_mut().push(t);
        t
    }

    /// This shard took a shared delivery with shard `issuer`'s `ticket`.
    pub fn took(&self, issuer: usize, ticket: u64) {
        self.taken.borrow_mut().push((issuer, ticket));
    }

    /// Ticket `ticket` of this shard was confirmed.
    pub fn ticket_confirmed(&self, ticket: u64) {
        self.open_tickets.borrow_mut().remove(&ticket);
    }

    /// A QoS 1/2 message went to data shard `peer`.
    pub fn forwarded(&self, peer: usize) {
        self.sent.borrow_mut()[peer] += 1;
        let mut to = self.forwarded_to.get();
        to.insert(peer);
        self.forwarded_to.set(to);
    }

    /// A QoS 1/2 message came from data shard `peer`.
    pub fn received(&self, peer: usize) {
        self.received.borrow_mut()[peer] += 1;
        let mut moved = self.moved.get();
        moved.insert(peer);
        self.moved.set(moved);
    }

    /// Data shard `peer` confirmed the first `n` messages sent to it.
    pub fn confirmed(&self, peer: usize, n: u64) {
        let mut c = self.confirmed.borrow_mut();
        c[peer] = c[peer].max(n);
    }

    /// Sends `ack` on `conn` now if routing since `mark` journaled and
    /// forwarded nothing; otherwise files it until that is durable.
    /// Returns the ack back when it may go at once.
    pub fn hold(&self, mark: &Mark, conn: &Rc<ConnShared>, ack: Packet) -> Option<Packet> {
        let sent = self.sent.borrow();
        let peers: Counts = self
            .forwarded_to
            .get()
            .iter()
            .map(|p| (p, sent[p]))
            .collect();
        let journaled = self.appended.get() != mark.appended;
        let tickets = std::mem::take(&mut *self.tickets_since_mark.borrow_mut());
        if peers.is_empty() && !journaled && tickets.is_empty() {
            return Some(ack);
        }
        // The batch this turn will hand over, or (nothing journaled here)
        // the one before, which may still be on its way.
        let next = self.journal.borrow().next_batch();
        let batch = if journaled { next } else { next - 1 };
        self.waiting.borrow_mut().push_back(Waiting {
            batch,
            peers,
            tickets,
            conn: Rc::clone(conn),
            ack,
        });
        None
    }

    /// End of a turn: hands the batch to the writer; the counts received
    /// so far are confirmed once it is durable.
    pub fn submit(&self) {
        let submitted = self.journal.borrow_mut().submit();
        self.keys.borrow_mut().clear();
        let batch = match submitted {
            Ok(Some(b)) => b,
            // Nothing journaled: durable as soon as what came before.
            Ok(None) | Err(_) => self.journal.borrow().next_batch() - 1,
        };
        let taken = std::mem::take(&mut *self.taken.borrow_mut());
        if !taken.is_empty() {
            self.tickets_to_confirm
                .borrow_mut()
                .push_back((batch, taken));
        }
        let moved = self.moved.replace(ShardSet::default());
        if moved.is_empty() {
            return;
        }
        let received = self.received.borrow();
        let counts = moved.iter().map(|p| (p, received[p])).collect();
        self.to_confirm.borrow_mut().push_back((batch, counts));
    }

    /// Acknowledgements now durable (to send, in order), and the
    /// confirmations due to peers.
    /// (`me`: this shard; a ticket of its own is confirmed here.)
    pub fn released(
        &self,
        me: usize,
        acks: &mut Vec<(Rc<ConnShared>, Packet)>,
        confirms: &mut Vec<(usize, u64)>,
        tickets: &mut Tickets,
    ) {
        let durable = self.journal.borrow().durable();
        let mut to_confirm = self.to_confirm.borrow_mut();
        while to_confirm.front().is_some_and(|(b, _)| *b <= durable) {
            if let Some((_, counts)) = to_confirm.pop_front() {
                confirms.extend(counts);
            }
        }
        let mut tickets_to_confirm = self.tickets_to_confirm.borrow_mut();
        while tickets_to_confirm
            .front()
            .is_some_and(|(b, _)| *b <= durable)
        {
            if let Some((_, taken)) = tickets_to_confirm.pop_front() {
                for (issuer, ticket) in taken {
                    if issuer == me {
                        self.ticket_confirmed(ticket);
                    } else {
                        tickets.push((issuer, ticket));
                    }
                }
            }
        }
        let confirmed = self.confirmed.borrow();
        let open = self.open_tickets.borrow();
        let mut waiting = self.waiting.borrow_mut();
        while let Some(w) = waiting.front() {
            let ready = w.batch <= durable
                && w.peers.iter().all(|(p, n)| confirmed[*p] >= *n)
                && w.tickets.iter().all(|t| !open.contains(t));
            if !ready {
                break;
            }
            if let Some(w) = waiting.pop_front() {
                acks.push((w.conn, w.ack));
            }
        }
    }

    /// True when the journal has grown past its bound (twice the live
    /// state at the last compaction, and at least `compact_min`) and no
    /// compaction is running or being taken.
    pub fn due_for_compaction(&self) -> bool {
        self.journal.borrow().due_for_compaction(self.compact_min)
    }

    /// True while a compaction is written (not yet in place).
    #[cfg(test)]
    pub(super) fn compaction_running(&self) -> bool {
        self.journal.borrow().compacting()
    }

    /// Begins a compaction taken in slices (see `shard::compaction`): the
    /// journal keeps the batches handed over from now on.
    pub(super) fn begin_compaction(&self) {
        self.journal.borrow_mut().begin_compaction();
    }

    /// Replaces the journal with `live` (the live state, taken in slices
    /// since [`begin_compaction`](Self::begin_compaction)) and the batches
    /// kept since, encoded and written off this thread.
    pub(super) fn compact(&self, live: LiveState) {
        let snapshot = Box::new(move |out: &mut bytes::BytesMut| live.encode(out));
        // Refused while the writer is far behind: dropped, and due again.
        let _ = self.journal.borrow_mut().rotate(snapshot);
    }

    /// True while acknowledgements or confirmations wait.
    pub fn busy(&self) -> bool {
        !self.waiting.borrow().is_empty()
            || !self.to_confirm.borrow().is_empty()
            || !self.tickets_to_confirm.borrow().is_empty()
    }
}

const _: () = assert!(MAX_SHARDS <= u16::MAX as usize);

impl Shard {
    /// A retained update (`message`, `None` or an empty payload deleting)
    /// made here (`from` = `None`) or received from peer `from`: its
    /// topic's owner (`home_shard(topic)`; the only journal that holds the
    /// topic, so that a compaction never needs another file's records)
    /// journals it, and the origin counts it as forwarded to the owner,
    /// whose confirmation its acknowledgement waits for.
    pub(super) fn retained_durably(
        &self,
        topic: &TopicName,
        message: Option<&Message>,
        stamp: RetainStamp,
        from: Option<usize>,
    ) {
        let Some(d) = self.durable.as_deref() else {
            return;
        };
        // The broker's own `$SYS` values are published again at start: not
        // journaled (nor counted, on either side, as forwarded for one).
        if super::route::is_broker_only(topic.as_str()) {
            return;
        }
        let owner = home_shard(topic.as_str(), self.mesh.shards());
        if owner != self.id {
            if from.is_none() {
                d.forwarded(owner);
            }
            return;
        }
        if let Some(peer) = from {
            d.received(peer);
        }
        let set = message.filter(|m| !m.publish.payload.is_empty());
        d.append(&Entry::Retain {
            nanos: stamp.nanos,
            shard: stamp.shard,
            topic: topic.as_str().to_string(),
            expires_at: set.map_or(0, |m| m.expires_at_unix()),
            publish: set.map(|m| m.publish.clone()),
        });
    }

    /// Journals session `s` as it is now (created, or its expiry or
    /// protocol changed), and makes it journal its deliveries; a session
    /// that ends with its connection is journaled as ended instead.
    pub(super) fn journal_session(&self, s: &mut Session) {
        let Some(d) = &self.durable else {
            return;
        };
        let client_id = s.client_id.to_string();
        if s.expiry == 0 {
            if std::mem::take(&mut s.journaled) {
                d.append(&Entry::SessionEnd { client_id });
            }
            return;
        }
        d.append(&Entry::Session {
            client_id,
            version: s.version as u8,
            expiry: s.expiry,
        });
        s.journaled = true;
    }

    /// Journals session `sid`'s will as it is now (held, its connection's,
    /// or none), if the session is journaled.
    pub(super) fn journal_will(&self, sid: SessionId) {
        let Some(d) = self.durable.as_deref() else {
            return;
        };
        let sessions = self.sessions.borrow();
        let Some(s) = sessions.by_id.get(&sid).filter(|s| s.journaled) else {
            return;
        };
        let client_id = s.client_id.to_string();
        d.append(&match &s.will {
            Some(will) => {
                let w = will.stored();
                Entry::Will {
                    client_id,
                    due: w.due,
                    delay: w.delay,
                    publish: w.publish,
                }
            }
            None => Entry::WillGone { client_id },
        });
    }

    /// Sends a publisher's `ack` now, or once what routing did since
    /// `mark` is durable.
    pub(super) fn ack_when_durable(&self, mark: Option<Mark>, conn: &Rc<ConnShared>, ack: Packet) {
        let ack = match (self.durable.as_deref(), mark) {
            (Some(d), Some(mark)) => d.hold(&mark, conn, ack),
            _ => Some(ack),
        };
        if let Some(ack) = ack {
            self.send_packet(conn, &ack);
        }
    }

    /// End of a turn: the journal batch goes to the writer, and the
    /// journal is compacted (a slice of it) if it has grown past its bound.
    pub(super) fn submit_journal(&self) {
        let Some(d) = self.durable.as_deref() else {
            return;
        };
        d.submit();
        self.compact_journal(d);
    }

    /// Sends the acknowledgements and confirmations now durable; true if
    /// any.
    pub(super) fn release_durable(&self) -> bool {
        let Some(d) = self.durable.as_deref() else {
            return false;
        };
        if !d.busy() {
            return false;
        }
        let (mut acks, mut confirms, mut tickets) = (Vec::new(), Vec::new(), Vec::new());
        d.released(self.id, &mut acks, &mut confirms, &mut tickets);
        for (issuer, ticket) in &tickets {
            self.mesh.send(*issuer, ShardMsg::SharedDurable(*ticket));
        }
        for (conn, ack) in &acks {
            if !conn.is_closing() {
                self.send_packet(conn, ack);
            }
        }
        for (peer, n) in &confirms {
            self.mesh.send(*peer, ShardMsg::Durable(*n));
        }
        !acks.is_empty() || !confirms.is_empty() || !tickets.is_empty()
    }
}

/// What a shard starts with when persistence is on: its journal (opened
/// on the new generation) and the state recovered for it. Built by the
/// control plane; `Send`.
pub struct DurableBoot {
    pub journal: Journal,
    /// The first message key and delivery id the journal has not used.
    pub next: u64,
    pub recovered: Recovered,
}

/// The state recovered for one shard.
#[derive(Default)]
pub struct Recovered {
    /// Sessions homed here, each with the delivery ids its deliveries
    /// have in the new journal, in order.
    pub sessions: Vec<(String, StoredSession, Vec<u64>)>,
    /// Every retained message (each shard holds them all).
    pub retained: Vec<(String, StoredRetained)>,
}

impl DurableBoot {
    pub(super) fn into_parts(self) -> (Journal, u64, Recovered) {
        (self.journal, self.next, self.recovered)
    }
}

impl Shard {
    /// Puts the recovered sessions and retained messages in place, before
    /// the first turn. Their journal records are already in the new
    /// generation: nothing is journaled again here.
    pub(super) fn restore(self: &Rc<Self>, recovered: Recovered) {
        let (n, m) = (recovered.sessions.len(), recovered.retained.len());
        for (client_id, stored, ids) in recovered.sessions {
            self.restore_session(&client_id, stored, &ids);
        }
        let mut store = self.retained.borrow_mut();
        for (topic, r) in recovered.retained {
            let origin = Origin {
                shard: self.id as u16,
                session: 0,
            };
            let msg = Message::restored(r.publish, origin, r.expires_at);
            let stamp = RetainStamp {
                nanos: r.nanos,
                shard: r.shard,
            };
            store.apply(&topic, stamp, Some(Arc::new(msg)));
        }
        log::info!(
            "shard {}: recovered {n} session(s) and {m} retained message(s)",
            self.id
        );
    }

    fn restore_session(self: &Rc<Self>, client_id: &str, stored: StoredSession, ids: &[u64]) {
        let version = match stored.version {
            3 => ProtocolVersion::V31,
            5 => ProtocolVersion::V5,
            _ => ProtocolVersion::V311,
        };
        let sid = self.new_session(&Rc::from(client_id), version);
        for (filter, (options, id)) in &stored.subscriptions {
            let (Ok(f), Ok(opts)) = (
                TopicFilter::from_str(filter),
                SubscriptionOptions::from_byte(*options, ProtocolVersion::V5),
            ) else {
                log::warn!("session {client_id}: recovered filter {filter:?} is invalid; dropped");
                continue;
            };
            let id = NonZeroU32::new(*id);
            self.add_subscription(sid, &f, Subscription { opts, id });
        }
        let now = self.now();
        let mut sessions = self.sessions.borrow_mut();
        let Some(s) = sessions.by_id.get_mut(&sid) else {
            return;
        };
        s.expiry = stored.expiry;
        s.set_offline_since(Some(now));
        for pid in stored.qos2_in {
            s.qos2_insert(pid);
        }
        for (d, did) in stored.deliveries.into_iter().zip(ids) {
            let origin = Origin {
                shard: self.id as u16,
                session: sid,
            };
            let qos = QoS::from_u8(d.qos).unwrap_or(QoS::AtLeastOnce);
            let msg = Arc::new(Message::restored(d.publish, origin, d.expires_at));
            let pid = d.pid.and_then(NonZeroU16::new);
            s.restore(msg, qos, d.retain, pid, d.released, *did);
        }
        s.journaled = self.durable.is_some();
        if s.expiry != NEVER_EXPIRES {
            let due = now + u64::from(s.expiry);
            self.expiries.borrow_mut().entry(due).or_default().push(sid);
        }
        drop(sessions);
        // A will whose connection was open when the broker went down is
        // due from now, as after any abnormal close; none goes out sooner
        // than a second after the start, when every shard has its
        // subscriptions back.
        if let Some(w) = stored.will {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let delay = match w.due {
                0 => u64::from(w.delay),
                due => due.saturating_sub(unix),
            };
            let delay = std::time::Duration::from_secs(delay.max(1));
            let will = Will::restored(w.publish, delay);
            self.hold_will(sid, will, std::time::Instant::now() + delay);
        }
    }
}
