//! A client connection: the state its session and the shard's fan-out
//! share ([`ConnShared`]), and the state machine the shard's slab holds
//! ([`Conn`]): transport, partial packet, phase.
//!
//! Reads go into the shard-wide buffer; only a partial packet left at the
//! end of a read is copied into the connection's own [`Partial`], so an
//! idle connection holds no read buffer. Writes go through the
//! connection's `out` buffer, which fan-out appends to and the end of the
//! loop turn flushes; it is released once it drains (if it grew large).

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use bytes::{Buf, BytesMut};

use super::alias::{AliasRefused, OutAlias, OutAliases, TopicAliases};
use super::auth::{AuthState, PendingConnect};
use super::partial::Stored;
use super::session::SessionId;
use crate::limits::{MAX_OUT_BUFFER, OUT_BUFFER_KEEP};
use crate::protocol::{Packet, ProtocolVersion, Publish, QoS, ReasonCode, TopicName};
use crate::runtime::Transport;
use crate::security::Client;

/// Why a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT (no will, unless `with_will`).
    Disconnect { with_will: bool },
    /// The peer closed the socket or it failed.
    Io,
    /// The client broke the protocol (or a limit); 5.0 clients get this
    /// reason code, with the text as its Reason String.
    Protocol(ReasonCode, &'static str),
    /// No packet within 1.5 x keepalive.
    KeepAliveTimeout,
    /// Another connection took the session over.
    SessionTakenOver,
    /// The broker is shutting down.
    ServerShuttingDown,
    /// Refused at CONNECT (the CONNACK says why), or no CONNECT in time.
    Refused,
}

impl CloseReason {
    /// True when the will must be published (everything but a clean
    /// DISCONNECT without will).
    pub fn publishes_will(self) -> bool {
        !matches!(self, CloseReason::Disconnect { with_will: false })
    }

    /// The DISCONNECT a 5.0 client is sent, if any: its reason code and
    /// Reason String (short and fixed: what went wrong, never more).
    pub fn disconnect(self) -> Option<(ReasonCode, &'static str)> {
        match self {
            CloseReason::Protocol(code, why) => Some((code, why)),
            CloseReason::KeepAliveTimeout => Some((
                ReasonCode::KeepAliveTimeout,
                "no packet within 1.5 times the keep alive",
            )),
            CloseReason::SessionTakenOver => Some((
                ReasonCode::SessionTakenOver,
                "another connection with this client id took the session over",
            )),
            CloseReason::ServerShuttingDown => Some((
                ReasonCode::ServerShuttingDown,
                "the server is shutting down",
            )),
            CloseReason::Disconnect { .. } | CloseReason::Io | CloseReason::Refused => None,
        }
    }
}

/// [`ConnShared`]'s token once the connection has left the slab.
const NO_TOKEN: u32 = u32::MAX;

