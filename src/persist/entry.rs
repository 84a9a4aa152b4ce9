//! What a journal record says: the typed entries of durable state, and
//! their bodies in the record format (see [`super::record`]). Pure.
//!
//! Messages are stored as MQTT 5.0 PUBLISH packets (the codec's own
//! encoding, properties included), with the absolute time their Message
//! Expiry Interval runs out. Strings are u16-length-prefixed UTF-8; every
//! number is big-endian.
//!
//! | kind | entry | body |
//! |---|---|---|
//! | 1 | [`Entry::Session`] | client id, protocol level u8, expiry u32 |
//! | 2 | [`Entry::SessionEnd`] | client id |
//! | 3 | [`Entry::Subscribe`] | client id, filter, options u8, identifier u32 |
//! | 4 | [`Entry::Unsubscribe`] | client id, filter |
//! | 5 | [`Entry::Message`] | message key u64, expires at (Unix s, 0 none) u64, PUBLISH |
//! | 6 | [`Entry::Enqueue`] | delivery u64, client id, message key u64, qos u8, retain u8 |
//! | 7 | [`Entry::Sent`] | delivery u64, packet id u16 |
//! | 8 | [`Entry::Released`] | delivery u64 |
//! | 9 | [`Entry::Done`] | delivery u64 |
//! | 10 | [`Entry::Retain`] | stamp nanos u64, stamp shard u16, topic, expires at u64, PUBLISH or nothing |
//! | 11 | [`Entry::Qos2In`] | client id, packet id u16 |
//! | 12 | [`Entry::Qos2InDone`] | client id, packet id u16 |
//! | 13 | [`Entry::Will`] | client id, due (Unix s, 0 while connected) u64, delay u32, PUBLISH |
//! | 14 | [`Entry::WillGone`] | client id |

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::protocol::{self, Packet, ProtocolVersion, Publish, QoS};

/// The record kind of [`Entry::Message`].
pub const MESSAGE: u8 = 5;
/// The record kind of [`Entry::Enqueue`].
pub const ENQUEUE: u8 = 6;

/// One durable fact, as appended and as read back.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A session exists (or changed): its protocol level and expiry.
    Session {
        client_id: String,
        version: u8,
        expiry: u32,
    },
    /// A session ended: everything of it goes.
    SessionEnd { client_id: String },
    /// A subscription was made or replaced.
    Subscribe {
        client_id: String,
        filter: String,
        options: u8,
        id: u32,
    },
    /// A subscription was removed.
    Unsubscribe { client_id: String, filter: String },
    /// A message body, referred to by key by the entries that follow.
    Message {
        key: u64,
        expires_at: u64,
        publish: Publish,
    },
    /// A delivery of message `key` to a session was queued.
    Enqueue {
        delivery: u64,
        client_id: String,
        key: u64,
        qos: u8,
        retain: bool,
    },
    /// The delivery went out with packet id `pid`.
    Sent { delivery: u64, pid: u16 },
    /// Its PUBREC came: PUBREL was sent (QoS 2).
    Released { delivery: u64 },
    /// The delivery finished (acknowledged, dropped or expired).
    Done { delivery: u64 },
    /// A retained message was set (`Some`) or deleted.
    Retain {
        nanos: u64,
        shard: u16,
        topic: String,
        expires_at: u64,
        publish: Option<Publish>,
    },
    /// An inbound QoS 2 packet id is pending (PUBREC sent).
    Qos2In { client_id: String, pid: u16 },
    /// It was released (PUBREL came).
    Qos2InDone { client_id: String, pid: u16 },
    /// The session's will: its connection's (`due` 0), or held back until
    /// `due`; `delay` is its Will Delay Interval (a will property, not a
    /// PUBLISH one, so kept apart).
    Will {
        client_id: String,
        due: u64,
        delay: u32,
        publish: Publish,
    },
    /// The session has no will any more (sent, cancelled or replaced by
    /// none).
    WillGone { client_id: String },
}

/// A record body that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("journal record of kind {kind}: {why}")]
pub struct BadEntry {
    pub kind: u8,
    pub why: &'static str,
}

