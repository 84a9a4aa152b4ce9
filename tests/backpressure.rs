//! Overload without loss (`overload_policy backpressure`, the default): a
//! QoS 1 message the broker acknowledged to a publisher reaches its online
//! subscriber; publishers feeding a saturated subscriber are paused,
//! others keep their rate; a stalled subscriber is cut after
//! `overload_stall_timeout`; `overload_policy drop` drops as Mosquitto.
//! Each test runs with publishers and subscriber on one shard and on two.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use shardmq::config::OverloadPolicy;
use shardmq::protocol::{Packet, ProtocolVersion, PubResp, QoS, ReasonCode};

/// Publishers in a flood, and messages each sends.
const PUBLISHERS: usize = 10;
const PER_PUBLISHER: usize = 1500;
/// Payload bytes of each flood message (tag and sequence first).
const PAYLOAD: usize = 256;
/// How long any flood, or a drain, may take at most.
const LIMIT: Duration = Duration::from_secs(90);

/// A broker with a small subscriber queue (so that the flood overruns it
/// at once) and `policy`.
fn broker(shards: usize, policy: OverloadPolicy, stall: u32) -> TestBroker {
    TestBroker::with(shards, |c| {
        c.max_queued_messages = 50;
        c.overload_policy = policy;
        c.overload_stall_timeout = stall;
    })
}

/// A payload tagged with its publisher and sequence number.
fn payload(tag: u16, seq: u32) -> Vec<u8> {
    let mut p = vec![0u8; PAYLOAD];
    p[..2].copy_from_slice(&tag.to_be_bytes());
    p[2..6].copy_from_slice(&seq.to_be_bytes());
    p
}

fn tag_seq(p: &[u8]) -> (u16, u32) {
    (
        u16::from_be_bytes([p[0], p[1]]),
        u32::from_be_bytes([p[2], p[3], p[4], p[5]]),
    )
}

/// A publisher (client `id`) sending `n` QoS 1 messages to `topic`
/// without waiting for each PUBACK (its socket blocks while the broker
/// holds it back); returns the sequence number of every message
/// acknowledged.
fn flood(
    b: &TestBroker,
    id: &str,
    topic: &'static str,
    tag: u16,
    n: usize,
) -> JoinHandle<Vec<u32>> {
    flood_as(b, id, topic, tag, n, ProtocolVersion::V311)
}

/// [`flood`] in `version`. A 5.0 publisher keeps within the Receive
/// Maximum the broker announced, as 5.0 clients must: the broker then
/// holds it back by its PUBACKs.
fn flood_as(
    b: &TestBroker,
    id: &str,
    topic: &'static str,
    tag: u16,
    n: usize,
    version: ProtocolVersion,
) -> JoinHandle<Vec<u32>> {
    let (c, _) = RawClient::connected(b.addr, connect_packet(version, id, true, 0));
    let writer = c.stream.try_clone().expect("clone");
    let window = if version.is_v5() {
        RECEIVE_MAXIMUM
    } else {
        usize::MAX
    };
    let acked_n = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&acked_n);
    let mut acks = c;
    std::thread::spawn(move || {
        let sender =
            std::thread::spawn(move || pour(writer, topic, (tag, n), version, (&seen, window)));
        let deadline = Instant::now() + LIMIT;
        let mut acked = Vec::with_capacity(n);
        while acked.len() < n && Instant::now() < deadline {
            match acks.recv_within(Duration::from_secs(1)) {
                Some(Some(Packet::PubAck(r))) => {
                    // Ids are acknowledged in order: the i-th PUBACK is message i.
                    let i = acked.len() as u32;
                    assert_eq!(r.packet_id.get(), (i % 65_535) as u16 + 1);
                    acked.push(i);
                    acked_n.store(acked.len(), Ordering::Release);
                }
                Some(Some(other)) => panic!("publisher {tag}: {other:?}"),
                Some(None) => break,
                None => {}
            }
        }
        drop(acks);
        let _ = sender.join();
        acked
    })
}

/// The Receive Maximum the broker announces (`max_inflight_messages`).
const RECEIVE_MAXIMUM: usize = 20;