/// State shared by a connection's slab entry, its session and the shard's
/// fan-out. Shard-local (`Rc`).
pub struct ConnShared {
    /// The connection's slot in the shard's slab; [`NO_TOKEN`] once it is
    /// gone (the slot may then hold another connection).
    token: Cell<u32>,
    pub version: ProtocolVersion,
    /// Connected with Mosquitto's MQTT 3.x bridge bit (`try_private`): its
    /// subscriptions are No Local and Retain As Published (see `subscribe`).
    pub bridge: bool,
    /// Largest packet the client accepts (its Maximum Packet Size).
    pub max_packet: u32,
    /// Its listener's `max_qos`.
    pub max_qos: QoS,
    /// Its listener's `mount_point`: prefixed to its topics and filters,
    /// stripped from what it is sent (see `mount`).
    pub mount: Option<Rc<str>>,
    /// The client's Request Problem Information (5.0; default true): when
    /// false, Reason Strings go on CONNACK and DISCONNECT only (3.1.2.11.7).
    pub problem_info: bool,
    /// The client's Topic Alias Maximum (5.0): aliases the broker may set
    /// for what it sends; 0 = none (the shared encodings serve).
    pub out_alias_max: u16,
    /// The session this connection serves (set once attached).
    pub session: Cell<SessionId>,
    /// The client id (assigned by the broker if the CONNECT had none);
    /// empty before the CONNECT is admitted.
    pub client_id: Rc<str>,
    /// The CONNECT's username, if any: what the ACL's `user` sections and
    /// `%u` name.
    pub username: Option<Rc<str>>,
    /// The index of the listener it came in on (its ACL rules apply).
    pub listener: u8,
    out: RefCell<BytesMut>,
    close: Cell<Option<CloseReason>>,
    /// Filed in the shard's dirty list since the last flush.
    dirty: Cell<bool>,
    /// Messages were held back for lack of room: drain the session queue
    /// once the buffer empties.
    starved: Cell<bool>,
    /// Waiting for a SUBSCRIBE barrier: input is not processed meanwhile
    /// (packets are handled in order).
    pub blocked: Cell<bool>,
    /// Input paused because the client does not read what it is sent (its
    /// out buffer reached its bound): TCP flow control then holds the
    /// client back, instead of its answers piling up here.
    pub input_paused: Cell<bool>,
    /// The client hung up: it is read to the end even while held back
    /// by backpressure (see `pressure`), so that it leaves at once.
    pub hung_up: Cell<bool>,
    /// PUBACK/PUBREC held back while a 5.0 publisher is held back by
    /// backpressure (see `pressure`), in order; empty (no allocation) the
    /// rest of the time. At most the Receive Maximum we announce.
    held_acks: Cell<Vec<Packet>>,
    /// Shard-clock second of the last packet received.
    last_seen: Cell<u32>,
    /// 1.5 x keepalive in seconds, rounded up; 0 = no keepalive.
    keepalive_limit: Cell<u32>,
    /// Topic aliases the client set (5.0); `None` until it sends one, so
    /// a connection that uses none holds one pointer. Lives as long as the
    /// connection, not the session.
    aliases: Cell<Option<Box<TopicAliases>>>,
    /// Topic aliases the broker set for the client (5.0, when
    /// `out_alias_max` > 0); `None` until the first. Lives as long as the
    /// connection.
    out_aliases: Cell<Option<Box<OutAliases>>>,
    /// Enhanced authentication (5.0): the method the client connected
    /// with and the exchange running; `None` for a client that connected
    /// without a method.
    auth: Cell<Option<Box<AuthState>>>,
}

impl ConnShared {
    /// A connection for `version` at shard-clock second `now`.
    pub fn new(version: ProtocolVersion, max_packet: u32, now: u64) -> ConnShared {
        ConnShared {
            token: Cell::new(NO_TOKEN),
            version,
            bridge: false,
            max_packet,
            max_qos: QoS::ExactlyOnce,
            mount: None,
            out_alias_max: 0,
            problem_info: true,
            session: Cell::new(0),
            client_id: Rc::from(""),
            username: None,
            listener: 0,
            out: RefCell::new(BytesMut::new()),
            close: Cell::new(None),
            dirty: Cell::new(false),
            starved: Cell::new(false),
            blocked: Cell::new(false),
            input_paused: Cell::new(false),
            hung_up: Cell::new(false),
            held_acks: Cell::new(Vec::new()),
            last_seen: Cell::new(now as u32),
            keepalive_limit: Cell::new(0),
            aliases: Cell::new(None),
            out_aliases: Cell::new(None),
            auth: Cell::new(None),
        }
    }

    /// The Reason String `why` for a failure acknowledgement, where the
    /// client takes one: 5.0, and it did not set Request Problem
    /// Information to 0. (CONNACK and DISCONNECT carry theirs always.)
    pub fn ack_reason_string(&self, why: &str) -> Option<String> {
        (self.version.is_v5() && self.problem_info).then(|| why.to_string())
    }