impl Entry {
    /// The record kind.
    pub fn kind(&self) -> u8 {
        match self {
            Entry::Session { .. } => 1,
            Entry::SessionEnd { .. } => 2,
            Entry::Subscribe { .. } => 3,
            Entry::Unsubscribe { .. } => 4,
            Entry::Message { .. } => MESSAGE,
            Entry::Enqueue { .. } => ENQUEUE,
            Entry::Sent { .. } => 7,
            Entry::Released { .. } => 8,
            Entry::Done { .. } => 9,
            Entry::Retain { .. } => 10,
            Entry::Qos2In { .. } => 11,
            Entry::Qos2InDone { .. } => 12,
            Entry::Will { .. } => 13,
            Entry::WillGone { .. } => 14,
        }
    }

    /// Writes the body.
    pub fn write_body(&self, out: &mut BytesMut) {
        match self {
            Entry::Session {
                client_id,
                version,
                expiry,
            } => {
                put_str(out, client_id);
                out.put_u8(*version);
                out.put_u32(*expiry);
            }
            Entry::SessionEnd { client_id } => put_str(out, client_id),
            Entry::Subscribe {
                client_id,
                filter,
                options,
                id,
            } => {
                put_str(out, client_id);
                put_str(out, filter);
                out.put_u8(*options);
                out.put_u32(*id);
            }
            Entry::Unsubscribe { client_id, filter } => {
                put_str(out, client_id);
                put_str(out, filter);
            }
            Entry::Message {
                key,
                expires_at,
                publish,
            } => write_message(out, *key, *expires_at, publish),
            Entry::Enqueue {
                delivery,
                client_id,
                key,
                qos,
                retain,
            } => write_enqueue(out, (*delivery, client_id), *key, *qos, *retain),
            Entry::Sent { delivery, pid } => {
                out.put_u64(*delivery);
                out.put_u16(*pid);
            }
            Entry::Released { delivery } | Entry::Done { delivery } => out.put_u64(*delivery),
            Entry::Retain {
                nanos,
                shard,
                topic,
                expires_at,
                publish,
            } => {
                out.put_u64(*nanos);
                out.put_u16(*shard);
                put_str(out, topic);
                out.put_u64(*expires_at);
                if let Some(p) = publish {
                    put_publish(out, p);
                }
            }
            Entry::Qos2In { client_id, pid } | Entry::Qos2InDone { client_id, pid } => {
                put_str(out, client_id);
                out.put_u16(*pid);
            }
            Entry::Will {
                client_id,
                due,
                delay,
                publish,
            } => {
                put_str(out, client_id);
                out.put_u64(*due);
                out.put_u32(*delay);
                put_publish(out, publish);
            }
            Entry::WillGone { client_id } => put_str(out, client_id),
        }
    }

