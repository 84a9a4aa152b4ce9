//! One link's outgoing queue: messages on their way to the remote broker,
//! in order, with the inflight window.
//!
//! A message stays at its place in the queue from the moment it is queued
//! until the remote has acknowledged it (QoS 1: PUBACK; QoS 2: PUBCOMP) or
//! it was written (QoS 0), so nothing the local broker accepted is lost
//! while the link is down or reconnects. `sent` marks how far this
//! connection has written; a reconnect rewinds it to the front, and the
//! entries are written again in order: unacknowledged publishes with DUP,
//! PUBREL for those the remote has received (QoS 2).
//!
//! Bounded by count and bytes ([`Limits`]); a message that does not fit is
//! refused and the caller counts the drop.
//!
//! With persistence on, an entry has a journal id (`jid`), and every step
//! of its flow is noted as a [`Change`] for the bridge journal (taken with
//! [`OutQueue::take_changes`]); [`OutQueue::restore`] puts a journaled
//! entry back at a restart.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU16;
use std::sync::Arc;

use super::packets::CONTROL_IDS_FROM;
use crate::limits::{PRESSURE_HEADROOM_BYTES, PRESSURE_HEADROOM_MESSAGES};
use crate::mesh::Message;
use crate::protocol::{PacketId, QoS, TopicName};

/// How much a queue may hold; 0 bytes means no byte limit.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_messages: usize,
    pub max_bytes: usize,
    /// `overload_stall_timeout` with `overload_policy backpressure`: an up
    /// link past its limits holds publishers back (see `pressure.rs`);
    /// `None` with `overload_policy drop` (it drops at its limits).
    pub overload_stall: Option<std::time::Duration>,
}

/// Where an entry is in its QoS flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Not written on this link yet.
    Unsent,
    /// QoS 1 written; waiting for PUBACK.
    AwaitAck,
    /// QoS 2 written; waiting for PUBREC.
    AwaitRec,
    /// QoS 2 PUBREC received, PUBREL written; waiting for PUBCOMP.
    AwaitComp,
    /// Finished; dropped once every entry before it is finished too.
    Done,
}

/// One message for the remote: the local message and how it goes out.
#[derive(Debug)]
pub struct Entry {
    pub msg: Arc<Message>,
    /// Topic on the remote (prefixes mapped).
    pub topic: TopicName,
    pub qos: QoS,
    pub retain: bool,
    pub packet_id: Option<PacketId>,
    pub stage: Stage,
    /// The link's own state notification: dropped, not resent, on a
    /// reconnect (the new connection sends a fresh one).
    pub notice: bool,
    /// Its id in the bridge journal; 0 when it is not journaled.
    pub jid: u64,
}

/// A step of a journaled entry's flow, for the bridge journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Written with packet id `pid` (QoS 1/2).
    Sent { jid: u64, pid: u16 },
    /// PUBREC came; PUBREL is written (QoS 2).
    Released { jid: u64 },
    /// Finished: acknowledged, written at QoS 0, or dropped.
    Done { jid: u64 },
}

impl Entry {
    /// A message not yet written.
    pub fn new(msg: Arc<Message>, topic: TopicName, qos: QoS, retain: bool) -> Entry {
        Entry {
            msg,
            topic,
            qos,
            retain,
            packet_id: None,
            stage: Stage::Unsent,
            notice: false,
            jid: 0,
        }
    }

    /// Bytes the entry counts against the byte limit.
    fn size(&self) -> usize {
        self.msg.publish.payload.len() + self.topic.as_str().len()
    }
}

/// What the link must write next for an entry.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// PUBLISH (with DUP when `dup`).
    Publish { index: usize, dup: bool },
    /// PUBREL for a QoS 2 message the remote has received.
    Release(PacketId),
}

/// The queue. Owned by its link, on the bridge thread.
#[derive(Debug)]
pub struct OutQueue {
    entries: VecDeque<Entry>,
    /// Entries before this index were written on the current connection.
    sent: usize,
    /// Sequence number of `entries[0]`; an entry's number never changes.
    first_seq: u64,
    /// Packet id -> sequence number of the entry holding it.
    by_id: HashMap<u16, u64>,
    next_id: u16,
    bytes: usize,
    limits: Limits,
    /// Steps of journaled entries not yet taken by the journal.
    changes: Vec<Change>,
    /// Entries in [`Stage::AwaitRec`] or [`Stage::AwaitComp`].
    qos2_inflight: usize,
}

