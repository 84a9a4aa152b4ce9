//! MQTT 5.0 features through a real client, rumqttc, with publishers
//! homed on shard 0 and subscribers on shard 1: Session Expiry, Clean
//! Start and Session Present; a delayed will with its properties, or
//! cancelled by a resume; Message Expiry; inbound Topic Aliases;
//! Subscription Identifiers; application properties end to end; what the
//! CONNACK announces (Assigned Client Identifier, Server Keep Alive...).
//!
//! Subscription options are in `mqtt5_sub_options`, flow control and
//! packet sizes in `mqtt5_flow`; the same features on the wire are in
//! the suites each names.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnectProperties, LastWill, LastWillProperties, Packet as RcPacket,
    Publish as RcPublish, PublishProperties, SubscribeProperties,
};
use rumqttc::v5::mqttbytes::QoS as RcQoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use shardmq::protocol::{ProtocolVersion, QoS};

const V5: ProtocolVersion = ProtocolVersion::V5;
const LIMIT: Duration = Duration::from_secs(20);
const QUIET: Duration = Duration::from_millis(300);

/// Options for client `id` of the broker on `port`, its session kept
/// `expiry` seconds (none if `None`), Clean Start `clean`.
fn options(id: &str, port: u16, expiry: Option<u32>, clean: bool) -> MqttOptions {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_clean_start(clean);
    if expiry.is_some() {
        o.set_connect_properties(ConnectProperties {
            session_expiry_interval: expiry,
            ..ConnectProperties::new()
        });
    }
    o
}

/// Connects; the client, its event loop and the CONNACK.
async fn connect(opts: MqttOptions) -> (AsyncClient, EventLoop, ConnAck) {
    let (c, mut ev) = AsyncClient::new(opts, 16);
    loop {
        if let Event::Incoming(RcPacket::ConnAck(ack)) = ev.poll().await.expect("connect") {
            return (c, ev, ack);
        }
    }
}

/// Polls until an incoming packet for which `f` holds.
async fn until(ev: &mut EventLoop, f: impl Fn(&RcPacket) -> bool) -> RcPacket {
    loop {
        if let Event::Incoming(p) = ev.poll().await.expect("event loop") {
            if f(&p) {
                return p;
            }
        }
    }
}

/// The next PUBLISH (rumqttc acknowledges it).
async fn next_publish(ev: &mut EventLoop) -> RcPublish {
    match until(ev, |p| matches!(p, RcPacket::Publish(_))).await {
        RcPacket::Publish(p) => p,
        _ => unreachable!(),
    }
}

/// Asserts that no PUBLISH comes within [`QUIET`].
async fn no_publish(ev: &mut EventLoop) {
    let got = tokio::time::timeout(QUIET, next_publish(ev)).await;
    assert!(got.is_err(), "expected nothing, got {got:?}");
}

/// Subscribes to `filter` at QoS 1 with Subscription Identifier `id`
/// and waits for the SUBACK.
async fn subscribe(c: &AsyncClient, ev: &mut EventLoop, filter: &str, id: Option<usize>) {
    let props = SubscribeProperties {
        id,
        user_properties: Vec::new(),
    };
    c.subscribe_with_properties(filter, RcQoS::AtLeastOnce, props)
        .await
        .unwrap();
    until(ev, |p| matches!(p, RcPacket::SubAck(_))).await;
}

/// Publishes at QoS 1 with `props` and waits for the PUBACK.
async fn publish(
    c: &AsyncClient,
    ev: &mut EventLoop,
    topic: &str,
    payload: &'static [u8],
    retain: bool,
    props: PublishProperties,
) {
    c.publish_with_properties(topic, RcQoS::AtLeastOnce, retain, payload, props)
        .await
        .unwrap();
    until(ev, |p| matches!(p, RcPacket::PubAck(_))).await;
}

/// A raw 5.0 client homed on `shard`.
fn raw(b: &TestBroker, shard: usize, name: &str) -> RawClient {
    RawClient::connected(b.addr, connect_packet(V5, &b.id_on(shard, name), true, 60)).0
}

/// A raw 5.0 client homed on shard 1 subscribed to `filter` at QoS 1.
fn raw_sub(b: &TestBroker, name: &str, filter: &str) -> RawClient {
    let mut c = raw(b, 1, name);
    c.subscribe(filter, QoS::AtLeastOnce);
    c
}