    /// Reads the body of a record of `kind`.
    pub fn read(kind: u8, body: &[u8]) -> Result<Entry, BadEntry> {
        let bad = |why| BadEntry { kind, why };
        let mut b = body;
        let entry = match kind {
            1 => Entry::Session {
                client_id: get_str(&mut b).ok_or(bad("client id"))?,
                version: get_u8(&mut b).ok_or(bad("version"))?,
                expiry: get_u32(&mut b).ok_or(bad("expiry"))?,
            },
            2 => Entry::SessionEnd {
                client_id: get_str(&mut b).ok_or(bad("client id"))?,
            },
            3 => Entry::Subscribe {
                client_id: get_str(&mut b).ok_or(bad("client id"))?,
                filter: get_str(&mut b).ok_or(bad("filter"))?,
                options: get_u8(&mut b).ok_or(bad("options"))?,
                id: get_u32(&mut b).ok_or(bad("identifier"))?,
            },
            4 => Entry::Unsubscribe {
                client_id: get_str(&mut b).ok_or(bad("client id"))?,
                filter: get_str(&mut b).ok_or(bad("filter"))?,
            },
            5 => Entry::Message {
                key: get_u64(&mut b).ok_or(bad("message key"))?,
                expires_at: get_u64(&mut b).ok_or(bad("expiry"))?,
                publish: get_publish(&mut b).ok_or(bad("PUBLISH"))?,
            },
            6 => Entry::Enqueue {
                delivery: get_u64(&mut b).ok_or(bad("delivery"))?,
                client_id: get_str(&mut b).ok_or(bad("client id"))?,
                key: get_u64(&mut b).ok_or(bad("message key"))?,
                qos: get_u8(&mut b).filter(|q| *q <= 2).ok_or(bad("qos"))?,
                retain: get_u8(&mut b).ok_or(bad("retain"))? != 0,
            },
            7 => Entry::Sent {
                delivery: get_u64(&mut b).ok_or(bad("delivery"))?,
                pid: get_u16(&mut b)
                    .filter(|p| *p != 0)
                    .ok_or(bad("packet id"))?,
            },
            8 => Entry::Released {
                delivery: get_u64(&mut b).ok_or(bad("delivery"))?,
            },
            9 => Entry::Done {
                delivery: get_u64(&mut b).ok_or(bad("delivery"))?,
            },
            10 => {
                let nanos = get_u64(&mut b).ok_or(bad("stamp"))?;
                let shard = get_u16(&mut b).ok_or(bad("stamp"))?;
                let topic = get_str(&mut b).ok_or(bad("topic"))?;
                let expires_at = get_u64(&mut b).ok_or(bad("expiry"))?;
                let publish = if b.is_empty() {
                    None
                } else {
                    Some(get_publish(&mut b).ok_or(bad("PUBLISH"))?)
                };
                Entry::Retain {
                    nanos,
                    shard,
                    topic,
                    expires_at,
                    publish,
                }
            }
            11 | 12 => {
                let client_id = get_str(&mut b).ok_or(bad("client id"))?;
                let pid = get_u16(&mut b)
                    .filter(|p| *p != 0)
                    .ok_or(bad("packet id"))?;
                if kind == 11 {
                    Entry::Qos2In { client_id, pid }
                } else {
                    Entry::Qos2InDone { client_id, pid }
                }
            }
            13 => Entry::Will {
                client_id: get_str(&mut b).ok_or(bad("client id"))?,
                due: get_u64(&mut b).ok_or(bad("due"))?,
                delay: get_u32(&mut b).ok_or(bad("delay"))?,
                publish: get_publish(&mut b).ok_or(bad("PUBLISH"))?,
            },
            14 => Entry::WillGone {
                client_id: get_str(&mut b).ok_or(bad("client id"))?,
            },
            _ => return Err(bad("unknown kind")),
        };
        if !b.is_empty() {
            return Err(bad("bytes left after the entry"));
        }
        Ok(entry)
    }
}

pub(super) fn put_str(out: &mut BytesMut, s: &str) {
    let len = u16::try_from(s.len()).expect("MQTT strings fit a u16 length");
    out.put_u16(len);
    out.put_slice(s.as_bytes());
}

pub(super) fn get_str(b: &mut &[u8]) -> Option<String> {
    let len = usize::from(get_u16(b)?);
    let bytes = b.get(..len)?;
    let s = std::str::from_utf8(bytes).ok()?.to_string();
    b.advance(len);
    Some(s)
}

