//! Where log lines go: every `log_dest` at once, behind one mutex taken
//! once per written line (logging is not the data path).
//!
//! A shard thread batches: its lines for the stream destinations (stdout,
//! stderr, files) collect in a thread-local buffer, bounded by
//! [`LOG_BATCH_BYTES`], that its loop writes at the end of each turn (see
//! [`LineBatch`]): one `write` per destination per turn, not one per line,
//! so a burst of connections does not pay three writes each for its
//! connection lines. Syslog and topic lines go one by one as before.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::stamp::Stamp;
use super::{topic, LogType};
use crate::config::{Config, LogDest};
use crate::limits::LOG_BATCH_BYTES;

thread_local! {
    /// This thread's lines for the stream destinations, not yet written;
    /// `None` on a thread that does not batch.
    static BATCH: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// While alive, the thread that started it batches its lines (see the
/// module doc); [`flush_batch`] writes them. Dropped (the thread's loop
/// ended, or it unwinds), it writes what is left and stops batching.
/// Thread-local: `!Send`.
pub struct LineBatch(std::marker::PhantomData<*const ()>);

impl LineBatch {
    /// Starts batching this thread's lines.
    pub fn start() -> LineBatch {
        BATCH.with(|b| *b.borrow_mut() = Some(String::new()));
        LineBatch(std::marker::PhantomData)
    }
}

impl Drop for LineBatch {
    fn drop(&mut self) {
        flush_batch();
        BATCH.with(|b| *b.borrow_mut() = None);
    }
}

/// Writes this thread's batched lines, if any.
pub fn flush_batch() {
    if BATCH.with(|b| b.borrow().as_ref().is_some_and(|t| !t.is_empty())) {
        flush_batch_to(&mut output());
    }
}

fn flush_batch_to(output: &mut Output) {
    BATCH.with(|b| {
        // Busy only if this thread panicked inside logging: nothing to do.
        let Ok(mut batch) = b.try_borrow_mut() else {
            return;
        };
        if let Some(text) = batch.as_mut().filter(|t| !t.is_empty()) {
            output.write_streams(text);
            text.clear();
        }
    });
}

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
        if !self.batch(&line) {
            self.write_streams(&line);
        }
        for sink in &mut self.sinks {
            match sink {
                Sink::Syslog => syslog(kind, message),
                Sink::Topic => topic::push(kind, line.trim_end()),
                _ => {}
            }
        }
    }

    /// Adds `line` to this thread's batch; false if the thread does not
    /// batch. A batch that reaches [`LOG_BATCH_BYTES`] is written at once.
    fn batch(&mut self, line: &str) -> bool {
        BATCH.with(|b| {
            let mut batch = b.borrow_mut();
            let Some(text) = batch.as_mut() else {
                return false;
            };
            text.push_str(line);
            if text.len() >= LOG_BATCH_BYTES {
                self.write_streams(text);
                text.clear();
            }
            true
        })
    }

    /// Writes `text` (whole lines) to stdout, stderr and the files.
    fn write_streams(&mut self, text: &str) {
        for sink in &mut self.sinks {
            // A log line that cannot be written has nowhere else to go.
            let _ = match sink {
                Sink::Stdout => std::io::stdout().lock().write_all(text.as_bytes()),
                Sink::Stderr => std::io::stderr().lock().write_all(text.as_bytes()),
                Sink::File(_, Some(file)) => file.write_all(text.as_bytes()),
                _ => Ok(()),
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
    fn a_batching_thread_writes_its_lines_when_flushed_or_when_the_batch_is_full() {
        let path = temp("batch.log");
        let _ = std::fs::remove_file(&path);
        let config = Config {
            log_dests: vec![LogDest::File(path.clone())],
            ..Config::default()
        };
        let mut output = Output::open(&config).expect("open");
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let read = || std::fs::read_to_string(&path).expect("read");

        let batch = LineBatch::start();
        output.write(LogType::Notice, "one", at);
        output.write(LogType::Notice, "two", at);
        assert_eq!(read(), "", "a batched line was written before the flush");
        flush_batch_to(&mut output);
        assert_eq!(read(), "1700000000: one\n1700000000: two\n");

        let long = "x".repeat(1000);
        let mut lines = 0;
        while read().len() == 32 {
            output.write(LogType::Notice, &long, at);
            lines += 1;
            assert!(
                lines * 1000 <= LOG_BATCH_BYTES + 1000,
                "the batch grew past its bound"
            );
        }
        assert!(
            lines * 1000 >= LOG_BATCH_BYTES - 1000,
            "written before the batch was full"
        );

        drop(batch);
        let before = read().len();
        output.write(LogType::Notice, "three", at);
        assert_eq!(read().len(), before + "1700000000: three\n".len());
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
