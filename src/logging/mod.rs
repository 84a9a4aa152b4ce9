//! Mosquitto-style logging behind the `log` facade, configured by
//! `log_dest`, `log_type`, `log_timestamp`, `log_timestamp_format` and
//! `connection_messages`, and re-applied (files reopened) on SIGHUP.
//!
//! - this file: the log types, which of them are on (one atomic word: a
//!   disabled type costs a load and a branch, never a lock), and the
//!   [`log::Log`] implementation;
//! - `sink`: the destinations, behind one mutex taken per written line,
//!   and the per-turn batch of a shard thread's lines ([`LineBatch`]);
//! - `stamp`: the time stamp each line starts with;
//! - [`topic`]: the bounded queue of lines shard 0 publishes to
//!   `$SYS/broker/log/<letter>`.
//!
//! A line's type comes from its `log` level and target: `Error` → error,
//! `Warn` → warning, `Debug`/`Trace` → debug, `Info` → notice, or the type
//! its target names ([`INFORMATION`], [`SUBSCRIBE`], [`UNSUBSCRIBE`],
//! [`WEBSOCKETS`]).

mod sink;
mod stamp;
pub mod topic;

use std::sync::atomic::{AtomicU32, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::{Config, LogTypes};

pub use sink::{flush_batch, LineBatch};
pub use stamp::check_timestamp_format;

/// The `log` target of `information` lines (`log::info!(target: INFORMATION, ..)`).
pub const INFORMATION: &str = "information";
/// The `log` target of `subscribe` lines.
pub const SUBSCRIBE: &str = "subscribe";
/// The `log` target of `unsubscribe` lines.
pub const UNSUBSCRIBE: &str = "unsubscribe";
/// The `log` target of `websockets` lines.
pub const WEBSOCKETS: &str = "websockets";

/// A Mosquitto log type (`log_type`): what a line is, whichever thread
/// logs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogType {
    /// `log::error!`.
    Error,
    /// `log::warn!`.
    Warning,
    /// `log::info!` (any other target).
    Notice,
    /// `log::info!(target: INFORMATION, ..)`.
    Information,
    /// `log::info!(target: SUBSCRIBE, ..)`.
    Subscribe,
    /// `log::info!(target: UNSUBSCRIBE, ..)`.
    Unsubscribe,
    /// `log::info!(target: WEBSOCKETS, ..)`.
    Websockets,
    /// `log::debug!` and `log::trace!`.
    Debug,
}

impl LogType {
    const fn bit(self) -> u32 {
        1 << self as u32
    }

    /// The last level of the topic Mosquitto publishes this type's lines
    /// to (`$SYS/broker/log/<letter>`).
    pub const fn letter(self) -> &'static str {
        match self {
            LogType::Error => "E",
            LogType::Warning => "W",
            LogType::Notice => "N",
            LogType::Information => "I",
            LogType::Subscribe => "M",
            LogType::Unsubscribe => "U",
            LogType::Websockets => "WS",
            LogType::Debug => "D",
        }
    }

    /// The type of a `log` record at `level` with `target`.
    fn of(level: Level, target: &str) -> LogType {
        match (level, target) {
            (Level::Error, _) => LogType::Error,
            (Level::Warn, _) => LogType::Warning,
            (Level::Debug | Level::Trace, _) => LogType::Debug,
            (Level::Info, INFORMATION) => LogType::Information,
            (Level::Info, SUBSCRIBE) => LogType::Subscribe,
            (Level::Info, UNSUBSCRIBE) => LogType::Unsubscribe,
            (Level::Info, WEBSOCKETS) => LogType::Websockets,
            (Level::Info, _) => LogType::Notice,
        }
    }
}

/// Not a type: set while notice lines are on and `connection_messages` is
/// true.
const CONNECTIONS: u32 = 1 << 8;

/// One bit per type written ([`LogType::bit`], [`CONNECTIONS`]); 0 while
/// there is no destination. Read on every log call site, written by
/// [`init`].
static ENABLED: AtomicU32 = AtomicU32::new(0);

/// Whether lines of type `t` are written: one atomic load and a branch.
#[inline]
pub fn on(t: LogType) -> bool {
    ENABLED.load(Ordering::Relaxed) & t.bit() != 0
}

/// Whether client connections and disconnections are logged
/// (`connection_messages`, notice lines).
#[inline]
pub fn connection_messages() -> bool {
    ENABLED.load(Ordering::Relaxed) & CONNECTIONS != 0
}

/// The process-wide logger (the state is in the statics).
struct Logger;

static LOGGER: Logger = Logger;

/// Installs the logger (once per process) and applies the configuration's
/// logging settings: opens every destination (a file is appended to) and
/// replaces the ones in use. Safe to call again (SIGHUP does): files are
/// closed and opened again, so a rotated log starts anew.
///
/// `verbose` enables every log type, like Mosquitto's `-v`. On `Err` (a
/// file that cannot be opened, named in the message) nothing changed. If
/// another `log` logger was installed first, that one stays and this only
/// sets the maximum level.
pub fn init(config: &Config, verbose: bool) -> Result<(), String> {
    let types = if verbose {
        LogTypes::ALL
    } else {
        config.log_types
    };
    sink::install(config)?;
    let enabled = if config.log_dests.is_empty() {
        0
    } else {
        mask(&types, config.connection_messages)
    };
    ENABLED.store(enabled, Ordering::Relaxed);
    // Err only means a logger is already installed (ours on a second call).
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(max_level(enabled));
    Ok(())
}

