//! One MQTT client connection of a worker: a state machine in the worker's
//! slab, moved on by readiness events and timers (no task, no future).
//!
//! ```text
//! Connecting --connected--> WaitConnAck --CONNACK--> Ready
//!                                |                     ^
//!                                +--(subscriber)--> WaitSubAck --SUBACK--+
//! WaitConnAck --CONNACK (connect-storm attempt)--> Closing
//! Ready --run stops--> Closing (DISCONNECT queued) --flushed or deadline--> closed
//! ```
//!
//! Any error closes the connection; the worker counts it by phase (see
//! `Worker::fail`). What a connection waits for is its [`Phase`], plus
//! [`Conn::deadline`] and its armed timers.
//!
//! I/O. Reads go through the worker's one [`ReadScratch`]; a packet split
//! over two reads waits in the connection's `partial` buffer, which holds
//! at most that one packet's prefix. At most [`READS_PER_TURN`] reads per
//! turn: a connection with more to read goes to the worker's backlog (it is
//! still readable, and edge-triggered readiness will not say so again).
//! Writes are queued in `out` and flushed at the end of the turn; WRITABLE
//! interest is registered only while a flush is blocked.

use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use shardmq::protocol::{
    self, ConnAck, Connect, DecodeError, Disconnect, Packet, Properties, ProtocolVersion,
    ReasonCode,
};
use shardmq::runtime::{connect_from, Interest, Registrar, Token, Transport};

use crate::clock::ns;
use crate::plan::RunSpec;
use crate::publisher::Publisher;
use crate::subscriber::{self, Subscriber, SUBSCRIBE_ID};
use crate::timers::Armed;
use crate::worker::Ctx;

/// Largest packet accepted from the broker.
pub const MAX_PACKET: usize = 16 * 1024 * 1024;
/// The worker-wide read buffer: bytes taken per `read`.
pub const READ_CHUNK: usize = 64 * 1024;
/// Reads per connection per turn before it yields to the others.
pub const READS_PER_TURN: usize = 16;
/// Out buffer size at which publishers stop encoding and subscribers stop
/// reading (and so stop producing acks) until the broker takes more.
pub const OUT_HIGH: usize = 256 * 1024;
/// Emptied buffers larger than this are freed rather than kept, so that a
/// burst does not pin memory on each of thousands of connections.
const KEEP_CAPACITY: usize = 16 * 1024;

const _: () = assert!(KEEP_CAPACITY <= OUT_HIGH && READ_CHUNK <= MAX_PACKET);

/// Where a connection is in its life (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// TCP connect in progress; WRITABLE says when it is done.
    Connecting,
    /// CONNECT sent.
    WaitConnAck,
    /// SUBSCRIBE sent (subscribers).
    WaitSubAck,
    /// Doing its role.
    Ready,
    /// DISCONNECT queued; closed once flushed or at [`Conn::deadline`].
    Closing,
}

impl Phase {
    /// Still opening (connect, CONNACK, SUBACK).
    pub fn establishing(self) -> bool {
        matches!(
            self,
            Phase::Connecting | Phase::WaitConnAck | Phase::WaitSubAck
        )
    }
}

/// What the connection does once open, with the state that goes with it.
pub enum RoleState {
    Publisher(Box<Publisher>),
    Subscriber(Box<Subscriber>),
    /// Stays connected and pings.
    Idle,
    /// A connect-storm attempt due at this clock time: CONNACK, then goodbye.
    Attempt {
        due: u64,
    },
    /// The role's outcome was handed to the worker's stats.
    Done,
}

impl RoleState {
    /// A subscriber (which connects to the upstream in a `bridge` run).
    pub fn subscribes(&self) -> bool {
        matches!(self, RoleState::Subscriber(_))
    }

