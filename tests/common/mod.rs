//! Shared test support: an in-process broker on port 0, a raw-bytes MQTT
//! client built on the crate's codec, client ids homed on a chosen shard
//! (to force publisher and subscriber onto different shards), and a
//! Mosquitto child process ([`mosquitto`]).

#![allow(dead_code)] // each test binary uses a different part of this module

pub mod certs;
pub mod mosquitto;
pub mod mosquitto_clients;
pub mod mqttjs;
pub mod process;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shardmq::config::{Config, Listener};
use shardmq::protocol::{
    decode, ConnAck, Connect, DecodeError, LastWill, Packet, Properties, ProtocolVersion, PubResp,
    Publish, QoS, ReasonCode, SubAck, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
};
use shardmq::server::{self, BrokerHandle};

/// How long a test waits for any single expected packet.
pub const WAIT: Duration = Duration::from_secs(5);

/// A broker running in this process; shut down on drop.
pub struct TestBroker {
    handle: Option<BrokerHandle>,
    pub addr: SocketAddr,
    pub shards: usize,
}

impl TestBroker {
    /// A broker with `shards` shards on 127.0.0.1:0 and default settings.
    pub fn start(shards: usize) -> TestBroker {
        TestBroker::with(shards, |_| {})
    }

    /// Like `start`, with the config adjusted by `f` first.
    pub fn with(shards: usize, f: impl FnOnce(&mut Config)) -> TestBroker {
        TestBroker::with_options(shards, f, server::StartOptions::default())
    }

    /// Like `with`, with plug-ins (enhanced authentication methods).
    pub fn with_options(
        shards: usize,
        f: impl FnOnce(&mut Config),
        options: server::StartOptions,
    ) -> TestBroker {
        let mut config = Config {
            listeners: vec![Listener::new("127.0.0.1:0".parse().unwrap())],
            shards: Some(shards),
            ..Config::default()
        };
        f(&mut config);
        let handle = server::start_with(config, options).expect("broker starts");
        let addr = handle.local_addrs()[0];
        TestBroker {
            handle: Some(handle),
            addr,
            shards,
        }
    }

    /// A client id (prefix + suffix) whose session lives on `shard`.
    pub fn id_on(&self, shard: usize, prefix: &str) -> String {
        id_on(shard, self.shards, prefix)
    }

    /// Each shard's counters as last published (they refresh every tick).
    pub fn stats(&self) -> Vec<shardmq::shard::StatsSnapshot> {
        self.handle.as_ref().map(|h| h.stats()).unwrap_or_default()
    }

    /// How often each shard was woken by another thread (see
    /// `BrokerHandle::wakeups`).
    pub fn wakeups(&self) -> Vec<u64> {
        self.handle
            .as_ref()
            .map(|h| h.wakeups())
            .unwrap_or_default()
    }

    /// Each bridge link's status (refreshed every tick).
    pub fn bridges(&self) -> Vec<shardmq::bridge::BridgeStatus> {
        self.handle
            .as_ref()
            .map(|h| h.bridges())
            .unwrap_or_default()
    }

    /// Waits until bridge `name` is connected (at most 10 s).
    pub fn wait_bridge(&self, name: &str) -> shardmq::bridge::BridgeStatus {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = self.bridges().into_iter().find(|s| s.name == name);
            if let Some(s) = status.filter(|s| s.connected) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "bridge {name} not connected: {:?}",
                self.bridges()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker's control handle (reloads).
    pub fn handle(&self) -> &BrokerHandle {
        self.handle.as_ref().expect("running")
    }

    /// Stops the broker now and waits for it.
    pub fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().expect("clean shutdown");
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.shutdown();
        }
    }
}

/// A client id starting with `prefix` homed on `shard` of `shards`.
pub fn id_on(shard: usize, shards: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| shardmq::shard::home_shard(id, shards) == shard)
        .expect("some id hashes to every shard")
}

/// A blocking MQTT client speaking raw packets.
pub struct RawClient {
    pub stream: TcpStream,
    pub version: ProtocolVersion,
    buf: BytesMut,
}

impl RawClient {
    /// Wraps an accepted connection (a test playing the broker).
    pub fn from_stream(stream: TcpStream, version: ProtocolVersion) -> RawClient {
        RawClient {
            stream,
            version,
            buf: BytesMut::new(),
        }
    }

    /// Opens a TCP connection (no CONNECT sent).
    pub fn open(addr: SocketAddr, version: ProtocolVersion) -> RawClient {
        let stream = TcpStream::connect(addr).expect("tcp connect");
        stream.set_nodelay(true).unwrap();
        RawClient {
            stream,
            version,
            buf: BytesMut::new(),
        }
    }

