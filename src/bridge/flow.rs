//! What flows on a link: local messages out through the queue and its
//! inflight window, remote messages in (acknowledged once the local broker
//! has them), and the acknowledgements of both.

use std::io;
use std::sync::Arc;

use super::link::{Ctx, Link, State};
use super::local::Wait;
use super::queue::{Entry, Next, Stage};
use super::wire::Read;
use crate::limits::{BRIDGE_OUT_HIGH_WATER, BRIDGE_READ_PACKETS};
use crate::mesh::Message;
use crate::persist::bridge::BridgeEntry;
use crate::protocol::{Packet, PubResp, Publish, QoS, TopicName};

impl Link {
    /// Takes a local message for the remote if a line sends it out.
    pub fn offer(&mut self, msg: &Arc<Message>, ctx: &mut Ctx) {
        if self.brought_in(msg.origin, ctx.local.id()) {
            // It came in on this link: never back out on it.
            return;
        }
        let Some((topic, qos)) = self.routes.map_out(msg.publish.topic.as_str()) else {
            return;
        };
        let qos = qos.min(msg.publish.qos);
        if qos == QoS::AtMostOnce && self.state != State::Up && !ctx.queue_qos0 {
            self.counters.dropped += 1;
            return;
        }
        let Ok(topic) = TopicName::from_str(&topic) else {
            self.counters.dropped += 1;
            return;
        };
        let mut entry = Entry::new(Arc::clone(msg), topic, qos, msg.publish.retain);
        let queued = if self.queue.fits(&entry) {
            if let Some(j) = ctx.journal.as_deref_mut() {
                j.queued(&self.config.name, &mut entry);
            }
            self.queue.push(entry)
        } else {
            self.queue_held(ctx, entry)
        };
        if queued.is_err() {
            self.counters.dropped += 1;
            if self.counters.dropped.is_power_of_two() {
                log::warn!(
                    "bridge {}: queue full ({} messages, {} bytes): {} messages dropped so far",
                    self.config.name,
                    self.queue.len(),
                    self.queue.bytes(),
                    self.counters.dropped
                );
            }
        }
        self.check_threshold(ctx.now);
    }

    /// Writes what the window allows and flushes the socket, once what it
    /// writes is journaled (persistence on).
    pub fn pump(&mut self, ctx: &mut Ctx) {
        if self.state == State::Up {
            self.fill();
            self.release_if_drained(ctx);
            if let Err(e) = self.release_acks(ctx) {
                return self.fail(ctx, &e.to_string());
            }
        }
        if let Some(j) = ctx.journal.as_deref_mut() {
            let mut any = std::mem::take(&mut self.unsubmitted);
            self.queue.take_changes(|c| {
                j.change(c);
                any = true;
            });
            if any {
                self.hold = j.submit();
            }
            if j.durable() < self.hold {
                // The writer wakes the thread when it is.
                return;
            }
        }
        let Some(wire) = self.wire.as_mut() else {
            return;
        };
        if let Err(e) = wire.flush() {
            self.fail(ctx, &e.to_string());
        }
    }

    /// Encodes queued messages while the window and the buffer allow.
    fn fill(&mut self) {
        let Some(wire) = self.wire.as_mut() else {
            return;
        };
        while wire.pending() < BRIDGE_OUT_HIGH_WATER {
            let fresh = self.queue.next_fresh();
            if self.queue.inflight() >= self.remote.window && self.queue.next_needs_window() {
                return;
            }
            if fresh == Some(QoS::ExactlyOnce)
                && self.queue.qos2_inflight() >= self.remote.qos2_window
            {
                return;
            }
            let Some(next) = self.queue.next() else {
                return;
            };
            let (packet, id) = match next {
                Next::Release(id) => (Packet::PubRel(PubResp::new(id)), None),
                Next::Publish { index, dup } => {
                    let e = self.queue.get(index);
                    if e.msg.is_expired() {
                        // Its Message Expiry Interval passed while queued.
                        if let Some(id) = e.packet_id {
                            self.queue.finish(id);
                        }
                        self.queue.pop_done();
                        self.counters.dropped += 1;
                        continue;
                    }
                    if !dup && !e.notice {
                        self.counters.sent += 1;
                    }
                    let p = outgoing(e, dup, &self.remote, self.config.outgoing_retain);
                    (Packet::Publish(p), e.packet_id)
                }
            };
            let written = packet
                .encoded_len(wire.version)
                .is_ok_and(|n| n <= self.remote.max_packet)
                && wire.queue(&packet).is_ok();
            if !written {
                // Too large for the remote: dropped, as MQTT 5 says.
                self.counters.dropped += 1;
            }
            if let (Packet::Publish(p), Some(id)) = (&packet, id) {
                // Not written, or sent at QoS 0 (the remote's maximum):
                // no acknowledgement will come.
                if !written || p.qos == QoS::AtMostOnce {
                    self.queue.finish(id);
                }
            }
            self.queue.pop_done();
        }
    }

