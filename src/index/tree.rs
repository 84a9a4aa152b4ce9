//! What the subscription trie and the retained store share: splitting a topic
//! into levels, and dropping a tree of any depth.
//!
//! Both trees have one node per topic level, and a client chooses the number
//! of levels (a 65,535-byte topic has up to 32,768). So nothing here, nor in
//! the trees' walks, recurses per level: the compiler's drop glue would, and
//! a deep enough tree would overflow the shard's stack.

use std::collections::HashMap;

use ahash::RandomState;

/// Splits the first level off a topic or filter: `a/b/c` -> (`a`, Some(`b/c`)).
pub(super) fn split_level(s: &str) -> (&str, Option<&str>) {
    match s.find('/') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// Moves the children map out of a node being torn down. The empty map left
/// behind gets a fixed hasher: it never hashes anything, and
/// `HashMap::default` would seed a new `RandomState` for every node dropped.
pub(super) fn take_children<K, V>(
    map: &mut HashMap<K, V, RandomState>,
) -> HashMap<K, V, RandomState> {
    std::mem::replace(
        map,
        HashMap::with_hasher(RandomState::with_seeds(0, 0, 0, 0)),
    )
}

/// Drops the nodes of `children` and everything below them in constant stack
/// space. `detach` moves a node's children out of it, `None` for a leaf, so
/// the node itself drops without recursing.
///
/// Heap use: one iterator per level of the branch being torn down that still
/// has nodes left, so dropping a chain (what `remove` prunes) allocates
/// nothing (a level is let go as soon as its `size_hint` says it is empty,
/// as the hash map iterators used here do).
pub(super) fn drop_subtrees<N, I>(children: I, detach: impl Fn(&mut N) -> Option<I>)
where
    I: Iterator<Item = N>,
{
    let mut above = Vec::new();
    let mut level = children;
    loop {
        let Some(mut node) = level.next() else {
            match above.pop() {
                Some(rest) => level = rest,
                None => return,
            }
            continue;
        };
        if let Some(below) = detach(&mut node) {
            let rest = std::mem::replace(&mut level, below);
            if rest.size_hint().1 != Some(0) {
                above.push(rest);
            }
        }
    }
}

/// Runs `f` on a thread with a 256 KiB stack, so a test proves a walk does
/// not recurse per level: 100,000 levels of recursion overflow it.
#[cfg(test)]
pub(super) fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn test thread")
        .join()
        .expect("test thread");
}

/// Strategies for random small topics and filters over a few levels (with
/// `$` and empty levels), to check the trees against [`crate::protocol::matches`].
#[cfg(test)]
pub(super) mod arb {
    use proptest::prelude::*;

    const LEVELS: &[&str] = &["a", "b", "$s", ""];
    const FILTER_LEVELS: &[&str] = &["a", "b", "$s", "", "+"];

    /// A valid topic of one to four levels.
    pub fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(LEVELS), 1..5)
            .prop_map(|levels| levels.join("/"))
            .prop_filter("a topic is not empty", |t| !t.is_empty())
    }

    /// A valid filter of up to four levels, some ending in `#`.
    pub fn filter() -> impl Strategy<Value = String> {
        let levels = prop::collection::vec(prop::sample::select(FILTER_LEVELS), 0..4);
        (levels, any::<bool>())
            .prop_map(|(mut levels, hash)| {
                if hash || levels.is_empty() {
                    levels.push("#");
                }
                levels.join("/")
            })
            .prop_filter("a filter is not empty", |f| !f.is_empty())
    }
}
