//! One `connection` section as a state machine: down (waiting to retry),
//! connecting (until CONNACK), up. What flows on an up link is in
//! `flow.rs`.
//!
//! Nothing here waits: connects are non-blocking, retries and keepalives
//! are deadlines the loop reports ([`Link::next_deadline`]).

use std::collections::{HashSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::backoff::{Addresses, Backoff};
use super::durable::BridgeJournal;
use super::local::{Local, Wait};
use super::packets;
use super::queue::{Limits, OutQueue};
use super::resolve::{self, Resolver};
use super::routes::Routes;
use super::status::BridgeStatus;
use super::wire::{Remote as Endpoint, Wire};
use crate::config::{BridgeConfig, StartType};
use crate::limits::{
    BRIDGE_CONNECT_TIMEOUT, BRIDGE_MAX_INCOMING, BRIDGE_MAX_INFLIGHT, BRIDGE_PRIMARY_PROBE,
    BRIDGE_V3_QOS2_INFLIGHT, PROTOCOL_MAX_PACKET_SIZE,
};
use crate::mesh::{Message, Origin};
use crate::persist::bridge::BridgeEntry;
use crate::protocol::{ConnAck, Disconnect, Packet, QoS, ReasonCode};
use crate::runtime::{Registrar, TlsClientConfig, Transport};
use crate::shard::Pressing;

/// Low bits of a link's origin session that hold its slot (plus one).
const SLOT_BITS: u32 = 24;

/// Where a link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not connected; connect at `retry` (`None`: not before a lazy
    /// bridge's threshold, or never for `start_type once`).
    Down { retry: Option<Instant> },
    /// Waiting for the host name's lookup, until `deadline`.
    Resolving { deadline: Instant },
    /// Connecting, CONNECT queued; CONNACK due by `deadline`.
    Connecting { deadline: Instant },
    /// CONNACK accepted.
    Up,
}

/// What the remote allows, from its CONNACK (MQTT 5) or defaults.
#[derive(Debug, Clone, Copy)]
pub struct Remote {
    /// QoS 1/2 messages in flight at most.
    pub window: usize,
    /// QoS 2 messages in flight at most (PUBLISH to PUBCOMP): a 3.x
    /// remote cannot say its quota (see [`BRIDGE_V3_QOS2_INFLIGHT`]).
    pub qos2_window: usize,
    /// Largest packet the remote takes (and `bridge_max_packet_size`).
    pub max_packet: usize,
    pub max_qos: QoS,
    pub retain: bool,
    /// Seconds; 0: no keepalive.
    pub keepalive: u16,
}

/// Counters, for the status.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub sent: u64,
    pub received: u64,
    pub dropped: u64,
    pub connects: u64,
    /// QoS 1/2 messages queued past the limits, their publishers paused.
    pub held: u64,
    /// Reconnects after a stall while holding publishers back.
    pub stalls: u64,
}

/// What a link needs of the bridge thread while it works.
pub struct Ctx<'a> {
    pub local: &'a mut Local,
    pub registrar: &'a Registrar,
    pub resolver: &'a Resolver,
    /// Messages a link brought in, for the other links' `out` side.
    pub relay: &'a mut Vec<Arc<Message>>,
    /// `queue_qos0_messages`: queue QoS 0 while the link is down.
    pub queue_qos0: bool,
    /// The bridge journal, when persistence is on.
    pub journal: Option<&'a mut BridgeJournal>,
    pub now: Instant,
}

