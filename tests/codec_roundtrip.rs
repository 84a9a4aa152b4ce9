//! decode(encode(p)) == p for every packet type in MQTT 3.1, 3.1.1 and 5.0,
//! exact `encoded_len`, byte-by-byte feeding, and remaining lengths at every
//! variable byte integer boundary.

mod codec_support;

use bytes::{Bytes, BytesMut};
use codec_support::{encode, samples};
use shardmq::protocol::*;

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V31,
    ProtocolVersion::V311,
    ProtocolVersion::V5,
];
const NO_LIMIT: usize = usize::MAX;

fn round_trip(p: &Packet, v: ProtocolVersion) -> BytesMut {
    let bytes = encode(p, v);
    let mut buf = bytes.clone();
    let back = decode(&mut buf, v, NO_LIMIT).unwrap_or_else(|e| panic!("{v:?} {p:?}: {e}"));
    assert_eq!(&back, p, "{v:?}");
    assert!(buf.is_empty(), "decode consumed the whole packet");
    bytes
}

#[test]
fn every_packet_round_trips_in_every_version() {
    for v in VERSIONS {
        let all = samples(v);
        assert!(all.len() >= 18, "{v:?}: {} samples", all.len());
        for p in &all {
            round_trip(p, v);
        }
    }
}

#[test]
fn byte_by_byte_is_incomplete_until_the_last_byte() {
    for v in VERSIONS {
        for p in samples(v) {
            let bytes = encode(&p, v);
            for n in 0..bytes.len() {
                let mut partial = BytesMut::from(&bytes[..n]);
                match decode(&mut partial, v, NO_LIMIT) {
                    Err(DecodeError::Incomplete { needed }) => {
                        assert!(
                            needed >= 1 && n + needed <= bytes.len(),
                            "{p:?} at {n}: needed {needed}"
                        );
                    }
                    other => panic!("{v:?} {p:?} prefix {n}: {other:?}"),
                }
                assert_eq!(partial.len(), n, "Incomplete leaves the buffer alone");
            }
            let mut whole = bytes.clone();
            assert_eq!(decode(&mut whole, v, NO_LIMIT), Ok(p));
        }
    }
}

#[test]
fn several_packets_in_one_buffer_decode_in_order() {
    let v = ProtocolVersion::V5;
    let all = samples(v);
    let mut buf = BytesMut::new();
    for p in &all {
        p.encode(v, &mut buf).unwrap();
    }
    buf.extend_from_slice(&[0x30]); // a partial packet at the end
    for p in &all {
        assert_eq!(&decode(&mut buf, v, NO_LIMIT).unwrap(), p);
    }
    assert_eq!(
        decode(&mut buf, v, NO_LIMIT),
        Err(DecodeError::Incomplete { needed: 1 })
    );
}

/// A QoS 0 PUBLISH to "t" with `properties` whose remaining length is
/// `remaining`; `props_len` is the encoded size of the properties section
/// (0 for 3.1.1).
fn publish_with_remaining(remaining: usize, properties: Properties, props_len: usize) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: TopicName::from_str("t").unwrap(),
        packet_id: None,
        payload: Bytes::from(vec![0xA5; remaining - 3 - props_len]),
        properties,
    })
}

#[test]
fn remaining_length_boundaries() {
    for (remaining, header) in [
        (127, 2),
        (128, 3),
        (16_383, 3),
        (16_384, 4),
        (2_097_151, 4),
        (2_097_152, 5),
    ] {
        let p = publish_with_remaining(remaining, Properties::default(), 0);
        let bytes = round_trip(&p, ProtocolVersion::V311);
        assert_eq!(bytes.len(), header + remaining);
        assert_eq!(varint_len(remaining) + 1, header);
        // One byte short is Incomplete with the exact count.
        let mut short = BytesMut::from(&bytes[..bytes.len() - 1]);
        assert_eq!(
            decode(&mut short, ProtocolVersion::V311, NO_LIMIT),
            Err(DecodeError::Incomplete { needed: 1 })
        );
    }
}

#[test]
fn v5_publish_boundaries_with_properties() {
    for remaining in [127, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
        let props = Properties {
            message_expiry_interval: Some(1),
            ..Properties::default()
        };
        // Property length (1) + identifier (1) + four-byte integer.
        let p = publish_with_remaining(remaining, props, 6);
        let bytes = round_trip(&p, ProtocolVersion::V5);
        assert_eq!(bytes.len(), 1 + varint_len(remaining) + remaining);
    }
}

#[test]
fn empty_payloads_and_strings() {
    for v in VERSIONS {
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::from_str("/").unwrap(),
            packet_id: Some(PacketId::new(1).unwrap()),
            payload: Bytes::new(),
            properties: Properties::default(),
        });
        round_trip(&p, v);
        let c = Packet::Connect(Box::new(Connect {
            protocol: if v == ProtocolVersion::V31 {
                ProtocolVersion::V311
            } else {
                v
            },
            clean_start: false,
            keep_alive: 0,
            client_id: String::new(),
            will: None,
            username: Some(String::new()),
            password: Some(Bytes::new()),
            properties: Properties::default(),
            bridge: true,
        }));
        round_trip(&c, v);
    }
}