    /// Sends `connect` on a new connection and returns the CONNACK.
    pub fn connect_with(addr: SocketAddr, connect: Connect) -> (RawClient, ConnAck) {
        let mut c = RawClient::open(addr, connect.protocol);
        let ack = c.handshake(connect);
        (c, ack)
    }

    /// Connects, asserting success, and returns the client and Session Present.
    pub fn connected(addr: SocketAddr, connect: Connect) -> (RawClient, bool) {
        let (c, ack) = RawClient::connect_with(addr, connect);
        assert_eq!(ack.code, ReasonCode::Success, "CONNACK refused: {ack:?}");
        (c, ack.session_present)
    }

    /// Connects and returns the CONNACK.
    pub fn connect(
        addr: SocketAddr,
        version: ProtocolVersion,
        client_id: &str,
        clean: bool,
    ) -> (RawClient, ConnAck) {
        let mut c = RawClient::open(addr, version);
        let ack = c.handshake(connect_packet(version, client_id, clean, 60));
        (c, ack)
    }

    /// Sends CONNECT and waits for CONNACK.
    pub fn handshake(&mut self, connect: Connect) -> ConnAck {
        self.send(&Packet::Connect(Box::new(connect)));
        match self.recv() {
            Some(Packet::ConnAck(a)) => a,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        p.encode(self.version, &mut out).expect("encodable");
        self.stream.write_all(&out).expect("write");
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// The next packet within `WAIT`, or `None` if the connection closed.
    pub fn recv(&mut self) -> Option<Packet> {
        self.recv_within(WAIT)
            .unwrap_or_else(|| panic!("no packet within {WAIT:?}"))
    }

    /// `Some(None)`: closed. `None`: nothing within `d`.
    pub fn recv_within(&mut self, d: Duration) -> Option<Option<Packet>> {
        let deadline = Instant::now() + d;
        loop {
            match decode(&mut self.buf, self.version, usize::MAX) {
                Ok(p) => return Some(Some(p)),
                Err(DecodeError::Incomplete { .. }) => {}
                Err(DecodeError::Malformed(m)) => panic!("broker sent a malformed packet: {m}"),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut tmp = [0u8; 8192];
            match self.stream.read(&mut tmp) {
                Ok(0) => return Some(None),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(_) => return Some(None),
            }
        }
    }

    /// Asserts that nothing arrives for `d`.
    pub fn expect_silence(&mut self, d: Duration) {
        if let Some(p) = self.recv_within(d) {
            panic!("expected nothing, got {p:?}");
        }
    }

    /// Waits until the broker closes the connection; returns the packets
    /// received before (a 5.0 DISCONNECT, say).
    pub fn expect_closed(&mut self) -> Vec<Packet> {
        let mut got = Vec::new();
        loop {
            match self.recv_within(WAIT) {
                Some(None) => return got,
                Some(Some(p)) => got.push(p),
                None => panic!("connection still open after {WAIT:?}; got {got:?}"),
            }
        }
    }

    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> SubAck {
        self.subscribe_with(filter, SubscriptionOptions::new(qos))
    }

    pub fn subscribe_with(&mut self, filter: &str, opts: SubscriptionOptions) -> SubAck {
        let sub = Subscribe {
            packet_id: pid(1),
            filters: vec![(TopicFilter::from_str(filter).unwrap(), opts)],
            properties: Properties::default(),
        };
        self.send(&Packet::Subscribe(sub));
        match self.recv() {
            Some(Packet::SubAck(a)) => a,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes; for QoS 1/2 completes the handshake.
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool, id: u16) {
        self.send(&Packet::Publish(publish(topic, payload, qos, retain, id)));
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => assert!(matches!(self.recv(), Some(Packet::PubAck(_)))),
            QoS::ExactlyOnce => {
                assert!(matches!(self.recv(), Some(Packet::PubRec(_))));
                self.send(&Packet::PubRel(PubResp::new(pid(id))));
                assert!(matches!(self.recv(), Some(Packet::PubComp(_))));
            }
        }
    }

    /// Receives one PUBLISH without acknowledging it.
    pub fn recv_publish(&mut self) -> Publish {
        match self.recv() {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Receives `n` PUBLISH packets (acknowledged) and returns their payloads.
    pub fn expect_payloads(&mut self, n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| self.expect_publish().payload.to_vec())
            .collect()
    }

    /// Receives one PUBLISH (acknowledging QoS 1 with PUBACK, QoS 2 fully).
    pub fn expect_publish(&mut self) -> Publish {
        match self.recv() {
            Some(Packet::Publish(p)) => {
                self.ack(&p);
                p
            }
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Acknowledges a received PUBLISH as its QoS requires.
    pub fn ack(&mut self, p: &Publish) {
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(PubResp::new(id))),
            (QoS::ExactlyOnce, Some(id)) => {
                self.send(&Packet::PubRec(PubResp::new(id)));
                assert!(matches!(self.recv(), Some(Packet::PubRel(_))));
                self.send(&Packet::PubComp(PubResp::new(id)));
            }
            _ => {}
        }
    }

    /// Sends DISCONNECT and waits until the broker closes the connection:
    /// when it returns, the broker has handled it (the session is offline
    /// or gone), so what a test publishes next cannot reach this
    /// connection on a slow machine.
    pub fn disconnect(mut self) {
        self.send(&Packet::Disconnect(shardmq::protocol::Disconnect::new(
            shardmq::protocol::ReasonCode::NormalDisconnection,
        )));
        self.expect_closed();
    }
}

/// Runs `mosquitto_sub -V 5` against the broker at `port` as client `id`
/// on `filter` until it prints one message in `format` (`-F`), with
/// `extra` arguments (`-D subscribe ...`); returns what it printed.
pub fn mosquitto_sub_v5_once(
    port: u16,
    id: &str,
    filter: &str,
    format: &str,
    extra: &[&str],
) -> String {
    let port = port.to_string();
    let args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "5",
        "-t",
        filter,
        "-C",
        "1",
        "-W",
        "10",
        "-F",
        format,
        "-i",
        id,
    ];
    let out = match std::process::Command::new("mosquitto_sub")
        .args(args)
        .args(extra)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run mosquitto_sub ({e}); install it with \
             `apt-get update && apt-get install -y mosquitto-clients`"
        ),
    };
    assert!(out.status.success(), "mosquitto_sub: {:?}", out.status);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every PUBLISH that arrives until nothing has for `quiet`, acknowledged
/// (QoS 2 flows may interleave: PUBREL is answered as it comes).
pub fn drain(c: &mut RawClient, quiet: Duration) -> Vec<Publish> {
    let mut got = Vec::new();
    while let Some(Some(packet)) = c.recv_within(quiet) {
        match packet {
            Packet::Publish(p) => {
                match (p.qos, p.packet_id) {
                    (QoS::ExactlyOnce, Some(id)) => c.send(&Packet::PubRec(PubResp::new(id))),
                    _ => c.ack(&p),
                }
                got.push(p);
            }
            Packet::PubRel(r) => c.send(&Packet::PubComp(PubResp::new(r.packet_id))),
            _ => {}
        }
    }
    got
}

/// A port free on 127.0.0.1 right now (for a broker run as a process).
/// A port nothing listens on now, and that no other test of this process
/// was given: the kernel may hand a port just released to the next
/// `bind(0)`, and two brokers of concurrent tests on one port (shardmq
/// binds with SO_REUSEPORT) would share its connections.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("no port left that this process was not given already")
}

pub fn pid(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).expect("non-zero packet id")
}