/// True for the stages of a QoS 2 message the remote holds (PUBLISH
/// written, PUBCOMP not yet come).
fn holds_qos2(stage: Stage) -> bool {
    matches!(stage, Stage::AwaitRec | Stage::AwaitComp)
}

impl OutQueue {
    pub fn new(limits: Limits) -> OutQueue {
        OutQueue {
            entries: VecDeque::new(),
            sent: 0,
            // Room below for the notices put in front.
            first_seq: u64::MAX / 2,
            by_id: HashMap::new(),
            next_id: 0,
            bytes: 0,
            limits,
            changes: Vec::new(),
            qos2_inflight: 0,
        }
    }

    /// Puts back a journaled entry at a restart, at the back, as far as
    /// its flow got (`entry.stage` and `entry.packet_id`); outside the
    /// limits, which held when it was queued.
    pub fn restore(&mut self, entry: Entry) {
        if let (Some(id), true) = (entry.packet_id, entry.stage != Stage::Unsent) {
            let seq = self.first_seq + self.entries.len() as u64;
            self.by_id.insert(id.get(), seq);
        }
        if holds_qos2(entry.stage) {
            self.qos2_inflight += 1;
        }
        self.bytes += entry.size();
        self.entries.push_back(entry);
    }

    /// The journaled entries not finished, for a compaction.
    pub fn journaled(&self) -> impl Iterator<Item = &Entry> {
        self.entries
            .iter()
            .filter(|e| e.jid != 0 && e.stage != Stage::Done)
    }

    /// Hands the steps noted since the last call to `f`, in order.
    pub fn take_changes(&mut self, f: impl FnMut(Change)) {
        self.changes.drain(..).for_each(f);
    }

    /// Moves entry `index` to `stage`, noting the step if it is journaled.
    fn set_stage(&mut self, index: usize, stage: Stage) {
        let old = std::mem::replace(&mut self.entries[index].stage, stage);
        match (holds_qos2(old), holds_qos2(stage)) {
            (false, true) => self.qos2_inflight += 1,
            (true, false) => self.qos2_inflight -= 1,
            _ => {}
        }
        let e = &self.entries[index];
        if e.jid == 0 {
            return;
        }
        let jid = e.jid;
        let change = match stage {
            Stage::Done => Change::Done { jid },
            Stage::AwaitComp => Change::Released { jid },
            Stage::AwaitAck | Stage::AwaitRec => match e.packet_id {
                Some(pid) => Change::Sent {
                    jid,
                    pid: pid.get(),
                },
                None => return,
            },
            Stage::Unsent => return,
        };
        self.changes.push(change);
    }

    /// Messages held (written but unacknowledged ones included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes held (payloads and topics).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Messages written and not yet acknowledged: the inflight window.
    pub fn inflight(&self) -> usize {
        self.by_id.len()
    }

    /// True when an entry is waiting to be written on this connection.
    pub fn has_unsent(&self) -> bool {
        self.sent < self.entries.len()
    }

    /// True when `entry` fits within the limits.
    pub fn fits(&self, entry: &Entry) -> bool {
        self.entries.len() < self.limits.max_messages
            && (self.limits.max_bytes == 0 || self.bytes + entry.size() <= self.limits.max_bytes)
    }

    /// True if `entry` fits within the limits plus the backpressure
    /// headroom ([`PRESSURE_HEADROOM_MESSAGES`], and
    /// [`PRESSURE_HEADROOM_BYTES`] with a byte limit).
    pub fn fits_headroom(&self, entry: &Entry) -> bool {
        let max_bytes = self.limits.max_bytes + PRESSURE_HEADROOM_BYTES;
        self.entries.len() < self.limits.max_messages + PRESSURE_HEADROOM_MESSAGES
            && (self.limits.max_bytes == 0 || self.bytes + entry.size() <= max_bytes)
    }

    /// Appends `entry`; hands it back when the queue is full.
    pub fn push(&mut self, entry: Entry) -> Result<(), Entry> {
        let room = self.fits(&entry);
        self.append(room, entry)
    }

    /// Appends `entry` past the limits, into the headroom (its publisher
    /// is paused); hands it back when the headroom is full too.
    pub fn push_held(&mut self, entry: Entry) -> Result<(), Entry> {
        let room = self.fits_headroom(&entry);
        self.append(room, entry)
    }