#[test]
fn decoded_publish_is_a_slice_of_the_read_buffer() {
    let v = ProtocolVersion::V311;
    let p = samples(v)
        .into_iter()
        .find(|p| matches!(p, Packet::Publish(_)))
        .unwrap();
    let mut buf = encode(&p, v);
    let base = buf.as_ptr() as usize;
    let end = base + buf.len();
    let Packet::Publish(mut decoded) = decode(&mut buf, v, NO_LIMIT).unwrap() else {
        panic!()
    };
    let at = decoded.payload.as_ptr() as usize;
    assert!(
        at >= base && at < end,
        "payload points into the read buffer"
    );
    let topic_at = decoded.topic.as_bytes().as_ptr() as usize;
    assert!(
        topic_at >= base && topic_at < end,
        "topic points into the read buffer"
    );
    decoded.detach();
    let at = decoded.payload.as_ptr() as usize;
    assert!(!(base..end).contains(&at), "detach copies");
}

fn qos1_publish(v: ProtocolVersion) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::from_str("sensors/1/temp").unwrap(),
        packet_id: Some(PacketId::new(1).unwrap()),
        payload: Bytes::from_static(b"21.5"),
        properties: if v.is_v5() {
            Properties {
                message_expiry_interval: Some(30),
                ..Properties::default()
            }
        } else {
            Properties::default()
        },
    }
}

#[test]
fn encoded_publish_matches_direct_encoding() {
    for v in VERSIONS {
        let src = qos1_publish(v);
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for (id, dup, retain) in [(7u16, false, false), (0xFFFF, true, true)] {
                let shared = EncodedPublish::new(&src, v, qos, retain).unwrap();
                let mut out = BytesMut::from(&b"prefix"[..]);
                let pid = PacketId::new(id).unwrap();
                shared.write_to(Some(pid), dup, &mut out);
                let qos0 = qos == QoS::AtMostOnce;
                let expect = Packet::Publish(Publish {
                    dup: dup && !qos0,
                    qos,
                    retain,
                    packet_id: (!qos0).then_some(pid),
                    ..src.clone()
                });
                assert_eq!(&out[6..], &encode(&expect, v)[..], "{v:?} {qos:?}");
                assert_eq!(shared.len(), out.len() - 6);
            }
        }
    }
}

#[test]
fn encode_rejects_inconsistent_or_unsupported_packets() {
    let v = ProtocolVersion::V311;
    let mut bad = qos1_publish(v);
    bad.packet_id = None;
    assert!(matches!(
        Packet::Publish(bad).encode(v, &mut BytesMut::new()),
        Err(EncodeError::Invalid(_))
    ));
    let auth = Packet::Auth(Auth {
        reason: ReasonCode::Success,
        properties: Properties::default(),
    });
    assert!(matches!(
        auth.encode(v, &mut BytesMut::new()),
        Err(EncodeError::Unsupported(_))
    ));
    let long = "x".repeat(70_000);
    let c = Packet::Connect(Box::new(Connect {
        protocol: v,
        clean_start: true,
        keep_alive: 0,
        client_id: long,
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
        bridge: false,
    }));
    let mut out = BytesMut::new();
    assert!(matches!(
        c.encode(v, &mut out),
        Err(EncodeError::TooLarge(_))
    ));
    assert!(out.is_empty(), "nothing written on error");
}

#[test]
fn v3_encoders_drop_v5_only_fields() {
    let v = ProtocolVersion::V311;
    let ack = Packet::PubAck(PubResp {
        packet_id: PacketId::new(5).unwrap(),
        reason: ReasonCode::QuotaExceeded,
        properties: Properties {
            reason_string: Some("x".into()),
            ..Properties::default()
        },
    });
    assert_eq!(&encode(&ack, v)[..], &[0x40, 0x02, 0x00, 0x05]);
    let d = Packet::Disconnect(Disconnect::new(ReasonCode::ServerShuttingDown));
    assert_eq!(&encode(&d, v)[..], &[0xE0, 0x00]);
    let ca = Packet::ConnAck(ConnAck {
        session_present: false,
        code: ReasonCode::Banned,
        properties: Properties::default(),
    });
    assert_eq!(&encode(&ca, v)[..], &[0x20, 0x02, 0x00, 0x05]);
    let sa = Packet::SubAck(SubAck {
        packet_id: PacketId::new(1).unwrap(),
        codes: vec![ReasonCode::QuotaExceeded, ReasonCode::GrantedQoS1],
        properties: Properties::default(),
    });
    assert_eq!(&encode(&sa, v)[..], &[0x90, 0x04, 0x00, 0x01, 0x80, 0x01]);
}
