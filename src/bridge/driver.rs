//! The bridge thread's loop: every link's socket, the mesh from the data
//! shards, reload commands and shutdown, plugged into
//! [`crate::runtime::Reactor::run`] like a shard.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU16;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::index::Strategy;
use crossbeam_channel::Receiver;
use slab::Slab;

use super::durable::{self, BridgeDurableBoot, BridgeJournal};
use super::link::{Ctx, Link};
use super::local::Local;
use super::queue::{Entry as OutEntry, Limits, OutQueue, Stage};
use super::resolve::Resolver;
use super::status::StatusBoard;
use crate::config::BridgeConfig;
use crate::limits::{BRIDGE_SHUTDOWN_FLUSH, START_TIMEOUT, TICK};
use crate::mesh::{Message, Origin, ShardMsg};
use crate::persist::bridge::{BridgeEntry, StoredLink};
use crate::protocol::{QoS, TopicName};
use crate::runtime::{Driver, Readiness, Registrar, Token, Wake};
use bytes::BytesMut;

/// What the control plane asks of the bridge thread.
#[derive(Debug)]
pub enum Command {
    /// The `connection` sections of a reloaded configuration: links added,
    /// removed or changed are started, stopped or restarted; the others
    /// are left alone.
    Reload(Vec<BridgeConfig>),
}

/// Where shutdown is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Running,
    /// Stop asked: the data shards are publishing wills and closing; their
    /// messages still go out. Bounded by `until`.
    WaitShards {
        until: Instant,
    },
    /// Shards done: flushing the links until `until`.
    Draining {
        until: Instant,
    },
    Done,
}

/// What every link works with: the local broker, the loop's registrar,
/// and the messages links bring in. Owned by the bridge thread.
struct Env {
    local: Local,
    registrar: Registrar,
    resolver: Resolver,
    /// Messages brought in by a link, to offer to every link's `out` side.
    relay: Vec<Arc<Message>>,
    queue_qos0: bool,
    /// The bridge journal, when persistence is on.
    journal: Option<BridgeJournal>,
}

impl Env {
    fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            local: &mut self.local,
            registrar: &self.registrar,
            resolver: &self.resolver,
            relay: &mut self.relay,
            queue_qos0: self.queue_qos0,
            journal: self.journal.as_mut(),
            now: Instant::now(),
        }
    }
}

/// The bridge thread's state. Owned by that thread.
pub struct BridgeLoop {
    env: Env,
    links: Slab<Link>,
    commands: Receiver<Command>,
    stop: Arc<AtomicBool>,
    board: Arc<StatusBoard>,
    limits: Limits,
    /// The next link's id (never reused, unlike slab slots).
    next_id: u64,
    next_tick: Instant,
    /// Messages forwarded by the data shards this round, with the shard.
    forwarded: Vec<(usize, Arc<Message>)>,
    closing: Closing,
}

/// What the bridge thread is started with (besides its loop).
pub struct Setup {
    pub bridges: Vec<BridgeConfig>,
    pub limits: Limits,
    pub queue_qos0: bool,
    /// How shared subscription members are picked for bridged-in messages.
    pub shared_strategy: Strategy,
    pub commands: Receiver<Command>,
    pub stop: Arc<AtomicBool>,
    pub board: Arc<StatusBoard>,
    /// The bridge thread's own wake line (lookups finishing use it).
    pub wake: Arc<Wake>,
    /// The bridge journal and what it held (persistence on).
    pub durable: Option<BridgeDurableBoot>,
}

