//! Limits the config parser enforces, in one place.

/// The largest MQTT packet: a 1-byte header, a 4-byte remaining length and
/// 268_435_455 bytes of remaining length.
pub const PROTOCOL_MAX_PACKET_SIZE: usize = 268_435_460;

/// The smallest `max_packet_size` Mosquitto accepts.
pub const MIN_PACKET_SIZE: usize = 20;

/// What `max_queued_messages 0` ("unlimited" in Mosquitto) means in shardmq,
/// and the largest value accepted.
pub const MAX_QUEUED_MESSAGES_CAP: usize = 1_000_000;

const _: () = assert!(MIN_PACKET_SIZE < PROTOCOL_MAX_PACKET_SIZE);
const _: () = assert!(PROTOCOL_MAX_PACKET_SIZE == 1 + 4 + 268_435_455);
