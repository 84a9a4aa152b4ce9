//! TLS client transports (the bridge's outgoing link), driven by a
//! `runtime::Reactor` with certificates made by the test (rcgen):
//!
//! - against a rustls server on a blocking thread: megabytes both ways
//!   with the socket full, close_notify, an untrusted certificate,
//!   `insecure`, client certificates, versions and ALPN;
//! - against Mosquitto's TLS listener (OpenSSL): an MQTT session with a
//!   client certificate carrying megabytes, and a refusal without one;
//! - the settings builder's errors.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::certs::{Ca, Dir, Leaf};
use common::mosquitto::Mosquitto;
use common::{connect_packet, pid, publish, RawClient};
use rustls::server::WebPkiClientVerifier;
use rustls::{ServerConfig, ServerConnection, StreamOwned, SupportedProtocolVersion};
use shardmq::protocol::{
    decode, Packet, Properties, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscriptionOptions,
    TopicFilter,
};
use shardmq::runtime::{
    client_config, connect_from, Driver, Interest, Reactor, Readiness, TlsClientOptions, Token,
    Transport,
};

const CONN: Token = Token(0);
/// How long a client loop or a server thread may take.
const LIMIT: Duration = Duration::from_secs(20);

// ---- A rustls server on a blocking thread.

const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server presenting `leaf`, offering ALPN `mqtt`, and requiring a
/// client certificate signed by `client_ca` when given.
fn server_config(
    leaf: &Leaf,
    client_ca: Option<&Ca>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("server versions");
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(ca.roots(), provider())
                .build()
                .expect("client verifier"),
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(vec![leaf.cert.clone()], leaf.key.clone_key())
        .expect("server config");
    config.alpn_protocols = vec![b"mqtt".to_vec()];
    Arc::new(config)
}

/// What the server saw of a connection that completed.
#[derive(Debug)]
struct Served {
    echoed: usize,
    client_certs: usize,
    version: Option<rustls::ProtocolVersion>,
    alpn: Option<Vec<u8>>,
}

type ServerResult = mpsc::Receiver<Result<Served, String>>;

/// Serves one connection on a blocking thread: handshake, then echo `echo`
/// bytes and close with a close_notify. With `hold`, reading waits for its
/// word (so the client fills the socket first). Every wait is bounded by
/// [`LIMIT`].
fn spawn_server(
    config: Arc<ServerConfig>,
    echo: usize,
    hold: Option<mpsc::Receiver<()>>,
) -> (SocketAddr, ServerResult) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(serve(&listener, config, echo, hold).map_err(|e| e.to_string()));
    });
    (addr, rx)
}

fn serve(
    listener: &TcpListener,
    config: Arc<ServerConfig>,
    echo: usize,
    hold: Option<mpsc::Receiver<()>>,
) -> io::Result<Served> {
    listener.set_nonblocking(true)?;
    let give_up = Instant::now() + LIMIT;
    let tcp = loop {
        match listener.accept() {
            Ok((tcp, _)) => break tcp,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < give_up => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(e),
        }
    };
    tcp.set_nonblocking(false)?;
    tcp.set_read_timeout(Some(LIMIT))?;
    tcp.set_write_timeout(Some(LIMIT))?;
    let session = ServerConnection::new(config).map_err(io::Error::other)?;
    let mut tls = StreamOwned::new(session, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    if let Some(hold) = hold {
        hold.recv_timeout(LIMIT).map_err(io::Error::other)?;
    }
    let mut buf = vec![0; 64 * 1024];
    let mut echoed = 0;
    while echoed < echo {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            break;
        }
        tls.write_all(&buf[..n])?;
        echoed += n;
    }
    tls.conn.send_close_notify();
    tls.flush()?;
    Ok(Served {
        echoed,
        client_certs: tls.conn.peer_certificates().map_or(0, |c| c.len()),
        version: tls.conn.protocol_version(),
        alpn: tls.conn.alpn_protocol().map(|p| p.to_vec()),
    })
}

fn served(rx: &ServerResult) -> Result<Served, String> {
    rx.recv_timeout(LIMIT).expect("server finished in time")
}

