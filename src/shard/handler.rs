//! The packet loop of an attached connection: decode what arrives, act on
//! each packet, and end the step so output and mesh batches go out.

use std::rc::Rc;

use bytes::BytesMut;

use super::conn::{next_event, CloseReason, ConnShared, Event};
use super::session::OutState;
use super::Shard;
use crate::limits::PENDING_KEEP;
use crate::protocol::{decode, DecodeError, Disconnect, Packet, PubResp, ReasonCode, Subscribe};
use crate::runtime::net::TcpStream;

/// Runs until the connection must close; returns why.
///
/// Kept small: this future lives in every connection's task for the
/// connection's lifetime. Packets are handled synchronously; only SUBSCRIBE
/// awaits (a mesh barrier), through a boxed future.
pub async fn run(shard: &Rc<Shard>, stream: &mut TcpStream, conn: &Rc<ConnShared>, mut pending: BytesMut) -> CloseReason {
    if !pending.is_empty() {
        if let Err(reason) = process_all(shard, conn, &mut pending).await {
            return reason;
        }
        keep_partial(&mut pending);
        shard.end_step();
    }
    loop {
        match next_event(shard, stream, conn).await {
            Event::Closed(reason) => return reason,
            Event::Drained => shard.drain_session(conn),
            Event::Data(chunk) => {
                conn.seen(shard.now());
                if pending.is_empty() {
                    pending = chunk;
                } else {
                    pending.extend_from_slice(&chunk);
                }
                let result = process_all(shard, conn, &mut pending).await;
                keep_partial(&mut pending);
                if let Err(reason) = result {
                    shard.end_step();
                    return reason;
                }
            }
        }
        shard.end_step();
    }
}

/// Handles every complete packet in `buf`, awaiting SUBSCRIBEs in turn.
async fn process_all(shard: &Rc<Shard>, conn: &Rc<ConnShared>, buf: &mut BytesMut) -> Result<(), CloseReason> {
    while let Some(sub) = process(shard, conn, buf)? {
        Box::pin(shard.on_subscribe(conn, sub)).await?;
    }
    Ok(())
}

/// Keeps only a private copy of a partial packet, so the shard-wide read
/// buffer is never pinned by an idle connection.
fn keep_partial(pending: &mut BytesMut) {
    if pending.is_empty() {
        if pending.capacity() > PENDING_KEEP || pending.capacity() > 0 {
            *pending = BytesMut::new();
        }
    } else {
        *pending = BytesMut::from(&pending[..]);
    }
}

/// Decodes and handles complete packets in `buf` until it runs out or a
/// SUBSCRIBE comes, which is returned for the caller to await.
fn process(shard: &Rc<Shard>, conn: &Rc<ConnShared>, buf: &mut BytesMut) -> Result<Option<Subscribe>, CloseReason> {
    loop {
        if conn.is_closing() {
            return Ok(None);
        }
        match decode(buf, conn.version, shard.config.max_packet_size) {
            Ok(Packet::Subscribe(s)) => return Ok(Some(s)),
            Ok(packet) => handle(shard, conn, packet)?,
            Err(DecodeError::Incomplete { .. }) => return Ok(None),
            Err(DecodeError::Malformed(m)) => {
                log::info!("{}: malformed packet: {m}; disconnecting", conn.peer);
                return Err(CloseReason::Protocol(m.reason));
            }
        }
    }
}

fn handle(shard: &Rc<Shard>, conn: &Rc<ConnShared>, packet: Packet) -> Result<(), CloseReason> {
    match packet {
        Packet::Publish(p) => shard.on_client_publish(conn, p)?,
        Packet::PubAck(r) => shard.on_ack(conn, &r, OutState::AwaitPubAck),
        Packet::PubComp(r) => shard.on_ack(conn, &r, OutState::AwaitPubComp),
        Packet::PubRec(r) => shard.on_pubrec(conn, &r),
        Packet::PubRel(r) => shard.on_pubrel(conn, &r),
        Packet::Unsubscribe(u) => shard.on_unsubscribe(conn, u),
        Packet::PingReq => shard.send_packet(conn, &Packet::PingResp),
        Packet::Disconnect(d) => return Err(shard.on_disconnect(conn, &d)),
        Packet::Auth(_) => return Err(CloseReason::Protocol(ReasonCode::ProtocolError)),
        Packet::Subscribe(_)
        | Packet::Connect(_)
        | Packet::ConnAck(_)
        | Packet::SubAck(_)
        | Packet::UnsubAck(_)
        | Packet::PingResp => return Err(CloseReason::Protocol(ReasonCode::ProtocolError)),
    }
    Ok(())
}

impl Shard {
    /// PUBACK or PUBCOMP: frees a window slot and sends what was queued.
    fn on_ack(&self, conn: &Rc<ConnShared>, r: &PubResp, expected: OutState) {
        let mut sessions = self.sessions.borrow_mut();
        let Some(s) = sessions.by_id.get_mut(&conn.session.get()) else { return };
        if s.complete(r.packet_id, expected) {
            s.drain();
            drop(sessions);
            self.mark_dirty(conn);
        }
    }

    /// PUBREC: answer PUBREL (5.0: "not found" if the id is unknown).
    fn on_pubrec(&self, conn: &Rc<ConnShared>, r: &PubResp) {
        let known = self.sessions.borrow_mut().by_id.get_mut(&conn.session.get()).is_some_and(|s| s.received(r.packet_id));
        let mut rel = PubResp::new(r.packet_id);
        if !known && conn.version.is_v5() {
            rel.reason = ReasonCode::PacketIdentifierNotFound;
        }
        self.send_packet(conn, &Packet::PubRel(rel));
    }

    /// PUBREL: release the inbound QoS 2 id and answer PUBCOMP.
    fn on_pubrel(&self, conn: &Rc<ConnShared>, r: &PubResp) {
        let known = self
            .sessions
            .borrow_mut()
            .by_id
            .get_mut(&conn.session.get())
            .is_some_and(|s| s.inbound_qos2.remove(&r.packet_id.get()));
        let mut comp = PubResp::new(r.packet_id);
        if !known && conn.version.is_v5() {
            comp.reason = ReasonCode::PacketIdentifierNotFound;
        }
        self.send_packet(conn, &Packet::PubComp(comp));
    }

    /// DISCONNECT from the client: 5.0 may update the session expiry and
    /// ask for the will to be sent.
    fn on_disconnect(&self, conn: &Rc<ConnShared>, d: &Disconnect) -> CloseReason {
        if let Some(expiry) = d.properties.session_expiry_interval {
            let mut sessions = self.sessions.borrow_mut();
            if let Some(s) = sessions.by_id.get_mut(&conn.session.get()) {
                if s.expiry == 0 && expiry != 0 {
                    return CloseReason::Protocol(ReasonCode::ProtocolError);
                }
                s.expiry = expiry;
            }
        }
        CloseReason::Disconnect { with_will: d.reason == ReasonCode::DisconnectWithWillMessage }
    }
}
