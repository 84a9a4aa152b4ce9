//! MQTT 5.0 topic aliases (spec 3.3.2.3.4), both ways: the map one
//! connection's PUBLISH packets set and use ([`TopicAliases`], client to
//! server), and the aliases the broker gives the topics it sends a client
//! that announced a Topic Alias Maximum ([`OutAliases`], server to client).
//!
//! Both live as long as the connection, not the session (a resumed session
//! starts with no aliases), are allocated on the first alias, so a
//! connection that uses none pays one pointer, and hold at most
//! [`MAX_ALIAS_TOPIC_BYTES`] of topics.

use std::collections::HashMap;
use std::num::NonZeroU16;

use ahash::RandomState;

use crate::limits::{ALIAS_ENTRY_COST, MAX_ALIAS_TOPIC_BYTES};
use crate::protocol::{Publish, ReasonCode, TopicName};

/// Alias -> topic for one connection. Shard-local; owned by its
/// connection's [`super::conn::ConnShared`], never crosses the mesh.
///
/// Invariant: every key is at most the Topic Alias Maximum the CONNACK
/// announced (`max_topic_alias`), so the map holds at most that many
/// topics; `bytes` is the sum of their [`cost`]s, at most
/// [`MAX_ALIAS_TOPIC_BYTES`]; every topic owns its bytes (detached from
/// the read buffer).
#[derive(Default)]
pub struct TopicAliases {
    topics: HashMap<NonZeroU16, TopicName, RandomState>,
    bytes: usize,
}

/// A PUBLISH the alias rules refuse; the connection ends with a
/// DISCONNECT carrying [`AliasRefused::reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AliasRefused {
    /// Alias 0, above the maximum, or unknown: 0x94 Topic Alias Invalid.
    Invalid,
    /// Setting it would cost more than [`MAX_ALIAS_TOPIC_BYTES`] in all:
    /// 0x97 Quota Exceeded. The client kept within the alias count the
    /// CONNACK announced, so this is the broker's limit, not a protocol
    /// error (a client replacing aliases, not adding, never meets it).
    Full,
}

impl AliasRefused {
    /// The DISCONNECT reason code and Reason String.
    pub fn reason(self) -> (ReasonCode, &'static str) {
        match self {
            AliasRefused::Invalid => (
                ReasonCode::TopicAliasInvalid,
                "topic alias 0, above the maximum, or not set",
            ),
            AliasRefused::Full => (
                ReasonCode::QuotaExceeded,
                "topic aliases would hold too many topic bytes",
            ),
        }
    }
}

impl TopicAliases {
    /// Applies `p`'s Topic Alias, if any, with `max` the Topic Alias
    /// Maximum announced: a topic and an alias set (or replace) the
    /// mapping; an empty topic takes the mapped one. Afterwards `p` has
    /// its full topic. `map` is allocated on the first alias set.
    pub fn resolve(
        map: &mut Option<Box<TopicAliases>>,
        p: &mut Publish,
        max: u16,
    ) -> Result<(), AliasRefused> {
        let Some(alias) = p.properties.topic_alias else {
            return Ok(());
        };
        let alias = NonZeroU16::new(alias)
            .filter(|a| a.get() <= max)
            .ok_or(AliasRefused::Invalid)?;
        if p.topic.is_empty() {
            let known = map.as_ref().and_then(|m| m.topics.get(&alias));
            p.topic = known.ok_or(AliasRefused::Invalid)?.clone();
            return Ok(());
        }
        map.get_or_insert_with(Box::default)
            .set(alias, &p.topic, max)
    }

    /// Maps `alias` to a copy of `topic`, within the byte bound.
    fn set(&mut self, alias: NonZeroU16, topic: &TopicName, max: u16) -> Result<(), AliasRefused> {
        let replaced = self.topics.get(&alias).map_or(0, cost);
        let bytes = self.bytes - replaced + cost(topic);
        if bytes > MAX_ALIAS_TOPIC_BYTES {
            return Err(AliasRefused::Full);
        }
        self.topics.insert(alias, topic.detached());
        self.bytes = bytes;
        debug_assert!(self.topics.len() <= usize::from(max));
        Ok(())
    }
}

/// What an alias of `topic` counts against [`MAX_ALIAS_TOPIC_BYTES`].
fn cost(topic: &TopicName) -> usize {
    topic.as_bytes().len() + ALIAS_ENTRY_COST
}

/// How one PUBLISH to a client names its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutAlias {
    /// The topic alone.
    Topic,
    /// The topic and a new alias for it.
    Set(NonZeroU16),
    /// The alias alone (an empty topic).
    Use(NonZeroU16),
}

/// Topic -> alias for what the broker sends one connection. Shard-local;
/// owned by its connection's [`super::conn::ConnShared`].
///
/// Policy when full (the client's Topic Alias Maximum, or
/// [`MAX_ALIAS_TOPIC_BYTES`] of topics, reached): no new aliases; the
/// aliases given stay as they are and other topics go out in full. First
/// come keeps a mapping stable for the connection's life and costs no
/// bookkeeping per PUBLISH; LRU replacement would send topic and alias
/// again on every miss, so a client cycling through more topics than it
/// has aliases would get every PUBLISH larger than with no alias at all.
///
/// Invariant: aliases are 1..=len, at most the client's maximum; `bytes`
/// is the sum of the topics' [`cost`]s, at most [`MAX_ALIAS_TOPIC_BYTES`];
/// every topic owns its bytes (an alias does not pin a message).
#[derive(Default)]
pub struct OutAliases {
    aliases: HashMap<TopicName, NonZeroU16, RandomState>,
    bytes: usize,
}

