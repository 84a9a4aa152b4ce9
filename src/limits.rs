//! Every fixed bound of the broker, in one place, tied together by
//! compile-time assertions. Configurable limits live in `config::Config`.

use std::time::Duration;

/// Most shards (and mesh peers) a broker runs; a `ShardSet` holds this many bits.
pub const MAX_SHARDS: usize = 256;

/// Slots in each SPSC queue of the mesh. Below ~1024 glommio's cross-core
/// channels slow down noticeably.
pub const MESH_CAPACITY: usize = 1024;

/// Messages a shard gathers for one peer before it sends the batch even in
/// the middle of a processing step.
pub const MESH_BATCH: usize = 256;

/// Messages waiting for one peer (beyond the queue) before connections on
/// this shard stop reading: backpressure instead of unbounded growth.
pub const MESH_OUTBOX_LIMIT: usize = 64 * 1024;

/// Size of the shard-wide read buffer every connection reads into.
pub const READ_CHUNK: usize = 64 * 1024;

/// A read is only attempted with at least this much free space in the
/// shard buffer; below it, the buffer is renewed.
pub const READ_MIN: usize = 4 * 1024;

/// Bytes waiting in one client's outgoing buffer beyond which QoS 0
/// messages are dropped and QoS 1/2 messages go to the session queue.
pub const MAX_OUT_BUFFER: usize = 1024 * 1024;

/// An outgoing buffer that drained is released if it grew beyond this, so
/// idle connections hold no buffer memory.
pub const OUT_BUFFER_KEEP: usize = 16 * 1024;

/// A leftover partial packet kept between reads is released when it grew
/// beyond this and the connection went idle.
pub const PENDING_KEEP: usize = 16 * 1024;

/// Time a new connection has to send CONNECT.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Shard housekeeping period (keepalive buckets, shutdown flag, expiry).
pub const TICK: Duration = Duration::from_millis(100);

/// Keepalive bucket width: deadlines are checked per second, not per client.
pub const KEEPALIVE_BUCKET: Duration = Duration::from_secs(1);

/// Longest back-off after an accept error such as EMFILE.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// Time allowed at shutdown to flush outgoing buffers before closing.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// Retained messages sent per step when a subscription matches many, so a
/// large retained set does not monopolise the shard.
pub const RETAINED_CHUNK: usize = 256;

const _: () = assert!(MESH_CAPACITY >= 1024);
const _: () = assert!(MESH_BATCH <= MESH_OUTBOX_LIMIT);
const _: () = assert!(READ_MIN < READ_CHUNK);
const _: () = assert!(OUT_BUFFER_KEEP < MAX_OUT_BUFFER);
const _: () = assert!(MAX_SHARDS % 64 == 0);
