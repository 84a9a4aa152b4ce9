//! PUBLISH and its acknowledgements PUBACK, PUBREC, PUBREL, PUBCOMP (spec
//! 3.3 to 3.7), and the shared encoding behind [`EncodedPublish`].
//!
//! [`EncodedPublish`]: super::EncodedPublish

use bytes::{BufMut, BytesMut};

use super::control::{decode_reason_tail, reason_tail_len, write_reason_tail};
use super::error::{DecodeError, EncodeError};
use super::frame::{PUBACK, PUBREC, PUBREL};
use super::packet::{Packet, ProtocolVersion, PubResp, Publish, QoS};
use super::properties::{decode_into, props_len, write_props, PropCtx, Properties};
use super::reason::{allowed, ReasonCode};
use super::topic::TopicName;
use super::wire::{field_len, malformed, protocol_error, put_field, Reader};

/// DUP flag in the first byte of a PUBLISH.
pub const DUP_BIT: u8 = 0x08;
const RETAIN_BIT: u8 = 0x01;
const QOS_SHIFT: u8 = 1;

/// Decodes a PUBLISH body; `flags` is the low nibble of the first byte.
///
/// Returns the whole `Packet` (and fills the properties in place) so that
/// the large struct is built once, in the caller's return slot.
pub(super) fn decode_publish(
    flags: u8,
    r: &mut Reader<'_>,
    v: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let qos = QoS::from_u8((flags >> QOS_SHIFT) & 0x03).ok_or(malformed("PUBLISH with QoS 3"))?;
    let dup = flags & DUP_BIT != 0;
    if dup && qos == QoS::AtMostOnce {
        return Err(malformed("DUP set on a QoS 0 PUBLISH").into());
    }
    let topic = r.binary()?;
    let topic = if v.is_v5() {
        TopicName::new_or_empty(topic)?
    } else {
        TopicName::new(topic)?
    };
    let packet_id = match qos {
        QoS::AtMostOnce => None,
        _ => Some(r.packet_id()?),
    };
    let mut properties = Properties::default();
    if v.is_v5() {
        decode_into(r, PropCtx::Publish, &mut properties)?;
    }
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(protocol_error("empty topic without a topic alias").into());
    }
    let payload = r.rest();
    Ok(Packet::Publish(Publish {
        dup,
        qos,
        retain: flags & RETAIN_BIT != 0,
        topic,
        packet_id,
        payload,
        properties,
    }))
}

/// First byte of a PUBLISH with these flags.
pub(super) fn first_byte(dup: bool, qos: QoS, retain: bool) -> u8 {
    0x30 | if dup { DUP_BIT } else { 0 } | (qos as u8) << QOS_SHIFT | u8::from(retain)
}

/// Remaining length of `p` sent with `qos` (which decides the packet id).
pub(super) fn body_len(p: &Publish, v: ProtocolVersion, qos: QoS) -> Result<usize, EncodeError> {
    if p.topic.is_empty() && !v.is_v5() {
        return Err(EncodeError::Unsupported("empty topic before MQTT 5.0"));
    }
    let id_len = if qos == QoS::AtMostOnce { 0 } else { 2 };
    Ok(field_len(p.topic.as_bytes())? + id_len + props_len(&p.properties, v)? + p.payload.len())
}

/// Writes the body with `packet_id` (absent for QoS 0); returns the offset of
/// the packet id from the start of the body when one was written.
pub(super) fn write_body(
    p: &Publish,
    v: ProtocolVersion,
    packet_id: Option<u16>,
    out: &mut BytesMut,
) -> Option<usize> {
    let start = out.len();
    put_field(out, p.topic.as_bytes());
    let id_at = packet_id.map(|id| {
        let at = out.len() - start;
        out.put_u16(id);
        at
    });
    write_props(&p.properties, v, out);
    out.put_slice(&p.payload);
    id_at
}

impl Publish {
    /// Checks the flag and packet id invariants the encoder relies on.
    pub(super) fn check_encodable(&self) -> Result<(), EncodeError> {
        if self.packet_id.is_some() != (self.qos != QoS::AtMostOnce) {
            return Err(EncodeError::Invalid(
                "packet id must be set exactly when QoS > 0",
            ));
        }
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(EncodeError::Invalid("DUP set on a QoS 0 PUBLISH"));
        }
        Ok(())
    }
}

/// The reason codes allowed in each acknowledgement (by packet type).
fn ack_table(packet_type: u8) -> &'static [ReasonCode] {
    match packet_type {
        PUBACK | PUBREC => allowed::PUBACK,
        _ => allowed::PUBREL,
    }
}

/// Decodes a PUBACK, PUBREC, PUBREL or PUBCOMP body (`packet_type` is one
/// of the four) into the matching `Packet`.
pub(super) fn decode_pub_resp(
    packet_type: u8,
    r: &mut Reader<'_>,
    v: ProtocolVersion,
) -> Result<Packet, DecodeError> {
    let mut resp = PubResp::new(r.packet_id()?);
    if v.is_v5() {
        let table = ack_table(packet_type);
        decode_reason_tail(
            r,
            table,
            PropCtx::PubResp,
            &mut resp.reason,
            &mut resp.properties,
        )?;
    } else {
        r.finish("bytes after the packet identifier")?;
    }
    Ok(match packet_type {
        PUBACK => Packet::PubAck(resp),
        PUBREC => Packet::PubRec(resp),
        PUBREL => Packet::PubRel(resp),
        _ => Packet::PubComp(resp),
    })
}

impl PubResp {
    /// Remaining length: 2 before 5.0; in 5.0 the short forms when possible.
    pub(super) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if v.is_v5() {
            Ok(2 + reason_tail_len(self.reason, &self.properties)?)
        } else {
            Ok(2)
        }
    }

    /// Writes the body; [`PubResp::body_len`] was checked first.
    pub(super) fn write_body(&self, v: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if v.is_v5() {
            write_reason_tail(self.reason, &self.properties, out);
        }
    }
}
