//! A topic-filter trie: filter -> (key, value) entries, matched by topic.
//!
//! Shard-local; never crosses the mesh. The shard keeps two: local sessions
//! keyed by session id, and the replica of remote shards keyed by shard id.

use std::collections::hash_map::IntoValues;
use std::collections::HashMap;
use std::iter::Chain;

use ahash::RandomState;

use super::tree::{drop_subtrees, split_level, take_children};

/// Filter trie. `K` identifies a subscriber (unique per filter), `V` is what
/// the subscriber asked for (options, or a reference count).
///
/// Depth is client-controlled (one node per filter level), so nothing
/// recurses per level; walks keep their state on the heap:
/// - `insert`, `get_mut` and `remove` follow the filter's path, with
///   constant extra memory;
/// - `for_each_match` visits each node at most once and keeps the forks it
///   has yet to walk, at most one per topic level (within 2 x levels);
/// - dropping the trie, or a branch `remove` prunes, tears nodes down with a
///   work-list of one iterator per level (see [`drop_subtrees`]).
pub struct SubTrie<K, V> {
    root: Node<K, V>,
    /// Number of (filter, key) entries.
    len: usize,
}

/// One filter level. Invariant: every node but the root holds an entry or
/// has a child (`remove` prunes the others).
struct Node<K, V> {
    /// Literal next levels.
    children: HashMap<Box<str>, Node<K, V>, RandomState>,
    /// The `+` next level.
    plus: Option<Box<Node<K, V>>>,
    /// Entries whose filter ends with `#` after this node.
    hash: Vec<(K, V)>,
    /// Entries whose filter ends exactly at this node.
    exact: Vec<(K, V)>,
}

/// A node's children, moved out of it to be dropped.
type Children<K, V> = Chain<std::option::IntoIter<Node<K, V>>, IntoValues<Box<str>, Node<K, V>>>;

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node {
            children: HashMap::default(),
            plus: None,
            hash: Vec::new(),
            exact: Vec::new(),
        }
    }
}

impl<K, V> Drop for Node<K, V> {
    fn drop(&mut self) {
        if let Some(children) = self.detach() {
            drop_subtrees(children, Node::detach);
        }
    }
}

impl<K, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.exact.is_empty()
    }

    /// True when the node holds nothing but one child: it goes when that
    /// child goes.
    fn only_one_child(&self) -> bool {
        self.hash.is_empty()
            && self.exact.is_empty()
            && self.children.len() + usize::from(self.plus.is_some()) == 1
    }

    /// The child that `level` (`+` or a literal) leads to.
    fn child_mut(&mut self, level: &str) -> Option<&mut Node<K, V>> {
        match level {
            "+" => self.plus.as_deref_mut(),
            _ => self.children.get_mut(level),
        }
    }

    /// Removes the child that `level` leads to, with its subtree.
    fn remove_child(&mut self, level: &str) {
        match level {
            "+" => self.plus = None,
            _ => drop(self.children.remove(level)),
        }
    }

    /// Moves the children out, `None` for a leaf.
    fn detach(&mut self) -> Option<Children<K, V>> {
        if self.children.is_empty() && self.plus.is_none() {
            return None;
        }
        let plus = self.plus.take().map(|node| *node);
        Some(
            plus.into_iter()
                .chain(take_children(&mut self.children).into_values()),
        )
    }
}

