//! MQTT 5.0 wills and session lifetimes at the byte level: Will Delay
//! Interval (published when due, when the session ends or at shutdown; not
//! when the client resumes in time), will properties forwarded whole,
//! Session Expiry Interval set in DISCONNECT, DISCONNECT 0x04 with a delay.
//!
//! The dying client is homed on shard 0 and the will's subscriber on
//! shard 1, so every will crosses the mesh.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use shardmq::protocol::{Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode};

/// A 5.0 subscriber to `will/#` homed on shard 1.
fn watcher(b: &TestBroker) -> RawClient {
    let (mut w, _) = RawClient::connected(
        b.addr,
        connect_packet(ProtocolVersion::V5, &b.id_on(1, "watch"), true, 60),
    );
    w.subscribe("will/#", QoS::AtLeastOnce);
    w
}

/// Connects `connect` and returns the client and Session Present.
fn connected(b: &TestBroker, connect: shardmq::protocol::Connect) -> (RawClient, bool) {
    RawClient::connected(b.addr, connect)
}

/// The will on `topic`, the next packet within `limit`.
fn expect_will(w: &mut RawClient, topic: &str, limit: Duration) -> Publish {
    match w.recv_within(limit) {
        Some(Some(Packet::Publish(p))) if p.topic.as_str() == topic => p,
        other => panic!("expected the will on {topic} within {limit:?}, got {other:?}"),
    }
}

/// Asserts that the broker closes `c` after a DISCONNECT with `reason`.
fn expect_disconnect(c: &mut RawClient, reason: ReasonCode) {
    let got = c.expect_closed();
    assert!(
        matches!(got.as_slice(), [Packet::Disconnect(d)] if d.reason == reason),
        "expected DISCONNECT {reason:?}, got {got:?}"
    );
}

fn disconnect_with(c: &mut RawClient, reason: ReasonCode, expiry: Option<u32>) {
    let mut d = Disconnect::new(reason);
    d.properties.session_expiry_interval = expiry;
    c.send(&Packet::Disconnect(d));
}

#[test]
fn delayed_will_is_published_after_the_delay() {
    let b = TestBroker::start(2);
    let mut w = watcher(&b);
    let (c, _) = connected(
        &b,
        with_delayed_will(&b.id_on(0, "dw"), 60, "will/delay", 1),
    );
    drop(c);
    w.expect_silence(Duration::from_millis(700));
    let p = expect_will(&mut w, "will/delay", Duration::from_secs(2));
    assert_eq!(&p.payload[..], b"gone");
    assert_eq!(p.properties.will_delay_interval, None);
}

/// A client back within the delay: resuming the session cancels the will
/// (and the resumed connection, with no will, ends without one); a Clean
/// Start ends the session, which sends it.
#[test]
fn a_reconnect_within_the_delay_decides_the_will() {
    let b = TestBroker::start(2);
    let mut w = watcher(&b);
    for (clean, topic, delay) in [(false, "will/back", 1), (true, "will/fresh", 60)] {
        let id = b.id_on(0, topic);
        drop(connected(&b, with_delayed_will(&id, 60, topic, delay)).0);
        std::thread::sleep(Duration::from_millis(300));
        let (mut again, present) = connected(&b, connect_v5_expiry(&id, clean, 60));
        assert_eq!(present, !clean, "{topic}: Session Present");
        if clean {
            expect_will(&mut w, topic, Duration::from_secs(1));
        } else {
            w.expect_silence(Duration::from_millis(1_800));
        }
        disconnect_with(&mut again, ReasonCode::NormalDisconnection, None);
        w.expect_silence(Duration::from_millis(200));
    }
}

#[test]
fn delayed_will_is_not_published_on_a_takeover_that_resumes() {
    let b = TestBroker::start(2);
    let mut w = watcher(&b);
    let id = b.id_on(0, "take");
    let (mut old, _) = connected(&b, with_delayed_will(&id, 60, "will/take", 1));
    let (_new, present) = connected(&b, connect_v5_expiry(&id, false, 60));
    assert!(present);
    expect_disconnect(&mut old, ReasonCode::SessionTakenOver);
    w.expect_silence(Duration::from_millis(1_800));
}

#[test]
fn delayed_will_is_published_when_the_session_ends_first() {
    let b = TestBroker::start(2);
    let mut w = watcher(&b);
    // Session Expiry 1 s (on the shard's second clock) beats a 60 s delay;
    // Session Expiry 0 ends the session, and the delay, with the connection.
    for (expiry, topic, limit_ms) in [(1, "will/expiry", 2_500), (0, "will/zero", 1_000)] {
        drop(connected(&b, with_delayed_will(&b.id_on(0, topic), expiry, topic, 60)).0);
        expect_will(&mut w, topic, Duration::from_millis(limit_ms));
    }
}

