//! MQTT 5 application-message properties travel with the message: a 5.0
//! subscriber on another shard gets them unchanged; a 3.1.1 subscriber gets
//! the same message without them.

mod common;

use common::*;
use shardmq::protocol::{Packet, ProtocolVersion, QoS};

#[test]
fn v5_publish_properties_reach_subscribers_across_shards() {
    let b = TestBroker::start(2);
    let (mut sub5, mut publ) = sub_and_pub(&b, ProtocolVersion::V5, "req/#", QoS::AtLeastOnce);
    let (mut sub3, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(1, "sub3"), true, 60),
    );
    sub3.subscribe("req/#", QoS::AtLeastOnce);

    let mut p = publish("req/a", br#"{"x":1}"#, QoS::AtLeastOnce, false, 7);
    p.properties = application_properties();
    publ.send(&Packet::Publish(p));
    assert!(matches!(publ.recv(), Some(Packet::PubAck(_))));

    let got = sub5.expect_publish();
    assert_eq!(&got.payload[..], br#"{"x":1}"#);
    let mut expected = application_properties();
    // Forwarded at once, so the remaining lifetime is still the full hour
    // (or one second less if a second boundary passed).
    let expiry = got.properties.message_expiry_interval;
    assert!(matches!(expiry, Some(3599..=3600)), "expiry {expiry:?}");
    expected.message_expiry_interval = expiry;
    assert_eq!(
        got.properties, expected,
        "user property order and duplicates are kept"
    );

    let plain = sub3.expect_publish();
    assert_eq!(
        (plain.topic.as_str(), &plain.payload[..]),
        ("req/a", &br#"{"x":1}"#[..])
    );
    assert!(plain.properties.is_empty());
}
