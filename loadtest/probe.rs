//! A blocking MQTT client for the controller thread, where one message at a
//! time is all there is to see: the `bridge` scenario's link check and its
//! reconnect measurement ([`crate::outage`]). Not for load, which is the
//! workers' ([`crate::conn`]): one connection, every read bounded by a
//! deadline, subscriptions at QoS 1 at most, publishes at QoS 0.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shardmq::protocol::{
    self, DecodeError, Packet, ProtocolVersion, PubResp, Publish, QoS, TopicName,
};

use crate::conn::{connect_packet, queue, MAX_PACKET};
use crate::plan::RunSpec;
use crate::subscriber::Subscriber;

/// Longest a write may block (the socket buffer is full).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes taken per read.
const READ_CHUNK: usize = 16 * 1024;

/// One blocking client connection. Owned by the controller thread.
pub struct Probe {
    stream: TcpStream,
    version: ProtocolVersion,
    /// Bytes read and not decoded yet: at most one packet's prefix between
    /// calls.
    buf: BytesMut,
}

impl Probe {
    /// Connects to `addr` as connection `name` of the run (client id
    /// `sl-<run tag>-<name>`), up to the CONNACK, by `deadline`.
    pub fn connect(
        spec: &RunSpec,
        addr: SocketAddr,
        name: &str,
        deadline: Instant,
    ) -> io::Result<Probe> {
        let stream = TcpStream::connect_timeout(&addr, left(deadline)?)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let mut probe = Probe {
            stream,
            version: spec.version,
            buf: BytesMut::new(),
        };
        let connect = Packet::Connect(Box::new(connect_packet(spec, name)));
        probe.send(&connect)?;
        match probe.next_packet(deadline)? {
            Some(Packet::ConnAck(ack)) if !ack.code.is_error() => Ok(probe),
            Some(Packet::ConnAck(ack)) => Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("{addr} refused CONNECT: {:?}", ack.code),
            )),
            Some(other) => Err(io::Error::other(format!(
                "{addr}: expected CONNACK, got {other:?}"
            ))),
            None => Err(timed_out(&format!("no CONNACK from {addr}"))),
        }
    }

    /// Subscribes to `filter` at QoS 1 (messages arrive at QoS 0 or 1), up
    /// to the SUBACK, by `deadline`.
    pub fn subscribe(&mut self, filter: &str, deadline: Instant) -> io::Result<()> {
        let subscribe =
            Subscriber::new(0, filter.to_string()).subscribe_packet(QoS::AtLeastOnce)?;
        self.send(&subscribe)?;
        loop {
            match self.next_packet(deadline)? {
                Some(Packet::SubAck(ack)) => {
                    return match ack.codes.first() {
                        Some(code) if !code.is_error() => Ok(()),
                        code => Err(io::Error::other(format!(
                            "SUBSCRIBE {filter} refused: {code:?}"
                        ))),
                    }
                }
                // Retained messages may come before the SUBACK: not ours.
                Some(Packet::Publish(p)) => self.ack(&p)?,
                Some(other) => {
                    return Err(io::Error::other(format!("expected SUBACK, got {other:?}")))
                }
                None => return Err(timed_out(&format!("no SUBACK for {filter}"))),
            }
        }
    }

    /// Publishes `payload` on `topic` at QoS 0.
    pub fn publish(&mut self, topic: &TopicName, payload: &'static [u8]) -> io::Result<()> {
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: topic.clone(),
            packet_id: None,
            payload: Bytes::from_static(payload),
            properties: Default::default(),
        }))
    }

    /// The next PUBLISH that arrives by `deadline` (acknowledged), or
    /// `None`. Other packets (PINGRESP, acks) are passed over.
    pub fn next_publish(&mut self, deadline: Instant) -> io::Result<Option<Publish>> {
        loop {
            match self.next_packet(deadline)? {
                Some(Packet::Publish(p)) => {
                    self.ack(&p)?;
                    return Ok(Some(p));
                }
                Some(Packet::Disconnect(d)) => {
                    return Err(io::Error::other(format!(
                        "the broker sent DISCONNECT {:?}",
                        d.reason
                    )))
                }
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    fn ack(&mut self, p: &Publish) -> io::Result<()> {
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => self.send(&Packet::PubAck(PubResp::new(id))),
            _ => Ok(()),
        }
    }

    fn send(&mut self, p: &Packet) -> io::Result<()> {
        let mut out = BytesMut::new();
        queue(&mut out, self.version, p)?;
        self.stream.write_all(&out)
    }

    /// The next packet by `deadline`, or `None`; EOF is an error.
    fn next_packet(&mut self, deadline: Instant) -> io::Result<Option<Packet>> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            match protocol::decode(&mut self.buf, self.version, MAX_PACKET) {
                Ok(p) => return Ok(Some(p)),
                Err(DecodeError::Incomplete { .. }) => {}
                Err(DecodeError::Malformed(m)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("malformed packet from the broker: {m}"),
                    ))
                }
            }
            let Ok(wait) = left(deadline) else {
                return Ok(None);
            };
            self.stream.set_read_timeout(Some(wait))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the broker closed the connection",
                    ))
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// The time left until `deadline`; an error once it has passed (a zero
/// timeout means "none" to the socket calls).
fn left(deadline: Instant) -> io::Result<Duration> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        return Err(timed_out("deadline passed"));
    }
    Ok(d)
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_string())
}
