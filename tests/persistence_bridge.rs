//! Durable bridge queues: a message a publisher had acknowledged for a
//! bridge `out` line reaches the upstream broker (a real Mosquitto) after
//! a `kill -9` of shardmq, whether the upstream was down or the message
//! was in flight on a live link; QoS 2 exactly once.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::mosquitto::Mosquitto;
use common::process::{publish_acked, Process};
use common::{connect_packet, free_port, RawClient};
use shardmq::protocol::{Packet, ProtocolVersion, PubResp, QoS};

/// The bridge's state notification, retained on every shard at its start.
const STATE: &str = "$SYS/broker/connection/edge-dur/state";

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shardmq-pbridge-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// A bridge to `127.0.0.1:<port>` sending `d/#` out at up to QoS 2, with a
/// persistent session on the remote.
fn bridge_section(port: u16) -> String {
    format!(
        "connection up\naddress 127.0.0.1:{port}\nremote_clientid edge-dur\n\
         bridge_protocol_version mqttv50\n\
         cleansession false\nrestart_timeout 1\ntopic d/# out 2\n"
    )
}

/// A subscriber to `d/#` at QoS 2 on `up`.
fn upstream_subscriber(up: &Mosquitto) -> RawClient {
    let connect = connect_packet(ProtocolVersion::V311, "cloud-sub", true, 60);
    let (mut sub, _) = RawClient::connected(up.addr(), connect);
    sub.subscribe("d/#", QoS::ExactlyOnce);
    sub
}

/// Payloads `sub` receives (completing each QoS 2 flow), counted, until
/// every one of `expected` has come, or `within` passes; then whatever
/// comes for 500 ms more (duplicates).
fn collect(sub: &mut RawClient, expected: &[String], within: Duration) -> BTreeMap<String, usize> {
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    let deadline = Instant::now() + within;
    let mut quiet_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let all = expected.iter().all(|e| got.contains_key(e));
        if all && quiet_until.is_none() {
            quiet_until = Some(now + Duration::from_millis(500));
        }
        let until = quiet_until.unwrap_or(deadline);
        if now >= until {
            return got;
        }
        match sub.recv_within(until - now) {
            Some(Some(Packet::Publish(p))) => {
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => sub.send(&Packet::PubAck(PubResp::new(id))),
                    (QoS::ExactlyOnce, Some(id)) => sub.send(&Packet::PubRec(PubResp::new(id))),
                    _ => {}
                }
                let payload = String::from_utf8_lossy(&p.payload).into_owned();
                *got.entry(payload).or_default() += 1;
            }
            Some(Some(Packet::PubRel(r))) => sub.send(&Packet::PubComp(PubResp::new(r.packet_id))),
            Some(Some(_)) | None => {}
            Some(None) => return got,
        }
    }
}

/// Every acknowledged payload arrived; the QoS 2 ones (`q2-` prefix)
/// exactly once.
fn check(what: &str, acked: &[String], got: &BTreeMap<String, usize>) {
    let missing: Vec<&String> = acked.iter().filter(|a| !got.contains_key(*a)).collect();
    assert!(
        missing.is_empty(),
        "{what}: acknowledged but lost: {missing:?}"
    );
    let twice: Vec<_> = got
        .iter()
        .filter(|(p, n)| p.starts_with("q2-") && **n > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "{what}: QoS 2 delivered more than once: {twice:?}"
    );
}