/// One bridge link. Owned by the bridge thread; `key` is its slot there.
pub struct Link {
    pub config: BridgeConfig,
    pub(super) key: usize,
    pub(super) routes: Routes,
    pub(super) state: State,
    pub(super) wire: Option<Wire>,
    pub(super) queue: OutQueue,
    /// Incoming QoS 2 packet ids received and not yet released.
    pub(super) inbound_qos2: HashSet<u16>,
    backoff: Backoff,
    pub(super) addresses: Addresses,
    /// The remote refused the 3.x bridge bit: connect without it.
    private_refused: bool,
    /// The current attempt sent the bridge bit.
    private_sent: bool,
    pub(super) remote: Remote,
    pub(super) counters: Counters,
    /// Last message carried either way (lazy bridges stop when idle).
    pub(super) last_traffic: Instant,
    /// A connect to the primary address, to see whether it is back.
    pub(super) probe: Option<(Transport, Instant)>,
    pub(super) next_probe: Instant,
    /// The last read filled its buffer: read again next round.
    pub(super) more_input: bool,
    /// TLS to the remote, when configured.
    tls: Option<Arc<TlsClientConfig>>,
    /// Unique for the thread's life (a slot is reused; an id is not): what
    /// a lookup's result is addressed to.
    id: u64,
    /// A lookup for this link is running.
    lookup_pending: bool,
    /// Addresses of the current host not tried yet in this attempt.
    pub(super) candidates: Vec<SocketAddr>,
    /// The primary address as last resolved (for the probe).
    pub(super) primary: Option<SocketAddr>,
    /// The bridge journal batch the output waits for: what is written to
    /// the socket is journaled first (see `durable.rs`).
    pub(super) hold: u64,
    /// Records appended for this link since its last submit.
    pub(super) unsubmitted: bool,
    /// Acknowledgements to the remote waiting for the data shards'
    /// journals (persistence on), in order.
    pub(super) acks: VecDeque<(Packet, Wait)>,
    /// The publishers this link holds back (its queue past its limits
    /// while up), and its last progress; see `pressure.rs`.
    pub(super) pressing: Option<Pressing<Instant>>,
    /// How many local subscribers hold this link back as a publisher:
    /// while above 0 (and up), its socket is not read.
    pub(super) held_by: u32,
    /// The barrier the link waits for before it reads again, after it
    /// brought messages in (see `pressure.rs`).
    pub(super) sync: Option<u64>,
    /// The next drop is a reconnect after a stall: the queue is kept whole.
    pub(super) stall_restart: bool,
    /// See [`Limits::overload_stall`].
    pub(super) overload_stall: Option<std::time::Duration>,
}

impl Link {
    /// A link, not yet connecting; call [`Link::start`]. `tls` is what
    /// [`super::tls_settings`] made of its TLS settings.
    pub fn new(
        config: BridgeConfig,
        tls: Option<Arc<TlsClientConfig>>,
        (key, id): (usize, u64),
        limits: Limits,
        now: Instant,
    ) -> Link {
        assert!(key + 1 < 1 << SLOT_BITS, "a link's slot fits its origin");
        let seed = wall_nanos() ^ (key as u64).wrapping_mul(0x9E37_79B9);
        let addresses = Addresses::new(config.addresses.len(), config.round_robin);
        Link {
            routes: Routes::new(&config),
            key,
            state: State::Down { retry: None },
            wire: None,
            queue: OutQueue::new(limits),
            inbound_qos2: HashSet::new(),
            backoff: Backoff::new(config.restart_timeout, seed),
            addresses,
            private_refused: false,
            private_sent: false,
            remote: default_remote(&config),
            counters: Counters::default(),
            last_traffic: now,
            probe: None,
            next_probe: now,
            more_input: false,
            tls,
            id,
            lookup_pending: false,
            candidates: Vec::new(),
            primary: resolve::literal(&config.addresses[0]),
            config,
            hold: 0,
            unsubmitted: false,
            acks: VecDeque::new(),
            pressing: None,
            held_by: 0,
            sync: None,
            stall_restart: false,
            overload_stall: limits.overload_stall,
        }
    }

    /// Takes the link's filters from the local broker, says it is down,
    /// and schedules the first connect (now, unless lazy).
    pub fn start(&mut self, ctx: &mut Ctx) {
        for filter in self.routes.local_filters() {
            ctx.local.take_filter(filter);
        }
        self.notify_local(ctx, false);
        let retry = match self.config.start_type {
            StartType::Lazy { .. } => None,
            StartType::Automatic | StartType::Once => Some(ctx.now),
        };
        self.state = State::Down { retry };
    }

    /// Stops the link (removed or changed by a reload, or shutdown): the
    /// remote publishes the link's will ("0"), the local broker stops
    /// sending it messages. Returns the queue for a successor.
    pub fn stop(mut self, ctx: &mut Ctx) -> OutQueue {
        self.release_publishers(ctx);
        self.close_with_will(ctx.registrar);
        self.drop_probe(ctx.registrar);
        if self.state == State::Up {
            self.notify_local(ctx, false);
        }
        for filter in self.routes.local_filters() {
            ctx.local.release_filter(filter);
        }
        self.queue
    }

    /// Closes the connection so that the remote publishes the will: MQTT 5
    /// says so with DISCONNECT 0x04; 3.x just closes (no DISCONNECT).
    pub fn close_with_will(&mut self, registrar: &Registrar) {
        self.acks.clear();
        if let Some(mut wire) = self.wire.take() {
            if self.config.protocol.is_v5() && self.state == State::Up {
                let bye = Disconnect::new(ReasonCode::DisconnectWithWillMessage);
                let _ = wire.queue(&Packet::Disconnect(bye));
            }
            wire.close(registrar);
        }
        self.state = State::Down { retry: None };
    }

