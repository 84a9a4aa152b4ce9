//! The typed packets. One model serves MQTT 3.1, 3.1.1 and 5.0: fields that
//! only exist in 5.0 (properties, reason codes on acks) are default/empty for
//! the older versions and ignored by their encoder.
//!
//! Zero-copy rule: the `Bytes` fields of a decoded packet (topic, payload,
//! binary properties) are slices of the read chunk that was decoded. Anything
//! that outlives the handling of that packet (a retained message, an offline
//! queue entry, a cross-shard forward) must call [`Publish::detach`] first so
//! that it does not pin the whole read buffer.

use std::num::NonZeroU16;

use bytes::Bytes;

use super::properties::Properties;
use super::reason::ReasonCode;
use super::topic::{TopicFilter, TopicName};

/// Packet identifier: never zero on the wire.
pub type PacketId = NonZeroU16;

/// The protocol level in CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1, protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1, protocol name `MQTT`, level 4.
    V311,
    /// MQTT 5.0, protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// True for MQTT 5.0 (properties and reason codes on the wire).
    pub const fn is_v5(self) -> bool {
        matches!(self, ProtocolVersion::V5)
    }
}

/// Quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// `None` for 3 and above.
    pub const fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// Any control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubResp),
    PubRec(PubResp),
    PubRel(PubResp),
    PubComp(PubResp),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5.0 only.
    Auth(Auth),
}

/// CONNECT (client to server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol: ProtocolVersion,
    /// 3.1.1: Clean Session. 5.0: Clean Start.
    pub clean_start: bool,
    /// Seconds; 0 disables keepalive.
    pub keep_alive: u16,
    /// May be empty (the server may assign one).
    pub client_id: String,
    pub will: Option<LastWill>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub properties: Properties,
    /// Mosquitto's bridge bit: protocol level with 0x80 set (3.x `try_private`).
    pub bridge: bool,
}

/// The Will of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// 5.0 Will Properties.
    pub properties: Properties,
}

/// CONNACK (server to client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// 3.1.1 return codes are mapped, see [`ReasonCode`].
    pub code: ReasonCode,
    pub properties: Properties,
}

/// PUBLISH (both directions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Empty only in a 5.0 PUBLISH that carries a Topic Alias.
    pub topic: TopicName,
    /// `Some` exactly when `qos` > 0.
    pub packet_id: Option<PacketId>,
    pub payload: Bytes,
    pub properties: Properties,
}

impl Publish {
    /// Copies topic, payload and binary properties into allocations of their
    /// own so that the packet no longer pins the read buffer it was decoded
    /// from. Call before storing a decoded publish beyond the current read.
    pub fn detach(&mut self) {
        self.topic = self.topic.detached();
        self.payload = Bytes::copy_from_slice(&self.payload);
        if let Some(c) = self.properties.correlation_data.as_mut() {
            *c = Bytes::copy_from_slice(c);
        }
    }
}

impl LastWill {
    /// Copies topic, payload and binary properties into allocations of their
    /// own (see [`Publish::detach`]): a will outlives the CONNECT it came in.
    pub fn detach(&mut self) {
        self.topic = self.topic.detached();
        self.payload = Bytes::copy_from_slice(&self.payload);
        if let Some(c) = self.properties.correlation_data.as_mut() {
            *c = Bytes::copy_from_slice(c);
        }
    }
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP share this shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubResp {
    pub packet_id: PacketId,
    /// Always `Success` in 3.1.1.
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl PubResp {
    /// A success response with no properties.
    pub fn new(packet_id: PacketId) -> PubResp {
        PubResp {
            packet_id,
            reason: ReasonCode::Success,
            properties: Properties::default(),
        }
    }
}

/// Retain Handling subscription option (5.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    OnSubscribe,
    /// 1: send retained messages only if the subscription did not exist.
    OnNewSubscribe,
    /// 2: do not send retained messages.
    Never,
}

/// Subscription options byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    pub qos: QoS,
    /// 5.0 only.
    pub no_local: bool,
    /// 5.0 only.
    pub retain_as_published: bool,
    /// 5.0 only.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with the given maximum QoS and 5.0 flags at their defaults.
    pub fn new(qos: QoS) -> Self {
        SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::OnSubscribe,
        }
    }
}

/// SUBSCRIBE (client to server). `filters` is never empty once decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    pub filters: Vec<(TopicFilter, SubscriptionOptions)>,
    pub properties: Properties,
}

/// SUBACK. 3.1.1 return codes 0, 1, 2 and 0x80 map to `GrantedQoS0..2` and
/// `UnspecifiedError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: PacketId,
    pub codes: Vec<ReasonCode>,
    pub properties: Properties,
}

/// UNSUBSCRIBE (client to server). `filters` is never empty once decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    pub filters: Vec<TopicFilter>,
    pub properties: Properties,
}

/// UNSUBACK. `codes` is empty in 3.1.1 (the packet has no payload there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: PacketId,
    pub codes: Vec<ReasonCode>,
    pub properties: Properties,
}

/// DISCONNECT. In 3.1.1 the reason is always `NormalDisconnection`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    pub reason: ReasonCode,
    pub properties: Properties,
}

impl Disconnect {
    /// A disconnect with this reason and no properties.
    pub fn new(reason: ReasonCode) -> Disconnect {
        Disconnect {
            reason,
            properties: Properties::default(),
        }
    }
}

impl Packet {
    /// The 5.0 properties of this packet, to change; `None` for packets
    /// without them.
    pub fn properties_mut(&mut self) -> Option<&mut Properties> {
        Some(match self {
            Packet::Connect(c) => &mut c.properties,
            Packet::ConnAck(a) => &mut a.properties,
            Packet::Publish(p) => &mut p.properties,
            Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
                &mut r.properties
            }
            Packet::Subscribe(s) => &mut s.properties,
            Packet::SubAck(a) => &mut a.properties,
            Packet::Unsubscribe(u) => &mut u.properties,
            Packet::UnsubAck(a) => &mut a.properties,
            Packet::Disconnect(d) => &mut d.properties,
            Packet::Auth(a) => &mut a.properties,
            Packet::PingReq | Packet::PingResp => return None,
        })
    }
}

/// AUTH (5.0 only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub reason: ReasonCode,
    pub properties: Properties,
}
