//! `connection <name>` sections (Mosquitto bridges).
//!
//! Bridges are not supported yet: a section is validated structurally (every
//! value has the right form, `address` and `topic` are present, names are
//! unique) and then ignored with one warning. A later issue turns
//! [`BridgeSection`] into a public `BridgeConfig` and stores the values that
//! are only checked here.

use super::directives::{Apply, ApplyFn, Directive, Scope};
use super::lexer::Line;
use super::parser::{Parser, Section};
use super::value;
use crate::limits::{MAX_BRIDGE_ADDRESSES, PROTOCOL_MAX_PACKET_SIZE};

/// An open `connection` section.
pub(super) struct BridgeSection {
    /// The connection name.
    pub name: String,
    /// Line of the `connection` line.
    pub line: usize,
    addresses: usize,
    topics: usize,
    has_username: bool,
    has_password: bool,
}

impl BridgeSection {
    /// Checks what needs the whole section; `Err` is the reason.
    pub fn check(&self) -> Result<(), String> {
        let name = &self.name;
        if self.addresses == 0 {
            return Err(format!(
                "connection {name} needs at least one `address` line"
            ));
        }
        if self.topics == 0 {
            return Err(format!("connection {name} needs at least one `topic` line"));
        }
        if self.has_password && !self.has_username {
            return Err(format!(
                "connection {name}: remote_password needs remote_username"
            ));
        }
        Ok(())
    }
}

const fn bridge(key: &'static str, apply: ApplyFn) -> Directive {
    Directive::new(key, Scope::Bridge, Apply::Custom(apply))
}

/// Bridge keys (Mosquitto 2.0, plus the MQTT 5 ones from 2.1).
pub(super) const DIRECTIVES: &[Directive] = &[
    Directive::new("connection", Scope::Header, Apply::Custom(connection)),
    bridge("address", addresses),
    bridge("addresses", addresses),
    bridge("topic", topic),
    bridge("remote_username", username),
    bridge("username", username),
    bridge("remote_password", password),
    bridge("password", password),
    bridge("bridge_bind_address", bind_address),
    bridge("restart_timeout", restart_timeout),
    // true/false
    bridge("round_robin", boolean),
    bridge("cleansession", boolean),
    bridge("local_cleansession", boolean),
    bridge("notifications", boolean),
    bridge("notifications_local_only", boolean),
    bridge("try_private", boolean),
    bridge("bridge_attempt_unsubscribe", boolean),
    bridge("bridge_outgoing_retain", boolean),
    bridge("bridge_insecure", boolean),
    bridge("bridge_require_ocsp", boolean),
    // One of a few words, see CHOICES.
    bridge("start_type", one_of),
    bridge("bridge_protocol_version", one_of),
    // Numbers, see RANGES.
    bridge("threshold", number),
    bridge("idle_timeout", number),
    bridge("keepalive_interval", number),
    bridge("bridge_max_packet_size", number),
    bridge("bridge_receive_maximum", number),
    bridge("bridge_session_expiry_interval", number),
    bridge("bridge_max_topic_alias", number),
    // Free text (the rest of the line).
    bridge("remote_clientid", text),
    bridge("clientid", text),
    bridge("local_clientid", text),
    bridge("local_username", text),
    bridge("local_password", text),
    bridge("notification_topic", text),
    bridge("bridge_cafile", text),
    bridge("bridge_capath", text),
    bridge("bridge_certfile", text),
    bridge("bridge_keyfile", text),
    bridge("bridge_tls_version", text),
    bridge("bridge_alpn", text),
    bridge("bridge_identity", text),
    bridge("bridge_psk", text),
];

/// Allowed words per key.
const CHOICES: &[(&str, &[&str])] = &[
    ("start_type", &["automatic", "lazy", "once"]),
    (
        "bridge_protocol_version",
        &["mqttv31", "mqttv311", "mqttv50"],
    ),
];

/// Allowed ranges per key.
const RANGES: &[(&str, i64, i64)] = &[
    ("threshold", 1, i32::MAX as i64),
    ("idle_timeout", 1, i32::MAX as i64),
    ("keepalive_interval", 5, u16::MAX as i64),
    ("bridge_max_packet_size", 0, PROTOCOL_MAX_PACKET_SIZE as i64),
    ("bridge_receive_maximum", 1, u16::MAX as i64),
    ("bridge_session_expiry_interval", 0, u32::MAX as i64),
    ("bridge_max_topic_alias", 0, u16::MAX as i64),
];

