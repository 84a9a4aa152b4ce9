//! Interoperability with Mosquitto's command-line clients (`mosquitto_sub`,
//! `mosquitto_pub`), 3.1.1 and 5.0, QoS 0/1/2 and retained, publisher and
//! subscriber homed on different shards; a 5.0 delayed will reaching
//! `mosquitto_sub`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;

const INSTALL: &str = "apt-get update && apt-get install -y mosquitto mosquitto-clients";

/// A running `mosquitto_sub -d -v` and its output lines.
struct Sub {
    _child: ChildGuard,
    lines: mpsc::Receiver<String>,
}

impl Sub {
    /// Starts `mosquitto_sub` and waits for its SUBACK.
    fn start(b: &TestBroker, version: &str, filter: &str, qos: u8, count: usize) -> Sub {
        // stdbuf: line-buffered output through the pipe, so SUBACK is seen.
        let mut child = Command::new("stdbuf")
            .args(["-oL", "mosquitto_sub"])
            .args(common_args(b, version, qos))
            .args([
                "-t",
                filter,
                "-C",
                &count.to_string(),
                "-W",
                "10",
                "-d",
                "-v",
                "-i",
                &b.id_on(1, "msub"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run mosquitto_sub ({e}); install it with `{INSTALL}`")
            });
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut sub = Sub {
            _child: ChildGuard(child),
            lines,
        };
        sub.until(|l| l.contains("received SUBACK"));
        sub
    }

    /// Lines up to and including the first matching one.
    fn until(&mut self, f: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(10)) {
                Ok(l) => {
                    let done = f(&l);
                    seen.push(l);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("mosquitto_sub: {e:?}; output so far: {seen:?}"),
            }
        }
    }

    /// The `PUBLISH (dX, qX, rX, ...` descriptions and `topic payload` lines
    /// until the client exits.
    fn rest(self) -> Vec<String> {
        self.lines
            .iter()
            .filter(|l| l.contains("received PUBLISH") || l.starts_with("mq/"))
            .collect()
    }
}

/// Host, port, protocol version and QoS arguments of both clients.
fn common_args(b: &TestBroker, version: &str, qos: u8) -> Vec<String> {
    let port = b.addr.port().to_string();
    [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        version,
        "-q",
        &qos.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

fn mosquitto_pub(b: &TestBroker, version: &str, topic: &str, payload: &str, qos: u8, retain: bool) {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(common_args(b, version, qos)).args([
        "-t",
        topic,
        "-m",
        payload,
        "-i",
        &b.id_on(0, "mpub"),
    ]);
    if retain {
        cmd.arg("-r");
    }
    let mut child =
        ChildGuard(cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run mosquitto_pub ({e}); install it with `{INSTALL}`")
        }));
    let status = child.wait_within(Duration::from_secs(10), &format!("mosquitto_pub {topic}"));
    assert!(status.success(), "mosquitto_pub {topic}: {status}");
}

#[test]
fn mosquitto_clients_each_qos_both_versions() {
    let b = TestBroker::start(2);
    for version in ["mqttv311", "mqttv5"] {
        let topic = format!("mq/{version}");
        let sub = Sub::start(&b, version, &format!("{topic}/#"), 2, 3);
        for qos in 0..3u8 {
            mosquitto_pub(
                &b,
                version,
                &format!("{topic}/{qos}"),
                &format!("payload{qos}"),
                qos,
                false,
            );
        }
        let got = sub.rest();
        for qos in 0..3u8 {
            assert!(
                got.contains(&format!("{topic}/{qos} payload{qos}")),
                "{version} QoS {qos}: {got:?}"
            );
            assert!(
                got.iter().any(|l| l.contains(&format!("(d0, q{qos}, r0,"))),
                "{version}: delivered at QoS {qos}: {got:?}"
            );
        }
    }
}

#[test]
fn mosquitto_clients_retained_both_versions() {
    let b = TestBroker::start(2);
    for version in ["mqttv311", "mqttv5"] {
        let topic = format!("mq/ret/{version}");
        mosquitto_pub(&b, version, &topic, "kept", 1, true);
        let got = Sub::start(&b, version, &topic, 1, 1).rest();
        assert!(got.contains(&format!("{topic} kept")), "{version}: {got:?}");
        assert!(
            got.iter().any(|l| l.contains("(d0, q1, r1,")),
            "{version}: retained flag set: {got:?}"
        );
    }
}

#[test]
fn mosquitto_sub_v5_receives_a_delayed_will() {
    let b = TestBroker::start(2);
    let sub = Sub::start(&b, "mqttv5", "mq/will/#", 1, 1);
    let connect = with_delayed_will(&b.id_on(0, "mq-dying"), 60, "mq/will/delay", 1);
    let start = std::time::Instant::now();
    drop(RawClient::connected(b.addr, connect));
    let got = sub.rest();
    assert!(got.contains(&"mq/will/delay gone".to_string()), "{got:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "held back 1 s: {:?}",
        start.elapsed()
    );
}
