//! CONNECT / CONNACK conformance, on the wire: MQTT 3.1's client id and
//! Session Present rules, sessions that end with a connection that is
//! taken over, 5.0 CONNECT properties with invalid values, authentication
//! methods, and the exact properties a 5.0 CONNACK advertises.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use shardmq::protocol::{Connect, Packet, Properties, ProtocolVersion, QoS, ReasonCode};

/// Writes `bytes` on a new connection and returns everything the broker
/// sends until it closes the connection (at most [`WAIT`]).
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut c = RawClient::open(addr, ProtocolVersion::V311);
    c.send_bytes(bytes);
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "still open after {WAIT:?}; got {got:02x?}");
        c.stream.set_read_timeout(Some(left)).unwrap();
        match c.stream.read(&mut chunk) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(_) => {} // timed out: the assert above reports it
        }
    }
}

/// `connect` encoded as it goes on the wire.
fn encoded(connect: Connect) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    Packet::Connect(Box::new(connect))
        .encode(ProtocolVersion::V5, &mut out)
        .expect("encodable");
    out.to_vec()
}

/// A 5.0 CONNECT (clean start, keepalive 60, client id "x") carrying the
/// raw property bytes `props` (at most 127 of them).
fn v5_connect_with_props(props: &[u8]) -> Vec<u8> {
    let len = u8::try_from(props.len()).expect("short properties");
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, len];
    body.extend_from_slice(props);
    body.extend_from_slice(&[0, 1, b'x']);
    let mut packet = vec![0x10, u8::try_from(body.len()).expect("short packet")];
    packet.extend(body);
    packet
}

/// A 5.0 CONNACK without properties: flags 0, `code`, property length 0.
fn v5_refusal(code: u8) -> [u8; 5] {
    [0x20, 0x03, 0x00, code, 0x00]
}

#[test]
fn v31_zero_length_client_id_is_identifier_rejected() {
    let b = TestBroker::start(2);
    // CONNECT "MQIsdp" level 3, clean session, keepalive 60, empty client id.
    let connect = [
        0x10, 0x0e, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 0,
    ];
    assert_eq!(
        exchange(b.addr, &connect),
        [0x20, 0x02, 0x00, 0x02],
        "CONNACK return code 2, then close"
    );
    // 3.1.1 still accepts it (the broker assigns an id).
    let (_c, ack) = RawClient::connect(b.addr, ProtocolVersion::V311, "", true);
    assert_eq!(ack.code, ReasonCode::Success);
}

#[test]
fn v31_connack_never_sets_session_present() {
    for shards in [1, 2] {
        let b = TestBroker::start(shards);
        let id = b.id_on(shards - 1, "v31");
        let v31 = || connect_packet(ProtocolVersion::V31, &id, false, 60);
        let (mut c, present) = RawClient::connected(b.addr, v31());
        assert!(!present, "{shards} shards: new session");
        c.subscribe("v31/kept", QoS::AtLeastOnce);
        c.disconnect();
        // The session is resumed (its subscription still delivers) but a
        // 3.1 CONNACK has no Session Present flag to set.
        let (mut c, present) = RawClient::connected(b.addr, v31());
        assert!(!present, "{shards} shards: resumed 3.1 session");
        let (mut publ, _) = RawClient::connected(
            b.addr,
            connect_packet(ProtocolVersion::V311, &b.id_on(0, "v31pub"), true, 60),
        );
        publ.publish("v31/kept", b"m", QoS::AtLeastOnce, false, 1);
        assert_eq!(c.expect_payloads(1), [b"m".to_vec()], "{shards} shards");
    }
}

/// The old connection of each case keeps no session beyond itself; the
/// new one asks to resume.
fn ending_then_resuming(version: ProtocolVersion, id: &str) -> (Connect, Connect) {
    match version {
        ProtocolVersion::V5 => (
            connect_v5_expiry(id, false, 0),
            connect_v5_expiry(id, false, 3600),
        ),
        v => (
            connect_packet(v, id, true, 60),
            connect_packet(v, id, false, 60),
        ),
    }
}

#[test]
fn taking_over_a_session_that_ends_with_its_connection_does_not_resume_it() {
    let versions = [
        ProtocolVersion::V31,
        ProtocolVersion::V311,
        ProtocolVersion::V5,
    ];
    for shards in [1, 2] {
        let b = TestBroker::start(shards);
        for version in versions {
            let case = format!("{version:?}, {shards} shards");
            let id = b.id_on(shards - 1, &format!("ending-{version:?}"));
            let (old, new) = ending_then_resuming(version, &id);
            let (mut old, _) = RawClient::connected(b.addr, old);
            old.subscribe("ending/old", QoS::AtLeastOnce);
            let (mut new, present) = RawClient::connected(b.addr, new);
            assert!(!present, "{case}: the old session was discarded");
            old.expect_closed();
            // Nor does its subscription survive.
            let (mut publ, _) = RawClient::connected(
                b.addr,
                connect_packet(ProtocolVersion::V311, &b.id_on(0, "endingpub"), true, 60),
            );
            publ.publish("ending/old", b"m", QoS::AtLeastOnce, false, 1);
            new.expect_silence(Duration::from_millis(200));
            // A persistent session taken over is resumed, as before.
            let (_again, present) =
                RawClient::connected(b.addr, ending_then_resuming(version, &id).1);
            assert_eq!(
                present,
                version != ProtocolVersion::V31,
                "{case}: persistent"
            );
            new.expect_closed();
        }
    }
}

