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
//! `Session::deliver_matched`) and the shared slots stay as they are.

use std::sync::Arc;

use crate::mesh::Message;
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
            self.slots[i] = if version.is_v5() && msg.expires() {
                let remaining = *self
                    .remaining_expiry
                    .get_or_insert_with(|| msg.remaining_expiry().unwrap_or(1));
                let mut publish = msg.publish.clone();
                publish.properties.message_expiry_interval = Some(remaining);
                EncodedPublish::new(&publish, version, qos, retain).ok()
            } else {
                EncodedPublish::new(&msg.publish, version, qos, retain).ok()
            };
        }
        self.slots[i].as_ref()
    }
}