#[test]
fn rumqttc_session_expiry_clean_start_and_session_present() {
    let b = TestBroker::start(2);
    let mut publ = raw(&b, 0, "rcs-pub");
    let (port, id) = (b.addr.port(), b.id_on(1, "rcs-sub"));
    block_on_timeout(LIMIT, async move {
        let (c, mut ev, ack) = connect(options(&id, port, Some(60), true)).await;
        assert!(!ack.session_present);
        subscribe(&c, &mut ev, "rcs/#", None).await;
        c.disconnect().await.unwrap();
        while ev.poll().await.is_ok() {}

        publ.publish("rcs/a", b"queued", QoS::AtLeastOnce, false, 1);
        let (_c, mut ev, ack) = connect(options(&id, port, Some(60), false)).await;
        assert!(ack.session_present, "kept for 60 s");
        assert_eq!(&next_publish(&mut ev).await.payload[..], b"queued");
        drop(ev); // gone without DISCONNECT: the session stays

        let (_c, mut ev, ack) = connect(options(&id, port, Some(60), true)).await;
        assert!(!ack.session_present, "Clean Start discards it");
        publ.publish("rcs/b", b"nobody", QoS::AtMostOnce, false, 0);
        no_publish(&mut ev).await;
    });
}

#[test]
fn rumqttc_delayed_will_with_properties_or_cancelled_by_a_resume() {
    let b = TestBroker::start(2);
    let mut watcher = raw_sub(&b, "rcw-watch", "rcw/#");
    let (port, id) = (b.addr.port(), b.id_on(0, "rcw"));
    let dying = move || {
        let mut o = options(&id, port, Some(60), false);
        let props = LastWillProperties {
            delay_interval: Some(1),
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(300),
            content_type: Some("text/plain".into()),
            response_topic: Some("rcw/reply".into()),
            correlation_data: Some(Bytes::from_static(b"c0rr")),
            user_properties: vec![("k".into(), "v1".into()), ("k".into(), "v2".into())],
        };
        let will = LastWill::new("rcw/will", "gone", RcQoS::AtLeastOnce, false, Some(props));
        o.set_last_will(will);
        o
    };
    let start = Instant::now();
    let opts = dying();
    // Dropped without DISCONNECT.
    block_on_timeout(LIMIT, async move { drop(connect(opts).await) });
    let p = watcher.expect_publish();
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "held back 1 s"
    );
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("rcw/will", &b"gone"[..])
    );
    let got = &p.properties;
    assert_eq!(
        got.user_properties,
        [("k".into(), "v1".into()), ("k".into(), "v2".into())]
    );
    assert_eq!(got.content_type.as_deref(), Some("text/plain"));
    assert_eq!(got.payload_format_indicator, Some(1));
    assert_eq!(got.response_topic.as_deref(), Some("rcw/reply"));
    assert_eq!(got.correlation_data.as_deref(), Some(&b"c0rr"[..]));
    assert!(matches!(got.message_expiry_interval, Some(299..=300)));
    assert_eq!(got.will_delay_interval, None);

    // Back within the delay, resuming the session: no will.
    let (opts, resume) = (dying(), options(&b.id_on(0, "rcw"), port, Some(60), false));
    block_on_timeout(LIMIT, async move {
        drop(connect(opts).await);
        let (c, mut ev, ack) = connect(resume).await;
        assert!(ack.session_present);
        c.disconnect().await.unwrap();
        while ev.poll().await.is_ok() {}
    });
    watcher.expect_silence(Duration::from_millis(1_800));
}

#[test]
fn rumqttc_message_expiry() {
    let b = TestBroker::start(2);
    let (port, pub_id, sub_id) = (b.addr.port(), b.id_on(0, "rce-pub"), b.id_on(1, "rce-sub"));
    block_on_timeout(LIMIT, async move {
        let (publ, mut pev, _) = connect(options(&pub_id, port, None, true)).await;
        for (topic, secs) in [("rce/short", 1), ("rce/long", 60)] {
            let props = PublishProperties {
                message_expiry_interval: Some(secs),
                ..PublishProperties::default()
            };
            publish(&publ, &mut pev, topic, b"x", true, props).await;
        }
        tokio::time::sleep(Duration::from_millis(2_000)).await;
        let (sub, mut sev, _) = connect(options(&sub_id, port, None, true)).await;
        subscribe(&sub, &mut sev, "rce/#", None).await;
        let p = next_publish(&mut sev).await;
        assert_eq!(&p.topic[..], b"rce/long", "the short one expired");
        let left = p.properties.and_then(|p| p.message_expiry_interval);
        assert!(matches!(left, Some(57..=59)), "remaining {left:?}");
        no_publish(&mut sev).await;
    });
}

