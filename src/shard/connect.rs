//! From accepted socket to attached session: read CONNECT (bounded in time
//! and size), hand the connection to its home shard if this is not it,
//! check it, take over or resume the session, answer CONNACK, run the
//! packet loop, and clean up after it.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::conn::{flush_before_close, poll_read_chunk, CloseReason, ConnShared};
use super::partial::Partial;
use super::session::{Session, SessionId, NEVER_EXPIRES};
use super::{handler, Shard, Stats};
use crate::limits::{MAX_CONNECT_PACKET, SHUTDOWN_FLUSH};
use crate::mesh::{Handover, ShardMsg};
use crate::protocol::{
    decode, ConnAck, Connect, DecodeError, Disconnect, Packet, Properties, ProtocolVersion,
    ReasonCode,
};
use crate::runtime::net::{self, TcpStream};

/// CONNACK "unacceptable protocol version" in 3.1.1 form: what a client
/// with an unknown protocol level can read.
const CONNACK_BAD_PROTOCOL: [u8; 4] = [0x20, 0x02, 0x00, 0x01];

/// Serves a freshly accepted connection.
///
/// A plain function returning an `async move` block rather than an
/// `async fn`: an async fn keeps its arguments twice in its state (rustc
/// #62958), and this future lives as long as the connection.
#[allow(clippy::manual_async_fn)] // deliberate: see the doc above
pub fn serve_new(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> {
    async move {
        match read_connect_boxed(&shard, &mut stream).await {
            // A task of its own: this (transient) one ends and frees its state.
            Some(Ok((connect, leftover))) => {
                crate::runtime::spawn(admit(shard, stream, peer, connect, leftover))
            }
            Some(Err(ConnectError::BadProtocol)) => refuse_protocol(&shard, stream, peer).await,
            Some(Err(e)) => log::info!("{peer}: closed before CONNECT: {e}"),
            None => log::info!(
                "{peer}: no CONNECT within {:?}; closed",
                shard.config.connect_timeout
            ),
        }
    }
}

/// Answers an unknown protocol level with a 3.1.1 CONNACK 0x01 and closes.
fn refuse_protocol(shard: &Shard, mut stream: TcpStream, peer: SocketAddr) -> Boxed<'static, ()> {
    let conn = ConnShared::new(peer, ProtocolVersion::V311, usize::MAX, shard.now());
    conn.write_with(|out| out.extend_from_slice(&CONNACK_BAD_PROTOCOL));
    Box::pin(async move { flush_before_close(&mut stream, &conn, SHUTDOWN_FLUSH).await })
}

type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("connection closed")]
    Closed,
    #[error("first packet is not CONNECT")]
    NotConnect,
    #[error("unsupported protocol version")]
    BadProtocol,
    #[error("malformed CONNECT: {0}")]
    Malformed(crate::protocol::Malformed),
}

type ReadConnect<'a> = Boxed<'a, Option<Result<(Box<Connect>, BytesMut), ConnectError>>>;

/// Boxed and built in a plain function: the CONNECT phase is transient and
/// must not add to the size of every connection's task.
fn read_connect_boxed<'a>(shard: &'a Shard, stream: &'a mut TcpStream) -> ReadConnect<'a> {
    Box::pin(crate::runtime::time::timeout(
        shard.config.connect_timeout,
        read_connect(shard, stream),
    ))
}

async fn read_connect(
    shard: &Shard,
    stream: &mut TcpStream,
) -> Result<(Box<Connect>, BytesMut), ConnectError> {
    // Before CONNECT is accepted a connection may make us buffer only a
    // CONNECT's worth: a larger announced packet closes it at once.
    let limit = shard.config.max_packet_size.min(MAX_CONNECT_PACKET);
    let mut pending = Partial::default();
    loop {
        let chunk = poll_fn(|cx| poll_read_chunk(shard, stream, cx))
            .await
            .map_err(|_| ConnectError::Closed)?;
        let buf = pending.push(chunk);
        match decode(buf, ProtocolVersion::V311, limit) {
            Ok(Packet::Connect(c)) => return Ok((c, std::mem::take(buf))),
            Ok(_) => return Err(ConnectError::NotConnect),
            Err(DecodeError::Incomplete { needed }) => pending.settle(needed),
            Err(DecodeError::Malformed(m))
                if m.reason == ReasonCode::UnsupportedProtocolVersion =>
            {
                return Err(ConnectError::BadProtocol)
            }
            Err(DecodeError::Malformed(m)) => return Err(ConnectError::Malformed(m)),
        }
    }
}

