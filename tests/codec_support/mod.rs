//! Sample packets shared by the codec round-trip and fuzz suites: every
//! packet type, with every property its context allows in 5.0.

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use shardmq::protocol::*;

fn id(v: u16) -> PacketId {
    NonZeroU16::new(v).expect("non-zero")
}

fn user() -> Vec<(String, String)> {
    vec![
        ("k".into(), "v".into()),
        ("k".into(), "v2".into()),
        (String::new(), String::new()),
    ]
}

fn connect_props() -> Properties {
    Properties {
        session_expiry_interval: Some(3600),
        authentication_method: Some("SCRAM".into()),
        authentication_data: Some(Bytes::from_static(b"\x00\x01secret")),
        request_problem_information: Some(0),
        request_response_information: Some(1),
        receive_maximum: Some(10),
        topic_alias_maximum: Some(0),
        maximum_packet_size: Some(1 << 20),
        user_properties: user(),
        ..Properties::default()
    }
}

fn will_props() -> Properties {
    Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        content_type: Some("text/plain".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"corr")),
        will_delay_interval: Some(5),
        user_properties: user(),
        ..Properties::default()
    }
}

fn connack_props() -> Properties {
    Properties {
        session_expiry_interval: Some(0),
        assigned_client_identifier: Some("auto-1".into()),
        server_keep_alive: Some(30),
        authentication_method: Some("SCRAM".into()),
        authentication_data: Some(Bytes::from_static(b"data")),
        response_information: Some("info".into()),
        server_reference: Some("other:1883".into()),
        reason_string: Some("why".into()),
        receive_maximum: Some(65535),
        topic_alias_maximum: Some(100),
        maximum_qos: Some(1),
        retain_available: Some(0),
        user_properties: user(),
        maximum_packet_size: Some(u32::MAX),
        wildcard_subscription_available: Some(1),
        subscription_identifier_available: Some(0),
        shared_subscription_available: Some(1),
        ..Properties::default()
    }
}

fn publish_props() -> Properties {
    Properties {
        payload_format_indicator: Some(0),
        message_expiry_interval: Some(u32::MAX),
        content_type: Some("application/json".into()),
        response_topic: Some("r/t".into()),
        correlation_data: Some(Bytes::new()),
        subscription_identifiers: vec![1, 127, 128, 16_384, MAX_SUBSCRIPTION_ID],
        topic_alias: Some(7),
        user_properties: user(),
        ..Properties::default()
    }
}

fn reason_props() -> Properties {
    Properties {
        reason_string: Some("because".into()),
        user_properties: user(),
        ..Properties::default()
    }
}

fn topic(s: &str) -> TopicName {
    TopicName::from_str(s).expect("valid topic")
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::from_str(s).expect("valid filter")
}

fn connect(protocol: ProtocolVersion, v5: bool) -> Packet {
    let props = |p: Properties| if v5 { p } else { Properties::default() };
    Packet::Connect(Box::new(Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: "client-1".into(),
        will: Some(LastWill {
            topic: topic("last/will"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: props(will_props()),
        }),
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"pass\xFF")),
        properties: props(connect_props()),
        bridge: false,
    }))
}

fn publish(qos: QoS, props: Properties) -> Packet {
    Packet::Publish(Publish {
        dup: qos != QoS::AtMostOnce,
        qos,
        retain: true,
        topic: topic("a/b/c"),
        packet_id: (qos != QoS::AtMostOnce).then(|| id(0xBEEF)),
        payload: Bytes::from_static(b"hello"),
        properties: props,
    })
}

/// Packets valid in every version (no 5.0-only fields set).
fn common() -> Vec<Packet> {
    let all_opts =
        [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce].map(SubscriptionOptions::new);
    vec![
        Packet::ConnAck(ConnAck {
            session_present: true,
            code: ReasonCode::Success,
            properties: Properties::default(),
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ReasonCode::NotAuthorized,
            properties: Properties::default(),
        }),
        publish(QoS::AtMostOnce, Properties::default()),
        publish(QoS::AtLeastOnce, Properties::default()),
        publish(QoS::ExactlyOnce, Properties::default()),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic("t"),
            packet_id: None,
            payload: Bytes::new(),
            properties: Properties::default(),
        }),
        Packet::PubAck(PubResp::new(id(1))),
        Packet::PubRec(PubResp::new(id(2))),
        Packet::PubRel(PubResp::new(id(3))),
        Packet::PubComp(PubResp::new(id(u16::MAX))),
        Packet::Subscribe(Subscribe {
            packet_id: id(10),
            filters: vec![
                (filter("a/+/c"), all_opts[0]),
                (filter("#"), all_opts[1]),
                (filter("$share/g/x/#"), all_opts[2]),
            ],
            properties: Properties::default(),
        }),
        Packet::SubAck(SubAck {
            packet_id: id(10),
            codes: vec![
                ReasonCode::GrantedQoS0,
                ReasonCode::GrantedQoS1,
                ReasonCode::GrantedQoS2,
                ReasonCode::UnspecifiedError,
            ],
            properties: Properties::default(),
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: id(11),
            filters: vec![filter("a/b"), filter("$share/g/+")],
            properties: Properties::default(),
        }),
        Packet::PingReq,
        Packet::PingResp,
    ]
}

