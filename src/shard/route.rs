//! Routing: a client's PUBLISH to local subscribers and, once per
//! destination shard, over the mesh; wills; retained updates.

use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::Arc;

use super::conn::{CloseReason, ConnShared};
use super::encode::EncodeCache;
use super::mount;
use super::session::{Delivery, Session, SessionId};
use super::subscribe::Subscription;
use super::will::Will;
use super::{Shard, Stats};
use crate::mesh::{Message, Origin};
use crate::protocol::{self, Packet, PubResp, Publish, QoS, ReasonCode, SubscriptionOptions};
use bytes::Bytes;

/// The session a broker-originated message comes from: none (session ids
/// start at 1).
pub(super) const BROKER_SESSION: SessionId = 0;

impl Shard {
    /// A PUBLISH from a client of session `sid`: checks, acknowledges, routes.
    pub fn on_client_publish(
        self: &Rc<Self>,
        conn: &Rc<ConnShared>,
        mut p: Publish,
    ) -> Result<(), CloseReason> {
        Stats::bump(&self.stats.received);
        Stats::add(&self.stats.publish_bytes_received, p.payload.len());
        // As Mosquitto: a QoS above the listener's `max_qos` disconnects
        // (5.0 with "QoS not supported"), whatever the protocol version.
        if p.qos > conn.max_qos {
            return Err(CloseReason::Protocol(
                ReasonCode::QoSNotSupported,
                "QoS above the listener's max_qos",
            ));
        }
        if p.retain && !self.config.retain_available {
            return Err(CloseReason::Protocol(
                ReasonCode::RetainNotSupported,
                "retain is not available",
            ));
        }
        conn.resolve_topic_alias(&mut p, self.config.max_topic_alias)
            .map_err(|refused| {
                let (code, why) = refused.reason();
                CloseReason::Protocol(code, why)
            })?;
        if let Some(mount) = conn.mount.as_deref() {
            p.topic = mount::topic(mount, &p.topic).map_err(|_| {
                CloseReason::Protocol(
                    ReasonCode::TopicNameInvalid,
                    "topic outside the mount point",
                )
            })?;
        }
        let sid = conn.session.get();
        let refused = self.refusal(conn, &p);
        let Some(pid) = p.packet_id else {
            if refused.is_none() {
                self.route_publish(sid, p);
            }
            return Ok(());
        };
        let qos = p.qos;
        let mark = self.durable.as_deref().map(|d| d.mark());
        let reason = if let Some((code, _)) = refused {
            // A QoS 2 flow ends with this failed PUBREC: no id is filed.
            code
        } else if qos == QoS::AtLeastOnce {
            matched_reason(self.route_publish(sid, p))
        } else {
            let fresh = {
                let mut sessions = self.sessions.borrow_mut();
                let Some(s) = sessions.by_id.get_mut(&sid) else {
                    return Err(CloseReason::Io);
                };
                if s.inbound_qos2_len() >= usize::from(self.config.max_inflight_messages)
                    && !s.has_inbound_qos2(pid.get())
                {
                    return Err(CloseReason::Protocol(
                        ReasonCode::ReceiveMaximumExceeded,
                        "more QoS 2 messages in flight than the receive maximum",
                    ));
                }
                s.qos2_insert(pid.get())
            };
            // Routed once, on the first PUBLISH with this id; a resend is
            // answered as the first one was.
            matched_reason(if fresh {
                self.route_publish(sid, p)
            } else {
                self.has_subscribers(p.topic.as_str())
            })
        };
        let mut resp = PubResp::new(pid);
        if conn.version.is_v5() {
            resp.reason = reason;
        }
        if let Some((_, why)) = refused {
            resp.properties.reason_string = conn.ack_reason_string(why);
        }
        let ack = if qos == QoS::AtLeastOnce {
            Packet::PubAck(resp)
        } else {
            Packet::PubRec(resp)
        };
        self.acknowledge_publish(mark, conn, ack)
    }

