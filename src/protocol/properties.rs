//! MQTT 5.0 properties (spec 2.2.2).
//!
//! One struct models the properties of every packet; each field is `None`
//! (or empty) when absent. The decoder rejects a property that the spec does
//! not allow in the packet being decoded, and a property that appears twice
//! where the spec forbids it (everything except User Property and, in
//! PUBLISH, Subscription Identifier).
//!
//! For MQTT 3.1.1 packets the properties are always empty and are neither
//! read nor written.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{EncodeError, Malformed};
use super::packet::ProtocolVersion;
use super::reason::ReasonCode;
use super::topic::TopicName;
use super::wire::{
    field_len, malformed, protocol_error, put_field, put_varint, varint_len, write_varint, Reader,
};
use super::MAX_REMAINING_LENGTH;

/// The properties of one packet. Absent properties are `None` / empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01, PUBLISH and Will: 0 = bytes, 1 = UTF-8.
    pub payload_format_indicator: Option<u8>,
    /// 0x02, PUBLISH and Will, seconds.
    pub message_expiry_interval: Option<u32>,
    /// 0x03, PUBLISH and Will.
    pub content_type: Option<String>,
    /// 0x08, PUBLISH and Will. Must be a valid topic name.
    pub response_topic: Option<String>,
    /// 0x09, PUBLISH and Will.
    pub correlation_data: Option<Bytes>,
    /// 0x0B, PUBLISH (several allowed, server to client) and SUBSCRIBE (one).
    /// Each is 1..=268_435_455.
    pub subscription_identifiers: Vec<u32>,
    /// 0x11, CONNECT, CONNACK, DISCONNECT, seconds.
    pub session_expiry_interval: Option<u32>,
    /// 0x12, CONNACK.
    pub assigned_client_identifier: Option<String>,
    /// 0x13, CONNACK, seconds.
    pub server_keep_alive: Option<u16>,
    /// 0x15, CONNECT, CONNACK, AUTH.
    pub authentication_method: Option<String>,
    /// 0x16, CONNECT, CONNACK, AUTH.
    pub authentication_data: Option<Bytes>,
    /// 0x17, CONNECT: 0 or 1.
    pub request_problem_information: Option<u8>,
    /// 0x18, Will, seconds.
    pub will_delay_interval: Option<u32>,
    /// 0x19, CONNECT: 0 or 1.
    pub request_response_information: Option<u8>,
    /// 0x1A, CONNACK.
    pub response_information: Option<String>,
    /// 0x1C, CONNACK, DISCONNECT.
    pub server_reference: Option<String>,
    /// 0x1F, CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK,
    /// DISCONNECT, AUTH.
    pub reason_string: Option<String>,
    /// 0x21, CONNECT, CONNACK: non-zero.
    pub receive_maximum: Option<u16>,
    /// 0x22, CONNECT, CONNACK.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23, PUBLISH: non-zero.
    pub topic_alias: Option<u16>,
    /// 0x24, CONNACK: 0 or 1.
    pub maximum_qos: Option<u8>,
    /// 0x25, CONNACK: 0 or 1.
    pub retain_available: Option<u8>,
    /// 0x26, every packet with properties; any number, order preserved.
    pub user_properties: Vec<(String, String)>,
    /// 0x27, CONNECT, CONNACK: non-zero.
    pub maximum_packet_size: Option<u32>,
    /// 0x28, CONNACK: 0 or 1.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29, CONNACK: 0 or 1.
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A, CONNACK: 0 or 1.
    pub shared_subscription_available: Option<u8>,
}

impl Properties {
    /// True when no property is set (the encoder then writes a zero length).
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}

