//! Mosquitto's `mount_point`: a listener whose clients live under a topic
//! prefix. What they publish (and their wills) gets the prefix, what they
//! subscribe to (the inner filter of a `$share/<group>/<filter>` too) gets
//! it, and what they are sent loses it; a message whose topic lies outside
//! the prefix is not sent to them (Mosquitto drops it silently too).
//!
//! The prefix is validated at start (no wildcards, see `config`), so a
//! mounted topic is only invalid when it grows past 65535 bytes.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};

use super::conn::ConnShared;
use super::encode::EncodeCache;
use crate::mesh::Message;
use crate::protocol::{EncodedPublish, Malformed, ProtocolVersion, QoS, TopicFilter, TopicName};

/// `topic` under `mount`.
pub fn topic(mount: &str, topic: &TopicName) -> Result<TopicName, Malformed> {
    TopicName::new(prefixed(mount, topic.as_str()).freeze())
}

/// `filter` under `mount`; a shared subscription keeps its `$share/<group>/`
/// in front and mounts the filter inside.
pub fn filter(mount: &str, filter: &TopicFilter) -> Result<TopicFilter, Malformed> {
    let mounted = match filter.share() {
        Some((group, inner)) => {
            let mut b = BytesMut::with_capacity(filter.as_str().len() + mount.len());
            b.put_slice(b"$share/");
            b.put_slice(group.as_bytes());
            b.put_u8(b'/');
            b.put_slice(&prefixed(mount, inner));
            b
        }
        None => prefixed(mount, filter.as_str()),
    };
    TopicFilter::new(mounted.freeze())
}

/// `filter` as a client of `conn` means it: under its mount point, if any.
pub fn client_filter<'f>(
    conn: &ConnShared,
    f: &'f TopicFilter,
) -> Result<Cow<'f, TopicFilter>, Malformed> {
    match conn.mount.as_deref() {
        None => Ok(Cow::Borrowed(f)),
        Some(mount) => filter(mount, f).map(Cow::Owned),
    }
}

fn prefixed(mount: &str, rest: &str) -> BytesMut {
    let mut b = BytesMut::with_capacity(mount.len() + rest.len());
    b.put_slice(mount.as_bytes());
    b.put_slice(rest.as_bytes());
    b
}

/// The topic a client under `mount` sees for `topic`: `None` when `topic`
/// is outside the mount point (or is the bare prefix).
pub fn strip<'t>(mount: &str, topic: &'t str) -> Option<&'t str> {
    topic.strip_prefix(mount).filter(|rest| !rest.is_empty())
}

/// `msg` as `conn` sees it: itself, or on a mounted listener a copy with
/// the mount point stripped from its topic (`None` when the topic lies
/// outside it).
pub fn for_client<'m>(conn: &ConnShared, msg: &'m Arc<Message>) -> Option<Cow<'m, Arc<Message>>> {
    let Some(mount) = conn.mount.as_deref() else {
        return Some(Cow::Borrowed(msg));
    };
    let topic = &msg.publish.topic;
    let rest = strip(mount, topic.as_str())?;
    let stripped =
        TopicName::new(topic.as_bytes().slice(topic.as_str().len() - rest.len()..)).ok()?;
    Some(Cow::Owned(Arc::new(msg.with_topic(stripped))))
}

/// The encoding of `msg` for `conn`: the shared one from `cache`, or, on a
/// mounted listener, one of its own with the mount point stripped (`None`
/// also when the topic lies outside it). Without a mount point this costs
/// a branch.
pub fn encode_for<'c>(
    cache: &'c mut EncodeCache,
    conn: &ConnShared,
    msg: &Arc<Message>,
    version: ProtocolVersion,
    qos: QoS,
    retain: bool,
) -> Option<Cow<'c, EncodedPublish>> {
    if conn.mount.is_none() {
        return cache.get(msg, version, qos, retain).map(Cow::Borrowed);
    }
    let own = for_client(conn, msg)?;
    let mut cache = EncodeCache::default();
    cache
        .get(&own, version, qos, retain)
        .cloned()
        .map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounted_filter(mount: &str, f: &str) -> String {
        let f = TopicFilter::from_str(f).expect("valid filter");
        filter(mount, &f).expect("valid").as_str().to_string()
    }

    #[test]
    fn topics_and_filters_get_the_prefix() {
        let t = TopicName::from_str("a/b").expect("valid topic");
        assert_eq!(topic("site1/", &t).expect("valid").as_str(), "site1/a/b");
        assert_eq!(mounted_filter("site1/", "a/#"), "site1/a/#");
        assert_eq!(mounted_filter("site1/", "#"), "site1/#");
        assert_eq!(
            mounted_filter("site1/", "$share/g/a/+"),
            "$share/g/site1/a/+"
        );
    }

    #[test]
    fn a_prefix_that_breaks_a_filter_is_refused() {
        let f = TopicFilter::from_str("#").expect("valid filter");
        assert!(filter("site1", &f).is_err(), "site1# is not a filter");
    }

    #[test]
    fn stripping_keeps_only_topics_inside_the_mount_point() {
        assert_eq!(strip("site1/", "site1/a/b"), Some("a/b"));
        assert_eq!(strip("site1/", "site2/a"), None);
        assert_eq!(strip("site1/", "site1/"), None);
        assert_eq!(strip("site1/", "a"), None);
    }
}
