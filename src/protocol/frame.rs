//! The fixed header (spec 2.1) and the dispatch from packet type to the
//! family modules, for decoding and encoding.

use bytes::{BufMut, Bytes, BytesMut};

use super::connect::{decode_connack, decode_connect, decode_version, LONGEST_VERSION};
use super::control::{decode_auth, decode_disconnect};
use super::error::{DecodeError, EncodeError, Malformed};
use super::packet::{Packet, ProtocolVersion};
use super::publish::{self, decode_pub_resp, decode_publish};
use super::reason::ReasonCode;
use super::subscribe::{decode_suback, decode_subscribe, decode_unsuback, decode_unsubscribe};
use super::wire::{malformed, parse_varint, protocol_error, put_varint, varint_len, Reader};
use super::MAX_REMAINING_LENGTH;

/// Smallest packet: first byte and a one-byte remaining length.
const MIN_PACKET: usize = 2;
/// Packet types (the high nibble of the first byte).
const CONNECT: u8 = 1;
const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
/// PUBACK; PUBREC, PUBREL and PUBCOMP follow it.
pub(super) const PUBACK: u8 = 4;
pub(super) const PUBREC: u8 = 5;
pub(super) const PUBREL: u8 = 6;
pub(super) const PUBCOMP: u8 = 7;
const SUBSCRIBE: u8 = 8;
const SUBACK: u8 = 9;
const UNSUBSCRIBE: u8 = 10;
const UNSUBACK: u8 = 11;
const PINGREQ: u8 = 12;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;
const AUTH: u8 = 15;

/// A parsed fixed header.
struct FixedHeader {
    /// The first byte: packet type and flags.
    byte: u8,
    /// Bytes taken by the fixed header (2..=5).
    len: usize,
    /// The remaining length.
    remaining: usize,
}

/// Parses the fixed header at the front of `buf`.
fn fixed_header(buf: &[u8]) -> Result<FixedHeader, DecodeError> {
    if buf.len() < MIN_PACKET {
        return Err(DecodeError::Incomplete {
            needed: MIN_PACKET - buf.len(),
        });
    }
    match parse_varint(&buf[1..])? {
        Some((remaining, used)) => Ok(FixedHeader {
            byte: buf[0],
            len: 1 + used,
            remaining: remaining as usize,
        }),
        None => Err(DecodeError::Incomplete { needed: 1 }),
    }
}

/// Rejects unknown packet types, reserved flag bits and AUTH before 5.0,
/// all knowable from the first byte.
fn check_first_byte(byte: u8, v: ProtocolVersion) -> Result<(), Malformed> {
    let (kind, flags) = (byte >> 4, byte & 0x0F);
    let expected = match kind {
        0 => return Err(malformed("reserved packet type 0")),
        AUTH if !v.is_v5() => return Err(protocol_error("AUTH before MQTT 5.0")),
        PUBLISH => return Ok(()),
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => 0b0010,
        _ => 0,
    };
    if flags != expected {
        return Err(malformed("reserved fixed header flags"));
    }
    Ok(())
}

/// See [`super::decode`].
pub(super) fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Packet, DecodeError> {
    let h = fixed_header(buf)?;
    // CONNECT carries its own version; before it the connection is 3.1.1.
    let version = if h.byte >> 4 == CONNECT {
        ProtocolVersion::V311
    } else {
        version
    };
    check_first_byte(h.byte, version)?;
    let total = h.len + h.remaining;
    if total > max_packet_size {
        return Err(Malformed::new(
            ReasonCode::PacketTooLarge,
            "packet exceeds the maximum packet size",
        )
        .into());
    }
    if buf.len() < total {
        return Err(DecodeError::Incomplete {
            needed: total - buf.len(),
        });
    }
    let frame = buf.split_to(total).freeze();
    let mut r = Reader::new(&frame, h.len);
    decode_body(h.byte, &mut r, version)
}

/// See [`super::connect_version`].
pub(super) fn connect_version(buf: &[u8]) -> Option<ProtocolVersion> {
    let h = fixed_header(buf).ok()?;
    if h.byte >> 4 != CONNECT {
        return None;
    }
    // Only the protocol name and level are read: copy no more than those.
    let end = buf.len().min(h.len + LONGEST_VERSION);
    let prefix = Bytes::copy_from_slice(&buf[..end]);
    decode_version(&mut Reader::new(&prefix, h.len))
        .ok()
        .map(|(version, _bridge)| version)
}

