//! Durable state: nothing acknowledged is lost across a restart or a
//! `kill -9` of the broker, with publishers and persistent subscribers on
//! different shards; retained messages and sessions come back, also with
//! another shard count; a damaged journal tail is cut off and the rest
//! served.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::process::{publish_acked, Process};
use common::*;
use shardmq::protocol::{ProtocolVersion, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shardmq-persist-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// An in-process broker with `shards` shards journaling into `dir`.
fn broker(shards: usize, dir: &Path) -> TestBroker {
    TestBroker::with(shards, |c| {
        c.persistence = true;
        c.persistence_location = Some(dir.to_path_buf());
    })
}

/// Every PUBLISH until `quiet` passes without one (acknowledged), as
/// (topic, payload, dup).
fn received(c: &mut RawClient, quiet: Duration) -> Vec<(String, String, bool)> {
    drain(c, quiet)
        .into_iter()
        .map(|p| {
            let payload = String::from_utf8_lossy(&p.payload).into_owned();
            (p.topic.as_str().to_string(), payload, p.dup)
        })
        .collect()
}

fn payloads(got: &[(String, String, bool)]) -> Vec<String> {
    got.iter().map(|(_, p, _)| p.clone()).collect()
}

#[test]
fn sessions_queues_and_retained_messages_survive_a_restart_with_another_shard_count() {
    let d = dir("restart");
    let sub_id = "persistent-sub";
    {
        let b = broker(2, &d);
        let (mut sub, _) = RawClient::connected(b.addr, connect_v5_expiry(sub_id, true, 3600));
        sub.subscribe("q/#", QoS::AtLeastOnce);
        sub.disconnect();
        let (mut p, _) =
            RawClient::connected(b.addr, connect_packet(V5, &b.id_on(0, "pub"), true, 60));
        p.publish("r/1", b"kept", QoS::AtLeastOnce, true, 1);
        p.publish("r/2", b"deleted", QoS::AtLeastOnce, true, 2);
        p.publish("r/2", b"", QoS::AtLeastOnce, true, 3);
        for i in 0..5u16 {
            p.publish(
                "q/a",
                format!("m{i}").as_bytes(),
                QoS::AtLeastOnce,
                false,
                10 + i,
            );
        }
        b.stop();
    }
    for shards in [3, 1] {
        let b = broker(shards, &d);
        let (mut sub, present) =
            RawClient::connected(b.addr, connect_v5_expiry(sub_id, false, 3600));
        assert!(present, "{shards} shards: the session is back");
        if shards == 3 {
            let got = payloads(&received(&mut sub, Duration::from_millis(400)));
            assert_eq!(got, ["m0", "m1", "m2", "m3", "m4"], "in order, once");
        }
        sub.disconnect();
        let (mut r, _) = RawClient::connected(b.addr, connect_packet(V5, "reader", true, 60));
        r.subscribe("r/#", QoS::AtLeastOnce);
        let got = received(&mut r, Duration::from_millis(400));
        assert_eq!(
            payloads(&got),
            ["kept"],
            "{shards} shards: the retained set"
        );
        b.stop();
    }
    // The subscription survived too: a new message is queued for it.
    let b = broker(2, &d);
    let (mut p, _) = RawClient::connected(b.addr, connect_packet(V5, "pub2", true, 60));
    p.publish("q/b", b"later", QoS::AtLeastOnce, false, 1);
    let (mut sub, _) = RawClient::connected(b.addr, connect_v5_expiry(sub_id, false, 3600));
    assert_eq!(
        payloads(&received(&mut sub, Duration::from_millis(400))),
        ["later"]
    );
    b.stop();
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn every_acknowledged_message_survives_kill_9_once() {
    for sync in ["written", "fsync"] {
        let d = dir(&format!("kill-{sync}"));
        let port = free_port();
        let broker = Process::start(&d, port, sync);
        // One subscriber offline, one online that takes but never acks.
        for (id, stay) in [("offline-sub", false), ("online-sub", true)] {
            let (mut s, _) = RawClient::connected(broker.addr, connect_v5_expiry(id, true, 3600));
            for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
                s.subscribe_with("k/#", shardmq::protocol::SubscriptionOptions::new(qos));
            }
            if stay {
                std::mem::forget(s); // stays connected, acknowledges nothing
            } else {
                s.disconnect();
            }
        }
        let mut acked = publish_acked(broker.addr, "q1pub", "k/x", QoS::AtLeastOnce, 50);
        acked.extend(publish_acked(
            broker.addr,
            "q2pub",
            "k/x",
            QoS::ExactlyOnce,
            50,
        ));
        broker.kill_9();

        let broker = Process::start(&d, port, sync);
        for id in ["offline-sub", "online-sub"] {
            let (mut s, present) =
                RawClient::connected(broker.addr, connect_v5_expiry(id, false, 3600));
            assert!(present, "{sync}: {id}'s session is back");
            let got = received(&mut s, Duration::from_millis(500));
            let mut seen = BTreeSet::new();
            for (_, payload, dup) in &got {
                // QoS 2 is exactly once: a resend is marked DUP and the
                // client drops it by packet id, so count first copies.
                assert!(
                    seen.insert(payload.clone()) || *dup,
                    "{sync}: {id}: {payload} twice"
                );
            }
            let missing: Vec<&String> = acked.iter().filter(|a| !seen.contains(*a)).collect();
            assert!(
                missing.is_empty(),
                "{sync}: {id} lost acknowledged {missing:?}"
            );
        }
        drop(broker);
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn a_torn_or_corrupt_journal_tail_is_cut_off_and_the_rest_served() {
    let d = dir("tail");
    {
        let b = broker(1, &d);
        let (mut p, _) = RawClient::connected(b.addr, connect_packet(V5, "pub", true, 60));
        p.publish("t/1", b"one", QoS::AtLeastOnce, true, 1);
        p.publish("t/2", b"two", QoS::AtLeastOnce, true, 2);
        b.stop();
    }
    let journal = |d: &Path| -> PathBuf {
        let current = std::fs::read_to_string(d.join("shardmq.journal/CURRENT")).expect("CURRENT");
        d.join(format!(
            "shardmq.journal/gen-{}/shard-0.journal",
            current.trim()
        ))
    };
    for damage in [
        &b"\x00\x00\x01"[..],
        &b"\x00\x00\x00\x09\xde\xad\xbe\xefJUNKJUNK"[..],
    ] {
        let path = journal(&d);
        let mut bytes = std::fs::read(&path).expect("journal");
        bytes.extend_from_slice(damage);
        std::fs::write(&path, bytes).expect("damaged");
        let b = broker(2, &d);
        let (mut r, _) = RawClient::connected(b.addr, connect_packet(V5, "reader", true, 60));
        r.subscribe("t/#", QoS::AtLeastOnce);
        let mut got = payloads(&received(&mut r, Duration::from_millis(400)));
        got.sort();
        assert_eq!(got, ["one", "two"], "served after {damage:?}");
        b.stop();
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn persistence_keys_map_to_the_journal_directory() {
    let (c, _) = shardmq::config::Config::parse(
        "persistence true\npersistence_location /var/lib/mosquitto/\npersistence_file mosquitto.db\nautosave_interval 1800\n",
        "m.conf",
    )
    .expect("parses");
    assert_eq!(
        c.journal_dir(),
        Some(PathBuf::from("/var/lib/mosquitto/mosquitto.db.journal"))
    );
    let err = shardmq::config::Config::parse("persistence_sync maybe\n", "m.conf").unwrap_err();
    assert!(
        err.to_string().contains("m.conf:1: persistence_sync"),
        "{err}"
    );
    let _ = ReasonCode::Success;
}

#[test]
fn journals_are_compacted_to_live_state_while_running() {
    let d = dir("compact");
    let b = TestBroker::with(2, |c| {
        c.persistence = true;
        c.persistence_location = Some(d.clone());
        c.persistence_compact_size = 4096;
    });
    let sub_id = b.id_on(1, "steady");
    let (mut sub, _) = RawClient::connected(b.addr, connect_v5_expiry(&sub_id, true, 3600));
    sub.subscribe("c/#", QoS::AtLeastOnce);
    let (mut p, _) = RawClient::connected(b.addr, connect_packet(V5, &b.id_on(0, "pub"), true, 60));
    let body = [b'x'; 100];
    for round in 0..12u16 {
        for i in 0..25u16 {
            p.publish("c/x", &body, QoS::AtLeastOnce, false, i + 1);
        }
        for _ in 0..25 {
            let got = sub.expect_publish();
            assert_eq!(got.payload.len(), body.len(), "round {round}");
        }
    }
    sub.disconnect();
    p.publish("c/x", b"queued", QoS::AtLeastOnce, false, 1);
    // 300 deliveries (~75 KB of records) went through; live state is
    // one session with one queued message.
    let current = std::fs::read_to_string(d.join("shardmq.journal/CURRENT")).expect("CURRENT");
    let gen = d.join(format!("shardmq.journal/gen-{}", current.trim()));
    // A compaction is written off the shard's loop: the bound holds once
    // the last one is in place.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let total: u64 = std::fs::read_dir(&gen)
            .expect("generation")
            .filter_map(Result::ok)
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum();
        if total < 3 * 4096 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "journals hold {total} bytes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    b.stop();
    let b = broker(2, &d);
    let (mut sub, present) = RawClient::connected(b.addr, connect_v5_expiry(&sub_id, false, 3600));
    assert!(present);
    assert_eq!(
        payloads(&received(&mut sub, Duration::from_millis(400))),
        ["queued"]
    );
    b.stop();
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_shared_group_members_queue_survives_a_restart() {
    let d = dir("shared");
    let member = "member-away";
    {
        let b = broker(3, &d);
        let (mut m, _) = RawClient::connected(b.addr, connect_v5_expiry(member, true, 3600));
        m.subscribe("$share/g/jobs/#", QoS::AtLeastOnce);
        m.disconnect();
        let (mut p, _) =
            RawClient::connected(b.addr, connect_packet(V5, &b.id_on(0, "pub"), true, 60));
        for i in 0..4u16 {
            p.publish(
                "jobs/x",
                format!("j{i}").as_bytes(),
                QoS::AtLeastOnce,
                false,
                i + 1,
            );
        }
        b.stop();
    }
    let b = broker(2, &d);
    let (mut m, present) = RawClient::connected(b.addr, connect_v5_expiry(member, false, 3600));
    assert!(present);
    let got = payloads(&received(&mut m, Duration::from_millis(400)));
    assert_eq!(got, ["j0", "j1", "j2", "j3"]);
    b.stop();
    let _ = std::fs::remove_dir_all(&d);
}

/// A shared delivery the picked shard passes on (its only member there is
/// offline) is acknowledged once the shard that takes it has journaled it
/// (its ticket): after a kill -9 every acknowledged message is queued for
/// the member that took it.
#[test]
fn shared_deliveries_passed_on_survive_kill_9() {
    let d = dir("shared-pass-on");
    let port = free_port();
    let broker = Process::start(&d, port, "written");
    let away = id_on(0, 2, "away");
    let here = id_on(1, 2, "here");
    let (mut m, _) = RawClient::connected(broker.addr, connect_v5_expiry(&away, true, 3600));
    m.subscribe("$share/g/jobs/#", QoS::AtLeastOnce);
    m.disconnect();
    let (mut m, _) = RawClient::connected(broker.addr, connect_v5_expiry(&here, true, 3600));
    m.subscribe("$share/g/jobs/#", QoS::AtLeastOnce);
    std::mem::forget(m); // stays connected, acknowledges nothing
                         // Published on shard 1: a pick of shard 0 finds only the offline
                         // member and passes the message back to shard 1.
    let publisher = id_on(1, 2, "pub");
    let acked = publish_acked(broker.addr, &publisher, "jobs/x", QoS::AtLeastOnce, 40);
    broker.kill_9();

    let broker = Process::start(&d, port, "written");
    let mut seen = BTreeSet::new();
    for id in [&here, &away] {
        let (mut s, present) =
            RawClient::connected(broker.addr, connect_v5_expiry(id, false, 3600));
        assert!(present, "{id}'s session is back");
        seen.extend(payloads(&received(&mut s, Duration::from_millis(500))));
    }
    let missing: Vec<&String> = acked.iter().filter(|a| !seen.contains(*a)).collect();
    assert!(missing.is_empty(), "acknowledged and lost: {missing:?}");
    drop(broker);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn wills_pending_at_kill_9_are_published_after_the_restart_unless_resumed() {
    let d = dir("wills");
    let port = free_port();
    // Small journals: the wills must survive the compactions below too.
    let compact = "persistence_compact_size 4096\n";
    let broker = Process::start_with(&d, port, "written", compact);
    let (mut s, _) = RawClient::connected(broker.addr, connect_v5_expiry("will-sub", true, 3600));
    s.subscribe("will/#", QoS::AtLeastOnce);
    s.disconnect();
    // Connected when the broker dies: its will is due after the restart.
    let live = with_will(
        connect_v5_expiry("w-live", true, 3600),
        "will/live",
        b"1",
        QoS::AtLeastOnce,
        false,
    );
    let (_live, _) = RawClient::connected(broker.addr, live);
    // Gone before the broker dies, will held back 2 s / 30 s.
    for (id, delay) in [("w-delayed", 2), ("w-back", 30)] {
        let c = with_delayed_will(id, 3600, &format!("will/{id}"), delay);
        let (gone, _) = RawClient::connected(broker.addr, c);
        drop(gone);
    }
    // Retained updates on both shards' topics: ~30 KB of records, live
    // state a few hundred bytes, so each shard compacts its journal.
    let (mut p, _) = RawClient::connected(broker.addr, connect_packet(V5, "filler", true, 60));
    for i in 0..240u16 {
        let topic = format!("fill/{}", i % 8);
        p.publish(&topic, &[b'x'; 100], QoS::AtLeastOnce, true, i + 1);
    }
    std::thread::sleep(Duration::from_millis(300));
    broker.kill_9();

    let broker = Process::start_with(&d, port, "written", compact);
    // Back within its delay: that will is cancelled.
    let (_back, present) =
        RawClient::connected(broker.addr, connect_v5_expiry("w-back", false, 3600));
    assert!(present);
    let (mut s, _) = RawClient::connected(broker.addr, connect_v5_expiry("will-sub", false, 3600));
    let mut got: Vec<String> = received(&mut s, Duration::from_secs(3))
        .into_iter()
        .map(|(topic, _, _)| topic)
        .collect();
    got.sort();
    assert_eq!(got, ["will/live", "will/w-delayed"]);
    drop(broker);
    let _ = std::fs::remove_dir_all(&d);
}
