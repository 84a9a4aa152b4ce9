//! MQTT 5.0 enhanced authentication (4.12) through the plug-in API: the
//! test registers a small challenge-response method with
//! `server::start_with`, as a program embedding the broker would, and
//! clients (raw bytes, MQTT.js) run the AUTH exchange: before CONNACK,
//! and again to re-authenticate. Wrong answers are refused without
//! saying what was wrong; unknown methods get CONNACK 0x8C.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use shardmq::protocol::{Auth, ConnAck, Connect, Packet, Properties, ProtocolVersion, ReasonCode};
use shardmq::server::StartOptions;
use shardmq::shard::auth::{AuthExchange, AuthMethod, AuthMethods, AuthStep};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// The challenge-response method: the client says "hello", the broker
/// answers a challenge, the client proves it knows [`SECRET`] by
/// answering "<challenge>:<secret>".
const METHOD: &str = "TEST-CHALLENGE";
const SECRET: &str = "s3cret";
/// A method that never ends its exchange.
const ENDLESS: &str = "TEST-ENDLESS";

struct Challenge;

/// One exchange's state. `Rc`: it lives on the shard thread only.
struct ChallengeExchange {
    challenge: Rc<Cell<Option<u64>>>,
    client_id: String,
}

impl AuthMethod for Challenge {
    fn start(&self, client_id: &str) -> Box<dyn AuthExchange> {
        Box::new(ChallengeExchange {
            challenge: Rc::new(Cell::new(None)),
            client_id: client_id.to_string(),
        })
    }
}

impl AuthExchange for ChallengeExchange {
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep {
        match (self.challenge.get(), data) {
            (None, Some(b"hello")) => {
                let nonce = self.client_id.len() as u64 * 7919 + 17;
                self.challenge.set(Some(nonce));
                AuthStep::Continue(Bytes::from(format!("nonce-{nonce}")))
            }
            (Some(nonce), Some(answer)) if answer == answer_to(&format!("nonce-{nonce}")) => {
                AuthStep::Success(Some(Bytes::from_static(b"welcome")))
            }
            _ => AuthStep::Fail(ReasonCode::NotAuthorized),
        }
    }
}

struct Endless;

impl AuthMethod for Endless {
    fn start(&self, _: &str) -> Box<dyn AuthExchange> {
        Box::new(Endless)
    }
}

impl AuthExchange for Endless {
    fn step(&mut self, _: Option<&[u8]>) -> AuthStep {
        AuthStep::Continue(Bytes::from_static(b"more"))
    }
}

/// What a client that knows the secret answers to `challenge`.
fn answer_to(challenge: &str) -> Vec<u8> {
    format!("{challenge}:{SECRET}").into_bytes()
}

/// A broker with the two test methods registered, the config adjusted by `f`.
fn broker_with(f: impl FnOnce(&mut shardmq::config::Config)) -> TestBroker {
    let mut auth = AuthMethods::default();
    auth.register(METHOD, Arc::new(Challenge))
        .expect("registers");
    auth.register(ENDLESS, Arc::new(Endless))
        .expect("registers");
    TestBroker::with_options(2, f, StartOptions { auth })
}

fn broker() -> TestBroker {
    broker_with(|_| {})
}

/// A 5.0 CONNECT for `id` naming `method` with `data`.
fn connect_with_method(id: &str, method: &str, data: &[u8]) -> Connect {
    let mut c = connect_packet(V5, id, true, 60);
    c.properties.authentication_method = Some(method.to_string());
    c.properties.authentication_data = Some(Bytes::copy_from_slice(data));
    c
}

/// An AUTH with `reason`, `method` and `data`.
fn auth(reason: ReasonCode, method: &str, data: &[u8]) -> Packet {
    let properties = Properties {
        authentication_method: Some(method.to_string()),
        authentication_data: Some(Bytes::copy_from_slice(data)),
        ..Properties::default()
    };
    Packet::Auth(Auth { reason, properties })
}

/// Expects an AUTH with `reason` and the method [`METHOD`]; returns its data.
fn expect_auth(c: &mut RawClient, reason: ReasonCode) -> String {
    match c.recv() {
        Some(Packet::Auth(a)) if a.reason == reason => {
            assert_eq!(a.properties.authentication_method.as_deref(), Some(METHOD));
            let data = a.properties.authentication_data.unwrap_or_default();
            String::from_utf8(data.to_vec()).expect("text data")
        }
        other => panic!("expected AUTH {reason:?}, got {other:?}"),
    }
}

