//! `log_dest topic`: log lines published by the broker to
//! `$SYS/broker/log/<letter>` (E, W, N, I, M, U, WS; debug lines are not
//! published, as in Mosquitto).
//!
//! Any thread may log, but only a shard may publish: lines wait in one
//! bounded queue ([`LOG_TOPIC_QUEUE`]; a line beyond it is dropped and
//! counted, never logged about) that shard 0 drains on its tick
//! ([`drain`]). A line logged while a drained line is being published (on
//! that thread) does not go back into the queue, so publishing log lines
//! never feeds itself.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::LogType;
use crate::limits::LOG_TOPIC_QUEUE;

/// A line waiting to be published: made by whichever thread logs it,
/// owned by the queue, then by shard 0 that publishes it.
pub struct LogLine {
    /// Its type: the topic's last level.
    pub kind: LogType,
    /// The line, stamped as in the other destinations, without newline.
    pub text: String,
}

impl LogLine {
    /// `$SYS/broker/log/<letter>`.
    pub fn topic(&self) -> String {
        format!("$SYS/broker/log/{}", self.kind.letter())
    }
}

type Queue = (Sender<LogLine>, Receiver<LogLine>);

static QUEUE: OnceLock<Queue> = OnceLock::new();

/// Lines dropped because the queue was full, since the start.
static DROPPED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set while this thread publishes drained lines.
    static DRAINING: Cell<bool> = const { Cell::new(false) };
}

fn queue() -> &'static Queue {
    QUEUE.get_or_init(|| crossbeam_channel::bounded(LOG_TOPIC_QUEUE))
}

/// Queues `text` for publishing, unless it is a debug line, this thread is
/// publishing drained lines, or the queue is full (then it is counted).
pub(super) fn push(kind: LogType, text: &str) {
    if kind == LogType::Debug || DRAINING.get() {
        return;
    }
    let line = LogLine {
        kind,
        text: text.to_string(),
    };
    if let Err(TrySendError::Full(_)) = queue().0.try_send(line) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Lines dropped because the queue was full, since the start.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Hands at most `max` queued lines to `publish`, oldest first; returns
/// how many. What `publish` logs is not queued again.
pub fn drain(max: usize, mut publish: impl FnMut(LogLine)) -> usize {
    /// Clears [`DRAINING`] however the drain ends.
    struct Draining;
    impl Drop for Draining {
        fn drop(&mut self) {
            DRAINING.set(false);
        }
    }
    let Some((_, receiver)) = QUEUE.get() else {
        return 0; // nothing was ever logged to the topic
    };
    DRAINING.set(true);
    let _reset = Draining;
    let mut n = 0;
    while n < max {
        let Ok(line) = receiver.try_recv() else {
            break;
        };
        publish(line);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test: the queue is process-wide.
    #[test]
    fn lines_queue_bounded_and_drain_without_feeding_back() {
        while drain(usize::MAX, |_| {}) > 0 {}
        push(LogType::Debug, "not published");
        push(LogType::Notice, "1: one");
        push(LogType::Subscribe, "1: c 0 a/b");
        let mut seen = Vec::new();
        let n = drain(10, |line| {
            push(LogType::Warning, "logged while publishing");
            seen.push((line.topic(), line.text));
        });
        assert_eq!(n, 2);
        assert_eq!(
            seen,
            [
                ("$SYS/broker/log/N".to_string(), "1: one".to_string()),
                ("$SYS/broker/log/M".to_string(), "1: c 0 a/b".to_string()),
            ]
        );
        assert_eq!(drain(10, |_| {}), 0, "nothing fed back");
        let before = dropped();
        for _ in 0..LOG_TOPIC_QUEUE + 3 {
            push(LogType::Error, "x");
        }
        assert_eq!(dropped() - before, 3);
        assert_eq!(drain(usize::MAX, |_| {}), LOG_TOPIC_QUEUE);
    }
}
