//! Shared subscriptions (`$share/<group>/<filter>`, MQTT 5.0 4.8.2, also
//! taken from 3.1.1 clients as Mosquitto and EMQX do): each message goes
//! to one member of each matching group, whichever shard it lives on.
//!
//! The shard that receives a PUBLISH picks a shard for each group, weighted
//! by its member count ([`crate::index::SharedIndex::pick`]); that shard
//! gives the message to one of its **online** members, in turn. A shard
//! whose members are all offline (or that has none left: its replica was
//! stale) passes it on to a shard not yet tried; when no shard has an
//! online member, the first shard that had an offline one queues it for
//! that member, as its session queue allows. So a message visits each
//! shard at most once, plus one hop back to that shard.
//!
//! Durable state: a QoS 1/2 delivery carries a ticket of the shard whose
//! publisher waits for it; the shard that takes it (gives it to a member,
//! or drops it) confirms the ticket once that is journaled
//! (`ShardMsg::SharedDurable`), so the acknowledgement waits for the shard
//! that stores the message, not for the first shard it was passed to.
//!
//! A member whose client goes away hands what it held for the group
//! (queued messages, QoS 1 in flight; QoS 2 in flight once its session
//! ends) back to the group, where another member takes it
//! ([`Shard::release_shared`]).

use std::rc::Rc;
use std::sync::Arc;

use super::encode::EncodeCache;
use super::session::{Delivery, Shared};
use super::subscribe::Subscription;
use super::Shard;
use crate::index::Pick;
use crate::mesh::{Message, ShardMsg, SharedDelivery};
use crate::protocol::{QoS, TopicFilter};

impl Shard {
    /// Gives `msg` to one member of every shared group it matches; true if
    /// a group matched.
    pub(super) fn dispatch_shared(self: &Rc<Self>, msg: &Arc<Message>) -> bool {
        if self.shared.borrow().is_empty() {
            return false;
        }
        let mut here = Vec::new();
        let durable = self.durable.as_deref();
        let counted = msg.publish.qos != QoS::AtMostOnce;
        // A QoS 1/2 delivery carries a ticket of this shard: the shard
        // that finally takes it confirms it, and the publisher's
        // acknowledgement waits for that.
        let ticket = || {
            let d = durable.filter(|_| counted)?;
            Some((self.id as u16, d.ticket()))
        };
        let matched = self
            .mesh
            .share(&self.shared.borrow(), msg, |group, pick| match pick {
                Pick::Local => {
                    here.push(TopicFilter::clone(group.name()));
                    None
                }
                Pick::Shard(_) => ticket(),
            });
        for group in here {
            let mut d = SharedDelivery::new(Arc::clone(msg), group);
            d.ticket = ticket();
            self.deliver_shared(d);
        }
        matched > 0
    }

    /// A message for a member of `d.group` here: an online member takes
    /// it, else it is passed on (see the module doc).
    pub(super) fn deliver_shared(self: &Rc<Self>, mut d: SharedDelivery) {
        let me = self.id;
        let (online, offline) = self.choose_members(&d);
        if let Some(member) = online {
            self.take_ticket(&d);
            return self.give(&d, member);
        }
        d.tried.insert(me);
        if offline.is_some() && d.fallback.is_none() {
            d.fallback = Some(me as u16);
        }
        let next = self
            .shared
            .borrow()
            .group(&d.group)
            .and_then(|g| g.untried_shard(&d.tried));
        let next = next.or(d.fallback.map(usize::from).filter(|f| *f != me));
        if let Some(peer) = next {
            // Its ticket goes with it.
            self.mesh.send(peer, ShardMsg::Shared(Box::new(d)));
        } else if let Some(member) = offline {
            self.take_ticket(&d);
            self.give(&d, member);
        } else {
            self.take_ticket(&d);
            self.count(Delivery::Dropped);
        }
    }

    /// This shard takes `d` (gives it to a member, or drops it): its
    /// ticket is confirmed to the shard that issued it once what this
    /// turn journals is durable.
    fn take_ticket(&self, d: &SharedDelivery) {
        if let (Some(dur), Some((origin, ticket))) = (self.durable.as_deref(), d.ticket) {
            dur.took(usize::from(origin), ticket);
        }
    }

    /// This shard's choice of member for `d`: an online one, else (only
    /// computed then) an offline one; either may read its topic.
    fn choose_members(&self, d: &SharedDelivery) -> (Option<Member>, Option<Member>) {
        let shared = self.shared.borrow();
        let Some(group) = shared.group(&d.group) else {
            return (None, None);
        };
        let strategy = shared.strategy();
        let topic = d.msg.publish.topic.as_str();
        let sessions = self.sessions.borrow();
        let acl = self.acl.borrow();
        // Only members the ACL lets read the topic are candidates.
        let readable = |sid: &u64| sessions.by_id.get(sid).filter(|s| acl.may_read(s, topic));
        let online = |sid: &u64| readable(sid).is_some_and(|s| s.conn.is_some());
        let member = |m: &(u64, Subscription)| Member {
            sid: m.0,
            sub: m.1,
            group: Rc::clone(group.name()),
        };
        if let Some(m) = group.choose_local(strategy, topic, |sid, _| online(sid)) {
            return (Some(member(m)), None);
        }
        let any = |sid: &u64| readable(sid).is_some();
        let offline = group.choose_local(strategy, topic, |sid, _| any(sid));
        (None, offline.map(member))
    }

    /// Delivers `d.msg` to `member` as its subscription asks, marked as
    /// the group's, so that it can be handed back if the member goes.
    fn give(&self, d: &SharedDelivery, member: Member) {
        let mut sessions = self.sessions.borrow_mut();
        let Some(s) = sessions.by_id.get_mut(&member.sid) else {
            return self.count(Delivery::Dropped);
        };
        let msg = &d.msg;
        let opts = member.sub.opts;
        let qos = self.outgoing_qos(msg.publish.qos, opts.qos);
        let retain = opts.retain_as_published && msg.publish.retain;
        let ids = member.sub.id;
        let mut cache = EncodeCache::default();
        let outcome = s.deliver_matched(
            msg,
            qos,
            retain,
            ids.as_slice(),
            &mut cache,
            &self.queue_limits,
        );
        s.tag_shared(outcome, qos, &member.group);
        self.count_delivery(outcome, msg);
        if let (Delivery::Sent, Some(conn)) = (outcome, &s.conn) {
            self.mark_dirty(conn);
        }
        drop(sessions);
        if outcome == Delivery::Held {
            self.hold_back(member.sid, msg.origin);
        }
    }

    /// Gives back to their groups the messages a member held (taken with
    /// `Session::take_shared`), for another member to take.
    pub(super) fn release_shared(self: &Rc<Self>, held: Vec<Shared>) {
        for (msg, group) in held {
            // A copy made for the member carried its Subscription
            // Identifiers: the next member gets its own.
            let msg = if msg.publish.properties.subscription_identifiers.is_empty() {
                msg
            } else {
                Arc::new(msg.with_subscription_ids(&[]))
            };
            let group = TopicFilter::clone(&group);
            self.deliver_shared(SharedDelivery::new(msg, group));
        }
    }
}

/// A local member of a shared group, chosen for one message.
struct Member {
    sid: u64,
    sub: Subscription,
    group: Rc<TopicFilter>,
}
