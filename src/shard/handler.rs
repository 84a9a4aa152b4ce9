//! The packet loop of an attached connection: decode what arrives, act on
//! each packet, and end the step so output and mesh batches go out.

use std::rc::Rc;

use bytes::BytesMut;

use super::conn::{next_event, CloseReason, ConnShared, Event};
use super::partial::Partial;
use super::session::OutState;
use super::Shard;
use crate::protocol::{decode, DecodeError, Disconnect, Packet, PubResp, ReasonCode, Subscribe};
use crate::runtime::net::TcpStream;

/// Runs until the connection must close; returns why.
///
/// Kept small: this future lives in every connection's task for the
/// connection's lifetime. Packets are handled synchronously; only SUBSCRIBE
/// awaits (a mesh barrier), through a boxed future.
/// (A plain function returning an `async move` block: an `async fn` would
/// keep its arguments twice in its state, rustc #62958.)
#[allow(clippy::manual_async_fn)] // deliberate: see the doc above
pub fn run<'a>(
    shard: &'a Rc<Shard>,
    stream: &'a mut TcpStream,
    conn: &'a Rc<ConnShared>,
    leftover: BytesMut,
) -> impl std::future::Future<Output = CloseReason> + 'a {
    async move {
        let mut pending = Partial::from_chunk(leftover);
        let result = process_all(shard, conn, pending.bytes()).await;
        settle(&mut pending, result);
        if let Err(reason) = result {
            shard.end_step();
            return reason;
        }
        shard.end_step();
        loop {
            match next_event(shard, stream, conn).await {
                Event::Closed(reason) => return reason,
                Event::Drained => shard.drain_session(conn),
                Event::Data(chunk) => {
                    conn.seen(shard.now());
                    let result = process_all(shard, conn, pending.push(chunk)).await;
                    settle(&mut pending, result);
                    if let Err(reason) = result {
                        shard.end_step();
                        return reason;
                    }
                }
            }
            shard.end_step();
        }
    }
}

/// Keeps only an owned copy of a partial packet (see [`Partial`]).
fn settle(pending: &mut Partial, result: Result<usize, CloseReason>) {
    pending.settle(result.unwrap_or(0));
}

/// Handles every complete packet in `buf`, awaiting SUBSCRIBEs in turn;
/// returns how many more bytes the next packet needs.
async fn process_all(
    shard: &Rc<Shard>,
    conn: &Rc<ConnShared>,
    buf: &mut BytesMut,
) -> Result<usize, CloseReason> {
    loop {
        // `sub` must not be in scope across the await: generator layouts are
        // scope-based, and a `Subscribe` would add ~400 bytes to every task.
        let subscribing = match process(shard, conn, buf)? {
            Step::Subscribe(sub) => subscribe_boxed(shard, conn, *sub),
            Step::NeedMore(needed) => return Ok(needed),
        };
        subscribing.await?;
    }
}

/// Where [`process`] stopped.
enum Step {
    /// A SUBSCRIBE, for the caller to await.
    Subscribe(Box<Subscribe>),
    /// The buffer holds no complete packet; the next needs this many more bytes.
    NeedMore(usize),
}

type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + 'a>>;

/// Built in a plain function so that the unboxed future never occupies
/// space in the caller's (long-lived) state machine.
fn subscribe_boxed<'a>(
    shard: &'a Rc<Shard>,
    conn: &'a Rc<ConnShared>,
    sub: Subscribe,
) -> Boxed<'a, Result<(), CloseReason>> {
    Box::pin(shard.on_subscribe(conn, sub))
}

/// Decodes and handles complete packets in `buf` until it runs out or a
/// SUBSCRIBE comes.
fn process(
    shard: &Rc<Shard>,
    conn: &Rc<ConnShared>,
    buf: &mut BytesMut,
) -> Result<Step, CloseReason> {
    loop {
        if conn.is_closing() {
            return Ok(Step::NeedMore(0));
        }
        match decode(buf, conn.version, shard.config.max_packet_size) {
            Ok(Packet::Subscribe(s)) => return Ok(Step::Subscribe(Box::new(s))),
            Ok(packet) => handle(shard, conn, packet)?,
            Err(DecodeError::Incomplete { needed }) => return Ok(Step::NeedMore(needed)),
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
        Packet::PubAck(r) => shard.on_ack(conn, &r, OutState::Ack),
        Packet::PubComp(r) => shard.on_ack(conn, &r, OutState::Complete),
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
        let Some(s) = sessions.by_id.get_mut(&conn.session.get()) else {
            return;
        };
        if s.complete(r.packet_id, expected) {
            s.drain();
            drop(sessions);
            self.mark_dirty(conn);
        }
    }

    /// PUBREC: answer PUBREL (5.0: "not found" if the id is unknown).
    fn on_pubrec(&self, conn: &Rc<ConnShared>, r: &PubResp) {
        let known = self
            .sessions
            .borrow_mut()
            .by_id
            .get_mut(&conn.session.get())
            .is_some_and(|s| s.received(r.packet_id));
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
            .is_some_and(|s| s.qos2_remove(r.packet_id.get()));
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
        CloseReason::Disconnect {
            with_will: d.reason == ReasonCode::DisconnectWithWillMessage,
        }
    }
}
