//! Durable state (work in progress, see the durable-state issue): each
//! shard appends what it must not lose to its own journal, written by a
//! thread of its own, so that no shard's loop waits on `write` or `fsync`
//! and no shard waits on another.
//!
//! - [`record`]: the on-disk format (versioned; checksummed records; a torn
//!   or corrupt tail is cut off at the last valid record). Pure.
//! - [`journal`]: a shard's journal file and its writer thread, with
//!   write-before-ack or fsync group commit durability.

pub mod journal;
pub mod record;

pub use journal::{Durability, Full, Journal, Recovered};