pub fn connect_packet(
    version: ProtocolVersion,
    client_id: &str,
    clean: bool,
    keep_alive: u16,
) -> Connect {
    Connect {
        protocol: version,
        clean_start: clean,
        keep_alive,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
        bridge: false,
    }
}

/// A 5.0 CONNECT whose session outlives the connection by `expiry` seconds.
pub fn connect_v5_expiry(client_id: &str, clean: bool, expiry: u32) -> Connect {
    let mut c = connect_packet(ProtocolVersion::V5, client_id, clean, 60);
    c.properties.session_expiry_interval = Some(expiry);
    c
}

/// A persistent session CONNECT: 3.1.1 clean session 0, or 5.0 with a
/// Session Expiry of one hour.
pub fn connect_persistent(version: ProtocolVersion, client_id: &str) -> Connect {
    match version {
        ProtocolVersion::V5 => connect_v5_expiry(client_id, false, 3600),
        v => connect_packet(v, client_id, false, 60),
    }
}

/// `connect` with a will on `topic`.
pub fn with_will(
    mut connect: Connect,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
) -> Connect {
    connect.will = Some(LastWill {
        topic: TopicName::from_str(topic).unwrap(),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain,
        properties: Properties::default(),
    });
    connect
}

/// A 5.0 CONNECT for `client_id` (Session Expiry `expiry`, Clean Start 0)
/// with a will on `topic` held back `delay` seconds (Will Delay Interval).
pub fn with_delayed_will(client_id: &str, expiry: u32, topic: &str, delay: u32) -> Connect {
    let mut c = with_will(
        connect_v5_expiry(client_id, false, expiry),
        topic,
        b"gone",
        QoS::AtLeastOnce,
        false,
    );
    if let Some(w) = c.will.as_mut() {
        w.properties.will_delay_interval = Some(delay);
    }
    c
}

