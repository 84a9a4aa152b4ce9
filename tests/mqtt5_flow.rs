//! MQTT 5.0 flow control and packet sizes, publisher on shard 0 and
//! subscribers on shard 1, on the wire, through rumqttc and through
//! independent clients (MQTT.js, `mosquitto_pub`/`mosquitto_sub -V 5`):
//!
//! - our Receive Maximum (`max_inflight_messages`) is enforced: a QoS 2
//!   PUBLISH past it ends the connection with DISCONNECT 0x93; clients
//!   that honour it never hear that;
//! - the client's Receive Maximum is honoured: never more unacknowledged
//!   QoS 1/2 messages in flight to it than it allows;
//! - our Maximum Packet Size (`max_packet_size`) is enforced with
//!   DISCONNECT 0x95, the packet not routed;
//! - a message larger than a client's Maximum Packet Size is dropped for
//!   that client only, live or retained.
//!
//! The client's Receive Maximum with QoS 2 on the wire is also in `qos`,
//! and queued or resent messages over its Maximum Packet Size in
//! `adversarial`.

mod common;

use std::time::Duration;

use common::mosquitto_clients::{mosquitto_pub_v5, MosquittoSub};
use common::*;
use shardmq::protocol::{Connect, Packet, ProtocolVersion, PubResp, Publish, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;
const QUIET: Duration = Duration::from_millis(300);

/// Our limits in this suite: Receive Maximum 2, Maximum Packet Size 1024.
fn broker() -> TestBroker {
    TestBroker::with(2, |c| {
        c.max_inflight_messages = 2;
        c.max_packet_size = 1024;
    })
}

/// A message over [`SMALL`]'s limit and under the broker's.
const BIG: usize = 1000;
/// The Maximum Packet Size of the limited subscribers.
const SMALL: u32 = 300;

/// A 5.0 CONNECT homed on `shard` with a Maximum Packet Size of `max`.
fn limited(b: &TestBroker, shard: usize, name: &str, max: Option<u32>) -> Connect {
    let mut c = connect_packet(V5, &b.id_on(shard, name), true, 60);
    c.properties.maximum_packet_size = max;
    c
}

#[test]
fn our_receive_maximum_is_enforced_with_0x93() {
    let b = broker();
    // QoS 1 to the subscriber: its acknowledgements are one packet each.
    let (mut sub, mut publ) = sub_and_pub(&b, V5, "rm/#", QoS::AtLeastOnce);
    let q2 = |id: u16| Packet::Publish(publish("rm/x", &[id as u8], QoS::ExactlyOnce, false, id));
    let rec = |id: u16| Some(Packet::PubRec(PubResp::new(pid(id))));
    publ.send(&q2(1));
    publ.send(&q2(2));
    assert_eq!((publ.recv(), publ.recv()), (rec(1), rec(2)));
    // A resend is not a new message; QoS 1 is acknowledged at once and
    // takes no slot.
    let mut dup = publish("rm/x", &[1], QoS::ExactlyOnce, false, 1);
    dup.dup = true;
    publ.send(&Packet::Publish(dup));
    assert_eq!(publ.recv(), rec(1));
    publ.publish("rm/x", &[10], QoS::AtLeastOnce, false, 10);
    // PUBREL frees a slot.
    publ.send(&Packet::PubRel(PubResp::new(pid(1))));
    assert_eq!(publ.recv(), Some(Packet::PubComp(PubResp::new(pid(1)))));
    publ.send(&q2(3));
    assert_eq!(publ.recv(), rec(3));
    // Two unreleased (2 and 3): a third is one too many, and not routed.
    publ.send(&q2(4));
    expect_disconnect(&mut publ, ReasonCode::ReceiveMaximumExceeded);
    assert_eq!(sub.expect_payloads(4), [[1], [2], [10], [3]]);
    sub.expect_silence(QUIET);
}

#[test]
fn a_packet_over_our_maximum_is_refused_with_0x95_and_not_routed() {
    let b = broker();
    let (mut sub, mut publ) = sub_and_pub(&b, V5, "big/#", QoS::AtLeastOnce);
    publ.send(&Packet::Publish(publish(
        "big/x",
        &[0; 2000],
        QoS::AtLeastOnce,
        false,
        1,
    )));
    expect_disconnect(&mut publ, ReasonCode::PacketTooLarge);
    sub.expect_silence(QUIET);
}

/// Publishes `payload` at QoS 1 on `topic` and checks the PUBACK says it
/// matched (it did, for the subscriber without a limit).
fn publish_matched(publ: &mut RawClient, topic: &str, payload: &[u8], retain: bool, id: u16) {
    publ.send(&Packet::Publish(publish(
        topic,
        payload,
        QoS::AtLeastOnce,
        retain,
        id,
    )));
    assert_eq!(publ.recv(), Some(Packet::PubAck(PubResp::new(pid(id)))));
}

fn payload_len(p: &Publish) -> usize {
    p.payload.len()
}

#[test]
fn a_message_over_a_clients_maximum_packet_size_is_dropped_for_that_client_only() {
    let b = broker();
    let (mut small, _) = RawClient::connected(b.addr, limited(&b, 1, "mps-small", Some(SMALL)));
    let (mut any, _) = RawClient::connected(b.addr, limited(&b, 1, "mps-any", None));
    for c in [&mut small, &mut any] {
        c.subscribe("mps/#", QoS::AtLeastOnce);
    }
    let (mut publ, _) = RawClient::connected(b.addr, limited(&b, 0, "mps-pub", None));
    publish_matched(&mut publ, "mps/live", &[b'L'; BIG], true, 1);
    publish_matched(&mut publ, "mps/live", b"small", false, 2);
    assert_eq!(payload_len(&any.expect_publish()), BIG);
    assert_eq!(payload_len(&any.expect_publish()), 5);
    assert_eq!(&small.expect_publish().payload[..], b"small");
    small.expect_silence(QUIET);

    // The retained one is not sent on SUBSCRIBE to the small client.
    publish_matched(&mut publ, "mps/kept", b"kept", true, 3);
    for c in [&mut small, &mut any] {
        c.expect_publish();
        c.subscribe("mps/+", QoS::AtLeastOnce);
    }
    let mut retained: Vec<usize> = (0..2).map(|_| payload_len(&any.expect_publish())).collect();
    retained.sort_unstable();
    assert_eq!(retained, [4, BIG]);
    assert_eq!(&small.expect_publish().payload[..], b"kept");
    small.expect_silence(QUIET);
}

/// A session resumed with a smaller Receive Maximum than it had: what
/// was in flight is resent (same packet ids, DUP; PUBREL past PUBREC) in
/// order, but never more at once than the new Receive Maximum allows.
#[test]
fn resends_on_resume_honour_the_new_receive_maximum() {
    let b = TestBroker::start(2);
    let id = b.id_on(1, "rs-sub");
    let resume = |receive_maximum| {
        let mut c = connect_v5_expiry(&id, false, 600);
        c.properties.receive_maximum = receive_maximum;
        c
    };
    let (mut sub, _) = RawClient::connected(b.addr, resume(None));
    sub.subscribe("rs/#", QoS::ExactlyOnce);
    let (mut publ, _) = RawClient::connected(b.addr, limited(&b, 0, "rs-pub", None));
    for i in 1..=5u8 {
        let qos = if i == 3 {
            QoS::ExactlyOnce
        } else {
            QoS::AtLeastOnce
        };
        publ.publish("rs/x", &[i], qos, false, u16::from(i));
    }
    let first: Vec<Publish> = (0..5).map(|_| sub.recv_publish()).collect();
    // The QoS 2 one is past PUBREC: PUBREL is what is resent for it.
    let rel = first[2].packet_id.expect("QoS 2");
    sub.send(&Packet::PubRec(PubResp::new(rel)));
    assert_eq!(sub.recv(), Some(Packet::PubRel(PubResp::new(rel))));
    drop(sub);
    std::thread::sleep(Duration::from_millis(100));

    let (mut sub, present) = RawClient::connected(b.addr, resume(Some(2)));
    assert!(present);
    let mut resent = vec![sub.recv().expect("resent"), sub.recv().expect("resent")];
    for (n, original) in first.iter().enumerate() {
        sub.expect_silence(Duration::from_millis(150));
        match resent.remove(0) {
            Packet::Publish(p) => {
                assert_eq!((p.dup, p.packet_id), (true, original.packet_id));
                assert_eq!(p.payload, original.payload);
                sub.ack(&p);
            }
            Packet::PubRel(r) => {
                assert_eq!((n, r.packet_id), (2, rel));
                sub.send(&Packet::PubComp(PubResp::new(rel)));
            }
            other => panic!("expected a resend, got {other:?}"),
        }
        if n < 3 {
            resent.push(sub.recv().expect("resent"));
        }
    }
    sub.expect_silence(QUIET);
}

const LIMIT: Duration = Duration::from_secs(20);

/// rumqttc with manual acknowledgements and Receive Maximum 1 holds each
/// message 100 ms: no second one comes meanwhile. Its publisher, told
/// our Receive Maximum 2, sends QoS 1 and 2 without hearing 0x93.
#[test]
fn rumqttc_receive_maximum_both_ways() {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    const N: u8 = 6;
    let b = broker();
    let (port, pub_id, sub_id) = (b.addr.port(), b.id_on(0, "rcf-pub"), b.id_on(1, "rcf-sub"));
    let got = block_on_timeout(LIMIT, async move {
        let mut opts = MqttOptions::new(sub_id, "127.0.0.1", port);
        opts.set_receive_maximum(Some(1)).set_manual_acks(true);
        let (sub, mut sev) = AsyncClient::new(opts, 16);
        sub.subscribe("rcf/#", QoS::ExactlyOnce).await.unwrap();
        let (publ, mut pev) = AsyncClient::new(MqttOptions::new(pub_id, "127.0.0.1", port), 16);
        let publisher = tokio::spawn(async move {
            let mut acked = 0;
            while acked < N {
                match pev.poll().await.expect("publisher") {
                    Event::Incoming(Packet::Disconnect(d)) => panic!("publisher: {d:?}"),
                    Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_)) => acked += 1,
                    _ => {}
                }
            }
        });
        let mut got = Vec::new();
        let mut held = None;
        while got.len() < usize::from(N) {
            let ev = match held {
                None => Some(sev.poll().await.expect("subscriber")),
                Some(_) => tokio::time::timeout(Duration::from_millis(100), sev.poll())
                    .await
                    .ok()
                    .map(|e| e.expect("subscriber")),
            };
            match ev {
                Some(Event::Incoming(Packet::SubAck(_))) => {
                    for i in 1..=N {
                        let qos = [QoS::AtLeastOnce, QoS::ExactlyOnce][usize::from(i % 2)];
                        publ.publish("rcf/x", qos, false, vec![i]).await.unwrap();
                    }
                }
                Some(Event::Incoming(Packet::Publish(p))) => {
                    assert!(held.is_none(), "over Receive Maximum 1: {p:?}");
                    got.push(p.payload[0]);
                    held = Some(p);
                }
                None => sub.ack(&held.take().expect("held")).await.unwrap(),
                _ => {}
            }
        }
        publisher.await.expect("publisher saw no DISCONNECT");
        got
    });
    assert_eq!(got, (1..=N).collect::<Vec<_>>());
}

