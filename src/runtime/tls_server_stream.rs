//! A TLS server session over a non-blocking TCP socket, on rustls'
//! unbuffered API: what a [`Transport`](super::Transport) made by
//! [`Transport::tls_server`](super::Transport::tls_server) (a TLS
//! listener's client) is.
//!
//! Why unbuffered: rustls' buffered `ServerConnection` keeps a 4 KiB record
//! buffer for the life of the connection (its deframer is sized to 4 KiB
//! at every read), which an idle MQTT client would carry for hours. Here
//! the session's bytes live in three buffers of this stream, each released
//! (no allocation) whenever it is empty, which is always while the client
//! is idle:
//!
//! - `incoming`: ciphertext read but not yet a whole record;
//! - `plaintext`: decrypted bytes a `read` had no room for;
//! - `outgoing`: records the socket has not taken yet.
//!
//! Bounds: `incoming` holds at most [`TLS_MAX_INCOMING`] (a 64 KiB
//! handshake message joined over records, as rustls allows, plus one
//! record);
//! `plaintext` at most what one `incoming` decrypts to; a `write` takes
//! plaintext while `outgoing` holds less than [`TLS_BUFFER_LIMIT`].
//!
//! The contract is the client session's (`tls_stream`): `read` returns
//! plaintext and `WouldBlock` only once the socket said so (a short read
//! does not mean the socket is empty); `Ok(0)` at the client's
//! close_notify, or a TCP EOF after the handshake; records made on the way
//! (handshake flights, tickets, alerts) are pushed by the call that made
//! them, and what the socket refuses waits ([`TlsServerStream::wants_write`])
//! for a `flush` on writable.

use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{CertificateError, ServerConfig};

use super::tls_stream::PushRecords;
use super::transport::retry_eintr;
use crate::limits::{
    TLS_BUFFER_LIMIT, TLS_MAX_INCOMING, TLS_MAX_RECORD, TLS_MAX_RECORD_PAYLOAD, TLS_PROCESS_ROUNDS,
};

/// Bytes asked of the socket per read: one whole record.
const READ_SIZE: usize = TLS_MAX_RECORD;

/// One TLS server session and its socket.
///
/// Owned by the [`Transport`](super::Transport) it is the kind of. It is
/// `Send`: a deregistered transport travels whole to another shard, the
/// session with its socket and buffers (the fd alone would be useless).
pub(super) struct TlsServerStream {
    /// The socket (registered, read and written by the transport itself
    /// only through this stream; dropping the stream drops the session
    /// without a close_notify).
    pub(super) tcp: mio::net::TcpStream,
    session: UnbufferedServerConnection,
    /// Ciphertext not yet processed (a partial record); empty while idle.
    incoming: Vec<u8>,
    /// Plaintext not yet read; empty while idle.
    plaintext: Vec<u8>,
    /// Records the socket has not taken; empty while idle.
    outgoing: Vec<u8>,
    /// The client's close_notify was processed.
    peer_closed: bool,
    /// The socket reported EOF.
    eof: bool,
    /// The client's address, for messages.
    peer: String,
}

impl std::fmt::Debug for TlsServerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServerStream")
            .field("peer", &self.peer)
            .field("incoming", &self.incoming.len())
            .field("plaintext", &self.plaintext.len())
            .field("outgoing", &self.outgoing.len())
            .finish_non_exhaustive()
    }
}

/// What ended a round of processing.
enum Next {
    /// Go on processing.
    More,
    /// Nothing more without new bytes from the client.
    NeedInput,
}

