//! Mosquitto's MQTT 3.x bridge bit (`try_private`: protocol level 0x84 for
//! 3.1.1): shardmq as the upstream broker serves such a client as Mosquitto
//! does. What it published is never sent back to it (No Local), and live
//! messages reach it with RETAIN as published (Retain As Published), on one
//! shard, across shards, and after its persistent session is resumed.
//!
//! Every wait is bounded: a packet within `WAIT`, silence for `QUIET`, and
//! at most `RESUME_TRIES` reconnections.

mod common;

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::*;
use shardmq::protocol::{Connect, Packet, ProtocolVersion, PubResp, QoS};

/// How long a message that must not arrive is waited for.
const QUIET: Duration = Duration::from_millis(300);

/// Reconnections tried until one arrives on the shard that is not the
/// session's home (the kernel picks the accepting shard: 1 in 2 each).
const RESUME_TRIES: usize = 16;

/// A 3.1.1 CONNECT with the bridge bit set.
fn bridge_connect(id: &str, clean: bool) -> Connect {
    Connect {
        bridge: true,
        ..connect_packet(ProtocolVersion::V311, id, clean, 60)
    }
}

/// A bridge client homed on `shard`, subscribed to `t/#` at QoS 1.
fn bridge_on(b: &TestBroker, shard: usize) -> RawClient {
    let (mut c, _) = RawClient::connected(b.addr, bridge_connect(&b.id_on(shard, "bridge"), true));
    c.subscribe("t/#", QoS::AtLeastOnce);
    c
}

/// An ordinary 3.1.1 client homed on shard 0, subscribed to `filter` unless
/// it is empty.
fn plain_on_shard0(b: &TestBroker, name: &str, filter: &str) -> RawClient {
    let id = b.id_on(0, name);
    let (mut c, _) =
        RawClient::connected(b.addr, connect_packet(ProtocolVersion::V311, &id, true, 60));
    if !filter.is_empty() {
        c.subscribe(filter, QoS::AtLeastOnce);
    }
    c
}

/// Everything `c` receives until it has been quiet for [`QUIET`].
fn received(c: &mut RawClient) -> Vec<Packet> {
    let mut got = Vec::new();
    while let Some(p) = c.recv_within(QUIET) {
        got.push(p.expect("connection open"));
    }
    got
}

/// Publishes QoS 1 from the bridge and asserts it gets the PUBACK only,
/// never its own message.
fn publish_not_echoed(bridge: &mut RawClient, topic: &str, id: u16) {
    bridge.send(&Packet::Publish(publish(
        topic,
        b"own",
        QoS::AtLeastOnce,
        false,
        id,
    )));
    assert_eq!(
        received(bridge),
        [Packet::PubAck(PubResp::new(pid(id)))],
        "the bridge must not get its own message back"
    );
}

/// A retained message from `publ` reaches the bridge live with RETAIN set.
fn retained_reaches_bridge(publ: &mut RawClient, bridge: &mut RawClient, id: u16) {
    publ.publish("t/r", b"kept", QoS::AtLeastOnce, true, id);
    expect_kept(bridge, true, "a bridge gets RETAIN as published");
}

/// Receives the message "kept" and asserts its RETAIN flag.
fn expect_kept(c: &mut RawClient, retain: bool, why: &str) {
    let p = c.expect_publish();
    assert_eq!(
        (p.payload, p.retain),
        (Bytes::from_static(b"kept"), retain),
        "{why}"
    );
}

/// Runs `check` on a broker with 1, then 2 shards, with a bridge client
/// (homed on the last shard) and an ordinary client (on shard 0), both
/// subscribed to `t/#`.
fn with_bridge_and_plain(check: impl Fn(&TestBroker, &mut RawClient, &mut RawClient)) {
    for shards in [1, 2] {
        let b = TestBroker::start(shards);
        let mut bridge = bridge_on(&b, shards - 1);
        let mut plain = plain_on_shard0(&b, "plain", "t/#");
        check(&b, &mut bridge, &mut plain);
    }
}

