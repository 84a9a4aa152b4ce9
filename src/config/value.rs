//! Typed value parsers. Each returns the reason as a `String` (the parser adds
//! `path:line: key:`), naming the allowed form.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use super::lexer::Line;

/// `true` or `false` (Mosquitto also accepts `1` and `0`).
pub(super) fn boolean(token: &str) -> Result<bool, String> {
    match token {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("expected true or false, got `{token}`")),
    }
}

/// The single `true`/`false` value of `line`.
pub(super) fn boolean_line(line: &Line<'_>) -> Result<bool, String> {
    boolean(line.single("true or false")?)
}

/// An integer in `min..=max`; `note` (may be empty) explains special values.
pub(super) fn integer(token: &str, min: i64, max: i64, note: &str) -> Result<i64, String> {
    let expected = |got: &str| {
        let note = if note.is_empty() {
            String::new()
        } else {
            format!(" ({note})")
        };
        format!("expected {min}..{max}, got {got}{note}")
    };
    let value: i64 = token.parse().map_err(|_| expected(&format!("`{token}`")))?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(expected(token))
    }
}

/// An integer in `min..=u16::MAX` as `u16`.
pub(super) fn port_number(token: &str, min: u16) -> Result<u16, String> {
    let value = integer(token, min.into(), u16::MAX.into(), "")?;
    u16::try_from(value).map_err(|_| format!("expected {min}..65535, got {token}"))
}

/// An integer in `0..=max` as `usize`.
pub(super) fn count(token: &str, max: usize, note: &str) -> Result<usize, String> {
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let value = integer(token, 0, max, note)?;
    usize::try_from(value).map_err(|_| format!("expected 0..{max}, got {token}"))
}

/// The single byte count of `line` (`max_queued_bytes`, `max_inflight_bytes`):
/// 0..i64::MAX, 0 meaning unlimited.
pub(super) fn byte_count(line: &Line<'_>) -> Result<usize, String> {
    let max = usize::try_from(i64::MAX).unwrap_or(usize::MAX);
    count(line.single("a byte count")?, max, "0 means unlimited")
}

/// Mosquitto's duration syntax: `<n><h|d|w|m|y>`, e.g. `14d` (m = 30 days, y = 365 days).
pub(super) fn duration(token: &str) -> Result<Duration, String> {
    const FORM: &str = "expected <n><h|d|w|m|y> with n >= 1, e.g. 14d";
    let bad = || format!("{FORM}, got `{token}`");
    let unit_at = token
        .len()
        .checked_sub(1)
        .filter(|&i| token.is_char_boundary(i))
        .ok_or_else(bad)?;
    let (number, unit) = token.split_at(unit_at);
    let seconds_per_unit: u64 = match unit {
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "m" => 30 * 86_400,
        "y" => 365 * 86_400,
        _ => return Err(bad()),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    match n.checked_mul(seconds_per_unit) {
        Some(seconds) if n > 0 => Ok(Duration::from_secs(seconds)),
        _ => Err(bad()),
    }
}

/// `<port> [address]` (`listener`, `metrics_listener`): every interface
/// unless an address is given.
pub(super) fn port_and_address(tokens: &[&str]) -> Result<std::net::SocketAddr, String> {
    let port = port_number(tokens.first().copied().unwrap_or(""), 0)?;
    let ip = match tokens.get(1) {
        Some(address) => ip_address(address)?,
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    Ok(std::net::SocketAddr::new(ip, port))
}

/// An IPv4 or IPv6 literal (optionally `[bracketed]`) or `localhost`.
pub(super) fn ip_address(token: &str) -> Result<IpAddr, String> {
    if token == "localhost" {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let unbracketed = token
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(token);
    unbracketed.parse().map_err(|_| {
        let hint = if token.contains('/') {
            " (unix sockets are not supported yet)"
        } else {
            ""
        };
        format!("expected an IPv4 or IPv6 address or `localhost`, got `{token}`{hint}")
    })
}

/// One of `choices`, for messages like "expected in, out or both".
pub(super) fn choice<'c>(token: &str, choices: &[&'c str]) -> Result<&'c str, String> {
    choices
        .iter()
        .find(|c| **c == token)
        .copied()
        .ok_or_else(|| {
            let (last, first) = choices.split_last().map_or(("", &[][..]), |(l, f)| (*l, f));
            format!("expected {} or {last}, got `{token}`", first.join(", "))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(duration("1y"), Ok(Duration::from_secs(365 * 86_400)));
        for bad in [
            "",
            "h",
            "0d",
            "5",
            "5s",
            "-1d",
            "é",
            "99999999999999999999y",
        ] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn choices_are_listed() {
        assert_eq!(
            choice("x", &["in", "out", "both"]).unwrap_err(),
            "expected in, out or both, got `x`"
        );
    }

    #[test]
    fn integers_name_the_range() {
        assert_eq!(
            integer("70000", 1, 65535, "").unwrap_err(),
            "expected 1..65535, got 70000"
        );
        assert_eq!(
            integer("x", 0, 2, "").unwrap_err(),
            "expected 0..2, got `x`"
        );
    }
}