impl BridgeLoop {
    /// The loop with every configured link started.
    pub fn new(mut local: Local, registrar: Registrar, setup: Setup) -> BridgeLoop {
        let shards = local.mesh.shards();
        if setup.durable.is_some() {
            // A remote's message is acknowledged once the shards have it.
            local.count_confirmations();
        }
        let (journal, mut stored) = match setup.durable {
            Some(boot) => {
                for line in &boot.state.damage {
                    log::warn!("persistence: bridge journal: {line}");
                }
                let next = boot.state.next_id;
                let j = BridgeJournal::new(boot.journal, next, shards, boot.compact_min);
                (Some(j), boot.state.links)
            }
            None => (None, BTreeMap::new()),
        };
        let mut bridge = BridgeLoop {
            env: Env {
                local,
                registrar,
                resolver: Resolver::new(setup.wake),
                relay: Vec::new(),
                queue_qos0: setup.queue_qos0,
                journal,
            },
            links: Slab::new(),
            commands: setup.commands,
            stop: setup.stop,
            board: setup.board,
            limits: setup.limits,
            next_id: 0,
            next_tick: Instant::now(),
            forwarded: Vec::new(),
            closing: Closing::Running,
        };
        for config in setup.bridges {
            let restored = stored.remove(&config.name);
            let (queue, inbound) = match restored {
                Some(l) => bridge.restore(&config.name, l),
                None => (None, HashSet::new()),
            };
            if let Some(key) = bridge.add(config, queue) {
                bridge.links[key].inbound_qos2 = inbound;
                // A lazy link with enough recovered connects now.
                bridge.with_link(key, |link, ctx| link.check_threshold(ctx.now));
            }
        }
        if let Some(j) = bridge.env.journal.as_mut() {
            for (name, l) in stored {
                // Dropped in the journal now; the compaction below (off
                // the loop) then leaves them out of the file.
                for o in &l.queue {
                    j.append(&BridgeEntry::Done { id: o.id });
                }
                for pid in l.qos2_in.iter().copied() {
                    let link = name.clone();
                    j.append(&BridgeEntry::Qos2InDone { link, pid });
                }
                j.submit();
                log::warn!(
                    "bridge {name}: no longer configured: its journal ({} queued messages) dropped",
                    l.queue.len()
                );
            }
            // The live state only: this starts the file small.
            j.submit();
            let records = bridge.live_records();
            if let Some(j) = bridge.env.journal.as_mut() {
                j.compact(records);
            }
        }
        bridge.publish_status();
        bridge
    }

    /// Link `name`'s queue and inbound QoS 2 ids as journaled.
    fn restore(&self, name: &str, stored: StoredLink) -> (Option<OutQueue>, HashSet<u16>) {
        let mut queue = OutQueue::new(self.limits);
        let origin = Origin {
            shard: self.env.local.id() as u16,
            session: 0,
        };
        let n = stored.queue.len();
        for o in stored.queue {
            let Ok(topic) = TopicName::from_str(&o.topic) else {
                log::warn!(
                    "bridge {name}: journaled topic {:?} is invalid; dropped",
                    o.topic
                );
                continue;
            };
            let qos = QoS::from_u8(o.qos).unwrap_or(QoS::AtLeastOnce);
            let msg = Arc::new(Message::restored(o.publish, origin, o.expires_at));
            let mut e = OutEntry::new(msg, topic, qos, o.retain);
            e.jid = o.id;
            e.packet_id = o.pid.and_then(NonZeroU16::new);
            e.stage = match (e.packet_id, o.released, qos) {
                (None, ..) => Stage::Unsent,
                (Some(_), true, _) => Stage::AwaitComp,
                (Some(_), false, QoS::ExactlyOnce) => Stage::AwaitRec,
                (Some(_), false, _) => Stage::AwaitAck,
            };
            queue.restore(e);
        }
        log::info!(
            "bridge {name}: recovered {n} queued message(s) and {} inbound QoS 2 id(s)",
            stored.qos2_in.len()
        );
        (Some(queue), stored.qos2_in.into_iter().collect())
    }

    /// Every link's journaled state, as records (for a compaction).
    fn live_records(&self) -> BytesMut {
        let mut out = BytesMut::new();
        for (_, link) in &self.links {
            let name = &link.config.name;
            for e in link.queue.journaled() {
                durable::live_records(&mut out, name, e);
            }
            for pid in &link.inbound_qos2 {
                let entry = BridgeEntry::Qos2In {
                    link: name.clone(),
                    pid: *pid,
                };
                entry.append_to(&mut out);
            }
        }
        out
    }

    /// End of a turn: the journal batch goes to the writer, the data
    /// shards get the confirmations now durable, and the journal is
    /// compacted once it has grown past its bound.
    fn journal_turn(&mut self) {
        let Some(j) = self.env.journal.as_mut() else {
            return;
        };
        j.submit();
        let mesh = &self.env.local.mesh;
        j.confirmations(|shard, n| mesh.send(shard, ShardMsg::Durable(n)));
        if j.due_for_compaction() {
            let started = Instant::now();
            let records = self.live_records();
            let bytes = records.len();
            if let Some(j) = self.env.journal.as_mut() {
                j.compact(records);
            }
            log::info!(
                "bridge: journal compaction to {bytes} bytes started; the loop paused {:?}",
                started.elapsed()
            );
        }
    }