    /// Journals `entry` (persistence on); the link's output waits for it.
    pub(super) fn note(&mut self, ctx: &mut Ctx, entry: BridgeEntry) {
        if let Some(j) = ctx.journal.as_deref_mut() {
            j.append(&entry);
            self.unsubmitted = true;
        }
    }

    /// The link's id (unique for the thread's life).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The origin of what the link brings in: its id (never reused) above
    /// its slot. A local subscriber they press pauses exactly this link
    /// (see `pressure.rs`); the slot says what is never sent back out on
    /// it ([`Link::brought_in`]).
    pub fn origin(&self, bridge: usize) -> Origin {
        Origin {
            shard: bridge as u16,
            session: (self.id << SLOT_BITS) | (self.key as u64 + 1),
        }
    }

    /// True if `origin` is a message brought in on this link's slot: by
    /// this link, or by the one it replaced on a reload (its retained
    /// messages are not sent back either).
    pub fn brought_in(&self, origin: Origin, bridge: usize) -> bool {
        let slot = origin.session & ((1 << SLOT_BITS) - 1);
        usize::from(origin.shard) == bridge && slot == self.key as u64 + 1
    }

    pub(super) fn notify_local(&self, ctx: &mut Ctx, up: bool) {
        let origin = self.origin(ctx.local.id());
        if let Some(msg) = packets::state_message(&self.config, up, origin) {
            ctx.local.publish(&msg);
            ctx.relay.push(msg);
        }
    }

    /// Starts an attempt on the current address: at once for an IP
    /// address, after the lookup for a host name.
    pub(super) fn connect(&mut self, ctx: &mut Ctx) {
        let address = &self.config.addresses[self.addresses.current()];
        if let Some(addr) = resolve::literal(address) {
            return self.open(ctx, addr);
        }
        if !self.lookup_pending {
            if let Err(e) = ctx.resolver.lookup(self.id, address) {
                return self.fail(ctx, &format!("starting a lookup: {e}"));
            }
            self.lookup_pending = true;
        }
        self.state = State::Resolving {
            deadline: ctx.now + BRIDGE_CONNECT_TIMEOUT,
        };
    }

    /// A lookup this link started has finished.
    pub fn on_resolved(&mut self, ctx: &mut Ctx, result: io::Result<Vec<SocketAddr>>) {
        self.lookup_pending = false;
        if let Ok(addrs) = &result {
            if self.addresses.current() == 0 {
                self.primary = addrs.first().copied();
            }
        }
        if !matches!(self.state, State::Resolving { .. }) {
            return; // Timed out meanwhile; the next attempt looks again.
        }
        match result {
            Ok(mut addrs) => {
                addrs.reverse();
                let first = addrs.pop();
                self.candidates = addrs;
                if let Some(addr) = first {
                    self.open(ctx, addr);
                }
            }
            Err(e) => self.fail(ctx, &e.to_string()),
        }
    }

    /// Opens the connection to `addr` and queues CONNECT.
    fn open(&mut self, ctx: &mut Ctx, addr: SocketAddr) {
        let address = &self.config.addresses[self.addresses.current()];
        let max_in = self
            .config
            .max_packet_size
            .map_or(BRIDGE_MAX_INCOMING, |m| m as usize);
        let to = Endpoint {
            addr,
            bind: self.config.bind_address,
            tls: self.tls.as_ref(),
            host: &address.host,
        };
        let host = address.host.clone();
        let opened = Wire::open(
            to,
            self.config.protocol,
            max_in,
            ctx.registrar,
            self.key * 2,
        );
        let mut wire = match opened {
            Ok(wire) => wire,
            Err(e) => return self.fail(ctx, &e.to_string()),
        };
        self.private_sent = self.config.try_private && !self.private_refused;
        let connect = packets::connect(&self.config, self.private_sent);
        if let Err(e) = wire.queue(&Packet::Connect(Box::new(connect))) {
            wire.close(ctx.registrar);
            return self.fail(ctx, &e.to_string());
        }
        log::info!(
            "bridge {}: connecting to {} ({host}{})",
            self.config.name,
            wire.addr,
            if self.tls.is_some() { ", TLS" } else { "" }
        );
        self.wire = Some(wire);
        self.state = State::Connecting {
            deadline: ctx.now + BRIDGE_CONNECT_TIMEOUT,
        };
    }

