//! Directives that set broker-wide fields of [`Config`] (and the listener
//! headers), with their parse/apply functions.

use super::directives::{Apply, ApplyFn, Directive, Scope};
use super::lexer::Line;
use super::parser::Parser;
use super::{listener, value, Config, OverloadPolicy};
use std::time::Duration;

use crate::index::Strategy;
use crate::limits::{
    MAX_OVERLOAD_STALL_TIMEOUT, MAX_PASSWORD_CHECK_QUEUE, MAX_PASSWORD_CHECK_THREADS, MAX_PAYLOAD,
    MAX_QUEUED_MESSAGES_CAP, MAX_TOPIC_ALIAS, MIN_PACKET_SIZE, PROTOCOL_MAX_PACKET_SIZE,
    WS_HEADERS_DEFAULT, WS_HEADERS_MAX,
};
use crate::persist::{Durability, DEFAULT_COMMIT_INTERVAL};

const fn global(key: &'static str, apply: ApplyFn) -> Directive {
    Directive::new(key, Scope::Global, Apply::Custom(apply))
}

const fn flag(key: &'static str, field: fn(&mut Config) -> &mut bool) -> Directive {
    Directive::new(key, Scope::Global, Apply::Flag(field))
}

/// Supported keys.
pub(super) const DIRECTIVES: &[Directive] = &[
    Directive::new("listener", Scope::Header, Apply::Custom(listener::listener)),
    global("port", listener::port),
    global("bind_address", listener::bind_address),
    Directive::new(
        "max_connections",
        Scope::Listener,
        Apply::Custom(max_connections),
    ),
    Directive::new(
        "max_topic_alias",
        Scope::Listener,
        Apply::Custom(max_topic_alias),
    ),
    global("max_inflight_messages", max_inflight_messages),
    global("max_queued_messages", max_queued_messages),
    global("max_queued_bytes", max_queued_bytes),
    flag("queue_qos0_messages", |c| &mut c.queue_qos0_messages),
    global("overload_policy", overload_policy),
    global("overload_stall_timeout", overload_stall_timeout),
    global("max_packet_size", max_packet_size),
    global("max_keepalive", max_keepalive),
    global("persistent_client_expiration", persistent_client_expiration),
    flag("retain_available", |c| &mut c.retain_available),
    Directive::new("max_qos", Scope::Listener, Apply::Custom(listener::max_qos)),
    Directive::new(
        "protocol",
        Scope::Listener,
        Apply::Custom(listener::protocol),
    ),
    global("websockets_headers_size", websockets_headers_size),
    Directive::new(
        "mount_point",
        Scope::Listener,
        Apply::Custom(listener::mount_point),
    ),
    global("message_size_limit", message_size_limit),
    flag("upgrade_outgoing_qos", |c| &mut c.upgrade_outgoing_qos),
    global("max_inflight_bytes", max_inflight_bytes),
    flag("set_tcp_nodelay", |c| &mut c.set_tcp_nodelay),
    global("shared_subscription_strategy", shared_subscription_strategy),
    flag("persistence", |c| &mut c.persistence),
    global("persistence_location", persistence_location),
    global("persistence_file", persistence_file),
    global("persistence_sync", persistence_sync),
    global("persistence_commit_interval", persistence_commit_interval),
    global("autosave_interval", autosave_interval),
    global("persistence_compact_size", persistence_compact_size),
    global("password_check_threads", password_check_threads),
    global("password_check_queue", password_check_queue),
    global("sys_interval", sys_interval),
    global("metrics_listener", metrics_listener),
];

/// `sys_interval <seconds>`: 0 (no `$SYS` updates)..86400.
fn sys_interval(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let secs = value::integer(line.single("0..86400")?, 0, 86_400, "0 turns $SYS off")?;
    p.config.sys_interval = Duration::from_secs(secs.unsigned_abs());
    Ok(())
}

/// `metrics_listener <port> [address]` (a shardmq key): the Prometheus
/// endpoint, on every interface unless an address is given.
fn metrics_listener(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let tokens = line.some_tokens(1, 2, "<port> [address]")?;
    p.config.metrics_listener = Some(value::port_and_address(&tokens)?);
    Ok(())
}

