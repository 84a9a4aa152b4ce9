//! Routing: a client's PUBLISH to local subscribers and, once per
//! destination shard, over the mesh; wills; retained updates.

use std::rc::Rc;
use std::sync::Arc;

use super::conn::{CloseReason, ConnShared};
use super::encode::EncodeCache;
use super::session::{Delivery, SessionId};
use super::will::Will;
use super::{Shard, Stats};
use crate::index::ShardSet;
use crate::mesh::{Message, Origin, ShardMsg};
use crate::protocol::{Packet, Publish, QoS, ReasonCode, SubscriptionOptions};

impl Shard {
    /// A PUBLISH from a client of session `sid`: checks, acknowledges, routes.
    pub fn on_client_publish(
        self: &Rc<Self>,
        conn: &Rc<ConnShared>,
        p: Publish,
    ) -> Result<(), CloseReason> {
        Stats::bump(&self.stats.received);
        if p.retain && !self.config.retain_available {
            return Err(CloseReason::Protocol(ReasonCode::RetainNotSupported));
        }
        if p.topic.is_empty() || p.properties.topic_alias.is_some() {
            // We announce Topic Alias Maximum 0: aliases are not allowed.
            return Err(CloseReason::Protocol(ReasonCode::TopicAliasInvalid));
        }
        let sid = conn.session.get();
        let Some(pid) = p.packet_id else {
            self.route_publish(sid, p);
            return Ok(());
        };
        let ack = if p.qos == QoS::AtLeastOnce {
            self.route_publish(sid, p);
            Packet::PubAck(crate::protocol::PubResp::new(pid))
        } else {
            let fresh = {
                let mut sessions = self.sessions.borrow_mut();
                let Some(s) = sessions.by_id.get_mut(&sid) else {
                    return Err(CloseReason::Io);
                };
                if s.inbound_qos2_len() >= usize::from(self.config.max_inflight_messages)
                    && !s.has_inbound_qos2(pid.get())
                {
                    return Err(CloseReason::Protocol(ReasonCode::ReceiveMaximumExceeded));
                }
                s.qos2_insert(pid.get())
            };
            if fresh {
                self.route_publish(sid, p);
            }
            Packet::PubRec(crate::protocol::PubResp::new(pid))
        };
        self.send_packet(conn, &ack);
        Ok(())
    }

    /// Writes a control packet to a connection.
    pub fn send_packet(&self, conn: &Rc<ConnShared>, packet: &Packet) {
        conn.write_with(|out| {
            if let Err(e) = packet.encode(conn.version, out) {
                log::warn!(
                    "session {}: cannot encode {:?}: {e}",
                    conn.session.get(),
                    packet
                );
            }
        });
        self.mark_dirty(conn);
    }

    /// Routes a message published by session `sid` (or its will).
    pub fn route_publish(self: &Rc<Self>, sid: SessionId, mut p: Publish) {
        p.detach();
        p.dup = false;
        p.packet_id = None;
        p.properties.topic_alias = None;
        p.properties.subscription_identifiers.clear();
        let retain = p.retain;
        let msg = Arc::new(Message {
            publish: p,
            origin: Origin {
                shard: self.id as u16,
                session: sid,
            },
        });
        if retain {
            self.retain_update(&msg);
        }
        self.fanout_local(&msg);
        self.forward(&msg);
    }

    /// Publishes a will as if its client had sent it.
    pub fn publish_will(self: &Rc<Self>, sid: SessionId, will: Will) {
        self.route_publish(sid, will.into_publish());
    }

    fn retain_update(self: &Rc<Self>, msg: &Arc<Message>) {
        let stamp = self.next_stamp();
        let value = (!msg.publish.payload.is_empty()).then(|| Arc::clone(msg));
        let topic = &msg.publish.topic;
        self.retained
            .borrow_mut()
            .apply(topic.as_str(), stamp, value.clone());
        self.mesh.broadcast(|| ShardMsg::Retain {
            topic: topic.clone(),
            stamp,
            message: value.clone(),
        });
    }

    /// Sends `msg` once to every other shard with a matching filter.
    fn forward(self: &Rc<Self>, msg: &Arc<Message>) {
        let mut shards = ShardSet::default();
        self.replica
            .borrow()
            .for_each_match(msg.publish.topic.as_str(), |s, _| shards.insert(*s));
        for peer in shards.iter() {
            Stats::bump(&self.stats.forwarded);
            self.mesh.send(peer, ShardMsg::Forward(Arc::clone(msg)));
        }
    }

    /// Delivers `msg` to this shard's subscribers: one copy per session at
    /// the highest QoS of its matching subscriptions.
    pub(super) fn fanout_local(self: &Rc<Self>, msg: &Arc<Message>) {
        let mut matches = std::mem::take(&mut *self.matches.borrow_mut());
        self.local
            .borrow()
            .for_each_match(msg.publish.topic.as_str(), |sid, opts| {
                matches.push((*sid, *opts))
            });
        if matches.len() > 1 {
            merge_overlapping(&mut matches);
        }
        let mut cache = EncodeCache::default();
        {
            let mut sessions = self.sessions.borrow_mut();
            for (sid, opts) in matches.drain(..) {
                if opts.no_local
                    && msg.origin
                        == (Origin {
                            shard: self.id as u16,
                            session: sid,
                        })
                {
                    continue;
                }
                let Some(s) = sessions.by_id.get_mut(&sid) else {
                    continue;
                };
                let qos = msg.publish.qos.min(opts.qos);
                let retain = opts.retain_as_published && msg.publish.retain;
                let outcome = s.deliver(msg, qos, retain, &mut cache, &self.queue_limits);
                self.count(outcome);
                if let (Delivery::Sent, Some(conn)) = (outcome, &s.conn) {
                    self.mark_dirty(conn);
                }
            }
        }
        *self.matches.borrow_mut() = matches;
    }

    pub(super) fn count(&self, outcome: Delivery) {
        let counter = match outcome {
            Delivery::Sent => &self.stats.sent,
            Delivery::Queued => &self.stats.queued,
            Delivery::Dropped => &self.stats.dropped,
        };
        Stats::bump(counter);
    }
}

/// Overlapping subscriptions of one session: keep one entry with the
/// highest QoS; No Local only if every match asks for it; Retain As
/// Published if any does.
fn merge_overlapping(matches: &mut Vec<(SessionId, SubscriptionOptions)>) {
    matches.sort_unstable_by_key(|(sid, _)| *sid);
    matches.dedup_by(|(sid, later), (keep_sid, keep)| {
        if sid != keep_sid {
            return false;
        }
        keep.qos = keep.qos.max(later.qos);
        keep.no_local &= later.no_local;
        keep.retain_as_published |= later.retain_as_published;
        true
    });
}
