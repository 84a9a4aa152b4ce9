//! Mosquitto-format config: every supported key, warnings for known but
//! unsupported keys, `file:line` errors, bridge sections, and a fuzz test.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use shardmq::config::{
    BridgeAddress, BridgeConfig, BridgeTls, BridgeTopic, Config, ConfigError, ConfigWarning,
    Direction, Listener, ListenerProtocol, LogDest, LogTypes, OverloadPolicy, RestartTimeout,
    Security, StartType,
};
use shardmq::protocol::{ProtocolVersion, QoS};

const PATH: &str = "broker.conf";

fn parse(text: &str) -> (Config, Vec<ConfigWarning>) {
    Config::parse(text, PATH).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
}

fn parse_quiet(text: &str) -> Config {
    let (config, warnings) = parse(text);
    assert!(
        warnings.is_empty(),
        "{text:?}: unexpected warnings {warnings:?}"
    );
    config
}

fn error(text: &str) -> String {
    match Config::parse(text, PATH) {
        Err(e) => e.to_string(),
        Ok(ok) => panic!("{text:?} should fail, got {ok:?}"),
    }
}

/// Each `(text, expected error)` pair.
fn assert_errors(cases: &[(&str, &str)]) {
    for (text, expected) in cases {
        assert_eq!(error(text), *expected, "{text:?}");
    }
}

fn messages(warnings: &[ConfigWarning]) -> Vec<String> {
    warnings.iter().map(ToString::to_string).collect()
}

/// `text` parses without warnings to exactly these listener addresses.
fn assert_listeners(text: &str, expected: &[&str]) {
    let expected: Vec<SocketAddr> = expected.iter().map(|a| a.parse().unwrap()).collect();
    assert_eq!(addrs(&parse_quiet(text)), expected, "{text:?}");
}

fn addrs(config: &Config) -> Vec<SocketAddr> {
    config.listeners.iter().map(|l| l.addr).collect()
}

#[test]
fn empty_file_gives_defaults() {
    assert_eq!(parse_quiet(""), Config::default());
    assert_eq!(
        parse_quiet("# only a comment\n\n   \n\t# indented comment\n"),
        Config::default()
    );
    // Mosquitto 2.0's local only mode: loopback, anonymous clients allowed.
    let defaults = Config::default();
    assert_eq!(
        addrs(&defaults),
        ["127.0.0.1:1883".parse::<SocketAddr>().unwrap()]
    );
    assert!(defaults.local_only && defaults.allow_anonymous);
    assert_eq!(defaults.max_inflight_messages, 20);
    assert_eq!(defaults.max_queued_messages, 1000);
    assert_eq!(
        defaults.log_types,
        LogTypes {
            error: true,
            warning: true,
            notice: true,
            information: true,
            ..LogTypes::NONE
        }
    );
}

#[test]
fn numeric_keys() {
    let c = parse_quiet(
        "max_connections 100\nmax_inflight_messages 10\nmax_queued_messages 50\nmax_queued_bytes 4096\n\
         max_packet_size 1024\nmax_keepalive 30\n",
    );
    assert_eq!(c.listeners[0].max_connections, Some(100));
    assert_eq!(c.max_inflight_messages, 10);
    assert_eq!(c.max_queued_messages, 50);
    assert_eq!(c.max_queued_bytes, 4096);
    assert_eq!(c.max_packet_size, 1024);
    assert_eq!(c.max_keepalive, 30);
}

#[test]
fn special_numeric_values() {
    let c = parse_quiet(
        "max_connections -1\nmax_inflight_messages 0\nmax_queued_messages 0\nmax_queued_bytes 0\n\
         max_packet_size 0\nmax_keepalive 0\n",
    );
    assert_eq!(c.listeners[0].max_connections, None);
    assert_eq!(c.max_inflight_messages, 65535);
    assert_eq!(
        c.max_queued_messages,
        shardmq::limits::MAX_QUEUED_MESSAGES_CAP
    );
    assert_eq!(c.max_queued_bytes, 0);
    assert_eq!(c.max_packet_size, 268_435_460);
    assert_eq!(c.max_keepalive, 0);
    assert_eq!(
        parse_quiet("max_connections 0").listeners[0].max_connections,
        None
    );
    assert_eq!(
        parse_quiet("max_inflight_messages 65535").max_inflight_messages,
        65535
    );
    assert_eq!(parse_quiet("max_packet_size 20").max_packet_size, 20);
    assert_eq!(
        parse_quiet("max_packet_size 268435460").max_packet_size,
        268_435_460
    );
}

#[test]
fn max_topic_alias_is_the_alias_maximum_announced_to_clients() {
    assert_eq!(Config::default().max_topic_alias, 10);
    assert_eq!(parse_quiet("max_topic_alias 0").max_topic_alias, 0);
    assert_eq!(parse_quiet("max_topic_alias 65535").max_topic_alias, 65535);
    // A per-listener key in Mosquitto: accepted in a listener section,
    // applied broker-wide, no warning.
    let (c, warnings) = parse("listener 1883\nmax_topic_alias 3\n");
    assert_eq!(c.max_topic_alias, 3);
    assert!(warnings.is_empty(), "{warnings:?}");
    let cases = [
        ("\nmax_topic_alias 65536", "broker.conf:2: max_topic_alias: expected 0..65535, got 65536 (0 means no topic aliases)"),
        ("max_topic_alias -1", "broker.conf:1: max_topic_alias: expected 0..65535, got -1 (0 means no topic aliases)"),
        ("max_topic_alias ten", "broker.conf:1: max_topic_alias: expected 0..65535, got `ten` (0 means no topic aliases)"),
        ("max_topic_alias", "broker.conf:1: max_topic_alias: missing value (expected 0..65535)"),
    ];
    assert_errors(&cases);
}

#[test]
fn bad_values_name_file_line_key_and_range() {
    let cases = [
        ("\n\nmax_inflight_messages 70000", "broker.conf:3: max_inflight_messages: expected 1..65535, got 70000 (0 means unlimited)"),
        ("max_inflight_messages -1", "broker.conf:1: max_inflight_messages: expected 1..65535, got -1 (0 means unlimited)"),
        ("max_connections -2", "broker.conf:1: max_connections: expected -1..2147483647, got -2 (-1 means unlimited)"),
        ("protocol ws", "broker.conf:1: protocol: expected mqtt or websockets, got `ws`"),
        ("websockets_headers_size 65537", "broker.conf:1: websockets_headers_size: expected 0..65536, got 65537 (bytes; 0 means the default, 1024)"),
        ("max_connections many", "broker.conf:1: max_connections: expected -1..2147483647, got `many` (-1 means unlimited)"),
        ("max_queued_messages 1000001", "broker.conf:1: max_queued_messages: expected 0..1000000, got 1000001 (0 means unlimited, capped at 1000000)"),
        ("max_queued_bytes -5", "broker.conf:1: max_queued_bytes: expected 0..9223372036854775807, got -5 (0 means unlimited)"),
        ("max_packet_size 19", "broker.conf:1: max_packet_size: expected 20..268435460, got 19 (0 means the protocol maximum)"),
        ("max_packet_size 268435461", "broker.conf:1: max_packet_size: expected 20..268435460, got 268435461 (0 means the protocol maximum)"),
        ("max_keepalive 65536", "broker.conf:1: max_keepalive: expected 0..65535, got 65536"),
        ("max_keepalive", "broker.conf:1: max_keepalive: missing value (expected 0..65535)"),
        ("max_keepalive 60 # one minute", "broker.conf:1: max_keepalive: unexpected extra value `#` (comments must be on their own line)"),
        ("max_keepalive 60 90", "broker.conf:1: max_keepalive: unexpected extra value `90`"),
    ];
    assert_errors(&cases);
}

