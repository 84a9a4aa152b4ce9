//! A topic-filter trie: filter -> (key, value) entries, matched by topic.
//!
//! Shard-local; never crosses the mesh. The shard keeps two: local sessions
//! keyed by session id, and the replica of remote shards keyed by shard id.

use std::collections::HashMap;

use ahash::RandomState;

/// Filter trie. `K` identifies a subscriber (unique per filter), `V` is what
/// the subscriber asked for (options, or a reference count).
pub struct SubTrie<K, V> {
    root: Node<K, V>,
    /// Number of (filter, key) entries.
    len: usize,
}

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

impl<K, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.exact.is_empty()
    }
}

/// Splits the first level off a topic or filter: `a/b/c` -> (`a`, Some(`b/c`)).
pub(super) fn split_level(s: &str) -> (&str, Option<&str>) {
    match s.find('/') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
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
        let mut rest = Some(filter);
        while let Some(r) = rest {
            let (level, next) = split_level(r);
            match level {
                "#" => return &mut node.hash,
                "+" => node = node.plus.get_or_insert_with(Box::default),
                _ => node = node.children.entry(level.into()).or_default(),
            }
            rest = next;
        }
        &mut node.exact
    }

    /// Mutable access to `key`'s value for `filter`, if present.
    pub fn get_mut(&mut self, filter: &str, key: &K) -> Option<&mut V> {
        let mut node = &mut self.root;
        let mut rest = Some(filter);
        while let Some(r) = rest {
            let (level, next) = split_level(r);
            let list = match level {
                "#" => &mut node.hash,
                "+" => {
                    node = node.plus.as_deref_mut()?;
                    rest = next;
                    continue;
                }
                _ => {
                    node = node.children.get_mut(level)?;
                    rest = next;
                    continue;
                }
            };
            return list.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v);
        }
        node.exact
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Removes `key`'s entry for `filter`, pruning empty nodes.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let removed = Self::remove_in(&mut self.root, Some(filter), key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    fn remove_in(node: &mut Node<K, V>, rest: Option<&str>, key: &K) -> Option<V> {
        let Some(r) = rest else {
            return take(&mut node.exact, key);
        };
        let (level, next) = split_level(r);
        match level {
            "#" => take(&mut node.hash, key),
            "+" => {
                let child = node.plus.as_deref_mut()?;
                let v = Self::remove_in(child, next, key);
                if child.is_empty() {
                    node.plus = None;
                }
                v
            }
            _ => {
                let child = node.children.get_mut(level)?;
                let v = Self::remove_in(child, next, key);
                if child.is_empty() {
                    node.children.remove(level);
                }
                v
            }
        }
    }

    /// Calls `f` for every entry whose filter matches `topic`. A topic
    /// starting with `$` is not matched by `+` or `#` at the first level.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&K, &V)) {
        let (level, next) = split_level(topic);
        let root = &self.root;
        if !topic.starts_with('$') {
            root.hash.iter().for_each(|(k, v)| f(k, v));
            if let Some(plus) = &root.plus {
                Self::walk(plus, next, &mut f);
            }
        }
        if let Some(child) = root.children.get(level) {
            Self::walk(child, next, &mut f);
        }
    }

    /// `node` matched the previous level; `rest` is what is left of the topic.
    fn walk(node: &Node<K, V>, rest: Option<&str>, f: &mut impl FnMut(&K, &V)) {
        node.hash.iter().for_each(|(k, v)| f(k, v));
        let Some(r) = rest else {
            node.exact.iter().for_each(|(k, v)| f(k, v));
            return;
        };
        let (level, next) = split_level(r);
        if let Some(child) = node.children.get(level) {
            Self::walk(child, next, f);
        }
        if let Some(plus) = &node.plus {
            Self::walk(plus, next, f);
        }
    }
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
}