fn expect_connack(c: &mut RawClient) -> ConnAck {
    match c.recv() {
        Some(Packet::ConnAck(a)) => a,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

/// Expects a refusing CONNACK with `code` that says nothing of why
/// (beyond "authentication failed"), then the close.
fn expect_refused(c: &mut RawClient, code: ReasonCode) {
    let ack = expect_connack(c);
    assert_eq!(ack.code, code, "{ack:?}");
    assert_eq!(
        ack.properties.reason_string.as_deref(),
        Some("authentication failed")
    );
    assert!(c.expect_closed().is_empty());
}

/// Runs the exchange for `id` up to the challenge; returns the client and
/// the challenge.
fn challenged(b: &TestBroker, id: &str) -> (RawClient, String) {
    let mut c = RawClient::open(b.addr, V5);
    c.send(&Packet::Connect(Box::new(connect_with_method(
        id, METHOD, b"hello",
    ))));
    let challenge = expect_auth(&mut c, ReasonCode::ContinueAuthentication);
    (c, challenge)
}

/// A client authenticated with [`METHOD`].
fn authenticated(b: &TestBroker, id: &str) -> RawClient {
    let (mut c, challenge) = challenged(b, id);
    assert_eq!(answer(&mut c, METHOD, &challenge).code, ReasonCode::Success);
    c
}

/// Answers `challenge` right, in an AUTH naming `method`; returns the CONNACK.
fn answer(c: &mut RawClient, method: &str, challenge: &str) -> ConnAck {
    let data = answer_to(challenge);
    c.send(&auth(ReasonCode::ContinueAuthentication, method, &data));
    expect_connack(c)
}

#[test]
fn a_challenge_response_exchange_ends_in_a_connack_with_the_method_and_data() {
    let b = broker();
    let (mut c, challenge) = challenged(&b, &b.id_on(1, "chal"));
    assert!(challenge.starts_with("nonce-"), "{challenge}");
    let ack = answer(&mut c, METHOD, &challenge);
    assert_eq!(ack.code, ReasonCode::Success);
    assert_eq!(
        ack.properties.authentication_method.as_deref(),
        Some(METHOD)
    );
    assert_eq!(
        ack.properties.authentication_data.as_deref(),
        Some(&b"welcome"[..])
    );
    // Attached: a subscriber on the other shard gets what it publishes.
    let (mut sub, _) = RawClient::connected(b.addr, connect_packet(V5, &b.id_on(0, "s"), true, 60));
    sub.subscribe("authed/#", shardmq::protocol::QoS::AtMostOnce);
    c.publish(
        "authed/t",
        b"hi",
        shardmq::protocol::QoS::AtLeastOnce,
        false,
        1,
    );
    assert_eq!(&sub.expect_publish().payload[..], b"hi");
}

#[test]
fn a_client_of_a_method_connects_where_anonymous_clients_may_not() {
    let b = broker_with(|c| c.allow_anonymous = false);
    let (_anonymous, ack) = RawClient::connect(b.addr, V5, "anonymous", true);
    assert_eq!(ack.code, ReasonCode::NotAuthorized);
    authenticated(&b, &b.id_on(0, "member"));
}

#[test]
fn a_wrong_answer_is_refused_0x87_without_saying_why() {
    let b = broker();
    let (mut c, _) = challenged(&b, &b.id_on(0, "wrong"));
    c.send(&auth(
        ReasonCode::ContinueAuthentication,
        METHOD,
        b"nonce-0:guess",
    ));
    expect_refused(&mut c, ReasonCode::NotAuthorized);
    // A wrong first message too.
    let mut c = RawClient::open(b.addr, V5);
    c.send(&Packet::Connect(Box::new(connect_with_method(
        "w2", METHOD, b"hi",
    ))));
    expect_refused(&mut c, ReasonCode::NotAuthorized);
}

#[test]
fn an_unknown_method_is_refused_0x8c() {
    let b = broker();
    let connect = connect_with_method(&b.id_on(1, "unknown"), "SCRAM-SHA-1", b"x");
    let (mut c, ack) = RawClient::connect_with(b.addr, connect);
    assert_eq!(ack.code, ReasonCode::BadAuthenticationMethod);
    assert!(c.expect_closed().is_empty());
}

#[test]
fn an_exchange_that_never_ends_is_refused_after_its_rounds() {
    let b = broker();
    let mut c = RawClient::open(b.addr, V5);
    c.send(&Packet::Connect(Box::new(connect_with_method(
        "endless", ENDLESS, b"x",
    ))));
    let mut rounds = 0;
    loop {
        match c.recv() {
            Some(Packet::Auth(a)) if a.reason == ReasonCode::ContinueAuthentication => {
                rounds += 1;
                assert!(rounds <= u32::from(shardmq::limits::MAX_AUTH_ROUNDS));
                c.send(&auth(ReasonCode::ContinueAuthentication, ENDLESS, b"y"));
            }
            Some(Packet::ConnAck(a)) => {
                assert_eq!(a.code, ReasonCode::NotAuthorized);
                break;
            }
            other => panic!("expected AUTH or CONNACK, got {other:?}"),
        }
    }
    assert_eq!(rounds, u32::from(shardmq::limits::MAX_AUTH_ROUNDS));
}

#[test]
fn a_client_stalling_mid_exchange_is_closed_by_the_connect_timeout() {
    let b = broker_with(|c| c.connect_timeout = Duration::from_secs(1));
    let started = Instant::now();
    let (mut c, _) = challenged(&b, "staller");
    assert!(c.expect_closed().is_empty(), "closed without CONNACK");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3500), "closed after {took:?}");
}

