//! A connection's socket work: reading into the shard-wide buffer (with a
//! per-turn budget), flushing output at the end of a turn (write interest
//! only while a send would block), and teardown.

use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;

use super::conn::{CloseReason, Conn, Phase};
use super::Shard;
use crate::limits::{FLUSH_ROUNDS, READS_PER_TURN, READ_CHUNK, READ_MIN, SHUTDOWN_FLUSH};
use crate::protocol::{Disconnect, Packet};
use crate::runtime::{Interest, Readiness, Token};

/// What one read gave.
enum Read {
    /// Bytes, and whether they drained the socket: a read that returns less
    /// than it asked for has emptied a stream socket, and data arriving
    /// later raises a new edge (epoll(7)), so no second read is needed.
    Data(BytesMut, bool),
    /// Nothing more for now (edge-triggered: readiness will be reported).
    Empty,
    /// Nothing yet, but the transport may have left bytes in the socket
    /// that no readiness event will announce (WebSocket control frames):
    /// read again from the pending work.
    Again,
    /// EOF or a socket error.
    Closed,
}

impl Shard {
    /// Readiness of connection `token`.
    pub(super) fn conn_ready(self: &Rc<Self>, token: usize, r: Readiness) {
        if (r.readable || r.closed) && self.is_lingering(token) {
            return self.linger(token);
        }
        if r.writable {
            self.flush_token(token);
        }
        if r.closed {
            self.note_hang_up(token);
        }
        if r.readable || r.closed {
            // After a hang-up, read on to the end of the stream (a short
            // read does not mean EOF was seen).
            self.read_conn(token, r.closed);
            self.flush_handshake(token);
        }
        if r.closed && self.verifying(token) {
            // Hung up while (or right after sending the CONNECT whose)
            // password is checked: nobody to answer. A verifying
            // connection's input is not read, so this is the one look.
            self.drop_conn(token);
        }
    }

