//! A client connection: the state shared between its task and its session
//! ([`ConnShared`]), and the task's I/O loop.
//!
//! Reads go into the shard-wide buffer; only a partial packet left at the
//! end of a read is copied into the connection's own `pending` buffer, so an
//! idle connection holds no read buffer. Writes go through the connection's
//! `out` buffer, which fan-out appends to and which is released once it
//! drains (if it grew large).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, BytesMut};

use super::session::SessionId;
use super::Shard;
use crate::limits::{MAX_OUT_BUFFER, OUT_BUFFER_KEEP, READ_CHUNK, READ_MIN};
use crate::protocol::{ProtocolVersion, ReasonCode};
use crate::runtime::net::{self, TcpStream};

/// Why a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent DISCONNECT (no will, unless `with_will`).
    Disconnect { with_will: bool },
    /// The peer closed the socket or it failed.
    Io,
    /// The client broke the protocol; 5.0 clients get this reason code.
    Protocol(ReasonCode),
    /// No packet within 1.5 x keepalive.
    KeepAliveTimeout,
    /// Another connection took the session over.
    SessionTakenOver,
    /// The broker is shutting down.
    ServerShuttingDown,
}

impl CloseReason {
    /// True when the will must be published (everything but a clean
    /// DISCONNECT without will).
    pub fn publishes_will(self) -> bool {
        !matches!(self, CloseReason::Disconnect { with_will: false })
    }

    /// The DISCONNECT reason a 5.0 client is sent, if any.
    pub fn disconnect_code(self) -> Option<ReasonCode> {
        match self {
            CloseReason::Protocol(code) => Some(code),
            CloseReason::KeepAliveTimeout => Some(ReasonCode::KeepAliveTimeout),
            CloseReason::SessionTakenOver => Some(ReasonCode::SessionTakenOver),
            CloseReason::ServerShuttingDown => Some(ReasonCode::ServerShuttingDown),
            CloseReason::Disconnect { .. } | CloseReason::Io => None,
        }
    }
}

/// State shared by a connection's task, its session and the shard's
/// fan-out. Shard-local (`Rc`).
pub struct ConnShared {
    pub peer: SocketAddr,
    pub version: ProtocolVersion,
    /// Largest packet the client accepts (its Maximum Packet Size).
    pub max_packet: usize,
    /// The session this connection serves (set once attached).
    pub session: Cell<SessionId>,
    out: RefCell<BytesMut>,
    waker: RefCell<Option<Waker>>,
    close: Cell<Option<CloseReason>>,
    /// Filed in the shard's dirty list since the last flush.
    dirty: Cell<bool>,
    /// Messages were held back for lack of room: drain the session queue
    /// once the buffer empties.
    starved: Cell<bool>,
    /// Shard-clock second of the last packet received.
    last_seen: Cell<u64>,
    /// 1.5 x keepalive in seconds, rounded up; 0 = no keepalive.
    keepalive_limit: Cell<u64>,
}

impl ConnShared {
    /// A connection for `version` at shard-clock second `now`.
    pub fn new(
        peer: SocketAddr,
        version: ProtocolVersion,
        max_packet: usize,
        now: u64,
    ) -> ConnShared {
        ConnShared {
            peer,
            version,
            max_packet,
            session: Cell::new(0),
            out: RefCell::new(BytesMut::new()),
            waker: RefCell::new(None),
            close: Cell::new(None),
            dirty: Cell::new(false),
            starved: Cell::new(false),
            last_seen: Cell::new(now),
            keepalive_limit: Cell::new(0),
        }
    }

    /// Sets the keepalive in seconds (0 disables it).
    pub fn set_keepalive(&self, secs: u16) {
        self.keepalive_limit.set((u64::from(secs) * 3).div_ceil(2));
    }

    /// The shard-clock second by which a packet must arrive.
    pub fn keepalive_deadline(&self) -> Option<u64> {
        let limit = self.keepalive_limit.get();
        (limit > 0).then(|| self.last_seen.get() + limit)
    }

    /// Records activity at `now`.
    pub fn seen(&self, now: u64) {
        self.last_seen.set(now);
    }

    /// Appends to the outgoing buffer. The caller marks the connection dirty
    /// (via `Shard::dirty`) so it is flushed at the end of the step.
    pub fn write_with(&self, f: impl FnOnce(&mut BytesMut)) {
        f(&mut self.out.borrow_mut());
    }

