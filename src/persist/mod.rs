//! Durable state: each
//! shard appends what it must not lose to its own journal, written by a
//! thread of its own, so that no shard's loop waits on `write` or `fsync`
//! and no shard waits on another.
//!
//! - [`record`]: the on-disk format (versioned; checksummed records; a torn
//!   or corrupt tail is cut off at the last valid record). Pure.
//! - [`entry`]: what a record says: sessions, subscriptions, messages and
//!   their deliveries, retained messages, inbound QoS 2 ids. Pure.
//! - [`state`]: entries folded into recovered sessions and retained
//!   messages; journal generations (a start writes the live state as a
//!   new generation: recovery with another shard count, and compaction).
//! - [`journal`]: a shard's journal file and its writer thread, with
//!   write-before-ack or fsync group commit durability.
//! - [`bridge`]: the bridge thread's entries (its links' outgoing queues
//!   and QoS flows, inbound QoS 2 ids) and their fold, for its own
//!   journal `bridge.journal`. Pure.

pub mod bridge;
pub mod entry;
pub mod journal;
pub mod record;
pub mod state;

pub use entry::{BadEntry, Entry};
pub use journal::{Durability, Full, Journal, Recovered, DEFAULT_COMMIT_INTERVAL};
pub use state::{
    DurableState, Generations, StoredDelivery, StoredRetained, StoredSession, StoredWill,
};