impl TlsServerStream {
    /// A session for a client accepted on `tcp`; it waits for the client's
    /// hello (nothing is sent first).
    pub(super) fn new(
        tcp: mio::net::TcpStream,
        config: Arc<ServerConfig>,
    ) -> io::Result<TlsServerStream> {
        let peer = tcp
            .peer_addr()
            .map_or_else(|_| "a client".to_owned(), |a| a.to_string());
        let session = UnbufferedServerConnection::new(config).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("starting TLS with {peer}: {e}"),
            )
        })?;
        Ok(TlsServerStream {
            tcp,
            session,
            incoming: Vec::new(),
            plaintext: Vec::new(),
            outgoing: Vec::new(),
            peer_closed: false,
            eof: false,
            peer,
        })
    }

    /// The certificate chain the client presented and the session verified
    /// (leaf first); `None` before the handshake ends or without one.
    pub(super) fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.session.peer_certificates()
    }

    /// True until the handshake has finished.
    pub(super) fn is_handshaking(&self) -> bool {
        self.session.is_handshaking()
    }

    /// Plaintext into `buf`; see the module doc for `Ok(0)` and
    /// `WouldBlock`.
    pub(super) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Each round takes bytes from the socket, which ends in
        // `WouldBlock` or EOF.
        loop {
            if !self.plaintext.is_empty() {
                let n = buf.len().min(self.plaintext.len());
                buf[..n].copy_from_slice(&self.plaintext[..n]);
                self.plaintext.drain(..n);
                if self.plaintext.is_empty() {
                    self.plaintext = Vec::new();
                }
                return Ok(n);
            }
            if self.peer_closed {
                return Ok(0);
            }
            if self.eof {
                return self.eof_result();
            }
            match self.fill() {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.push_best_effort();
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
            let processed = self.process();
            // Handshake replies (and alerts) go out at once.
            self.push_best_effort();
            processed?;
        }
    }

    /// Encrypts plaintext from `buf` while `outgoing` has room;
    /// `WouldBlock` when it has none, or before the handshake ends.
    pub(super) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Older records first, to make room under the limit.
        self.push_unless_blocked()?;
        let room = TLS_BUFFER_LIMIT.saturating_sub(self.outgoing.len());
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let take = &buf[..buf.len().min(room)];
        self.process()?;
        let handshaking = self.session.is_handshaking();
        let UnbufferedStatus { discard, state } =
            self.session.process_tls_records(&mut self.incoming);
        let written = match state {
            Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                // Records add a header and tag each: room for them.
                let guess = take.len() + 64 * (take.len() / TLS_MAX_RECORD_PAYLOAD + 1);
                encode_into(&mut self.outgoing, guess, |out| {
                    traffic.encrypt(take, out).map_err(encrypt_error)
                })
                .map(|()| take.len())
            }
            // The handshake is not over: a read moves it on.
            Ok(_) => Err(io::ErrorKind::WouldBlock.into()),
            Err(e) => Err(tls_error(&self.peer, handshaking, &e)),
        };
        self.incoming.drain(..discard);
        let written = written?;
        self.push_unless_blocked()?;
        Ok(written)
    }

    /// Pushes pending records to the socket; `WouldBlock` if some remain
    /// (wait for writable and flush again).
    pub(super) fn flush(&mut self) -> io::Result<()> {
        let mut sent = 0;
        // Bounded: each round writes at least one byte of `outgoing`.
        while sent < self.outgoing.len() {
            match retry_eintr(|| self.tcp.write(&self.outgoing[sent..])) {
                Ok(0) => {
                    self.outgoing.drain(..sent);
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("TLS with {}: the socket took no bytes", self.peer),
                    ));
                }
                Ok(n) => sent += n,
                Err(e) => {
                    self.outgoing.drain(..sent);
                    return Err(e);
                }
            }
        }
        self.outgoing = Vec::new();
        Ok(())
    }

    /// Records are waiting for the socket: keep writable interest and
    /// [`flush`](Self::flush) on writable.
    pub(super) fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Encrypts a close_notify and pushes it if the socket takes it (after
    /// the handshake; a session still handshaking just closes).
    pub(super) fn close_notify(&mut self) {
        let UnbufferedStatus { discard, state } =
            self.session.process_tls_records(&mut self.incoming);
        if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
            let _ = encode_into(&mut self.outgoing, 64, |out| {
                traffic.queue_close_notify(out).map_err(encrypt_error)
            });
        }
        self.incoming.drain(..discard);
        self.push_best_effort();
    }

    /// Reads what the socket has into `incoming` (one record's worth at
    /// most); `Ok(0)` is EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let start = self.incoming.len();
        if start >= TLS_MAX_INCOMING {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "TLS with {}: more than {TLS_MAX_INCOMING} bytes without a whole message",
                    self.peer
                ),
            ));
        }
        let want = READ_SIZE.min(TLS_MAX_INCOMING - start);
        self.incoming.resize(start + want, 0);
        let read = retry_eintr(|| self.tcp.read(&mut self.incoming[start..]));
        self.incoming.truncate(start + *read.as_ref().unwrap_or(&0));
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        read
    }

    /// Runs the session over `incoming` until it needs more bytes from the
    /// client: decrypts records into `plaintext`, encodes handshake records
    /// into `outgoing`. An error has queued an alert, encoded here too.
    fn process(&mut self) -> io::Result<()> {
        for _ in 0..TLS_PROCESS_ROUNDS {
            match self.round() {
                Ok(Next::More) => {}
                Ok(Next::NeedInput) => break,
                Err(e) => {
                    self.encode_alert();
                    return Err(e);
                }
            }
        }
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        Ok(())
    }

    fn round(&mut self) -> io::Result<Next> {
        let handshaking = self.session.is_handshaking();
        let UnbufferedStatus { mut discard, state } =
            self.session.process_tls_records(&mut self.incoming);
        let next = match state {
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                let mut next = Ok(Next::More);
                while let Some(record) = traffic.next_record() {
                    match record {
                        Ok(record) => {
                            discard += record.discard;
                            self.plaintext.extend_from_slice(record.payload);
                        }
                        Err(e) => {
                            next = Err(tls_error(&self.peer, handshaking, &e));
                            break;
                        }
                    }
                }
                next
            }
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                encode_into(&mut self.outgoing, 2048, |out| {
                    data.encode(out).map_err(encode_error)
                })
                .map(|()| Next::More)
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                // `outgoing` keeps the records until the socket takes them.
                transmit.done();
                Ok(Next::More)
            }
            Ok(ConnectionState::PeerClosed) => {
                self.peer_closed = true;
                Ok(Next::More)
            }
            Ok(ConnectionState::Closed) => {
                self.peer_closed = true;
                Ok(Next::NeedInput)
            }
            Ok(ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_)) => {
                Ok(Next::NeedInput)
            }
            Ok(other) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("TLS with {}: unexpected state {other:?}", self.peer),
            )),
            Err(e) => Err(tls_error(&self.peer, handshaking, &e)),
        };
        self.incoming.drain(..discard);
        next
    }

    /// After an error: encodes the alert the session queued, if any.
    fn encode_alert(&mut self) {
        for _ in 0..4 {
            let UnbufferedStatus { discard, state } =
                self.session.process_tls_records(&mut self.incoming);
            let more = match state {
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    encode_into(&mut self.outgoing, 64, |out| {
                        data.encode(out).map_err(encode_error)
                    })
                    .is_ok()
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    false
                }
                _ => false,
            };
            self.incoming.drain(..discard);
            if !more {
                return;
            }
        }
    }

    /// The client closed TCP without a close_notify.
    fn eof_result(&self) -> io::Result<usize> {
        if self.session.is_handshaking() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "TLS handshake with {}: the client closed the connection",
                    self.peer
                ),
            ));
        }
        Ok(0)
    }
}

