//! `password_file` and `allow_anonymous` with Mosquitto 2.0's meaning:
//! hashes made by the real `mosquitto_passwd` ($7$ PBKDF2-SHA512, $6$
//! SHA-512), every refusal alike (and alike to Mosquitto's), anonymous
//! clients refused with a configuration file unless allowed, per-listener
//! files, SIGHUP reloads, and the verifier threads' bound.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use common::mosquitto::{mosquitto_installed, temp_dir, Mosquitto};
use common::mosquitto_clients::mosquitto_pub_v5;
use common::*;
use shardmq::config::{Config, Listener, Security};
use shardmq::protocol::{
    ConnAck, Connect, Packet, ProtocolVersion, QoS, ReasonCode, Subscribe, SubscriptionOptions,
    TopicFilter,
};

/// Adds `user` with `password` to `file` with the real `mosquitto_passwd`
/// (`-H sha512` for a `$6$` hash; the default is `$7$`).
fn mosquitto_passwd(file: &Path, user: &str, password: &str, sha512: bool) {
    let mut cmd = Command::new("mosquitto_passwd");
    if sha512 {
        cmd.args(["-H", "sha512"]);
    }
    if !file.exists() {
        cmd.arg("-c");
    }
    let status = cmd
        .args(["-b", file.to_str().expect("a UTF-8 path"), user, password])
        .status()
        .expect("mosquitto_passwd runs (apt-get install mosquitto)");
    assert!(status.success(), "mosquitto_passwd {user}");
}

/// A `$7$` line made here (PBKDF2-HMAC-SHA512, as mosquitto_passwd
/// does), for tests that need no real tool or a slow hash.
fn hash_line(user: &str, password: &str, iterations: u32) -> String {
    let salt = [7u8; 12];
    let mut out = [0u8; 64];
    let n = std::num::NonZeroU32::new(iterations).expect("iterations > 0");
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA512,
        n,
        &salt,
        password.as_bytes(),
        &mut out,
    );
    format!(
        "{user}:$7${iterations}${}${}\n",
        STANDARD.encode(salt),
        STANDARD.encode(out)
    )
}

/// A broker with `shards` shards whose password file (returned with it)
/// lists alice/secret hashed with `iterations`; anonymous clients refused;
/// `f` adjusts the rest.
fn broker_with_alice(
    test: &str,
    shards: usize,
    iterations: u32,
    f: impl FnOnce(&mut Config),
) -> (TestBroker, PathBuf) {
    let file = temp_dir(test).join("passwd");
    std::fs::write(&file, hash_line("alice", "secret", iterations)).unwrap();
    (broker_on(&file, shards, f), file)
}

/// A broker with `shards` shards checking user names against `file`;
/// anonymous clients refused; `f` adjusts the rest.
fn broker_on(file: &Path, shards: usize, f: impl FnOnce(&mut Config)) -> TestBroker {
    TestBroker::with(shards, |c| {
        c.allow_anonymous = false;
        c.password_file = Some(file.to_path_buf());
        f(c);
    })
}

/// A CONNECT as `user`/`password` (either may be absent).
fn login(
    version: ProtocolVersion,
    id: &str,
    clean: bool,
    user: Option<&str>,
    password: Option<&str>,
) -> Connect {
    let mut connect = connect_packet(version, id, clean, 60);
    connect.username = user.map(str::to_string);
    connect.password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    connect
}

/// alice's CONNECT with her password, sent on a new connection.
fn send_alice(addr: SocketAddr, version: ProtocolVersion, id: &str, clean: bool) -> RawClient {
    let mut c = RawClient::open(addr, version);
    let connect = login(version, id, clean, Some("alice"), Some("secret"));
    c.send(&Packet::Connect(Box::new(connect)));
    c
}

