//! Shared subscriptions (`$share/<group>/<filter>`, MQTT 5.0 4.8.2): the
//! groups one thread knows, how many members every shard has in each, this
//! shard's own members, and who gets the next message.
//!
//! Every thread on the mesh keeps one [`SharedIndex`], built from the
//! per-member `SubAdd`/`SubRemove` messages the shards broadcast for shared
//! filters (a plain filter is announced once per shard; a shared one once
//! per member, so that every replica knows the member counts). A message
//! is given to one member of each matching group in two steps:
//! - the thread that received it picks a shard, weighted by member count
//!   ([`SharedIndex::pick`]), so that with one publisher every member gets
//!   the same share however members are spread over shards;
//! - that shard picks one of its members ([`Group::choose_local`]),
//!   preferring online ones.
//!
//! Shard-local (the shard's or the bridge thread's); never crosses the mesh.

use std::cell::Cell;
use std::rc::Rc;

use super::{ShardSet, SubTrie};
use crate::protocol::TopicFilter;

/// How a group's next member is chosen (`shared_subscription_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Each member in turn (the default, as Mosquitto and EMQX).
    #[default]
    RoundRobin,
    /// The same member until it leaves or goes offline.
    Sticky,
    /// By a hash of the topic: one topic always goes to the same member
    /// while the group is unchanged, which keeps its messages in order.
    HashTopic,
}

impl Strategy {
    /// The config value's name.
    pub fn parse(s: &str) -> Option<Strategy> {
        match s {
            "round_robin" => Some(Strategy::RoundRobin),
            "sticky" => Some(Strategy::Sticky),
            "hash_topic" => Some(Strategy::HashTopic),
            _ => None,
        }
    }
}

/// One group: `$share/<group>/<filter>`. `K` identifies a local member
/// (a session id), `V` is its subscription.
pub struct Group<K, V> {
    /// The group's full filter, shared with every message a member holds
    /// through it (to hand them on when the member leaves).
    name: Rc<TopicFilter>,
    /// Members per shard, this one's included, sorted by shard; every
    /// count > 0.
    counts: Vec<(u16, u32)>,
    /// This shard's members, in the order they joined.
    local: Vec<(K, V)>,
    /// Where the next pick over shards starts.
    shard_cursor: Cell<u32>,
    /// Where the next pick over local members starts.
    local_cursor: Cell<u32>,
}

/// Where [`SharedIndex::pick`] sends a message for one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// To one of this shard's members.
    Local,
    /// To that shard, which picks one of its members.
    Shard(usize),
}

/// The shared subscription groups one thread knows, indexed by their inner
/// filter.
pub struct SharedIndex<K, V> {
    me: usize,
    strategy: Strategy,
    trie: SubTrie<TopicFilter, Group<K, V>>,
}

impl<K: PartialEq + Copy, V> SharedIndex<K, V> {
    /// An empty index for thread `me`.
    pub fn new(me: usize, strategy: Strategy) -> Self {
        SharedIndex {
            me,
            strategy,
            trie: SubTrie::new(),
        }
    }

    /// Number of groups known.
    pub fn len(&self) -> usize {
        self.trie.len()
    }

    /// True when no group is known.
    pub fn is_empty(&self) -> bool {
        self.trie.is_empty()
    }

    /// Adds (or updates) local member `key` of the group `filter` (a
    /// `$share/...` filter). Returns the value it replaced.
    pub fn insert_local(&mut self, filter: &TopicFilter, key: K, value: V) -> Option<V> {
        let me = self.me;
        let group = self.group_mut(filter);
        if let Some(entry) = group.local.iter_mut().find(|(k, _)| *k == key) {
            return Some(std::mem::replace(&mut entry.1, value));
        }
        group.local.push((key, value));
        group.add(me);
        None
    }

    /// Removes local member `key` of `filter`; its value if it was one.
    pub fn remove_local(&mut self, filter: &TopicFilter, key: &K) -> Option<V> {
        let inner = filter.match_filter();
        let group = self.trie.get_mut(inner, filter)?;
        let i = group.local.iter().position(|(k, _)| k == key)?;
        let (_, value) = group.local.remove(i);
        self.remove_count(filter, self.me);
        Some(value)
    }

    /// Shard `shard` has one more member in `filter`.
    pub fn add_remote(&mut self, filter: &TopicFilter, shard: usize) {
        self.group_mut(filter).add(shard);
    }

    /// Shard `shard` has one member fewer in `filter`.
    pub fn remove_remote(&mut self, filter: &TopicFilter, shard: usize) {
        self.remove_count(filter, shard);
    }

    /// The group of `filter`, if any shard has members in it.
    pub fn group(&self, filter: &TopicFilter) -> Option<&Group<K, V>> {
        self.trie.get(filter.match_filter(), filter)
    }

