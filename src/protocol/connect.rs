//! CONNECT and CONNACK (spec 3.1, 3.2), all three protocol versions.
//!
//! CONNECT carries its own protocol version: the decoder reads it from the
//! packet and the encoder writes [`Connect::protocol`], whatever version the
//! caller passes.

use bytes::{BufMut, BytesMut};

use super::error::{EncodeError, Malformed};
use super::packet::{ConnAck, Connect, LastWill, ProtocolVersion, QoS};
use super::properties::{decode_props, props_len, write_props, PropCtx};
use super::reason::{allowed, ReasonCode};
use super::topic::TopicName;
use super::wire::{field_len, malformed, protocol_error, put_field, Reader};

const FLAG_RESERVED: u8 = 0x01;
const FLAG_CLEAN: u8 = 0x02;
const FLAG_WILL: u8 = 0x04;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_USERNAME: u8 = 0x80;
const WILL_QOS_SHIFT: u8 = 3;
/// Mosquitto's bridge bit in the protocol level byte.
const BRIDGE_BIT: u8 = 0x80;

fn unsupported_version(detail: &'static str) -> Malformed {
    Malformed::new(ReasonCode::UnsupportedProtocolVersion, detail)
}

/// Protocol name and level (without the bridge bit) of each version.
const fn name_and_level(v: ProtocolVersion) -> (&'static [u8], u8) {
    match v {
        ProtocolVersion::V31 => (b"MQIsdp", 3),
        ProtocolVersion::V311 => (b"MQTT", 4),
        ProtocolVersion::V5 => (b"MQTT", 5),
    }
}

/// Bytes the protocol name (with its length prefix) and level take.
const fn version_len(v: ProtocolVersion) -> usize {
    2 + name_and_level(v).0.len() + 1
}

/// The most bytes protocol name and level take: 3.1's, the longest name.
pub(super) const LONGEST_VERSION: usize = version_len(ProtocolVersion::V31);
const _: () = assert!(
    version_len(ProtocolVersion::V311) <= LONGEST_VERSION
        && version_len(ProtocolVersion::V5) <= LONGEST_VERSION
);

/// Reads protocol name and level: the version and the bridge bit.
pub(super) fn decode_version(r: &mut Reader<'_>) -> Result<(ProtocolVersion, bool), Malformed> {
    let name = r.binary()?;
    let level = r.u8()?;
    let version = match (&name[..], level & !BRIDGE_BIT) {
        (b"MQTT", 4) => ProtocolVersion::V311,
        (b"MQTT", 5) => ProtocolVersion::V5,
        (b"MQIsdp", 3) => ProtocolVersion::V31,
        (b"MQTT" | b"MQIsdp", _) => return Err(unsupported_version("unsupported protocol level")),
        _ => return Err(unsupported_version("unknown protocol name")),
    };
    Ok((version, level & BRIDGE_BIT != 0))
}

/// Checks the connect flags byte and returns the Will QoS.
fn check_flags(flags: u8, version: ProtocolVersion) -> Result<QoS, Malformed> {
    if flags & FLAG_RESERVED != 0 {
        return Err(malformed("CONNECT reserved flag set"));
    }
    let will_qos = QoS::from_u8((flags >> WILL_QOS_SHIFT) & 0x03).ok_or(malformed("Will QoS 3"))?;
    if flags & FLAG_WILL == 0 && (will_qos != QoS::AtMostOnce || flags & FLAG_WILL_RETAIN != 0) {
        return Err(malformed("Will QoS or Will Retain set without Will Flag"));
    }
    if !version.is_v5() && flags & FLAG_PASSWORD != 0 && flags & FLAG_USERNAME == 0 {
        return Err(malformed("password without user name"));
    }
    Ok(will_qos)
}

/// Decodes a CONNECT body.
pub(super) fn decode_connect(r: &mut Reader<'_>) -> Result<Connect, Malformed> {
    let (protocol, bridge) = decode_version(r)?;
    let flags = r.u8()?;
    let will_qos = check_flags(flags, protocol)?;
    let keep_alive = r.u16()?;
    let properties = decode_props(r, protocol, PropCtx::Connect)?;
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(protocol_error("authentication data without method"));
    }
    let client_id = r.string()?;
    let will = match flags & FLAG_WILL {
        0 => None,
        _ => Some(decode_will(
            r,
            protocol,
            will_qos,
            flags & FLAG_WILL_RETAIN != 0,
        )?),
    };
    let username = if flags & FLAG_USERNAME != 0 {
        Some(r.string()?)
    } else {
        None
    };
    let password = if flags & FLAG_PASSWORD != 0 {
        Some(r.binary()?)
    } else {
        None
    };
    r.finish("bytes after the CONNECT payload")?;
    Ok(Connect {
        protocol,
        clean_start: flags & FLAG_CLEAN != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
        bridge,
    })
}

