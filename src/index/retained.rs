//! The retained-message store: topic -> last retained message.
//!
//! Replicated: every shard holds a full copy, so a SUBSCRIBE is answered
//! from local memory. Updates are broadcast over the mesh and applied
//! last-writer-wins by [`RetainStamp`], so replicas converge whatever order
//! updates from different shards arrive in. A delete leaves a tombstone
//! (with its stamp) until [`RetainedStore::purge_tombstones`] drops it, so a
//! late, older set cannot resurrect a deleted message.

use std::collections::hash_map::{self, IntoValues};
use std::collections::{HashMap, VecDeque};

use ahash::RandomState;

use super::tree::{drop_subtrees, split_level, take_children};

/// Orders retained updates: time first, then the shard that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetainStamp {
    /// Nanoseconds since the Unix epoch, strictly increasing per shard.
    pub nanos: u64,
    /// The shard that accepted the publish.
    pub shard: u16,
}

impl RetainStamp {
    /// The stamp for an update by `shard` now: the wall clock, or one past
    /// `last` (that shard's previous stamp) if the clock has not moved on.
    pub fn next(last: u64, shard: u16) -> RetainStamp {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        RetainStamp {
            nanos: wall.max(last + 1),
            shard,
        }
    }
}

struct Entry<V> {
    stamp: RetainStamp,
    /// `None` is a tombstone.
    value: Option<V>,
}

/// One topic level. Invariant: every node but the root holds an entry or
/// has a child (`purge_tombstones` prunes the others).
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

impl<V> Drop for Node<V> {
    fn drop(&mut self) {
        if let Some(children) = self.detach() {
            drop_subtrees(children, Node::detach);
        }
    }
}

impl<V> Node<V> {
    /// Moves the children out, `None` for a leaf.
    fn detach(&mut self) -> Option<IntoValues<Box<str>, Node<V>>> {
        if self.children.is_empty() {
            return None;
        }
        Some(take_children(&mut self.children).into_values())
    }

    /// The node's message, if any and not a tombstone.
    fn message(&self) -> Option<&V> {
        self.entry.as_ref().and_then(|e| e.value.as_ref())
    }

    /// True for a tombstone older than `before`.
    fn stale(&self, before: RetainStamp) -> bool {
        matches!(&self.entry, Some(e) if e.value.is_none() && e.stamp < before)
    }
}

/// Retained messages of one shard's replica. Shard-local.
///
/// Depth is client-controlled (one node per topic level), so nothing
/// recurses per level; walks keep their state on the heap:
/// - `apply` follows one path, with constant extra memory;
/// - `collect_matching` keeps one child iterator per `+` level of the
///   filter, and under a `#` one per level of the subtree: at most
///   2 x levels in all;
/// - `purge_tombstones` follows one path per tombstone it purges;
/// - dropping tears nodes down with a work-list of one iterator per level
///   (see [`drop_subtrees`]).
pub struct RetainedStore<V> {
    root: Node<V>,
    /// Live (non-tombstone) entries.
    len: usize,
    /// The sum of the live entries' [`Weigh::bytes`] (`$SYS`
    /// `store/messages/bytes`), kept as they are set and replaced.
    bytes: usize,
    tombstones: usize,
    /// Every delete applied, oldest first: what `purge_tombstones` visits,
    /// so purging costs the tombstones purged, not the size of the store.
    /// An entry whose topic was set again since is skipped when it comes
    /// up. Its length is the deletes since the last purge.
    tomb_log: VecDeque<(RetainStamp, Box<str>)>,
}

/// The children of one node still to visit in a `collect_matching` walk,
/// under a `+` level.
struct Pending<'a, V> {
    children: hash_map::Iter<'a, Box<str>, Node<V>>,
    /// The filter after the `+`.
    rest: Option<&'a str>,
    /// The `+` is the first level: it skips `$` topics.
    skip_dollar: bool,
}

impl<V> Default for RetainedStore<V> {
    fn default() -> Self {
        RetainedStore {
            root: Node::default(),
            len: 0,
            bytes: 0,
            tombstones: 0,
            tomb_log: VecDeque::new(),
        }
    }
}

