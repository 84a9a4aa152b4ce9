//! Overload without loss across the bridge (`overload_policy
//! backpressure`), against a real Mosquitto upstream started by the test:
//! a connected link is an online subscriber (a slow remote pauses the
//! local publishers, nothing acknowledged is dropped), a link is a
//! publisher (a slow local subscriber stops its reading, nothing the
//! remote had acknowledged is dropped), and a link that stalls while
//! holding publishers back is reconnected with its queue kept.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::mosquitto::Mosquitto;
use common::{connect_packet, publish, RawClient, TestBroker};
use shardmq::bridge::BridgeStatus;
use shardmq::config::Config;
use shardmq::protocol::{Packet, ProtocolVersion, QoS};

/// Messages in each flood.
const FLOOD: usize = 3000;
/// Bytes of each flooded payload: 3,000 of them are about 3 MiB, a dozen
/// of a shard's reads (a few hundred bytes would fit in one, read before
/// any pause could come back over the mesh).
const PAYLOAD: usize = 1024;

/// The sequence number `i`, then zeros up to [`PAYLOAD`] bytes.
fn padded(i: u32) -> Vec<u8> {
    let mut p = vec![0; PAYLOAD];
    p[..4].copy_from_slice(&i.to_be_bytes());
    p
}
/// How long a subscriber waits for the next message before it gives up.
const QUIET: Duration = Duration::from_secs(10);
/// How long a flood or a drain may take at most.
const LIMIT: Duration = Duration::from_secs(60);

/// An in-process broker with one link (and the queue and overload
/// settings) from `conf`, in Mosquitto syntax.
fn edge(conf: &str) -> TestBroker {
    let (parsed, _) = Config::parse(conf, "edge.conf").unwrap_or_else(|e| panic!("{e}"));
    TestBroker::with(2, |c| {
        c.bridges = parsed.bridges;
        c.max_queued_messages = parsed.max_queued_messages;
        c.overload_policy = parsed.overload_policy;
        c.overload_stall_timeout = parsed.overload_stall_timeout;
        c.persistence = parsed.persistence;
        c.persistence_location = parsed.persistence_location;
    })
}

fn client(addr: SocketAddr, id: &str) -> RawClient {
    RawClient::connected(addr, connect_packet(ProtocolVersion::V311, id, true, 60)).0
}

/// Stops (SIGSTOP) a process, and lets it go on (SIGCONT) when dropped.
struct Frozen(i32);

