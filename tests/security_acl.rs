//! `acl_file`: what clients may publish, subscribe to and receive, with
//! Mosquitto 2.0's meaning; reloads swapping the rules under connected
//! clients. Clients send usernames without a password file (as Mosquitto
//! takes them with `allow_anonymous true`).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::mosquitto_clients::{mosquitto_pub_v5, MosquittoSub};
use common::*;
use shardmq::config::{Config, Listener, Security};
use shardmq::protocol::{Packet, ProtocolVersion, PubResp, QoS, ReasonCode, SubscriptionOptions};
use shardmq::server::{self, StartError};

const SHARDS: usize = 2;
const QUIET: Duration = Duration::from_millis(300);

/// An ACL file for one test, removed when dropped.
struct AclFile(PathBuf);

impl AclFile {
    fn new(test: &str, text: &str) -> AclFile {
        let path =
            std::env::temp_dir().join(format!("shardmq-acl-{}-{test}.acl", std::process::id()));
        std::fs::write(&path, text).expect("write the acl file");
        AclFile(path)
    }

    fn rewrite(&self, text: &str) {
        std::fs::write(&self.0, text).expect("rewrite the acl file");
    }
}

impl Drop for AclFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn broker(acl: &AclFile) -> TestBroker {
    let path = acl.0.clone();
    TestBroker::with(SHARDS, move |c| c.acl_file = Some(path))
}

/// The running broker's config, for a reload.
fn reload_config(b: &TestBroker, acl: &AclFile, check_retain_source: bool) -> Config {
    Config {
        listeners: vec![Listener::new(b.addr)],
        shards: Some(b.shards),
        acl_file: Some(acl.0.clone()),
        check_retain_source,
        ..Config::default()
    }
}

/// A client homed on `shard`, connected with `username` (if any).
fn client(
    b: &TestBroker,
    version: ProtocolVersion,
    shard: usize,
    id: &str,
    username: Option<&str>,
) -> RawClient {
    let mut connect = connect_packet(version, &b.id_on(shard, id), true, 60);
    connect.username = username.map(str::to_string);
    RawClient::connected(b.addr, connect).0
}

/// Publishes at QoS 1 or 2 and returns the PUBACK or PUBREC (a QoS 2
/// flow that was not refused is completed).
fn publish_acked(c: &mut RawClient, topic: &str, qos: QoS, id: u16) -> PubResp {
    c.send(&Packet::Publish(publish(topic, b"m", qos, false, id)));
    match (qos, c.recv()) {
        (QoS::AtLeastOnce, Some(Packet::PubAck(ack))) => ack,
        (QoS::ExactlyOnce, Some(Packet::PubRec(rec))) => {
            if !rec.reason.is_error() {
                c.send(&Packet::PubRel(PubResp::new(pid(id))));
                assert!(matches!(c.recv(), Some(Packet::PubComp(_))));
            }
            rec
        }
        (qos, other) => {
            panic!("expected the acknowledgement of a QoS {qos:?} PUBLISH, got {other:?}")
        }
    }
}

fn suback_code(c: &mut RawClient, filter: &str) -> ReasonCode {
    let ack = c.subscribe(filter, QoS::AtLeastOnce);
    assert_eq!(ack.codes.len(), 1);
    ack.codes[0]
}