    /// True if a group's filter matches `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        let mut any = false;
        self.trie.for_each_match(topic, |_, _| any = true);
        any
    }

    /// For each group whose filter matches `topic`: where its member is,
    /// weighted by each shard's member count and chosen by the strategy.
    /// Returns how many groups matched.
    pub fn pick(&self, topic: &str, mut f: impl FnMut(&Group<K, V>, Pick)) -> usize {
        let strategy = self.strategy;
        let hash = topic_hash(topic);
        let mut n = 0;
        self.trie.for_each_match(topic, |_, group| {
            n += 1;
            let shard = group.pick_shard(strategy, hash);
            let pick = if shard == self.me {
                Pick::Local
            } else {
                Pick::Shard(shard)
            };
            f(group, pick);
        });
        n
    }

    /// The strategy picks use.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    fn group_mut(&mut self, filter: &TopicFilter) -> &mut Group<K, V> {
        let inner = filter.match_filter();
        if self.trie.get_mut(inner, filter).is_none() {
            let group = Group {
                name: Rc::new(filter.detached()),
                counts: Vec::new(),
                local: Vec::new(),
                shard_cursor: Cell::new(0),
                local_cursor: Cell::new(0),
            };
            self.trie.insert(inner, filter.detached(), group);
        }
        self.trie
            .get_mut(inner, filter)
            .expect("the group was just inserted")
    }

    /// One member fewer on `shard`; the group goes with its last member.
    fn remove_count(&mut self, filter: &TopicFilter, shard: usize) {
        let inner = filter.match_filter();
        let Some(group) = self.trie.get_mut(inner, filter) else {
            return;
        };
        if let Ok(i) = group
            .counts
            .binary_search_by_key(&(shard as u16), |(s, _)| *s)
        {
            group.counts[i].1 -= 1;
            if group.counts[i].1 == 0 {
                group.counts.remove(i);
            }
        }
        if group.counts.is_empty() {
            self.trie.remove(inner, filter);
        }
    }
}

impl<K, V> Group<K, V> {
    /// The group's full filter (`$share/<group>/<filter>`).
    pub fn name(&self) -> &Rc<TopicFilter> {
        &self.name
    }

    /// This shard's members.
    pub fn local(&self) -> &[(K, V)] {
        &self.local
    }

    fn add(&mut self, shard: usize) {
        let shard = shard as u16;
        match self.counts.binary_search_by_key(&shard, |(s, _)| *s) {
            Ok(i) => self.counts[i].1 += 1,
            Err(i) => self.counts.insert(i, (shard, 1)),
        }
    }

    /// A shard, each member counting once: slot `n` of the members laid
    /// out shard by shard.
    fn pick_shard(&self, strategy: Strategy, hash: u32) -> usize {
        let total: u32 = self.counts.iter().map(|(_, c)| c).sum();
        let mut slot = next_slot(strategy, &self.shard_cursor, hash) % total.max(1);
        for (shard, count) in &self.counts {
            if slot < *count {
                return usize::from(*shard);
            }
            slot -= count;
        }
        self.counts.first().map_or(0, |(s, _)| usize::from(*s))
    }

    /// One of this shard's members that `usable` accepts, starting where
    /// the strategy says and going round once.
    pub fn choose_local(
        &self,
        strategy: Strategy,
        topic: &str,
        mut usable: impl FnMut(&K, &V) -> bool,
    ) -> Option<&(K, V)> {
        let n = self.local.len();
        if n == 0 {
            return None;
        }
        let start = next_slot(strategy, &self.local_cursor, topic_hash(topic)) as usize;
        let found = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| usable(&self.local[i].0, &self.local[i].1))?;
        if strategy == Strategy::Sticky {
            // Stay with the member found (the one before may be offline).
            self.local_cursor.set(found as u32);
        }
        Some(&self.local[found])
    }

    /// The next shard with members that is not in `tried`, in turn.
    pub fn untried_shard(&self, tried: &ShardSet) -> Option<usize> {
        let n = self.counts.len();
        let start = self.shard_cursor.get() as usize;
        (0..n)
            .map(|i| usize::from(self.counts[(start + i) % n].0))
            .find(|s| !tried.contains(*s))
    }
}

/// The start position for the next pick: the cursor, which round-robin
/// then advances; the topic's hash for `HashTopic`.
fn next_slot(strategy: Strategy, cursor: &Cell<u32>, hash: u32) -> u32 {
    match strategy {
        Strategy::RoundRobin => {
            let c = cursor.get();
            cursor.set(c.wrapping_add(1));
            c
        }
        Strategy::Sticky => cursor.get(),
        Strategy::HashTopic => hash,
    }
}

