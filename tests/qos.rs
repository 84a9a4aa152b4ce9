//! QoS 0, 1 and 2 in both directions across shards: packet ids, DUP on
//! resend, redelivery on resume, the inflight window, downgrades, order.

mod common;

use std::time::Duration;

use common::*;
use shardmq::protocol::{Packet, ProtocolVersion, PubResp, QoS, ReasonCode};

const QOS: [QoS; 3] = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];

#[test]
fn each_qos_both_directions_across_shards() {
    let b = TestBroker::start(2);
    for version in VERSIONS {
        let (mut sub, mut publ) = sub_and_pub(&b, version, "q/+", QoS::ExactlyOnce);
        for (i, qos) in QOS.into_iter().enumerate() {
            publ.publish(&format!("q/{i}"), b"m", qos, false, 10 + i as u16);
            let p = sub.recv_publish();
            assert_eq!(
                (p.qos, p.topic.as_str(), p.dup, p.retain),
                (qos, format!("q/{i}").as_str(), false, false)
            );
            assert_eq!(
                p.packet_id.is_some(),
                qos != QoS::AtMostOnce,
                "{version:?} {qos:?}: packet id iff QoS > 0"
            );
            sub.ack(&p);
        }
        sub.expect_silence(Duration::from_millis(200));
    }
}

#[test]
fn subscription_qos_downgrades_delivery() {
    let b = TestBroker::start(2);
    for sub_qos in QOS {
        let (mut sub, mut publ) = sub_and_pub(&b, ProtocolVersion::V5, "down", sub_qos);
        for pub_qos in QOS {
            publ.publish("down", b"x", pub_qos, false, 7);
            assert_eq!(
                sub.expect_publish().qos,
                pub_qos.min(sub_qos),
                "sub {sub_qos:?} pub {pub_qos:?}"
            );
        }
    }
}

#[test]
fn inbound_qos2_duplicate_is_delivered_once() {
    let b = TestBroker::start(2);
    let (mut sub, mut publ) = sub_and_pub(&b, ProtocolVersion::V311, "once", QoS::ExactlyOnce);
    let mut p = publish("once", b"1", QoS::ExactlyOnce, false, 42);
    publ.send(&Packet::Publish(p.clone()));
    assert!(matches!(publ.recv(), Some(Packet::PubRec(r)) if r.packet_id == pid(42)));
    p.dup = true;
    publ.send(&Packet::Publish(p));
    assert!(matches!(publ.recv(), Some(Packet::PubRec(r)) if r.packet_id == pid(42)));
    publ.send(&Packet::PubRel(PubResp::new(pid(42))));
    assert!(matches!(publ.recv(), Some(Packet::PubComp(_))));
    assert_eq!(&sub.expect_publish().payload[..], b"1");
    sub.expect_silence(Duration::from_millis(300));
}

#[test]
fn unacknowledged_messages_redelivered_with_dup_on_resume() {
    let b = TestBroker::start(2);
    for version in VERSIONS {
        let id = b.id_on(1, &format!("resume{version:?}"));
        let (mut sub, _) = RawClient::connected(b.addr, connect_persistent(version, &id));
        sub.subscribe("redo/+", QoS::ExactlyOnce);
        let (mut publ, _) =
            RawClient::connected(b.addr, connect_packet(version, &b.id_on(0, "p"), true, 60));
        publ.publish("redo/1", b"one", QoS::AtLeastOnce, false, 1);
        publ.publish("redo/2", b"two", QoS::ExactlyOnce, false, 2);
        let first = sub.recv_publish();
        let second = sub.recv_publish();
        assert!(!first.dup && !second.dup);
        // QoS 2: PUBREC sent, PUBREL received, PUBCOMP never sent.
        let id2 = second.packet_id.unwrap();
        sub.send(&Packet::PubRec(PubResp::new(id2)));
        assert!(matches!(sub.recv(), Some(Packet::PubRel(r)) if r.packet_id == id2));
        drop(sub);
        let (mut sub, present) = RawClient::connected(b.addr, connect_persistent(version, &id));
        assert!(present, "{version:?}: session present");
        let again = sub.recv_publish();
        assert_eq!(
            (again.dup, again.packet_id, &again.payload[..]),
            (true, first.packet_id, &b"one"[..]),
            "{version:?}"
        );
        assert!(
            matches!(sub.recv(), Some(Packet::PubRel(r)) if r.packet_id == id2),
            "{version:?}: PUBREL resent"
        );
        sub.ack(&again);
        sub.send(&Packet::PubComp(PubResp::new(id2)));
        sub.expect_silence(Duration::from_millis(200));
        sub.disconnect();
        // Acknowledged now: nothing left on the next resume.
        let (mut sub, present) = RawClient::connected(b.addr, connect_persistent(version, &id));
        assert!(present);
        sub.expect_silence(Duration::from_millis(300));
    }
}