#[test]
fn user_sections_decide_publish_and_subscribe() {
    let acl = AclFile::new(
        "sections",
        "# anonymous clients\n\
         topic read public/#\n\
         \n\
         user alice\n\
         topic readwrite alice/#\n\
         user bob\n\
         topic write alice/inbox\n",
    );
    let b = broker(&acl);
    let mut alice = client(&b, ProtocolVersion::V5, 1, "alice", Some("alice"));
    assert_eq!(suback_code(&mut alice, "alice/#"), ReasonCode::GrantedQoS1);
    assert_eq!(
        suback_code(&mut alice, "public/#"),
        ReasonCode::NotAuthorized
    );
    let mut anon = client(&b, ProtocolVersion::V311, 0, "anon", None);
    assert_eq!(suback_code(&mut anon, "public/#"), ReasonCode::GrantedQoS1);
    assert_eq!(
        suback_code(&mut anon, "alice/#"),
        ReasonCode::UnspecifiedError,
        "3.1.1: 0x80"
    );

    let mut bob = client(&b, ProtocolVersion::V5, 0, "bob", Some("bob"));
    let ack = publish_acked(&mut bob, "alice/inbox", QoS::AtLeastOnce, 1);
    assert_eq!(ack.reason, ReasonCode::Success);
    assert_eq!(alice.expect_publish().topic.as_str(), "alice/inbox");
    let ack = publish_acked(&mut bob, "alice/other", QoS::AtLeastOnce, 2);
    assert_eq!(ack.reason, ReasonCode::NotAuthorized);
    alice.expect_silence(QUIET);
    b.stop();
}

#[test]
fn a_refused_publish_is_not_authorized_in_5_and_acknowledged_in_3() {
    let acl = AclFile::new("refused", "topic read #\ntopic write open/#\n");
    let b = broker(&acl);
    let mut sub = client(&b, ProtocolVersion::V5, 1, "sub", None);
    assert_eq!(suback_code(&mut sub, "#"), ReasonCode::GrantedQoS1);

    let mut v5 = client(&b, ProtocolVersion::V5, 0, "v5", None);
    for (qos, id) in [(QoS::AtLeastOnce, 1), (QoS::ExactlyOnce, 2)] {
        let ack = publish_acked(&mut v5, "closed/x", qos, id);
        assert_eq!(ack.reason, ReasonCode::NotAuthorized, "{qos:?}");
    }
    let mut v3 = client(&b, ProtocolVersion::V311, 0, "v3", None);
    for (qos, id) in [(QoS::AtLeastOnce, 3), (QoS::ExactlyOnce, 4)] {
        // A 3.x acknowledgement has no reason: the flow completes as if
        // the message had been delivered (a QoS 2 one through PUBCOMP).
        let ack = publish_acked(&mut v3, "closed/x", qos, id);
        assert_eq!(ack.reason, ReasonCode::Success, "{qos:?}");
    }
    v3.publish("closed/qos0", b"m", QoS::AtMostOnce, false, 0);
    sub.expect_silence(QUIET);
    v3.publish("open/x", b"m", QoS::AtLeastOnce, false, 5);
    assert_eq!(sub.expect_publish().topic.as_str(), "open/x");
    b.stop();
}

#[test]
fn patterns_substitute_the_client_id_and_the_username() {
    let acl = AclFile::new(
        "patterns",
        "pattern readwrite devices/%c/#\n\
         pattern read users/%u/#\n\
         topic write users/+/inbox\n",
    );
    let b = broker(&acl);
    let id = b.id_on(1, "dev");
    let mut dev =
        RawClient::connected(b.addr, connect_packet(ProtocolVersion::V5, &id, true, 60)).0;
    assert_eq!(
        suback_code(&mut dev, &format!("devices/{id}/#")),
        ReasonCode::GrantedQoS1
    );
    assert_eq!(
        suback_code(&mut dev, "devices/other/#"),
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        suback_code(&mut dev, "users/+/inbox"),
        ReasonCode::NotAuthorized,
        "%u: not for a client without a username"
    );
    let mut carol = client(&b, ProtocolVersion::V5, 0, "c", Some("carol"));
    assert_eq!(
        suback_code(&mut carol, "users/carol/#"),
        ReasonCode::GrantedQoS1
    );
    assert_eq!(
        suback_code(&mut carol, "users/dave/#"),
        ReasonCode::NotAuthorized
    );

    // Its own message comes back (QoS 0: no PUBACK to race with it).
    let own = format!("devices/{id}/state");
    dev.send(&Packet::Publish(publish(
        &own,
        b"m",
        QoS::AtMostOnce,
        false,
        0,
    )));
    assert_eq!(dev.recv_publish().topic.as_str(), own);
    let ack = publish_acked(
        &mut carol,
        &format!("devices/{id}/state"),
        QoS::AtLeastOnce,
        1,
    );
    assert_eq!(
        ack.reason,
        ReasonCode::NotAuthorized,
        "someone else's device"
    );
    // Anonymous `topic` lines and patterns both apply to an anonymous client.
    let ack = publish_acked(&mut dev, "users/carol/inbox", QoS::AtLeastOnce, 2);
    assert_eq!(ack.reason, ReasonCode::Success);
    assert_eq!(carol.expect_publish().topic.as_str(), "users/carol/inbox");
    b.stop();
}

