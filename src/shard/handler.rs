//! The packets of an attached connection (and of one whose enhanced
//! authentication runs, see `auth`): decode what arrived, act on each in
//! order. A SUBSCRIBE parks the connection's input (its barrier is
//! a pending record, see `subscribe`) until every shard knows the filter.

use std::rc::Rc;

use bytes::BytesMut;

use super::conn::{CloseReason, ConnShared, Phase};
use super::partial::Partial;
use super::session::{AckFit, OutAck};
use super::Shard;
use crate::protocol::{decode, DecodeError, Disconnect, Packet, PubResp, ReasonCode};

impl Shard {
    /// Handles `chunk` (or, with `None`, what is left in the partial packet
    /// after a pause) from connection `token`, attached or authenticating
    /// (AUTH packets until its exchange ends, then as attached).
    pub(super) fn on_bytes(self: &Rc<Self>, token: usize, chunk: Option<BytesMut>) {
        let (conn, mut partial, phase) = {
            let mut conns = self.conns.borrow_mut();
            let Some(c) = conns.get_mut(token) else {
                return;
            };
            let Some(conn) = c.shared.clone() else {
                return;
            };
            let reading = matches!(c.phase, Phase::Attached | Phase::Authenticating);
            if !reading || conn.blocked.get() {
                return;
            }
            (conn, Partial::resume(c.partial.take()), c.phase)
        };
        if chunk.is_some() {
            conn.seen(self.now());
        }
        let buf = match chunk {
            Some(chunk) => partial.push(chunk),
            None => partial.bytes(),
        };
        let processed = match phase {
            Phase::Authenticating => self.process_auth(token, &conn, buf),
            _ => Ok(None),
        };
        let processed = match processed {
            Ok(None) => process(self, &conn, buf),
            Ok(Some(needed)) => Ok(needed),
            Err(reason) => Err(reason),
        };
        let needed = match processed {
            Ok(needed) => needed,
            Err(reason) => {
                self.close_conn(&conn, reason);
                0
            }
        };
        partial.settle(needed);
        if let Some(c) = self.conns.borrow_mut().get_mut(token) {
            c.partial = partial.store();
        }
    }
}

/// Decodes and handles complete packets in `buf` until it runs out, the
/// connection closes or a SUBSCRIBE blocks it; returns how many more bytes
/// the next packet needs.
fn process(
    shard: &Rc<Shard>,
    conn: &Rc<ConnShared>,
    buf: &mut BytesMut,
) -> Result<usize, CloseReason> {
    loop {
        if conn.is_closing() || conn.blocked.get() {
            return Ok(0);
        }
        if is_publish(buf) && shard.held_back(conn) {
            // Backpressure: the rest waits until a subscriber releases it.
            return Ok(0);
        }
        match decode(buf, conn.version, shard.config.max_packet_size) {
            Ok(packet) => handle(shard, conn, packet)?,
            Err(DecodeError::Incomplete { needed }) => return Ok(needed),
            Err(DecodeError::Malformed(m)) => {
                let peer = conn.token().and_then(|t| shard.peer_of(t));
                log::info!("{peer:?}: malformed packet: {m}; disconnecting");
                return Err(CloseReason::Protocol(m.reason, m.detail));
            }
        }
    }
}

/// True if `buf` starts with a PUBLISH packet (type 3).
fn is_publish(buf: &[u8]) -> bool {
    buf.first().is_some_and(|b| b >> 4 == 3)
}

/// The Reason String of a PUBREL or PUBCOMP for a packet id not in flight.
const ID_NOT_FOUND: &str = "packet identifier not in flight";

/// Closing for a protocol error (0x82), saying which.
fn protocol_error(why: &'static str) -> CloseReason {
    CloseReason::Protocol(ReasonCode::ProtocolError, why)
}

