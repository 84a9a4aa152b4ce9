//! Shared subscriptions, `$share/<group>/<filter>` (MQTT 5.0 4.8.2, and
//! from 3.1.1 clients as Mosquitto and EMQX take them), with the members
//! of a group on different shards from each other and from the publisher:
//! each message goes to one member of each group, in turn; a member that
//! goes away hands its unacknowledged messages to another; with nobody
//! online, a persistent member's queue keeps them.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use shardmq::protocol::{Connect, Packet, ProtocolVersion, QoS, ReasonCode, SubscriptionOptions};

const V5: ProtocolVersion = ProtocolVersion::V5;
const QUIET: Duration = Duration::from_millis(400);

/// A member on `shard`, connected with `connect`'s settings for `id`,
/// subscribed to `filter` at QoS 1.
fn member(b: &TestBroker, connect: Connect, filter: &str) -> RawClient {
    let (mut c, _) = RawClient::connected(b.addr, connect);
    let ack = c.subscribe(filter, QoS::AtLeastOnce);
    assert_eq!(ack.codes, [ReasonCode::GrantedQoS1], "{filter}");
    c
}

/// A clean 5.0 member homed on `shard`.
fn v5_member(b: &TestBroker, shard: usize, name: &str, filter: &str) -> RawClient {
    member(
        b,
        connect_packet(V5, &b.id_on(shard, name), true, 60),
        filter,
    )
}

/// A clean publisher homed on shard 0.
fn publisher(b: &TestBroker, version: ProtocolVersion) -> RawClient {
    let (c, _) = RawClient::connected(
        b.addr,
        connect_packet(version, &b.id_on(0, "pub"), true, 60),
    );
    c
}

/// Publishes `n` QoS 1 messages `prefix-0..n` on `topic`.
fn publish_n(p: &mut RawClient, topic: &str, prefix: &str, n: u16) {
    for i in 0..n {
        p.publish(
            topic,
            format!("{prefix}-{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            i + 1,
        );
    }
}

/// Every PUBLISH that arrives until `QUIET` passes without one, as text;
/// acknowledged when `ack`.
fn received(c: &mut RawClient, ack: bool) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(packet) = c.recv_within(QUIET) {
        match packet {
            Some(Packet::Publish(p)) => {
                if ack {
                    c.ack(&p);
                }
                got.push(String::from_utf8_lossy(&p.payload).into_owned());
            }
            Some(other) => panic!("expected PUBLISH, got {other:?}"),
            None => panic!("connection closed"),
        }
    }
    got
}

fn all(prefix: &str, n: u16) -> BTreeSet<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[test]
fn each_message_goes_to_one_member_in_turn_across_shards() {
    let b = TestBroker::start(3);
    let filter = "$share/workers/jobs/#";
    let mut members: Vec<RawClient> = (0..3)
        .map(|shard| v5_member(&b, shard, "w", filter))
        .collect();
    // Another group and a plain subscriber each get every message.
    let mut other_group = v5_member(&b, 2, "audit", "$share/audit/jobs/+");
    let mut plain = v5_member(&b, 1, "plain", "jobs/#");
    let mut p = publisher(&b, V5);
    publish_n(&mut p, "jobs/a", "m", 30);

    let mut seen = BTreeSet::new();
    for (i, m) in members.iter_mut().enumerate() {
        let got = received(m, true);
        assert_eq!(
            got.len(),
            10,
            "member on shard {i}: round-robin share of 30"
        );
        for payload in got {
            assert!(seen.insert(payload), "a message went to two members");
        }
    }
    assert_eq!(seen, all("m", 30));
    assert_eq!(received(&mut other_group, true).len(), 30);
    assert_eq!(received(&mut plain, true).len(), 30);
    b.stop();
}

#[test]
fn members_speak_3_1_1_and_5_0_in_one_group() {
    let b = TestBroker::start(2);
    let filter = "$share/g/t";
    let mut old = member(
        &b,
        connect_packet(ProtocolVersion::V311, &b.id_on(1, "old"), true, 60),
        filter,
    );
    let mut new = v5_member(&b, 0, "new", filter);
    let mut p = publisher(&b, ProtocolVersion::V311);
    publish_n(&mut p, "t", "x", 8);
    let (a, c) = (received(&mut old, true), received(&mut new, true));
    assert_eq!((a.len(), c.len()), (4, 4));
    let both: BTreeSet<String> = a.into_iter().chain(c).collect();
    assert_eq!(both, all("x", 8));
    b.stop();
}

