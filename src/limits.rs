//! Every fixed bound of the broker, in one place, tied together by
//! compile-time assertions. Configurable limits live in `config::Config`;
//! the bounds the config parser enforces on them are here too.

use std::time::Duration;

/// Most shards (and mesh peers) a broker runs; a `ShardSet` holds this many bits.
pub const MAX_SHARDS: usize = 256;

/// Events taken from the kernel per `epoll_wait`. More ready sources are
/// reported by the next wait (the loop does not park while events remain
/// unread: a full buffer makes the next wait non-blocking).
pub const EVENTS_CAPACITY: usize = 1024;

/// Most `Driver::run_pending` calls in one loop turn before the loop looks
/// at sockets and timers again, so that a flood of mesh traffic cannot
/// starve I/O.
pub const PENDING_ROUNDS: usize = 64;

/// Backlog of every listening socket (connections the kernel completes
/// before the shard accepts them).
pub const LISTEN_BACKLOG: i32 = 4096;

/// A `read`/`write` interrupted by a signal is retried at most this many
/// times before EINTR is returned (a non-blocking socket call practically
/// never is).
pub const EINTR_RETRIES: usize = 8;

/// Slots (batches) in each SPSC queue of the mesh.
pub const MESH_CAPACITY: usize = 1024;

/// Batches a shard takes from one peer's queue per pending-work round, so
/// one busy peer cannot starve the others or the shard's sockets.
pub const MESH_DRAIN: usize = 64;

/// Messages a shard gathers for one peer before it sends the batch even in
/// the middle of a loop turn.
pub const MESH_BATCH: usize = 256;

/// Messages waiting for one peer (beyond the queue) before connections on
/// this shard stop reading: backpressure instead of unbounded growth.
pub const MESH_OUTBOX_LIMIT: usize = 64 * 1024;

/// Reads from one connection per loop turn before the others get theirs;
/// a connection with more input is revisited in the same turn's pending
/// work, so one busy client cannot starve a shard.
pub const READS_PER_TURN: usize = 4;

/// Rounds of the end-of-turn flush (a flush can drain a session queue,
/// a teardown publish a will: both dirty more connections); what is left
/// goes in the next pending-work round.
pub const FLUSH_ROUNDS: usize = 4;

/// Connections revisited per pending-work round (see [`READS_PER_TURN`]).
pub const AGAIN_PER_ROUND: usize = 256;

/// Connections accepted from one listener per loop turn.
pub const ACCEPTS_PER_TURN: usize = 64;

/// Listeners (ports) one broker may have.
pub const MAX_LISTENERS: usize = 64;

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

/// Most bytes reserved ahead for a partial packet in one step (it is never
/// more than what has arrived; beyond it the buffer grows by doubling as
/// bytes actually arrive), so a client announcing a huge packet cannot make
/// the broker reserve it before sending it.
pub const PARTIAL_RESERVE_MAX: usize = 1024 * 1024;

/// Largest CONNECT accepted: what a connection may make the broker buffer
/// before it is accepted. Client id, will topic, will payload, user name and
/// password are each at most 64 KiB, plus properties.
pub const MAX_CONNECT_PACKET: usize = 512 * 1024;

/// `websockets_headers_size` when unset or 0: the HTTP upgrade request a
/// WebSocket client may send, headers included (Mosquitto's default).
pub const WS_HEADERS_DEFAULT: usize = 1024;

/// Largest `websockets_headers_size`: a handshake pins at most this much
/// per connection until its CONNECT deadline.
pub const WS_HEADERS_MAX: usize = 64 * 1024;

/// Largest WebSocket frame payload the broker sends: a larger write is
/// framed in pieces, and a socket that takes part of a frame leaves at most
/// this much (plus its header) inside the transport.
pub const WS_OUT_FRAME: usize = 16 * 1024;

/// Socket reads one WebSocket `read` makes at most before it returns (a
/// client sending only control frames cannot hold the shard in one call).
pub const WS_READS_PER_CALL: usize = 4;

/// Control frame payload bound (RFC 6455 5.5): what a ping, pong or close
/// may carry, and so what one pending reply holds.
pub const WS_CONTROL_MAX: usize = 125;

