//! MQTT 5.0 topic aliases from client to server (spec 3.3.2.3.4): the
//! map one connection's PUBLISH packets set and use.
//!
//! The map lives as long as the connection, not the session (a resumed
//! session starts with no aliases), and is allocated on the first alias a
//! client sends, so a connection that uses none pays one pointer.

use std::collections::HashMap;
use std::num::NonZeroU16;

use ahash::RandomState;

use crate::protocol::{Publish, TopicName};

/// Alias -> topic for one connection. Shard-local; owned by its
/// connection's [`super::conn::ConnShared`], never crosses the mesh.
///
/// Invariant: every key is at most the Topic Alias Maximum the CONNACK
/// announced (`max_topic_alias`), so the map holds at most that many
/// topics; every topic owns its bytes (detached from the read buffer).
#[derive(Default)]
pub struct TopicAliases {
    topics: HashMap<NonZeroU16, TopicName, RandomState>,
}

/// A PUBLISH broke the alias rules: the connection ends with DISCONNECT
/// 0x94 (Topic Alias Invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AliasInvalid;

impl TopicAliases {
    /// Applies `p`'s Topic Alias, if any, with `max` the Topic Alias
    /// Maximum announced: a topic and an alias set (or replace) the
    /// mapping; an empty topic takes the mapped one. Afterwards `p` has
    /// its full topic. `map` is allocated on the first alias set.
    pub fn resolve(
        map: &mut Option<Box<TopicAliases>>,
        p: &mut Publish,
        max: u16,
    ) -> Result<(), AliasInvalid> {
        let Some(alias) = p.properties.topic_alias else {
            return Ok(());
        };
        let alias = NonZeroU16::new(alias)
            .filter(|a| a.get() <= max)
            .ok_or(AliasInvalid)?;
        if p.topic.is_empty() {
            let known = map.as_ref().and_then(|m| m.topics.get(&alias));
            p.topic = known.ok_or(AliasInvalid)?.clone();
        } else {
            let topics = &mut map.get_or_insert_with(Box::default).topics;
            topics.insert(alias, p.topic.detached());
            debug_assert!(topics.len() <= usize::from(max));
        }
        Ok(())
    }
}
