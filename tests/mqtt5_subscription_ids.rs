//! MQTT 5.0 Subscription Identifiers (3.8.2.1.2, 3.3.2.3.8) across shards:
//! a PUBLISH to a 5.0 subscriber carries the identifier of every matching
//! subscription of its session, whether delivered live, from the offline
//! queue or as a retained message on SUBSCRIBE; a new SUBSCRIBE to the same
//! filter replaces (or removes) it; 3.1.1 subscribers never see one.

mod common;

use std::time::Duration;

use common::*;
use shardmq::protocol::{
    Connect, Packet, Properties, ProtocolVersion, Publish, QoS, SubAck, Subscribe,
    SubscriptionOptions, TopicFilter,
};

const V5: ProtocolVersion = ProtocolVersion::V5;
const QUIET: Duration = Duration::from_millis(300);

/// SUBSCRIBE to `filter` at QoS 1 with Subscription Identifier `id`
/// (none when `None`); returns the SUBACK.
fn subscribe_id(c: &mut RawClient, filter: &str, id: Option<u32>) -> SubAck {
    let sub = Subscribe {
        packet_id: pid(1),
        filters: vec![(
            TopicFilter::from_str(filter).unwrap(),
            SubscriptionOptions::new(QoS::AtLeastOnce),
        )],
        properties: Properties {
            subscription_identifiers: id.into_iter().collect(),
            ..Properties::default()
        },
    };
    c.send(&Packet::Subscribe(sub));
    match c.recv() {
        Some(Packet::SubAck(a)) => a,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Filters to subscribe to, each with its identifier (or none).
type Subs<'a> = &'a [(&'a str, Option<u32>)];

/// A client connected with `connect` and subscribed to `subs`.
fn subscriber(b: &TestBroker, connect: Connect, subs: Subs<'_>) -> RawClient {
    let (mut sub, _) = RawClient::connected(b.addr, connect);
    for (filter, sub_id) in subs {
        subscribe_id(&mut sub, filter, *sub_id);
    }
    sub
}

/// A 5.0 subscriber homed on shard 1, subscribed to `subs`, and a
/// publisher on shard 0.
fn v5_pair(b: &TestBroker, name: &str, subs: Subs<'_>) -> (RawClient, RawClient) {
    let id = b.id_on(1, &format!("{name}-sub"));
    let sub = subscriber(b, connect_packet(V5, &id, true, 60), subs);
    (sub, publisher(b, name))
}

/// A 5.0 publisher homed on shard 0.
fn publisher(b: &TestBroker, name: &str) -> RawClient {
    let id = b.id_on(0, &format!("{name}-pub"));
    RawClient::connected(b.addr, connect_packet(V5, &id, true, 60)).0
}

/// A 5.0 subscriber homed on shard 1 whose session outlives it by an
/// hour, subscribed to `subs` (filter, identifier), and a publisher on
/// shard 0; and the subscriber's client id.
fn persistent_pair(b: &TestBroker, name: &str, subs: Subs<'_>) -> (RawClient, RawClient, String) {
    let id = b.id_on(1, &format!("{name}-sub"));
    let sub = subscriber(b, connect_v5_expiry(&id, true, 3600), subs);
    (sub, publisher(b, name), id)
}

/// Reconnects client `id` to its kept session.
fn resume(b: &TestBroker, id: &str) -> RawClient {
    let (sub, present) = RawClient::connected(b.addr, connect_v5_expiry(id, false, 3600));
    assert!(present, "the session was kept");
    sub
}

/// Receives (and acknowledges) a PUBLISH of `payload` carrying exactly
/// the identifiers `ids` (sorted).
fn expect_with_ids(sub: &mut RawClient, payload: &[u8], ids: &[u32]) -> Publish {
    let got = sub.expect_publish();
    assert_eq!(&got.payload[..], payload);
    assert_eq!(ids_of(&got), ids, "identifiers of {payload:?}");
    got
}

/// The identifiers a received PUBLISH carries, sorted.
fn ids_of(p: &Publish) -> Vec<u32> {
    let mut ids = p.properties.subscription_identifiers.clone();
    ids.sort_unstable();
    ids
}

#[test]
fn one_subscription_identifier_is_delivered() {
    let b = TestBroker::start(2);
    let (mut sub, mut publ) = v5_pair(&b, "one", &[("sid/one", Some(268_435_455))]);
    publ.publish("sid/one", b"x", QoS::AtLeastOnce, false, 1);
    expect_with_ids(&mut sub, b"x", &[268_435_455]);
}

#[test]
fn overlapping_subscriptions_give_one_publish_with_both_identifiers() {
    let b = TestBroker::start(2);
    let subs = [
        ("sid/both/+", Some(1)),
        ("sid/#", Some(2)),
        ("sid/both/x", None),
    ];
    let (mut sub, mut publ) = v5_pair(&b, "both", &subs);
    publ.publish("sid/both/x", b"x", QoS::AtLeastOnce, false, 1);
    expect_with_ids(&mut sub, b"x", &[1, 2]);
    sub.expect_silence(QUIET);

    // Only the matching ones: "sid/#" alone.
    publ.publish("sid/other", b"y", QoS::AtMostOnce, false, 0);
    assert_eq!(ids_of(&sub.expect_publish()), vec![2]);
}

#[test]
fn a_new_subscribe_replaces_or_removes_the_identifier() {
    let b = TestBroker::start(2);
    let subs = [("sid/repl", Some(5)), ("sid/repl", Some(6))];
    let (mut sub, mut publ) = v5_pair(&b, "repl", &subs);
    publ.publish("sid/repl", b"a", QoS::AtLeastOnce, false, 1);
    assert_eq!(ids_of(&sub.expect_publish()), vec![6]);

    subscribe_id(&mut sub, "sid/repl", None);
    publ.publish("sid/repl", b"b", QoS::AtLeastOnce, false, 2);
    expect_with_ids(&mut sub, b"b", &[]);
}

#[test]
fn a_queued_message_keeps_its_identifiers_until_delivered() {
    let b = TestBroker::start(2);
    let subs = [
        ("sid/q/+", Some(3)),
        ("sid/q/#", Some(4)),
        ("sid/plain", None),
    ];
    let (sub, mut publ, id) = persistent_pair(&b, "queued", &subs);
    sub.disconnect();
    publ.publish("sid/q/a", b"a", QoS::AtLeastOnce, false, 1);
    publ.publish("sid/plain", b"p", QoS::AtLeastOnce, false, 2);

    let mut sub = resume(&b, &id);
    expect_with_ids(&mut sub, b"a", &[3, 4]);
    expect_with_ids(&mut sub, b"p", &[]);
}

#[test]
fn a_resent_publish_keeps_its_identifiers() {
    let b = TestBroker::start(2);
    let (mut sub, mut publ, id) = persistent_pair(&b, "resend", &[("sid/resend", Some(9))]);
    publ.publish("sid/resend", b"r", QoS::AtLeastOnce, false, 1);
    let first = sub.recv_publish(); // not acknowledged
    assert_eq!(ids_of(&first), vec![9]);
    drop(sub);

    let mut sub = resume(&b, &id);
    let again = sub.expect_publish();
    assert!(again.dup);
    assert_eq!(ids_of(&again), vec![9]);
}

#[test]
fn retained_messages_on_subscribe_carry_that_subscriptions_identifier() {
    let b = TestBroker::start(2);
    let (mut sub, mut publ) = v5_pair(&b, "ret", &[]);
    publ.publish("sid/ret/a", b"kept", QoS::AtLeastOnce, true, 1);
    subscribe_id(&mut sub, "sid/other", Some(10));
    subscribe_id(&mut sub, "sid/ret/+", Some(11));
    let got = sub.expect_publish();
    assert!(got.retain);
    assert_eq!(ids_of(&got), vec![11], "only the new subscription's");
}

#[test]
fn a_v311_subscriber_gets_no_identifiers() {
    let b = TestBroker::start(2);
    let (mut v5, mut publ) = v5_pair(&b, "mixed", &[("sid/mixed", Some(12))]);
    let (mut old, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(1, "mixed-311"), true, 60),
    );
    old.subscribe("sid/mixed", QoS::AtLeastOnce);
    publ.publish("sid/mixed", b"m", QoS::AtLeastOnce, false, 1);
    assert_eq!(ids_of(&v5.expect_publish()), vec![12]);
    assert!(old.expect_publish().properties.is_empty());
}

#[test]
fn a_subscription_identifier_of_zero_is_a_protocol_error() {
    let b = TestBroker::start(2);
    let (mut sub, _) = v5_pair(&b, "zero", &[]);
    // SUBSCRIBE: packet id 1, properties 0x0B (Subscription Identifier)
    // = 0, one filter at QoS 1.
    let filter = b"s/z";
    let mut body = vec![0, 1, 2, 0x0B, 0];
    body.extend_from_slice(&[0, filter.len() as u8]);
    body.extend_from_slice(filter);
    body.push(1);
    let mut packet = vec![0x82, body.len() as u8];
    packet.extend_from_slice(&body);
    sub.send_bytes(&packet);
    let got = sub.expect_closed();
    assert!(
        got.iter().all(|p| !matches!(p, Packet::SubAck(_))),
        "no SUBACK: {got:?}"
    );
}

/// A real 5.0 client (`mosquitto_sub -D subscribe subscription-identifier`)
/// sees the identifier on a retained message.
#[test]
fn mosquitto_sub_sees_its_subscription_identifier() {
    let b = TestBroker::start(2);
    let mut publ = publisher(&b, "mq");
    publ.publish("mqsid/a", b"a", QoS::AtLeastOnce, true, 1);
    let id = b.id_on(1, "mq-sub");
    let extra = ["-D", "subscribe", "subscription-identifier", "7"];
    let printed = mosquitto_sub_v5_once(b.addr.port(), &id, "mqsid/#", "%j", &extra);
    assert!(
        printed.contains("\"subscription-identifier\":7"),
        "{printed}"
    );
}
