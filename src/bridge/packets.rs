//! The packets a link sends besides the messages it carries: CONNECT (with
//! its state will), SUBSCRIBE and UNSUBSCRIBE for its `topic` lines, and
//! its state notifications.

use std::num::NonZeroU16;
use std::sync::Arc;

use bytes::Bytes;

use super::routes::Routes;
use crate::config::BridgeConfig;
use crate::mesh::{Message, Origin};
use crate::protocol::{
    Connect, LastWill, PacketId, Properties, Publish, QoS, RetainHandling, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName, Unsubscribe,
};

/// Packet ids from here up are the link's own (SUBSCRIBE, UNSUBSCRIBE);
/// queued messages use the ids below.
pub const CONTROL_IDS_FROM: u16 = 65_530;

const SUBSCRIBE_ID: u16 = CONTROL_IDS_FROM;
const UNSUBSCRIBE_ID: u16 = CONTROL_IDS_FROM + 1;

/// The link's CONNECT: `private` sets the 3.x bridge bit.
pub fn connect(config: &BridgeConfig, private: bool) -> Connect {
    let v5 = config.protocol.is_v5();
    let mut properties = Properties::default();
    if v5 {
        properties.session_expiry_interval = session_expiry(config);
        properties.receive_maximum = Some(config.receive_maximum);
        properties.maximum_packet_size = config.max_packet_size;
    }
    Connect {
        protocol: config.protocol,
        clean_start: config.clean_session,
        keep_alive: config.keepalive_interval,
        client_id: config.remote_clientid.clone(),
        will: state_will(config),
        username: config.remote_username.clone(),
        password: config
            .remote_password
            .as_ref()
            .map(|p| Bytes::copy_from_slice(p.as_bytes())),
        properties,
        bridge: private && !v5,
    }
}

/// MQTT 5: what the remote keeps the bridge's session for. With
/// `cleansession false` and no `bridge_session_expiry_interval`, the
/// session must outlive the connection (as a 3.1.1 persistent session
/// does): it never expires.
fn session_expiry(config: &BridgeConfig) -> Option<u32> {
    match (config.clean_session, config.session_expiry_interval) {
        (false, 0) => Some(u32::MAX),
        (_, 0) => None,
        (_, s) => Some(s),
    }
}

/// "0" on the state topic, retained: the remote publishes it when the link
/// drops.
fn state_will(config: &BridgeConfig) -> Option<LastWill> {
    if !config.notifications || config.notifications_local_only {
        return None;
    }
    let topic = TopicName::from_str(&config.notification_topic).ok()?;
    Some(LastWill {
        topic,
        payload: Bytes::from_static(b"0"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties::default(),
    })
}

/// The retained state notification ("1" up, "0" down), from link `session`
/// of the bridge thread `shard`.
pub fn state_message(config: &BridgeConfig, up: bool, origin: Origin) -> Option<Arc<Message>> {
    if !config.notifications {
        return None;
    }
    let topic = TopicName::from_str(&config.notification_topic).ok()?;
    Some(Arc::new(Message::new(
        Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic,
            packet_id: None,
            payload: Bytes::from_static(if up { b"1" } else { b"0" }),
            properties: Properties::default(),
        },
        origin,
    )))
}

/// SUBSCRIBE to every `in` line on the remote; `None` if there is none.
/// MQTT 5 subscriptions use No Local and Retain As Published, so what the
/// bridge publishes there does not come back, and retained messages keep
/// their flag.
pub fn subscribe(routes: &Routes, v5: bool) -> Option<Subscribe> {
    let filters: Vec<(TopicFilter, SubscriptionOptions)> = routes
        .remote_subscriptions()
        .filter_map(|(filter, qos)| {
            let f = TopicFilter::from_str(filter).ok()?;
            let opts = SubscriptionOptions {
                qos,
                no_local: v5,
                retain_as_published: v5,
                retain_handling: RetainHandling::OnSubscribe,
            };
            Some((f, opts))
        })
        .collect();
    (!filters.is_empty()).then(|| Subscribe {
        packet_id: control_id(SUBSCRIBE_ID),
        filters,
        properties: Properties::default(),
    })
}

