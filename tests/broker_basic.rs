//! Basic pub/sub over raw packets, across shards, both protocol versions.

mod common;

use common::*;
use shardmq::protocol::{ProtocolVersion, QoS, ReasonCode};

#[test]
fn qos0_crosses_shards_v311_and_v5() {
    let b = TestBroker::start(2);
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let (mut sub, ack) = RawClient::connect(b.addr, version, &b.id_on(0, "sub"), true);
        assert_eq!(ack.code, ReasonCode::Success);
        assert_eq!(
            sub.subscribe("a/+/c", QoS::AtMostOnce).codes,
            vec![ReasonCode::GrantedQoS0]
        );
        let (mut publ, _) = RawClient::connect(b.addr, version, &b.id_on(1, "pub"), true);
        publ.publish("a/b/c", b"hello", QoS::AtMostOnce, false, 1);
        let p = sub.expect_publish();
        assert_eq!(p.topic.as_str(), "a/b/c");
        assert_eq!(&p.payload[..], b"hello");
        sub.disconnect();
        publ.disconnect();
    }
    b.stop();
}