#[test]
fn deny_wins_over_grants_on_publish_and_on_delivery() {
    let acl = AclFile::new(
        "deny",
        "topic readwrite a/#\n\
         topic deny a/secret/#\n\
         user w\n\
         topic write a/#\n",
    );
    let b = broker(&acl);
    let mut sub = client(&b, ProtocolVersion::V5, 1, "sub", None);
    assert_eq!(suback_code(&mut sub, "a/#"), ReasonCode::GrantedQoS1);
    assert_eq!(
        suback_code(&mut sub, "a/secret/+"),
        ReasonCode::NotAuthorized
    );
    let ack = publish_acked(&mut sub, "a/secret/x", QoS::AtLeastOnce, 1);
    assert_eq!(ack.reason, ReasonCode::NotAuthorized);

    // `w` may write there; `sub` may not read it.
    let mut w = client(&b, ProtocolVersion::V5, 0, "w", Some("w"));
    let ack = publish_acked(&mut w, "a/secret/x", QoS::AtLeastOnce, 1);
    assert_eq!(
        ack.reason,
        ReasonCode::Success,
        "matched, though not delivered"
    );
    publish_acked(&mut w, "a/open", QoS::AtLeastOnce, 2);
    assert_eq!(sub.expect_publish().topic.as_str(), "a/open");
    sub.expect_silence(QUIET);
    b.stop();
}

#[test]
fn retained_messages_pass_the_read_check() {
    let acl = AclFile::new(
        "retained",
        "user writer\n\
         topic write r/#\n\
         user reader\n\
         topic read r/#\n\
         topic deny r/hidden/#\n",
    );
    let b = broker(&acl);
    let mut writer = client(&b, ProtocolVersion::V5, 0, "writer", Some("writer"));
    writer.publish("r/hidden/x", b"h", QoS::AtLeastOnce, true, 1);
    writer.publish("r/open", b"o", QoS::AtLeastOnce, true, 2);
    let mut reader = client(&b, ProtocolVersion::V311, 1, "reader", Some("reader"));
    assert_eq!(suback_code(&mut reader, "r/#"), ReasonCode::GrantedQoS1);
    let got = reader.expect_publish();
    assert_eq!((got.topic.as_str(), got.retain), ("r/open", true));
    reader.expect_silence(QUIET);
    b.stop();
}

#[test]
fn check_retain_source_rechecks_the_publisher_now() {
    let acl = AclFile::new(
        "source",
        "user writer\ntopic write r/#\nuser reader\ntopic read r/#\n",
    );
    let b = TestBroker::with(SHARDS, |c| {
        c.acl_file = Some(acl.0.clone());
        c.check_retain_source = true;
    });
    let mut writer = client(&b, ProtocolVersion::V5, 0, "writer", Some("writer"));
    writer.publish("r/a", b"kept", QoS::AtLeastOnce, true, 1);

    // The writer loses write access: its retained message is withheld.
    acl.rewrite("user writer\ntopic write other\nuser reader\ntopic read r/#\n");
    b.handle()
        .reload(reload_config(&b, &acl, true))
        .expect("reloaded");
    let mut reader = client(&b, ProtocolVersion::V5, 1, "reader", Some("reader"));
    assert_eq!(suback_code(&mut reader, "r/#"), ReasonCode::GrantedQoS1);
    reader.expect_silence(QUIET);

    // Without check_retain_source only the reader's access counts.
    b.handle()
        .reload(reload_config(&b, &acl, false))
        .expect("reloaded");
    let mut late = client(&b, ProtocolVersion::V5, 1, "late", Some("reader"));
    assert_eq!(suback_code(&mut late, "r/#"), ReasonCode::GrantedQoS1);
    assert_eq!(late.expect_publish().payload.as_ref(), b"kept");
    b.stop();
}

