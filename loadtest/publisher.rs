//! A publisher connection's role: its open-loop schedule and the QoS 1/2
//! acknowledgement flows within an inflight window.
//!
//! Driven by its connection ([`crate::conn::Conn`]): [`Publisher::pump`]
//! runs when the send timer fires and encodes every message due (at most
//! [`MAX_BATCH`] at a time); [`Publisher::on_packet`] takes the broker's
//! acks and answers PUBREC with PUBREL at once. [`Publisher::wake_at`] is
//! what the send timer should be armed at.

use std::io;

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use shardmq::protocol::{Packet, PacketId, Properties, PubResp, Publish, QoS, TopicName};

use crate::clock::now_ns;
use crate::conn::{queue, OUT_HIGH};
use crate::payload::Header;
use crate::plan::RunSpec;
use crate::rate::Schedule;
use crate::stats::{new_histogram, PubOutcome, HIST_MAX_NS};
use crate::worker::Ctx;

/// Most messages encoded per pump when catching up; the rest go out on the
/// next turn, so one late publisher cannot hold up the others.
const MAX_BATCH: u64 = 256;

/// Packet ids in use and the acknowledgement flows in progress.
struct Window {
    qos: QoS,
    /// Ids not in use; empty means the window is full.
    free: Vec<PacketId>,
    /// `busy[id]`: id is in use (a flow in progress). Guards against a
    /// broker acking an id twice, which would otherwise free it twice.
    busy: Vec<bool>,
    /// `sent_ns[id]`: when the PUBLISH with id went into the out buffer.
    sent_ns: Vec<u64>,
    /// Flows completed (PUBACK or PUBCOMP received).
    acked: u64,
}

impl Window {
    fn new(qos: QoS, capacity: u16) -> Window {
        Window {
            qos,
            free: (1..=capacity).rev().filter_map(PacketId::new).collect(),
            busy: vec![false; usize::from(capacity) + 1],
            sent_ns: vec![0; usize::from(capacity) + 1],
            acked: 0,
        }
    }

    /// Publishes that may be sent now (unbounded for QoS 0).
    fn room(&self) -> u64 {
        match self.qos {
            QoS::AtMostOnce => u64::MAX,
            _ => self.free.len() as u64,
        }
    }

    /// Takes a free id for a new flow (`None` when the window is full).
    fn take(&mut self) -> Option<PacketId> {
        let id = self.free.pop()?;
        self.busy[usize::from(id.get())] = true;
        self.sent_ns[usize::from(id.get())] = now_ns();
        Some(id)
    }

    fn in_flight(&self, id: PacketId) -> bool {
        self.busy
            .get(usize::from(id.get()))
            .copied()
            .unwrap_or(false)
    }

    /// Ends the flow of `id`, returning how long it took (PUBLISH to
    /// PUBACK or PUBCOMP, ns); an error if no flow uses it.
    fn release(&mut self, id: PacketId) -> io::Result<u64> {
        match self.busy.get_mut(usize::from(id.get())) {
            Some(b) if *b => *b = false,
            _ => {
                return Err(io::Error::other(format!(
                    "ack for packet id {id} that is not in flight"
                )))
            }
        }
        self.free.push(id);
        self.acked += 1;
        Ok(now_ns().saturating_sub(self.sent_ns[usize::from(id.get())]))
    }
}

/// Publisher `id`: schedule, next sequence number, window and outcome.
/// Owned by its connection on one worker thread.
pub struct Publisher {
    id: u32,
    topic: TopicName,
    /// Set at the start time; `None` before.
    sched: Option<Schedule>,
    /// The next sequence number to issue.
    next: u64,
    window: Window,
    /// PUBLISH to PUBACK (QoS 1) or PUBCOMP (QoS 2), every flow of the run.
    ack_latency: Histogram<u64>,
    outcome: PubOutcome,
    /// When the send timer should fire: the next message's due time, 0 (as
    /// soon as possible) after a blocked publisher got room, or `None`
    /// (not started, every message issued, or blocked on the window or the
    /// out buffer: [`Publisher::unblock`] re-arms it).
    wake: Option<u64>,
}

