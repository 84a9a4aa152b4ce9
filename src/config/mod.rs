//! Mosquitto-format configuration: lexer, directive table, section state
//! machine, validation with `file:line` errors.
//!
//! Only this module knows the file format; the rest of the broker reads the
//! typed [`Config`].

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// A listener: `listener <port> [address]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
}

/// Where log lines go (`log_dest`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDest {
    Stderr,
    Stdout,
    None,
}

/// Which log lines are written (`log_type`), as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogTypes {
    pub error: bool,
    pub warning: bool,
    pub notice: bool,
    pub information: bool,
    pub debug: bool,
}

/// The whole broker configuration, validated. Every shard gets its own copy.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// At least one listener. Default: `0.0.0.0:1883`.
    pub listeners: Vec<Listener>,
    /// Number of shards; `None` = every available core (`--shards`).
    pub shards: Option<usize>,
    /// `max_connections`; `None` = unlimited (-1 in Mosquitto).
    pub max_connections: Option<usize>,
    /// `max_inflight_messages`, 1..=65535 (0 in Mosquitto means 65535). Default 20.
    pub max_inflight_messages: u16,
    /// `max_queued_messages`, default 1000 (0 = unlimited in Mosquitto: we cap at 1_000_000).
    pub max_queued_messages: usize,
    /// `max_queued_bytes`, default 0 = unlimited.
    pub max_queued_bytes: usize,
    /// `queue_qos0_messages`, default false.
    pub queue_qos0_messages: bool,
    /// `max_packet_size` in bytes; default 268_435_460 (the protocol maximum).
    pub max_packet_size: usize,
    /// `max_keepalive` seconds, default 65535.
    pub max_keepalive: u16,
    /// `persistent_client_expiration`; `None` = never expire.
    pub persistent_client_expiration: Option<Duration>,
    /// `allow_anonymous`, default true (no password file support yet).
    pub allow_anonymous: bool,
    /// `retain_available`, default true.
    pub retain_available: bool,
    /// `allow_zero_length_clientid`, default true.
    pub allow_zero_length_clientid: bool,
    /// `log_dest`, default stderr.
    pub log_dest: LogDest,
    /// `log_type`, default error, warning, notice, information.
    pub log_types: LogTypes,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: vec![Listener { addr: SocketAddr::from(([0, 0, 0, 0], 1883)) }],
            shards: None,
            max_connections: None,
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            queue_qos0_messages: false,
            max_packet_size: 268_435_460,
            max_keepalive: 65535,
            persistent_client_expiration: None,
            allow_anonymous: true,
            retain_available: true,
            allow_zero_length_clientid: true,
            log_dest: LogDest::Stderr,
            log_types: LogTypes { error: true, warning: true, notice: true, information: true, debug: false },
        }
    }
}

/// A configuration error, naming the file, the line, the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// `path:line: key: reason (allowed)`.
    #[error("{path}:{line}: {key}: {reason}")]
    Invalid { path: String, line: usize, key: String, reason: String },
}

/// A warning worth printing (a Mosquitto key we recognise but do not support yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub path: String,
    pub line: usize,
    pub message: String,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates config text; `path` is used in messages.
    pub fn parse(text: &str, path: &str) -> Result<(Config, Vec<ConfigWarning>), ConfigError> {
        todo!("{text} {path}")
    }
}