/// Decodes the body of a packet whose first byte is `byte` (type 1..=15,
/// checked by [`check_first_byte`]). PUBLISH and its acknowledgements build
/// the `Packet` themselves, so that the large struct is not moved around on
/// the hot path.
fn decode_body(byte: u8, r: &mut Reader<'_>, v: ProtocolVersion) -> Result<Packet, DecodeError> {
    let kind = byte >> 4;
    match kind {
        CONNECT => Ok(Packet::Connect(Box::new(decode_connect(r)?))),
        CONNACK => Ok(Packet::ConnAck(decode_connack(r, v)?)),
        PUBLISH => decode_publish(byte & 0x0F, r, v),
        PUBACK..=PUBCOMP => decode_pub_resp(kind, r, v),
        SUBSCRIBE => Ok(Packet::Subscribe(decode_subscribe(r, v)?)),
        SUBACK => Ok(Packet::SubAck(decode_suback(r, v)?)),
        UNSUBSCRIBE => Ok(Packet::Unsubscribe(decode_unsubscribe(r, v)?)),
        UNSUBACK => Ok(Packet::UnsubAck(decode_unsuback(r, v)?)),
        PINGREQ => empty_body(r, Packet::PingReq),
        PINGRESP => empty_body(r, Packet::PingResp),
        DISCONNECT => Ok(Packet::Disconnect(decode_disconnect(r, v)?)),
        _ => Ok(Packet::Auth(decode_auth(r)?)),
    }
}

fn empty_body(r: &Reader<'_>, p: Packet) -> Result<Packet, DecodeError> {
    r.finish("PINGREQ or PINGRESP with a body")?;
    Ok(p)
}

/// First byte and remaining length of `p` encoded for `v`.
fn header(p: &Packet, v: ProtocolVersion) -> Result<(u8, usize), EncodeError> {
    let (byte, len) = match p {
        Packet::Connect(c) => (CONNECT << 4, c.body_len()?),
        Packet::ConnAck(c) => (CONNACK << 4, c.body_len(v)?),
        Packet::Publish(p) => {
            p.check_encodable()?;
            (
                publish::first_byte(p.dup, p.qos, p.retain),
                publish::body_len(p, v, p.qos)?,
            )
        }
        Packet::PubAck(r) => (PUBACK << 4, r.body_len(v)?),
        Packet::PubRec(r) => (PUBREC << 4, r.body_len(v)?),
        Packet::PubRel(r) => (PUBREL << 4 | 0b0010, r.body_len(v)?),
        Packet::PubComp(r) => (PUBCOMP << 4, r.body_len(v)?),
        Packet::Subscribe(s) => (SUBSCRIBE << 4 | 0b0010, s.body_len(v)?),
        Packet::SubAck(s) => (SUBACK << 4, s.body_len(v)?),
        Packet::Unsubscribe(u) => (UNSUBSCRIBE << 4 | 0b0010, u.body_len(v)?),
        Packet::UnsubAck(u) => (UNSUBACK << 4, u.body_len(v)?),
        Packet::PingReq => (PINGREQ << 4, 0),
        Packet::PingResp => (PINGRESP << 4, 0),
        Packet::Disconnect(d) => (DISCONNECT << 4, d.body_len(v)?),
        Packet::Auth(a) => (AUTH << 4, a.body_len(v)?),
    };
    check_remaining(len)?;
    Ok((byte, len))
}

/// Fails when `len` does not fit the remaining length field.
pub(super) fn check_remaining(len: usize) -> Result<(), EncodeError> {
    if len > MAX_REMAINING_LENGTH {
        return Err(EncodeError::TooLarge("remaining length over 268,435,455"));
    }
    Ok(())
}

/// Size of a whole packet with remaining length `len`.
pub(super) const fn packet_len(len: usize) -> usize {
    1 + varint_len(len) + len
}

/// Reserves room for the packet and writes its fixed header.
pub(super) fn put_fixed_header(out: &mut BytesMut, byte: u8, len: usize) {
    out.reserve(packet_len(len));
    out.put_u8(byte);
    put_varint(out, len);
}

/// See [`Packet::encoded_len`].
pub(super) fn encoded_len(p: &Packet, v: ProtocolVersion) -> Result<usize, EncodeError> {
    let (_, len) = header(p, v)?;
    Ok(packet_len(len))
}

/// See [`Packet::encode`].
pub(super) fn encode(
    p: &Packet,
    v: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let (byte, len) = header(p, v)?;
    put_fixed_header(out, byte, len);
    match p {
        Packet::Connect(c) => c.write_body(out),
        Packet::ConnAck(c) => c.write_body(v, out),
        Packet::Publish(p) => {
            publish::write_body(p, v, p.packet_id.map(|id| id.get()), out);
        }
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            r.write_body(v, out)
        }
        Packet::Subscribe(s) => s.write_body(v, out),
        Packet::SubAck(s) => s.write_body(v, out),
        Packet::Unsubscribe(u) => u.write_body(v, out),
        Packet::UnsubAck(u) => u.write_body(v, out),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => d.write_body(v, out),
        Packet::Auth(a) => a.write_body(out),
    }
    Ok(())
}
