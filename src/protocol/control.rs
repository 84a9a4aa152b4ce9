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

/// Reads the 5.0 tail `[reason code [properties]]` into `reason` and
/// `props`: an absent reason code is `table[0]`, absent properties are
/// empty. Nothing may follow.
pub(super) fn decode_reason_tail(
    r: &mut Reader<'_>,
    table: &[ReasonCode],
    ctx: PropCtx,
    reason: &mut ReasonCode,
    props: &mut Properties,
) -> Result<(), Malformed> {
    *reason = table[0];
    if r.is_empty() {
        return Ok(());
    }
    *reason = ReasonCode::from_value(r.u8()?, table)
        .ok_or(malformed("reason code not allowed in this packet"))?;
    if !r.is_empty() {
        properties::decode_into(r, ctx, props)?;
    }
    r.finish("bytes after the properties")
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
    let mut d = Disconnect::new(ReasonCode::NormalDisconnection);
    decode_reason_tail(
        r,
        allowed::DISCONNECT,
        PropCtx::Disconnect,
        &mut d.reason,
        &mut d.properties,
    )?;
    Ok(d)
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
    let mut a = Auth {
        reason: ReasonCode::Success,
        properties: Properties::default(),
    };
    decode_reason_tail(
        r,
        allowed::AUTH,
        PropCtx::Auth,
        &mut a.reason,
        &mut a.properties,
    )?;
    Ok(a)
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