/// The CONNACK to a CONNECT as `user`/`password`.
fn connect_as(
    addr: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> ConnAck {
    RawClient::connect_with(addr, login(version, id, true, user, password)).1
}

/// The CONNACK codes of the cases every test of refusals looks at, for
/// `version`: right ($7$), right ($6$), wrong password, unknown user,
/// user without password, anonymous.
fn outcomes(addr: SocketAddr, version: ProtocolVersion, id: &str) -> Vec<ReasonCode> {
    let cases: [(Option<&str>, Option<&str>); 6] = [
        (Some("alice"), Some("secret")),
        (Some("bob"), Some("hunter2")),
        (Some("alice"), Some("Secret")),
        (Some("carol"), Some("secret")),
        (Some("alice"), None),
        (None, None),
    ];
    cases
        .iter()
        .enumerate()
        .map(|(i, (u, p))| connect_as(addr, version, &format!("{id}-{i}"), *u, *p).code)
        .collect()
}

/// alice ($7$, the default) and bob ($6$) made by mosquitto_passwd in a
/// fresh folder; `None` when mosquitto is not installed (fails under CI).
fn real_password_file(test: &str) -> Option<PathBuf> {
    if !mosquitto_installed(test) {
        return None;
    }
    let file = temp_dir(test).join("passwd");
    mosquitto_passwd(&file, "alice", "secret", false);
    mosquitto_passwd(&file, "bob", "hunter2", true);
    let text = std::fs::read_to_string(&file).expect("written");
    assert!(
        text.contains("alice:$7$101$") && text.contains("bob:$6$"),
        "{text}"
    );
    Some(file)
}

/// What every failed authentication gets: Not authorized, whatever was wrong.
fn refused(version: ProtocolVersion) -> Vec<ReasonCode> {
    let _ = version; // 3.x rc 5 decodes to the same reason code
    vec![
        ReasonCode::Success,
        ReasonCode::Success,
        ReasonCode::NotAuthorized,
        ReasonCode::NotAuthorized,
        ReasonCode::NotAuthorized,
        ReasonCode::NotAuthorized,
    ]
}

#[test]
fn mosquitto_passwd_hashes_let_their_users_in_and_nobody_else() {
    let Some(file) = real_password_file("pw-real") else {
        return;
    };
    let b = broker_on(&file, 2, |_| {});
    for version in VERSIONS {
        for shard in 0..b.shards {
            let id = b.id_on(shard, &format!("{version:?}"));
            assert_eq!(outcomes(b.addr, version, &id), refused(version), "{id}");
        }
    }
    // Unknown user and wrong password: one answer, Reason String included.
    let v5 = ProtocolVersion::V5;
    let wrong = connect_as(b.addr, v5, "w", Some("alice"), Some("nope"));
    let unknown = connect_as(b.addr, v5, "u", Some("mallory"), Some("nope"));
    assert_eq!(wrong, unknown);
    assert_eq!(
        wrong.properties.reason_string.as_deref(),
        Some("not authorized")
    );
    b.stop();
}

#[test]
fn what_follows_connect_is_served_once_the_password_is_checked() {
    let (b, _) = broker_with_alice("pw-pipelined", 2, 101, |_| {});
    for version in VERSIONS {
        let mut c = send_alice(b.addr, version, &format!("pipe{version:?}"), true);
        // SUBSCRIBE right behind CONNECT: it arrives while the check runs.
        c.send(&Packet::Subscribe(Subscribe {
            packet_id: pid(1),
            filters: vec![(
                TopicFilter::from_str("p/#").unwrap(),
                SubscriptionOptions::new(QoS::AtLeastOnce),
            )],
            properties: Default::default(),
        }));
        match c.recv() {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, ReasonCode::Success),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        match c.recv() {
            Some(Packet::SubAck(a)) => assert_eq!(a.codes, [ReasonCode::GrantedQoS1]),
            other => panic!("expected SUBACK, got {other:?}"),
        }
        c.publish("p/1", b"x", QoS::AtMostOnce, false, 0);
        assert_eq!(c.expect_publish().payload.as_ref(), b"x");
    }
    b.stop();
}

#[test]
fn refusals_match_mosquitto_2() {
    let Some(file) = real_password_file("pw-compare") else {
        return;
    };
    let conf = format!("allow_anonymous false\npassword_file {}\n", file.display());
    let Some(theirs) = Mosquitto::start("pw-compare", |_| conf.clone()) else {
        return;
    };
    let b = broker_on(&file, 1, |_| {});
    for version in VERSIONS {
        let ours = outcomes(b.addr, version, "cmp");
        assert_eq!(ours, outcomes(theirs.addr(), version, "cmp"), "{version:?}");
    }
    b.stop();
}

#[test]
fn mosquitto_pub_connects_with_its_user_and_password_only() {
    let Some(file) = real_password_file("pw-pub") else {
        return;
    };
    let b = broker_on(&file, 2, |_| {});
    let port = b.addr.port().to_string();
    for (user, password, ok) in [("alice", "secret", true), ("bob", "hunter2", true)]
        .into_iter()
        .chain([("alice", "hunter2", false), ("dave", "secret", false)])
    {
        let args = ["-u", user, "-P", password, "-t", "t", "-m", "x"];
        let v5 = mosquitto_pub_v5(b.addr.port(), "pub5", &args, "");
        let v311 = Command::new("timeout")
            .args([
                "10",
                "mosquitto_pub",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                "311",
            ])
            .args(args)
            .output()
            .expect("mosquitto_pub runs");
        let err = String::from_utf8_lossy(&v311.stderr);
        assert_eq!(v5.status.success(), ok, "{user}/{password} (5.0)");
        assert_eq!(
            v311.status.success(),
            ok,
            "{user}/{password} (3.1.1): {err}"
        );
        if !ok {
            assert!(err.contains("not authorised"), "{err}");
        }
    }
    b.stop();
}

/// Parses `text`, then puts its listeners on free ports of 127.0.0.1.
fn from_file(text: &str) -> Config {
    let (mut config, _) = Config::parse(text, "test.conf").expect("parses");
    config.shards = Some(1);
    for l in &mut config.listeners {
        l.addr = "127.0.0.1:0".parse().unwrap();
    }
    config
}

#[test]
fn with_a_config_file_anonymous_clients_need_allow_anonymous() {
    let dir = temp_dir("pw-anonymous");
    let file = dir.join("passwd");
    std::fs::write(&file, hash_line("alice", "secret", 101)).unwrap();
    let v5 = ProtocolVersion::V5;
    let pw = format!("password_file {}\n", file.display());
    for (text, anonymous) in [
        (format!("listener 0\n{pw}"), ReasonCode::NotAuthorized),
        ("listener 0\n".to_string(), ReasonCode::NotAuthorized),
        (
            format!("listener 0\nallow_anonymous true\n{pw}"),
            ReasonCode::Success,
        ),
        // Local only mode (no listener): anonymous clients allowed.
        (pw.clone(), ReasonCode::Success),
    ] {
        let config = from_file(&text);
        let b = TestBroker::with(1, |c| *c = config);
        assert_eq!(
            connect_as(b.addr, v5, "anon", None, None).code,
            anonymous,
            "{text}"
        );
        let wrong = connect_as(b.addr, v5, "w", Some("alice"), Some("nope"));
        assert_eq!(wrong.code, ReasonCode::NotAuthorized, "{text}");
        b.stop();
    }
}

#[test]
fn config_keys_and_bad_password_files_name_file_and_line() {
    let dir = temp_dir("pw-keys");
    let file = dir.join("passwd");
    let good = hash_line("alice", "secret", 101);
    std::fs::write(&file, format!("# users\n{good}bob:hunter2\n")).unwrap();
    let text = format!(
        "password_check_threads 3\npassword_check_queue 7\nlistener 0\npassword_file {}\n",
        file.display()
    );
    let config = from_file(&text);
    assert_eq!(config.password_file.as_deref(), Some(file.as_path()));
    assert_eq!(
        (config.password_check_threads, config.password_check_queue),
        (3, 7)
    );
    assert!(!config.allow_anonymous);
    let err = shardmq::server::start(config)
        .err()
        .expect("a bad line refuses to start");
    let expected = format!(
        "{}:3: bob: not a hash mosquitto_passwd makes",
        file.display()
    );
    assert!(err.to_string().starts_with(&expected), "{err}");
    let err = Config::parse("password_check_queue 0\n", "k.conf").unwrap_err();
    assert!(err
        .to_string()
        .starts_with("k.conf:1: password_check_queue: expected 1..65536"));
}

#[test]
fn each_listener_checks_its_own_password_file() {
    let dir = temp_dir("pw-per-listener");
    let (a, b_file) = (dir.join("a"), dir.join("b"));
    std::fs::write(&a, hash_line("alice", "secret", 101)).unwrap();
    std::fs::write(&b_file, hash_line("bob", "hunter2", 101)).unwrap();
    let listener = |file: &Path| {
        let mut l = Listener::new("127.0.0.1:0".parse().unwrap());
        l.security = Some(Security {
            allow_anonymous: false,
            password_file: Some(file.to_path_buf()),
            ..Security::default()
        });
        l
    };
    let b = TestBroker::with(2, |c| {
        c.per_listener_settings = true;
        c.listeners = vec![listener(&a), listener(&b_file)];
    });
    let [first, second] = [b.handle().local_addrs()[0], b.handle().local_addrs()[1]];
    let v = ProtocolVersion::V311;
    let code = |addr, user, pw| connect_as(addr, v, "pl", Some(user), Some(pw)).code;
    assert_eq!(code(first, "alice", "secret"), ReasonCode::Success);
    assert_eq!(code(first, "bob", "hunter2"), ReasonCode::NotAuthorized);
    assert_eq!(code(second, "bob", "hunter2"), ReasonCode::Success);
    assert_eq!(code(second, "alice", "secret"), ReasonCode::NotAuthorized);
    b.stop();
}

#[test]
fn a_reload_swaps_the_password_file_and_keeps_connected_clients() {
    let (b, file) = broker_with_alice("pw-reload", 2, 101, |_| {});
    let dir = file.parent().expect("its folder").to_path_buf();
    let config = |path: &Path| {
        let mut c = Config {
            listeners: vec![Listener::new(b.addr)],
            shards: Some(b.shards),
            allow_anonymous: false,
            ..Config::default()
        };
        c.password_file = Some(path.to_path_buf());
        c
    };
    let v5 = ProtocolVersion::V5;
    let connect = login(v5, &b.id_on(0, "kept"), true, Some("alice"), Some("secret"));
    let (mut alice, _) = RawClient::connected(b.addr, connect);
    alice.subscribe("k/#", QoS::AtLeastOnce);

    std::fs::write(&file, hash_line("bob", "hunter2", 101)).unwrap();
    b.handle().reload(config(&file)).expect("reloaded");
    let code = |user, pw| connect_as(b.addr, v5, "new", Some(user), Some(pw)).code;
    assert_eq!(code("alice", "secret"), ReasonCode::NotAuthorized);
    assert_eq!(code("bob", "hunter2"), ReasonCode::Success);
    // Alice stays connected and served.
    alice.publish("k/1", b"still here", QoS::AtMostOnce, false, 0);
    assert_eq!(alice.expect_publish().payload.as_ref(), b"still here");

    // A file that cannot be read, or has a bad line, keeps the old one.
    let bad = dir.join("bad");
    std::fs::write(&bad, "bob\n").unwrap();
    for broken in [dir.join("missing"), bad] {
        b.handle().reload(config(&broken)).expect("reloaded");
        assert_eq!(code("bob", "hunter2"), ReasonCode::Success, "{broken:?}");
        assert_eq!(code("alice", "secret"), ReasonCode::NotAuthorized);
    }
    b.stop();
}

#[test]
fn a_full_verifier_queue_refuses_with_server_busy() {
    // The slowest hash allowed: each check keeps the one thread busy.
    let (b, _) = broker_with_alice("pw-busy", 1, 100_000, |c| {
        c.password_check_threads = 1;
        c.password_check_queue = 1;
    });
    for version in VERSIONS {
        // All CONNECTs go out before any answer is read.
        let clients: Vec<RawClient> = (0..6)
            .map(|i| send_alice(b.addr, version, &format!("busy{i}"), true))
            .collect();
        let codes: Vec<ReasonCode> = clients
            .into_iter()
            .map(|mut c| match c.recv() {
                Some(Packet::ConnAck(a)) => a.code,
                other => panic!("expected CONNACK, got {other:?}"),
            })
            .collect();
        // 3.x rc 3 decodes as Server unavailable.
        let busy = match version {
            ProtocolVersion::V5 => ReasonCode::ServerBusy,
            _ => ReasonCode::ServerUnavailable,
        };
        assert!(codes.contains(&ReasonCode::Success), "{codes:?}");
        assert!(codes.contains(&busy), "{version:?}: {codes:?}");
        assert!(codes
            .iter()
            .all(|c| *c == busy || *c == ReasonCode::Success));
    }
    b.stop();
}

#[test]
fn a_client_gone_while_its_password_is_checked_is_dropped() {
    let (b, _) = broker_with_alice("pw-gone", 1, 100_000, |_| {});
    // A persistent 3.1.1 session: had it been attached, it would stay.
    let version = ProtocolVersion::V311;
    drop(send_alice(b.addr, version, "gone", false));
    // A later client's answer comes after the gone one's verdict.
    let ok = connect_as(b.addr, version, "later", Some("alice"), Some("secret"));
    assert_eq!(ok.code, ReasonCode::Success);
    let deadline = Instant::now() + WAIT;
    loop {
        let sessions: u64 = b.stats().iter().map(|s| s.sessions).sum();
        if sessions == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{sessions} session(s) left");
        std::thread::sleep(Duration::from_millis(20));
    }
    b.stop();
}