/// Control replies (pongs, the close) waiting for the socket beyond which
/// a client that sends pings but does not read is closed.
pub const WS_PENDING_MAX: usize = WS_OUT_FRAME + 16 * (WS_CONTROL_MAX + 2);

/// Time a new connection has to send CONNECT.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Shard housekeeping period (stats, keepalive buckets, session expiry,
/// tombstones); the loop also waits for nearer deadlines.
pub const TICK: Duration = Duration::from_millis(100);

/// Log lines waiting for shard 0 to publish them to `$SYS/broker/log/<L>`
/// (`log_dest topic`); a line beyond it is dropped and counted.
pub const LOG_TOPIC_QUEUE: usize = 4096;

/// Log lines shard 0 publishes per [`TICK`]: 10,000 a second at most, so a
/// burst of log lines cannot stall its loop.
pub const LOG_TOPIC_BATCH: usize = 1000;

const _: () = assert!(LOG_TOPIC_BATCH <= LOG_TOPIC_QUEUE);

/// The longest `log_timestamp_format` output, in bytes.
pub const LOG_TIMESTAMP_MAX: usize = 64;

/// Runs of (read time, deliveries) a shard keeps per turn for the
/// publish-to-delivery histogram (one run per message however many
/// subscribers it reaches); past it, the runs are recorded at once.
pub const LATENCY_RUNS: usize = 4096;

/// The largest request head the metrics endpoint reads (a scrape's is a
/// few hundred bytes).
pub const METRICS_REQUEST_MAX: usize = 8192;

/// How long the metrics endpoint waits for a request, or for its answer to
/// go: one slow client holds the (single) endpoint thread at most this long.
pub const METRICS_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Keepalive bucket width: deadlines are checked per second, not per client.
pub const KEEPALIVE_BUCKET: Duration = Duration::from_secs(1);

/// Longest back-off after an accept error such as EMFILE.
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_millis(500);

/// How long start-up retries a listener port that is in use, so a broker
/// restarted right after a crash waits out the dead one's socket teardown;
/// a port held by a live process is reported after it.
pub const RESTART_BIND_WAIT: Duration = Duration::from_secs(2);

/// How long start-up waits for every shard to report it is serving (and,
/// after a failed start, for the started ones to stop).
pub const START_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a deleted retained message's tombstone is kept, so that an
/// older set arriving late from another shard cannot bring it back.
pub const TOMBSTONE_AGE: Duration = Duration::from_secs(60);

/// Tombstones purged per second at most (each costs one walk down its
/// topic): a burst of deletes is purged over time, never in one stall.
pub const TOMBSTONE_PURGE_BATCH: usize = 4096;

/// Time allowed at shutdown to flush outgoing buffers before closing.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// Retained messages sent per step when a subscription matches many, so a
/// large retained set does not monopolise the shard.
pub const RETAINED_CHUNK: usize = 256;

/// How long a reload (SIGHUP) waits for every shard to apply it.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a SUBSCRIBE waits for every peer to confirm its filters.
pub const BARRIER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long shutdown waits for every peer to report its wills published.
pub const WILLS_WAIT: Duration = Duration::from_secs(2);

/// First back-off after an accept error (doubling up to [`ACCEPT_BACKOFF_MAX`]).
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);

/// Largest PUBLISH payload MQTT can carry (the largest remaining length);
/// the top of `message_size_limit`.
pub const MAX_PAYLOAD: usize = 268_435_455;

/// Longest `auto_id_prefix`: an assigned client id is kept per session
/// and sent back in every 5.0 CONNACK that assigns one.
pub const MAX_AUTO_ID_PREFIX: usize = 256;

/// Largest `acl_file` read (bytes): it is read whole, at start and on
/// each reload, on the control plane.
pub const MAX_ACL_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Most `topic` and `pattern` lines in one `acl_file`: a check walks the
/// client's section and the patterns, so thousands of per-client lines
/// belong in patterns (`%c`, `%u`).
pub const MAX_ACL_RULES: usize = 100_000;

// Every rule line takes at least `topic a` (7 bytes) and a newline.
const _: () = assert!((MAX_ACL_RULES as u64) * 8 <= MAX_ACL_FILE_BYTES);

/// Longest `mount_point`: it is copied into every topic and filter its
/// listener's clients use, and a topic may not exceed 65535 bytes.
pub const MAX_MOUNT_POINT: usize = 1024;

