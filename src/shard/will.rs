//! A session's will as it is kept while its connection lives.
//!
//! Most devices send a will and most wills carry no properties, while the
//! codec's `Properties` is a 344-byte struct: kept as decoded, every such
//! connection would hold it for nothing. A [`Will`] keeps the properties
//! only when there are some.

use bytes::Bytes;

use crate::protocol::{LastWill, Properties, Publish, QoS, TopicName};

/// The will of a session's current connection. Shard-local; owned (boxed)
/// by the session; owns its bytes (nothing of the read buffer).
#[derive(Debug)]
pub struct Will {
    topic: TopicName,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    /// `None` when the CONNECT gave no will properties.
    properties: Option<Box<Properties>>,
}

impl Will {
    /// Keeps `will` from a CONNECT, copying its bytes out of the read buffer.
    pub fn keep(will: &LastWill) -> Box<Will> {
        let mut will = will.clone();
        will.detach();
        let LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        } = will;
        let properties = (properties != Properties::default()).then(|| Box::new(properties));
        Box::new(Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
    }

    /// The PUBLISH the will becomes when it is due (Will Delay Interval is
    /// not a PUBLISH property).
    pub fn into_publish(self) -> Publish {
        let mut properties = self.properties.map(|p| *p).unwrap_or_default();
        properties.will_delay_interval = None;
        Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: self.topic,
            packet_id: None,
            payload: self.payload,
            properties,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_will(properties: Properties) -> LastWill {
        LastWill {
            topic: TopicName::from_str("w/t").unwrap(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties,
        }
    }

    #[test]
    fn a_will_without_properties_keeps_none() {
        let will = Will::keep(&last_will(Properties::default()));
        assert!(will.properties.is_none());
        assert!(
            std::mem::size_of::<Will>() <= 88,
            "{}",
            std::mem::size_of::<Will>()
        );
        let p = will.into_publish();
        assert_eq!(
            (p.topic.as_str(), &p.payload[..], p.qos, p.retain),
            ("w/t", &b"gone"[..], QoS::AtLeastOnce, true)
        );
        assert_eq!(p.properties, Properties::default());
    }

    #[test]
    fn will_properties_survive_but_the_delay() {
        let props = Properties {
            content_type: Some("text/plain".into()),
            will_delay_interval: Some(30),
            ..Properties::default()
        };
        let p = Will::keep(&last_will(props)).into_publish();
        assert_eq!(p.properties.content_type.as_deref(), Some("text/plain"));
        assert_eq!(p.properties.will_delay_interval, None);
    }
}
