//! MQTT 5.0 topic aliases from client to server (3.3.2.3.4): the CONNACK
//! announces `max_topic_alias`; a PUBLISH with a topic and an alias sets
//! (or replaces) the connection's mapping, one with an empty topic uses
//! it; a bad alias ends the connection with DISCONNECT 0x94. Subscribers
//! (on another shard) get the full topic, never the alias.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use shardmq::protocol::{Packet, ProtocolVersion, Publish, QoS, ReasonCode, TopicName};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// A QoS 0 PUBLISH on `topic` ("" for none) carrying Topic Alias `alias`.
fn aliased(topic: &str, alias: u16, payload: &[u8]) -> Packet {
    let mut p = if topic.is_empty() {
        Publish {
            topic: TopicName::empty(),
            ..publish("unused", payload, QoS::AtMostOnce, false, 0)
        }
    } else {
        publish(topic, payload, QoS::AtMostOnce, false, 0)
    };
    p.properties.topic_alias = Some(alias);
    Packet::Publish(p)
}

/// Receives one PUBLISH and checks its topic, payload and that it carries
/// no alias.
fn expect_delivery(sub: &mut RawClient, topic: &str, payload: &[u8]) {
    let p = sub.expect_publish();
    assert_eq!(p.topic.as_str(), topic);
    assert_eq!(&p.payload[..], payload);
    assert_eq!(
        p.properties.topic_alias, None,
        "the alias is the publisher's"
    );
}

/// Expects DISCONNECT 0x94 (Topic Alias Invalid), then the close.
fn expect_alias_invalid(c: &mut RawClient, case: &str) {
    let got = c.expect_closed();
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::TopicAliasInvalid),
        "{case}: {got:?}"
    );
}

#[test]
fn connack_announces_max_topic_alias() {
    let b = TestBroker::with(2, |c| c.max_topic_alias = 3);
    let (_c, ack) = RawClient::connect(b.addr, V5, "announce", true);
    assert_eq!(ack.properties.topic_alias_maximum, Some(3));
}

/// `packet` at QoS 1 with packet id `id`.
fn at_qos1(packet: Packet, id: u16) -> Packet {
    match packet {
        Packet::Publish(p) => Packet::Publish(Publish {
            qos: QoS::AtLeastOnce,
            packet_id: Some(pid(id)),
            ..p
        }),
        other => other,
    }
}

/// Sends `sent` from a publisher on shard 0 (waiting for each QoS 1
/// PUBACK) and expects `(topic, payload)` deliveries in order on a
/// subscriber to `#` on shard 1.
fn relays(sent: &[Packet], expected: &[(&str, &[u8])]) {
    let b = TestBroker::start(2);
    let (mut sub, mut publ) = sub_and_pub(&b, V5, "#", QoS::AtMostOnce);
    for p in sent {
        publ.send(p);
        if matches!(p, Packet::Publish(p) if p.qos == QoS::AtLeastOnce) {
            assert!(matches!(publ.recv(), Some(Packet::PubAck(_))));
        }
    }
    for (topic, payload) in expected {
        expect_delivery(&mut sub, topic, payload);
    }
}

#[test]
fn an_alias_set_with_a_topic_stands_for_it_on_another_shard() {
    relays(
        &[
            aliased("alias/long/topic", 1, b"first"),
            aliased("", 1, b"second"),
            // At QoS 1 too, acknowledged as any PUBLISH.
            at_qos1(aliased("alias/qos1", 2, b"q1"), 7),
            at_qos1(aliased("", 2, b"q1 again"), 8),
        ],
        &[
            ("alias/long/topic", b"first"),
            ("alias/long/topic", b"second"),
            ("alias/qos1", b"q1"),
            ("alias/qos1", b"q1 again"),
        ],
    );
}

#[test]
fn an_alias_is_replaced_by_a_new_topic() {
    relays(
        &[
            aliased("re/one", 10, b"1"),
            aliased("re/two", 10, b"2"),
            aliased("", 10, b"3"),
        ],
        &[("re/one", b"1"), ("re/two", b"2"), ("re/two", b"3")],
    );
}

#[test]
fn aliases_belong_to_the_connection_not_the_session() {
    let b = TestBroker::start(2);
    let id = b.id_on(0, "conn-alias");
    let (mut c, _) = RawClient::connected(b.addr, connect_v5_expiry(&id, true, 60));
    c.send(&aliased("conn/topic", 1, b"set"));
    c.disconnect();
    let (mut c, present) = RawClient::connected(b.addr, connect_v5_expiry(&id, false, 60));
    assert!(present);
    c.send(&aliased("", 1, b"use"));
    expect_alias_invalid(&mut c, "alias of the previous connection");
}

#[test]
fn a_bad_alias_ends_the_connection_with_0x94() {
    let b = TestBroker::with(2, |c| c.max_topic_alias = 5);
    let cases: [(&str, &[Packet]); 4] = [
        ("alias 0 with a topic", &[aliased("bad/t", 0, b"x")]),
        ("alias 0 alone", &[aliased("", 0, b"x")]),
        ("alias above the maximum", &[aliased("bad/t", 6, b"x")]),
        (
            "unknown alias",
            &[aliased("bad/t", 1, b"x"), aliased("", 2, b"y")],
        ),
    ];
    for (case, packets) in cases {
        let (mut c, _) = RawClient::connected(b.addr, connect_packet(V5, "bad", true, 60));
        for p in packets {
            c.send(p);
        }
        expect_alias_invalid(&mut c, case);
    }
}

#[test]
fn max_topic_alias_0_announces_none_and_refuses_every_alias() {
    let b = TestBroker::with(2, |c| c.max_topic_alias = 0);
    let (mut c, ack) = RawClient::connect(b.addr, V5, "none", true);
    assert_eq!(ack.properties.topic_alias_maximum, None);
    c.send(&aliased("none/t", 1, b"x"));
    expect_alias_invalid(&mut c, "alias with max_topic_alias 0");
}

#[test]
fn mosquitto_pub_with_a_topic_alias_is_delivered_in_full() {
    let b = TestBroker::start(2);
    let (mut sub, _) =
        RawClient::connected(b.addr, connect_packet(V5, &b.id_on(1, "msub"), true, 60));
    sub.subscribe("mpub/#", QoS::AtMostOnce);
    let port = b.addr.port().to_string();
    let mut child = ChildGuard(
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv5"])
            // The first PUBLISH sets alias 1, the repeats use it alone.
            .args(["-D", "publish", "topic-alias", "1", "--repeat", "3"])
            .args([
                "-t",
                "mpub/aliased",
                "-m",
                "hello",
                "-i",
                &b.id_on(0, "mpub"),
            ])
            .spawn()
            .expect("mosquitto_pub runs (apt-get install mosquitto-clients)"),
    );
    let status = child.wait_within(Duration::from_secs(10), "mosquitto_pub");
    assert!(status.success(), "mosquitto_pub: {status}");
    for _ in 0..3 {
        expect_delivery(&mut sub, "mpub/aliased", b"hello");
    }
}