/// The property contexts of spec 2.2.2.2: which packet (or the Will) a
/// property list belongs to. Decides which identifiers are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PropCtx {
    Connect,
    ConnAck,
    Publish,
    Will,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    PubResp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropCtx {
    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

/// Builds a context bit mask.
macro_rules! ctx {
    ($($c:ident)|+) => { 0 $(| PropCtx::$c.bit())+ };
}

/// The contexts each property identifier may appear in (0: unknown id).
const fn allowed_in(id: u8) -> u16 {
    match id {
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 => ctx!(Publish | Will),
        0x0B => ctx!(Publish | Subscribe),
        0x11 => ctx!(Connect | ConnAck | Disconnect),
        0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => ctx!(ConnAck),
        0x15 | 0x16 => ctx!(Connect | ConnAck | Auth),
        0x17 | 0x19 => ctx!(Connect),
        0x18 => ctx!(Will),
        0x1C => ctx!(ConnAck | Disconnect),
        0x1F => ctx!(ConnAck | PubResp | SubAck | UnsubAck | Disconnect | Auth),
        0x21 | 0x22 | 0x27 => ctx!(Connect | ConnAck),
        0x23 => ctx!(Publish),
        0x26 => ctx!(
            Connect
                | ConnAck
                | Publish
                | Will
                | PubResp
                | Subscribe
                | SubAck
                | Unsubscribe
                | UnsubAck
                | Disconnect
                | Auth
        ),
        _ => 0,
    }
}

const USER_PROPERTY: u8 = 0x26;
const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
/// Largest Subscription Identifier (the largest variable byte integer).
pub const MAX_SUBSCRIPTION_ID: u32 = MAX_REMAINING_LENGTH as u32;

/// May `id` appear more than once in `ctx`?
fn repeatable(id: u8, ctx: PropCtx) -> bool {
    id == USER_PROPERTY || (id == SUBSCRIPTION_IDENTIFIER && ctx == PropCtx::Publish)
}

/// Reads a property length and the properties it covers.
pub(crate) fn decode(r: &mut Reader<'_>, ctx: PropCtx) -> Result<Properties, Malformed> {
    let mut props = Properties::default();
    decode_into(r, ctx, &mut props)?;
    Ok(props)
}

/// [`decode`] into `props` (which starts empty): no move of the large
/// struct on the hot paths.
pub(crate) fn decode_into(
    r: &mut Reader<'_>,
    ctx: PropCtx,
    props: &mut Properties,
) -> Result<(), Malformed> {
    let len = r.varint()?;
    let mut p = r.sub(len as usize)?;
    let mut seen: u64 = 0;
    while !p.is_empty() {
        let id = u8::try_from(p.varint()?).map_err(|_| malformed("unknown property identifier"))?;
        if allowed_in(id) & ctx.bit() == 0 {
            return Err(malformed("property not allowed in this packet"));
        }
        let bit = 1u64 << id; // id < 0x2B here
        if seen & bit != 0 && !repeatable(id, ctx) {
            return Err(protocol_error("duplicate property"));
        }
        seen |= bit;
        read_one(&mut p, id, props)?;
    }
    Ok(())
}

fn flag(r: &mut Reader<'_>) -> Result<Option<u8>, Malformed> {
    match r.u8()? {
        v @ (0 | 1) => Ok(Some(v)),
        _ => Err(protocol_error("property flag is not 0 or 1")),
    }
}

fn non_zero_u16(r: &mut Reader<'_>) -> Result<Option<u16>, Malformed> {
    match r.u16()? {
        0 => Err(protocol_error("property value must be non-zero")),
        v => Ok(Some(v)),
    }
}

/// A Topic Alias: 0 is not one, and the receiver answers it with 0x94
/// (Topic Alias Invalid), as it does an alias above its maximum
/// (spec 3.3.2.3.4).
fn topic_alias(r: &mut Reader<'_>) -> Result<u16, Malformed> {
    match r.u16()? {
        0 => Err(Malformed::new(
            ReasonCode::TopicAliasInvalid,
            "topic alias 0",
        )),
        v => Ok(v),
    }
}

fn read_one(r: &mut Reader<'_>, id: u8, p: &mut Properties) -> Result<(), Malformed> {
    match id {
        0x01 => p.payload_format_indicator = flag(r)?,
        0x02 => p.message_expiry_interval = Some(r.u32()?),
        0x03 => p.content_type = Some(r.string()?),
        0x08 => p.response_topic = Some(response_topic(r)?),
        0x09 => p.correlation_data = Some(r.binary()?),
        0x0B => match r.varint()? {
            0 => return Err(protocol_error("subscription identifier is zero")),
            v => p.subscription_identifiers.push(v),
        },
        0x11 => p.session_expiry_interval = Some(r.u32()?),
        0x12 => p.assigned_client_identifier = Some(r.string()?),
        0x13 => p.server_keep_alive = Some(r.u16()?),
        0x15 => p.authentication_method = Some(r.string()?),
        0x16 => p.authentication_data = Some(r.binary()?),
        0x17 => p.request_problem_information = flag(r)?,
        0x18 => p.will_delay_interval = Some(r.u32()?),
        0x19 => p.request_response_information = flag(r)?,
        0x1A => p.response_information = Some(r.string()?),
        0x1C => p.server_reference = Some(r.string()?),
        0x1F => p.reason_string = Some(r.string()?),
        0x21 => p.receive_maximum = non_zero_u16(r)?,
        0x22 => p.topic_alias_maximum = Some(r.u16()?),
        0x23 => p.topic_alias = Some(topic_alias(r)?),
        0x24 => p.maximum_qos = flag(r)?,
        0x25 => p.retain_available = flag(r)?,
        0x26 => p.user_properties.push((r.string()?, r.string()?)),
        0x27 => match r.u32()? {
            0 => return Err(protocol_error("maximum packet size is zero")),
            v => p.maximum_packet_size = Some(v),
        },
        0x28 => p.wildcard_subscription_available = flag(r)?,
        0x29 => p.subscription_identifier_available = flag(r)?,
        0x2A => p.shared_subscription_available = flag(r)?,
        _ => return Err(malformed("unknown property identifier")),
    }
    Ok(())
}

/// A Response Topic must be a valid topic name (no wildcards).
fn response_topic(r: &mut Reader<'_>) -> Result<String, Malformed> {
    let b = r.utf8_bytes()?;
    let t = TopicName::new(b)
        .map_err(|_| protocol_error("response topic is not a valid topic name"))?;
    Ok(t.as_str().to_owned())
}

/// Where the encoder sends each present property: a length counter or a
/// writer. One walk over the fields ([`visit`]) serves both.
trait Sink {
    fn byte(&mut self, id: u8, v: u8);
    fn u16(&mut self, id: u8, v: u16);
    fn u32(&mut self, id: u8, v: u32);
    fn varint(&mut self, id: u8, v: u32);
    fn field(&mut self, id: u8, v: &[u8]);
    fn pair(&mut self, id: u8, k: &[u8], v: &[u8]);
}

/// Counts the encoded size; remembers the first oversized field.
struct Len {
    n: usize,
    err: Option<EncodeError>,
}

impl Len {
    fn field_len(&mut self, v: &[u8]) -> usize {
        field_len(v).unwrap_or_else(|e| {
            self.err.get_or_insert(e);
            0
        })
    }
}

impl Sink for Len {
    fn byte(&mut self, _: u8, _: u8) {
        self.n += 2;
    }
    fn u16(&mut self, _: u8, _: u16) {
        self.n += 3;
    }
    fn u32(&mut self, _: u8, _: u32) {
        self.n += 5;
    }
    fn varint(&mut self, _: u8, v: u32) {
        if v == 0 || v > MAX_SUBSCRIPTION_ID {
            self.err.get_or_insert(EncodeError::TooLarge(
                "subscription identifier out of range",
            ));
        }
        self.n += 1 + varint_len(v as usize);
    }
    fn field(&mut self, _: u8, v: &[u8]) {
        self.n += 1 + self.field_len(v);
    }
    fn pair(&mut self, _: u8, k: &[u8], v: &[u8]) {
        self.n += 1 + self.field_len(k) + self.field_len(v);
    }
}

impl Sink for BytesMut {
    fn byte(&mut self, id: u8, v: u8) {
        self.put_slice(&[id, v]);
    }
    fn u16(&mut self, id: u8, v: u16) {
        self.put_u8(id);
        self.put_u16(v);
    }
    fn u32(&mut self, id: u8, v: u32) {
        self.put_u8(id);
        self.put_u32(v);
    }
    fn varint(&mut self, id: u8, v: u32) {
        self.put_u8(id);
        put_varint(self, v as usize);
    }
    fn field(&mut self, id: u8, v: &[u8]) {
        self.put_u8(id);
        put_field(self, v);
    }
    fn pair(&mut self, id: u8, k: &[u8], v: &[u8]) {
        self.put_u8(id);
        put_field(self, k);
        put_field(self, v);
    }
}

/// Sends every present property to `s`, in identifier order.
fn visit(p: &Properties, s: &mut impl Sink) {
    if let Some(v) = p.payload_format_indicator {
        s.byte(0x01, v);
    }
    if let Some(v) = p.message_expiry_interval {
        s.u32(0x02, v);
    }
    str_prop(s, 0x03, &p.content_type);
    str_prop(s, 0x08, &p.response_topic);
    if let Some(v) = &p.correlation_data {
        s.field(0x09, v);
    }
    for &v in &p.subscription_identifiers {
        s.varint(0x0B, v);
    }
    if let Some(v) = p.session_expiry_interval {
        s.u32(0x11, v);
    }
    str_prop(s, 0x12, &p.assigned_client_identifier);
    if let Some(v) = p.server_keep_alive {
        s.u16(0x13, v);
    }
    str_prop(s, 0x15, &p.authentication_method);
    if let Some(v) = &p.authentication_data {
        s.field(0x16, v);
    }
    visit_connect_flags(p, s);
    str_prop(s, 0x1A, &p.response_information);
    str_prop(s, 0x1C, &p.server_reference);
    str_prop(s, 0x1F, &p.reason_string);
    visit_limits(p, s);
    for (k, v) in &p.user_properties {
        s.pair(USER_PROPERTY, k.as_bytes(), v.as_bytes());
    }
    visit_availability(p, s);
}

fn str_prop(s: &mut impl Sink, id: u8, v: &Option<String>) {
    if let Some(v) = v {
        s.field(id, v.as_bytes());
    }
}

fn byte_prop(s: &mut impl Sink, id: u8, v: Option<u8>) {
    if let Some(v) = v {
        s.byte(id, v);
    }
}

fn u16_prop(s: &mut impl Sink, id: u8, v: Option<u16>) {
    if let Some(v) = v {
        s.u16(id, v);
    }
}

/// 0x17..=0x19.
fn visit_connect_flags(p: &Properties, s: &mut impl Sink) {
    byte_prop(s, 0x17, p.request_problem_information);
    if let Some(v) = p.will_delay_interval {
        s.u32(0x18, v);
    }
    byte_prop(s, 0x19, p.request_response_information);
}

/// 0x21..=0x25.
fn visit_limits(p: &Properties, s: &mut impl Sink) {
    u16_prop(s, 0x21, p.receive_maximum);
    u16_prop(s, 0x22, p.topic_alias_maximum);
    u16_prop(s, 0x23, p.topic_alias);
    byte_prop(s, 0x24, p.maximum_qos);
    byte_prop(s, 0x25, p.retain_available);
}

/// 0x27..=0x2A.
fn visit_availability(p: &Properties, s: &mut impl Sink) {
    if let Some(v) = p.maximum_packet_size {
        s.u32(0x27, v);
    }
    byte_prop(s, 0x28, p.wildcard_subscription_available);
    byte_prop(s, 0x29, p.subscription_identifier_available);
    byte_prop(s, 0x2A, p.shared_subscription_available);
}

/// Size of the property content (without its length prefix).
fn content_len(p: &Properties) -> Result<usize, EncodeError> {
    if p.is_empty() {
        return Ok(0);
    }
    let mut len = Len { n: 0, err: None };
    visit(p, &mut len);
    match len.err {
        Some(e) => Err(e),
        None if len.n > MAX_REMAINING_LENGTH => Err(EncodeError::TooLarge("properties")),
        None => Ok(len.n),
    }
}

/// Encoded size of the properties section: length prefix and content.
pub(crate) fn section_len(p: &Properties) -> Result<usize, EncodeError> {
    let n = content_len(p)?;
    Ok(varint_len(n) + n)
}

/// Writes the properties section; [`section_len`] was checked first.
///
/// Writes the content after a one-byte length placeholder, then fills in
/// the length (shifting the content in the rare case of 128 bytes or more),
/// so the properties are walked only once.
pub(crate) fn write(p: &Properties, out: &mut BytesMut) {
    let at = out.len();
    out.put_u8(0);
    if p.is_empty() {
        return;
    }
    visit(p, out);
    let n = out.len() - at - 1;
    let mut len = [0; 4];
    let used = write_varint(&mut len, n);
    if used > 1 {
        out.put_bytes(0, used - 1);
        out.copy_within(at + 1..at + 1 + n, at + used);
    }
    out[at..at + used].copy_from_slice(&len[..used]);
}

/// [`decode`] in 5.0; empty properties (nothing read) before 5.0.
pub(crate) fn decode_props(
    r: &mut Reader<'_>,
    v: ProtocolVersion,
    ctx: PropCtx,
) -> Result<Properties, Malformed> {
    if v.is_v5() {
        decode(r, ctx)
    } else {
        Ok(Properties::default())
    }
}

/// [`section_len`] in 5.0; 0 before 5.0.
pub(crate) fn props_len(p: &Properties, v: ProtocolVersion) -> Result<usize, EncodeError> {
    if v.is_v5() {
        section_len(p)
    } else {
        Ok(0)
    }
}

/// [`write`] in 5.0; nothing before 5.0.
pub(crate) fn write_props(p: &Properties, v: ProtocolVersion, out: &mut BytesMut) {
    if v.is_v5() {
        write(p, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_bytes(b: &'static [u8], ctx: PropCtx) -> Result<Properties, Malformed> {
        let b = Bytes::from_static(b);
        decode(&mut Reader::new(&b, 0), ctx)
    }

    #[test]
    fn wrong_context_and_duplicates() {
        assert!(decode_bytes(&[2, 0x23, 0], PropCtx::Publish).is_err()); // truncated
        assert!(decode_bytes(&[3, 0x23, 0, 1], PropCtx::Connect).is_err());
        assert!(decode_bytes(&[3, 0x23, 0, 0], PropCtx::Publish).is_err());
        assert!(decode_bytes(&[4, 0x01, 1, 0x01, 0], PropCtx::Publish).is_err());
        let p = decode_bytes(&[4, 0x0B, 1, 0x0B, 2], PropCtx::Publish).unwrap();
        assert_eq!(p.subscription_identifiers, vec![1, 2]);
        assert!(decode_bytes(&[4, 0x0B, 1, 0x0B, 2], PropCtx::Subscribe).is_err());
    }

    #[test]
    fn long_sections_shift_into_place() {
        for len in [100, 124, 125, 126, 200, 20_000] {
            let p = Properties {
                reason_string: Some("r".repeat(len)),
                ..Properties::default()
            };
            let mut out = BytesMut::from(&b"xy"[..]);
            write(&p, &mut out);
            assert_eq!(out.len() - 2, section_len(&p).unwrap(), "{len}");
            let b = out.freeze();
            let back = decode(&mut Reader::new(&b, 2), PropCtx::Disconnect).unwrap();
            assert_eq!(back, p);
        }
    }

    #[test]
    fn section_len_is_exact() {
        let p = Properties {
            subscription_identifiers: vec![1, 200, 70_000],
            user_properties: vec![("k".into(), "v".into())],
            maximum_packet_size: Some(9),
            ..Properties::default()
        };
        let mut out = BytesMut::new();
        write(&p, &mut out);
        assert_eq!(out.len(), section_len(&p).unwrap());
        let b = out.freeze();
        assert_eq!(
            decode(&mut Reader::new(&b, 0), PropCtx::Publish),
            Err(malformed("property not allowed in this packet"))
        );
    }
}
