//! `connection <name>` sections (Mosquitto bridges) parsed into [`BridgeConfig`].
//!
//! Every Mosquitto 2.0 bridge key (plus the MQTT 5 ones from 2.1) is parsed
//! into a typed value; the defaults are Mosquitto's. Values that depend on
//! others (`remote_clientid`, `local_clientid`, `notification_topic`,
//! `local_cleansession`, the lazy start settings) are resolved when the
//! section closes, so their order in the file does not matter.
//!
//! The `topic` line and the topic mapping are in `bridge_topic.rs`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::bridge_topic::BridgeTopic;
use super::directives::{Apply, ApplyFn, Directive, Scope};
use super::lexer::Line;
use super::parser::{Parser, Section};
use super::value;
use crate::limits::{MAX_BRIDGE_ADDRESSES, PROTOCOL_MAX_PACKET_SIZE};
use crate::protocol::{ProtocolVersion, QoS};

/// Port used when an `address` has none.
pub const DEFAULT_BRIDGE_PORT: u16 = 1883;

/// One `connection` section: how to reach the remote broker and which topics
/// flow each way. Part of [`super::Config`]; the bridge thread will own a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The connection name (unique in the file).
    pub name: String,
    /// Remote brokers in file order, at least one (`address`/`addresses`
    /// lines accumulate).
    pub addresses: Vec<BridgeAddress>,
    /// `round_robin`: false makes the first address primary, re-tried while
    /// on a secondary; true treats all alike. Default false.
    pub round_robin: bool,
    /// `start_type` (with `threshold`, `idle_timeout`). Default automatic.
    pub start_type: StartType,
    /// `restart_timeout`. Default backoff between 5 s and 30 s.
    pub restart_timeout: RestartTimeout,
    /// `keepalive_interval` in seconds, 5..=65535. Default 60.
    pub keepalive_interval: u16,
    /// `cleansession` on the remote. Default false.
    pub clean_session: bool,
    /// `local_cleansession`. Default: `clean_session`.
    pub local_clean_session: bool,
    /// `remote_clientid` / `clientid`. Default `<name>.<hostname>`.
    pub remote_clientid: String,
    /// `local_clientid`. Default `local.<remote_clientid>`.
    pub local_clientid: String,
    /// `remote_username` / `username`.
    pub remote_username: Option<String>,
    /// `remote_password` / `password`; only with a `remote_username`.
    pub remote_password: Option<String>,
    /// `local_username`, for local auth and ACL checks.
    pub local_username: Option<String>,
    /// `local_password`.
    pub local_password: Option<String>,
    /// `notifications`: publish the retained link state. Default true.
    pub notifications: bool,
    /// `notifications_local_only`. Default false.
    pub notifications_local_only: bool,
    /// `notification_topic` (a topic name, no wildcards). Default
    /// `$SYS/broker/connection/<remote_clientid>/state`.
    pub notification_topic: String,
    /// `try_private`: MQTT 3.x bridge bit. Default true.
    pub try_private: bool,
    /// `bridge_protocol_version`. Default MQTT 3.1.1.
    pub protocol: ProtocolVersion,
    /// `bridge_attempt_unsubscribe`. Default true.
    pub attempt_unsubscribe: bool,
    /// `bridge_outgoing_retain`: false clears the retain flag going out. Default true.
    pub outgoing_retain: bool,
    /// `bridge_max_packet_size` in bytes; `None` (0 in the file) = no cap.
    pub max_packet_size: Option<u32>,
    /// `bridge_bind_address`: local address of the outgoing connection.
    pub bind_address: Option<IpAddr>,
    /// `bridge_*` TLS settings (stored; TLS is not implemented yet).
    pub tls: BridgeTls,
    /// `bridge_receive_maximum`, 1..=65535. Default 20.
    pub receive_maximum: u16,
    /// `bridge_session_expiry_interval` in seconds. Default 0.
    pub session_expiry_interval: u32,
    /// `bridge_max_topic_alias`. Default 10.
    pub max_topic_alias: u16,
    /// `topic` lines in file order, at least one; the first match decides.
    pub topics: Vec<BridgeTopic>,
}