#[test]
fn booleans() {
    let c = parse_quiet("queue_qos0_messages true\nallow_anonymous false\nretain_available false\nallow_zero_length_clientid false");
    assert!(c.queue_qos0_messages);
    assert!(!c.allow_anonymous && !c.retain_available && !c.allow_zero_length_clientid);
    assert!(
        !parse_quiet("allow_anonymous 0").allow_anonymous,
        "Mosquitto also reads 0/1"
    );
    for key in [
        "queue_qos0_messages",
        "allow_anonymous",
        "retain_available",
        "allow_zero_length_clientid",
    ] {
        assert_eq!(
            error(&format!("{key} yes")),
            format!("broker.conf:1: {key}: expected true or false, got `yes`")
        );
        assert_eq!(
            error(&format!("{key} True")),
            format!("broker.conf:1: {key}: expected true or false, got `True`")
        );
        assert_eq!(
            error(key),
            format!("broker.conf:1: {key}: missing value (expected true or false)")
        );
    }
}

#[test]
fn protocol_shaping_keys() {
    let d = Config::default();
    assert_eq!(
        (
            d.message_size_limit,
            d.max_inflight_bytes,
            d.upgrade_outgoing_qos
        ),
        (0, 0, false)
    );
    assert!(d.set_tcp_nodelay, "shardmq's default; Mosquitto's is false");
    assert_eq!(
        (d.auto_id_prefix.as_str(), d.per_listener_settings),
        ("auto-", false)
    );
    let c = parse_quiet(
        "message_size_limit 1024\nupgrade_outgoing_qos true\nmax_inflight_bytes 4096\n\
         set_tcp_nodelay false\nauto_id_prefix dev-\n",
    );
    assert_eq!((c.message_size_limit, c.max_inflight_bytes), (1024, 4096));
    assert!(c.upgrade_outgoing_qos && !c.set_tcp_nodelay);
    assert_eq!(c.auto_id_prefix, "dev-");
    assert_eq!(
        parse_quiet("message_size_limit 268435455").message_size_limit,
        268_435_455
    );
    let long = format!("auto_id_prefix {}", "x".repeat(257));
    let cases = [
        ("message_size_limit 268435456", "broker.conf:1: message_size_limit: expected 0..268435455, got 268435456 (0 means no limit)"),
        ("\nmessage_size_limit -1", "broker.conf:2: message_size_limit: expected 0..268435455, got -1 (0 means no limit)"),
        ("max_inflight_bytes lots", "broker.conf:1: max_inflight_bytes: expected 0..9223372036854775807, got `lots` (0 means unlimited)"),
        ("upgrade_outgoing_qos yes", "broker.conf:1: upgrade_outgoing_qos: expected true or false, got `yes`"),
        ("set_tcp_nodelay", "broker.conf:1: set_tcp_nodelay: missing value (expected true or false)"),
        ("auto_id_prefix", "broker.conf:1: auto_id_prefix: missing value (expected a prefix, e.g. auto-)"),
        (long.as_str(), "broker.conf:1: auto_id_prefix: expected at most 256 bytes, got 257"),
    ];
    assert_errors(&cases);
}

#[test]
fn max_qos_and_mount_point_belong_to_the_listener_they_follow() {
    let c = parse_quiet(
        "port 1884\nmax_qos 1\nmount_point base/\nlistener 1885\nmax_qos 0\nlistener 1886\n",
    );
    let got: Vec<(u16, QoS, Option<&str>)> = c
        .listeners
        .iter()
        .map(|l| (l.addr.port(), l.max_qos, l.mount_point.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (1884, QoS::AtLeastOnce, Some("base/")),
            (1885, QoS::AtMostOnce, None),
            (1886, QoS::ExactlyOnce, None),
        ]
    );
    let cases = [
        ("max_qos 3", "broker.conf:1: max_qos: expected 0..2, got 3"),
        ("listener 1884\nmax_qos -1", "broker.conf:2: max_qos: expected 0..2, got -1"),
        ("max_qos", "broker.conf:1: max_qos: missing value (expected 0..2)"),
        ("mount_point a/#", "broker.conf:1: mount_point: `a/#` is not a valid topic prefix (no `+`, `#` or NUL, e.g. site1/)"),
        ("mount_point a/+/", "broker.conf:1: mount_point: `a/+/` is not a valid topic prefix (no `+`, `#` or NUL, e.g. site1/)"),
        ("mount_point", "broker.conf:1: mount_point: missing value (expected a topic prefix, e.g. site1/)"),
    ];
    assert_errors(&cases);
}

#[test]
fn listener_keys_for_a_default_listener_that_is_not_started_warn() {
    let (c, warnings) = parse("max_qos 1\nlistener 1884\n");
    assert_eq!(c.listeners[0].max_qos, QoS::ExactlyOnce);
    assert_eq!(
        messages(&warnings),
        [
            "broker.conf:1: max_qos before the first `listener` line sets the default listener, \
          which is not started (no `port` or `bind_address`); move it into a `listener` section"
        ]
    );
    // Without `listener` lines the default listener is the broker's only one.
    assert_eq!(
        parse_quiet("max_qos 1").listeners[0].max_qos,
        QoS::AtLeastOnce
    );
}

#[test]
fn per_listener_settings_scopes_security_keys_to_their_listener() {
    let c = parse_quiet(
        "per_listener_settings true\nlistener 1884\nallow_anonymous false\nauto_id_prefix a-\n\
         listener 1885\nallow_zero_length_clientid false\nlistener 1886\n",
    );
    // With a configuration file `allow_anonymous` defaults to false, on
    // every listener as broker-wide (Mosquitto 2.0).
    assert!(c.per_listener_settings && !c.allow_anonymous && c.allow_zero_length_clientid);
    let own: Vec<Option<Security>> = c.listeners.iter().map(|l| l.security.clone()).collect();
    let first = Security {
        allow_anonymous: false,
        auto_id_prefix: "a-".to_string(),
        ..Security::default()
    };
    let second = Security {
        allow_anonymous: false,
        allow_zero_length_clientid: false,
        ..Security::default()
    };
    assert_eq!(own, [Some(first), Some(second), None]);
    // Off (the default): the same keys are broker-wide wherever they are.
    let c = parse_quiet("listener 1884\nallow_anonymous false\nauto_id_prefix x-\n");
    assert!(!c.allow_anonymous);
    assert_eq!(c.auto_id_prefix, "x-");
    assert_eq!(c.listeners[0].security, None);
    assert_eq!(
        error("allow_anonymous true\n\nper_listener_settings true"),
        "broker.conf:3: per_listener_settings: must come before the settings it scopes \
         (line 1 sets one); move it up"
    );
    parse_quiet("allow_anonymous true\nper_listener_settings false");
}

