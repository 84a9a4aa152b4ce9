//! MQTT 5.0 Server Keep Alive (3.2.2.3.14) from `max_keepalive`: the
//! keepalive the CONNACK announces is the one the broker enforces, and
//! `max_keepalive 0` sets no limit (as in Mosquitto). What the CONNACK
//! says for other values is in `conformance_connect`; rumqttc and MQTT.js
//! read it in `mqtt5_rumqttc` and `mqtt5_interop`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use shardmq::protocol::{Packet, ProtocolVersion, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn max_keepalive_0_sets_no_limit() {
    let b = TestBroker::with(2, |c| c.max_keepalive = 0);
    for keep_alive in [60, 0, u16::MAX] {
        let connect = connect_packet(V5, &b.id_on(1, "ka0"), true, keep_alive);
        let (_c, ack) = RawClient::connect_with(b.addr, connect);
        assert_eq!(ack.code, ReasonCode::Success);
        assert_eq!(
            ack.properties.server_keep_alive, None,
            "keepalive {keep_alive} kept"
        );
    }
    // 3.1.1 clients are not refused for their keepalive either.
    let v311 = connect_packet(ProtocolVersion::V311, &b.id_on(1, "ka0-3"), true, 60);
    let (_c, ack) = RawClient::connect_with(b.addr, v311);
    assert_eq!(ack.code, ReasonCode::Success);
}

/// Clients asking for 60 s are told 1 s: a silent one (homed on shard 0)
/// is closed after one and a half, and its will reaches one that kept
/// talking within the second (homed on shard 1), which stays.
#[test]
fn the_server_keep_alive_is_the_one_enforced() {
    let b = TestBroker::with(2, |c| c.max_keepalive = 1);
    let connect = connect_packet(V5, &b.id_on(1, "ka-talker"), true, 60);
    let (mut talker, ack) = RawClient::connect_with(b.addr, connect);
    assert_eq!(ack.properties.server_keep_alive, Some(1));
    talker.subscribe("ka/#", QoS::AtLeastOnce);
    let connect = connect_packet(V5, &b.id_on(0, "ka-silent"), true, 60);
    let will = with_will(connect, "ka/silent", b"timed out", QoS::AtLeastOnce, false);
    let (mut silent, _) = RawClient::connected(b.addr, will);

    let start = Instant::now();
    let mut wills = Vec::new();
    while start.elapsed() < Duration::from_millis(2_500) {
        talker.send(&Packet::PingReq);
        loop {
            match talker.recv() {
                Some(Packet::PingResp) => break,
                Some(Packet::Publish(p)) => {
                    talker.ack(&p);
                    wills.push(p.topic.as_str().to_string());
                }
                other => panic!("the talker stays: {other:?}"),
            }
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    expect_disconnect(&mut silent, ReasonCode::KeepAliveTimeout);
    assert_eq!(wills, ["ka/silent"]);
}