fn decode_will(
    r: &mut Reader<'_>,
    v: ProtocolVersion,
    qos: QoS,
    retain: bool,
) -> Result<LastWill, Malformed> {
    let properties = decode_props(r, v, PropCtx::Will)?;
    let topic = TopicName::new(r.binary()?)?;
    let payload = r.binary()?;
    Ok(LastWill {
        topic,
        payload,
        qos,
        retain,
        properties,
    })
}

fn opt_field_len(f: Option<&[u8]>) -> Result<usize, EncodeError> {
    f.map_or(Ok(0), field_len)
}

impl Connect {
    /// Remaining length of this CONNECT.
    pub(super) fn body_len(&self) -> Result<usize, EncodeError> {
        let v = self.protocol;
        if !v.is_v5() && self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::Unsupported(
                "password without user name before MQTT 5.0",
            ));
        }
        let (name, _) = name_and_level(v);
        let mut n = 2 + name.len() + 1 + 1 + 2;
        n += props_len(&self.properties, v)?;
        n += field_len(self.client_id.as_bytes())?;
        if let Some(w) = &self.will {
            n += props_len(&w.properties, v)?
                + field_len(w.topic.as_bytes())?
                + field_len(&w.payload)?;
        }
        n += opt_field_len(self.username.as_deref().map(str::as_bytes))?;
        n += opt_field_len(self.password.as_deref())?;
        Ok(n)
    }

    fn flags(&self) -> u8 {
        let mut f = if self.clean_start { FLAG_CLEAN } else { 0 };
        if let Some(w) = &self.will {
            f |= FLAG_WILL | (w.qos as u8) << WILL_QOS_SHIFT;
            if w.retain {
                f |= FLAG_WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            f |= FLAG_USERNAME;
        }
        if self.password.is_some() {
            f |= FLAG_PASSWORD;
        }
        f
    }

    /// Writes the body; [`Connect::body_len`] was checked first.
    pub(super) fn write_body(&self, out: &mut BytesMut) {
        let v = self.protocol;
        let (name, level) = name_and_level(v);
        put_field(out, name);
        out.put_u8(if self.bridge {
            level | BRIDGE_BIT
        } else {
            level
        });
        out.put_u8(self.flags());
        out.put_u16(self.keep_alive);
        write_props(&self.properties, v, out);
        put_field(out, self.client_id.as_bytes());
        if let Some(w) = &self.will {
            write_props(&w.properties, v, out);
            put_field(out, w.topic.as_bytes());
            put_field(out, &w.payload);
        }
        if let Some(u) = &self.username {
            put_field(out, u.as_bytes());
        }
        if let Some(p) = &self.password {
            put_field(out, p);
        }
    }
}

/// Decodes a CONNACK body.
pub(super) fn decode_connack(r: &mut Reader<'_>, v: ProtocolVersion) -> Result<ConnAck, Malformed> {
    let flags = r.u8()?;
    if flags & !0x01 != 0 {
        return Err(malformed("CONNACK reserved flag set"));
    }
    let byte = r.u8()?;
    let code = if v.is_v5() {
        ReasonCode::from_value(byte, allowed::CONNACK)
    } else {
        ReasonCode::from_v3_connack(byte)
    };
    let code = code.ok_or(malformed("invalid CONNACK reason code"))?;
    let properties = decode_props(r, v, PropCtx::ConnAck)?;
    r.finish("bytes after the CONNACK")?;
    Ok(ConnAck {
        session_present: flags & 0x01 != 0,
        code,
        properties,
    })
}

impl ConnAck {
    /// Remaining length of this CONNACK.
    pub(super) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        Ok(2 + props_len(&self.properties, v)?)
    }

    /// Writes the body; [`ConnAck::body_len`] was checked first.
    pub(super) fn write_body(&self, v: ProtocolVersion, out: &mut BytesMut) {
        out.put_u8(u8::from(self.session_present));
        out.put_u8(if v.is_v5() {
            self.code.value()
        } else {
            self.code.to_v3_connack()
        });
        write_props(&self.properties, v, out);
    }
}
