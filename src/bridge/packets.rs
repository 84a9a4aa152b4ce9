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
    Some(Arc::new(Message {
        publish: Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic,
            packet_id: None,
            payload: Bytes::from_static(if up { b"1" } else { b"0" }),
            properties: Properties::default(),
        },
        origin,
    }))
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
