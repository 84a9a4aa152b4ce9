//! Subscription index and retained store.
//!
//! Each shard owns, privately:
//! - a [`SubTrie`] of its local subscriptions (filter -> local sessions);
//! - a replica [`SubTrie`] of every other shard's filters (filter -> shard),
//!   kept current by `SubAdd`/`SubRemove` mesh messages;
//! - a replica of the [`RetainedStore`];
//! - a [`SharedIndex`] of the shared subscription groups: its own members
//!   and every shard's member count.
//!
//! A PUBLISH is matched against both tries on the shard that received it:
//! local subscribers get it directly, and each remote shard with a matching
//! filter gets it once over the mesh.

mod retained;
mod shardset;
mod shared;
mod tree;
mod trie;

pub use retained::{RetainStamp, RetainedStore, Weigh};
pub use shardset::ShardSet;
pub use shared::{Group, Pick, SharedIndex, Strategy};
pub use trie::SubTrie;