/// Writes `n` QoS 1 PUBLISH packets (publisher `tag`, sequence 0..n) to
/// `topic` without waiting for each PUBACK, keeping at most `window`
/// beyond the `acked` count; stops when the socket fails or after [`LIMIT`].
fn pour(
    mut writer: TcpStream,
    topic: &str,
    (tag, n): (u16, usize),
    version: ProtocolVersion,
    (acked, window): (&AtomicUsize, usize),
) {
    let deadline = Instant::now() + LIMIT;
    for i in 0..n {
        while i.saturating_sub(acked.load(Ordering::Acquire)) >= window {
            if Instant::now() > deadline {
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let id = (i % 65_535) as u16 + 1;
        let p = publish(topic, &payload(tag, i as u32), QoS::AtLeastOnce, false, id);
        if writer
            .write_all(&encode_packet(Packet::Publish(p), version))
            .is_err()
        {
            return;
        }
    }
}

/// Writes `n` 3.1.1 QoS 1 PUBLISH packets without waiting for any PUBACK.
fn pour_all(writer: TcpStream, topic: &str, tag: u16, n: usize) {
    let unlimited = (&AtomicUsize::new(0), usize::MAX);
    pour(writer, topic, (tag, n), ProtocolVersion::V311, unlimited);
}

fn encode_packet(p: Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    p.encode(version, &mut out).unwrap();
    out.to_vec()
}

/// A subscriber reading `want` messages (acknowledging each, pausing
/// `pause` every 100), or until nothing arrives for `quiet`; returns the
/// (tag, seq) of each.
fn collect(
    mut c: RawClient,
    want: usize,
    pause: Duration,
    quiet: Duration,
) -> JoinHandle<Vec<(u16, u32)>> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + LIMIT;
        let mut got = Vec::with_capacity(want);
        while got.len() < want && Instant::now() < deadline {
            match c.recv_within(quiet) {
                Some(Some(Packet::Publish(p))) => {
                    c.ack(&p);
                    got.push(tag_seq(&p.payload));
                    if got.len() % 100 == 0 {
                        std::thread::sleep(pause);
                    }
                }
                Some(Some(other)) => panic!("subscriber: {other:?}"),
                Some(None) | None => break,
            }
        }
        got
    })
}

fn subscriber(b: &TestBroker, shard: usize, name: &str, topic: &str) -> RawClient {
    let id = b.id_on(shard, name);
    let (mut c, _) =
        RawClient::connected(b.addr, connect_packet(ProtocolVersion::V5, &id, true, 0));
    c.subscribe(topic, QoS::AtLeastOnce);
    c
}