#[test]
fn check_retain_source_is_a_switch() {
    let c = parse_quiet("check_retain_source true");
    assert!(c.check_retain_source);
    assert!(!Config::default().check_retain_source);
    assert_eq!(
        error("check_retain_source maybe"),
        "broker.conf:1: check_retain_source: expected true or false, got `maybe`"
    );
}

#[test]
fn overload_policy_defaults_to_backpressure_and_drop_is_mosquittos() {
    let default = Config::default();
    assert_eq!(default.overload_policy, OverloadPolicy::Backpressure);
    assert_eq!(default.overload_stall_timeout, 5);
    let c = parse_quiet("overload_policy drop\noverload_stall_timeout 30");
    assert_eq!(c.overload_policy, OverloadPolicy::Drop);
    assert_eq!(c.overload_stall_timeout, 30);
    let c = parse_quiet("overload_policy backpressure");
    assert_eq!(c.overload_policy, OverloadPolicy::Backpressure);
    assert_errors(&[
        ("overload_policy block", "broker.conf:1: overload_policy: expected backpressure or drop, got `block`"),
        ("overload_policy", "broker.conf:1: overload_policy: missing value (expected backpressure or drop)"),
        ("\noverload_stall_timeout 0", "broker.conf:2: overload_stall_timeout: expected 1..3600, got 0 (seconds without progress)"),
        ("overload_stall_timeout 3601", "broker.conf:1: overload_stall_timeout: expected 1..3600, got 3601 (seconds without progress)"),
        ("overload_stall_timeout soon", "broker.conf:1: overload_stall_timeout: expected 1..3600, got `soon` (seconds without progress)"),
    ]);
}

#[test]
fn acl_file_is_global_or_per_listener() {
    let c = parse_quiet("acl_file /etc/my acl\nlistener 1884\n");
    assert_eq!(c.acl_file.as_deref(), Some(Path::new("/etc/my acl")));
    assert_eq!(c.security_of(&c.listeners[0]).acl_file, c.acl_file);
    let c = parse_quiet("per_listener_settings true\nlistener 1884\nacl_file /a\nlistener 1885\n");
    assert_eq!(c.acl_file, None);
    let own = |i: usize| c.security_of(&c.listeners[i]).acl_file;
    assert_eq!(own(0), Some(PathBuf::from("/a")));
    assert_eq!(own(1), None);
    assert_eq!(
        error("acl_file"),
        "broker.conf:1: acl_file: missing value (expected a path, e.g. /etc/shardmq/acl)"
    );
}

#[test]
fn persistent_client_expiration() {
    let cases = [
        ("2h", 2 * 3600),
        ("14d", 14 * 86_400),
        ("1w", 7 * 86_400),
        ("3m", 90 * 86_400),
        ("1y", 365 * 86_400),
    ];
    for (text, seconds) in cases {
        let c = parse_quiet(&format!("persistent_client_expiration {text}"));
        assert_eq!(
            c.persistent_client_expiration,
            Some(Duration::from_secs(seconds)),
            "{text}"
        );
    }
    for bad in ["10", "10s", "0d", "d", "-1d"] {
        assert_eq!(
            error(&format!("persistent_client_expiration {bad}")),
            format!("broker.conf:1: persistent_client_expiration: expected <n><h|d|w|m|y> with n >= 1, e.g. 14d, got `{bad}`")
        );
    }
}

#[test]
fn log_dest() {
    assert_eq!(parse_quiet("log_dest stdout").log_dests, [LogDest::Stdout]);
    assert_eq!(parse_quiet("").log_dests, [LogDest::Stderr]);
    assert!(parse_quiet("log_dest none").log_dests.is_empty());
    // As in Mosquitto, every destination given is written to.
    assert_eq!(
        parse_quiet("log_dest stdout\nlog_dest syslog\nlog_dest topic\nlog_dest stdout").log_dests,
        [LogDest::Stdout, LogDest::Syslog, LogDest::Topic]
    );
    assert_eq!(
        parse_quiet("log_dest stdout\nlog_dest none\nlog_dest stderr").log_dests,
        [LogDest::Stderr]
    );
    let (c, warnings) = parse("log_dest stdout\nlog_dest dlt");
    assert_eq!(c.log_dests, [LogDest::Stdout, LogDest::Stderr]);
    assert_eq!(
        messages(&warnings),
        ["broker.conf:2: log_dest dlt is not supported, using stderr"]
    );
    assert_eq!(
        error("log_dest file"),
        "broker.conf:1: log_dest: missing path (expected log_dest file <path>)"
    );
    assert_eq!(
        error("log_dest syslog x"),
        "broker.conf:1: log_dest: unexpected extra value `x`"
    );
    assert_eq!(
        error("log_dest console"),
        "broker.conf:1: log_dest: expected stderr, stdout, none, file, syslog, topic or dlt, got `console`"
    );
    assert!(error("log_dest").starts_with("broker.conf:1: log_dest: missing value"));
}