    /// How errors of an open connection with this role are labelled.
    pub fn what(&self) -> &'static str {
        match self {
            RoleState::Publisher(_) => "publisher",
            RoleState::Subscriber(_) => "subscriber",
            RoleState::Idle | RoleState::Done => "idle connection",
            RoleState::Attempt { .. } => "connect",
        }
    }
}

/// The worker's read buffers, shared by all its connections: one read at a
/// time lands in `chunk` and is decoded from `decode`.
pub struct ReadScratch {
    chunk: Box<[u8]>,
    /// Empty between reads; decoded packets are split off its front, and
    /// dropped before the next read, so its allocation is reused.
    decode: BytesMut,
}

impl ReadScratch {
    pub fn new() -> ReadScratch {
        ReadScratch {
            chunk: vec![0; READ_CHUNK].into_boxed_slice(),
            decode: BytesMut::with_capacity(READ_CHUNK),
        }
    }
}

/// How a [`Conn::read`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// `WouldBlock`: the next readable event says when there is more.
    Drained,
    /// [`READS_PER_TURN`] reached with the socket still readable.
    More,
    /// The out buffer reached [`OUT_HIGH`]; resume once it drains.
    Paused,
}

/// What to open: a connection's identity and role.
pub struct Dial {
    /// The connection's number (plan index, or connect-storm attempt):
    /// picks the source address.
    pub index: usize,
    /// See [`Conn::name`].
    pub name: String,
    pub role: RoleState,
}

/// One connection. Owned by its worker's slab, under the key that is also
/// its reactor token.
pub struct Conn {
    /// Unique per worker, never reused: tells a timer or queue entry of a
    /// closed connection from one of the connection now at the same key.
    pub serial: u64,
    /// `p3`, `s0`, `i12`, `c345`: the client id's suffix, and errors' prefix.
    pub name: String,
    transport: Transport,
    pub phase: Phase,
    pub role: RoleState,
    /// The prefix of one packet split over reads; empty otherwise.
    partial: BytesMut,
    /// Encoded packets not yet written: whole packets, except that the
    /// first may have been partly written.
    pub out: BytesMut,
    /// WRITABLE is registered: the connect is in progress, or a flush met
    /// `WouldBlock`. The writable event flushes; nothing else does.
    writing: bool,
    /// Connect deadline while establishing, goodbye deadline while closing.
    pub deadline: u64,
    /// When bytes were last written: keepalive pings count from here.
    last_write: u64,
    pub armed: Armed,
    /// Listed in the worker's dirty list (flushed at the end of the turn).
    pub dirty: bool,
    /// Listed in the worker's backlog (read more next turn).
    pub in_backlog: bool,
    /// Reading stopped at [`ReadOutcome::Paused`]; resumes after a flush.
    pub read_paused: bool,
}

fn codec_err(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
}

/// Encodes `packet` onto `out`.
pub fn queue(out: &mut BytesMut, version: ProtocolVersion, packet: &Packet) -> io::Result<()> {
    packet
        .encode(version, out)
        .map_err(|e| codec_err("cannot encode packet", e))
}