/// Addresses one bridge `address` line may list.
pub const MAX_BRIDGE_ADDRESSES: usize = 32;

// ---- The bridge thread.

/// Unacknowledged QoS 1/2 messages one link has in flight to its remote at
/// most (the remote's MQTT 5 Receive Maximum may lower it): a pipeline,
/// not stop-and-wait.
pub const BRIDGE_MAX_INFLIGHT: usize = 1024;

/// QoS 2 messages one MQTT 3.x link has in flight at most (PUBLISH to
/// PUBCOMP). A 3.x remote cannot announce a Receive Maximum, and Mosquitto
/// answers a 3.1.1 client's QoS 2 messages beyond its quota
/// (`max_inflight_messages`, 20 by default) with PUBREC and drops them;
/// 20 is that default. (MQTT 5 links obey the remote's Receive Maximum.)
pub const BRIDGE_V3_QOS2_INFLIGHT: usize = 20;

/// Packets from a remote one link handles per read, before the bridge
/// thread takes what the data shards sent (their backpressure among it):
/// a link a local subscriber holds back brings in at most this many more
/// messages per round trip to the shards (a read may hold thousands).
pub const BRIDGE_READ_PACKETS: usize = 64;

/// Bytes one link's outgoing buffer takes before it stops encoding more
/// (and waits for the socket to drain).
pub const BRIDGE_OUT_HIGH_WATER: usize = 256 * 1024;

/// Largest packet accepted from a remote broker when the bridge has no
/// `bridge_max_packet_size` (the protocol's maximum otherwise).
pub const BRIDGE_MAX_INCOMING: usize = 16 * 1024 * 1024;

/// Time a link has from starting to connect until CONNACK.
pub const BRIDGE_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Retries after an established link dropped come this often at most
/// (jittered down to half), [`BRIDGE_QUICK_RETRIES`] times; then
/// `restart_timeout` applies.
pub const BRIDGE_QUICK_RETRY: Duration = Duration::from_millis(500);

/// Quick retries after an established link dropped (about 7.5 s of them).
pub const BRIDGE_QUICK_RETRIES: u32 = 20;

/// How often a link away from its primary address (`round_robin false`)
/// checks whether the primary answers again.
pub const BRIDGE_PRIMARY_PROBE: Duration = Duration::from_secs(5);

/// How long the bridge keeps flushing its links at shutdown, after the
/// data shards are done.
pub const BRIDGE_SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// Reload requests waiting for the bridge thread at most.
pub const BRIDGE_COMMANDS: usize = 16;

/// Messages a link reads from its remote per loop turn before the others
/// (and the local broker) get their turn.
pub const BRIDGE_READS_PER_TURN: usize = 16;

/// Largest plaintext a TLS record carries (RFC 8446 5.1).
pub const TLS_MAX_RECORD_PAYLOAD: usize = 16 * 1024;

/// Bytes one TLS connection buffers inside rustls (plaintext written before
/// the handshake ends, records the socket has not taken) before its `write`
/// returns `WouldBlock`: a few full records keep the socket busy, and a
/// stalled link pins no more than this.
pub const TLS_BUFFER_LIMIT: usize = 4 * TLS_MAX_RECORD_PAYLOAD;

/// Largest TLS record on the wire: header, payload and the most a cipher
/// adds (RFC 8446 5.2).
pub const TLS_MAX_RECORD: usize = 5 + TLS_MAX_RECORD_PAYLOAD + 256;

/// Ciphertext a TLS listener's session holds at most before it makes a
/// whole message of it: a handshake message rustls joins over records (at
/// most 64 KiB, rustls' own bound) and one record more.
pub const TLS_MAX_INCOMING: usize = 0x1_0000 + TLS_MAX_RECORD;

/// Session states a TLS listener's session goes through per call at most:
/// each takes a record, encodes one or ends the call, so this is far above
/// a handshake flight or a full [`TLS_MAX_INCOMING`] of small records.
pub const TLS_PROCESS_ROUNDS: usize = 4096;

/// Files read from a CA directory (`bridge_capath`) at most; a system
/// certificate directory holds a few hundred.
pub const TLS_CAPATH_MAX_FILES: usize = 4096;

// ---- Bounds the config parser enforces.

