//! The bridge thread's durable state: each link's outgoing queue with its
//! QoS flow, and the inbound QoS 2 ids it owes the remote. Pure: entries
//! and their fold; the file is a [`super::Journal`] of its own,
//! `bridge.journal` beside the shards' generations (header owner
//! [`BRIDGE_OWNER`]), one file for every link, the link's name in the
//! entries that need it.
//!
//! | kind | entry | body |
//! |---|---|---|
//! | 32 | [`BridgeEntry::Queued`] | id u64, link, remote topic, qos u8, retain u8, expires at (Unix s, 0 none) u64, PUBLISH |
//! | 33 | [`BridgeEntry::Sent`] | id u64, packet id u16 |
//! | 34 | [`BridgeEntry::Released`] | id u64 |
//! | 35 | [`BridgeEntry::Done`] | id u64 |
//! | 36 | [`BridgeEntry::Qos2In`] | link, packet id u16 |
//! | 37 | [`BridgeEntry::Qos2InDone`] | link, packet id u16 |
//!
//! Ids are unique in the file and grow in queue order, so the open
//! entries of a link, sorted by id, are its queue.

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};

use super::entry::{get_publish, get_str, get_u16, get_u64, get_u8, put_publish, put_str};
use super::record;
use super::BadEntry;
use crate::protocol::Publish;

/// The header's owner field of the bridge journal (a shard's is its index).
pub const BRIDGE_OWNER: u16 = u16::MAX;

/// The bridge journal's file name, in the journal directory.
pub const BRIDGE_FILE: &str = "bridge.journal";

/// One durable fact of the bridge.
#[derive(Debug, Clone, PartialEq)]
pub enum BridgeEntry {
    /// Link `link` queued a message for the remote, as entry `id`.
    Queued {
        id: u64,
        link: String,
        topic: String,
        qos: u8,
        retain: bool,
        expires_at: u64,
        /// Boxed: the other entries are a few words.
        publish: Box<Publish>,
    },
    /// Entry `id` went out with packet id `pid` (QoS 1/2).
    Sent { id: u64, pid: u16 },
    /// Its PUBREC came and PUBREL goes out (QoS 2): a restart resends the
    /// PUBREL, not the PUBLISH.
    Released { id: u64 },
    /// Entry `id` is finished (acknowledged, written at QoS 0, dropped).
    Done { id: u64 },
    /// The remote's QoS 2 message `pid` came in on `link` and PUBREC goes
    /// out: a resend of it is not delivered again.
    Qos2In { link: String, pid: u16 },
    /// The remote released it (PUBREL came).
    Qos2InDone { link: String, pid: u16 },
}

impl BridgeEntry {
    /// The record kind.
    pub fn kind(&self) -> u8 {
        match self {
            BridgeEntry::Queued { .. } => 32,
            BridgeEntry::Sent { .. } => 33,
            BridgeEntry::Released { .. } => 34,
            BridgeEntry::Done { .. } => 35,
            BridgeEntry::Qos2In { .. } => 36,
            BridgeEntry::Qos2InDone { .. } => 37,
        }
    }

    /// Writes the body.
    pub fn write_body(&self, out: &mut BytesMut) {
        match self {
            BridgeEntry::Queued {
                id,
                link,
                topic,
                qos,
                retain,
                expires_at,
                publish,
            } => {
                out.put_u64(*id);
                put_str(out, link);
                put_str(out, topic);
                out.put_u8(*qos);
                out.put_u8(u8::from(*retain));
                out.put_u64(*expires_at);
                put_publish(out, publish);
            }
            BridgeEntry::Sent { id, pid } => {
                out.put_u64(*id);
                out.put_u16(*pid);
            }
            BridgeEntry::Released { id } | BridgeEntry::Done { id } => out.put_u64(*id),
            BridgeEntry::Qos2In { link, pid } | BridgeEntry::Qos2InDone { link, pid } => {
                put_str(out, link);
                out.put_u16(*pid);
            }
        }
    }