/// Waits for the published counters to satisfy `ok` (they refresh every
/// tick), and returns their sum.
fn stats_when(
    b: &TestBroker,
    ok: impl Fn(&shardmq::shard::StatsSnapshot) -> bool,
) -> shardmq::shard::StatsSnapshot {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let total = b.stats().into_iter().fold(Default::default(), |a, s| a + s);
        if ok(&total) || Instant::now() > deadline {
            return total;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fan-in flood: every message acknowledged to a publisher reaches the
/// slow subscriber, once, in each publisher's order; none is dropped, and
/// the publishers were held back (the queue ran past its limit).
fn fan_in_loses_nothing(pub_shard: usize, sub_shard: usize, version: ProtocolVersion) {
    let b = broker(2, OverloadPolicy::Backpressure, 30);
    fan_in_into(&b, pub_shard, sub_shard, version);
}

/// The fan-in flood on broker `b` (see [`fan_in_loses_nothing`]).
fn fan_in_into(b: &TestBroker, pub_shard: usize, sub_shard: usize, version: ProtocolVersion) {
    let sub = subscriber(b, sub_shard, "sink", "fanin");
    let total = PUBLISHERS * PER_PUBLISHER;
    let reader = collect(
        sub,
        total,
        Duration::from_millis(2),
        Duration::from_secs(10),
    );
    let floods: Vec<_> = (0..PUBLISHERS)
        .map(|i| {
            let id = b.id_on(pub_shard, &format!("src{i}-"));
            flood_as(b, &id, "fanin", i as u16, PER_PUBLISHER, version)
        })
        .collect();
    let acked: Vec<Vec<u32>> = floods.into_iter().map(|f| f.join().unwrap()).collect();
    let got = reader.join().unwrap();
    let acked_n: usize = acked.iter().map(Vec::len).sum();
    assert_eq!(acked_n, total, "every message acknowledged in time");
    for (tag, seqs) in acked.iter().enumerate() {
        let delivered: Vec<u32> = got
            .iter()
            .filter(|(t, _)| usize::from(*t) == tag)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            &delivered, seqs,
            "publisher {tag}: lost, repeated or out of order"
        );
    }
    let stats = stats_when(b, |s| s.held > 0 && released(s));
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert!(
        stats.held > 0,
        "the queue never ran past its limit: {stats:?}"
    );
    assert!(released(&stats), "{stats:?}");
}

/// No publisher held back and no subscriber holding one, on any shard.
fn released(s: &shardmq::shard::StatsSnapshot) -> bool {
    s.publishers_held == 0 && s.subscribers_pressing == 0
}

#[test]
fn fan_in_flood_loses_nothing_on_one_shard() {
    fan_in_loses_nothing(0, 0, ProtocolVersion::V311);
}

#[test]
fn fan_in_flood_loses_nothing_across_shards() {
    fan_in_loses_nothing(0, 1, ProtocolVersion::V311);
}

/// 5.0 publishers are held back by their PUBACKs (their Receive Maximum
/// stops them) and lose nothing either, on one shard and across two.
#[test]
fn fan_in_flood_of_v5_publishers_loses_nothing() {
    for (publishers, subscriber) in [(0, 0), (0, 1)] {
        fan_in_loses_nothing(publishers, subscriber, ProtocolVersion::V5);
    }
}

/// Persistence on (`persistence_sync written`): the acknowledgements wait
/// for the journal, and a 5.0 publisher is held by not being read, as a
/// 3.1.1 one. Nothing acknowledged is lost, nothing dropped.
#[test]
fn fan_in_flood_with_persistence_loses_nothing() {
    for (publishers, subscriber, version) in
        [(0, 1, ProtocolVersion::V311), (0, 0, ProtocolVersion::V5)]
    {
        let dir = std::env::temp_dir().join(format!(
            "shardmq-bp-persist-{}-{subscriber}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let b = TestBroker::with(2, |c| {
            c.max_queued_messages = 50;
            c.overload_policy = OverloadPolicy::Backpressure;
            c.overload_stall_timeout = 30;
            c.persistence = true;
            c.persistence_location = Some(dir.clone());
        });
        fan_in_into(&b, publishers, subscriber, version);
        drop(b);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// `overload_policy drop`: the same flood drops (and counts) what the
/// subscriber's queue has no room for, as Mosquitto does.
#[test]
fn the_drop_policy_drops() {
    let b = broker(2, OverloadPolicy::Drop, 30);
    let sub = subscriber(&b, 1, "sink", "fanin");
    let total = PUBLISHERS * PER_PUBLISHER;
    let reader = collect(sub, total, Duration::from_millis(2), Duration::from_secs(3));
    let floods: Vec<_> = (0..PUBLISHERS)
        .map(|i| {
            flood(
                &b,
                &b.id_on(0, &format!("src{i}-")),
                "fanin",
                i as u16,
                PER_PUBLISHER,
            )
        })
        .collect();
    let acked: usize = floods.into_iter().map(|f| f.join().unwrap().len()).sum();
    let got = reader.join().unwrap();
    assert_eq!(acked, total);
    assert!(got.len() < total, "nothing dropped: {}", got.len());
    let stats = stats_when(&b, |s| s.dropped as usize == total - got.len());
    assert_eq!(stats.dropped as usize, total - got.len(), "{stats:?}");
    assert_eq!(stats.held, 0, "{stats:?}");
}

/// A stalled subscriber and a healthy one on the same topic: the stalled
/// one is cut (5.0: Quota exceeded) after `overload_stall_timeout`, the
/// publisher resumes, and the healthy one gets every message acknowledged.
fn stalled_subscriber_is_cut(pub_shard: usize, sub_shard: usize) {
    let b = broker(2, OverloadPolicy::Backpressure, 1);
    let mut stalled = subscriber(&b, sub_shard, "stalled", "shared-topic");
    let healthy = subscriber(&b, sub_shard, "healthy", "shared-topic");
    // More than the pipeline between publisher and subscriber holds.
    let n = 20_000;
    let reader = collect(healthy, n, Duration::ZERO, Duration::from_secs(10));
    let id = b.id_on(pub_shard, "src");
    let started = Instant::now();
    let acked = flood(&b, &id, "shared-topic", 0, n).join().unwrap();
    assert_eq!(acked.len(), n, "the publisher resumed after the cut");
    // Held back until the cut: at least the bound (whole shard seconds).
    assert!(started.elapsed() >= Duration::from_millis(900));
    let got: Vec<u32> = reader.join().unwrap().into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        got, acked,
        "the healthy subscriber got every message, in order"
    );
    // The stalled one's out buffer held some, then the DISCONNECT.
    let mut disconnect = None;
    while let Some(Some(p)) = stalled.recv_within(WAIT) {
        if let Packet::Disconnect(d) = p {
            disconnect = Some(d.reason);
        }
    }
    assert_eq!(disconnect, Some(ReasonCode::QuotaExceeded));
    let stats = stats_when(&b, |s| s.slow_consumers == 1 && released(s));
    assert_eq!(stats.slow_consumers, 1, "{stats:?}");
    assert!(released(&stats), "{stats:?}");
}

#[test]
fn a_stalled_subscriber_is_cut_on_one_shard() {
    stalled_subscriber_is_cut(0, 0);
}

#[test]
fn a_stalled_subscriber_is_cut_across_shards() {
    stalled_subscriber_is_cut(0, 1);
}

/// Fairness: while a stalled subscriber holds its publisher back, a
/// publisher to another, healthy subscriber is not paused. The stall
/// bound is long; the stalled client leaving releases its publisher.
fn healthy_traffic_keeps_flowing(pub_shard: usize, sub_shard: usize) {
    let b = broker(2, OverloadPolicy::Backpressure, 3600);
    let stalled = subscriber(&b, sub_shard, "stalled", "slow");
    let mut healthy = subscriber(&b, sub_shard, "healthy", "fast");
    // More than the pipeline between publisher and subscriber holds.
    let n = 20_000;
    let slow = flood(&b, &b.id_on(pub_shard, "slowsrc"), "slow", 0, n);
    // Until the slow publisher is held back.
    let _ = stats_when(&b, |s| s.held > 0);
    let id = b.id_on(pub_shard, "fastsrc");
    let (mut fast, _) =
        RawClient::connected(b.addr, connect_packet(ProtocolVersion::V311, &id, true, 0));
    for i in 0..200u32 {
        fast.publish("fast", &payload(1, i), QoS::AtLeastOnce, false, 1);
        assert_eq!(tag_seq(&healthy.expect_publish().payload), (1, i));
    }
    assert!(!slow.is_finished(), "the slow publisher is still held back");
    drop(stalled);
    let acked = slow.join().unwrap();
    assert_eq!(acked.len(), n, "released once the stalled subscriber left");
}

#[test]
fn healthy_traffic_keeps_flowing_on_one_shard() {
    healthy_traffic_keeps_flowing(0, 0);
}

#[test]
fn healthy_traffic_keeps_flowing_across_shards() {
    healthy_traffic_keeps_flowing(0, 1);
}

/// A client that publishes to a topic it subscribes to is not paused by
/// its own queue (it would stop reading the acknowledgements that drain
/// it): a self-loop flood completes.
#[test]
fn a_client_subscribed_to_its_own_flood_does_not_deadlock() {
    let b = broker(1, OverloadPolicy::Backpressure, 3600);
    let (mut c, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, "loop", true, 0),
    );
    c.subscribe("loop", QoS::AtLeastOnce);
    let mut acked = 0;
    let mut got = 0;
    for i in 0..500u32 {
        c.send(&Packet::Publish(publish(
            "loop",
            &payload(0, i),
            QoS::AtLeastOnce,
            false,
            (i % 60_000) as u16 + 1,
        )));
    }
    let deadline = Instant::now() + LIMIT;
    while (acked < 500 || got < 500) && Instant::now() < deadline {
        match c.recv_within(Duration::from_secs(5)) {
            Some(Some(Packet::PubAck(_))) => acked += 1,
            Some(Some(Packet::Publish(p))) => {
                c.ack(&p);
                got += 1;
            }
            other => panic!("{other:?} after {acked} acks, {got} messages"),
        }
    }
    assert_eq!((acked, got), (500, 500));
}

/// A persistent subscriber cut as a slow consumer keeps `max_queued_*`
/// (and its window) of what it was sent; the rest is counted as dropped,
/// and the publisher is not held back by a session that is away.
fn a_cut_persistent_session_keeps_its_limits(pub_shard: usize, sub_shard: usize) {
    let b = broker(2, OverloadPolicy::Backpressure, 1);
    let id = b.id_on(sub_shard, "away");
    let (mut stalled, _) = RawClient::connected(b.addr, connect_v5_expiry(&id, true, 600));
    stalled.subscribe("persist", QoS::AtLeastOnce);
    let n = 2000;
    let publisher = flood(&b, &b.id_on(pub_shard, "src"), "persist", 0, n);
    // Cut (whether or not the whole flood reached its queue first): read,
    // never acknowledged, until the broker closes it.
    let closed = stalled.expect_closed();
    assert!(
        matches!(closed.last(), Some(Packet::Disconnect(d)) if d.reason == ReasonCode::QuotaExceeded),
        "{:?}",
        closed.last()
    );
    let acked = publisher.join().unwrap();
    assert_eq!(acked.len(), n, "the publisher resumed after the cut");
    let (mut back, present) = RawClient::connected(b.addr, connect_v5_expiry(&id, false, 600));
    assert!(present);
    let got = drain(&mut back, Duration::from_secs(1));
    // Its window (20, resent) and its queue (50); nothing beyond.
    assert!(
        !got.is_empty() && got.len() <= 20 + 50,
        "{} messages",
        got.len()
    );
    // Every message was delivered to it or counted as dropped.
    let stats = stats_when(&b, |s| s.dropped as usize + got.len() == n);
    assert_eq!(stats.dropped as usize + got.len(), n, "{stats:?}");
    assert_eq!(stats.slow_consumers, 1, "{stats:?}");
}

#[test]
fn a_cut_persistent_session_keeps_its_limits_on_one_shard() {
    a_cut_persistent_session_keeps_its_limits(0, 0);
}

#[test]
fn a_cut_persistent_session_keeps_its_limits_across_shards() {
    a_cut_persistent_session_keeps_its_limits(1, 0);
}

/// A publisher that hangs up while held back leaves at once (what it
/// sent is read to the end), and nothing of the pressure is left on
/// either shard once the subscriber goes too.
fn a_held_publisher_that_hangs_up_leaves_nothing(pub_shard: usize, sub_shard: usize) {
    let b = broker(2, OverloadPolicy::Backpressure, 3600);
    let stalled = subscriber(&b, sub_shard, "stalled", "gone");
    let id = b.id_on(pub_shard, "leaver");
    let (c, _) = RawClient::connected(b.addr, connect_packet(ProtocolVersion::V311, &id, true, 0));
    let writer = c.stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || pour_all(writer, "gone", 0, 100_000));
    let held = stats_when(&b, |s| {
        s.publishers_held == 1 && s.subscribers_pressing == 1
    });
    assert_eq!(
        (held.publishers_held, held.subscribers_pressing),
        (1, 1),
        "{held:?}"
    );
    let _ = c.stream.shutdown(std::net::Shutdown::Both);
    drop(c);
    let _ = sender.join();
    let gone = stats_when(&b, |s| s.publishers_held == 0 && s.sessions == 1);
    assert_eq!((gone.publishers_held, gone.sessions), (0, 1), "{gone:?}");
    drop(stalled);
    let end = stats_when(&b, |s| released(s) && s.sessions == 0);
    assert!(released(&end) && end.sessions == 0, "{end:?}");
}

