//! Routing: a client's PUBLISH to local subscribers and, once per
//! destination shard, over the mesh; retained updates; subscriptions and
//! their replication; and everything that arrives from the mesh.

use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use super::conn::{CloseReason, ConnShared};
use super::encode::EncodeCache;
use super::session::{Delivery, SessionId};
use super::{connect, Shard, Stats};
use crate::index::ShardSet;
use crate::limits::BARRIER_TIMEOUT;
use crate::mesh::{Batch, Message, Origin, ShardMsg};
use crate::protocol::{
    LastWill, Packet, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscriptionOptions, TopicFilter, UnsubAck, Unsubscribe,
};
use crate::runtime::channel::ConnectedReceiver;

/// Drains one peer's queue for the life of the shard.
pub async fn mesh_receiver(shard: Rc<Shard>, peer: usize, rx: ConnectedReceiver<Batch>) {
    while let Some(batch) = rx.recv().await {
        for msg in batch {
            shard.on_mesh(peer, msg);
        }
        shard.end_step();
    }
}

/// The filter a subscription is indexed under.
fn index_key(filter: &TopicFilter) -> &str {
    filter.share().map_or(filter.as_str(), |(_, inner)| inner)
}

impl Shard {
    fn on_mesh(self: &Rc<Self>, from: usize, msg: ShardMsg) {
        match msg {
            ShardMsg::Forward(m) => self.fanout_local(&m),
            ShardMsg::SubAdd(f) => {
                self.replica.borrow_mut().insert(index_key(&f), from, ());
            }
            ShardMsg::SubRemove(f) => {
                self.replica.borrow_mut().remove(index_key(&f), &from);
            }
            ShardMsg::Retain {
                topic,
                stamp,
                message,
            } => {
                self.retained
                    .borrow_mut()
                    .apply(topic.as_str(), stamp, message);
            }
            ShardMsg::Handover(h) => {
                let crate::mesh::Handover {
                    fd,
                    peer,
                    connect,
                    leftover,
                } = *h;
                let shard = Rc::clone(self);
                crate::runtime::spawn(async move {
                    let stream = crate::runtime::net::adopt(fd);
                    connect::admit(shard, stream, peer, connect, leftover.as_ref().into()).await;
                });
            }
            ShardMsg::Barrier(token) => self.mesh.send(from, ShardMsg::BarrierAck(token)),
            ShardMsg::BarrierAck(token) => {
                if let Some((missing, waker)) = self.barriers.borrow_mut().get_mut(&token) {
                    *missing = missing.saturating_sub(1);
                    if *missing == 0 {
                        if let Some(w) = waker.take() {
                            w.wake();
                        }
                    }
                }
            }
            ShardMsg::WillsSent => {
                self.wills_from.set(self.wills_from.get() + 1);
                if let Some(w) = self.wills_waker.borrow_mut().take() {
                    w.wake();
                }
            }
        }
    }

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
                if s.inbound_qos2.len() >= usize::from(self.config.max_inflight_messages)
                    && !s.inbound_qos2.contains(&pid.get())
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
                log::warn!("{}: cannot encode {:?}: {e}", conn.peer, packet);
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
    pub fn publish_will(self: &Rc<Self>, sid: SessionId, will: Box<LastWill>) {
        let LastWill {
            topic,
            payload,
            qos,
            retain,
            mut properties,
        } = *will;
        properties.will_delay_interval = None;
        let p = Publish {
            dup: false,
            qos,
            retain,
            topic,
            packet_id: None,
            payload,
            properties,
        };
        self.route_publish(sid, p);
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
    fn fanout_local(self: &Rc<Self>, msg: &Arc<Message>) {
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

    fn count(&self, outcome: Delivery) {
        let counter = match outcome {
            Delivery::Sent => &self.stats.sent,
            Delivery::Queued => &self.stats.queued,
            Delivery::Dropped => &self.stats.dropped,
        };
        Stats::bump(counter);
    }

    /// SUBSCRIBE: index the filters, wait until every shard knows them,
    /// answer SUBACK, then send the matching retained messages.
    pub async fn on_subscribe(
        self: &Rc<Self>,
        conn: &Rc<ConnShared>,
        sub: Subscribe,
    ) -> Result<(), CloseReason> {
        if conn.version.is_v5() && !sub.properties.subscription_identifiers.is_empty() {
            return Err(CloseReason::Protocol(
                ReasonCode::SubscriptionIdentifiersNotSupported,
            ));
        }
        let sid = conn.session.get();
        let mut codes = Vec::with_capacity(sub.filters.len());
        let mut wants_retained = Vec::new();
        for (filter, opts) in &sub.filters {
            if filter.share().is_some() {
                codes.push(if conn.version.is_v5() {
                    ReasonCode::SharedSubscriptionsNotSupported
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            let existed = self.add_subscription(sid, filter, *opts);
            codes.push(granted(opts.qos));
            let send = match opts.retain_handling {
                RetainHandling::OnSubscribe => true,
                RetainHandling::OnNewSubscribe => !existed,
                RetainHandling::Never => false,
            };
            if send && self.config.retain_available {
                wants_retained.push((filter.clone(), opts.qos));
            }
        }
        self.barrier().await;
        if conn.is_closing() {
            return Ok(());
        }
        let ack = Packet::SubAck(SubAck {
            packet_id: sub.packet_id,
            codes,
            properties: Default::default(),
        });
        self.send_packet(conn, &ack);
        self.send_retained(sid, &wants_retained).await;
        Ok(())
    }

    /// Sends the retained messages matching each filter, in chunks.
    async fn send_retained(self: &Rc<Self>, sid: SessionId, filters: &[(TopicFilter, QoS)]) {
        for (filter, max_qos) in filters {
            let mut found = Vec::new();
            self.retained
                .borrow()
                .collect_matching(filter.as_str(), &mut found);
            for chunk in found.chunks(crate::limits::RETAINED_CHUNK) {
                {
                    let mut sessions = self.sessions.borrow_mut();
                    let Some(s) = sessions.by_id.get_mut(&sid) else {
                        return;
                    };
                    for msg in chunk {
                        let mut cache = EncodeCache::default();
                        let outcome = s.deliver(
                            msg,
                            msg.publish.qos.min(*max_qos),
                            true,
                            &mut cache,
                            &self.queue_limits,
                        );
                        self.count(outcome);
                    }
                    if let Some(conn) = &s.conn {
                        self.mark_dirty(conn);
                    }
                }
                self.end_step();
                crate::runtime::yield_if_needed().await;
            }
        }
    }

    /// Adds a subscription; true if the session already had this filter.
    pub fn add_subscription(
        self: &Rc<Self>,
        sid: SessionId,
        filter: &TopicFilter,
        opts: SubscriptionOptions,
    ) -> bool {
        // Stored beyond this read: must not pin the shard's read buffer.
        let filter = &filter.detached();
        let existed = {
            let mut sessions = self.sessions.borrow_mut();
            let Some(s) = sessions.by_id.get_mut(&sid) else {
                return false;
            };
            s.subscriptions.insert(filter.clone(), opts).is_some()
        };
        self.local.borrow_mut().insert(index_key(filter), sid, opts);
        if !existed {
            let mut counts = self.filter_counts.borrow_mut();
            let count = counts.entry(filter.clone()).or_insert(0);
            *count += 1;
            if *count == 1 {
                self.mesh.broadcast(|| ShardMsg::SubAdd(filter.clone()));
            }
        }
        existed
    }

    /// Removes a subscription; true if it existed.
    pub fn remove_subscription(self: &Rc<Self>, sid: SessionId, filter: &TopicFilter) -> bool {
        let existed = {
            let mut sessions = self.sessions.borrow_mut();
            let Some(s) = sessions.by_id.get_mut(&sid) else {
                return false;
            };
            s.subscriptions.remove(filter).is_some()
        };
        if !existed {
            return false;
        }
        self.local.borrow_mut().remove(index_key(filter), &sid);
        let mut counts = self.filter_counts.borrow_mut();
        if let Some(count) = counts.get_mut(filter) {
            *count -= 1;
            if *count == 0 {
                counts.remove(filter);
                self.mesh.broadcast(|| ShardMsg::SubRemove(filter.clone()));
            }
        }
        true
    }

    /// UNSUBSCRIBE: remove and answer UNSUBACK.
    pub fn on_unsubscribe(self: &Rc<Self>, conn: &Rc<ConnShared>, unsub: Unsubscribe) {
        let sid = conn.session.get();
        let codes = unsub
            .filters
            .iter()
            .map(|f| {
                if self.remove_subscription(sid, f) {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                }
            })
            .collect();
        let codes = if conn.version.is_v5() {
            codes
        } else {
            Vec::new()
        };
        let ack = Packet::UnsubAck(UnsubAck {
            packet_id: unsub.packet_id,
            codes,
            properties: Default::default(),
        });
        self.send_packet(conn, &ack);
    }

    /// Waits until every peer has applied everything this shard sent it
    /// before (its `SubAdd`s in particular). Peers answer in order on their
    /// queue to us, so their earlier retained updates have arrived too.
    async fn barrier(self: &Rc<Self>) {
        let peers = self.mesh.peers() - 1;
        if peers == 0 {
            return;
        }
        let token = self.next_barrier.get();
        self.next_barrier.set(token + 1);
        self.barriers.borrow_mut().insert(token, (peers, None));
        self.mesh.broadcast(|| ShardMsg::Barrier(token));
        self.mesh.flush();
        let done = poll_fn(|cx| {
            let mut barriers = self.barriers.borrow_mut();
            match barriers.get_mut(&token) {
                Some((0, _)) | None => Poll::Ready(()),
                Some((_, waker)) => {
                    *waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        });
        if crate::runtime::time::timeout(BARRIER_TIMEOUT, done)
            .await
            .is_none()
        {
            log::warn!(
                "shard {}: subscription barrier timed out; a peer shard is not answering",
                self.id
            );
        }
        self.barriers.borrow_mut().remove(&token);
    }

    /// Removes a session and all its subscriptions.
    pub fn end_session(self: &Rc<Self>, sid: SessionId) {
        let filters: Vec<TopicFilter> = {
            let sessions = self.sessions.borrow();
            let Some(s) = sessions.by_id.get(&sid) else {
                return;
            };
            s.subscriptions.keys().cloned().collect()
        };
        for f in &filters {
            self.remove_subscription(sid, f);
        }
        let mut sessions = self.sessions.borrow_mut();
        if let Some(s) = sessions.by_id.remove(&sid) {
            sessions.by_client.remove(&s.client_id);
        }
    }
}

/// The SUBACK code granting `qos`.
fn granted(qos: QoS) -> ReasonCode {
    match qos {
        QoS::AtMostOnce => ReasonCode::GrantedQoS0,
        QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
        QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
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
