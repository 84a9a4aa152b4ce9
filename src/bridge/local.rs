//! The bridge thread's view of the local broker: its end of the mesh, its
//! replica of which data shards subscribe to what, and its replica of the
//! retained store. Links reach the local broker only through [`Local`].
//!
//! - Out: the bridge takes part in the mesh like a data shard that
//!   subscribes to every link's `out` filters ([`Local::take_filter`]), so a
//!   shard forwards a matching message to it once, however many links and
//!   lines match.
//! - In: a message from a remote is published as a data shard publishes
//!   one: a retained update broadcast to every shard, and one forward per
//!   shard whose subscribers match ([`Local::publish`]). With persistence
//!   on, the forwards are counted per shard as a data shard counts them,
//!   and the remote's acknowledgement waits for the shards' confirmations
//!   ([`Wait`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::index::{RetainStamp, RetainedStore, SharedIndex, Strategy, SubTrie};
use crate::mesh::{Mesh, Message, ShardMsg};
use crate::protocol::QoS;
use crate::protocol::TopicFilter;
use crate::shard::home_shard;

/// Owned by the bridge thread.
pub struct Local {
    pub mesh: Mesh,
    /// Which data shards have subscribers, by filter (from their `SubAdd`).
    replica: SubTrie<usize, ()>,
    /// The data shards' shared subscription groups, with member counts.
    shared: SharedIndex<(), ()>,
    /// Every retained message, as the data shards hold it.
    retained: RetainedStore<Arc<Message>>,
    last_stamp: u64,
    /// Filters the links take from the local broker, with how many link
    /// lines use each (one `SubAdd` per filter, not per line).
    filters: HashMap<String, usize>,
    /// Barriers sent to the data shards (see [`Local::sync`]), with how
    /// many shards have not answered yet.
    barriers: HashMap<u64, usize>,
    next_barrier: u64,
    /// Backpressure from the data shards for the links as publishers
    /// (a link's origin session, on), in order, until the loop takes
    /// them.
    pressure: Vec<(u64, bool)>,
    /// Durable state (persistence on): what the data shards have journaled
    /// of the QoS 1/2 messages published here, so that a remote's
    /// acknowledgement waits for it ([`Local::publish`]'s [`Wait`]).
    durable: Option<Confirmations>,
}

/// Per data shard, QoS 1/2 messages published to it and how many it has
/// confirmed journaled (`ShardMsg::Durable`); shared deliveries' tickets
/// not yet confirmed (`ShardMsg::SharedDurable`).
#[derive(Default)]
struct Confirmations {
    sent: Vec<u64>,
    confirmed: Vec<u64>,
    next_ticket: u64,
    open_tickets: HashSet<u64>,
}

/// What a message published here waits for before the remote may be
/// acknowledged: per data shard, the count its confirmation must reach,
/// and the tickets of its shared deliveries.
#[derive(Debug, Default)]
pub struct Wait {
    counts: Vec<(usize, u64)>,
    tickets: Vec<u64>,
}

impl Local {
    pub fn new(mesh: Mesh, strategy: Strategy) -> Local {
        let me = mesh.me();
        Local {
            mesh,
            replica: SubTrie::new(),
            shared: SharedIndex::new(me, strategy),
            retained: RetainedStore::new(),
            last_stamp: 0,
            filters: HashMap::new(),
            barriers: HashMap::new(),
            next_barrier: 0,
            pressure: Vec::new(),
            durable: None,
        }
    }

    /// Persistence is on: messages published here are counted, and
    /// [`Local::publish`] says what their acknowledgement waits for.
    pub fn count_confirmations(&mut self) {
        let shards = self.mesh.shards();
        self.durable = Some(Confirmations {
            sent: vec![0; shards],
            confirmed: vec![0; shards],
            next_ticket: 1,
            ..Confirmations::default()
        });
    }

    /// True when every data shard has journaled what `wait` needs.
    pub fn confirmed(&self, wait: &Wait) -> bool {
        let Some(c) = &self.durable else {
            return true;
        };
        wait.counts.iter().all(|(p, n)| c.confirmed[*p] >= *n)
            && wait.tickets.iter().all(|t| !c.open_tickets.contains(t))
    }

    /// This thread's mesh id (the origin of what the links bring in).
    pub fn id(&self) -> usize {
        self.mesh.me()
    }

    /// Takes what the data shards sent (bounded per peer by the mesh),
    /// applying replica updates; forwarded messages go to `out` for the
    /// links. Returns how many batches were taken.
    pub fn receive(&mut self, out: &mut Vec<(usize, Arc<Message>)>) -> usize {
        let mut msgs = Vec::new();
        let n = self.mesh.receive(|from, msg| msgs.push((from, msg)));
        for (from, msg) in msgs {
            out.extend(self.on_mesh(from, msg).map(|m| (from, m)));
        }
        n
    }

