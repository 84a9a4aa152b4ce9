//! `max_connections` per listener (Mosquitto's meaning), counted over every
//! shard: the connection past the limit is closed at accept without a
//! CONNACK (as Mosquitto does), other listeners are not affected, a slot
//! frees when a client leaves, and a SIGHUP reload raises or lowers the
//! limit without disconnecting anyone.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use shardmq::config::{Config, Listener};
use shardmq::protocol::{Packet, ProtocolVersion, ReasonCode};

const SHARDS: usize = 2;

/// A config with two listeners on 127.0.0.1 port 0: the first limited to
/// `limit` connections, the second unlimited.
fn two_listeners(limit: Option<usize>) -> Config {
    let mut limited = Listener::new("127.0.0.1:0".parse().expect("addr"));
    limited.max_connections = limit;
    Config {
        listeners: vec![limited, Listener::new("127.0.0.1:0".parse().expect("addr"))],
        shards: Some(SHARDS),
        ..Config::default()
    }
}

fn start(limit: Option<usize>) -> (TestBroker, SocketAddr, SocketAddr) {
    let b = TestBroker::with(SHARDS, |c| *c = two_listeners(limit));
    let addrs = b.handle().local_addrs().to_vec();
    (b, addrs[0], addrs[1])
}

/// Connects `id` (clean, 5.0) to `addr` and asserts it is accepted.
fn connected(addr: SocketAddr, id: &str) -> RawClient {
    let (c, ack) = RawClient::connect_with(addr, connect_packet(ProtocolVersion::V5, id, true, 60));
    assert_eq!(ack.code, ReasonCode::Success, "{id}");
    c
}

/// Opens a connection to a full listener: it is closed without a CONNACK.
fn assert_refused(addr: SocketAddr, id: &str) {
    let mut c = RawClient::open(addr, ProtocolVersion::V5);
    // The broker may close before or after this arrives.
    let _ = std::io::Write::write_all(
        &mut c.stream,
        &encode(&Packet::Connect(Box::new(connect_packet(
            ProtocolVersion::V5,
            id,
            true,
            60,
        )))),
    );
    let got = c.expect_closed();
    assert!(got.is_empty(), "{id}: a refused connection got {got:?}");
}

fn encode(p: &Packet) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    p.encode(ProtocolVersion::V5, &mut out).expect("encodes");
    out.to_vec()
}

/// Waits until the first listener counts `n` connections.
fn wait_open(b: &TestBroker, n: usize) {
    let deadline = Instant::now() + WAIT;
    while b.handle().listener_connections()[0] != n {
        assert!(
            Instant::now() < deadline,
            "listener 0 never reached {n} connections: {:?}",
            b.handle().listener_connections()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every client still answers a ping.
fn all_alive(clients: &mut [RawClient]) {
    for c in clients {
        c.send(&Packet::PingReq);
        assert_eq!(c.recv(), Some(Packet::PingResp));
    }
}

#[test]
fn the_client_past_max_connections_is_closed_on_that_listener_only() {
    let (b, limited, other) = start(Some(2));
    // One session homed on each shard: the count is the listener's, over
    // every shard, whichever shard accepted or now holds them.
    let mut clients = vec![
        connected(limited, &b.id_on(0, "lim-a")),
        connected(limited, &b.id_on(1, "lim-b")),
    ];
    wait_open(&b, 2);
    for shard in 0..SHARDS {
        assert_refused(limited, &b.id_on(shard, "lim-over"));
    }
    let refused: u64 = b.stats().iter().map(|s| s.refused).sum::<u64>();
    let deadline = Instant::now() + WAIT;
    let mut refused = refused;
    while refused < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        refused = b.stats().iter().map(|s| s.refused).sum();
    }
    assert_eq!(refused, 2, "both refusals counted");
    // The other listener has no limit.
    let mut others: Vec<RawClient> = (0..3)
        .map(|i| connected(other, &b.id_on(i % SHARDS, &format!("free{i}"))))
        .collect();
    all_alive(&mut clients);
    all_alive(&mut others);
    // A slot frees when a client leaves.
    clients.pop().expect("two").disconnect();
    wait_open(&b, 1);
    clients.push(connected(limited, &b.id_on(1, "lim-again")));
    all_alive(&mut clients);
}

#[test]
fn a_connection_still_before_connect_counts() {
    let (b, limited, _) = start(Some(1));
    // Mosquitto counts from accept: a socket that sent nothing yet holds
    // the only slot.
    let mut idle = RawClient::open(limited, ProtocolVersion::V311);
    wait_open(&b, 1);
    assert_refused(limited, &b.id_on(0, "early"));
    // Its CONNECT is then accepted as usual.
    let ack = idle.handshake(connect_packet(ProtocolVersion::V311, "idle", true, 60));
    assert_eq!(ack.code, ReasonCode::Success);
}

#[test]
fn a_reload_raises_and_lowers_the_limit_without_disconnecting_anyone() {
    let (b, limited, _) = start(Some(1));
    let mut clients = vec![connected(limited, &b.id_on(0, "r0"))];
    assert_refused(limited, &b.id_on(1, "r-over"));

    b.handle().reload(two_listeners(Some(3))).expect("reload");
    clients.push(connected(limited, &b.id_on(1, "r1")));
    clients.push(connected(limited, &b.id_on(0, "r2")));
    wait_open(&b, 3);
    assert_refused(limited, &b.id_on(1, "r-over2"));

    // Lowered below what is open: nobody is closed, nobody new gets in.
    b.handle().reload(two_listeners(Some(1))).expect("reload");
    all_alive(&mut clients);
    assert_refused(limited, &b.id_on(0, "r-over3"));
    wait_open(&b, 3);

    // Unlimited again (-1).
    b.handle().reload(two_listeners(None)).expect("reload");
    clients.push(connected(limited, &b.id_on(1, "r3")));
    all_alive(&mut clients);
}
