//! The time stamp a log line starts with (`log_timestamp`,
//! `log_timestamp_format`): Unix seconds by default, as Mosquitto writes
//! them (`1700000000: `), or a strftime(3) format in local time.

use std::ffi::{CStr, CString};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::limits::LOG_TIMESTAMP_MAX;

/// How each line is stamped.
pub(super) enum Stamp {
    /// `log_timestamp false`.
    Off,
    /// Unix seconds (the default).
    Unix,
    /// `log_timestamp_format`, checked by [`check_timestamp_format`].
    Format(CString),
}

impl Stamp {
    /// The stamp the configuration asks for; `Err` if its format is
    /// unusable (the parser already refused such a format).
    pub(super) fn of(config: &Config) -> Result<Stamp, String> {
        match (config.log_timestamp, &config.log_timestamp_format) {
            (false, _) => Ok(Stamp::Off),
            (true, None) => Ok(Stamp::Unix),
            (true, Some(format)) => {
                check_timestamp_format(format)?;
                Ok(Stamp::Format(c_format(format)?))
            }
        }
    }

    /// What a line written at `now` starts with: the stamp and `: `, or
    /// nothing.
    pub(super) fn prefix(&self, now: SystemTime) -> String {
        let seconds = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        match self {
            Stamp::Off => String::new(),
            Stamp::Unix => format!("{seconds}: "),
            Stamp::Format(format) => match strftime(format, seconds as libc::time_t) {
                Some(text) => format!("{text}: "),
                None => format!("{seconds}: "),
            },
        }
    }
}

/// Checks a `log_timestamp_format`: it must give between 1 and
/// [`LOG_TIMESTAMP_MAX`] bytes of text.
pub fn check_timestamp_format(format: &str) -> Result<(), String> {
    let c = c_format(format)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match strftime(&c, now as libc::time_t) {
        Some(_) => Ok(()),
        None => Err(format!(
            "`{format}` gives no text or more than {LOG_TIMESTAMP_MAX} bytes (a strftime format, e.g. %Y-%m-%dT%H:%M:%S)"
        )),
    }
}

fn c_format(format: &str) -> Result<CString, String> {
    CString::new(format).map_err(|_| format!("`{format}` holds a NUL byte"))
}

/// `seconds` in local time, formatted by strftime(3); `None` if the text
/// is empty or longer than [`LOG_TIMESTAMP_MAX`].
fn strftime(format: &CStr, seconds: libc::time_t) -> Option<String> {
    let mut buf = [0u8; LOG_TIMESTAMP_MAX + 1];
    // SAFETY: `tm` is plain data that localtime_r fills; strftime writes at
    // most `buf.len()` bytes into `buf` and returns how many it wrote
    // (0 when they do not fit); `format` is NUL-terminated.
    let written = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&seconds, &mut tm).is_null() {
            return None;
        }
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), format.as_ptr(), &tm)
    };
    (written > 0).then(|| String::from_utf8_lossy(&buf[..written]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 2023-11-14 22:13:20 UTC: the same year and month in every time zone.
    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn unix_seconds_by_default() {
        let stamp = Stamp::of(&Config::default()).expect("default");
        assert_eq!(stamp.prefix(at()), "1700000000: ");
    }

    #[test]
    fn strftime_format() {
        let config = Config {
            log_timestamp_format: Some("%Y-%m".to_string()),
            ..Config::default()
        };
        let stamp = Stamp::of(&config).expect("format");
        assert_eq!(stamp.prefix(at()), "2023-11: ");
    }

    #[test]
    fn off() {
        let config = Config {
            log_timestamp: false,
            log_timestamp_format: Some("%Y".to_string()),
            ..Config::default()
        };
        assert_eq!(Stamp::of(&config).expect("off").prefix(at()), "");
    }

    #[test]
    fn unusable_formats() {
        assert!(check_timestamp_format("%Y-%m-%dT%H:%M:%S").is_ok());
        assert!(check_timestamp_format("").is_err());
        let long = "%Y".repeat(LOG_TIMESTAMP_MAX);
        let err = check_timestamp_format(&long).unwrap_err();
        assert!(err.contains("more than 64 bytes"), "{err}");
    }
}
