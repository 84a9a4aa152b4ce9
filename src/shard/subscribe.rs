//! Subscriptions: SUBSCRIBE and UNSUBSCRIBE, the index updates and their
//! replication, and the retained messages a new subscription is sent.
//!
//! A SUBSCRIBE is answered only once every other shard has applied the new
//! filters (a barrier round-trip over the mesh), so that a client holding
//! its SUBACK receives every message published anywhere afterwards. The
//! wait is a [`PendingSubscribe`] record, not a suspended task: the
//! connection's input is paused (`blocked`) until the last `BarrierAck`
//! arrives or [`BARRIER_TIMEOUT`] passes.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::conn::{CloseReason, ConnShared};
use super::durable::with_journal;
use super::encode::EncodeCache;
use super::session::SessionId;
use super::Shard;
use super::{log_lines, mount};
use crate::limits::{BARRIER_TIMEOUT, RETAINED_CHUNK};
use crate::mesh::{Message, ShardMsg};
use crate::persist::Entry;
use crate::protocol::ProtocolVersion;
use crate::protocol::{
    Packet, PacketId, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions,
    TopicFilter, UnsubAck, Unsubscribe,
};

/// A session's subscription as kept, in the session and the shard's trie:
/// the options asked for and the Subscription Identifier of the SUBSCRIBE
/// that made it (5.0, 3.8.2.1.2), which every PUBLISH it matches carries.
/// A later SUBSCRIBE to the same filter replaces both. 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub opts: SubscriptionOptions,
    pub id: Option<NonZeroU32>,
}

const _: () = assert!(std::mem::size_of::<Subscription>() <= 8);

/// A SUBSCRIBE whose filters are indexed here and broadcast, waiting for
/// every peer to confirm. Shard-local.
pub struct PendingSubscribe {
    conn: Rc<ConnShared>,
    packet_id: PacketId,
    codes: Vec<ReasonCode>,
    /// Filters whose retained messages go out after the SUBACK.
    wants_retained: Vec<(TopicFilter, Subscription)>,
    /// Peers yet to answer.
    missing: usize,
}

/// Retained messages being delivered to a session after its SUBACK, at
/// most [`RETAINED_CHUNK`] per round so a large retained set does not
/// monopolise the shard. Shard-local.
pub struct RetainedJob {
    sid: SessionId,
    /// (message, the subscription it matched), in delivery order.
    messages: VecDeque<(Arc<Message>, Subscription)>,
}

