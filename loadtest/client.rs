//! One MQTT client connection on a worker executor, built on the crate's
//! codec: connect + CONNECT/CONNACK, SUBSCRIBE/SUBACK, and a split into a
//! reading and a writing half so that two tasks (a publisher's sender and
//! its ack reader) can use the socket at once.
//!
//! Worker-local: the halves share the stream through an `Rc<RefCell<_>>`
//! that is only borrowed inside a synchronous `poll_read`/`poll_write`.

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::task::Poll;

use bytes::{Buf, BytesMut};
use shardmq::protocol::{
    self, ConnAck, Connect, DecodeError, Packet, PacketId, Properties, ProtocolVersion, QoS,
    Subscribe, SubscriptionOptions, TopicFilter,
};
use shardmq::runtime::net::{poll_read, poll_write, TcpStream};

/// Largest packet accepted from the broker.
pub const MAX_PACKET: usize = 16 * 1024 * 1024;
/// Read chunk for connections that carry traffic.
pub const TRAFFIC_CHUNK: usize = 16 * 1024;
/// Read chunk for idle connections (only CONNACK and PINGRESP arrive).
pub const IDLE_CHUNK: usize = 256;

/// How to open a connection.
#[derive(Debug, Clone)]
pub struct Dial {
    pub broker: SocketAddr,
    pub source: Option<IpAddr>,
    pub version: ProtocolVersion,
    pub client_id: String,
    pub keep_alive: u16,
    /// Bytes read per `recv` (and the write buffer's initial size): keep it
    /// small for idle connections, whose buffers stay allocated.
    pub read_chunk: usize,
}

/// The reading half: a decode buffer bounded by [`MAX_PACKET`] plus one chunk.
pub struct Reader {
    stream: Rc<RefCell<TcpStream>>,
    buf: BytesMut,
    version: ProtocolVersion,
    chunk: usize,
}

/// The writing half: packets are queued into `buf` and flushed together.
pub struct Writer {
    stream: Rc<RefCell<TcpStream>>,
    /// Encoded packets not yet written; callers flush before queueing more
    /// than one batch (a publisher batch, an ack batch).
    pub buf: BytesMut,
    pub version: ProtocolVersion,
}

/// An open MQTT session (CONNACK received).
pub struct Session {
    pub reader: Reader,
    pub writer: Writer,
}

fn codec_err(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
}

impl Reader {
    /// Decodes the next packet, reading from the socket as needed.
    pub async fn next(&mut self) -> io::Result<Packet> {
        loop {
            if let Some(p) = self.try_next()? {
                return Ok(p);
            }
            self.fill().await?;
        }
    }

    /// Decodes a packet already buffered, if there is a whole one.
    pub fn try_next(&mut self) -> io::Result<Option<Packet>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        match protocol::decode(&mut self.buf, self.version, MAX_PACKET) {
            Ok(p) => Ok(Some(p)),
            Err(DecodeError::Incomplete { .. }) => Ok(None),
            Err(DecodeError::Malformed(m)) => Err(codec_err("malformed packet from the broker", m)),
        }
    }

    /// Reads one chunk from the socket into the buffer; EOF is an error.
    ///
    /// Cancel-safe: the buffer is grown and trimmed within each poll, so a
    /// read abandoned for a timer (keepalive) leaves no filler bytes behind.
    pub async fn fill(&mut self) -> io::Result<()> {
        let (stream, buf, chunk) = (&self.stream, &mut self.buf, self.chunk);
        let n = std::future::poll_fn(|cx| {
            let len = buf.len();
            buf.resize(len + chunk, 0);
            let polled = poll_read(&mut stream.borrow_mut(), cx, &mut buf[len..]);
            let n = match &polled {
                Poll::Ready(Ok(n)) => *n,
                _ => 0,
            };
            buf.truncate(len + n);
            polled
        })
        .await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the broker closed the connection",
            ));
        }
        Ok(())
    }
}

impl Writer {
    /// Encodes `packet` onto the pending buffer.
    pub fn queue(&mut self, packet: &Packet) -> io::Result<()> {
        packet
            .encode(self.version, &mut self.buf)
            .map_err(|e| codec_err("cannot encode packet", e))
    }

    /// Writes everything queued. Cancel-safe: what was written is removed
    /// from the buffer as it goes, so a later flush resumes where this one
    /// stopped.
    pub async fn flush(&mut self) -> io::Result<()> {
        while !self.buf.is_empty() {
            let (stream, buf) = (&self.stream, &self.buf);
            let n =
                std::future::poll_fn(|cx| poll_write(&mut stream.borrow_mut(), cx, buf)).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the broker stopped reading",
                ));
            }
            self.buf.advance(n);
        }
        Ok(())
    }

    /// Queues and flushes one packet.
    pub async fn send(&mut self, packet: &Packet) -> io::Result<()> {
        self.queue(packet)?;
        self.flush().await
    }
}

impl Session {
    /// Connects, sends CONNECT (clean start) and waits for a successful CONNACK.
    pub async fn open(dial: &Dial) -> io::Result<Session> {
        let stream = shardmq::runtime::client::connect_from(dial.source, dial.broker)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("connecting to {}: {e}", dial.broker)))?;
        let stream = Rc::new(RefCell::new(stream));
        let mut session = Session {
            reader: Reader {
                stream: stream.clone(),
                buf: BytesMut::new(),
                version: dial.version,
                chunk: dial.read_chunk,
            },
            writer: Writer {
                stream,
                buf: BytesMut::with_capacity(dial.read_chunk),
                version: dial.version,
            },
        };
        session
            .writer
            .send(&Packet::Connect(Box::new(connect_packet(dial))))
            .await?;
        match session.reader.next().await? {
            Packet::ConnAck(ConnAck { code, .. }) if !code.is_error() => Ok(session),
            Packet::ConnAck(ConnAck { code, .. }) => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("the broker refused CONNECT: {code:?}"),
            )),
            other => Err(codec_err("expected CONNACK", format!("{other:?}"))),
        }
    }

    /// Subscribes to `filter` and waits for a SUBACK granting it.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> io::Result<()> {
        let filter =
            TopicFilter::from_str(filter).map_err(|e| codec_err("invalid topic filter", e))?;
        let packet_id = PacketId::MIN;
        let sub = Subscribe {
            packet_id,
            filters: vec![(filter, SubscriptionOptions::new(qos))],
            properties: Properties::default(),
        };
        self.writer.send(&Packet::Subscribe(sub)).await?;
        match self.reader.next().await? {
            Packet::SubAck(ack) if ack.packet_id == packet_id => match ack.codes.first() {
                Some(code) if !code.is_error() => Ok(()),
                code => Err(io::Error::other(format!(
                    "the broker refused SUBSCRIBE: {code:?}"
                ))),
            },
            other => Err(codec_err("expected SUBACK", format!("{other:?}"))),
        }
    }
}

fn connect_packet(dial: &Dial) -> Connect {
    Connect {
        protocol: dial.version,
        clean_start: true,
        keep_alive: dial.keep_alive,
        client_id: dial.client_id.clone(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
        bridge: false,
    }
}