    /// Runs `f` on link `key` with the context links work in, then offers
    /// what it brought in to every link.
    fn with_link(&mut self, key: usize, f: impl FnOnce(&mut Link, &mut Ctx)) {
        let Some(link) = self.links.get_mut(key) else {
            return;
        };
        let mut ctx = self.env.ctx();
        f(link, &mut ctx);
        self.offer_relayed();
    }

    /// Runs `f` on every link `pick` selects, then offers what they
    /// brought in to every link; true if any was selected.
    fn each_link(
        &mut self,
        pick: impl Fn(&Link) -> bool,
        mut f: impl FnMut(&mut Link, &mut Ctx),
    ) -> bool {
        let mut ctx = self.env.ctx();
        let mut any = false;
        for (_, link) in self.links.iter_mut().filter(|(_, l)| pick(l)) {
            f(link, &mut ctx);
            any = true;
        }
        self.offer_relayed();
        any
    }

    fn offer_relayed(&mut self) {
        while !self.env.relay.is_empty() {
            let msgs = std::mem::take(&mut self.env.relay);
            self.offer_all(msgs.iter());
        }
    }

    /// Offers messages to every link (each skips its own).
    fn offer_all<'m>(&mut self, msgs: impl Iterator<Item = &'m Arc<Message>> + Clone) {
        let mut ctx = self.env.ctx();
        for (_, link) in self.links.iter_mut() {
            for msg in msgs.clone() {
                link.offer(msg, &mut ctx);
            }
        }
    }

    /// Starts a link (with `queue`, carried over or recovered); returns
    /// its key.
    fn add(&mut self, config: BridgeConfig, queue: Option<OutQueue>) -> Option<usize> {
        let tls = match super::tls_settings(&config) {
            Ok(tls) => tls,
            Err(e) => {
                log::error!("{e}; the bridge is not started");
                return None;
            }
        };
        let entry = self.links.vacant_entry();
        let key = entry.key();
        self.next_id += 1;
        let mut link = Link::new(
            config,
            tls,
            (key, self.next_id),
            self.limits,
            Instant::now(),
        );
        if let Some(queue) = queue {
            link.queue = queue;
        }
        log::info!("bridge {}: started", link.config.name);
        entry.insert(link);
        self.with_link(key, |link, ctx| link.start(ctx));
        Some(key)
    }

    fn remove(&mut self, key: usize) -> OutQueue {
        let link = self.links.remove(key);
        let name = link.config.name.clone();
        let mut ctx = self.env.ctx();
        let queue = link.stop(&mut ctx);
        self.offer_relayed();
        log::info!("bridge {name}: stopped");
        queue
    }

    /// Applies a reloaded set of `connection` sections. A section whose
    /// TLS files cannot be used is refused (logged), and a link running
    /// under its name is left as it was.
    fn reload(&mut self, configs: Vec<BridgeConfig>) {
        let configs: Vec<BridgeConfig> = configs
            .into_iter()
            .filter_map(|c| match super::tls_settings(&c) {
                Ok(_) => Some(c),
                Err(e) => {
                    log::error!("reload: {e}; keeping bridge {} as it was", c.name);
                    let old = self.links.iter().find(|(_, l)| l.config.name == c.name);
                    old.map(|(_, l)| l.config.clone())
                }
            })
            .collect();
        let running: HashMap<String, usize> = self
            .links
            .iter()
            .map(|(key, l)| (l.config.name.clone(), key))
            .collect();
        let mut carried: HashMap<String, OutQueue> = HashMap::new();
        for (name, key) in &running {
            let new = configs.iter().find(|c| &c.name == name);
            if new == Some(&self.links[*key].config) {
                continue;
            }
            let same_topics = new.is_some_and(|c| c.topics == self.links[*key].config.topics);
            let mut queue = self.remove(*key);
            if same_topics {
                carried.insert(name.clone(), queue);
            } else if !queue.is_empty() {
                log::warn!(
                    "bridge {name}: its topics changed or it was removed: {} queued messages dropped",
                    queue.clear()
                );
                if let Some(j) = self.env.journal.as_mut() {
                    queue.take_changes(|c| j.change(c));
                }
            }
        }
        for config in configs {
            let unchanged = running
                .get(&config.name)
                .is_some_and(|&key| self.links.get(key).is_some_and(|l| l.config == config));
            if !unchanged {
                let queue = carried.remove(&config.name);
                self.add(config, queue);
            }
        }
    }

    fn publish_status(&self) {
        self.board
            .publish(self.links.iter().map(|(_, l)| l.status()).collect());
    }

    fn check_commands(&mut self) -> bool {
        let mut busy = false;
        while let Ok(command) = self.commands.try_recv() {
            busy = true;
            match command {
                Command::Reload(configs) if self.closing == Closing::Running => {
                    self.reload(configs)
                }
                Command::Reload(_) => {}
            }
        }
        busy
    }

    /// Moves shutdown on; true while it made progress.
    fn advance_closing(&mut self, now: Instant) {
        match self.closing {
            Closing::Running if self.stop.load(Ordering::Relaxed) => {
                self.closing = Closing::WaitShards {
                    until: now + START_TIMEOUT,
                };
            }
            Closing::WaitShards { until }
                if self.env.local.mesh.shards_closed() || now >= until =>
            {
                self.closing = Closing::Draining {
                    until: now + BRIDGE_SHUTDOWN_FLUSH,
                };
            }
            Closing::Draining { until } if self.drained() || now >= until => {
                let keys: Vec<usize> = self.links.iter().map(|(k, _)| k).collect();
                for key in keys {
                    self.remove(key);
                }
                if let Some(j) = self.env.journal.take() {
                    j.close();
                }
                self.closing = Closing::Done;
            }
            _ => {}
        }
    }

    /// True when no link has anything on its way (or none is up).
    fn drained(&self) -> bool {
        self.links.iter().all(|(_, l)| l.idle())
    }
}

