//! MQTT 5.0 subscription options (3.8.3.1) with the publisher on another
//! shard: No Local, Retain As Published, Retain Handling 0/1/2 and the
//! maximum QoS, on the wire, through rumqttc and through MQTT.js (fed
//! retained messages by `mosquitto_pub`).
//!
//! More raw-bytes cases are in `retain` (Retain Handling 1/2, Retain As
//! Published) and `qos` (every QoS downgrade).

mod common;

use std::time::Duration;

use common::mosquitto_clients::mosquitto_pub_v5;
use common::*;
use shardmq::protocol::{ProtocolVersion, QoS, SubscriptionOptions};

const V5: ProtocolVersion = ProtocolVersion::V5;
const QUIET: Duration = Duration::from_millis(300);

/// A 5.0 client homed on `shard`.
fn client(b: &TestBroker, shard: usize, name: &str) -> RawClient {
    RawClient::connected(b.addr, connect_packet(V5, &b.id_on(shard, name), true, 60)).0
}

#[test]
fn no_local_skips_only_the_publishers_own_session() {
    let b = TestBroker::start(2);
    let no_local = SubscriptionOptions {
        no_local: true,
        ..SubscriptionOptions::new(QoS::AtLeastOnce)
    };
    let mut a = client(&b, 0, "nl-a");
    let mut other = client(&b, 1, "nl-b");
    a.subscribe_with("nl/#", no_local);
    other.subscribe_with("nl/#", no_local);

    a.publish("nl/a", b"from a", QoS::AtLeastOnce, false, 1);
    assert_eq!(&other.expect_publish().payload[..], b"from a");
    other.publish("nl/b", b"from b", QoS::AtLeastOnce, false, 2);
    assert_eq!(&a.expect_publish().payload[..], b"from b");
    a.expect_silence(QUIET);
    other.expect_silence(Duration::from_millis(50));

    // A second, overlapping subscription without No Local matches the
    // client's own message: it is delivered once, at that one's QoS.
    a.subscribe("nl/+", QoS::AtMostOnce);
    a.publish("nl/again", b"own", QoS::AtMostOnce, false, 0);
    let own = a.expect_publish();
    assert_eq!((&own.payload[..], own.qos), (&b"own"[..], QoS::AtMostOnce));
    assert_eq!(&other.expect_publish().payload[..], b"own");
    a.expect_silence(QUIET);
}

#[test]
fn retain_handling_0_sends_retained_messages_on_every_subscribe() {
    let b = TestBroker::start(2);
    client(&b, 0, "rh0-pub").publish("rh0/a", b"kept", QoS::AtLeastOnce, true, 1);
    let mut sub = client(&b, 1, "rh0-sub");
    for round in 0..2 {
        sub.subscribe("rh0/#", QoS::ExactlyOnce);
        let p = sub.expect_publish();
        assert_eq!(
            (p.retain, p.qos, &p.payload[..]),
            (true, QoS::AtLeastOnce, &b"kept"[..]),
            "subscribe {round}"
        );
        sub.expect_silence(QUIET);
    }
}

/// What a subscriber got: topic, payload, RETAIN, QoS (0..=2).
type Got = (String, String, bool, u8);

/// The deliveries every client's run below must produce, sorted: the
/// retained `rap/a` and `new/a` once each on subscribe (Retain Handling
/// 0 and 1) and no retained `rh/a` (2); live, the other client's `nl/`
/// messages but not its own (No Local), `rap/a` with RETAIN (Retain As
/// Published) and `rh/a` without, `max/a` published at QoS 2 at the
/// subscription's QoS 0.
fn expected() -> Vec<Got> {
    let mut want: Vec<Got> = [
        ("new/a", "kept", true, 1),
        ("rap/a", "kept", true, 1),
        ("nl/other", "theirs", false, 1),
        ("rap/a", "live", true, 1),
        ("rh/a", "live", false, 1),
        ("max/a", "two", false, 0),
        ("nl/end", "end", false, 1),
    ]
    .into_iter()
    .map(|(t, p, r, q)| (t.to_string(), p.to_string(), r, q))
    .collect();
    want.sort();
    want
}

