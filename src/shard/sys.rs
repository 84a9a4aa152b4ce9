//! `$SYS`: the broker's statistics as retained messages, in Mosquitto's
//! layout and timing (`sys_interval`, 10 s by default; 0 turns it off).
//!
//! Shard 0 alone keeps a [`SysTree`]: on its tick, once an interval has
//! passed, it reads every shard's published counters (`StatsCell`s, at
//! most one tick old), builds the topics and routes each changed one as a
//! broker-originated retained message ([`Shard::publish_broker_message`]), so every
//! shard's replica of the retained store holds it and subscribers on any
//! shard receive it. As in Mosquitto, only values that changed are
//! published again, but for the uptime; load averages are moving averages
//! per minute, `new = rate + e^(-interval/period) * (old - rate)`,
//! published when they move by 0.01 or more.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Shard, StatsCell, StatsSnapshot};
use crate::protocol::QoS;

/// The QoS the tree is published with: Mosquitto's (`SYS_TREE_QOS` in
/// its `sys_tree.c`).
const SYS_TREE_QOS: QoS = QoS::ExactlyOnce;

/// The load averages' periods, in seconds, and their topic suffixes.
const PERIODS: [(f64, &str); 3] = [(60.0, "1min"), (300.0, "5min"), (900.0, "15min")];