#[test]
fn rumqttc_inbound_topic_alias() {
    let b = TestBroker::start(2);
    let mut sub = raw_sub(&b, "rca-sub", "rca/#");
    let (port, id) = (b.addr.port(), b.id_on(0, "rca-pub"));
    block_on_timeout(LIMIT, async move {
        let (c, mut ev, ack) = connect(options(&id, port, None, true)).await;
        let max = ack.properties.and_then(|p| p.topic_alias_max);
        assert_eq!(max, Some(10));
        let alias = || PublishProperties {
            topic_alias: Some(1),
            ..PublishProperties::default()
        };
        publish(&c, &mut ev, "rca/long/topic", b"set", false, alias()).await;
        publish(&c, &mut ev, "", b"used", false, alias()).await;
    });
    for payload in [&b"set"[..], b"used"] {
        let p = sub.expect_publish();
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            ("rca/long/topic", payload)
        );
        assert_eq!(p.properties.topic_alias, None);
    }
}

#[test]
fn rumqttc_subscription_identifiers() {
    let b = TestBroker::start(2);
    let mut publ = raw(&b, 0, "rci-pub");
    let (port, id) = (b.addr.port(), b.id_on(1, "rci-sub"));
    block_on_timeout(LIMIT, async move {
        let (c, mut ev, ack) = connect(options(&id, port, None, true)).await;
        let available = ack
            .properties
            .and_then(|p| p.subscription_identifiers_available);
        assert_eq!(available, Some(1));
        subscribe(&c, &mut ev, "rci/+", Some(7)).await;
        subscribe(&c, &mut ev, "rci/#", Some(268_435_455)).await;
        subscribe(&c, &mut ev, "rci/a", None).await;
        publ.publish("rci/a", b"a", QoS::AtLeastOnce, false, 1);
        let p = next_publish(&mut ev).await;
        let mut ids = p.properties.expect("properties").subscription_identifiers;
        ids.sort_unstable();
        assert_eq!(ids, [7, 268_435_455]);
        no_publish(&mut ev).await;
    });
}

#[test]
fn rumqttc_application_properties_end_to_end() {
    let b = TestBroker::start(2);
    let (port, pub_id, sub_id) = (b.addr.port(), b.id_on(0, "rcp-pub"), b.id_on(1, "rcp-sub"));
    let p = application_properties();
    let sent = PublishProperties {
        payload_format_indicator: p.payload_format_indicator,
        message_expiry_interval: p.message_expiry_interval,
        content_type: p.content_type,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data,
        user_properties: p.user_properties,
        ..PublishProperties::default()
    };
    block_on_timeout(LIMIT, async move {
        let (sub, mut sev, _) = connect(options(&sub_id, port, None, true)).await;
        subscribe(&sub, &mut sev, "rcp/#", None).await;
        let (publ, mut pev, _) = connect(options(&pub_id, port, None, true)).await;
        publish(&publ, &mut pev, "rcp/a", b"{}", false, sent.clone()).await;
        let got = next_publish(&mut sev).await.properties.expect("properties");
        let expiry = got.message_expiry_interval;
        assert!(matches!(expiry, Some(3599..=3600)), "{expiry:?}");
        let want = PublishProperties {
            message_expiry_interval: expiry,
            ..sent
        };
        assert_eq!(got, want, "user properties in order, duplicates kept");
    });
}

#[test]
fn rumqttc_reads_what_the_connack_announces() {
    let b = TestBroker::with(2, constrained);
    let port = b.addr.port();
    block_on_timeout(LIMIT, async move {
        let mut assigned = Vec::new();
        for _ in 0..2 {
            let (_c, _ev, ack) = connect(options("", port, None, true)).await;
            assert!(!ack.session_present);
            let props = ack.properties.expect("5.0 CONNACK properties");
            assert_eq!(props.receive_max, Some(5));
            assert_eq!(props.max_packet_size, Some(5000));
            assert_eq!(props.server_keep_alive, Some(30), "asked for 60");
            assert_eq!(props.retain_available, Some(0));
            assert_eq!(props.topic_alias_max, Some(4));
            assert_eq!(props.subscription_identifiers_available, Some(1));
            // Absent: QoS 2 and wildcards are available.
            assert_eq!(props.max_qos, None);
            assert_eq!(props.wildcard_subscription_available, None);
            let id = props.assigned_client_identifier.expect("assigned");
            assert!(!id.is_empty());
            assigned.push(id);
        }
        assert_ne!(assigned[0], assigned[1], "each one unique");
    });
}