    /// Why a client's PUBLISH is acknowledged but not routed, if it is:
    /// `$SYS` is the broker's ("not authorized"), a payload above
    /// `message_size_limit` is dropped ("implementation specific error",
    /// as Mosquitto 2.0 answers: "packet too large" is no PUBACK or PUBREC
    /// reason), a topic the ACL does not let the client write is "not
    /// authorized". A 3.x publisher gets a plain acknowledgement either way.
    fn refusal(&self, conn: &ConnShared, p: &Publish) -> Option<(ReasonCode, &'static str)> {
        let limit = self.config.message_size_limit;
        let (code, why) = if is_broker_only(p.topic.as_str()) {
            (ReasonCode::NotAuthorized, SYS_REFUSED)
        } else if limit != 0 && p.payload.len() > limit {
            (
                ReasonCode::ImplementationSpecificError,
                "payload above message_size_limit",
            )
        } else if !self.may_write(conn, p.topic.as_str()) {
            (
                ReasonCode::NotAuthorized,
                "not authorized to publish to this topic",
            )
        } else {
            return None;
        };
        let peer = conn.token().and_then(|t| self.peer_of(t));
        log::debug!("{peer:?}: PUBLISH to {:?} refused: {why}", p.topic);
        Some((code, why))
    }

    /// The QoS a message published at `published` is sent with to a
    /// subscription granted `granted`: the lower of the two, or with
    /// `upgrade_outgoing_qos` the subscription's.
    pub(super) fn outgoing_qos(&self, published: QoS, granted: QoS) -> QoS {
        if self.config.upgrade_outgoing_qos {
            granted
        } else {
            published.min(granted)
        }
    }

