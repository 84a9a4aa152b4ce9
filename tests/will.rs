//! Wills: abnormal disconnect, keepalive timeout, not on clean DISCONNECT,
//! retained wills, 5.0 DISCONNECT 0x04, session takeover.

mod common;

use std::time::Duration;

use common::*;
use shardmq::protocol::{Disconnect, Packet, ProtocolVersion, QoS, ReasonCode};

/// A subscriber to `will/#` homed on shard 1.
fn watcher(b: &TestBroker) -> RawClient {
    let (mut w, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(1, "watch"), true, 60),
    );
    w.subscribe("will/#", QoS::AtLeastOnce);
    w
}

/// A client homed on shard 0 with a will on `topic`.
fn dying(
    b: &TestBroker,
    version: ProtocolVersion,
    topic: &str,
    retain: bool,
    keep_alive: u16,
) -> RawClient {
    let mut c = connect_packet(version, &b.id_on(0, topic), true, keep_alive);
    c = with_will(c, topic, b"gone", QoS::AtLeastOnce, retain);
    RawClient::connected(b.addr, c).0
}

#[test]
fn will_published_when_socket_drops() {
    let b = TestBroker::start(2);
    let mut w = watcher(&b);
    for version in VERSIONS {
        drop(dying(&b, version, "will/drop", false, 60));
        let p = w.expect_publish();
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos, p.retain),
            ("will/drop", &b"gone"[..], QoS::AtLeastOnce, false)
        );
    }
}

#[test]
fn will_not_published_on_clean_disconnect() {
    let b = TestBroker::start(2);
    let mut w = watcher(&b);
    for version in VERSIONS {
        dying(&b, version, "will/clean", false, 60).disconnect();
    }
    w.expect_silence(Duration::from_millis(500));
}

#[test]
fn no_will_when_a_clean_disconnect_races_a_reconnect() {
    // The DISCONNECT and the next CONNECT with the same client id can be
    // read in one loop turn: the takeover must not publish the will of a
    // connection that already said DISCONNECT.
    let b = TestBroker::start(2);
    let mut w = watcher(&b);
    let mut c = dying(&b, ProtocolVersion::V5, "will/race", false, 60);
    for _ in 0..50 {
        c.send(&Packet::Disconnect(Disconnect::new(
            ReasonCode::NormalDisconnection,
        )));
        let next = dying(&b, ProtocolVersion::V5, "will/race", false, 60);
        drop(std::mem::replace(&mut c, next));
    }
    c.disconnect();
    w.expect_silence(Duration::from_millis(500));
}

#[test]
fn v5_disconnect_with_will_message_sends_it() {
    let b = TestBroker::start(2);
    let mut w = watcher(&b);
    let mut c = dying(&b, ProtocolVersion::V5, "will/v5", false, 60);
    c.send(&Packet::Disconnect(Disconnect::new(
        ReasonCode::DisconnectWithWillMessage,
    )));
    assert_eq!(w.expect_publish().topic.as_str(), "will/v5");
}

#[test]
fn will_published_on_keepalive_timeout() {
    let b = TestBroker::start(2);
    let mut w = watcher(&b);
    let _silent = dying(&b, ProtocolVersion::V311, "will/ka", false, 1);
    match w.recv_within(Duration::from_secs(4)) {
        Some(Some(Packet::Publish(p))) => assert_eq!(p.topic.as_str(), "will/ka"),
        other => panic!("expected the will within 4 s, got {other:?}"),
    }
}

#[test]
fn retained_will_reaches_later_subscribers() {
    let b = TestBroker::start(2);
    drop(dying(&b, ProtocolVersion::V5, "will/ret", true, 60));
    let mut w = watcher(&b);
    // The will may be routed after SUBACK; wait for it either way.
    let p = w.expect_publish();
    assert_eq!(p.topic.as_str(), "will/ret");
    let (mut late, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(1, "late"), true, 60),
    );
    late.subscribe("will/ret", QoS::AtLeastOnce);
    let p = late.expect_publish();
    assert_eq!((p.retain, &p.payload[..]), (true, &b"gone"[..]));
}

#[test]
fn will_published_on_session_takeover() {
    let b = TestBroker::start(2);
    let mut w = watcher(&b);
    let mut old = dying(&b, ProtocolVersion::V5, "will/take", false, 60);
    let (_new, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V5, &b.id_on(0, "will/take"), true, 60),
    );
    assert_eq!(w.expect_publish().topic.as_str(), "will/take");
    let got = old.expect_closed();
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::SessionTakenOver),
        "old connection gets DISCONNECT 0x8E: {got:?}"
    );
}