#[test]
fn delayed_will_is_published_at_shutdown() {
    let b = TestBroker::start(2);
    let mut w = watcher(&b);
    drop(
        connected(
            &b,
            with_delayed_will(&b.id_on(0, "stop"), 60, "will/stop", 60),
        )
        .0,
    );
    w.expect_silence(Duration::from_millis(300));
    b.stop();
    let got = w.expect_closed();
    assert!(
        got.iter()
            .any(|p| matches!(p, Packet::Publish(p) if p.topic.as_str() == "will/stop")),
        "the held-back will is sent at shutdown: {got:?}"
    );
}

#[test]
fn disconnect_with_will_message_honours_the_delay() {
    let b = TestBroker::start(2);
    let mut w = watcher(&b);
    let (mut c, _) = connected(&b, with_delayed_will(&b.id_on(0, "dw04"), 60, "will/04", 1));
    disconnect_with(&mut c, ReasonCode::DisconnectWithWillMessage, None);
    w.expect_silence(Duration::from_millis(700));
    expect_will(&mut w, "will/04", Duration::from_secs(2));
}

#[test]
fn will_properties_reach_a_v5_subscriber_whole() {
    let b = TestBroker::start(2);
    let mut w = watcher(&b);
    let mut c = with_delayed_will(&b.id_on(0, "props"), 0, "will/props", 0);
    let props = &mut c.will.as_mut().expect("will").properties;
    props.user_properties = vec![("k".into(), "v".into()), ("k".into(), "v2".into())];
    props.response_topic = Some("reply/here".into());
    props.correlation_data = Some(Bytes::from_static(b"\x00corr"));
    props.content_type = Some("text/plain".into());
    props.payload_format_indicator = Some(1);
    props.message_expiry_interval = Some(300);
    let (c, _) = connected(&b, c);
    drop(c);
    let p = expect_will(&mut w, "will/props", Duration::from_secs(2));
    let got = &p.properties;
    assert_eq!(
        got.user_properties,
        vec![("k".into(), "v".into()), ("k".into(), "v2".into())]
    );
    assert_eq!(got.response_topic.as_deref(), Some("reply/here"));
    assert_eq!(got.correlation_data.as_deref(), Some(&b"\x00corr"[..]));
    assert_eq!(got.content_type.as_deref(), Some("text/plain"));
    assert_eq!(got.payload_format_indicator, Some(1));
    // Counted down in transit, never up.
    let expiry = got.message_expiry_interval.expect("message expiry kept");
    assert!((299..=300).contains(&expiry), "{expiry}");
    assert_eq!(got.will_delay_interval, None);
}

#[test]
fn disconnect_shortens_the_session_expiry() {
    let b = TestBroker::start(2);
    let soon = b.id_on(0, "soon");
    let late = b.id_on(0, "late");
    for id in [&soon, &late] {
        let (mut c, _) = connected(&b, connect_v5_expiry(id, false, 3600));
        disconnect_with(&mut c, ReasonCode::NormalDisconnection, Some(2));
        assert!(c.expect_closed().is_empty());
    }
    std::thread::sleep(Duration::from_millis(300));
    let (_c, present) = connected(&b, connect_v5_expiry(&soon, false, 0));
    assert!(present, "within 2 s the session is still there");
    std::thread::sleep(Duration::from_millis(2_700));
    let (_c, present) = connected(&b, connect_v5_expiry(&late, false, 0));
    assert!(!present, "after 2 s the session is gone");
}

#[test]
fn disconnect_cannot_give_a_zero_expiry_session_a_lifetime() {
    let b = TestBroker::start(2);
    let mut w = watcher(&b);
    let id = b.id_on(0, "zero-exp");
    let (mut c, _) = connected(&b, with_delayed_will(&id, 0, "will/proto", 0));
    disconnect_with(&mut c, ReasonCode::NormalDisconnection, Some(30));
    expect_disconnect(&mut c, ReasonCode::ProtocolError);
    // A protocol error is an abnormal end: the will goes, the session ends.
    expect_will(&mut w, "will/proto", Duration::from_secs(2));
    let (_c, present) = connected(&b, connect_v5_expiry(&id, false, 0));
    assert!(!present);
}