/// A member that goes away with QoS 1 messages unacknowledged (in flight
/// and queued behind its Receive Maximum): another member gets them.
fn handover_on_disconnect(persistent: bool) {
    let b = TestBroker::start(3);
    let filter = "$share/g/work";
    let mut connect = if persistent {
        connect_v5_expiry(&b.id_on(1, "slow"), true, 3600)
    } else {
        connect_packet(V5, &b.id_on(1, "slow"), true, 60)
    };
    connect.properties.receive_maximum = Some(2);
    let mut slow = member(&b, connect, filter);
    let mut steady = v5_member(&b, 2, "steady", filter);
    let mut p = publisher(&b, V5);
    publish_n(&mut p, "work", "w", 12);

    // The slow member holds 6: 2 in flight, 4 queued behind its window.
    let unacked = received(&mut slow, false);
    assert_eq!(unacked.len(), 2, "Receive Maximum 2");
    let mut got: BTreeSet<String> = received(&mut steady, true).into_iter().collect();
    assert_eq!(got.len(), 6);
    drop(slow);
    let handed: Vec<String> = received(&mut steady, true);
    assert_eq!(
        handed.len(),
        6,
        "the slow member's 6 come to the other: {handed:?}"
    );
    got.extend(handed);
    assert_eq!(got, all("w", 12));
    b.stop();
}

#[test]
fn a_member_that_disconnects_hands_its_messages_to_another() {
    handover_on_disconnect(false);
}

#[test]
fn a_persistent_member_that_disconnects_hands_its_messages_to_another() {
    handover_on_disconnect(true);
}