impl Frozen {
    fn freeze(up: &Mosquitto) -> Frozen {
        let pid = up.pid() as i32;
        // SAFETY: kill has no memory preconditions; pid is our child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

/// A 3.1.1 client `id` on `addr` writing `n` QoS 1 messages (payload: the
/// sequence number, padded to [`PAYLOAD`] bytes so that a flood spans many
/// reads and a pause has reads left to stop) to `topic` without waiting for each PUBACK; the
/// count of PUBACKs is kept in the returned counter, and the handle ends
/// once all came or after [`LIMIT`].
fn flood(
    addr: SocketAddr,
    id: &str,
    topic: &'static str,
    n: usize,
) -> (Arc<AtomicUsize>, JoinHandle<()>) {
    let mut acks = client(addr, id);
    let mut writer = acks.stream.try_clone().expect("clone");
    let acked = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&acked);
    let handle = std::thread::spawn(move || {
        let sender = std::thread::spawn(move || {
            for i in 0..n {
                let id = (i % 65_535) as u16 + 1;
                let p = publish(topic, &padded(i as u32), QoS::AtLeastOnce, false, id);
                let mut out = BytesMut::new();
                Packet::Publish(p)
                    .encode(ProtocolVersion::V311, &mut out)
                    .unwrap();
                if writer.write_all(&out).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + LIMIT;
        while count.load(Ordering::Acquire) < n && Instant::now() < deadline {
            match acks.recv_within(Duration::from_secs(1)) {
                Some(Some(Packet::PubAck(_))) => {
                    count.fetch_add(1, Ordering::AcqRel);
                }
                Some(Some(other)) => panic!("publisher: {other:?}"),
                Some(None) => break,
                None => {}
            }
        }
        drop(acks);
        let _ = sender.join();
    });
    (acked, handle)
}

/// Reads (acknowledging) until `want` distinct sequence numbers came, or
/// nothing for `quiet`; sleeps `pause` every 20 messages. Returns them;
/// `got` counts them meanwhile.
fn collect(
    c: &mut RawClient,
    want: usize,
    (pause, quiet): (Duration, Duration),
    got: &AtomicUsize,
) -> HashSet<u32> {
    let deadline = Instant::now() + LIMIT;
    let mut seen = HashSet::new();
    let mut n = 0usize;
    while seen.len() < want && Instant::now() < deadline {
        match c.recv_within(quiet) {
            Some(Some(Packet::Publish(p))) => {
                c.ack(&p);
                seen.insert(u32::from_be_bytes(p.payload[..4].try_into().unwrap()));
                n += 1;
                got.store(seen.len(), Ordering::Release);
                if n % 20 == 0 {
                    std::thread::sleep(pause);
                }
            }
            Some(Some(_)) => {}
            Some(None) | None => break,
        }
    }
    seen
}

/// Publishers held back on the shards (as last published, each tick).
fn paused_publishers(b: &TestBroker) -> u64 {
    b.stats().iter().map(|s| s.publishers_held).sum()
}

/// Waits (at most 5 s) for `ok`.
fn within(ok: &dyn Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (at most 15 s) for link `name`'s status to satisfy `ok`.
fn status_when(b: &TestBroker, name: &str, ok: impl Fn(&BridgeStatus) -> bool) -> BridgeStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = b.bridges().into_iter().find(|s| s.name == name);
        if let Some(s) = s.filter(|s| ok(s) || Instant::now() > deadline) {
            return s;
        }
        assert!(Instant::now() < deadline, "no bridge {name}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The edge's configuration: `extra` broker lines, then the link.
fn out_link(up: &Mosquitto, stall: u32, extra: &str) -> String {
    format!(
        "{extra}max_queued_messages 20\noverload_stall_timeout {stall}\n\
         connection up\naddress 127.0.0.1:{}\nrestart_timeout 1\nkeepalive_interval 60\n\
         topic flood/# out 1\n",
        up.port
    )
}

/// A local flood out to a frozen remote, held back by the link. Fields
/// drop in order: the remote goes on before it is killed.
struct OutFlood {
    frozen: Option<Frozen>,
    acked: Arc<AtomicUsize>,
    publisher: Option<JoinHandle<()>>,
    /// The remote's subscriber on `flood/#`, and how many it got.
    cloud: RawClient,
    got: AtomicUsize,
    b: TestBroker,
    /// The link's status once it first held the publisher back.
    holding: BridgeStatus,
    started: Instant,
    up: Mosquitto,
}

impl OutFlood {
    /// Mosquitto upstream with a subscriber, an edge linked out to it
    /// (queue limit 20, `overload_stall_timeout` `stall`), the upstream
    /// frozen, and a local 3.1.1 publisher flooding; returns once the link
    /// holds it back.
    fn start(test: &str, stall: u32, extra: &str) -> OutFlood {
        let up = Mosquitto::run(test, "");
        let b = edge(&out_link(&up, stall, extra));
        b.wait_bridge("up");
        let mut cloud = client(up.addr(), "cloud");
        cloud.subscribe("flood/#", QoS::AtLeastOnce);
        let frozen = Frozen::freeze(&up);
        let started = Instant::now();
        let (acked, publisher) = flood(b.addr, "src", "flood/a", FLOOD);
        let holding = status_when(&b, "up", |s| s.holding > 0);
        assert!(
            holding.holding > 0 && holding.held > 0,
            "the publisher was never paused: {holding:?}"
        );
        OutFlood {
            frozen: Some(frozen),
            acked,
            publisher: Some(publisher),
            cloud,
            got: AtomicUsize::new(0),
            b,
            holding,
            started,
            up,
        }
    }

    /// Lets the remote go on.
    fn thaw(&mut self) {
        self.frozen = None;
    }

    /// Waits for the publisher; its PUBACK count.
    fn acked(&mut self) -> usize {
        if let Some(p) = self.publisher.take() {
            p.join().unwrap();
        }
        self.acked.load(Ordering::Acquire)
    }
}

/// Asserts that every one of the first `acked` sequence numbers is in
/// `seen`.
fn assert_all_arrived(acked: usize, seen: &HashSet<u32>) {
    let missing: Vec<u32> = (0..acked as u32).filter(|i| !seen.contains(i)).collect();
    assert!(
        missing.is_empty(),
        "{} lost: {:?}...",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}

/// The remote stops acknowledging (SIGSTOP): the link's queue runs past
/// its limits of 20, and the local publisher is paused instead of its
/// messages dropped. Once the remote goes on, every message acknowledged
/// to the publisher reaches the remote's subscriber.
#[test]
fn a_slow_remote_pauses_local_publishers_and_loses_nothing() {
    slow_remote_loses_nothing("bp-out", "");
}

/// The same with the bridge journal on (`persistence true`): what the
/// headroom holds is journaled too, and nothing is lost either.
#[test]
fn with_the_bridge_journal_a_slow_remote_pauses_and_loses_nothing() {
    let dir = std::env::temp_dir().join(format!("shardmq-bp-bridge-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let extra = format!(
        "persistence true\npersistence_location {}/\n",
        dir.display()
    );
    slow_remote_loses_nothing("bp-out-journal", &extra);
    let journals = std::fs::read_dir(&dir).map_or(0, |d| d.count());
    assert!(journals > 0, "nothing journaled in {}", dir.display());
    let _ = std::fs::remove_dir_all(&dir);
}

fn slow_remote_loses_nothing(test: &str, extra: &str) {
    let mut f = OutFlood::start(test, 30, extra);
    std::thread::sleep(Duration::from_secs(1));
    let paused_at = f.acked.load(Ordering::Acquire);
    let s = status_when(&f.b, "up", |_| true);
    assert!(paused_at < FLOOD, "the publisher was not held back: {s:?}");
    assert_eq!(s.dropped, 0, "{s:?}");
    assert!(s.connected, "the link stays up: {s:?}");
    f.thaw();

    let seen = collect(&mut f.cloud, FLOOD, (Duration::ZERO, QUIET), &f.got);
    let acked = f.acked();
    assert_eq!(acked, FLOOD, "every message acknowledged in time");
    assert_all_arrived(acked, &seen);
    let s = status_when(&f.b, "up", |s| s.holding == 0);
    assert_eq!((s.dropped, s.holding, s.stalls), (0, 0, 0), "{s:?}");
    within(&|| paused_publishers(&f.b) == 0);
    assert_eq!(paused_publishers(&f.b), 0, "a publisher left paused");
}

/// A remote that acknowledges nothing for `overload_stall_timeout` while
/// the link holds publishers back: the link is reconnected with its whole
/// queue (its headroom too), the publishers resume (what comes while the
/// link is down is an offline destination's: kept within the limits, the
/// rest counted as dropped). Every acknowledged message not counted
/// reaches the remote.
#[test]
fn a_link_stalled_while_holding_publishers_reconnects_and_keeps_its_queue() {
    let mut f = OutFlood::start("bp-stall", 2, "");
    let kept = f.holding.queued;
    let s = status_when(&f.b, "up", |s| s.stalls > 0);
    assert!(s.stalls > 0, "never cut: {s:?}");
    let took = f.started.elapsed();
    assert!(
        // The upper end leaves room for a loaded 2-core CI machine; what
        // it catches is a link never cut, or cut on another clock.
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "cut after {took:?} (bound 2 s, checked each tick)"
    );
    assert_eq!(s.holding, 0, "its publishers are released: {s:?}");
    assert!(s.queued >= kept, "the queue was kept: {s:?} (held {kept})");
    assert_eq!(f.acked(), FLOOD, "resumed");
    f.thaw();

    let seen = collect(&mut f.cloud, FLOOD, (Duration::ZERO, QUIET), &f.got);
    let s = status_when(&f.b, "up", |s| s.connected && s.queued == 0);
    assert!(
        seen.len() > 20,
        "more than the limits arrived: the headroom was kept: {}",
        seen.len()
    );
    assert_eq!(
        seen.len() as u64 + s.dropped,
        FLOOD as u64,
        "every acknowledged message arrived or was counted: {s:?}"
    );
    assert!(
        f.up.log().contains("flood/#"),
        "the remote saw the subscriber"
    );
}

/// A link removed by a reload while it holds publishers back releases
/// them: nothing stays paused on any shard, and the publisher goes on.
#[test]
fn a_link_removed_while_holding_publishers_releases_them() {
    let mut f = OutFlood::start("bp-remove", 30, "");
    let paused = paused_publishers;
    within(&|| paused(&f.b) > 0);
    assert!(paused(&f.b) > 0, "the publisher's shard holds it");
    f.b.handle().reload_bridges(Vec::new()).unwrap();
    within(&|| paused(&f.b) == 0 && f.b.bridges().is_empty());
    assert_eq!(paused(&f.b), 0, "left paused: {:?}", f.b.bridges());
    assert_eq!(f.acked(), FLOOD, "the publisher went on");
}

/// A link that goes down (the remote killed) while it holds publishers
/// back is an offline destination: its publishers resume, and what it
/// holds past its limits and has not written is dropped and counted.
#[test]
fn a_link_that_drops_while_holding_publishers_releases_them_and_counts_drops() {
    let mut f = OutFlood::start("bp-drop", 30, "");
    // Killed while stopped: not let go on first.
    std::mem::forget(f.frozen.take());
    f.up.kill();
    let s = status_when(&f.b, "up", |s| !s.connected && s.holding == 0);
    assert!(!s.connected && s.holding == 0, "{s:?}");
    assert_eq!(f.acked(), FLOOD, "the publisher went on");
    let s = status_when(&f.b, "up", |_| true);
    assert!(s.dropped > 0, "nothing counted: {s:?}");
    within(&|| paused_publishers(&f.b) == 0);
    assert_eq!(paused_publishers(&f.b), 0, "left paused");
}

/// A flood from the remote into a slow local subscriber (queue limit 20):
/// the subscriber pauses the link, whose socket is then not read (the
/// remote holds the rest), and every message the remote acknowledged to
/// its publisher arrives, none dropped.
#[test]
fn a_slow_local_subscriber_slows_the_link_and_loses_nothing() {
    let up = Mosquitto::run("bp-in", "");
    let b = edge(&format!(
        "max_queued_messages 20\noverload_stall_timeout 30\n\
         connection up\naddress 127.0.0.1:{}\nremote_clientid edge-in\nrestart_timeout 1\n\
         topic in/# in 1\n",
        up.port
    ));
    b.wait_bridge("up");
    up.wait_log("edge-in 1 in/#", Duration::from_secs(5));
    let mut sink = client(b.addr, "sink");
    sink.subscribe("in/#", QoS::AtLeastOnce);

    let (acked, publisher) = flood(up.addr(), "cloud-src", "in/a", FLOOD);
    let got = Arc::new(AtomicUsize::new(0));
    let reader = {
        let got = Arc::clone(&got);
        let slow = (Duration::from_millis(10), QUIET);
        std::thread::spawn(move || collect(&mut sink, FLOOD, slow, &got))
    };
    // How far the link ran ahead of the subscriber: bounded while the
    // link is held back (the remote keeps the rest); the whole flood
    // otherwise.
    let (mut paused, mut ahead) = (false, 0u64);
    while !reader.is_finished() {
        let statuses = b.bridges();
        paused |= statuses.iter().any(|s| s.paused);
        let received = statuses.iter().map(|s| s.received).sum::<u64>();
        ahead = ahead.max(received.saturating_sub(got.load(Ordering::Acquire) as u64));
        std::thread::sleep(Duration::from_millis(5));
    }
    let seen = reader.join().unwrap();
    publisher.join().unwrap();
    let acked = acked.load(Ordering::Acquire);
    assert_eq!(acked, FLOOD, "the remote acknowledged every message");
    assert_all_arrived(acked, &seen);
    let stats: shardmq::shard::StatsSnapshot =
        b.stats().into_iter().fold(Default::default(), |a, s| a + s);
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert!(
        ahead < FLOOD as u64 / 10,
        "the link read {ahead} messages ahead of its subscriber"
    );
    assert!(paused, "the link was never held back: {:?}", b.bridges());
    let s = status_when(&b, "up", |s| !s.paused);
    assert!(!s.paused && s.connected, "released: {s:?}");
}