    /// True when the outgoing buffer is at its bound (slow consumer).
    pub fn out_full(&self) -> bool {
        self.out.borrow().len() >= MAX_OUT_BUFFER
    }

    pub(super) fn set_starved(&self) {
        self.starved.set(true);
    }

    /// Asks the task to close the connection (first reason wins).
    pub fn close(&self, reason: CloseReason) {
        if self.close.get().is_none() {
            self.close.set(Some(reason));
        }
        self.wake();
    }

    /// True once a close was asked for.
    pub fn is_closing(&self) -> bool {
        self.close.get().is_some()
    }

    /// Wakes the connection's task (to write, or to close).
    pub fn wake(&self) {
        if let Some(w) = self.waker.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    /// Marks for the shard's end-of-step flush; false if already marked.
    pub(super) fn mark_dirty(&self) -> bool {
        !self.dirty.replace(true)
    }

    pub(super) fn clear_dirty(&self) {
        self.dirty.set(false);
    }
}

/// What the I/O loop hands to the packet handler.
pub enum Event {
    /// Bytes read (a slice of the shard buffer, now owned).
    Data(BytesMut),
    /// The outgoing buffer drained while the session had queued messages.
    Drained,
    /// The connection must end.
    Closed(CloseReason),
}

/// Waits for the next event, writing pending output meanwhile.
pub async fn next_event(shard: &Shard, stream: &mut TcpStream, conn: &ConnShared) -> Event {
    poll_fn(|cx| poll_event(shard, stream, conn, cx)).await
}

fn poll_event(
    shard: &Shard,
    stream: &mut TcpStream,
    conn: &ConnShared,
    cx: &mut Context<'_>,
) -> Poll<Event> {
    if let Some(reason) = conn.close.get() {
        return Poll::Ready(Event::Closed(reason));
    }
    register(conn, cx.waker());
    if let Err(reason) = poll_flush(stream, conn, cx) {
        return Poll::Ready(Event::Closed(reason));
    }
    if conn.starved.get() && conn.out.borrow().is_empty() {
        conn.starved.set(false);
        return Poll::Ready(Event::Drained);
    }
    if shard.mesh.poll_uncongested(cx.waker()).is_pending() {
        return Poll::Pending;
    }
    poll_read_chunk(shard, stream, cx).map(|r| match r {
        Ok(chunk) => Event::Data(chunk),
        Err(reason) => Event::Closed(reason),
    })
}

fn register(conn: &ConnShared, waker: &Waker) {
    let mut slot = conn.waker.borrow_mut();
    match slot.as_ref() {
        Some(w) if w.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

/// Writes as much of the outgoing buffer as the socket takes.
fn poll_flush(
    stream: &mut TcpStream,
    conn: &ConnShared,
    cx: &mut Context<'_>,
) -> Result<(), CloseReason> {
    let mut out = conn.out.borrow_mut();
    while !out.is_empty() {
        match net::poll_write(stream, cx, &out) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Err(CloseReason::Io),
            Poll::Ready(Ok(n)) => out.advance(n),
            Poll::Pending => return Ok(()),
        }
    }
    if out.capacity() > OUT_BUFFER_KEEP {
        *out = BytesMut::new();
    }
    Ok(())
}

/// Reads into the shard-wide buffer and splits off what was read.
pub fn poll_read_chunk(
    shard: &Shard,
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
) -> Poll<Result<BytesMut, CloseReason>> {
    let mut buf = shard.read_buf.borrow_mut();
    if buf.len() < READ_MIN {
        buf.clear();
        buf.reserve(READ_CHUNK);
        buf.resize(READ_CHUNK, 0);
    }
    match net::poll_read(stream, cx, &mut buf[..]) {
        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(Err(CloseReason::Io)),
        Poll::Ready(Ok(n)) => Poll::Ready(Ok(buf.split_to(n))),
        Poll::Pending => Poll::Pending,
    }
}

/// Writes whatever is left in the outgoing buffer, for at most `limit`.
pub async fn flush_before_close(
    stream: &mut TcpStream,
    conn: &ConnShared,
    limit: std::time::Duration,
) {
    let flushed = poll_fn(|cx| match poll_flush(stream, conn, cx) {
        Err(_) => Poll::Ready(()),
        Ok(()) if conn.out.borrow().is_empty() => Poll::Ready(()),
        Ok(()) => Poll::Pending,
    });
    crate::runtime::time::timeout(limit, flushed).await;
}
