//! Validated topic names and topic filters (spec 4.7), and matching.
//!
//! Both wrap `Bytes` that are guaranteed to be valid UTF-8 without U+0000,
//! at most 65,535 bytes long. A [`TopicName`] has no wildcards. A
//! [`TopicFilter`] has `+` only as a whole level and `#` only as the whole
//! last level; a `$share/<group>/<filter>` filter is a shared subscription.

use bytes::Bytes;

use super::error::Malformed;
use super::reason::ReasonCode;
use super::wire::{check_utf8, MAX_FIELD_LEN};

/// A topic name: what a PUBLISH is sent to. No `+` or `#`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Bytes);

/// A topic filter: what a SUBSCRIBE asks for. May contain `+` and `#`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(Bytes);

impl TopicName {
    /// Validates `bytes` as a non-empty topic name.
    pub fn new(bytes: Bytes) -> Result<TopicName, Malformed> {
        // Fast path for the hot decode: one branch-free pass flags NUL,
        // wildcards and non-ASCII bytes; only then the precise checks.
        let (special, high) = bytes.iter().fold((false, 0u8), |(special, high), &c| {
            (special | (c == 0) | (c == b'+') | (c == b'#'), high | c)
        });
        if special || high >= 0x80 || bytes.is_empty() || bytes.len() > MAX_FIELD_LEN {
            check_common(&bytes, ReasonCode::TopicNameInvalid)?;
            if bytes.iter().any(|&b| b == b'+' || b == b'#') {
                return Err(Malformed::new(
                    ReasonCode::TopicNameInvalid,
                    "wildcard in topic name",
                ));
            }
        }
        Ok(TopicName(bytes))
    }

    /// Validates a topic name that may be empty (a 5.0 PUBLISH with a Topic
    /// Alias); the caller checks that the alias is there.
    pub(crate) fn new_or_empty(bytes: Bytes) -> Result<TopicName, Malformed> {
        if bytes.is_empty() {
            return Ok(TopicName::empty());
        }
        TopicName::new(bytes)
    }

    /// Validates a string as a non-empty topic name.
    // The given API name; `FromStr` is implemented as well.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> Result<TopicName, Malformed> {
        TopicName::new(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// The empty topic of a 5.0 PUBLISH that uses a Topic Alias.
    pub fn empty() -> TopicName {
        TopicName(Bytes::new())
    }

    /// The topic as a string slice.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor validates the bytes as UTF-8 (`new` via
        // `check_common`, `empty` and `detached` from valid topics) and the
        // bytes are immutable afterwards.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The topic bytes (a slice of the read buffer when decoded).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// True only for the empty topic of a PUBLISH with a Topic Alias.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A copy in its own allocation (see the zero-copy rule in `packet`).
    pub fn detached(&self) -> TopicName {
        TopicName(Bytes::copy_from_slice(&self.0))
    }
}

impl TopicFilter {
    /// Validates `bytes` as a topic filter (shared subscriptions included).
    pub fn new(bytes: Bytes) -> Result<TopicFilter, Malformed> {
        check_common(&bytes, ReasonCode::TopicFilterInvalid)?;
        let inner = match split_share(&bytes) {
            Some((group, inner)) => {
                check_share_group(group)?;
                inner
            }
            None if bytes.starts_with(SHARE_PREFIX) => {
                return Err(filter_invalid("shared subscription without a filter"))
            }
            None => &bytes[..],
        };
        if inner.is_empty() {
            return Err(filter_invalid("empty filter in shared subscription"));
        }
        check_wildcards(inner)?;
        Ok(TopicFilter(bytes))
    }