#[test]
fn a_packet_other_than_auth_before_connack_is_a_protocol_error() {
    let b = broker();
    let (mut c, _) = challenged(&b, &b.id_on(1, "eager"));
    c.send(&Packet::PingReq);
    let ack = expect_connack(&mut c);
    assert_eq!(ack.code, ReasonCode::ProtocolError);
    assert!(c.expect_closed().is_empty());
    // An AUTH naming another method too.
    let (mut c, challenge) = challenged(&b, &b.id_on(0, "other"));
    let ack = answer(&mut c, ENDLESS, &challenge);
    assert_eq!(ack.code, ReasonCode::ProtocolError);
}

#[test]
fn re_authentication_with_the_same_method_runs_the_exchange_again() {
    let b = broker();
    let mut c = authenticated(&b, &b.id_on(1, "reauth"));
    c.send(&auth(ReasonCode::ReAuthenticate, METHOD, b"hello"));
    let challenge = expect_auth(&mut c, ReasonCode::ContinueAuthentication);
    c.send(&auth(
        ReasonCode::ContinueAuthentication,
        METHOD,
        &answer_to(&challenge),
    ));
    assert_eq!(expect_auth(&mut c, ReasonCode::Success), "welcome");
    c.send(&Packet::PingReq);
    assert_eq!(c.recv(), Some(Packet::PingResp), "still connected");
}

#[test]
fn a_failed_re_authentication_disconnects_0x87() {
    let b = broker();
    let mut c = authenticated(&b, &b.id_on(0, "refail"));
    c.send(&auth(ReasonCode::ReAuthenticate, METHOD, b"hello"));
    expect_auth(&mut c, ReasonCode::ContinueAuthentication);
    c.send(&auth(ReasonCode::ContinueAuthentication, METHOD, b"wrong"));
    match c.expect_closed().as_slice() {
        [Packet::Disconnect(d)] => {
            assert_eq!(d.reason, ReasonCode::NotAuthorized);
            assert_eq!(
                d.properties.reason_string.as_deref(),
                Some("authentication failed")
            );
        }
        other => panic!("expected DISCONNECT 0x87, got {other:?}"),
    }
}

#[test]
fn auth_with_another_method_or_none_is_a_protocol_error() {
    let b = broker();
    let cases: [(&str, bool, Packet); 3] = [
        (
            "another method",
            true,
            auth(ReasonCode::ReAuthenticate, ENDLESS, b"x"),
        ),
        (
            "0x18 with no exchange running",
            true,
            auth(ReasonCode::ContinueAuthentication, METHOD, b"x"),
        ),
        (
            "connected without a method",
            false,
            auth(ReasonCode::ReAuthenticate, METHOD, b"hello"),
        ),
    ];
    for (case, with_method, packet) in cases {
        let id = b.id_on(1, "proto");
        let mut c = if with_method {
            authenticated(&b, &id)
        } else {
            RawClient::connected(b.addr, connect_packet(V5, &id, true, 60)).0
        };
        c.send(&packet);
        match c.expect_closed().as_slice() {
            [Packet::Disconnect(d)] => assert_eq!(d.reason, ReasonCode::ProtocolError, "{case}"),
            other => panic!("{case}: expected DISCONNECT 0x82, got {other:?}"),
        }
    }
}

/// MQTT.js authenticating with [`METHOD`]: answers the challenge in its
/// `handleAuth`, prints the CONNACK's method and data.
const MQTTJS_AUTH: &str = "
const method = 'TEST-CHALLENGE';
const c = mqtt.connect(url, { protocolVersion: 5, clientId: 'js-auth', reconnectPeriod: 0,
  properties: { authenticationMethod: method, authenticationData: Buffer.from('hello') } });
c.handleAuth = (packet, cb) => {
  const challenge = packet.properties.authenticationData.toString();
  console.log(`challenge ${challenge.startsWith('nonce-')}`);
  cb(null, { cmd: 'auth', reasonCode: 24, properties: { authenticationMethod: method,
    authenticationData: Buffer.from(`${challenge}:SECRET`) } });
};
c.on('connect', (ack) => {
  console.log(`connected ${ack.properties.authenticationMethod} ${ack.properties.authenticationData}`);
  c.end(() => process.exit(0));
});
c.on('error', (e) => { console.log(`error ${e.message}`); process.exit(2); });
";

#[test]
fn mqtt_js_authenticates_through_the_exchange() {
    let b = broker();
    let url = format!("mqtt://127.0.0.1:{}", b.addr.port());
    let mut js = mqttjs::NodeScript::spawn(&MQTTJS_AUTH.replace("SECRET", SECRET), &url);
    assert_eq!(js.next_line(), "challenge true");
    assert_eq!(js.next_line(), "connected TEST-CHALLENGE welcome");
    assert!(js.wait().success());
}
