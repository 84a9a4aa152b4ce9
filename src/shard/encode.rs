//! Encode a routed message once per (protocol, QoS, retain) on a shard and
//! reuse the bytes for every subscriber that receives it that way.

use std::sync::Arc;

use crate::mesh::Message;
use crate::protocol::{EncodedPublish, ProtocolVersion, QoS};

/// Per-message, per-fan-out cache of encodings. Shard-local, short-lived.
#[derive(Default)]
pub struct EncodeCache {
    /// Index: v5 * 6 + qos * 2 + retain. MQTT 3.1 and 3.1.1 encode alike.
    slots: [Option<EncodedPublish>; 12],
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
            self.slots[i] = EncodedPublish::new(&msg.publish, version, qos, retain).ok();
        }
        self.slots[i].as_ref()
    }
}
