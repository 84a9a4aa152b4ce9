//! What arrives over the mesh from other shards: forwarded messages, the
//! replica updates (filters and retained messages), handed-over
//! connections, barriers and shutdown notices.

use std::rc::Rc;

use super::Shard;
use crate::mesh::{Handover, ShardMsg};

impl Shard {
    /// Applies one message from shard `from` (in the order it was sent).
    pub(super) fn on_mesh(self: &Rc<Self>, from: usize, msg: ShardMsg) {
        match msg {
            ShardMsg::Forward(m) => {
                self.latency.hopped(m.read_at);
                self.fanout_local(&m);
                // Counted for the sender, a data shard or the bridge
                // thread, which waits for this shard's confirmation.
                if let Some(d) = self.durable.as_deref() {
                    if m.publish.qos != crate::protocol::QoS::AtMostOnce {
                        d.received(from);
                    }
                }
            }
            ShardMsg::Durable(n) => {
                if let Some(d) = self.durable.as_deref() {
                    d.confirmed(from, n);
                }
            }
            ShardMsg::Shared(d) => self.deliver_shared(*d),
            ShardMsg::SharedDurable(ticket) => {
                if let Some(d) = self.durable.as_deref() {
                    d.ticket_confirmed(ticket);
                }
            }
            ShardMsg::SubAdd(f) if f.share().is_some() => {
                self.shared.borrow_mut().add_remote(&f, from);
            }
            ShardMsg::SubRemove(f) if f.share().is_some() => {
                self.shared.borrow_mut().remove_remote(&f, from);
            }
            ShardMsg::SubAdd(f) => {
                self.replica.borrow_mut().insert(f.as_str(), from, ());
            }
            ShardMsg::SubRemove(f) => {
                self.replica.borrow_mut().remove(f.as_str(), &from);
            }
            ShardMsg::Retain {
                topic,
                stamp,
                message,
            } => {
                self.retained_durably(&topic, message.as_deref(), stamp, Some(from));
                self.retained
                    .borrow_mut()
                    .apply(topic.as_str(), stamp, message);
            }
            ShardMsg::Handover(h) => self.on_handover(*h),
            ShardMsg::Barrier(token) => self.mesh.send(from, ShardMsg::BarrierAck(token)),
            ShardMsg::BarrierAck(token) => self.on_barrier_ack(token),
            ShardMsg::WillsSent => self.wills_from.set(self.wills_from.get() + 1),
            ShardMsg::Pressure { publisher, on } => {
                if on {
                    self.pause_publisher(publisher);
                } else {
                    self.resume_publisher(publisher);
                }
            }
        }
    }

    /// A connection accepted elsewhere whose session lives here.
    fn on_handover(self: &Rc<Self>, h: Handover) {
        let Handover {
            transport,
            connect,
            leftover,
            listener,
        } = h;
        let holds_input = transport.may_hold_input();
        if let Some(token) = self.adopt(transport, listener) {
            self.admit(token, connect, leftover.as_ref().into());
            if holds_input {
                // What rustls holds raises no readiness here.
                self.again.borrow_mut().push(token);
            }
        }
    }
}
