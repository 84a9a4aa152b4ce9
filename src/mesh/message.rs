//! What crosses the mesh. Everything here is `Send`; nothing here refers to
//! shard-local state except by value (ids, not pointers).

use std::os::fd::OwnedFd;
use std::sync::Arc;

use bytes::Bytes;

use crate::index::RetainStamp;
use crate::protocol::{Connect, Publish, TopicFilter, TopicName};

/// Who published a message: used for MQTT 5 No Local.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub shard: u16,
    /// Session id on that shard; 0 for messages with no client (wills are
    /// still attributed to their session).
    pub session: u64,
}

/// An application message being routed. Immutable once built and shared by
/// every shard and queue that holds it.
///
/// Invariant: `publish` is detached (owns its bytes; see
/// `protocol::Publish::detach`), has no packet id, DUP clear, and no Topic
/// Alias or Subscription Identifier properties.
#[derive(Debug)]
pub struct Message {
    pub publish: Publish,
    pub origin: Origin,
}

/// A client connection whose session lives on the destination shard,
/// moved there after its CONNECT was read.
#[derive(Debug)]
pub struct Handover {
    pub fd: OwnedFd,
    pub connect: Box<Connect>,
    /// Bytes the client sent after CONNECT (detached).
    pub leftover: Bytes,
}

/// A message from one shard to another.
#[derive(Debug)]
pub enum ShardMsg {
    /// Deliver to the destination's local subscribers (sent once per
    /// destination shard, never once per subscriber).
    Forward(Arc<Message>),
    /// The sender now has at least one subscription on this filter.
    SubAdd(TopicFilter),
    /// The sender no longer has any subscription on this filter.
    SubRemove(TopicFilter),
    /// Set (`Some`) or delete (`None`) the retained message of a topic.
    Retain {
        topic: TopicName,
        stamp: RetainStamp,
        message: Option<Arc<Message>>,
    },
    /// Adopt this connection: its session lives on the destination.
    Handover(Box<Handover>),
    /// Answer with `BarrierAck` once everything sent before it is applied.
    Barrier(u64),
    /// The answer to `Barrier` with the same token.
    BarrierAck(u64),
    /// Shutdown: the sender has published all its wills.
    WillsSent,
}