#[test]
fn a_will_the_acl_does_not_grant_refuses_the_connect() {
    let acl = AclFile::new("will", "pattern write wills/%c\ntopic read wills/#\n");
    let b = broker(&acl);
    for version in VERSIONS {
        let id = b.id_on(1, "w");
        let own = with_will(
            connect_packet(version, &id, true, 60),
            &format!("wills/{id}"),
            b"bye",
            QoS::AtMostOnce,
            false,
        );
        let (_, ack) = RawClient::connect_with(b.addr, own);
        assert_eq!(ack.code, ReasonCode::Success, "{version:?}");
        let other = with_will(
            connect_packet(version, &id, true, 60),
            "wills/someone-else",
            b"bye",
            QoS::AtMostOnce,
            false,
        );
        let (mut refused, ack) = RawClient::connect_with(b.addr, other);
        assert_eq!(ack.code, ReasonCode::NotAuthorized, "{version:?}");
        refused.expect_closed();
    }
    b.stop();
}

#[test]
fn shared_group_members_without_read_access_are_passed_over() {
    let acl = AclFile::new(
        "shared",
        "topic write s/#\n\
         user a\n\
         topic read s/#\n\
         user b\n\
         topic read s/#\n\
         topic deny s/secret\n",
    );
    let b = broker(&acl);
    let mut a = client(&b, ProtocolVersion::V5, 0, "a", Some("a"));
    let mut bee = client(&b, ProtocolVersion::V5, 0, "b", Some("b"));
    let opts = SubscriptionOptions::new(QoS::AtLeastOnce);
    assert_eq!(
        a.subscribe_with("$share/g/s/#", opts).codes,
        [ReasonCode::GrantedQoS1]
    );
    assert_eq!(
        bee.subscribe_with("$share/g/s/#", opts).codes,
        [ReasonCode::GrantedQoS1]
    );
    let mut publ = client(&b, ProtocolVersion::V5, 1, "p", None);
    for id in 1..=4 {
        publish_acked(&mut publ, "s/secret", QoS::AtLeastOnce, id);
    }
    assert_eq!(
        a.expect_payloads(4).len(),
        4,
        "every one to the member that may read"
    );
    bee.expect_silence(QUIET);
    b.stop();
}

#[test]
fn a_reload_swaps_the_rules_under_connected_clients() {
    let acl = AclFile::new(
        "reload",
        "user sub\ntopic read r/#\nuser pub\ntopic write r/allowed\n",
    );
    let b = broker(&acl);
    let mut sub = client(&b, ProtocolVersion::V5, 1, "sub", Some("sub"));
    assert_eq!(suback_code(&mut sub, "r/#"), ReasonCode::GrantedQoS1);
    let mut publ = client(&b, ProtocolVersion::V5, 0, "pub", Some("pub"));
    let ack = publish_acked(&mut publ, "r/x", QoS::AtLeastOnce, 1);
    assert_eq!(ack.reason, ReasonCode::NotAuthorized);
    publish_acked(&mut publ, "r/allowed", QoS::AtLeastOnce, 2);
    assert_eq!(sub.expect_publish().topic.as_str(), "r/allowed");

    // The subscriber loses read access, the publisher gains write access.
    acl.rewrite("user sub\ntopic read other/#\nuser pub\ntopic write r/#\n");
    b.handle()
        .reload(reload_config(&b, &acl, false))
        .expect("reloaded");
    let ack = publish_acked(&mut publ, "r/x", QoS::AtLeastOnce, 3);
    assert_eq!(ack.reason, ReasonCode::Success);
    sub.expect_silence(QUIET);

    // Both stayed connected: read access back, the same subscription delivers.
    acl.rewrite("user sub\ntopic read r/#\nuser pub\ntopic write r/#\n");
    b.handle()
        .reload(reload_config(&b, &acl, false))
        .expect("reloaded");
    publish_acked(&mut publ, "r/y", QoS::AtLeastOnce, 4);
    assert_eq!(sub.expect_publish().topic.as_str(), "r/y");
    b.stop();
}