/// rumqttc with Maximum Packet Size 300 misses only the big message.
#[test]
fn rumqttc_maximum_packet_size_drops_only_what_it_cannot_take() {
    use rumqttc::v5::mqttbytes::v5::Packet as RcPacket;
    use rumqttc::v5::mqttbytes::QoS as RcQoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let b = broker();
    let (mut any, mut publ) = sub_and_pub(&b, V5, "rcm/#", QoS::AtLeastOnce);
    let (port, sub_id) = (b.addr.port(), b.id_on(1, "rcm-sub"));
    let first = block_on_timeout(LIMIT, async move {
        let mut opts = MqttOptions::new(sub_id, "127.0.0.1", port);
        opts.set_max_packet_size(Some(SMALL));
        let (sub, mut sev) = AsyncClient::new(opts, 16);
        sub.subscribe("rcm/#", RcQoS::AtLeastOnce).await.unwrap();
        loop {
            match sev.poll().await.expect("subscriber") {
                Event::Incoming(RcPacket::SubAck(_)) => {
                    publ.publish("rcm/x", &[b'L'; BIG], QoS::AtLeastOnce, false, 1);
                    publ.publish("rcm/x", b"small", QoS::AtLeastOnce, false, 2);
                }
                Event::Incoming(RcPacket::Publish(p)) => return p.payload,
                _ => {}
            }
        }
    });
    assert_eq!(&first[..], b"small");
    assert_eq!(any.expect_payloads(2)[0].len(), BIG);
}

