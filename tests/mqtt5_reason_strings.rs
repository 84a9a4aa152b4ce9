//! MQTT 5.0 Reason Strings and Request Problem Information (3.1.2.11.7).
//!
//! Every DISCONNECT the server starts carries its reason code and a short,
//! fixed Reason String saying what went wrong; so do refusing CONNACKs and
//! failure acknowledgements, the latter only when the client did not set
//! Request Problem Information to 0. A Reason String that would take a
//! packet past the client's Maximum Packet Size is left out.

mod common;

use std::time::{Duration, Instant};

use common::*;
use shardmq::protocol::{Connect, Packet, ProtocolVersion, PubResp, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// Waits for the close; expects one DISCONNECT with `code` and a Reason
/// String that contains `says`.
fn expect_told(c: &mut RawClient, code: ReasonCode, says: &str) {
    match c.expect_closed().as_slice() {
        [Packet::Disconnect(d)] if d.reason == code => {
            let why = d.properties.reason_string.as_deref().unwrap_or_default();
            assert!(why.contains(says), "{code:?}: Reason String {why:?}");
        }
        other => panic!("expected DISCONNECT {code:?}, got {other:?}"),
    }
}

/// A 5.0 CONNECT for `id`, Request Problem Information as given.
fn connect_v5(id: &str, problem_info: Option<u8>) -> Connect {
    let mut c = connect_packet(V5, id, true, 60);
    c.properties.request_problem_information = problem_info;
    c
}

#[test]
fn a_session_taken_over_is_told_0x8e_with_a_reason_string() {
    let b = TestBroker::start(2);
    let id = b.id_on(1, "taken");
    let (mut old, _) = RawClient::connected(b.addr, connect_v5(&id, None));
    let (_new, _) = RawClient::connected(b.addr, connect_v5(&id, None));
    expect_told(
        &mut old,
        ReasonCode::SessionTakenOver,
        "took the session over",
    );
}

#[test]
fn a_keep_alive_timeout_is_told_0x8d_with_a_reason_string() {
    let b = TestBroker::start(2);
    let mut connect = connect_v5(&b.id_on(0, "silent"), Some(0));
    connect.keep_alive = 1;
    let (mut c, _) = RawClient::connected(b.addr, connect);
    let started = Instant::now();
    // Request Problem Information 0 does not take a DISCONNECT's string.
    // Request Problem Information 0 does not take a DISCONNECT's string.
    expect_told(&mut c, ReasonCode::KeepAliveTimeout, "keep alive");
    assert!(started.elapsed() >= Duration::from_millis(1400));
}

#[test]
fn a_packet_too_large_is_told_0x95_with_a_reason_string() {
    let b = TestBroker::with(2, |c| c.max_packet_size = 1024);
    let (mut c, _) = RawClient::connected(b.addr, connect_v5(&b.id_on(1, "large"), None));
    c.send(&Packet::Publish(publish(
        "big",
        &[0; 2000],
        QoS::AtMostOnce,
        false,
        0,
    )));
    expect_told(&mut c, ReasonCode::PacketTooLarge, "maximum packet size");
}

#[test]
fn topic_aliases_over_the_byte_bound_are_told_0x97_with_a_reason_string() {
    let b = TestBroker::start(2);
    let (mut c, _) = RawClient::connected(b.addr, connect_v5(&b.id_on(0, "quota"), None));
    let len = shardmq::limits::MAX_ALIAS_TOPIC_BYTES * 3 / 5;
    for (topic, alias) in [("a", 1), ("b", 2)] {
        let mut p = publish(&topic.repeat(len), b"x", QoS::AtMostOnce, false, 0);
        p.properties.topic_alias = Some(alias);
        c.send(&Packet::Publish(p));
    }
    expect_told(&mut c, ReasonCode::QuotaExceeded, "topic bytes");
}

#[test]
fn a_malformed_packet_is_told_what_was_wrong() {
    let b = TestBroker::start(2);
    let (mut c, _) = RawClient::connected(b.addr, connect_v5(&b.id_on(1, "dup0"), None));
    // PUBLISH QoS 0 with DUP set: malformed.
    c.send_bytes(&[0x38, 0x06, 0x00, 0x01, b't', 0x00, b'h', b'i']);
    expect_told(&mut c, ReasonCode::MalformedPacket, "DUP");
}

#[test]
fn shutting_down_is_told_0x8b_with_a_reason_string() {
    let b = TestBroker::start(2);
    let (mut c, _) = RawClient::connected(b.addr, connect_v5(&b.id_on(1, "stay"), None));
    let stopper = std::thread::spawn(move || b.stop());
    expect_told(&mut c, ReasonCode::ServerShuttingDown, "shutting down");
    stopper.join().expect("broker stops cleanly");
}

/// Sends PUBREL for an id never published; returns the PUBCOMP.
fn pubcomp_for_unknown_id(c: &mut RawClient) -> PubResp {
    c.send(&Packet::PubRel(PubResp::new(pid(9))));
    match c.recv() {
        Some(Packet::PubComp(r)) => r,
        other => panic!("expected PUBCOMP, got {other:?}"),
    }
}

#[test]
fn failure_acks_carry_a_reason_string_unless_problem_information_is_0() {
    let b = TestBroker::start(2);
    let (mut c, _) = RawClient::connected(b.addr, connect_v5(&b.id_on(0, "ask"), None));
    let comp = pubcomp_for_unknown_id(&mut c);
    assert_eq!(comp.reason, ReasonCode::PacketIdentifierNotFound);
    assert!(comp.properties.reason_string.is_some(), "{comp:?}");
    c.send(&Packet::Publish(publish(
        "$SYS/x",
        b"x",
        QoS::AtLeastOnce,
        false,
        3,
    )));
    match c.recv() {
        Some(Packet::PubAck(r)) => {
            assert_eq!(r.reason, ReasonCode::NotAuthorized);
            let why = r.properties.reason_string.unwrap_or_default();
            assert!(why.contains("$SYS"), "{why}");
        }
        other => panic!("expected PUBACK, got {other:?}"),
    }

    let (mut quiet, _) = RawClient::connected(b.addr, connect_v5(&b.id_on(1, "quiet"), Some(0)));
    let comp = pubcomp_for_unknown_id(&mut quiet);
    assert_eq!(comp.reason, ReasonCode::PacketIdentifierNotFound);
    assert_eq!(comp.properties.reason_string, None, "problem information 0");
}

#[test]
fn a_reason_string_past_the_clients_maximum_packet_size_is_left_out() {
    let b = TestBroker::start(2);
    let mut connect = connect_v5(&b.id_on(0, "small"), None);
    connect.properties.maximum_packet_size = Some(16);
    let (mut c, _) = RawClient::connected(b.addr, connect);
    let comp = pubcomp_for_unknown_id(&mut c);
    assert_eq!(comp.reason, ReasonCode::PacketIdentifierNotFound);
    assert_eq!(comp.properties.reason_string, None);
}

#[test]
fn a_refusing_connack_carries_a_reason_string_whatever_problem_information_asks() {
    let b = TestBroker::with(2, |c| c.allow_anonymous = false);
    for problem_info in [None, Some(0)] {
        let (_c, ack) = RawClient::connect_with(b.addr, connect_v5("refused", problem_info));
        assert_eq!(ack.code, ReasonCode::NotAuthorized);
        assert!(ack.properties.reason_string.is_some(), "{ack:?}");
    }
}

/// MQTT.js as a client whose session is taken over: prints the
/// DISCONNECT's reason code and Reason String.
const MQTTJS_TAKEN_OVER: &str = "
const opts = { protocolVersion: 5, clientId: process.argv[2], reconnectPeriod: 0 };
const first = mqtt.connect(url, opts);
first.on('disconnect', (packet) => {
  console.log(`${packet.reasonCode} ${packet.properties.reasonString}`);
  second.end(true, () => process.exit(0));
});
let second;
first.on('connect', () => { second = mqtt.connect(url, opts); });
";

#[test]
fn mqtt_js_reads_the_reason_string_of_a_takeover() {
    let b = TestBroker::start(2);
    let url = format!("mqtt://127.0.0.1:{}", b.addr.port());
    let id = format!("'{}'", b.id_on(1, "jstaken"));
    let mut js =
        mqttjs::NodeScript::spawn(&MQTTJS_TAKEN_OVER.replace("process.argv[2]", &id), &url);
    let line = js.next_line();
    assert!(
        line.starts_with("142 ") && line.contains("took the session over"),
        "{line}"
    );
    assert!(js.wait().success());
}

#[test]
fn rumqttc_v5_reads_the_reason_string_of_a_takeover() {
    use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, Packet as RPacket};
    use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions, StateError};
    let b = TestBroker::start(2);
    let id = b.id_on(0, "rctaken");
    let mut options = MqttOptions::new(id.clone(), "127.0.0.1", b.addr.port());
    options.set_clean_start(true);
    let addr = b.addr;
    block_on_timeout(Duration::from_secs(10), async move {
        let (_client, mut events) = AsyncClient::new(options, 16);
        let _new = loop {
            match events.poll().await.expect("connects") {
                Event::Incoming(RPacket::ConnAck(_)) => {
                    break RawClient::connected(addr, connect_v5(&id, None))
                }
                _ => continue,
            }
        };
        let err = loop {
            if let Err(e) = events.poll().await {
                break e;
            }
        };
        match err {
            ConnectionError::MqttState(StateError::ServerDisconnect {
                reason_code: DisconnectReasonCode::SessionTakenOver,
                reason_string: Some(why),
            }) => assert!(why.contains("took the session over"), "{why}"),
            other => panic!("expected DISCONNECT 0x8E with a Reason String, got {other:?}"),
        }
    });
}

#[test]
fn request_response_information_gets_no_response_information() {
    let b = TestBroker::start(2);
    let mut connect = connect_v5(&b.id_on(1, "respinfo"), None);
    connect.properties.request_response_information = Some(1);
    let (_c, ack) = RawClient::connect_with(b.addr, connect);
    assert_eq!(ack.code, ReasonCode::Success);
    assert_eq!(ack.properties.response_information, None, "none offered");
}
