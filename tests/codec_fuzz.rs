//! Property-based tests: the decoder never panics and never consumes more
//! than it was given on random and mutated input, and generated packets
//! round-trip. Case counts are bounded to keep the suite to a few seconds in
//! debug builds.

mod codec_support;

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use codec_support::{encode, samples};
use proptest::prelude::*;
use shardmq::protocol::*;

const LIMIT: usize = 1 << 16;

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V31),
        Just(ProtocolVersion::V311),
        Just(ProtocolVersion::V5)
    ]
}

/// Decodes everything in `bytes`, checking the decoder's contract: `Ok`
/// consumes a non-empty prefix, `Incomplete` consumes nothing, nothing
/// panics, and whatever decodes re-encodes to a packet that decodes equal.
fn drain(bytes: &[u8], v: ProtocolVersion) {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.len();
        match decode(&mut buf, v, LIMIT) {
            Ok(p) => {
                assert!(buf.len() < before, "Ok must consume bytes");
                let again = encode(&p, v);
                let mut again = again.clone();
                assert_eq!(
                    decode(&mut again, v, LIMIT).as_ref(),
                    Ok(&p),
                    "re-encoded {p:?}"
                );
            }
            Err(DecodeError::Incomplete { needed }) => {
                assert_eq!(buf.len(), before, "Incomplete must not consume");
                assert!(needed >= 1);
                return;
            }
            Err(DecodeError::Malformed(_)) => {
                assert!(buf.len() <= before);
                return;
            }
        }
    }
}

/// A plausible frame: a first byte, a correct remaining length, random body.
fn framed() -> impl Strategy<Value = Vec<u8>> {
    (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..200)).prop_map(|(first, body)| {
        let mut out = BytesMut::new();
        out.extend_from_slice(&[first]);
        let mut n = body.len();
        loop {
            let b = (n & 0x7F) as u8;
            n >>= 7;
            if n == 0 {
                out.extend_from_slice(&[b]);
                break;
            }
            out.extend_from_slice(&[b | 0x80]);
        }
        out.extend_from_slice(&body);
        out.to_vec()
    })
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Remove(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Flip(i, x) if !bytes.is_empty() => bytes[i % len] ^= x,
            Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Mutation::Remove(i) if !bytes.is_empty() => {
                bytes.remove(i % len);
            }
            Mutation::Truncate(i) => bytes.truncate(i % len),
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), v in version()) {
        drain(&bytes, v);
    }

    #[test]
    fn framed_random_bodies_never_panic(bytes in framed(), v in version()) {
        drain(&bytes, v);
    }

    #[test]
    fn mutated_valid_packets_never_panic(
        v in version(),
        pick in any::<prop::sample::Index>(),
        muts in proptest::collection::vec(mutation(), 1..4),
    ) {
        let all = samples(v);
        let p = pick.get(&all);
        let bytes = mutate(encode(p, v).to_vec(), &muts);
        drain(&bytes, v);
    }
}

fn topic_name() -> impl Strategy<Value = TopicName> {
    "[a-z0-9$ é€😀/]{1,24}"
        .prop_map(|s| TopicName::from_str(&s).expect("generated names are valid"))
}

fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    let level = prop_oneof![Just("+".to_string()), "[a-zé/]{0,4}"];
    (
        proptest::collection::vec(level, 1..5),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(levels, hash, share)| {
            let mut f = levels.join("/");
            if hash {
                f.push_str("/#");
            } else if f.is_empty() {
                f.push('x');
            }
            if share {
                f = format!("$share/grp/{f}");
            }
            TopicFilter::from_str(&f).expect("generated filters are valid")
        })
}

fn small_string() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 é€]{0,12}"
}

fn user_props() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((small_string(), small_string()), 0..3)
}

