//! Non-blocking byte streams for the readiness loop: [`Transport`] (a
//! connection: TCP, a TLS session over TCP (client or server side), or the
//! server side of MQTT over WebSockets: [`Transport::websocket`]),
//! [`Listener`], outgoing [`connect_from`] and [`Transport::tls_client`],
//! and [`Transport::tls_server`] for a TLS listener's accepted connections.
//!
//! Every call is non-blocking and returns `WouldBlock` when it would wait;
//! the reactor then reports readiness (edge-triggered) for the token the
//! source was registered under.
//!
//! # TLS
//!
//! A TLS transport reads and writes plaintext under the same contract, with
//! two differences its loop must follow:
//!
//! - It holds records the socket has not taken yet (at most
//!   [`TLS_BUFFER_LIMIT`](crate::limits::TLS_BUFFER_LIMIT) with the
//!   plaintext). After each event, while [`Transport::wants_write`] holds,
//!   keep writable interest and call [`Transport::flush`] on writable.
//! - A read can unblock writing: until the handshake ends, `write` buffers
//!   plaintext and then answers `WouldBlock`, and the read that finishes the
//!   handshake frees it, with no writable event to follow. So on readable,
//!   after reading until `WouldBlock`, retry any write that got `WouldBlock`.
//!
//! - A short read does not mean the socket is empty
//!   ([`Transport::short_read_drains`]): read until `WouldBlock`.
//!
//! Register a client `READABLE | WRITABLE` from the start: the connect
//! completes and the first flight goes out on writable. A server session
//! waits for the client's hello: `READABLE` is enough until a flight does
//! not fit the socket ([`Transport::wants_write`]). The same loop is correct
//! for TCP, where `flush` does nothing and `wants_write` is always false.
//!
//! # WebSocket
//!
//! A WebSocket transport reads and writes MQTT bytes: the upgrade, frame
//! headers, masks and control frames stay inside (see
//! [`super::websocket`]). Its loop follows the TLS rules above (its
//! `101` answer, pongs and partly sent frames wait inside), and one more:
//! a read may stop while the socket still holds bytes (only control
//! frames arrived, or a read budget ran out). [`Transport::read_pending`]
//! says so: read again without waiting for readiness, since an
//! edge-triggered loop gets no new event for bytes already there.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use mio::event::Source;
use mio::{Interest, Registry, Token};
use rustls::pki_types::CertificateDer;
use socket2::{Domain, Protocol, Socket, Type};

use super::tls_server_stream::TlsServerStream;
use super::tls_stream::TlsStream;
use super::websocket::{WsCodec, WsLimits};
use crate::limits::{EINTR_RETRIES, LISTEN_BACKLOG};

/// One connection's byte stream.
///
/// Owned by the connection's state machine on one shard thread (or the
/// bridge thread); `Send`. A TCP transport can move to another shard as an
/// fd ([`Transport::into_owned_fd`] after deregistering, or
/// `Registrar::detach`); a TLS or WebSocket one moves whole, deregistered
/// (`Registrar::release`): its session or framing state travels with its
/// socket. Its kind is private: a new kind adds an arm to each method, not
/// a case for callers.
#[derive(Debug)]
pub struct Transport {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Tcp(mio::net::TcpStream),
    /// Boxed: a session is large, and most connections are TCP.
    TlsClient(Box<TlsStream>),
    /// MQTT over WebSockets, server side. Boxed: most clients are TCP.
    WebSocket(mio::net::TcpStream, Box<WsCodec>),
    /// A TLS listener's client (rustls' unbuffered API: no buffer while
    /// idle). Boxed, as the client.
    TlsServer(Box<TlsServerStream>),
}