/// Serves a connection whose CONNECT has been read, here or on the shard
/// that accepted it. (Not an `async fn`: see [`serve_new`].)
#[allow(clippy::manual_async_fn)] // deliberate: see the doc above
pub fn admit(
    shard: Rc<Shard>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut connect: Box<Connect>,
    leftover: BytesMut,
) -> impl std::future::Future<Output = ()> {
    async move {
        let assigned = connect.client_id.is_empty();
        if assigned {
            connect.client_id = shard.assign_client_id();
        }
        let home = shard.home_of(&connect.client_id);
        if home != shard.id {
            hand_over(&shard, stream, peer, connect, leftover, home);
            return;
        }
        let max_packet = connect
            .properties
            .maximum_packet_size
            .map_or(usize::MAX, |m| m as usize);
        let conn = Rc::new(ConnShared::new(
            peer,
            connect.protocol,
            max_packet,
            shard.now(),
        ));
        if let Err(code) = check(&shard, &connect, assigned) {
            refuse(&shard, &conn, code);
            flush_before_close(&mut stream, &conn, SHUTDOWN_FLUSH).await;
            return;
        }
        shard.connections.set(shard.connections.get() + 1);
        let present = shard.attach(&conn, &connect);
        shard.send_packet(
            &conn,
            &Packet::ConnAck(connack(&shard, &connect, assigned, present)),
        );
        drop(connect);
        shard.resume(&conn);
        shard.keepalive.borrow_mut().watch(&conn);
        shard.end_step();
        let reason = handler::run(&shard, &mut stream, &conn, leftover).await;
        shard.finish(&conn, reason);
        if let (true, Some(code)) = (conn.version.is_v5(), reason.disconnect_code()) {
            shard.send_packet(&conn, &Packet::Disconnect(Disconnect::new(code)));
        }
        flush_before_close(&mut stream, &conn, SHUTDOWN_FLUSH).await;
        shard.connections.set(shard.connections.get() - 1);
    }
}

/// Writes a refusing CONNACK (kept out of `admit` so the packet does not
/// occupy the task's state).
fn refuse(shard: &Shard, conn: &Rc<ConnShared>, code: ReasonCode) {
    let ack = ConnAck {
        session_present: false,
        code,
        properties: Properties::default(),
    };
    shard.send_packet(conn, &Packet::ConnAck(ack));
}

fn hand_over(
    shard: &Rc<Shard>,
    stream: TcpStream,
    peer: SocketAddr,
    connect: Box<Connect>,
    leftover: BytesMut,
    home: usize,
) {
    match net::detach(stream) {
        Ok(fd) => {
            Stats::bump(&shard.stats.handed_over);
            let leftover = Bytes::copy_from_slice(&leftover);
            shard.mesh.send(
                home,
                ShardMsg::Handover(Box::new(Handover {
                    fd,
                    peer,
                    connect,
                    leftover,
                })),
            );
            shard.mesh.flush();
        }
        Err(e) => log::warn!("{peer}: cannot hand the connection to shard {home}: {e}"),
    }
}

/// CONNECT checks that end in a refusing CONNACK.
fn check(shard: &Shard, connect: &Connect, assigned: bool) -> Result<(), ReasonCode> {
    let config = &shard.config;
    if assigned
        && (!config.allow_zero_length_clientid
            || (!connect.protocol.is_v5() && !connect.clean_start))
    {
        return Err(ReasonCode::ClientIdentifierNotValid);
    }
    if !config.allow_anonymous {
        // No password file support yet: without anonymous access nobody may connect.
        return Err(ReasonCode::NotAuthorized);
    }
    if shard.connections.get() >= shard.conn_quota {
        return Err(ReasonCode::ServerUnavailable);
    }
    let ka = connect.keep_alive;
    if !connect.protocol.is_v5()
        && config.max_keepalive != 0
        && (ka > config.max_keepalive || ka == 0)
        && config.max_keepalive < 65535
    {
        return Err(ReasonCode::ClientIdentifierNotValid);
    }
    Ok(())
}

/// The CONNACK for an accepted CONNECT.
fn connack(shard: &Shard, connect: &Connect, assigned: bool, present: bool) -> ConnAck {
    let mut properties = Properties::default();
    if connect.protocol.is_v5() {
        let config = &shard.config;
        properties.receive_maximum = Some(config.max_inflight_messages);
        if assigned {
            properties.assigned_client_identifier = Some(connect.client_id.clone());
        }
        if !config.retain_available {
            properties.retain_available = Some(0);
        }
        if config.max_packet_size < crate::protocol::MAX_REMAINING_LENGTH + 5 {
            properties.maximum_packet_size = Some(config.max_packet_size as u32);
        }
        if connect.keep_alive > config.max_keepalive
            || (connect.keep_alive == 0 && config.max_keepalive < 65535)
        {
            properties.server_keep_alive = Some(config.max_keepalive);
        }
        properties.subscription_identifier_available = Some(0);
        properties.shared_subscription_available = Some(0);
    }
    ConnAck {
        session_present: present,
        code: ReasonCode::Success,
        properties,
    }
}

impl Shard {
    /// A client id for a client that sent none, homed on this shard.
    fn assign_client_id(&self) -> String {
        loop {
            let id = format!("auto-{:016x}", self.random());
            if self.home_of(&id) == self.id {
                return id;
            }
        }
    }

