//! What crosses the mesh. Everything here is `Send`; nothing here refers to
//! shard-local state except by value (ids, not pointers).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::index::{RetainStamp, ShardSet};
use crate::protocol::{Connect, Publish, TopicFilter, TopicName};
use crate::runtime::Transport;

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
/// Alias or Subscription Identifier properties. `expires_at` is set from
/// the Message Expiry Interval in `publish` when the message is built, and
/// only then (see [`Message::new`]).
#[derive(Debug)]
pub struct Message {
    pub publish: Publish,
    pub origin: Origin,
    /// When the Message Expiry Interval (MQTT 5.0, 3.3.2.3.3) runs out:
    /// the moment the broker received the message plus the interval.
    /// `None` for a message without one (it never expires). Every shard
    /// reads the same monotonic clock, so all compute the same remaining
    /// time from it.
    expires_at: Option<Instant>,
    /// Who published it, kept only on retained messages while
    /// `check_retain_source` is on (see [`Message::with_source`]).
    pub source: Option<Arc<Publisher>>,
    /// When the broker read it: the start of the loop turn that read the
    /// PUBLISH (for the latency histograms). `None` while metrics are off,
    /// and for messages not read from a client (restored, broker's own).
    pub read_at: Option<Instant>,
}

impl crate::index::Weigh for Arc<Message> {
    /// Payload bytes, as Mosquitto's `store/messages/bytes` counts them.
    fn bytes(&self) -> usize {
        self.publish.payload.len()
    }
}

/// The client that published a retained message: with
/// `check_retain_source`, the message is delivered to new subscribers
/// only while that client may still write its topic.
#[derive(Debug, PartialEq, Eq)]
pub struct Publisher {
    pub client_id: Arc<str>,
    pub username: Option<Arc<str>>,
    /// The index of the listener it was connected to (its ACL rules apply).
    pub listener: u8,
}

impl Message {
    /// A message received now. Reads the clock only when `publish`
    /// carries a Message Expiry Interval. An interval of 0 is passed on
    /// as it is and never expires here (as in Mosquitto).
    pub fn new(publish: Publish, origin: Origin) -> Message {
        let expires_at = publish
            .properties
            .message_expiry_interval
            .filter(|secs| *secs > 0)
            .and_then(|secs| Instant::now().checked_add(Duration::from_secs(u64::from(secs))));
        Message {
            publish,
            origin,
            expires_at,
            source: None,
            read_at: None,
        }
    }

    /// This message as published by `source` (kept for `check_retain_source`).
    pub fn with_source(self, source: Publisher) -> Message {
        Message {
            source: Some(Arc::new(source)),
            ..self
        }
    }

    /// This message as read at `at` (see [`Message::read_at`]).
    pub fn with_read_at(self, at: Option<Instant>) -> Message {
        Message {
            read_at: at,
            ..self
        }
    }

    /// A message read back from a journal, whose Message Expiry Interval
    /// runs out at `expires_at_unix` (Unix seconds; 0 = never): the
    /// monotonic deadline is set from the wall clock now.
    pub fn restored(publish: Publish, origin: Origin, expires_at_unix: u64) -> Message {
        let expires_at = (expires_at_unix != 0).then(|| {
            let left = expires_at_unix.saturating_sub(unix_now());
            Instant::now() + Duration::from_secs(left)
        });
        Message {
            expires_at,
            ..Message::new(publish, origin)
        }
    }

    /// When the Message Expiry Interval runs out, in Unix seconds (0 =
    /// never), for a journal.
    pub fn expires_at_unix(&self) -> u64 {
        self.remaining_expiry()
            .map_or(0, |left| unix_now() + u64::from(left))
    }

    /// True if the message carries an expiry interval.
    pub fn expires(&self) -> bool {
        self.expires_at.is_some()
    }

    /// True once the Message Expiry Interval has passed: the message must
    /// not be delivered any more. Reads the clock only for a message with
    /// an interval.
    pub fn is_expired(&self) -> bool {
        self.expires_at.is_some_and(|at| Instant::now() >= at)
    }

    /// The Message Expiry Interval to send now: what was received less the
    /// time the message has waited in the broker, in whole seconds rounded
    /// up (at least 1). `None` for a message without one.
    pub fn remaining_expiry(&self) -> Option<u32> {
        let left = self.expires_at?.saturating_duration_since(Instant::now());
        let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        Some(u32::try_from(secs).unwrap_or(u32::MAX).max(1))
    }

    /// This message under another topic (a mount point stripped for one
    /// subscriber), with the same origin and expiry. Nothing is copied
    /// but the topic's handle.
    pub fn with_topic(&self, topic: TopicName) -> Message {
        let mut publish = self.publish.clone();
        publish.topic = topic;
        Message {
            publish,
            origin: self.origin,
            expires_at: self.expires_at,
            source: self.source.clone(),
            read_at: self.read_at,
        }
    }

    /// This message as delivered to one 5.0 subscriber whose matching
    /// subscriptions carry the Subscription Identifiers `ids` (3.3.2.3.8):
    /// a copy of its own, with the same origin and expiry, since the
    /// shared encodings carry none. The payload is shared, not copied.
    pub fn with_subscription_ids(&self, ids: &[NonZeroU32]) -> Message {
        let mut publish = self.publish.clone();
        publish.properties.subscription_identifiers = ids.iter().map(|id| id.get()).collect();
        Message {
            publish,
            origin: self.origin,
            expires_at: self.expires_at,
            source: self.source.clone(),
            read_at: self.read_at,
        }
    }
}