#[test]
fn acknowledged_bridge_messages_survive_kill_9_while_the_upstream_is_down() {
    for sync in ["written", "fsync"] {
        let d = dir(&format!("down-{sync}"));
        let (port, up_port) = (free_port(), free_port());
        let conf = bridge_section(up_port);
        let broker = Process::start_with(&d, port, sync, &conf);
        broker.wait_retained(STATE);
        let mut acked = publish_acked(broker.addr, "q1", "d/x", QoS::AtLeastOnce, 25);
        acked.extend(publish_acked(
            broker.addr,
            "q2",
            "d/x",
            QoS::ExactlyOnce,
            25,
        ));
        broker.kill_9();

        let up = Mosquitto::run_on(&format!("pbridge-down-{sync}"), up_port, "");
        let mut sub = upstream_subscriber(&up);
        let broker = Process::start_with(&d, port, sync, &conf);
        let got = collect(&mut sub, &acked, Duration::from_secs(15));
        check(sync, &acked, &got);
        drop(broker);
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn qos2_in_flight_on_a_live_link_at_kill_9_goes_exactly_once() {
    for sync in ["written", "fsync"] {
        in_flight_at_kill_9(sync);
    }
}

/// The upstream stops reading (SIGSTOP) while the bridge sends; shardmq
/// is killed with messages in flight, the upstream goes on, shardmq
/// restarts.
fn in_flight_at_kill_9(sync: &str) {
    let d = dir(&format!("live-{sync}"));
    let mut up = Mosquitto::run(&format!("pbridge-live-{sync}"), "");
    let mut sub = upstream_subscriber(&up);
    let port = free_port();
    let conf = bridge_section(up.port);
    let broker = Process::start_with(&d, port, sync, &conf);
    up.wait_log("as edge-dur", Duration::from_secs(10));
    broker.wait_retained(STATE);
    let mut acked = publish_acked(broker.addr, "q2-warm", "d/x", QoS::ExactlyOnce, 5);

    // The upstream stops reading: what the bridge writes stays in flight.
    let pid = up.pid() as i32;
    // SAFETY: signalling the Mosquitto child this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    acked.extend(publish_acked(
        broker.addr,
        "q2",
        "d/x",
        QoS::ExactlyOnce,
        30,
    ));
    acked.extend(publish_acked(
        broker.addr,
        "q1",
        "d/x",
        QoS::AtLeastOnce,
        30,
    ));
    std::thread::sleep(Duration::from_millis(200));
    broker.kill_9();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };

    let broker = Process::start_with(&d, port, sync, &conf);
    let got = collect(&mut sub, &acked, Duration::from_secs(15));
    check(&format!("live link, {sync}"), &acked, &got);
    drop(broker);
    up.kill();
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn the_bridge_journal_is_compacted_while_running() {
    let d = dir("compact");
    let up = Mosquitto::run("pbridge-compact", "");
    let mut sub = upstream_subscriber(&up);
    let port = free_port();
    let conf = format!("persistence_compact_size 4096\n{}", bridge_section(up.port));
    let broker = Process::start_with(&d, port, "written", &conf);
    broker.wait_retained(STATE);
    let acked = publish_acked(broker.addr, "q1", "d/x", QoS::AtLeastOnce, 300);
    let got = collect(&mut sub, &acked, Duration::from_secs(15));
    check("compaction", &acked, &got);
    let journal = d.join("shardmq.journal").join("bridge.journal");
    // 300 messages queued, sent and finished take ~40 KiB of records; the
    // live state is empty, so the file stays near the compaction bound
    // (once the last compaction, written off the loop, is in place).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let size = std::fs::metadata(&journal).expect("bridge journal").len();
        if size < 3 * 4096 {
            break;
        }
        assert!(Instant::now() < deadline, "bridge.journal is {size} B");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(d.join("broker.log")).expect("log");
    assert!(log.contains("bridge: journal compaction"), "{log}");
    drop(broker);
    let _ = std::fs::remove_dir_all(&d);
}

/// Messages a remote sent in on a link (`c/#`, QoS 1 and 2) are
/// acknowledged to it once the local shards have journaled them: once the
/// upstream has every acknowledgement, a kill -9 loses none, and QoS 2
/// ones are queued once.
#[test]
fn bridged_in_messages_the_upstream_saw_acknowledged_survive_kill_9() {
    let d = dir("in");
    let up = Mosquitto::run("pbridge-in", "");
    let port = free_port();
    let conf = format!("{}topic c/# in 2\n", bridge_section(up.port));
    let broker = Process::start_with(&d, port, "written", &conf);
    let connect = common::connect_v5_expiry("local-sub", true, 3600);
    let (mut sub, _) = RawClient::connected(broker.addr, connect);
    sub.subscribe("c/#", QoS::ExactlyOnce);
    sub.disconnect();
    up.wait_log("edge-dur 2 c/#", Duration::from_secs(10));
    let mut sent = publish_acked(up.addr(), "q1", "c/x", QoS::AtLeastOnce, 40);
    sent.extend(publish_acked(up.addr(), "q2", "c/x", QoS::ExactlyOnce, 40));
    let acks = || {
        let log = up.log();
        log.matches("Received PUBACK from edge-dur").count()
            + log.matches("Received PUBREC from edge-dur").count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while acks() < sent.len() {
        assert!(
            Instant::now() < deadline,
            "the bridge acknowledged {} of {}",
            acks(),
            sent.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    broker.kill_9();

    let broker = Process::start_with(&d, port, "written", &conf);
    let connect = common::connect_v5_expiry("local-sub", false, 3600);
    let (mut sub, present) = RawClient::connected(broker.addr, connect);
    assert!(present);
    let got = collect(&mut sub, &sent, Duration::from_secs(10));
    check("bridged in", &sent, &got);
    drop(broker);
    let _ = std::fs::remove_dir_all(&d);
}

/// A link whose `connection` section is gone at a restart loses its
/// journaled queue, with a log line; put back, it has nothing queued.
#[test]
fn a_link_no_longer_configured_drops_its_journal() {
    let d = dir("gone");
    let (port, up_port) = (free_port(), free_port());
    let conf = bridge_section(up_port);
    let broker = Process::start_with(&d, port, "written", &conf);
    broker.wait_retained(STATE);
    let acked = publish_acked(broker.addr, "q1", "d/x", QoS::AtLeastOnce, 5);
    broker.kill_9();
    let broker = Process::start_with(&d, port, "written", "");
    let line = "bridge up: no longer configured: its journal (5 queued messages) dropped";
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(d.join("broker.log")).expect("log");
        if log.contains(line) {
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
    broker.kill_9();

    let up = Mosquitto::run_on("pbridge-gone", up_port, "");
    let mut sub = upstream_subscriber(&up);
    let broker = Process::start_with(&d, port, "written", &conf);
    up.wait_log("as edge-dur", Duration::from_secs(10));
    let got = collect(&mut sub, &[], Duration::from_millis(500));
    let old: Vec<_> = acked.iter().filter(|a| got.contains_key(*a)).collect();
    assert!(old.is_empty(), "dropped with the link, yet sent: {old:?}");
    drop(broker);
    let _ = std::fs::remove_dir_all(&d);
}
