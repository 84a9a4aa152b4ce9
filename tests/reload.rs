//! Live reload (what SIGHUP applies): listener settings change on every
//! shard for new connections while connected clients stay connected.

mod common;

use common::*;
use shardmq::config::{Config, Listener};
use shardmq::protocol::{ProtocolVersion, QoS, ReasonCode};

/// The running broker's config with `allow_anonymous` and `max_qos` set.
fn config(b: &TestBroker, allow_anonymous: bool, max_qos: QoS) -> Config {
    let mut listener = Listener::new(b.addr);
    listener.max_qos = max_qos;
    let mut config = Config {
        listeners: vec![listener],
        shards: Some(b.shards),
        ..Config::default()
    };
    config.allow_anonymous = allow_anonymous;
    config
}

#[test]
fn a_reload_changes_listener_settings_for_new_clients_only() {
    let b = TestBroker::start(2);
    let (mut sub, mut publ) = sub_and_pub(&b, ProtocolVersion::V5, "r/#", QoS::ExactlyOnce);
    b.handle()
        .reload(config(&b, false, QoS::AtLeastOnce))
        .expect("every shard applies the reload");

    // Connected clients keep their connection and what they were given.
    publ.publish("r/1", b"kept", QoS::ExactlyOnce, false, 1);
    assert_eq!(sub.expect_publish().qos, QoS::ExactlyOnce);

    // New clients, on every shard, get the new settings.
    for shard in 0..b.shards {
        let id = b.id_on(shard, "anon");
        let (_, ack) =
            RawClient::connect_with(b.addr, connect_packet(ProtocolVersion::V5, &id, true, 60));
        assert_eq!(ack.code, ReasonCode::NotAuthorized, "shard {shard}");
    }
    b.handle()
        .reload(config(&b, true, QoS::AtLeastOnce))
        .expect("reloaded again");
    let (mut late, ack) = RawClient::connect_with(
        b.addr,
        connect_packet(ProtocolVersion::V5, &b.id_on(1, "late"), true, 60),
    );
    assert_eq!(ack.code, ReasonCode::Success);
    assert_eq!(ack.properties.maximum_qos, Some(1));
    let granted = late.subscribe("r/#", QoS::ExactlyOnce);
    assert_eq!(granted.codes, [ReasonCode::GrantedQoS1]);
    b.stop();
}
