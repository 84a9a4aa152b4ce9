//! Per-listener keys with Mosquitto's meaning, exercised by clients:
//! `max_qos` (SUBACK grants, 5.0 Maximum QoS, disconnect above it),
//! `mount_point` (topics, filters, wills and retained messages under a
//! prefix), and `per_listener_settings` with `auto_id_prefix` and
//! `allow_anonymous` per listener. Two shards, so that connections are
//! handed to their session's home shard with their listener's settings.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;
use shardmq::config::{Listener, Security};
use shardmq::protocol::{Packet, ProtocolVersion, QoS, ReasonCode, TopicFilter, Unsubscribe};

const MOUNT: &str = "site1/";

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A broker with a plain listener (`addrs[0]`) and one under [`MOUNT`] (`addrs[1]`).
fn mounted_broker() -> (TestBroker, SocketAddr, SocketAddr) {
    let b = TestBroker::with(2, |c| {
        let mut mounted = Listener::new(local());
        mounted.mount_point = Some(MOUNT.to_string());
        c.listeners.push(mounted);
    });
    let addrs = b.handle().local_addrs().to_vec();
    (b, addrs[0], addrs[1])
}

fn client(addr: SocketAddr, version: ProtocolVersion, id: &str) -> RawClient {
    RawClient::connected(addr, connect_packet(version, id, true, 60)).0
}

/// The client id a 5.0 client connecting without one is assigned.
fn assigned_id(addr: SocketAddr) -> String {
    let connect = connect_packet(ProtocolVersion::V5, "", true, 60);
    let (_c, ack) = RawClient::connect_with(addr, connect);
    ack.properties
        .assigned_client_identifier
        .unwrap_or_default()
}

fn topic_of(c: &mut RawClient) -> String {
    c.expect_publish().topic.as_str().to_string()
}

#[test]
fn max_qos_caps_what_subscribe_grants_and_a_5_0_connack_announces_it() {
    let b = TestBroker::with(2, |c| c.listeners[0].max_qos = QoS::AtLeastOnce);
    let (mut sub5, ack) = RawClient::connect_with(
        b.addr,
        connect_packet(ProtocolVersion::V5, &b.id_on(1, "mq5"), true, 60),
    );
    assert_eq!(ack.properties.maximum_qos, Some(1));
    let (mut sub3, ack) = RawClient::connect_with(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(0, "mq3"), true, 60),
    );
    assert_eq!(ack.code, ReasonCode::Success);
    for sub in [&mut sub5, &mut sub3] {
        let granted = sub.subscribe("mqos/#", QoS::ExactlyOnce).codes;
        assert_eq!(granted, [ReasonCode::GrantedQoS1], "{:?}", sub.version);
    }
    let mut publ = client(b.addr, ProtocolVersion::V311, &b.id_on(0, "mqp"));
    publ.publish("mqos/a", b"x", QoS::AtLeastOnce, false, 1);
    for sub in [&mut sub5, &mut sub3] {
        assert_eq!(sub.expect_publish().qos, QoS::AtLeastOnce);
    }
}

#[test]
fn a_publish_above_max_qos_disconnects_the_client() {
    let b = TestBroker::with(2, |c| c.listeners[0].max_qos = QoS::AtMostOnce);
    for (i, version) in VERSIONS.into_iter().enumerate() {
        let mut c = client(b.addr, version, &b.id_on(i % 2, "mqhi"));
        c.send(&Packet::Publish(publish(
            "mqhi/a",
            b"ok",
            QoS::AtMostOnce,
            false,
            0,
        )));
        c.send(&Packet::PingReq);
        assert_eq!(c.recv(), Some(Packet::PingResp), "QoS 0 is allowed");
        c.send(&Packet::Publish(publish(
            "mqhi/a",
            b"x",
            QoS::AtLeastOnce,
            false,
            1,
        )));
        let got = c.expect_closed();
        let reasons: Vec<ReasonCode> = got
            .iter()
            .map(|p| match p {
                Packet::Disconnect(d) => d.reason,
                other => panic!("{version:?}: expected only DISCONNECT, got {other:?}"),
            })
            .collect();
        let expected: &[ReasonCode] = if version.is_v5() {
            &[ReasonCode::QoSNotSupported]
        } else {
            &[] // as Mosquitto: a 3.x client is disconnected without a word
        };
        assert_eq!(reasons, expected, "{version:?}");
    }
}

#[test]
fn a_will_above_max_qos_refuses_the_connect() {
    let b = TestBroker::with(2, |c| c.listeners[0].max_qos = QoS::AtMostOnce);
    let connect = with_will(
        connect_packet(ProtocolVersion::V5, &b.id_on(1, "mqwill"), true, 60),
        "mqwill/gone",
        b"bye",
        QoS::AtLeastOnce,
        false,
    );
    let (_c, ack) = RawClient::connect_with(b.addr, connect);
    assert_eq!(ack.code, ReasonCode::QoSNotSupported);
}