#[test]
fn log_dest_file() {
    let dir = std::env::temp_dir().join(format!("shardmq-config-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("my broker.log");
    let c = parse_quiet(&format!("log_dest file {}", path.display()));
    assert_eq!(c.log_dests, [LogDest::File(path.clone())]);
    assert!(!path.exists(), "parsing creates nothing");
    assert_eq!(
        error("\nlog_dest file /nonexistent-shardmq/broker.log"),
        "broker.conf:2: log_dest: cannot open /nonexistent-shardmq/broker.log for appending: \
         /nonexistent-shardmq is not a writable directory (does its directory exist, writable \
         by the broker?)"
    );
    // A directory is not a file to append to.
    let err = error(&format!("log_dest file {}", dir.display()));
    assert!(
        err.starts_with(&format!(
            "broker.conf:1: log_dest: cannot open {} for appending:",
            dir.display()
        )),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn log_timestamps_and_connection_messages() {
    let defaults = Config::default();
    assert!(defaults.log_timestamp && defaults.connection_messages);
    assert_eq!(defaults.log_timestamp_format, None);
    let c = parse_quiet(
        "log_timestamp false\nlog_timestamp_format %Y-%m-%dT%H:%M:%S\nconnection_messages false",
    );
    assert!(!c.log_timestamp && !c.connection_messages);
    assert_eq!(c.log_timestamp_format.as_deref(), Some("%Y-%m-%dT%H:%M:%S"));
    let spaced = parse_quiet("log_timestamp_format %Y-%m-%d %H:%M:%S");
    assert_eq!(
        spaced.log_timestamp_format.as_deref(),
        Some("%Y-%m-%d %H:%M:%S")
    );
    assert!(error("log_timestamp maybe").starts_with("broker.conf:1: log_timestamp: "));
    let long = "%c".repeat(40);
    assert!(
        error(&format!("log_timestamp_format {long}")).starts_with(&format!(
            "broker.conf:1: log_timestamp_format: `{long}` gives no text or more than 64 bytes"
        )),
    );
    assert!(error("log_timestamp_format")
        .starts_with("broker.conf:1: log_timestamp_format: missing value"));
}

#[test]
fn log_type_accumulates_after_replacing_defaults() {
    let c = parse_quiet("log_type error\nlog_type debug");
    assert_eq!(
        c.log_types,
        LogTypes {
            error: true,
            debug: true,
            ..LogTypes::NONE
        }
    );
    assert_eq!(parse_quiet("log_type all").log_types, LogTypes::ALL);
    assert_eq!(
        parse_quiet("log_type all\nlog_type none").log_types,
        LogTypes::NONE
    );
    assert_eq!(
        parse_quiet("log_type none\nlog_type warning").log_types,
        LogTypes {
            warning: true,
            ..LogTypes::NONE
        }
    );
    assert_eq!(
        parse_quiet("log_type notice information").log_types,
        LogTypes {
            notice: true,
            information: true,
            ..LogTypes::NONE
        }
    );
    assert_eq!(
        parse_quiet("log_type subscribe\nlog_type unsubscribe websockets").log_types,
        LogTypes {
            subscribe: true,
            unsubscribe: true,
            websockets: true,
            ..LogTypes::NONE
        }
    );
    assert!(error("log_type chatty")
        .starts_with("broker.conf:1: log_type: expected error, warning, notice"));
    assert!(error("log_type").starts_with("broker.conf:1: log_type: missing value"));
}

#[test]
fn multiple_listeners_replace_the_default() {
    assert_listeners(
        "listener 1883\nlistener 8883 127.0.0.1\nlistener 0 localhost\nlistener 0 localhost",
        &[
            "0.0.0.0:1883",
            "127.0.0.1:8883",
            "127.0.0.1:0",
            "127.0.0.1:0",
        ],
    );
}

#[test]
fn ipv6_listener() {
    assert_listeners(
        "listener 1883 ::1\nlistener 1884 [::]\nlistener 1885 fe80::1",
        &["[::1]:1883", "[::]:1884", "[fe80::1]:1885"],
    );
}

#[test]
fn legacy_port_and_bind_address() {
    assert_listeners("port 1884", &["0.0.0.0:1884"]);
    assert_listeners("bind_address ::1\nport 0", &["[::1]:0"]);
    assert_listeners("bind_address localhost", &["127.0.0.1:1883"]);
    // Mosquitto keeps an explicitly configured default listener next to `listener` lines.
    let c = parse_quiet("port 1884\nlistener 8883");
    let addr = |a: &str| Listener::new(a.parse().unwrap());
    assert_eq!(c.listeners, [addr("0.0.0.0:1884"), addr("0.0.0.0:8883")]);
}

#[test]
fn bad_listeners() {
    let cases = [
        ("listener", "broker.conf:1: listener: missing value (expected <port> [address])"),
        ("listener 65536", "broker.conf:1: listener: expected 0..65535, got 65536"),
        ("listener 1883 0.0.0.0 extra", "broker.conf:1: listener: unexpected extra value `extra`"),
        ("listener 1883 example.com", "broker.conf:1: listener: expected an IPv4 or IPv6 address or `localhost`, got `example.com`"),
        ("listener 0 /tmp/mqtt.sock", "broker.conf:1: listener: expected an IPv4 or IPv6 address or `localhost`, got `/tmp/mqtt.sock` (unix sockets are not supported yet)"),
        ("port -1", "broker.conf:1: port: expected 0..65535, got -1"),
        ("bind_address 300.1.1.1", "broker.conf:1: bind_address: expected an IPv4 or IPv6 address or `localhost`, got `300.1.1.1`"),
        ("listener 1883\n\nlistener 1883", "broker.conf:3: listener: duplicate listener 0.0.0.0:1883 (already configured on line 1)"),
        ("port 1883\nlistener 1883", "broker.conf:2: listener: duplicate listener 0.0.0.0:1883 (already configured on line 1)"),
    ];
    assert_errors(&cases);
}

#[test]
fn websockets_headers_size_defaults_to_mosquittos() {
    assert_eq!(Config::default().websockets_headers_size, 1024);
    assert_eq!(
        parse_quiet("websockets_headers_size 0").websockets_headers_size,
        1024
    );
    assert_eq!(
        parse_quiet("websockets_headers_size 4096").websockets_headers_size,
        4096
    );
}

#[test]
fn per_listener_keys_apply_in_listener_sections() {
    let (c, warnings) = parse(
        "listener 1883\nmax_connections 10\nprotocol websockets\nlistener 1884\nmount_point a/",
    );
    assert_eq!(c.listeners[0].max_connections, Some(10));
    assert_eq!(c.listeners[1].max_connections, None);
    assert_eq!(c.listeners[0].protocol, ListenerProtocol::WebSockets);
    assert_eq!(c.listeners[1].protocol, ListenerProtocol::Mqtt);
    assert_eq!(c.listeners[0].mount_point, None);
    assert_eq!(c.listeners[1].mount_point.as_deref(), Some("a/"));
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn known_unsupported_keys_warn() {
    let keys = [
        "http_dir /www",
        "socket_domain ipv4",
        "include_dir /etc/mosquitto/conf.d",
        "user mosquitto",
        "pid_file /run/m.pid",
        "memory_limit 0",
        "plugin /p.so",
        "plugin_opt_host db",
        "auth_plugin /a.so",
        "auth_opt_db x",
        "clientid_prefixes sec-",
        "use_username_as_clientid true",
        "allow_duplicate_messages true",
        "retry_interval 20",
        "store_clean_interval 10",
        "websockets_log_level 0",
        "bind_interface eth0",
        "autosave_on_changes false",
        "log_facility 5",
    ];
    for (index, line) in keys.iter().enumerate() {
        let (config, warnings) = parse(&format!("# {index}\n{line}"));
        assert_eq!(config, Config::default());
        let key = line.split(' ').next().unwrap();
        let expected = format!(
            "broker.conf:2: {key} is a Mosquitto option shardmq does not support yet; ignored"
        );
        assert_eq!(messages(&warnings), [expected]);
        assert_eq!((warnings[0].path.as_str(), warnings[0].line), (PATH, 2));
    }
}

#[test]
fn unknown_keys_fail_with_a_suggestion() {
    assert_eq!(
        error("\nmax_conections 5"),
        "broker.conf:2: max_conections: unknown option (did you mean `max_connections`?)"
    );
    assert_eq!(
        error("allow_anonymus true"),
        "broker.conf:1: allow_anonymus: unknown option (did you mean `allow_anonymous`?)"
    );
    assert_eq!(
        error("listner 1883"),
        "broker.conf:1: listner: unknown option (did you mean `listener`?)"
    );
    assert_eq!(
        error("frobnicate_everything 1"),
        "broker.conf:1: frobnicate_everything: unknown option"
    );
    assert_eq!(error("shards 4"), "broker.conf:1: shards: unknown option");
    assert_eq!(
        error("plugin_opt_ x"),
        "broker.conf:1: plugin_opt_: unknown option"
    );
}

#[test]
fn errors_are_structured() {
    match Config::parse("a\nmax_keepalive x", "/etc/b.conf") {
        Err(ConfigError::Invalid {
            path,
            line,
            key,
            reason,
        }) => {
            assert_eq!((path.as_str(), line, key.as_str()), ("/etc/b.conf", 1, "a"));
            assert_eq!(reason, "unknown option");
        }
        other => panic!("{other:?}"),
    }
    let missing = std::path::Path::new("/nonexistent/shardmq.conf");
    assert!(matches!(Config::load(missing), Err(ConfigError::Io { .. })));
}

#[test]
fn load_reads_a_file() {
    let path =
        std::env::temp_dir().join(format!("shardmq-config-test-{}.conf", std::process::id()));
    std::fs::write(&path, "max_keepalive 42\nretry_interval 20\n").unwrap();
    let (config, warnings) = Config::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(config.max_keepalive, 42);
    assert_eq!(warnings[0].path, path.display().to_string());
}

#[test]
fn whitespace_and_line_endings() {
    let c = parse_quiet("\u{feff}# header\r\n\r\n   max_keepalive    30   \r\n\tallow_anonymous\tfalse\t\r\n#max_keepalive 1\n");
    assert_eq!((c.max_keepalive, c.allow_anonymous), (30, false));
}

const BRIDGE: &str = "connection up\naddress broker.example.com:1883\ntopic sensor/# out 1\n";

#[test]
fn bridges_parse_without_warnings() {
    let text = format!("{BRIDGE}connection up2\naddresses 10.0.0.1 10.0.0.2:8883 ::1:1883\ntopic # both 2 local/ remote/\n");
    let (config, warnings) = parse(&text);
    assert_eq!(
        Config {
            bridges: Vec::new(),
            ..config.clone()
        },
        Config::default()
    );
    let names: Vec<&str> = config.bridges.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["up", "up2"]);
    assert_eq!(messages(&warnings), Vec::<String>::new());
}

/// The single bridge of `text`.
fn only_bridge(text: &str) -> BridgeConfig {
    let (mut config, _) = parse(text);
    assert_eq!(config.bridges.len(), 1, "{text:?}");
    config.bridges.remove(0)
}

fn address(host: &str, port: u16) -> BridgeAddress {
    BridgeAddress {
        host: host.to_string(),
        port,
    }
}

fn topic(
    pattern: &str,
    direction: Direction,
    qos: QoS,
    local_prefix: &str,
    remote_prefix: &str,
) -> BridgeTopic {
    BridgeTopic {
        pattern: pattern.to_string(),
        direction,
        qos,
        local_prefix: local_prefix.to_string(),
        remote_prefix: remote_prefix.to_string(),
    }
}

#[test]
fn emqx_deployment_section_parses_to_its_values() {
    let b = only_bridge(
        "connection emqx1\naddress 127.0.0.1:1884\nbridge_protocol_version mqttv50\n\
         remote_clientid emqx_c\nremote_username emqx_u\nremote_password public\n\
         topic sensor/# out 1\ntopic control/# in 1\n",
    );
    assert_eq!(
        b,
        BridgeConfig {
            name: "emqx1".into(),
            addresses: vec![address("127.0.0.1", 1884)],
            round_robin: false,
            start_type: StartType::Automatic,
            restart_timeout: RestartTimeout::Backoff {
                base: Duration::from_secs(5),
                cap: Duration::from_secs(30),
            },
            keepalive_interval: 60,
            clean_session: false,
            local_clean_session: false,
            remote_clientid: "emqx_c".into(),
            local_clientid: "local.emqx_c".into(),
            remote_username: Some("emqx_u".into()),
            remote_password: Some("public".into()),
            local_username: None,
            local_password: None,
            notifications: true,
            notifications_local_only: false,
            notification_topic: "$SYS/broker/connection/emqx_c/state".into(),
            try_private: true,
            protocol: ProtocolVersion::V5,
            attempt_unsubscribe: true,
            outgoing_retain: true,
            max_packet_size: None,
            bind_address: None,
            tls: BridgeTls::default(),
            receive_maximum: 20,
            session_expiry_interval: 0,
            max_topic_alias: 10,
            topics: vec![
                topic("sensor/#", Direction::Out, QoS::AtLeastOnce, "", ""),
                topic("control/#", Direction::In, QoS::AtLeastOnce, "", ""),
            ],
        }
    );
}

#[test]
fn bridge_defaults() {
    let b = only_bridge("connection up\naddress broker.example.com\ntopic a\n");
    assert_eq!(b.addresses, [address("broker.example.com", 1883)]);
    assert_eq!(b.protocol, ProtocolVersion::V311);
    assert_eq!(b.start_type, StartType::Automatic);
    assert_eq!(b.keepalive_interval, 60);
    assert!(!b.clean_session && !b.local_clean_session && !b.round_robin);
    assert!(b.notifications && !b.notifications_local_only);
    assert!(b.try_private && b.attempt_unsubscribe && b.outgoing_retain);
    assert_eq!(
        (
            b.receive_maximum,
            b.session_expiry_interval,
            b.max_topic_alias
        ),
        (20, 0, 10)
    );
    assert_eq!(b.tls.tls_version, "tlsv1.2");
    assert_eq!((b.remote_username, b.remote_password), (None, None));
    // `<name>.<hostname>`, then derived from it.
    let host = b.remote_clientid.strip_prefix("up.").expect("name first");
    assert!(!host.is_empty());
    assert_eq!(b.local_clientid, format!("local.{}", b.remote_clientid));
    assert_eq!(
        b.notification_topic,
        format!("$SYS/broker/connection/{}/state", b.remote_clientid)
    );
    assert_eq!(
        b.topics,
        [topic("a", Direction::Out, QoS::AtMostOnce, "", "")]
    );
}

#[test]
fn local_cleansession_follows_cleansession_unless_set() {
    let b = only_bridge(&format!("{BRIDGE}cleansession true"));
    assert_eq!((b.clean_session, b.local_clean_session), (true, true));
    let b = only_bridge(&format!(
        "{BRIDGE}local_cleansession false\ncleansession true"
    ));
    assert_eq!((b.clean_session, b.local_clean_session), (true, false));
}

#[test]
fn several_sections_keep_file_order_and_their_own_values() {
    let text = "connection a\naddress a.example\ntopic x/# out 2\nkeepalive_interval 30\n\
                listener 1883\n\
                connection b\naddress b.example:8883\ntopic y/# in 0\nclientid bee\n";
    let (c, warnings) = parse(text);
    assert!(warnings.is_empty(), "{warnings:?}");
    let [a, b] = &c.bridges[..] else {
        panic!("two bridges: {:?}", c.bridges)
    };
    assert_eq!((a.name.as_str(), a.keepalive_interval), ("a", 30));
    assert_eq!((b.name.as_str(), b.keepalive_interval), ("b", 60));
    assert_eq!(b.addresses, [address("b.example", 8883)]);
    assert_eq!(
        (b.remote_clientid.as_str(), b.local_clientid.as_str()),
        ("bee", "local.bee")
    );
    assert_eq!(a.topics[0].qos, QoS::ExactlyOnce);
    assert_eq!(b.topics[0].direction, Direction::In);
    assert_eq!(addrs(&c), ["0.0.0.0:1883".parse::<SocketAddr>().unwrap()]);
}

#[test]
fn address_lines_accumulate() {
    let b = only_bridge(
        "connection up\naddress one\naddresses two:1884 10.0.0.3\naddress ::1:8883\ntopic #\n",
    );
    assert_eq!(
        b.addresses,
        [
            address("one", 1883),
            address("two", 1884),
            address("10.0.0.3", 1883),
            address("::1", 8883)
        ]
    );
}

#[test]
fn restart_timeout_forms() {
    let timeout =
        |value: &str| only_bridge(&format!("{BRIDGE}restart_timeout {value}")).restart_timeout;
    assert_eq!(
        timeout("10"),
        RestartTimeout::Constant(Duration::from_secs(10))
    );
    assert_eq!(
        timeout("2 120"),
        RestartTimeout::Backoff {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(120)
        }
    );
    assert_eq!(
        timeout("7 7"),
        RestartTimeout::Backoff {
            base: Duration::from_secs(7),
            cap: Duration::from_secs(7)
        }
    );
}

#[test]
fn start_types() {
    let start = |lines: &str| only_bridge(&format!("{BRIDGE}{lines}")).start_type;
    let lazy = |threshold, idle_timeout| StartType::Lazy {
        threshold,
        idle_timeout: Duration::from_secs(idle_timeout),
    };
    assert_eq!(start("start_type lazy"), lazy(10, 60));
    assert_eq!(
        start("start_type lazy\nthreshold 50\nidle_timeout 300"),
        lazy(50, 300)
    );
    // The lazy settings may come first.
    assert_eq!(
        start("idle_timeout 5\nthreshold 2\nstart_type lazy"),
        lazy(2, 5)
    );
    assert_eq!(start("start_type once"), StartType::Once);
    assert_eq!(
        start("threshold 50\nstart_type automatic"),
        StartType::Automatic
    );
}

#[test]
fn every_bridge_key_is_accepted_in_a_connection() {
    let lines = [
        "round_robin true",
        "start_type lazy",
        "threshold 10",
        "idle_timeout 60",
        "restart_timeout 5 30",
        "restart_timeout 10",
        "keepalive_interval 60",
        "cleansession false",
        "local_cleansession true",
        "remote_clientid emqx_c",
        "clientid c",
        "local_clientid local.c",
        "remote_username u",
        "username u",
        "remote_password p w",
        "password p",
        "local_username lu",
        "local_password lp",
        "notifications true",
        "notifications_local_only false",
        "notification_topic $SYS/state",
        "try_private true",
        "bridge_protocol_version mqttv50",
        "bridge_attempt_unsubscribe true",
        "bridge_outgoing_retain false",
        "bridge_max_packet_size 0",
        "bridge_bind_address 10.0.0.5",
        "bridge_cafile /ca.pem",
        "bridge_capath /ca",
        "bridge_certfile /c.pem",
        "bridge_keyfile /k.pem",
        "bridge_insecure false",
        "bridge_tls_version tlsv1.2",
        "bridge_alpn mqtt",
        "bridge_identity id",
        "bridge_psk deadbeef",
        "bridge_require_ocsp false",
        "bridge_receive_maximum 20",
        "bridge_session_expiry_interval 3600",
        "bridge_max_topic_alias 10",
        "topic control/# in 1",
        "topic a/+/b",
        "topic c out",
        "topic d both 0 \"\" remote/",
        "topic \"\" in 0 l/x r/y",
    ];
    let (c, warnings) = parse(&format!("{BRIDGE}{}", lines.join("\n")));
    assert_eq!(warnings.len(), 0, "{warnings:?}");
    let b = &c.bridges[0];
    // Later lines win; aliases set the same field.
    assert!(b.round_robin && b.local_clean_session && !b.clean_session);
    assert_eq!(
        b.start_type,
        StartType::Lazy {
            threshold: 10,
            idle_timeout: Duration::from_secs(60)
        }
    );
    assert_eq!(
        b.restart_timeout,
        RestartTimeout::Constant(Duration::from_secs(10))
    );
    assert_eq!(
        (b.remote_clientid.as_str(), b.local_clientid.as_str()),
        ("c", "local.c")
    );
    assert_eq!(
        (b.remote_username.as_deref(), b.remote_password.as_deref()),
        (Some("u"), Some("p"))
    );
    assert_eq!(
        (b.local_username.as_deref(), b.local_password.as_deref()),
        (Some("lu"), Some("lp"))
    );
    assert_eq!(b.notification_topic, "$SYS/state");
    assert_eq!(b.protocol, ProtocolVersion::V5);
    assert!(b.attempt_unsubscribe && !b.outgoing_retain);
    assert_eq!(b.max_packet_size, None);
    assert_eq!(b.bind_address, Some(IpAddr::from([10, 0, 0, 5])));
    assert_eq!(
        b.tls,
        BridgeTls {
            cafile: Some(PathBuf::from("/ca.pem")),
            capath: Some(PathBuf::from("/ca")),
            certfile: Some(PathBuf::from("/c.pem")),
            keyfile: Some(PathBuf::from("/k.pem")),
            insecure: false,
            require_ocsp: false,
            tls_version: "tlsv1.2".into(),
            alpn: Some("mqtt".into()),
            identity: Some("id".into()),
            psk: Some("deadbeef".into()),
        }
    );
    assert_eq!(
        (
            b.receive_maximum,
            b.session_expiry_interval,
            b.max_topic_alias
        ),
        (20, 3600, 10)
    );
    assert_eq!(
        b.topics,
        [
            topic("sensor/#", Direction::Out, QoS::AtLeastOnce, "", ""),
            topic("control/#", Direction::In, QoS::AtLeastOnce, "", ""),
            topic("a/+/b", Direction::Out, QoS::AtMostOnce, "", ""),
            topic("c", Direction::Out, QoS::AtMostOnce, "", ""),
            topic("d", Direction::Both, QoS::AtMostOnce, "", "remote/"),
            topic("", Direction::In, QoS::AtMostOnce, "l/x", "r/y"),
        ]
    );
    let b = only_bridge(&format!("{BRIDGE}bridge_max_packet_size 1024"));
    assert_eq!(b.max_packet_size, Some(1024));
}

#[test]
fn bridge_structure_errors() {
    let cases = [
        ("address host", "broker.conf:1: address: only valid after a `connection` line (it is a bridge option)"),
        ("listener 1883\ntopic a/#", "broker.conf:2: topic: only valid after a `connection` line (it is a bridge option)"),
        (&format!("{BRIDGE}listener 1884\ntry_private false") as &str, "broker.conf:5: try_private: only valid after a `connection` line (it is a bridge option)"),
        ("connection", "broker.conf:1: connection: missing value (expected <name>)"),
        ("connection a b", "broker.conf:1: connection: unexpected extra value `b`"),
        ("connection a\ntopic x/#", "broker.conf:1: connection: connection a needs at least one `address` line"),
        ("connection a\naddress h\n\nconnection b", "broker.conf:1: connection: connection a needs at least one `topic` line"),
        ("connection a\naddress h\ntopic t\nremote_password p", "broker.conf:1: connection: connection a: remote_password needs remote_username"),
        (&format!("{BRIDGE}{BRIDGE}"), "broker.conf:4: connection: duplicate connection name `up`"),
        ("connection a\naddress", "broker.conf:2: address: missing value (expected <host[:port]> ...)"),
        ("connection a\naddress h:0", "broker.conf:2: address: expected <host>[:<port>] with port 1..65535 (an IPv6 address needs a port), got `h:0`"),
        ("connection a\naddress :1883", "broker.conf:2: address: expected <host>[:<port>] with port 1..65535 (an IPv6 address needs a port), got `:1883`"),
        ("connection a\ntopic a/# sideways", "broker.conf:2: topic: expected out, in or both, got `sideways`"),
        ("connection a\ntopic a/# in 3", "broker.conf:2: topic: expected 0..2, got 3 (QoS)"),
        ("connection a\ntopic a/#/b", "broker.conf:2: topic: `a/#/b` is not a valid topic filter (wildcards must be whole levels, `#` last)"),
        ("connection a\ntopic # in 0 l/+ r/", "broker.conf:2: topic: prefix `l/+` must not contain wildcards"),
        ("connection a\ntopic \"\" in 0 \"\" \"\"", "broker.conf:2: topic: an empty pattern (\"\") needs a local or remote prefix"),
        ("connection a\ntopic a in 0 l r extra", "broker.conf:2: topic: unexpected extra value `extra`"),
        ("connection a\nstart_type eager", "broker.conf:2: start_type: expected automatic, lazy or once, got `eager`"),
        ("connection a\nbridge_protocol_version 5", "broker.conf:2: bridge_protocol_version: expected mqttv31, mqttv311 or mqttv50, got `5`"),
        ("connection a\nkeepalive_interval 4", "broker.conf:2: keepalive_interval: expected 5..65535, got 4"),
        ("connection a\nthreshold 0", "broker.conf:2: threshold: expected 1..2147483647, got 0"),
        ("connection a\nrestart_timeout 30 5", "broker.conf:2: restart_timeout: cap 5 is below base 30"),
        ("connection a\ncleansession maybe", "broker.conf:2: cleansession: expected true or false, got `maybe`"),
        ("connection a\nremote_clientid", "broker.conf:2: remote_clientid: missing value (expected a value)"),
        ("connection a\nbridge_bind_address host", "broker.conf:2: bridge_bind_address: expected an IPv4 or IPv6 address or `localhost`, got `host`"),
    ];
    assert_errors(&cases);
}

#[test]
fn bad_topic_lines_name_file_and_line() {
    let cases = [
        (&format!("{BRIDGE}topic") as &str, "broker.conf:4: topic: missing value (expected <pattern> [[[out|in|both] <qos>] <local-prefix> <remote-prefix>])"),
        (&format!("{BRIDGE}\n# comment\ntopic a/# sideways"), "broker.conf:6: topic: expected out, in or both, got `sideways`"),
        (&format!("{BRIDGE}topic a/# both -1"), "broker.conf:4: topic: expected 0..2, got -1 (QoS)"),
        (&format!("{BRIDGE}topic # out 0 local remote/"), "broker.conf:4: topic: `local#` is not a valid topic filter (wildcards must be whole levels, `#` last)"),
        (&format!("{BRIDGE}topic a/# out 0 \"\" r/#"), "broker.conf:4: topic: prefix `r/#` must not contain wildcards"),
        (&format!("{BRIDGE}topic \"\" both 0 local/status"), "broker.conf:4: topic: an empty pattern (\"\") needs both prefixes (the remote topic would be empty)"),
        (&format!("{BRIDGE}topic \"\" both 0 \"\" remote/status"), "broker.conf:4: topic: an empty pattern (\"\") needs both prefixes (the local topic would be empty)"),
        (&format!("{BRIDGE}notification_topic state/+"), "broker.conf:4: notification_topic: `state/+` is a topic name and must not contain wildcards"),
        (&format!("{BRIDGE}bridge_max_packet_size -1"), "broker.conf:4: bridge_max_packet_size: expected 0..268435460, got -1"),
    ];
    assert_errors(&cases);
}

#[test]
fn global_keys_are_fine_inside_a_connection() {
    let (c, warnings) = parse(&format!(
        "{BRIDGE}max_keepalive 5\nlistener 1883\nmax_connections 3"
    ));
    assert_eq!(
        (c.max_keepalive, c.listeners[0].max_connections),
        (5, Some(3))
    );
    assert!(warnings.is_empty(), "{warnings:?}");
}

const REALISTIC: &str = r#"
# =================================================================
# General configuration
# =================================================================
per_listener_settings false
max_inflight_messages 40
max_queued_messages 2000
queue_qos0_messages false
message_size_limit 0
allow_zero_length_clientid true
persistent_client_expiration 14d
retain_available true
max_keepalive 120
pid_file /run/mosquitto/mosquitto.pid
user mosquitto

# Persistence
persistence true
persistence_location /var/lib/mosquitto/
autosave_interval 1800

# Logging
log_dest file /var/log/mosquitto/mosquitto.log
log_dest stdout
log_type error
log_type warning
log_type notice
connection_messages true
log_timestamp true

# Listeners
listener 1883 0.0.0.0
max_connections 500
listener 8883
cafile /etc/mosquitto/ca_certificates/ca.crt
certfile /etc/mosquitto/certs/server.crt
keyfile /etc/mosquitto/certs/server.key
require_certificate false
tls_version tlsv1.2
listener 9001 ::
protocol websockets

# Security
allow_anonymous false
password_file /etc/mosquitto/passwd
acl_file /etc/mosquitto/acl

include_dir /etc/mosquitto/conf.d

# Bridge into the cloud
connection emqx1
address broker.example.com:1883
bridge_protocol_version mqttv50
remote_clientid emqx_c
remote_username emqx_u
remote_password public
cleansession false
restart_timeout 5 30
notifications true
topic sensor/# out 1
topic control/# in 1
topic "" both 2 local/status remote/status
"#;

#[test]
fn realistic_mosquitto_conf() {
    // The log file's directory must exist (it is checked at parse time).
    let log = std::env::temp_dir().join("mosquitto.log");
    let text = REALISTIC.replace("/var/log/mosquitto/mosquitto.log", &log.to_string_lossy());
    let (c, warnings) = parse(&text);
    assert_eq!(
        addrs(&c),
        ["0.0.0.0:1883", "0.0.0.0:8883", "[::]:9001"].map(|a| a.parse::<SocketAddr>().unwrap())
    );
    assert_eq!(
        (
            c.max_inflight_messages,
            c.max_queued_messages,
            c.max_keepalive
        ),
        (40, 2000, 120)
    );
    assert_eq!(c.listeners[0].max_connections, Some(500));
    assert_eq!(c.listeners[2].protocol, ListenerProtocol::WebSockets);
    assert_eq!(
        c.persistent_client_expiration,
        Some(Duration::from_secs(14 * 86_400))
    );
    assert_eq!(c.log_dests, [LogDest::File(log), LogDest::Stdout]);
    assert_eq!(
        c.log_types,
        LogTypes {
            error: true,
            warning: true,
            notice: true,
            ..LogTypes::NONE
        }
    );
    assert!(!c.allow_anonymous);
    assert_eq!(
        c.password_file.as_deref(),
        Some(std::path::Path::new("/etc/mosquitto/passwd"))
    );
    assert!(!c.per_listener_settings);
    assert_eq!(c.acl_file.as_deref(), Some(Path::new("/etc/mosquitto/acl")));
    assert_eq!(c.message_size_limit, 0);
    let lines: Vec<usize> = warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [14, 15, 48]);
    // Persistence (lines 18-20) is supported: the journal directory.
    assert_eq!(
        c.journal_dir(),
        Some(PathBuf::from("/var/lib/mosquitto/shardmq.journal"))
    );
}

/// Tokens that are valid, invalid, or odd in some position.
const VOCABULARY: &[&str] = &[
    "listener",
    "port",
    "bind_address",
    "max_connections",
    "max_inflight_messages",
    "max_queued_messages",
    "max_packet_size",
    "max_keepalive",
    "persistent_client_expiration",
    "allow_anonymous",
    "per_listener_settings",
    "max_qos",
    "mount_point",
    "auto_id_prefix",
    "log_dest",
    "log_type",
    "connection",
    "address",
    "addresses",
    "topic",
    "remote_password",
    "restart_timeout",
    "start_type",
    "acl_file",
    "plugin_opt_",
    "auth_opt_x",
    "#",
    "+",
    "\"\"",
    "in",
    "out",
    "both",
    "0",
    "1",
    "-1",
    "2",
    "65535",
    "65536",
    "99999999999999999999999",
    "true",
    "false",
    "14d",
    "d",
    "é",
    "::1",
    "[::]",
    "localhost",
    "file",
    "all",
    "none",
    "a/#",
    "a/+/b",
    "",
    " ",
    "\t",
    "\r",
    "\u{feff}",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics(lines in prop::collection::vec(prop::collection::vec(prop::sample::select(VOCABULARY), 0..6), 0..24)) {
        let text: String = lines.iter().map(|tokens| tokens.join(" ") + "\n").collect();
        match Config::parse(&text, PATH) {
            Ok((config, _)) => prop_assert!(!config.listeners.is_empty()),
            Err(e) => prop_assert!(e.to_string().starts_with("broker.conf:")),
        }
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = Config::parse(&text, PATH);
    }
}

#[test]
fn shared_subscription_strategy_names_a_strategy() {
    use shardmq::index::Strategy;
    assert_eq!(
        Config::default().shared_subscription_strategy,
        Strategy::RoundRobin
    );
    for (name, strategy) in [
        ("round_robin", Strategy::RoundRobin),
        ("sticky", Strategy::Sticky),
        ("hash_topic", Strategy::HashTopic),
    ] {
        let c = parse_quiet(&format!("shared_subscription_strategy {name}\n"));
        assert_eq!(c.shared_subscription_strategy, strategy);
    }
    assert_errors(&[(
        "\nshared_subscription_strategy random\n",
        "broker.conf:2: shared_subscription_strategy: expected round_robin, sticky or hash_topic, got random",
    )]);
}

#[test]
fn password_file_is_scoped_like_allow_anonymous() {
    let c = parse_quiet(
        "per_listener_settings true\nlistener 1884\npassword_file /etc/a pw\nlistener 1885\n",
    );
    let own = c.listeners[0].security.clone().expect("its own settings");
    assert_eq!(
        own.password_file.as_deref(),
        Some(std::path::Path::new("/etc/a pw"))
    );
    assert!(!own.allow_anonymous, "false unless set, per listener too");
    assert_eq!(
        (c.listeners[1].security.clone(), c.password_file),
        (None, None)
    );
    let c = parse_quiet("listener 1884\npassword_file /etc/pw\n");
    assert_eq!(
        c.password_file.as_deref(),
        Some(std::path::Path::new("/etc/pw"))
    );
    assert_eq!(
        error("password_file"),
        "broker.conf:1: password_file: missing value (expected a file made by mosquitto_passwd)"
    );
}

#[test]
fn local_only_mode_allows_anonymous_clients_unless_told_otherwise() {
    let local = parse_quiet("password_file /etc/pw\n");
    assert!(local.local_only && local.allow_anonymous);
    assert_eq!(
        addrs(&local),
        ["127.0.0.1:1883".parse::<SocketAddr>().unwrap()]
    );
    assert!(!parse_quiet("allow_anonymous false\n").allow_anonymous);
    let own = parse_quiet("per_listener_settings true\nauto_id_prefix x-\n");
    let security = own.listeners[0].security.clone().expect("its own settings");
    assert!(security.allow_anonymous);
    let port = parse_quiet("port 1884\n");
    assert!(!port.local_only && !port.allow_anonymous);
    assert_eq!(
        addrs(&port),
        ["0.0.0.0:1884".parse::<SocketAddr>().unwrap()]
    );
}

#[test]
fn secure_websockets_are_refused_with_the_reason() {
    let err = error("listener 8884\nprotocol websockets\ncertfile /c\nkeyfile /k\n");
    assert!(err.starts_with("broker.conf:1: protocol"), "{err}");
    assert!(err.contains("wss://"), "{err}");
}

#[test]
fn sys_interval_and_metrics_listener() {
    let c = parse_quiet("");
    assert_eq!(c.sys_interval, std::time::Duration::from_secs(10));
    assert_eq!(c.metrics_listener, None);
    let c = parse_quiet("sys_interval 0\nmetrics_listener 9100\n");
    assert_eq!(c.sys_interval, std::time::Duration::ZERO);
    assert_eq!(
        c.metrics_listener,
        Some("0.0.0.0:9100".parse().expect("addr"))
    );
    let c = parse_quiet("sys_interval 1\nmetrics_listener 0 127.0.0.1\n");
    assert_eq!(c.sys_interval, std::time::Duration::from_secs(1));
    assert_eq!(
        c.metrics_listener,
        Some("127.0.0.1:0".parse().expect("addr"))
    );
    assert_errors(&[
        ("sys_interval -1", "broker.conf:1: sys_interval: expected 0..86400, got -1 (0 turns $SYS off)"),
        ("\nmetrics_listener 70000", "broker.conf:2: metrics_listener: expected 0..65535, got 70000"),
        ("metrics_listener 9100 nowhere", "broker.conf:1: metrics_listener: expected an IPv4 or IPv6 address or `localhost`, got `nowhere`"),
        ("metrics_listener", "broker.conf:1: metrics_listener: missing value (expected <port> [address])"),
    ]);
}