impl OutAliases {
    /// How the next PUBLISH on `topic` names it, with `max` the client's
    /// Topic Alias Maximum. A [`OutAlias::Set`] counts only once
    /// [`commit`](Self::commit)ted (after the packet was written).
    pub fn pick(map: Option<&OutAliases>, topic: &TopicName, max: u16) -> OutAlias {
        let (count, bytes) = match map {
            Some(m) => match m.aliases.get(topic) {
                Some(alias) => return OutAlias::Use(*alias),
                None => (m.aliases.len(), m.bytes),
            },
            None => (0, 0),
        };
        let fits = bytes + cost(topic) <= MAX_ALIAS_TOPIC_BYTES;
        match u16::try_from(count + 1).ok().and_then(NonZeroU16::new) {
            Some(next) if next.get() <= max && fits => OutAlias::Set(next),
            _ => OutAlias::Topic,
        }
    }

    /// Records the mapping an [`OutAlias::Set`] PUBLISH told the client.
    pub fn commit(map: &mut Option<Box<OutAliases>>, topic: &TopicName, alias: OutAlias) {
        let OutAlias::Set(alias) = alias else {
            return;
        };
        let m = map.get_or_insert_with(Box::default);
        debug_assert_eq!(usize::from(alias.get()), m.aliases.len() + 1);
        m.bytes += cost(topic);
        m.aliases.insert(topic.detached(), alias);
        debug_assert!(m.bytes <= MAX_ALIAS_TOPIC_BYTES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(s: &str) -> TopicName {
        TopicName::from_str(s).expect("valid topic")
    }

    fn alias(n: u16) -> NonZeroU16 {
        NonZeroU16::new(n).expect("non-zero")
    }

    /// Picks and commits as the send path does.
    fn send(map: &mut Option<Box<OutAliases>>, t: &str, max: u16) -> OutAlias {
        let t = topic(t);
        let picked = OutAliases::pick(map.as_deref(), &t, max);
        OutAliases::commit(map, &t, picked);
        picked
    }

    #[test]
    fn outbound_aliases_are_given_until_the_maximum_then_topics_go_in_full() {
        let mut map = None;
        assert_eq!(send(&mut map, "a", 2), OutAlias::Set(alias(1)));
        assert_eq!(send(&mut map, "a", 2), OutAlias::Use(alias(1)));
        assert_eq!(send(&mut map, "b", 2), OutAlias::Set(alias(2)));
        assert_eq!(send(&mut map, "c", 2), OutAlias::Topic);
        assert_eq!(send(&mut map, "c", 2), OutAlias::Topic);
        assert_eq!(send(&mut map, "a", 2), OutAlias::Use(alias(1)));
    }

    #[test]
    fn outbound_aliases_stop_at_the_byte_bound() {
        let long = |c: &str| c.repeat(MAX_ALIAS_TOPIC_BYTES / 2 - ALIAS_ENTRY_COST);
        let mut map = None;
        assert_eq!(send(&mut map, &long("x"), 100), OutAlias::Set(alias(1)));
        assert_eq!(send(&mut map, &long("y"), 100), OutAlias::Set(alias(2)));
        assert_eq!(send(&mut map, "z", 100), OutAlias::Topic);
        // Short topics count their entries: a few thousand at most.
        let mut map = None;
        let most = MAX_ALIAS_TOPIC_BYTES / (ALIAS_ENTRY_COST + 4);
        for i in 0..most {
            let picked = send(&mut map, &format!("{i:04}"), u16::MAX);
            assert_eq!(picked, OutAlias::Set(alias(i as u16 + 1)));
        }
        assert_eq!(send(&mut map, "9999", u16::MAX), OutAlias::Topic);
    }

    #[test]
    fn a_pick_not_committed_is_offered_again() {
        let mut map = None;
        let t = topic("t");
        assert_eq!(
            OutAliases::pick(map.as_deref(), &t, 5),
            OutAlias::Set(alias(1))
        );
        assert_eq!(send(&mut map, "t", 5), OutAlias::Set(alias(1)));
    }

    #[test]
    fn inbound_aliases_are_bounded_in_bytes_and_replacing_frees_them() {
        let half = "x".repeat(MAX_ALIAS_TOPIC_BYTES / 2 - ALIAS_ENTRY_COST);
        let mut map = None;
        let mut p = |t: &str, a: u16| {
            let mut p = Publish {
                dup: false,
                qos: crate::protocol::QoS::AtMostOnce,
                retain: false,
                topic: topic(t),
                packet_id: None,
                payload: bytes::Bytes::new(),
                properties: Default::default(),
            };
            p.properties.topic_alias = Some(a);
            TopicAliases::resolve(&mut map, &mut p, 10)
        };
        assert_eq!(p(&half, 1), Ok(()));
        assert_eq!(p(&half, 2), Ok(()));
        assert_eq!(p("more", 3), Err(AliasRefused::Full));
        assert_eq!(p("less", 2), Ok(()), "replacing alias 2 frees its bytes");
        assert_eq!(p("more", 3), Ok(()));
        assert_eq!(p("t", 11), Err(AliasRefused::Invalid));
    }
}
