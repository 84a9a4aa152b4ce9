//! Mosquitto's command-line clients speaking MQTT 5.0 (`-V 5`) to a test
//! broker: a `mosquitto_sub` left running while a test publishes, and a
//! `mosquitto_pub` run to completion. Both need `mosquitto-clients`
//! (which the test command installs).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::ChildGuard;

const INSTALL: &str = "apt-get update && apt-get install -y mosquitto-clients";

/// How long either client may take for any one step.
const LIMIT: Duration = Duration::from_secs(10);

/// What starts each message line `mosquitto_sub -F` prints, to tell it
/// from the `-d` debug lines.
const MARK: &str = "MSG|";

/// A running `mosquitto_sub -V 5 -d`, subscribed.
pub struct MosquittoSub {
    _child: ChildGuard,
    lines: mpsc::Receiver<String>,
    /// Messages printed before the SUBACK (from a resumed session).
    early: VecDeque<String>,
}

impl MosquittoSub {
    /// Starts `mosquitto_sub -V 5` as client `id` on `filter`, printing
    /// each message in `format` (`-F`), with `extra` arguments (`-q 2`,
    /// `-D connect receive-maximum 1`...); returns once its SUBACK came.
    pub fn start(port: u16, id: &str, filter: &str, format: &str, extra: &[&str]) -> MosquittoSub {
        // stdbuf: line-buffered output through the pipe, so SUBACK is seen.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub", "-h", "127.0.0.1", "-V", "5", "-d"])
            .args(["-p", &port.to_string(), "-i", id, "-t", filter])
            .args(["-F", &format!("{MARK}{format}")])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run mosquitto_sub ({e}); install it: {INSTALL}"));
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut sub = MosquittoSub {
            _child: ChildGuard(child),
            lines,
            early: VecDeque::new(),
        };
        let seen = sub.until(|l| l.contains("received SUBACK"));
        assert!(
            seen.last().is_some_and(|l| !l.contains("failure")),
            "mosquitto_sub {filter}: {seen:?}"
        );
        sub.early = seen
            .into_iter()
            .filter_map(|l| l.strip_prefix(MARK).map(String::from))
            .collect();
        sub
    }

    /// Lines up to and including the first for which `done` holds.
    fn until(&self, done: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(LIMIT) {
                Ok(l) => {
                    let last = done(&l);
                    seen.push(l);
                    if last {
                        return seen;
                    }
                }
                Err(e) => panic!("mosquitto_sub: {e:?}; output so far: {seen:?}"),
            }
        }
    }

    /// The next message, as its `-F` format printed it.
    pub fn message(&mut self) -> String {
        if let Some(early) = self.early.pop_front() {
            return early;
        }
        let line = self.until(|l| l.starts_with(MARK)).pop().expect("a line");
        line[MARK.len()..].to_string()
    }

    /// The next `n` messages.
    pub fn messages(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.message()).collect()
    }

    /// Asserts that no message is printed for `d` (debug lines may be).
    pub fn expect_no_message(&self, d: Duration) {
        assert!(
            self.early.is_empty(),
            "expected no message, got {:?}",
            self.early
        );
        let deadline = std::time::Instant::now() + d;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => assert!(!l.starts_with(MARK), "expected no message, got {l:?}"),
                Err(_) => return,
            }
        }
    }
}

/// Runs `mosquitto_pub -V 5` as client `id` with `args` (`-t`, `-m`,
/// `-q`, `-D publish ...`; `-l` to publish each line of `stdin`) to
/// completion (killed after 10 s); returns its exit status and output.
pub fn mosquitto_pub_v5(port: u16, id: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new("timeout")
        .args(["10", "mosquitto_pub", "-h", "127.0.0.1", "-V", "5"])
        .args(["-p", &port.to_string(), "-i", id])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run mosquitto_pub ({e}); install it: {INSTALL}"));
    // Dropped after writing: mosquitto_pub -l sees the end of its input.
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .expect("mosquitto_pub stdin");
    }
    child.wait_with_output().expect("mosquitto_pub output")
}
