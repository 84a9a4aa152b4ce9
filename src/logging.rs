//! A tiny logger behind the `log` facade, configured by `log_dest` and
//! `log_type`, writing Mosquitto-style lines: `<unix-seconds>: <message>`.
//!
//! Level mapping: `error` → `Error`, `warning` → `Warn`, `notice` and
//! `information` → `Info`, `debug` → `Debug` and `Trace`.

use std::io::Write;
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::{LogDest, LogTypes};

/// The process-wide logger; its settings can be replaced by a later [`init`].
struct Logger {
    settings: RwLock<Settings>,
}

#[derive(Clone, Copy)]
struct Settings {
    dest: LogDest,
    types: LogTypes,
}

static LOGGER: Logger = Logger {
    settings: RwLock::new(Settings {
        dest: LogDest::None,
        types: LogTypes::NONE,
    }),
};

/// Installs the logger (once per process) and applies `dest` and `types`.
///
/// `verbose` enables every log type, like Mosquitto's `-v`. Safe to call
/// again: later calls only replace the settings. If another `log` logger was
/// installed first, that one stays and this only sets the maximum level.
pub fn init(dest: &LogDest, types: &LogTypes, verbose: bool) {
    let types = if verbose { LogTypes::ALL } else { *types };
    let settings = Settings { dest: *dest, types };
    match LOGGER.settings.write() {
        Ok(mut guard) => *guard = settings,
        Err(poisoned) => *poisoned.into_inner() = settings,
    }
    // Err only means a logger is already installed (ours on a second call).
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(max_level(settings));
}

/// Whether a record at `level` is written under `types`.
pub fn enabled(types: &LogTypes, level: Level) -> bool {
    match level {
        Level::Error => types.error,
        Level::Warn => types.warning,
        Level::Info => types.notice || types.information,
        Level::Debug | Level::Trace => types.debug,
    }
}

/// The most verbose level any enabled type needs (`Off` for no output).
fn max_level(settings: Settings) -> LevelFilter {
    if settings.dest == LogDest::None {
        return LevelFilter::Off;
    }
    [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
    ]
    .into_iter()
    .find(|level| enabled(&settings.types, *level))
    .map_or(LevelFilter::Off, |level| level.to_level_filter())
}

impl Logger {
    fn settings(&self) -> Settings {
        match self.settings.read() {
            Ok(guard) => *guard,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let settings = self.settings();
        settings.dest != LogDest::None && enabled(&settings.types, metadata.level())
    }

    fn log(&self, record: &Record<'_>) {
        let settings = self.settings();
        if settings.dest == LogDest::None || !enabled(&settings.types, record.level()) {
            return;
        }
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let line = format!("{seconds}: {}\n", record.args());
        // A log line that cannot be written has nowhere else to go.
        let _ = match settings.dest {
            LogDest::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
            LogDest::Stderr | LogDest::None => std::io::stderr().lock().write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_log_types() {
        let info_only = LogTypes {
            notice: true,
            ..LogTypes::NONE
        };
        assert!(enabled(&info_only, Level::Info));
        assert!(!enabled(&info_only, Level::Warn));
        assert!(enabled(&LogTypes::ALL, Level::Trace));
        assert!(!enabled(&LogTypes::NONE, Level::Error));
    }

    #[test]
    fn max_level_follows_settings() {
        let defaults = crate::config::Config::default();
        let settings = Settings {
            dest: LogDest::Stderr,
            types: defaults.log_types,
        };
        assert_eq!(max_level(settings), LevelFilter::Info);
        assert_eq!(
            max_level(Settings {
                dest: LogDest::None,
                ..settings
            }),
            LevelFilter::Off
        );
        let errors = Settings {
            types: LogTypes {
                error: true,
                ..LogTypes::NONE
            },
            ..settings
        };
        assert_eq!(max_level(errors), LevelFilter::Error);
    }

    #[test]
    fn init_twice_is_fine() {
        init(&LogDest::None, &LogTypes::NONE, false);
        init(&LogDest::Stderr, &LogTypes::ALL, true);
        assert_eq!(log::max_level(), LevelFilter::Trace);
        init(&LogDest::None, &LogTypes::ALL, false);
        assert_eq!(log::max_level(), LevelFilter::Off);
    }
}