/// `connection <name>`: opens a bridge section.
fn connection(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let name = line.single("<name>")?;
    if p.bridge_names.iter().any(|done| done == name) {
        return Err(format!("duplicate connection name `{name}`"));
    }
    p.section = Section::Connection(BridgeSection {
        name: name.to_string(),
        line: line.number,
        addresses: 0,
        topics: 0,
        has_username: false,
        has_password: false,
    });
    Ok(())
}

/// `address` / `addresses <host[:port]>...`.
fn addresses(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let hosts = line.some_tokens(1, MAX_BRIDGE_ADDRESSES, "<host[:port]> ...")?;
    for host in &hosts {
        check_address(host)?;
    }
    p.bridge()?.addresses += hosts.len();
    Ok(())
}

fn check_address(token: &str) -> Result<(), String> {
    let bad = || {
        format!("expected <host>[:<port>] with port 1..65535 (an IPv6 address needs a port), got `{token}`")
    };
    match token.rsplit_once(':') {
        None => Ok(()),
        Some((host, port)) if !host.is_empty() => {
            value::port_number(port, 1).map(drop).map_err(|_| bad())
        }
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
    if let Some(direction) = tokens.get(1) {
        value::choice(direction, &["out", "in", "both"])?;
    }
    if let Some(qos) = tokens.get(2) {
        value::integer(qos, 0, 2, "QoS")?;
    }
    let unquote = |token: &str| {
        if token == "\"\"" {
            String::new()
        } else {
            token.to_string()
        }
    };
    let prefixes: Vec<String> = tokens.iter().skip(3).map(|t| unquote(t)).collect();
    if let Some(prefix) = prefixes.iter().find(|prefix| prefix.contains(['+', '#'])) {
        return Err(format!("prefix `{prefix}` must not contain wildcards"));
    }
    let pattern = unquote(tokens[0]);
    if pattern.is_empty() && prefixes.iter().all(String::is_empty) {
        return Err("an empty pattern (\"\") needs a local or remote prefix".to_string());
    }
    for prefix in prefixes.iter().chain([&String::new()]) {
        check_filter(&format!("{prefix}{pattern}"))?;
    }
    p.bridge()?.topics += 1;
    Ok(())
}

/// Wildcards only as whole levels, `#` only last.
fn check_filter(filter: &str) -> Result<(), String> {
    let levels: Vec<&str> = filter.split('/').collect();
    let misplaced = levels.iter().enumerate().any(|(i, level)| {
        (level.contains('#') && (*level != "#" || i + 1 != levels.len()))
            || (level.contains('+') && *level != "+")
    });
    if misplaced {
        Err(format!(
            "`{filter}` is not a valid topic filter (wildcards must be whole levels, `#` last)"
        ))
    } else {
        Ok(())
    }
}

fn username(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    line.text("a user name")?;
    p.bridge()?.has_username = true;
    Ok(())
}

fn password(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    line.text("a password")?;
    p.bridge()?.has_password = true;
    Ok(())
}

fn bind_address(_: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    value::ip_address(line.single("an IP address")?).map(drop)
}

/// `restart_timeout <s>` or `<base> <cap>`.
fn restart_timeout(_: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let tokens = line.some_tokens(1, 2, "<seconds> or <base> <cap>")?;
    let seconds: Vec<i64> = tokens
        .iter()
        .map(|t| value::integer(t, 1, i32::MAX.into(), ""))
        .collect::<Result<_, _>>()?;
    match seconds[..] {
        [base, cap] if cap < base => Err(format!("cap {cap} is below base {base}")),
        _ => Ok(()),
    }
}

fn boolean(_: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    value::boolean_line(line).map(drop)
}

fn text(_: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    line.text("a value").map(drop)
}

fn one_of(_: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let choices = CHOICES
        .iter()
        .find(|(key, _)| *key == line.key)
        .map_or(&[][..], |(_, c)| *c);
    value::choice(line.single(&choices.join("|"))?, choices).map(drop)
}

fn number(_: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let (min, max) = RANGES
        .iter()
        .find(|(key, ..)| *key == line.key)
        .map_or((0, 0), |(_, min, max)| (*min, *max));
    value::integer(line.single(&format!("{min}..{max}"))?, min, max, "").map(drop)
}
