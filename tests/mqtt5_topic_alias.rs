//! MQTT 5.0 topic aliases (3.3.2.3.4).
//!
//! Client to server: the CONNACK announces `max_topic_alias`; a PUBLISH
//! with a topic and an alias sets (or replaces) the connection's mapping,
//! one with an empty topic uses it; a bad alias ends the connection with
//! DISCONNECT 0x94. Subscribers (on another shard) get the full topic,
//! never the publisher's alias.
//!
//! Server to client: a subscriber whose CONNECT announces a Topic Alias
//! Maximum gets the first PUBLISH on a topic with the topic and a new
//! alias, later ones with the alias alone, until its maximum (or the byte
//! bound) is reached; then other topics go out in full. The aliases are
//! the connection's: a reconnect starts afresh, and a resend carries its
//! full topic.

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
fn aliases_holding_more_topic_bytes_than_the_bound_end_the_connection_with_0x97() {
    let b = TestBroker::start(2);
    let (mut c, _) = RawClient::connected(b.addr, connect_packet(V5, "bytes", true, 60));
    let len = shardmq::limits::MAX_ALIAS_TOPIC_BYTES * 3 / 5;
    c.send(&aliased(&"a".repeat(len), 1, b"x"));
    // Replacing alias 1 frees its bytes: still within the bound.
    c.send(&aliased(&"b".repeat(len), 1, b"x"));
    c.send(&aliased(&"c".repeat(len), 2, b"x"));
    let got = c.expect_closed();
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::QuotaExceeded),
        "{got:?}"
    );
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

/// A 5.0 CONNECT for `id` announcing Topic Alias Maximum `max`, its
/// session kept 60 s.
fn connect_with_aliases(id: &str, clean: bool, max: u16) -> shardmq::protocol::Connect {
    let mut c = connect_v5_expiry(id, clean, 60);
    c.properties.topic_alias_maximum = Some(max);
    c
}

/// Receives one PUBLISH (not acknowledged); checks its topic as sent (""
/// for none), alias and payload; returns it.
fn expect_aliased(sub: &mut RawClient, topic: &str, alias: Option<u16>, payload: &[u8]) -> Publish {
    let p = sub.recv_publish();
    let got = (p.topic.as_str(), p.properties.topic_alias, &p.payload[..]);
    assert_eq!(got, (topic, alias, payload));
    p
}

/// A subscriber on shard 1 announcing Topic Alias Maximum `max`,
/// subscribed to `filter` at `qos`, and a 3.1.1 publisher on shard 0.
fn aliased_sub_and_pub(b: &TestBroker, max: u16, filter: &str, qos: QoS) -> (RawClient, RawClient) {
    let (mut sub, _) =
        RawClient::connected(b.addr, connect_with_aliases(&b.id_on(1, "asub"), true, max));
    sub.subscribe(filter, qos);
    (sub, publisher_on_0(b, "apub"))
}

/// A 3.1.1 publisher homed on shard 0.
fn publisher_on_0(b: &TestBroker, prefix: &str) -> RawClient {
    let id = b.id_on(0, prefix);
    RawClient::connected(b.addr, connect_packet(ProtocolVersion::V311, &id, true, 60)).0
}

#[test]
fn the_broker_sets_aliases_up_to_the_clients_maximum_then_sends_topics() {
    let b = TestBroker::start(2);
    let (mut sub, mut publ) = aliased_sub_and_pub(&b, 2, "to/#", QoS::AtMostOnce);
    let sends = ["to/a", "to/a", "to/b", "to/b", "to/c", "to/c", "to/a"];
    for (i, topic) in sends.iter().enumerate() {
        publ.publish(topic, &[b'0' + i as u8], QoS::AtMostOnce, false, 0);
    }
    let expected = [
        ("to/a", Some(1)),
        ("", Some(1)),
        ("to/b", Some(2)),
        ("", Some(2)),
        // Full: no third alias, and the first two stay.
        ("to/c", None),
        ("to/c", None),
        ("", Some(1)),
    ];
    for (i, (topic, alias)) in expected.iter().enumerate() {
        expect_aliased(&mut sub, topic, *alias, &[b'0' + i as u8]);
    }
}

#[test]
fn aliases_to_the_client_stop_at_the_byte_bound() {
    let b = TestBroker::start(2);
    let (mut sub, mut publ) = aliased_sub_and_pub(&b, 100, "#", QoS::AtMostOnce);
    // Two topics of 40% of the bound each get aliases; a third does not fit.
    let len = shardmq::limits::MAX_ALIAS_TOPIC_BYTES * 2 / 5;
    let topics: Vec<String> = ['a', 'b', 'c']
        .iter()
        .map(|c| c.to_string().repeat(len))
        .collect();
    for t in &topics {
        publ.publish(t, b"x", QoS::AtMostOnce, false, 0);
    }
    expect_aliased(&mut sub, &topics[0], Some(1), b"x");
    expect_aliased(&mut sub, &topics[1], Some(2), b"x");
    expect_aliased(&mut sub, &topics[2], None, b"x");
}