/// FNV-1a of the topic: the same on every shard and run.
fn topic_hash(topic: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in topic.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::from_str(s).expect("valid filter")
    }

    fn picks(index: &SharedIndex<u64, ()>, topic: &str, n: usize) -> Vec<Pick> {
        let mut out = Vec::new();
        for _ in 0..n {
            index.pick(topic, |_, p| out.push(p));
        }
        out
    }

    #[test]
    fn round_robin_weighs_shards_by_member_count() {
        let g = filter("$share/g/a/+");
        let mut index = SharedIndex::new(0, Strategy::RoundRobin);
        index.insert_local(&g, 1, ());
        index.add_remote(&g, 2);
        index.add_remote(&g, 2);
        index.add_remote(&g, 1);
        let got = picks(&index, "a/x", 8);
        let count = |p| got.iter().filter(|g| **g == p).count();
        assert_eq!(count(Pick::Local), 2);
        assert_eq!(count(Pick::Shard(1)), 2);
        assert_eq!(count(Pick::Shard(2)), 4);
        assert!(
            picks(&index, "b/x", 1).is_empty(),
            "other topics match no group"
        );
    }

    #[test]
    fn groups_are_independent_and_go_with_their_last_member() {
        let (g, h) = (filter("$share/g/a/#"), filter("$share/h/a/#"));
        let mut index = SharedIndex::new(0, Strategy::RoundRobin);
        index.insert_local(&g, 1, ());
        index.insert_local(&h, 1, ());
        index.add_remote(&h, 3);
        assert_eq!(index.len(), 2);
        let mut seen = 0;
        assert_eq!(index.pick("a/b", |_, _| seen += 1), 2);
        assert_eq!(index.remove_local(&g, &1), Some(()));
        assert_eq!(index.remove_local(&g, &1), None);
        assert_eq!(index.len(), 1);
        index.remove_remote(&h, 3);
        assert!(index.matches("a/b"));
        index.remove_local(&h, &1);
        assert!(index.is_empty() && !index.matches("a/b"));
    }

    #[test]
    fn local_choice_prefers_usable_members_in_turn() {
        let g = filter("$share/g/t");
        let mut index = SharedIndex::new(0, Strategy::RoundRobin);
        for sid in [10, 11, 12] {
            index.insert_local(&g, sid, ());
        }
        assert_eq!(
            index.insert_local(&g, 11, ()),
            Some(()),
            "a resubscribe updates"
        );
        let group = index.group(&g).expect("group exists");
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(
                group
                    .choose_local(Strategy::RoundRobin, "t", |k, _| *k != 11)
                    .map(|m| m.0),
            );
        }
        assert_eq!(got, [Some(10), Some(12), Some(12), Some(10)]);
        assert!(group
            .choose_local(Strategy::RoundRobin, "t", |_, _| false)
            .is_none());
    }

    #[test]
    fn sticky_and_hash_keep_to_one_member() {
        let g = filter("$share/g/t/#");
        for strategy in [Strategy::Sticky, Strategy::HashTopic] {
            let mut index = SharedIndex::new(0, strategy);
            for sid in [1, 2, 3] {
                index.insert_local(&g, sid, ());
            }
            let group = index.group(&g).expect("group exists");
            let first = group
                .choose_local(strategy, "t/a", |_, _| true)
                .map(|m| m.0);
            for _ in 0..5 {
                let again = group
                    .choose_local(strategy, "t/a", |_, _| true)
                    .map(|m| m.0);
                assert_eq!(again, first, "{strategy:?}");
            }
            let other = group.choose_local(strategy, "t/a", |k, _| Some(*k) != first);
            assert!(other.is_some_and(|m| Some(m.0) != first));
        }
    }

    #[test]
    fn untried_shards_come_in_turn_and_run_out() {
        let g = filter("$share/g/t");
        let mut index = SharedIndex::<u64, ()>::new(0, Strategy::RoundRobin);
        index.add_remote(&g, 1);
        index.add_remote(&g, 4);
        let group = index.group(&g).expect("group exists");
        let mut tried = ShardSet::default();
        let first = group.untried_shard(&tried).expect("one");
        tried.insert(first);
        let second = group.untried_shard(&tried).expect("another");
        assert_ne!(first, second);
        tried.insert(second);
        assert_eq!(group.untried_shard(&tried), None);
    }

    #[test]
    fn strategies_parse_by_name() {
        assert_eq!(Strategy::parse("round_robin"), Some(Strategy::RoundRobin));
        assert_eq!(Strategy::parse("sticky"), Some(Strategy::Sticky));
        assert_eq!(Strategy::parse("hash_topic"), Some(Strategy::HashTopic));
        assert_eq!(Strategy::parse("random"), None);
    }
}