    /// Reads once (again if the last read left more), handling every
    /// packet; stops reading while the local broker is backed up, or while
    /// the remote leaves our answers unread.
    pub fn read_input(&mut self, ctx: &mut Ctx) {
        if ctx.local.congested() || self.held_back() || self.awaits_sync(ctx) {
            // Read again once the mesh drains, or the subscribers this
            // link's messages press release it (`pressure.rs`).
            self.more_input = true;
            return;
        }
        let Some(wire) = self.wire.as_mut() else {
            return;
        };
        if wire.pending() > BRIDGE_OUT_HIGH_WATER * 2 {
            // The remote sends but does not read our acknowledgements:
            // stop reading until it does (its writable event brings us
            // back here), so the output stays bounded.
            self.more_input = false;
            return;
        }
        let brought = self.counters.received;
        let mut packets = Vec::new();
        let read = wire.read(BRIDGE_READ_PACKETS, |p| {
            packets.push(p);
            Ok(())
        });
        for p in packets {
            if self.wire.is_none() {
                // An earlier packet ended the connection (a refusing
                // CONNACK): what follows, EOF included, is moot.
                return;
            }
            if let Err(e) = self.on_packet(ctx, p) {
                return self.fail(ctx, &e.to_string());
            }
        }
        if self.wire.is_none() {
            return;
        }
        if self.counters.received > brought {
            self.sync_after_bringing_in(ctx);
        }
        match read {
            Ok(r) => self.more_input = r == Read::More,
            Err(e) => {
                if matches!(self.state, State::Connecting { .. }) && self.note_refused_bit(&e) {
                    self.fail(ctx, "the remote closed the connection on CONNECT");
                    self.state = State::Down {
                        retry: Some(ctx.now),
                    };
                } else {
                    self.fail(ctx, &e.to_string());
                }
                return;
            }
        }
        self.pump(ctx);
    }

