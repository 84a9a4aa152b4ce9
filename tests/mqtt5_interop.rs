//! MQTT 5.0 features through two independent clients, Mosquitto's
//! (`mosquitto_pub`/`mosquitto_sub -V 5`) and MQTT.js: sessions kept by
//! Session Expiry and discarded by Clean Start, delayed wills with their
//! properties (and cancelled by a resume), application properties end to
//! end, and what a CONNACK announces as MQTT.js reads it. Publishers are
//! homed on shard 0 and subscribers on shard 1 throughout.
//!
//! Message Expiry, inbound Topic Aliases and Subscription Identifiers
//! through `mosquitto_sub`/`mosquitto_pub` are in their own suites
//! (`mqtt5_expiry`, `mqtt5_topic_alias`, `mqtt5_subscription_ids`);
//! subscription options in `mqtt5_sub_options`, flow control and packet
//! sizes in `mqtt5_flow`.

mod common;

use std::time::{Duration, Instant};

use common::mosquitto_clients::{mosquitto_pub_v5, MosquittoSub};
use common::*;

/// Publishes `payload` at QoS 1 on `topic` with `mosquitto_pub` as a
/// client homed on shard 0, with `extra` arguments.
fn mosquitto_publish(b: &TestBroker, topic: &str, payload: &str, extra: &[&str]) {
    let args = [&["-q", "1", "-t", topic, "-m", payload], extra].concat();
    let out = mosquitto_pub_v5(b.addr.port(), &b.id_on(0, "mpub"), &args, "");
    assert!(out.status.success(), "mosquitto_pub: {out:?}");
}

/// `mosquitto_sub` homed on shard 1 on `filter` at QoS 1, printing topic,
/// payload, User Properties, Content Type, Payload Format Indicator,
/// Response Topic, Correlation Data and Message Expiry Interval.
fn properties_watcher(b: &TestBroker, name: &str, filter: &str) -> MosquittoSub {
    let id = b.id_on(1, name);
    let format = "%t %p|%P|%C|%F|%R|%D|%E";
    MosquittoSub::start(b.addr.port(), &id, filter, format, &["-q", "1"])
}

/// The next message `sub` prints is `fields` then the Message Expiry
/// Interval: `expiry`, or a second less (it counts down in the broker).
fn expect_printed(sub: &mut MosquittoSub, fields: &str, expiry: u32) {
    let got = sub.message();
    let left = got.strip_prefix(fields).and_then(|r| r.strip_prefix('|'));
    assert!(
        left.is_some_and(|l| l == expiry.to_string() || l == (expiry - 1).to_string()),
        "want {fields}|{expiry}, got {got}"
    );
}

#[test]
fn mosquitto_sub_keeps_its_session_by_session_expiry_and_drops_it_by_clean_start() {
    let b = TestBroker::start(2);
    let port = b.addr.port();
    let id = b.id_on(1, "msess");
    // -c: Clean Start 0; -x: Session Expiry Interval.
    let persistent = ["-q", "1", "-c", "-x", "60"];
    drop(MosquittoSub::start(
        port,
        &id,
        "sess/#",
        "%t %p",
        &persistent,
    ));
    mosquitto_publish(&b, "sess/a", "while away", &[]);
    let mut sub = MosquittoSub::start(port, &id, "sess/#", "%t %p", &persistent);
    assert_eq!(sub.message(), "sess/a while away", "queued for the session");
    drop(sub);

    // A Clean Start discards the session (and with Session Expiry 0 the
    // new one ends with its connection): nothing is queued for it.
    drop(MosquittoSub::start(
        port,
        &id,
        "other",
        "%t %p",
        &["-q", "1"],
    ));
    mosquitto_publish(&b, "sess/b", "lost", &[]);
    let sub = MosquittoSub::start(port, &id, "nothing/here", "%t %p", &persistent);
    sub.expect_no_message(Duration::from_millis(500));
}

#[test]
fn mosquitto_pub_properties_reach_mosquitto_sub_unchanged() {
    let b = TestBroker::start(2);
    let mut sub = properties_watcher(&b, "mprops", "props/#");
    let properties = [
        ["-D", "publish", "user-property", "k", "v1"].as_slice(),
        &["-D", "publish", "user-property", "site", "eu"],
        &["-D", "publish", "user-property", "k", "v2"],
        &["-D", "publish", "content-type", "application/json"],
        &["-D", "publish", "payload-format-indicator", "1"],
        &["-D", "publish", "response-topic", "replies/42"],
        &["-D", "publish", "correlation-data", "c0rr"],
        &["-D", "publish", "message-expiry-interval", "60"],
    ]
    .concat();
    mosquitto_publish(&b, "props/a", "{}", &properties);
    // User properties in order, duplicates kept.
    expect_printed(
        &mut sub,
        "props/a {}|k:v1 site:eu k:v2|application/json|1|replies/42|c0rr",
        60,
    );
}

/// Connects an MQTT.js client homed on shard 0 with a will on `w5/will`
/// held back `DELAY` seconds and every will property, then drops the
/// connection without DISCONNECT; with `RESUME` set, connects again at
/// once to resume the session and prints Session Present.
const DYING_MQTTJS: &str = r#"
const mqtt = require('mqtt');
const base = { host: '127.0.0.1', port: +process.env.PORT, protocolVersion: 5,
  clientId: process.env.ID, reconnectPeriod: 0,
  properties: { sessionExpiryInterval: 60 } };
const will = { topic: 'w5/will', payload: 'gone', qos: 1, retain: false,
  properties: { willDelayInterval: +process.env.DELAY, contentType: 'text/plain',
    payloadFormatIndicator: true, responseTopic: 'w5/reply',
    correlationData: Buffer.from('c0rr'), messageExpiryInterval: 300,
    userProperties: { k: ['v1', 'v2'] } } };
