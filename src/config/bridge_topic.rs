//! A bridge `topic` line and the topic mapping it defines.
//!
//! `topic <pattern> [[[out|in|both] <qos>] <local-prefix> <remote-prefix>]`:
//! prefixes are joined to the pattern literally (no `/` is added) and `""`
//! stands for an empty prefix or pattern. Messages going out are matched
//! against `local-prefix + pattern`, lose the local prefix and gain the
//! remote one; messages coming in are the mirror image. Pure functions: no
//! I/O, no broker types.

use crate::protocol::{matches, QoS, MAX_FIELD_LEN};

/// Which way messages flow for one `topic` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Local to remote (the default).
    Out,
    /// Remote to local.
    In,
    /// Both ways.
    Both,
}

impl Direction {
    /// True for `out` and `both`.
    pub const fn is_out(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }

    /// True for `in` and `both`.
    pub const fn is_in(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }
}

/// One `topic` line of a bridge, validated.
///
/// Invariant (checked when parsed): neither prefix has a wildcard, and both
/// [`local_filter`](Self::local_filter) and
/// [`remote_filter`](Self::remote_filter) are valid, non-empty topic filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeTopic {
    /// The pattern; empty when written `""` (then both prefixes are set).
    pub pattern: String,
    /// Which way messages flow. Default [`Direction::Out`].
    pub direction: Direction,
    /// QoS of the subscriptions this line makes. Default 0.
    pub qos: QoS,
    /// Joined in front of the pattern on the local broker; may be empty.
    pub local_prefix: String,
    /// Joined in front of the pattern on the remote broker; may be empty.
    pub remote_prefix: String,
}

impl BridgeTopic {
    /// `local-prefix + pattern`: what the bridge subscribes to locally
    /// (for `out` and `both`).
    pub fn local_filter(&self) -> String {
        format!("{}{}", self.local_prefix, self.pattern)
    }

    /// `remote-prefix + pattern`: what the bridge subscribes to on the remote
    /// broker (for `in` and `both`).
    pub fn remote_filter(&self) -> String {
        format!("{}{}", self.remote_prefix, self.pattern)
    }

    /// The remote topic for `local_topic` if this line sends it out.
    pub fn map_out(&self, local_topic: &str) -> Option<String> {
        if !self.direction.is_out() {
            return None;
        }
        remap(
            local_topic,
            &self.local_filter(),
            &self.local_prefix,
            &self.remote_prefix,
        )
    }

    /// The local topic for `remote_topic` if this line brings it in.
    pub fn map_in(&self, remote_topic: &str) -> Option<String> {
        if !self.direction.is_in() {
            return None;
        }
        remap(
            remote_topic,
            &self.remote_filter(),
            &self.remote_prefix,
            &self.local_prefix,
        )
    }

    /// Parses the values of a `topic` line (1 to 5 tokens); `Err` is the reason.
    ///
    /// With four tokens the remote prefix is empty, as in Mosquitto.
    pub(super) fn parse(tokens: &[&str]) -> Result<BridgeTopic, String> {
        let unquote = |token: Option<&&str>| match token {
            None => String::new(),
            Some(&"\"\"") => String::new(),
            Some(token) => token.to_string(),
        };
        let direction = match tokens.get(1) {
            None | Some(&"out") => Direction::Out,
            Some(&"in") => Direction::In,
            Some(&"both") => Direction::Both,
            Some(other) => return Err(format!("expected out, in or both, got `{other}`")),
        };
        let qos = match tokens.get(2) {
            None => QoS::AtMostOnce,
            Some(token) => {
                let level = super::value::integer(token, 0, 2, "QoS")?;
                u8::try_from(level)
                    .ok()
                    .and_then(QoS::from_u8)
                    .ok_or_else(|| format!("expected 0..2, got {level} (QoS)"))?
            }
        };
        let topic = BridgeTopic {
            pattern: unquote(tokens.first()),
            direction,
            qos,
            local_prefix: unquote(tokens.get(3)),
            remote_prefix: unquote(tokens.get(4)),
        };
        topic.check()?;
        Ok(topic)
    }

