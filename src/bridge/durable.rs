//! The bridge thread's journal (`bridge.journal`, see
//! [`crate::persist::bridge`]): what it appends for its links, the
//! confirmations it owes the data shards, and its compaction.
//!
//! - **Out.** A message a link queues is journaled (`Queued`), and so is
//!   each step of its flow (`Sent` with its packet id, `Released` once
//!   PUBREC came, `Done`). A data shard counts each QoS 1/2 message it
//!   forwards here, as it counts those it forwards to another data shard;
//!   this thread confirms the running count (`ShardMsg::Durable`) once the
//!   batch holding what its links did with them is durable, so that the
//!   publisher's PUBACK/PUBREC waits for the bridge's journal too.
//! - **The wire waits.** A link's output is not written to its socket
//!   before the records of what it writes are durable (a packet id, a
//!   PUBREL, an inbound PUBREC): after a crash the journal never knows less
//!   than the remote, so a restart resends with the same packet id and a
//!   QoS 2 message goes exactly once. In `written` mode the batch is
//!   written when handed over, so nothing waits.
//!
//! Owned by the bridge thread.

use std::collections::VecDeque;

use super::queue::{Change, Entry as OutEntry, Stage};
use crate::index::ShardSet;
use crate::persist::bridge::{BridgeEntry, BridgeState};
use crate::persist::Journal;

/// What the bridge thread starts with when persistence is on: its journal
/// (opened, its torn tail cut) and what the journal held.
pub struct BridgeDurableBoot {
    pub journal: Journal,
    pub state: BridgeState,
    /// `persistence_compact_size`.
    pub compact_min: u64,
}

/// The bridge thread's journal and its bookkeeping.
pub struct BridgeJournal {
    journal: Journal,
    /// The next journal id of a queued message (ids grow in queue order).
    next_id: u64,
    /// Per data shard: QoS 1/2 messages it forwarded here.
    received: Vec<u64>,
    /// Shards whose count moved since the last batch.
    moved: ShardSet,
    /// Counts to confirm once their batch is durable.
    to_confirm: VecDeque<(u64, Vec<(usize, u64)>)>,
    /// `persistence_compact_size`.
    compact_min: u64,
}

impl BridgeJournal {
    pub fn new(journal: Journal, next_id: u64, shards: usize, compact_min: u64) -> Self {
        BridgeJournal {
            journal,
            next_id,
            received: vec![0; shards],
            moved: ShardSet::default(),
            to_confirm: VecDeque::new(),
            compact_min,
        }
    }

    /// Appends `entry` to the current batch.
    pub fn append(&mut self, entry: &BridgeEntry) {
        self.journal.append(entry.kind(), |b| entry.write_body(b));
    }

    /// Journals `e`, just queued by link `link`, and gives it its id.
    pub fn queued(&mut self, link: &str, e: &mut OutEntry) {
        e.jid = self.next_id;
        self.next_id += 1;
        self.append(&queued_entry(link, e));
    }

    /// Journals a step of a queued message's flow.
    pub fn change(&mut self, c: Change) {
        self.append(&match c {
            Change::Sent { jid, pid } => BridgeEntry::Sent { id: jid, pid },
            Change::Released { jid } => BridgeEntry::Released { id: jid },
            Change::Done { jid } => BridgeEntry::Done { id: jid },
        });
    }

    /// A QoS 1/2 message came from data shard `peer`.
    pub fn received(&mut self, peer: usize) {
        if let Some(n) = self.received.get_mut(peer) {
            *n += 1;
            self.moved.insert(peer);
        }
    }

    /// Hands what is appended to the writer; returns the batch that holds
    /// it all (durable when [`durable`](Self::durable) reaches it).
    pub fn submit(&mut self) -> u64 {
        let batch = match self.journal.submit() {
            Ok(Some(b)) => b,
            // Nothing appended: durable with what came before.
            Ok(None) => self.journal.next_batch() - 1,
            // The writer is behind: it stays in the next batch.
            Err(_) => self.journal.next_batch(),
        };
        let moved = std::mem::take(&mut self.moved);
        if !moved.is_empty() {
            let counts = moved.iter().map(|p| (p, self.received[p])).collect();
            self.to_confirm.push_back((batch, counts));
        }
        batch
    }

    /// The highest batch that is durable.
    pub fn durable(&self) -> u64 {
        self.journal.durable()
    }

