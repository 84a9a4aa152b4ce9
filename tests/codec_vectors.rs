//! Known-good byte sequences written by hand from the MQTT 3.1.1 and 5.0
//! specifications, checked byte for byte in both directions.

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use shardmq::protocol::*;

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn id(v: u16) -> PacketId {
    NonZeroU16::new(v).unwrap()
}

fn decode_all(bytes: &[u8], v: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::from(bytes);
    let p = decode(&mut buf, v, usize::MAX).unwrap_or_else(|e| panic!("{bytes:02X?}: {e}"));
    assert!(buf.is_empty());
    p
}

fn encoded(p: &Packet, v: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    p.encode(v, &mut out).unwrap();
    assert_eq!(out.len(), p.encoded_len(v).unwrap());
    out.to_vec()
}

/// Decodes `bytes` to `expected` and encodes `expected` back to `bytes`.
fn check(bytes: &[u8], v: ProtocolVersion, expected: Packet) {
    assert_eq!(decode_all(bytes, v), expected, "decode {bytes:02X?}");
    assert_eq!(encoded(&expected, v), bytes, "encode {expected:?}");
}

fn no_props() -> Properties {
    Properties::default()
}

/// 3.1.1 section 3.1.2.10: variable header `00 04 'M' 'Q' 'T' 'T' 04 CE 00 0A`
/// (user name, password, Will QoS 1, Will flag, Clean Session; keep alive
/// 10), followed by a payload of one-letter fields.
#[test]
fn v311_connect_spec_example() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x19,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0xCE, 0x00, 0x0A,
        0x00, 0x01, b'c', // client id
        0x00, 0x01, b'w', // will topic
        0x00, 0x01, b'm', // will message
        0x00, 0x01, b'u', // user name
        0x00, 0x01, b'p', // password
    ];
    let expected = Packet::Connect(Box::new(Connect {
        protocol: V3,
        clean_start: true,
        keep_alive: 10,
        client_id: "c".into(),
        will: Some(LastWill {
            topic: TopicName::from_str("w").unwrap(),
            payload: Bytes::from_static(b"m"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: no_props(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        properties: no_props(),
        bridge: false,
    }));
    check(&bytes, V3, expected);
}

fn simple_connect(protocol: ProtocolVersion, bridge: bool, properties: Properties) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: "c".into(),
        will: None,
        username: None,
        password: None,
        properties,
        bridge,
    }))
}

/// MQTT 3.1: protocol name `MQIsdp`, level 3.
#[test]
fn v31_connect() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x0F,
        0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, 0x02, 0x00, 0x3C,
        0x00, 0x01, b'c',
    ];
    check(
        &bytes,
        V3,
        simple_connect(ProtocolVersion::V31, false, no_props()),
    );
}

/// Mosquitto bridge: protocol level 0x84.
#[test]
fn bridge_bit_connect() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x0D,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x84, 0x02, 0x00, 0x3C,
        0x00, 0x01, b'c',
    ];
    check(&bytes, V3, simple_connect(V3, true, no_props()));
}

/// 5.0 section 3.1.2.11: Session Expiry Interval 10 and Receive Maximum 20.
#[test]
fn v5_connect_with_properties() {
    #[rustfmt::skip]
    let bytes = [
        0x10, 0x18,
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3C,
        0x08, 0x11, 0x00, 0x00, 0x00, 0x0A, 0x21, 0x00, 0x14,
        0x00, 0x03, b'a', b'b', b'c',
    ];
    let props = Properties {
        session_expiry_interval: Some(10),
        receive_maximum: Some(20),
        ..no_props()
    };
    let Packet::Connect(mut c) = simple_connect(V5, false, props) else {
        unreachable!()
    };
    c.client_id = "abc".into();
    // Decoding ignores the connection version for CONNECT.
    check(&bytes, V3, Packet::Connect(c.clone()));
    check(&bytes, V5, Packet::Connect(c));
}

#[test]
fn connack() {
    let ok = |session_present, code| {
        Packet::ConnAck(ConnAck {
            session_present,
            code,
            properties: no_props(),
        })
    };
    check(&[0x20, 0x02, 0x01, 0x00], V3, ok(true, ReasonCode::Success));
    check(
        &[0x20, 0x02, 0x00, 0x05],
        V3,
        ok(false, ReasonCode::NotAuthorized),
    );
    check(
        &[0x20, 0x02, 0x00, 0x01],
        V3,
        ok(false, ReasonCode::UnsupportedProtocolVersion),
    );
    check(
        &[0x20, 0x03, 0x00, 0x00, 0x00],
        V5,
        ok(false, ReasonCode::Success),
    );
    check(
        &[0x20, 0x03, 0x00, 0x84, 0x00],
        V5,
        ok(false, ReasonCode::UnsupportedProtocolVersion),
    );
    let props = Properties {
        maximum_qos: Some(1),
        ..no_props()
    };
    let p = Packet::ConnAck(ConnAck {
        session_present: true,
        code: ReasonCode::Success,
        properties: props,
    });
    check(&[0x20, 0x05, 0x01, 0x00, 0x02, 0x24, 0x01], V5, p);
}