    fn append(&mut self, room: bool, entry: Entry) -> Result<(), Entry> {
        if !room {
            return Err(entry);
        }
        self.bytes += entry.size();
        self.entries.push_back(entry);
        Ok(())
    }

    /// True once the queue is back at half its limits (and half its byte
    /// limit, when set): its publishers may resume.
    pub fn at_low_watermark(&self) -> bool {
        self.entries.len() <= self.limits.max_messages / 2
            && (self.limits.max_bytes == 0 || self.bytes <= self.limits.max_bytes / 2)
    }

    /// Drops the newest messages not yet written until the queue is within
    /// its limits (the link went offline with its headroom in use);
    /// returns how many were dropped. Entries written (in flight) stay.
    pub fn trim_to_limits(&mut self) -> usize {
        let over = |q: &OutQueue| {
            q.entries.len() > q.limits.max_messages
                || (q.limits.max_bytes != 0 && q.bytes > q.limits.max_bytes)
        };
        let mut dropped = 0;
        while over(self) && self.entries.len() > self.sent {
            let unsent = self
                .entries
                .back()
                .is_some_and(|e| matches!(e.stage, Stage::Unsent | Stage::Done));
            if !unsent {
                break;
            }
            let Some(e) = self.entries.pop_back() else {
                break;
            };
            self.bytes -= e.size();
            if e.jid != 0 && e.stage != Stage::Done {
                self.changes.push(Change::Done { jid: e.jid });
            }
            dropped += usize::from(e.stage != Stage::Done);
        }
        dropped
    }

    /// Puts a notification ahead of every message not yet written, after
    /// those in flight (outside the limits: one per connection). Not
    /// first: after a reconnect with a full window, the notice would wait
    /// for room in the window, and the resends that make room would wait
    /// behind it.
    pub fn push_notice(&mut self, mut entry: Entry) {
        entry.notice = true;
        self.bytes += entry.size();
        let at = self
            .entries
            .iter()
            .position(|e| e.stage == Stage::Unsent)
            .unwrap_or(self.entries.len());
        // Entries after `at` are unsent: none holds a packet id, whose
        // sequence number the insertion would shift.
        self.entries.insert(at, entry);
        // Called right after `rewind`: nothing is written yet.
        debug_assert_eq!(self.sent, 0, "a notice is queued before any write");
    }

    /// True when what [`OutQueue::next`] would write is a fresh QoS 1/2
    /// message, which takes a place in the inflight window; a resend (and
    /// a QoS 0 message) does not, so a window that was full when the link
    /// dropped is written again after the reconnect.
    pub fn next_needs_window(&self) -> bool {
        self.next_fresh().is_some_and(|q| q != QoS::AtMostOnce)
    }

    /// The QoS of what [`OutQueue::next`] would write, if it is a message
    /// not written yet (not a resend, not a PUBREL).
    pub fn next_fresh(&self) -> Option<QoS> {
        self.entries
            .iter()
            .skip(self.sent)
            .find(|e| e.stage != Stage::Done)
            .filter(|e| e.stage == Stage::Unsent)
            .map(|e| e.qos)
    }

    /// QoS 2 messages written and not completed (PUBCOMP): what counts
    /// against a remote's quota of inbound QoS 2 messages.
    pub fn qos2_inflight(&self) -> usize {
        self.qos2_inflight
    }

    /// What to write next, assigning a packet id to a fresh QoS > 0
    /// message; `None` when everything is written. Finished entries are
    /// passed over.
    pub fn next(&mut self) -> Option<Next> {
        while self.sent < self.entries.len() {
            let index = self.sent;
            self.sent += 1;
            let stage = self.entries[index].stage;
            let next = match stage {
                Stage::Done => continue,
                Stage::AwaitComp => {
                    let id = self.entries[index].packet_id?;
                    Next::Release(id)
                }
                Stage::AwaitAck | Stage::AwaitRec => Next::Publish { index, dup: true },
                Stage::Unsent => {
                    self.start(index);
                    Next::Publish { index, dup: false }
                }
            };
            return Some(next);
        }
        None
    }

    /// The entry at `index` (as returned by [`OutQueue::next`]).
    pub fn get(&self, index: usize) -> &Entry {
        &self.entries[index]
    }

