//! MQTT 5.0 Message Expiry Interval (3.3.2.3.3) across shards: a message
//! that waited in the broker past its interval is not delivered (queued for
//! an offline session, or retained); one delivered after waiting carries
//! the interval that remains; 3.1.1 subscribers never see the property.

mod common;

use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use common::*;
use shardmq::protocol::{Packet, ProtocolVersion, Publish, QoS};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Long enough for a 1 s interval to pass, with a margin.
const PAST_ONE_SECOND: Duration = Duration::from_millis(2000);
const QUIET: Duration = Duration::from_millis(300);

/// A PUBLISH with a Message Expiry Interval of `secs`.
fn expiring(topic: &str, payload: &[u8], qos: QoS, retain: bool, id: u16, secs: u32) -> Packet {
    let mut p = publish(topic, payload, qos, retain, id);
    p.properties.message_expiry_interval = Some(secs);
    Packet::Publish(p)
}

/// Sends `packet` and, for QoS 1, waits for its PUBACK.
fn send_acked(c: &mut RawClient, packet: &Packet) {
    c.send(packet);
    if matches!(packet, Packet::Publish(p) if p.qos == QoS::AtLeastOnce) {
        assert!(matches!(c.recv(), Some(Packet::PubAck(_))));
    }
}

/// From a 5.0 publisher homed on shard 0: `{prefix}/short` expiring in
/// 1 s, then `{prefix}/long` in `long_secs`; returns once the short one
/// has expired.
fn publish_short_and_long(b: &TestBroker, prefix: &str, retain: bool, long_secs: u32) {
    let id = b.id_on(0, &format!("{prefix}-pub"));
    let (mut publ, _) = RawClient::connected(b.addr, connect_packet(V5, &id, true, 60));
    for (n, (name, secs)) in [("short", 1), ("long", long_secs)].into_iter().enumerate() {
        let topic = format!("{prefix}/{name}");
        let p = expiring(
            &topic,
            name.as_bytes(),
            QoS::AtLeastOnce,
            retain,
            n as u16 + 1,
            secs,
        );
        send_acked(&mut publ, &p);
    }
    std::thread::sleep(PAST_ONE_SECOND);
}

/// Receives `{prefix}/long` and nothing else (the short one expired); a
/// 5.0 subscriber gets a remaining interval within `left`, a 3.1.1 one no
/// properties.
fn expect_only_long(
    sub: &mut RawClient,
    version: ProtocolVersion,
    left: RangeInclusive<u32>,
) -> Publish {
    let got = sub.expect_publish();
    assert_eq!(
        &got.payload[..],
        b"long",
        "{version:?}: the expired one is not sent"
    );
    if version.is_v5() {
        let remaining = expiry_of(&got);
        assert!(
            remaining.is_some_and(|r| left.contains(&r)),
            "remaining {remaining:?}"
        );
    } else {
        assert!(got.properties.is_empty(), "3.1.1 gets no properties");
    }
    sub.expect_silence(QUIET);
    got
}

fn expiry_of(p: &Publish) -> Option<u32> {
    p.properties.message_expiry_interval
}

/// Polls the broker's counters until some messages were dropped (they are
/// published once per tick); the total dropped.
fn wait_dropped(b: &TestBroker) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let dropped: u64 = b.stats().iter().map(|s| s.dropped).sum();
        if dropped > 0 || Instant::now() >= deadline {
            return dropped;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn queued_messages_expire_and_the_rest_carry_the_remaining_interval() {
    let b = TestBroker::start(2);
    // Persistent subscribers homed on shard 1, one per protocol version.
    let ids: Vec<(ProtocolVersion, String)> = VERSIONS
        .iter()
        .map(|v| {
            let id = b.id_on(1, &format!("exp-sub-{v:?}"));
            let (mut c, _) = RawClient::connected(b.addr, connect_persistent(*v, &id));
            c.subscribe("exp/#", QoS::AtLeastOnce);
            c.disconnect();
            (*v, id)
        })
        .collect();
    publish_short_and_long(&b, "exp", false, 10);

    for (version, id) in &ids {
        let (mut sub, present) = RawClient::connected(b.addr, connect_persistent(*version, id));
        assert!(present, "{version:?}");
        // 10 s less the ~2 s it waited, rounded up.
        expect_only_long(&mut sub, *version, 7..=9);
    }
    assert!(
        wait_dropped(&b) >= 2,
        "an expired message counts as dropped"
    );
}

#[test]
fn expired_retained_messages_are_not_sent_to_new_subscribers() {
    let b = TestBroker::start(2);
    publish_short_and_long(&b, "ret", true, 60);

    for version in VERSIONS {
        let (mut sub, _) = RawClient::connected(
            b.addr,
            connect_packet(
                version,
                &b.id_on(1, &format!("ret-sub-{version:?}")),
                true,
                60,
            ),
        );
        sub.subscribe("ret/#", QoS::AtLeastOnce);
        let got = expect_only_long(&mut sub, version, 50..=58);
        assert!(got.retain);
    }
}

#[test]
fn live_delivery_keeps_the_interval() {
    let b = TestBroker::start(2);
    let (mut sub, mut publ) = sub_and_pub(&b, V5, "live/#", QoS::AtLeastOnce);
    let (mut sub3, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(1, "live-sub3"), true, 60),
    );
    sub3.subscribe("live/#", QoS::AtMostOnce);
    send_acked(
        &mut publ,
        &expiring("live/a", b"a", QoS::AtLeastOnce, false, 1, 30),
    );

    let got = sub.expect_publish();
    let left = expiry_of(&got);
    assert!(matches!(left, Some(29..=30)), "remaining {left:?}");
    let plain = sub3.expect_publish();
    assert_eq!(&plain.payload[..], b"a");
    assert!(plain.properties.is_empty(), "3.1.1 gets no properties");

    // Without the property, none is added.
    publ.publish("live/b", b"b", QoS::AtLeastOnce, false, 2);
    assert_eq!(expiry_of(&sub.expect_publish()), None);
}

/// `mosquitto_sub -F %E` prints the interval a real 5.0 client receives.
#[test]
fn mosquitto_sub_sees_the_remaining_interval_of_a_retained_message() {
    let b = TestBroker::start(2);
    let (mut publ, _) =
        RawClient::connected(b.addr, connect_packet(V5, &b.id_on(0, "mq-pub"), true, 60));
    send_acked(
        &mut publ,
        &expiring("mqexp/a", b"a", QoS::AtLeastOnce, true, 1, 60),
    );
    let id = b.id_on(1, "mq-sub");
    let printed = mosquitto_sub_v5_once(b.addr.port(), &id, "mqexp/#", "%E", &[]);
    let left: u32 = printed
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{printed:?}"));
    assert!((59..=60).contains(&left), "remaining {left}");
}
