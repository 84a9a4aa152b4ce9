//! CONNECT / CONNACK: return and reason codes, assigned identifiers,
//! refused connections, keepalive enforcement, CONNECT-first.

mod common;

use std::time::{Duration, Instant};

use common::*;
use shardmq::protocol::{Packet, ProtocolVersion, QoS, ReasonCode};

#[test]
fn v311_empty_id_with_persistent_session_is_rejected() {
    let b = TestBroker::start(2);
    let (mut c, ack) = RawClient::connect(b.addr, ProtocolVersion::V311, "", false);
    assert_eq!(ack.code, ReasonCode::ClientIdentifierNotValid);
    assert!(!ack.session_present);
    c.expect_closed();
    // With a clean session the same empty id is accepted (and usable).
    let (mut c, ack) = RawClient::connect(b.addr, ProtocolVersion::V311, "", true);
    assert_eq!(ack.code, ReasonCode::Success);
    assert_eq!(
        ack.properties.assigned_client_identifier, None,
        "3.1.1 has no properties"
    );
    c.subscribe("empty/id", QoS::AtMostOnce);
}

#[test]
fn v5_empty_id_gets_an_assigned_identifier() {
    let b = TestBroker::start(2);
    let (_c, ack) = RawClient::connect(b.addr, ProtocolVersion::V5, "", true);
    assert_eq!(ack.code, ReasonCode::Success);
    let assigned = ack
        .properties
        .assigned_client_identifier
        .expect("Assigned Client Identifier");
    assert!(!assigned.is_empty());
    let (_d, ack) = RawClient::connect(b.addr, ProtocolVersion::V5, "", true);
    assert_ne!(
        ack.properties.assigned_client_identifier.as_deref(),
        Some(assigned.as_str()),
        "ids are unique"
    );
}

#[test]
fn unsupported_protocol_level_gets_connack_0x01() {
    let b = TestBroker::start(2);
    let mut c = RawClient::open(b.addr, ProtocolVersion::V311);
    // CONNECT, protocol "MQTT" level 6, clean session, keepalive 60, id "x".
    c.send_bytes(&[
        0x10, 0x0d, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x06, 0x02, 0x00, 0x3c, 0x00, 0x01, b'x',
    ]);
    let mut got = Vec::new();
    c.stream.set_read_timeout(Some(WAIT)).unwrap();
    std::io::Read::read_to_end(&mut c.stream, &mut got).expect("closed after CONNACK");
    assert_eq!(got, [0x20, 0x02, 0x00, 0x01]);
}

#[test]
fn anonymous_refused_when_not_allowed() {
    let b = TestBroker::with(2, |c| c.allow_anonymous = false);
    for (version, raw) in [(ProtocolVersion::V311, 5u8), (ProtocolVersion::V5, 0x87)] {
        let (mut c, ack) = RawClient::connect(b.addr, version, &b.id_on(1, "anon"), true);
        assert_eq!(
            ack.code,
            ReasonCode::NotAuthorized,
            "{version:?} expects {raw:#x}"
        );
        c.expect_closed();
    }
    let mut c = RawClient::open(b.addr, ProtocolVersion::V311);
    c.send(&Packet::Connect(Box::new(connect_packet(
        ProtocolVersion::V311,
        "raw",
        true,
        60,
    ))));
    let mut got = Vec::new();
    c.stream.set_read_timeout(Some(WAIT)).unwrap();
    std::io::Read::read_to_end(&mut c.stream, &mut got).expect("closed after CONNACK");
    assert_eq!(
        got,
        [0x20, 0x02, 0x00, 0x05],
        "3.1.1 return code 5 on the wire"
    );
}

#[test]
fn zero_length_client_id_refused_when_not_allowed() {
    let b = TestBroker::with(2, |c| c.allow_zero_length_clientid = false);
    for version in VERSIONS {
        let (mut c, ack) = RawClient::connect(b.addr, version, "", true);
        assert_eq!(
            ack.code,
            ReasonCode::ClientIdentifierNotValid,
            "{version:?}"
        );
        c.expect_closed();
    }
    let (_c, ack) = RawClient::connect(b.addr, ProtocolVersion::V5, "named", true);
    assert_eq!(ack.code, ReasonCode::Success);
}

/// Connects with keepalive 1, goes silent, and returns how long the broker
/// took to close the connection and what it sent before.
fn silent_client(
    addr: std::net::SocketAddr,
    version: ProtocolVersion,
    id: &str,
) -> (Duration, Vec<Packet>) {
    let (mut c, _) = RawClient::connected(addr, connect_packet(version, id, true, 1));
    let start = Instant::now();
    let mut got = Vec::new();
    loop {
        match c.recv_within(Duration::from_secs(6)) {
            Some(None) => return (start.elapsed(), got),
            Some(Some(p)) => got.push(p),
            None => panic!("{version:?}: still open after 6 s with keepalive 1"),
        }
    }
}

#[test]
fn keepalive_enforced_at_one_and_a_half_times() {
    let b = TestBroker::start(2);
    let (addr, id) = (b.addr, b.id_on(0, "ka3"));
    let v3 = std::thread::spawn(move || silent_client(addr, ProtocolVersion::V311, &id));
    let (elapsed, got) = silent_client(b.addr, ProtocolVersion::V5, &b.id_on(1, "ka5"));
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_millis(3500),
        "closed after {elapsed:?}"
    );
    match got.as_slice() {
        [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::KeepAliveTimeout),
        other => panic!("expected DISCONNECT 0x8D, got {other:?}"),
    }
    let (elapsed, got) = v3.join().unwrap();
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_millis(3500),
        "closed after {elapsed:?}"
    );
    assert!(got.is_empty(), "3.1.1 gets no DISCONNECT: {got:?}");
}

#[test]
fn keepalive_kept_by_pings() {
    let b = TestBroker::start(2);
    let (mut c, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V5, &b.id_on(1, "pinger"), true, 1),
    );
    let end = Instant::now() + Duration::from_secs(4);
    while Instant::now() < end {
        c.send(&Packet::PingReq);
        assert_eq!(c.recv(), Some(Packet::PingResp));
        std::thread::sleep(Duration::from_millis(500));
    }
}
