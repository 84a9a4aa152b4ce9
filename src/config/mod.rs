//! Mosquitto-format configuration: lexer, directive table, section state
//! machine, validation with `file:line` errors.
//!
//! Only this module knows the file format; the rest of the broker reads the
//! typed [`Config`].
//!
//! Layout:
//! - `lexer.rs`: lines, `#` comments, tokens, rest-of-line values.
//! - `directives.rs`: the directive table type, lookup, "did you mean".
//! - `broker.rs`, `listener.rs`: supported keys and how they apply.
//! - `security.rs`: the keys `per_listener_settings` scopes (`password_file`
//!   and `acl_file` among them), `allow_anonymous`'s default, and
//!   `check_retain_source`.
//! - `tls.rs`: a listener's TLS keys ([`ListenerTls`]), and the Mosquitto TLS keys refused or ignored.
//! - `mosquitto.rs`: Mosquitto keys that only warn (not supported yet).
//! - `bridge.rs`: `connection` sections into [`BridgeConfig`] (run by [`crate::bridge`]).
//! - `bridge_topic.rs`: a bridge `topic` line ([`BridgeTopic`]) and its topic mapping.
//! - `parser.rs`: the section state machine (global, listener, connection).
//! - `value.rs`: typed value parsers; the bounds they enforce are in [`crate::limits`].

mod bridge;
mod bridge_topic;
mod broker;
mod directives;
mod lexer;
mod listener;
mod log;
mod mosquitto;
mod parser;
mod security;
mod tls;
mod value;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::protocol::QoS;

pub use bridge::{
    BridgeAddress, BridgeConfig, BridgeTls, RestartTimeout, StartType, DEFAULT_BRIDGE_PORT,
};
pub use bridge_topic::{remap, BridgeTopic, Direction};
pub use tls::{ListenerTls, Origin as TlsOrigin, TlsVersion};

/// A listener: `listener <port> [address]` and the keys that shape the
/// protocol for its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Address and port to bind (port 0 = any free port).
    pub addr: SocketAddr,
    /// `max_qos`: the highest QoS its clients may publish and are granted
    /// on SUBSCRIBE. Default 2.
    pub max_qos: QoS,
    /// `mount_point`: prefixed to every topic and filter its clients use,
    /// and stripped from what they are sent. Default none.
    pub mount_point: Option<String>,
    /// With `per_listener_settings true`: this listener's own
    /// [`Security`]; `None` = the broker-wide settings.
    pub security: Option<Security>,
    /// `protocol mqtt|websockets`: what its clients speak. Default MQTT.
    pub protocol: ListenerProtocol,
    /// `max_connections`: connections open on this listener at once, over
    /// every shard (Mosquitto counts per listener); `None` = unlimited (-1).
    pub max_connections: Option<usize>,
    /// `certfile`, `keyfile` and the other TLS keys: a TLS listener;
    /// `None` = plain TCP.
    pub tls: Option<ListenerTls>,
}

/// What a listener's clients speak (`protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerProtocol {
    /// MQTT straight over TCP.
    #[default]
    Mqtt,
    /// MQTT over WebSockets (binary frames, subprotocol `mqtt`).
    WebSockets,
}

impl Listener {
    /// A listener on `addr` with Mosquitto's defaults.
    pub fn new(addr: SocketAddr) -> Listener {
        Listener {
            addr,
            max_qos: QoS::ExactlyOnce,
            mount_point: None,
            security: None,
            protocol: ListenerProtocol::Mqtt,
            max_connections: None,
            tls: None,
        }
    }
}

/// The settings `per_listener_settings true` scopes to a listener (those
/// of Mosquitto's that shardmq has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    /// `allow_anonymous`: clients without a user name may connect. True
    /// here (the library default); a configuration file makes it false
    /// unless set, as Mosquitto 2.0 does (see [`Config::allow_anonymous`]).
    pub allow_anonymous: bool,
    /// `allow_zero_length_clientid`, default true.
    pub allow_zero_length_clientid: bool,
    /// `auto_id_prefix`: the start of the client ids the broker assigns,
    /// default `auto-`.
    pub auto_id_prefix: String,
    /// `acl_file`: the access rules of its clients (read by
    /// [`crate::security::AclTable::load`]); `None` = no restriction.
    pub acl_file: Option<PathBuf>,
    /// `password_file`: Mosquitto's `user:hash` file (see
    /// [`crate::password`]); a client giving a user name must be listed
    /// with a matching password. Default none.
    pub password_file: Option<PathBuf>,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            allow_anonymous: true,
            allow_zero_length_clientid: true,
            auto_id_prefix: DEFAULT_AUTO_ID_PREFIX.to_string(),
            acl_file: None,
            password_file: None,
        }
    }
}