/// What a load average follows: topic (under `$SYS/broker/load/`) and
/// counter.
type Rate = (&'static str, fn(&StatsSnapshot) -> u64);

const RATES: [Rate; 9] = [
    ("messages/received", |s| s.received),
    ("messages/sent", |s| s.sent),
    ("publish/dropped", |s| s.dropped),
    ("publish/received", |s| s.received),
    ("publish/sent", |s| s.sent),
    ("bytes/received", |s| s.bytes_received),
    ("bytes/sent", |s| s.bytes_sent),
    ("sockets", |s| s.accepted),
    ("connections", |s| s.connects),
];

/// Shard 0's `$SYS` state: when the next update is due, what was last
/// published, the load averages. Shard-local.
pub struct SysTree {
    interval: Duration,
    next: Instant,
    started: Instant,
    /// Every shard's published counters, by shard id.
    shards: Arc<[Arc<StatsCell>]>,
    /// Topic -> payload last published (values that did not change are
    /// not published again). Bounded: a fixed set of topics per shard.
    last: HashMap<String, String>,
    /// The totals at the last update and when they were taken.
    previous: Option<(StatsSnapshot, Instant)>,
    /// Load averages by `RATES` index and period.
    loads: [[f64; PERIODS.len()]; RATES.len()],
    /// Most clients connected at once, seen at an update.
    max_connected: u64,
    /// Per shard, the longest loop turn of any tick since the last update
    /// (each shard's cell holds its last tick's).
    stalls: Vec<u64>,
}

impl SysTree {
    /// The tree of a broker started at `started`, updated every `interval`
    /// (0: not until a reload sets one) from `shards`' counters.
    pub fn new(interval: Duration, started: Instant, shards: Arc<[Arc<StatsCell>]>) -> SysTree {
        SysTree {
            interval,
            next: started,
            started,
            shards,
            last: HashMap::new(),
            previous: None,
            loads: [[0.0; PERIODS.len()]; RATES.len()],
            max_connected: 0,
            stalls: Vec::new(),
        }
    }

    /// A reload's `sys_interval` (0 turns the tree off): the next update
    /// is due one new interval after the last one (at once if the tree
    /// was off), as Mosquitto times it after re-reading the setting.
    pub fn set_interval(&mut self, interval: Duration, now: Instant) {
        if interval == self.interval {
            return;
        }
        let last = (!self.interval.is_zero())
            .then(|| self.next.checked_sub(self.interval))
            .flatten();
        self.next = last.map_or(now, |t| t + interval);
        self.interval = interval;
    }

    /// Called every tick: the changed topics and payloads if an update is
    /// due at `now` (never while the interval is 0). Every tick folds the
    /// shards' longest turns in.
    pub fn due(&mut self, now: Instant) -> Option<Vec<(String, String)>> {
        if self.interval.is_zero() {
            return None;
        }
        let mut per_shard: Vec<StatsSnapshot> = self.shards.iter().map(|c| c.read()).collect();
        self.stalls.resize(per_shard.len(), 0);
        for (max, s) in self.stalls.iter_mut().zip(&per_shard) {
            *max = (*max).max(s.max_turn_us);
        }
        if now < self.next {
            return None;
        }
        self.next = now + self.interval;
        for (s, max) in per_shard.iter_mut().zip(&mut self.stalls) {
            s.max_turn_us = std::mem::take(max);
        }
        Some(self.update(now, &per_shard))
    }

    /// Every value at `now` from the shards' counters; only the changed
    /// ones (and the uptime) are returned.
    fn update(&mut self, now: Instant, per_shard: &[StatsSnapshot]) -> Vec<(String, String)> {
        let total = per_shard
            .iter()
            .fold(StatsSnapshot::default(), |a, s| a + *s);
        let mut values = broker_values(&total, per_shard);
        self.max_connected = self.max_connected.max(total.connections);
        values.push(("clients/maximum".into(), self.max_connected.to_string()));
        let uptime = now.duration_since(self.started).as_secs();
        let mut out = vec![("$SYS/broker/uptime".into(), format!("{uptime} seconds"))];
        self.loads(now, &total, &mut out);
        for (topic, payload) in values {
            let topic = format!("$SYS/broker/{topic}");
            if self.last.get(&topic) != Some(&payload) {
                self.last.insert(topic.clone(), payload.clone());
                out.push((topic, payload));
            }
        }
        out
    }

    /// Updates the load averages, adding those that moved to `out` (all
    /// of them the first time).
    fn loads(&mut self, now: Instant, total: &StatsSnapshot, out: &mut Vec<(String, String)>) {
        let previous = self.previous.replace((*total, now));
        let (before, then) = previous.unwrap_or((*total, now));
        let secs = now.duration_since(then).as_secs_f64();
        let initial = previous.is_none();
        for (r, (name, counter)) in RATES.iter().enumerate() {
            let per_minute = if secs > 0.0 {
                counter(total).saturating_sub(counter(&before)) as f64 * 60.0 / secs
            } else {
                0.0
            };
            for (p, (period, suffix)) in PERIODS.iter().enumerate() {
                let old = self.loads[r][p];
                let new = if initial {
                    old
                } else {
                    per_minute + (-secs / period).exp() * (old - per_minute)
                };
                self.loads[r][p] = new;
                if initial || (new - old).abs() >= 0.01 {
                    out.push((
                        format!("$SYS/broker/load/{name}/{suffix}"),
                        format!("{new:.2}"),
                    ));
                }
            }
        }
    }
}

/// The broker-wide and per-shard values (but for the maximum, uptime and
/// loads), as (topic under `$SYS/broker/`, payload).
fn broker_values(t: &StatsSnapshot, per_shard: &[StatsSnapshot]) -> Vec<(String, String)> {
    // Every shard holds every retained message: shard 0's count is the
    // broker's.
    let (retained, retained_bytes) = per_shard
        .first()
        .map_or((0, 0), |s| (s.retained, s.retained_bytes));
    // Held by the broker, as Mosquitto counts its store: retained
    // messages and messages queued for sessions.
    let stored = retained + t.queued_messages;
    let mut v: Vec<(String, u64)> = vec![
        ("clients/connected".into(), t.connections),
        (
            "clients/disconnected".into(),
            t.sessions.saturating_sub(t.connections),
        ),
        ("clients/total".into(), t.sessions),
        ("clients/expired".into(), t.expired),
        ("messages/received".into(), t.received),
        ("messages/sent".into(), t.sent),
        ("messages/stored".into(), stored),
        ("store/messages/count".into(), stored),
        (
            "store/messages/bytes".into(),
            retained_bytes + t.queued_bytes,
        ),
        // Process-wide, published by shard 0 alone.
        (
            "logging/dropped".into(),
            per_shard.first().map_or(0, |s| s.log_dropped),
        ),
        ("publish/messages/dropped".into(), t.dropped),
        ("publish/messages/received".into(), t.received),
        ("publish/messages/sent".into(), t.sent),
        ("publish/bytes/received".into(), t.publish_bytes_received),
        ("publish/bytes/sent".into(), t.publish_bytes_sent),
        ("bytes/received".into(), t.bytes_received),
        ("bytes/sent".into(), t.bytes_sent),
        ("subscriptions/count".into(), t.subscriptions),
        ("retained messages/count".into(), retained),
    ];
    for (n, s) in per_shard.iter().enumerate() {
        let shard = |what: &str| format!("shard/{n}/{what}");
        v.extend([
            (shard("connections"), s.connections),
            (shard("sessions"), s.sessions),
            (shard("messages/received"), s.received),
            (shard("messages/sent"), s.sent),
            (shard("mesh/sent"), s.mesh_sent),
            (shard("mesh/received"), s.mesh_received),
            (shard("mesh/queued"), s.mesh_queued),
            (shard("loop/turns"), s.turns),
            (shard("loop/stall"), s.max_turn_us),
        ]);
    }
    let mut out: Vec<(String, String)> = v.into_iter().map(|(k, n)| (k, n.to_string())).collect();
    let mut version = String::new();
    let _ = write!(version, "shardmq version {}", env!("CARGO_PKG_VERSION"));
    out.push(("version".into(), version));
    out
}

impl Shard {
    /// Publishes `$SYS` if this shard keeps the tree and an update is due.
    pub(super) fn update_sys(self: &Rc<Self>, now: Instant) {
        let Some(tree) = self.sys.as_ref() else {
            return;
        };
        let Some(changed) = tree.borrow_mut().due(now) else {
            return;
        };
        for (topic, payload) in changed {
            self.publish_broker_message(&topic, Bytes::from(payload), SYS_TREE_QOS, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (SysTree, Instant) {
        let start = Instant::now();
        let cells: Arc<[Arc<StatsCell>]> = (0..2).map(|_| Arc::default()).collect();
        (SysTree::new(Duration::from_secs(10), start, cells), start)
    }

    fn value<'a>(out: &'a [(String, String)], topic: &str) -> Option<&'a str> {
        out.iter()
            .find(|(t, _)| t == &format!("$SYS/broker/{topic}"))
            .map(|(_, p)| p.as_str())
    }

    #[test]
    fn values_are_summed_over_shards_and_only_changes_are_published_again() {
        let (mut tree, start) = tree();
        let a = StatsSnapshot {
            connections: 2,
            sessions: 3,
            received: 5,
            ..StatsSnapshot::default()
        };
        let b = StatsSnapshot {
            connections: 1,
            sessions: 1,
            ..StatsSnapshot::default()
        };
        let out = tree.update(start, &[a, b]);
        assert_eq!(value(&out, "clients/connected"), Some("3"));
        assert_eq!(value(&out, "clients/total"), Some("4"));
        assert_eq!(value(&out, "clients/disconnected"), Some("1"));
        assert_eq!(value(&out, "clients/maximum"), Some("3"));
        assert_eq!(value(&out, "publish/messages/received"), Some("5"));
        assert_eq!(value(&out, "shard/1/connections"), Some("1"));
        assert_eq!(value(&out, "uptime"), Some("0 seconds"));
        assert_eq!(value(&out, "load/messages/received/1min"), Some("0.00"));
        let later = start + Duration::from_secs(10);
        let b = StatsSnapshot {
            connections: 0,
            ..b
        };
        let out = tree.update(later, &[a, b]);
        assert_eq!(value(&out, "uptime"), Some("10 seconds"));
        assert_eq!(value(&out, "clients/connected"), Some("2"));
        assert_eq!(value(&out, "clients/maximum"), None, "unchanged");
        assert_eq!(value(&out, "publish/messages/received"), None, "unchanged");
    }

    #[test]
    fn the_store_is_retained_once_plus_every_shards_queues() {
        let (mut tree, start) = tree();
        // Every shard holds every retained message: counted once.
        let a = StatsSnapshot {
            retained: 2,
            retained_bytes: 8,
            queued_messages: 3,
            queued_bytes: 30,
            log_dropped: 5,
            ..StatsSnapshot::default()
        };
        let b = StatsSnapshot {
            queued_messages: 1,
            queued_bytes: 7,
            ..a
        };
        let out = tree.update(start, &[a, b]);
        assert_eq!(value(&out, "retained messages/count"), Some("2"));
        assert_eq!(value(&out, "store/messages/count"), Some("6"));
        assert_eq!(value(&out, "messages/stored"), Some("6"));
        assert_eq!(value(&out, "store/messages/bytes"), Some("45"));
        assert_eq!(value(&out, "logging/dropped"), Some("5"), "shard 0's");
    }

    #[test]
    fn a_new_interval_times_the_next_update_from_the_last_one() {
        let (mut tree, start) = tree();
        assert!(tree.due(start).is_some());
        tree.set_interval(Duration::from_secs(2), start);
        assert!(tree.due(start + Duration::from_secs(1)).is_none());
        assert!(tree.due(start + Duration::from_secs(2)).is_some());
        tree.set_interval(Duration::ZERO, start);
        assert!(tree.due(start + Duration::from_secs(60)).is_none(), "off");
        let later = start + Duration::from_secs(61);
        tree.set_interval(Duration::from_secs(10), later);
        assert!(tree.due(later).is_some(), "on again: at once");
    }

    #[test]
    fn the_stall_is_the_longest_turn_of_any_tick_since_the_last_update() {
        let (mut tree, start) = tree();
        let cell = |us| StatsSnapshot {
            max_turn_us: us,
            ..StatsSnapshot::default()
        };
        tree.shards[1].publish(&cell(900));
        assert!(tree.due(start).is_some(), "the first update is at once");
        tree.shards[1].publish(&cell(700));
        assert!(tree.due(start + Duration::from_secs(1)).is_none());
        tree.shards[1].publish(&cell(5));
        let out = tree.due(start + Duration::from_secs(10)).expect("due");
        assert_eq!(value(&out, "shard/1/loop/stall"), Some("700"));
    }

    #[test]
    fn load_averages_move_as_mosquitto_computes_them() {
        let (mut tree, start) = tree();
        let zero = StatsSnapshot::default();
        tree.update(start, &[zero, zero]);
        // 600 messages in 10 s: 3600 a minute.
        let busy = StatsSnapshot {
            received: 600,
            ..zero
        };
        let out = tree.update(start + Duration::from_secs(10), &[busy, zero]);
        let expect = 3600.0 * (1.0 - (-10.0f64 / 60.0).exp());
        let got: f64 = value(&out, "load/messages/received/1min")
            .expect("moved")
            .parse()
            .expect("a number");
        assert!((got - expect).abs() < 0.01, "{got} vs {expect}");
        assert_eq!(value(&out, "load/bytes/sent/1min"), None, "did not move");
    }
}