    /// The invariant on the type.
    fn check(&self) -> Result<(), String> {
        let prefixes = [&self.local_prefix, &self.remote_prefix];
        if let Some(prefix) = prefixes.iter().find(|prefix| prefix.contains(['+', '#'])) {
            return Err(format!("prefix `{prefix}` must not contain wildcards"));
        }
        if self.pattern.is_empty() {
            if prefixes.iter().all(|prefix| prefix.is_empty()) {
                return Err("an empty pattern (\"\") needs a local or remote prefix".to_string());
            }
            if let Some(side) = [
                ("local", &self.local_prefix),
                ("remote", &self.remote_prefix),
            ]
            .iter()
            .find_map(|(side, prefix)| prefix.is_empty().then_some(side))
            {
                return Err(format!(
                    "an empty pattern (\"\") needs both prefixes (the {side} topic would be empty)"
                ));
            }
        }
        check_filter(&self.local_filter())?;
        check_filter(&self.remote_filter())
    }
}

/// If `topic` matches `filter` and starts with `from`: `to` + the rest.
///
/// A topic matching the filter only through the parent rule (`a/#` matches
/// `a`) does not start with the prefix `a/` and is not mapped.
/// `topic` with prefix `from` replaced by `to`, if `filter` (the prefix
/// joined to the pattern) matches it: the mapping of one `topic` line.
pub fn remap(topic: &str, filter: &str, from: &str, to: &str) -> Option<String> {
    let rest = topic.strip_prefix(from)?;
    matches(filter, topic).then(|| format!("{to}{rest}"))
}

