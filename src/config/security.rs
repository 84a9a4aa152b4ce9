//! The keys `per_listener_settings` scopes (`allow_anonymous`,
//! `allow_zero_length_clientid`, `auto_id_prefix`, `password_file`,
//! `acl_file`), the switch itself, `allow_anonymous`'s default, and
//! `check_retain_source`, which only has a meaning with ACLs.
//!
//! As in Mosquitto: with `per_listener_settings false` (the default) these
//! keys are broker-wide wherever they appear; with `true` they apply to
//! the listener they follow (before any `listener` line: the default
//! listener), and `per_listener_settings` must come before all of them.
//! `allow_anonymous` not set: false, as in Mosquitto 2.0, except in local
//! only mode (no listener configured: loopback only), where it is true.

use super::directives::{Apply, ApplyFn, Directive, Scope};
use super::lexer::{missing, Line};
use super::parser::Parser;
use super::{value, Config, Security};
use crate::limits::MAX_AUTO_ID_PREFIX;

const fn listener(key: &'static str, apply: ApplyFn) -> Directive {
    Directive::new(key, Scope::Listener, Apply::Custom(apply))
}

/// The security keys.
pub(super) const DIRECTIVES: &[Directive] = &[
    Directive::new(
        "per_listener_settings",
        Scope::Global,
        Apply::Custom(per_listener_settings),
    ),
    listener("allow_anonymous", allow_anonymous),
    listener("allow_zero_length_clientid", allow_zero_length_clientid),
    listener("auto_id_prefix", auto_id_prefix),
    listener("acl_file", acl_file),
    listener("password_file", password_file),
    Directive::new(
        "check_retain_source",
        Scope::Global,
        Apply::Custom(check_retain_source),
    ),
];

/// `per_listener_settings true|false`: must precede the keys it scopes.
fn per_listener_settings(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let on = value::boolean_line(line)?;
    if let (true, Some(earlier)) = (on, p.security_line) {
        return Err(format!(
            "must come before the settings it scopes (line {earlier} sets one); move it up"
        ));
    }
    p.config.per_listener_settings = on;
    Ok(())
}

/// The current listener's own settings with `per_listener_settings true`
/// (created at the defaults on first use); `None`: the key is broker-wide.
fn scoped<'p>(p: &'p mut Parser<'_>, line: &Line<'_>) -> Option<&'p mut Security> {
    p.security_line.get_or_insert(line.number);
    if !p.config.per_listener_settings {
        return None;
    }
    let listener = p.listeners.current(line.number, line.key);
    // A listener's own `allow_anonymous` defaults to false (Mosquitto 2.0).
    Some(listener.security.get_or_insert_with(|| Security {
        allow_anonymous: false,
        ..Security::default()
    }))
}

/// `allow_anonymous` where no line set it: true in local only mode, else
/// false (a listener's own settings start at false: see [`scoped`]).
pub(super) fn anonymous_default(p: &mut Parser<'_>) {
    let local_only = p.config.local_only;
    if !p.anonymous_set {
        p.config.allow_anonymous = local_only;
    }
    if local_only && !p.default_anonymous_set {
        // Local only mode has the default listener alone.
        for security in p
            .config
            .listeners
            .iter_mut()
            .filter_map(|l| l.security.as_mut())
        {
            security.allow_anonymous = true;
        }
    }
}

/// A `true|false` security key: `own` on the listener, `global` in [`Config`].
fn flag(
    p: &mut Parser<'_>,
    line: &Line<'_>,
    own: fn(&mut Security) -> &mut bool,
    global: fn(&mut Config) -> &mut bool,
) -> Result<(), String> {
    let on = value::boolean_line(line)?;
    match scoped(p, line) {
        Some(security) => *own(security) = on,
        None => *global(&mut p.config) = on,
    }
    Ok(())
}

/// `allow_anonymous true|false`.
fn allow_anonymous(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let on = value::boolean_line(line)?;
    let on_default = p.listeners.on_default();
    match scoped(p, line) {
        Some(security) => {
            security.allow_anonymous = on;
            p.default_anonymous_set |= on_default;
        }
        None => {
            p.config.allow_anonymous = on;
            p.anonymous_set = true;
        }
    }
    Ok(())
}

/// `allow_zero_length_clientid true|false`.
fn allow_zero_length_clientid(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    flag(
        p,
        line,
        |s| &mut s.allow_zero_length_clientid,
        |c| &mut c.allow_zero_length_clientid,
    )
}

/// `auto_id_prefix <prefix>`: one token of at most [`MAX_AUTO_ID_PREFIX`] bytes.
fn auto_id_prefix(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let prefix = line.single("a prefix, e.g. auto-")?;
    if prefix.len() > MAX_AUTO_ID_PREFIX {
        return Err(format!(
            "expected at most {MAX_AUTO_ID_PREFIX} bytes, got {}",
            prefix.len()
        ));
    }
    let prefix = prefix.to_string();
    match scoped(p, line) {
        Some(security) => security.auto_id_prefix = prefix,
        None => p.config.auto_id_prefix = prefix,
    }
    Ok(())
}

/// `acl_file <path>`: the rest of the line (a path may hold spaces). The
/// file is read when the broker starts or reloads, not here.
fn acl_file(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let path = line.text("a path, e.g. /etc/shardmq/acl")?;
    let path = Some(std::path::PathBuf::from(path));
    match scoped(p, line) {
        Some(security) => security.acl_file = path,
        None => p.config.acl_file = path,
    }
    Ok(())
}

/// `password_file <path>`: the rest of the line (read at start and on
/// reload, not here: see [`crate::password`]).
fn password_file(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let path = line.rest.trim();
    if path.is_empty() {
        return Err(missing("a file made by mosquitto_passwd"));
    }
    let path = Some(std::path::PathBuf::from(path));
    match scoped(p, line) {
        Some(security) => security.password_file = path,
        None => p.config.password_file = path,
    }
    Ok(())
}

/// `check_retain_source true|false`: a retained message is checked
/// against its publisher's current ACL before it is delivered (see
/// `shard::subscribe`); without an `acl_file` everything passes.
fn check_retain_source(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    p.config.check_retain_source = value::boolean_line(line)?;
    Ok(())
}
