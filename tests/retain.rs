//! Retained messages: stored, sent on subscribe with RETAIN set, replaced,
//! deleted, replicated across shards; forwarding clears RETAIN; 5.0 Retain
//! Handling and Retain As Published.

mod common;

use std::time::Duration;

use common::*;
use shardmq::protocol::{ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};

/// A publisher homed on shard 0.
fn publisher(b: &TestBroker, version: ProtocolVersion) -> RawClient {
    RawClient::connected(
        b.addr,
        connect_packet(version, &b.id_on(0, "rpub"), true, 60),
    )
    .0
}

/// A subscriber homed on shard 1 (no subscriptions yet).
fn subscriber(b: &TestBroker, version: ProtocolVersion, name: &str) -> RawClient {
    RawClient::connected(b.addr, connect_packet(version, &b.id_on(1, name), true, 60)).0
}

#[test]
fn retained_stored_replaced_and_deleted_across_shards() {
    let b = TestBroker::start(2);
    for version in VERSIONS {
        let mut publ = publisher(&b, version);
        publ.publish("r/t", b"first", QoS::AtLeastOnce, true, 1);
        publ.publish("r/t", b"second", QoS::AtLeastOnce, true, 2);
        let mut sub = subscriber(&b, version, "rs1");
        sub.subscribe("r/#", QoS::AtLeastOnce);
        let p = sub.expect_publish();
        assert_eq!(
            (p.retain, &p.payload[..], p.qos),
            (true, &b"second"[..], QoS::AtLeastOnce),
            "{version:?}"
        );
        sub.expect_silence(Duration::from_millis(200));
        // Live forwarding clears the flag.
        publ.publish("r/t", b"third", QoS::AtMostOnce, true, 3);
        let live = sub.expect_publish();
        assert_eq!(
            (live.retain, &live.payload[..]),
            (false, &b"third"[..]),
            "{version:?}"
        );
        // Empty payload deletes it (and is forwarded as a normal message).
        publ.publish("r/t", b"", QoS::AtMostOnce, true, 4);
        assert!(sub.expect_publish().payload.is_empty());
        let mut late = subscriber(&b, version, "rs2");
        late.subscribe("r/#", QoS::AtLeastOnce);
        late.expect_silence(Duration::from_millis(300));
    }
}

#[test]
fn retained_qos_is_downgraded_to_subscription() {
    let b = TestBroker::start(2);
    publisher(&b, ProtocolVersion::V311).publish("rq", b"q2", QoS::ExactlyOnce, true, 1);
    let mut sub = subscriber(&b, ProtocolVersion::V311, "rq");
    sub.subscribe("rq", QoS::AtMostOnce);
    let p = sub.expect_publish();
    assert_eq!((p.qos, p.retain), (QoS::AtMostOnce, true));
}

#[test]
fn v5_retain_handling_never_and_retain_as_published() {
    let b = TestBroker::start(2);
    let mut publ = publisher(&b, ProtocolVersion::V5);
    publ.publish("rh/a", b"kept", QoS::AtLeastOnce, true, 1);
    let mut never = subscriber(&b, ProtocolVersion::V5, "never");
    never.subscribe_with(
        "rh/#",
        SubscriptionOptions {
            retain_handling: RetainHandling::Never,
            ..SubscriptionOptions::new(QoS::AtLeastOnce)
        },
    );
    never.expect_silence(Duration::from_millis(300));
    let mut rap = subscriber(&b, ProtocolVersion::V5, "rap");
    rap.subscribe_with(
        "rh/#",
        SubscriptionOptions {
            retain_as_published: true,
            ..SubscriptionOptions::new(QoS::AtLeastOnce)
        },
    );
    assert!(rap.expect_publish().retain, "retained message on subscribe");
    // Retain handling 1: only for a new subscription.
    let mut new_only = subscriber(&b, ProtocolVersion::V5, "newonly");
    let opts = SubscriptionOptions {
        retain_handling: RetainHandling::OnNewSubscribe,
        ..SubscriptionOptions::new(QoS::AtLeastOnce)
    };
    new_only.subscribe_with("rh/#", opts);
    assert!(new_only.expect_publish().retain);
    new_only.subscribe_with("rh/#", opts);
    new_only.expect_silence(Duration::from_millis(300));
    publ.publish("rh/a", b"live", QoS::AtLeastOnce, true, 2);
    let p = rap.expect_publish();
    assert_eq!(
        (p.retain, &p.payload[..]),
        (true, &b"live"[..]),
        "Retain As Published keeps the flag"
    );
    let p = never.expect_publish();
    assert_eq!((p.retain, &p.payload[..]), (false, &b"live"[..]));
}
