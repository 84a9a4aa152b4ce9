//! Session takeover: the old connection is closed (5.0: DISCONNECT 0x8E),
//! one session per client id, no QoS 1 message lost while one client id
//! reconnects 200 times under a continuous publisher.

mod common;

use shardmq::shard::StatsSnapshot;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use shardmq::protocol::{Packet, ProtocolVersion, QoS, ReasonCode};

/// Receives (and acknowledges) for `d`, recording sequence numbers.
fn take_some(c: &mut RawClient, seen: &mut HashSet<u32>, d: Duration) {
    let deadline = Instant::now() + d;
    while let Some(p) = c.recv_within(deadline.saturating_duration_since(Instant::now())) {
        match p {
            Some(Packet::Publish(p)) => {
                seen.insert(u32::from_be_bytes(p.payload[..].try_into().unwrap()));
                c.ack(&p);
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => panic!("connection closed while it owned the session"),
        }
    }
}

/// Publishes QoS 1 sequence numbers on `topic` until `stop`; `acked` is the
/// count of numbers acknowledged so far (all below it were).
fn publisher(
    b: &TestBroker,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU32>,
) -> std::thread::JoinHandle<()> {
    let (mut publ, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(0, "stormpub"), true, 60),
    );
    std::thread::spawn(move || {
        let mut seq = 0u32;
        while !stop.load(Ordering::Relaxed) {
            publ.publish(
                "storm",
                &seq.to_be_bytes(),
                QoS::AtLeastOnce,
                false,
                (seq % 65_535 + 1) as u16,
            );
            seq += 1;
            acked.store(seq, Ordering::Relaxed);
        }
    })
}

#[test]
fn takeover_storm_loses_no_qos1_message() {
    let started = Instant::now();
    // The session queue must hold what arrives while the client is between
    // connections: at full speed that is more than Mosquitto's default 1000.
    let b = TestBroker::with(2, |c| c.max_queued_messages = 1_000_000);
    let id = b.id_on(1, "storm");
    let (mut current, _) =
        RawClient::connected(b.addr, connect_persistent(ProtocolVersion::V5, &id));
    current.subscribe("storm", QoS::AtLeastOnce);
    let (stop, acked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    let publ = publisher(&b, Arc::clone(&stop), Arc::clone(&acked));
    let mut seen = HashSet::new();
    for i in 0..200 {
        take_some(&mut current, &mut seen, Duration::from_millis(5));
        let version = if i % 2 == 0 {
            ProtocolVersion::V311
        } else {
            ProtocolVersion::V5
        };
        let (next, present) = RawClient::connected(b.addr, connect_persistent(version, &id));
        assert!(present, "takeover {i}: session present");
        // Whatever the old connection still gets is not acknowledged: the
        // session must resend it on the new one.
        let got = current.expect_closed();
        if current.version.is_v5() {
            assert!(
                matches!(got.last(), Some(Packet::Disconnect(d)) if d.reason == ReasonCode::SessionTakenOver),
                "takeover {i}: old 5.0 connection gets DISCONNECT 0x8E, got {got:?}"
            );
        }
        current = next;
    }
    stop.store(true, Ordering::Relaxed);
    publ.join().unwrap();
    let total = acked.load(Ordering::Relaxed);
    assert!(total > 0, "the publisher got PUBACKs");
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..total).any(|s| !seen.contains(&s)) && Instant::now() < deadline {
        take_some(&mut current, &mut seen, Duration::from_millis(200));
    }
    let missing: Vec<u32> = (0..total).filter(|s| !seen.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {total} acknowledged messages lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_storm_stats(&b, &id);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "storm took {:?}",
        started.elapsed()
    );
}

/// From the broker's own counters: every reconnect took the session over on
/// its home shard, both same-shard and cross-shard arrivals happened (the
/// kernel spreads accepts over the shards' SO_REUSEPORT sockets), and no
/// duplicate session exists.
fn assert_storm_stats(b: &TestBroker, id: &str) {
    let home = shardmq::shard::home_shard(id, b.shards);
    let deadline = Instant::now() + Duration::from_secs(3);
    let stats = loop {
        let stats = b.stats();
        let accepted: u64 = stats.iter().map(|s| s.accepted).sum();
        if accepted >= 202 || Instant::now() > deadline {
            break stats;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let total = stats.iter().fold(StatsSnapshot::default(), |a, s| a + *s);
    assert_eq!(
        total.accepted, 202,
        "storm client 201 times + publisher: {stats:?}"
    );
    assert_eq!(
        stats[home].taken_over, 200,
        "all takeovers on the home shard: {stats:?}"
    );
    assert_eq!(total.taken_over, 200, "{stats:?}");
    let other = 1 - home;
    assert!(stats[home].accepted > 0, "no same-shard arrival: {stats:?}");
    assert!(
        stats[other].handed_over > 0,
        "no cross-shard arrival: {stats:?}"
    );
    // The publisher (clean session) has gone; the storm id has one session.
    assert_eq!(total.sessions, 1, "one session per client id: {stats:?}");
}

#[test]
fn takeover_closes_old_connection_in_both_versions() {
    let b = TestBroker::start(2);
    for version in VERSIONS {
        let id = b.id_on(0, &format!("take{version:?}"));
        // A persistent session (a clean one would end with its connection).
        let (mut old, _) = RawClient::connected(b.addr, connect_persistent(version, &id));
        old.subscribe("t", QoS::AtLeastOnce);
        let (mut new, present) =
            RawClient::connected(b.addr, connect_packet(version, &id, false, 60));
        assert!(
            present,
            "{version:?}: clean=0 resumes the taken-over session"
        );
        let got: Vec<Packet> = old
            .expect_closed()
            .into_iter()
            .map(sans_reason_string)
            .collect();
        let expected: Vec<Packet> = match version {
            ProtocolVersion::V5 => vec![Packet::Disconnect(shardmq::protocol::Disconnect::new(
                ReasonCode::SessionTakenOver,
            ))],
            _ => vec![],
        };
        assert_eq!(got, expected, "{version:?}");
        // The new connection owns the subscription; exactly one copy arrives.
        let (mut publ, _) =
            RawClient::connected(b.addr, connect_packet(version, &b.id_on(1, "tp"), true, 60));
        publ.publish("t", b"x", QoS::AtLeastOnce, false, 1);
        assert_eq!(&new.expect_publish().payload[..], b"x");
        new.expect_silence(Duration::from_millis(200));
    }
}