/// UNSUBSCRIBE from the `out`-only lines' remote filters (what
/// `bridge_attempt_unsubscribe` asks for: an earlier configuration may have
/// subscribed to them); `None` if there is none.
pub fn unsubscribe(routes: &Routes) -> Option<Unsubscribe> {
    let filters: Vec<TopicFilter> = routes
        .out_only_remote_filters()
        .filter_map(|f| TopicFilter::from_str(f).ok())
        .collect();
    (!filters.is_empty()).then(|| Unsubscribe {
        packet_id: control_id(UNSUBSCRIBE_ID),
        filters,
        properties: Properties::default(),
    })
}

fn control_id(id: u16) -> PacketId {
    NonZeroU16::new(id).unwrap_or(NonZeroU16::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn bridge(lines: &str) -> BridgeConfig {
        let text = format!("connection b\naddress 127.0.0.1:1\ntopic a/# both 1\n{lines}");
        Config::parse(&text, "t.conf").unwrap().0.bridges.remove(0)
    }

    #[test]
    fn a_v5_connect_carries_the_mqtt5_settings() {
        let c = connect(
            &bridge(
                "bridge_protocol_version mqttv50\nbridge_receive_maximum 7\n\
                 bridge_max_packet_size 1000\nbridge_session_expiry_interval 60\n",
            ),
            true,
        );
        let p = &c.properties;
        assert_eq!(
            (
                p.receive_maximum,
                p.maximum_packet_size,
                p.session_expiry_interval
            ),
            (Some(7), Some(1000), Some(60))
        );
        assert!(!c.bridge, "no bridge bit in MQTT 5");
    }

    #[test]
    fn a_persistent_v5_session_never_expires_unless_told() {
        let persistent = connect(&bridge("bridge_protocol_version mqttv50\n"), false);
        assert_eq!(
            persistent.properties.session_expiry_interval,
            Some(u32::MAX)
        );
        let clean = connect(
            &bridge("bridge_protocol_version mqttv50\ncleansession true\n"),
            false,
        );
        assert_eq!(clean.properties.session_expiry_interval, None);
    }

    #[test]
    fn the_will_is_the_state_topic_unless_notifications_stay_local() {
        let c = connect(&bridge("remote_clientid edge\n"), true);
        let will = c.will.expect("state will");
        assert_eq!(will.topic.as_str(), "$SYS/broker/connection/edge/state");
        assert_eq!((&will.payload[..], will.retain), (&b"0"[..], true));
        assert!(
            c.bridge && c.properties.is_empty(),
            "3.1.1: the bit, no properties"
        );
        let local = connect(&bridge("notifications_local_only true\n"), true);
        assert!(local.will.is_none());
        let custom = bridge("notification_topic edges/b/up\n");
        let state = state_message(
            &custom,
            true,
            Origin {
                shard: 0,
                session: 1,
            },
        )
        .unwrap();
        assert_eq!(state.publish.topic.as_str(), "edges/b/up");
        assert!(state_message(&bridge("notifications false\n"), true, state.origin).is_none());
    }

    #[test]
    fn subscriptions_use_no_local_in_v5_and_unsubscribe_lists_out_only_lines() {
        let routes = Routes::new(&bridge("topic x/# out 0\ntopic y/# in 2\n"));
        let sub = subscribe(&routes, true).unwrap();
        let filters: Vec<_> = sub.filters.iter().map(|(f, o)| (f.as_str(), *o)).collect();
        assert!(filters
            .iter()
            .all(|(_, o)| o.no_local && o.retain_as_published));
        assert_eq!(
            filters.iter().map(|(f, o)| (*f, o.qos)).collect::<Vec<_>>(),
            [("a/#", QoS::AtLeastOnce), ("y/#", QoS::ExactlyOnce)]
        );
        let v3 = subscribe(&routes, false).unwrap();
        assert!(v3.filters.iter().all(|(_, o)| !o.no_local));
        let unsub = unsubscribe(&routes).unwrap();
        let out_only: Vec<_> = unsub.filters.iter().map(|f| f.as_str()).collect();
        assert_eq!(out_only, ["x/#"]);
    }
}
