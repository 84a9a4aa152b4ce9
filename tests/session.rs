//! Persistent sessions (3.1.1 clean session 0, 5.0 Session Expiry):
//! subscriptions kept, offline queueing and its bounds, expiry.

mod common;

use std::time::Duration;

use common::*;
use shardmq::protocol::{ProtocolVersion, QoS};

/// Subscribes a persistent session homed on shard 1 to `topic`, then
/// disconnects it; returns its client id.
fn offline_subscriber(b: &TestBroker, version: ProtocolVersion, topic: &str, qos: QoS) -> String {
    let id = b.id_on(1, &format!("{topic}{version:?}"));
    let (mut c, present) = RawClient::connected(b.addr, connect_persistent(version, &id));
    assert!(!present);
    c.subscribe(topic, qos);
    c.disconnect();
    id
}

fn publisher(b: &TestBroker) -> RawClient {
    RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(0, "spub"), true, 60),
    )
    .0
}

#[test]
fn offline_messages_queued_and_delivered_on_resume() {
    let b = TestBroker::start(2);
    for version in VERSIONS {
        let id = offline_subscriber(&b, version, "sess", QoS::ExactlyOnce);
        let mut publ = publisher(&b);
        publ.publish("sess", b"q0", QoS::AtMostOnce, false, 1);
        publ.publish("sess", b"q1", QoS::AtLeastOnce, false, 2);
        publ.publish("sess", b"q2", QoS::ExactlyOnce, false, 3);
        let (mut c, present) = RawClient::connected(b.addr, connect_persistent(version, &id));
        assert!(present, "{version:?}");
        assert_eq!(
            c.expect_payloads(2),
            [b"q1".to_vec(), b"q2".to_vec()],
            "QoS 0 not queued by default"
        );
        c.expect_silence(Duration::from_millis(200));
        // The subscription survived too.
        publ.publish("sess", b"live", QoS::AtLeastOnce, false, 4);
        assert_eq!(&c.expect_publish().payload[..], b"live");
    }
}

#[test]
fn clean_session_discards_the_old_one() {
    let b = TestBroker::start(2);
    let id = offline_subscriber(&b, ProtocolVersion::V311, "gone", QoS::AtLeastOnce);
    publisher(&b).publish("gone", b"x", QoS::AtLeastOnce, false, 1);
    let (mut c, present) =
        RawClient::connected(b.addr, connect_packet(ProtocolVersion::V311, &id, true, 60));
    assert!(!present);
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn offline_queue_bounded_by_max_queued_messages() {
    let b = TestBroker::with(2, |c| c.max_queued_messages = 3);
    let id = offline_subscriber(&b, ProtocolVersion::V5, "bound", QoS::AtLeastOnce);
    let mut publ = publisher(&b);
    for i in 0..10u8 {
        publ.publish("bound", &[i], QoS::AtLeastOnce, false, u16::from(i) + 1);
    }
    let (mut c, _) = RawClient::connected(b.addr, connect_persistent(ProtocolVersion::V5, &id));
    assert_eq!(c.expect_payloads(3), [[0], [1], [2]]);
    c.expect_silence(Duration::from_millis(300));
}

#[test]
fn qos0_queued_only_with_queue_qos0_messages() {
    let b = TestBroker::with(2, |c| c.queue_qos0_messages = true);
    let id = offline_subscriber(&b, ProtocolVersion::V311, "q0", QoS::AtMostOnce);
    publisher(&b).publish("q0", b"zero", QoS::AtLeastOnce, false, 1);
    let (mut c, _) = RawClient::connected(b.addr, connect_persistent(ProtocolVersion::V311, &id));
    let p = c.expect_publish();
    assert_eq!((p.qos, &p.payload[..]), (QoS::AtMostOnce, &b"zero"[..]));
}

#[test]
fn persistent_client_expiration_ends_offline_sessions() {
    let b = TestBroker::with(2, |c| {
        c.persistent_client_expiration = Some(Duration::from_secs(1))
    });
    let ids: Vec<_> = VERSIONS
        .iter()
        .map(|v| offline_subscriber(&b, *v, "exp", QoS::AtLeastOnce))
        .collect();
    std::thread::sleep(Duration::from_millis(2500)); // the expiry itself is what is tested
    for (version, id) in VERSIONS.iter().zip(&ids) {
        let (_c, present) = RawClient::connected(b.addr, connect_persistent(*version, id));
        assert!(!present, "{version:?}: session expired");
    }
}

#[test]
fn v5_session_expiry_zero_ends_with_connection() {
    let b = TestBroker::start(2);
    let id = b.id_on(1, "exp0");
    let (mut c, _) = RawClient::connected(b.addr, connect_v5_expiry(&id, false, 0));
    c.subscribe("e0", QoS::AtLeastOnce);
    c.disconnect();
    let (_c, present) = RawClient::connected(b.addr, connect_v5_expiry(&id, false, 60));
    assert!(!present);
}
