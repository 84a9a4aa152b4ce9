//! Validated topic names and topic filters (spec 4.7), and matching.
//!
//! Both wrap `Bytes` that are guaranteed to be valid UTF-8 without U+0000,
//! at most 65,535 bytes long. A [`TopicName`] has no wildcards. A
//! [`TopicFilter`] has `+` only as a whole level and `#` only as the whole
//! last level; a `$share/<group>/<filter>` filter is a shared subscription.

use bytes::Bytes;

use super::error::Malformed;

/// A topic name: what a PUBLISH is sent to. No `+` or `#`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Bytes);

/// A topic filter: what a SUBSCRIBE asks for. May contain `+` and `#`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(Bytes);

impl TopicName {
    /// Validates `bytes` as a non-empty topic name.
    pub fn new(bytes: Bytes) -> Result<TopicName, Malformed> {
        todo!("validate {bytes:?}")
    }

    /// Validates a string as a non-empty topic name.
    pub fn from_str(s: &str) -> Result<TopicName, Malformed> {
        TopicName::new(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// The empty topic of a 5.0 PUBLISH that uses a Topic Alias.
    pub fn empty() -> TopicName {
        TopicName(Bytes::new())
    }

    pub fn as_str(&self) -> &str {
        todo!()
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A copy in its own allocation (see the zero-copy rule in `packet`).
    pub fn detached(&self) -> TopicName {
        TopicName(Bytes::copy_from_slice(&self.0))
    }
}

impl TopicFilter {
    /// Validates `bytes` as a topic filter (shared subscriptions included).
    pub fn new(bytes: Bytes) -> Result<TopicFilter, Malformed> {
        todo!("validate {bytes:?}")
    }

    /// Validates a string as a topic filter.
    pub fn from_str(s: &str) -> Result<TopicFilter, Malformed> {
        TopicFilter::new(Bytes::copy_from_slice(s.as_bytes()))
    }

    pub fn as_str(&self) -> &str {
        todo!()
    }

    /// For `$share/<group>/<filter>`: the group and the inner filter.
    pub fn share(&self) -> Option<(&str, &str)> {
        todo!()
    }

    /// True if the filter (the inner filter for a shared one) has `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        todo!()
    }
}

/// True if `topic` matches `filter` (both assumed valid; `filter` must not be
/// a `$share/` filter: pass its inner filter). Wildcards at the first level do
/// not match topics starting with `$`.
pub fn matches(filter: &str, topic: &str) -> bool {
    todo!("{filter} {topic}")
}

impl std::fmt::Debug for TopicName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TopicName({:?})", self.as_str())
    }
}

impl std::fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TopicFilter({:?})", self.as_str())
    }
}
