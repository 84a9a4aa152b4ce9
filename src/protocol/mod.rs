//! The MQTT 3.1, 3.1.1 and 5.0 codec: bytes in, typed packets out, and back.
//!
//! Pure: no I/O, no broker types. The broker, the bridge and the load harness
//! all speak MQTT through this module.
//!
//! - [`decode`] takes a read buffer that may hold a partial packet.
//!   [`DecodeError::Incomplete`] is a normal outcome; [`DecodeError::Malformed`]
//!   means close the connection.
//! - [`Packet::encode`] writes straight into a `BytesMut`.
//! - [`EncodedPublish`] encodes a PUBLISH once and reuses the bytes for every
//!   subscriber with the same protocol version and QoS.
//!
//! # Zero-copy rule
//!
//! [`decode`] splits each packet off the front of the read buffer
//! (`split_to(n).freeze()`), and the `Bytes` fields of the packet (topic,
//! payload, password, binary properties) are slices of it: decoding copies
//! no payload. The flip side: such a slice keeps the whole read chunk alive.
//! Anything kept beyond the handling of the packet (a retained message, an
//! offline queue entry, a cross-shard forward) must call
//! [`Publish::detach`] first. String fields (client id, user properties...)
//! are owned `String`s and never pin the buffer.
//!
//! # Layout
//!
//! One data model serves all versions ([`packet`](Packet)): the packets of
//! 3.1.1 and 5.0 differ only by fields that 3.1.1 lacks, so each packet
//! family lives in one file whose decoder and encoder branch on
//! [`ProtocolVersion::is_v5`] in the few places that differ, rather than in
//! parallel `v311/` and `v5/` trees that would repeat every field.
//!
//! - `wire`: the bounds-checked `Reader` cursor (every read is checked, so
//!   a hostile length can never index past the buffer), variable byte
//!   integers, strings and binary fields, and their writers.
//! - `frame`: the fixed header (type, flags, remaining length, the maximum
//!   packet size check) and the dispatch to the families, both ways.
//! - `connect`: CONNECT and CONNACK (3.1 `MQIsdp`, bridge bit, Will).
//! - `publish`: PUBLISH, PUBACK/PUBREC/PUBREL/PUBCOMP, the shared encoding
//!   behind [`EncodedPublish`].
//! - `subscribe`: SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK.
//! - `control`: DISCONNECT and AUTH, and the "reason code, properties" tail
//!   with its 5.0 short forms.
//! - `properties`: the 5.0 properties, the table of packets each may
//!   appear in, duplicate and value checks.
//! - [`topic`]: validated [`TopicName`] and [`TopicFilter`], and [`matches()`].
//! - `reason`, `error`: reason codes (with per-packet tables) and errors.
//!
//! Every encoder computes the exact length first (`encoded_len`), then
//! writes the fixed header and the body in one pass into a reserved
//! `BytesMut`; an encode error leaves `out` unchanged.

mod connect;
mod control;
mod error;
mod frame;
mod packet;
mod properties;
mod publish;
mod reason;
mod subscribe;
pub mod topic;
mod wire;

use bytes::{Bytes, BytesMut};

pub use error::{DecodeError, EncodeError, Malformed};
pub use packet::*;
pub use properties::Properties;
pub use properties::MAX_SUBSCRIPTION_ID;
pub use publish::DUP_BIT;
pub use reason::{allowed as reason_codes, ReasonCode};
pub use topic::{matches, TopicFilter, TopicName};
pub use wire::{varint_len, MAX_FIELD_LEN};

/// Largest remaining length the variable byte integer can express.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// Decodes one packet from the front of `buf`.
///
/// - `version` is the connection's protocol version; it is ignored for
///   CONNECT, which carries its own (use [`ProtocolVersion::V311`] before
///   the CONNECT arrived).
/// - `max_packet_size` bounds the whole packet (fixed header included): a
///   larger one is `Malformed` with `PacketTooLarge` as soon as its fixed
///   header is read, before the body is buffered.
///
/// On success the packet's bytes are split off the front of `buf` and the
/// packet's `Bytes` fields are slices of them (see the zero-copy rule in
/// [`Publish::detach`]). On `Incomplete`, `buf` is unchanged.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Packet, DecodeError> {
    frame::decode(buf, version, max_packet_size)
}

