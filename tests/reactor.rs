//! What the per-shard readiness loop guarantees: idle connections cost no
//! wake-ups, a full socket gets write interest and resumes, a parked shard
//! is woken by a mesh message, timers fire within a tick, and shutdown with
//! work pending ends on time.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use shardmq::protocol::{Packet, ProtocolVersion, QoS};

const LOAD: &str = env!("CARGO_BIN_EXE_shardmq-load");

/// Polls `f` every 20 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !f() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[test]
fn a_shard_with_10000_idle_connections_wakes_for_none_of_them() {
    const CONNS: u64 = 10_000;
    let b = TestBroker::start(2);
    // The clients live in another process: 10,000 sockets on each side
    // would not fit under one process's open-files cap.
    let host = b.addr.to_string();
    let conns = CONNS.to_string();
    let idle = Command::new(LOAD)
        .args(["idle", "--host", &host, "--connections", &conns])
        .args(["--duration", "6s", "--keepalive", "120", "--procs", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start shardmq-load idle");
    let _guard = ChildGuard(idle);
    let all_in = wait_until(Duration::from_secs(30), || {
        b.stats().iter().map(|s| s.connections).sum::<u64>() == CONNS
    });
    assert!(all_in, "connections: {:?}", b.stats());
    // Let the last CONNACKs flush and the stats tick publish.
    std::thread::sleep(Duration::from_millis(400));
    let events = |b: &TestBroker| b.stats().iter().map(|s| s.events).collect::<Vec<_>>();
    let (before, wakes_before) = (events(&b), b.wakeups());
    std::thread::sleep(Duration::from_secs(1));
    let (after, wakes_after) = (events(&b), b.wakeups());
    assert_eq!(
        before, after,
        "readiness events while every connection idles"
    );
    assert_eq!(
        wakes_before, wakes_after,
        "cross-thread wake-ups while idle"
    );
    b.stop();
}

#[test]
fn a_blocked_writer_registers_write_interest_and_resumes() {
    const COUNT: usize = 200;
    const SIZE: usize = 64 * 1024; // 12.5 MiB in all: more than the sockets hold
    let b = TestBroker::with(2, |c| c.max_queued_messages = 10_000);
    let (mut sub, mut publ) = sub_and_pub(&b, ProtocolVersion::V311, "bulk", QoS::AtLeastOnce);
    let mut payload = vec![0u8; SIZE];
    for i in 0..COUNT {
        payload[..4].copy_from_slice(&(i as u32).to_be_bytes());
        publ.publish("bulk", &payload, QoS::AtLeastOnce, false, 1);
    }
    // Only now does the subscriber read: everything that did not fit in
    // the socket waited in the broker for the socket to become writable.
    for i in 0..COUNT {
        let p = sub.expect_publish();
        assert_eq!(&p.payload[..4], &(i as u32).to_be_bytes(), "message {i}");
    }
    sub.expect_silence(Duration::from_millis(200));
    b.stop();
}

#[test]
fn a_parked_shard_is_woken_by_a_mesh_message() {
    const ROUNDS: u64 = 5;
    let b = TestBroker::start(2);
    let (mut sub, mut publ) = sub_and_pub(&b, ProtocolVersion::V5, "wake", QoS::AtMostOnce);
    let before = b.wakeups();
    for _ in 0..ROUNDS {
        // Both shards idle: they park (between their 100 ms ticks).
        std::thread::sleep(Duration::from_millis(150));
        let sent = Instant::now();
        publ.publish("wake", b"now", QoS::AtMostOnce, false, 1);
        assert_eq!(sub.expect_payloads(1), vec![b"now".to_vec()]);
        let took = sent.elapsed();
        assert!(took < Duration::from_secs(2), "delivered after {took:?}");
    }
    let after = b.wakeups();
    // The subscriber's shard (1) was parked and got each message through a
    // wake-up, not by waiting for its next tick. (A message may land while
    // the shard is awake for its tick: it needs no wake-up then.)
    assert!(
        after[1] - before[1] >= ROUNDS - 2,
        "shard 1 woken: {before:?} -> {after:?}"
    );
    b.stop();
}

#[test]
fn timers_fire_within_a_tick() {
    let b = TestBroker::with(2, |c| c.connect_timeout = Duration::from_millis(300));
    let mut silent = RawClient::open(b.addr, ProtocolVersion::V311);
    let opened = Instant::now();
    assert!(silent.expect_closed().is_empty());
    let took = opened.elapsed();
    // The CONNECT deadline is 300 ms; the loop wakes for it, not for the
    // next 100 ms tick after it (slack for a loaded machine).
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(300 + 100 + 600),
        "closed after {took:?}"
    );
    // Keepalive: 1 s keepalive, silent client, closed within 1.5 s + a tick.
    let (mut quiet, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V5, &b.id_on(0, "quiet"), true, 1),
    );
    let connected = Instant::now();
    let got = quiet.expect_closed();
    let took = connected.elapsed();
    assert!(
        matches!(got.last(), Some(Packet::Disconnect(_))),
        "5.0 client told why: {got:?}"
    );
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(3_500),
        "keepalive close after {took:?}"
    );
    b.stop();
}

#[test]
fn shutdown_with_work_pending_ends_cleanly() {
    let b = TestBroker::with(2, |c| c.max_queued_messages = 100_000);
    // A subscriber that never reads: its socket and out buffer fill.
    let (mut stalled, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V5, &b.id_on(1, "stalled"), true, 60),
    );
    stalled.subscribe("pending", QoS::AtLeastOnce);
    let (mut publ, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(0, "pending-pub"), true, 60),
    );
    let payload = vec![1u8; 32 * 1024];
    for _ in 0..300 {
        publ.publish("pending", &payload, QoS::AtLeastOnce, false, 1);
    }
    // A SUBSCRIBE on its way and a half-sent packet.
    let (mut half, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V311, &b.id_on(1, "half"), true, 60),
    );
    half.send_bytes(&[0x30, 0x80, 0x01, 0x00]);
    // And a connection whose CONNECT never comes.
    let mut mute = RawClient::open(b.addr, ProtocolVersion::V311);
    std::thread::sleep(Duration::from_millis(100));
    let stopping = Instant::now();
    b.stop();
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(6), "shutdown took {took:?}");
    // Every socket was closed.
    half.expect_closed();
    mute.expect_closed();
    drop(stalled);
}
