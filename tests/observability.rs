//! Observability: the `$SYS` tree's values against what the test did, and
//! the Prometheus endpoint scraped over HTTP (with curl) and parsed.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{RawClient, TestBroker};
use shardmq::metrics::scrape::{histogram, parse, Sample};
use shardmq::protocol::{Packet, ProtocolVersion, QoS};

const V311: ProtocolVersion = ProtocolVersion::V311;

/// Reads `$SYS` publishes into `seen` (topic -> latest payload) until
/// `done` holds for it or `limit` passes; returns whether it held.
fn watch_sys(
    c: &mut RawClient,
    seen: &mut HashMap<String, String>,
    limit: Duration,
    done: impl Fn(&HashMap<String, String>) -> bool,
) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done(seen) {
            return true;
        }
        if let Some(Some(Packet::Publish(p))) = c.recv_within(Duration::from_millis(200)) {
            let payload = String::from_utf8_lossy(&p.payload).into_owned();
            seen.insert(p.topic.as_str().to_string(), payload);
        }
    }
    done(seen)
}

fn get<'a>(seen: &'a HashMap<String, String>, topic: &str) -> Option<&'a str> {
    seen.get(&format!("$SYS/broker/{topic}"))
        .map(String::as_str)
}

#[test]
fn sys_values_match_the_clients_and_messages_of_the_test() {
    let b = TestBroker::with(2, |c| c.sys_interval = Duration::from_secs(1));
    // Two clients homed on each shard; one of them persistent, and gone.
    let (mut sub, _) = RawClient::connect(b.addr, V311, &b.id_on(1, "sub"), true);
    sub.subscribe("obs/t", QoS::AtMostOnce);
    let (mut publisher, _) = RawClient::connect(b.addr, V311, &b.id_on(0, "pub"), true);
    let (mut idle, _) = RawClient::connect(b.addr, V311, &b.id_on(0, "idle"), true);
    idle.subscribe("$share/g/obs/#", QoS::AtMostOnce);
    idle.subscribe("obs/gone", QoS::AtMostOnce);
    idle.send(&Packet::Unsubscribe(shardmq::protocol::Unsubscribe {
        packet_id: common::pid(9),
        filters: vec!["obs/gone".parse().expect("a filter")],
        properties: Default::default(),
    }));
    assert!(matches!(idle.recv(), Some(Packet::UnsubAck(_))));
    let (gone, _) = RawClient::connect(b.addr, V311, &b.id_on(1, "gone"), false);
    gone.disconnect();
    let m = 7;
    for i in 0..m {
        publisher.publish("obs/t", b"0123456789", QoS::AtLeastOnce, false, i + 1);
    }
    assert_eq!(sub.expect_payloads(m.into()).len(), usize::from(m));
    let (mut watcher, _) = RawClient::connect(b.addr, V311, &b.id_on(0, "watch"), true);
    watcher.subscribe("$SYS/#", QoS::AtMostOnce);
    let mut seen = HashMap::new();
    let settled = watch_sys(&mut watcher, &mut seen, Duration::from_secs(8), |s| {
        get(s, "publish/messages/received") == Some("7")
            && get(s, "clients/connected") == Some("4")
            && get(s, "clients/total") == Some("5")
            && get(s, "subscriptions/count") == Some("3")
            && get(s, "shard/0/connections") == Some("3")
            && get(s, "shard/1/sessions") == Some("2")
            && get(s, "load/publish/received/1min").is_some()
            && get(s, "shard/1/loop/turns").is_some()
            && get(s, "version").is_some()
            && get(s, "uptime").is_some()
    });
    assert!(
        settled,
        "$SYS never settled on the test's figures: {seen:#?}"
    );
    assert_eq!(get(&seen, "clients/disconnected"), Some("1"));
    assert_eq!(get(&seen, "publish/bytes/received"), Some("70"));
    assert_eq!(get(&seen, "shard/0/connections"), Some("3"));
    assert_eq!(get(&seen, "shard/1/connections"), Some("1"));
    assert_eq!(get(&seen, "shard/1/sessions"), Some("2"));
    let sent: u64 = get(&seen, "publish/messages/sent")
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert!(
        sent >= 7,
        "7 to the subscriber, then $SYS to the watcher: {sent}"
    );
    let mesh: u64 = get(&seen, "shard/0/mesh/sent")
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    assert!(mesh >= 7, "each message crossed to shard 1: {mesh}");
    assert!(get(&seen, "version").is_some_and(|v| v.starts_with("shardmq version ")));
    assert!(get(&seen, "uptime").is_some_and(|v| v.ends_with(" seconds")));
    assert!(get(&seen, "load/publish/received/1min").is_some());
    assert!(get(&seen, "shard/1/loop/turns").is_some());
    b.stop();
}