/// A message for one member of a shared subscription group (MQTT 5.0
/// 4.8.2), sent to a shard with members in it, which gives it to one of
/// its online members or passes it on (see `shard::share`).
#[derive(Debug)]
pub struct SharedDelivery {
    pub msg: Arc<Message>,
    /// The group's full filter, `$share/<group>/<filter>`.
    pub group: TopicFilter,
    /// Shards that had no online member to take it.
    pub tried: ShardSet,
    /// The first of those that has offline members: if no shard has an
    /// online one, the message is queued there for one of them.
    pub fallback: Option<u16>,
    /// Durable state: the shard whose publisher's acknowledgement waits
    /// for this delivery, and its ticket. The shard that takes the
    /// delivery (gives it to a member, or drops it) confirms the ticket
    /// once that is durable (`SharedDurable`), however many shards it
    /// was passed through.
    pub ticket: Option<(u16, u64)>,
}

impl SharedDelivery {
    /// `msg` for a member of `group`, no shard tried yet.
    pub fn new(msg: Arc<Message>, group: TopicFilter) -> SharedDelivery {
        SharedDelivery {
            msg,
            group,
            tried: ShardSet::default(),
            fallback: None,
            ticket: None,
        }
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A client connection whose session lives on the destination shard,
/// moved there after its CONNECT was read.
///
/// TLS: the rustls session moves with its socket (`ServerConnection` is
/// `Send`; the transport is boxed, so the message stays small). The other
/// ways were worse: keeping TLS connections on the accepting shard and
/// relaying their packets over the mesh would put two shards and a mesh
/// hop on every packet of a session that is meant to live on one core;
/// a TLS-terminating shard per listener would funnel all TLS through one
/// core. Moving the session costs one pointer in this message, once per
/// connection. The receiver reads the transport once after adopting it:
/// plaintext or records rustls already holds raise no readiness there.
#[derive(Debug)]
pub struct Handover {
    /// The connection, deregistered from the sender's loop: a TCP socket,
    /// a TLS session with its socket (a TLS session cannot travel as a
    /// bare fd: its keys and buffered records go with it), or a WebSocket
    /// with its framing state (the socket alone would not say where in a
    /// frame the client is, nor carry a pong not yet written; the state is
    /// `Send`, holds no shard state, and is bounded).
    pub transport: Transport,
    pub connect: Box<Connect>,
    /// Bytes the client sent after CONNECT (detached).
    pub leftover: Bytes,
    /// The index of the listener that accepted it (its settings apply).
    pub listener: u8,
}

/// A message from one shard to another.
#[derive(Debug)]
pub enum ShardMsg {
    /// Deliver to the destination's local subscribers (sent once per
    /// destination shard, never once per subscriber).
    Forward(Arc<Message>),
    /// Give to one member of a shared subscription group.
    Shared(Box<SharedDelivery>),
    /// The sender now has at least one subscription on this filter; for a
    /// shared filter (`$share/...`), one more member (sent per member).
    SubAdd(TopicFilter),
    /// Durable state: the sender's journal holds, durably, everything it
    /// did for the first `n` QoS 1/2 messages the destination forwarded it
    /// (a running count): the destination may acknowledge them.
    Durable(u64),
    /// Durable state: the sender took a shared delivery with the
    /// destination's ticket (see [`SharedDelivery::ticket`]), durably.
    SharedDurable(u64),
    /// The sender no longer has any subscription on this filter; for a
    /// shared filter, one member fewer.
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
    /// Backpressure (see `shard::pressure`): a subscriber on the sender
    /// pauses (`on`) or releases the destination's session `publisher`.
    /// Invariant: per (subscriber, publisher) pair, an `on` is followed by
    /// exactly one `off`, sent when the subscriber drains, goes or is cut.
    Pressure { publisher: u64, on: bool },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::QoS;

    fn message(expires_at: Option<Instant>) -> Message {
        Message {
            publish: Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: false,
                topic: TopicName::new(Bytes::from_static(b"t")).expect("valid topic"),
                packet_id: None,
                payload: Bytes::new(),
                properties: Default::default(),
            },
            origin: Origin {
                shard: 0,
                session: 0,
            },
            expires_at,
            source: None,
            read_at: None,
        }
    }

    #[test]
    fn the_remaining_interval_rounds_up_and_expiry_is_exact() {
        let now = Instant::now();
        let never = message(None);
        assert!(!never.expires() && !never.is_expired());
        assert_eq!(never.remaining_expiry(), None);

        let later = message(Some(now + Duration::from_millis(7_500)));
        assert!(later.expires() && !later.is_expired());
        assert_eq!(later.remaining_expiry(), Some(8));

        let past = message(Some(now - Duration::from_millis(1)));
        assert!(past.is_expired());
        assert_eq!(past.remaining_expiry(), Some(1), "never 0 once sent");
    }

    #[test]
    fn an_interval_of_zero_never_expires() {
        let mut p = message(None).publish;
        p.properties.message_expiry_interval = Some(0);
        let origin = Origin {
            shard: 0,
            session: 0,
        };
        assert!(!Message::new(p.clone(), origin).expires());
        p.properties.message_expiry_interval = Some(5);
        assert!(Message::new(p, origin).expires());
    }
}
