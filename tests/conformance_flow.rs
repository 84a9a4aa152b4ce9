//! Conformance of the PUBLISH and acknowledgement flow, on the wire: a
//! failed PUBREC ends a QoS 2 delivery, acknowledgements that do not fit
//! the flow are protocol errors, 5.0 publishers hear "No matching
//! subscribers", and clients cannot publish into `$SYS`. Mosquitto 2.0's
//! behaviour is the reference throughout.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use shardmq::protocol::{Disconnect, Packet, ProtocolVersion, PubResp, QoS, ReasonCode};

const V311: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// How long "nothing arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

fn resp(id: u16, reason: ReasonCode) -> PubResp {
    PubResp {
        reason,
        ..PubResp::new(pid(id))
    }
}

/// The broker closes `c` for a protocol error: 5.0 hears DISCONNECT 0x82
/// first, 3.1.1 nothing.
fn expect_protocol_error(c: &mut RawClient, what: &str) {
    let got: Vec<Packet> = c
        .expect_closed()
        .into_iter()
        .map(sans_reason_string)
        .collect();
    let want = if c.version.is_v5() {
        vec![Packet::Disconnect(Disconnect::new(
            ReasonCode::ProtocolError,
        ))]
    } else {
        Vec::new()
    };
    assert_eq!(got, want, "{what} ({:?})", c.version);
}

/// Sends a PUBLISH without waiting for its acknowledgement.
fn send_publish(c: &mut RawClient, topic: &str, payload: &[u8], qos: QoS, id: u16) {
    c.send(&Packet::Publish(publish(topic, payload, qos, false, id)));
}

/// The connection still answers: a PINGREQ gets its PINGRESP next.
fn expect_alive(c: &mut RawClient, what: &str) {
    c.send(&Packet::PingReq);
    assert_eq!(c.recv(), Some(Packet::PingResp), "{what} ({:?})", c.version);
}

/// A subscriber (shard 1) at `sub_qos` that has just received (and not
/// acknowledged) a message published at `pub_qos` on shard 0; returns it
/// with the packet id it was sent with.
fn delivered(
    b: &TestBroker,
    version: ProtocolVersion,
    sub_qos: QoS,
    pub_qos: QoS,
) -> (RawClient, u16) {
    let (mut sub, mut publ) = sub_and_pub(b, version, "flow/#", sub_qos);
    publ.publish("flow/x", b"m", pub_qos, false, 1);
    let p = sub.recv_publish();
    assert_eq!(p.qos, sub_qos.min(pub_qos));
    let id = p.packet_id.expect("QoS 1/2 has a packet id").get();
    (sub, id)
}

// 1. A failed PUBREC ends the QoS 2 flow.

#[test]
fn a_failed_pubrec_ends_the_qos2_flow_and_frees_the_slot() {
    let b = TestBroker::start(2);
    let sub_id = b.id_on(1, "rec-fail");
    let mut connect = connect_v5_expiry(&sub_id, true, 3600);
    connect.properties.receive_maximum = Some(1);
    let (mut sub, _) = RawClient::connected(b.addr, connect);
    sub.subscribe("rf/#", QoS::ExactlyOnce);
    let (mut publ, _) =
        RawClient::connected(b.addr, connect_packet(V5, &b.id_on(0, "rf-pub"), true, 60));
    publ.publish("rf/1", b"one", QoS::ExactlyOnce, false, 1);
    publ.publish("rf/2", b"two", QoS::ExactlyOnce, false, 2);

    let first = sub.recv_publish();
    assert_eq!(&first.payload[..], b"one");
    let id = first.packet_id.expect("QoS 2").get();
    sub.send(&Packet::PubRec(resp(id, ReasonCode::UnspecifiedError)));
    // No PUBREL: the window slot is free, so the second message comes next.
    let second = sub.recv_publish();
    assert_eq!(&second.payload[..], b"two", "no PUBREL for a failed PUBREC");
    let id2 = second.packet_id.expect("QoS 2").get();
    sub.send(&Packet::PubRec(resp(id2, ReasonCode::Success)));
    assert_eq!(sub.recv(), Some(Packet::PubRel(PubResp::new(pid(id2)))));
    sub.send(&Packet::PubComp(PubResp::new(pid(id2))));
    sub.expect_silence(QUIET);

    // The failed message is not redelivered when the session resumes.
    sub.disconnect();
    let (mut again, present) =
        RawClient::connected(b.addr, connect_v5_expiry(&sub_id, false, 3600));
    assert!(present);
    again.expect_silence(QUIET);
}

