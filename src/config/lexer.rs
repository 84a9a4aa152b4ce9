//! Splits config text into directive lines.
//!
//! Mosquitto's format is line based: `key value...`, `#` starts a comment only
//! at the start of a line (a `#` later on is data: `topic # out 1`), values are
//! whitespace separated, and string values are "the rest of the line" so they
//! may contain spaces. There is no quoting.

/// One non-blank, non-comment line: the key and the rest of the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Line<'a> {
    /// 1-based line number in the file.
    pub number: usize,
    /// The first token.
    pub key: &'a str,
    /// Everything after the key, trimmed; empty when there is no value.
    pub rest: &'a str,
}

impl<'a> Line<'a> {
    /// The whitespace-separated values after the key.
    pub fn tokens(&self) -> impl Iterator<Item = &'a str> {
        self.rest.split_whitespace()
    }

    /// Exactly one value; `expected` describes the allowed form for messages.
    pub fn single(&self, expected: &str) -> Result<&'a str, String> {
        let mut tokens = self.tokens();
        let value = tokens.next().ok_or_else(|| missing(expected))?;
        match tokens.next() {
            None => Ok(value),
            Some(extra) => Err(unexpected(extra)),
        }
    }

    /// The rest of the line as one value (may contain spaces), not empty.
    pub fn text(&self, expected: &str) -> Result<&'a str, String> {
        if self.rest.is_empty() {
            Err(missing(expected))
        } else {
            Ok(self.rest)
        }
    }

    /// Between `min` and `max` values.
    pub fn some_tokens(
        &self,
        min: usize,
        max: usize,
        expected: &str,
    ) -> Result<Vec<&'a str>, String> {
        let tokens: Vec<&str> = self.tokens().take(max + 1).collect();
        if tokens.len() < min {
            Err(missing(expected))
        } else if let Some(extra) = tokens.get(max) {
            Err(unexpected(extra))
        } else {
            Ok(tokens)
        }
    }
}

/// "missing value" message.
pub(super) fn missing(expected: &str) -> String {
    format!("missing value (expected {expected})")
}

/// "unexpected extra value" message, with a hint for end-of-line comments.
pub(super) fn unexpected(extra: &str) -> String {
    if extra.starts_with('#') {
        format!("unexpected extra value `{extra}` (comments must be on their own line)")
    } else {
        format!("unexpected extra value `{extra}`")
    }
}

/// The directive lines of `text`, skipping blank lines and `#` comments.
pub(super) fn lines(text: &str) -> impl Iterator<Item = Line<'_>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines().enumerate().filter_map(|(index, raw)| {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return None;
        }
        let (key, rest) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        Some(Line {
            number: index + 1,
            key,
            rest: rest.trim_start(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_comments_and_blanks_and_keeps_numbers() {
        let text = "# c\n\n  max_keepalive   60  \r\n\tlog_dest file /a b.log\nport";
        let got: Vec<Line> = lines(text).collect();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            Line {
                number: 3,
                key: "max_keepalive",
                rest: "60"
            }
        );
        assert_eq!(got[1].rest, "file /a b.log");
        assert_eq!(
            got[2],
            Line {
                number: 5,
                key: "port",
                rest: ""
            }
        );
    }

    #[test]
    fn single_rejects_missing_and_extra() {
        let line = lines("k a b").next().expect("one line");
        assert!(line
            .single("x")
            .unwrap_err()
            .contains("unexpected extra value `b`"));
        let line = lines("k").next().expect("one line");
        assert_eq!(line.single("x").unwrap_err(), "missing value (expected x)");
    }
}
