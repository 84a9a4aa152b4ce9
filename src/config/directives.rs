//! The directive table: every key shardmq knows, the section it belongs to and
//! how it is applied. Lookup is a scan of static slices (a few hundred entries,
//! once per config line); unknown keys get a "did you mean" suggestion.

use super::lexer::Line;
use super::parser::Parser;
use super::{bridge, broker, log, mosquitto, security, tls, Config};

/// Where a key may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// Broker-wide; valid in every section.
    Global,
    /// Applies to the current listener (the default listener before any
    /// `listener` line); valid in every section.
    Listener,
    /// Starts a new section (`listener`, `connection`), closing the open one.
    Header,
    /// Only inside a `connection` section.
    Bridge,
}

/// Parses a line and updates the parser; `Err` is the reason (without `path:line: key:`).
pub(super) type ApplyFn = fn(&mut Parser<'_>, &Line<'_>) -> Result<(), String>;

/// What a directive does with its line.
#[derive(Clone, Copy)]
pub(super) enum Apply {
    /// A Mosquitto option shardmq does not support yet: warn and ignore.
    Unsupported,
    /// Sets a boolean field of [`Config`] from `true`/`false`.
    Flag(fn(&mut Config) -> &mut bool),
    /// Parses the line and updates the parser; `Err` is the reason.
    Custom(ApplyFn),
}

/// One entry of the table.
pub(super) struct Directive {
    /// The key, as written in mosquitto.conf.
    pub key: &'static str,
    /// Where it may appear.
    pub scope: Scope,
    /// How it is applied.
    pub apply: Apply,
}

impl Directive {
    /// An entry for a supported key.
    pub const fn new(key: &'static str, scope: Scope, apply: Apply) -> Self {
        Directive { key, scope, apply }
    }

    /// An entry for a known Mosquitto key that only warns.
    pub const fn unsupported(key: &'static str, scope: Scope) -> Self {
        Directive {
            key,
            scope,
            apply: Apply::Unsupported,
        }
    }
}

/// All tables, searched in order.
const TABLES: [&[Directive]; 6] = [
    broker::DIRECTIVES,
    log::DIRECTIVES,
    security::DIRECTIVES,
    tls::DIRECTIVES,
    mosquitto::UNSUPPORTED,
    bridge::DIRECTIVES,
];

/// Known Mosquitto key prefixes (`plugin_opt_<name>`, `auth_opt_<name>`).
const UNSUPPORTED_PREFIXES: [&str; 2] = ["plugin_opt_", "auth_opt_"];

/// Keys further than this (edit distance) from every known key get no suggestion.
const MAX_SUGGESTION_DISTANCE: usize = 3;

fn all() -> impl Iterator<Item = &'static Directive> {
    TABLES.into_iter().flatten()
}

/// The directive for `key`, if shardmq knows it.
pub(super) fn lookup(key: &str) -> Option<&'static Directive> {
    all().find(|directive| directive.key == key)
}

/// Whether `key` is one of Mosquitto's free-form prefixed keys.
pub(super) fn is_unsupported_prefix(key: &str) -> bool {
    UNSUPPORTED_PREFIXES
        .iter()
        .any(|prefix| key.len() > prefix.len() && key.starts_with(prefix))
}

/// The reason for an unknown key, with the closest known key when close enough.
pub(super) fn unknown(key: &str) -> String {
    let limit = MAX_SUGGESTION_DISTANCE.min(key.len() / 3 + 1);
    let closest = all()
        .map(|directive| (edit_distance(key, directive.key), directive.key))
        .filter(|(distance, _)| *distance <= limit)
        .min();
    match closest {
        Some((_, known)) => format!("unknown option (did you mean `{known}`?)"),
        None => "unknown option".to_string(),
    }
}

/// Levenshtein distance over bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique() {
        let keys: Vec<&str> = all().map(|d| d.key).collect();
        for (i, key) in keys.iter().enumerate() {
            assert!(!keys[..i].contains(key), "duplicate directive {key}");
        }
    }

    #[test]
    fn bridge_scope_matches_bridge_table() {
        assert!(bridge::DIRECTIVES
            .iter()
            .all(|d| d.scope == Scope::Bridge || d.key == "connection"));
        assert!(broker::DIRECTIVES
            .iter()
            .chain(log::DIRECTIVES)
            .chain(security::DIRECTIVES)
            .chain(mosquitto::UNSUPPORTED)
            .all(|d| d.scope != Scope::Bridge));
    }

    #[test]
    fn distances() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("max_conections", "max_connections"), 1);
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            unknown("max_conections"),
            "unknown option (did you mean `max_connections`?)"
        );
        assert_eq!(unknown("zzzzzzzzzz"), "unknown option");
    }
}
