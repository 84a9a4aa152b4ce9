//! Bad input ends that one connection and nothing else: a malformed
//! packet, a packet over `max_packet_size`, a non-CONNECT first packet,
//! garbage, and a half-open connection that never sends CONNECT.

mod common;

use std::time::{Duration, Instant};

use common::*;
use shardmq::protocol::{Packet, ProtocolVersion, QoS, ReasonCode};

/// One healthy client per shard, each subscribed to its own topic.
struct Bystanders(Vec<RawClient>);

impl Bystanders {
    fn new(b: &TestBroker) -> Bystanders {
        Bystanders(
            (0..b.shards)
                .map(|s| {
                    let (mut c, _) = RawClient::connected(
                        b.addr,
                        connect_packet(ProtocolVersion::V5, &b.id_on(s, "bystander"), true, 60),
                    );
                    c.subscribe(&format!("alive/{s}"), QoS::AtLeastOnce);
                    c
                })
                .collect(),
        )
    }

    /// Every bystander still publishes and receives.
    fn check(&mut self) {
        for (s, c) in self.0.iter_mut().enumerate() {
            c.publish(&format!("alive/{s}"), b"ok", QoS::AtMostOnce, false, 1);
            assert_eq!(
                &c.expect_publish().payload[..],
                b"ok",
                "bystander on shard {s}"
            );
        }
    }
}

#[test]
fn malformed_packet_closes_only_that_connection() {
    let b = TestBroker::start(2);
    let mut others = Bystanders::new(&b);
    for version in VERSIONS {
        let (mut c, _) = RawClient::connected(
            b.addr,
            connect_packet(version, &b.id_on(0, "bad"), true, 60),
        );
        // PUBLISH with QoS 3.
        c.send_bytes(&[0x36, 0x05, 0x00, 0x01, b'a', 0x00, 0x01]);
        let got = c.expect_closed();
        if version.is_v5() {
            assert!(
                matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::MalformedPacket),
                "{got:?}"
            );
        }
        others.check();
    }
}

#[test]
fn packet_over_max_packet_size_closes_only_that_connection() {
    let b = TestBroker::with(2, |c| c.max_packet_size = 1024);
    let mut others = Bystanders::new(&b);
    for version in VERSIONS {
        let (mut c, ack) = RawClient::connect(b.addr, version, &b.id_on(1, "big"), true);
        if version.is_v5() {
            assert_eq!(
                ack.properties.maximum_packet_size,
                Some(1024),
                "CONNACK announces Maximum Packet Size"
            );
        }
        c.send(&Packet::Publish(publish(
            "big",
            &[0u8; 2000],
            QoS::AtMostOnce,
            false,
            1,
        )));
        let got = c.expect_closed();
        if version.is_v5() {
            assert!(
                matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == ReasonCode::PacketTooLarge),
                "{got:?}"
            );
        }
        others.check();
    }
}

#[test]
fn non_connect_first_packet_and_garbage_close_only_that_connection() {
    let b = TestBroker::start(2);
    let mut others = Bystanders::new(&b);
    let inputs: [&[u8]; 3] = [
        &[0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x00], // SUBSCRIBE
        &[0xC0, 0x00],                                     // PINGREQ
        &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00],             // garbage
    ];
    for bytes in inputs {
        let mut c = RawClient::open(b.addr, ProtocolVersion::V311);
        c.send_bytes(bytes);
        assert!(
            c.expect_closed().is_empty(),
            "nothing is answered before CONNECT ({bytes:02x?})"
        );
        others.check();
    }
}

#[test]
fn half_open_connection_closed_after_connect_timeout() {
    let b = TestBroker::with(2, |c| c.connect_timeout = Duration::from_secs(1));
    let mut others = Bystanders::new(&b);
    let start = Instant::now();
    let mut silent = RawClient::open(b.addr, ProtocolVersion::V311);
    let mut partial = RawClient::open(b.addr, ProtocolVersion::V311);
    partial.send_bytes(&[0x10, 0x0d, 0x00]); // the start of a CONNECT
    others.check();
    assert!(silent.expect_closed().is_empty());
    assert!(partial.expect_closed().is_empty());
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}"
    );
    others.check();
}