impl Shard {
    /// SUBSCRIBE: index the filters, then answer once every shard knows
    /// them (at once with a single shard). A filter the ACL leaves nothing
    /// to read from is refused: "not authorized" (5.0), 0x80 (3.x).
    pub(super) fn on_subscribe(
        self: &Rc<Self>,
        conn: &Rc<ConnShared>,
        sub: Subscribe,
    ) -> Result<(), CloseReason> {
        // At most one (the codec refuses more) and never 0; none in 3.x.
        let id = sub
            .properties
            .subscription_identifiers
            .first()
            .copied()
            .and_then(NonZeroU32::new);
        let sid = conn.session.get();
        let mut codes = Vec::with_capacity(sub.filters.len());
        let mut wants_retained = Vec::new();
        for (filter, asked) in &sub.filters {
            log_lines::subscribed(&conn.client_id, asked.qos, filter);
            let Ok(filter) = mount::client_filter(conn, filter) else {
                codes.push(if conn.version.is_v5() {
                    ReasonCode::TopicFilterInvalid
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            };
            let filter = filter.as_ref();
            if !self.may_subscribe(conn, filter) {
                codes.push(if conn.version.is_v5() {
                    ReasonCode::NotAuthorized
                } else {
                    ReasonCode::UnspecifiedError
                });
                continue;
            }
            let opts = stored_options(conn, *asked);
            let subscription = Subscription { opts, id };
            let existed = self.add_subscription(sid, filter, subscription);
            self.note_subscription(sid, filter);
            codes.push(granted(opts.qos));
            // A shared subscription gets no retained messages (4.8.2).
            let send = filter.share().is_none()
                && match opts.retain_handling {
                    RetainHandling::OnSubscribe => true,
                    RetainHandling::OnNewSubscribe => !existed,
                    RetainHandling::Never => false,
                };
            if send && self.config.retain_available {
                wants_retained.push((filter.detached(), subscription));
            }
        }
        let pending = PendingSubscribe {
            conn: Rc::clone(conn),
            packet_id: sub.packet_id,
            codes,
            wants_retained,
            missing: self.mesh.peers() - 1,
        };
        if pending.missing == 0 {
            self.complete_subscribe(pending);
            return Ok(());
        }
        let token = self.next_barrier.get();
        self.next_barrier.set(token + 1);
        conn.blocked.set(true);
        self.barriers.borrow_mut().insert(token, pending);
        self.barrier_deadline(token, Instant::now() + BARRIER_TIMEOUT);
        self.mesh.broadcast(|| ShardMsg::Barrier(token));
        Ok(())
    }

    /// A peer applied everything we sent before barrier `token`.
    pub(super) fn on_barrier_ack(self: &Rc<Self>, token: u64) {
        let done = {
            let mut barriers = self.barriers.borrow_mut();
            match barriers.get_mut(&token) {
                Some(p) => {
                    p.missing = p.missing.saturating_sub(1);
                    p.missing == 0
                }
                None => false,
            }
        };
        if done {
            let pending = self.barriers.borrow_mut().remove(&token);
            if let Some(pending) = pending {
                self.complete_subscribe(pending);
            }
        }
    }

    /// A barrier outlived [`BARRIER_TIMEOUT`]: answer anyway.
    pub(super) fn barrier_timed_out(self: &Rc<Self>, token: u64) {
        let pending = self.barriers.borrow_mut().remove(&token);
        if let Some(pending) = pending {
            log::warn!(
                "shard {}: subscription barrier timed out; a peer shard is not answering",
                self.id
            );
            self.complete_subscribe(pending);
        }
    }

    /// SUBACK, retained messages, and the connection's input resumes.
    fn complete_subscribe(self: &Rc<Self>, p: PendingSubscribe) {
        let conn = p.conn;
        conn.blocked.set(false);
        let Some(token) = conn.token() else {
            return;
        };
        if conn.is_closing() {
            return;
        }
        let ack = Packet::SubAck(SubAck {
            packet_id: p.packet_id,
            codes: p.codes,
            properties: Default::default(),
        });
        self.send_packet(&conn, &ack);
        self.queue_retained(conn.session.get(), &p.wants_retained);
        self.again.borrow_mut().push(token);
    }

    /// Files the retained messages matching each filter for delivery.
    fn queue_retained(&self, sid: SessionId, filters: &[(TopicFilter, Subscription)]) {
        let mut messages = VecDeque::new();
        let mut found = Vec::new();
        for (filter, subscription) in filters {
            self.retained
                .borrow()
                .collect_matching(filter.as_str(), &mut found);
            // Expired retained messages are no longer retained (3.3.2.3.3).
            messages.extend(
                found
                    .drain(..)
                    .filter(|m| !m.is_expired())
                    .map(|m| (m, *subscription)),
            );
        }
        if !messages.is_empty() {
            self.retained_jobs
                .borrow_mut()
                .push_back(RetainedJob { sid, messages });
        }
    }

    /// Delivers the next chunk of the oldest retained job; true if any.
    /// Each message passes the ACL's read check for the session and, with
    /// `check_retain_source`, its publisher's write check.
    pub(super) fn deliver_retained(&self) -> bool {
        let Some(mut job) = self.retained_jobs.borrow_mut().pop_front() else {
            return false;
        };
        {
            let acl = self.acl.borrow();
            let mut sessions = self.sessions.borrow_mut();
            let Some(s) = sessions.by_id.get_mut(&job.sid) else {
                return true; // the session ended: drop the job
            };
            let n = job.messages.len().min(RETAINED_CHUNK);
            for (msg, subscription) in job.messages.drain(..n) {
                // Checked when sent, as Mosquitto does: the rules of now.
                if !acl.may_read(s, msg.publish.topic.as_str()) || !acl.source_may_write(&msg) {
                    continue;
                }
                let mut cache = EncodeCache::default();
                let outcome = s.deliver_matched(
                    &msg,
                    self.outgoing_qos(msg.publish.qos, subscription.opts.qos),
                    true,
                    subscription.id.as_slice(),
                    &mut cache,
                    &self.queue_limits,
                );
                self.count(outcome);
            }
            if let Some(conn) = &s.conn {
                self.mark_dirty(conn);
            }
        }
        if !job.messages.is_empty() {
            self.retained_jobs.borrow_mut().push_back(job);
        }
        true
    }

    /// Adds a subscription; true if the session already had this filter.
    pub fn add_subscription(
        &self,
        sid: SessionId,
        filter: &TopicFilter,
        subscription: Subscription,
    ) -> bool {
        // Stored beyond this read: must not pin the shard's read buffer.
        let filter = &filter.detached();
        let existed = {
            let mut sessions = self.sessions.borrow_mut();
            let Some(s) = sessions.by_id.get_mut(&sid) else {
                return false;
            };
            if s.journaled {
                with_journal(|log| {
                    log.append(&Entry::Subscribe {
                        client_id: s.client_id.to_string(),
                        filter: filter.as_str().to_string(),
                        options: subscription.opts.to_byte(ProtocolVersion::V5),
                        id: subscription.id.map_or(0, NonZeroU32::get),
                    })
                });
            }
            s.subscriptions
                .insert(filter.clone(), subscription)
                .is_some()
        };
        let shared = filter.share().is_some();
        if shared {
            self.shared
                .borrow_mut()
                .insert_local(filter, sid, subscription);
        } else {
            self.local
                .borrow_mut()
                .insert(filter.as_str(), sid, subscription);
        }
        if !existed {
            self.subscriptions.set(self.subscriptions.get() + 1);
            let mut counts = self.filter_counts.borrow_mut();
            let count = counts.entry(filter.clone()).or_insert(0);
            *count += 1;
            // Every replica counts a shared group's members.
            if *count == 1 || shared {
                self.mesh.broadcast(|| ShardMsg::SubAdd(filter.clone()));
            }
        }
        existed
    }

    /// Removes a subscription; true if it existed.
    pub fn remove_subscription(&self, sid: SessionId, filter: &TopicFilter) -> bool {
        let existed = {
            let mut sessions = self.sessions.borrow_mut();
            let Some(s) = sessions.by_id.get_mut(&sid) else {
                return false;
            };
            let existed = s.subscriptions.remove(filter).is_some();
            if existed && s.journaled {
                with_journal(|log| {
                    log.append(&Entry::Unsubscribe {
                        client_id: s.client_id.to_string(),
                        filter: filter.as_str().to_string(),
                    })
                });
            }
            existed
        };
        if !existed {
            return false;
        }
        self.subscriptions.set(self.subscriptions.get() - 1);
        let shared = filter.share().is_some();
        if shared {
            self.shared.borrow_mut().remove_local(filter, &sid);
        } else {
            self.local.borrow_mut().remove(filter.as_str(), &sid);
        }
        let mut counts = self.filter_counts.borrow_mut();
        if let Some(count) = counts.get_mut(filter) {
            *count -= 1;
            let last = *count == 0;
            if last {
                counts.remove(filter);
            }
            if last || shared {
                self.mesh.broadcast(|| ShardMsg::SubRemove(filter.clone()));
            }
        }
        true
    }

    /// UNSUBSCRIBE: remove and answer UNSUBACK.
    pub fn on_unsubscribe(&self, conn: &Rc<ConnShared>, unsub: Unsubscribe) {
        let sid = conn.session.get();
        let codes = unsub
            .filters
            .iter()
            .map(|f| {
                log_lines::unsubscribed(&conn.client_id, f);
                let removed =
                    mount::client_filter(conn, f).is_ok_and(|f| self.remove_subscription(sid, &f));
                if removed {
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
}

/// The options a subscription is kept with: its QoS at most the
/// listener's `max_qos` (what the SUBACK grants, as in Mosquitto). A 3.x
/// bridge's (Mosquitto's `try_private`) are No Local and Retain As
/// Published, as in Mosquitto: what it published does not loop back over
/// the bridge, and retained state crosses it. Kept in the session, so
/// they outlive the connection.
fn stored_options(conn: &ConnShared, mut opts: SubscriptionOptions) -> SubscriptionOptions {
    opts.qos = opts.qos.min(conn.max_qos);
    if !conn.bridge {
        return opts;
    }
    SubscriptionOptions {
        no_local: true,
        retain_as_published: true,
        ..opts
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