impl BridgeConfig {
    /// The remote topic and QoS for a local message: the first `out`/`both`
    /// line whose local filter matches `local_topic` decides (its local
    /// prefix is stripped, its remote prefix prepended). `None`: not bridged.
    pub fn map_out(&self, local_topic: &str) -> Option<(String, QoS)> {
        self.topics
            .iter()
            .find_map(|t| t.map_out(local_topic).map(|mapped| (mapped, t.qos)))
    }

    /// The local topic and QoS for a message from the remote: the mirror of
    /// [`map_out`](Self::map_out) over `in`/`both` lines.
    pub fn map_in(&self, remote_topic: &str) -> Option<(String, QoS)> {
        self.topics
            .iter()
            .find_map(|t| t.map_in(remote_topic).map(|mapped| (mapped, t.qos)))
    }
}

/// A remote broker: `host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeAddress {
    /// Host name or IP address as written (not resolved here).
    pub host: String,
    /// Port; [`DEFAULT_BRIDGE_PORT`] when the address has none.
    pub port: u16,
}

/// `start_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartType {
    /// Connect at start-up and reconnect after `restart_timeout`.
    Automatic,
    /// Connect once `threshold` messages are queued; disconnect after
    /// `idle_timeout` without traffic.
    Lazy {
        /// `threshold`, default 10.
        threshold: u32,
        /// `idle_timeout`, default 60 s.
        idle_timeout: Duration,
    },
    /// Connect at start-up; never reconnect.
    Once,
}

/// `restart_timeout`: the delay before reconnecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartTimeout {
    /// `restart_timeout <s>`: always this long.
    Constant(Duration),
    /// `restart_timeout <base> <cap>`: jittered backoff, `base <= cap`.
    Backoff {
        /// First delay.
        base: Duration,
        /// Longest delay.
        cap: Duration,
    },
}

/// The `bridge_*` TLS keys, stored as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeTls {
    /// `bridge_cafile`.
    pub cafile: Option<PathBuf>,
    /// `bridge_capath`.
    pub capath: Option<PathBuf>,
    /// `bridge_certfile`.
    pub certfile: Option<PathBuf>,
    /// `bridge_keyfile`.
    pub keyfile: Option<PathBuf>,
    /// `bridge_insecure`: skip host name verification. Default false.
    pub insecure: bool,
    /// `bridge_require_ocsp`. Default false.
    pub require_ocsp: bool,
    /// `bridge_tls_version`. Default `tlsv1.2`.
    pub tls_version: String,
    /// `bridge_alpn`.
    pub alpn: Option<String>,
    /// `bridge_identity` (TLS-PSK).
    pub identity: Option<String>,
    /// `bridge_psk` (hex).
    pub psk: Option<String>,
}

impl Default for BridgeTls {
    fn default() -> Self {
        BridgeTls {
            cafile: None,
            capath: None,
            certfile: None,
            keyfile: None,
            insecure: false,
            require_ocsp: false,
            tls_version: "tlsv1.2".to_string(),
            alpn: None,
            identity: None,
            psk: None,
        }
    }
}

/// An open `connection` section: the values so far, and the ones whose
/// default depends on others until the section closes.
pub(super) struct BridgeSection {
    /// Line of the `connection` line.
    pub line: usize,
    /// Everything with a fixed default; the derived fields are filled by
    /// [`BridgeSection::finish`].
    config: BridgeConfig,
    remote_clientid: Option<String>,
    local_clientid: Option<String>,
    notification_topic: Option<String>,
    local_clean_session: Option<bool>,
    /// `threshold` and `idle_timeout` apply to a lazy start only.
    threshold: u32,
    idle_timeout: Duration,
}

impl BridgeSection {
    fn new(name: &str, line: usize) -> Self {
        BridgeSection {
            line,
            config: BridgeConfig {
                name: name.to_string(),
                addresses: Vec::new(),
                round_robin: false,
                start_type: StartType::Automatic,
                restart_timeout: RestartTimeout::Backoff {
                    base: Duration::from_secs(5),
                    cap: Duration::from_secs(30),
                },
                keepalive_interval: 60,
                clean_session: false,
                local_clean_session: false,
                remote_clientid: String::new(),
                local_clientid: String::new(),
                remote_username: None,
                remote_password: None,
                local_username: None,
                local_password: None,
                notifications: true,
                notifications_local_only: false,
                notification_topic: String::new(),
                try_private: true,
                protocol: ProtocolVersion::V311,
                attempt_unsubscribe: true,
                outgoing_retain: true,
                max_packet_size: None,
                bind_address: None,
                tls: BridgeTls::default(),
                receive_maximum: 20,
                session_expiry_interval: 0,
                max_topic_alias: 10,
                topics: Vec::new(),
            },
            remote_clientid: None,
            local_clientid: None,
            notification_topic: None,
            local_clean_session: None,
            threshold: 10,
            idle_timeout: Duration::from_secs(60),
        }
    }

