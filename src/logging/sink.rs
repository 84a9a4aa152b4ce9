//! Where log lines go: every `log_dest` at once, behind one mutex taken
//! once per written line (logging is not the data path; the line is
//! formatted before the lock is taken).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::stamp::Stamp;
use super::{topic, LogType};
use crate::config::{Config, LogDest};

/// One destination, open.
enum Sink {
    Stdout,
    Stderr,
    /// `None` after a reopen failed: lines for it are lost until the next
    /// SIGHUP opens it.
    File(PathBuf, Option<File>),
    Syslog,
    Topic,
}

/// The destinations in use and how lines are stamped.
struct Output {
    sinks: Vec<Sink>,
    stamp: Stamp,
}

static OUTPUT: Mutex<Output> = Mutex::new(Output {
    sinks: Vec::new(),
    stamp: Stamp::Unix,
});

fn output() -> MutexGuard<'static, Output> {
    OUTPUT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens every destination `config` names and puts them in place of the
/// ones in use (which close). On `Err` nothing changed.
pub(super) fn install(config: &Config) -> Result<(), String> {
    let output = Output::open(config)?;
    *self::output() = output;
    Ok(())
}

/// Closes and opens again every file destination.
pub(super) fn reopen() -> Result<(), String> {
    let mut output = output();
    let failed: Vec<String> = output
        .sinks
        .iter_mut()
        .filter_map(|sink| match sink {
            Sink::File(path, file) => {
                *file = None; // closed before it opens again
                match append(path) {
                    Ok(f) => *file = Some(f),
                    Err(e) => return Some(e),
                }
                None
            }
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// Writes `message`, a line of type `kind`, to every destination.
pub(super) fn write(kind: LogType, message: &str) {
    let now = SystemTime::now();
    output().write(kind, message, now);
}

pub(super) fn flush() {
    for sink in &mut output().sinks {
        // A log line that cannot be written has nowhere else to go.
        let _ = match sink {
            Sink::Stdout => std::io::stdout().flush(),
            Sink::Stderr => std::io::stderr().flush(),
            Sink::File(_, Some(file)) => file.flush(),
            _ => Ok(()),
        };
    }
}

/// `path`, opened for appending (created if missing).
fn append(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| {
            format!(
                "log_dest file {}: cannot open for appending: {e}",
                path.display()
            )
        })
}

impl Output {
    fn open(config: &Config) -> Result<Output, String> {
        let mut sinks = Vec::with_capacity(config.log_dests.len());
        for dest in &config.log_dests {
            sinks.push(match dest {
                LogDest::Stdout => Sink::Stdout,
                LogDest::Stderr => Sink::Stderr,
                LogDest::File(path) => Sink::File(path.clone(), Some(append(path)?)),
                LogDest::Syslog => {
                    open_syslog();
                    Sink::Syslog
                }
                LogDest::Topic => Sink::Topic,
            });
        }
        Ok(Output {
            sinks,
            stamp: Stamp::of(config)?,
        })
    }

    fn write(&mut self, kind: LogType, message: &str, now: SystemTime) {
        let line = format!("{}{message}\n", self.stamp.prefix(now));
        for sink in &mut self.sinks {
            // A log line that cannot be written has nowhere else to go.
            let _ = match sink {
                Sink::Stdout => std::io::stdout().lock().write_all(line.as_bytes()),
                Sink::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
                Sink::File(_, Some(file)) => file.write_all(line.as_bytes()),
                Sink::File(_, None) => Ok(()),
                Sink::Syslog => {
                    syslog(kind, message);
                    Ok(())
                }
                Sink::Topic => {
                    topic::push(kind, line.trim_end());
                    Ok(())
                }
            };
        }
    }
}

/// Connects to the system log as Mosquitto does: ident `shardmq`, facility
/// daemon.
fn open_syslog() {
    // SAFETY: the ident is a static NUL-terminated string, as openlog(3)
    // requires (it keeps the pointer).
    unsafe { libc::openlog(c"shardmq".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) }
}

/// The syslog(3) priority of a line of type `kind`.
fn priority(kind: LogType) -> libc::c_int {
    match kind {
        LogType::Error => libc::LOG_ERR,
        LogType::Warning => libc::LOG_WARNING,
        LogType::Notice => libc::LOG_NOTICE,
        LogType::Debug => libc::LOG_DEBUG,
        LogType::Information | LogType::Subscribe | LogType::Unsubscribe | LogType::Websockets => {
            libc::LOG_INFO
        }
    }
}

fn syslog(kind: LogType, message: &str) {
    let text = std::ffi::CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: both strings are NUL-terminated; the format takes one string.
    unsafe { libc::syslog(priority(kind), c"%s".as_ptr(), text.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("shardmq-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join(name)
    }

    #[test]
    fn file_lines_are_stamped_and_appended() {
        let path = temp("append.log");
        std::fs::write(&path, "before\n").expect("write");
        let config = Config {
            log_dests: vec![LogDest::File(path.clone())],
            ..Config::default()
        };
        let mut output = Output::open(&config).expect("open");
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        output.write(LogType::Notice, "New connection", at);
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "before\n1700000000: New connection\n");
    }

    #[test]
    fn a_file_that_cannot_open_is_named() {
        let path = PathBuf::from("/nonexistent-shardmq-dir/broker.log");
        let config = Config {
            log_dests: vec![LogDest::Stderr, LogDest::File(path)],
            ..Config::default()
        };
        let err = Output::open(&config).err().expect("refused");
        assert!(
            err.starts_with("log_dest file /nonexistent-shardmq-dir/broker.log: cannot open"),
            "{err}"
        );
    }

    #[test]
    fn syslog_priorities() {
        assert_eq!(priority(LogType::Error), libc::LOG_ERR);
        assert_eq!(priority(LogType::Subscribe), libc::LOG_INFO);
    }
}