#[test]
fn bridge_connect_sets_protocol_level_0x84() {
    let mut out = BytesMut::new();
    Packet::Connect(Box::new(bridge_connect("b", true)))
        .encode(ProtocolVersion::V311, &mut out)
        .expect("encodable");
    // Fixed header (2), protocol name "MQTT" (6), then the level.
    assert_eq!(&out[2..9], &[0, 4, b'M', b'Q', b'T', b'T', 0x84]);
}

#[test]
fn a_bridge_never_gets_its_own_messages_back() {
    with_bridge_and_plain(|b, bridge, plain| {
        publish_not_echoed(bridge, "t/x", 1);
        let p = plain.expect_publish();
        assert_eq!(&p.payload[..], b"own", "{} shards", b.shards);
        // No Local spares only its own messages.
        let mut publ = plain_on_shard0(b, "pub", "");
        publ.publish("t/y", b"other", QoS::AtLeastOnce, false, 1);
        assert_eq!(&bridge.expect_publish().payload[..], b"other");
        assert_eq!(&plain.expect_publish().payload[..], b"other");
    });
}

#[test]
fn a_bridge_gets_live_messages_with_retain_as_published() {
    with_bridge_and_plain(|b, bridge, plain| {
        let mut publ = plain_on_shard0(b, "pub", "");
        retained_reaches_bridge(&mut publ, bridge, 1);
        let why = format!(
            "{} shards: an ordinary 3.1.1 subscriber gets RETAIN 0 live",
            b.shards
        );
        expect_kept(plain, false, &why);
    });
}

#[test]
fn a_resumed_bridge_session_keeps_its_options_across_shards() {
    let b = TestBroker::start(2);
    let id = b.id_on(1, "pbridge");
    let (mut bridge, _) = RawClient::connected(b.addr, bridge_connect(&id, false));
    bridge.subscribe("t/#", QoS::AtLeastOnce);
    bridge.disconnect();
    let mut bridge = resume_via_shard0(&b, &id);
    let mut publ = plain_on_shard0(&b, "pub", "");
    retained_reaches_bridge(&mut publ, &mut bridge, 1);
    publish_not_echoed(&mut bridge, "t/x", 2);
}

/// Resumes session `id` (homed on shard 1) until a connection is accepted
/// on shard 0 and handed over to shard 1 with its CONNECT.
fn resume_via_shard0(b: &TestBroker, id: &str) -> RawClient {
    // Counters are published every tick (100 ms): wait for them to settle.
    let settle = || std::thread::sleep(Duration::from_millis(250));
    settle();
    let mut handed = b.stats()[0].handed_over;
    for _ in 0..RESUME_TRIES {
        let (c, present) = RawClient::connected(b.addr, bridge_connect(id, false));
        assert!(present, "the persistent session is resumed");
        settle();
        let now = b.stats()[0].handed_over;
        if now > handed {
            return c;
        }
        handed = now;
        c.disconnect();
    }
    panic!("no connection of {RESUME_TRIES} was accepted on shard 0");
}

#[test]
fn the_bridge_bit_counts_in_mqtt_3_only() {
    // As Mosquitto: a 5.0 bridge says what it wants in its subscription
    // options; the bit alone changes nothing.
    let b = TestBroker::start(1);
    let connect = Connect {
        bridge: true,
        ..connect_packet(ProtocolVersion::V5, "v5bridge", true, 60)
    };
    let (mut c, _) = RawClient::connected(b.addr, connect);
    c.subscribe("t/#", QoS::AtLeastOnce);
    c.send(&Packet::Publish(publish(
        "t/x",
        b"own",
        QoS::AtMostOnce,
        false,
        1,
    )));
    let p = c.recv_publish();
    assert_eq!(&p.payload[..], b"own", "no No Local without asking");
}
