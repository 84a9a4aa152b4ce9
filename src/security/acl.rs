//! Mosquitto's `acl_file`: the parser and the matcher, pure (the file is
//! read once, by [`AclRules::load`]; everything else is computation).
//!
//! The format, as Mosquitto 2.0 reads it: one directive a line,
//! `# comments` and blank lines ignored.
//!
//! - `user <name>`: the `topic` lines that follow apply to clients that
//!   connected with that username (a name seen twice adds to one section).
//!   `topic` lines before any `user` line apply to clients without one.
//! - `topic [read|write|readwrite|deny] <filter>`: a grant (`readwrite` if
//!   no access is given) or a denial for the current section.
//! - `pattern [read|write|readwrite|deny] <filter>`: the same for every
//!   client, wherever the line is; a level that is exactly `%c` or `%u`
//!   stands for the client id or the username (a pattern naming `%u` does
//!   not apply to a client without a username).
//!
//! A check (Mosquitto's `acl_check_default`) runs the client's section,
//! denials first: a matching `deny` refuses, a matching grant with the
//! access asked for allows. Then the patterns the same way (a client whose
//! id or username holds `+` or `#` is refused by them outright). Anything
//! not granted is refused.
//!
//! What is delivered is checked message by message, as in Mosquitto. A
//! SUBSCRIBE is also checked against the rules' filters
//! ([`AclRules::may_subscribe`]): Mosquitto 2.0 grants every subscription,
//! shardmq refuses one from which nothing could ever be read.

use std::collections::HashMap;
use std::path::Path;

use ahash::RandomState;

use crate::limits::{MAX_ACL_FILE_BYTES, MAX_ACL_RULES};
use crate::protocol::{self, TopicFilter};

/// What a client asks to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Receive messages published to it (Mosquitto's `MOSQ_ACL_READ`).
    Read,
    /// Publish to it, a will included (`MOSQ_ACL_WRITE`).
    Write,
}

impl Access {
    const fn bit(self) -> u8 {
        match self {
            Access::Read => READ,
            Access::Write => WRITE,
        }
    }
}

const READ: u8 = 1;
const WRITE: u8 = 2;

/// Who asks: the client id and the username of the CONNECT (after the
/// broker assigned an id, if it did).
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub id: &'a str,
    pub username: Option<&'a str>,
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// A valid topic filter (`%c`/`%u` levels in patterns are plain text to
    /// the validation).
    filter: Box<str>,
    /// READ | WRITE bits; 0 = `deny`.
    grants: u8,
    /// A pattern with a `%u` level: skipped for clients without a username.
    uses_username: bool,
}

impl Rule {
    fn denies(&self) -> bool {
        self.grants == 0
    }

    fn grants(&self, access: Access) -> bool {
        self.grants & access.bit() != 0
    }
}

/// The rules of one `acl_file`. Immutable once parsed; shared by every
/// shard (`Arc`), which checks them without locks.
///
/// Invariant: in each list the denials come first (as Mosquitto files
/// them), then the grants in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AclRules {
    /// `topic` lines before any `user` line: clients without a username.
    anonymous: Vec<Rule>,
    /// `topic` lines after `user <name>`, by name (looked up on every
    /// check of a client with a username: a fast hasher).
    users: HashMap<Box<str>, Vec<Rule>, RandomState>,
    /// `pattern` lines: every client.
    patterns: Vec<Rule>,
}

/// Why an `acl_file` cannot be used.
pub type AclError = crate::config::FileError;