    /// The connection failed or dropped: close it and schedule the retry.
    pub(super) fn fail(&mut self, ctx: &mut Ctx, why: &str) {
        if let Some(wire) = self.wire.take() {
            wire.close(ctx.registrar);
        }
        if matches!(self.state, State::Connecting { .. }) {
            if let Some(next) = self.candidates.pop() {
                // The host has more addresses: the next one, at once.
                log::info!("bridge {}: {why}; trying {next}", self.config.name);
                return self.open(ctx, next);
            }
        }
        self.candidates.clear();
        self.more_input = false;
        // Unacknowledged: the remote sends them again.
        self.acks.clear();
        let was_up = self.state == State::Up;
        let address = self.describe_address();
        if was_up {
            log::warn!(
                "bridge {}: connection to {address} lost: {why}",
                self.config.name
            );
            self.notify_local(ctx, false);
            self.went_offline(ctx);
        } else {
            log::warn!(
                "bridge {}: cannot connect to {address}: {why}",
                self.config.name
            );
            self.addresses.failed();
        }
        self.drop_probe(ctx.registrar);
        self.schedule_retry(ctx.now);
    }

    fn schedule_retry(&mut self, now: Instant) {
        let retry = match self.config.start_type {
            StartType::Once => {
                log::warn!(
                    "bridge {}: start_type once: not reconnecting",
                    self.config.name
                );
                None
            }
            StartType::Lazy { threshold, .. } if self.queue.len() < threshold as usize => None,
            StartType::Lazy { .. } | StartType::Automatic => {
                let delay = self.backoff.next_delay();
                log::info!(
                    "bridge {}: retrying in {:.1} s",
                    self.config.name,
                    delay.as_secs_f64()
                );
                Some(now + delay)
            }
        };
        self.state = State::Down { retry };
    }

    fn describe_address(&self) -> String {
        let a = &self.config.addresses[self.addresses.current()];
        match &self.wire {
            Some(w) => w.addr.to_string(),
            None => format!("{}:{}", a.host, a.port),
        }
    }

    /// The remote closed the connection on a CONNECT with the bridge bit:
    /// taken as a refusal of the bit (some brokers answer it so), and the
    /// next attempt goes without it.
    pub(super) fn note_refused_bit(&mut self, e: &io::Error) -> bool {
        if !self.private_sent || e.kind() != io::ErrorKind::UnexpectedEof {
            return false;
        }
        log::warn!(
            "bridge {}: the remote closed the connection on a CONNECT with the bridge bit (try_private); connecting without it",
            self.config.name
        );
        self.private_refused = true;
        true
    }

    /// A CONNACK while connecting.
    pub(super) fn on_connack(&mut self, ctx: &mut Ctx, ack: ConnAck) -> io::Result<()> {
        if ack.code != ReasonCode::Success {
            // A refusal is the server's answer, not the address's fault.
            self.candidates.clear();
            let refused_bit =
                self.private_sent && matches!(ack.code, ReasonCode::UnsupportedProtocolVersion);
            if refused_bit {
                log::warn!(
                    "bridge {}: the remote refused the bridge bit (try_private); connecting without it",
                    self.config.name
                );
                self.private_refused = true;
            }
            let code = if self.config.protocol.is_v5() {
                format!("reason code 0x{:02x}", ack.code.value())
            } else {
                format!("return code {}", ack.code.to_v3_connack())
            };
            let why = format!("the remote refused the connection: {:?} ({code})", ack.code);
            self.fail(ctx, &why);
            if refused_bit {
                self.state = State::Down {
                    retry: Some(ctx.now),
                };
            }
            return Ok(());
        }
        self.remote = remote_limits(&self.config, &ack);
        self.state = State::Up;
        self.backoff.connected();
        self.counters.connects += 1;
        self.last_traffic = ctx.now;
        self.next_probe = ctx.now + BRIDGE_PRIMARY_PROBE;
        if !ack.session_present {
            for pid in std::mem::take(&mut self.inbound_qos2) {
                let link = self.config.name.clone();
                self.note(ctx, BridgeEntry::Qos2InDone { link, pid });
            }
        }
        self.queue.rewind(ack.session_present);
        log::info!(
            "bridge {}: connected to {} (MQTT {:?}, session present: {})",
            self.config.name,
            self.describe_address(),
            self.config.protocol,
            ack.session_present
        );
        self.announce_up(ctx)
    }