/// Mosquitto's `auto_id_prefix` default.
pub const DEFAULT_AUTO_ID_PREFIX: &str = "auto-";

/// One place log lines go (`log_dest`); [`Config::log_dests`] holds every
/// one given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDest {
    /// Standard error (the default).
    Stderr,
    /// Standard output.
    Stdout,
    /// `file <path>`: appended to; closed and reopened on SIGHUP.
    File(PathBuf),
    /// The system log (ident `shardmq`, facility daemon).
    Syslog,
    /// Published to `$SYS/broker/log/<letter>` by the broker.
    Topic,
}

/// Which log lines are written (`log_type`), as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogTypes {
    /// `error` lines (`log::Level::Error`).
    pub error: bool,
    /// `warning` lines (`log::Level::Warn`).
    pub warning: bool,
    /// `notice` lines (`log::Level::Info`, any target but the ones below).
    pub notice: bool,
    /// `information` lines (`log::Level::Info`, target `information`).
    pub information: bool,
    /// `subscribe` lines: `<client id> <qos> <filter>` per SUBSCRIBE filter.
    pub subscribe: bool,
    /// `unsubscribe` lines: `<client id> <filter>` per UNSUBSCRIBE filter.
    pub unsubscribe: bool,
    /// `websockets` lines (target `websockets`).
    pub websockets: bool,
    /// `debug` lines (`log::Level::Debug` and `Trace`).
    pub debug: bool,
}

impl LogTypes {
    /// `log_type none`.
    pub const NONE: LogTypes = LogTypes {
        error: false,
        warning: false,
        notice: false,
        information: false,
        subscribe: false,
        unsubscribe: false,
        websockets: false,
        debug: false,
    };
    /// `log_type all`.
    pub const ALL: LogTypes = LogTypes {
        error: true,
        warning: true,
        notice: true,
        information: true,
        subscribe: true,
        unsubscribe: true,
        websockets: true,
        debug: true,
    };
}