// 2. Acknowledgements that do not fit the flow.

/// Builds an acknowledgement packet (`Packet::PubAck`...).
type MakeAck = fn(PubResp) -> Packet;

/// PUBACK for a QoS 2 message, PUBREC or PUBCOMP for a QoS 1 one, PUBCOMP
/// before PUBREL was sent: each closes the connection.
#[test]
fn acknowledgements_that_do_not_fit_the_flow_are_protocol_errors() {
    let b = TestBroker::start(2);
    let cases: [(QoS, MakeAck, &str); 4] = [
        (QoS::ExactlyOnce, Packet::PubAck, "PUBACK for QoS 2"),
        (QoS::AtLeastOnce, Packet::PubRec, "PUBREC for QoS 1"),
        (QoS::AtLeastOnce, Packet::PubComp, "PUBCOMP for QoS 1"),
        (QoS::ExactlyOnce, Packet::PubComp, "PUBCOMP before PUBREL"),
    ];
    for version in VERSIONS {
        for (qos, ack, what) in cases {
            let (mut sub, id) = delivered(&b, version, qos, qos);
            sub.send(&ack(PubResp::new(pid(id))));
            expect_protocol_error(&mut sub, what);
        }
    }
}

#[test]
fn a_failed_pubrec_after_pubrel_was_sent_is_a_protocol_error() {
    let b = TestBroker::start(2);
    let (mut sub, id) = delivered(&b, V5, QoS::ExactlyOnce, QoS::ExactlyOnce);
    sub.send(&Packet::PubRec(PubResp::new(pid(id))));
    assert_eq!(sub.recv(), Some(Packet::PubRel(PubResp::new(pid(id)))));
    sub.send(&Packet::PubRec(resp(id, ReasonCode::UnspecifiedError)));
    expect_protocol_error(&mut sub, "failed PUBREC after PUBREL");
}

/// Like Mosquitto, an acknowledgement for an id no longer in flight is
/// tolerated (a resend or reconnect race); a repeated PUBREC and an
/// unknown PUBREL are answered (5.0: "Packet Identifier not found").
#[test]
fn acknowledgements_for_ids_not_in_flight_are_tolerated() {
    let b = TestBroker::start(2);
    for version in VERSIONS {
        let (mut sub, id) = delivered(&b, version, QoS::ExactlyOnce, QoS::ExactlyOnce);
        sub.send(&Packet::PubRec(PubResp::new(pid(id))));
        assert_eq!(sub.recv(), Some(Packet::PubRel(PubResp::new(pid(id)))));
        // A repeated PUBREC gets the PUBREL again.
        sub.send(&Packet::PubRec(PubResp::new(pid(id))));
        assert_eq!(sub.recv(), Some(Packet::PubRel(PubResp::new(pid(id)))));
        sub.send(&Packet::PubComp(PubResp::new(pid(id))));
        // Both answers to the two PUBRELs arrive: the second is for an id
        // no longer in flight.
        sub.send(&Packet::PubComp(PubResp::new(pid(id))));
        sub.send(&Packet::PubAck(PubResp::new(pid(999))));
        expect_alive(&mut sub, "PUBCOMP/PUBACK for an unknown id");

        let not_found = if version.is_v5() {
            ReasonCode::PacketIdentifierNotFound
        } else {
            ReasonCode::Success
        };
        sub.send(&Packet::PubRec(PubResp::new(pid(998))));
        let rel = sub.recv().map(sans_reason_string);
        assert_eq!(rel, Some(Packet::PubRel(resp(998, not_found))));
        sub.send(&Packet::PubRel(PubResp::new(pid(997))));
        let comp = sub.recv().map(sans_reason_string);
        assert_eq!(comp, Some(Packet::PubComp(resp(997, not_found))));
        // A failed PUBREC for an unknown id ends nothing and is not answered.
        if version.is_v5() {
            sub.send(&Packet::PubRec(resp(996, ReasonCode::UnspecifiedError)));
        }
        expect_alive(&mut sub, "unknown ids");
    }
}

