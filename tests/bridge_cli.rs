//! The bridge as users run it: the `shardmq` binary with a config file,
//! real command-line clients (MQTT.js, the library MQTTX CLI is built on),
//! logs, bad sections, and SIGHUP reloads.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mosquitto::{temp_dir, Mosquitto};
use common::{connect_packet, free_port, ChildGuard, RawClient};
use shardmq::protocol::{Packet, ProtocolVersion, QoS};

const BROKER: &str = env!("CARGO_BIN_EXE_shardmq");
const NPM_INSTALL: &str = "npm install -g mqtt@5";

/// A `shardmq -c <file> -v` child and its log lines.
struct Edge {
    child: ChildGuard,
    port: u16,
    conf: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Edge {
    /// Writes `listener <free port>` and `body` to a config file and starts
    /// the broker on it; waits until it listens.
    fn start(test: &str, body: &str) -> Edge {
        let port = free_port();
        let conf = temp_dir(&format!("edge-{test}")).join("shardmq.conf");
        // Its local clients connect anonymously (with a configuration
        // file that needs `allow_anonymous true`, as in Mosquitto 2.0).
        let conf_text = format!("listener {port} 127.0.0.1\nallow_anonymous true\n{body}");
        std::fs::write(&conf, conf_text).unwrap();
        let mut child = ChildGuard(
            Command::new(BROKER)
                .args(["-c", conf.to_str().unwrap(), "--shards", "2", "-v"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start the shardmq binary"),
        );
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.0.stderr.take().expect("piped stderr");
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let edge = Edge {
            child,
            port,
            conf,
            lines,
        };
        edge.wait_line("listening on", Duration::from_secs(10));
        edge
    }

    fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn count(&self, text: &str) -> usize {
        self.log().iter().filter(|l| l.contains(text)).count()
    }

    /// Waits for a log line containing `text`; returns it.
    fn wait_line(&self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self.log().into_iter().find(|l| l.contains(text)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {text:?}:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn hangup(&self, body: &str) {
        std::fs::write(
            &self.conf,
            format!("listener {} 127.0.0.1\n{body}", self.port),
        )
        .unwrap();
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.0.id() as libc::pid_t, libc::SIGHUP) };
    }
}

#[test]
fn a_wrong_password_is_logged_with_the_reason_and_retried_with_backoff() {
    let up = Mosquitto::start("auth", |dir| {
        let passwd = dir.join("passwd");
        let made = Command::new("mosquitto_passwd")
            .args(["-b", "-c", passwd.to_str().unwrap(), "edge", "right"])
            .status()
            .expect("mosquitto_passwd (apt-get install mosquitto)");
        assert!(made.success());
        format!(
            "allow_anonymous false\npassword_file {}\n",
            passwd.display()
        )
    });
    let Some(up) = up else { return };
    let edge = Edge::start(
        "auth",
        &format!(
            "connection auth\naddress 127.0.0.1:{}\nremote_username edge\nremote_password wrong\n\
             restart_timeout 1\ntopic a/# out 1\n",
            up.port
        ),
    );
    let refused = edge.wait_line("refused the connection", Duration::from_secs(5));
    assert!(
        refused.contains("bridge auth: cannot connect to 127.0.0.1:")
            && refused.contains("NotAuthorized (return code 5)"),
        "names the bridge, the address and the reason: {refused}"
    );
    std::thread::sleep(Duration::from_millis(3200));
    let attempts = edge.count("bridge auth: connecting to");
    assert!(
        (2..=5).contains(&attempts),
        "restart_timeout 1: about one attempt a second, not a spin: {attempts}"
    );
}

#[test]
fn a_bad_bridge_section_stops_the_start_with_its_line_and_reason() {
    let dir = temp_dir("bad-bridge");
    let cases = [
        (
            "connection b\naddress 127.0.0.1:1\ntopic a/# sideways 1\n",
            "bad.conf:4: topic: expected out, in or both, got `sideways`",
        ),
        ("connection b\ntopic a/#\n", "bad.conf:2: connection: "),
        (
            "connection b\naddress 127.0.0.1:1\ntopic a/#\nbridge_cafile /nonexistent/ca.pem\n",
            "bridge b: bridge_cafile /nonexistent/ca.pem",
        ),
    ];
    for (body, expected) in cases {
        let conf = dir.join("bad.conf");
        std::fs::write(&conf, format!("listener {} 127.0.0.1\n{body}", free_port())).unwrap();
        let out = Command::new(BROKER)
            .args(["-c", conf.to_str().unwrap()])
            .output()
            .expect("run shardmq");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{body}: started anyway");
        assert!(stderr.contains(expected), "{body}: {stderr}");
    }
}

#[test]
fn sighup_adds_and_removes_bridges_without_disturbing_the_others() {
    let up = Mosquitto::run("reload", "");
    let one = format!(
        "connection one\naddress 127.0.0.1:{}\nremote_clientid edge-one\ntopic a/# out 1\n",
        up.port
    );
    let two = format!(
        "connection two\naddress 127.0.0.1:{}\nremote_clientid edge-two\ntopic b/# out 1\n",
        up.port
    );
    let edge = Edge::start("reload", &one);
    up.wait_log("as edge-one", Duration::from_secs(10));
    let (mut local, _) = RawClient::connected(
        edge.addr(),
        connect_packet(ProtocolVersion::V311, "stays", true, 60),
    );

    edge.hangup(&format!("{one}{two}"));
    up.wait_log("as edge-two", Duration::from_secs(10));
    edge.hangup(&two);
    up.wait_log(
        "Client edge-one closed its connection",
        Duration::from_secs(10),
    );
    let log = up.log();
    assert_eq!(
        log.matches("as edge-one").count(),
        1,
        "one was never restarted: {log}"
    );
    assert_eq!(
        log.matches("as edge-two").count(),
        1,
        "two was started once: {log}"
    );
    assert!(!log.contains("edge-two closed"), "{log}");

    // The local client saw none of it.
    local.send(&Packet::PingReq);
    assert_eq!(local.recv(), Some(Packet::PingResp));
    // And the running bridge still carries.
    let (mut sub, _) = RawClient::connected(
        up.addr(),
        connect_packet(ProtocolVersion::V311, "cloud-b", true, 60),
    );
    sub.subscribe("b/#", QoS::AtLeastOnce);
    local.publish("b/1", b"still", QoS::AtLeastOnce, false, 1);
    assert_eq!(&sub.expect_publish().payload[..], b"still");
}

/// `mqtt sub ...` (MQTT.js CLI) printing `topic payload` lines.
struct CliSub {
    child: ChildGuard,
    lines: std::sync::mpsc::Receiver<String>,
}

impl CliSub {
    fn start(port: u16, topic: &str) -> CliSub {
        let mut child = ChildGuard(
            Command::new("mqtt")
                .args([
                    "sub",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-t",
                    topic,
                ])
                .args(["-q", "1", "-v"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run `mqtt` ({e}); install it with `{NPM_INSTALL}`")
                }),
        );
        let stdout = child.0.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        CliSub { child, lines }
    }
}

fn cli_pub(port: u16, topic: &str, message: &str) {
    let status = Command::new("mqtt")
        .args(["pub", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", topic, "-m", message, "-q", "1"])
        .status()
        .unwrap_or_else(|e| panic!("cannot run `mqtt` ({e}); install it with `{NPM_INSTALL}`"));
    assert!(status.success(), "mqtt pub {topic}");
}

/// Publishes until `sub` prints `expected` (a CLI subscriber is ready
/// some time after it starts, and says nothing when it is).
fn until_received(sub: &CliSub, publish: impl Fn(), expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        publish();
        if let Ok(line) = sub.lines.recv_timeout(Duration::from_millis(700)) {
            assert_eq!(line, expected);
            return;
        }
        assert!(Instant::now() < deadline, "never received {expected:?}");
    }
}

/// The edge-to-cloud deployment of the README, with a local Mosquitto
/// standing in for the EMQX cluster and MQTT.js's CLI for MQTTX CLI.
#[test]
fn edge_to_cloud_with_command_line_clients() {
    let cloud = Mosquitto::run("cloud", "");
    let edge = Edge::start(
        "edge-to-cloud",
        &format!(
            "connection emqx1\naddress 127.0.0.1:{}\nbridge_protocol_version mqttv50\n\
             remote_clientid emqx_c\nremote_username emqx_u\nremote_password public\n\
             topic sensor/# out 1\ntopic control/# in 1\n",
            cloud.port
        ),
    );
    edge.wait_line("bridge emqx1: connected", Duration::from_secs(10));
    let at_cloud = CliSub::start(cloud.port, "sensor/#");
    until_received(
        &at_cloud,
        || cli_pub(edge.port, "sensor/1/temperature", "37.5"),
        "sensor/1/temperature 37.5",
    );
    let at_edge = CliSub::start(edge.port, "control/#");
    until_received(
        &at_edge,
        || cli_pub(cloud.port, "control/t/1", "I'm EMQX"),
        "control/t/1 I'm EMQX",
    );
    drop((at_cloud.child, at_edge.child));
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name (which may hold spaces): utime is the
    // 12th, stime the 13th.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// A connected, idle bridge costs nothing: the bridge thread parks until
/// its next keepalive (a loop that wakes for nothing would burn a core).
#[test]
fn an_idle_bridge_does_not_spin() {
    let up = Mosquitto::run("idle", "");
    let edge = Edge::start(
        "idle",
        &format!(
            "connection idle\naddress 127.0.0.1:{}\nkeepalive_interval 5\ntopic i/# both 1\n",
            up.port
        ),
    );
    edge.wait_line("bridge idle: connected", Duration::from_secs(10));
    // Past the first keepalive, and past the link's other periodic checks
    // (a primary probe's timer once spun the loop from 5 s on).
    std::thread::sleep(Duration::from_secs(5));
    let before = cpu_seconds(edge.child.0.id());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(edge.child.0.id()) - before;
    assert!(used < 0.1, "{used:.2} s of CPU in 2 s idle");
}
