//! Topic matching across shards: `+`, `#`, `$` topics, overlapping
//! subscriptions.

mod common;

use std::time::Duration;

use common::*;
use shardmq::protocol::{ProtocolVersion, QoS};

#[test]
fn single_and_multi_level_wildcards() {
    let b = TestBroker::start(2);
    let (mut plus, mut publ) = sub_and_pub(&b, ProtocolVersion::V311, "a/+/c", QoS::AtMostOnce);
    let (mut hash, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V5, &b.id_on(1, "hash"), true, 60),
    );
    hash.subscribe("a/#", QoS::AtMostOnce);
    for topic in ["a/b/c", "a/b/c/d", "a", "a/c", "b/b/c", "a//c"] {
        publ.publish(topic, topic.as_bytes(), QoS::AtMostOnce, false, 1);
    }
    let plus_got: Vec<_> = (0..2)
        .map(|_| plus.expect_publish().topic.as_str().to_string())
        .collect();
    assert_eq!(plus_got, ["a/b/c", "a//c"]);
    let hash_got: Vec<_> = (0..5)
        .map(|_| hash.expect_publish().topic.as_str().to_string())
        .collect();
    assert_eq!(
        hash_got,
        ["a/b/c", "a/b/c/d", "a", "a/c", "a//c"],
        "`a/#` matches the parent `a` too"
    );
    plus.expect_silence(Duration::from_millis(200));
    hash.expect_silence(Duration::from_millis(100));
}

#[test]
fn dollar_topics_not_matched_by_root_wildcards() {
    let b = TestBroker::start(2);
    let (mut all, mut publ) = sub_and_pub(&b, ProtocolVersion::V311, "#", QoS::AtMostOnce);
    let (mut plus, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(1, "plus"), true, 60),
    );
    plus.subscribe("+/x", QoS::AtMostOnce);
    let (mut sys, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(1, "sys"), true, 60),
    );
    // (Not `$SYS`: clients may not publish there, see conformance_flow.)
    sys.subscribe("$app/#", QoS::AtMostOnce);
    publ.publish("$app/x", b"s", QoS::AtMostOnce, false, 1);
    publ.publish("n/x", b"n", QoS::AtMostOnce, false, 1);
    assert_eq!(all.expect_publish().topic.as_str(), "n/x");
    assert_eq!(plus.expect_publish().topic.as_str(), "n/x");
    assert_eq!(sys.expect_publish().topic.as_str(), "$app/x");
    all.expect_silence(Duration::from_millis(200));
    plus.expect_silence(Duration::from_millis(50));
    sys.expect_silence(Duration::from_millis(50));
}

#[test]
fn overlapping_subscriptions_deliver_one_copy_at_highest_qos() {
    let b = TestBroker::start(2);
    for version in VERSIONS {
        let (mut sub, mut publ) = sub_and_pub(&b, version, "o/#", QoS::AtMostOnce);
        sub.subscribe("o/+", QoS::ExactlyOnce);
        sub.subscribe("o/x", QoS::AtLeastOnce);
        publ.publish("o/x", b"1", QoS::ExactlyOnce, false, 1);
        assert_eq!(sub.expect_publish().qos, QoS::ExactlyOnce, "{version:?}");
        sub.expect_silence(Duration::from_millis(200));
    }
}