/// What a retained value weighs in `store/messages/bytes`: its payload
/// bytes.
pub trait Weigh {
    fn bytes(&self) -> usize;
}

impl Weigh for &str {
    fn bytes(&self) -> usize {
        self.len()
    }
}

impl Weigh for String {
    fn bytes(&self) -> usize {
        self.len()
    }
}

impl<V: Clone + Weigh> RetainedStore<V> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Payload bytes of the retained messages.
    pub fn bytes(&self) -> usize {
        self.bytes
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
            if let Some(v) = &old.value {
                self.len -= 1;
                self.bytes -= v.bytes();
            } else {
                self.tombstones -= 1;
            }
        }
        if let Some(v) = &value {
            self.len += 1;
            self.bytes += v.bytes();
        } else {
            self.tombstones += 1;
            self.tomb_log.push_back((stamp, topic.into()));
        }
        node.entry = Some(Entry { stamp, value });
        true
    }

    /// Drops tombstones older than `before` and prunes the nodes left
    /// empty, visiting at most `max` deletes (oldest first); the rest wait
    /// for the next call.
    pub fn purge_tombstones(&mut self, before: RetainStamp, max: usize) {
        for _ in 0..max {
            match self.tomb_log.front() {
                Some((stamp, _)) if *stamp < before => {}
                _ => return,
            }
            let Some((_, topic)) = self.tomb_log.pop_front() else {
                return;
            };
            if self.remove_stale(&topic, before) {
                self.tombstones -= 1;
            }
        }
    }

    /// Removes `topic`'s tombstone if it is older than `before`, with the
    /// nodes that leaves empty; true if it did. Two passes down one path:
    /// the first finds the deepest node that stays, the second cuts the
    /// chain below it (constant extra memory, no recursion).
    fn remove_stale(&mut self, topic: &str, before: RetainStamp) -> bool {
        let mut node = &self.root;
        // Depth (root = 0) of the deepest node on the path that stays.
        let mut keep = 0;
        for (depth, level) in topic.split('/').enumerate() {
            if node.entry.is_some() || node.children.len() > 1 {
                keep = depth;
            }
            let Some(child) = node.children.get(level) else {
                return false;
            };
            node = child;
        }
        if !node.stale(before) {
            return false;
        }
        let leaf_goes = node.children.is_empty();
        let mut node = &mut self.root;
        for (depth, level) in topic.split('/').enumerate() {
            if leaf_goes && depth == keep {
                // Everything below is the now-empty chain down to the leaf.
                node.children.remove(level);
                return true;
            }
            let Some(child) = node.children.get_mut(level) else {
                return false;
            };
            node = child;
        }
        node.entry = None;
        true
    }

    /// Calls `f` with every retained message (not the deletions): its
    /// topic, stamp and value. Walks the levels with a work-list, not
    /// recursion, like every walk here.
    pub fn for_each(&self, mut f: impl FnMut(&str, RetainStamp, &V)) {
        type Level<'a, V> = std::collections::hash_map::Iter<'a, Box<str>, Node<V>>;
        // (children still to visit, length of the topic up to them)
        let mut pending: Vec<(Level<'_, V>, usize)> = vec![(self.root.children.iter(), 0)];
        let mut topic = String::new();
        loop {
            let first = pending.len() == 1;
            let Some((children, len)) = pending.last_mut() else {
                break;
            };
            let len = *len;
            let Some((name, child)) = children.next() else {
                pending.pop();
                continue;
            };
            topic.truncate(len);
            if !first {
                topic.push('/');
            }
            topic.push_str(name);
            if let Some(Entry {
                stamp,
                value: Some(v),
            }) = &child.entry
            {
                f(&topic, *stamp, v);
            }
            pending.push((child.children.iter(), topic.len()));
        }
    }

    /// Clones every retained message whose topic matches `filter` (a valid,
    /// non-shared filter) into `out`.
    pub fn collect_matching(&self, filter: &str, out: &mut Vec<V>) {
        let mut pending = Vec::new();
        Self::enter(&self.root, Some(filter), true, &mut pending, out);
        while let Some(top) = pending.last_mut() {
            match top.children.next() {
                Some((name, _)) if top.skip_dollar && name.starts_with('$') => {}
                Some((_, child)) => {
                    let rest = top.rest;
                    Self::enter(child, rest, false, &mut pending, out);
                }
                None => drop(pending.pop()),
            }
        }
    }

    /// `node` matched the filter up to `rest`: collects what matches at or
    /// below it, following literal levels and walking the subtrees under
    /// `#`, and queues its children when the next level is `+`.
    fn enter<'a>(
        mut node: &'a Node<V>,
        mut rest: Option<&'a str>,
        mut first: bool,
        pending: &mut Vec<Pending<'a, V>>,
        out: &mut Vec<V>,
    ) {
        while let Some(r) = rest {
            let (level, next) = split_level(r);
            match level {
                "#" => {
                    // `#` matches the parent level too, except at the root.
                    if !first {
                        out.extend(node.message().cloned());
                    }
                    Self::collect_below(node, first, out);
                    return;
                }
                "+" => {
                    pending.push(Pending {
                        children: node.children.iter(),
                        rest: next,
                        skip_dollar: first,
                    });
                    return;
                }
                _ => match node.children.get(level) {
                    Some(child) => (node, rest, first) = (child, next, false),
                    None => return,
                },
            }
        }
        out.extend(node.message().cloned());
    }

    /// Collects every message below `node`, skipping `$` topics at the
    /// first level if `skip_dollar`, with one child iterator per level of the
    /// branch being walked.
    fn collect_below(node: &Node<V>, skip_dollar: bool, out: &mut Vec<V>) {
        let mut levels = vec![node.children.iter()];
        while let Some(level) = levels.last_mut() {
            let Some((name, child)) = level.next() else {
                levels.pop();
                continue;
            };
            if skip_dollar && levels.len() == 1 && name.starts_with('$') {
                continue;
            }
            out.extend(child.message().cloned());
            if !child.children.is_empty() {
                levels.push(child.children.iter());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tree::{arb, on_small_stack};
    use super::*;

    fn stamp(nanos: u64) -> RetainStamp {
        RetainStamp { nanos, shard: 0 }
    }

    /// Test values that are plain numbers weigh nothing.
    impl Weigh for usize {
        fn bytes(&self) -> usize {
            0
        }
    }

    #[test]
    fn the_bytes_follow_sets_replacements_and_deletes() {
        let mut s = RetainedStore::new();
        s.apply("a", stamp(1), Some("12345"));
        s.apply("b", stamp(2), Some("12"));
        assert_eq!((s.len(), s.bytes()), (2, 7));
        s.apply("a", stamp(3), Some("1"));
        assert_eq!((s.len(), s.bytes()), (2, 3));
        assert!(!s.apply("a", stamp(2), Some("stale")), "older: not applied");
        s.apply("b", stamp(4), None);
        assert_eq!((s.len(), s.bytes()), (1, 1));
        s.apply("a", stamp(5), None);
        assert_eq!((s.len(), s.bytes()), (0, 0));
    }

    fn matching(s: &RetainedStore<&'static str>, filter: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        s.collect_matching(filter, &mut out);
        out.sort();
        out
    }

    #[test]
    fn every_retained_message_is_visited_with_its_topic() {
        let mut store = RetainedStore::new();
        let topics = ["a", "a/b", "/a", "a//b", "$SYS/x", "gone"];
        for (i, t) in topics.iter().enumerate() {
            let stamp = RetainStamp {
                nanos: i as u64 + 1,
                shard: 0,
            };
            store.apply(t, stamp, Some(i));
        }
        let late = RetainStamp {
            nanos: 99,
            shard: 0,
        };
        store.apply("gone", late, None);
        let mut seen = Vec::new();
        store.for_each(|t, _, v| seen.push((t.to_string(), *v)));
        seen.sort();
        let mut expected: Vec<(String, usize)> = topics[..5]
            .iter()
            .enumerate()
            .map(|(i, t)| (t.to_string(), i))
            .collect();
        expected.sort();
        assert_eq!(seen, expected);
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
        s.purge_tombstones(stamp(100), usize::MAX);
        assert!(s.root.children.is_empty());
    }

    /// Levels of the deep topics: far more than the codec accepts, and
    /// enough to overflow a small stack at one frame per level.
    const DEEP: usize = 100_000;

    #[test]
    fn deep_topics_walk_without_recursion() {
        on_small_stack(|| {
            let topic = vec!["t"; DEEP].join("/");
            let plus = vec!["+"; DEEP].join("/");
            let mut s = RetainedStore::new();
            assert!(s.apply(&topic, stamp(1), Some("deep")));
            assert!(s.apply("short", stamp(1), Some("short")));
            assert_eq!(matching(&s, "#"), vec!["deep", "short"]);
            assert_eq!(matching(&s, &plus), vec!["deep"]);
            assert_eq!(matching(&s, &topic), vec!["deep"]);
            assert_eq!(matching(&s, &format!("{topic}/#")), vec!["deep"]);
            assert_eq!(matching(&s, "+"), vec!["short"]);
            assert!(s.apply(&topic, stamp(2), None));
            assert_eq!(matching(&s, "#"), vec!["short"]);
            s.purge_tombstones(stamp(3), usize::MAX);
            assert_eq!((s.len(), s.tombstones), (1, 0));
            assert_eq!(s.root.children.len(), 1);
            assert!(s.apply(&topic, stamp(4), Some("deep")));
            drop(s);
        });
    }

    /// Every node but the root holds an entry or a child.
    fn pruned(s: &RetainedStore<String>) -> bool {
        let mut nodes: Vec<&Node<String>> = s.root.children.values().collect();
        while let Some(node) = nodes.pop() {
            if node.entry.is_none() && node.children.is_empty() {
                return false;
            }
            nodes.extend(node.children.values());
        }
        true
    }

    #[test]
    fn purge_visits_deletes_in_order_within_its_budget() {
        let mut s = RetainedStore::new();
        s.apply("a/b", stamp(1), Some("ab"));
        s.apply("a/b", stamp(10), None);
        s.apply("a/c/d", stamp(5), None); // from another shard, older
        s.apply("a/b", stamp(20), Some("ab again")); // set again: stays
        s.apply("x", stamp(6), None);
        s.apply("y", stamp(7), None);
        s.purge_tombstones(stamp(11), 2);
        assert_eq!((s.len(), s.tombstones), (1, 2), "two deletes visited");
        s.purge_tombstones(stamp(11), usize::MAX);
        assert_eq!((s.len(), s.tombstones), (1, 0));
        assert_eq!(matching(&s, "#"), vec!["ab again"]);
        assert_eq!(s.root.children.len(), 1, "x, y and a/c pruned");
        assert!(s.tomb_log.is_empty());
    }

    proptest::proptest! {
        /// Same matches as the reference matcher, with some topics deleted,
        /// before and after purging their tombstones; purging prunes.
        #[test]
        fn matches_like_the_reference(
            topics in proptest::collection::vec(arb::topic(), 1..24),
            filters in proptest::collection::vec(arb::filter(), 1..16),
        ) {
            let mut s = RetainedStore::new();
            for (i, t) in topics.iter().enumerate() {
                s.apply(t, stamp(i as u64 + 1), Some(t.clone()));
            }
            let mut deleted: Vec<&String> = topics.iter().step_by(3).collect();
            for t in &deleted {
                s.apply(t, stamp(100), None);
            }
            deleted.sort();
            deleted.dedup();
            // Nothing is older than the tombstones, then all are.
            for (before, left) in [(100, deleted.len()), (101, 0)] {
                for f in &filters {
                    let mut expected: Vec<String> = topics
                        .iter()
                        .filter(|t| !deleted.contains(t) && crate::protocol::matches(f, t))
                        .cloned()
                        .collect();
                    expected.sort();
                    expected.dedup();
                    let mut out = Vec::new();
                    s.collect_matching(f, &mut out);
                    out.sort();
                    proptest::prop_assert_eq!(out, expected, "filter {}", f);
                }
                s.purge_tombstones(stamp(before), usize::MAX);
                proptest::prop_assert_eq!(s.tombstones, left);
                proptest::prop_assert!(pruned(&s));
            }
        }
    }
}