#[test]
fn inflight_window_limits_unacknowledged_messages() {
    let b = TestBroker::with(2, |c| c.max_inflight_messages = 2);
    let (mut sub, ack) = RawClient::connect(b.addr, ProtocolVersion::V5, &b.id_on(1, "win"), true);
    assert_eq!(
        ack.properties.receive_maximum,
        Some(2),
        "CONNACK carries Receive Maximum"
    );
    sub.subscribe("win", QoS::AtLeastOnce);
    let (mut publ, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(0, "p"), true, 60),
    );
    for i in 0..5u8 {
        publ.publish("win", &[i], QoS::AtLeastOnce, false, u16::from(i) + 1);
    }
    let mut held: Vec<_> = (0..2).map(|_| sub.recv_publish()).collect();
    sub.expect_silence(Duration::from_millis(300));
    let mut got = Vec::new();
    while got.len() < 5 {
        let p = held.remove(0);
        got.push(p.payload[0]);
        sub.ack(&p);
        if got.len() + held.len() < 5 {
            held.push(sub.recv_publish());
        }
        assert!(held.len() <= 2);
    }
    assert_eq!(got, [0, 1, 2, 3, 4]);
    sub.expect_silence(Duration::from_millis(200));
}

#[test]
fn client_receive_maximum_is_honoured() {
    let b = TestBroker::start(2);
    let mut connect = connect_packet(ProtocolVersion::V5, &b.id_on(1, "rm1"), true, 60);
    connect.properties.receive_maximum = Some(1);
    let (mut sub, _) = RawClient::connected(b.addr, connect);
    sub.subscribe("rm", QoS::ExactlyOnce);
    let (mut publ, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V5, &b.id_on(0, "p"), true, 60),
    );
    publ.publish("rm", b"a", QoS::ExactlyOnce, false, 1);
    publ.publish("rm", b"b", QoS::ExactlyOnce, false, 2);
    let a = sub.recv_publish();
    sub.expect_silence(Duration::from_millis(300));
    sub.ack(&a);
    assert_eq!(&sub.expect_publish().payload[..], b"b");
}

#[test]
fn qos1_order_kept_across_shards() {
    const N: u32 = 1000;
    let b = TestBroker::start(2);
    let (mut sub, mut publ) = sub_and_pub(&b, ProtocolVersion::V311, "order", QoS::AtLeastOnce);
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            let id = (i % 60_000 + 1) as u16;
            publ.send(&Packet::Publish(publish(
                "order",
                &i.to_be_bytes(),
                QoS::AtLeastOnce,
                false,
                id,
            )));
        }
        for _ in 0..N {
            assert!(matches!(publ.recv(), Some(Packet::PubAck(_))));
        }
    });
    for i in 0..N {
        let p = sub.expect_publish();
        assert_eq!(u32::from_be_bytes(p.payload[..].try_into().unwrap()), i);
    }
    sender.join().unwrap();
}

#[test]
fn unknown_pubrel_answered_with_not_found_in_v5() {
    let b = TestBroker::start(2);
    let (mut c, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V5, &b.id_on(0, "rel"), true, 60),
    );
    c.send(&Packet::PubRel(PubResp::new(pid(9))));
    match c.recv() {
        Some(Packet::PubComp(r)) => assert_eq!(r.reason, ReasonCode::PacketIdentifierNotFound),
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
}