    fn start(&mut self, index: usize) {
        let qos = self.entries[index].qos;
        if qos == QoS::AtMostOnce {
            // Written is delivered, as far as QoS 0 goes.
            self.set_stage(index, Stage::Done);
            return;
        }
        let id = self.allocate_id();
        let seq = self.first_seq + index as u64;
        self.by_id.insert(id.get(), seq);
        self.entries[index].packet_id = Some(id);
        let stage = if qos == QoS::AtLeastOnce {
            Stage::AwaitAck
        } else {
            Stage::AwaitRec
        };
        self.set_stage(index, stage);
    }

    /// A free packet id below the link's own ([`CONTROL_IDS_FROM`]).
    /// Terminates: fewer ids are in flight than there are (the window is
    /// far smaller).
    fn allocate_id(&mut self) -> PacketId {
        loop {
            self.next_id = if self.next_id + 1 >= CONTROL_IDS_FROM {
                1
            } else {
                self.next_id + 1
            };
            if let Some(id) = NonZeroU16::new(self.next_id) {
                if !self.by_id.contains_key(&id.get()) {
                    return id;
                }
            }
        }
    }

    /// An acknowledgement (PUBACK, PUBREC or PUBCOMP) for `id`: moves its
    /// entry on if it is in the `expected` stage; true if it did.
    pub fn acknowledge(&mut self, id: PacketId, expected: Stage) -> bool {
        let Some(index) = self.index_of(id) else {
            return false;
        };
        if self.entries[index].stage != expected {
            return false;
        }
        let stage = match expected {
            Stage::AwaitRec => Stage::AwaitComp,
            _ => Stage::Done,
        };
        self.set_stage(index, stage);
        if stage == Stage::Done {
            self.by_id.remove(&id.get());
        }
        self.pop_done();
        true
    }

    /// Ends the flow of the entry holding `id`, whatever its stage (the
    /// remote answered a QoS 2 message at QoS 1, or it could not be sent).
    pub fn finish(&mut self, id: PacketId) {
        let Some(index) = self.index_of(id) else {
            return;
        };
        self.set_stage(index, Stage::Done);
        self.by_id.remove(&id.get());
        self.pop_done();
    }

    fn index_of(&self, id: PacketId) -> Option<usize> {
        let seq = *self.by_id.get(&id.get())?;
        Some((seq - self.first_seq) as usize)
    }

    /// Drops finished entries from the front: call once what
    /// [`OutQueue::next`] returned is written (a QoS 0 message is finished
    /// then), before the next call.
    pub fn pop_done(&mut self) {
        while self.sent > 0 && self.entries.front().map(|e| e.stage) == Some(Stage::Done) {
            if let Some(e) = self.entries.pop_front() {
                self.bytes -= e.size();
            }
            self.first_seq += 1;
            self.sent -= 1;
        }
    }

    /// A new connection: everything unfinished is written again from the
    /// front. Without a session on the remote (`session_present` false)
    /// a QoS 2 message the remote already received is finished: that
    /// session, and the message's delivery, are the remote's now. Stale
    /// notifications are dropped.
    pub fn rewind(&mut self, session_present: bool) {
        for index in 0..self.entries.len() {
            let e = &self.entries[index];
            let stale = e.notice || (!session_present && e.stage == Stage::AwaitComp);
            if stale && e.stage != Stage::Done {
                if let Some(id) = e.packet_id {
                    self.by_id.remove(&id.get());
                }
                self.set_stage(index, Stage::Done);
            }
        }
        self.sent = self.entries.len();
        self.pop_done();
        self.sent = 0;
    }

