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

/// The clock time of `instant` (0 for instants before the origin).
pub fn ns_of(instant: Instant) -> u64 {
    ns(instant.saturating_duration_since(origin()))
}

/// The instant of the clock time `at_ns`.
pub fn instant_of(at_ns: u64) -> Instant {
    origin() + Duration::from_nanos(at_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_convertible() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        let t = now_ns() + 1_000_000_000;
        assert_eq!(ns_of(instant_of(t)), t);
        if let Some(before) = origin().checked_sub(Duration::from_secs(1)) {
            assert_eq!(ns_of(before), 0);
        }
    }
}