    /// Checks what needs the whole section and fills the derived defaults;
    /// `Err` is the reason. `hostname` is called only when needed.
    pub fn finish(self, hostname: impl FnOnce() -> String) -> Result<BridgeConfig, String> {
        let BridgeSection {
            mut config,
            remote_clientid,
            local_clientid,
            notification_topic,
            local_clean_session,
            threshold,
            idle_timeout,
            ..
        } = self;
        let name = &config.name;
        if config.addresses.is_empty() {
            return Err(format!(
                "connection {name} needs at least one `address` line"
            ));
        }
        if config.topics.is_empty() {
            return Err(format!("connection {name} needs at least one `topic` line"));
        }
        if config.remote_password.is_some() && config.remote_username.is_none() {
            return Err(format!(
                "connection {name}: remote_password needs remote_username"
            ));
        }
        let remote_clientid = remote_clientid.unwrap_or_else(|| format!("{name}.{}", hostname()));
        config.local_clientid =
            local_clientid.unwrap_or_else(|| format!("local.{remote_clientid}"));
        config.notification_topic = notification_topic
            .unwrap_or_else(|| format!("$SYS/broker/connection/{remote_clientid}/state"));
        config.remote_clientid = remote_clientid;
        config.local_clean_session = local_clean_session.unwrap_or(config.clean_session);
        if let StartType::Lazy { .. } = config.start_type {
            config.start_type = StartType::Lazy {
                threshold,
                idle_timeout,
            };
        }
        Ok(config)
    }
}

/// This machine's host name for default client ids; `localhost` if it
/// cannot be read.
pub(super) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; the result is
    // read only up to the first NUL (or the whole buffer if truncated).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if rc == 0 && !name.is_empty() => name.to_string(),
        _ => "localhost".to_string(),
    }
}

const fn bridge(key: &'static str, apply: ApplyFn) -> Directive {
    Directive::new(key, Scope::Bridge, Apply::Custom(apply))
}