impl Conn {
    /// Starts a non-blocking connect for `dial` and registers it under
    /// `key`.
    pub fn open(
        spec: &RunSpec,
        registrar: &Registrar,
        key: usize,
        serial: u64,
        dial: Dial,
        now: u64,
    ) -> io::Result<Conn> {
        let to = spec.address(dial.role.subscribes());
        let mut transport = connect_from(spec.source(dial.index), to)?;
        if let Some(tls) = &spec.tls {
            // The handshake runs on the loop: see `flush` and `read`.
            transport = Transport::tls_client(transport, Arc::clone(tls), &to.ip().to_string())?;
        }
        registrar.register(
            &mut transport,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(Conn {
            serial,
            name: dial.name,
            transport,
            phase: Phase::Connecting,
            role: dial.role,
            partial: BytesMut::new(),
            out: BytesMut::new(),
            writing: true,
            deadline: now + ns(spec.connect_timeout),
            last_write: now,
            armed: Armed::default(),
            dirty: false,
            in_backlog: false,
            read_paused: false,
        })
    }

    /// WRITABLE is registered (see the field).
    pub fn writing(&self) -> bool {
        self.writing
    }

    /// On writable (or error) readiness while connecting: once connected,
    /// sends CONNECT.
    pub fn on_connect_ready(
        &mut self,
        ctx: &Ctx,
        registrar: &Registrar,
        key: usize,
        now: u64,
    ) -> io::Result<()> {
        let connected = self.transport.connect_result().map_err(|e| {
            let to = ctx.spec.address(self.role.subscribes());
            io::Error::new(e.kind(), format!("connecting to {to}: {e}"))
        })?;
        if !connected {
            return Ok(());
        }
        self.phase = Phase::WaitConnAck;
        let connect = connect_packet(&ctx.spec, &self.name);
        queue(
            &mut self.out,
            ctx.spec.version,
            &Packet::Connect(Box::new(connect)),
        )?;
        self.flush(registrar, key, now)
    }

    /// Writes what `out` holds until it is empty or the socket is full,
    /// and sets WRITABLE interest accordingly.
    pub fn flush(&mut self, registrar: &Registrar, key: usize, now: u64) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.transport.write(&self.out) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the broker stopped reading",
                    ))
                }
                Ok(n) => {
                    self.out.advance(n);
                    self.last_write = now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return self.want_writable(registrar, key, true)
                }
                Err(e) => return Err(e),
            }
        }
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = BytesMut::new();
        }
        // TLS: records the socket has not taken yet (TCP holds none).
        match self.transport.flush() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return self.want_writable(registrar, key, true)
            }
            result => result?,
        }
        self.want_writable(registrar, key, false)
    }

    fn want_writable(&mut self, registrar: &Registrar, key: usize, on: bool) -> io::Result<()> {
        if self.writing != on {
            let interest = if on {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            registrar.reregister(&mut self.transport, Token(key), interest)?;
            self.writing = on;
        }
        Ok(())
    }

    /// After a flush: whether the out buffer has room again, in which case
    /// a blocked publisher is re-armed. Returns true if reading, paused on
    /// the out buffer, should resume.
    pub fn after_flush(&mut self) -> bool {
        if self.out.len() >= OUT_HIGH {
            return false;
        }
        if let RoleState::Publisher(p) = &mut self.role {
            p.unblock();
        }
        std::mem::take(&mut self.read_paused)
    }

    /// Reads and handles what the socket has, at most [`READS_PER_TURN`]
    /// reads. EOF is an error: the broker never closes a healthy client.
    pub fn read(&mut self, scratch: &mut ReadScratch, ctx: &mut Ctx) -> io::Result<ReadOutcome> {
        let ReadScratch { chunk, decode } = scratch;
        for _ in 0..READS_PER_TURN {
            if self.phase == Phase::Closing {
                // Nothing more is wanted from the broker.
                return Ok(ReadOutcome::Drained);
            }
            // A publisher's replies to reads (PUBRELs) are bounded by its
            // window; everyone else's acks grow with what is read.
            let replies_bounded = matches!(self.role, RoleState::Publisher(_));
            if !replies_bounded && self.out.len() >= OUT_HIGH {
                return Ok(ReadOutcome::Paused);
            }
            let n = match self.transport.read(chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the broker closed the connection",
                    ))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::Drained),
                Err(e) => return Err(e),
            };
            self.take_bytes(&chunk[..n], decode, ctx)?;
        }
        Ok(ReadOutcome::More)
    }

    /// Handles the bytes of one read: first completes a split packet, then
    /// decodes the rest in the worker's buffer and keeps a split tail.
    fn take_bytes(&mut self, bytes: &[u8], decode: &mut BytesMut, ctx: &mut Ctx) -> io::Result<()> {
        let rest = if self.partial.is_empty() {
            bytes
        } else {
            self.complete_partial(bytes, ctx)?
        };
        if rest.is_empty() {
            return Ok(());
        }
        debug_assert!(decode.is_empty());
        decode.extend_from_slice(rest);
        let res = self.decode_all(decode, ctx);
        if res.is_ok() && !decode.is_empty() {
            self.partial.extend_from_slice(decode);
        }
        decode.clear();
        res
    }

    /// Feeds `partial` from `bytes` exactly as much as its packet needs;
    /// handles the packet once complete. Returns the bytes not taken.
    fn complete_partial<'b>(&mut self, mut bytes: &'b [u8], ctx: &mut Ctx) -> io::Result<&'b [u8]> {
        loop {
            match protocol::decode(&mut self.partial, ctx.spec.version, MAX_PACKET) {
                Ok(p) => {
                    debug_assert!(self.partial.is_empty(), "fed more than one packet");
                    if self.partial.capacity() > KEEP_CAPACITY {
                        self.partial = BytesMut::new();
                    }
                    self.on_packet(p, ctx)?;
                    return Ok(bytes);
                }
                Err(DecodeError::Incomplete { needed }) => {
                    if bytes.is_empty() {
                        return Ok(bytes);
                    }
                    let take = needed.clamp(1, bytes.len());
                    self.partial.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                }
                Err(DecodeError::Malformed(m)) => {
                    return Err(codec_err("malformed packet from the broker", m))
                }
            }
        }
    }

    /// Decodes and handles every whole packet at the front of `buf`.
    fn decode_all(&mut self, buf: &mut BytesMut, ctx: &mut Ctx) -> io::Result<()> {
        while !buf.is_empty() {
            match protocol::decode(buf, ctx.spec.version, MAX_PACKET) {
                Ok(p) => self.on_packet(p, ctx)?,
                Err(DecodeError::Incomplete { .. }) => break,
                Err(DecodeError::Malformed(m)) => {
                    return Err(codec_err("malformed packet from the broker", m))
                }
            }
        }
        Ok(())
    }

    fn on_packet(&mut self, p: Packet, ctx: &mut Ctx) -> io::Result<()> {
        match self.phase {
            Phase::WaitConnAck => self.on_connack(p, ctx),
            Phase::WaitSubAck => self.on_suback(p, ctx),
            Phase::Ready => match &mut self.role {
                RoleState::Publisher(pb) => pb.on_packet(p, ctx, &mut self.out),
                RoleState::Subscriber(s) => s.on_packet(p, ctx, &mut self.out),
                RoleState::Idle => subscriber::idle_packet(p),
                RoleState::Attempt { .. } | RoleState::Done => Ok(()),
            },
            Phase::Connecting | Phase::Closing => Ok(()),
        }
    }

    fn on_connack(&mut self, p: Packet, ctx: &mut Ctx) -> io::Result<()> {
        match p {
            Packet::ConnAck(ConnAck { code, .. }) if !code.is_error() => {}
            Packet::ConnAck(ConnAck { code, .. }) => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("the broker refused CONNECT: {code:?}"),
                ))
            }
            other => return Err(codec_err("expected CONNACK", format!("{other:?}"))),
        }
        match &self.role {
            RoleState::Subscriber(s) => {
                let subscribe = s.subscribe_packet(ctx.spec.qos)?;
                queue(&mut self.out, ctx.spec.version, &subscribe)?;
                self.phase = Phase::WaitSubAck;
            }
            RoleState::Attempt { due } => {
                crate::storm::connected(ctx, *due);
                self.goodbye(
                    ctx,
                    crate::clock::now_ns() + ns(crate::worker::GOODBYE_TIMEOUT),
                )?;
            }
            _ => self.established(ctx),
        }
        Ok(())
    }

    fn on_suback(&mut self, p: Packet, ctx: &mut Ctx) -> io::Result<()> {
        match p {
            Packet::SubAck(ack) if ack.packet_id == SUBSCRIBE_ID => match ack.codes.first() {
                Some(code) if !code.is_error() => {
                    self.established(ctx);
                    Ok(())
                }
                code => Err(io::Error::other(format!(
                    "the broker refused SUBSCRIBE: {code:?}"
                ))),
            },
            other => Err(codec_err("expected SUBACK", format!("{other:?}"))),
        }
    }

    /// CONNACK (and SUBACK) received: the role starts.
    fn established(&mut self, ctx: &mut Ctx) {
        self.phase = Phase::Ready;
        ctx.established();
        if let (RoleState::Publisher(p), Some(start)) = (&mut self.role, ctx.start_ns) {
            p.start(&ctx.spec, start);
        }
    }

    /// Hands the role's state over (for the worker's stats); the
    /// connection keeps [`RoleState::Done`].
    pub fn take_role(&mut self) -> RoleState {
        std::mem::replace(&mut self.role, RoleState::Done)
    }

    /// Queues DISCONNECT and waits for it to be written until `deadline`.
    /// (Appending is always safe: `out` ends on a packet boundary.)
    pub fn goodbye(&mut self, ctx: &Ctx, deadline: u64) -> io::Result<()> {
        let bye = Packet::Disconnect(Disconnect::new(ReasonCode::NormalDisconnection));
        queue(&mut self.out, ctx.spec.version, &bye)?;
        self.phase = Phase::Closing;
        self.deadline = deadline;
        Ok(())
    }

    /// The send timer fired: a publisher sends what is due.
    pub fn on_send_timer(&mut self, ctx: &mut Ctx, now: u64) -> io::Result<()> {
        match (&mut self.role, self.phase) {
            (RoleState::Publisher(p), Phase::Ready) => p.pump(now, ctx, &mut self.out),
            _ => Ok(()),
        }
    }

    /// The tick timer fired: connect timeout, or a keepalive ping when
    /// nothing was written for half the keepalive. (The goodbye deadline is
    /// the worker's to act on.)
    pub fn on_tick(&mut self, ctx: &Ctx, now: u64) -> io::Result<()> {
        if self.phase.establishing() && now >= self.deadline {
            let what = match self.role {
                RoleState::Attempt { .. } => "CONNACK",
                _ => "CONNACK/SUBACK",
            };
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no {what} within {:?}", ctx.spec.connect_timeout),
            ));
        }
        if self.phase == Phase::Ready {
            if let Some(every) = ping_every(&ctx.spec) {
                if now >= self.last_write + every {
                    if self.out.is_empty() {
                        queue(&mut self.out, ctx.spec.version, &Packet::PingReq)?;
                    }
                    self.last_write = now;
                }
            }
        }
        Ok(())
    }

    /// When the tick timer should fire, if at all.
    pub fn tick_at(&self, spec: &RunSpec) -> Option<u64> {
        match self.phase {
            Phase::Connecting | Phase::WaitConnAck | Phase::WaitSubAck | Phase::Closing => {
                Some(self.deadline)
            }
            Phase::Ready => ping_every(spec).map(|every| self.last_write + every),
        }
    }

    /// When the send timer should fire, if at all.
    pub fn send_at(&self) -> Option<u64> {
        match (&self.role, self.phase) {
            (RoleState::Publisher(p), Phase::Ready) => p.wake_at(),
            _ => None,
        }
    }
}