fn number(seen: &HashMap<String, String>, topic: &str) -> Option<i64> {
    get(seen, topic).and_then(|v| v.parse().ok())
}

/// Messages queued for an offline persistent session count in the store,
/// as in Mosquitto, with their payload bytes (`$SYS` and /metrics); once
/// the client is back and takes them, they leave it, and their delivery
/// from the queue is timed.
#[test]
fn messages_queued_for_an_offline_session_count_in_the_store() {
    let b = TestBroker::with(2, |c| {
        c.sys_interval = Duration::from_secs(1);
        c.metrics_listener = Some("127.0.0.1:0".parse().expect("addr"));
    });
    let addr = b.handle().metrics_addr().expect("a metrics endpoint");
    let away = b.id_on(1, "away");
    let (mut sub, _) = RawClient::connect(b.addr, V311, &away, false);
    sub.subscribe("obs/q", QoS::AtLeastOnce);
    sub.disconnect();
    let (mut publisher, _) = RawClient::connect(b.addr, V311, &b.id_on(0, "pub"), true);
    publisher.publish("obs/r", b"four", QoS::AtLeastOnce, true, 1);
    for i in 0..3 {
        publisher.publish("obs/q", b"0123456789", QoS::AtLeastOnce, false, i + 2);
    }
    let (mut watcher, _) = RawClient::connect(b.addr, V311, &b.id_on(0, "watch"), true);
    watcher.subscribe("$SYS/#", QoS::AtMostOnce);
    // Held beyond the retained messages (the tree's own among them).
    let queued = |s: &HashMap<String, String>| {
        let count = number(s, "store/messages/count")?;
        let stored = number(s, "messages/stored")?;
        let retained = number(s, "retained messages/count")?;
        (count == stored).then_some(count - retained)
    };
    let mut seen = HashMap::new();
    let settled = watch_sys(&mut watcher, &mut seen, Duration::from_secs(8), |s| {
        queued(s) == Some(3)
    });
    assert!(settled, "3 queued messages never showed: {seen:#?}");
    let bytes = number(&seen, "store/messages/bytes").expect("published");
    assert!(bytes >= 34, "3 x 10 queued + 4 retained, and $SYS: {bytes}");
    let samples = scrape(addr);
    assert_eq!(total(&samples, "shardmq_queued_messages"), 3.0);
    assert_eq!(total(&samples, "shardmq_queued_bytes"), 30.0);
    assert!(
        total(&samples, "shardmq_retained_bytes") >= 2.0 * 4.0,
        "each shard's replica"
    );

    let (mut back, _) = RawClient::connect(b.addr, V311, &away, false);
    assert_eq!(back.expect_payloads(3).len(), 3);
    let settled = watch_sys(&mut watcher, &mut seen, Duration::from_secs(8), |s| {
        queued(s) == Some(0)
    });
    assert!(settled, "the queue never left the store: {seen:#?}");
    let queued_delivery = "shardmq_queued_delivery_latency_seconds";
    let until = Instant::now() + Duration::from_secs(5);
    let mut samples = scrape(addr);
    while histogram_count(&samples, queued_delivery) < 3 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        samples = scrape(addr);
    }
    assert_eq!(histogram_count(&samples, queued_delivery), 3);
    assert_eq!(total(&samples, "shardmq_queued_messages"), 0.0);
    assert_eq!(total(&samples, "shardmq_queued_bytes"), 0.0);
    b.stop();
}

