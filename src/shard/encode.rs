//! Encode a routed message once per (protocol, QoS, retain) on a shard and
//! reuse the bytes for every subscriber that receives it that way.
//!
//! A 5.0 message with a Message Expiry Interval is sent with the interval
//! that remains (3.3.2.3.3): its encodings carry the remaining time, read
//! once per cache, so a cache lives no longer than one fan-out or one
//! delivery from a queue.
//!
//! A 5.0 delivery with Subscription Identifiers is not served from here:
//! they differ per session, so such a delivery is encoded apart (see
//! `Session::deliver_matched`) and the shared slots stay as they are; nor
//! is a PUBLISH to a connection the broker sends topic aliases to
//! ([`encode_aliased`]): its topic and alias depend on what that
//! connection was sent before.

use std::sync::Arc;

use super::alias::OutAlias;
use crate::mesh::Message;
use crate::protocol::TopicName;
use crate::protocol::{EncodedPublish, ProtocolVersion, QoS};

/// Per-message, per-fan-out cache of encodings. Shard-local, short-lived.
#[derive(Default)]
pub struct EncodeCache {
    /// Index: v5 * 6 + qos * 2 + retain. MQTT 3.1 and 3.1.1 encode alike.
    slots: [Option<EncodedPublish>; 12],
    /// The remaining expiry interval the 5.0 encodings carry, read on the
    /// first 5.0 encoding of a message that has one.
    remaining_expiry: Option<u32>,
}

impl EncodeCache {
    /// The encoding of `msg` for this version, QoS and retain flag, made on
    /// first use. `None` if the message cannot be encoded (too large).
    pub fn get(
        &mut self,
        msg: &Arc<Message>,
        version: ProtocolVersion,
        qos: QoS,
        retain: bool,
    ) -> Option<&EncodedPublish> {
        let i = usize::from(version.is_v5()) * 6 + qos as usize * 2 + usize::from(retain);
        if self.slots[i].is_none() {
            let remaining = (version.is_v5() && msg.expires()).then(|| {
                *self
                    .remaining_expiry
                    .get_or_insert_with(|| remaining_expiry(msg))
            });
            self.slots[i] = encode(msg, version, qos, retain, remaining, OutAlias::Topic);
        }
        self.slots[i].as_ref()
    }
}

/// The encoding of `msg` for one 5.0 connection, its topic named as
/// `alias` says. `None` if the message cannot be encoded (too large).
pub fn encode_aliased(
    msg: &Message,
    qos: QoS,
    retain: bool,
    alias: OutAlias,
) -> Option<EncodedPublish> {
    let remaining = msg.expires().then(|| remaining_expiry(msg));
    encode(msg, ProtocolVersion::V5, qos, retain, remaining, alias)
}

/// The Message Expiry Interval left (at least 1 s: it has not expired).
fn remaining_expiry(msg: &Message) -> u32 {
    msg.remaining_expiry().unwrap_or(1)
}

/// Encodes `msg` with the expiry interval `remaining` (if it has one) and
/// its topic named as `alias` says; copies the PUBLISH only if one of
/// them changes it.
fn encode(
    msg: &Message,
    version: ProtocolVersion,
    qos: QoS,
    retain: bool,
    remaining: Option<u32>,
    alias: OutAlias,
) -> Option<EncodedPublish> {
    if remaining.is_none() && alias == OutAlias::Topic {
        return EncodedPublish::new(&msg.publish, version, qos, retain).ok();
    }
    let mut publish = msg.publish.clone();
    if remaining.is_some() {
        publish.properties.message_expiry_interval = remaining;
    }
    match alias {
        OutAlias::Topic => {}
        OutAlias::Set(a) => publish.properties.topic_alias = Some(a.get()),
        OutAlias::Use(a) => {
            publish.properties.topic_alias = Some(a.get());
            publish.topic = TopicName::empty();
        }
    }
    EncodedPublish::new(&publish, version, qos, retain).ok()
}
