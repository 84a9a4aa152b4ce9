//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (spec 3.8 to 3.11).

use bytes::{BufMut, BytesMut};

use super::error::{EncodeError, Malformed};
use super::packet::{
    ProtocolVersion, QoS, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck,
    Unsubscribe,
};
use super::properties::{decode_props, props_len, write_props, PropCtx};
use super::reason::{allowed, ReasonCode};
use super::topic::TopicFilter;
use super::wire::{field_len, malformed, protocol_error, put_field, Reader};

const NO_LOCAL: u8 = 0x04;
const RETAIN_AS_PUBLISHED: u8 = 0x08;
const RETAIN_HANDLING_SHIFT: u8 = 4;

impl SubscriptionOptions {
    /// Decodes the options byte: bits 2..=7 reserved before 5.0, bits 6..=7
    /// in 5.0.
    pub fn from_byte(b: u8, v: ProtocolVersion) -> Result<SubscriptionOptions, Malformed> {
        let reserved = if v.is_v5() { 0xC0 } else { 0xFC };
        if b & reserved != 0 {
            return Err(malformed("subscription options reserved bits set"));
        }
        let qos = QoS::from_u8(b & 0x03).ok_or(malformed("subscription QoS 3"))?;
        let retain_handling = match (b >> RETAIN_HANDLING_SHIFT) & 0x03 {
            0 => RetainHandling::OnSubscribe,
            1 => RetainHandling::OnNewSubscribe,
            2 => RetainHandling::Never,
            _ => return Err(protocol_error("retain handling 3")),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: b & NO_LOCAL != 0,
            retain_as_published: b & RETAIN_AS_PUBLISHED != 0,
            retain_handling,
        })
    }

    /// The options byte; the 5.0 flags are left out before 5.0.
    pub fn to_byte(self, v: ProtocolVersion) -> u8 {
        if !v.is_v5() {
            return self.qos as u8;
        }
        let rh = match self.retain_handling {
            RetainHandling::OnSubscribe => 0,
            RetainHandling::OnNewSubscribe => 1,
            RetainHandling::Never => 2,
        };
        let mut b = self.qos as u8 | rh << RETAIN_HANDLING_SHIFT;
        if self.no_local {
            b |= NO_LOCAL;
        }
        if self.retain_as_published {
            b |= RETAIN_AS_PUBLISHED;
        }
        b
    }
}

/// Reads a topic filter (zero-copy).
fn filter(r: &mut Reader<'_>) -> Result<TopicFilter, Malformed> {
    TopicFilter::new(r.binary()?)
}

/// Reads the payload of a SUBSCRIBE or UNSUBSCRIBE: `entry` until the end,
/// at least once.
fn entries<T>(
    r: &mut Reader<'_>,
    mut entry: impl FnMut(&mut Reader<'_>) -> Result<T, Malformed>,
    none: &'static str,
) -> Result<Vec<T>, Malformed> {
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(entry(r)?);
    }
    if out.is_empty() {
        return Err(protocol_error(none));
    }
    Ok(out)
}

/// A SUBSCRIBE payload entry: filter and options.
fn subscription(
    r: &mut Reader<'_>,
    v: ProtocolVersion,
) -> Result<(TopicFilter, SubscriptionOptions), Malformed> {
    let f = filter(r)?;
    let opts = SubscriptionOptions::from_byte(r.u8()?, v)?;
    if opts.no_local && f.share().is_some() {
        return Err(protocol_error("No Local on a shared subscription"));
    }
    Ok((f, opts))
}

/// Decodes a SUBSCRIBE body.
pub(super) fn decode_subscribe(
    r: &mut Reader<'_>,
    v: ProtocolVersion,
) -> Result<Subscribe, Malformed> {
    let packet_id = r.packet_id()?;
    let properties = decode_props(r, v, PropCtx::Subscribe)?;
    let filters = entries(r, |r| subscription(r, v), "SUBSCRIBE without topic filters")?;
    Ok(Subscribe {
        packet_id,
        filters,
        properties,
    })
}