/// The largest MQTT packet: a 1-byte header, a 4-byte remaining length and
/// 268_435_455 bytes of remaining length.
pub const PROTOCOL_MAX_PACKET_SIZE: usize = 268_435_460;

/// The smallest `max_packet_size` Mosquitto accepts.
pub const MIN_PACKET_SIZE: usize = 20;

/// What `max_queued_messages 0` ("unlimited" in Mosquitto) means in shardmq,
/// and the largest value accepted.
pub const MAX_QUEUED_MESSAGES_CAP: usize = 1_000_000;

/// The largest `overload_stall_timeout`, in seconds: a subscriber that
/// holds publishers back without progress for longer is always cut.
pub const MAX_OVERLOAD_STALL_TIMEOUT: u32 = 3600;

/// Backpressure headroom: QoS 1/2 messages an online subscriber's queue
/// may hold above `max_queued_messages` while the publishers that feed it
/// are being paused. It absorbs what is already in the pipeline when the
/// queue fills: at most one read chunk per local publisher, and what a
/// remote publisher's shard routes before the pressure message crosses
/// the mesh back to it. Past it, a message is dropped and counted.
pub const PRESSURE_HEADROOM_MESSAGES: usize = 100_000;

/// Log lines a shard thread collects in a turn before it writes them to
/// stdout, stderr and log files, in bytes (see `logging::LineBatch`).
pub const LOG_BATCH_BYTES: usize = 64 * 1024;

/// Empty session flows (window, queue, inbound QoS 2 ids) a shard keeps
/// for reuse, so that a subscriber taking one QoS 1 message at a time does
/// not allocate a flow per message.
pub const SPARE_FLOWS: usize = 64;

/// A spare flow keeps collections of at most this many entries' capacity;
/// larger ones are freed (a queue that grew gives its memory back).
pub const SPARE_FLOW_CAPACITY: usize = 32;

/// Backpressure headroom in topic and payload bytes above
/// `max_queued_bytes` (when that is set), for the same reason.
pub const PRESSURE_HEADROOM_BYTES: usize = 64 * 1024 * 1024;

/// Publishers one subscriber may hold paused at once. A publisher beyond
/// it is not paused: its messages go to the headroom.
pub const PRESSURE_PUBLISHERS_MAX: usize = 4096;

/// The largest `max_topic_alias`: the protocol's (a Topic Alias is a
/// two-byte integer). Each alias a client sets keeps one topic (at most
/// 65535 bytes) for the life of its connection.
pub const MAX_TOPIC_ALIAS: u16 = u16::MAX;

/// Enhanced authentication methods a broker may register (a program
/// registers a handful; each CONNECT naming one searches them in order).
pub const MAX_AUTH_METHODS: usize = 16;

/// Client answers (AUTH 0x18, and the data in CONNECT or AUTH 0x19) one
/// authentication exchange may take; the method's next step is then a
/// failure (0x87). SCRAM takes two; the CONNECT timeout bounds the time.
pub const MAX_AUTH_ROUNDS: u8 = 8;

/// Bytes one connection's topic aliases hold, in each direction: the ones
/// the client sets (at most `max_topic_alias` of them) and the ones the
/// broker sets for the client (at most the client's Topic Alias Maximum),
/// each counted as its topic's length plus [`ALIAS_ENTRY_COST`]. Aliases
/// are counted in topics by the protocol; this bounds the memory, which
/// 65535 aliases of 65535-byte topics would otherwise put at 4 GiB per
/// connection (and 65535 one-byte topics at megabytes of map entries).
/// The map is allocated on the first alias, so a connection that uses none
/// holds nothing.
pub const MAX_ALIAS_TOPIC_BYTES: usize = 80 * 1024;

/// What one alias costs against [`MAX_ALIAS_TOPIC_BYTES`] besides its
/// topic: about its map entry (key, value, the topic's handle).
pub const ALIAS_ENTRY_COST: usize = 64;

// Any single topic fits: a client that aliases one long topic is not refused.
/// Most PBKDF2 iterations a `$7$` password hash may ask for (mosquitto_passwd
/// uses 101): one check at this count takes a verifier thread tens of
/// milliseconds; a file asking for more is refused at load.
pub const MAX_PASSWORD_ITERATIONS: u32 = 100_000;

