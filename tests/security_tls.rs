//! TLS listeners (`certfile`, `keyfile`, `cafile`, `require_certificate`,
//! `use_identity_as_username`, `tls_version`) with real clients and
//! certificates made by the test (rcgen): Mosquitto's command-line clients
//! (`--cafile`) across two shards, rumqttc over rustls with and without a
//! client certificate, and a raw MQTT client over a blocking rustls stream
//! for versions, identities, certificate reload and a stalled handshake.
//! Config keys refused or ignored, and start-up errors naming file:line.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::certs::{Ca, Dir, Leaf};
use common::mosquitto_clients::{mosquitto_pub_v5, MosquittoSub};
use common::{block_on_timeout, connect_packet, TestBroker, WAIT};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned, SupportedProtocolVersion};
use shardmq::config::{Config, ListenerTls, TlsVersion};
use shardmq::protocol::{decode, ConnAck, DecodeError, Packet, ProtocolVersion, QoS, ReasonCode};

/// The broker's certificate: valid for 127.0.0.1 and localhost.
fn server_leaf(ca: &Ca) -> Leaf {
    ca.leaf_named(&["127.0.0.1", "localhost"], None)
}

/// A client certificate with subject CN `cn` (none if `None`).
fn client_leaf(ca: &Ca, cn: Option<&str>) -> Leaf {
    ca.leaf_named(&["client.test"], cn)
}

/// The files of a TLS listener: server certificate and key signed by
/// `server_ca`, `ca.pem` trusting `client_ca` for client certificates.
struct Files {
    dir: Dir,
    certfile: PathBuf,
    keyfile: PathBuf,
    cafile: PathBuf,
    /// The CA that signed the server certificate, as PEM (for clients).
    server_ca: PathBuf,
}

impl Files {
    fn new(test: &str, server_ca: &Ca, client_ca: &Ca) -> Files {
        let dir = Dir::new(&format!("sec-{test}"));
        let leaf = server_leaf(server_ca);
        Files {
            certfile: dir.write("server.pem", &leaf.cert_pem),
            keyfile: dir.write("server.key", &leaf.key_pem),
            cafile: dir.write("client-ca.pem", &client_ca.pem()),
            server_ca: dir.write("server-ca.pem", &server_ca.pem()),
            dir,
        }
    }

    /// A listener TLS section over these files.
    fn tls(&self) -> ListenerTls {
        ListenerTls {
            certfile: Some(self.certfile.clone()),
            keyfile: Some(self.keyfile.clone()),
            cafile: Some(self.cafile.clone()),
            ..ListenerTls::default()
        }
    }
}

