//! Logging as users run it: the `shardmq` binary with `log_dest file`
//! (rotated by SIGHUP), `log_dest topic`, `connection_messages` and
//! `log_type subscribe`, checked in what the broker wrote.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::mosquitto::temp_dir;
use common::{connect_packet, free_port, ChildGuard, RawClient};
use shardmq::protocol::{Packet, ProtocolVersion, QoS};

const BROKER: &str = env!("CARGO_BIN_EXE_shardmq");

/// How long a line may take to reach its destination.
const WITHIN: Duration = Duration::from_secs(10);

/// A `shardmq -c <file>` child on a free port.
struct Broker {
    child: ChildGuard,
    port: u16,
    conf: PathBuf,
}

impl Broker {
    /// Starts the binary on `listener <free port>` and `body`; waits until
    /// it accepts connections.
    fn start(dir: &Path, body: &str) -> Broker {
        let port = free_port();
        let conf = dir.join("shardmq.conf");
        write_conf(&conf, port, body);
        let child = Command::new(BROKER)
            .args(["-c", conf.to_str().unwrap(), "--shards", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the shardmq binary");
        let broker = Broker {
            child: ChildGuard(child),
            port,
            conf,
        };
        let deadline = Instant::now() + WITHIN;
        while std::net::TcpStream::connect(broker.addr()).is_err() {
            assert!(Instant::now() < deadline, "the broker does not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Rewrites the configuration with `body` and sends SIGHUP.
    fn hangup(&self, body: &str) {
        write_conf(&self.conf, self.port, body);
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.0.id() as libc::pid_t, libc::SIGHUP) };
    }

    fn client(&self, id: &str) -> RawClient {
        let connect = connect_packet(ProtocolVersion::V311, id, true, 60);
        RawClient::connected(self.addr(), connect).0
    }
}

/// Writes a configuration: `listener <port>` on 127.0.0.1, anonymous
/// clients allowed, then `body`.
fn write_conf(conf: &Path, port: u16, body: &str) {
    let text = format!("listener {port} 127.0.0.1\nallow_anonymous true\n{body}");
    std::fs::write(conf, text).unwrap();
}

/// Waits until `path` holds a line containing `text`; returns the line.
fn wait_line(path: &Path, text: &str) -> String {
    let deadline = Instant::now() + WITHIN;
    loop {
        let log = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains(text)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "{}: no line with {text:?}:\n{log}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `line` without its `<unix seconds>: ` stamp (which must be there).
fn unstamped(line: &str) -> &str {
    let (seconds, rest) = line.split_once(": ").expect("a stamp");
    assert!(seconds.parse::<u64>().is_ok(), "stamp of {line:?}");
    rest
}

#[test]
fn a_log_file_gets_connection_and_subscribe_lines_and_is_reopened_by_sighup() {
    let dir = temp_dir("log-file");
    let log = dir.join("broker.log");
    let body = format!("log_dest file {}\nlog_type all\n", log.display());
    let broker = Broker::start(&dir, &body);

    let mut c = broker.client("logged-1");
    c.subscribe("a/b", QoS::AtLeastOnce);
    let new = wait_line(&log, "New connection from 127.0.0.1:");
    assert!(
        new.ends_with(&format!(" on port {}.", broker.port)),
        "{new}"
    );
    let connected = wait_line(&log, " as logged-1 ");
    assert!(
        unstamped(&connected).starts_with("New client connected from 127.0.0.1:"),
        "{connected}"
    );
    assert!(
        connected.ends_with(" as logged-1 (p2, c1, k60)."),
        "{connected}"
    );
    assert_eq!(unstamped(&wait_line(&log, "logged-1 1 ")), "logged-1 1 a/b");
    c.disconnect();
    wait_line(&log, "Client logged-1 disconnected.");

    // logrotate: move the file, SIGHUP; the broker opens a new one. The
    // reload also applies a new log_type (no subscribe lines).
    let rotated = dir.join("broker.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    broker.hangup(&format!(
        "log_dest file {}\nlog_type notice\n",
        log.display()
    ));
    let deadline = Instant::now() + WITHIN;
    while !log.exists() {
        assert!(Instant::now() < deadline, "no new log file after SIGHUP");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut c = broker.client("logged-2");
    c.subscribe("c/d", QoS::AtMostOnce);
    c.disconnect();
    wait_line(&log, " as logged-2 (p2, c1, k60).");
    wait_line(&log, "Client logged-2 disconnected.");
    drop(broker.client("dropped"));
    wait_line(&log, "Client dropped closed its connection.");
    let new_log = std::fs::read_to_string(&log).unwrap();
    assert!(!new_log.contains("logged-2 0 c/d"), "{new_log}");
    let old_log = std::fs::read_to_string(&rotated).unwrap();
    assert!(!old_log.contains("logged-2"), "{old_log}");
}

#[test]
fn keepalive_timeouts_and_takeovers_are_logged_as_in_mosquitto() {
    let dir = temp_dir("log-close");
    let log = dir.join("broker.log");
    let broker = Broker::start(&dir, &format!("log_dest file {}\n", log.display()));
    let connect = connect_packet(ProtocolVersion::V311, "idle", true, 1);
    let _idle = RawClient::connected(broker.addr(), connect).0;
    let _first = broker.client("twice");
    let _second = broker.client("twice");
    wait_line(
        &log,
        "Client twice already connected, closing old connection.",
    );
    // 1.5 times the keep alive of 1 s without a packet.
    wait_line(&log, "Client idle has exceeded timeout, disconnecting.");
}

#[test]
fn connection_messages_false_leaves_them_out() {
    let dir = temp_dir("log-quiet");
    let log = dir.join("broker.log");
    let body = format!(
        "log_dest file {}\nlog_type all\nconnection_messages false\n",
        log.display()
    );
    let broker = Broker::start(&dir, &body);
    let mut c = broker.client("quiet");
    c.subscribe("q/#", QoS::AtMostOnce);
    // The subscribe line comes after the client's connection lines.
    wait_line(&log, "quiet 0 q/#");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("New connection"), "{text}");
    assert!(!text.contains("New client connected"), "{text}");
}

#[test]
fn log_dest_topic_publishes_lines_to_sys_broker_log() {
    let dir = temp_dir("log-topic");
    let broker = Broker::start(&dir, "log_dest topic\nlog_dest stderr\n");
    // On shard 1: shard 0 publishes the lines, so they cross the mesh.
    let mut watcher = broker.client(&common::id_on(1, 2, "log-watcher"));
    watcher.subscribe("$SYS/broker/log/#", QoS::AtMostOnce);
    let _seen = broker.client("seen-in-the-log");
    let deadline = Instant::now() + WITHIN;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no connection line on $SYS/broker/log/N");
        let Some(Some(Packet::Publish(p))) = watcher.recv_within(left) else {
            continue;
        };
        let text = String::from_utf8_lossy(&p.payload).into_owned();
        if text.contains(" as seen-in-the-log ") {
            assert_eq!(p.topic.as_str(), "$SYS/broker/log/N");
            assert!(
                unstamped(&text).starts_with("New client connected from 127.0.0.1:"),
                "{text}"
            );
            break;
        }
    }
}

#[test]
fn a_log_file_that_cannot_be_opened_stops_the_start_with_its_line() {
    let dir = temp_dir("log-bad-file");
    let conf = dir.join("shardmq.conf");
    std::fs::write(
        &conf,
        "listener 0 127.0.0.1\nlog_dest file /nonexistent-shardmq/broker.log\n",
    )
    .unwrap();
    let out = Command::new(BROKER)
        .args(["-c", conf.to_str().unwrap()])
        .output()
        .expect("run the shardmq binary");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:2: log_dest: cannot open /nonexistent-shardmq/broker.log for appending",
            conf.display()
        )),
        "{stderr}"
    );
}
