//! A subscriber that stops reading must not stall its shard or the
//! publisher: QoS 0 to it is dropped, others keep receiving.

mod common;

use std::time::{Duration, Instant};

use common::*;
use shardmq::protocol::{Packet, ProtocolVersion, QoS};

#[test]
fn stalled_subscriber_does_not_stall_shard_or_publisher() {
    const CHUNK: usize = 64 * 1024;
    const COUNT: usize = 800; // 50 MiB
    let b = TestBroker::start(2);
    // Subscribed, then never read again.
    let (mut stalled, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(1, "stalled"), true, 0),
    );
    stalled.subscribe("bulk", QoS::AtMostOnce);
    // Same shard, keeps reading.
    let (mut healthy, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(1, "healthy"), true, 0),
    );
    healthy.subscribe("bulk", QoS::AtMostOnce);
    healthy.subscribe("done", QoS::AtLeastOnce);
    let reader = std::thread::spawn(move || {
        let mut bulk = 0usize;
        loop {
            match healthy.recv_within(Duration::from_secs(30)) {
                Some(Some(Packet::Publish(p))) if p.topic.as_str() == "done" => return bulk,
                Some(Some(Packet::Publish(_))) => bulk += 1,
                other => panic!("healthy subscriber: {other:?} after {bulk} messages"),
            }
        }
    });
    let (mut publ, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(0, "bulkpub"), true, 0),
    );
    let start = Instant::now();
    let payload = vec![7u8; CHUNK];
    for _ in 0..COUNT {
        publ.send(&Packet::Publish(publish(
            "bulk",
            &payload,
            QoS::AtMostOnce,
            false,
            1,
        )));
    }
    publ.publish("done", b"", QoS::AtLeastOnce, false, 1);
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_secs(30),
        "publisher took {elapsed:?}"
    );
    let bulk = reader.join().unwrap();
    assert!(bulk > 0, "the healthy subscriber received bulk messages");
    // The stalled subscriber's bounded buffer filled: the rest was dropped,
    // and counted (stats refresh every tick).
    let deadline = Instant::now() + Duration::from_secs(2);
    let dropped = loop {
        let dropped: u64 = b.stats().iter().map(|s| s.dropped).sum();
        if dropped > 0 || Instant::now() > deadline {
            break dropped;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        dropped > 0,
        "QoS 0 drops for the stalled subscriber are counted"
    );
    let copies = 2 * COUNT as u64; // two subscribers
    assert!(
        dropped + bulk as u64 <= copies,
        "dropped {dropped} + received {bulk} > {copies} copies"
    );
    drop(stalled);
}