/// A broker with `shards` shards whose one listener is TLS as `tls` says.
fn tls_broker(shards: usize, tls: ListenerTls, f: impl FnOnce(&mut Config)) -> TestBroker {
    TestBroker::with(shards, |c| {
        c.listeners[0].tls = Some(tls);
        f(c);
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A client configuration trusting `ca`, with `identity` if given.
fn client(
    ca: &Ca,
    identity: Option<&Leaf>,
    versions: &[&'static SupportedProtocolVersion],
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("client versions")
        .with_root_certificates(ca.roots());
    Arc::new(match identity {
        Some(leaf) => builder
            .with_client_auth_cert(vec![leaf.cert.clone()], leaf.key.clone_key())
            .expect("client identity"),
        None => builder.with_no_client_auth(),
    })
}

/// A raw MQTT client over a blocking rustls stream.
struct TlsClient {
    tls: StreamOwned<ClientConnection, TcpStream>,
    version: ProtocolVersion,
    buf: BytesMut,
}

impl TlsClient {
    /// Connects and completes the handshake; `Err` says why it failed.
    fn open(addr: SocketAddr, config: Arc<ClientConfig>) -> Result<TlsClient, String> {
        let tcp = TcpStream::connect(addr).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(WAIT)).expect("timeout");
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| e.to_string())?;
        }
        Ok(TlsClient {
            tls,
            version: ProtocolVersion::V311,
            buf: BytesMut::new(),
        })
    }

    /// Opens and sends CONNECT as `id` (3.1.1); the CONNACK, or why not.
    fn connect(
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        id: &str,
    ) -> Result<(TlsClient, ConnAck), String> {
        let mut c = TlsClient::open(addr, config)?;
        c.send(&Packet::Connect(Box::new(connect_packet(
            ProtocolVersion::V311,
            id,
            true,
            60,
        ))))?;
        match c.recv()? {
            Packet::ConnAck(ack) => Ok((c, ack)),
            other => Err(format!("expected CONNACK, got {other:?}")),
        }
    }

    fn send(&mut self, p: &Packet) -> Result<(), String> {
        let mut out = BytesMut::new();
        p.encode(self.version, &mut out).expect("encodable");
        self.tls.write_all(&out).map_err(|e| e.to_string())?;
        self.tls.flush().map_err(|e| e.to_string())
    }

    fn recv(&mut self) -> Result<Packet, String> {
        let deadline = Instant::now() + WAIT;
        loop {
            match decode(&mut self.buf, self.version, usize::MAX) {
                Ok(p) => return Ok(p),
                Err(DecodeError::Incomplete { .. }) => {}
                Err(DecodeError::Malformed(m)) => return Err(format!("malformed: {m}")),
            }
            if Instant::now() > deadline {
                return Err(format!("no packet within {WAIT:?}"));
            }
            let mut tmp = [0u8; 4096];
            match self.tls.read(&mut tmp) {
                Ok(0) => return Err("closed".to_string()),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    fn subscribe(&mut self, filter: &str) -> Result<(), String> {
        let sub = shardmq::protocol::Subscribe {
            packet_id: common::pid(1),
            filters: vec![(
                shardmq::protocol::TopicFilter::from_str(filter).expect("filter"),
                shardmq::protocol::SubscriptionOptions::new(QoS::AtLeastOnce),
            )],
            properties: Default::default(),
        };
        self.send(&Packet::Subscribe(sub))?;
        match self.recv()? {
            Packet::SubAck(_) => Ok(()),
            other => Err(format!("expected SUBACK, got {other:?}")),
        }
    }

    fn publish(&mut self, topic: &str, payload: &[u8]) -> Result<(), String> {
        self.send(&Packet::Publish(common::publish(
            topic,
            payload,
            QoS::AtMostOnce,
            false,
            0,
        )))
    }

    fn expect_payload(&mut self, payload: &[u8]) {
        match self.recv() {
            Ok(Packet::Publish(p)) => assert!(
                p.payload[..] == *payload,
                "a PUBLISH of {} bytes, not the {} expected",
                p.payload.len(),
                payload.len()
            ),
            Ok(other) => panic!("expected a PUBLISH, got {:?}", other),
            Err(e) => panic!("expected a PUBLISH of {} bytes: {e}", payload.len()),
        }
    }
}

fn accepted(result: Result<(TlsClient, ConnAck), String>) -> TlsClient {
    let (c, ack) = result.unwrap_or_else(|e| panic!("TLS connect failed: {e}"));
    assert_eq!(ack.code, ReasonCode::Success, "{ack:?}");
    c
}

#[test]
fn mosquitto_clients_publish_and_subscribe_over_tls_across_two_shards() {
    let ca = Ca::new("server CA");
    let files = Files::new("mosquitto", &ca, &ca);
    let b = tls_broker(2, files.tls(), |_| {});
    let port = b.addr.port();
    let cafile = files.server_ca.to_str().expect("utf-8 path");
    let mut sub = MosquittoSub::start(
        port,
        &b.id_on(1, "msub"),
        "tls/#",
        "%t %p",
        &["--cafile", cafile],
    );
    let out = mosquitto_pub_v5(
        port,
        &b.id_on(0, "mpub"),
        &[
            "--cafile", cafile, "-t", "tls/a", "-m", "over tls", "-q", "1",
        ],
        "",
    );
    assert!(out.status.success(), "mosquitto_pub: {out:?}");
    assert_eq!(sub.message(), "tls/a over tls");

    // TLS sessions accepted on one shard and homed on the other move with
    // their socket: connect until one has (each has even odds).
    let roots = client(&ca, None, BOTH);
    let mut tries = 0;
    while b.stats().iter().map(|s| s.handed_over).sum::<u64>() == 0 {
        tries += 1;
        assert!(tries <= 40, "no connection was handed over in 40 tries");
        let mut c = accepted(TlsClient::connect(
            b.addr,
            Arc::clone(&roots),
            &b.id_on(tries % 2, "h"),
        ));
        c.publish("tls/handed", b"after handover").expect("publish");
        assert_eq!(sub.message(), "tls/handed after handover");
        c.subscribe("own/#").expect("subscribe after handover");
    }
    b.stop();
}

#[test]
fn megabyte_messages_cross_a_tls_listener_both_ways_past_a_full_socket() {
    let ca = Ca::new("CA");
    let files = Files::new("megabytes", &ca, &ca);
    let b = tls_broker(2, files.tls(), |_| {});
    let roots = client(&ca, None, BOTH);
    let mut sub = accepted(TlsClient::connect(
        b.addr,
        Arc::clone(&roots),
        &b.id_on(0, "bigsub"),
    ));
    sub.subscribe("big/#").expect("subscribe");
    let mut publ = accepted(TlsClient::connect(b.addr, roots, &b.id_on(1, "bigpub")));
    let payloads: Vec<Vec<u8>> = (0..4u8)
        .map(|i| (0..1 << 20).map(|j| (j as u8) ^ i).collect())
        .collect();
    // The subscriber reads nothing until all are published: the broker's
    // records wait for a socket that does not take them.
    // QoS 1: queued for the subscriber, never dropped as slow.
    for (i, p) in payloads.iter().enumerate() {
        let id = i as u16 + 1;
        publ.send(&Packet::Publish(common::publish(
            "big/m",
            p,
            QoS::AtLeastOnce,
            false,
            id,
        )))
        .expect("publish 1 MiB");
        assert!(matches!(publ.recv(), Ok(Packet::PubAck(_))), "PUBACK {id}");
    }
    std::thread::sleep(Duration::from_millis(300));
    for p in &payloads {
        sub.expect_payload(p);
    }
    b.stop();
}

#[test]
fn require_certificate_refuses_a_client_without_one_and_admits_one_with_one() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = Files::new("require", &server_ca, &client_ca);
    let mut tls = files.tls();
    tls.require_certificate = true;
    let b = tls_broker(1, tls, |_| {});

    let err = TlsClient::connect(b.addr, client(&server_ca, None, BOTH), "none")
        .err()
        .expect("refused without a certificate");
    assert!(
        err.contains("CertificateRequired") || err.contains("closed") || err.contains("reset"),
        "{err}"
    );
    let stranger = client_leaf(&Ca::new("stranger"), Some("x"));
    assert!(TlsClient::connect(
        b.addr,
        client(&server_ca, Some(&stranger), BOTH),
        "stranger"
    )
    .is_err());
    let leaf = client_leaf(&client_ca, Some("sensor-1"));
    accepted(TlsClient::connect(
        b.addr,
        client(&server_ca, Some(&leaf), BOTH),
        "with",
    ));

    // rumqttc over rustls, with its own rustls: with and without the
    // client certificate.
    let rumqttc_connects = |identity: Option<&Leaf>| {
        let mut opts = rumqttc::MqttOptions::new("rumq", "127.0.0.1", b.addr.port());
        opts.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Simple {
                ca: server_ca.pem().into_bytes(),
                alpn: None,
                client_auth: identity.map(|l| {
                    (
                        l.cert_pem.clone().into_bytes(),
                        l.key_pem.clone().into_bytes(),
                    )
                }),
            },
        ));
        let (_client, mut events) = rumqttc::AsyncClient::new(opts, 10);
        block_on_timeout(WAIT * 2, async move {
            match events.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack))) => {
                    ack.code == rumqttc::ConnectReturnCode::Success
                }
                _ => false,
            }
        })
    };
    assert!(rumqttc_connects(Some(&leaf)), "rumqttc with a certificate");
    assert!(!rumqttc_connects(None), "rumqttc without a certificate");
    b.stop();
}