/// Bridge keys (Mosquitto 2.0, plus the MQTT 5 ones from 2.1), each with the
/// field it sets.
pub(super) const DIRECTIVES: &[Directive] = &[
    Directive::new("connection", Scope::Header, Apply::Custom(connection)),
    bridge("address", addresses),
    bridge("addresses", addresses),
    bridge("topic", topic),
    bridge("bridge_bind_address", bind_address),
    bridge("restart_timeout", restart_timeout),
    bridge("start_type", start_type),
    bridge("bridge_protocol_version", protocol_version),
    bridge("bridge_max_packet_size", max_packet_size),
    bridge("notification_topic", notification_topic),
    // true/false
    bridge("round_robin", |p, l| {
        flag(p, l, |b| &mut b.config.round_robin)
    }),
    bridge("cleansession", |p, l| {
        flag(p, l, |b| &mut b.config.clean_session)
    }),
    bridge("local_cleansession", |p, l| {
        let value = value::boolean_line(l)?;
        p.bridge()?.local_clean_session = Some(value);
        Ok(())
    }),
    bridge("notifications", |p, l| {
        flag(p, l, |b| &mut b.config.notifications)
    }),
    bridge("notifications_local_only", |p, l| {
        flag(p, l, |b| &mut b.config.notifications_local_only)
    }),
    bridge("try_private", |p, l| {
        flag(p, l, |b| &mut b.config.try_private)
    }),
    bridge("bridge_attempt_unsubscribe", |p, l| {
        flag(p, l, |b| &mut b.config.attempt_unsubscribe)
    }),
    bridge("bridge_outgoing_retain", |p, l| {
        flag(p, l, |b| &mut b.config.outgoing_retain)
    }),
    bridge("bridge_insecure", |p, l| {
        flag(p, l, |b| &mut b.config.tls.insecure)
    }),
    bridge("bridge_require_ocsp", |p, l| {
        flag(p, l, |b| &mut b.config.tls.require_ocsp)
    }),
    // Numbers in a range.
    bridge("threshold", |p, l| {
        number(p, l, 1, i32::MAX.into(), |b| &mut b.threshold)
    }),
    bridge("idle_timeout", |p, l| {
        let seconds: u64 = parse_number(l, 1, i32::MAX.into())?;
        p.bridge()?.idle_timeout = Duration::from_secs(seconds);
        Ok(())
    }),
    bridge("keepalive_interval", |p, l| {
        number(p, l, 5, u16::MAX.into(), |b| {
            &mut b.config.keepalive_interval
        })
    }),
    bridge("bridge_receive_maximum", |p, l| {
        number(p, l, 1, u16::MAX.into(), |b| &mut b.config.receive_maximum)
    }),
    bridge("bridge_session_expiry_interval", |p, l| {
        number(p, l, 0, u32::MAX.into(), |b| {
            &mut b.config.session_expiry_interval
        })
    }),
    bridge("bridge_max_topic_alias", |p, l| {
        number(p, l, 0, u16::MAX.into(), |b| &mut b.config.max_topic_alias)
    }),
    // Free text (the rest of the line).
    bridge("remote_clientid", |p, l| {
        text(p, l, |b| &mut b.remote_clientid)
    }),
    bridge("clientid", |p, l| text(p, l, |b| &mut b.remote_clientid)),
    bridge("local_clientid", |p, l| {
        text(p, l, |b| &mut b.local_clientid)
    }),
    bridge("remote_username", |p, l| {
        text(p, l, |b| &mut b.config.remote_username)
    }),
    bridge("username", |p, l| {
        text(p, l, |b| &mut b.config.remote_username)
    }),
    bridge("remote_password", |p, l| {
        text(p, l, |b| &mut b.config.remote_password)
    }),
    bridge("password", |p, l| {
        text(p, l, |b| &mut b.config.remote_password)
    }),
    bridge("local_username", |p, l| {
        text(p, l, |b| &mut b.config.local_username)
    }),
    bridge("local_password", |p, l| {
        text(p, l, |b| &mut b.config.local_password)
    }),
    bridge("bridge_cafile", |p, l| {
        path(p, l, |b| &mut b.config.tls.cafile)
    }),
    bridge("bridge_capath", |p, l| {
        path(p, l, |b| &mut b.config.tls.capath)
    }),
    bridge("bridge_certfile", |p, l| {
        path(p, l, |b| &mut b.config.tls.certfile)
    }),
    bridge("bridge_keyfile", |p, l| {
        path(p, l, |b| &mut b.config.tls.keyfile)
    }),
    bridge("bridge_tls_version", |p, l| {
        text(p, l, |b| &mut b.config.tls.tls_version)
    }),
    bridge("bridge_alpn", |p, l| text(p, l, |b| &mut b.config.tls.alpn)),
    bridge("bridge_identity", |p, l| {
        text(p, l, |b| &mut b.config.tls.identity)
    }),
    bridge("bridge_psk", |p, l| text(p, l, |b| &mut b.config.tls.psk)),
];

/// `connection <name>`: opens a bridge section.
fn connection(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let name = line.single("<name>")?;
    if p.config.bridges.iter().any(|done| done.name == name) {
        return Err(format!("duplicate connection name `{name}`"));
    }
    p.section = Section::Connection(Box::new(BridgeSection::new(name, line.number)));
    Ok(())
}

/// `address` / `addresses <host[:port]>...`: accumulate.
fn addresses(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let hosts = line.some_tokens(1, MAX_BRIDGE_ADDRESSES, "<host[:port]> ...")?;
    let parsed: Vec<BridgeAddress> = hosts
        .iter()
        .map(|host| parse_address(host))
        .collect::<Result<_, _>>()?;
    p.bridge()?.config.addresses.extend(parsed);
    Ok(())
}

