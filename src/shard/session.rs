//! Session state: subscriptions, the outbound QoS 1/2 window and queue, and
//! inbound QoS 2 packet ids. Lives on its home shard only (see `connect`).

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::num::{NonZeroU16, NonZeroU32};
use std::rc::Rc;
use std::sync::Arc;

use ahash::AHasher;

use super::access::ReadMemo;
use super::alias::OutAlias;
use super::compaction::{SessionSnapshot, SnapshotDelivery};
use super::conn::ConnShared;
use super::durable::with_journal;
use super::encode::{encode_aliased, EncodeCache};
use super::mount;
use super::store;
use super::subscribe::Subscription;
use super::will::Will;
use crate::limits::{
    PRESSURE_HEADROOM_BYTES, PRESSURE_HEADROOM_MESSAGES, SPARE_FLOWS, SPARE_FLOW_CAPACITY,
};
use crate::mesh::Message;
use crate::persist::Entry;
use crate::protocol::{
    EncodedPublish, Packet, PacketId, ProtocolVersion, PubResp, QoS, TopicFilter,
};
use crate::security::Client;

/// Shard-unique session number (never reused while the shard runs).
pub type SessionId = u64;

/// Session Expiry Interval value meaning "never expires".
pub const NEVER_EXPIRES: u32 = u32::MAX;

/// Which acknowledgement an outbound QoS 1/2 message is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    /// QoS 1 PUBLISH sent, PUBACK pending.
    Ack,
    /// QoS 2 PUBLISH sent, PUBREC pending.
    Received,
    /// PUBREL sent, PUBCOMP pending.
    Complete,
}

/// An acknowledgement of an outbound message, as the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutAck {
    /// PUBACK.
    Ack,
    /// PUBREC with a success reason code (always, in 3.1.1).
    Rec,
    /// PUBREC with a reason code >= 0x80: the receiver refused the message,
    /// and the QoS 2 flow ends there (no PUBREL).
    RecFailed,
    /// PUBCOMP.
    Comp,
}

/// How an acknowledgement fits the outbound window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckFit {
    /// The message's flow ended: its window slot is free.
    Finished,
    /// PUBREC accepted: answer PUBREL.
    Release,
    /// The id is not in flight (tolerated, see [`Session::acknowledge`]).
    NotInFlight,
    /// The id is in flight at another QoS or in another state: a protocol
    /// error.
    Mismatch,
}

struct Inflight {
    pid: PacketId,
    msg: Arc<Message>,
    qos: QoS,
    retain: bool,
    state: OutState,
    /// The shared subscription group it came through, if any.
    group: Option<Rc<TopicFilter>>,
    /// Its delivery id in the shard's journal; 0 = not journaled.
    did: u64,
}

struct Queued {
    msg: Arc<Message>,
    qos: QoS,
    retain: bool,
    /// The shared subscription group it came through, if any.
    group: Option<Rc<TopicFilter>>,
    /// Its delivery id in the shard's journal; 0 = not journaled.
    did: u64,
}

/// A message a session gives up to another member of the shared
/// subscription group it came through (see [`Session::take_shared`]).
pub type Shared = (Arc<Message>, Rc<TopicFilter>);

/// The bounds a session applies to its queue and its outbound window
/// (copied from the config).
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub max_messages: usize,
    /// 0 = unlimited.
    pub max_bytes: usize,
    pub queue_qos0: bool,
    /// `max_inflight_bytes`: payload bytes in the window; 0 = unlimited.
    pub max_inflight_bytes: usize,
    /// `overload_policy backpressure`: an online session's queue takes
    /// QoS 1/2 messages past `max_messages` / `max_bytes`, within
    /// [`PRESSURE_HEADROOM_MESSAGES`] / [`PRESSURE_HEADROOM_BYTES`], and
    /// reports them [`Delivery::Held`] so that their publishers are paused.
    pub backpressure: bool,
}

/// What happened to one delivery (for stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    Queued,
    /// Queued past the session's limits, in the backpressure headroom
    /// (online, QoS 1/2, `overload_policy backpressure`): its publisher
    /// must be paused (see `shard::pressure`).
    Held,
    Dropped,
}

/// `Session::offline_since` while the client is online.
const ONLINE: u32 = u32::MAX;

/// A client session.
///
/// Shard-local: lives boxed in the session table of its home shard (the
/// shard `home_shard(client_id)` names, see `connect`), and only that
/// shard's thread touches it (`Rc` fields make it `!Send`).
///
/// Kept small because most sessions are idle: everything that only a
/// session with traffic in flight needs lives in [`Flow`], boxed and
/// allocated on first need, and released as soon as it is empty again.
pub struct Session {
    pub id: SessionId,
    pub client_id: Rc<str>,
    /// The username of the client's last CONNECT: the ACL checks what is
    /// delivered to the session, online or not, against it.
    pub username: Option<Rc<str>>,
    /// The listener of the client's last connection (its ACL rules apply).
    pub listener: u8,
    /// Whether the ACL lets it read everything its subscriptions match,
    /// as last worked out (see `access::ReadMemo`).
    pub acl_memo: Cell<ReadMemo>,
    /// The live connection, if the client is online.
    pub conn: Option<Rc<ConnShared>>,
    /// Filter -> options and identifier, as subscribed. (A zero-sized
    /// hasher builder keeps an idle session small; only this session's own
    /// filters hash here.)
    pub subscriptions: HashMap<TopicFilter, Subscription, BuildHasherDefault<AHasher>>,
    /// The current connection's will (boxed: not every client has one).
    pub will: Option<Box<Will>>,
    /// Outbound and inbound messages in flight and the offline queue.
    /// Invariant: `Some` only while not empty (see [`Flow::is_empty`]);
    /// every path that empties it sets it back to `None`.
    flow: Option<Box<Flow>>,
    /// Seconds the session outlives its connection; 0 = ends with it.
    pub expiry: u32,
    /// Shard-clock second the client went offline, or [`ONLINE`]. Shard
    /// clock seconds fit a u32 for 136 years; later ones are clamped.
    offline_since: u32,
    /// Outbound window size: min(max_inflight_messages, client's Receive Maximum).
    pub window: u16,
    /// The last packet id handed out. Kept here, not in the [`Flow`], so
    /// that ids keep advancing across releases and are not reused at once.
    next_pid: u16,
    pub version: ProtocolVersion,
    /// Journaled: a persistent session while persistence is on. Its QoS
    /// 1/2 deliveries and inbound QoS 2 ids go to its shard's journal
    /// (reached through `durable::with_journal`: a flag here, not a
    /// pointer, keeps an idle session within its size).
    pub journaled: bool,
}