/// Most bytes of a password hash's salt (mosquitto_passwd uses 12).
pub const MAX_PASSWORD_SALT: usize = 64;

/// Default `password_check_threads`: verifier threads shared by the shards.
pub const PASSWORD_CHECK_THREADS: usize = 2;

/// Most `password_check_threads`.
pub const MAX_PASSWORD_CHECK_THREADS: usize = 64;

/// Default `password_check_queue`: password checks waiting for a verifier
/// thread, broker-wide; a CONNECT beyond it is refused (Server busy).
pub const PASSWORD_CHECK_QUEUE: usize = 1024;

/// Nice value of the password verifier threads (shards run at 0): where a
/// verifier and a shard share a core, the scheduler gives the shard about
/// ten times the CPU, so a flood of password checks slows the checks, not
/// the shard's clients.
pub const VERIFIER_NICE: i32 = 10;

/// Password verdicts a shard takes per pending-work round (more wait for
/// the next round, so a burst of answers cannot starve its sockets).
pub const VERDICTS_PER_ROUND: usize = 256;

/// Most `password_check_queue`.
pub const MAX_PASSWORD_CHECK_QUEUE: usize = 65_536;

const _: () = assert!(MAX_ALIAS_TOPIC_BYTES >= crate::protocol::MAX_FIELD_LEN + ALIAS_ENTRY_COST);
const _: () = assert!(MIN_PACKET_SIZE < PROTOCOL_MAX_PACKET_SIZE);
const _: () = assert!(PROTOCOL_MAX_PACKET_SIZE == 1 + 4 + 268_435_455);

const _: () = assert!(MESH_CAPACITY >= 1024);
const _: () = assert!(MESH_BATCH <= MESH_OUTBOX_LIMIT);
const _: () = assert!(READ_MIN < READ_CHUNK);
// The headroom takes at least one full read chunk of minimal (2-byte
// header, 1-byte topic, 2-byte id) QoS 1 PUBLISH packets per shard's
// pipeline of a few publishers.
const _: () = assert!(PRESSURE_HEADROOM_MESSAGES >= 4 * READ_CHUNK / 7);
const _: () = assert!(PRESSURE_HEADROOM_BYTES >= 16 * READ_CHUNK);
const _: () = assert!(MAX_CONNECT_PACKET > 5 * 65_535);
const _: () = assert!(PENDING_KEEP <= PARTIAL_RESERVE_MAX);
const _: () = assert!(OUT_BUFFER_KEEP < MAX_OUT_BUFFER);
const _: () = assert!(MAX_SHARDS % 64 == 0);
const _: () = assert!(BRIDGE_MAX_INFLIGHT < u16::MAX as usize);
const _: () = assert!(BRIDGE_V3_QOS2_INFLIGHT <= BRIDGE_MAX_INFLIGHT);
const _: () = assert!(BRIDGE_QUICK_RETRY.as_millis() < BRIDGE_CONNECT_TIMEOUT.as_millis());

// A write can always hand rustls at least one full record.
const _: () = assert!(TLS_BUFFER_LIMIT >= TLS_MAX_RECORD_PAYLOAD);

// Mosquitto's default handshake fits; any one control reply fits beside a
// partly sent frame.
const _: () = assert!(WS_HEADERS_DEFAULT <= WS_HEADERS_MAX);
const _: () = assert!(WS_PENDING_MAX >= WS_OUT_FRAME + 14 + WS_CONTROL_MAX + 4);
const _: () = assert!(PASSWORD_CHECK_THREADS <= MAX_PASSWORD_CHECK_THREADS);
const _: () = assert!(PASSWORD_CHECK_QUEUE <= MAX_PASSWORD_CHECK_QUEUE);
const _: () = assert!(MAX_PASSWORD_ITERATIONS >= crate::password::DEFAULT_ITERATIONS);

// Records of the smallest size (a header and a tag) filling
// TLS_MAX_INCOMING are all processed in one call's rounds.
const _: () = assert!(TLS_PROCESS_ROUNDS * (5 + 16) >= TLS_MAX_INCOMING);

/// Records' worth of live state (sessions, subscriptions, deliveries) a
/// shard takes for a journal compaction per loop turn: about half a
/// millisecond of the loop (`shard::compaction`), whatever the state.
pub const COMPACTION_SLICE: usize = 8 * 1024;
