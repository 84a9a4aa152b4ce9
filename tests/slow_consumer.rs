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
    // Same shard, keeps reading: at QoS 1 nothing may be dropped for it.
    let (mut healthy, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(1, "healthy"), true, 0),
    );
    healthy.subscribe("bulk", QoS::AtLeastOnce);
    let reader = std::thread::spawn(move || {
        let mut seq = Vec::with_capacity(COUNT);
        while seq.len() < COUNT {
            match healthy.recv_within(Duration::from_secs(30)) {
                Some(Some(Packet::Publish(p))) => {
                    healthy.ack(&p);
                    seq.push(u32::from_be_bytes(p.payload[..4].try_into().unwrap()));
                }
                other => panic!("healthy subscriber: {other:?} after {} messages", seq.len()),
            }
        }
        seq
    });
    let (mut publ, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(0, "bulkpub"), true, 0),
    );
    let start = Instant::now();
    let mut payload = vec![7u8; CHUNK];
    for i in 0..COUNT {
        payload[..4].copy_from_slice(&(i as u32).to_be_bytes());
        // Each waits for its PUBACK: the publisher is never held back by
        // the stalled subscriber on the same destination shard.
        publ.publish("bulk", &payload, QoS::AtLeastOnce, false, 1);
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed < Duration::from_secs(30),
        "publisher took {elapsed:?}"
    );
    let seq = reader.join().unwrap();
    assert_eq!(
        seq,
        (0..COUNT as u32).collect::<Vec<_>>(),
        "the reading subscriber gets every message, in order"
    );
    // The stalled subscriber's bounded buffer filled: the rest was dropped,
    // and counted (stats refresh every tick). What it can hold is its 1 MiB
    // out buffer plus the sockets' buffers: a few dozen 64 KiB messages.
    let floor = COUNT as u64 / 2;
    let deadline = Instant::now() + Duration::from_secs(2);
    let dropped = loop {
        let dropped: u64 = b.stats().iter().map(|s| s.dropped).sum();
        if dropped >= floor || Instant::now() > deadline {
            break dropped;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        (floor..=COUNT as u64).contains(&dropped),
        "{dropped} QoS 0 copies for the stalled subscriber counted as dropped"
    );
    drop(stalled);
}
