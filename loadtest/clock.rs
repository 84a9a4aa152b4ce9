//! The process-wide monotonic clock that every timestamp is taken from.
//!
//! Publishers and subscribers live in the same process, so a send time
//! written into a payload on one worker thread can be subtracted from a
//! receive time read on another: both are nanoseconds since [`origin`].

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// The instant all harness timestamps count from (set on first use).
pub fn origin() -> Instant {
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds since [`origin`].
pub fn now_ns() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// `d` in nanoseconds, saturating.
pub fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// How long from now until the timestamp `at_ns` (zero if it has passed).
pub fn until(at_ns: u64) -> Duration {
    Duration::from_nanos(at_ns.saturating_sub(now_ns()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_until() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert_eq!(until(0), Duration::ZERO);
        assert!(until(now_ns() + 1_000_000_000) > Duration::from_millis(900));
    }
}
