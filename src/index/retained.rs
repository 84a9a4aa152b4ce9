//! The retained-message store: topic -> last retained message.
//!
//! Replicated: every shard holds a full copy, so a SUBSCRIBE is answered
//! from local memory. Updates are broadcast over the mesh and applied
//! last-writer-wins by [`RetainStamp`], so replicas converge whatever order
//! updates from different shards arrive in. A delete leaves a tombstone
//! (with its stamp) until [`RetainedStore::purge_tombstones`] drops it, so a
//! late, older set cannot resurrect a deleted message.

use std::collections::HashMap;

use ahash::RandomState;

/// Orders retained updates: time first, then the shard that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetainStamp {
    /// Nanoseconds since the Unix epoch, strictly increasing per shard.
    pub nanos: u64,
    /// The shard that accepted the publish.
    pub shard: u16,
}

struct Entry<V> {
    stamp: RetainStamp,
    /// `None` is a tombstone.
    value: Option<V>,
}

struct Node<V> {
    children: HashMap<Box<str>, Node<V>, RandomState>,
    entry: Option<Entry<V>>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: HashMap::default(),
            entry: None,
        }
    }
}

/// Retained messages of one shard's replica. Shard-local.
pub struct RetainedStore<V> {
    root: Node<V>,
    /// Live (non-tombstone) entries.
    len: usize,
    tombstones: usize,
}

impl<V> Default for RetainedStore<V> {
    fn default() -> Self {
        RetainedStore {
            root: Node::default(),
            len: 0,
            tombstones: 0,
        }
    }
}

impl<V: Clone> RetainedStore<V> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no message is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets (`Some`) or deletes (`None`) the message of `topic` unless a
    /// newer update is already applied. Returns true if applied.
    pub fn apply(&mut self, topic: &str, stamp: RetainStamp, value: Option<V>) -> bool {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.entry(level.into()).or_default();
        }
        if let Some(old) = &node.entry {
            if old.stamp >= stamp {
                return false;
            }
            if old.value.is_some() {
                self.len -= 1;
            } else {
                self.tombstones -= 1;
            }
        }
        if value.is_some() {
            self.len += 1;
        } else {
            self.tombstones += 1;
        }
        node.entry = Some(Entry { stamp, value });
        true
    }

    /// Drops tombstones older than `before` and prunes empty nodes.
    pub fn purge_tombstones(&mut self, before: RetainStamp) {
        if self.tombstones == 0 {
            return;
        }
        let mut purged = 0;
        Self::purge_in(&mut self.root, before, &mut purged);
        self.tombstones -= purged;
    }

    fn purge_in(node: &mut Node<V>, before: RetainStamp, purged: &mut usize) {
        if matches!(&node.entry, Some(e) if e.value.is_none() && e.stamp < before) {
            node.entry = None;
            *purged += 1;
        }
        node.children.retain(|_, child| {
            Self::purge_in(child, before, purged);
            child.entry.is_some() || !child.children.is_empty()
        });
    }

    /// Clones every retained message whose topic matches `filter` (a valid,
    /// non-shared filter) into `out`.
    pub fn collect_matching(&self, filter: &str, out: &mut Vec<V>) {
        Self::collect_in(&self.root, Some(filter), true, out);
    }

    fn collect_in(node: &Node<V>, rest: Option<&str>, root: bool, out: &mut Vec<V>) {
        let Some(r) = rest else {
            out.extend(node.entry.as_ref().and_then(|e| e.value.clone()));
            return;
        };
        let (level, next) = super::trie::split_level(r);
        // Wildcards at the first level do not match `$` topics.
        let visible = |name: &str| !(root && name.starts_with('$'));
        match level {
            "#" => {
                if !root {
                    out.extend(node.entry.as_ref().and_then(|e| e.value.clone()));
                }
                for (name, child) in &node.children {
                    if visible(name) {
                        Self::collect_all(child, out);
                    }
                }
            }
            "+" => {
                for (name, child) in &node.children {
                    if visible(name) {
                        Self::collect_in(child, next, false, out);
                    }
                }
            }
            _ => {
                if let Some(child) = node.children.get(level) {
                    Self::collect_in(child, next, false, out);
                }
            }
        }
    }

    fn collect_all(node: &Node<V>, out: &mut Vec<V>) {
        out.extend(node.entry.as_ref().and_then(|e| e.value.clone()));
        for child in node.children.values() {
            Self::collect_all(child, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(nanos: u64) -> RetainStamp {
        RetainStamp { nanos, shard: 0 }
    }

    fn matching(s: &RetainedStore<&'static str>, filter: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        s.collect_matching(filter, &mut out);
        out.sort();
        out
    }

    #[test]
    fn wildcards_match_like_subscriptions() {
        let mut s = RetainedStore::new();
        for (i, t) in ["a", "a/b", "a/b/c", "$SYS/x", "b/b"].iter().enumerate() {
            s.apply(t, stamp(i as u64 + 1), Some(*t));
        }
        assert_eq!(matching(&s, "#"), vec!["a", "a/b", "a/b/c", "b/b"]);
        assert_eq!(matching(&s, "a/#"), vec!["a", "a/b", "a/b/c"]);
        assert_eq!(matching(&s, "+/b"), vec!["a/b", "b/b"]);
        assert_eq!(matching(&s, "$SYS/#"), vec!["$SYS/x"]);
        assert_eq!(matching(&s, "a/b"), vec!["a/b"]);
    }

    #[test]
    fn last_writer_wins_with_tombstones() {
        let mut s = RetainedStore::new();
        assert!(s.apply("t", stamp(5), Some("new")));
        assert!(!s.apply("t", stamp(3), Some("old")));
        assert!(s.apply("t", stamp(7), None));
        assert!(!s.apply("t", stamp(6), Some("late")));
        assert!(s.is_empty());
        s.purge_tombstones(stamp(100));
        assert!(s.root.children.is_empty());
    }
}