    fn on_packet(&mut self, ctx: &mut Ctx, packet: Packet) -> io::Result<()> {
        match (self.state, packet) {
            (State::Connecting { .. }, Packet::ConnAck(ack)) => self.on_connack(ctx, ack),
            (State::Up, Packet::Publish(p)) => self.on_remote_publish(ctx, p),
            (State::Up, Packet::PubAck(r)) => self.acked(r, None),
            (State::Up, Packet::PubRec(r)) => {
                self.pressure_progress();
                let ok = r.reason.value() < 0x80;
                if self.queue.acknowledge(r.packet_id, Stage::AwaitRec) && ok {
                    self.write(&Packet::PubRel(PubResp::new(r.packet_id)))?;
                } else if !ok {
                    // Refused by the remote: the flow ends here.
                    self.queue.acknowledge(r.packet_id, Stage::AwaitComp);
                }
                Ok(())
            }
            (State::Up, Packet::PubComp(r)) => self.acked(r, Some(Stage::AwaitComp)),
            (State::Up, Packet::PubRel(r)) => {
                let pid = r.packet_id.get();
                if self.inbound_qos2.remove(&pid) {
                    let link = self.config.name.clone();
                    self.note(ctx, BridgeEntry::Qos2InDone { link, pid });
                }
                self.write(&Packet::PubComp(PubResp::new(r.packet_id)))
            }
            (State::Up, Packet::SubAck(ack)) => {
                self.log_refusals("SUBSCRIBE", &ack.codes);
                Ok(())
            }
            (State::Up, Packet::UnsubAck(_) | Packet::PingResp) => Ok(()),
            (_, Packet::Disconnect(d)) => Err(io::Error::other(format!(
                "the remote disconnected the bridge: {:?} (0x{:02x}){}",
                d.reason,
                d.reason.value(),
                d.properties
                    .reason_string
                    .map(|s| format!(": {s}"))
                    .unwrap_or_default()
            ))),
            (_, other) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected packet from the remote: {other:?}"),
            )),
        }
    }

    /// PUBACK (`stage` `None`: it ends a QoS 1 flow, or a QoS 2 message
    /// the remote took at QoS 1) or PUBCOMP.
    fn acked(&mut self, r: PubResp, stage: Option<Stage>) -> io::Result<()> {
        if r.reason.value() >= 0x80 {
            self.counters.dropped += 1;
            log::debug!(
                "bridge {}: the remote refused message {}: {:?}",
                self.config.name,
                r.packet_id,
                r.reason
            );
        }
        match stage {
            Some(stage) => {
                self.queue.acknowledge(r.packet_id, stage);
            }
            None => self.queue.finish(r.packet_id),
        }
        self.pressure_progress();
        self.last_traffic = self.wire.as_ref().map_or(self.last_traffic, |w| w.last_in);
        Ok(())
    }

    fn log_refusals(&self, what: &str, codes: &[crate::protocol::ReasonCode]) {
        for (filter, code) in self.routes.remote_subscriptions().zip(codes) {
            if code.value() >= 0x80 {
                log::warn!(
                    "bridge {}: the remote refused {what} `{}`: {:?}",
                    self.config.name,
                    filter.0,
                    code
                );
            }
        }
    }

    /// A message from the remote: published locally, then acknowledged
    /// (with persistence on, once the data shards have journaled it; the
    /// acknowledgements go in order).
    fn on_remote_publish(&mut self, ctx: &mut Ctx, p: Publish) -> io::Result<()> {
        let (qos, id) = (p.qos, p.packet_id);
        let duplicate =
            qos == QoS::ExactlyOnce && id.is_some_and(|id| self.inbound_qos2.contains(&id.get()));
        let wait = if duplicate {
            Wait::default()
        } else {
            self.bring_in(ctx, p)
        };
        let ack = match (qos, id) {
            (QoS::AtLeastOnce, Some(id)) => Packet::PubAck(PubResp::new(id)),
            (QoS::ExactlyOnce, Some(id)) => {
                if self.inbound_qos2.insert(id.get()) {
                    let link = self.config.name.clone();
                    let pid = id.get();
                    self.note(ctx, BridgeEntry::Qos2In { link, pid });
                }
                Packet::PubRec(PubResp::new(id))
            }
            _ => return Ok(()),
        };
        self.acks.push_back((ack, wait));
        self.release_acks(ctx)
    }

    /// Writes the acknowledgements to the remote whose messages the data
    /// shards have journaled, in order.
    pub(super) fn release_acks(&mut self, ctx: &mut Ctx) -> io::Result<()> {
        while self
            .acks
            .front()
            .is_some_and(|(_, w)| ctx.local.confirmed(w))
        {
            if let Some((ack, _)) = self.acks.pop_front() {
                self.write(&ack)?;
            }
        }
        Ok(())
    }

    /// Publishes `p` locally; what its acknowledgement waits for.
    fn bring_in(&mut self, ctx: &mut Ctx, mut p: Publish) -> Wait {
        self.counters.received += 1;
        self.last_traffic = ctx.now;
        let Some(topic) = self.routes.map_in(p.topic.as_str()) else {
            log::debug!(
                "bridge {}: `{}` from the remote matches no `in` line; ignored",
                self.config.name,
                p.topic.as_str()
            );
            return Wait::default();
        };
        let Ok(topic) = TopicName::from_str(&topic) else {
            self.counters.dropped += 1;
            return Wait::default();
        };
        p.topic = topic;
        p.detach();
        p.dup = false;
        p.packet_id = None;
        p.properties.topic_alias = None;
        p.properties.subscription_identifiers.clear();
        let msg = Arc::new(Message::new(p, self.origin(ctx.local.id())));
        let wait = ctx.local.publish(&msg);
        ctx.relay.push(msg);
        wait
    }

    fn write(&mut self, packet: &Packet) -> io::Result<()> {
        match self.wire.as_mut() {
            Some(w) => w.queue(packet),
            None => Ok(()),
        }
    }
}

/// The PUBLISH for a queued entry as the remote gets it.
fn outgoing(e: &Entry, dup: bool, remote: &super::link::Remote, keep_retain: bool) -> Publish {
    let qos = e.qos.min(remote.max_qos);
    let mut p = e.msg.publish.clone();
    if let Some(left) = e.msg.remaining_expiry() {
        // What remains of the Message Expiry Interval (3.3.2.3.3).
        p.properties.message_expiry_interval = Some(left);
    }
    p.topic = e.topic.clone();
    p.qos = qos;
    p.packet_id = if qos == QoS::AtMostOnce {
        None
    } else {
        e.packet_id
    };
    p.dup = dup && qos != QoS::AtMostOnce;
    p.retain = e.retain && keep_retain && remote.retain;
    p
}