#[test]
fn aliases_to_the_client_reset_on_reconnect_and_resends_carry_the_topic() {
    let b = TestBroker::start(2);
    let id = b.id_on(1, "resub");
    let (mut sub, mut publ) = {
        let (mut sub, _) = RawClient::connected(b.addr, connect_with_aliases(&id, true, 5));
        sub.subscribe("re/#", QoS::AtLeastOnce);
        (sub, publisher_on_0(&b, "repub"))
    };
    publ.publish("re/x", b"1", QoS::AtMostOnce, false, 0);
    publ.publish("re/x", b"2", QoS::AtMostOnce, false, 0);
    // QoS 0 is delivered at QoS 0 (never resent): the last two are QoS 1.
    publ.publish("re/x", b"3", QoS::AtLeastOnce, false, 1);
    publ.publish("re/x", b"4", QoS::AtLeastOnce, false, 2);
    expect_aliased(&mut sub, "re/x", Some(1), b"1");
    expect_aliased(&mut sub, "", Some(1), b"2");
    expect_aliased(&mut sub, "", Some(1), b"3");
    expect_aliased(&mut sub, "", Some(1), b"4");
    // Not acknowledged: resent after the reconnect, with their topics.
    sub.disconnect();
    let (mut sub, present) = RawClient::connected(b.addr, connect_with_aliases(&id, false, 5));
    assert!(present);
    for payload in [b"3", b"4"] {
        let p = expect_aliased(&mut sub, "re/x", None, payload);
        assert!(p.dup, "a resend has DUP set");
        sub.ack(&p);
    }
    // The new connection's first PUBLISH on the topic sets the alias again.
    publ.publish("re/x", b"5", QoS::AtMostOnce, false, 0);
    expect_aliased(&mut sub, "re/x", Some(1), b"5");
    publ.publish("re/x", b"6", QoS::AtMostOnce, false, 0);
    expect_aliased(&mut sub, "", Some(1), b"6");
}

/// MQTT.js as a subscriber announcing Topic Alias Maximum 4: prints
/// "subscribed", then "topic payload alias" per message, three of them.
const MQTTJS_ALIAS_SUB: &str = "
const c = mqtt.connect(url, { protocolVersion: 5, clientId: process.argv[2],
  properties: { topicAliasMaximum: 4 } });
let n = 0;
c.on('connect', () => c.subscribe('js/#', () => console.log('subscribed')));
c.on('message', (topic, payload, packet) => {
  console.log(`${topic} ${payload} ${packet.properties.topicAlias}`);
  if (++n === 3) c.end(() => process.exit(0));
});
c.on('error', (e) => { console.log(`error ${e.message}`); process.exit(2); });
";

#[test]
fn mqtt_js_resolves_the_aliases_the_broker_sets() {
    let b = TestBroker::start(2);
    let mut publ = publisher_on_0(&b, "jspub");
    let url = format!("mqtt://127.0.0.1:{}", b.addr.port());
    let script = MQTTJS_ALIAS_SUB.replace("process.argv[2]", &format!("'{}'", b.id_on(1, "jssub")));
    let mut js = mqttjs::NodeScript::spawn(&script, &url);
    assert_eq!(js.next_line(), "subscribed");
    for payload in ["first", "second", "third"] {
        publ.publish("js/aliased", payload.as_bytes(), QoS::AtMostOnce, false, 0);
    }
    // The first sets alias 1 with the topic, the others use it alone.
    assert_eq!(js.next_line(), "js/aliased first 1");
    assert_eq!(js.next_line(), "js/aliased second 1");
    assert_eq!(js.next_line(), "js/aliased third 1");
    assert!(js.wait().success());
}

#[test]
fn rumqttc_v5_resolves_the_aliases_the_broker_sets() {
    use rumqttc::v5::mqttbytes::v5::Packet as RPacket;
    use rumqttc::v5::mqttbytes::QoS as RQoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let b = TestBroker::start(2);
    let mut publ = publisher_on_0(&b, "rcpub");
    let mut options = MqttOptions::new(b.id_on(1, "rcsub"), "127.0.0.1", b.addr.port());
    options.set_topic_alias_max(Some(4));
    block_on_timeout(Duration::from_secs(10), async move {
        let (sub, mut events) = AsyncClient::new(options, 16);
        sub.subscribe("rc/#", RQoS::AtMostOnce).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            match events.poll().await.expect("subscriber") {
                Event::Incoming(RPacket::SubAck(_)) => {
                    for payload in ["1", "2", "3"] {
                        publ.publish("rc/aliased", payload.as_bytes(), QoS::AtMostOnce, false, 0);
                    }
                }
                Event::Incoming(RPacket::Publish(p)) => {
                    let alias = p.properties.and_then(|props| props.topic_alias);
                    got.push((p.topic.to_vec(), alias, p.payload.to_vec()));
                }
                _ => {}
            }
        }
        let expected: Vec<_> = ["1", "2", "3"]
            .iter()
            .map(|payload| (b"rc/aliased".to_vec(), Some(1), payload.as_bytes().to_vec()))
            .collect();
        assert_eq!(got, expected);
    });
}