/// `host`, `host:port`, `ipv6:port`; the port is 1..=65535.
fn parse_address(token: &str) -> Result<BridgeAddress, String> {
    let bad = || {
        format!("expected <host>[:<port>] with port 1..65535 (an IPv6 address needs a port), got `{token}`")
    };
    match token.rsplit_once(':') {
        None => Ok(BridgeAddress {
            host: token.to_string(),
            port: DEFAULT_BRIDGE_PORT,
        }),
        Some((host, port)) if !host.is_empty() => Ok(BridgeAddress {
            host: host.to_string(),
            port: value::port_number(port, 1).map_err(|_| bad())?,
        }),
        Some(_) => Err(bad()),
    }
}

/// `topic <pattern> [[[out|in|both] <qos>] <local-prefix> <remote-prefix>]`.
fn topic(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let tokens = line.some_tokens(
        1,
        5,
        "<pattern> [[[out|in|both] <qos>] <local-prefix> <remote-prefix>]",
    )?;
    let topic = BridgeTopic::parse(&tokens)?;
    p.bridge()?.config.topics.push(topic);
    Ok(())
}

fn bind_address(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let address = value::ip_address(line.single("an IP address")?)?;
    p.bridge()?.config.bind_address = Some(address);
    Ok(())
}

/// `restart_timeout <s>` or `<base> <cap>`.
fn restart_timeout(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let tokens = line.some_tokens(1, 2, "<seconds> or <base> <cap>")?;
    let seconds: Vec<u64> = tokens
        .iter()
        .map(|t| value::integer(t, 1, i32::MAX.into(), "").map(i64::unsigned_abs))
        .collect::<Result<_, _>>()?;
    let timeout = match seconds[..] {
        [base, cap] if cap < base => return Err(format!("cap {cap} is below base {base}")),
        [base, cap] => RestartTimeout::Backoff {
            base: Duration::from_secs(base),
            cap: Duration::from_secs(cap),
        },
        _ => RestartTimeout::Constant(Duration::from_secs(seconds[0])),
    };
    p.bridge()?.config.restart_timeout = timeout;
    Ok(())
}

/// `start_type automatic|lazy|once`; the lazy settings are filled in by
/// [`BridgeSection::finish`].
fn start_type(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    const CHOICES: &[&str] = &["automatic", "lazy", "once"];
    let start = match value::choice(line.single(&CHOICES.join("|"))?, CHOICES)? {
        "lazy" => StartType::Lazy {
            threshold: 0,
            idle_timeout: Duration::ZERO,
        },
        "once" => StartType::Once,
        _ => StartType::Automatic,
    };
    p.bridge()?.config.start_type = start;
    Ok(())
}

/// `bridge_protocol_version mqttv31|mqttv311|mqttv50`.
fn protocol_version(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    const CHOICES: &[&str] = &["mqttv31", "mqttv311", "mqttv50"];
    let protocol = match value::choice(line.single(&CHOICES.join("|"))?, CHOICES)? {
        "mqttv31" => ProtocolVersion::V31,
        "mqttv50" => ProtocolVersion::V5,
        _ => ProtocolVersion::V311,
    };
    p.bridge()?.config.protocol = protocol;
    Ok(())
}

/// `bridge_max_packet_size <bytes>`; 0 = no cap.
fn max_packet_size(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let bytes: u32 = parse_number(line, 0, PROTOCOL_MAX_PACKET_SIZE as i64)?;
    p.bridge()?.config.max_packet_size = (bytes > 0).then_some(bytes);
    Ok(())
}

/// `notification_topic <topic>`: a topic name, so no wildcards.
fn notification_topic(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let topic = line.text("a topic")?;
    if topic.contains(['+', '#']) {
        return Err(format!(
            "`{topic}` is a topic name and must not contain wildcards"
        ));
    }
    p.bridge()?.notification_topic = Some(topic.to_string());
    Ok(())
}

/// A `true`/`false` line into `field`.
fn flag(
    p: &mut Parser<'_>,
    line: &Line<'_>,
    field: fn(&mut BridgeSection) -> &mut bool,
) -> Result<(), String> {
    let value = value::boolean_line(line)?;
    *field(p.bridge()?) = value;
    Ok(())
}