#[test]
fn published_and_delivered_topics_cross_the_mount_point() {
    for version in VERSIONS {
        let (b, plain, mounted) = mounted_broker();
        // Ids on both shards: some connections are handed over, and their
        // listener's mount point must travel with them.
        let mut inside: Vec<RawClient> = (0..4)
            .map(|i| {
                let mut c = client(mounted, version, &b.id_on(i % 2, &format!("mnt-in{i}")));
                let codes = c.subscribe("t/#", QoS::AtLeastOnce).codes;
                assert_eq!(codes, [ReasonCode::GrantedQoS1]);
                c
            })
            .collect();
        let mut watcher = client(plain, version, &b.id_on(1, "mnt-watch"));
        watcher.subscribe("#", QoS::AtLeastOnce);
        let mut outside = client(plain, version, &b.id_on(0, "mnt-out"));

        // Outside the mount point: not delivered inside. The next message
        // (inside it) is then the first one they see.
        outside.publish("t/a", b"1", QoS::AtLeastOnce, false, 1);
        outside.publish("site1/t/b", b"2", QoS::AtLeastOnce, false, 2);
        for c in &mut inside {
            assert_eq!(topic_of(c), "t/b", "{version:?}");
        }
        assert_eq!(topic_of(&mut watcher), "t/a");
        assert_eq!(topic_of(&mut watcher), "site1/t/b");

        // From inside: published under the prefix, seen inside without it.
        // (QoS 0: the publisher is a subscriber too, and gets it first.)
        inside[1].publish("t/c", b"3", QoS::AtMostOnce, false, 0);
        assert_eq!(topic_of(&mut watcher), "site1/t/c");
        for c in &mut inside {
            assert_eq!(topic_of(c), "t/c", "{version:?}");
        }

        // UNSUBSCRIBE names the filter as subscribed: it is found.
        let unsub = Unsubscribe {
            packet_id: pid(9),
            filters: vec![TopicFilter::from_str("t/#").unwrap()],
            properties: Default::default(),
        };
        inside[0].send(&Packet::Unsubscribe(unsub));
        match inside[0].recv() {
            Some(Packet::UnsubAck(a)) if version.is_v5() => {
                assert_eq!(a.codes, [ReasonCode::Success])
            }
            Some(Packet::UnsubAck(_)) => {}
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
        outside.publish("site1/t/d", b"4", QoS::AtLeastOnce, false, 4);
        assert_eq!(topic_of(&mut inside[1]), "t/d");
        inside[0].expect_silence(Duration::from_millis(200));
    }
}

#[test]
fn wills_and_retained_messages_cross_the_mount_point() {
    let (b, plain, mounted) = mounted_broker();
    let version = ProtocolVersion::V5;
    let mut watcher = client(plain, version, &b.id_on(1, "mntr-watch"));
    watcher.subscribe("site1/#", QoS::AtLeastOnce);

    let connect = with_will(
        connect_packet(version, &b.id_on(0, "mntr-will"), true, 60),
        "status/gone",
        b"bye",
        QoS::AtLeastOnce,
        false,
    );
    let (dying, _) = RawClient::connected(mounted, connect);
    drop(dying); // no DISCONNECT: the will is published
    assert_eq!(topic_of(&mut watcher), "site1/status/gone");

    let mut outside = client(plain, version, &b.id_on(0, "mntr-out"));
    outside.publish("site1/r/x", b"kept", QoS::AtLeastOnce, true, 1);
    outside.publish("r/y", b"elsewhere", QoS::AtLeastOnce, true, 2);
    let mut late = client(mounted, version, &b.id_on(1, "mntr-late"));
    late.subscribe("r/#", QoS::AtLeastOnce);
    let p = late.expect_publish();
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("r/x", &b"kept"[..]));
    late.expect_silence(Duration::from_millis(200));
}

#[test]
fn mosquitto_clients_on_a_mounted_listener_see_only_their_subtree() {
    let (b, plain, mounted) = mounted_broker();
    let mut outside = client(plain, ProtocolVersion::V311, &b.id_on(0, "mntq-out"));
    outside.publish("site1/m/a", b"inside", QoS::AtLeastOnce, true, 1);
    let printed =
        mosquitto_sub_v5_once(mounted.port(), &b.id_on(1, "mntq-sub"), "m/#", "%t %p", &[]);
    assert_eq!(printed.trim(), "m/a inside");

    // mosquitto_pub (3.1.1) from inside the mount point.
    let mut watcher = client(plain, ProtocolVersion::V311, &b.id_on(1, "mntq-watch"));
    watcher.subscribe("site1/m/b", QoS::AtLeastOnce);
    let port = mounted.port().to_string();
    let mut child = ChildGuard(
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv311", "-q", "1"])
            .args(["-t", "m/b", "-m", "from-pub", "-i", &b.id_on(0, "mntq-pub")])
            .spawn()
            .expect("mosquitto_pub runs (apt-get install mosquitto-clients)"),
    );
    assert!(child
        .wait_within(Duration::from_secs(10), "mosquitto_pub")
        .success());
    let p = watcher.expect_publish();
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("site1/m/b", &b"from-pub"[..])
    );
}

#[test]
fn per_listener_settings_gives_each_listener_its_own_security() {
    let b = TestBroker::with(2, |c| {
        c.per_listener_settings = true;
        c.listeners[0].security = Some(Security {
            auto_id_prefix: "lab-".to_string(),
            ..Security::default()
        });
        let mut closed = Listener::new(local());
        closed.security = Some(Security {
            allow_anonymous: false,
            ..Security::default()
        });
        c.listeners.push(closed);
    });
    let closed = b.handle().local_addrs()[1];
    for _ in 0..4 {
        let id = assigned_id(b.addr);
        assert!(id.starts_with("lab-"), "{id}");
    }
    let (_c, ack) = RawClient::connect_with(
        closed,
        connect_packet(ProtocolVersion::V5, "psec", true, 60),
    );
    assert_eq!(ack.code, ReasonCode::NotAuthorized);
    let (_c, ack) = RawClient::connect_with(
        closed,
        connect_packet(ProtocolVersion::V311, "psec3", true, 60),
    );
    assert_eq!(ack.code, ReasonCode::NotAuthorized);
}

#[test]
fn auto_id_prefix_starts_every_assigned_client_id() {
    let b = TestBroker::with(2, |c| c.auto_id_prefix = "dev-".to_string());
    let id = assigned_id(b.addr);
    assert!(id.starts_with("dev-") && id.len() == 4 + 16, "{id}");
}