#[test]
fn v5_connect_properties_with_invalid_values_are_refused() {
    let b = TestBroker::start(2);
    let cases: [(&str, &[u8], u8); 8] = [
        ("Maximum Packet Size 0", &[0x27, 0, 0, 0, 0], 0x82),
        ("Receive Maximum 0", &[0x21, 0, 0], 0x82),
        ("Request Problem Information 2", &[0x17, 2], 0x82),
        ("Request Response Information 2", &[0x19, 2], 0x82),
        ("Topic Alias Maximum twice", &[0x22, 0, 5, 0x22, 0, 5], 0x82),
        ("Receive Maximum twice", &[0x21, 0, 5, 0x21, 0, 5], 0x82),
        ("Topic Alias Maximum cut short", &[0x22, 0], 0x81),
        ("Maximum QoS (a CONNACK property)", &[0x24, 1], 0x81),
    ];
    for (case, props, code) in cases {
        assert_eq!(
            sans_reason_strings_v5(&exchange(b.addr, &v5_connect_with_props(props))),
            v5_refusal(code),
            "{case}"
        );
    }
    // Topic Alias Maximum 0 is valid: the client accepts no aliases.
    let (_c, ack) = RawClient::connect_with(b.addr, {
        let mut c = connect_packet(ProtocolVersion::V5, "alias0", true, 60);
        c.properties.topic_alias_maximum = Some(0);
        c
    });
    assert_eq!(ack.code, ReasonCode::Success);
}

#[test]
fn v5_unsupported_authentication_method_is_refused() {
    let b = TestBroker::start(2);
    let mut connect = connect_packet(ProtocolVersion::V5, &b.id_on(1, "auth"), true, 60);
    connect.properties.authentication_method = Some("SCRAM-SHA-1".into());
    let got = exchange(b.addr, &encoded(connect));
    assert_eq!(sans_reason_strings_v5(&got), v5_refusal(0x8C));
}

#[test]
fn v5_connack_advertises_exactly_what_the_broker_supports() {
    let announced = Properties {
        subscription_identifier_available: Some(1),
        shared_subscription_available: Some(1),
        ..Properties::default()
    };
    let b = TestBroker::start(2);
    let (_c, ack) = RawClient::connect(b.addr, ProtocolVersion::V5, "props", true);
    let expected = Properties {
        receive_maximum: Some(20),
        topic_alias_maximum: Some(10),
        ..announced.clone()
    };
    assert_eq!(ack.properties, expected, "defaults");

    let b = TestBroker::with(2, |c| {
        c.max_inflight_messages = 5;
        c.max_packet_size = 1000;
        c.max_keepalive = 30;
        c.retain_available = false;
        c.max_topic_alias = 0;
    });
    for (keep_alive, server_keep_alive) in [(60, Some(30)), (0, Some(30)), (30, None), (10, None)] {
        let connect = connect_packet(ProtocolVersion::V5, "limited", true, keep_alive);
        let (_c, ack) = RawClient::connect_with(b.addr, connect);
        let expected = Properties {
            receive_maximum: Some(5),
            maximum_packet_size: Some(1000),
            retain_available: Some(0),
            server_keep_alive,
            ..announced.clone()
        };
        assert_eq!(ack.properties, expected, "keepalive {keep_alive}");
    }
}

#[test]
fn mosquitto_pub_with_an_unsupported_authentication_method_is_refused() {
    let b = TestBroker::start(2);
    let port = b.addr.port().to_string();
    let mut child = ChildGuard(
        Command::new("mosquitto_pub")
            .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv5"])
            .args(["-D", "connect", "authentication-method", "SCRAM-SHA-1"])
            .args(["-t", "auth/x", "-m", "m", "-i", &b.id_on(1, "mauth")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("mosquitto_pub runs (apt-get install mosquitto-clients)"),
    );
    let status = child.wait_within(Duration::from_secs(10), "mosquitto_pub");
    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        e.read_to_string(&mut stderr).unwrap();
    }
    assert!(!status.success(), "refused: {stderr}");
    assert!(
        stderr.to_lowercase().contains("authentication method"),
        "{stderr}"
    );
}

#[test]
fn a_will_under_sys_is_refused_but_a_bridge_state_will_is_not() {
    let b = TestBroker::start(2);
    for version in VERSIONS {
        let forged = with_will(
            connect_packet(version, &b.id_on(1, "forger"), true, 60),
            "$SYS/broker/clients/connected",
            b"0",
            QoS::AtMostOnce,
            true,
        );
        let (_, ack) = RawClient::connect_with(b.addr, forged);
        // 3.1.1's return code 5 decodes as the same reason.
        assert_eq!(ack.code, ReasonCode::NotAuthorized, "{version:?}");
        let bridge = with_will(
            connect_packet(version, &b.id_on(0, "edge"), true, 60),
            "$SYS/broker/connection/edge/state",
            b"0",
            QoS::AtLeastOnce,
            true,
        );
        let (_, ack) = RawClient::connect_with(b.addr, bridge);
        assert_eq!(ack.code, ReasonCode::Success, "{version:?}");
    }
    b.stop();
}