    /// Calls `confirm(shard, count)` for each count now durable.
    pub fn confirmations(&mut self, mut confirm: impl FnMut(usize, u64)) {
        let durable = self.journal.durable();
        while self.to_confirm.front().is_some_and(|(b, _)| *b <= durable) {
            if let Some((_, counts)) = self.to_confirm.pop_front() {
                counts.into_iter().for_each(|(p, n)| confirm(p, n));
            }
        }
    }

    /// True when the journal has grown past its bound: twice the live
    /// state at the last compaction, and at least `persistence_compact_size`.
    pub fn due_for_compaction(&self) -> bool {
        self.journal.due_for_compaction(self.compact_min)
    }

    /// Replaces the journal with `records` (the live state, bounded by
    /// the queues' limits). Call right after [`submit`](Self::submit).
    pub fn compact(&mut self, records: bytes::BytesMut) {
        let snapshot = Box::new(move |out: &mut bytes::BytesMut| out.extend_from_slice(&records));
        // A compaction still running: the next turn tries again.
        let _ = self.journal.rotate(snapshot);
    }

    /// Hands over what is left and waits for the writer (its last sync).
    pub fn close(self) {
        let path = self.journal.path().display().to_string();
        if let Err(e) = self.journal.close() {
            log::error!("{path}: closing: {e}");
        }
    }
}

/// The `Queued` entry of `e`, queued by link `link`.
fn queued_entry(link: &str, e: &OutEntry) -> BridgeEntry {
    BridgeEntry::Queued {
        id: e.jid,
        link: link.to_string(),
        topic: e.topic.as_str().to_string(),
        qos: e.qos as u8,
        retain: e.retain,
        expires_at: e.msg.expires_at_unix(),
        publish: Box::new(e.msg.publish.clone()),
    }
}

/// Appends the records that rebuild journaled queue entry `e` of `link`:
/// its message, and how far its flow got.
pub fn live_records(out: &mut bytes::BytesMut, link: &str, e: &OutEntry) {
    queued_entry(link, e).append_to(out);
    let id = e.jid;
    if let Some(pid) = e.packet_id.filter(|_| e.stage != Stage::Unsent) {
        BridgeEntry::Sent { id, pid: pid.get() }.append_to(out);
    }
    if e.stage == Stage::AwaitComp {
        BridgeEntry::Released { id }.append_to(out);
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU16;
    use std::sync::Arc;

    use bytes::{Bytes, BytesMut};

    use super::*;
    use crate::mesh::{Message, Origin};
    use crate::protocol::{Properties, Publish, QoS, TopicName};

    fn entry(jid: u64, qos: QoS, stage: Stage, pid: Option<u16>) -> OutEntry {
        let topic = TopicName::from_str("local/t").expect("topic");
        let publish = Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id: None,
            payload: Bytes::from(format!("m{jid}")),
            properties: Properties::default(),
        };
        let origin = Origin {
            shard: 2,
            session: 0,
        };
        let msg = Arc::new(Message::new(publish, origin));
        let remote = TopicName::from_str("remote/t").expect("topic");
        let mut e = OutEntry::new(msg, remote, qos, true);
        e.jid = jid;
        e.stage = stage;
        e.packet_id = pid.and_then(NonZeroU16::new);
        e
    }

    #[test]
    fn a_compaction_keeps_each_entry_as_far_as_its_flow_got() {
        let entries = [
            entry(3, QoS::ExactlyOnce, Stage::AwaitComp, Some(7)),
            entry(4, QoS::ExactlyOnce, Stage::AwaitRec, Some(8)),
            entry(5, QoS::AtLeastOnce, Stage::AwaitAck, Some(9)),
            entry(6, QoS::AtLeastOnce, Stage::Unsent, None),
        ];
        let mut out = BytesMut::new();
        for e in &entries {
            live_records(&mut out, "up", e);
        }
        let state = BridgeState::fold(&out);
        assert!(state.damage.is_empty());
        assert_eq!(state.next_id, 7);
        let got: Vec<_> = state.links["up"]
            .queue
            .iter()
            .map(|o| (o.id, o.qos, o.pid, o.released, &o.publish.payload[..]))
            .collect();
        assert_eq!(
            got,
            [
                (3, 2, Some(7), true, &b"m3"[..]),
                (4, 2, Some(8), false, &b"m4"[..]),
                (5, 1, Some(9), false, &b"m5"[..]),
                (6, 1, None, false, &b"m6"[..]),
            ]
        );
        assert!(state.links["up"]
            .queue
            .iter()
            .all(|o| o.topic == "remote/t" && o.retain));
    }
}
