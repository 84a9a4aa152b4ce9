//! A TLS session over a non-blocking TCP socket: what a
//! [`Transport`](super::Transport) made by
//! [`Transport::tls_client`](super::Transport::tls_client) (the bridge) or
//! [`Transport::tls_server`](super::Transport::tls_server) (a TLS listener's
//! client) is. Both sides run the same code over `rustls::Connection`.
//!
//! rustls does no I/O: bytes from the socket go in with `read_tls` and
//! `process_new_packets`, plaintext comes out of `reader()`; plaintext goes
//! in through `writer()` and records come out with `write_tls`. On top of
//! that this keeps the [`Transport`](super::Transport) contract:
//!
//! - `read` returns plaintext, and `WouldBlock` only once rustls holds none
//!   and the socket itself said `WouldBlock` (readiness is edge-triggered).
//!   `Ok(0)` is the end: the peer's close_notify, or a TCP EOF after the
//!   handshake (MQTT's framing shows a packet cut short). An EOF during the
//!   handshake is an error. A short read does not mean the socket is empty
//!   (a read stops at what one `read_tls` brought): read until `WouldBlock`.
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

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, ClientConnection, Connection, ServerConfig,
    ServerConnection,
};

use super::transport::retry_eintr;
use crate::limits::TLS_BUFFER_LIMIT;

/// One TLS session (client or server side) and its socket.
///
/// Owned by the [`Transport`](super::Transport) it is the kind of. It is
/// `Send`: a deregistered transport travels whole to another thread, the
/// session with its socket (a shard hands a TLS listener's connection to
/// its session's home shard that way); the fd alone would be useless.
#[derive(Debug)]
pub(super) struct TlsStream {
    tcp: mio::net::TcpStream,
    /// Its buffers are bounded by [`TLS_BUFFER_LIMIT`] (set at creation).
    session: Connection,
    /// Who the other end is, for messages: the name the server's
    /// certificate is checked against (client side), or the client's
    /// address (server side).
    peer: String,
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
            session: Connection::Client(session),
            peer: server_name.to_owned(),
        })
    }

    /// A server session for a client accepted on `tcp`; it waits for the
    /// client's hello (nothing is sent first).
    pub(super) fn server(
        tcp: mio::net::TcpStream,
        config: Arc<ServerConfig>,
    ) -> io::Result<TlsStream> {
        let peer = tcp
            .peer_addr()
            .map_or_else(|_| "a client".to_owned(), |a| a.to_string());
        let mut session = ServerConnection::new(config).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("starting TLS with {peer}: {e}"),
            )
        })?;
        session.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Ok(TlsStream {
            tcp,
            session: Connection::Server(session),
            peer,
        })
    }

    /// The certificate chain the peer presented and the session verified
    /// (leaf first); `None` before the handshake ends or without one.
    pub(super) fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.session.peer_certificates()
    }

    /// True until the handshake has finished.
    pub(super) fn is_handshaking(&self) -> bool {
        self.session.is_handshaking()
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
                        format!("TLS with {}: the socket took no bytes", self.peer),
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

    fn push_unless_blocked(&mut self) -> io::Result<()> {
        match self.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    /// A failing socket also fails the next read, which reports it; what
    /// the socket refuses waits for [`flush`](Self::flush).
    fn push_best_effort(&mut self) {
        let _ = self.flush();
    }

    /// The peer closed TCP without a close_notify.
    fn eof(&self) -> io::Result<usize> {
        if self.session.is_handshaking() {
            let who = match self.session {
                Connection::Client(_) => "server",
                Connection::Server(_) => "client",
            };
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "TLS handshake with {}: the {who} closed the connection",
                    self.peer
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
            rustls::Error::NoCertificatesPresented => {
                " (this listener requires a client certificate: require_certificate true)"
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
            format!("TLS {stage} with {}: {e}{hint}", self.peer),
        )
    }
}
