//! A TLS client session over a non-blocking TCP socket: what a
//! [`Transport`](super::Transport) made by
//! [`Transport::tls_client`](super::Transport::tls_client) is.
//!
//! rustls does no I/O: bytes from the socket go in with `read_tls` and
//! `process_new_packets`, plaintext comes out of `reader()`; plaintext goes
//! in through `writer()` and records come out with `write_tls`. On top of
//! that this keeps the [`Transport`](super::Transport) contract:
//!
//! - `read` returns plaintext, and `WouldBlock` only once rustls holds none
//!   and the socket itself said `WouldBlock` (readiness is edge-triggered).
//!   `Ok(0)` is the end: the server's close_notify, or a TCP EOF after the
//!   handshake (MQTT's framing shows a packet cut short). An EOF during the
//!   handshake is an error.
//! - `write` takes plaintext while rustls buffers less than
//!   [`TLS_BUFFER_LIMIT`] (plaintext until the handshake ends, records the
//!   socket has not taken after), then returns `WouldBlock`.
//! - The handshake has no call of its own: each `read`, `write` and `flush`
//!   moves it on. Records rustls makes on the way (handshake messages,
//!   alerts) are pushed to the socket by the call that made them; what the
//!   socket refuses waits ([`TlsStream::wants_write`]) for a `flush` on
//!   writable.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError, ClientConfig, ClientConnection};

use super::transport::retry_eintr;
use crate::limits::TLS_BUFFER_LIMIT;

/// Pushing records a session made to its socket, on either side.
pub(super) trait PushRecords {
    /// Pushes pending records; `WouldBlock` if some remain.
    fn flush(&mut self) -> io::Result<()>;

    /// Pushes what the socket takes; only a failure other than a full
    /// socket is an error.
    fn push_unless_blocked(&mut self) -> io::Result<()> {
        match self.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    /// A failing socket also fails the next read, which reports it; what
    /// the socket refuses waits for a `flush` on writable.
    fn push_best_effort(&mut self) {
        let _ = self.flush();
    }
}

impl PushRecords for TlsStream {
    fn flush(&mut self) -> io::Result<()> {
        TlsStream::flush(self)
    }
}

/// One TLS client session and its socket.
///
/// Owned by the [`Transport`](super::Transport) it is the kind of; the
/// session cannot travel as an fd, so it stays on the thread that made it.
#[derive(Debug)]
pub(super) struct TlsStream {
    tcp: mio::net::TcpStream,
    /// Its buffers are bounded by [`TLS_BUFFER_LIMIT`] (set at creation).
    session: ClientConnection,
    /// The name the server's certificate is checked against, for messages.
    server: String,
}

impl TlsStream {
    /// A session that will greet `server_name` over `tcp` (connected or
    /// still connecting); nothing is sent yet.
    pub(super) fn new(
        tcp: mio::net::TcpStream,
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> io::Result<TlsStream> {
        let name = ServerName::try_from(server_name.to_owned()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TLS server name {server_name:?}: {e}"),
            )
        })?;
        let mut session = ClientConnection::new(config, name).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("starting TLS with {server_name}: {e}"),
            )
        })?;
        session.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(TlsStream {
            tcp,
            session,
            server: server_name.to_owned(),
        })
    }

    pub(super) fn tcp(&self) -> &mio::net::TcpStream {
        &self.tcp
    }

    pub(super) fn tcp_mut(&mut self) -> &mut mio::net::TcpStream {
        &mut self.tcp
    }

    /// The socket; the session is dropped without a close_notify.
    pub(super) fn into_tcp(self) -> mio::net::TcpStream {
        self.tcp
    }

    /// Plaintext into `buf`; see the module doc for `Ok(0)` and `WouldBlock`.
    pub(super) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Each round returns or takes bytes from the socket, which ends in
        // `WouldBlock` or EOF; only records without plaintext (handshake,
        // tickets) make more than a few rounds.
        loop {
            match self.session.reader().read(buf) {
                // 0: the server's close_notify, all plaintext read.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return self.eof(),
                Err(e) => return Err(e),
            }
            match retry_eintr(|| self.session.read_tls(&mut self.tcp)) {
                // Ok(0): EOF, which the reader reports next round.
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.push_best_effort();
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
            if let Err(e) = self.session.process_new_packets() {
                // rustls queued an alert telling the server why.
                self.push_best_effort();
                return Err(self.tls_error(&e));
            }
            // Handshake replies go out at once.
            self.push_best_effort();
        }
    }

    /// Takes plaintext from `buf`; `WouldBlock` when rustls' buffers are at
    /// their limit.
    pub(super) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Older records first, to make room under the limit.
        self.push_unless_blocked()?;
        let n = self.session.writer().write(buf)?;
        self.push_unless_blocked()?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Pushes pending records to the socket; `WouldBlock` if some remain
    /// (wait for writable and flush again).
    pub(super) fn flush(&mut self) -> io::Result<()> {
        // Bounded: each round writes at least one byte of a bounded buffer.
        while self.session.wants_write() {
            match retry_eintr(|| self.session.write_tls(&mut self.tcp)) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("TLS with {}: the socket took no bytes", self.server),
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Records are waiting for the socket: keep writable interest and
    /// [`flush`](Self::flush) on writable.
    pub(super) fn wants_write(&self) -> bool {
        self.session.wants_write()
    }

    /// Queues a close_notify and pushes it if the socket takes it.
    pub(super) fn close_notify(&mut self) {
        self.session.send_close_notify();
        self.push_best_effort();
    }

    /// The server closed TCP without a close_notify.
    fn eof(&self) -> io::Result<usize> {
        if self.session.is_handshaking() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "TLS handshake with {}: the server closed the connection",
                    self.server
                ),
            ));
        }
        Ok(0)
    }

    fn tls_error(&self, e: &rustls::Error) -> io::Error {
        let stage = if self.session.is_handshaking() {
            "handshake"
        } else {
            "session"
        };
        let hint = match e {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                " (not signed by any trusted CA certificate)"
            }
            rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
                " (the server requires a client certificate)"
            }
            rustls::Error::AlertReceived(
                AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown,
            ) => " (the server refused the certificate it was sent)",
            _ => "",
        };
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("TLS {stage} with {}: {e}{hint}", self.server),
        )
    }
}
