//! Session state: subscriptions, the outbound QoS 1/2 window and queue, and
//! inbound QoS 2 packet ids. Lives on its home shard only (see `connect`).

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::num::NonZeroU16;
use std::rc::Rc;
use std::sync::Arc;

use ahash::AHasher;

use super::conn::ConnShared;
use super::encode::EncodeCache;
use crate::mesh::Message;
use crate::protocol::{
    EncodedPublish, LastWill, Packet, PacketId, ProtocolVersion, PubResp, QoS, SubscriptionOptions,
    TopicFilter,
};

/// Shard-unique session number (never reused while the shard runs).
pub type SessionId = u64;

/// Session Expiry Interval value meaning "never expires".
pub const NEVER_EXPIRES: u32 = u32::MAX;

/// Which acknowledgement an outbound QoS 1/2 message is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// QoS 1 PUBLISH sent, PUBACK pending.
    Ack,
    /// QoS 2 PUBLISH sent, PUBREC pending.
    Received,
    /// PUBREL sent, PUBCOMP pending.
    Complete,
}

struct Inflight {
    pid: PacketId,
    msg: Arc<Message>,
    qos: QoS,
    retain: bool,
    state: OutState,
}

struct Queued {
    msg: Arc<Message>,
    qos: QoS,
    retain: bool,
}

/// The bounds a session applies to its queue (copied from the config).
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub max_messages: usize,
    /// 0 = unlimited.
    pub max_bytes: usize,
    pub queue_qos0: bool,
}

/// What happened to one delivery (for stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    Queued,
    Dropped,
}

/// A client session. Shard-local; owned by the shard's session table.
pub struct Session {
    pub id: SessionId,
    pub client_id: Rc<str>,
    /// The live connection, if the client is online.
    pub conn: Option<Rc<ConnShared>>,
    pub version: ProtocolVersion,
    /// Filter -> options, as subscribed. (A zero-sized hasher builder keeps
    /// an idle session small; only this session's own filters hash here.)
    pub subscriptions: HashMap<TopicFilter, SubscriptionOptions, BuildHasherDefault<AHasher>>,
    /// Seconds the session outlives its connection; 0 = ends with it.
    pub expiry: u32,
    /// Shard-clock second the client went offline.
    pub offline_since: Option<u64>,
    /// The current connection's will (boxed: rare, and large).
    pub will: Option<Box<LastWill>>,
    /// Inbound QoS 2 packet ids with PUBREC sent and PUBREL pending; at
    /// most `max_inflight_messages` of them.
    pub inbound_qos2: Vec<u16>,
    /// Outbound window size: min(max_inflight_messages, client's Receive Maximum).
    pub window: u16,
    next_pid: u16,
    /// In send order.
    inflight: VecDeque<Inflight>,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
    /// QoS 0 entries in `queue`.
    queued_qos0: usize,
}

impl Session {
    /// Files an inbound QoS 2 id; false if it was already pending (a resend).
    pub fn qos2_insert(&mut self, pid: u16) -> bool {
        if self.inbound_qos2.contains(&pid) {
            return false;
        }
        self.inbound_qos2.push(pid);
        true
    }