impl<K: PartialEq, V> Default for SubTrie<K, V> {
    fn default() -> Self {
        SubTrie {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<K: PartialEq, V> SubTrie<K, V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of (filter, key) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces `key`'s entry for `filter` (a valid, non-shared
    /// filter). Returns the value it replaced.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let list = Self::slot_mut(&mut self.root, filter);
        if let Some(entry) = list.iter_mut().find(|(k, _)| *k == key) {
            return Some(std::mem::replace(&mut entry.1, value));
        }
        list.push((key, value));
        self.len += 1;
        None
    }

    /// The entry list for `filter`, creating nodes on the way.
    fn slot_mut<'a>(mut node: &'a mut Node<K, V>, filter: &str) -> &'a mut Vec<(K, V)> {
        for level in filter.split('/') {
            match level {
                "#" => return &mut node.hash,
                "+" => node = node.plus.get_or_insert_with(Box::default),
                _ => node = node.children.entry(level.into()).or_default(),
            }
        }
        &mut node.exact
    }

    /// `key`'s value for `filter`, if present.
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        let mut node = &self.root;
        for level in filter.split('/') {
            if level == "#" {
                return find(&node.hash, key);
            }
            node = match level {
                "+" => node.plus.as_deref()?,
                _ => node.children.get(level)?,
            };
        }
        find(&node.exact, key)
    }

    /// Mutable access to `key`'s value for `filter`, if present.
    pub fn get_mut(&mut self, filter: &str, key: &K) -> Option<&mut V> {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            if level == "#" {
                return find_mut(&mut node.hash, key);
            }
            node = node.child_mut(level)?;
        }
        find_mut(&mut node.exact, key)
    }

    /// Removes `key`'s entry for `filter`, pruning empty nodes.
    ///
    /// Two passes down the filter's path, no recursion: the first takes the
    /// entry and notes the deepest node that must stay; the second cuts the
    /// branch below it, which held nothing but the path to the entry.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let (value, keep) = Self::take_entry(&mut self.root, filter, key)?;
        self.len -= 1;
        if let Some(depth) = keep {
            Self::prune(&mut self.root, filter, depth);
        }
        Some(value)
    }

    /// Takes `key`'s entry for `filter`. When that leaves the filter's node
    /// empty, also returns the depth of the deepest node above it that holds
    /// more than the path down to it (the root, at worst).
    fn take_entry(mut node: &mut Node<K, V>, filter: &str, key: &K) -> Option<(V, Option<usize>)> {
        let (mut depth, mut keep, mut in_hash) = (0, 0, false);
        for level in filter.split('/') {
            if level == "#" {
                in_hash = true;
                break;
            }
            if !node.only_one_child() {
                keep = depth;
            }
            node = node.child_mut(level)?;
            depth += 1;
        }
        let list = if in_hash {
            &mut node.hash
        } else {
            &mut node.exact
        };
        let value = take(list, key)?;
        let prune = depth > 0 && node.is_empty();
        Some((value, prune.then_some(keep)))
    }

    /// Cuts `filter`'s branch below the node at depth `keep`.
    fn prune(mut node: &mut Node<K, V>, filter: &str, keep: usize) {
        let mut levels = filter.split('/');
        for level in levels.by_ref().take(keep) {
            // `take_entry` has just walked this path.
            let Some(child) = node.child_mut(level) else {
                return;
            };
            node = child;
        }
        if let Some(level) = levels.next() {
            node.remove_child(level);
        }
    }

    /// Calls `f` for every entry whose filter matches `topic`. A topic
    /// starting with `$` is not matched by `+` or `#` at the first level.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&K, &V)) {
        // Allocates only where the walk forks (a level matched both as a
        // literal and by `+`).
        let mut forks = Vec::new();
        let mut wildcards = !topic.starts_with('$');
        let mut next = Some((&self.root, Some(topic)));
        while let Some((node, rest)) = next.or_else(|| forks.pop()) {
            next = Self::visit(node, rest, wildcards, &mut forks, &mut f);
            wildcards = true;
        }
    }

    /// `node` matched the topic up to `rest`: reports its matching entries
    /// and returns the child that matches the next level. If both the
    /// literal and the `+` child match, the `+` one waits in `forks`; the
    /// walk finishes the literal branch first, so `forks` holds at most one
    /// node per topic level.
    fn visit<'a>(
        node: &'a Node<K, V>,
        rest: Option<&'a str>,
        wildcards: bool,
        forks: &mut Vec<(&'a Node<K, V>, Option<&'a str>)>,
        f: &mut impl FnMut(&K, &V),
    ) -> Option<(&'a Node<K, V>, Option<&'a str>)> {
        if wildcards {
            node.hash.iter().for_each(|(k, v)| f(k, v));
        }
        let Some(r) = rest else {
            node.exact.iter().for_each(|(k, v)| f(k, v));
            return None;
        };
        let (level, next) = split_level(r);
        let literal = node.children.get(level).map(|child| (child, next));
        let plus = node
            .plus
            .as_deref()
            .filter(|_| wildcards)
            .map(|plus| (plus, next));
        match (literal, plus) {
            (Some(literal), Some(plus)) => {
                forks.push(plus);
                Some(literal)
            }
            (literal, plus) => literal.or(plus),
        }
    }
}