// ---- The client: one TLS transport in a reactor.

/// Sends `out` over a TLS transport and collects what comes back until
/// `want` bytes came (default: until EOF), an error, or [`LIMIT`].
struct Link {
    conn: Transport,
    connected: bool,
    out: Vec<u8>,
    sent: usize,
    got: Vec<u8>,
    want: usize,
    /// `write` calls answered `WouldBlock` while records waited for the
    /// socket (not just for the handshake).
    socket_blocks: usize,
    /// Told at the first of those.
    on_socket_full: Option<mpsc::Sender<()>>,
    eof: bool,
    error: Option<io::Error>,
    give_up: Instant,
}

impl Link {
    /// Starts a connect to `addr` and TLS as `server_name` with `opts`.
    fn new(addr: SocketAddr, server_name: &str, opts: &TlsClientOptions, out: Vec<u8>) -> Link {
        let config = client_config(opts).expect("client config");
        let tcp = connect_from(None, addr).expect("connect");
        Link {
            conn: Transport::tls_client(tcp, config, server_name).expect("tls client"),
            connected: false,
            out,
            sent: 0,
            got: Vec::new(),
            want: usize::MAX,
            socket_blocks: 0,
            on_socket_full: None,
            eof: false,
            error: None,
            give_up: Instant::now() + LIMIT,
        }
    }

    /// Runs the loop until the link is finished.
    fn run(mut self) -> Link {
        let mut reactor = Reactor::new().expect("reactor");
        reactor
            .registrar()
            .expect("registrar")
            .register(
                &mut self.conn,
                CONN,
                Interest::READABLE | Interest::WRITABLE,
            )
            .expect("register");
        reactor.run(&mut self).expect("reactor");
        self
    }