#[test]
fn a_bad_acl_file_keeps_the_rules_in_force_on_reload_and_fails_a_start() {
    let acl = AclFile::new("bad", "topic readwrite ok/#\n");
    let b = broker(&acl);
    acl.rewrite("topic readwrite ok/#\ntopic sometimes x\n");
    b.handle()
        .reload(reload_config(&b, &acl, false))
        .expect("the rest of the reload applies");
    let mut c = client(&b, ProtocolVersion::V5, 0, "c", None);
    assert_eq!(suback_code(&mut c, "ok/#"), ReasonCode::GrantedQoS1);
    let ack = publish_acked(&mut c, "other", QoS::AtLeastOnce, 1);
    assert_eq!(
        ack.reason,
        ReasonCode::NotAuthorized,
        "the old rules still apply"
    );
    b.stop();

    let config = Config {
        listeners: vec![Listener::new("127.0.0.1:0".parse().unwrap())],
        shards: Some(1),
        acl_file: Some(acl.0.clone()),
        ..Config::default()
    };
    match server::start(config) {
        Err(StartError::Acl(e)) => {
            let text = e.to_string();
            assert!(
                text.starts_with(&format!(
                    "{}:2: topic: unknown access `sometimes`",
                    acl.0.display()
                )),
                "{text}"
            );
        }
        Err(other) => panic!("expected an ACL error, got {other}"),
        Ok(_) => panic!("a broker started with a broken acl_file"),
    }
}