impl PushRecords for TlsServerStream {
    fn flush(&mut self) -> io::Result<()> {
        TlsServerStream::flush(self)
    }
}

/// Appends what `encode` writes to `out`, giving it `guess` bytes of room
/// first and, if that is short, exactly the room it asks for.
fn encode_into(
    out: &mut Vec<u8>,
    guess: usize,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, Result<usize, String>>,
) -> io::Result<()> {
    let start = out.len();
    let mut room = guess;
    for _ in 0..2 {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Ok(required)) => room = required,
            Err(Err(e)) => {
                out.truncate(start);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }
    out.truncate(start);
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "TLS: the record did not fit the room it asked for",
    ))
}

/// `Err(Ok(size))`: room needed; `Err(Err(why))`: failed.
fn encode_error(e: EncodeError) -> Result<usize, String> {
    match e {
        EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => Ok(required_size),
        e => Err(e.to_string()),
    }
}

fn encrypt_error(e: EncryptError) -> Result<usize, String> {
    match e {
        EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
            Ok(required_size)
        }
        e => Err(e.to_string()),
    }
}

fn tls_error(peer: &str, handshaking: bool, e: &rustls::Error) -> io::Error {
    let stage = if handshaking { "handshake" } else { "session" };
    let hint = match e {
        rustls::Error::NoCertificatesPresented => {
            " (this listener requires a client certificate: require_certificate true)"
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            " (the client certificate is not signed by a CA of cafile/capath)"
        }
        rustls::Error::InvalidCertificate(CertificateError::Revoked) => {
            " (the client certificate is revoked by crlfile)"
        }
        _ => "",
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("TLS {stage} with {peer}: {e}{hint}"),
    )
}
