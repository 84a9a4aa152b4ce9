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

mod error;
mod packet;
mod properties;
mod reason;
pub mod topic;

use bytes::{Bytes, BytesMut};

pub use error::{DecodeError, EncodeError, Malformed};
pub use packet::*;
pub use properties::Properties;
pub use reason::ReasonCode;
pub use topic::{matches, TopicFilter, TopicName};

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
    todo!("{buf:?} {version:?} {max_packet_size}")
}

impl Packet {
    /// Appends the encoding of this packet for `version` to `out`.
    pub fn encode(&self, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
        todo!("{version:?} {out:?}")
    }

    /// The size `encode` would write, fixed header included.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        todo!("{version:?}")
    }
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
    /// retain flag given, and a placeholder packet id when `qos` > 0.
    pub fn new(
        publish: &Publish,
        version: ProtocolVersion,
        qos: QoS,
        retain: bool,
    ) -> Result<EncodedPublish, EncodeError> {
        todo!("{publish:?} {version:?} {qos:?} {retain}")
    }

    /// The whole encoded packet (with the placeholder id when QoS > 0).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Encoded size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends the packet to `out` with `packet_id` (ignored for QoS 0) and
    /// the DUP flag set as given.
    pub fn write_to(&self, packet_id: Option<PacketId>, dup: bool, out: &mut BytesMut) {
        todo!("{packet_id:?} {dup} {out:?} {:?}", self.packet_id_at)
    }
}