// 3. No matching subscribers.

/// 5.0 publishers hear 0x10 when nothing matched; 3.1.1 ones the plain ack.
#[test]
fn a_publish_no_subscriber_anywhere_matched_is_acked_no_matching_subscribers() {
    let b = TestBroker::start(2);
    for version in VERSIONS {
        let reason = if version.is_v5() {
            ReasonCode::NoMatchingSubscribers
        } else {
            ReasonCode::Success
        };
        let (mut publ, _) = RawClient::connected(
            b.addr,
            connect_packet(version, &b.id_on(0, "nm-pub"), true, 60),
        );
        send_publish(&mut publ, "nobody/here", b"x", QoS::AtLeastOnce, 1);
        assert_eq!(publ.recv(), Some(Packet::PubAck(resp(1, reason))));
        send_publish(&mut publ, "nobody/here", b"x", QoS::ExactlyOnce, 2);
        assert_eq!(publ.recv(), Some(Packet::PubRec(resp(2, reason))));
        // A resend of the QoS 2 PUBLISH is answered alike.
        let mut dup = publish("nobody/here", b"x", QoS::ExactlyOnce, false, 2);
        dup.dup = true;
        publ.send(&Packet::Publish(dup));
        assert_eq!(publ.recv(), Some(Packet::PubRec(resp(2, reason))));
        // 0x10 is a success: the QoS 2 flow goes on.
        publ.send(&Packet::PubRel(PubResp::new(pid(2))));
        assert_eq!(publ.recv(), Some(Packet::PubComp(PubResp::new(pid(2)))));
    }
}

#[test]
fn a_subscriber_on_another_shard_or_this_one_is_a_match() {
    let b = TestBroker::start(2);
    // Subscriber on shard 1, publisher on shard 0: matched by the replica.
    let (mut sub, mut publ) = sub_and_pub(&b, V5, "m/+", QoS::ExactlyOnce);
    for (qos, id) in [(QoS::AtLeastOnce, 1), (QoS::ExactlyOnce, 2)] {
        send_publish(&mut publ, "m/x", b"x", qos, id);
        let ack = PubResp::new(pid(id));
        let want = if qos == QoS::AtLeastOnce {
            Packet::PubAck(ack)
        } else {
            Packet::PubRec(ack)
        };
        assert_eq!(publ.recv(), Some(want), "{qos:?}, other shard");
        sub.expect_publish();
    }
    // Subscriber on the publisher's own shard: matched by the local trie.
    let (mut local, _) =
        RawClient::connected(b.addr, connect_packet(V5, &b.id_on(0, "m-local"), true, 60));
    local.subscribe("l/#", QoS::AtLeastOnce);
    send_publish(&mut publ, "l/x", b"x", QoS::AtLeastOnce, 3);
    assert_eq!(publ.recv(), Some(Packet::PubAck(PubResp::new(pid(3)))));
    local.expect_publish();
}

// 4. `$SYS` is the broker's.

/// A broker publishing no `$SYS` tree of its own (`sys_interval 0`): what
/// a `$SYS/#` subscriber hears is what clients managed to publish.
fn sys_off() -> TestBroker {
    TestBroker::with(2, |c| c.sys_interval = Duration::ZERO)
}

/// A `$SYS/#` subscriber on shard 1 and a publisher on shard 0.
fn sys_watch(b: &TestBroker, version: ProtocolVersion) -> (RawClient, RawClient) {
    sub_and_pub(b, version, "$SYS/#", QoS::ExactlyOnce)
}