    /// Who the client is, to the ACL.
    pub fn acl_client(&self) -> Client<'_> {
        Client {
            id: &self.client_id,
            username: self.username.as_deref(),
        }
    }

    /// Sets the connection's authentication state.
    pub(super) fn set_auth(&self, auth: Option<Box<AuthState>>) {
        self.auth.set(auth);
    }

    /// Reads or changes the connection's authentication state.
    pub(super) fn with_auth<R>(&self, f: impl FnOnce(Option<&mut AuthState>) -> R) -> R {
        let mut auth = self.auth.take();
        let r = f(auth.as_deref_mut());
        self.auth.set(auth);
        r
    }

    /// True if PUBLISH packets to this client may carry topic aliases:
    /// each is then encoded for this connection alone.
    pub fn sends_aliases(&self) -> bool {
        self.out_alias_max > 0
    }

    /// How the next PUBLISH on `topic` names it (see [`OutAliases::pick`]).
    pub fn pick_out_alias(&self, topic: &TopicName) -> OutAlias {
        let map = self.out_aliases.take();
        let picked = OutAliases::pick(map.as_deref(), topic, self.out_alias_max);
        self.out_aliases.set(map);
        picked
    }

    /// Records an alias a written PUBLISH set (see [`OutAliases::commit`]).
    pub fn commit_out_alias(&self, topic: &TopicName, alias: OutAlias) {
        let mut map = self.out_aliases.take();
        OutAliases::commit(&mut map, topic, alias);
        self.out_aliases.set(map);
    }

    /// Applies `p`'s Topic Alias (see [`TopicAliases::resolve`]), with
    /// `max` the Topic Alias Maximum the CONNACK announced.
    pub fn resolve_topic_alias(&self, p: &mut Publish, max: u16) -> Result<(), AliasRefused> {
        let mut aliases = self.aliases.take();
        let resolved = TopicAliases::resolve(&mut aliases, p, max);
        self.aliases.set(aliases);
        resolved
    }

    /// The connection's slab slot, while it has one.
    pub fn token(&self) -> Option<usize> {
        let t = self.token.get();
        (t != NO_TOKEN).then_some(t as usize)
    }

    /// Records the slab slot (`None`: the connection is gone).
    pub fn set_token(&self, token: Option<usize>) {
        self.token
            .set(token.map_or(NO_TOKEN, |t| u32::try_from(t).unwrap_or(NO_TOKEN)));
    }

    /// Sets the keepalive in seconds (0 disables it).
    pub fn set_keepalive(&self, secs: u16) {
        self.keepalive_limit.set((u32::from(secs) * 3).div_ceil(2));
    }

    /// The shard-clock second by which a packet must arrive.
    pub fn keepalive_deadline(&self) -> Option<u64> {
        let limit = self.keepalive_limit.get();
        (limit > 0).then(|| u64::from(self.last_seen.get()) + u64::from(limit))
    }

    /// Holds a PUBACK/PUBREC back; returns how many are held now.
    pub fn hold_ack(&self, ack: Packet) -> usize {
        let mut held = self.held_acks.take();
        held.push(ack);
        let n = held.len();
        self.held_acks.set(held);
        n
    }

    /// The acknowledgements held back, in order; none are held after.
    pub fn take_held_acks(&self) -> Vec<Packet> {
        self.held_acks.take()
    }

    /// Records activity at `now`.
    pub fn seen(&self, now: u64) {
        self.last_seen.set(now as u32);
    }

    /// Appends to the outgoing buffer. The caller marks the connection dirty
    /// (via `Shard::mark_dirty`) so it is flushed at the end of the turn.
    pub fn write_with(&self, f: impl FnOnce(&mut BytesMut)) {
        f(&mut self.out.borrow_mut());
    }

    /// True when the outgoing buffer is at its bound (slow consumer).
    pub fn out_full(&self) -> bool {
        self.out.borrow().len() >= MAX_OUT_BUFFER
    }

    /// True when nothing waits to be written.
    pub fn out_empty(&self) -> bool {
        self.out.borrow().is_empty()
    }

    pub(super) fn set_starved(&self) {
        self.starved.set(true);
    }

    /// True (once) if the buffer drained while messages were held back.
    pub(super) fn take_drained(&self) -> bool {
        if self.starved.get() && self.out_empty() {
            self.starved.set(false);
            return true;
        }
        false
    }

    /// Asks the shard to close the connection (first reason wins); the
    /// shard tears it down at the end of the turn.
    pub fn close(&self, reason: CloseReason) {
        if self.close.get().is_none() {
            self.close.set(Some(reason));
        }
    }

    /// Why the connection is closing, once a close was asked for.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close.get()
    }

    /// True once a close was asked for.
    pub fn is_closing(&self) -> bool {
        self.close.get().is_some()
    }

    /// Marks for the shard's end-of-turn flush; false if already marked.
    pub(super) fn mark_dirty(&self) -> bool {
        !self.dirty.replace(true)
    }

    pub(super) fn clear_dirty(&self) {
        self.dirty.set(false);
    }

    /// Bytes waiting to be written.
    pub fn out_len(&self) -> usize {
        self.out.borrow().len()
    }

    /// Writes as much of the outgoing buffer as `transport` takes, then
    /// what the transport itself holds (a WebSocket frame the socket took
    /// part of, a pong). `Ok(true)` when both drained, `Ok(false)` when the
    /// socket is full.
    pub fn flush_to(&self, transport: &mut Transport) -> io::Result<bool> {
        let mut out = self.out.borrow_mut();
        while !out.is_empty() {
            match transport.write(&out) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => out.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        // TLS and WebSocket: bytes the socket has not taken yet (TCP holds
        // none).
        match transport.flush() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            result => result?,
        }
        if out.capacity() > OUT_BUFFER_KEEP {
            *out = BytesMut::new();
        }
        Ok(true)
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted; its CONNECT has not fully arrived.
    Connecting,
    /// CONNECT read, naming an enhanced authentication method: AUTH
    /// packets go back and forth until the exchange ends in a CONNACK
    /// (see `auth`). Its CONNECT waits in [`Conn::connect`]; the CONNECT
    /// deadline still runs.
    Authenticating,
    /// CONNECT read, with a user name a password file must check: a
    /// verifier thread has the check (see `verify`). Its CONNECT waits in
    /// [`Conn::connect`]; its input is not read meanwhile; the CONNECT
    /// deadline still runs.
    Verifying,
    /// CONNECT accepted: attached to its session.
    Attached,
    /// Closing: its last bytes (CONNACK refusal, DISCONNECT) are flushed
    /// until the buffer drains or its closing deadline passes, then the
    /// socket closes.
    Closing,
}