/// A routed PUBLISH (no packet id): its QoS u8, then a u32 length and the
/// packet as the 5.0 codec writes it at QoS 0 (which has no packet id).
pub(super) fn put_publish(out: &mut BytesMut, p: &Publish) {
    out.put_u8(p.qos as u8);
    let at = out.len();
    out.put_u32(0);
    protocol::write_publish(p, ProtocolVersion::V5, QoS::AtMostOnce, p.retain, out)
        .expect("a routed PUBLISH re-encodes");
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// The body of an [`Entry::Message`], written from references.
pub fn write_message(out: &mut BytesMut, key: u64, expires_at: u64, publish: &Publish) {
    out.put_u64(key);
    out.put_u64(expires_at);
    put_publish(out, publish);
}

/// The body of an [`Entry::Enqueue`], written from references.
pub fn write_enqueue(
    out: &mut BytesMut,
    (delivery, client_id): (u64, &str),
    key: u64,
    qos: u8,
    retain: bool,
) {
    out.put_u64(delivery);
    put_str(out, client_id);
    out.put_u64(key);
    out.put_u8(qos);
    out.put_u8(u8::from(retain));
}

pub(super) fn get_publish(b: &mut &[u8]) -> Option<Publish> {
    let qos = QoS::from_u8(get_u8(b)?)?;
    let len = get_u32(b)? as usize;
    let mut packet = BytesMut::from(b.get(..len)?);
    b.advance(len);
    match protocol::decode(&mut packet, ProtocolVersion::V5, usize::MAX) {
        Ok(Packet::Publish(mut p)) if packet.is_empty() => {
            p.detach();
            p.qos = qos;
            Some(p)
        }
        _ => None,
    }
}

pub(super) fn get_u8(b: &mut &[u8]) -> Option<u8> {
    (!b.is_empty()).then(|| b.get_u8())
}

pub(super) fn get_u16(b: &mut &[u8]) -> Option<u16> {
    (b.len() >= 2).then(|| b.get_u16())
}

fn get_u32(b: &mut &[u8]) -> Option<u32> {
    (b.len() >= 4).then(|| b.get_u32())
}

pub(super) fn get_u64(b: &mut &[u8]) -> Option<u64> {
    (b.len() >= 8).then(|| b.get_u64())
}

/// `Bytes` of an entry's body (for tests and tools).
pub fn body(entry: &Entry) -> Bytes {
    let mut out = BytesMut::new();
    entry.write_body(&mut out);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Properties, TopicName};

    fn publish() -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: TopicName::from_str("a/b").expect("topic"),
            packet_id: None,
            payload: Bytes::from_static(b"payload"),
            properties: Properties {
                content_type: Some("text/plain".into()),
                user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
                ..Properties::default()
            },
        }
    }

    #[test]
    fn every_entry_round_trips() {
        let id = || "client".to_string();
        let entries = [
            Entry::Session {
                client_id: id(),
                version: 5,
                expiry: 3600,
            },
            Entry::SessionEnd { client_id: id() },
            Entry::Subscribe {
                client_id: id(),
                filter: "a/+".into(),
                options: 0x11,
                id: 7,
            },
            Entry::Unsubscribe {
                client_id: id(),
                filter: "a/+".into(),
            },
            Entry::Message {
                key: 9,
                expires_at: 1_900_000_000,
                publish: publish(),
            },
            Entry::Enqueue {
                delivery: 3,
                client_id: id(),
                key: 9,
                qos: 2,
                retain: true,
            },
            Entry::Sent {
                delivery: 3,
                pid: 12,
            },
            Entry::Released { delivery: 3 },
            Entry::Done { delivery: 3 },
            Entry::Retain {
                nanos: 1,
                shard: 2,
                topic: "a/b".into(),
                expires_at: 5,
                publish: Some(publish()),
            },
            Entry::Retain {
                nanos: 1,
                shard: 2,
                topic: "a/b".into(),
                expires_at: 0,
                publish: None,
            },
            Entry::Qos2In {
                client_id: id(),
                pid: 4,
            },
            Entry::Qos2InDone {
                client_id: id(),
                pid: 4,
            },
            Entry::Will {
                client_id: id(),
                due: 7,
                delay: 30,
                publish: publish(),
            },
            Entry::WillGone { client_id: id() },
        ];
        for e in entries {
            let back = Entry::read(e.kind(), &body(&e)).expect("decodes");
            assert_eq!(back, e);
        }
    }

    #[test]
    fn short_long_and_unknown_bodies_are_refused() {
        let e = Entry::Sent {
            delivery: 3,
            pid: 12,
        };
        let b = body(&e);
        assert!(Entry::read(7, &b[..b.len() - 1]).is_err());
        let mut long = b.to_vec();
        long.push(0);
        assert!(Entry::read(7, &long).is_err());
        assert!(Entry::read(99, &b).is_err());
        assert!(
            Entry::read(7, &[0, 0, 0, 0, 0, 0, 0, 3, 0, 0]).is_err(),
            "pid 0"
        );
    }
}