/// `sys_interval` changes with a reload (SIGHUP), as Mosquitto re-reads it.
#[test]
fn a_reload_turns_the_sys_tree_on_and_off() {
    let b = TestBroker::with(2, |c| c.sys_interval = Duration::ZERO);
    let reload = |secs: u64| {
        let config = shardmq::config::Config {
            listeners: vec![shardmq::config::Listener::new(b.addr)],
            shards: Some(b.shards),
            sys_interval: Duration::from_secs(secs),
            ..shardmq::config::Config::default()
        };
        b.handle().reload(config).expect("every shard applies it");
    };
    let (mut watcher, _) = RawClient::connect(b.addr, V311, "watch", true);
    watcher.subscribe("$SYS/broker/uptime", QoS::AtMostOnce);
    watcher.expect_silence(Duration::from_millis(500));
    reload(1);
    let mut seen = HashMap::new();
    let on = watch_sys(&mut watcher, &mut seen, Duration::from_secs(5), |s| {
        get(s, "uptime").is_some()
    });
    assert!(on, "no $SYS after the reload set sys_interval");
    reload(0);
    // An update under way when the reload landed may still arrive.
    let _ = watcher.recv_within(Duration::from_millis(300));
    watcher.expect_silence(Duration::from_millis(2500));
    b.stop();
}

/// As Mosquitto (`SYS_TREE_QOS`), the tree is published at QoS 2: a
/// subscriber at QoS 2 gets it at QoS 2.
#[test]
fn the_sys_tree_is_published_at_qos_2() {
    let b = TestBroker::with(1, |c| c.sys_interval = Duration::from_secs(1));
    let (mut w, _) = RawClient::connect(b.addr, V311, "watch-qos", true);
    w.subscribe("$SYS/broker/version", QoS::ExactlyOnce);
    let p = w.expect_publish();
    assert_eq!(p.topic.as_str(), "$SYS/broker/version");
    assert_eq!(p.qos, QoS::ExactlyOnce);
    b.stop();
}

#[test]
fn sys_interval_0_publishes_no_sys_tree() {
    let b = TestBroker::with(2, |c| c.sys_interval = Duration::ZERO);
    let (mut watcher, _) = RawClient::connect(b.addr, V311, "watch", true);
    watcher.subscribe("$SYS/#", QoS::AtMostOnce);
    watcher.expect_silence(Duration::from_millis(1500));
    b.stop();
}

/// The body of `GET url` through curl, and the HTTP status.
fn curl(url: &str) -> (String, u16) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl is installed (the test scrapes with a real HTTP client)");
    assert!(out.status.success(), "curl {url}: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("curl wrote the status");
    (
        body.to_string(),
        code.trim().parse().expect("a status code"),
    )
}

fn scrape(addr: SocketAddr) -> Vec<Sample> {
    let (body, code) = curl(&format!("http://{addr}/metrics"));
    assert_eq!(code, 200, "{body}");
    parse(&body)
}