impl Subscribe {
    /// Remaining length of this SUBSCRIBE.
    pub(super) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        let mut n = 2 + props_len(&self.properties, v)?;
        for (f, _) in &self.filters {
            n += field_len(f.as_bytes())? + 1;
        }
        Ok(n)
    }

    /// Writes the body; [`Subscribe::body_len`] was checked first.
    pub(super) fn write_body(&self, v: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        write_props(&self.properties, v, out);
        for (f, o) in &self.filters {
            put_field(out, f.as_bytes());
            out.put_u8(o.to_byte(v));
        }
    }
}

/// Decodes an UNSUBSCRIBE body.
pub(super) fn decode_unsubscribe(
    r: &mut Reader<'_>,
    v: ProtocolVersion,
) -> Result<Unsubscribe, Malformed> {
    let packet_id = r.packet_id()?;
    let properties = decode_props(r, v, PropCtx::Unsubscribe)?;
    let filters = entries(r, filter, "UNSUBSCRIBE without topic filters")?;
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

impl Unsubscribe {
    /// Remaining length of this UNSUBSCRIBE.
    pub(super) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        let mut n = 2 + props_len(&self.properties, v)?;
        for f in &self.filters {
            n += field_len(f.as_bytes())?;
        }
        Ok(n)
    }

    /// Writes the body; [`Unsubscribe::body_len`] was checked first.
    pub(super) fn write_body(&self, v: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        write_props(&self.properties, v, out);
        for f in &self.filters {
            put_field(out, f.as_bytes());
        }
    }
}

/// Reads the rest of `r` as reason codes from `table`.
fn codes(r: &mut Reader<'_>, table: &[ReasonCode]) -> Result<Vec<ReasonCode>, Malformed> {
    let mut out = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        out.push(ReasonCode::from_value(r.u8()?, table).ok_or(malformed("invalid reason code"))?);
    }
    Ok(out)
}

/// Decodes a SUBACK body.
pub(super) fn decode_suback(r: &mut Reader<'_>, v: ProtocolVersion) -> Result<SubAck, Malformed> {
    let packet_id = r.packet_id()?;
    let properties = decode_props(r, v, PropCtx::SubAck)?;
    let table = if v.is_v5() {
        allowed::SUBACK
    } else {
        allowed::SUBACK_V3
    };
    let codes = codes(r, table)?;
    Ok(SubAck {
        packet_id,
        codes,
        properties,
    })
}

impl SubAck {
    /// Remaining length of this SUBACK.
    pub(super) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        Ok(2 + props_len(&self.properties, v)? + self.codes.len())
    }

    /// Writes the body; [`SubAck::body_len`] was checked first.
    pub(super) fn write_body(&self, v: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        write_props(&self.properties, v, out);
        for c in &self.codes {
            out.put_u8(if v.is_v5() {
                c.value()
            } else {
                c.to_v3_suback()
            });
        }
    }
}

/// Decodes an UNSUBACK body (just the packet id before 5.0).
pub(super) fn decode_unsuback(
    r: &mut Reader<'_>,
    v: ProtocolVersion,
) -> Result<UnsubAck, Malformed> {
    let packet_id = r.packet_id()?;
    let properties = decode_props(r, v, PropCtx::UnsubAck)?;
    let codes = if v.is_v5() {
        codes(r, allowed::UNSUBACK)?
    } else {
        Vec::new()
    };
    r.finish("bytes after the UNSUBACK")?;
    Ok(UnsubAck {
        packet_id,
        codes,
        properties,
    })
}

impl UnsubAck {
    /// Remaining length of this UNSUBACK.
    pub(super) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if v.is_v5() {
            Ok(2 + props_len(&self.properties, v)? + self.codes.len())
        } else {
            Ok(2)
        }
    }

    /// Writes the body; [`UnsubAck::body_len`] was checked first.
    pub(super) fn write_body(&self, v: ProtocolVersion, out: &mut BytesMut) {
        out.put_u16(self.packet_id.get());
        if v.is_v5() {
            write_props(&self.properties, v, out);
            for c in &self.codes {
                out.put_u8(c.value());
            }
        }
    }
}