/// Half the keepalive: how long a connection may write nothing before it
/// pings (client-to-broker traffic is what keeps a session alive).
fn ping_every(spec: &RunSpec) -> Option<u64> {
    (spec.keep_alive > 0).then(|| u64::from(spec.keep_alive) * 500_000_000)
}

/// The CONNECT of connection `name`: a clean session (or, with
/// `--persistent-sessions`, a fresh persistent one), no will, client id
/// `sl-<run tag>-<name>`.
pub fn connect_packet(spec: &RunSpec, name: &str) -> Connect {
    let mut properties = Properties::default();
    if spec.persistent && spec.version.is_v5() {
        properties.session_expiry_interval = Some(3600);
    }
    Connect {
        protocol: spec.version,
        // 5.0 starts clean and keeps the session; 3.1.1 keeps it with 0.
        clean_start: !spec.persistent || spec.version.is_v5(),
        keep_alive: spec.keep_alive,
        client_id: format!("sl-{}-{name}", spec.tag),
        will: None,
        username: None,
        password: None,
        properties,
        bridge: false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use shardmq::protocol::{Publish, QoS, TopicName};
    use shardmq::runtime::Reactor;

    use super::*;
    use crate::payload::{Header, HEADER_LEN};
    use crate::worker::test_ctx;

    /// Three QoS 1 PUBLISHes of publisher 0, sequence numbers 0..3.
    fn wire(version: ProtocolVersion) -> BytesMut {
        let mut out = BytesMut::new();
        for seq in 0..3u16 {
            let mut payload = vec![0; HEADER_LEN + 100 * usize::from(seq)];
            Header {
                intended_ns: 1,
                publisher: 0,
                seq: u64::from(seq),
            }
            .write(&mut payload);
            let publish = Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: TopicName::from_str("t/0").expect("topic"),
                packet_id: shardmq::protocol::PacketId::new(seq + 1),
                payload: Bytes::from(payload),
                properties: Properties::default(),
            };
            queue(&mut out, version, &Packet::Publish(publish)).expect("encode");
        }
        out
    }

    /// A connection in `Ready` to a local listener that never answers.
    fn ready_conn(qos: QoS, name: &str) -> (std::net::TcpListener, Ctx, Conn) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let mut ctx = test_ctx(qos, 1, 1000.0);
        let mut spec = (*ctx.spec).clone();
        spec.broker = listener.local_addr().expect("addr");
        ctx.spec = Arc::new(spec);
        let reactor = Reactor::new().expect("reactor");
        let registrar = reactor.registrar().expect("registrar");
        let dial = Dial {
            index: 0,
            name: name.into(),
            role: RoleState::Idle,
        };
        let mut conn = Conn::open(&ctx.spec, &registrar, 0, 0, dial, 0).expect("open");
        conn.phase = Phase::Ready;
        (listener, ctx, conn)
    }

    #[test]
    fn packets_split_anywhere_are_handled_once_each() {
        let (_listener, mut ctx, mut conn) = ready_conn(QoS::AtLeastOnce, "s0");
        let mut scratch = ReadScratch::new();
        let bytes = wire(ctx.spec.version);

        // Every split into two reads, then one byte per read.
        let feeds = (0..=bytes.len())
            .map(|at| vec![&bytes[..at], &bytes[at..]])
            .chain(std::iter::once(bytes.chunks(1).collect()));
        for feed in feeds {
            conn.role = RoleState::Subscriber(Box::new(Subscriber::new(0, "t/#".into())));
            conn.out.clear();
            let received = ctx.stats.received;
            for part in &feed {
                conn.take_bytes(part, &mut scratch.decode, &mut ctx)
                    .expect("decode");
            }
            assert!(conn.partial.is_empty(), "a packet left over");
            assert_eq!(ctx.stats.received - received, 3);
            assert_eq!(conn.out.len(), 3 * 4, "three PUBACKs");
            let RoleState::Subscriber(s) = conn.take_role() else {
                panic!("role changed");
            };
            let seen = s.finish().per_publisher[&0].clone();
            assert_eq!((seen.distinct, seen.duplicates), (3, 0));
        }
    }

    #[test]
    fn a_malformed_packet_is_an_error() {
        let (_listener, mut ctx, mut conn) = ready_conn(QoS::AtMostOnce, "i0");
        let mut scratch = ReadScratch::new();
        // Packet type 0 is reserved.
        let err = conn
            .take_bytes(&[0x00, 0x00], &mut scratch.decode, &mut ctx)
            .expect_err("accepted");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