/// Wildcards only as whole levels, `#` only last; not empty, not too long.
fn check_filter(filter: &str) -> Result<(), String> {
    if filter.len() > MAX_FIELD_LEN {
        return Err(format!(
            "the topic filter is {} bytes long (at most {MAX_FIELD_LEN})",
            filter.len()
        ));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(line: &str) -> BridgeTopic {
        let tokens: Vec<&str> = line.split_whitespace().collect();
        BridgeTopic::parse(&tokens).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn out(line: &str, local_topic: &str) -> Option<String> {
        topic(line).map_out(local_topic)
    }

    fn inward(line: &str, remote_topic: &str) -> Option<String> {
        topic(line).map_in(remote_topic)
    }

    #[test]
    fn defaults_are_out_qos0_no_prefixes() {
        assert_eq!(
            topic("sensor/#"),
            BridgeTopic {
                pattern: "sensor/#".into(),
                direction: Direction::Out,
                qos: QoS::AtMostOnce,
                local_prefix: String::new(),
                remote_prefix: String::new(),
            }
        );
        assert_eq!(topic("a both").direction, Direction::Both);
        assert_eq!(topic("a in 2").qos, QoS::ExactlyOnce);
        let four = topic("# in 1 local/");
        assert_eq!(
            (four.local_prefix.as_str(), four.remote_prefix.as_str()),
            ("local/", "")
        );
    }

    #[test]
    fn filters_join_prefix_and_pattern_literally() {
        let t = topic("# both 1 local/ remote/");
        assert_eq!(
            (t.local_filter(), t.remote_filter()),
            ("local/#".into(), "remote/#".into())
        );
        let t = topic("/x/+ out 0 a b/c");
        assert_eq!(
            (t.local_filter(), t.remote_filter()),
            ("a/x/+".into(), "b/c/x/+".into())
        );
        let t = topic("\"\" in 0 here/status there/status");
        assert_eq!(t.pattern, "");
        assert_eq!(t.local_filter(), "here/status");
        assert_eq!(t.remote_filter(), "there/status");
    }

    #[test]
    fn bad_lines_say_why() {
        let cases = [
            ("a sideways", "expected out, in or both, got `sideways`"),
            ("a in 3", "expected 0..2, got 3 (QoS)"),
            ("a in x", "expected 0..2, got `x` (QoS)"),
            (
                "a/#/b",
                "`a/#/b` is not a valid topic filter (wildcards must be whole levels, `#` last)",
            ),
            ("# in 0 l/+ r/", "prefix `l/+` must not contain wildcards"),
            ("# in 0 l/ r/#", "prefix `r/#` must not contain wildcards"),
            (
                "# in 0 pre r/",
                "`pre#` is not a valid topic filter (wildcards must be whole levels, `#` last)",
            ),
            (
                "+ out 0 \"\" x",
                "`x+` is not a valid topic filter (wildcards must be whole levels, `#` last)",
            ),
            (
                "\"\"",
                "an empty pattern (\"\") needs a local or remote prefix",
            ),
            (
                "\"\" in 0 \"\" \"\"",
                "an empty pattern (\"\") needs a local or remote prefix",
            ),
            (
                "\"\" in 0 l/x",
                "an empty pattern (\"\") needs both prefixes (the remote topic would be empty)",
            ),
            (
                "\"\" in 0 \"\" r/x",
                "an empty pattern (\"\") needs both prefixes (the local topic would be empty)",
            ),
        ];
        for (line, reason) in cases {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(
                BridgeTopic::parse(&tokens),
                Err(reason.to_string()),
                "{line:?}"
            );
        }
        let long = "a/".repeat(MAX_FIELD_LEN / 2 + 1);
        assert!(BridgeTopic::parse(&[&long]).is_err());
    }

    /// mosquitto.conf(5)'s example: `topic # both 2 local/topic/ remote/topic/`
    /// maps `local/topic/a` to `remote/topic/a` and back.
    #[test]
    fn mosquitto_man_page_example() {
        let line = "# both 2 local/topic/ remote/topic/";
        assert_eq!(
            out(line, "local/topic/a/b"),
            Some("remote/topic/a/b".into())
        );
        assert_eq!(inward(line, "remote/topic/a"), Some("local/topic/a".into()));
        assert_eq!(out(line, "remote/topic/a"), None);
        assert_eq!(inward(line, "local/topic/a"), None);
        // mosquitto.conf(5): `topic clients/total in 0 test/mosquitto/org/ $SYS/broker/`.
        let sys = "clients/total in 0 test/mosquitto/org/ $SYS/broker/";
        assert_eq!(
            inward(sys, "$SYS/broker/clients/total"),
            Some("test/mosquitto/org/clients/total".into())
        );
        assert_eq!(out(sys, "test/mosquitto/org/clients/total"), None);
    }

    #[test]
    fn no_prefixes_keep_the_topic() {
        assert_eq!(
            out("sensor/#", "sensor/1/temp"),
            Some("sensor/1/temp".into())
        );
        assert_eq!(out("sensor/#", "sensors/1"), None);
        assert_eq!(
            inward("control/+ in 1", "control/a"),
            Some("control/a".into())
        );
        assert_eq!(inward("control/+ in 1", "control/a/b"), None);
    }

    #[test]
    fn prefixes_without_slash_are_joined_literally() {
        let line = "/# both 0 site1 cloud/site1";
        assert_eq!(out(line, "site1/temp"), Some("cloud/site1/temp".into()));
        assert_eq!(
            inward(line, "cloud/site1/cmd/x"),
            Some("site1/cmd/x".into())
        );
        let line = "temp out 0 a b";
        assert_eq!(out(line, "atemp"), Some("btemp".into()));
        assert_eq!(out(line, "temp"), None);
    }

    #[test]
    fn empty_prefixes() {
        // Only a remote prefix: add it going out, strip it coming in.
        let line = "# both 1 \"\" remote/";
        assert_eq!(out(line, "a/b"), Some("remote/a/b".into()));
        assert_eq!(inward(line, "remote/a/b"), Some("a/b".into()));
        assert_eq!(inward(line, "other/a"), None);
        // Only a local prefix.
        let line = "# both 1 local/ \"\"";
        assert_eq!(out(line, "local/a"), Some("a".into()));
        assert_eq!(inward(line, "a"), Some("local/a".into()));
        assert_eq!(out(line, "a"), None);
        // Empty pattern: one topic mapped to another.
        let line = "\"\" both 0 local/status remote/status";
        assert_eq!(out(line, "local/status"), Some("remote/status".into()));
        assert_eq!(inward(line, "remote/status"), Some("local/status".into()));
        assert_eq!(out(line, "local/status/x"), None);
    }

    #[test]
    fn direction_limits_the_mapping() {
        assert_eq!(inward("a/# out 1", "a/b"), None);
        assert_eq!(out("a/# in 1", "a/b"), None);
        assert_eq!(out("a/# both 1", "a/b"), Some("a/b".into()));
        assert_eq!(inward("a/# both 1", "a/b"), Some("a/b".into()));
    }

    #[test]
    fn dollar_topics_need_a_literal_first_level() {
        assert_eq!(out("#", "$SYS/broker/uptime"), None);
        assert_eq!(out("+/broker/uptime", "$SYS/broker/uptime"), None);
        assert_eq!(
            out("$SYS/#", "$SYS/broker/uptime"),
            Some("$SYS/broker/uptime".into())
        );
        let line = "# out 0 $SYS/ remote/sys/";
        assert_eq!(
            out(line, "$SYS/broker/uptime"),
            Some("remote/sys/broker/uptime".into())
        );
    }

    #[test]
    fn parent_match_without_the_prefix_is_not_mapped() {
        // `local/#` matches `local`, but `local` does not start with `local/`.
        assert_eq!(out("# out 0 local/ remote/", "local"), None);
        // Without a prefix the parent rule applies as in a subscription.
        assert_eq!(out("a/#", "a"), Some("a".into()));
    }
}
