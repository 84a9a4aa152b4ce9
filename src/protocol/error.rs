//! Decoder and encoder errors.

use super::reason::ReasonCode;

/// Why a decode did not produce a packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not an error: the buffer holds only part of a packet. `needed` is the
    /// least number of further bytes required (exact once the fixed header
    /// is complete). The buffer is left untouched.
    #[error("incomplete packet: at least {needed} more bytes needed")]
    Incomplete { needed: usize },
    /// The bytes are not a valid packet: close the connection (in 5.0 send
    /// DISCONNECT or CONNACK with `reason` first).
    #[error(transparent)]
    Malformed(#[from] Malformed),
}

/// A packet that breaks the spec. `reason` is the 5.0 code to report
/// (`MalformedPacket`, `ProtocolError`, `PacketTooLarge`,
/// `TopicNameInvalid`, `TopicFilterInvalid`, `UnsupportedProtocolVersion`...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail} ({reason:?})")]
pub struct Malformed {
    pub reason: ReasonCode,
    pub detail: &'static str,
}

impl Malformed {
    /// A malformed-packet error with the 5.0 reason and a static description.
    pub const fn new(reason: ReasonCode, detail: &'static str) -> Malformed {
        Malformed { reason, detail }
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The packet would exceed the largest remaining length (268,435,455) or
    /// a string/binary field would exceed 65,535 bytes.
    #[error("packet too large to encode: {0}")]
    TooLarge(&'static str),
    /// The packet type or field does not exist in this protocol version
    /// (AUTH in 3.1.1, for example).
    #[error("not encodable in this protocol version: {0}")]
    Unsupported(&'static str),
    /// The packet breaks an invariant of the model (a PUBLISH whose packet
    /// id does not match its QoS, DUP on QoS 0).
    #[error("invalid packet: {0}")]
    Invalid(&'static str),
}