impl Publisher {
    /// Publisher `id` on `topic`; an error if the topic is not a valid name.
    pub fn new(id: u32, topic: &str, spec: &RunSpec) -> io::Result<Publisher> {
        let topic = TopicName::from_str(topic).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("invalid topic: {e}"))
        })?;
        Ok(Publisher {
            id,
            topic,
            sched: None,
            next: 0,
            window: Window::new(spec.qos, spec.inflight),
            ack_latency: new_histogram(),
            outcome: PubOutcome {
                id,
                ..Default::default()
            },
            wake: None,
        })
    }

    /// Starts the schedule anchored at `start_ns`.
    pub fn start(&mut self, spec: &RunSpec, start_ns: u64) {
        let (_, end) = spec.window(start_ns);
        let sched =
            Schedule::staggered(spec.rate, self.id as usize, spec.publishers, start_ns, end);
        self.wake = sched.due(0);
        self.sched = Some(sched);
    }

    /// When the send timer should fire (see the field).
    pub fn wake_at(&self) -> Option<u64> {
        self.wake
    }

    /// Encodes the messages due by `now` into `out`, as far as the window,
    /// [`MAX_BATCH`] and [`OUT_HIGH`] allow, and sets the next wake time.
    pub fn pump(&mut self, now: u64, ctx: &mut Ctx, out: &mut BytesMut) -> io::Result<()> {
        let Some(sched) = self
            .sched
            .filter(|_| !(ctx.spec.no_backlog && now >= ctx.window().1))
        else {
            self.wake = None;
            return Ok(());
        };
        let due = sched.due_by(now);
        let sent_before = self.outcome.sent;
        let mut batch = 0;
        while self.next < due && batch < MAX_BATCH && self.window.room() > 0 && out.len() < OUT_HIGH
        {
            self.queue_message(ctx, &sched, out)?;
            batch += 1;
        }
        ctx.count_sent(self.outcome.sent - sent_before);
        self.wake = match sched.due(self.next) {
            None => None,
            Some(_) if self.window.room() == 0 || out.len() >= OUT_HIGH => None,
            // In the past when the batch limit stopped us: fires next turn.
            Some(at) => Some(at),
        };
        Ok(())
    }

    /// Re-arms a publisher blocked on its window or out buffer: called when
    /// an ack freed an id or the out buffer drained.
    pub fn unblock(&mut self) {
        let pending = self.sched.is_some_and(|s| s.due(self.next).is_some());
        if self.wake.is_none() && pending {
            self.wake = Some(0);
        }
    }

    /// Handles a packet from the broker; PUBRELs go into `out`.
    pub fn on_packet(&mut self, p: Packet, ctx: &Ctx, out: &mut BytesMut) -> io::Result<()> {
        let qos = self.window.qos;
        match (qos, p) {
            (QoS::AtLeastOnce, Packet::PubAck(r)) | (QoS::ExactlyOnce, Packet::PubComp(r)) => {
                let took = self.window.release(r.packet_id)?;
                self.ack_latency
                    .saturating_record(took.clamp(1, HIST_MAX_NS));
                self.unblock();
            }
            (QoS::ExactlyOnce, Packet::PubRec(r)) => {
                if !self.window.in_flight(r.packet_id) {
                    return Err(io::Error::other(format!(
                        "PUBREC for packet id {} not in flight",
                        r.packet_id
                    )));
                }
                queue(
                    out,
                    ctx.spec.version,
                    &Packet::PubRel(PubResp::new(r.packet_id)),
                )?;
            }
            (_, Packet::PingResp) => {}
            (_, Packet::Disconnect(d)) => {
                return Err(io::Error::other(format!(
                    "broker sent DISCONNECT {:?}",
                    d.reason
                )))
            }
            (_, other) => {
                return Err(io::Error::other(format!(
                    "unexpected packet for a publisher: {other:?}"
                )))
            }
        }
        Ok(())
    }

    /// What this publisher did, for the worker's stats.
    pub fn finish(self) -> PubOutcome {
        PubOutcome {
            acked: self.window.acked,
            ack_latency: Some(self.ack_latency),
            ..self.outcome
        }
    }

    /// Encodes message `self.next` (or skips it for `--drop-every`).
    fn queue_message(&mut self, ctx: &Ctx, sched: &Schedule, out: &mut BytesMut) -> io::Result<()> {
        let seq = self.next;
        self.next += 1;
        let due = sched.due(seq).unwrap_or(sched.end_ns);
        self.outcome.issued += 1;
        if ctx
            .spec
            .drop_every
            .is_some_and(|n| n > 0 && (seq + 1) % n == 0)
        {
            self.outcome.dropped += 1;
            return Ok(());
        }
        let mut payload = vec![0u8; ctx.spec.payload];
        Header {
            intended_ns: due,
            publisher: self.id,
            seq,
        }
        .write(&mut payload);
        let packet_id = match self.window.qos {
            QoS::AtMostOnce => None,
            _ => self.window.take(),
        };
        let publish = Publish {
            dup: false,
            qos: self.window.qos,
            retain: false,
            topic: self.topic.clone(),
            packet_id,
            payload: Bytes::from(payload),
            properties: Properties::default(),
        };
        queue(out, ctx.spec.version, &Packet::Publish(publish))?;
        self.outcome.sent += 1;
        let (from, to) = ctx.window();
        if due >= from && due < to {
            self.outcome.sent_measured += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use shardmq::protocol::{self, ProtocolVersion};

    use super::*;
    use crate::worker::test_ctx;

    /// Decodes every packet in `out`.
    fn packets(out: &mut BytesMut) -> Vec<Packet> {
        let mut v = Vec::new();
        while !out.is_empty() {
            v.push(protocol::decode(out, ProtocolVersion::V311, 1 << 20).expect("whole packet"));
        }
        v
    }

    #[test]
    fn the_window_holds_sends_back_and_an_ack_releases_them() {
        let mut ctx = test_ctx(QoS::AtLeastOnce, 4, 1000.0);
        let mut p = Publisher::new(0, "t/0", &ctx.spec).expect("publisher");
        let mut out = BytesMut::new();
        p.pump(0, &mut ctx, &mut out).expect("pump");
        assert_eq!((out.len(), p.wake_at()), (0, None), "not started");

        let start = 1_000_000_000;
        ctx.start_ns = Some(start);
        p.start(&ctx.spec, start);
        assert_eq!(p.wake_at(), Some(start));
        // 11 messages due (one per ms), 4 fit in the window.
        p.pump(start + 10_000_000, &mut ctx, &mut out)
            .expect("pump");
        let sent = packets(&mut out);
        assert_eq!(sent.len(), 4);
        assert_eq!(p.wake_at(), None, "blocked on the window");

        let Packet::Publish(first) = &sent[0] else {
            panic!("not a PUBLISH: {:?}", sent[0]);
        };
        let id = first.packet_id.expect("QoS 1 id");
        let h = Header::read(&first.payload).expect("header");
        assert_eq!((h.publisher, h.seq, h.intended_ns), (0, 0, start));
        p.on_packet(Packet::PubAck(PubResp::new(id)), &ctx, &mut out)
            .expect("ack");
        assert_eq!(p.wake_at(), Some(0), "an ack re-arms at once");
        let again = p.on_packet(Packet::PubAck(PubResp::new(id)), &ctx, &mut out);
        assert!(again.is_err(), "a second ack for the same id");

        p.pump(start + 10_000_000, &mut ctx, &mut out)
            .expect("pump");
        assert_eq!(packets(&mut out).len(), 1);
        let outcome = p.finish();
        assert_eq!((outcome.issued, outcome.sent, outcome.acked), (5, 5, 1));
    }

    #[test]
    fn catching_up_goes_in_batches() {
        let mut ctx = test_ctx(QoS::AtMostOnce, 1, 100_000.0);
        let mut p = Publisher::new(0, "t/0", &ctx.spec).expect("publisher");
        let mut out = BytesMut::new();
        let start = 1_000_000_000;
        ctx.start_ns = Some(start);
        p.start(&ctx.spec, start);
        // One second late: 100,000 due; one batch now, the rest next turn.
        let now = start + 1_000_000_000;
        p.pump(now, &mut ctx, &mut out).expect("pump");
        assert_eq!(packets(&mut out).len() as u64, MAX_BATCH);
        let wake = p.wake_at().expect("more due");
        assert!(wake <= now, "the rest is due at once");
    }
}