    /// A connection without shared state yet (its CONNECT not read) has no
    /// output of its own, but a TLS one may hold handshake records the
    /// socket did not take: write interest until they are out.
    fn flush_handshake(&self, token: usize) {
        let mut conns = self.conns.borrow_mut();
        let Some(conn) = conns.get_mut(token) else {
            return;
        };
        if conn.shared.is_some() || !(conn.writable || conn.transport.wants_write()) {
            return;
        }
        match conn.transport.flush() {
            Ok(()) => self.set_writable(token, conn, false),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                self.set_writable(token, conn, true)
            }
            Err(_) => {
                drop(conns);
                self.drop_conn(token);
            }
        }
    }

    /// Reads and handles what `token` sent, at most [`READS_PER_TURN`]
    /// reads; a connection with more is revisited from the pending work.
    /// Stops at a read that drained the socket unless `to_the_end`, then
    /// only at `WouldBlock` or EOF.
    pub(super) fn read_conn(self: &Rc<Self>, token: usize, to_the_end: bool) {
        for _ in 0..READS_PER_TURN {
            let Some(phase) = self.readable_phase(token) else {
                return;
            };
            if self.mesh.congested() {
                self.stalled.borrow_mut().push(token);
                return;
            }
            match self.read_chunk(token) {
                Read::Data(chunk, drained) => {
                    if phase == Phase::Connecting {
                        self.on_connect_bytes(token, chunk);
                    } else {
                        self.on_bytes(token, Some(chunk));
                    }
                    if drained && !to_the_end {
                        return;
                    }
                }
                Read::Empty => return,
                Read::Again => break,
                Read::Closed => return self.close_token(token, CloseReason::Io),
            }
        }
        self.again.borrow_mut().push(token);
    }

    /// Marks an attached connection whose client hung up.
    fn note_hang_up(&self, token: usize) {
        if let Some(shared) = self
            .conns
            .borrow()
            .get(token)
            .and_then(|c| c.shared.as_ref())
        {
            shared.hung_up.set(true);
        }
    }

    /// The phase of a connection whose input may be read now.
    fn readable_phase(&self, token: usize) -> Option<Phase> {
        let conns = self.conns.borrow();
        let conn = conns.get(token)?;
        let waiting = conn.shared.as_ref().is_some_and(|s| {
            if s.out_full() {
                s.input_paused.set(true);
            }
            s.is_closing() || s.blocked.get() || s.input_paused.get() || self.held_back(s)
        });
        match conn.phase {
            // A connection whose password is checked is read once attached.
            Phase::Closing | Phase::Verifying => None,
            _ if waiting => None,
            phase => Some(phase),
        }
    }

    fn read_chunk(&self, token: usize) -> Read {
        let mut buf = self.read_buf.borrow_mut();
        if buf.len() < READ_MIN {
            // The old chunk stays alive only through views still in use.
            *buf = BytesMut::with_capacity(READ_CHUNK);
            buf.resize(READ_CHUNK, 0);
        }
        let mut conns = self.conns.borrow_mut();
        let Some(conn) = conns.get_mut(token) else {
            return Read::Empty;
        };
        let read = conn.transport.read(&mut buf[..]);
        if conn.shared.is_none() && conn.transport.wants_write() {
            // A transport's own answer (a WebSocket upgrade) before any
            // MQTT output: once attached, the end-of-turn flush sees to it.
            self.flush_bare(token, conn);
        }
        match read {
            Ok(0) => Read::Closed,
            Ok(n) => {
                super::Stats::add(&self.stats.bytes_received, n);
                let drained = n < buf.len() && conn.transport.short_read_drains();
                Read::Data(buf.split_to(n), drained)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if conn.transport.read_pending() {
                    Read::Again
                } else {
                    Read::Empty
                }
            }
            Err(e) => {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    log::info!("shard {}: connection {token}: {e}", self.id);
                }
                Read::Closed
            }
        }
    }

    /// Flushes what the transport of a connection with no MQTT output
    /// state holds; keeps write interest while some remains.
    fn flush_bare(&self, token: usize, conn: &mut Conn) {
        let want = match conn.transport.flush() {
            Ok(()) => false,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        };
        self.set_writable(token, conn, want);
    }

    /// Closes `token`: an attached one at the end of the turn (will,
    /// session, DISCONNECT), one still connecting at once.
    pub(super) fn close_token(&self, token: usize, reason: CloseReason) {
        let shared = self
            .conns
            .borrow()
            .get(token)
            .and_then(|c| c.shared.clone());
        match shared {
            Some(conn) => self.close_conn(&conn, reason),
            None => self.drop_conn(token),
        }
    }

    /// End of turn: flushes every connection written to, tears down those
    /// asked to close, and drains session queues whose buffer emptied.
    /// Repeats while that makes more work, a bounded number of times.
    pub(super) fn flush_dirty(self: &Rc<Self>) {
        for _ in 0..FLUSH_ROUNDS {
            let dirty = std::mem::take(&mut *self.dirty.borrow_mut());
            if dirty.is_empty() {
                return;
            }
            for conn in &dirty {
                conn.clear_dirty();
                let Some(token) = conn.token() else {
                    continue;
                };
                if let Some(reason) = conn.close_reason() {
                    self.tear_down(token, reason);
                } else {
                    self.flush_token(token);
                }
            }
            let mut slot = self.dirty.borrow_mut();
            if slot.is_empty() {
                *slot = dirty;
                slot.clear();
            }
        }
    }

    /// Writes what `token` has waiting; arms write interest if the socket
    /// is full, disarms it once drained.
    pub(super) fn flush_token(self: &Rc<Self>, token: usize) {
        let (result, shared, phase) = {
            let mut conns = self.conns.borrow_mut();
            let Some(conn) = conns.get_mut(token) else {
                return;
            };
            let Some(shared) = conn.shared.clone() else {
                drop(conns);
                return self.flush_handshake(token);
            };
            let waiting = shared.out_len();
            let result = shared.flush_to(&mut conn.transport);
            super::Stats::add(
                &self.stats.bytes_sent,
                waiting.saturating_sub(shared.out_len()),
            );
            if let Ok(drained) = result {
                self.set_writable(token, conn, !drained);
            }
            (result, shared, conn.phase)
        };
        match (result, phase) {
            (Err(_), Phase::Closing) => self.drop_conn(token),
            (Ok(true), Phase::Closing) => self.close_write(token),
            (Err(_), _) => self.close_conn(&shared, CloseReason::Io),
            (Ok(_), _) => {
                if shared.take_drained() {
                    self.drain_session(&shared);
                }
                if shared.input_paused.get() && !shared.out_full() {
                    // The client reads again: so may we.
                    shared.input_paused.set(false);
                    self.again.borrow_mut().push(token);
                }
            }
        }
    }

    fn set_writable(&self, token: usize, conn: &mut Conn, want: bool) {
        if conn.writable == want {
            return;
        }
        let interest = if want {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match self
            .registrar
            .reregister(&mut conn.transport, Token(token), interest)
        {
            Ok(()) => conn.writable = want,
            Err(e) => log::warn!("connection {token}: {e}"),
        }
    }

    /// An attached connection asked to close: will and session first, then
    /// a 5.0 DISCONNECT, then its last bytes flush until drained or timed out.
    fn tear_down(self: &Rc<Self>, token: usize, reason: CloseReason) {
        let (shared, phase) = {
            let conns = self.conns.borrow();
            let Some(conn) = conns.get(token) else {
                return;
            };
            (conn.shared.clone(), conn.phase)
        };
        let Some(shared) = shared else {
            return self.drop_conn(token);
        };
        if phase == Phase::Attached {
            super::log_lines::closed(&shared.client_id, reason);
            self.finish(&shared, reason);
            if let (true, Some((code, why))) = (shared.version.is_v5(), reason.disconnect()) {
                let mut disconnect = Disconnect::new(code);
                disconnect.properties.reason_string = Some(why.to_string());
                self.send_packet(&shared, &Packet::Disconnect(disconnect));
                shared.clear_dirty();
            }
        }
        if phase != Phase::Closing {
            self.start_closing(token);
        }
        self.flush_token(token);
    }

    /// Stops reading `token` and lets its last bytes flush for at most
    /// [`SHUTDOWN_FLUSH`].
    pub(super) fn start_closing(&self, token: usize) {
        let until = Instant::now() + SHUTDOWN_FLUSH;
        let mut conns = self.conns.borrow_mut();
        let Some(conn) = conns.get_mut(token) else {
            return;
        };
        conn.phase = Phase::Closing;
        let serial = conn.serial;
        drop(conns);
        self.closing_deadline((token, serial), until);
    }

    /// Whether `token` is closing with its write half shut, reading until
    /// the client's end of stream (see [`Shard::linger`]).
    pub(super) fn is_lingering(&self, token: usize) -> bool {
        self.conns.borrow().get(token).is_some_and(|c| c.lingering)
    }

    /// A closing connection's output is out: closes it, or, for a
    /// transport that [lingers](crate::runtime::Transport::lingers), shuts
    /// its write half and waits (until its closing deadline at most) for
    /// the client's end of stream.
    fn close_write(&self, token: usize) {
        let shut = {
            let mut conns = self.conns.borrow_mut();
            let Some(conn) = conns.get_mut(token) else {
                return;
            };
            if conn.lingering {
                return;
            }
            let shut = conn.transport.lingers()
                && conn.transport.shutdown(std::net::Shutdown::Write).is_ok();
            conn.lingering = shut;
            shut
        };
        if !shut {
            self.drop_conn(token);
        }
    }

    /// Reads and drops what a lingering connection sends; closes it at
    /// its end of stream (a bounded number of reads per event).
    pub(super) fn linger(&self, token: usize) {
        let mut buf = [0u8; 1024];
        for _ in 0..READS_PER_TURN {
            let read = match self.conns.borrow_mut().get_mut(token) {
                Some(conn) => conn.transport.read(&mut buf),
                None => return,
            };
            match read {
                Ok(n) if n > 0 => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if self
                        .conns
                        .borrow()
                        .get(token)
                        .is_some_and(|c| c.transport.read_pending())
                    {
                        self.again.borrow_mut().push(token);
                    }
                    return;
                }
                _ => return self.drop_conn(token),
            }
        }
        self.again.borrow_mut().push(token);
    }

    /// Removes `token` and closes its socket.
    pub(super) fn drop_conn(&self, token: usize) {
        let Some(conn) = self.conns.borrow_mut().try_remove(token) else {
            return;
        };
        if let Some(shared) = &conn.shared {
            shared.set_token(None);
        }
        if conn.counted {
            self.connections.set(self.connections.get() - 1);
        }
        self.listener_load.close(usize::from(conn.listener));
        let mut transport = conn.transport;
        // TLS: a close_notify, if the socket takes it now (TCP: nothing).
        transport.close_notify();
        // Dropping the transport closes the socket, which also removes it
        // from the poll.
    }
}