    /// Writes a control packet to a connection. A Reason String that
    /// would take the packet past the client's Maximum Packet Size is left
    /// out (3.1.2.11.4).
    pub fn send_packet(&self, conn: &Rc<ConnShared>, packet: &Packet) {
        let trimmed = without_problem_info(conn, packet);
        let packet = trimmed.as_ref().unwrap_or(packet);
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

    /// Routes a message published by session `sid` (or its will); true if
    /// a subscription on any shard (or the bridge) matched it.
    pub fn route_publish(self: &Rc<Self>, sid: SessionId, mut p: Publish) -> bool {
        p.detach();
        p.dup = false;
        p.packet_id = None;
        p.properties.topic_alias = None;
        p.properties.subscription_identifiers.clear();
        let retain = p.retain;
        let msg = Message::new(
            p,
            Origin {
                shard: self.id as u16,
                session: sid,
            },
        )
        .with_read_at(self.latency.read_at());
        let source = retain.then(|| self.retain_source(sid)).flatten();
        let msg = Arc::new(match source {
            Some(source) => msg.with_source(source),
            None => msg,
        });
        if retain {
            self.retain_update(&msg);
        }
        let local = self.fanout_local(&msg);
        let shared = self.dispatch_shared(&msg);
        self.forward(&msg) || local || shared
    }

    /// True if a subscription on any shard (or the bridge) matches `topic`:
    /// this shard's trie or its replica of the others' filters.
    fn has_subscribers(&self, topic: &str) -> bool {
        let mut any = false;
        self.local.borrow().for_each_match(topic, |_, _| any = true);
        self.replica
            .borrow()
            .for_each_match(topic, |_, _| any = true);
        any || self.shared.borrow().matches(topic)
    }

    /// Publishes a will as if its client had sent it, if the ACL still
    /// lets the client write its topic (checked again now, as Mosquitto
    /// does: a reload may have revoked it since the CONNECT).
    pub fn publish_will(self: &Rc<Self>, sid: SessionId, will: Will) {
        let p = will.into_publish();
        if !self.session_may_write(sid, p.topic.as_str()) {
            log::debug!(
                "session {sid}: will to {:?} not authorized any more; dropped",
                p.topic
            );
            return;
        }
        self.route_publish(sid, p);
    }

    /// Publishes a message the broker itself originates (the `$SYS` tree,
    /// `log_dest topic` lines) through the normal path, from no session
    /// ([`BROKER_SESSION`]): local subscribers, the other shards, the
    /// retained store if `retain`.
    pub fn publish_broker_message(
        self: &Rc<Self>,
        topic: &str,
        payload: Bytes,
        qos: QoS,
        retain: bool,
    ) {
        let Ok(topic) = protocol::TopicName::from_str(topic) else {
            return; // our own topics are valid: nothing to log about
        };
        let p = Publish {
            dup: false,
            qos,
            retain,
            topic,
            packet_id: None,
            payload,
            properties: Default::default(),
        };
        self.route_publish(BROKER_SESSION, p);
    }

    fn retain_update(self: &Rc<Self>, msg: &Arc<Message>) {
        let stamp = self.next_stamp();
        self.mesh
            .retain(&mut self.retained.borrow_mut(), msg, stamp);
        self.retained_durably(&msg.publish.topic, Some(msg), stamp, None);
    }

    /// Sends `msg` once to every other shard with a matching filter; false
    /// if none has one.
    fn forward(self: &Rc<Self>, msg: &Arc<Message>) -> bool {
        let peers = self.mesh.forward(&self.replica.borrow(), msg);
        if let Some(d) = self.durable.as_deref() {
            // Data shards, and the bridge thread, confirm what they
            // journal for QoS 1/2 messages.
            if msg.publish.qos != QoS::AtMostOnce {
                peers.iter().for_each(|p| d.forwarded(p));
            }
        }
        let n = peers.iter().count();
        Stats::add(&self.stats.forwarded, n);
        n > 0
    }

    /// Delivers `msg` to this shard's subscribers: one copy per session at
    /// the highest QoS of its matching subscriptions, with the identifiers
    /// of all of them (5.0), if the ACL lets the session read it. False if
    /// no local subscription matched (one skipped for No Local or the ACL
    /// still counts, as in Mosquitto).
    pub(super) fn fanout_local(self: &Rc<Self>, msg: &Arc<Message>) -> bool {
        let mut matches = std::mem::take(&mut *self.matches.borrow_mut());
        self.local
            .borrow()
            .for_each_match(msg.publish.topic.as_str(), |sid, sub| {
                matches.push((*sid, *sub))
            });
        let matched = !matches.is_empty();
        matches.sort_unstable_by_key(|(sid, _)| *sid);
        let mut cache = EncodeCache::default();
        let mut ids = Vec::new();
        // Subscribers whose queue took it past their limits (paused once
        // the session table is free).
        let mut held = Vec::new();
        let topic = msg.publish.topic.as_str();
        {
            let acl = self.acl.borrow();
            let mut sessions = self.sessions.borrow_mut();
            for run in matches.chunk_by(|(a, _), (b, _)| a == b) {
                let Some((sid, opts)) = merge_overlapping(run, &mut ids) else {
                    continue;
                };
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
                // Still a match (as in Mosquitto): not delivered, but the
                // publisher is not told "no matching subscribers".
                if !acl.may_read(s, topic) {
                    continue;
                }
                let qos = self.outgoing_qos(msg.publish.qos, opts.qos);
                let retain = opts.retain_as_published && msg.publish.retain;
                let outcome =
                    s.deliver_matched(msg, qos, retain, &ids, &mut cache, &self.queue_limits);
                self.count_delivery(outcome, msg);
                if outcome == Delivery::Held {
                    held.push(sid);
                }
                if let (Delivery::Sent, Some(conn)) = (outcome, &s.conn) {
                    self.mark_dirty(conn);
                }
            }
        }
        matches.clear();
        *self.matches.borrow_mut() = matches;
        held.into_iter()
            .for_each(|sid| self.hold_back(sid, msg.origin));
        matched
    }

    pub(super) fn count(&self, outcome: Delivery) {
        let counter = match outcome {
            Delivery::Sent => &self.stats.sent,
            Delivery::Queued => &self.stats.queued,
            Delivery::Held => &self.stats.held,
            Delivery::Dropped => &self.stats.dropped,
        };
        Stats::bump(counter);
    }

    /// Counts the outcome of a delivery of `msg` as it is routed (not a
    /// retained one to a new subscriber): one written now adds its payload
    /// bytes and, with metrics on, its latency.
    pub(super) fn count_delivery(&self, outcome: Delivery, msg: &Message) {
        self.count(outcome);
        if outcome == Delivery::Sent {
            self.count_payload_sent(msg);
            self.latency.delivered(msg.read_at);
        }
    }

    /// Adds the payload bytes of `msg`, written to a subscriber.
    fn count_payload_sent(&self, msg: &Message) {
        Stats::add(&self.stats.publish_bytes_sent, msg.publish.payload.len());
    }

    /// Sends what session `s` queued while its window and buffer allow
    /// ([`Session::drain`]): each message written counts as sent, with
    /// its payload bytes and, with metrics on, its queued-delivery
    /// latency; those expired while they waited count as dropped.
    pub(super) fn drain_queue(&self, s: &mut Session) {
        let expired = s.drain(&self.queue_limits, &mut |msg| {
            Stats::bump(&self.stats.sent);
            self.count_payload_sent(msg);
            self.latency.delivered_from_queue(msg.read_at);
        });
        self.count_dropped(expired);
    }

    /// Counts `n` messages dropped from a queue: their expiry interval
    /// passed, or a session cut as a slow consumer kept only its limits.
    pub(super) fn count_dropped(&self, n: usize) {
        Stats::add(&self.stats.dropped, n);
    }
}

/// The reason a 5.0 publisher's PUBACK/PUBREC gives (3.1.1 has none):
/// "No matching subscribers" (0x10, a success) when nothing matched, as
/// Mosquitto sends.
/// The Reason String of a PUBLISH to `$SYS` refused.
const SYS_REFUSED: &str = "$SYS topics are published by the broker only";

/// `packet` without its Reason String and User Properties, if it carries
/// some and is larger than the client's Maximum Packet Size with them.
fn without_problem_info(conn: &ConnShared, packet: &Packet) -> Option<Packet> {
    let max = conn.max_packet as usize;
    if packet
        .encoded_len(conn.version)
        .map_or(true, |len| len <= max)
    {
        return None;
    }
    let mut packet = packet.clone();
    let props = packet.properties_mut()?;
    props.reason_string.take()?;
    props.user_properties.clear();
    Some(packet)
}

fn matched_reason(matched: bool) -> ReasonCode {
    if matched {
        ReasonCode::Success
    } else {
        ReasonCode::NoMatchingSubscribers
    }
}

/// A bridge's link state topic: the one `$SYS` pattern clients may
/// publish to. Remote brokers bridging in (Mosquitto, another shardmq)
/// publish their link state there and set it as their will; Mosquitto
/// allows it for that reason.
const BRIDGE_STATE: &str = "$SYS/broker/connection/+/state";

/// True for the broker's own topics, which clients may not publish to (so
/// that nobody can forge broker statistics): `$SYS` and `$SYS/...`, but
/// for [`BRIDGE_STATE`]. Only client PUBLISH packets are checked: the
/// bridge thread's link state and bridged-in messages reach the shards
/// over the mesh.
pub(super) fn is_broker_only(topic: &str) -> bool {
    match topic.strip_prefix("$SYS") {
        Some("") => true,
        Some(rest) => rest.starts_with('/') && !protocol::matches(BRIDGE_STATE, topic),
        None => false,
    }
}

/// The matching subscriptions of one session (`run`, not empty), merged
/// into one delivery: the highest QoS; No Local only if every match asks
/// for it; Retain As Published if any does. `ids` is set to the
/// Subscription Identifiers of all of them, in ascending order (their
/// order is not significant, 3.3.4); it stays empty, and allocates
/// nothing, when none has one.
fn merge_overlapping(
    run: &[(SessionId, Subscription)],
    ids: &mut Vec<NonZeroU32>,
) -> Option<(SessionId, SubscriptionOptions)> {
    let ((sid, first), rest) = run.split_first()?;
    let mut opts = first.opts;
    for (_, later) in rest {
        opts.qos = opts.qos.max(later.opts.qos);
        opts.no_local &= later.opts.no_local;
        opts.retain_as_published |= later.opts.retain_as_published;
    }
    ids.clear();
    ids.extend(run.iter().filter_map(|(_, sub)| sub.id));
    ids.sort_unstable();
    Some((*sid, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(qos: QoS, no_local: bool, id: Option<u32>) -> Subscription {
        Subscription {
            opts: SubscriptionOptions {
                no_local,
                ..SubscriptionOptions::new(qos)
            },
            id: id.and_then(NonZeroU32::new),
        }
    }

    #[test]
    fn overlapping_subscriptions_merge_into_one_delivery_with_every_identifier() {
        let run = [
            (7, sub(QoS::AtMostOnce, true, Some(9))),
            (7, sub(QoS::ExactlyOnce, false, None)),
            (7, sub(QoS::AtLeastOnce, true, Some(2))),
        ];
        let mut ids = Vec::new();
        let (sid, opts) = merge_overlapping(&run, &mut ids).expect("not empty");
        assert_eq!((sid, opts.qos, opts.no_local), (7, QoS::ExactlyOnce, false));
        let ids: Vec<u32> = ids.iter().map(|id| id.get()).collect();
        assert_eq!(ids, [2, 9]);
    }

    #[test]
    fn a_match_without_identifiers_allocates_none() {
        let mut ids = Vec::new();
        let run = [(1, sub(QoS::AtLeastOnce, false, None))];
        assert!(merge_overlapping(&run, &mut ids).is_some());
        assert_eq!(ids.capacity(), 0);
        assert!(merge_overlapping(&[], &mut ids).is_none());
    }
}