/// A client certificate of `ca` with serial number `serial`.
fn client_with_serial(ca: &Ca, serial: u64) -> Leaf {
    let mut params =
        rcgen::CertificateParams::new(vec!["client.test".to_string()]).expect("params");
    params.serial_number = Some(rcgen::SerialNumber::from(serial));
    ca.sign(params)
}

#[test]
fn crlfile_refuses_a_revoked_client_certificate() {
    let ca = Ca::new("CA");
    let files = Files::new("crl", &ca, &ca);
    let crl = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![rcgen::RevokedCertParams {
            serial_number: rcgen::SerialNumber::from(7u64),
            revocation_time: rcgen::date_time_ymd(2024, 1, 1),
            reason_code: Some(rcgen::RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(&ca.0)
    .expect("CRL")
    .pem()
    .expect("CRL PEM");
    let mut tls = files.tls();
    tls.require_certificate = true;
    tls.crlfile = Some(files.dir.write("crl.pem", &crl));
    let b = tls_broker(1, tls, |_| {});
    let revoked = client_with_serial(&ca, 7);
    let valid = client_with_serial(&ca, 8);
    assert!(
        TlsClient::connect(b.addr, client(&ca, Some(&revoked), BOTH), "revoked").is_err(),
        "a revoked certificate was admitted"
    );
    accepted(TlsClient::connect(
        b.addr,
        client(&ca, Some(&valid), BOTH),
        "valid",
    ));
    b.stop();
}

#[test]
fn use_identity_as_username_admits_a_certificate_client_where_anonymous_is_refused() {
    let ca = Ca::new("CA");
    let files = Files::new("identity", &ca, &ca);
    let mut tls = files.tls();
    tls.require_certificate = true;
    tls.use_identity_as_username = true;
    let b = tls_broker(2, tls.clone(), |c| c.allow_anonymous = false);
    let named = client_leaf(&ca, Some("sensor-17"));
    for shard in 0..2 {
        let mut c = accepted(TlsClient::connect(
            b.addr,
            client(&ca, Some(&named), BOTH),
            &b.id_on(shard, "cn"),
        ));
        c.subscribe("id/#").expect("subscribe");
    }
    // Without a CN there is no username: refused as anonymous would be.
    let nameless = client_leaf(&ca, None);
    let (_, ack) = TlsClient::connect(b.addr, client(&ca, Some(&nameless), BOTH), "nameless")
        .expect("handshake and CONNACK");
    assert_eq!(ack.code, ReasonCode::NotAuthorized);
    b.stop();

    // The control: the same certificate without use_identity_as_username
    // is an anonymous client, refused.
    tls.use_identity_as_username = false;
    let b = tls_broker(1, tls, |c| c.allow_anonymous = false);
    let (_, ack) = TlsClient::connect(b.addr, client(&ca, Some(&named), BOTH), "anon")
        .expect("handshake and CONNACK");
    assert_eq!(ack.code, ReasonCode::NotAuthorized);
    b.stop();
}

#[test]
fn tls_version_admits_only_the_version_it_names() {
    let ca = Ca::new("CA");
    let files = Files::new("versions", &ca, &ca);
    let tls12 = &[&rustls::version::TLS12][..];
    let tls13 = &[&rustls::version::TLS13][..];
    for (version, admitted, refused) in [
        (TlsVersion::Tls13, tls13, tls12),
        (TlsVersion::Tls12, tls12, tls13),
    ] {
        let mut tls = files.tls();
        tls.tls_version = Some(version);
        let b = tls_broker(1, tls, |_| {});
        accepted(TlsClient::connect(
            b.addr,
            client(&ca, None, admitted),
            "ok",
        ));
        let err = TlsClient::connect(b.addr, client(&ca, None, refused), "refused")
            .err()
            .unwrap_or_else(|| panic!("{version:?}: the other version was admitted"));
        assert!(
            err.contains("ProtocolVersion") || err.contains("alert"),
            "{version:?}: {err}"
        );
        b.stop();
    }
}

#[test]
fn a_certificate_reload_serves_new_handshakes_and_keeps_connected_clients() {
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let files = Files::new("reload", &old_ca, &old_ca);
    let b = tls_broker(2, files.tls(), |_| {});
    let mut kept = accepted(TlsClient::connect(
        b.addr,
        client(&old_ca, None, BOTH),
        &b.id_on(1, "kept"),
    ));
    kept.subscribe("r/#").expect("subscribe");

    let new = server_leaf(&new_ca);
    std::fs::write(&files.certfile, &new.cert_pem).expect("new certfile");
    std::fs::write(&files.keyfile, &new.key_pem).expect("new keyfile");
    let reload = |b: &TestBroker| {
        let mut config = Config {
            shards: Some(2),
            ..Config::default()
        };
        config.listeners = vec![shardmq::config::Listener::new(b.addr)];
        config.listeners[0].tls = Some(files.tls());
        b.handle().reload(config).expect("reloaded");
    };
    reload(&b);

    // New handshakes present the new certificate; the old CA no longer
    // verifies it.
    let mut fresh = accepted(TlsClient::connect(
        b.addr,
        client(&new_ca, None, BOTH),
        &b.id_on(0, "fresh"),
    ));
    assert!(TlsClient::connect(b.addr, client(&old_ca, None, BOTH), "old").is_err());
    // The connected client kept its session, both ways.
    fresh
        .publish("r/1", b"to the kept client")
        .expect("publish");
    kept.expect_payload(b"to the kept client");
    kept.publish("r/2", b"from the kept client")
        .expect("publish");
    kept.expect_payload(b"from the kept client");

    // A bad certificate on reload: the listener keeps the one it has.
    std::fs::write(&files.certfile, "not a certificate\n").expect("bad certfile");
    reload(&b);
    accepted(TlsClient::connect(
        b.addr,
        client(&new_ca, None, BOTH),
        "after-bad",
    ));
    b.stop();
}

#[test]
fn a_client_stalling_mid_handshake_is_closed_by_the_connect_timeout() {
    let ca = Ca::new("CA");
    let files = Files::new("stall", &ca, &ca);
    let b = tls_broker(1, files.tls(), |c| {
        c.connect_timeout = Duration::from_secs(1)
    });
    let mut tcp = TcpStream::connect(b.addr).expect("connect");
    // The start of a ClientHello record, then nothing.
    tcp.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01, 0x00])
        .expect("write");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let closed = loop {
        match tcp.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    b.stop();
}

fn parse_error(text: &str) -> String {
    Config::parse(text, "tls.conf")
        .expect_err("refused")
        .to_string()
}

#[test]
fn tls_keys_are_checked_together_and_openssl_only_keys_refused_or_ignored() {
    let (c, warnings) = Config::parse(
        "listener 0 127.0.0.1\ncertfile /c.pem\nkeyfile /k.pem\ncafile /ca.pem\nrequire_certificate true\nuse_identity_as_username true\ntls_version tlsv1.3\nciphers HIGH\ndhparamfile /dh.pem\n",
        "tls.conf",
    )
    .expect("parses");
    let tls = c.listeners[0].tls.as_ref().expect("TLS listener");
    assert_eq!(tls.certfile.as_deref(), Some(Path::new("/c.pem")));
    assert!(tls.require_certificate && tls.use_identity_as_username);
    assert_eq!(tls.tls_version, Some(TlsVersion::Tls13));
    let lines: Vec<(usize, bool)> = warnings
        .iter()
        .map(|w| (w.line, w.message.ends_with("; ignored")))
        .collect();
    assert_eq!(lines, [(8, true), (9, true)]);

    assert_eq!(
        parse_error("listener 0\ncertfile /c.pem"),
        "tls.conf:2: certfile: keyfile is not set in this listener: give the certificate's private key too"
    );
    assert!(
        parse_error("listener 0\ncertfile /c\nkeyfile /k\nrequire_certificate true")
            .starts_with("tls.conf:4: require_certificate: needs cafile or capath")
    );
    assert!(parse_error(
        "listener 0\ncertfile /c\nkeyfile /k\ncafile /a\nuse_identity_as_username true"
    )
    .starts_with("tls.conf:5: use_identity_as_username: needs require_certificate true"));
    assert!(parse_error("listener 0\ncafile /a")
        .starts_with("tls.conf:2: cafile: a TLS key on a listener without certfile and keyfile"));
    for (key, line) in [
        ("psk_hint", "psk_hint h"),
        ("psk_file", "psk_file /p"),
        ("tls_engine", "tls_engine pkcs11"),
        ("tls_keyform", "tls_keyform engine"),
        ("tls_version", "tls_version tlsv1.1"),
        ("use_subject_as_username", "use_subject_as_username true"),
    ] {
        let err = parse_error(&format!("listener 0\n{line}"));
        assert!(
            err.starts_with(&format!("tls.conf:2: {key}: not supported: ")),
            "{err}"
        );
    }
}

#[test]
fn unusable_files_stop_the_start_naming_file_line_and_key() {
    let ca = Ca::new("CA");
    let files = Files::new("start-errors", &ca, &ca);
    let bad_key = files.dir.write("other.key", &server_leaf(&ca).key_pem);
    let text = format!(
        "listener 0 127.0.0.1\ncertfile {}\nkeyfile {}\n",
        files.certfile.display(),
        bad_key.display()
    );
    let (config, _) = Config::parse(&text, "tls.conf").expect("parses");
    let err = shardmq::server::start(config)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.starts_with(&format!(
            "tls.conf:3: keyfile {}: not the key",
            bad_key.display()
        )),
        "{err}"
    );
    let text = format!(
        "listener 0 127.0.0.1\ncertfile {}\nkeyfile {}\n",
        files.cafile.display().to_string() + ".missing",
        files.keyfile.display()
    );
    let (config, _) = Config::parse(&text, "tls.conf").expect("parses");
    let err = shardmq::server::start(config)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.starts_with("tls.conf:2: certfile "), "{err}");
    assert!(err.contains("cannot read"), "{err}");
}