/// 3.1.1 section 3.3.2.3: topic "a/b", packet identifier 10.
#[test]
fn v311_publish_spec_example() {
    let bytes = [
        0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x0A, 0x01, 0x02,
    ];
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::from_str("a/b").unwrap(),
        packet_id: Some(id(10)),
        payload: Bytes::from_static(&[1, 2]),
        properties: no_props(),
    });
    check(&bytes, V3, p);
    // QoS 0, retained, empty payload.
    let bytes = [0x31, 0x05, 0x00, 0x03, b'a', b'/', b'b'];
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: TopicName::from_str("a/b").unwrap(),
        packet_id: None,
        payload: Bytes::new(),
        properties: no_props(),
    });
    check(&bytes, V3, p);
}

/// 5.0 PUBLISH with a Topic Alias (0x23) and an empty topic name.
#[test]
fn v5_publish_with_topic_alias() {
    let bytes = [0x30, 0x08, 0x00, 0x01, b't', 0x03, 0x23, 0x00, 0x05, b'x'];
    let props = Properties {
        topic_alias: Some(5),
        ..no_props()
    };
    let mut p = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: TopicName::from_str("t").unwrap(),
        packet_id: None,
        payload: Bytes::from_static(b"x"),
        properties: props,
    };
    check(&bytes, V5, Packet::Publish(p.clone()));
    p.topic = TopicName::empty();
    check(
        &[0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05, b'x'],
        V5,
        Packet::Publish(p),
    );
}

#[test]
fn v311_acks() {
    check(
        &[0x40, 0x02, 0x00, 0x0A],
        V3,
        Packet::PubAck(PubResp::new(id(10))),
    );
    check(
        &[0x50, 0x02, 0x01, 0x00],
        V3,
        Packet::PubRec(PubResp::new(id(256))),
    );
    check(
        &[0x62, 0x02, 0xFF, 0xFF],
        V3,
        Packet::PubRel(PubResp::new(id(65535))),
    );
    check(
        &[0x70, 0x02, 0x00, 0x01],
        V3,
        Packet::PubComp(PubResp::new(id(1))),
    );
}

/// 5.0 section 3.4.2.1: Remaining Length 2 (Success, no properties),
/// 3 (reason code only), and 4+ (with properties).
#[test]
fn v5_puback_short_forms() {
    check(
        &[0x40, 0x02, 0x00, 0x0A],
        V5,
        Packet::PubAck(PubResp::new(id(10))),
    );
    let nms = PubResp {
        reason: ReasonCode::NoMatchingSubscribers,
        ..PubResp::new(id(10))
    };
    check(&[0x40, 0x03, 0x00, 0x0A, 0x10], V5, Packet::PubAck(nms));
    // Success with an empty property list decodes; the encoder shortens it.
    assert_eq!(
        decode_all(&[0x40, 0x04, 0x00, 0x0A, 0x00, 0x00], V5),
        Packet::PubAck(PubResp::new(id(10)))
    );
    assert_eq!(
        decode_all(&[0x40, 0x03, 0x00, 0x0A, 0x00], V5),
        Packet::PubAck(PubResp::new(id(10)))
    );
    let with_reason = PubResp {
        reason: ReasonCode::PacketIdentifierNotFound,
        properties: Properties {
            reason_string: Some("x".into()),
            ..no_props()
        },
        ..PubResp::new(id(1))
    };
    check(
        &[0x62, 0x08, 0x00, 0x01, 0x92, 0x04, 0x1F, 0x00, 0x01, b'x'],
        V5,
        Packet::PubRel(with_reason),
    );
}

/// 3.1.1 section 3.8.3.1: "a/b" QoS 1 and "c/d" QoS 2.
#[test]
fn v311_subscribe_spec_example() {
    #[rustfmt::skip]
    let bytes = [
        0x82, 0x0E, 0x00, 0x0A,
        0x00, 0x03, b'a', b'/', b'b', 0x01,
        0x00, 0x03, b'c', b'/', b'd', 0x02,
    ];
    let p = Packet::Subscribe(Subscribe {
        packet_id: id(10),
        filters: vec![
            (
                TopicFilter::from_str("a/b").unwrap(),
                SubscriptionOptions::new(QoS::AtLeastOnce),
            ),
            (
                TopicFilter::from_str("c/d").unwrap(),
                SubscriptionOptions::new(QoS::ExactlyOnce),
            ),
        ],
        properties: no_props(),
    });
    check(&bytes, V3, p);
}

/// 5.0 SUBSCRIBE with a Subscription Identifier and all option bits.
#[test]
fn v5_subscribe_options() {
    #[rustfmt::skip]
    let bytes = [
        0x82, 0x0A, 0x00, 0x01,
        0x02, 0x0B, 0x7F,
        0x00, 0x02, b'a', b'/',
        0x2D, // retain handling 2, RAP, no local, QoS 1
    ];
    let opts = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::Never,
    };
    let p = Packet::Subscribe(Subscribe {
        packet_id: id(1),
        filters: vec![(TopicFilter::from_str("a/").unwrap(), opts)],
        properties: Properties {
            subscription_identifiers: vec![127],
            ..no_props()
        },
    });
    check(&bytes, V5, p);
}