impl Phase {
    /// True until the CONNACK is sent: the CONNECT deadline applies.
    pub fn before_connack(self) -> bool {
        matches!(
            self,
            Phase::Connecting | Phase::Authenticating | Phase::Verifying
        )
    }
}

/// A connection as the shard's slab holds it: a state machine, not a task.
/// Shard-local; what it waits for is `phase` (and `shared.blocked`).
pub struct Conn {
    pub transport: Transport,
    /// Set once CONNECT was read (or refused): what sessions and fan-out see.
    pub shared: Option<Rc<ConnShared>>,
    /// Bytes of a packet that has not fully arrived.
    pub partial: Stored,
    pub phase: Phase,
    /// The CONNECT waiting for its authentication exchange or its
    /// password check to end: `Some` exactly while `phase` is
    /// [`Phase::Authenticating`] or [`Phase::Verifying`].
    pub connect: Option<Box<PendingConnect>>,
    /// Tells this connection from a later one in the same slab slot (the
    /// deadline queues name connections by slot and serial).
    pub serial: u32,
    /// Write interest is registered (only while output waits).
    pub writable: bool,
    /// Counted in the shard's attached connections.
    pub counted: bool,
    /// Closing, its write half shut: reads drop what the client still
    /// sends until its end of stream (see `Transport::lingers`).
    pub lingering: bool,
    /// The index of the listener it came in on (in `Config::listeners`,
    /// below [`crate::limits::MAX_LISTENERS`]); travels with a hand-over.
    pub listener: u8,
}

impl Conn {
    /// A freshly accepted (or handed-over) connection, before CONNECT.
    pub fn new(transport: Transport, serial: u32, listener: u8) -> Conn {
        Conn {
            transport,
            shared: None,
            partial: None,
            phase: Phase::Connecting,
            connect: None,
            serial,
            writable: false,
            counted: false,
            lingering: false,
            listener,
        }
    }
}
