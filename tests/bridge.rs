//! The bridge against real upstream brokers: Mosquitto started by the test
//! on a free port, and shardmq bridged to shardmq. Messages out and in at
//! QoS 0/1/2, prefixes, 3.1.1 and 5.0 links, loops, notifications, status,
//! lazy start, and faults (upstream killed, wrong password, dead address,
//! failover and back).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::mosquitto::Mosquitto;
use common::{connect_packet, drain, free_port, RawClient, TestBroker};
use shardmq::config::Config;
use shardmq::protocol::{Packet, ProtocolVersion, Publish, QoS};

use ProtocolVersion::{V311, V5};

/// An in-process broker with `shards` shards whose bridges (and queue
/// settings) come from `conf`, in Mosquitto syntax.
fn edge(shards: usize, conf: &str) -> TestBroker {
    let (parsed, _) = Config::parse(conf, "edge.conf").unwrap_or_else(|e| panic!("{e}"));
    TestBroker::with(shards, |c| {
        c.bridges = parsed.bridges;
        c.max_queued_messages = parsed.max_queued_messages;
        c.queue_qos0_messages = parsed.queue_qos0_messages;
    })
}

fn client(addr: std::net::SocketAddr, version: ProtocolVersion, id: &str) -> RawClient {
    RawClient::connected(addr, connect_packet(version, id, true, 60)).0
}

fn topics_and_payloads(ps: &[Publish]) -> Vec<(String, String)> {
    ps.iter()
        .map(|p| {
            let payload = String::from_utf8_lossy(&p.payload).into_owned();
            (p.topic.as_str().to_string(), payload)
        })
        .collect()
}

fn pair(topic: &str, payload: &str) -> (String, String) {
    (topic.to_string(), payload.to_string())
}

/// The section from the deployment in the issue, unchanged but for the
/// address.
fn emqx_section(port: u16) -> String {
    format!(
        "connection emqx1\naddress 127.0.0.1:{port}\nbridge_protocol_version mqttv50\n\
         remote_clientid emqx_c\nremote_username emqx_u\nremote_password public\n\
         topic sensor/# out 1\ntopic control/# in 1\n"
    )
}

#[test]
fn the_emqx_section_carries_sensors_out_and_control_in() {
    let up = Mosquitto::run("emqx", "");
    let b = edge(2, &emqx_section(up.port));
    b.wait_bridge("emqx1");
    up.wait_log("emqx_c 1 control/#", Duration::from_secs(5));
    let log = up.log();
    assert!(
        log.contains("as emqx_c (p5, c0, k60, u'emqx_u')"),
        "the remote sees the bridge's id, MQTT 5, persistent session, user: {log}"
    );
    assert!(
        log.contains("Received UNSUBSCRIBE from emqx_c\n") && log.contains("\tsensor/#"),
        "bridge_attempt_unsubscribe: the out-only line is unsubscribed on the remote: {log}"
    );

    let mut cloud_sub = client(up.addr(), V5, "cloud-sub");
    cloud_sub.subscribe("sensor/#", QoS::AtLeastOnce);
    let mut edge_sub = client(b.addr, V311, "edge-sub");
    edge_sub.subscribe("control/#", QoS::AtLeastOnce);

    let mut edge_pub = client(b.addr, V311, "edge-pub");
    edge_pub.publish("sensor/1/temperature", b"37.5", QoS::AtLeastOnce, false, 1);
    let p = cloud_sub.expect_publish();
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos),
        ("sensor/1/temperature", &b"37.5"[..], QoS::AtLeastOnce)
    );

    let mut cloud_pub = client(up.addr(), V311, "cloud-pub");
    cloud_pub.publish("control/t/1", b"I'm EMQX", QoS::AtLeastOnce, false, 1);
    let p = edge_sub.expect_publish();
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos),
        ("control/t/1", &b"I'm EMQX"[..], QoS::AtLeastOnce)
    );
    // Nothing else either way (no loop, no duplicate).
    assert_eq!(drain(&mut cloud_sub, Duration::from_millis(300)), vec![]);
    assert_eq!(drain(&mut edge_sub, Duration::from_millis(300)), vec![]);
}