fn publish_props() -> impl Strategy<Value = Properties> {
    (
        proptest::option::of(0..=1u8),
        proptest::option::of(any::<u32>()),
        proptest::option::of(small_string()),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
        proptest::collection::vec(1..=MAX_SUBSCRIPTION_ID, 0..3),
        proptest::option::of(1..=u16::MAX),
        user_props(),
    )
        .prop_map(
            |(pfi, expiry, content_type, corr, sub_ids, alias, user)| Properties {
                payload_format_indicator: pfi,
                message_expiry_interval: expiry,
                content_type,
                correlation_data: corr.map(Bytes::from),
                subscription_identifiers: sub_ids,
                topic_alias: alias,
                user_properties: user,
                ..Properties::default()
            },
        )
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn packet_id() -> impl Strategy<Value = PacketId> {
    (1..=u16::MAX).prop_map(|v| NonZeroU16::new(v).expect("non-zero"))
}

fn publish(v5: bool) -> impl Strategy<Value = Packet> {
    let props = if v5 {
        publish_props().boxed()
    } else {
        Just(Properties::default()).boxed()
    };
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        packet_id(),
        proptest::collection::vec(any::<u8>(), 0..64),
        props,
    )
        .prop_map(|(qos, dup, retain, topic, id, payload, properties)| {
            let q0 = qos == QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && !q0,
                qos,
                retain,
                topic,
                packet_id: (!q0).then_some(id),
                payload: Bytes::from(payload),
                properties,
            })
        })
}

fn subscribe(v5: bool) -> impl Strategy<Value = Packet> {
    let opts = (qos(), any::<bool>(), any::<bool>(), 0..3u8).prop_map(move |(qos, nl, rap, rh)| {
        let retain_handling = [
            RetainHandling::OnSubscribe,
            RetainHandling::OnNewSubscribe,
            RetainHandling::Never,
        ][usize::from(rh)];
        if v5 {
            SubscriptionOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling,
            }
        } else {
            SubscriptionOptions::new(qos)
        }
    });
    (
        packet_id(),
        proptest::collection::vec((topic_filter(), opts), 1..4),
    )
        .prop_map(|(packet_id, mut filters)| {
            for (f, o) in &mut filters {
                o.no_local &= f.share().is_none();
            }
            Packet::Subscribe(Subscribe {
                packet_id,
                filters,
                properties: Properties::default(),
            })
        })
}

fn acks(v5: bool) -> impl Strategy<Value = Packet> {
    let table = if v5 {
        reason_codes::PUBACK
    } else {
        &[ReasonCode::Success][..]
    };
    let reason = proptest::sample::select(table);
    let props = if v5 {
        (proptest::option::of(small_string()), user_props())
            .prop_map(|(reason_string, user_properties)| Properties {
                reason_string,
                user_properties,
                ..Properties::default()
            })
            .boxed()
    } else {
        Just(Properties::default()).boxed()
    };
    (packet_id(), reason, props, 0..4u8).prop_map(|(packet_id, reason, properties, kind)| {
        let r = PubResp {
            packet_id,
            reason,
            properties,
        };
        match kind {
            0 => Packet::PubAck(r),
            1 => Packet::PubRec(r),
            // PUBREL/PUBCOMP allow fewer codes.
            2 => Packet::PubRel(PubResp {
                reason: ReasonCode::Success,
                ..r
            }),
            _ => Packet::PubComp(PubResp {
                reason: ReasonCode::Success,
                ..r
            }),
        }
    })
}

fn unsubscribe() -> impl Strategy<Value = Packet> {
    (packet_id(), proptest::collection::vec(topic_filter(), 1..4)).prop_map(
        |(packet_id, filters)| {
            Packet::Unsubscribe(Unsubscribe {
                packet_id,
                filters,
                properties: Properties::default(),
            })
        },
    )
}

fn packet(v5: bool) -> impl Strategy<Value = Packet> {
    prop_oneof![publish(v5), subscribe(v5), acks(v5), unsubscribe()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_v311_packets_round_trip(p in packet(false)) {
        let v = ProtocolVersion::V311;
        let mut bytes = encode(&p, v);
        prop_assert_eq!(decode(&mut bytes, v, LIMIT), Ok(p));
    }

    #[test]
    fn generated_v5_packets_round_trip(p in packet(true)) {
        let v = ProtocolVersion::V5;
        let mut bytes = encode(&p, v);
        prop_assert_eq!(decode(&mut bytes, v, LIMIT), Ok(p));
    }

    #[test]
    fn matches_agrees_with_a_level_split_reference(t in topic_name(), f in topic_filter()) {
        let inner = f.match_filter();
        prop_assert_eq!(matches(inner, t.as_str()), reference_match(inner, t.as_str()));
    }
}

/// The obvious (allocating) matcher, as a reference for `matches`.
fn reference_match(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    for (i, level) in f.iter().enumerate() {
        match *level {
            "#" => return true,
            "+" if i < t.len() => {}
            l if i < t.len() && t[i] == l => {}
            _ => return false,
        }
    }
    f.len() == t.len()
}
