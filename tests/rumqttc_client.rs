//! A real third-party client (rumqttc with tokio), 3.1.1 and 5.0:
//! publisher homed on shard 0, subscriber on shard 1, QoS 1 and 2, retained.

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn rumqttc_v311_qos_and_retained_across_shards() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let b = TestBroker::start(2);
    let (port, pub_id, sub_id) = (b.addr.port(), b.id_on(0, "rc3-pub"), b.id_on(1, "rc3-sub"));
    block_on_timeout(LIMIT, async move {
        let (publ, mut pev) = AsyncClient::new(MqttOptions::new(pub_id, "127.0.0.1", port), 16);
        publ.publish("rc3/ret", QoS::AtLeastOnce, true, "kept")
            .await
            .unwrap();
        while !matches!(
            pev.poll().await.expect("publisher"),
            Event::Incoming(Packet::PubAck(_))
        ) {}
        tokio::spawn(async move { while pev.poll().await.is_ok() {} });

        let (sub, mut sev) = AsyncClient::new(MqttOptions::new(sub_id, "127.0.0.1", port), 16);
        sub.subscribe("rc3/#", QoS::ExactlyOnce).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            match sev.poll().await.expect("subscriber") {
                Event::Incoming(Packet::SubAck(_)) => {
                    publ.publish("rc3/1", QoS::AtLeastOnce, false, "one")
                        .await
                        .unwrap();
                    publ.publish("rc3/2", QoS::ExactlyOnce, false, "two")
                        .await
                        .unwrap();
                }
                Event::Incoming(Packet::Publish(p)) => {
                    got.push((p.topic, p.qos, p.retain, p.payload.to_vec()))
                }
                _ => {}
            }
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                (
                    "rc3/1".to_string(),
                    QoS::AtLeastOnce,
                    false,
                    b"one".to_vec()
                ),
                (
                    "rc3/2".to_string(),
                    QoS::ExactlyOnce,
                    false,
                    b"two".to_vec()
                ),
                (
                    "rc3/ret".to_string(),
                    QoS::AtLeastOnce,
                    true,
                    b"kept".to_vec()
                ),
            ]
        );
    });
}

#[test]
fn rumqttc_v5_qos_and_retained_across_shards() {
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let b = TestBroker::start(2);
    let (port, pub_id, sub_id) = (b.addr.port(), b.id_on(0, "rc5-pub"), b.id_on(1, "rc5-sub"));
    block_on_timeout(LIMIT, async move {
        let (publ, mut pev) = AsyncClient::new(MqttOptions::new(pub_id, "127.0.0.1", port), 16);
        publ.publish("rc5/ret", QoS::ExactlyOnce, true, "kept")
            .await
            .unwrap();
        while !matches!(
            pev.poll().await.expect("publisher"),
            Event::Incoming(Packet::PubComp(_))
        ) {}
        tokio::spawn(async move { while pev.poll().await.is_ok() {} });

        let (sub, mut sev) = AsyncClient::new(MqttOptions::new(sub_id, "127.0.0.1", port), 16);
        sub.subscribe("rc5/#", QoS::ExactlyOnce).await.unwrap();
        let mut got = Vec::new();
        while got.len() < 3 {
            match sev.poll().await.expect("subscriber") {
                Event::Incoming(Packet::ConnAck(ack)) => {
                    let props = ack.properties.expect("5.0 CONNACK properties");
                    assert_eq!(props.receive_max, Some(20));
                }
                Event::Incoming(Packet::SubAck(_)) => {
                    publ.publish("rc5/1", QoS::AtLeastOnce, false, "one")
                        .await
                        .unwrap();
                    publ.publish("rc5/2", QoS::ExactlyOnce, false, "two")
                        .await
                        .unwrap();
                }
                Event::Incoming(Packet::Publish(p)) => {
                    got.push((p.topic.to_vec(), p.qos, p.retain, p.payload.to_vec()))
                }
                _ => {}
            }
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            got,
            [
                (b"rc5/1".to_vec(), QoS::AtLeastOnce, false, b"one".to_vec()),
                (b"rc5/2".to_vec(), QoS::ExactlyOnce, false, b"two".to_vec()),
                (
                    b"rc5/ret".to_vec(),
                    QoS::ExactlyOnce,
                    true,
                    b"kept".to_vec()
                ),
            ]
        );
    });
}