/// The protocol version a CONNECT at the front of `buf` names, read from
/// its protocol name and level alone: `None` if `buf` does not start with
/// a CONNECT or holds too little of it to tell.
///
/// Lets a server answer a CONNECT that [`decode`] rejects in the version
/// the client speaks (a 5.0 CONNACK with the reason code).
pub fn connect_version(buf: &[u8]) -> Option<ProtocolVersion> {
    frame::connect_version(buf)
}

impl Packet {
    /// Appends the encoding of this packet for `version` to `out`.
    ///
    /// CONNECT is written in its own [`Connect::protocol`] version; fields
    /// that do not exist in `version` are left out. On error nothing is
    /// written.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        frame::encode(self, version, out)
    }

    /// The size `encode` would write, fixed header included.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        frame::encoded_len(self, version)
    }
}

/// Appends `publish` encoded for `version` at `qos` (overriding
/// `publish.qos`) with the retain flag given and, when `qos` > 0, a
/// placeholder packet id 0 (at the returned offset from where it began),
/// from a reference: no copy of the message. `publish.dup` and
/// `publish.packet_id` are ignored. On error nothing is written.
pub fn write_publish(
    publish: &Publish,
    version: ProtocolVersion,
    qos: QoS,
    retain: bool,
    out: &mut BytesMut,
) -> Result<Option<usize>, EncodeError> {
    let len = publish::body_len(publish, version, qos)?;
    frame::check_remaining(len)?;
    let start = out.len();
    frame::put_fixed_header(out, publish::first_byte(false, qos, retain), len);
    let header = out.len() - start;
    let placeholder = (qos != QoS::AtMostOnce).then_some(0);
    let id_at = publish::write_body(publish, version, placeholder, out);
    Ok(id_at.map(|at| header + at))
}

/// A PUBLISH encoded once for one protocol version and QoS, shared by every
/// subscriber that receives it with that version and QoS. For QoS > 0 only
/// the packet identifier (and the DUP bit) differ between subscribers.
#[derive(Debug, Clone)]
pub struct EncodedPublish {
    bytes: Bytes,
    /// Offset of the two packet-id bytes; `None` for QoS 0.
    packet_id_at: Option<usize>,
}

impl EncodedPublish {
    /// Encodes `publish` with the given QoS (overriding `publish.qos`), the
    /// retain flag given, and a placeholder packet id (0) when `qos` > 0.
    /// `publish.dup` and `publish.packet_id` are ignored. In 5.0 the
    /// properties are written as they are: per-subscriber properties
    /// (Subscription Identifiers, Topic Alias) need their own encoding.
    pub fn new(
        publish: &Publish,
        version: ProtocolVersion,
        qos: QoS,
        retain: bool,
    ) -> Result<EncodedPublish, EncodeError> {
        let len = publish::body_len(publish, version, qos)?;
        let mut out = BytesMut::with_capacity(frame::packet_len(len));
        let id_at = write_publish(publish, version, qos, retain, &mut out)?;
        Ok(EncodedPublish {
            bytes: out.freeze(),
            packet_id_at: id_at,
        })
    }

    /// The whole encoded packet (with the placeholder id when QoS > 0).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Encoded size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true for a real packet; here for the `len` convention.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends the packet to `out` with `packet_id` (ignored for QoS 0) and
    /// the DUP flag set as given (ignored for QoS 0, where DUP must be 0).
    ///
    /// A QoS > 0 packet written with `packet_id` `None` keeps the invalid
    /// placeholder id 0; callers always pass the id they allocated.
    pub fn write_to(&self, packet_id: Option<PacketId>, dup: bool, out: &mut BytesMut) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        let Some(at) = self.packet_id_at else { return };
        debug_assert!(
            packet_id.is_some(),
            "QoS > 0 PUBLISH written without a packet id"
        );
        let written = &mut out[start..];
        if let Some(id) = packet_id {
            written[at..at + 2].copy_from_slice(&id.get().to_be_bytes());
        }
        if dup {
            written[0] |= DUP_BIT;
        }
    }
}