/// `password_check_threads`: 1..[`MAX_PASSWORD_CHECK_THREADS`] (a shardmq key).
fn password_check_threads(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let max = MAX_PASSWORD_CHECK_THREADS as i64;
    let n = value::integer(
        line.single("1..64")?,
        1,
        max,
        "threads checking password hashes",
    )?;
    p.config.password_check_threads = usize::try_from(n).unwrap_or(1);
    Ok(())
}

/// `password_check_queue`: 1..[`MAX_PASSWORD_CHECK_QUEUE`] (a shardmq key).
fn password_check_queue(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let max = MAX_PASSWORD_CHECK_QUEUE as i64;
    let note = "password checks waiting, broker-wide";
    let n = value::integer(line.single("1..65536")?, 1, max, note)?;
    p.config.password_check_queue = usize::try_from(n).unwrap_or(1);
    Ok(())
}

/// `max_connections`: the current listener's limit, as in Mosquitto; -1
/// (or 0, which Mosquitto also treats as no limit) = unlimited.
fn max_connections(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let limit = value::integer(
        line.single("-1..2147483647")?,
        -1,
        i32::MAX.into(),
        "-1 means unlimited",
    )?;
    p.listeners.current(line.number, line.key).max_connections =
        usize::try_from(limit).ok().filter(|&n| n > 0);
    Ok(())
}

/// `websockets_headers_size`: the largest WebSocket upgrade request;
/// 0 = Mosquitto's default, [`WS_HEADERS_DEFAULT`].
fn websockets_headers_size(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let max = WS_HEADERS_MAX as i64;
    let size = value::integer(
        line.single("0..65536")?,
        0,
        max,
        "bytes; 0 means the default, 1024",
    )?;
    p.config.websockets_headers_size = match size {
        0 => WS_HEADERS_DEFAULT,
        n => n as usize,
    };
    Ok(())
}

/// `max_topic_alias`: 0..[`MAX_TOPIC_ALIAS`], 0 = clients may not use topic aliases.
///
/// Mosquitto sets it per listener; shardmq applies one broker-wide value (the last one given).
fn max_topic_alias(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let n = value::integer(
        line.single("0..65535")?,
        0,
        MAX_TOPIC_ALIAS.into(),
        "0 means no topic aliases",
    )?;
    p.config.max_topic_alias = u16::try_from(n).unwrap_or(MAX_TOPIC_ALIAS);
    Ok(())
}

/// `max_inflight_messages`: 1..65535, 0 = unlimited (65535).
fn max_inflight_messages(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let token = line.single("1..65535")?;
    let n = value::integer(token, 0, u16::MAX.into(), "")
        .map_err(|_| format!("expected 1..65535, got {token} (0 means unlimited)"))?;
    p.config.max_inflight_messages = u16::try_from(n).ok().filter(|&n| n > 0).unwrap_or(u16::MAX);
    Ok(())
}

/// `max_queued_messages`: 0 = unlimited, which shardmq caps at [`MAX_QUEUED_MESSAGES_CAP`].
fn max_queued_messages(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let note = "0 means unlimited, capped at 1000000";
    let n = value::count(line.single("0..1000000")?, MAX_QUEUED_MESSAGES_CAP, note)?;
    p.config.max_queued_messages = if n == 0 { MAX_QUEUED_MESSAGES_CAP } else { n };
    Ok(())
}

/// `max_queued_bytes`: 0 = unlimited.
fn max_queued_bytes(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    p.config.max_queued_bytes = value::byte_count(line)?;
    Ok(())
}

/// `overload_policy backpressure|drop` (a shardmq key).
fn overload_policy(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let choice = value::choice(
        line.single("backpressure or drop")?,
        &["backpressure", "drop"],
    )?;
    p.config.overload_policy = match choice {
        "drop" => OverloadPolicy::Drop,
        _ => OverloadPolicy::Backpressure,
    };
    Ok(())
}

/// `overload_stall_timeout <seconds>`: 1..[`MAX_OVERLOAD_STALL_TIMEOUT`]
/// (a shardmq key).
fn overload_stall_timeout(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let max = i64::from(MAX_OVERLOAD_STALL_TIMEOUT);
    let token = line.single("1..3600")?;
    let n = value::integer(token, 1, max, "seconds without progress")?;
    p.config.overload_stall_timeout = u32::try_from(n).unwrap_or(MAX_OVERLOAD_STALL_TIMEOUT);
    Ok(())
}