    /// Releases an inbound QoS 2 id; false if it was not pending.
    pub fn qos2_remove(&mut self, pid: u16) -> bool {
        match self.inbound_qos2.iter().position(|p| *p == pid) {
            Some(i) => {
                self.inbound_qos2.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// A fresh session with no state.
    pub fn new(id: SessionId, client_id: Rc<str>, version: ProtocolVersion) -> Session {
        Session {
            id,
            client_id,
            conn: None,
            version,
            subscriptions: HashMap::default(),
            expiry: 0,
            offline_since: None,
            will: None,
            inbound_qos2: Vec::new(),
            window: 20,
            next_pid: 0,
            inflight: VecDeque::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            queued_qos0: 0,
        }
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
        if let Some(conn) = &self.conn {
            // Order is kept per QoS (the spec's guarantee): QoS 0 only waits
            // behind queued QoS 0, QoS 1/2 behind anything queued.
            let blocked = if qos == QoS::AtMostOnce {
                self.queued_qos0 > 0
            } else {
                !self.queue.is_empty()
            };
            let has_room = !conn.out_full() && !blocked;
            if qos == QoS::AtMostOnce && has_room {
                return match cache.get(msg, self.version, qos, retain) {
                    Some(enc) if write_publish(conn, enc, None, false) => Delivery::Sent,
                    _ => Delivery::Dropped,
                };
            }
            if qos != QoS::AtMostOnce && has_room && self.inflight.len() < usize::from(self.window)
            {
                return self.send_new(msg, qos, retain, cache);
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

    fn enqueue(
        &mut self,
        msg: &Arc<Message>,
        qos: QoS,
        retain: bool,
        limits: &QueueLimits,
    ) -> Delivery {
        let size = msg.publish.payload.len() + msg.publish.topic.as_bytes().len();
        let over_bytes = limits.max_bytes != 0 && self.queued_bytes + size > limits.max_bytes;
        if self.queue.len() >= limits.max_messages || over_bytes {
            return Delivery::Dropped;
        }
        self.queued_bytes += size;
        self.queued_qos0 += usize::from(qos == QoS::AtMostOnce);
        self.queue.push_back(Queued {
            msg: Arc::clone(msg),
            qos,
            retain,
        });
        Delivery::Queued
    }

    /// Writes a new QoS 1/2 PUBLISH and files it as inflight.
    fn send_new(
        &mut self,
        msg: &Arc<Message>,
        qos: QoS,
        retain: bool,
        cache: &mut EncodeCache,
    ) -> Delivery {
        let Some(conn) = self.conn.clone() else {
            return Delivery::Dropped;
        };
        let Some(enc) = cache.get(msg, self.version, qos, retain) else {
            return Delivery::Dropped;
        };
        let pid = self.alloc_pid();
        if !write_publish(&conn, enc, Some(pid), false) {
            return Delivery::Dropped;
        }
        let state = if qos == QoS::AtLeastOnce {
            OutState::Ack
        } else {
            OutState::Received
        };
        self.inflight.push_back(Inflight {
            pid,
            msg: Arc::clone(msg),
            qos,
            retain,
            state,
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
            if !self.inflight.iter().any(|f| f.pid == pid) {
                return pid;
            }
        }
    }

    /// Handles PUBACK / PUBCOMP: frees the slot. False if `pid` was not
    /// awaiting that acknowledgement.
    pub fn complete(&mut self, pid: PacketId, expected: OutState) -> bool {
        match self
            .inflight
            .iter()
            .position(|f| f.pid == pid && f.state == expected)
        {
            Some(i) => {
                self.inflight.remove(i);
                true
            }
            None => false,
        }
    }

    /// Handles PUBREC: moves to PUBCOMP-pending. False if unknown.
    pub fn received(&mut self, pid: PacketId) -> bool {
        match self.inflight.iter_mut().find(|f| f.pid == pid) {
            Some(f) if f.state != OutState::Ack => {
                f.state = OutState::Complete;
                true
            }
            _ => false,
        }
    }

    /// Sends queued messages while the window and the buffer allow.
    pub fn drain(&mut self) {
        let Some(conn) = self.conn.clone() else {
            return;
        };
        while !conn.out_full() {
            let Some(front) = self.queue.front() else {
                break;
            };
            if front.qos != QoS::AtMostOnce && self.inflight.len() >= usize::from(self.window) {
                break;
            }
            let Some(q) = self.queue.pop_front() else {
                break;
            };
            self.queued_bytes -= q.msg.publish.payload.len() + q.msg.publish.topic.as_bytes().len();
            self.queued_qos0 -= usize::from(q.qos == QoS::AtMostOnce);
            let mut cache = EncodeCache::default();
            if q.qos == QoS::AtMostOnce {
                if let Some(enc) = cache.get(&q.msg, self.version, q.qos, q.retain) {
                    write_publish(&conn, enc, None, false);
                }
            } else {
                self.send_new(&q.msg, q.qos, q.retain, &mut cache);
            }
        }
        if !self.queue.is_empty() && conn.out_full() {
            conn.set_starved();
        }
    }

    /// On session resume: resends every inflight message (PUBLISH with DUP,
    /// or PUBREL for those past PUBREC), in their original order. A message
    /// now larger than the client's Maximum Packet Size is discarded, as if
    /// its delivery had completed (MQTT 5.0, 3.1.2.11.4).
    pub fn resend_inflight(&mut self) {
        let Some(conn) = self.conn.clone() else {
            return;
        };
        let version = self.version;
        self.inflight.retain(|f| {
            if f.state == OutState::Complete {
                let pubrel = Packet::PubRel(PubResp::new(f.pid));
                conn.write_with(|out| {
                    // A PUBREL always encodes (fixed shape).
                    let _ = pubrel.encode(version, out);
                });
                return true;
            }
            let mut cache = EncodeCache::default();
            cache
                .get(&f.msg, version, f.qos, f.retain)
                .is_some_and(|enc| write_publish(&conn, enc, Some(f.pid), true))
        });
    }
}

/// Writes a PUBLISH to `conn` unless it exceeds the client's Maximum Packet
/// Size; false if it was discarded. Every PUBLISH to a client goes through
/// here: live delivery, the session queue and resends alike.
fn write_publish(
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