#[test]
fn a_held_publisher_that_hangs_up_leaves_nothing_on_one_shard() {
    a_held_publisher_that_hangs_up_leaves_nothing(0, 0);
}

#[test]
fn a_held_publisher_that_hangs_up_leaves_nothing_across_shards() {
    a_held_publisher_that_hangs_up_leaves_nothing(0, 1);
}

/// A subscriber that is itself held back as a publisher (it floods a
/// stalled subscriber) is not read while held, so its own queue fills and
/// holds its publisher back too: the chain ends when the stalled
/// subscriber is cut, and every message acknowledged to that publisher
/// still reaches it.
#[test]
fn a_subscriber_held_back_as_a_publisher_recovers() {
    let b = broker(2, OverloadPolicy::Backpressure, 1);
    let stalled = subscriber(&b, 1, "stalled", "y");
    // 3.1.1: held back by not being read (a 5.0 client is held by its
    // PUBACKs and read on).
    let id = b.id_on(0, "middle");
    let (mut middle, _) =
        RawClient::connected(b.addr, connect_packet(ProtocolVersion::V311, &id, true, 0));
    middle.subscribe("x", QoS::AtLeastOnce);
    // One writer for its socket: its PUBLISHes, then the PUBACKs the
    // reader hands it (two threads writing one socket could interleave
    // the halves of a packet written in parts).
    let mut writer = middle.stream.try_clone().expect("clone");
    let (acks, to_write) = std::sync::mpsc::channel::<Vec<u8>>();
    let pouring = std::thread::spawn(move || {
        for i in 0..20_000u32 {
            let p = publish("y", &payload(9, i), QoS::AtLeastOnce, false, 1);
            let ack = to_write.try_iter().flatten().collect::<Vec<u8>>();
            let p = encode_packet(Packet::Publish(p), ProtocolVersion::V311);
            if writer.write_all(&ack).is_err() || writer.write_all(&p).is_err() {
                return;
            }
        }
        for ack in to_write.iter() {
            if writer.write_all(&ack).is_err() {
                return;
            }
        }
    });
    let n = 5000;
    let source = flood(&b, &b.id_on(1, "src"), "x", 1, n);
    let deadline = Instant::now() + LIMIT;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        match middle.recv_within(Duration::from_secs(10)) {
            Some(Some(Packet::Publish(p))) => {
                let id = p.packet_id.expect("QoS 1");
                let _ = acks.send(encode_packet(
                    Packet::PubAck(PubResp::new(id)),
                    ProtocolVersion::V311,
                ));
                got.push(tag_seq(&p.payload).1);
            }
            Some(Some(Packet::PubAck(_))) => {}
            other => panic!("{other:?} after {} messages", got.len()),
        }
    }
    let acked = source.join().unwrap();
    assert_eq!(acked.len(), n);
    assert_eq!(got, acked, "every acknowledged message, in order");
    drop(acks);
    drop(middle);
    let _ = pouring.join();
    drop(stalled);
    let stats = stats_when(&b, |s| s.slow_consumers >= 1 && released(s));
    assert!(stats.slow_consumers >= 1 && released(&stats), "{stats:?}");
}

/// A 5.0 publisher held back by its PUBACKs that sends past the Receive
/// Maximum anyway breaks the protocol: DISCONNECT 0x93.
#[test]
fn a_v5_publisher_past_its_receive_maximum_while_held_is_disconnected() {
    let b = broker(1, OverloadPolicy::Backpressure, 3600);
    let _stalled = subscriber(&b, 0, "stalled", "t");
    let (mut c, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V5, "eager", true, 0),
    );
    let writer = c.stream.try_clone().expect("clone");
    let pouring = std::thread::spawn(move || {
        let unlimited = (&AtomicUsize::new(0), usize::MAX);
        pour(writer, "t", (0, 5000), ProtocolVersion::V5, unlimited);
    });
    let mut reason = None;
    while let Some(Some(p)) = c.recv_within(WAIT) {
        if let Packet::Disconnect(d) = p {
            reason = Some(d.reason);
        }
    }
    let _ = pouring.join();
    assert_eq!(reason, Some(ReasonCode::ReceiveMaximumExceeded));
}