/// A session's traffic in flight: the outbound window, the queue behind it
/// and the inbound QoS 2 ids. Owned by its [`Session`] (shard-local).
///
/// Boxed and optional in the session: an idle session (most of them) then
/// pays one pointer for it, not the ~100 bytes of these collections, and a
/// queue that once grew large gives its memory back when it drains.
#[derive(Default)]
struct Flow {
    /// In send order.
    inflight: VecDeque<Inflight>,
    /// Payload bytes of the messages in `inflight` (`max_inflight_bytes`).
    inflight_bytes: usize,
    /// How many entries at the back of `inflight` a resume held back, not
    /// yet written on this connection: the client's Receive Maximum had no
    /// room for them (MQTT-3.3.4-9). Written, with their packet ids, as
    /// acknowledgements free the window, before anything queued.
    held: usize,
    queue: VecDeque<Queued>,
    /// Topic and payload bytes held in `queue`.
    queued_bytes: usize,
    /// `queue`'s share of the shard's `store/messages/*` (payload bytes);
    /// given back when the flow goes.
    stored: store::Held,
    /// QoS 0 entries in `queue`.
    queued_qos0: usize,
    /// Inbound QoS 2 packet ids with PUBREC sent and PUBREL pending; at
    /// most `max_inflight_messages` of them.
    inbound_qos2: Vec<u16>,
}

impl Flow {
    /// Nothing in flight either way and nothing queued: the flow may go.
    fn is_empty(&self) -> bool {
        self.inflight.is_empty() && self.queue.is_empty() && self.inbound_qos2.is_empty()
    }

    fn push_queued(&mut self, q: Queued) {
        self.queued_bytes += queued_size(&q.msg);
        self.stored.add(q.msg.publish.payload.len());
        self.queued_qos0 += usize::from(q.qos == QoS::AtMostOnce);
        self.queue.push_back(q);
    }

    fn pop_queued(&mut self) -> Option<Queued> {
        let q = self.queue.pop_front()?;
        self.queued_bytes -= queued_size(&q.msg);
        self.stored.remove(q.msg.publish.payload.len());
        self.queued_qos0 -= usize::from(q.qos == QoS::AtMostOnce);
        Some(q)
    }
}

