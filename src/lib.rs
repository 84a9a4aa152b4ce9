//! shardmq: a thread-per-core sharded MQTT 3.1.1 / 5.0 broker.
//!
//! # Layout
//!
//! The file tree is the architecture. Data flows top to bottom:
//!
//! | module       | role |
//! |--------------|------|
//! | [`protocol`] | Pure MQTT 3.1/3.1.1/5.0 codec: bytes in, typed packets out, and back. No I/O, no broker types. |
//! | [`config`]   | Mosquitto-format configuration: lexer, directive table, sections, `file:line` errors. |
//! | [`security`] | Access control: the `acl_file` parser and matcher (pure), and the per-listener rule table the shards check without locks. |
//! | [`password`] | Mosquitto password files (`$7$` PBKDF2-SHA512, `$6$` SHA-512) and the verifier threads that check them off the shards' loops. |
//! | [`logging`]  | Mosquitto-style log lines: `log_type` filtering (an atomic load per call site), every `log_dest` (files reopened on SIGHUP, syslog, `$SYS/broker/log/<L>` through a bounded queue shard 0 publishes), time stamps. |
//! | [`runtime`]  | The only module that names mio: the readiness loop each pinned shard thread runs, its wake-ups, the SPSC queues between shards, non-blocking transports (TCP, TLS client, the server side of MQTT over WebSockets). |
//! | [`mesh`]     | One bounded SPSC queue per ordered pair of shards, batched, and the [`mesh::ShardMsg`] enum: the only thing that crosses cores. |
//! | [`index`]    | Subscription trie (local and replica), retained store, shard sets. Pure data structures. |
//! | [`shard`]    | One core's broker, driven by its loop: listeners, connections as state machines in a slab, sessions, QoS windows, fan-out, timers. All `!Send`. |
//! | [`persist`]  | Durable state: each shard's journal and the bridge thread's (format, entries, writer thread), recovery and journal generations. |
//! | [`bridge`]   | The bridge thread: links to upstream brokers (Mosquitto `connection` sections), one more peer on the mesh. |
//! | [`metrics`]  | Latency histograms the shards record and publish each tick, and the `metrics_listener` thread serving them and every shard's counters to Prometheus. (`$SYS` is published by shard 0: `shard::sys`.) |
//! | [`server`]   | Boots the shards (`start`), checks the port, raises limits, stops them (`BrokerHandle::shutdown`). |
//! | [`limits`]   | Every fixed bound, with compile-time checks that tie them together. |
//!
//! # The design in one paragraph
//!
//! Each shard is one thread pinned to a core, running one readiness loop
//! (epoll through mio) over all its sockets; a connection is a state
//! machine in the shard's slab, not a task. It accepts
//! connections on its own SO_REUSEPORT socket and hands each one, once its
//! CONNECT is read, to the client id's home shard, so a session is owned by
//! exactly one shard. Subscribing on a shard updates its local trie and
//! broadcasts the filter to every other shard's replica; a PUBLISH is matched
//! on the shard that received it, delivered to local subscribers, and sent
//! once per destination shard over the mesh, where that shard fans it out.
//! No locks, no shared mutable state on the data path. A subscriber whose
//! queue is full holds back the publishers that feed it (a pause, local or
//! a message over the mesh to their shard) rather than drop what they were
//! acknowledged for (see `shard::pressure`); the bridge takes part both
//! ways: an up link is such a subscriber, and a link is a publisher whose
//! socket is not read while a local subscriber holds it back (see
//! `bridge::pressure`).

pub mod bridge;
pub mod config;
pub mod index;
pub mod limits;
pub mod logging;
pub mod mesh;
pub mod metrics;
pub mod password;
pub mod persist;
pub mod protocol;
pub mod runtime;
pub mod security;
pub mod server;
pub mod shard;
