//! The shardmq binary as a child process journaling into a directory, for
//! tests that `kill -9` it; and a publisher that keeps what was
//! acknowledged.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shardmq::protocol::{Packet, ProtocolVersion, PubResp, QoS};

use super::{connect_packet, id_on, publish, ChildGuard, RawClient};

const BROKER: &str = env!("CARGO_BIN_EXE_shardmq");
const SHARDS: usize = 2;

/// The broker binary, `--shards 2`, journaling into `dir`.
pub struct Process {
    child: ChildGuard,
    pub addr: SocketAddr,
}

impl Process {
    /// Listening on `port`, `persistence_sync sync`.
    pub fn start(dir: &Path, port: u16, sync: &str) -> Process {
        Process::start_with(dir, port, sync, "")
    }

    /// [`Process::start`] with more configuration lines (`extra`).
    pub fn start_with(dir: &Path, port: u16, sync: &str, extra: &str) -> Process {
        let conf = dir.join("broker.conf");
        let text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
             persistence_location {}\npersistence_sync {sync}\n{extra}",
            dir.display()
        );
        std::fs::write(&conf, text).expect("config");
        // Its log, kept with the journal for a failure's post-mortem.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("broker.log"))
            .expect("log file");
        let child = Command::new(BROKER)
            .args(["-c", conf.to_str().expect("utf-8"), "--shards"])
            .arg(SHARDS.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the shardmq binary");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the broker never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        Process {
            child: ChildGuard(child),
            addr,
        }
    }

    /// Waits until every shard holds a retained message on `topic` (one
    /// the bridge publishes at its start, say: the mesh keeps order, so
    /// each shard has the bridge's subscriptions then too).
    pub fn wait_retained(&self, topic: &str) {
        for shard in 0..SHARDS {
            let id = id_on(shard, SHARDS, "retained-probe");
            let connect = connect_packet(ProtocolVersion::V5, &id, true, 60);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (mut c, _) = RawClient::connected(self.addr, connect.clone());
                c.subscribe(topic, QoS::AtMostOnce);
                if let Some(Some(Packet::Publish(_))) = c.recv_within(Duration::from_millis(200)) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "shard {shard}: no retained {topic}"
                );
            }
        }
    }

    pub fn kill_9(mut self) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.0.id() as i32, libc::SIGKILL) };
        self.child
            .wait_within(Duration::from_secs(5), "the killed broker");
    }
}

/// Publishes `n` messages to `topic` at `qos` as client `id` and returns
/// the payloads (`<id>-<i>`) the broker acknowledged (PUBACK, or PUBREC
/// for QoS 2 whose flow is completed).
pub fn publish_acked(addr: SocketAddr, id: &str, topic: &str, qos: QoS, n: u16) -> Vec<String> {
    let version = ProtocolVersion::V5;
    let (mut p, _) = RawClient::connected(addr, connect_packet(version, id, true, 60));
    let mut acked = Vec::new();
    for i in 1..=n {
        let payload = format!("{id}-{i}");
        p.send(&Packet::Publish(publish(
            topic,
            payload.as_bytes(),
            qos,
            false,
            i,
        )));
        match p.recv() {
            Some(Packet::PubAck(a)) | Some(Packet::PubRec(a)) => {
                assert!(!a.reason.is_error(), "{a:?}");
                if qos == QoS::ExactlyOnce {
                    p.send(&Packet::PubRel(PubResp::new(a.packet_id)));
                    assert!(matches!(p.recv(), Some(Packet::PubComp(_))));
                }
                acked.push(payload);
            }
            other => panic!("expected an acknowledgement, got {other:?}"),
        }
    }
    acked
}