impl Transport {
    /// Starts a TLS client session over `tcp` (from [`connect_from`],
    /// connected or still connecting). The server's certificate must be
    /// valid for `server_name` (a DNS name or an IP address; a DNS name is
    /// also sent as SNI) under `config` (see [`super::tls::client_config`]).
    ///
    /// Nothing is sent yet: the handshake starts with the first
    /// [`flush`](Transport::flush) or [`write`](Transport::write) once the
    /// connect completes (see the module doc for the loop). Its failures
    /// (an untrusted certificate, a refused client certificate...) come back
    /// from `read` as `InvalidData` naming the cause.
    pub fn tls_client(
        tcp: Transport,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> io::Result<Transport> {
        match tcp.kind {
            Kind::Tcp(s) => Ok(Transport {
                kind: Kind::TlsClient(Box::new(TlsStream::new(s, config, server_name)?)),
            }),
            Kind::TlsClient(_) | Kind::TlsServer(_) | Kind::WebSocket(..) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TLS with {server_name}: the transport is not plain TCP"),
            )),
        }
    }

    /// The server side of MQTT over WebSockets on an accepted `tcp`
    /// connection: the upgrade request is read (at most
    /// `limits.headers` bytes) and answered by the first reads, then
    /// `read` and `write` carry MQTT bytes in binary frames.
    pub fn websocket(tcp: Transport, limits: WsLimits) -> io::Result<Transport> {
        Transport::adopt_websocket(tcp, Box::new(WsCodec::new(limits)))
    }

    /// `tcp` with a WebSocket layer already under way.
    pub fn adopt_websocket(tcp: Transport, codec: Box<WsCodec>) -> io::Result<Transport> {
        match tcp.kind {
            Kind::Tcp(s) => Ok(Transport {
                kind: Kind::WebSocket(s, codec),
            }),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "WebSocket: only a plain TCP transport can carry it",
            )),
        }
    }

    /// Starts a TLS server session over `tcp`, a connection a TLS listener
    /// accepted, under `config` (see [`super::tls_server::server_config`]).
    ///
    /// Nothing is sent yet: the client speaks first, and each `read` moves
    /// the handshake on (see the module doc). Its failures (no client
    /// certificate where one is required, an untrusted one, a refused
    /// version...) come back from `read` as `InvalidData` naming the cause,
    /// after the alert telling the client why was pushed.
    pub fn tls_server(tcp: Transport, config: Arc<rustls::ServerConfig>) -> io::Result<Transport> {
        match tcp.kind {
            Kind::Tcp(s) => Ok(Transport {
                kind: Kind::TlsServer(Box::new(TlsServerStream::new(s, config)?)),
            }),
            Kind::TlsClient(_) | Kind::TlsServer(_) | Kind::WebSocket(..) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "TLS listener: the accepted transport is not plain TCP",
            )),
        }
    }

    /// Whether a read that returns less than it asked for has emptied the
    /// socket (TCP), so that edge-triggered readiness will report more. A
    /// TLS read stops at what one record read brought: read it until
    /// `WouldBlock`.
    pub fn short_read_drains(&self) -> bool {
        match &self.kind {
            Kind::Tcp(_) => true,
            Kind::TlsClient(_) | Kind::TlsServer(_) => false,
            Kind::WebSocket(_, ws) => !ws.read_pending(),
        }
    }

    /// Whether input may wait inside the transport with no readiness to
    /// come for it (TLS: plaintext or records rustls holds). A connection
    /// registered anew (handed to another thread) must be read once.
    pub fn may_hold_input(&self) -> bool {
        !self.short_read_drains()
    }

    /// The certificate chain a TLS peer presented and the session verified,
    /// leaf first; `None` for TCP, before the handshake ends, or when the
    /// peer sent none.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        match &self.kind {
            Kind::Tcp(_) | Kind::TlsClient(_) | Kind::WebSocket(..) => None,
            Kind::TlsServer(s) if s.is_handshaking() => None,
            Kind::TlsServer(s) => s.peer_certificates(),
        }
    }

    /// Reads what is available into `buf`: `Ok(0)` is EOF, `WouldBlock`
    /// means wait for readable. TLS: plaintext, `Ok(0)` at the server's
    /// close_notify or a TCP EOF after the handshake. WebSocket: MQTT
    /// bytes, `Ok(0)` also after a close frame; mind
    /// [`read_pending`](Transport::read_pending).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.kind {
            Kind::Tcp(s) => retry_eintr(|| s.read(buf)),
            Kind::TlsClient(s) => s.read(buf),
            Kind::TlsServer(s) => s.read(buf),
            Kind::WebSocket(s, ws) => ws.read(s, buf),
        }
    }

    /// Whether the last `read` may have left bytes in the socket that no
    /// readiness event will announce (WebSocket only): read again from the
    /// loop's pending work.
    pub fn read_pending(&self) -> bool {
        match &self.kind {
            Kind::WebSocket(_, ws) => ws.read_pending(),
            Kind::Tcp(_) | Kind::TlsClient(_) | Kind::TlsServer(_) => false,
        }
    }

    /// Writes what the socket accepts from `buf`; `WouldBlock` means wait
    /// for writable. TLS: takes plaintext while its bounded buffer has room
    /// (`WouldBlock` before the handshake ends may need a read: see the
    /// module doc).
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.kind {
            Kind::Tcp(s) => retry_eintr(|| s.write(buf)),
            Kind::TlsClient(s) => s.write(buf),
            Kind::WebSocket(s, ws) => ws.write(s, buf),
            Kind::TlsServer(s) => s.write(buf),
        }
    }

    /// Pushes bytes buffered inside the transport (TLS records) to the
    /// socket; `WouldBlock` if some remain (flush again on writable). A TCP
    /// transport buffers nothing.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.kind {
            Kind::Tcp(_) => Ok(()),
            Kind::TlsClient(s) => s.flush(),
            Kind::WebSocket(s, ws) => ws.flush(s),
            Kind::TlsServer(s) => s.flush(),
        }
    }

    /// Whether bytes wait inside the transport for the socket: keep
    /// writable interest and [`flush`](Transport::flush) on writable.
    pub fn wants_write(&self) -> bool {
        match &self.kind {
            Kind::Tcp(_) => false,
            Kind::TlsClient(s) => s.wants_write(),
            Kind::WebSocket(_, ws) => ws.wants_write(),
            Kind::TlsServer(s) => s.wants_write(),
        }
    }

    /// The remote address; `NotConnected` while a connect is in progress.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.tcp().set_nodelay(nodelay)
    }

    /// Shuts down the read, write or both halves. TLS: closing the write
    /// half first sends a close_notify, if the socket takes it at once.
    /// WebSocket: a close frame, likewise; reads then drop what the client
    /// still sends until its close (see [`lingers`](Transport::lingers)).
    pub fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        match &mut self.kind {
            Kind::WebSocket(s, ws) if how != Shutdown::Read => {
                ws.close();
                let _ = ws.flush(s);
            }
            _ if how != Shutdown::Read => self.close_notify(),
            _ => {}
        }
        self.tcp().shutdown(how)
    }

    /// Whether closing takes two steps: shut the write half, then read
    /// until the peer's end of stream (bounded by the caller's deadline).
    /// A WebSocket client answers the broker's close frame with its own,
    /// and a socket closed before that arrives would be reset under it.
    pub fn lingers(&self) -> bool {
        matches!(self.kind, Kind::WebSocket(..))
    }

    /// TLS: queues a close_notify and pushes it if the socket takes it at
    /// once (before the transport is dropped); TCP: nothing.
    pub fn close_notify(&mut self) {
        match &mut self.kind {
            Kind::Tcp(_) => {}
            Kind::TlsClient(s) => s.close_notify(),
            Kind::TlsServer(s) => s.close_notify(),
            // A WebSocket's close frame goes with `shutdown`.
            Kind::WebSocket(..) => {}
        }
    }

    /// For a [`connect_from`] transport, on writable (or closed) readiness:
    /// `Ok(true)` once connected, `Ok(false)` while still in progress (wait
    /// for the next writable), `Err` if the connect failed (refused,
    /// unreachable...).
    pub fn connect_result(&self) -> io::Result<bool> {
        let s = self.tcp();
        if let Some(e) = s.take_error()? {
            return Err(e);
        }
        match s.peer_addr() {
            Ok(_) => Ok(true),
            Err(e)
                if e.kind() == io::ErrorKind::NotConnected
                    || e.raw_os_error() == Some(libc::EINPROGRESS) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Gives up the socket, to hand it to another shard thread. Deregister
    /// it from this shard's reactor first (or use `Registrar::detach`): an
    /// epoll registration follows the socket, not the fd.
    ///
    /// TCP only: a TLS session cannot travel as an fd (it is dropped here,
    /// and the fd alone is useless).
    pub fn into_owned_fd(self) -> OwnedFd {
        match self.kind {
            Kind::Tcp(s) => OwnedFd::from(s),
            Kind::TlsClient(s) => {
                debug_assert!(false, "a TLS transport was given up as a bare fd");
                OwnedFd::from(s.into_tcp())
            }
            Kind::TlsServer(s) => {
                debug_assert!(false, "a TLS transport was given up as a bare fd");
                OwnedFd::from(s.tcp)
            }
            Kind::WebSocket(s, _) => {
                debug_assert!(false, "a WebSocket transport was given up as a bare fd");
                OwnedFd::from(s)
            }
        }
    }

    /// Adopts a connected, non-blocking TCP socket (one from
    /// [`Transport::into_owned_fd`] or an accept on another thread).
    pub fn from_owned_fd(fd: OwnedFd) -> Transport {
        debug_assert!(is_nonblocking(&fd), "adopted socket must be non-blocking");
        Transport {
            kind: Kind::Tcp(mio::net::TcpStream::from(fd)),
        }
    }

    fn tcp(&self) -> &mio::net::TcpStream {
        match &self.kind {
            Kind::Tcp(s) => s,
            Kind::TlsClient(s) => s.tcp(),
            Kind::WebSocket(s, _) => s,
            Kind::TlsServer(s) => &s.tcp,
        }
    }

    fn source(&mut self) -> &mut mio::net::TcpStream {
        match &mut self.kind {
            Kind::Tcp(s) => s,
            Kind::TlsClient(s) => s.tcp_mut(),
            Kind::WebSocket(s, _) => s,
            Kind::TlsServer(s) => &mut s.tcp,
        }
    }
}

impl Source for Transport {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.source().register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.source().reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.source().deregister(registry)
    }
}