fn handle(shard: &Rc<Shard>, conn: &Rc<ConnShared>, packet: Packet) -> Result<(), CloseReason> {
    match packet {
        Packet::Publish(p) => shard.on_client_publish(conn, p)?,
        Packet::PubAck(r) => shard.on_out_ack(conn, &r, OutAck::Ack)?,
        Packet::PubComp(r) => shard.on_out_ack(conn, &r, OutAck::Comp)?,
        Packet::PubRec(r) if r.reason.is_error() => {
            shard.on_out_ack(conn, &r, OutAck::RecFailed)?
        }
        Packet::PubRec(r) => shard.on_out_ack(conn, &r, OutAck::Rec)?,
        Packet::PubRel(r) => shard.on_pubrel(conn, &r),
        Packet::Subscribe(sub) => shard.on_subscribe(conn, sub)?,
        Packet::Unsubscribe(u) => shard.on_unsubscribe(conn, u),
        Packet::PingReq => shard.send_packet(conn, &Packet::PingResp),
        Packet::Disconnect(d) => return Err(shard.on_disconnect(conn, &d)),
        Packet::Auth(a) => shard.on_auth(conn, &a)?,
        Packet::Connect(_) => return Err(protocol_error("a second CONNECT")),
        Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
            return Err(protocol_error("a packet only a server sends"))
        }
    }
    Ok(())
}

impl Shard {
    /// PUBACK, PUBREC or PUBCOMP for a message sent to the client: frees
    /// its window slot and sends what was queued, or answers a PUBREC with
    /// PUBREL (5.0: "not found" if the id is not in flight). An
    /// acknowledgement that does not fit the message's QoS or state is a
    /// protocol error (see `Session::acknowledge`).
    fn on_out_ack(
        &self,
        conn: &Rc<ConnShared>,
        r: &PubResp,
        ack: OutAck,
    ) -> Result<(), CloseReason> {
        let sid = conn.session.get();
        let (fit, drained) = {
            let mut sessions = self.sessions.borrow_mut();
            let Some(s) = sessions.by_id.get_mut(&sid) else {
                return Ok(());
            };
            let fit = s.acknowledge(r.packet_id, ack);
            if fit == AckFit::Finished {
                self.drain_queue(s);
            }
            (fit, s.at_low_watermark(&self.queue_limits))
        };
        if fit == AckFit::Finished {
            self.pressure_progress(sid, drained);
        }
        match (fit, ack) {
            (AckFit::Finished, _) => self.mark_dirty(conn),
            (AckFit::Release, _) => {
                self.send_packet(conn, &Packet::PubRel(PubResp::new(r.packet_id)))
            }
            (AckFit::NotInFlight, OutAck::Rec) => {
                let mut rel = PubResp::new(r.packet_id);
                if conn.version.is_v5() {
                    rel.reason = ReasonCode::PacketIdentifierNotFound;
                    rel.properties.reason_string = conn.ack_reason_string(ID_NOT_FOUND);
                }
                self.send_packet(conn, &Packet::PubRel(rel));
            }
            (AckFit::NotInFlight, _) => {}
            (AckFit::Mismatch, _) => {
                let peer = conn.token().and_then(|t| self.peer_of(t));
                log::info!(
                    "{peer:?}: {ack:?} for packet id {} does not fit its flow; disconnecting",
                    r.packet_id
                );
                return Err(protocol_error(
                    "acknowledgement does not fit the QoS or state of its message",
                ));
            }
        }
        Ok(())
    }

    /// PUBREL: release the inbound QoS 2 id and answer PUBCOMP.
    ///
    /// An id not pending is answered too (5.0: "not found"), not treated
    /// as a protocol error, as Mosquitto does: a client resends PUBREL
    /// after a reconnect (and a 3.1.1 client may on a timeout) for an id
    /// this broker already released, and the broker cannot tell that from
    /// an id never published at QoS 2.
    fn on_pubrel(&self, conn: &Rc<ConnShared>, r: &PubResp) {
        let known = self
            .sessions
            .borrow_mut()
            .by_id
            .get_mut(&conn.session.get())
            .is_some_and(|s| s.qos2_remove(r.packet_id.get()));
        let mut comp = PubResp::new(r.packet_id);
        if !known && conn.version.is_v5() {
            comp.reason = ReasonCode::PacketIdentifierNotFound;
            comp.properties.reason_string = conn.ack_reason_string(ID_NOT_FOUND);
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
                    return protocol_error("session expiry set on DISCONNECT after 0 on CONNECT");
                }
                s.expiry = expiry;
                self.journal_session(s);
            }
        }
        CloseReason::Disconnect {
            with_will: d.reason == ReasonCode::DisconnectWithWillMessage,
        }
    }
}