fn total(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

fn histogram_count(samples: &[Sample], name: &str) -> u64 {
    histogram(samples, name).map_or(0, |h| h.count())
}

#[test]
fn the_metrics_endpoint_serves_counters_and_histograms_that_move_with_traffic() {
    let b = TestBroker::with(2, |c| {
        c.metrics_listener = Some("127.0.0.1:0".parse().expect("addr"));
    });
    let addr = b.handle().metrics_addr().expect("a metrics endpoint");
    let before = scrape(addr);
    for shard in ["0", "1"] {
        let labelled = before
            .iter()
            .any(|s| s.name == "shardmq_loop_turns_total" && s.label("shard") == Some(shard));
        assert!(labelled, "no loop turns for shard {shard}");
    }
    assert!(before.iter().all(|s| s.label("shard").is_some()));
    let delivery = "shardmq_publish_delivery_latency_seconds";
    let hop = "shardmq_mesh_hop_latency_seconds";
    assert_eq!(histogram_count(&before, delivery), 0);

    let (mut near, _) = RawClient::connect(b.addr, V311, &b.id_on(0, "near"), true);
    near.subscribe("obs/m", QoS::AtLeastOnce);
    let (mut far, _) = RawClient::connect(b.addr, V311, &b.id_on(1, "far"), true);
    far.subscribe("obs/m", QoS::AtLeastOnce);
    let (mut publisher, _) = RawClient::connect(b.addr, V311, &b.id_on(0, "pub"), true);
    let m: u16 = 20;
    for i in 0..m {
        publisher.publish("obs/m", b"x", QoS::AtLeastOnce, false, i + 1);
    }
    near.expect_payloads(m.into());
    far.expect_payloads(m.into());

    // Shards publish every 100 ms tick: wait for the run to show.
    let until = Instant::now() + Duration::from_secs(5);
    let mut after = scrape(addr);
    while histogram_count(&after, delivery) < 2 * u64::from(m) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        after = scrape(addr);
    }
    assert_eq!(histogram_count(&after, delivery), 2 * u64::from(m));
    assert_eq!(
        histogram_count(&after, hop),
        u64::from(m),
        "one hop per message"
    );
    let turns = "shardmq_loop_turn_seconds";
    assert!(histogram_count(&after, turns) > histogram_count(&before, turns));
    assert_eq!(
        total(&after, "shardmq_publish_messages_received_total"),
        f64::from(m)
    );
    assert_eq!(total(&after, "shardmq_connections"), 3.0);
    let p99 = histogram(&after, delivery)
        .and_then(|h| h.quantile(0.99))
        .expect("a p99");
    assert!(p99 < Duration::from_secs(10), "{p99:?}");

    let (_, missing) = curl(&format!("http://{addr}/other"));
    assert_eq!(missing, 404);
    b.stop();
}

#[test]
fn without_a_metrics_listener_there_is_no_endpoint() {
    let b = TestBroker::start(1);
    assert_eq!(b.handle().metrics_addr(), None);
    b.stop();
}

/// The binary blocks in `BrokerHandle::wait`: scrapes are answered
/// meanwhile, and the endpoint goes with the broker.
#[test]
fn the_endpoint_answers_while_the_broker_is_waited_for() {
    let config = shardmq::config::Config {
        listeners: vec![shardmq::config::Listener::new(
            "127.0.0.1:0".parse().expect("addr"),
        )],
        shards: Some(1),
        metrics_listener: Some("127.0.0.1:0".parse().expect("addr")),
        ..shardmq::config::Config::default()
    };
    let handle = shardmq::server::start_with(config, Default::default()).expect("starts");
    let addr = handle.metrics_addr().expect("an endpoint");
    let stop = handle.stop_flag();
    let waiter = std::thread::spawn(move || handle.wait());
    std::thread::sleep(Duration::from_millis(200));
    assert!(!scrape(addr).is_empty());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    waiter.join().expect("no panic").expect("stops cleanly");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the endpoint is gone"
    );
}

/// The tree is published again at start: a journal does not keep it (a
/// client's retained message it keeps).
#[test]
fn sys_values_are_not_journaled() {
    let d = std::env::temp_dir().join(format!("shardmq-obs-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    let persist = |c: &mut shardmq::config::Config, sys: u64| {
        c.persistence = true;
        c.persistence_location = Some(d.clone());
        c.sys_interval = Duration::from_secs(sys);
    };
    let b = TestBroker::with(2, |c| persist(c, 1));
    let (mut w, _) = RawClient::connect(b.addr, V311, "journal-w", true);
    w.subscribe("$SYS/broker/version", QoS::AtMostOnce);
    let version = w.recv_within(Duration::from_secs(3));
    assert!(
        matches!(version, Some(Some(Packet::Publish(_)))),
        "{version:?}"
    );
    w.publish("obs/kept", b"1", QoS::AtLeastOnce, true, 1);
    b.stop();

    let b = TestBroker::with(2, |c| persist(c, 0));
    let (mut w, _) = RawClient::connect(b.addr, V311, "journal-w", true);
    w.subscribe("$SYS/#", QoS::AtMostOnce);
    w.expect_silence(Duration::from_millis(500));
    w.subscribe("obs/kept", QoS::AtMostOnce);
    assert_eq!(&w.recv_publish().payload[..], b"1");
    b.stop();
    let _ = std::fs::remove_dir_all(&d);
}