#[test]
fn a_311_link_maps_prefixes_both_ways_at_qos2_without_echo() {
    let up = Mosquitto::run("prefix", "");
    let b = edge(
        2,
        &format!(
            "connection p\naddress 127.0.0.1:{}\nremote_clientid edge-p\n\
             topic # both 2 local/ remote/\n",
            up.port
        ),
    );
    b.wait_bridge("p");
    up.wait_log("edge-p 2 remote/#", Duration::from_secs(5));
    let log = up.log();
    assert!(
        log.contains("New bridge connected") && log.contains("as edge-p (p2, c0, k60)"),
        "the remote sees a 3.1.1 bridge (the bridge bit): {log}"
    );

    let mut cloud_sub = client(up.addr(), V311, "cloud-sub");
    cloud_sub.subscribe("remote/#", QoS::ExactlyOnce);
    let mut edge_sub = client(b.addr, V311, "edge-sub");
    edge_sub.subscribe("local/#", QoS::ExactlyOnce);

    let mut edge_pub = client(b.addr, V311, "edge-pub");
    edge_pub.publish("local/a", b"out", QoS::ExactlyOnce, false, 1);
    let mut cloud_pub = client(up.addr(), V311, "cloud-pub");
    cloud_pub.publish("remote/b", b"in", QoS::ExactlyOnce, false, 1);

    let quiet = Duration::from_millis(700);
    let mut at_cloud = drain(&mut cloud_sub, quiet);
    let mut at_edge = drain(&mut edge_sub, quiet);
    assert!(at_cloud
        .iter()
        .chain(&at_edge)
        .all(|p| p.qos == QoS::ExactlyOnce));
    at_cloud.sort_by(|a, b| a.topic.as_str().cmp(b.topic.as_str()));
    at_edge.sort_by(|a, b| a.topic.as_str().cmp(b.topic.as_str()));
    assert_eq!(
        topics_and_payloads(&at_cloud),
        [pair("remote/a", "out"), pair("remote/b", "in")],
        "exactly once each at the remote"
    );
    assert_eq!(
        topics_and_payloads(&at_edge),
        [pair("local/a", "out"), pair("local/b", "in")],
        "exactly once each locally"
    );
}

#[test]
fn retained_messages_cross_the_bridge_with_their_flag() {
    let up = Mosquitto::run("retain", "");
    let b = edge(
        2,
        &format!(
            "connection r\naddress 127.0.0.1:{}\nbridge_protocol_version mqttv50\n\
             topic cfg/# both 1\n",
            up.port
        ),
    );
    // Retained before the link exists: sent when it connects.
    let mut edge_pub = client(b.addr, V311, "edge-pub");
    edge_pub.publish("cfg/early", b"e", QoS::AtLeastOnce, true, 1);
    b.wait_bridge("r");
    let mut cloud_pub = client(up.addr(), V311, "cloud-pub");
    cloud_pub.publish("cfg/remote", b"r", QoS::AtLeastOnce, true, 1);
    edge_pub.publish("cfg/late", b"l", QoS::AtLeastOnce, true, 2);

    let deadline = Instant::now() + Duration::from_secs(5);
    let want = [
        pair("cfg/early", "e"),
        pair("cfg/late", "l"),
        pair("cfg/remote", "r"),
    ];
    for (addr, who) in [(up.addr(), "remote"), (b.addr, "local")] {
        loop {
            let mut late_sub = client(addr, V311, &format!("late-{who}"));
            late_sub.subscribe("cfg/#", QoS::AtLeastOnce);
            let got = drain(&mut late_sub, Duration::from_millis(300));
            // A message still crossing comes live (retain 0): look again.
            let all_retained = got.iter().all(|p| p.retain);
            let mut got = topics_and_payloads(&got);
            got.sort();
            if got == want && all_retained {
                break;
            }
            assert!(Instant::now() < deadline, "{who} retained: {got:?}");
        }
    }
}