    /// Validates a string as a topic filter.
    // The given API name; `FromStr` is implemented as well.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> Result<TopicFilter, Malformed> {
        TopicFilter::new(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// The filter as a string slice (`$share/...` included).
    pub fn as_str(&self) -> &str {
        // SAFETY: `new` validates the bytes as UTF-8 (`check_common`) and
        // the bytes are immutable afterwards.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The filter bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// For `$share/<group>/<filter>`: the group and the inner filter.
    pub fn share(&self) -> Option<(&str, &str)> {
        let s = self.as_str();
        let rest = s.strip_prefix("$share/")?;
        rest.split_once('/')
    }

    /// The filter to match topics against: the inner filter of a shared
    /// subscription, else the whole filter.
    pub fn match_filter(&self) -> &str {
        self.share().map_or(self.as_str(), |(_, inner)| inner)
    }

    /// True if the filter (the inner filter for a shared one) has `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.match_filter().bytes().any(|b| b == b'+' || b == b'#')
    }

    /// A copy in its own allocation (see the zero-copy rule in `packet`).
    pub fn detached(&self) -> TopicFilter {
        TopicFilter(Bytes::copy_from_slice(&self.0))
    }
}

/// True if `topic` matches `filter` (both assumed valid; `filter` must not be
/// a `$share/` filter: pass its inner filter). Wildcards at the first level do
/// not match topics starting with `$`.
///
/// One pass over both byte strings, no allocation. `a/#` matches `a`.
pub fn matches(filter: &str, topic: &str) -> bool {
    let (f, t) = (filter.as_bytes(), topic.as_bytes());
    if t.first() == Some(&b'$') && matches!(f.first(), Some(b'+' | b'#')) {
        return false;
    }
    let (mut i, mut j) = (0, 0);
    loop {
        // Here `i` and `j` are at the start of a level.
        match f.get(i) {
            Some(b'#') => return true,
            Some(b'+') => {
                i += 1;
                while j < t.len() && t[j] != b'/' {
                    j += 1;
                }
            }
            _ => {
                while i < f.len() && f[i] != b'/' {
                    if t.get(j) != Some(&f[i]) {
                        return false;
                    }
                    i += 1;
                    j += 1;
                }
                if j < t.len() && t[j] != b'/' {
                    return false;
                }
            }
        }
        // Both at a '/' or at the end.
        match (i == f.len(), j == t.len()) {
            (true, true) => return true,
            (true, false) => return false,
            (false, true) => return &f[i..] == b"/#",
            (false, false) => {
                i += 1;
                j += 1;
            }
        }
    }
}

const SHARE_PREFIX: &[u8] = b"$share/";

fn filter_invalid(detail: &'static str) -> Malformed {
    Malformed::new(ReasonCode::TopicFilterInvalid, detail)
}

/// Rules shared by names and filters: non-empty, at most 65,535 bytes,
/// UTF-8 without U+0000. UTF-8 faults are `MalformedPacket`.
fn check_common(b: &[u8], empty_reason: ReasonCode) -> Result<(), Malformed> {
    if b.is_empty() {
        return Err(Malformed::new(empty_reason, "empty topic"));
    }
    if b.len() > MAX_FIELD_LEN {
        return Err(Malformed::new(
            empty_reason,
            "topic longer than 65,535 bytes",
        ));
    }
    check_utf8(b).map(|_| ())
}

/// `$share/<group>/<rest>` split into group and rest (rest may be empty).
fn split_share(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = b.strip_prefix(SHARE_PREFIX)?;
    let slash = rest.iter().position(|&c| c == b'/')?;
    Some((&rest[..slash], &rest[slash + 1..]))
}

fn check_share_group(group: &[u8]) -> Result<(), Malformed> {
    if group.is_empty() {
        return Err(filter_invalid("empty shared subscription group"));
    }
    if group.iter().any(|&c| c == b'+' || c == b'#') {
        return Err(filter_invalid("wildcard in shared subscription group"));
    }
    Ok(())
}

/// `+` only as a whole level, `#` only as the whole last level.
fn check_wildcards(f: &[u8]) -> Result<(), Malformed> {
    for (i, &c) in f.iter().enumerate() {
        let level_start = i == 0 || f[i - 1] == b'/';
        let level_end = i + 1 == f.len() || f[i + 1] == b'/';
        match c {
            b'+' if !(level_start && level_end) => {
                return Err(filter_invalid("'+' is not a whole level"));
            }
            b'#' if !(level_start && i + 1 == f.len()) => {
                return Err(filter_invalid("'#' is not the whole last level"));
            }
            _ => {}
        }
    }
    Ok(())
}

impl std::str::FromStr for TopicName {
    type Err = Malformed;

    fn from_str(s: &str) -> Result<TopicName, Malformed> {
        TopicName::from_str(s)
    }
}

impl std::str::FromStr for TopicFilter {
    type Err = Malformed;

    fn from_str(s: &str) -> Result<TopicFilter, Malformed> {
        TopicFilter::from_str(s)
    }
}

impl std::fmt::Debug for TopicName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TopicName({:?})", self.as_str())
    }
}

impl std::fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TopicFilter({:?})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_rules() {
        for ok in [
            "a",
            "#",
            "+",
            "a/+/b",
            "a/#",
            "/",
            "+/+",
            "$share/g/a/#",
            "$share/g/#",
            "$sharex/a",
        ] {
            assert!(TopicFilter::from_str(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a#",
            "a/#/b",
            "a+",
            "a/b+",
            "$share/",
            "$share/g",
            "$share//a",
            "$share/g+/a",
            "$share/g/",
        ] {
            assert!(TopicFilter::from_str(bad).is_err(), "{bad}");
        }
        let f = TopicFilter::from_str("$share/grp/a/+").unwrap();
        assert_eq!(f.share(), Some(("grp", "a/+")));
        assert!(f.has_wildcards());
        assert!(!TopicFilter::from_str("$share/grp/a")
            .unwrap()
            .has_wildcards());
    }

    #[test]
    fn name_rules() {
        assert!(TopicName::from_str("a/b").is_ok());
        for bad in ["", "a/+", "a/#", "a\0b"] {
            assert!(TopicName::from_str(bad).is_err(), "{bad}");
        }
        assert!(TopicName::from_str("a\u{0}b").is_err());
        assert!(TopicName::new(Bytes::from_static(&[0xC0, 0x80])).is_err());
    }

    #[test]
    fn matching() {
        let yes = [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("a/+", "a/"),
            ("a/#", "a"),
            ("a/#", "a/b/c"),
            ("#", "a/b"),
            ("+/+", "/x"),
            ("+", "a"),
            ("$SYS/#", "$SYS/x"),
            ("$SYS/+", "$SYS/x"),
            ("a/+/c", "a/b/c"),
        ];
        for (f, t) in yes {
            assert!(matches(f, t), "{f} {t}");
        }
        let no = [
            ("a/b", "a/bc"),
            ("a/bc", "a/b"),
            ("a/b", "a/b/c"),
            ("a/+", "a/b/c"),
            ("a/+", "a"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
            ("a/#", "ab"),
            ("+", "/a"),
        ];
        for (f, t) in no {
            assert!(!matches(f, t), "{f} {t}");
        }
    }
}