    /// Empties the queue (the link was removed); returns how many
    /// unfinished messages were dropped.
    pub fn clear(&mut self) -> usize {
        let open = self.entries.iter().filter(|e| e.stage != Stage::Done);
        let n = open.clone().count();
        let done = open
            .filter(|e| e.jid != 0)
            .map(|e| Change::Done { jid: e.jid });
        self.changes.extend(done.collect::<Vec<_>>());
        self.entries.clear();
        self.by_id.clear();
        self.sent = 0;
        self.bytes = 0;
        self.qos2_inflight = 0;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::Origin;
    use crate::protocol::Publish;

    fn entry(qos: QoS) -> Entry {
        let topic = TopicName::from_str("t").unwrap();
        let msg = Arc::new(Message::new(
            Publish {
                dup: false,
                qos,
                retain: false,
                topic: topic.clone(),
                packet_id: None,
                payload: bytes::Bytes::from_static(b"12345"),
                properties: Default::default(),
            },
            Origin {
                shard: 0,
                session: 0,
            },
        ));
        Entry::new(msg, topic, qos, false)
    }

    fn queue(max_messages: usize, max_bytes: usize) -> OutQueue {
        OutQueue::new(Limits {
            max_messages,
            max_bytes,
            overload_stall: None,
        })
    }

    fn publish_id(q: &mut OutQueue) -> (PacketId, bool) {
        match q.next() {
            Some(Next::Publish { index, dup }) => (q.get(index).packet_id.unwrap(), dup),
            other => panic!("expected a publish, got {other:?}"),
        }
    }

    #[test]
    fn qos1_leaves_only_when_acknowledged_in_any_order() {
        let mut q = queue(10, 0);
        for _ in 0..3 {
            q.push(entry(QoS::AtLeastOnce)).unwrap();
        }
        let ids: Vec<_> = (0..3).map(|_| publish_id(&mut q).0).collect();
        assert_eq!(q.inflight(), 3);
        assert!(q.acknowledge(ids[1], Stage::AwaitAck));
        assert_eq!(q.len(), 3, "the first is still unacknowledged");
        assert!(q.acknowledge(ids[0], Stage::AwaitAck));
        assert_eq!(q.len(), 1);
        assert!(!q.acknowledge(ids[0], Stage::AwaitAck), "a duplicate ack");
        assert!(q.acknowledge(ids[2], Stage::AwaitAck));
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn a_reconnect_resends_unacknowledged_in_order_with_dup() {
        let mut q = queue(10, 0);
        for _ in 0..3 {
            q.push(entry(QoS::AtLeastOnce)).unwrap();
        }
        let first = publish_id(&mut q).0;
        let second = publish_id(&mut q).0;
        q.rewind(true);
        assert_eq!(publish_id(&mut q), (first, true));
        assert_eq!(publish_id(&mut q), (second, true));
        let (_, dup) = publish_id(&mut q);
        assert!(!dup, "the third was never written");
        assert_eq!(q.next(), None);
    }

    #[test]
    fn qos2_goes_through_pubrec_and_pubcomp_and_pubrel_is_resent() {
        let mut q = queue(10, 0);
        q.push(entry(QoS::ExactlyOnce)).unwrap();
        let (id, _) = publish_id(&mut q);
        assert!(!q.acknowledge(id, Stage::AwaitAck), "PUBACK for QoS 2");
        assert!(q.acknowledge(id, Stage::AwaitRec));
        q.rewind(true);
        assert_eq!(q.next(), Some(Next::Release(id)));
        assert!(q.acknowledge(id, Stage::AwaitComp));
        assert!(q.is_empty());
    }

    #[test]
    fn without_a_remote_session_a_received_qos2_message_is_finished() {
        let mut q = queue(10, 0);
        q.push(entry(QoS::ExactlyOnce)).unwrap();
        let (id, _) = publish_id(&mut q);
        assert!(q.acknowledge(id, Stage::AwaitRec));
        q.rewind(false);
        assert!(q.is_empty());
        assert_eq!(q.inflight(), 0);
    }

    #[test]
    fn qos0_is_done_once_written() {
        let mut q = queue(10, 0);
        q.push(entry(QoS::AtMostOnce)).unwrap();
        q.push(entry(QoS::AtLeastOnce)).unwrap();
        assert!(matches!(q.next(), Some(Next::Publish { dup: false, .. })));
        let (id, _) = publish_id(&mut q);
        assert_eq!(
            q.len(),
            2,
            "QoS 0 waits behind nothing but is kept in order"
        );
        assert!(q.acknowledge(id, Stage::AwaitAck));
        assert!(q.is_empty());
    }

    #[test]
    fn limits_refuse_by_count_and_by_bytes() {
        let mut q = queue(2, 0);
        q.push(entry(QoS::AtLeastOnce)).unwrap();
        q.push(entry(QoS::AtLeastOnce)).unwrap();
        assert!(q.push(entry(QoS::AtLeastOnce)).is_err());
        let mut q = queue(100, 12);
        q.push(entry(QoS::AtLeastOnce)).unwrap();
        q.push(entry(QoS::AtLeastOnce)).unwrap();
        assert!(
            q.push(entry(QoS::AtLeastOnce)).is_err(),
            "6 B each, 12 B max"
        );
    }

    #[test]
    fn the_headroom_takes_what_the_limits_refuse_and_a_trim_gives_it_back() {
        let mut q = queue(2, 0);
        q.push(entry(QoS::AtLeastOnce)).unwrap();
        let first = publish_id(&mut q).0;
        q.push(entry(QoS::AtLeastOnce)).unwrap();
        assert!(q.push(entry(QoS::AtLeastOnce)).is_err());
        for _ in 0..3 {
            q.push_held(entry(QoS::AtLeastOnce)).unwrap();
        }
        assert_eq!(q.len(), 5);
        assert!(!q.at_low_watermark());
        assert_eq!(q.trim_to_limits(), 3, "the newest unsent go");
        assert_eq!(q.len(), 2);
        assert!(q.acknowledge(first, Stage::AwaitAck));
        assert!(q.at_low_watermark(), "1 of 2");
        let mut q = queue(1, 0);
        q.push(entry(QoS::AtLeastOnce)).unwrap();
        q.push_held(entry(QoS::AtLeastOnce)).unwrap();
        publish_id(&mut q);
        publish_id(&mut q);
        assert_eq!(q.trim_to_limits(), 0, "written entries stay");
    }

    #[test]
    fn a_notice_goes_after_resends_before_new_messages_and_is_not_resent() {
        let mut q = queue(10, 0);
        q.push(entry(QoS::AtLeastOnce)).unwrap();
        let first = publish_id(&mut q).0;
        q.push(entry(QoS::AtLeastOnce)).unwrap();
        q.rewind(true);
        q.push_notice(entry(QoS::AtLeastOnce));
        assert_eq!(publish_id(&mut q), (first, true));
        let (notice, dup) = publish_id(&mut q);
        assert!(!dup);
        assert_ne!(notice, first);
        let (second, _) = publish_id(&mut q);
        assert!(q.acknowledge(second, Stage::AwaitAck));
        q.rewind(true);
        assert_eq!(publish_id(&mut q), (first, true), "the old notice is gone");
        assert_eq!(q.next(), None);
        assert_eq!(q.inflight(), 1);
    }

    #[test]
    fn a_full_window_is_written_again_after_a_reconnect() {
        let window = 2;
        let mut q = queue(10, 0);
        for _ in 0..3 {
            q.push(entry(QoS::AtLeastOnce)).unwrap();
        }
        let ids: Vec<_> = (0..window).map(|_| publish_id(&mut q).0).collect();
        assert!(
            q.inflight() >= window && q.next_needs_window(),
            "the third waits"
        );
        q.rewind(true);
        for id in ids {
            assert!(
                !q.next_needs_window(),
                "a resend needs no room in the window"
            );
            assert_eq!(publish_id(&mut q), (id, true));
        }
        assert!(q.next_needs_window());
    }

    #[test]
    fn qos2_messages_count_in_flight_from_publish_to_pubcomp() {
        let mut q = queue(10, 0);
        q.push(entry(QoS::ExactlyOnce)).unwrap();
        q.push(entry(QoS::AtLeastOnce)).unwrap();
        q.push(entry(QoS::ExactlyOnce)).unwrap();
        assert_eq!(q.next_fresh(), Some(QoS::ExactlyOnce));
        let (a, _) = publish_id(&mut q);
        let (b, _) = publish_id(&mut q);
        assert_eq!(
            (q.qos2_inflight(), q.next_fresh()),
            (1, Some(QoS::ExactlyOnce))
        );
        let (c, _) = publish_id(&mut q);
        assert_eq!((q.qos2_inflight(), q.next_fresh()), (2, None));
        assert!(q.acknowledge(a, Stage::AwaitRec));
        assert_eq!(q.qos2_inflight(), 2, "PUBREL written, PUBCOMP not come");
        assert!(q.acknowledge(a, Stage::AwaitComp));
        assert!(q.acknowledge(b, Stage::AwaitAck));
        assert_eq!(q.qos2_inflight(), 1);
        q.finish(c);
        assert_eq!(q.qos2_inflight(), 0);
    }

    #[test]
    fn ids_are_never_reused_while_in_flight() {
        let mut q = queue(70_000, 0);
        for _ in 0..1000 {
            q.push(entry(QoS::AtLeastOnce)).unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            assert!(seen.insert(publish_id(&mut q).0));
        }
    }
}