/// Closes and opens again every `log_dest file` (SIGHUP without a
/// configuration to reload). `Err` names the files that failed; the others
/// are open.
pub fn reopen() -> Result<(), String> {
    sink::reopen()
}

/// The [`ENABLED`] bits of `types`.
fn mask(types: &LogTypes, connection_messages: bool) -> u32 {
    let pairs = [
        (types.error, LogType::Error),
        (types.warning, LogType::Warning),
        (types.notice, LogType::Notice),
        (types.information, LogType::Information),
        (types.subscribe, LogType::Subscribe),
        (types.unsubscribe, LogType::Unsubscribe),
        (types.websockets, LogType::Websockets),
        (types.debug, LogType::Debug),
    ];
    let bits = pairs
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |bits, (_, t)| bits | t.bit());
    if types.notice && connection_messages {
        bits | CONNECTIONS
    } else {
        bits
    }
}

/// The most verbose `log` level any enabled bit needs (`Off` for none).
fn max_level(enabled: u32) -> LevelFilter {
    let info = LogType::Notice.bit()
        | LogType::Information.bit()
        | LogType::Subscribe.bit()
        | LogType::Unsubscribe.bit()
        | LogType::Websockets.bit();
    if enabled & LogType::Debug.bit() != 0 {
        LevelFilter::Trace
    } else if enabled & info != 0 {
        LevelFilter::Info
    } else if enabled & LogType::Warning.bit() != 0 {
        LevelFilter::Warn
    } else if enabled & LogType::Error.bit() != 0 {
        LevelFilter::Error
    } else {
        LevelFilter::Off
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        on(LogType::of(metadata.level(), metadata.target()))
    }

    fn log(&self, record: &Record<'_>) {
        let kind = LogType::of(record.level(), record.target());
        if on(kind) {
            // Formatted before the destinations' lock is taken.
            sink::write(kind, &record.args().to_string());
        }
    }

    fn flush(&self) {
        sink::flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_map_to_log_types() {
        assert_eq!(LogType::of(Level::Info, "shardmq::shard"), LogType::Notice);
        assert_eq!(LogType::of(Level::Info, SUBSCRIBE), LogType::Subscribe);
        assert_eq!(LogType::of(Level::Info, UNSUBSCRIBE), LogType::Unsubscribe);
        assert_eq!(LogType::of(Level::Info, INFORMATION), LogType::Information);
        assert_eq!(LogType::of(Level::Trace, "rustls"), LogType::Debug);
        assert_eq!(LogType::of(Level::Warn, SUBSCRIBE), LogType::Warning);
        assert_eq!(LogType::Subscribe.letter(), "M");
    }

    #[test]
    fn types_filter_lines() {
        let notice_only = LogTypes {
            notice: true,
            ..LogTypes::NONE
        };
        let bits = mask(&notice_only, false);
        assert_ne!(bits & LogType::Notice.bit(), 0);
        assert_eq!(bits & LogType::Information.bit(), 0);
        assert_eq!(bits & LogType::Subscribe.bit(), 0);
        assert_eq!(bits & CONNECTIONS, 0, "connection_messages false");
        assert_ne!(mask(&notice_only, true) & CONNECTIONS, 0);
        let no_notice = LogTypes {
            notice: false,
            ..LogTypes::ALL
        };
        assert_eq!(mask(&no_notice, true) & CONNECTIONS, 0, "they are notices");
        assert_eq!(mask(&LogTypes::NONE, true), 0);
    }

    #[test]
    fn max_level_follows_types() {
        let defaults = Config::default();
        assert_eq!(
            max_level(mask(&defaults.log_types, true)),
            LevelFilter::Info
        );
        let subscribe_only = LogTypes {
            subscribe: true,
            ..LogTypes::NONE
        };
        assert_eq!(max_level(mask(&subscribe_only, true)), LevelFilter::Info);
        let errors = LogTypes {
            error: true,
            ..LogTypes::NONE
        };
        assert_eq!(max_level(mask(&errors, true)), LevelFilter::Error);
        assert_eq!(max_level(mask(&LogTypes::ALL, true)), LevelFilter::Trace);
        assert_eq!(max_level(0), LevelFilter::Off);
    }

    #[test]
    fn init_twice_is_fine() {
        let none = Config {
            log_dests: Vec::new(),
            ..Config::default()
        };
        init(&none, false).expect("no destination");
        assert!(!on(LogType::Error));
        init(&Config::default(), true).expect("stderr");
        assert_eq!(log::max_level(), LevelFilter::Trace);
        assert!(on(LogType::Subscribe) && connection_messages());
        init(&none, true).expect("no destination");
        assert_eq!(log::max_level(), LevelFilter::Off);
        assert!(!connection_messages());
    }
}