#[test]
fn mosquitto_clients_with_usernames_get_what_their_section_grants() {
    let acl = AclFile::new(
        "mosquitto",
        "user reader\ntopic read m/#\nuser writer\ntopic write m/public\n",
    );
    let b = broker(&acl);
    let port = b.addr.port();
    let mut sub = MosquittoSub::start(port, "msub", "m/#", "%t %p", &["-u", "reader"]);
    for (topic, payload) in [("m/private", "no"), ("m/public", "yes")] {
        let out = mosquitto_pub_v5(
            port,
            "mpub",
            &["-u", "writer", "-t", topic, "-m", payload],
            "",
        );
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(sub.message(), "m/public yes");
    sub.expect_no_message(QUIET);
    b.stop();
}

#[test]
fn per_listener_settings_give_each_listener_its_own_rules() {
    let acl = AclFile::new("listeners", "topic read r/open\ntopic write w/#\n");
    let path = acl.0.clone();
    let b = TestBroker::with(SHARDS, move |c| {
        c.per_listener_settings = true;
        let mut restricted = Listener::new("127.0.0.1:0".parse().unwrap());
        restricted.security = Some(Security {
            acl_file: Some(path),
            ..Security::default()
        });
        c.listeners.push(restricted);
    });
    let restricted = b.handle().local_addrs()[1];
    let on = |addr, shard: usize, id: &str| {
        let connect = connect_packet(ProtocolVersion::V5, &b.id_on(shard, id), true, 60);
        RawClient::connected(addr, connect).0
    };
    let mut open_sub = on(b.addr, 0, "open-sub");
    assert_eq!(suback_code(&mut open_sub, "r/#"), ReasonCode::GrantedQoS1);
    let mut acl_sub = on(restricted, 1, "acl-sub");
    assert_eq!(suback_code(&mut acl_sub, "r/#"), ReasonCode::GrantedQoS1);
    assert_eq!(suback_code(&mut acl_sub, "q/#"), ReasonCode::NotAuthorized);

    let mut acl_pub = on(restricted, 0, "acl-pub");
    let ack = publish_acked(&mut acl_pub, "r/open", QoS::AtLeastOnce, 1);
    assert_eq!(ack.reason, ReasonCode::NotAuthorized);
    let mut open_pub = on(b.addr, 1, "open-pub");
    for (id, topic) in [(1, "r/closed"), (2, "r/open")] {
        let ack = publish_acked(&mut open_pub, topic, QoS::AtLeastOnce, id);
        assert_eq!(ack.reason, ReasonCode::Success);
    }
    assert_eq!(open_sub.expect_publish().topic.as_str(), "r/closed");
    assert_eq!(open_sub.expect_publish().topic.as_str(), "r/open");
    assert_eq!(acl_sub.expect_publish().topic.as_str(), "r/open");
    acl_sub.expect_silence(QUIET);
    b.stop();
}

#[test]
fn a_will_is_checked_again_when_it_is_published() {
    let acl = AclFile::new("will-again", "pattern write wills/%c\ntopic read wills/#\n");
    let b = broker(&acl);
    let mut watcher = client(&b, ProtocolVersion::V5, 1, "watcher", None);
    assert_eq!(
        suback_code(&mut watcher, "wills/#"),
        ReasonCode::GrantedQoS1
    );
    let with_own_will = |shard: usize, prefix: &str| {
        let id = b.id_on(shard, prefix);
        let topic = format!("wills/{id}");
        let connect = with_will(
            connect_packet(ProtocolVersion::V5, &id, true, 60),
            &topic,
            b"gone",
            QoS::AtLeastOnce,
            false,
        );
        (RawClient::connected(b.addr, connect).0, topic)
    };
    let (first, topic) = with_own_will(0, "first");
    drop(first); // closed without DISCONNECT: the will goes out
    assert_eq!(watcher.expect_publish().topic.as_str(), topic);

    let (second, _) = with_own_will(0, "second");
    acl.rewrite("topic read wills/#\n");
    b.handle()
        .reload(reload_config(&b, &acl, false))
        .expect("reloaded");
    drop(second);
    watcher.expect_silence(QUIET);
    b.stop();
}

/// A session whose subscriptions the rules cover entirely skips the
/// per-message check: each later subscription, reconnection or reload
/// must bring it back where needed.
#[test]
fn the_read_check_shortcut_follows_subscriptions_and_usernames() {
    let acl = AclFile::new(
        "memo",
        "topic write #\n\
         user a\n\
         topic read a/#\n\
         topic read b/#\n\
         topic deny b/secret\n\
         user z\n\
         topic read other\n",
    );
    let b = broker(&acl);
    let id = b.id_on(1, "memo");
    let mut connect = connect_persistent(ProtocolVersion::V5, &id);
    connect.username = Some("a".into());
    let (mut sub, _) = RawClient::connected(b.addr, connect.clone());
    assert_eq!(suback_code(&mut sub, "a/#"), ReasonCode::GrantedQoS1);
    let mut publ = client(&b, ProtocolVersion::V5, 0, "pub", None);
    publish_acked(&mut publ, "a/1", QoS::AtLeastOnce, 1);
    assert_eq!(sub.expect_publish().topic.as_str(), "a/1");

    // The same session under another username reads nothing of it.
    sub.disconnect();
    connect.username = Some("z".into());
    let (mut sub, present) = RawClient::connected(b.addr, connect.clone());
    assert!(present, "the session and its subscriptions are kept");
    publish_acked(&mut publ, "a/2", QoS::AtLeastOnce, 2);
    sub.expect_silence(QUIET);

    // Back as `a`: b/# is only partly readable, b/secret must be checked.
    sub.disconnect();
    connect.username = Some("a".into());
    let (mut sub, _) = RawClient::connected(b.addr, connect);
    publish_acked(&mut publ, "a/3", QoS::AtLeastOnce, 3);
    assert_eq!(sub.expect_publish().topic.as_str(), "a/3");
    assert_eq!(suback_code(&mut sub, "b/#"), ReasonCode::GrantedQoS1);
    publish_acked(&mut publ, "b/secret", QoS::AtLeastOnce, 4);
    publish_acked(&mut publ, "b/ok", QoS::AtLeastOnce, 5);
    assert_eq!(sub.expect_publish().topic.as_str(), "b/ok");
    b.stop();
}
