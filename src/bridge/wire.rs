//! One link's connection to its remote broker: the transport, the bytes
//! read and not yet decoded, the bytes encoded and not yet written.
//!
//! Registered for reads and writes at once (edge-triggered: a writable
//! event comes when a connect completes and each time a full socket
//! drains, not continuously).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use crate::protocol::{self, DecodeError, Packet, ProtocolVersion};
use crate::runtime::{connect_from, Interest, Registrar, TlsClientConfig, Token, Transport};

/// Bytes read from the socket per read call.
const READ_STEP: usize = 16 * 1024;

/// Bytes one [`Wire::read`] takes at most before the other links (and the
/// local broker) get a turn.
const READ_BUDGET: usize = 16 * READ_STEP;

/// Where a link connects to.
pub struct Remote<'a> {
    pub addr: SocketAddr,
    /// `bridge_bind_address`.
    pub bind: Option<IpAddr>,
    /// The TLS settings, when the link uses TLS.
    pub tls: Option<&'a Arc<TlsClientConfig>>,
    /// The host name as configured (what the certificate must name).
    pub host: &'a str,
}

/// Owned by its link, on the bridge thread.
pub struct Wire {
    transport: Transport,
    pub addr: SocketAddr,
    pub version: ProtocolVersion,
    input: BytesMut,
    output: BytesMut,
    max_incoming: usize,
    /// The TCP connect has completed.
    connected: bool,
    /// When a packet was last read (keepalive: the remote is alive).
    pub last_in: Instant,
    /// When a packet was last written (keepalive: PINGREQ when idle).
    pub last_out: Instant,
}

/// What one read did.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// The socket is drained: wait for the next readable event.
    Drained,
    /// More may be waiting: read again after the other links had a turn.
    More,
}

impl Wire {
    /// Starts connecting to `to.addr` (with TLS when `to.tls` is set) and
    /// registers the socket under `token`.
    pub fn open(
        to: Remote<'_>,
        version: ProtocolVersion,
        max_incoming: usize,
        registrar: &Registrar,
        token: usize,
    ) -> io::Result<Wire> {
        let addr = to.addr;
        let mut transport = connect_from(to.bind, addr)?;
        if let Some(tls) = to.tls {
            transport = Transport::tls_client(transport, Arc::clone(tls), to.host)?;
        }
        registrar.register(
            &mut transport,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let now = Instant::now();
        Ok(Wire {
            transport,
            addr,
            version,
            input: BytesMut::new(),
            output: BytesMut::new(),
            max_incoming,
            connected: false,
            last_in: now,
            last_out: now,
        })
    }

    /// Encodes `packet` for writing at the next flush.
    pub fn queue(&mut self, packet: &Packet) -> io::Result<()> {
        packet
            .encode(self.version, &mut self.output)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("encoding: {e}")))
    }

    /// Bytes encoded and not yet written.
    pub fn pending(&self) -> usize {
        self.output.len()
    }

    /// Writes what the socket takes. Before the connect has completed it
    /// only checks whether it has (an error is the connect's failure).
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.connected {
            if !self.transport.connect_result()? {
                return Ok(());
            }
            self.connected = true;
        }
        while !self.output.is_empty() {
            match self.transport.write(&self.output) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let _ = self.output.split_to(n);
                    self.last_out = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.output.is_empty() && self.output.capacity() > 4 * READ_STEP {
            self.output = BytesMut::new();
        }
        // TLS records the socket has not taken yet (nothing for TCP).
        match self.transport.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    /// Reads until the socket is drained (or [`READ_BUDGET`] bytes) and
    /// hands complete packets to `on_packet`, at most `max_packets`
    /// ([`Read::More`] then: the rest waits in the input, and the socket
    /// is read again only once the input is below [`READ_BUDGET`]). An
    /// error (EOF included, as `UnexpectedEof`) means the connection is
    /// over; every packet that came before it is handed over first (a
    /// refusing CONNACK, say).
    pub fn read(
        &mut self,
        max_packets: usize,
        mut on_packet: impl FnMut(Packet) -> io::Result<()>,
    ) -> io::Result<Read> {
        if !self.connected {
            return Ok(Read::Drained);
        }
        let (outcome, total) = if self.input.len() < READ_BUDGET {
            self.fill_input()
        } else {
            (Ok(Read::More), 0)
        };
        if total > 0 {
            self.last_in = Instant::now();
        }
        let mut handled = 0;
        loop {
            if handled >= max_packets && outcome.is_ok() {
                return Ok(Read::More);
            }
            match protocol::decode(&mut self.input, self.version, self.max_incoming) {
                Ok(packet) => {
                    handled += 1;
                    on_packet(packet)?
                }
                Err(DecodeError::Incomplete { .. }) => break,
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("malformed packet from the remote: {e}"),
                    ))
                }
            }
        }
        outcome
    }

    /// Appends what the socket has to the input; returns how the reading
    /// ended and how many bytes came.
    fn fill_input(&mut self) -> (io::Result<Read>, usize) {
        let mut total = 0;
        while total < READ_BUDGET {
            let start = self.input.len();
            self.input.resize(start + READ_STEP, 0);
            let read = self.transport.read(&mut self.input[start..]);
            let n = *read.as_ref().unwrap_or(&0);
            self.input.truncate(start + n);
            match read {
                Ok(0) => {
                    let eof = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the remote closed the connection",
                    );
                    return (Err(eof), total);
                }
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return (Ok(Read::Drained), total)
                }
                Err(e) => return (Err(e), total),
            }
        }
        (Ok(Read::More), total)
    }

    /// Writes what it can of the output and closes the socket.
    pub fn close(mut self, registrar: &Registrar) {
        let _ = self.flush();
        let _ = registrar.deregister(&mut self.transport);
    }
}