    /// Applies a mesh message; a forwarded message is returned for the
    /// links' `out` side.
    fn on_mesh(&mut self, from: usize, msg: ShardMsg) -> Option<Arc<Message>> {
        match msg {
            ShardMsg::Forward(m) => return Some(m),
            ShardMsg::SubAdd(f) if f.share().is_some() => self.shared.add_remote(&f, from),
            ShardMsg::SubRemove(f) if f.share().is_some() => self.shared.remove_remote(&f, from),
            ShardMsg::SubAdd(f) => {
                self.replica.insert(f.as_str(), from, ());
            }
            ShardMsg::SubRemove(f) => {
                self.replica.remove(f.as_str(), &from);
            }
            ShardMsg::Retain {
                topic,
                stamp,
                message,
            } => {
                self.retained.apply(topic.as_str(), stamp, message);
            }
            ShardMsg::Barrier(token) => self.mesh.send(from, ShardMsg::BarrierAck(token)),
            ShardMsg::BarrierAck(token) => {
                if let Some(missing) = self.barriers.get_mut(&token) {
                    *missing = missing.saturating_sub(1);
                    if *missing == 0 {
                        self.barriers.remove(&token);
                    }
                }
            }
            ShardMsg::Durable(n) => {
                let confirmed = self
                    .durable
                    .as_mut()
                    .and_then(|c| c.confirmed.get_mut(from));
                if let Some(c) = confirmed {
                    *c = (*c).max(n);
                }
            }
            ShardMsg::SharedDurable(ticket) => {
                if let Some(c) = self.durable.as_mut() {
                    c.open_tickets.remove(&ticket);
                }
            }
            // A local subscriber pauses or releases the link with this id
            // (see `pressure.rs`).
            ShardMsg::Pressure { publisher, on } => self.pressure.push((publisher, on)),
            // Data shards' business: the bridge owns no sessions and sends
            // no barriers.
            ShardMsg::Handover(_) | ShardMsg::Shared(_) | ShardMsg::WillsSent => {}
        }
        None
    }

    /// Publishes a message brought in from a remote (or a link's state
    /// notification) to the local broker; with persistence on, returns
    /// what the remote's acknowledgement of a QoS 1/2 message waits for:
    /// the data shards it went to journaling it (the owner of a retained
    /// topic journals the update; a shared delivery's ticket is confirmed
    /// by the shard that takes it).
    pub fn publish(&mut self, msg: &Arc<Message>) -> Wait {
        let shards = self.mesh.shards();
        let me = self.id() as u16;
        let mut wait = Wait::default();
        let mut count = |c: &mut Confirmations, p: usize| {
            c.sent[p] += 1;
            wait.counts.push((p, c.sent[p]));
        };
        if msg.publish.retain {
            let stamp = RetainStamp::next(self.last_stamp, me);
            self.last_stamp = stamp.nanos;
            self.mesh.retain(&mut self.retained, msg, stamp);
            // The topic's owner journals every retained update (any QoS)
            // and counts it, as from a data shard.
            if let Some(c) = self.durable.as_mut() {
                count(c, home_shard(msg.publish.topic.as_str(), shards));
            }
        }
        let peers = self.mesh.forward(&self.replica, msg);
        let counted = msg.publish.qos != QoS::AtMostOnce;
        let mut durable = self.durable.as_mut().filter(|_| counted);
        if let Some(c) = durable.as_deref_mut() {
            peers.iter().for_each(|p| count(c, p));
        }
        let mut tickets = Vec::new();
        // The bridge has no members: every pick is a data shard.
        self.mesh.share(&self.shared, msg, |_, _| {
            let c = durable.as_deref_mut()?;
            let ticket = c.next_ticket;
            c.next_ticket += 1;
            c.open_tickets.insert(ticket);
            tickets.push(ticket);
            Some((me, ticket))
        });
        wait.tickets = tickets;
        wait
    }

    /// Sends a barrier to every data shard; once [`Local::synced`] says
    /// so, each has handled what was sent before it, and any backpressure
    /// that caused has been taken ([`Local::take_pressure`]).
    pub fn sync(&mut self) -> u64 {
        self.next_barrier += 1;
        let token = self.next_barrier;
        let shards = self.mesh.shards();
        for shard in 0..shards {
            self.mesh.send(shard, ShardMsg::Barrier(token));
        }
        self.barriers.insert(token, shards);
        token
    }

    /// True once every data shard answered barrier `token`.
    pub fn synced(&self, token: u64) -> bool {
        !self.barriers.contains_key(&token)
    }

    /// Pressure changes for links (origin session, on) received since the
    /// last call.
    pub fn take_pressure(&mut self) -> Vec<(u64, bool)> {
        std::mem::take(&mut self.pressure)
    }

    /// A link line takes `filter` from the local broker.
    pub fn take_filter(&mut self, filter: &str) {
        let count = self.filters.entry(filter.to_string()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.announce(filter, true);
        }
    }

    /// A link line no longer takes `filter`.
    pub fn release_filter(&mut self, filter: &str) {
        let Some(count) = self.filters.get_mut(filter) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.filters.remove(filter);
            self.announce(filter, false);
        }
    }

    fn announce(&self, filter: &str, add: bool) {
        let Ok(f) = TopicFilter::from_str(filter) else {
            log::error!("bridge: `{filter}` is not a valid topic filter; not subscribed");
            return;
        };
        for shard in 0..self.mesh.shards() {
            let msg = if add {
                ShardMsg::SubAdd(f.clone())
            } else {
                ShardMsg::SubRemove(f.clone())
            };
            self.mesh.send(shard, msg);
        }
    }

    /// Retained messages whose topic matches `filter`.
    pub fn retained_matching(&self, filter: &str, out: &mut Vec<Arc<Message>>) {
        self.retained.collect_matching(filter, out);
    }

    /// True when the mesh is backed up: links stop reading their remotes.
    pub fn congested(&self) -> bool {
        self.mesh.congested()
    }
}