thread_local! {
    /// Empty flows kept for reuse on this thread's shard, at most
    /// [`SPARE_FLOWS`], each with small collections: a subscriber that
    /// takes its QoS 1 messages one at a time gets and gives back a flow
    /// per message, and reusing one saves the allocations of the box and
    /// of its window. (Boxes, not flows: the box is what gets reused.)
    #[allow(clippy::vec_box)]
    static SPARES: std::cell::RefCell<Vec<Box<Flow>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty flow: a spare if the shard has one.
fn spare_flow() -> Box<Flow> {
    SPARES.with(|s| s.borrow_mut().pop()).unwrap_or_default()
}

/// Keeps an empty `flow` as a spare, unless there are enough or one of its
/// collections grew past [`SPARE_FLOW_CAPACITY`] (a queue that once grew
/// large gives its memory back).
/// An empty flow's counters are zero and its store share holds nothing,
/// so it is kept as it is.
fn keep_spare_flow(flow: Box<Flow>) {
    debug_assert!(flow.is_empty());
    debug_assert_eq!(
        (
            flow.inflight_bytes,
            flow.held,
            flow.queued_bytes,
            flow.queued_qos0
        ),
        (0, 0, 0, 0)
    );
    let small = flow.inflight.capacity() <= SPARE_FLOW_CAPACITY
        && flow.queue.capacity() <= SPARE_FLOW_CAPACITY
        && flow.inbound_qos2.capacity() <= SPARE_FLOW_CAPACITY;
    if !small {
        return;
    }
    SPARES.with(|s| {
        let mut spares = s.borrow_mut();
        if spares.len() < SPARE_FLOWS {
            spares.push(flow);
        }
    });
}

/// What a queued message counts against `QueueLimits::max_bytes`.
fn queued_size(msg: &Message) -> usize {
    msg.publish.payload.len() + msg.publish.topic.as_bytes().len()
}

impl Session {
    /// Files an inbound QoS 2 id; false if it was already pending (a resend).
    pub fn qos2_insert(&mut self, pid: u16) -> bool {
        if self.has_inbound_qos2(pid) {
            return false;
        }
        self.flow_mut().inbound_qos2.push(pid);
        self.journal(|client_id| Entry::Qos2In { client_id, pid });
        true
    }

    /// Releases an inbound QoS 2 id; false if it was not pending.
    pub fn qos2_remove(&mut self, pid: u16) -> bool {
        let Some(flow) = self.flow.as_deref_mut() else {
            return false;
        };
        let Some(i) = flow.inbound_qos2.iter().position(|p| *p == pid) else {
            return false;
        };
        flow.inbound_qos2.swap_remove(i);
        self.release_flow_if_empty();
        self.journal(|client_id| Entry::Qos2InDone { client_id, pid });
        true
    }

    /// Inbound QoS 2 ids pending (PUBREC sent, PUBREL not yet received).
    pub fn inbound_qos2_len(&self) -> usize {
        self.flow.as_ref().map_or(0, |f| f.inbound_qos2.len())
    }

    /// True if inbound QoS 2 id `pid` is pending.
    pub fn has_inbound_qos2(&self, pid: u16) -> bool {
        self.flow
            .as_ref()
            .is_some_and(|f| f.inbound_qos2.contains(&pid))
    }

    /// Shard-clock second the client went offline; `None` while online.
    pub fn offline_since(&self) -> Option<u64> {
        (self.offline_since != ONLINE).then_some(u64::from(self.offline_since))
    }

    /// Records the client going offline at shard-clock second `since`, or
    /// (`None`) coming back online.
    pub fn set_offline_since(&mut self, since: Option<u64>) {
        self.offline_since = match since {
            Some(t) => u32::try_from(t).map_or(ONLINE - 1, |t| t.min(ONLINE - 1)),
            None => ONLINE,
        };
    }

    /// A fresh session with no state.
    pub fn new(id: SessionId, client_id: Rc<str>, version: ProtocolVersion) -> Session {
        Session {
            id,
            client_id,
            username: None,
            listener: 0,
            acl_memo: Cell::default(),
            conn: None,
            subscriptions: HashMap::default(),
            will: None,
            flow: None,
            expiry: 0,
            offline_since: ONLINE,
            window: 20,
            next_pid: 0,
            version,
            journaled: false,
        }
    }

    /// Who the session's client is, to the ACL.
    pub fn acl_client(&self) -> Client<'_> {
        Client {
            id: &self.client_id,
            username: self.username.as_deref(),
        }
    }

    /// The flow, allocated on first need (from the shard's spares).
    fn flow_mut(&mut self) -> &mut Flow {
        self.flow.get_or_insert_with(spare_flow)
    }

    /// Gives the flow up once nothing is in flight or queued any more.
    fn release_flow_if_empty(&mut self) {
        if let Some(flow) = self.flow.take_if(|f| f.is_empty()) {
            keep_spare_flow(flow);
        }
    }

    fn inflight_len(&self) -> usize {
        self.flow.as_ref().map_or(0, |f| f.inflight.len())
    }

    fn queue_len(&self) -> usize {
        self.flow.as_ref().map_or(0, |f| f.queue.len())
    }

    /// Whether the outbound window takes another QoS 1/2 message: fewer
    /// than `window` in flight and, with `max_inflight_bytes`, fewer
    /// payload bytes than that in flight (so one message larger than the
    /// limit still goes out alone, as in Mosquitto).
    fn window_open(&self, limits: &QueueLimits) -> bool {
        let bytes = self.flow.as_ref().map_or(0, |f| f.inflight_bytes);
        self.inflight_len() < usize::from(self.window)
            && (limits.max_inflight_bytes == 0 || bytes < limits.max_inflight_bytes)
    }

    /// Delivers `msg` at `qos` (already downgraded to the subscription's
    /// maximum): writes it to the connection if the window and buffer
    /// allow, else queues it within `limits`.
    pub fn deliver(
        &mut self,
        msg: &Arc<Message>,
        qos: QoS,
        retain: bool,
        cache: &mut EncodeCache,
        limits: &QueueLimits,
    ) -> Delivery {
        if msg.is_expired() {
            return Delivery::Dropped;
        }
        if let Some(conn) = &self.conn {
            // Order is kept per QoS (the spec's guarantee): QoS 0 only waits
            // behind queued QoS 0, QoS 1/2 behind anything queued.
            let blocked = if qos == QoS::AtMostOnce {
                self.flow.as_ref().is_some_and(|f| f.queued_qos0 > 0)
            } else {
                self.queue_len() > 0
            };
            let has_room = !conn.out_full() && !blocked;
            if qos == QoS::AtMostOnce && has_room {
                return if write_publish(conn, cache, msg, qos, retain, None, false) {
                    Delivery::Sent
                } else {
                    Delivery::Dropped
                };
            }
            if qos != QoS::AtMostOnce && has_room && self.window_open(limits) {
                return self.send_new(msg, qos, retain, cache, (None, 0));
            }
            // Held back. Only a full buffer needs the "drained" wake-up; a
            // full window reopens through the acknowledgement path.
            if conn.out_full() {
                conn.set_starved();
            }
            if qos == QoS::AtMostOnce {
                return Delivery::Dropped; // slow consumer: QoS 0 is dropped
            }
        } else if qos == QoS::AtMostOnce && !limits.queue_qos0 {
            return Delivery::Dropped;
        }
        self.enqueue(msg, qos, retain, limits)
    }

    /// [`deliver`](Self::deliver) for a match whose subscriptions carry the
    /// Subscription Identifiers `ids`. A 5.0 session gets them in a copy of
    /// `msg` encoded for it alone, which its queue and window keep, so a
    /// queued or resent PUBLISH carries them too; without identifiers (and
    /// always in 3.x, which has none) the shared `cache` serves.
    pub fn deliver_matched(
        &mut self,
        msg: &Arc<Message>,
        qos: QoS,
        retain: bool,
        ids: &[NonZeroU32],
        cache: &mut EncodeCache,
        limits: &QueueLimits,
    ) -> Delivery {
        if ids.is_empty() || !self.version.is_v5() {
            return self.deliver(msg, qos, retain, cache, limits);
        }
        let own = Arc::new(msg.with_subscription_ids(ids));
        self.deliver(&own, qos, retain, &mut EncodeCache::default(), limits)
    }

    fn enqueue(
        &mut self,
        msg: &Arc<Message>,
        qos: QoS,
        retain: bool,
        limits: &QueueLimits,
    ) -> Delivery {
        // Checked before the flow is allocated: a drop leaves none behind.
        let outcome = if !self.over_limits(msg, limits, 0, 0) {
            Delivery::Queued
        } else if limits.backpressure
            && self.conn.is_some()
            && qos != QoS::AtMostOnce
            && !self.over_limits(
                msg,
                limits,
                PRESSURE_HEADROOM_MESSAGES,
                PRESSURE_HEADROOM_BYTES,
            )
        {
            Delivery::Held
        } else {
            return Delivery::Dropped;
        };
        let did = self.journal_enqueue(msg, qos, retain);
        self.flow_mut().push_queued(Queued {
            msg: Arc::clone(msg),
            qos,
            retain,
            group: None,
            did,
        });
        outcome
    }

    /// Whether queuing `msg` would take the queue past `limits` plus
    /// `extra` messages and `extra_bytes` bytes (the latter only where
    /// `max_queued_bytes` is set).
    fn over_limits(
        &self,
        msg: &Message,
        limits: &QueueLimits,
        extra: usize,
        extra_bytes: usize,
    ) -> bool {
        let queued_bytes = self.flow.as_ref().map_or(0, |f| f.queued_bytes);
        let over_bytes = limits.max_bytes != 0
            && queued_bytes + queued_size(msg) > limits.max_bytes + extra_bytes;
        self.queue_len() >= limits.max_messages + extra || over_bytes
    }

    /// Whether the queue is at half of `max_messages` and of `max_bytes`
    /// or below: the low watermark at which publishers held back for it
    /// resume (half, so that they do not pause and resume per message).
    pub fn at_low_watermark(&self, limits: &QueueLimits) -> bool {
        let bytes = self.flow.as_ref().map_or(0, |f| f.queued_bytes);
        self.queue_len() <= limits.max_messages / 2
            && (limits.max_bytes == 0 || bytes <= limits.max_bytes / 2)
    }

    /// Drops the newest queued messages until the queue is within
    /// `max_messages` / `max_bytes` again (what a session keeps once its
    /// client is gone, having held publishers back); returns how many went.
    pub fn trim_queue(&mut self, limits: &QueueLimits) -> usize {
        let mut gone = Vec::new();
        if let Some(flow) = self.flow.as_deref_mut() {
            while flow.queue.len() > limits.max_messages
                || (limits.max_bytes != 0 && flow.queued_bytes > limits.max_bytes)
            {
                let Some(q) = flow.queue.pop_back() else {
                    break;
                };
                flow.queued_bytes -= queued_size(&q.msg);
                flow.stored.remove(q.msg.publish.payload.len());
                flow.queued_qos0 -= usize::from(q.qos == QoS::AtMostOnce);
                gone.push(q.did);
            }
        }
        self.release_flow_if_empty();
        let n = gone.len();
        gone.into_iter().for_each(|did| self.journal_done(did));
        n
    }

    /// Writes a new QoS 1/2 PUBLISH and files it as inflight.
    fn send_new(
        &mut self,
        msg: &Arc<Message>,
        qos: QoS,
        retain: bool,
        cache: &mut EncodeCache,
        (group, did): (Option<Rc<TopicFilter>>, u64),
    ) -> Delivery {
        let Some(conn) = self.conn.clone() else {
            self.journal_done(did);
            return Delivery::Dropped;
        };
        let pid = self.alloc_pid();
        if !write_publish(&conn, cache, msg, qos, retain, Some(pid), false) {
            self.journal_done(did);
            return Delivery::Dropped;
        }
        let did = match did {
            0 => self.journal_enqueue(msg, qos, retain),
            did => did,
        };
        if did != 0 {
            self.journal_step(Entry::Sent {
                delivery: did,
                pid: pid.get(),
            });
        }
        let state = if qos == QoS::AtLeastOnce {
            OutState::Ack
        } else {
            OutState::Received
        };
        let flow = self.flow_mut();
        flow.inflight_bytes += msg.publish.payload.len();
        flow.inflight.push_back(Inflight {
            pid,
            msg: Arc::clone(msg),
            qos,
            retain,
            state,
            group,
            did,
        });
        Delivery::Sent
    }

    /// A packet id not in flight. The window (<= 65535) guarantees one exists.
    fn alloc_pid(&mut self) -> PacketId {
        loop {
            self.next_pid = self.next_pid.wrapping_add(1);
            let Some(pid) = NonZeroU16::new(self.next_pid) else {
                continue;
            };
            let in_flight = self
                .flow
                .as_ref()
                .is_some_and(|f| f.inflight.iter().any(|i| i.pid == pid));
            if !in_flight {
                return pid;
            }
        }
    }

    /// Marks what [`deliver`](Self::deliver) just kept (`outcome`, at
    /// `qos`) as delivered through the shared subscription `group`: the
    /// newest inflight entry for a QoS 1/2 message sent, the newest queued
    /// one for a message queued. A QoS 0 message sent keeps nothing.
    pub fn tag_shared(&mut self, outcome: Delivery, qos: QoS, group: &Rc<TopicFilter>) {
        let Some(flow) = self.flow.as_deref_mut() else {
            return;
        };
        let slot = match outcome {
            Delivery::Sent if qos != QoS::AtMostOnce => {
                flow.inflight.back_mut().map(|i| &mut i.group)
            }
            Delivery::Queued | Delivery::Held => flow.queue.back_mut().map(|q| &mut q.group),
            _ => None,
        };
        if let Some(slot) = slot {
            *slot = Some(Rc::clone(group));
        }
    }

    /// Takes, in order, the messages this session holds for shared
    /// subscription groups that another member can take instead, now that
    /// its client is gone (MQTT 5.0 4.8.2): QoS 1 in flight and everything
    /// queued; QoS 2 in flight only once the session ends (`ending`), since
    /// a QoS 2 delivery under way must be completed to the same client.
    pub fn take_shared(&mut self, ending: bool) -> Vec<Shared> {
        let mut out = Vec::new();
        let mut done = Vec::new();
        let Some(flow) = self.flow.as_deref_mut() else {
            return out;
        };
        let mut gone_bytes = 0;
        flow.inflight.retain_mut(|f| {
            let movable = f.state == OutState::Ack || (ending && f.state == OutState::Received);
            match (&f.group, movable) {
                (Some(group), true) => {
                    out.push((Arc::clone(&f.msg), Rc::clone(group)));
                    gone_bytes += f.msg.publish.payload.len();
                    done.push(f.did);
                    false
                }
                _ => true,
            }
        });
        flow.inflight_bytes -= gone_bytes;
        flow.held = flow.held.min(flow.inflight.len());
        let mut kept = VecDeque::new();
        while let Some(q) = flow.pop_queued() {
            match q.group {
                Some(group) => {
                    done.push(q.did);
                    out.push((q.msg, group));
                }
                None => kept.push_back(q),
            }
        }
        for q in kept {
            flow.push_queued(q);
        }
        self.release_flow_if_empty();
        // Another member takes them (and journals its own delivery).
        done.into_iter().for_each(|did| self.journal_done(did));
        out
    }

    /// Applies an acknowledgement from the client to the outbound window.
    ///
    /// Mosquitto 2.0 is the reference: an acknowledgement for an id in
    /// flight that does not fit its QoS or state is a protocol error, while
    /// one for an id not in flight is tolerated (after a resend or a
    /// reconnect, an answer may arrive for a flow already finished).
    pub fn acknowledge(&mut self, pid: PacketId, ack: OutAck) -> AckFit {
        let Some(flow) = self.flow.as_deref_mut() else {
            return AckFit::NotInFlight;
        };
        let Some(i) = flow.inflight.iter().position(|f| f.pid == pid) else {
            return AckFit::NotInFlight;
        };
        let did = flow.inflight[i].did;
        let state = &mut flow.inflight[i].state;
        let fit = match (ack, *state) {
            (OutAck::Ack, OutState::Ack)
            | (OutAck::Comp, OutState::Complete)
            | (OutAck::RecFailed, OutState::Received) => AckFit::Finished,
            // A repeated PUBREC (PUBREL lost in a resend) gets PUBREL again.
            (OutAck::Rec, OutState::Received | OutState::Complete) => {
                let first = *state == OutState::Received;
                *state = OutState::Complete;
                if first && did != 0 {
                    self.journal_step(Entry::Released { delivery: did });
                }
                return AckFit::Release;
            }
            _ => return AckFit::Mismatch,
        };
        if i >= flow.inflight.len() - flow.held {
            // Held back by a resume, and answered (from the connection
            // before) all the same.
            flow.held -= 1;
        }
        if let Some(done) = flow.inflight.remove(i) {
            flow.inflight_bytes -= done.msg.publish.payload.len();
        }
        self.release_flow_if_empty();
        self.journal_done(did);
        fit
    }

    /// Sends queued messages while the window and the buffer allow,
    /// calling `written` with each one written; discards those whose
    /// Message Expiry Interval passed while they waited, and returns how
    /// many (drops, for the stats).
    pub fn drain(&mut self, limits: &QueueLimits, written: &mut dyn FnMut(&Message)) -> usize {
        let Some(conn) = self.conn.clone() else {
            return 0;
        };
        let mut expired = self.resend_held(&conn);
        while !conn.out_full() {
            let window_full = !self.window_open(limits);
            let Some(flow) = self.flow.as_deref_mut() else {
                break;
            };
            let Some(front) = flow.queue.front() else {
                break;
            };
            if front.qos != QoS::AtMostOnce && window_full {
                break;
            }
            let Some(q) = flow.pop_queued() else {
                break;
            };
            if q.msg.is_expired() {
                expired += 1;
                self.journal_done(q.did);
                continue;
            }
            let mut cache = EncodeCache::default();
            let sent = if q.qos == QoS::AtMostOnce {
                write_publish(&conn, &mut cache, &q.msg, q.qos, q.retain, None, false)
            } else {
                let msg = Arc::clone(&q.msg);
                self.send_new(&msg, q.qos, q.retain, &mut cache, (q.group, q.did)) == Delivery::Sent
            };
            if sent {
                written(&q.msg);
            }
        }
        if self.queue_len() > 0 && conn.out_full() {
            conn.set_starved();
        }
        self.release_flow_if_empty();
        expired
    }

    /// On session resume: resends the inflight messages (PUBLISH with DUP,
    /// or PUBREL for those past PUBREC) in their original order, as many
    /// as the client's Receive Maximum allows; the rest are held back for
    /// [`Session::drain`]. A message now larger than the client's Maximum
    /// Packet Size is discarded, as if its delivery had completed (MQTT
    /// 5.0, 3.1.2.11.4), and so is one whose Message Expiry Interval has
    /// passed (as Mosquitto does); returns how many expired (drops, for
    /// the stats).
    pub fn resend_inflight(&mut self) -> usize {
        let Some(conn) = self.conn.clone() else {
            return 0;
        };
        if let Some(flow) = self.flow.as_deref_mut() {
            flow.held = flow.inflight.len();
        }
        self.resend_held(&conn)
    }

    /// Resends the inflight messages a resume held back while the window
    /// has room; returns how many were discarded as expired.
    fn resend_held(&mut self, conn: &ConnShared) -> usize {
        let (version, window) = (self.version, usize::from(self.window));
        let Some(flow) = self.flow.as_deref_mut() else {
            return 0;
        };
        let mut expired = 0;
        let mut gone_ids = Vec::new();
        while flow.held > 0 && flow.inflight.len() - flow.held < window {
            let i = flow.inflight.len() - flow.held;
            flow.held -= 1;
            if !resend(conn, version, &flow.inflight[i], &mut expired) {
                if let Some(gone) = flow.inflight.remove(i) {
                    flow.inflight_bytes -= gone.msg.publish.payload.len();
                    gone_ids.push(gone.did);
                }
            }
        }
        self.release_flow_if_empty();
        gone_ids.into_iter().for_each(|did| self.journal_done(did));
        expired
    }

    /// Journals `entry` (made with the client id) for a persistent
    /// session; nothing otherwise.
    fn journal(&self, entry: impl FnOnce(String) -> Entry) {
        if self.journaled {
            with_journal(|log| log.append(&entry(self.client_id.to_string())));
        }
    }

    /// Journals a step of a delivery's flow (no client id to copy) for a
    /// persistent session.
    fn journal_step(&self, entry: Entry) {
        if self.journaled {
            with_journal(|log| log.append(&entry));
        }
    }

    /// Journals a QoS 1/2 delivery of `msg`; its id, or 0 when nothing is
    /// journaled (a clean session, QoS 0, persistence off).
    fn journal_enqueue(&self, msg: &Arc<Message>, qos: QoS, retain: bool) -> u64 {
        if !self.journaled || qos == QoS::AtMostOnce {
            return 0;
        }
        with_journal(|log| log.enqueue(&self.client_id, msg, qos as u8, retain)).unwrap_or(0)
    }

    /// Journals the end of delivery `did` (0: none to journal).
    fn journal_done(&self, did: u64) {
        if did != 0 {
            self.journal_step(Entry::Done { delivery: did });
        }
    }

    /// This session's own durable state as it is now, for a compaction
    /// (`shard::compaction`): the session, its subscriptions, inbound QoS 2
    /// ids and will; its deliveries are taken apart
    /// ([`snapshot_deliveries`](Self::snapshot_deliveries)).
    pub fn snapshot_head(&self) -> SessionSnapshot {
        let subscriptions = self.subscriptions.iter().map(|(filter, sub)| {
            let options = sub.opts.to_byte(ProtocolVersion::V5);
            let id = sub.id.map_or(0, NonZeroU32::get);
            (filter.as_str().to_string(), options, id)
        });
        let qos2_in = self.flow.as_deref().map(|f| &f.inbound_qos2);
        SessionSnapshot {
            client_id: self.client_id.to_string(),
            version: self.version as u8,
            expiry: self.expiry,
            subscriptions: subscriptions.collect(),
            qos2_in: qos2_in.into_iter().flatten().copied().collect(),
            will: self.will.as_ref().map(|w| w.stored()),
        }
    }

    /// For a compaction: appends to `out` this session's journaled
    /// deliveries, in flight or queued, with ids above `after`, at most
    /// `max` of them from the queue (their messages shared, an `Arc`
    /// each); returns the highest id the range covers: the last queued one
    /// taken, or `u64::MAX` once the queue's end is reached. Every
    /// delivery with an id in (`after`, returned] is in `out`. Costs a
    /// binary search of the queue, a look through those in flight (the
    /// receive maximum at most) and the ones taken.
    pub fn snapshot_deliveries(
        &self,
        after: u64,
        max: usize,
        out: &mut Vec<SnapshotDelivery>,
    ) -> u64 {
        let Some(flow) = self.flow.as_deref() else {
            return u64::MAX;
        };
        let from = queued_after(&flow.queue, after);
        let mut journaled = flow.queue.range(from..).filter(|q| q.did != 0);
        let mut queued = Vec::new();
        let upto = loop {
            let Some(q) = journaled.next() else {
                break u64::MAX;
            };
            if queued.len() == max {
                break queued.last().map_or(after, |d: &SnapshotDelivery| d.did);
            }
            queued.push(SnapshotDelivery {
                did: q.did,
                msg: Arc::clone(&q.msg),
                qos: q.qos as u8,
                retain: q.retain,
                pid: None,
                released: false,
            });
        };
        let inflight = flow
            .inflight
            .iter()
            .filter(|f| f.did > after && f.did <= upto);
        out.extend(inflight.map(|f| SnapshotDelivery {
            did: f.did,
            msg: Arc::clone(&f.msg),
            qos: f.qos as u8,
            retain: f.retain,
            pid: Some(f.pid.get()),
            released: f.state == OutState::Complete,
        }));
        out.append(&mut queued);
        upto
    }

    /// Puts back a delivery read from the journal as delivery `did`: in
    /// flight with its packet id (past PUBREC when `released`), resent on
    /// resume; or queued.
    pub fn restore(
        &mut self,
        msg: Arc<Message>,
        qos: QoS,
        retain: bool,
        pid: Option<PacketId>,
        released: bool,
        did: u64,
    ) {
        let flow = self.flow_mut();
        match pid {
            Some(pid) if qos != QoS::AtMostOnce => {
                let state = match (qos, released) {
                    (QoS::AtLeastOnce, _) => OutState::Ack,
                    (_, false) => OutState::Received,
                    (_, true) => OutState::Complete,
                };
                flow.inflight_bytes += msg.publish.payload.len();
                flow.inflight.push_back(Inflight {
                    pid,
                    msg,
                    qos,
                    retain,
                    state,
                    group: None,
                    did,
                });
            }
            _ => flow.push_queued(Queued {
                msg,
                qos,
                retain,
                group: None,
                did,
            }),
        }
    }
}