/// `message_size_limit`: the largest PUBLISH payload accepted, 0 = none.
fn message_size_limit(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let token = line.single("0..268435455")?;
    p.config.message_size_limit = value::count(token, MAX_PAYLOAD, "0 means no limit")?;
    Ok(())
}

/// `max_inflight_bytes`: 0 = unlimited.
fn max_inflight_bytes(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    p.config.max_inflight_bytes = value::byte_count(line)?;
    Ok(())
}

/// `max_packet_size`: 20..268435460, 0 = the protocol maximum.
fn max_packet_size(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let token = line.single("20..268435460")?;
    let n = value::count(token, PROTOCOL_MAX_PACKET_SIZE, "")
        .ok()
        .filter(|&n| n == 0 || n >= MIN_PACKET_SIZE);
    let n = n.ok_or_else(|| {
        format!("expected {MIN_PACKET_SIZE}..{PROTOCOL_MAX_PACKET_SIZE}, got {token} (0 means the protocol maximum)")
    })?;
    p.config.max_packet_size = if n == 0 { PROTOCOL_MAX_PACKET_SIZE } else { n };
    Ok(())
}

/// `shared_subscription_strategy`: how a shared subscription group's
/// member is chosen for each message (a shardmq key; Mosquitto has only
/// round-robin).
fn shared_subscription_strategy(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let expected = "round_robin, sticky or hash_topic";
    let token = line.single(expected)?;
    p.config.shared_subscription_strategy =
        Strategy::parse(token).ok_or_else(|| format!("expected {expected}, got {token}"))?;
    Ok(())
}

/// `persistence_location`: a directory.
fn persistence_location(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    p.config.persistence_location = Some(line.text("a directory")?.into());
    Ok(())
}

/// `persistence_file`: a name, without `/`.
fn persistence_file(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let name = line.single("a file name")?;
    if name.contains('/') {
        return Err(format!(
            "expected a file name, got {name} (put the directory in persistence_location)"
        ));
    }
    p.config.persistence_file = Some(name.to_string());
    Ok(())
}

/// `persistence_sync written|fsync`: written before acknowledging
/// (survives the broker's crash) or synced too (survives power loss).
fn persistence_sync(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let choice = value::choice(line.single("written or fsync")?, &["written", "fsync"])?;
    p.config.persistence_sync = match (choice, p.config.persistence_sync) {
        ("written", _) => Durability::Written,
        (_, Durability::Fsync { interval }) => Durability::Fsync { interval },
        _ => Durability::Fsync {
            interval: DEFAULT_COMMIT_INTERVAL,
        },
    };
    Ok(())
}

/// `persistence_commit_interval <ms>`: the group commit interval of
/// `persistence_sync fsync` (default 10 ms).
fn persistence_commit_interval(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let ms = value::integer(
        line.single("0..10000 (milliseconds)")?,
        0,
        10_000,
        "milliseconds",
    )?;
    p.config.persistence_sync = Durability::Fsync {
        interval: Duration::from_millis(ms as u64),
    };
    Ok(())
}

/// `persistence_compact_size <bytes>`: 4096 or more.
fn persistence_compact_size(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let n = value::byte_count(line)?;
    if n < 4096 {
        return Err(format!("expected at least 4096 bytes, got {n}"));
    }
    p.config.persistence_compact_size = n as u64;
    Ok(())
}

/// `autosave_interval`: accepted for Mosquitto configs; shardmq journals
/// every change as it happens (Mosquitto's periodic snapshot has no
/// counterpart), so the value only has to be valid.
fn autosave_interval(_: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    value::integer(line.single("seconds")?, 0, i64::from(u32::MAX), "seconds")?;
    Ok(())
}

/// `max_keepalive`: 0..65535 seconds.
fn max_keepalive(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    p.config.max_keepalive = value::port_number(line.single("0..65535")?, 0)?;
    Ok(())
}

/// `persistent_client_expiration <n><h|d|w|m|y>`.
fn persistent_client_expiration(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let token = line.single("<n><h|d|w|m|y>, e.g. 14d")?;
    p.config.persistent_client_expiration = Some(value::duration(token)?);
    Ok(())
}