#[test]
fn v5_publish_to_sys_is_not_authorized_and_not_delivered() {
    let b = sys_off();
    let (mut sys, mut publ) = sys_watch(&b, V5);
    let (mut exact, _) = RawClient::connected(
        b.addr,
        connect_packet(V5, &b.id_on(1, "sys-exact"), true, 60),
    );
    exact.subscribe("$SYS", QoS::ExactlyOnce);
    for topic in ["$SYS/broker/uptime", "$SYS"] {
        send_publish(&mut publ, topic, b"0", QoS::AtMostOnce, 0);
        send_publish(&mut publ, topic, b"1", QoS::AtLeastOnce, 1);
        assert_eq!(
            publ.recv().map(sans_reason_string),
            Some(Packet::PubAck(resp(1, ReasonCode::NotAuthorized))),
            "{topic}"
        );
        send_publish(&mut publ, topic, b"2", QoS::ExactlyOnce, 2);
        assert_eq!(
            publ.recv().map(sans_reason_string),
            Some(Packet::PubRec(resp(2, ReasonCode::NotAuthorized))),
            "{topic}"
        );
        // The failed PUBREC ended that flow: the id is not pending.
        publ.send(&Packet::PubRel(PubResp::new(pid(2))));
        assert_eq!(
            publ.recv().map(sans_reason_string),
            Some(Packet::PubComp(resp(
                2,
                ReasonCode::PacketIdentifierNotFound
            ))),
            "{topic}"
        );
    }
    sys.expect_silence(QUIET);
    exact.expect_silence(Duration::from_millis(50));
    expect_alive(&mut publ, "after refused $SYS publishes");
}

#[test]
fn v311_publish_to_sys_is_dropped_silently() {
    let b = sys_off();
    let (mut sys, mut publ) = sys_watch(&b, V311);
    let topic = "$SYS/broker/clients/total";
    send_publish(&mut publ, topic, b"0", QoS::AtMostOnce, 0);
    // The plain handshakes complete (the client is not told), retained too.
    publ.publish(topic, b"1", QoS::AtLeastOnce, true, 1);
    publ.publish(topic, b"2", QoS::ExactlyOnce, false, 2);
    sys.expect_silence(QUIET);
    expect_alive(&mut publ, "after dropped $SYS publishes");
    // Nothing was retained either.
    let (mut late, _) = RawClient::connected(
        b.addr,
        connect_packet(V311, &b.id_on(1, "sys-late"), true, 60),
    );
    late.subscribe("$SYS/#", QoS::AtLeastOnce);
    late.expect_silence(QUIET);
}

/// Mosquitto lets clients write one `$SYS` pattern: a bridge's link state
/// (`$SYS/broker/connection/<client id>/state`), which a remote broker
/// bridging in here publishes (and sets as its will). Other `$` topics
/// are not the broker's.
#[test]
fn bridge_state_and_other_dollar_topics_may_be_published() {
    let b = sys_off();
    for version in VERSIONS {
        let (mut sys, mut publ) = sys_watch(&b, version);
        publ.publish(
            "$SYS/broker/connection/edge/state",
            b"1",
            QoS::AtLeastOnce,
            false,
            1,
        );
        assert_eq!(&sys.expect_publish().payload[..], b"1", "{version:?}");
        sys.subscribe("$SYSTEM/#", QoS::AtLeastOnce);
        publ.publish("$SYSTEM/x", b"2", QoS::AtLeastOnce, false, 2);
        assert_eq!(&sys.expect_publish().payload[..], b"2", "{version:?}");
    }
}

/// A real client: `mosquitto_pub -V 5 -d` prints the reason code of the
/// PUBACK it receives.
#[test]
fn mosquitto_pub_hears_no_matching_subscribers_and_not_authorized() {
    let b = TestBroker::start(2);
    let port = b.addr.port().to_string();
    for (topic, rc) in [("nobody/here", "RC:16"), ("$SYS/broker/uptime", "RC:135")] {
        let mut child = ChildGuard(
            Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-V", "5", "-q", "1", "-d"])
                .args(["-t", topic, "-m", "x", "-i", &b.id_on(0, "mp-rc")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run mosquitto_pub ({e})")),
        );
        let deadline = Instant::now() + WAIT;
        while child.0.try_wait().expect("wait").is_none() {
            assert!(
                Instant::now() < deadline,
                "mosquitto_pub {topic} did not finish"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = String::new();
        std::io::Read::read_to_string(child.0.stdout.as_mut().expect("piped"), &mut out)
            .expect("stdout");
        assert!(
            out.lines()
                .any(|l| l.contains("received PUBACK") && l.contains(rc)),
            "{topic}: want {rc}: {out}"
        );
    }
}