/// Writes inflight message `f` again: PUBREL if past PUBREC, else the
/// PUBLISH with DUP. False if it is discarded instead: expired (counted in
/// `expired`) or over the client's Maximum Packet Size.
fn resend(conn: &ConnShared, version: ProtocolVersion, f: &Inflight, expired: &mut usize) -> bool {
    if f.state == OutState::Complete {
        let pubrel = Packet::PubRel(PubResp::new(f.pid));
        conn.write_with(|out| {
            // A PUBREL always encodes (fixed shape).
            let _ = pubrel.encode(version, out);
        });
        return true;
    }
    if f.msg.is_expired() {
        *expired += 1;
        return false;
    }
    let mut cache = EncodeCache::default();
    write_publish(conn, &mut cache, &f.msg, f.qos, f.retain, Some(f.pid), true)
}

/// Writes `msg` to `conn` as a PUBLISH at `qos` with `retain`, packet id
/// `pid` and the DUP flag `dup`, unless it cannot be encoded or exceeds
/// the client's Maximum Packet Size; false if it was discarded. Every
/// PUBLISH to a client goes through here: live delivery, the session
/// queue and resends alike.
///
/// The encoding comes from `cache`, shared across a fan-out, unless the
/// connection takes topic aliases: then it is encoded for the connection
/// alone. A resend (DUP) always carries its full topic and no alias: it
/// may be the first PUBLISH of a new connection, and its alias, if it had
/// one, belonged to the connection it was first sent on.
fn write_publish(
    conn: &ConnShared,
    cache: &mut EncodeCache,
    msg: &Arc<Message>,
    qos: QoS,
    retain: bool,
    pid: Option<PacketId>,
    dup: bool,
) -> bool {
    if !conn.sends_aliases() {
        return mount::encode_for(cache, conn, msg, conn.version, qos, retain)
            .is_some_and(|enc| write_encoded(conn, &enc, pid, dup));
    }
    // Aliases name the topic the client sees (its mount point stripped).
    let Some(msg) = mount::for_client(conn, msg) else {
        return false;
    };
    let topic = &msg.publish.topic;
    let alias = if dup {
        OutAlias::Topic
    } else {
        conn.pick_out_alias(topic)
    };
    let written = encode_aliased(&msg, qos, retain, alias)
        .is_some_and(|enc| write_encoded(conn, &enc, pid, dup));
    if written {
        // Only once written: a discarded PUBLISH taught the client nothing.
        conn.commit_out_alias(topic, alias);
    }
    written
}