fn find<'a, K: PartialEq, V>(list: &'a [(K, V)], key: &K) -> Option<&'a V> {
    list.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn find_mut<'a, K: PartialEq, V>(list: &'a mut [(K, V)], key: &K) -> Option<&'a mut V> {
    list.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn take<K: PartialEq, V>(list: &mut Vec<(K, V)>, key: &K) -> Option<V> {
    let i = list.iter().position(|(k, _)| k == key)?;
    let (_, v) = list.swap_remove(i);
    if list.is_empty() {
        *list = Vec::new();
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::super::tree::{arb, on_small_stack};
    use super::*;

    fn matched(t: &SubTrie<u32, ()>, topic: &str) -> Vec<u32> {
        let mut out = Vec::new();
        t.for_each_match(topic, |k, _| out.push(*k));
        out.sort();
        out
    }

    #[test]
    fn wildcards_and_dollar_rule() {
        let mut t = SubTrie::new();
        for (i, f) in ["a/b", "a/+", "a/#", "#", "+/b", "$SYS/#", "+/+/c", "a/b/#"]
            .iter()
            .enumerate()
        {
            t.insert(f, i as u32, ());
        }
        assert_eq!(matched(&t, "a/b"), vec![0, 1, 2, 3, 4, 7]);
        assert_eq!(matched(&t, "a"), vec![2, 3]);
        assert_eq!(matched(&t, "x/y/c"), vec![3, 6]);
        assert_eq!(matched(&t, "$SYS/load"), vec![5]);
        assert_eq!(matched(&t, "/b"), vec![3, 4]);
    }

    #[test]
    fn remove_prunes_and_replace_keeps_len() {
        let mut t = SubTrie::new();
        assert!(t.insert("a/+/c", 1u32, 1u8).is_none());
        assert_eq!(t.insert("a/+/c", 1, 2), Some(1));
        assert_eq!(t.len(), 1);
        assert_eq!(t.get_mut("a/+/c", &1).copied(), Some(2));
        assert_eq!(t.remove("a/+/c", &1), Some(2));
        assert_eq!(t.remove("a/+/c", &1), None);
        assert!(t.is_empty() && t.root.is_empty());
    }

    /// Levels of the deep filters and topics: far more than the codec
    /// accepts, and enough to overflow a small stack at one frame per level.
    const DEEP: usize = 100_000;

    #[test]
    fn deep_filters_walk_without_recursion() {
        on_small_stack(|| {
            let plus = format!("{}#", "+/".repeat(DEEP));
            let literal = vec!["l"; DEEP].join("/");
            let mut t = SubTrie::new();
            t.insert(&plus, 1u32, ());
            t.insert(&literal, 2, ());
            t.insert("short/+", 3, ());
            assert_eq!(matched(&t, &literal), vec![1, 2]);
            assert_eq!(matched(&t, &format!("{literal}/x")), vec![1]);
            assert_eq!(matched(&t, "short/x"), vec![3]);
            assert_eq!(matched(&t, "l"), Vec::<u32>::new());
            assert_eq!(t.remove(&plus, &1), Some(()));
            assert_eq!(t.remove(&literal, &2), Some(()));
            assert_eq!(matched(&t, &literal), Vec::<u32>::new());
            assert_eq!(t.len(), 1);
            assert!(t.root.plus.is_none() && t.root.children.len() == 1);
            t.insert(&plus, 1, ());
            t.insert(&literal, 2, ());
            drop(t);
        });
    }

    proptest::proptest! {
        /// Same matches as the reference matcher, before and after removing
        /// some filters; removing all leaves an empty root.
        #[test]
        fn matches_like_the_reference(
            filters in proptest::collection::vec(arb::filter(), 1..24),
            topics in proptest::collection::vec(arb::topic(), 1..16),
        ) {
            let mut t = SubTrie::new();
            for (i, f) in filters.iter().enumerate() {
                t.insert(f, i as u32, ());
            }
            for step in 0..2 {
                for topic in &topics {
                    let expected: Vec<u32> = (0..filters.len() as u32)
                        .filter(|&i| i % 2 == 1 || step == 0)
                        .filter(|&i| crate::protocol::matches(&filters[i as usize], topic))
                        .collect();
                    proptest::prop_assert_eq!(matched(&t, topic), expected, "topic {}", topic);
                }
                for (i, f) in filters.iter().enumerate().step_by(2) {
                    proptest::prop_assert_eq!(t.remove(f, &(i as u32)), (step == 0).then_some(()));
                }
            }
            for (i, f) in filters.iter().enumerate().skip(1).step_by(2) {
                proptest::prop_assert_eq!(t.remove(f, &(i as u32)), Some(()));
            }
            proptest::prop_assert!(t.is_empty() && t.root.is_empty());
        }
    }
}