/// Runs shardmq-load with `args`; its JSON report, or its stderr.
fn load(args: &[&str]) -> Result<serde_json::Value, String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardmq-load"))
        .args(args)
        .output()
        .expect("run shardmq-load");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
}

#[test]
fn the_load_harness_speaks_tls_with_cafile() {
    let ca = Ca::new("CA");
    let files = Files::new("harness", &ca, &ca);
    let b = tls_broker(2, files.tls(), |_| {});
    let host = b.addr.to_string();
    let cafile = files.server_ca.to_str().expect("utf-8 path");
    let common = [
        "--host", &host, "--cafile", cafile, "--json", "--cores", "1",
    ];
    let pairs = load(
        &[
            &["pairs", "--pairs", "2", "--qos", "1", "--rate", "200"][..],
            &["--duration", "1s", "--warmup", "0s", "--grace", "2s"],
            &common,
        ]
        .concat(),
    )
    .expect("pairs over TLS");
    let count = |key: &str| {
        pairs[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {pairs}"))
    };
    assert!(count("delivered") > 0, "{pairs}");
    assert_eq!(count("delivered"), count("sent"), "{pairs}");
    assert_eq!(count("lost") + count("errors"), 0, "{pairs}");
    let idle = load(
        &[
            &["idle", "--connections", "20", "--duration", "1s"][..],
            &common,
        ]
        .concat(),
    )
    .expect("idle over TLS");
    assert_eq!(idle["idle"]["held"].as_u64(), Some(20), "{idle}");

    // A CA that did not sign the broker's certificate: every connection
    // fails, and the run says why.
    let stranger = files.dir.write("stranger.pem", &Ca::new("stranger").pem());
    let err = load(&[
        "idle",
        "--connections",
        "1",
        "--duration",
        "1s",
        "--connect-timeout",
        "2s",
        "--host",
        &host,
        "--cafile",
        stranger.to_str().expect("utf-8"),
    ])
    .expect_err("an untrusted broker certificate fails");
    assert!(err.contains("UnknownIssuer"), "{err}");
    b.stop();
}