const dying = mqtt.connect({ ...base, clean: true, will });
dying.on('error', (e) => { console.error(e); process.exit(1); });
dying.on('connect', () => {
  dying.stream.destroy();
  if (!process.env.RESUME) return process.exit(0);
  const back = mqtt.connect({ ...base, clean: false });
  back.on('error', (e) => { console.error(e); process.exit(1); });
  back.on('connect', (ack) => {
    console.log('present=' + ack.sessionPresent);
    back.end(false, {}, () => process.exit(0));
  });
});
"#;

/// A delayed will from MQTT.js reaches `mosquitto_sub` after the delay
/// with its properties; an MQTT.js client back within the delay (resuming
/// its session) cancels it.
#[test]
fn mqttjs_delayed_will_reaches_mosquitto_sub_with_its_properties_unless_resumed() {
    let b = TestBroker::start(2);
    let port = b.addr.port().to_string();
    let mut sub = properties_watcher(&b, "mwill", "w5/#");
    let id = b.id_on(0, "jswill");
    let env = [("PORT", port.as_str()), ("ID", id.as_str()), ("DELAY", "1")];
    let start = Instant::now();
    let Some(_) = mqttjs::run("mqttjs_will", DYING_MQTTJS, &env) else {
        return;
    };
    expect_printed(
        &mut sub,
        "w5/will gone|k:v1 k:v2|text/plain|1|w5/reply|c0rr",
        300,
    );
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "held back 1 s: {:?}",
        start.elapsed()
    );

    let resume = [("RESUME", "1"), env[0], env[1], env[2]];
    let out = mqttjs::run("mqttjs_will_resumed", DYING_MQTTJS, &resume).expect("ran once");
    assert_eq!(out.trim(), "present=true");
    sub.expect_no_message(Duration::from_millis(1_800));
}

/// Connects MQTT.js twice with an empty client id (keepalive 60) and
/// prints each CONNACK's Session Present and properties as JSON lines.
const CONNACK_MQTTJS: &str = r#"
const mqtt = require('mqtt');
function once() {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect({ host: '127.0.0.1', port: +process.env.PORT,
      protocolVersion: 5, clientId: '', clean: true, keepalive: 60, reconnectPeriod: 0 });
    c.on('error', reject);
    c.on('connect', (ack) => {
      console.log(JSON.stringify({ present: ack.sessionPresent, props: ack.properties }));
      c.end(false, {}, resolve);
    });
  });
}
once().then(once).then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
"#;

#[test]
fn mqttjs_reads_what_the_connack_announces() {
    let b = TestBroker::with(2, constrained);
    let port = b.addr.port().to_string();
    let Some(out) = mqttjs::run("mqttjs_connack", CONNACK_MQTTJS, &[("PORT", &port)]) else {
        return;
    };
    let acks: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(acks.len(), 2, "{out}");
    for ack in &acks {
        let props = &ack["props"];
        assert_eq!(ack["present"], false, "{ack}");
        assert_eq!(props["receiveMaximum"], 5, "{ack}");
        assert_eq!(props["maximumPacketSize"], 5000, "{ack}");
        assert_eq!(props["serverKeepAlive"], 30, "{ack}");
        assert_eq!(props["retainAvailable"], false, "{ack}");
        assert_eq!(props["topicAliasMaximum"], 4, "{ack}");
        assert_eq!(props["subscriptionIdentifiersAvailable"], true, "{ack}");
        // Absent: QoS 2 and wildcards are available.
        assert!(props.get("maximumQoS").is_none(), "{ack}");
        assert!(
            props.get("wildcardSubscriptionAvailable").is_none(),
            "{ack}"
        );
    }
    let assigned: Vec<&str> = acks
        .iter()
        .map(|a| {
            a["props"]["assignedClientIdentifier"]
                .as_str()
                .unwrap_or("")
        })
        .collect();
    assert!(!assigned[0].is_empty(), "{out}");
    assert_ne!(assigned[0], assigned[1], "each one unique: {out}");
}

/// An MQTT.js client with a 60 s session: a DISCONNECT with Session
/// Expiry 0 ends the session, one without leaves it; prints Session
/// Present on each return.
const DISCONNECT_EXPIRY_MQTTJS: &str = r#"
const mqtt = require('mqtt');
const fail = (e) => { console.error(e); process.exit(1); };
const connect = (clean) => new Promise((resolve) => {
  const c = mqtt.connect({ host: '127.0.0.1', port: +process.env.PORT, protocolVersion: 5,
    clientId: process.env.ID, clean, reconnectPeriod: 0,
    properties: { sessionExpiryInterval: 60 } });
  c.on('error', fail);
  c.on('connect', (ack) => resolve([c, ack]));
});
const end = (c, properties) => new Promise((resolve) => c.end(false, { properties }, resolve));
(async () => {
  let [c] = await connect(true);
  await end(c, { sessionExpiryInterval: 0 });
  let [d, ack] = await connect(false);
  console.log('after expiry 0: ' + ack.sessionPresent);
  await end(d, {});
  [c, ack] = await connect(false);
  console.log('after none: ' + ack.sessionPresent);
  await end(c, {});
  process.exit(0);
})().catch(fail);
"#;

#[test]
fn mqttjs_disconnect_sets_the_session_expiry() {
    let b = TestBroker::start(2);
    let (port, id) = (b.addr.port().to_string(), b.id_on(1, "jsexp"));
    let env = [("PORT", port.as_str()), ("ID", id.as_str())];
    let Some(out) = mqttjs::run("mqttjs_disconnect_expiry", DISCONNECT_EXPIRY_MQTTJS, &env) else {
        return;
    };
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["after expiry 0: false", "after none: true"]
    );
}