impl Driver for BridgeLoop {
    fn ready(&mut self, token: Token, _readiness: Readiness) {
        let (key, probe) = (token.0 / 2, token.0 % 2 == 1);
        self.with_link(key, |link, ctx| link.on_ready(ctx, probe));
    }

    fn run_pending(&mut self) -> bool {
        let mut busy = self.check_commands();
        for done in self.env.resolver.finished() {
            busy = true;
            let key = self
                .links
                .iter()
                .find(|(_, l)| l.id() == done.link)
                .map(|(k, _)| k);
            if let Some(key) = key {
                self.with_link(key, |link, ctx| link.on_resolved(ctx, done.result));
            }
        }
        let mut forwarded = std::mem::take(&mut self.forwarded);
        busy |= self.env.local.receive(&mut forwarded) > 0;
        let bridge = self.env.local.id();
        for (publisher, on) in self.env.local.take_pressure() {
            // A link gone meanwhile (its id is never reused) took its
            // count with it.
            let mut links = self.links.iter_mut().map(|(_, l)| l);
            if let Some(link) = links.find(|l| l.origin(bridge).session == publisher) {
                link.pressed(on);
            }
        }
        if let Some(j) = self.env.journal.as_mut() {
            // Counted as a data shard counts them: confirmed once what the
            // links did with them is durable.
            for (shard, m) in &forwarded {
                if m.publish.qos != QoS::AtMostOnce {
                    j.received(*shard);
                }
            }
        }
        self.offer_all(forwarded.iter().map(|(_, m)| m));
        forwarded.clear();
        self.forwarded = forwarded;
        if !self.env.local.congested() {
            let local = &self.env.local;
            let closing = self.closing != Closing::Running;
            for (_, link) in self.links.iter_mut() {
                // At shutdown the shards may no longer answer.
                if link.sync.is_some_and(|t| closing || local.synced(t)) {
                    link.sync = None;
                }
            }
            let readable = |l: &Link| l.more_input && !l.held_back() && l.sync.is_none();
            busy |= self.each_link(readable, |link, ctx| link.read_input(ctx));
        }
        busy |= self.env.local.mesh.flush();
        busy
    }

    fn end_turn(&mut self) {
        self.each_link(|_| true, |link, ctx| link.pump(ctx));
        self.journal_turn();
        self.env.local.mesh.flush();
        self.advance_closing(Instant::now());
    }

    fn next_deadline(&self) -> Option<Instant> {
        let links = self.links.iter().filter_map(|(_, l)| l.next_deadline());
        links.chain([self.next_tick]).min()
    }

    fn on_timer(&mut self, now: Instant) {
        let due = |l: &Link| l.next_deadline().is_some_and(|d| d <= now);
        self.each_link(due, |link, ctx| link.on_timer(ctx));
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.publish_status();
        }
    }

    fn finished(&self) -> bool {
        self.closing == Closing::Done
    }
}