    /// Reads the body of a record of `kind`.
    pub fn read(kind: u8, body: &[u8]) -> Result<BridgeEntry, BadEntry> {
        let bad = |why| BadEntry { kind, why };
        let mut b = body;
        let pid = |b: &mut &[u8]| get_u16(b).filter(|p| *p != 0).ok_or(bad("packet id"));
        let entry = match kind {
            32 => BridgeEntry::Queued {
                id: get_u64(&mut b).ok_or(bad("id"))?,
                link: get_str(&mut b).ok_or(bad("link"))?,
                topic: get_str(&mut b).ok_or(bad("topic"))?,
                qos: get_u8(&mut b).filter(|q| *q <= 2).ok_or(bad("qos"))?,
                retain: get_u8(&mut b).ok_or(bad("retain"))? != 0,
                expires_at: get_u64(&mut b).ok_or(bad("expiry"))?,
                publish: Box::new(get_publish(&mut b).ok_or(bad("PUBLISH"))?),
            },
            33 => BridgeEntry::Sent {
                id: get_u64(&mut b).ok_or(bad("id"))?,
                pid: pid(&mut b)?,
            },
            34 => BridgeEntry::Released {
                id: get_u64(&mut b).ok_or(bad("id"))?,
            },
            35 => BridgeEntry::Done {
                id: get_u64(&mut b).ok_or(bad("id"))?,
            },
            36 | 37 => {
                let link = get_str(&mut b).ok_or(bad("link"))?;
                let pid = pid(&mut b)?;
                if kind == 36 {
                    BridgeEntry::Qos2In { link, pid }
                } else {
                    BridgeEntry::Qos2InDone { link, pid }
                }
            }
            _ => return Err(bad("unknown kind")),
        };
        if !b.is_empty() {
            return Err(bad("bytes left after the entry"));
        }
        Ok(entry)
    }

    /// Appends the entry as a record to `out`.
    pub fn append_to(&self, out: &mut BytesMut) {
        record::append(out, self.kind(), |b| self.write_body(b));
    }
}

/// One queued message read back.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOut {
    pub id: u64,
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
    pub expires_at: u64,
    pub publish: Publish,
    /// The packet id it went out with, if it did.
    pub pid: Option<u16>,
    /// PUBREC came (QoS 2): PUBREL is what goes out again.
    pub released: bool,
}

/// One link's state read back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredLink {
    /// Its unfinished messages, in queue order.
    pub queue: Vec<StoredOut>,
    /// Inbound QoS 2 ids PUBREC was sent for.
    pub qos2_in: Vec<u16>,
}

/// The bridge journal folded.
#[derive(Debug, Default)]
pub struct BridgeState {
    pub links: BTreeMap<String, StoredLink>,
    /// The first id not used.
    pub next_id: u64,
    /// Records that did not decode (logged; the rest is served).
    pub damage: Vec<String>,
}

impl BridgeState {
    /// Folds the records of a bridge journal (header excluded).
    pub fn fold(records: &[u8]) -> BridgeState {
        let mut state = BridgeState {
            next_id: 1,
            ..BridgeState::default()
        };
        let mut open: BTreeMap<u64, (String, StoredOut)> = BTreeMap::new();
        record::records(records, |r| match BridgeEntry::read(r.kind, r.body) {
            Ok(e) => state.apply(&mut open, e),
            Err(e) => state.damage.push(e.to_string()),
        });
        for (_, (link, out)) in open {
            state.links.entry(link).or_default().queue.push(out);
        }
        state
    }