/// Publishes five QoS 2 messages at once with MQTT.js, which does not
/// wait for the broker's Receive Maximum; prints the DISCONNECT reason.
const FLOOD_MQTTJS: &str = r#"
const mqtt = require('mqtt');
const c = mqtt.connect({ host: '127.0.0.1', port: +process.env.PORT, protocolVersion: 5,
  clientId: process.env.ID, reconnectPeriod: 0 });
c.on('error', () => {}); // the write after the close fails: expected
c.on('connect', () => {
  const payload = process.env.SIZE ? Buffer.alloc(+process.env.SIZE) : 'm';
  for (let i = 0; i < +process.env.COUNT; i++) c.publish('js/flood', payload, { qos: 2 });
});
c.on('disconnect', (p) => console.log('disconnect=' + p.reasonCode));
c.on('close', () => process.exit(0));
"#;

/// MQTT.js, sending past our Receive Maximum or Maximum Packet Size, hears
/// DISCONNECT 0x93 or 0x95; `mosquitto_pub -l`, which honours the Receive
/// Maximum, gets every message through to `mosquitto_sub` at QoS 2.
#[test]
fn independent_clients_meet_our_receive_maximum_and_packet_size() {
    let b = broker();
    let port = b.addr.port();
    let mut sub = MosquittoSub::start(port, &b.id_on(1, "mflow"), "js/#", "%p", &["-q", "2"]);
    let (port_s, id) = (port.to_string(), b.id_on(0, "jsflood"));
    let cases = [("5", "", "disconnect=147"), ("1", "2000", "disconnect=149")];
    for (count, size, heard) in cases {
        let env = [("PORT", port_s.as_str()), ("ID", &id)];
        let env = [&env[..], &[("COUNT", count), ("SIZE", size)]].concat();
        let Some(out) = mqttjs::run("mqttjs_flow", FLOOD_MQTTJS, &env) else {
            return;
        };
        assert_eq!(out.trim(), heard, "{count} x {size}");
    }
    // The two within the window were delivered; nothing else.
    assert_eq!(sub.messages(2), ["m", "m"]);
    sub.expect_no_message(QUIET);

    let out = mosquitto_pub_v5(
        port,
        &b.id_on(0, "mlines"),
        &["-q", "2", "-t", "js/lines", "-l"],
        "1\n2\n3\n4\n5\n",
    );
    assert!(out.status.success(), "mosquitto_pub -l: {out:?}");
    assert_eq!(sub.messages(5), ["1", "2", "3", "4", "5"]);
}

