//! Clean shutdown: wills are published to subscribers on every shard before
//! connections close, and MQTT 5 clients are told why (DISCONNECT 0x8B).

mod common;

use bytes::Bytes;
use common::*;
use shardmq::protocol::{
    LastWill, Packet, Properties, ProtocolVersion, QoS, ReasonCode, TopicName,
};

#[test]
fn shutdown_publishes_wills_then_disconnects_v5_clients() {
    let b = TestBroker::start(2);
    let (mut watcher, _) =
        RawClient::connect(b.addr, ProtocolVersion::V5, &b.id_on(1, "watcher"), true);
    watcher.subscribe("wills/#", QoS::AtLeastOnce);
    let mut dying = RawClient::open(b.addr, ProtocolVersion::V5);
    let mut connect = connect_packet(ProtocolVersion::V5, &b.id_on(0, "dying"), true, 60);
    connect.will = Some(LastWill {
        topic: TopicName::from_str("wills/dying").unwrap(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Properties::default(),
    });
    assert_eq!(dying.handshake(connect).code, ReasonCode::Success);

    let stopper = std::thread::spawn(move || b.stop());
    let will = watcher.expect_publish();
    assert_eq!(
        (will.topic.as_str(), &will.payload[..]),
        ("wills/dying", &b"gone"[..])
    );
    for client in [&mut watcher, &mut dying] {
        let last = client.expect_closed();
        assert!(
            last.iter().any(
                |p| matches!(p, Packet::Disconnect(d) if d.reason == ReasonCode::ServerShuttingDown)
            ),
            "expected DISCONNECT 0x8B before close, got {last:?}"
        );
    }
    stopper.join().expect("broker stops cleanly");
}