/// The whole broker configuration, validated. Every shard gets its own copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// At least one listener. Default: `127.0.0.1:1883` (see `local_only`).
    pub listeners: Vec<Listener>,
    /// No `listener`, `port` or `bind_address` was configured: Mosquitto
    /// 2.0's local only mode, listening on the loopback interface only
    /// (the binary adds `[::1]` where the host has it) with anonymous
    /// clients allowed unless `allow_anonymous` says otherwise. Default
    /// true; the parser sets it.
    pub local_only: bool,
    /// Number of shards; `None` = every available core (`--shards`).
    pub shards: Option<usize>,
    /// `websockets_headers_size`: the largest WebSocket upgrade request,
    /// headers included, in bytes; default (and for 0)
    /// [`crate::limits::WS_HEADERS_DEFAULT`].
    pub websockets_headers_size: usize,
    /// `max_inflight_messages`, 1..=65535 (0 in Mosquitto means 65535). Default 20.
    pub max_inflight_messages: u16,
    /// `max_queued_messages`, default 1000 (0 = unlimited in Mosquitto: we cap at 1_000_000).
    pub max_queued_messages: usize,
    /// `max_queued_bytes`, default 0 = unlimited.
    pub max_queued_bytes: usize,
    /// `queue_qos0_messages`, default false.
    pub queue_qos0_messages: bool,
    /// `overload_policy` (a shardmq key): what happens to a QoS 1/2
    /// message an online subscriber's queue has no room for. Default
    /// [`OverloadPolicy::Backpressure`]; `drop` is Mosquitto's behaviour.
    pub overload_policy: OverloadPolicy,
    /// `overload_stall_timeout` (a shardmq key): seconds a subscriber
    /// that holds publishers back may go without progress before it is
    /// cut as a slow consumer (default 5, 1..=3600).
    pub overload_stall_timeout: u32,
    /// `max_packet_size` in bytes; default 268_435_460 (the protocol maximum).
    pub max_packet_size: usize,
    /// `max_topic_alias`: the Topic Alias Maximum a 5.0 client is
    /// announced (aliases it may set, per connection), 0..=65535, default
    /// 10; 0 = no aliases. Per listener in Mosquitto; broker-wide here.
    pub max_topic_alias: u16,
    /// `max_keepalive` seconds, default 65535.
    pub max_keepalive: u16,
    /// `persistent_client_expiration`; `None` = never expire.
    pub persistent_client_expiration: Option<Duration>,
    /// `allow_anonymous`: clients without a user name may connect. True in
    /// `Config::default()`; a configuration file makes it false unless set
    /// (or in local only mode, see `local_only`), as Mosquitto 2.0 does.
    pub allow_anonymous: bool,
    /// `password_file`, broker-wide (per listener with
    /// `per_listener_settings true`: see [`Security::password_file`]).
    pub password_file: Option<PathBuf>,
    /// `password_check_threads` (a shardmq key): threads that check
    /// password hashes for every shard. Default
    /// [`crate::limits::PASSWORD_CHECK_THREADS`].
    pub password_check_threads: usize,
    /// `password_check_queue` (a shardmq key): password checks waiting
    /// for a thread, broker-wide; a CONNECT beyond it is refused with
    /// Server busy. Default [`crate::limits::PASSWORD_CHECK_QUEUE`].
    pub password_check_queue: usize,
    /// `shared_subscription_strategy`, default round-robin.
    pub shared_subscription_strategy: crate::index::Strategy,
    /// `persistence`, default false: journal durable state (see
    /// [`Config::journal_dir`]).
    pub persistence: bool,
    /// `persistence_location`: the directory (default the working one).
    pub persistence_location: Option<std::path::PathBuf>,
    /// `persistence_file`: names the journal directory inside the
    /// location (`<name>.journal`; default `shardmq`).
    pub persistence_file: Option<String>,
    /// `persistence_sync` and `persistence_commit_interval`: how durable a
    /// record is before the acknowledgement that needs it goes out.
    pub persistence_sync: crate::persist::Durability,
    /// `persistence_compact_size`: a shard's journal is compacted once it
    /// holds this many bytes and twice its live state (default 64 MiB).
    pub persistence_compact_size: u64,
    /// `retain_available`, default true.
    pub retain_available: bool,
    /// `allow_zero_length_clientid`, default true.
    pub allow_zero_length_clientid: bool,
    /// `auto_id_prefix`, default `auto-`.
    pub auto_id_prefix: String,
    /// `per_listener_settings`, default false: with true, the keys of
    /// [`Security`] apply to the listener they follow.
    pub per_listener_settings: bool,
    /// `acl_file` (broker-wide, `per_listener_settings false`); `None` =
    /// every client may publish and subscribe to anything.
    pub acl_file: Option<PathBuf>,
    /// `check_retain_source`, default false: a retained message is
    /// delivered only while its publisher may still write its topic.
    pub check_retain_source: bool,
    /// `message_size_limit` in payload bytes; 0 (the default) = none.
    pub message_size_limit: usize,
    /// `upgrade_outgoing_qos`, default false: deliver at the
    /// subscription's QoS instead of min(message, subscription).
    pub upgrade_outgoing_qos: bool,
    /// `max_inflight_bytes`: payload bytes of outgoing QoS 1/2 messages
    /// in flight per client; 0 (the default) = no limit.
    pub max_inflight_bytes: usize,
    /// `set_tcp_nodelay`, default true (Mosquitto: false; see the README).
    pub set_tcp_nodelay: bool,
    /// Every `log_dest` given (all are written to), default stderr; empty
    /// = `log_dest none`.
    pub log_dests: Vec<LogDest>,
    /// `log_type`, default error, warning, notice, information.
    pub log_types: LogTypes,
    /// `log_timestamp`, default true: each line starts with a time stamp.
    pub log_timestamp: bool,
    /// `log_timestamp_format`: a strftime(3) format for that stamp (local
    /// time); `None` (the default) = Unix seconds.
    pub log_timestamp_format: Option<String>,
    /// `connection_messages`, default true: log each client's connection
    /// and disconnection (notice lines).
    pub connection_messages: bool,
    /// `connection` sections in file order (run by the bridge thread).
    pub bridges: Vec<BridgeConfig>,
    /// `sys_interval`: seconds between `$SYS` updates; 0 turns `$SYS`
    /// off. Default 10 s (Mosquitto's).
    pub sys_interval: Duration,
    /// `metrics_listener <port> [address]` (a shardmq key): where the
    /// Prometheus endpoint listens; `None` (the default) = no endpoint and
    /// no latency histograms recorded.
    pub metrics_listener: Option<SocketAddr>,
    /// Time a new connection has to send CONNECT; default
    /// [`crate::limits::CONNECT_TIMEOUT`]. Not a config-file key: tests
    /// shorten it.
    #[doc(hidden)]
    pub connect_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: vec![Listener::new(SocketAddr::from(([127, 0, 0, 1], 1883)))],
            local_only: true,
            shards: None,
            websockets_headers_size: crate::limits::WS_HEADERS_DEFAULT,
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            queue_qos0_messages: false,
            overload_policy: OverloadPolicy::Backpressure,
            overload_stall_timeout: 5,
            max_packet_size: 268_435_460,
            max_topic_alias: 10,
            max_keepalive: 65535,
            persistent_client_expiration: None,
            allow_anonymous: true,
            password_file: None,
            password_check_threads: crate::limits::PASSWORD_CHECK_THREADS,
            password_check_queue: crate::limits::PASSWORD_CHECK_QUEUE,
            sys_interval: Duration::from_secs(10),
            metrics_listener: None,
            retain_available: true,
            shared_subscription_strategy: Default::default(),
            persistence: false,
            persistence_location: None,
            persistence_file: None,
            persistence_sync: crate::persist::Durability::Written,
            persistence_compact_size: 64 * 1024 * 1024,
            allow_zero_length_clientid: true,
            auto_id_prefix: DEFAULT_AUTO_ID_PREFIX.to_string(),
            per_listener_settings: false,
            acl_file: None,
            check_retain_source: false,
            message_size_limit: 0,
            upgrade_outgoing_qos: false,
            max_inflight_bytes: 0,
            set_tcp_nodelay: true,
            log_dests: vec![LogDest::Stderr],
            log_types: LogTypes {
                error: true,
                warning: true,
                notice: true,
                information: true,
                ..LogTypes::NONE
            },
            log_timestamp: true,
            log_timestamp_format: None,
            connection_messages: true,
            bridges: Vec::new(),
            connect_timeout: crate::limits::CONNECT_TIMEOUT,
        }
    }
}