    fn apply(&mut self, open: &mut BTreeMap<u64, (String, StoredOut)>, e: BridgeEntry) {
        match e {
            BridgeEntry::Queued {
                id,
                link,
                topic,
                qos,
                retain,
                expires_at,
                publish,
            } => {
                self.next_id = self.next_id.max(id + 1);
                let out = StoredOut {
                    id,
                    topic,
                    qos,
                    retain,
                    expires_at,
                    publish: *publish,
                    pid: None,
                    released: false,
                };
                open.insert(id, (link, out));
            }
            BridgeEntry::Sent { id, pid } => {
                if let Some((_, o)) = open.get_mut(&id) {
                    o.pid = Some(pid);
                }
            }
            BridgeEntry::Released { id } => {
                if let Some((_, o)) = open.get_mut(&id) {
                    o.released = true;
                }
            }
            BridgeEntry::Done { id } => {
                open.remove(&id);
            }
            BridgeEntry::Qos2In { link, pid } => {
                let l = self.links.entry(link).or_default();
                if !l.qos2_in.contains(&pid) {
                    l.qos2_in.push(pid);
                }
            }
            BridgeEntry::Qos2InDone { link, pid } => {
                if let Some(l) = self.links.get_mut(&link) {
                    l.qos2_in.retain(|p| *p != pid);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::{Properties, QoS, TopicName};

    fn publish(payload: &'static [u8]) -> Publish {
        Publish {
            dup: false,
            qos: QoS::ExactlyOnce,
            retain: false,
            topic: TopicName::from_str("local/t").expect("topic"),
            packet_id: None,
            payload: Bytes::from_static(payload),
            properties: Properties::default(),
        }
    }

    fn queued(id: u64, link: &str, payload: &'static [u8]) -> BridgeEntry {
        BridgeEntry::Queued {
            id,
            link: link.into(),
            topic: "remote/t".into(),
            qos: 2,
            retain: true,
            expires_at: 7,
            publish: Box::new(publish(payload)),
        }
    }

    #[test]
    fn every_entry_round_trips() {
        let entries = [
            queued(1, "up", b"p"),
            BridgeEntry::Sent { id: 1, pid: 9 },
            BridgeEntry::Released { id: 1 },
            BridgeEntry::Done { id: 1 },
            BridgeEntry::Qos2In {
                link: "up".into(),
                pid: 4,
            },
            BridgeEntry::Qos2InDone {
                link: "up".into(),
                pid: 4,
            },
        ];
        for e in entries {
            let mut b = BytesMut::new();
            e.write_body(&mut b);
            assert_eq!(BridgeEntry::read(e.kind(), &b), Ok(e));
        }
        assert!(BridgeEntry::read(33, &[0; 10]).is_err(), "packet id 0");
    }

    #[test]
    fn open_messages_come_back_per_link_in_order_with_their_flow() {
        let mut out = BytesMut::new();
        for e in [
            queued(1, "a", b"one"),
            queued(2, "b", b"other link"),
            queued(3, "a", b"two"),
            queued(4, "a", b"three"),
            BridgeEntry::Sent { id: 1, pid: 5 },
            BridgeEntry::Released { id: 1 },
            BridgeEntry::Sent { id: 3, pid: 6 },
            BridgeEntry::Done { id: 3 },
            BridgeEntry::Qos2In {
                link: "a".into(),
                pid: 8,
            },
            BridgeEntry::Qos2In {
                link: "a".into(),
                pid: 9,
            },
            BridgeEntry::Qos2InDone {
                link: "a".into(),
                pid: 8,
            },
        ] {
            e.append_to(&mut out);
        }
        let state = BridgeState::fold(&out);
        assert!(state.damage.is_empty());
        assert_eq!(state.next_id, 5);
        let a = &state.links["a"];
        let got: Vec<_> = a
            .queue
            .iter()
            .map(|o| (&o.publish.payload[..], o.pid, o.released))
            .collect();
        assert_eq!(
            got,
            [(&b"one"[..], Some(5), true), (&b"three"[..], None, false)]
        );
        assert_eq!(a.qos2_in, [9]);
        assert_eq!(state.links["b"].queue.len(), 1);
    }
}