#[test]
fn with_no_member_online_a_persistent_member_queues_them() {
    let b = TestBroker::start(3);
    let filter = "$share/g/q/#";
    let id = b.id_on(2, "away");
    let away = member(&b, connect_v5_expiry(&id, true, 3600), filter);
    away.disconnect();
    let mut p = publisher(&b, V5);
    for i in 0..3u16 {
        p.send(&Packet::Publish(publish(
            "q/1",
            format!("q-{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            i + 1,
        )));
        match p.recv() {
            Some(Packet::PubAck(ack)) => {
                assert_eq!(ack.reason, ReasonCode::Success, "a member matched")
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    let (mut back, present) = RawClient::connected(b.addr, connect_v5_expiry(&id, false, 3600));
    assert!(present);
    let got: BTreeSet<String> = received(&mut back, true).into_iter().collect();
    assert_eq!(got, all("q", 3));
    b.stop();
}

#[test]
fn unsubscribing_leaves_the_group_and_no_retained_message_is_sent() {
    let b = TestBroker::start(2);
    let filter = "$share/g/r";
    let mut p = publisher(&b, V5);
    p.publish("r", b"retained", QoS::AtLeastOnce, true, 1);
    let mut a = v5_member(&b, 1, "a", filter);
    let mut c = v5_member(&b, 0, "c", filter);
    a.expect_silence(QUIET);
    c.expect_silence(QUIET);

    a.send(&Packet::Unsubscribe(shardmq::protocol::Unsubscribe {
        packet_id: pid(2),
        filters: vec![shardmq::protocol::TopicFilter::from_str(filter).unwrap()],
        properties: Default::default(),
    }));
    match a.recv() {
        Some(Packet::UnsubAck(u)) => assert_eq!(u.codes, [ReasonCode::Success]),
        other => panic!("expected UNSUBACK, got {other:?}"),
    }
    publish_n(&mut p, "r", "u", 4);
    assert_eq!(
        received(&mut c, true).len(),
        4,
        "the one member left gets all"
    );
    a.expect_silence(QUIET);
    b.stop();
}

#[test]
fn no_local_on_a_shared_subscription_is_a_protocol_error() {
    let b = TestBroker::start(2);
    let (mut c, _) = RawClient::connected(b.addr, connect_packet(V5, "nl", true, 60));
    let opts = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::new(QoS::AtLeastOnce)
    };
    c.send(&Packet::Subscribe(shardmq::protocol::Subscribe {
        packet_id: pid(1),
        filters: vec![(
            shardmq::protocol::TopicFilter::from_str("$share/g/t").unwrap(),
            opts,
        )],
        properties: Default::default(),
    }));
    let got = c.expect_closed();
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::ProtocolError),
        "{got:?}"
    );
    b.stop();
}

#[test]
fn hash_topic_keeps_each_topic_with_one_member() {
    let b = TestBroker::with(3, |c| {
        c.shared_subscription_strategy = shardmq::index::Strategy::HashTopic;
    });
    let filter = "$share/g/s/+";
    let mut members: Vec<RawClient> = (1..3)
        .map(|shard| v5_member(&b, shard, "h", filter))
        .collect();
    let mut p = publisher(&b, V5);
    for topic in ["s/a", "s/b", "s/c", "s/d"] {
        publish_n(&mut p, topic, topic, 5);
    }
    let mut owners = std::collections::BTreeMap::new();
    for (i, m) in members.iter_mut().enumerate() {
        for payload in received(m, true) {
            let topic = payload.rsplit_once('-').expect("topic-n").0.to_string();
            let owner = owners.entry(topic.clone()).or_insert(i);
            assert_eq!(*owner, i, "{topic} went to two members");
        }
    }
    assert_eq!(owners.len(), 4);
    b.stop();
}

/// A Mosquitto command-line client (`mosquitto_sub`, `mosquitto_pub`) for
/// the broker on `port`, speaking `version`.
fn mosquitto(program: &str, port: u16, version: &str) -> Command {
    // Line-buffered: the test reads the output as it comes.
    let mut cmd = Command::new("stdbuf");
    cmd.args([
        "-oL",
        program,
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-V",
        version,
    ]);
    cmd.args(["-q", "1"]);
    cmd
}

/// `mosquitto_sub -d` on a shared filter until it has printed `count`
/// messages, returned once its SUBACK has arrived, with its output.
fn mosquitto_sub(port: u16, version: &str, id: &str, count: usize) -> (ChildGuard, Lines) {
    let mut child = mosquitto("mosquitto_sub", port, version)
        .args(["-d", "-i", id, "-t", "$share/cli/jobs"])
        .args(["-C", &count.to_string(), "-W", "10"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub runs (apt-get install mosquitto-clients)");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // -W 10 bounds the wait: the output ends when the client gives up.
    let subscribed = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("received SUBACK"));
    assert!(subscribed, "mosquitto_sub {version} was not subscribed");
    (ChildGuard(child), lines)
}

type Lines = std::io::Lines<BufReader<std::process::ChildStdout>>;

#[test]
fn mosquitto_clients_share_a_group_across_versions() {
    let b = TestBroker::start(2);
    let port = b.addr.port();
    let mut subs = [
        mosquitto_sub(port, "5", &b.id_on(0, "m5"), 5),
        mosquitto_sub(port, "mqttv311", &b.id_on(1, "m3"), 5),
    ];
    let mut publ = mosquitto("mosquitto_pub", port, "5")
        .args(["-t", "jobs", "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub runs");
    {
        let mut stdin = publ.stdin.take().expect("stdin");
        for i in 0..10 {
            writeln!(stdin, "job-{i}").expect("write to mosquitto_pub");
        }
    }
    let mut publ = ChildGuard(publ);
    assert!(publ
        .wait_within(Duration::from_secs(10), "mosquitto_pub")
        .success());
    let mut seen = BTreeSet::new();
    for (sub, lines) in &mut subs {
        let got: Vec<String> = lines
            .map_while(Result::ok)
            .filter(|line| !line.starts_with("Client ") && !line.starts_with("Subscribed"))
            .collect();
        assert!(sub
            .wait_within(Duration::from_secs(12), "mosquitto_sub")
            .success());
        assert_eq!(got.len(), 5, "each client gets half: {got:?}");
        seen.extend(got);
    }
    assert_eq!(seen, all("job", 10));
    b.stop();
}

#[test]
fn messages_bridged_in_are_shared_too() {
    let upstream = TestBroker::start(1);
    let conf = format!(
        "connection up\naddress {}\nbridge_protocol_version mqttv50\ntopic feed/# in 1\n",
        upstream.addr
    );
    let (parsed, _) = shardmq::config::Config::parse(&conf, "edge.conf").expect("valid");
    let edge = TestBroker::with(2, |c| c.bridges = parsed.bridges);
    edge.wait_bridge("up");
    let filter = "$share/g/feed/#";
    let mut members: Vec<RawClient> = (0..2).map(|s| v5_member(&edge, s, "b", filter)).collect();
    let mut p = publisher(&upstream, V5);
    // The bridge's remote subscription may still be on its way: probe.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    'ready: loop {
        p.publish("feed/probe", b"?", QoS::AtLeastOnce, false, 1);
        for m in &mut members {
            if let Some(Some(Packet::Publish(probe))) = m.recv_within(Duration::from_millis(100)) {
                m.ack(&probe);
                break 'ready;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the link never carried"
        );
    }
    for m in &mut members {
        received(m, true);
    }
    publish_n(&mut p, "feed/x", "f", 10);
    let mut seen = BTreeSet::new();
    for m in &mut members {
        let got = received(m, true);
        assert_eq!(got.len(), 5, "the bridge picks members in turn: {got:?}");
        seen.extend(got);
    }
    assert_eq!(seen, all("f", 10));
    edge.stop();
    upstream.stop();
}
