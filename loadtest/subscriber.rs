//! Subscriber and idle connection roles: measure, acknowledge, or just
//! stay connected.
//!
//! A subscriber records each PUBLISH's latency (from the due time in its
//! payload to now, see [`crate::payload`]) and sequence number, and queues
//! its ack (PUBACK, PUBREC; PUBCOMP for a PUBREL) into the connection's out
//! buffer, which the worker flushes once per turn.

use std::collections::HashMap;
use std::io;

use bytes::BytesMut;
use shardmq::protocol::{
    Packet, PacketId, Properties, PubResp, Publish, QoS, Subscribe, SubscriptionOptions,
    TopicFilter,
};

use crate::clock::now_ns;
use crate::conn::queue;
use crate::payload::Header;
use crate::seq::SeqTracker;
use crate::stats::SubOutcome;
use crate::worker::Ctx;

/// The packet id of the one SUBSCRIBE a subscriber sends.
pub const SUBSCRIBE_ID: PacketId = PacketId::MIN;

/// Subscriber `id` on `filter` and what it has seen, per publisher.
/// Owned by its connection on one worker thread.
pub struct Subscriber {
    id: u32,
    filter: String,
    /// One tracker per publisher of the plan (never more: foreign
    /// publishers are counted, not tracked).
    seen: HashMap<u32, SeqTracker>,
}

impl Subscriber {
    pub fn new(id: u32, filter: String) -> Subscriber {
        Subscriber {
            id,
            filter,
            seen: HashMap::new(),
        }
    }

    /// The SUBSCRIBE for this subscriber's filter at `qos`.
    pub fn subscribe_packet(&self, qos: QoS) -> io::Result<Packet> {
        let filter = TopicFilter::from_str(&self.filter).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid topic filter: {e}"),
            )
        })?;
        Ok(Packet::Subscribe(Subscribe {
            packet_id: SUBSCRIBE_ID,
            filters: vec![(filter, SubscriptionOptions::new(qos))],
            properties: Properties::default(),
        }))
    }

    /// Handles a packet from the broker; acks go into `out`.
    pub fn on_packet(&mut self, p: Packet, ctx: &mut Ctx, out: &mut BytesMut) -> io::Result<()> {
        let version = ctx.spec.version;
        match p {
            Packet::Publish(publish) => {
                self.on_publish(ctx, &publish);
                match (publish.qos, publish.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => {
                        queue(out, version, &Packet::PubAck(PubResp::new(id)))
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        queue(out, version, &Packet::PubRec(PubResp::new(id)))
                    }
                    _ => Ok(()),
                }
            }
            Packet::PubRel(r) => queue(out, version, &Packet::PubComp(PubResp::new(r.packet_id))),
            Packet::PingResp => Ok(()),
            Packet::Disconnect(d) => Err(io::Error::other(format!(
                "broker sent DISCONNECT {:?}",
                d.reason
            ))),
            other => Err(io::Error::other(format!(
                "unexpected packet for a subscriber: {other:?}"
            ))),
        }
    }

    fn on_publish(&mut self, ctx: &mut Ctx, publish: &Publish) {
        let now = now_ns();
        ctx.count_delivered(1);
        let window = ctx.window();
        let publishers = ctx.spec.publishers;
        let stats = &mut ctx.stats;
        stats.received += 1;
        // Ids beyond the plan's publishers are someone else's messages; they
        // must not grow the tracker map.
        let Some(h) =
            Header::read(&publish.payload).filter(|h| (h.publisher as usize) < publishers)
        else {
            stats.foreign += 1;
            return;
        };
        if stats.sample(h.intended_ns, now, window) {
            stats.received_measured += 1;
        }
        self.seen.entry(h.publisher).or_default().record(h.seq);
    }

    /// What this subscriber saw, for the worker's stats.
    pub fn finish(self) -> SubOutcome {
        SubOutcome {
            id: self.id,
            per_publisher: self.seen,
        }
    }
}

/// Handles a packet on an idle connection: only PINGRESP is expected.
pub fn idle_packet(p: Packet) -> io::Result<()> {
    match p {
        Packet::PingResp => Ok(()),
        p => Err(io::Error::other(format!(
            "unexpected packet on an idle connection: {p:?}"
        ))),
    }
}