/// A listening TCP socket; accepted connections are non-blocking
/// [`Transport`]s.
///
/// Owned by one shard thread (each shard binds its own with SO_REUSEPORT,
/// or adopts one with [`Listener::from_owned_fd`]); `Send`.
#[derive(Debug)]
pub struct Listener(mio::net::TcpListener);

impl Listener {
    /// Binds and listens on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`
    /// (one listener per shard on the same port), non-blocking.
    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        let bind = || -> io::Result<Socket> {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(true)?;
            socket.set_nonblocking(true)?;
            socket.bind(&addr.into())?;
            socket.listen(LISTEN_BACKLOG)?;
            Ok(socket)
        };
        let socket =
            bind().map_err(|e| io::Error::new(e.kind(), format!("listening on {addr}: {e}")))?;
        Ok(Listener(mio::net::TcpListener::from(OwnedFd::from(socket))))
    }

    /// Adopts a listening, non-blocking socket.
    pub fn from_owned_fd(fd: OwnedFd) -> Listener {
        debug_assert!(is_nonblocking(&fd), "adopted listener must be non-blocking");
        Listener(mio::net::TcpListener::from(fd))
    }

    /// Gives up the socket (deregister it first).
    pub fn into_owned_fd(self) -> OwnedFd {
        OwnedFd::from(self.0)
    }

    /// Accepts one connection; `WouldBlock` when none is waiting (accept
    /// until then on each readable event).
    pub fn accept(&self) -> io::Result<(Transport, SocketAddr)> {
        let (stream, addr) = retry_eintr(|| self.0.accept())?;
        Ok((
            Transport {
                kind: Kind::Tcp(stream),
            },
            addr,
        ))
    }

    /// The bound address (the real port after binding port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Source for Listener {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.0.register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        self.0.reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.0.deregister(registry)
    }
}