/// Every packet type for `v`, with all properties in 5.0.
pub fn samples(v: ProtocolVersion) -> Vec<Packet> {
    let mut out = common();
    if !v.is_v5() {
        out.push(connect(v, false));
        out.push(Packet::UnsubAck(UnsubAck {
            packet_id: id(11),
            codes: vec![],
            properties: Properties::default(),
        }));
        out.push(Packet::Disconnect(Disconnect::new(
            ReasonCode::NormalDisconnection,
        )));
        return out;
    }
    out.extend(v5_only());
    out
}

fn v5_only() -> Vec<Packet> {
    let resp = |reason| PubResp {
        packet_id: id(9),
        reason,
        properties: reason_props(),
    };
    let opts = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::Never,
    };
    let mut c = connect(ProtocolVersion::V5, true);
    if let Packet::Connect(c) = &mut c {
        c.username = None; // password without user name is allowed in 5.0
    }
    vec![
        connect(ProtocolVersion::V5, true),
        c,
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: ReasonCode::ServerMoved,
            properties: connack_props(),
        }),
        publish(QoS::AtLeastOnce, publish_props()),
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: TopicName::empty(),
            packet_id: None,
            payload: Bytes::from_static(b"aliased"),
            properties: Properties {
                topic_alias: Some(1),
                ..Properties::default()
            },
        }),
        Packet::PubAck(resp(ReasonCode::NoMatchingSubscribers)),
        Packet::PubAck(PubResp {
            properties: Properties::default(),
            ..resp(ReasonCode::QuotaExceeded)
        }),
        Packet::PubAck(PubResp {
            reason: ReasonCode::Success,
            ..resp(ReasonCode::Success)
        }),
        Packet::PubRec(resp(ReasonCode::PayloadFormatInvalid)),
        Packet::PubRel(resp(ReasonCode::PacketIdentifierNotFound)),
        Packet::PubComp(resp(ReasonCode::Success)),
        Packet::Subscribe(Subscribe {
            packet_id: id(12),
            filters: vec![(filter("a/#"), opts)],
            properties: Properties {
                subscription_identifiers: vec![268_435_455],
                user_properties: user(),
                ..Properties::default()
            },
        }),
        Packet::SubAck(SubAck {
            packet_id: id(12),
            codes: vec![
                ReasonCode::GrantedQoS1,
                ReasonCode::WildcardSubscriptionsNotSupported,
            ],
            properties: reason_props(),
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: id(13),
            filters: vec![filter("a/#")],
            properties: Properties {
                user_properties: user(),
                ..Properties::default()
            },
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: id(13),
            codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
            properties: reason_props(),
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: id(14),
            codes: vec![],
            properties: Properties::default(),
        }),
        Packet::Disconnect(Disconnect::new(ReasonCode::NormalDisconnection)),
        Packet::Disconnect(Disconnect::new(ReasonCode::SessionTakenOver)),
        Packet::Disconnect(Disconnect {
            reason: ReasonCode::UseAnotherServer,
            properties: Properties {
                session_expiry_interval: Some(0),
                server_reference: Some("b:1883".into()),
                ..reason_props()
            },
        }),
        Packet::Auth(Auth {
            reason: ReasonCode::Success,
            properties: Properties::default(),
        }),
        Packet::Auth(Auth {
            reason: ReasonCode::ContinueAuthentication,
            properties: Properties {
                authentication_method: Some("SCRAM".into()),
                authentication_data: Some(Bytes::from_static(b"x")),
                ..reason_props()
            },
        }),
        Packet::Auth(Auth {
            reason: ReasonCode::ReAuthenticate,
            properties: Properties::default(),
        }),
    ]
}

/// Encodes `p`, checking that `encoded_len` is exact.
pub fn encode(p: &Packet, v: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    p.encode(v, &mut out).expect("encodable");
    assert_eq!(
        out.len(),
        p.encoded_len(v).expect("encodable"),
        "encoded_len of {p:?}"
    );
    out
}