    /// The session lifetime a CONNECT asks for, in seconds.
    fn session_expiry(&self, connect: &Connect) -> u32 {
        let asked = if connect.protocol.is_v5() {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            NEVER_EXPIRES
        };
        match self.config.persistent_client_expiration {
            Some(cap) if asked != 0 => {
                asked.min(u32::try_from(cap.as_secs()).unwrap_or(NEVER_EXPIRES - 1))
            }
            _ => asked,
        }
    }

    /// Binds `conn` to its client's session: takes over a connected one,
    /// resumes or discards an existing one, or creates one. Returns Session
    /// Present.
    fn attach(self: &Rc<Self>, conn: &Rc<ConnShared>, connect: &Connect) -> bool {
        let client_id: Rc<str> = Rc::from(connect.client_id.as_str());
        let existing = self.sessions.borrow().by_client.get(&client_id).copied();
        if let Some(sid) = existing {
            self.take_over(sid);
            if connect.clean_start {
                self.end_session(sid);
            }
        }
        let resumed = !connect.clean_start && existing.is_some();
        let sid = if resumed {
            existing.unwrap_or_default()
        } else {
            self.new_session(&client_id, connect.protocol)
        };
        let keep_alive = if connect.keep_alive > self.config.max_keepalive
            || connect.keep_alive == 0
                && connect.protocol.is_v5()
                && self.config.max_keepalive < 65535
        {
            self.config.max_keepalive
        } else {
            connect.keep_alive
        };
        conn.set_keepalive(keep_alive);
        conn.session.set(sid);
        let expiry = self.session_expiry(connect);
        let mut sessions = self.sessions.borrow_mut();
        if let Some(s) = sessions.by_id.get_mut(&sid) {
            s.conn = Some(Rc::clone(conn));
            s.version = connect.protocol;
            s.will = connect.will.clone().map(|mut w| {
                w.detach();
                Box::new(w)
            });
            s.expiry = expiry;
            s.offline_since = None;
            let client_max = connect.properties.receive_maximum.unwrap_or(u16::MAX);
            s.window = self.config.max_inflight_messages.min(client_max).max(1);
        }
        resumed
    }

    /// Closes the session's current connection, if any, publishing its will.
    fn take_over(self: &Rc<Self>, sid: SessionId) {
        let (old, will) = {
            let mut sessions = self.sessions.borrow_mut();
            let Some(s) = sessions.by_id.get_mut(&sid) else {
                return;
            };
            (s.conn.take(), s.will.take())
        };
        if let Some(old) = old {
            Stats::bump(&self.stats.taken_over);
            old.close(CloseReason::SessionTakenOver);
            if let Some(will) = will {
                self.publish_will(sid, will);
            }
        }
    }

    fn new_session(&self, client_id: &Rc<str>, version: ProtocolVersion) -> SessionId {
        let sid = self.next_session.get();
        self.next_session.set(sid + 1);
        let mut sessions = self.sessions.borrow_mut();
        sessions.by_id.insert(
            sid,
            Box::new(Session::new(sid, Rc::clone(client_id), version)),
        );
        sessions.by_client.insert(Rc::clone(client_id), sid);
        sid
    }

    /// After CONNACK on a resumed session: resend what was in flight, then
    /// what was queued.
    fn resume(&self, conn: &Rc<ConnShared>) {
        let mut sessions = self.sessions.borrow_mut();
        if let Some(s) = sessions.by_id.get_mut(&conn.session.get()) {
            s.resend_inflight();
            s.drain();
        }
        self.mark_dirty(conn);
    }

    /// The connection ended: publish the will if due, and end the session
    /// or keep it offline, unless another connection took it over.
    fn finish(self: &Rc<Self>, conn: &Rc<ConnShared>, reason: CloseReason) {
        let sid = conn.session.get();
        let (will, ends) = {
            let mut sessions = self.sessions.borrow_mut();
            let Some(s) = sessions.by_id.get_mut(&sid) else {
                return;
            };
            if !s.conn.as_ref().is_some_and(|c| Rc::ptr_eq(c, conn)) {
                return; // taken over: the session is someone else's now
            }
            s.conn = None;
            let now = self.now();
            s.offline_since = Some(now);
            if s.expiry != 0 && s.expiry != NEVER_EXPIRES {
                let due = now + u64::from(s.expiry);
                self.expiries.borrow_mut().entry(due).or_default().push(sid);
            }
            (s.will.take(), s.expiry == 0)
        };
        if let (true, Some(will)) = (reason.publishes_will(), will) {
            self.publish_will(sid, will);
        }
        if ends {
            self.end_session(sid);
        }
        self.end_step();
        log::debug!("{}: connection closed: {reason:?}", conn.peer);
    }

    /// Sends queued messages after the connection's buffer drained.
    pub fn drain_session(&self, conn: &Rc<ConnShared>) {
        if let Some(s) = self
            .sessions
            .borrow_mut()
            .by_id
            .get_mut(&conn.session.get())
        {
            s.drain();
        }
        self.mark_dirty(conn);
    }
}
