//! One link's connection to its remote broker: the transport, the bytes
//! read and not yet decoded, the bytes encoded and not yet written.
//!
//! Registered for reads and writes at once (edge-triggered: a writable
//! event comes when a connect completes and each time a full socket
//! drains, not continuously).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::BytesMut;

use crate::protocol::{self, DecodeError, Packet, ProtocolVersion};
use crate::runtime::{connect_from, Interest, Registrar, Token, Transport};

/// Bytes read from the socket per read call.
const READ_STEP: usize = 16 * 1024;

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
    /// Starts connecting to `addr` and registers the socket under `token`.
    pub fn open(
        addr: SocketAddr,
        bind: Option<IpAddr>,
        version: ProtocolVersion,
        max_incoming: usize,
        registrar: &Registrar,
        token: usize,
    ) -> io::Result<Wire> {
        let mut transport = connect_from(bind, addr)?;
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
        Ok(())
    }

    /// Reads once and hands every complete packet to `on_packet`. An error
    /// (EOF included, as `UnexpectedEof`) means the connection is over.
    pub fn read(
        &mut self,
        mut on_packet: impl FnMut(Packet) -> io::Result<()>,
    ) -> io::Result<Read> {
        if !self.connected {
            return Ok(Read::Drained);
        }
        let start = self.input.len();
        self.input.resize(start + READ_STEP, 0);
        let n = match self.transport.read(&mut self.input[start..]) {
            Ok(n) => n,
            Err(e) => {
                self.input.truncate(start);
                if e.kind() == io::ErrorKind::WouldBlock {
                    return Ok(Read::Drained);
                }
                return Err(e);
            }
        };
        self.input.truncate(start + n);
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the remote closed the connection",
            ));
        }
        self.last_in = Instant::now();
        loop {
            match protocol::decode(&mut self.input, self.version, self.max_incoming) {
                Ok(packet) => on_packet(packet)?,
                Err(DecodeError::Incomplete { .. }) => break,
                Err(e) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("malformed packet from the remote: {e}"),
                    ))
                }
            }
        }
        Ok(if n == READ_STEP {
            Read::More
        } else {
            Read::Drained
        })
    }

    /// Writes what it can of the output and closes the socket.
    pub fn close(mut self, registrar: &Registrar) {
        let _ = self.flush();
        let _ = registrar.deregister(&mut self.transport);
    }
}