#[test]
fn two_shardmq_brokers_bridged_both_ways_do_not_loop() {
    for proto in ["mqttv311", "mqttv50"] {
        let upstream = TestBroker::start(2);
        let a = edge(
            2,
            &format!(
                "connection ab\naddress {}\nbridge_protocol_version {proto}\n\
                 topic loop/# both 1\n",
                upstream.addr
            ),
        );
        a.wait_bridge("ab");
        let mut a_sub = client(a.addr, V311, "a-sub");
        a_sub.subscribe("loop/#", QoS::AtLeastOnce);
        let mut b_sub = client(upstream.addr, V5, "b-sub");
        b_sub.subscribe("loop/#", QoS::AtLeastOnce);
        let mut b_pub = client(upstream.addr, V311, "b-pub");
        // The bridge's remote subscription may still be on its way.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            b_pub.publish("loop/ready", b"?", QoS::AtLeastOnce, false, 1);
            if a_sub.recv_within(Duration::from_millis(100)).is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "{proto}: the link never carried");
        }
        drain(&mut a_sub, Duration::from_millis(300));
        drain(&mut b_sub, Duration::from_millis(300));

        let mut a_pub = client(a.addr, V311, "a-pub");
        a_pub.publish("loop/a", b"1", QoS::AtLeastOnce, false, 2);
        b_pub.publish("loop/b", b"2", QoS::AtLeastOnce, false, 3);
        let quiet = Duration::from_millis(1000);
        for (who, sub) in [("a", &mut a_sub), ("b", &mut b_sub)] {
            let mut got = topics_and_payloads(&drain(sub, quiet));
            got.sort();
            assert_eq!(
                got,
                [pair("loop/a", "1"), pair("loop/b", "2")],
                "{proto}: {who} gets each message once"
            );
        }
    }
}

