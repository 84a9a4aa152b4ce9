//! The logging directives: `log_dest`, `log_type`, `log_timestamp`,
//! `log_timestamp_format` and `connection_messages`, as in Mosquitto.

use std::path::PathBuf;

use super::directives::{Apply, Directive, Scope};
use super::lexer::{missing, Line};
use super::parser::Parser;
use super::{value, LogDest, LogTypes};

/// Supported keys.
pub(super) const DIRECTIVES: &[Directive] = &[
    Directive::new("log_dest", Scope::Global, Apply::Custom(log_dest)),
    Directive::new("log_type", Scope::Global, Apply::Custom(log_type)),
    Directive::new(
        "log_timestamp",
        Scope::Global,
        Apply::Flag(|c| &mut c.log_timestamp),
    ),
    Directive::new(
        "log_timestamp_format",
        Scope::Global,
        Apply::Custom(log_timestamp_format),
    ),
    Directive::new(
        "connection_messages",
        Scope::Global,
        Apply::Flag(|c| &mut c.connection_messages),
    ),
];

/// Every `log_dest` Mosquitto accepts.
const LOG_DESTS: &[&str] = &["stderr", "stdout", "none", "file", "syslog", "topic", "dlt"];

/// `log_dest stderr|stdout|none|file <path>|syslog|topic|dlt`.
///
/// As in Mosquitto, every destination given is written to; the first line
/// replaces the default (stderr), `none` removes every one before it.
fn log_dest(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let first = line
        .tokens()
        .next()
        .ok_or_else(|| missing("stderr, stdout, file <path>, syslog, topic or none"))?;
    let kind = value::choice(first, LOG_DESTS)?;
    let dest = if kind == "file" {
        Some(LogDest::File(log_file(line.rest[kind.len()..].trim())?))
    } else {
        line.single("stderr, stdout, syslog, topic or none")?;
        named_dest(p, line, kind)
    };
    let dests = &mut p.config.log_dests;
    if !std::mem::replace(&mut p.log_dests_set, true) {
        dests.clear();
    }
    match dest {
        None => dests.clear(),
        Some(dest) if !dests.contains(&dest) => dests.push(dest),
        Some(_) => {}
    }
    Ok(())
}

/// The destination `kind` (not `file`) names; `None` for `none`.
fn named_dest(p: &mut Parser<'_>, line: &Line<'_>, kind: &str) -> Option<LogDest> {
    match kind {
        "stdout" => Some(LogDest::Stdout),
        "syslog" => Some(LogDest::Syslog),
        "topic" => Some(LogDest::Topic),
        "none" => None,
        "stderr" => Some(LogDest::Stderr),
        _ => {
            p.warn(
                line.number,
                format!("log_dest {kind} is not supported, using stderr"),
            );
            Some(LogDest::Stderr)
        }
    }
}

/// `log_dest file <path>`: the file must be one the broker can append to
/// (or create), so a wrong path fails here, with its line. Nothing is
/// created: the broker opens it at start.
fn log_file(path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("missing path (expected log_dest file <path>)".to_string());
    }
    let path = PathBuf::from(path);
    let fail = |why: String| {
        format!(
            "cannot open {} for appending: {why} (does its directory exist, writable by the broker?)",
            path.display()
        )
    };
    if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| fail(e.to_string()))?;
        return Ok(path);
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => std::path::Path::new("."),
    };
    if !writable_dir(dir) {
        return Err(fail(format!(
            "{} is not a writable directory",
            dir.display()
        )));
    }
    Ok(path)
}

/// Whether a file can be created in `dir`.
fn writable_dir(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c` is NUL-terminated; access(2) only reads it.
    dir.is_dir() && unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } == 0
}

/// Every `log_type` Mosquitto accepts.
const LOG_TYPES: &[&str] = &[
    "error",
    "warning",
    "notice",
    "information",
    "subscribe",
    "unsubscribe",
    "websockets",
    "debug",
    "all",
    "none",
];

/// `log_type <type>...`: the first line replaces the defaults, later lines add
/// (as in Mosquitto). shardmq also accepts several types on one line.
fn log_type(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    if line.rest.is_empty() {
        return Err(missing(
            "error, warning, notice, information, subscribe, unsubscribe, websockets, debug, all or none",
        ));
    }
    if !std::mem::replace(&mut p.log_types_set, true) {
        p.config.log_types = LogTypes::NONE;
    }
    for token in line.tokens() {
        let types = &mut p.config.log_types;
        match value::choice(token, LOG_TYPES)? {
            "error" => types.error = true,
            "warning" => types.warning = true,
            "notice" => types.notice = true,
            "information" => types.information = true,
            "subscribe" => types.subscribe = true,
            "unsubscribe" => types.unsubscribe = true,
            "websockets" => types.websockets = true,
            "debug" => types.debug = true,
            "all" => *types = LogTypes::ALL,
            _ => *types = LogTypes::NONE,
        }
    }
    Ok(())
}

/// `log_timestamp_format <strftime format>`, e.g. `%Y-%m-%dT%H:%M:%S`.
fn log_timestamp_format(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let format = line.text("a strftime format, e.g. %Y-%m-%dT%H:%M:%S")?;
    crate::logging::check_timestamp_format(format)?;
    p.config.log_timestamp_format = Some(format.to_string());
    Ok(())
}
