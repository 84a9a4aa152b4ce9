//! When and where a link reconnects: `restart_timeout` (constant, or
//! Mosquitto's decorrelated jitter between a base and a cap) and the cycle
//! over `addresses` (`round_robin`).

use std::time::Duration;

use crate::config::RestartTimeout;
use crate::limits::{BRIDGE_QUICK_RETRIES, BRIDGE_QUICK_RETRY};

/// A link's reconnect policy and where it is in it. Owned by its link.
#[derive(Debug)]
pub struct Backoff {
    policy: RestartTimeout,
    /// The last delay handed out (the jitter grows from it).
    last: Duration,
    /// Quick retries left: a link that was up retries every
    /// [`BRIDGE_QUICK_RETRY`] (jittered) this many times before the
    /// policy applies, so a restarted upstream is found within half a
    /// second of its return.
    quick_left: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(policy: RestartTimeout, seed: u64) -> Backoff {
        Backoff {
            policy,
            last: Duration::ZERO,
            quick_left: 0,
            rng: seed | 1,
        }
    }

    /// The link connected: the next failure starts the policy afresh.
    pub fn connected(&mut self) {
        self.last = Duration::ZERO;
        self.quick_left = BRIDGE_QUICK_RETRIES;
    }

    /// How long to wait before the next attempt.
    ///
    /// After a link that was up drops, the first [`BRIDGE_QUICK_RETRIES`]
    /// retries come every [`BRIDGE_QUICK_RETRY`] or less (jittered, so
    /// many edges do not return at once); then the configured policy.
    /// Mosquitto waits `restart_timeout` (5 s and more by default) from
    /// the first retry on.
    pub fn next_delay(&mut self) -> Duration {
        if self.quick_left > 0 {
            self.quick_left -= 1;
            return self.between(BRIDGE_QUICK_RETRY / 2, BRIDGE_QUICK_RETRY);
        }
        let delay = match self.policy {
            RestartTimeout::Constant(d) => d,
            RestartTimeout::Backoff { base, cap } => {
                // Mosquitto: sleep = min(cap, random_between(base, sleep * 3)).
                let upper = (self.last * 3).max(base);
                self.between(base, upper).min(cap)
            }
        };
        self.last = delay;
        delay
    }

    fn between(&mut self, low: Duration, high: Duration) -> Duration {
        if high <= low {
            return low;
        }
        let span = (high - low).as_micros() as u64;
        low + Duration::from_micros(self.random() % (span + 1))
    }

    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// Which address a link tries. Owned by its link.
#[derive(Debug)]
pub struct Addresses {
    count: usize,
    round_robin: bool,
    current: usize,
}

impl Addresses {
    pub fn new(count: usize, round_robin: bool) -> Addresses {
        assert!(count > 0, "a bridge has at least one address");
        Addresses {
            count,
            round_robin,
            current: 0,
        }
    }

    /// The address to use now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// The attempt on the current address failed: the next one, cycling.
    pub fn failed(&mut self) {
        self.current = (self.current + 1) % self.count;
    }

    /// True when connected away from the primary address and
    /// `round_robin` is false: the primary is probed and taken back.
    pub fn wants_primary(&self) -> bool {
        !self.round_robin && self.current != 0
    }

    /// Go back to the primary (it answered a probe).
    pub fn back_to_primary(&mut self) {
        self.current = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_constant() {
        let mut b = Backoff::new(RestartTimeout::Constant(Duration::from_secs(3)), 7);
        for _ in 0..5 {
            assert_eq!(b.next_delay(), Duration::from_secs(3));
        }
    }

    #[test]
    fn jitter_stays_between_base_and_cap_and_grows() {
        let base = Duration::from_secs(5);
        let cap = Duration::from_secs(30);
        let mut b = Backoff::new(RestartTimeout::Backoff { base, cap }, 42);
        let delays: Vec<Duration> = (0..50).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d >= base && *d <= cap), "{delays:?}");
        assert!(delays.iter().any(|d| *d > base * 2), "it grows: {delays:?}");
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 10, "jittered: {delays:?}");
    }

    #[test]
    fn retries_after_an_up_link_are_quick_then_the_policy() {
        let policy = RestartTimeout::Constant(Duration::from_secs(5));
        let mut b = Backoff::new(policy, 9);
        assert_eq!(
            b.next_delay(),
            Duration::from_secs(5),
            "never up: the policy"
        );
        b.connected();
        for _ in 0..BRIDGE_QUICK_RETRIES {
            let d = b.next_delay();
            assert!(
                d >= BRIDGE_QUICK_RETRY / 2 && d <= BRIDGE_QUICK_RETRY,
                "{d:?}"
            );
        }
        assert_eq!(b.next_delay(), Duration::from_secs(5));
    }

    #[test]
    fn addresses_cycle_and_the_primary_is_wanted_back() {
        let mut a = Addresses::new(3, false);
        assert!(!a.wants_primary());
        a.failed();
        assert_eq!(a.current(), 1);
        assert!(a.wants_primary());
        a.failed();
        a.failed();
        assert_eq!(a.current(), 0, "cycles back to the first");
        let mut rr = Addresses::new(2, true);
        rr.failed();
        assert!(!rr.wants_primary(), "round_robin stays where it works");
    }
}