/// What the broker does with a QoS 1/2 message for an online subscriber
/// whose queue is at `max_queued_messages` / `max_queued_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverloadPolicy {
    /// Queue it (within a bounded headroom) and pause the publishers that
    /// feed the subscriber until it drains (see `shard::pressure`).
    Backpressure,
    /// Drop it and count it, as Mosquitto does.
    Drop,
}

/// A configuration error, naming the file, the line, the key and the fix.
/// A file a directive names (`acl_file`, `password_file`) that cannot be
/// used: `key path: why` when it cannot be read, `path:line: why` when a
/// line is wrong (the reason says how to fix it).
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{key} {path}: {source} (check the path and its permissions)")]
    Io {
        key: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Invalid {
        path: String,
        line: usize,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// `path:line: key: reason (allowed)`.
    #[error("{path}:{line}: {key}: {reason}")]
    Invalid {
        /// The file (as given to [`Config::parse`]).
        path: String,
        /// 1-based line number.
        line: usize,
        /// The key of that line.
        key: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
}

/// A warning worth printing (a Mosquitto key we recognise but do not support yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The file (as given to [`Config::parse`]).
    pub path: String,
    /// 1-based line number.
    pub line: usize,
    /// What is ignored or replaced, e.g. `acl_file is a Mosquitto option shardmq
    /// does not support yet; ignored`.
    pub message: String,
}

/// `path:line: message`.
impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.message)
    }
}

impl Config {
    /// The journal directory when `persistence` is on:
    /// `<persistence_location>/<persistence_file>.journal`.
    pub fn journal_dir(&self) -> Option<std::path::PathBuf> {
        if !self.persistence {
            return None;
        }
        let location = self
            .persistence_location
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("."));
        let name = self.persistence_file.as_deref().unwrap_or("shardmq");
        Some(location.join(format!("{name}.journal")))
    }

    /// The settings clients of `listener` get: its own with
    /// `per_listener_settings true`, else the broker-wide ones.
    pub fn security_of(&self, listener: &Listener) -> Security {
        listener.security.clone().unwrap_or_else(|| Security {
            allow_anonymous: self.allow_anonymous,
            allow_zero_length_clientid: self.allow_zero_length_clientid,
            auto_id_prefix: self.auto_id_prefix.clone(),
            acl_file: self.acl_file.clone(),
            password_file: self.password_file.clone(),
        })
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates config text; `path` is used in messages.
    ///
    /// Known Mosquitto options that shardmq does not support yet become
    /// warnings; unknown keys and bad values are errors.
    pub fn parse(text: &str, path: &str) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let mut parser = parser::Parser::new(path);
        for line in lexer::lines(text) {
            parser.line(&line)?;
        }
        parser.finish()
    }
}
