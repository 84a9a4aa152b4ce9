//! Broker-wide keys that shape message flow, with Mosquitto's meaning:
//! `message_size_limit` (oversized payloads acknowledged and dropped, 5.0
//! with "implementation specific error"; an oversized will refuses the
//! CONNECT),
//! `upgrade_outgoing_qos`, and `max_inflight_bytes` (the outbound window
//! bounded by payload bytes in flight).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use shardmq::protocol::{Packet, ProtocolVersion, PubResp, QoS, ReasonCode};

/// What a publisher of `qos` receives for a PUBLISH with id 1.
fn ack_reason(c: &mut RawClient, qos: QoS) -> ReasonCode {
    match (qos, c.recv()) {
        (QoS::AtLeastOnce, Some(Packet::PubAck(r)))
        | (QoS::ExactlyOnce, Some(Packet::PubRec(r))) => r.reason,
        (_, other) => panic!("{qos:?}: expected its acknowledgement, got {other:?}"),
    }
}

#[test]
fn payloads_above_message_size_limit_are_acknowledged_and_dropped() {
    let b = TestBroker::with(2, |c| c.message_size_limit = 4);
    for version in VERSIONS {
        let (mut sub, mut publ) = sub_and_pub(&b, version, "msl/#", QoS::ExactlyOnce);
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            publ.send(&Packet::Publish(publish(
                "msl/big", b"12345", qos, false, 1,
            )));
            if qos != QoS::AtMostOnce {
                let expected = if version.is_v5() {
                    ReasonCode::ImplementationSpecificError
                } else {
                    ReasonCode::Success // 3.x acknowledgements carry no reason
                };
                assert_eq!(ack_reason(&mut publ, qos), expected, "{version:?} {qos:?}");
            }
            if qos == QoS::ExactlyOnce && !version.is_v5() {
                // A 3.x flow goes on to PUBREL; nothing was filed.
                publ.send(&Packet::PubRel(PubResp::new(pid(1))));
                assert!(matches!(publ.recv(), Some(Packet::PubComp(_))));
            }
        }
        // At the limit: delivered, and the first thing the subscriber sees.
        publ.publish("msl/ok", b"1234", QoS::AtLeastOnce, false, 2);
        let p = sub.expect_publish();
        assert_eq!((p.topic.as_str(), &p.payload[..]), ("msl/ok", &b"1234"[..]));
    }
}

#[test]
fn a_will_above_message_size_limit_refuses_the_connect() {
    let b = TestBroker::with(2, |c| c.message_size_limit = 1);
    let cases = [
        (ProtocolVersion::V5, ReasonCode::PacketTooLarge),
        (ProtocolVersion::V311, ReasonCode::NotAuthorized),
    ];
    for (version, expected) in cases {
        let id = b.id_on(1, "mslwill");
        let big = with_will(
            connect_packet(version, &id, true, 60),
            "w",
            b"AB",
            QoS::AtMostOnce,
            false,
        );
        let (_c, ack) = RawClient::connect_with(b.addr, big);
        assert_eq!(ack.code, expected, "{version:?}");
        let small = with_will(
            connect_packet(version, &id, true, 60),
            "w",
            b"A",
            QoS::AtMostOnce,
            false,
        );
        RawClient::connected(b.addr, small);
    }
}

#[test]
fn mosquitto_pub_v5_is_told_its_payload_was_refused() {
    let b = TestBroker::with(2, |c| c.message_size_limit = 4);
    let port = b.addr.port().to_string();
    let mut child = ChildGuard(
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-V", "5", "-q", "1"])
            .args([
                "-t",
                "msl/pub",
                "-m",
                "too-long",
                "-i",
                &b.id_on(0, "mslpub"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mosquitto_pub runs (apt-get install mosquitto-clients)"),
    );
    child.wait_within(Duration::from_secs(10), "mosquitto_pub");
    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        std::io::Read::read_to_string(&mut e, &mut stderr).unwrap();
    }
    assert!(
        stderr.to_lowercase().contains("implementation specific"),
        "{stderr}"
    );
}

#[test]
fn upgrade_outgoing_qos_delivers_at_the_subscription_qos() {
    for (upgrade, expected) in [(false, QoS::AtMostOnce), (true, QoS::ExactlyOnce)] {
        let b = TestBroker::with(2, |c| c.upgrade_outgoing_qos = upgrade);
        for (i, version) in VERSIONS.into_iter().enumerate() {
            let filter = format!("uoq{i}/#");
            let (mut sub, mut publ) = sub_and_pub(&b, version, &filter, QoS::ExactlyOnce);
            publ.publish(&format!("uoq{i}/live"), b"l", QoS::AtMostOnce, true, 0);
            assert_eq!(
                sub.expect_publish().qos,
                expected,
                "{version:?} upgrade {upgrade}"
            );
            // Retained messages sent on SUBSCRIBE follow the same rule.
            let (mut late, _) = RawClient::connected(
                b.addr,
                connect_packet(version, &b.id_on(0, "uoq-late"), true, 60),
            );
            late.subscribe(&filter, QoS::AtLeastOnce);
            let expected_retained = if upgrade {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            };
            assert_eq!(late.expect_publish().qos, expected_retained);
        }
    }
}

#[test]
fn max_inflight_bytes_holds_messages_back_until_acknowledged() {
    let b = TestBroker::with(2, |c| c.max_inflight_bytes = 10);
    for version in VERSIONS {
        let (mut sub, mut publ) = sub_and_pub(&b, version, "mib/#", QoS::AtLeastOnce);
        for i in 1..=3u16 {
            publ.publish("mib/a", &[b'0' + i as u8; 8], QoS::AtLeastOnce, false, i);
        }
        // 0 then 8 bytes in flight: two go out; at 16 the third waits.
        let first = sub.recv_publish();
        let second = sub.recv_publish();
        sub.expect_silence(Duration::from_millis(300));
        sub.ack(&first);
        let third = sub.recv_publish();
        assert_eq!(third.payload[0], b'3', "{version:?}");
        sub.ack(&second);
        sub.ack(&third);
    }
}
