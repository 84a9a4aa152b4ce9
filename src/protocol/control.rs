//! DISCONNECT and AUTH (spec 3.14, 3.15), and the optional "reason code,
//! then properties" tail they share with the four PUBLISH acknowledgements.
//!
//! PINGREQ and PINGRESP have no body; `frame` handles them.

use bytes::{BufMut, BytesMut};

use super::error::{EncodeError, Malformed};
use super::packet::{Auth, Disconnect, ProtocolVersion};
use super::properties::{self, PropCtx, Properties};
use super::reason::{allowed, ReasonCode};
use super::wire::{malformed, Reader};

/// Reads the 5.0 tail `[reason code [properties]]`: an absent reason code is
/// `default`, absent properties are empty. Nothing may follow.
pub(super) fn decode_reason_tail(
    r: &mut Reader<'_>,
    table: &[ReasonCode],
    ctx: PropCtx,
) -> Result<(ReasonCode, Properties), Malformed> {
    if r.is_empty() {
        return Ok((table[0], Properties::default()));
    }
    let reason = ReasonCode::from_value(r.u8()?, table)
        .ok_or(malformed("reason code not allowed in this packet"))?;
    let props = if r.is_empty() {
        Properties::default()
    } else {
        properties::decode(r, ctx)?
    };
    r.finish("bytes after the properties")?;
    Ok((reason, props))
}

/// Encoded size of the 5.0 tail: the short forms when possible.
pub(super) fn reason_tail_len(
    reason: ReasonCode,
    props: &Properties,
) -> Result<usize, EncodeError> {
    match (reason.value(), props.is_empty()) {
        (0, true) => Ok(0),
        (_, true) => Ok(1),
        _ => Ok(1 + properties::section_len(props)?),
    }
}

/// Writes the 5.0 tail in the form [`reason_tail_len`] chose.
pub(super) fn write_reason_tail(reason: ReasonCode, props: &Properties, out: &mut BytesMut) {
    match (reason.value(), props.is_empty()) {
        (0, true) => {}
        (v, true) => out.put_u8(v),
        (v, false) => {
            out.put_u8(v);
            properties::write(props, out);
        }
    }
}

/// Decodes a DISCONNECT body (empty before 5.0).
pub(super) fn decode_disconnect(
    r: &mut Reader<'_>,
    v: ProtocolVersion,
) -> Result<Disconnect, Malformed> {
    if !v.is_v5() {
        r.finish("DISCONNECT with a body before MQTT 5.0")?;
        return Ok(Disconnect::new(ReasonCode::NormalDisconnection));
    }
    let (reason, properties) = decode_reason_tail(r, allowed::DISCONNECT, PropCtx::Disconnect)?;
    Ok(Disconnect { reason, properties })
}

impl Disconnect {
    /// Remaining length of this DISCONNECT.
    pub(super) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if v.is_v5() {
            reason_tail_len(self.reason, &self.properties)
        } else {
            Ok(0)
        }
    }

    /// Writes the body; [`Disconnect::body_len`] was checked first.
    pub(super) fn write_body(&self, v: ProtocolVersion, out: &mut BytesMut) {
        if v.is_v5() {
            write_reason_tail(self.reason, &self.properties, out);
        }
    }
}

/// Decodes an AUTH body (5.0 only; `frame` rejects it before).
pub(super) fn decode_auth(r: &mut Reader<'_>) -> Result<Auth, Malformed> {
    let (reason, properties) = decode_reason_tail(r, allowed::AUTH, PropCtx::Auth)?;
    Ok(Auth { reason, properties })
}

impl Auth {
    /// Remaining length of this AUTH (5.0 only).
    pub(super) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if !v.is_v5() {
            return Err(EncodeError::Unsupported("AUTH before MQTT 5.0"));
        }
        reason_tail_len(self.reason, &self.properties)
    }

    /// Writes the body; [`Auth::body_len`] was checked first.
    pub(super) fn write_body(&self, out: &mut BytesMut) {
        write_reason_tail(self.reason, &self.properties, out);
    }
}