/// 3.1.1 section 3.9.3: return codes 0, 1, 2 and 0x80.
#[test]
fn v311_suback_spec_example() {
    let p = Packet::SubAck(SubAck {
        packet_id: id(10),
        codes: vec![
            ReasonCode::GrantedQoS0,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError,
        ],
        properties: no_props(),
    });
    check(&[0x90, 0x06, 0x00, 0x0A, 0x00, 0x01, 0x02, 0x80], V3, p);
    let p5 = Packet::SubAck(SubAck {
        packet_id: id(1),
        codes: vec![ReasonCode::GrantedQoS2],
        properties: no_props(),
    });
    check(&[0x90, 0x04, 0x00, 0x01, 0x00, 0x02], V5, p5);
}

/// 3.1.1 section 3.10.3: "a/b" and "c/d".
#[test]
fn v311_unsubscribe_spec_example() {
    #[rustfmt::skip]
    let bytes = [
        0xA2, 0x0C, 0x00, 0x0A,
        0x00, 0x03, b'a', b'/', b'b',
        0x00, 0x03, b'c', b'/', b'd',
    ];
    let p = Packet::Unsubscribe(Unsubscribe {
        packet_id: id(10),
        filters: vec![
            TopicFilter::from_str("a/b").unwrap(),
            TopicFilter::from_str("c/d").unwrap(),
        ],
        properties: no_props(),
    });
    check(&bytes, V3, p);
}

#[test]
fn unsuback() {
    let p3 = Packet::UnsubAck(UnsubAck {
        packet_id: id(1),
        codes: vec![],
        properties: no_props(),
    });
    check(&[0xB0, 0x02, 0x00, 0x01], V3, p3);
    let p5 = Packet::UnsubAck(UnsubAck {
        packet_id: id(1),
        codes: vec![ReasonCode::NoSubscriptionExisted],
        properties: no_props(),
    });
    check(&[0xB0, 0x04, 0x00, 0x01, 0x00, 0x11], V5, p5);
}

#[test]
fn ping_and_disconnect() {
    for v in [V3, V5] {
        check(&[0xC0, 0x00], v, Packet::PingReq);
        check(&[0xD0, 0x00], v, Packet::PingResp);
        check(
            &[0xE0, 0x00],
            v,
            Packet::Disconnect(Disconnect::new(ReasonCode::NormalDisconnection)),
        );
    }
    check(
        &[0xE0, 0x01, 0x8E],
        V5,
        Packet::Disconnect(Disconnect::new(ReasonCode::SessionTakenOver)),
    );
    let d = Disconnect {
        reason: ReasonCode::ServerShuttingDown,
        properties: Properties {
            session_expiry_interval: Some(0),
            ..no_props()
        },
    };
    check(
        &[0xE0, 0x07, 0x8B, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00],
        V5,
        Packet::Disconnect(d),
    );
}

#[test]
fn auth() {
    check(
        &[0xF0, 0x00],
        V5,
        Packet::Auth(Auth {
            reason: ReasonCode::Success,
            properties: no_props(),
        }),
    );
    let a = Auth {
        reason: ReasonCode::ContinueAuthentication,
        properties: Properties {
            authentication_method: Some("M".into()),
            ..no_props()
        },
    };
    check(
        &[0xF0, 0x06, 0x18, 0x04, 0x15, 0x00, 0x01, b'M'],
        V5,
        Packet::Auth(a),
    );
}

/// 3.1.1 section 2.2.3 / 5.0 section 1.5.5: remaining length encodings.
#[test]
fn remaining_length_table() {
    let table: [(usize, &[u8]); 8] = [
        (0, &[0x00]),
        (127, &[0x7F]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xFF, 0x7F]),
        (16_384, &[0x80, 0x80, 0x01]),
        (2_097_151, &[0xFF, 0xFF, 0x7F]),
        (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
        (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
    ];
    for (value, enc) in table {
        assert_eq!(varint_len(value), enc.len());
        // The decoder reads the fixed header and asks for exactly the body.
        let mut buf = BytesMut::from(&[0x30][..]);
        buf.extend_from_slice(enc);
        match decode(&mut buf, V3, usize::MAX) {
            Err(DecodeError::Incomplete { needed }) => assert_eq!(needed, value),
            other => assert!(value == 0 && other.is_err(), "{value}: {other:?}"),
        }
        // The encoder writes the same bytes (bodies up to 2 MiB).
        if (3..=2_097_152).contains(&value) {
            let p = Packet::Publish(Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: TopicName::from_str("t").unwrap(),
                packet_id: None,
                payload: Bytes::from(vec![0; value - 3]),
                properties: no_props(),
            });
            assert_eq!(&encoded(&p, V3)[1..1 + enc.len()], enc, "{value}");
        }
    }
}