/// Writes an encoded PUBLISH unless it exceeds the client's Maximum
/// Packet Size; false if it was discarded.
fn write_encoded(
    conn: &ConnShared,
    enc: &EncodedPublish,
    pid: Option<PacketId>,
    dup: bool,
) -> bool {
    if enc.len() > conn.max_packet as usize {
        return false;
    }
    conn.write_with(|out| enc.write_to(pid, dup, out));
    true
}

/// An idle session costs this much, boxed, per client (RSS budget: 500 B
/// per idle connection in all).
const _: () = assert!(std::mem::size_of::<Session>() <= 120);

/// The first position in `queue` past every journaled delivery with an id
/// up to `after`: journaled ids grow along the queue (ids come from one
/// counter as deliveries are queued at the back); unjournaled entries (id
/// 0) fall anywhere and are stepped over.
fn queued_after(queue: &VecDeque<Queued>, after: u64) -> usize {
    // Journaled entries before `lo` have ids up to `after`; from `hi` on,
    // above it.
    let (mut lo, mut hi) = (0, queue.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match (mid..hi).find(|&i| queue[i].did != 0) {
            Some(j) if queue[j].did <= after => lo = j + 1,
            _ => hi = mid,
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::mesh::Origin;
    use crate::protocol::{Properties, Publish, TopicName};

    const LIMITS: QueueLimits = QueueLimits {
        max_messages: 100,
        max_bytes: 0,
        queue_qos0: true,
        max_inflight_bytes: 0,
        backpressure: false,
    };

    fn message(qos: QoS) -> Arc<Message> {
        Arc::new(Message::new(
            Publish {
                dup: false,
                qos,
                retain: false,
                topic: TopicName::new(Bytes::from_static(b"a/b")).expect("valid topic"),
                packet_id: None,
                payload: Bytes::from_static(b"hello"),
                properties: Properties::default(),
            },
            Origin {
                shard: 0,
                session: 0,
            },
        ))
    }

    fn online_session() -> Session {
        let mut s = Session::new(1, Rc::from("c"), ProtocolVersion::V311);
        s.conn = Some(Rc::new(ConnShared::new(ProtocolVersion::V311, u32::MAX, 0)));
        s
    }

    fn deliver(s: &mut Session, qos: QoS) -> Delivery {
        deliver_within(s, qos, &LIMITS)
    }

    fn deliver_within(s: &mut Session, qos: QoS, limits: &QueueLimits) -> Delivery {
        s.deliver(
            &message(qos),
            qos,
            false,
            &mut EncodeCache::default(),
            limits,
        )
    }

    fn pid(n: u16) -> PacketId {
        PacketId::new(n).expect("non-zero")
    }

    #[test]
    fn a_compaction_range_of_the_queue_is_found_past_unjournaled_entries() {
        let queue: VecDeque<Queued> = [0, 3, 0, 0, 7, 8, 0, 12, 0]
            .into_iter()
            .map(|did| Queued {
                msg: message(QoS::AtLeastOnce),
                qos: QoS::AtLeastOnce,
                retain: false,
                group: None,
                did,
            })
            .collect();
        for after in [0, 2, 3, 6, 7, 8, 11] {
            let at = queued_after(&queue, after);
            let mut before = queue.range(..at).filter(|q| q.did != 0);
            let mut past = queue.range(at..).filter(|q| q.did != 0);
            assert!(before.all(|q| q.did <= after), "after {after}");
            assert!(past.all(|q| q.did > after), "after {after}");
        }
        assert!(queue.range(queued_after(&queue, 12)..).all(|q| q.did == 0));
        assert_eq!(queued_after(&VecDeque::new(), 5), 0);
    }

    #[test]
    fn the_store_total_follows_the_queue_and_returns_to_zero() {
        let offline = |s: &mut Session| s.conn.take();
        // Each message carries 5 payload bytes ("hello").
        let mut s = online_session();
        let conn = offline(&mut s);
        for _ in 0..3 {
            assert_eq!(deliver(&mut s, QoS::AtLeastOnce), Delivery::Queued);
        }
        assert_eq!(store::queued(), (3, 15), "pushed");
        let trim = QueueLimits {
            max_messages: 2,
            ..LIMITS
        };
        assert_eq!(s.trim_queue(&trim), 1);
        assert_eq!(store::queued(), (2, 10), "trimmed");
        // Expired while it waited: dropped at the drain.
        let mut gone = message(QoS::AtLeastOnce).publish.clone();
        gone.properties.message_expiry_interval = Some(1);
        let origin = message(QoS::AtMostOnce).origin;
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let expiring = Arc::new(Message::restored(gone, origin, unix + 1));
        let mut cache = EncodeCache::default();
        s.deliver(&expiring, QoS::AtLeastOnce, false, &mut cache, &LIMITS);
        assert_eq!(store::queued(), (3, 15), "queued");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(expiring.is_expired());
        s.conn = conn;
        let mut written = 0;
        assert_eq!(s.drain(&LIMITS, &mut |_| written += 1), 1, "one expired");
        assert_eq!(written, 2, "the QoS 1 ones went into the window");
        assert_eq!(store::queued(), (0, 0), "popped");

        // A session that ends with messages queued gives them back.
        let mut s = online_session();
        offline(&mut s);
        deliver(&mut s, QoS::AtLeastOnce);
        deliver(&mut s, QoS::ExactlyOnce);
        assert_eq!(store::queued(), (2, 10));
        drop(s);
        assert_eq!(store::queued(), (0, 0), "session ended");
    }

    #[test]
    fn an_idle_session_is_small() {
        assert!(std::mem::size_of::<Session>() <= 120);
        let s = online_session();
        assert!(s.flow.is_none());
    }

    #[test]
    fn the_flow_is_released_after_the_last_ack() {
        let mut s = online_session();
        assert_eq!(deliver(&mut s, QoS::AtMostOnce), Delivery::Sent);
        assert!(s.flow.is_none(), "QoS 0 sent live needs no flow");

        assert_eq!(deliver(&mut s, QoS::AtLeastOnce), Delivery::Sent);
        assert_eq!(deliver(&mut s, QoS::ExactlyOnce), Delivery::Sent);
        assert!(s.flow.is_some());
        assert_eq!(s.acknowledge(pid(1), OutAck::Ack), AckFit::Finished);
        assert!(s.flow.is_some(), "the QoS 2 message is still in flight");
        assert_eq!(s.acknowledge(pid(2), OutAck::Rec), AckFit::Release);
        assert_eq!(s.acknowledge(pid(2), OutAck::Comp), AckFit::Finished);
        assert!(s.flow.is_none());

        // Ids keep advancing across the release.
        assert_eq!(deliver(&mut s, QoS::AtLeastOnce), Delivery::Sent);
        assert_eq!(s.acknowledge(pid(1), OutAck::Ack), AckFit::NotInFlight);
        assert_eq!(s.acknowledge(pid(3), OutAck::Ack), AckFit::Finished);
        assert!(s.flow.is_none());
    }

    #[test]
    fn acknowledgements_follow_the_qos_and_state_of_the_message() {
        let mut s = online_session();
        assert_eq!(deliver(&mut s, QoS::AtLeastOnce), Delivery::Sent); // 1
        assert_eq!(deliver(&mut s, QoS::ExactlyOnce), Delivery::Sent); // 2
        for wrong in [OutAck::Rec, OutAck::RecFailed, OutAck::Comp] {
            assert_eq!(s.acknowledge(pid(1), wrong), AckFit::Mismatch, "{wrong:?}");
        }
        for wrong in [OutAck::Ack, OutAck::Comp] {
            assert_eq!(s.acknowledge(pid(2), wrong), AckFit::Mismatch, "{wrong:?}");
        }
        assert_eq!(s.acknowledge(pid(2), OutAck::Rec), AckFit::Release);
        assert_eq!(s.acknowledge(pid(2), OutAck::Rec), AckFit::Release);
        assert_eq!(s.acknowledge(pid(2), OutAck::RecFailed), AckFit::Mismatch);
        assert_eq!(s.acknowledge(pid(2), OutAck::Ack), AckFit::Mismatch);
        assert_eq!(s.inflight_len(), 2, "a mismatch changes nothing");

        // A failed PUBREC ends the QoS 2 flow and frees its id.
        assert_eq!(deliver(&mut s, QoS::ExactlyOnce), Delivery::Sent); // 3
        assert_eq!(s.acknowledge(pid(3), OutAck::RecFailed), AckFit::Finished);
        assert_eq!(s.acknowledge(pid(3), OutAck::Rec), AckFit::NotInFlight);
        assert_eq!(s.acknowledge(pid(1), OutAck::Ack), AckFit::Finished);
        assert_eq!(s.acknowledge(pid(2), OutAck::Comp), AckFit::Finished);
        assert!(s.flow.is_none());
    }

    #[test]
    fn the_flow_is_released_after_a_drain_empties_the_queue() {
        let mut s = online_session();
        let conn = s.conn.take();
        assert_eq!(deliver(&mut s, QoS::AtMostOnce), Delivery::Queued);
        assert_eq!(deliver(&mut s, QoS::AtMostOnce), Delivery::Queued);
        assert!(s.flow.as_ref().is_some_and(|f| f.queued_qos0 == 2));
        s.conn = conn;
        s.drain(&LIMITS, &mut |_| {});
        assert!(s.flow.is_none());

        // QoS 1 moves from the queue into the window, then is acknowledged.
        let conn = s.conn.take();
        assert_eq!(deliver(&mut s, QoS::AtLeastOnce), Delivery::Queued);
        s.conn = conn;
        s.drain(&LIMITS, &mut |_| {});
        assert_eq!(s.queue_len(), 0);
        assert_eq!(s.inflight_len(), 1);
        assert_eq!(s.acknowledge(pid(1), OutAck::Ack), AckFit::Finished);
        assert!(s.flow.is_none());
    }

    #[test]
    fn max_inflight_bytes_bounds_the_window_by_payload() {
        // Each message carries 5 payload bytes ("hello").
        let limits = QueueLimits {
            max_inflight_bytes: 6,
            ..LIMITS
        };
        let mut s = online_session();
        let send = |s: &mut Session| {
            let msg = message(QoS::AtLeastOnce);
            let mut cache = EncodeCache::default();
            s.deliver(&msg, QoS::AtLeastOnce, false, &mut cache, &limits)
        };
        assert_eq!(send(&mut s), Delivery::Sent, "0 bytes in flight");
        assert_eq!(send(&mut s), Delivery::Sent, "5 bytes in flight");
        assert_eq!(send(&mut s), Delivery::Queued, "10 bytes in flight");
        assert_eq!(s.acknowledge(pid(1), OutAck::Ack), AckFit::Finished);
        s.drain(&limits, &mut |_| {});
        assert_eq!((s.inflight_len(), s.queue_len()), (2, 0));
        assert_eq!(s.flow.as_ref().map(|f| f.inflight_bytes), Some(10));
        assert_eq!(s.acknowledge(pid(2), OutAck::Ack), AckFit::Finished);
        assert_eq!(s.acknowledge(pid(3), OutAck::Ack), AckFit::Finished);
        assert!(s.flow.is_none());
    }

    #[test]
    fn a_dropped_message_leaves_no_flow() {
        let mut s = Session::new(1, Rc::from("c"), ProtocolVersion::V311);
        let limits = QueueLimits {
            max_messages: 0,
            ..LIMITS
        };
        let d = s.deliver(
            &message(QoS::AtLeastOnce),
            QoS::AtLeastOnce,
            false,
            &mut EncodeCache::default(),
            &limits,
        );
        assert_eq!(d, Delivery::Dropped);
        assert!(s.flow.is_none());
    }

    #[test]
    fn backpressure_holds_qos1_past_the_limit_while_online_only() {
        let limits = QueueLimits {
            max_messages: 1,
            backpressure: true,
            ..LIMITS
        };
        let mut s = online_session();
        s.window = 1;
        let send = |s: &mut Session, qos| deliver_within(s, qos, &limits);
        assert_eq!(send(&mut s, QoS::AtLeastOnce), Delivery::Sent);
        assert_eq!(send(&mut s, QoS::AtLeastOnce), Delivery::Queued);
        assert_eq!(send(&mut s, QoS::AtLeastOnce), Delivery::Held);
        assert_eq!(send(&mut s, QoS::ExactlyOnce), Delivery::Held);
        assert_eq!(s.queue_len(), 3);
        assert!(!s.at_low_watermark(&limits));
        assert!(online_session().at_low_watermark(&limits));
        // Gone offline: the queue keeps its limit, the rest is dropped.
        s.conn = None;
        assert_eq!(s.trim_queue(&limits), 2);
        assert_eq!(s.queue_len(), 1);
        assert_eq!(
            send(&mut s, QoS::AtLeastOnce),
            Delivery::Dropped,
            "offline: no headroom"
        );
        let drop = QueueLimits {
            backpressure: false,
            ..limits
        };
        s.conn = Some(Rc::new(ConnShared::new(ProtocolVersion::V311, u32::MAX, 0)));
        let d = deliver_within(&mut s, QoS::AtLeastOnce, &drop);
        assert_eq!(d, Delivery::Dropped, "overload_policy drop");
    }

    #[test]
    fn the_flow_is_released_after_the_last_pubrel() {
        let mut s = online_session();
        assert!(s.qos2_insert(7));
        assert!(!s.qos2_insert(7));
        assert!(s.qos2_insert(8));
        assert_eq!(s.inbound_qos2_len(), 2);
        assert!(s.has_inbound_qos2(8));
        assert!(s.qos2_remove(7));
        assert!(!s.qos2_remove(7));
        assert!(s.flow.is_some());
        assert!(s.qos2_remove(8));
        assert!(s.flow.is_none());
        assert!(!s.qos2_remove(8));
    }

    #[test]
    fn an_emptied_flow_is_kept_as_a_spare_and_reused_unless_it_grew() {
        let spares = || SPARES.with(|s| s.borrow().len());
        let mut s = online_session();
        assert_eq!(deliver(&mut s, QoS::AtLeastOnce), Delivery::Sent);
        let first = s.flow.as_deref().map(|f| f as *const Flow);
        assert_eq!(s.acknowledge(pid(1), OutAck::Ack), AckFit::Finished);
        assert!(s.flow.is_none(), "an empty flow stays with its session");
        assert_eq!(spares(), 1);
        assert_eq!(deliver(&mut s, QoS::AtLeastOnce), Delivery::Sent);
        assert_eq!(s.flow.as_deref().map(|f| f as *const Flow), first);
        assert_eq!(spares(), 0);

        let mut grown = Box::<Flow>::default();
        grown.queue.reserve(SPARE_FLOW_CAPACITY * 2);
        keep_spare_flow(grown);
        assert_eq!(spares(), 0, "a flow whose queue grew was kept");
        for _ in 0..SPARE_FLOWS + 3 {
            keep_spare_flow(Box::default());
        }
        assert_eq!(spares(), SPARE_FLOWS);
    }

    #[test]
    fn offline_since_round_trips() {
        let mut s = Session::new(1, Rc::from("c"), ProtocolVersion::V311);
        assert_eq!(s.offline_since(), None);
        s.set_offline_since(Some(0));
        assert_eq!(s.offline_since(), Some(0));
        s.set_offline_since(Some(86_400));
        assert_eq!(s.offline_since(), Some(86_400));
        s.set_offline_since(Some(u64::MAX));
        assert_eq!(s.offline_since(), Some(u64::from(u32::MAX - 1)));
        s.set_offline_since(None);
        assert_eq!(s.offline_since(), None);
    }
}