#[test]
fn rumqttc_subscription_options() {
    use rumqttc::v5::mqttbytes::v5::{Filter, Packet, RetainForwardRule};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let b = TestBroker::start(2);
    let (port, me_id, other_id) = (b.addr.port(), b.id_on(1, "rc-me"), b.id_on(0, "rc-other"));
    let mut got: Vec<Got> = block_on_timeout(Duration::from_secs(20), async move {
        let (other, mut oev) = AsyncClient::new(MqttOptions::new(other_id, "127.0.0.1", port), 16);
        for topic in ["rap/a", "rh/a", "new/a"] {
            other
                .publish(topic, QoS::AtLeastOnce, true, "kept")
                .await
                .unwrap();
        }
        let mut acked = 0;
        while acked < 3 {
            if let Event::Incoming(Packet::PubAck(_)) = oev.poll().await.expect("other") {
                acked += 1;
            }
        }
        tokio::spawn(async move { while oev.poll().await.is_ok() {} });

        let (me, mut mev) = AsyncClient::new(MqttOptions::new(me_id, "127.0.0.1", port), 16);
        let with = |path: &str, qos, f: fn(&mut Filter)| {
            let mut filter = Filter::new(path, qos);
            f(&mut filter);
            filter
        };
        me.subscribe_many([
            with("nl/#", QoS::AtLeastOnce, |f| f.nolocal = true),
            with("rap/#", QoS::AtLeastOnce, |f| f.preserve_retain = true),
            with("rh/#", QoS::AtLeastOnce, |f| {
                f.retain_forward_rule = RetainForwardRule::Never
            }),
            with("new/#", QoS::AtLeastOnce, |f| {
                f.retain_forward_rule = RetainForwardRule::OnNewSubscribe
            }),
            with("max/#", QoS::AtMostOnce, |_| {}),
        ])
        .await
        .unwrap();
        let mut got = Vec::new();
        let mut subacks = 0;
        loop {
            match mev.poll().await.expect("subscriber") {
                Event::Incoming(Packet::SubAck(_)) => {
                    subacks += 1;
                    if subacks == 1 {
                        // Retain Handling 1: not again for this one.
                        let again = with("new/#", QoS::AtLeastOnce, |f| {
                            f.retain_forward_rule = RetainForwardRule::OnNewSubscribe
                        });
                        me.subscribe_many([again]).await.unwrap();
                    } else {
                        me.publish("nl/me", QoS::AtLeastOnce, false, "mine")
                            .await
                            .unwrap();
                    }
                }
                // Its own message would have come before this PUBACK.
                Event::Incoming(Packet::PubAck(_)) => {
                    for (topic, payload, qos, retain) in [
                        ("nl/other", "theirs", QoS::AtLeastOnce, false),
                        ("rap/a", "live", QoS::AtLeastOnce, true),
                        ("rh/a", "live", QoS::AtLeastOnce, true),
                        ("max/a", "two", QoS::ExactlyOnce, false),
                        ("nl/end", "end", QoS::AtLeastOnce, false),
                    ] {
                        other.publish(topic, qos, retain, payload).await.unwrap();
                    }
                }
                Event::Incoming(Packet::Publish(p)) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    let payload = String::from_utf8_lossy(&p.payload).into_owned();
                    let end = topic == "nl/end";
                    got.push((topic, payload, p.retain, p.qos as u8));
                    if end {
                        return got;
                    }
                }
                _ => {}
            }
        }
    });
    got.sort();
    assert_eq!(got, expected());
}

/// Two MQTT.js clients, `ME` (the subscriber) and `OTHER`: `ME`
/// subscribes with each option (and once more to `new/#`), publishes
/// `nl/me`, then `OTHER` publishes; `ME` prints what it gets as JSON
/// lines until `nl/end`.
const OPTIONS_MQTTJS: &str = r#"
const mqtt = require('mqtt');
const fail = (e) => { console.error(e); process.exit(1); };
const connect = (id) => new Promise((resolve) => {
  const c = mqtt.connect({ host: '127.0.0.1', port: +process.env.PORT, protocolVersion: 5,
    clientId: id, clean: true, reconnectPeriod: 0 });
  c.on('error', fail);
  c.on('connect', () => resolve(c));
});
const pub = (c, topic, payload, o) => new Promise((res, rej) =>
  c.publish(topic, payload, o, (e) => (e ? rej(e) : res())));
const sub = (c, s) => new Promise((res, rej) => c.subscribe(s, (e, g) => (e ? rej(e) : res(g))));
Promise.all([connect(process.env.ME), connect(process.env.OTHER)]).then(async ([me, other]) => {
  me.on('message', (topic, payload, p) => {
    console.log(JSON.stringify([topic, String(payload), p.retain, p.qos]));
    if (topic === 'nl/end') process.exit(0);
  });
  await sub(me, { 'nl/#': { qos: 1, nl: true }, 'rap/#': { qos: 1, rap: true },
    'rh/#': { qos: 1, rh: 2 }, 'new/#': { qos: 1, rh: 1 }, 'max/#': { qos: 0 } });
  await sub(me, { 'new/#': { qos: 1, rh: 1 } });
  await pub(me, 'nl/me', 'mine', { qos: 1 });
  await pub(other, 'nl/other', 'theirs', { qos: 1 });
  await pub(other, 'rap/a', 'live', { qos: 1, retain: true });
  await pub(other, 'rh/a', 'live', { qos: 1, retain: true });
  await pub(other, 'max/a', 'two', { qos: 2 });
  await pub(other, 'nl/end', 'end', { qos: 1 });
}).catch(fail);
"#;

#[test]
fn mqttjs_subscription_options() {
    let b = TestBroker::start(2);
    let port = b.addr.port();
    for topic in ["rap/a", "rh/a", "new/a"] {
        let args = ["-q", "1", "-r", "-t", topic, "-m", "kept"];
        let out = mosquitto_pub_v5(port, &b.id_on(0, "mpub"), &args, "");
        assert!(out.status.success(), "mosquitto_pub: {out:?}");
    }
    let (me, other, port) = (
        b.id_on(1, "js-me"),
        b.id_on(0, "js-other"),
        port.to_string(),
    );
    let env = [("PORT", port.as_str()), ("ME", &me), ("OTHER", &other)];
    let Some(out) = mqttjs::run("mqttjs_subscription_options", OPTIONS_MQTTJS, &env) else {
        return;
    };
    let mut got: Vec<Got> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    got.sort();
    assert_eq!(got, expected(), "{out}");
}