/// A number in `min..=max` (which must fit `T`) into `field`.
fn number<T: TryFrom<i64>>(
    p: &mut Parser<'_>,
    line: &Line<'_>,
    min: i64,
    max: i64,
    field: fn(&mut BridgeSection) -> &mut T,
) -> Result<(), String> {
    let value = parse_number(line, min, max)?;
    *field(p.bridge()?) = value;
    Ok(())
}

/// The single number of `line`, in `min..=max`.
fn parse_number<T: TryFrom<i64>>(line: &Line<'_>, min: i64, max: i64) -> Result<T, String> {
    let token = line.single(&format!("{min}..{max}"))?;
    let value = value::integer(token, min, max, "")?;
    T::try_from(value).map_err(|_| format!("expected {min}..{max}, got {token}"))
}

/// The rest of the line into `field`.
fn text<T: From<String>>(
    p: &mut Parser<'_>,
    line: &Line<'_>,
    field: fn(&mut BridgeSection) -> &mut T,
) -> Result<(), String> {
    let value = line.text("a value")?.to_string();
    *field(p.bridge()?) = T::from(value);
    Ok(())
}

/// The rest of the line as a path into `field`.
fn path(
    p: &mut Parser<'_>,
    line: &Line<'_>,
    field: fn(&mut BridgeSection) -> &mut Option<PathBuf>,
) -> Result<(), String> {
    let value = PathBuf::from(line.text("a path")?);
    *field(p.bridge()?) = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The single bridge of `connection b` + `address h` + `topics`.
    fn bridge(topics: &[&str]) -> BridgeConfig {
        let lines: Vec<String> = topics.iter().map(|t| format!("topic {t}")).collect();
        let text = format!("connection b\naddress h\n{}", lines.join("\n"));
        let (mut config, _) = Config::parse(&text, "t.conf").expect("parses");
        config.bridges.pop().expect("one bridge")
    }

    #[test]
    fn first_matching_line_wins() {
        let b = bridge(&[
            "sensor/secret/# in 2",
            "sensor/# out 1 \"\" site1/",
            "sensor/temp out 2 \"\" other/",
            "# both 0 local/ remote/",
        ]);
        // The `in` line is skipped going out; the second line wins over the third.
        assert_eq!(
            b.map_out("sensor/temp"),
            Some(("site1/sensor/temp".to_string(), QoS::AtLeastOnce))
        );
        assert_eq!(
            b.map_out("sensor/secret/x"),
            Some(("site1/sensor/secret/x".to_string(), QoS::AtLeastOnce))
        );
        assert_eq!(
            b.map_out("local/a"),
            Some(("remote/a".to_string(), QoS::AtMostOnce))
        );
        assert_eq!(b.map_out("other/a"), None);
        assert_eq!(
            b.map_in("sensor/secret/x"),
            Some(("sensor/secret/x".to_string(), QoS::ExactlyOnce))
        );
        assert_eq!(
            b.map_in("remote/sensor/temp"),
            Some(("local/sensor/temp".to_string(), QoS::AtMostOnce))
        );
        assert_eq!(b.map_in("sensor/temp"), None);
    }

    #[test]
    fn the_emqx_deployment_maps_each_way() {
        let b = bridge(&["sensor/# out 1", "control/# in 1"]);
        let one = |t: &str| Some((t.to_string(), QoS::AtLeastOnce));
        assert_eq!(b.map_out("sensor/kitchen/temp"), one("sensor/kitchen/temp"));
        assert_eq!(b.map_out("control/valve"), None);
        assert_eq!(b.map_in("control/valve"), one("control/valve"));
        assert_eq!(b.map_in("sensor/kitchen/temp"), None);
        assert_eq!(b.map_out("$SYS/broker/uptime"), None);
    }

    #[test]
    fn addresses_default_the_port() {
        let address = |host: &str, port| BridgeAddress {
            host: host.to_string(),
            port,
        };
        assert_eq!(parse_address("h"), Ok(address("h", 1883)));
        assert_eq!(parse_address("h:8883"), Ok(address("h", 8883)));
        assert_eq!(parse_address("::1:1884"), Ok(address("::1", 1884)));
        assert!(parse_address("h:0").is_err());
        assert!(parse_address(":1883").is_err());
    }

    #[test]
    fn hostname_is_never_empty() {
        let name = hostname();
        assert!(!name.is_empty());
        assert!(!name.contains('\0'));
    }
}