#[test]
fn a_thousand_qos1_messages_survive_kill_9_of_the_upstream_in_order() {
    let port = free_port();
    let mut up = Mosquitto::run_on(
        "kill9",
        port,
        "persistence true\npersistence_location {dir}/\nautosave_interval 1\n",
    );
    let b = edge(
        2,
        &format!(
            "max_queued_messages 10000\nconnection up\naddress 127.0.0.1:{port}\n\
             bridge_protocol_version mqttv50\nremote_clientid edge-kill\n\
             restart_timeout 1\ntopic seq/# out 1\n"
        ),
    );
    b.wait_bridge("up");
    let sub_connect = || {
        let c = connect_packet(V311, "cloud-seq", false, 60);
        RawClient::connected(up_addr(port), c).0
    };
    let mut sub = sub_connect();
    sub.subscribe("seq/#", QoS::AtLeastOnce);
    // The persistent session must be on disk before the crash.
    up.wait_saved(Duration::from_secs(5));

    let edge_addr = b.addr;
    let publisher = std::thread::spawn(move || {
        let mut p = client(edge_addr, V311, "edge-seq");
        for i in 0..1000u32 {
            p.publish(
                "seq/n",
                &i.to_be_bytes(),
                QoS::AtLeastOnce,
                false,
                (i + 1) as u16,
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut firsts: Vec<u32> = Vec::new();
    let mut seen = HashSet::new();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(40);
    while firsts.len() < 1000 {
        assert!(
            Instant::now() < deadline,
            "{} of 1000 arrived: {:?}",
            firsts.len(),
            b.bridges()
        );
        if !killed && firsts.len() >= 300 {
            up.kill();
            std::thread::sleep(Duration::from_millis(300));
            up.restart();
            killed = true;
        }
        match sub.recv_within(Duration::from_millis(200)) {
            Some(Some(Packet::Publish(p))) => {
                sub.ack(&p);
                let n = u32::from_be_bytes(p.payload[..4].try_into().unwrap());
                if seen.insert(n) {
                    firsts.push(n);
                }
            }
            Some(Some(_)) | None => {}
            // The upstream died (and is back): resume the session.
            Some(None) => sub = sub_connect(),
        }
    }
    publisher.join().unwrap();
    assert!(killed);
    assert_eq!(firsts, (0..1000).collect::<Vec<_>>(), "all, in order");
    let status = b.wait_bridge("up");
    assert!(status.reconnects >= 1, "{status:?}");
    assert_eq!(status.dropped, 0, "{status:?}");
}

fn up_addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn a_dead_first_address_fails_over_to_the_second_and_the_primary_is_taken_back() {
    let first = free_port();
    let second = Mosquitto::run("fo2", "");
    let b = edge(
        1,
        &format!(
            "connection fo\naddresses 127.0.0.1:{first} 127.0.0.1:{}\nrestart_timeout 1\n\
             topic f/# out 1\n",
            second.port
        ),
    );
    let status = b.wait_bridge("fo");
    assert_eq!(status.address, Some(second.addr()));
    let primary = Mosquitto::run_on("fo1", first, "");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = b.wait_bridge("fo");
        if s.address == Some(primary.addr()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never went back to the primary: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An upstream Mosquitto that keeps sessions across restarts, where
/// `client` (3.1.1, persistent) subscribed to `filter`, now stopped.
fn upstream_down_with_a_subscriber(test: &str, client: &str, filter: &str) -> (Mosquitto, u16) {
    let port = free_port();
    let mut up = Mosquitto::run_on(
        test,
        port,
        "persistence true\npersistence_location {dir}/\nautosave_interval 1\n",
    );
    let mut sub = RawClient::connected(up.addr(), connect_packet(V311, client, false, 60)).0;
    sub.subscribe(filter, QoS::AtLeastOnce);
    up.wait_saved(Duration::from_secs(5));
    up.kill();
    (up, port)
}

#[test]
fn while_the_link_is_down_qos1_is_queued_and_qos0_dropped_then_delivered_in_order() {
    let (mut up, port) = upstream_down_with_a_subscriber("queued", "cloud-q", "q/#");
    let persistent = || connect_packet(V311, "cloud-q", false, 60);

    let b = edge(
        1,
        &format!("connection q\naddress 127.0.0.1:{port}\nrestart_timeout 1\ntopic q/# out 1\n"),
    );
    let mut p = client(b.addr, V311, "edge-q");
    for i in 0..5u16 {
        p.publish(
            "q/1",
            format!("m{i}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            i + 1,
        );
        p.publish("q/0", b"zero", QoS::AtMostOnce, false, 0);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = b.bridges().pop().expect("one bridge");
        if (s.queued, s.dropped) == (5, 5) {
            assert!(!s.connected && s.queued_bytes > 0, "{s:?}");
            break;
        }
        assert!(Instant::now() < deadline, "{s:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    up.restart();
    let s = b.wait_bridge("q");
    let mut sub = RawClient::connected(up.addr(), persistent()).0;
    let want: Vec<Vec<u8>> = (0..5).map(|i| format!("m{i}").into_bytes()).collect();
    let got = drain(&mut sub, Duration::from_secs(2));
    let payloads: Vec<Vec<u8>> = got.iter().map(|p| p.payload.to_vec()).collect();
    assert_eq!(payloads, want, "{:?} {}", b.bridges(), up.log());
    assert_eq!(
        drain(&mut sub, Duration::from_millis(300)),
        vec![],
        "QoS 0 was dropped"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut s = s;
    while (s.queued, s.inflight, s.sent) != (0, 0, 5) {
        assert!(Instant::now() < deadline, "{s:?}");
        std::thread::sleep(Duration::from_millis(20));
        s = b.wait_bridge("q");
    }
}

/// Also a host name (resolved off the loop; `localhost` may give ::1
/// first, where nothing listens: the next address is tried).
#[test]
fn a_lazy_bridge_connects_at_its_threshold() {
    let up = Mosquitto::run("lazy", "");
    let b = edge(
        1,
        &format!(
            "connection lz\naddress localhost:{}\nremote_clientid edge-lazy\n\
             start_type lazy\nthreshold 3\ntopic z/# out 1\n",
            up.port
        ),
    );
    let mut sub = client(up.addr(), V311, "cloud-z");
    sub.subscribe("z/#", QoS::AtLeastOnce);
    let mut p = client(b.addr, V311, "edge-z");
    p.publish("z/1", b"1", QoS::AtLeastOnce, false, 1);
    p.publish("z/2", b"2", QoS::AtLeastOnce, false, 2);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !up.log().contains("edge-lazy"),
        "connected below the threshold"
    );
    p.publish("z/3", b"3", QoS::AtLeastOnce, false, 3);
    assert_eq!(
        sub.expect_payloads(3),
        [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
    );
}

#[test]
fn the_state_topic_says_1_when_up_and_0_when_the_link_drops() {
    let mut up = Mosquitto::run("notify", "");
    let b = edge(
        2,
        &format!(
            "connection n\naddress 127.0.0.1:{}\nremote_clientid edge-n\nrestart_timeout 30\n\
             topic n/# out 0\n",
            up.port
        ),
    );
    b.wait_bridge("n");
    let state = "$SYS/broker/connection/edge-n/state";
    let mut cloud = client(up.addr(), V311, "cloud-n");
    cloud.subscribe(state, QoS::AtLeastOnce);
    let p = cloud.expect_publish();
    assert_eq!((&p.payload[..], p.retain), (&b"1"[..], true), "remote");
    let mut local = client(b.addr, V311, "local-n");
    local.subscribe(state, QoS::AtLeastOnce);
    let p = local.expect_publish();
    assert_eq!((&p.payload[..], p.retain), (&b"1"[..], true), "local");
    up.kill();
    let p = local.expect_publish();
    assert_eq!(&p.payload[..], b"0", "local state when the link drops");
    up.restart();
    let mut cloud = client(up.addr(), V311, "cloud-n2");
    cloud.subscribe(state, QoS::AtLeastOnce);
    let p = cloud.expect_publish();
    assert_eq!(&p.payload[..], b"1", "up again");
    // The edge stops: its 3.1.1 link closes without DISCONNECT, so the
    // remote publishes the link's will.
    b.stop();
    let p = cloud.expect_publish();
    assert_eq!((&p.payload[..], p.retain), (&b"0"[..], false), "the will");
}

/// A remote that refuses the bridge bit (as some brokers do) with
/// "unacceptable protocol version", then accepts the plain CONNECT.
#[test]
fn try_private_falls_back_when_the_remote_refuses_the_bridge_bit() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let remote = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for answer in [1u8, 0] {
            let (stream, _) = listener.accept().unwrap();
            let mut c = RawClient::from_stream(stream, V311);
            let Some(Packet::Connect(connect)) = c.recv() else {
                panic!("expected CONNECT")
            };
            seen.push(connect.bridge);
            c.send_bytes(&[0x20, 0x02, 0x00, answer]);
            // Hold the accepted link open (taking what comes) until the
            // bridge closes it.
            while answer == 0 && matches!(c.recv_within(Duration::from_secs(5)), Some(Some(_))) {}
        }
        seen
    });
    let b = edge(
        1,
        &format!("connection tp\naddress 127.0.0.1:{port}\ntopic t/# out 1\n"),
    );
    b.wait_bridge("tp");
    b.stop();
    assert_eq!(
        remote.join().unwrap(),
        [true, false],
        "bit, then without it"
    );
}

#[test]
fn bind_address_once_outgoing_retain_max_packet_size_and_no_unsubscribe() {
    let mut up = Mosquitto::run("options", "");
    let b = edge(
        1,
        &format!(
            "connection o\naddress 127.0.0.1:{}\nremote_clientid edge-o\n\
             bridge_bind_address 127.0.0.2\nstart_type once\nbridge_outgoing_retain false\n\
             bridge_protocol_version mqttv50\nbridge_max_packet_size 200\ntopic o/# out 1\n\
             bridge_attempt_unsubscribe false\n",
            up.port
        ),
    );
    b.wait_bridge("o");
    let log = up.log();
    assert!(
        log.contains("New client connected from 127.0.0.2:") && log.contains("as edge-o"),
        "bridge_bind_address: {log}"
    );
    assert!(
        !log.contains("UNSUBSCRIBE"),
        "bridge_attempt_unsubscribe false: {log}"
    );
    let mut sub = client(up.addr(), V311, "cloud-o");
    sub.subscribe("o/#", QoS::AtLeastOnce);
    let mut p = client(b.addr, V311, "edge-o-pub");
    p.publish("o/big", &[7u8; 500], QoS::AtLeastOnce, true, 1);
    p.publish("o/small", b"s", QoS::AtLeastOnce, true, 2);
    let got = drain(&mut sub, Duration::from_millis(500));
    assert_eq!(
        topics_and_payloads(&got),
        [pair("o/small", "s")],
        "the 500 B message exceeds bridge_max_packet_size"
    );
    assert!(!got[0].retain, "bridge_outgoing_retain false");
    assert_eq!(b.wait_bridge("o").dropped, 1);
    // start_type once: the link is not restarted.
    up.kill();
    up.restart();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!b.bridges()[0].connected, "start_type once reconnected");
    assert_eq!(up.log().matches("as edge-o").count(), 1, "{}", up.log());
}

/// QoS 0 messages leave the queue as they are written: many more than
/// the queue holds pass through a connected link.
#[test]
fn qos0_messages_leave_the_queue_once_written() {
    let up = Mosquitto::run("qos0", "");
    let b = edge(
        1,
        &format!(
            "max_queued_messages 50\nconnection z\naddress 127.0.0.1:{}\ntopic z/# out 0\n",
            up.port
        ),
    );
    b.wait_bridge("z");
    let mut sub = client(up.addr(), V311, "cloud-z0");
    sub.subscribe("z/#", QoS::AtMostOnce);
    let mut p = client(b.addr, V311, "edge-z0");
    for i in 0..500u32 {
        p.publish("z/n", &i.to_be_bytes(), QoS::AtMostOnce, false, 0);
        if i % 40 == 39 {
            // Paced: a burst never exceeds the queue.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let got = drain(&mut sub, Duration::from_millis(500));
    assert_eq!(got.len(), 500, "{:?}", b.bridges());
    let s = b.wait_bridge("z");
    assert_eq!((s.queued, s.sent, s.dropped), (0, 500, 0), "{s:?}");
}

/// Every reconnect subscribes again: `in` messages flow after the upstream
/// restarted with no memory of the bridge.
#[test]
fn in_subscriptions_are_made_again_after_a_reconnect() {
    let mut up = Mosquitto::run("resub", "");
    let b = edge(
        1,
        &format!(
            "connection rs\naddress 127.0.0.1:{}\nremote_clientid edge-rs\ntopic c/# in 1\n",
            up.port
        ),
    );
    b.wait_bridge("rs");
    let mut local = client(b.addr, V311, "local-rs");
    local.subscribe("c/#", QoS::AtLeastOnce);
    up.kill();
    up.restart();
    // The log spans both lives: the second subscription is the new one.
    up.wait_log_times("edge-rs 1 c/#", 2, Duration::from_secs(10));
    let mut cloud = client(up.addr(), V311, "cloud-rs");
    cloud.publish("c/after", b"again", QoS::AtLeastOnce, false, 1);
    let p = local.expect_publish();
    assert_eq!(
        (p.topic.as_str(), &p.payload[..]),
        ("c/after", &b"again"[..])
    );
    assert_eq!(b.wait_bridge("rs").reconnects, 1);
}

/// A message whose Message Expiry Interval passes while the link is down
/// is not sent when it comes back; one without an interval is.
#[test]
fn messages_that_expire_in_the_bridge_queue_are_not_sent() {
    let (mut up, port) = upstream_down_with_a_subscriber("expiry", "cloud-x", "x/#");
    let b = edge(
        1,
        &format!("connection x\naddress 127.0.0.1:{port}\nrestart_timeout 1\ntopic x/# out 1\n"),
    );
    let mut p = client(b.addr, V5, "edge-x");
    let mut short = common::publish("x/short", b"gone", QoS::AtLeastOnce, false, 1);
    short.properties.message_expiry_interval = Some(1);
    p.send(&Packet::Publish(short));
    assert!(matches!(p.recv(), Some(Packet::PubAck(_))));
    p.publish("x/kept", b"kept", QoS::AtLeastOnce, false, 2);
    std::thread::sleep(Duration::from_millis(2100));
    up.restart();
    b.wait_bridge("x");
    let mut sub = RawClient::connected(up.addr(), connect_packet(V311, "cloud-x", false, 60)).0;
    let got = drain(&mut sub, Duration::from_millis(700));
    assert_eq!(topics_and_payloads(&got), [pair("x/kept", "kept")]);
    assert_eq!(b.wait_bridge("x").dropped, 1);
}

#[test]
fn a_311_link_keeps_a_qos2_burst_within_mosquittos_inflight_quota() {
    // 40 QoS 2 messages reach the link while the upstream does not read
    // (stopped): Mosquitto takes 20 in flight from a 3.1.1 client and drops
    // the rest (after PUBREC), so the link may write only 20 ahead.
    let mut up = Mosquitto::run("burst", "");
    let mut cloud_sub = client(up.addr(), V311, "cloud-sub");
    cloud_sub.subscribe("q2/#", QoS::ExactlyOnce);
    let b = edge(
        2,
        &format!(
            "connection burst\naddress 127.0.0.1:{}\nremote_clientid edge-burst\n\
             topic q2/# out 2\n",
            up.port
        ),
    );
    b.wait_bridge("burst");
    let pid = up.pid() as i32;
    // SAFETY: signalling the Mosquitto child this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let mut p = client(b.addr, V311, "edge-pub");
    let payloads: Vec<String> = (0..40).map(|i| format!("m{i}")).collect();
    for (id, m) in (1u16..).zip(&payloads) {
        p.publish("q2/x", m.as_bytes(), QoS::ExactlyOnce, false, id);
    }
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut got = Vec::new();
    while got.len() < 40 && Instant::now() < deadline {
        got.extend(topics_and_payloads(&drain(
            &mut cloud_sub,
            Duration::from_millis(500),
        )));
    }
    let want: Vec<_> = payloads.iter().map(|m| pair("q2/x", m)).collect();
    assert_eq!(got, want, "every message once, in order");
    up.kill();
}