/// Limits every 5.0 CONNACK property can announce: Receive Maximum 5,
/// Maximum Packet Size 5000, Server Keep Alive 30 (for clients asking
/// more), Retain Available 0, Topic Alias Maximum 4.
pub fn constrained(c: &mut Config) {
    c.max_inflight_messages = 5;
    c.max_packet_size = 5000;
    c.max_keepalive = 30;
    c.retain_available = false;
    c.max_topic_alias = 4;
}

/// The properties of an application message a 5.0 publisher may set:
/// Payload Format Indicator, Message Expiry (an hour), Content Type,
/// Response Topic, Correlation Data (not UTF-8), User Properties (a key
/// twice, with another between).
pub fn application_properties() -> Properties {
    Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        content_type: Some("application/json".into()),
        response_topic: Some("replies/42".into()),
        correlation_data: Some(Bytes::from_static(b"\x00corr\xff")),
        user_properties: vec![
            ("k".into(), "v1".into()),
            ("site".into(), "eu".into()),
            ("k".into(), "v2".into()),
        ],
        ..Properties::default()
    }
}

/// Both protocol versions a broker speaks with modern clients.
pub const VERSIONS: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];

/// A subscriber homed on shard 1 and a publisher homed on shard 0, both
/// connected with clean sessions; the subscriber is subscribed to `filter`.
pub fn sub_and_pub(
    b: &TestBroker,
    version: ProtocolVersion,
    filter: &str,
    qos: QoS,
) -> (RawClient, RawClient) {
    let (mut sub, _) = RawClient::connected(
        b.addr,
        connect_packet(version, &b.id_on(1, "sub"), true, 60),
    );
    sub.subscribe(filter, qos);
    let (publ, _) = RawClient::connected(
        b.addr,
        connect_packet(version, &b.id_on(0, "pub"), true, 60),
    );
    (sub, publ)
}

pub fn publish(topic: &str, payload: &[u8], qos: QoS, retain: bool, id: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain,
        topic: TopicName::from_str(topic).unwrap(),
        packet_id: (qos != QoS::AtMostOnce).then(|| pid(id)),
        payload: Bytes::copy_from_slice(payload),
        properties: Properties::default(),
    }
}

/// A child process killed (and reaped) when dropped.
pub struct ChildGuard(pub std::process::Child);

impl ChildGuard {
    /// Waits for the child to exit, failing the test after `limit`.
    pub fn wait_within(&mut self, limit: Duration, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("child status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `f` on a fresh current-thread tokio runtime, failing after `limit`.
pub fn block_on_timeout<F: std::future::Future>(limit: Duration, f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        tokio::time::timeout(limit, f)
            .await
            .expect("test timed out")
    })
}

/// `p` without its Reason String: tests that compare whole packets leave
/// out the broker's wording (`mqtt5_reason_strings` checks it is there).
pub fn sans_reason_string(mut p: Packet) -> Packet {
    if let Some(props) = p.properties_mut() {
        props.reason_string = None;
    }
    p
}

/// Waits until the broker closes `c`'s connection (as
/// [`RawClient::expect_closed`]) and asserts it sent exactly a DISCONNECT
/// with `reason` first, whatever its Reason String.
pub fn expect_disconnect(c: &mut RawClient, reason: ReasonCode) {
    let got: Vec<Packet> = c
        .expect_closed()
        .into_iter()
        .map(sans_reason_string)
        .collect();
    let expected = Packet::Disconnect(shardmq::protocol::Disconnect::new(reason));
    assert_eq!(got, [expected], "{reason:?}");
}

/// The 5.0 packets in `bytes`, re-encoded without their Reason Strings.
pub fn sans_reason_strings_v5(bytes: &[u8]) -> Vec<u8> {
    let mut buf = BytesMut::from(bytes);
    let mut out = BytesMut::new();
    while let Ok(p) = decode(&mut buf, ProtocolVersion::V5, usize::MAX) {
        let p = sans_reason_string(p);
        p.encode(ProtocolVersion::V5, &mut out).expect("encodable");
    }
    out.extend_from_slice(&buf);
    out.to_vec()
}