impl AclRules {
    /// Reads and parses `path` (once).
    pub fn load(path: &Path) -> Result<AclRules, AclError> {
        let name = path.display().to_string();
        let io = |source| AclError::Io {
            key: "acl_file",
            path: name.clone(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_ACL_FILE_BYTES {
            return Err(AclError::Invalid {
                path: name.clone(),
                line: 0,
                reason: format!(
                    "the file has {len} bytes, at most {MAX_ACL_FILE_BYTES} are read; split the rules or use patterns"
                ),
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        AclRules::parse(&text, &name)
    }

    /// Parses `acl_file` text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<AclRules, AclError> {
        let mut rules = AclRules::default();
        let mut user: Option<Box<str>> = None;
        let mut count = 0usize;
        for (i, raw) in text.lines().enumerate() {
            let invalid = |reason: String| AclError::Invalid {
                path: path.to_string(),
                line: i + 1,
                reason,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = split_token(line);
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(invalid(
                            "user: missing username; write `user <name>`".to_string(),
                        ));
                    }
                    user = Some(rest.into());
                }
                "topic" | "pattern" => {
                    count += 1;
                    if count > MAX_ACL_RULES {
                        return Err(invalid(format!(
                            "more than {MAX_ACL_RULES} rules; use patterns (%c, %u) instead of one rule per client"
                        )));
                    }
                    let pattern = keyword == "pattern";
                    let rule = rule(rest, pattern).map_err(|r| invalid(format!("{keyword}: {r}")))?;
                    let list = if pattern {
                        &mut rules.patterns
                    } else {
                        match &user {
                            Some(name) => rules.users.entry(name.clone()).or_default(),
                            None => &mut rules.anonymous,
                        }
                    };
                    file(list, rule);
                }
                other => {
                    return Err(invalid(format!(
                        "unknown directive `{other}`: expected `user`, `topic` or `pattern` (comments start with #)"
                    )))
                }
            }
        }
        Ok(rules)
    }

    /// May `client` do `access` on `topic` (a topic name, mount point
    /// included)?
    pub fn allows(&self, client: Client<'_>, topic: &str, access: Access) -> bool {
        if let Some(own) = self.section(client) {
            for rule in own {
                if protocol::matches(&rule.filter, topic) {
                    if rule.denies() {
                        return false;
                    }
                    if rule.grants(access) {
                        return true;
                    }
                }
            }
        }
        if self.patterns.is_empty() || dangerous(client) {
            return false;
        }
        for rule in self.applicable_patterns(client) {
            if pattern_matches(&rule.filter, topic, client) {
                if rule.denies() {
                    return false;
                }
                if rule.grants(access) {
                    return true;
                }
            }
        }
        false
    }

    /// May `client` subscribe to `filter` (the inner filter of a shared
    /// subscription, mount point included)? False only when no message it
    /// matches could ever be read: a denial covers the whole filter, or no
    /// read grant overlaps it. Otherwise true: what is delivered is then
    /// checked message by message ([`AclRules::allows`]).
    pub fn may_subscribe(&self, client: Client<'_>, filter: &str) -> bool {
        self.judge(client, filter, covers, overlaps)
    }

    /// True if `client` may read every topic `filter` (the inner filter of
    /// a shared subscription) matches: no denial overlaps it and a read
    /// grant covers it. A sufficient condition, never a wrong one: false
    /// only means each message must be checked. Lets a shard skip the
    /// per-message check for a session whose subscriptions all pass it.
    pub fn reads_all(&self, client: Client<'_>, filter: &str) -> bool {
        self.judge(client, filter, overlaps, covers)
    }

    /// Runs Mosquitto's check order (the client's section, then the
    /// patterns; denials first in each) over a whole filter: false as soon
    /// as a denial stands in `denial` to it, true as soon as a read grant
    /// stands in `grant` to it, false if none does.
    fn judge(&self, client: Client<'_>, filter: &str, denial: Relation, grant: Relation) -> bool {
        let own = self.section(client).unwrap_or(&[]);
        if own
            .iter()
            .any(|r| r.denies() && denial(&r.filter, None, filter))
        {
            return false;
        }
        if own
            .iter()
            .any(|r| r.grants(Access::Read) && grant(&r.filter, None, filter))
        {
            return true;
        }
        if self.patterns.is_empty() || dangerous(client) {
            return false;
        }
        let mut patterns = self.applicable_patterns(client);
        if patterns
            .clone()
            .any(|r| r.denies() && denial(&r.filter, Some(client), filter))
        {
            return false;
        }
        patterns.any(|r| r.grants(Access::Read) && grant(&r.filter, Some(client), filter))
    }

    /// The client's `topic` rules: its user section, or the anonymous one.
    fn section(&self, client: Client<'_>) -> Option<&[Rule]> {
        match client.username {
            Some(name) => self.users.get(name).map(Vec::as_slice),
            None => Some(&self.anonymous),
        }
    }

    fn applicable_patterns<'r>(
        &'r self,
        client: Client<'r>,
    ) -> impl Iterator<Item = &'r Rule> + Clone + 'r {
        self.patterns
            .iter()
            .filter(move |r| !(r.uses_username && client.username.is_none()))
    }
}

/// A client id or username holding a wildcard could widen a pattern
/// (Mosquitto refuses such clients every pattern).
fn dangerous(client: Client<'_>) -> bool {
    let wild = |s: &str| s.contains(['+', '#']);
    wild(client.id) || client.username.is_some_and(wild)
}

/// The first whitespace-separated token of `s` and the rest, trimmed.
fn split_token(s: &str) -> (&str, &str) {
    match s.split_once(char::is_whitespace) {
        Some((first, rest)) => (first, rest.trim()),
        None => (s, ""),
    }
}

/// The rule of a `topic`/`pattern` line's arguments: `[access] <filter>`.
/// As in Mosquitto, a single argument is the filter (readwrite); with
/// more, the first is the access and the rest (spaces included) the filter.
fn rule(args: &str, pattern: bool) -> Result<Rule, String> {
    let (first, rest) = split_token(args);
    let (grants, filter) = if rest.is_empty() {
        (READ | WRITE, first)
    } else {
        let grants = match first {
            "read" => READ,
            "write" => WRITE,
            "readwrite" => READ | WRITE,
            "deny" => 0,
            other => {
                return Err(format!(
                    "unknown access `{other}`: expected read, write, readwrite or deny before the topic"
                ))
            }
        };
        (grants, rest)
    };
    if filter.is_empty() {
        return Err(
            "missing topic; write `topic [read|write|readwrite|deny] <filter>`".to_string(),
        );
    }
    if let Err(m) = TopicFilter::from_str(filter) {
        return Err(format!("`{filter}` is not a valid topic filter: {m}"));
    }
    Ok(Rule {
        filter: filter.into(),
        grants,
        uses_username: pattern && filter.split('/').any(|l| l == "%u"),
    })
}

/// Files `rule` in `list`: denials before grants (see [`AclRules`]).
fn file(list: &mut Vec<Rule>, rule: Rule) {
    if rule.denies() {
        let at = list.iter().take_while(|r| r.denies()).count();
        list.insert(at, rule);
    } else {
        list.push(rule);
    }
}

/// True if the pattern `filter` matches `topic` with `%c` and `%u` levels
/// standing for `client`'s id and username (a value holding `/` never
/// equals one level). One pass over the levels, no allocation.
fn pattern_matches(filter: &str, topic: &str, client: Client<'_>) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(_)) => {}
            (Some("%c"), Some(level)) if level == client.id => {}
            (Some("%u"), Some(level)) if Some(level) == client.username => {}
            (Some("%c" | "%u"), Some(_)) => return false,
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// How a rule's filter (a pattern's substituted for `client`) stands to
/// a subscription filter.
type Relation = fn(&str, Option<Client<'_>>, &str) -> bool;

/// Some topic matches both.
fn overlaps(rule: &str, client: Option<Client<'_>>, filter: &str) -> bool {
    intersects(levels(rule, client), levels(filter, None))
}

/// Every topic `filter` matches, the rule matches.
fn covers(rule: &str, client: Option<Client<'_>>, filter: &str) -> bool {
    subsumes(levels(rule, client), levels(filter, None))
}

/// One level of a filter, substitutions made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level<'a> {
    /// `#`.
    Multi,
    /// `+`.
    Single,
    Literal(&'a str),
}

/// The levels of `filter`; with `client`, `%c`/`%u` levels are its id and
/// username (a pattern naming `%u` is only used for a client with one).
fn levels<'a>(filter: &'a str, client: Option<Client<'a>>) -> impl Iterator<Item = Level<'a>> {
    filter.split('/').map(move |l| match (l, client) {
        ("#", _) => Level::Multi,
        ("+", _) => Level::Single,
        ("%c", Some(c)) => Level::Literal(c.id),
        (
            "%u",
            Some(Client {
                username: Some(u), ..
            }),
        ) => Level::Literal(u),
        (l, _) => Level::Literal(l),
    })
}

/// A literal first level naming a `$` topic, which wildcards do not match.
fn dollar(level: Option<Level<'_>>) -> bool {
    matches!(level, Some(Level::Literal(l)) if l.starts_with('$'))
}

/// True if some topic matches both filters. Walks the levels once.
fn intersects<'a>(
    mut a: impl Iterator<Item = Level<'a>>,
    mut b: impl Iterator<Item = Level<'a>>,
) -> bool {
    let mut first = true;
    loop {
        let (x, y) = (a.next(), b.next());
        match (x, y) {
            (None, None) => return true,
            (Some(Level::Multi), other) | (other, Some(Level::Multi)) => {
                return !(first && dollar(other))
            }
            (Some(Level::Single), Some(Level::Single)) => {}
            (Some(Level::Single), lit @ Some(Level::Literal(_)))
            | (lit @ Some(Level::Literal(_)), Some(Level::Single)) => {
                if first && dollar(lit) {
                    return false;
                }
            }
            (Some(Level::Literal(p)), Some(Level::Literal(q))) => {
                if p != q {
                    return false;
                }
            }
            (Some(_), None) | (None, Some(_)) => return false,
        }
        first = false;
    }
}

/// True if every topic `inner` matches, `outer` matches too.
fn subsumes<'a>(
    mut outer: impl Iterator<Item = Level<'a>>,
    mut inner: impl Iterator<Item = Level<'a>>,
) -> bool {
    let mut first = true;
    loop {
        let (o, i) = (outer.next(), inner.next());
        match (o, i) {
            (None, None) => return true,
            (Some(Level::Multi), other) => return !(first && dollar(other)),
            (_, Some(Level::Multi)) => return false,
            (Some(Level::Single), Some(Level::Single)) => {}
            (Some(Level::Single), lit @ Some(Level::Literal(_))) => {
                if first && dollar(lit) {
                    return false;
                }
            }
            (Some(Level::Literal(_)), Some(Level::Single)) => return false,
            (Some(Level::Literal(p)), Some(Level::Literal(q))) => {
                if p != q {
                    return false;
                }
            }
            (Some(_), None) | (None, Some(_)) => return false,
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> AclRules {
        AclRules::parse(text, "acl").expect("valid acl")
    }

    fn anon(id: &str) -> Client<'_> {
        Client { id, username: None }
    }

    fn user<'a>(id: &'a str, name: &'a str) -> Client<'a> {
        Client {
            id,
            username: Some(name),
        }
    }

    #[test]
    fn sections_grant_what_they_name_and_nothing_else() {
        let acl = parse(
            "# anonymous clients\n\
             topic read public/#\n\
             \n\
             user alice\n\
             topic readwrite alice/#\n\
             topic write in/alice\n\
             user bob\n\
             topic bob/#\n",
        );
        let (a, b) = (user("c1", "alice"), user("c2", "bob"));
        assert!(acl.allows(anon("x"), "public/news", Access::Read));
        assert!(!acl.allows(anon("x"), "public/news", Access::Write));
        assert!(
            !acl.allows(a, "public/news", Access::Read),
            "a user section replaces the anonymous one"
        );
        assert!(acl.allows(a, "alice/x/y", Access::Write));
        assert!(acl.allows(a, "in/alice", Access::Write));
        assert!(!acl.allows(a, "in/alice", Access::Read));
        assert!(
            acl.allows(b, "bob", Access::Read),
            "no access given: readwrite; a/# matches a"
        );
        assert!(!acl.allows(user("c3", "carol"), "bob/x", Access::Read));
    }

    #[test]
    fn deny_wins_over_grants_in_a_section_wherever_it_is() {
        let acl = parse("topic readwrite a/#\ntopic deny a/secret/#\ntopic read a/secret/+/open\n");
        assert!(acl.allows(anon("x"), "a/b", Access::Read));
        assert!(!acl.allows(anon("x"), "a/secret/x/open", Access::Read));
        assert!(!acl.allows(anon("x"), "a/secret", Access::Write));
    }

    #[test]
    fn patterns_substitute_whole_levels_for_everyone() {
        let acl = parse(
            "user alice\n\
             topic read other/#\n\
             pattern write devices/%c/out\n\
             pattern read users/%u/#\n\
             pattern readwrite literal_%c/x\n",
        );
        assert!(acl.allows(user("dev1", "alice"), "devices/dev1/out", Access::Write));
        assert!(!acl.allows(user("dev1", "alice"), "devices/dev2/out", Access::Write));
        assert!(acl.allows(anon("dev2"), "devices/dev2/out", Access::Write));
        assert!(acl.allows(user("x", "alice"), "users/alice/inbox", Access::Read));
        assert!(
            !acl.allows(anon("alice"), "users/alice/inbox", Access::Read),
            "%u needs a username"
        );
        assert!(
            acl.allows(anon("q"), "literal_%c/x", Access::Read),
            "only whole levels substitute"
        );
        assert!(!acl.allows(anon("q"), "literal_q/x", Access::Read));
        assert!(!acl.allows(anon("a/b"), "devices/a/b/out", Access::Write));
    }

    #[test]
    fn wildcards_in_ids_lose_every_pattern_but_keep_their_section() {
        let acl = parse("pattern readwrite devices/%c\nuser u+\ntopic read mine\n");
        assert!(!acl.allows(anon("+"), "devices/+", Access::Read));
        assert!(!acl.allows(anon("a#"), "devices/a#", Access::Read));
        assert!(acl.allows(user("ok", "u+"), "mine", Access::Read));
        assert!(!acl.allows(user("ok", "u+"), "devices/ok", Access::Read));
    }

    #[test]
    fn dollar_topics_need_a_dollar_rule() {
        let acl = parse("topic read #\ntopic read $SYS/broker/#\n");
        assert!(acl.allows(anon("x"), "a", Access::Read));
        assert!(!acl.allows(anon("x"), "$SYS/other", Access::Read));
        assert!(acl.allows(anon("x"), "$SYS/broker/uptime", Access::Read));
    }

    #[test]
    fn subscriptions_are_refused_only_when_nothing_could_be_read() {
        let acl = parse(
            "topic read a/#\n\
             topic write w/#\n\
             topic deny a/secret/#\n\
             pattern read p/%c/#\n",
        );
        let c = anon("me");
        assert!(acl.may_subscribe(c, "#"), "overlaps a/#");
        assert!(acl.may_subscribe(c, "+/x"));
        assert!(acl.may_subscribe(c, "a"));
        assert!(!acl.may_subscribe(c, "w/#"), "write only");
        assert!(!acl.may_subscribe(c, "a/secret/+"), "covered by a denial");
        assert!(
            acl.may_subscribe(c, "a/+"),
            "partly denied: checked per message"
        );
        assert!(acl.may_subscribe(c, "p/me/x"));
        assert!(!acl.may_subscribe(c, "p/you/x"));
        assert!(acl.may_subscribe(c, "p/+/x"));
        assert!(!acl.may_subscribe(c, "$SYS/#"), "# does not reach $ topics");
        assert!(!acl.may_subscribe(c, "b"));
    }

    #[test]
    fn a_filter_reads_all_only_when_covered_and_clear_of_denials() {
        let acl = parse(
            "topic read a/#\n\
             topic deny a/secret/#\n\
             topic read b/+\n\
             pattern read p/%c/#\n\
             pattern deny p/%c/private\n",
        );
        let c = anon("me");
        assert!(acl.reads_all(c, "b/x"));
        assert!(acl.reads_all(c, "b/+"));
        assert!(!acl.reads_all(c, "b/#"), "b/x/y is not granted");
        assert!(acl.reads_all(c, "a/open/+"));
        assert!(!acl.reads_all(c, "a/#"), "a/secret is denied");
        assert!(!acl.reads_all(c, "a/+/x"), "a/secret/x is denied");
        assert!(acl.reads_all(c, "p/me/public/#"));
        assert!(!acl.reads_all(c, "p/me/#"), "p/me/private is denied");
        assert!(!acl.reads_all(c, "p/you/x"));
        assert!(
            !acl.reads_all(anon("m+"), "p/m+/x"),
            "wildcards in ids lose the patterns"
        );
        let everything = parse("topic read #\n");
        assert!(everything.reads_all(c, "#"));
        assert!(!everything.reads_all(c, "$SYS/#"));
    }

    #[test]
    fn filter_relations_follow_the_dollar_rule() {
        let l = |f| levels(f, None);
        assert!(intersects(l("a/#"), l("a")));
        assert!(intersects(l("+/b"), l("a/+")));
        assert!(!intersects(l("#"), l("$SYS/x")));
        assert!(!intersects(l("+/x"), l("$SYS/x")));
        assert!(intersects(l("$SYS/#"), l("$SYS/+")));
        assert!(!intersects(l("a/b"), l("a/b/c")));
        assert!(subsumes(l("a/#"), l("a")));
        assert!(subsumes(l("a/#"), l("a/+/c/#")));
        assert!(subsumes(l("+/b"), l("x/b")));
        assert!(!subsumes(l("+/b"), l("+/#")));
        assert!(!subsumes(l("a/b"), l("a/+")));
        assert!(!subsumes(l("#"), l("$SYS/#")));
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let err = |text| AclRules::parse(text, "acl.conf").unwrap_err().to_string();
        assert_eq!(
            err("topic read a\nuser\n"),
            "acl.conf:2: user: missing username; write `user <name>`"
        );
        assert!(err("topic red a/b").starts_with("acl.conf:1: topic: unknown access `red`"));
        assert!(err("\n\npattern read a/#/b")
            .starts_with("acl.conf:3: pattern: `a/#/b` is not a valid topic filter"));
        assert!(err("topics read a").contains("expected `user`, `topic` or `pattern`"));
        assert!(err("topic").starts_with("acl.conf:1: topic: missing topic"));
    }

    #[test]
    fn a_topic_may_hold_spaces_after_an_access() {
        let acl = parse("  # indented comment\ntopic read a b/c\n");
        assert!(acl.allows(anon("x"), "a b/c", Access::Read));
    }

    #[test]
    fn denials_are_filed_first() {
        let acl = parse("topic read a\ntopic deny b\ntopic write c\ntopic deny d\n");
        let order: Vec<&str> = acl.anonymous.iter().map(|r| &*r.filter).collect();
        assert_eq!(order, ["b", "d", "a", "c"]);
    }
}