/// Starts a non-blocking connect to `addr`, from `source` when given (the
/// port is picked at connect time, `IP_BIND_ADDRESS_NO_PORT`, so many
/// sources share the ephemeral range), with `TCP_NODELAY` set.
///
/// Returns at once: register the transport `WRITABLE` and call
/// [`Transport::connect_result`] on each writable readiness.
pub fn connect_from(source: Option<IpAddr>, addr: SocketAddr) -> io::Result<Transport> {
    let start = || -> io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nodelay(true)?;
        if let Some(ip) = source {
            bind_address_no_port(&socket)?;
            socket.bind(&SocketAddr::new(ip, 0).into())?;
        }
        socket.set_nonblocking(true)?;
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        Ok(socket)
    };
    let socket = start().map_err(|e| {
        let from = source.map_or_else(String::new, |ip| format!(" from {ip}"));
        io::Error::new(e.kind(), format!("connecting to {addr}{from}: {e}"))
    })?;
    Ok(Transport {
        kind: Kind::Tcp(mio::net::TcpStream::from(OwnedFd::from(socket))),
    })
}

fn bind_address_no_port(socket: &Socket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn is_nonblocking(fd: &OwnedFd) -> bool {
    // SAFETY: F_GETFL on an fd we hold open reads its flags only.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    flags >= 0 && flags & libc::O_NONBLOCK != 0
}

pub(super) fn retry_eintr<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut tries = 0;
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted && tries < EINTR_RETRIES => {
                tries += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Read as _;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    use super::*;
    use crate::runtime::reactor::tests::{run_within, Probe};
    use crate::runtime::reactor::{Reactor, Readiness};

    const CONN: Token = Token(7);
    /// Bytes written at most while filling the socket buffers: far above
    /// what loopback buffers hold.
    const FILL_LIMIT: usize = 256 * 1024 * 1024;

    #[derive(Debug, PartialEq)]
    enum Step {
        Connecting,
        /// Filled until `WouldBlock`; waiting for writable.
        Blocked,
        Writable,
    }

    struct Writer {
        conn: Transport,
        step: Step,
        written: usize,
        start_reader: mpsc::Sender<usize>,
    }

    impl Writer {
        /// Fills the socket, then waits for it to become writable again.
        fn on_ready(&mut self, token: Token, r: Readiness) {
            assert_eq!(token, CONN);
            if !r.writable {
                return;
            }
            match self.step {
                Step::Connecting => {
                    if !self.conn.connect_result().expect("connect") {
                        return;
                    }
                    let chunk = [0x5a_u8; 64 * 1024];
                    loop {
                        match self.conn.write(&chunk) {
                            Ok(n) => self.written += n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => panic!("write: {e}"),
                        }
                        assert!(self.written < FILL_LIMIT, "write never blocked");
                    }
                    self.step = Step::Blocked;
                    self.start_reader.send(self.written).expect("reader alive");
                }
                Step::Blocked => self.step = Step::Writable,
                Step::Writable => {}
            }
        }
    }

    /// A loopback connection: the connecting end (connected, or nearly)
    /// and the accepted one. Loopback completes the handshake in the
    /// kernel; the accept is bounded (2 s).
    pub(crate) fn loopback_pair() -> (Transport, Transport) {
        let listener = Listener::bind("127.0.0.1:0".parse().expect("addr")).expect("listener");
        let addr = listener.local_addr().expect("addr");
        let conn = connect_from(None, addr).expect("connect");
        for _ in 0..2000 {
            match listener.accept() {
                Ok((t, _)) => return (conn, t),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        panic!("no connection accepted within 2 s");
    }

    #[test]
    fn a_blocked_write_gets_writable_once_the_peer_reads() {
        let (mut conn, peer) = loopback_pair();
        assert_eq!(
            peer.peer_addr().expect("peer"),
            conn.local_addr().expect("local")
        );

        // The peer reads only once told, then everything until EOF.
        let (start_reader, go) = mpsc::channel::<usize>();
        let reader = thread::spawn(move || {
            let Ok(_) = go.recv_timeout(Duration::from_secs(5)) else {
                return 0;
            };
            let mut s = std::net::TcpStream::from(peer.into_owned_fd());
            s.set_nonblocking(false).expect("blocking");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut buf = vec![0; 256 * 1024];
            let mut total = 0;
            loop {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return total,
                    Ok(n) => total += n,
                }
            }
        });

        let reactor = Reactor::new().expect("reactor");
        let registrar = reactor.registrar().expect("registrar");
        registrar
            .register(&mut conn, CONN, Interest::READABLE | Interest::WRITABLE)
            .expect("register");
        let writer = Writer {
            conn,
            step: Step::Connecting,
            written: 0,
            start_reader,
        };
        let probe = Probe::new(writer, Duration::from_secs(5), Writer::on_ready, |w| {
            w.step == Step::Writable
        });
        let writer = run_within(reactor, probe, Duration::from_secs(10)).state;
        assert_eq!(
            writer.step,
            Step::Writable,
            "no writable readiness after the peer read"
        );
        assert!(writer.written > 0);

        let written = writer.written;
        let Writer { conn, .. } = writer;
        let fd = registrar.detach(conn).expect("detach");
        drop(fd); // EOF for the reader
        assert_eq!(reader.join().expect("reader"), written);
    }

    #[test]
    fn a_refused_connect_is_reported_by_connect_result() {
        // A port that was just free: bind, note it, close.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let mut conn = connect_from(Some("127.0.0.1".parse().expect("ip")), addr).expect("start");
        let mut reactor = Reactor::new().expect("reactor");
        let registrar = reactor.registrar().expect("registrar");
        registrar
            .register(&mut conn, CONN, Interest::WRITABLE)
            .expect("register");

        let mut probe = Probe::new(
            (conn, None::<io::Result<bool>>),
            Duration::from_secs(2),
            |(conn, result), _, r| {
                if r.writable || r.closed {
                    match conn.connect_result() {
                        Ok(false) => {}
                        other => *result = Some(other),
                    }
                }
            },
            |(_, result)| result.is_some(),
        );
        reactor.run(&mut probe).expect("run");
        let err = match probe.state.1 {
            Some(Err(e)) => e,
            other => panic!("expected a refused connect, got {other:?}"),
        };
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