    /// After CONNACK: state notifications, remote subscriptions, and the
    /// local retained messages the `out` lines cover (as Mosquitto does on
    /// each connect).
    fn announce_up(&mut self, ctx: &mut Ctx) -> io::Result<()> {
        let origin = self.origin(ctx.local.id());
        if let Some(msg) = packets::state_message(&self.config, true, origin) {
            ctx.local.publish(&msg);
            ctx.relay.push(Arc::clone(&msg));
            if !self.config.notifications_local_only {
                if let Ok(topic) =
                    crate::protocol::TopicName::from_str(&self.config.notification_topic)
                {
                    let entry = super::queue::Entry::new(msg, topic, QoS::AtLeastOnce, true);
                    self.queue.push_notice(entry);
                }
            }
        }
        let v5 = self.config.protocol.is_v5();
        let Some(wire) = self.wire.as_mut() else {
            return Ok(());
        };
        if self.config.attempt_unsubscribe {
            if let Some(unsub) = packets::unsubscribe(&self.routes) {
                wire.queue(&Packet::Unsubscribe(unsub))?;
            }
        }
        if let Some(sub) = packets::subscribe(&self.routes, v5) {
            wire.queue(&Packet::Subscribe(sub))?;
        }
        self.queue_retained(ctx);
        Ok(())
    }

    fn queue_retained(&mut self, ctx: &mut Ctx) {
        let mut retained = Vec::new();
        for filter in self.routes.local_filters() {
            ctx.local.retained_matching(filter, &mut retained);
        }
        let bridge = ctx.local.id();
        for msg in retained {
            if !self.brought_in(msg.origin, bridge) {
                self.offer(&msg, ctx);
            }
        }
    }

    /// Reports the connect's outcome, reads, flushes: everything a socket
    /// event can mean.
    pub fn on_ready(&mut self, ctx: &mut Ctx, probe: bool) {
        if probe {
            return self.on_probe(ctx);
        }
        self.pump(ctx);
        self.read_input(ctx);
    }

    /// True when nothing is on its way to the remote (or the link is not
    /// up, so nothing can be): shutdown need not wait for it.
    pub fn idle(&self) -> bool {
        self.state != State::Up
            || (self.queue.inflight() == 0
                && !self.queue.has_unsent()
                && self.wire.as_ref().is_none_or(|w| w.pending() == 0))
    }

    /// The link as the control plane sees it.
    pub fn status(&self) -> BridgeStatus {
        BridgeStatus {
            name: self.config.name.clone(),
            connected: self.state == State::Up,
            address: self
                .wire
                .as_ref()
                .filter(|_| self.state == State::Up)
                .map(|w| w.addr),
            queued: self.queue.len(),
            queued_bytes: self.queue.bytes(),
            inflight: self.queue.inflight(),
            sent: self.counters.sent,
            received: self.counters.received,
            dropped: self.counters.dropped,
            reconnects: self.counters.connects.saturating_sub(1),
            held: self.counters.held,
            holding: self.pressing.as_ref().map_or(0, Pressing::len),
            stalls: self.counters.stalls,
            paused: self.held_back(),
        }
    }
}

fn default_remote(config: &BridgeConfig) -> Remote {
    Remote {
        window: BRIDGE_MAX_INFLIGHT,
        qos2_window: if config.protocol.is_v5() {
            BRIDGE_MAX_INFLIGHT
        } else {
            BRIDGE_V3_QOS2_INFLIGHT
        },
        max_packet: config
            .max_packet_size
            .map_or(PROTOCOL_MAX_PACKET_SIZE, |m| m as usize),
        max_qos: QoS::ExactlyOnce,
        retain: true,
        keepalive: config.keepalive_interval,
    }
}

/// What the remote's CONNACK allows (MQTT 5 properties; defaults in 3.x).
fn remote_limits(config: &BridgeConfig, ack: &ConnAck) -> Remote {
    let mut r = default_remote(config);
    let p = &ack.properties;
    if let Some(max) = p.receive_maximum {
        r.window = r.window.min(usize::from(max));
    }
    if let Some(max) = p.maximum_packet_size {
        r.max_packet = r.max_packet.min(max as usize);
    }
    if let Some(q) = p.maximum_qos.and_then(QoS::from_u8) {
        r.max_qos = q;
    }
    r.retain = p.retain_available != Some(0);
    if let Some(k) = p.server_keep_alive {
        r.keepalive = k;
    }
    r
}

fn wall_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}