    /// The loop of `runtime::transport`'s doc: read until `WouldBlock`,
    /// then write what waits, then flush.
    fn pump(&mut self) -> io::Result<()> {
        let mut buf = [0; 16 * 1024];
        while !self.eof {
            match self.conn.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        while self.sent < self.out.len() {
            let end = self.out.len().min(self.sent + 64 * 1024);
            match self.conn.write(&self.out[self.sent..end]) {
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.conn.wants_write() {
                        self.socket_blocks += 1;
                        if let Some(tell) = self.on_socket_full.take() {
                            let _ = tell.send(());
                        }
                    }
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        match self.conn.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(()),
        }
    }

    /// The TLS error the link ended with, failing the test if none.
    fn tls_error(self) -> String {
        match self.error {
            Some(e) => {
                assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
                e.to_string()
            }
            None => panic!("no TLS error; the link got {} bytes", self.got.len()),
        }
    }

    /// Asserts the link ended cleanly with `out` echoed back.
    fn assert_echoed(&self) {
        assert!(self.error.is_none(), "link: {:?}", self.error);
        assert!(self.eof, "no EOF within {LIMIT:?}");
        assert_eq!(self.sent, self.out.len());
        assert!(
            self.got == self.out,
            "echo differs ({} bytes)",
            self.got.len()
        );
    }
}

impl Driver for Link {
    fn ready(&mut self, token: Token, r: Readiness) {
        assert_eq!(token, CONN);
        if !self.connected {
            if !(r.writable || r.closed) {
                return;
            }
            match self.conn.connect_result() {
                Ok(true) => self.connected = true,
                Ok(false) => return,
                Err(e) => {
                    self.error = Some(e);
                    return;
                }
            }
        }
        if let Err(e) = self.pump() {
            self.error = Some(e);
        }
    }
    /// Only wakes the loop to give up.
    fn next_deadline(&self) -> Option<Instant> {
        Some(self.give_up)
    }
    fn finished(&self) -> bool {
        self.got.len() >= self.want
            || self.eof
            || self.error.is_some()
            || Instant::now() >= self.give_up
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn trusting(cafile: &Path) -> TlsClientOptions<'_> {
    TlsClientOptions {
        cafile: Some(cafile),
        ..TlsClientOptions::default()
    }
}

// ---- Against a rustls server.

#[test]
fn megabytes_cross_both_ways_with_the_socket_full_and_close_notify_reads_as_eof() {
    const PAYLOAD: usize = 8 * 1024 * 1024;
    let dir = Dir::new("megabytes");
    let ca = Ca::new("test CA");
    let server = ca.leaf(&["localhost", "127.0.0.1"]);
    let (socket_full, hold) = mpsc::channel();
    let (addr, rx) = spawn_server(server_config(&server, None, BOTH), PAYLOAD, Some(hold));
    let cafile = dir.write("ca.pem", &ca.pem());

    let mut link = Link::new(addr, "localhost", &trusting(&cafile), pattern(PAYLOAD));
    link.on_socket_full = Some(socket_full);
    let link = link.run();
    link.assert_echoed();
    assert!(link.socket_blocks > 0, "the socket never filled");
    assert!(!link.conn.wants_write());
    let served = served(&rx).expect("server");
    assert_eq!(served.echoed, PAYLOAD);
    assert_eq!(served.client_certs, 0);
    assert_eq!(served.version, Some(rustls::ProtocolVersion::TLSv1_3));
}

/// Echoes 100 bytes through a server with `config`, asserting it worked;
/// what the server saw.
fn echo(config: &Arc<ServerConfig>, server_name: &str, opts: &TlsClientOptions) -> Served {
    let (addr, rx) = spawn_server(Arc::clone(config), 100, None);
    Link::new(addr, server_name, opts, pattern(100))
        .run()
        .assert_echoed();
    served(&rx).expect("server")
}

/// Tries to echo through a server with `config`, expecting a TLS error:
/// the client's error and the server's.
fn refused(
    config: &Arc<ServerConfig>,
    server_name: &str,
    opts: &TlsClientOptions,
) -> (String, String) {
    let (addr, rx) = spawn_server(Arc::clone(config), 100, None);
    let client = Link::new(addr, server_name, opts, pattern(100))
        .run()
        .tls_error();
    let server = served(&rx).expect_err("the server saw no error");
    (client, server)
}

/// A server whose certificate (for `name`) one CA signed, and the PEM
/// files of that CA and of another one.
struct TwoCas {
    config: Arc<ServerConfig>,
    signer: PathBuf,
    other: PathBuf,
    _dir: Dir,
}

impl TwoCas {
    fn new(test: &str, name: &str) -> TwoCas {
        let dir = Dir::new(test);
        let (signer, other) = (Ca::new("server CA"), Ca::new("other CA"));
        TwoCas {
            config: server_config(&signer.leaf(&[name]), None, BOTH),
            signer: dir.write("signer.pem", &signer.pem()),
            other: dir.write("other.pem", &other.pem()),
            _dir: dir,
        }
    }
}

#[test]
fn an_untrusted_server_certificate_fails_naming_the_certificate() {
    let cas = TwoCas::new("untrusted", "localhost");

    let (client, server) = refused(&cas.config, "localhost", &trusting(&cas.other));
    assert_eq!(
        client,
        "TLS handshake with localhost: invalid peer certificate: UnknownIssuer \
         (not signed by any trusted CA certificate)"
    );
    assert!(server.contains("UnknownCA"), "server saw: {server}");
}

#[test]
fn insecure_accepts_a_wrong_host_name_but_not_an_unknown_ca() {
    let cas = TwoCas::new("insecure", "elsewhere.example");

    // Checked: the name is wrong.
    let strict = trusting(&cas.signer);
    let (err, _) = refused(&cas.config, "localhost", &strict);
    assert!(err.contains("not valid for name \"localhost\""), "{err}");

    // Insecure: the name is not checked, the chain still is.
    let insecure = TlsClientOptions {
        insecure: true,
        ..strict
    };
    assert_eq!(echo(&cas.config, "localhost", &insecure).echoed, 100);
    let unknown_ca = TlsClientOptions {
        cafile: Some(&cas.other),
        ..insecure
    };
    let (err, _) = refused(&cas.config, "localhost", &unknown_ca);
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[test]
fn a_client_certificate_is_presented_to_a_server_requiring_one() {
    let dir = Dir::new("client-cert");
    let (server_ca, client_ca) = (Ca::new("server CA"), Ca::new("client CA"));
    let config = server_config(&server_ca.leaf(&["127.0.0.1"]), Some(&client_ca), BOTH);
    // The CA comes from a directory, beside a file that holds none.
    let capath = Dir::new("client-cert-capath");
    capath.write("server-ca.pem", &server_ca.pem());
    capath.write("README", "not a certificate\n");
    let leaf = client_ca.leaf(&["bridge.example"]);
    let certfile = dir.write("client.pem", &leaf.cert_pem);
    let keyfile = dir.write("client.key", &leaf.key_pem);
    let with_cert = TlsClientOptions {
        capath: Some(&capath.0),
        certfile: Some(&certfile),
        keyfile: Some(&keyfile),
        ..TlsClientOptions::default()
    };

    assert_eq!(echo(&config, "127.0.0.1", &with_cert).client_certs, 1);

    // Without one, the server refuses (TLS 1.3: after the client's side of
    // the handshake, so the refusal comes with the first read).
    let without = TlsClientOptions {
        certfile: None,
        keyfile: None,
        ..with_cert
    };
    let (err, _) = refused(&config, "127.0.0.1", &without);
    assert_eq!(
        err,
        "TLS session with 127.0.0.1: received fatal alert: CertificateRequired \
         (the server requires a client certificate)"
    );
}

#[test]
fn tls_version_and_alpn_follow_the_settings() {
    let dir = Dir::new("versions");
    let ca = Ca::new("test CA");
    let cafile = dir.write("ca.pem", &ca.pem());
    let tls12_only = server_config(&ca.leaf(&["localhost"]), None, &[&rustls::version::TLS12]);

    let tls12 = TlsClientOptions {
        tls_version: "tlsv1.2",
        alpn: Some("mqtt"),
        ..trusting(&cafile)
    };
    let served = echo(&tls12_only, "localhost", &tls12);
    assert_eq!(served.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(served.alpn.as_deref(), Some(&b"mqtt"[..]));

    let tls13 = TlsClientOptions {
        tls_version: "tlsv1.3",
        ..tls12
    };
    let (err, _) = refused(&tls12_only, "localhost", &tls13);
    assert!(err.starts_with("TLS handshake with localhost: "), "{err}");
}

// ---- Against Mosquitto (OpenSSL).

/// A Mosquitto TLS listener requiring a client certificate; its directory
/// also holds `server-ca.pem`, `client.pem` and `client.key` for the link.
fn tls_mosquitto(test: &str) -> Option<Mosquitto> {
    tls_mosquitto_and(test, "")
}

/// [`tls_mosquitto`] with `more` lines after the TLS listener's (another
/// listener, say).
fn tls_mosquitto_and(test: &str, more: &str) -> Option<Mosquitto> {
    Mosquitto::start(test, |dir| {
        let (server_ca, client_ca) = (Ca::new("server CA"), Ca::new("client CA"));
        let server = server_ca.leaf(&["127.0.0.1"]);
        let client = client_ca.leaf(&["bridge.example"]);
        for (name, pem) in [
            ("server-ca.pem", server_ca.pem()),
            ("client-ca.pem", client_ca.pem()),
            ("server.pem", server.cert_pem),
            ("server.key", server.key_pem),
            ("client.pem", client.cert_pem),
            ("client.key", client.key_pem),
        ] {
            std::fs::write(dir.join(name), pem).expect("write certificate");
        }
        let d = dir.display();
        format!(
            "cafile {d}/client-ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
             require_certificate true\n{more}"
        )
    })
}

/// The bridge over TLS: a `connection` with `bridge_cafile` and a client
/// certificate, to a Mosquitto that requires one; messages both ways
/// (checked through a plain listener of the same Mosquitto).
#[test]
fn a_bridge_link_over_tls_with_a_client_certificate_carries_both_ways() {
    let plain = common::free_port();
    let Some(m) = tls_mosquitto_and("bridge", &format!("listener {plain} 127.0.0.1\n")) else {
        return;
    };
    let d = m.dir.display();
    let conf = format!(
        "connection tls\naddress 127.0.0.1:{}\nbridge_cafile {d}/server-ca.pem\n\
         bridge_certfile {d}/client.pem\nbridge_keyfile {d}/client.key\n\
         topic up/# out 1\ntopic down/# in 1\n",
        m.port
    );
    let (parsed, _) = shardmq::config::Config::parse(&conf, "edge.conf").expect("valid");
    let edge = common::TestBroker::with(1, |c| c.bridges = parsed.bridges);
    edge.wait_bridge("tls");
    let cloud = SocketAddr::from(([127, 0, 0, 1], plain));
    let v = ProtocolVersion::V311;
    let (mut cloud_sub, _) = RawClient::connected(cloud, connect_packet(v, "cloud-sub", true, 60));
    cloud_sub.subscribe("up/#", QoS::AtLeastOnce);
    let (mut edge_sub, _) =
        RawClient::connected(edge.addr, connect_packet(v, "edge-sub", true, 60));
    edge_sub.subscribe("down/#", QoS::AtLeastOnce);
    let (mut edge_pub, _) =
        RawClient::connected(edge.addr, connect_packet(v, "edge-pub", true, 60));
    edge_pub.publish("up/1", b"over tls", QoS::AtLeastOnce, false, 1);
    assert_eq!(&cloud_sub.expect_publish().payload[..], b"over tls");
    let (mut cloud_pub, _) = RawClient::connected(cloud, connect_packet(v, "cloud-pub", true, 60));
    // The link's remote subscription may still be on its way.
    let deadline = Instant::now() + LIMIT;
    loop {
        cloud_pub.publish("down/1", b"back", QoS::AtLeastOnce, false, 1);
        if let Some(Some(Packet::Publish(p))) = edge_sub.recv_within(Duration::from_millis(200)) {
            assert_eq!(&p.payload[..], b"back");
            break;
        }
        assert!(Instant::now() < deadline, "nothing came back over TLS");
    }
}

/// CONNECT, SUBSCRIBE to `topic` and PUBLISH `payload` there, at once
/// (Mosquitto handles them in order), and the length of the CONNACK,
/// SUBACK and PUBLISH that should come back.
fn mqtt_echo(topic: &str, payload: &[u8]) -> (Vec<u8>, usize) {
    let v = ProtocolVersion::V311;
    let publish = Packet::Publish(publish(topic, payload, QoS::AtMostOnce, false, 0));
    let packets = [
        Packet::Connect(Box::new(connect_packet(v, "tls-link", true, 60))),
        Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![(
                TopicFilter::new(Bytes::copy_from_slice(topic.as_bytes())).expect("filter"),
                SubscriptionOptions::new(QoS::AtMostOnce),
            )],
            properties: Properties::default(),
        }),
    ];
    let mut out = BytesMut::new();
    for p in packets.iter().chain([&publish]) {
        p.encode(v, &mut out).expect("encodable");
    }
    let back = 4 + 5 + publish.encoded_len(v).expect("encodable");
    (out.to_vec(), back)
}

#[test]
fn a_tls_link_with_a_client_certificate_carries_megabytes_through_mosquitto() {
    let Some(m) = tls_mosquitto("megabytes") else {
        return;
    };
    let (cafile, certfile, keyfile) = (
        m.dir.join("server-ca.pem"),
        m.dir.join("client.pem"),
        m.dir.join("client.key"),
    );
    let opts = TlsClientOptions {
        certfile: Some(&certfile),
        keyfile: Some(&keyfile),
        ..trusting(&cafile)
    };
    let payload = pattern(4 * 1024 * 1024);
    let (out, back) = mqtt_echo("tls/echo", &payload);

    let mut link = Link::new(([127, 0, 0, 1], m.port).into(), "127.0.0.1", &opts, out);
    link.want = back;
    let link = link.run();
    assert!(link.error.is_none(), "link: {:?}", link.error);
    assert_eq!(link.got.len(), back, "eof: {}", link.eof);
    let mut got = BytesMut::from(&link.got[..]);
    let mut next = || decode(&mut got, ProtocolVersion::V311, usize::MAX).expect("a packet");
    match next() {
        Packet::ConnAck(ack) => assert_eq!(ack.code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    assert!(matches!(next(), Packet::SubAck(_)));
    match next() {
        Packet::Publish(p) => assert!(p.payload == payload, "payload differs"),
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[test]
fn mosquitto_refuses_a_tls_link_without_a_client_certificate() {
    let Some(m) = tls_mosquitto("no-client-cert") else {
        return;
    };
    let cafile = m.dir.join("server-ca.pem");
    let (out, back) = mqtt_echo("tls/echo", b"hi");

    let mut link = Link::new(
        ([127, 0, 0, 1], m.port).into(),
        "127.0.0.1",
        &trusting(&cafile),
        out,
    );
    link.want = back;
    let err = link.run().tls_error();
    assert!(err.contains("CertificateRequired"), "{err}");
}

// ---- The settings builder.

/// `client_config`'s error for `opts`, as text.
fn config_error(opts: &TlsClientOptions) -> String {
    match client_config(opts) {
        Ok(_) => panic!("accepted: {opts:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn settings_errors_name_the_key_the_file_and_the_fix() {
    let dir = Dir::new("settings");
    let ca = Ca::new("test CA");
    let cafile = dir.write("ca.pem", &ca.pem());
    let empty = dir.write("empty.pem", "");
    let leaf = ca.leaf(&["bridge.example"]);
    let certfile = dir.write("client.pem", &leaf.cert_pem);
    let other_key = dir.write("other.key", &ca.leaf(&["x.example"]).key_pem);
    let missing = dir.0.join("missing.pem");
    let no_certs = Dir::new("settings-capath");
    no_certs.write("README", "nothing here\n");
    let ok = trusting(&cafile);
    assert!(client_config(&ok).is_ok());

    let err = config_error(&TlsClientOptions::default());
    assert!(
        err.starts_with("bridge_cafile: neither bridge_cafile nor bridge_capath is set"),
        "{err}"
    );

    let err = config_error(&trusting(&empty));
    assert_eq!(
        err,
        format!(
            "bridge_cafile {}: no certificates found \
             (expected PEM \"-----BEGIN CERTIFICATE-----\" blocks)",
            empty.display()
        )
    );

    let err = config_error(&trusting(&missing));
    let prefix = format!("bridge_cafile {}: cannot read: ", missing.display());
    assert!(err.starts_with(&prefix), "{err}");

    let in_dir = |capath| TlsClientOptions {
        capath: Some(capath),
        ..TlsClientOptions::default()
    };
    let no_dir = dir.0.join("no-such-dir");
    let err = config_error(&in_dir(&no_dir));
    assert!(err.contains("cannot read the directory"), "{err}");
    let err = config_error(&in_dir(&no_certs.0));
    assert!(
        err.starts_with("bridge_capath ") && err.contains("no certificates found in its files"),
        "{err}"
    );

    let err = config_error(&TlsClientOptions {
        certfile: Some(&certfile),
        ..ok
    });
    assert!(
        err.starts_with("bridge_keyfile: bridge_certfile is set without it"),
        "{err}"
    );

    let err = config_error(&TlsClientOptions {
        certfile: Some(&certfile),
        keyfile: Some(&certfile),
        ..ok
    });
    let prefix = format!(
        "bridge_keyfile {}: no private key found",
        certfile.display()
    );
    assert!(err.starts_with(&prefix), "{err}");

    let err = config_error(&TlsClientOptions {
        certfile: Some(&certfile),
        keyfile: Some(&other_key),
        ..ok
    });
    assert_eq!(
        err,
        format!(
            "bridge_keyfile {}: not the key of the certificate in bridge_certfile",
            other_key.display()
        )
    );

    let err = config_error(&TlsClientOptions {
        tls_version: "tlsv1.1",
        ..ok
    });
    assert!(
        err.starts_with("bridge_tls_version: \"tlsv1.1\" is not supported: use tlsv1.2"),
        "{err}"
    );

    let err = config_error(&TlsClientOptions {
        alpn: Some(""),
        ..ok
    });
    assert!(err.starts_with("bridge_alpn: "), "{err}");
}
