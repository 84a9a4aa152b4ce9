//! Open-loop send schedules.
//!
//! Message `k` of a publisher is due at `start + offset + k * interval`,
//! whatever happened to the messages before it: when the broker slows down
//! the publisher falls behind and catches up, and every message's latency is
//! measured from its due time, so the stall shows in the histogram instead
//! of being hidden by a slower send rate (coordinated omission).

/// When each message of one sender is due, in clock nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Due time of message 0.
    pub first_ns: u64,
    /// Nanoseconds between consecutive messages (at least 1).
    pub interval_ns: u64,
    /// Messages due at or after this time are not sent.
    pub end_ns: u64,
}

impl Schedule {
    /// The schedule of sender `index` of `senders` sharing `total_rate`
    /// messages per second, staggered evenly over one interval so that the
    /// senders do not all fire at the same instant.
    pub fn staggered(
        total_rate: f64,
        index: usize,
        senders: usize,
        start_ns: u64,
        end_ns: u64,
    ) -> Schedule {
        let per_sender = (total_rate / senders.max(1) as f64).max(1e-3);
        let interval_ns = ((1e9 / per_sender) as u64).max(1);
        let offset = interval_ns as u128 * index as u128 / senders.max(1) as u128;
        Schedule {
            first_ns: start_ns + offset as u64,
            interval_ns,
            end_ns,
        }
    }

    /// Due time of message `k`, or `None` once past the end.
    pub fn due(&self, k: u64) -> Option<u64> {
        let at = self
            .first_ns
            .checked_add(k.checked_mul(self.interval_ns)?)?;
        (at < self.end_ns).then_some(at)
    }

    /// How many messages are due at or before `now_ns` (the next one to send
    /// has index `due_by(now)` when the sender is on schedule).
    pub fn due_by(&self, now_ns: u64) -> u64 {
        if now_ns < self.first_ns {
            return 0;
        }
        let last = now_ns.min(self.end_ns.saturating_sub(1));
        if last < self.first_ns {
            return 0;
        }
        (last - self.first_ns) / self.interval_ns + 1
    }
}

/// The rates a saturation search tries: `start`, then `factor` times the
/// previous one, at most `steps` of them.
pub fn saturation_steps(start: f64, factor: f64, steps: usize) -> impl Iterator<Item = f64> {
    std::iter::successors(Some(start), move |r| Some(r * factor)).take(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staggered_schedules_share_the_rate() {
        let s: Vec<_> = (0..4)
            .map(|i| Schedule::staggered(4000.0, i, 4, 1000, 1_000_001_000))
            .collect();
        assert!(s.iter().all(|s| s.interval_ns == 1_000_000));
        assert_eq!(s[1].first_ns - s[0].first_ns, 250_000);
        let total: u64 = s.iter().map(|s| s.due_by(u64::MAX)).sum();
        assert_eq!(total, 4000);
    }

    #[test]
    fn due_stops_at_end() {
        let s = Schedule {
            first_ns: 10,
            interval_ns: 10,
            end_ns: 50,
        };
        assert_eq!(s.due(3), Some(40));
        assert_eq!(s.due(4), None);
        assert_eq!(s.due_by(9), 0);
        assert_eq!(s.due_by(10), 1);
        assert_eq!(s.due_by(39), 3);
        assert_eq!(s.due_by(1000), 4);
    }

    #[test]
    fn saturation_grows() {
        let r: Vec<f64> = saturation_steps(100.0, 2.0, 4).collect();
        assert_eq!(r, vec![100.0, 200.0, 400.0, 800.0]);
    }
}