/// An MQTT.js subscriber with Receive Maximum 1 that acknowledges each
/// message 100 ms late, and an MQTT.js publisher: prints each payload,
/// and `over` for any that came while one was unacknowledged.
const SLOW_ACKS_MQTTJS: &str = r#"
const mqtt = require('mqtt');
const fail = (e) => { console.error(e); process.exit(1); };
const opts = { host: '127.0.0.1', port: +process.env.PORT, protocolVersion: 5, reconnectPeriod: 0 };
let unacked = 0, seen = 0;
const sub = mqtt.connect({ ...opts, clientId: process.env.SUB,
  properties: { receiveMaximum: 1 },
  customHandleAcks: (topic, payload, packet, done) => {
    if (unacked > 0) console.log('over');
    unacked++;
    setTimeout(() => { unacked--; done(0); }, 100);
  } });
sub.on('error', fail);
sub.on('message', (topic, payload) => {
  console.log(String(payload));
  if (++seen === 6) setTimeout(() => process.exit(0), 200);
});
sub.on('connect', () => sub.subscribe('slow/#', { qos: 2 }, (e) => {
  if (e) fail(e);
  const publ = mqtt.connect({ ...opts, clientId: process.env.PUB });
  publ.on('error', fail);
  publ.on('connect', () => {
    for (let i = 1; i <= 6; i++) publ.publish('slow/x', String(i), { qos: 1 + (i % 2) });
  });
}));
"#;

/// Independent clients' Receive Maximum and Maximum Packet Size are
/// honoured: MQTT.js with Receive Maximum 1 and slow acknowledgements,
/// `mosquitto_sub -D connect maximum-packet-size` beside one without.
#[test]
fn independent_clients_limits_are_honoured() {
    let b = TestBroker::start(2);
    let port = b.addr.port();
    let limit = SMALL.to_string();
    let mut small = MosquittoSub::start(
        port,
        &b.id_on(1, "msmall"),
        "mps/#",
        "%l",
        &["-q", "1", "-D", "connect", "maximum-packet-size", &limit],
    );
    let mut any = MosquittoSub::start(port, &b.id_on(1, "many"), "mps/#", "%l", &["-q", "1"]);
    let (mut publ, _) = RawClient::connected(b.addr, limited(&b, 0, "mps-pub", None));
    publ.publish("mps/x", &[b'L'; BIG], QoS::AtLeastOnce, false, 1);
    publ.publish("mps/x", b"small", QoS::AtLeastOnce, false, 2);
    assert_eq!(any.messages(2), [BIG.to_string(), "5".to_string()]);
    assert_eq!(small.message(), "5");

    let (port, sub_id, pub_id) = (port.to_string(), b.id_on(1, "jsslow"), b.id_on(0, "jspub"));
    let env = [("PORT", port.as_str()), ("SUB", &sub_id), ("PUB", &pub_id)];
    let Some(out) = mqttjs::run("mqttjs_receive_maximum", SLOW_ACKS_MQTTJS, &env) else {
        return;
    };
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["1", "2", "3", "4", "5", "6"]
    );
}
