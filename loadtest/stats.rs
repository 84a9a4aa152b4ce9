//! Per-worker measurements ([`WorkerStats`]) and their merge into run
//! totals ([`Totals`]), including loss, duplicate and reordering counts.

use std::collections::HashMap;

use hdrhistogram::Histogram;

use crate::plan::{Delivery, Plan};
use crate::seq::SeqTracker;

/// Highest latency a histogram records (longer ones are clamped): 10 min.
pub const HIST_MAX_NS: u64 = 600_000_000_000;

/// A latency histogram in nanoseconds, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("constant histogram bounds are valid")
}

/// What one publisher did.
#[derive(Debug, Clone, Default)]
pub struct PubOutcome {
    pub id: u32,
    /// Sequence numbers used (sent or skipped by the test hook).
    pub issued: u64,
    pub sent: u64,
    /// Sent with a due time inside the measured window.
    pub sent_measured: u64,
    /// Skipped by `--drop-every`.
    pub dropped: u64,
    /// QoS 1/2 flows completed (PUBACK or PUBCOMP received).
    pub acked: u64,
    /// Their PUBLISH -> PUBACK/PUBCOMP times (ns); `None` until finished.
    pub ack_latency: Option<Histogram<u64>>,
}

/// What one subscriber received, per publisher id.
#[derive(Debug, Clone, Default)]
pub struct SubOutcome {
    pub id: u32,
    pub per_publisher: HashMap<u32, SeqTracker>,
}

/// Connection attempts of connect-storm.
#[derive(Debug, Clone, Copy, Default)]
pub struct StormOutcome {
    pub attempts: u64,
    pub connected: u64,
    pub failed: u64,
    /// Connected with a due time inside the measured window.
    pub connected_measured: u64,
}

/// Everything one worker measured. Worker-local until the worker returns it.
#[derive(Debug, Clone)]
pub struct WorkerStats {
    /// End-to-end (or CONNECT->CONNACK) latency of measured messages.
    pub latency: Histogram<u64>,
    /// The same, since the last progress tick.
    pub interval: Histogram<u64>,
    /// Messages received, warm-up included.
    pub received: u64,
    /// Received with a due time inside the measured window.
    pub received_measured: u64,
    /// Publishes without our header (another client's messages).
    pub foreign: u64,
    pub subs: Vec<SubOutcome>,
    pub pubs: Vec<PubOutcome>,
    pub storm: StormOutcome,
}

impl Default for WorkerStats {
    fn default() -> Self {
        WorkerStats {
            latency: new_histogram(),
            interval: new_histogram(),
            received: 0,
            received_measured: 0,
            foreign: 0,
            subs: Vec::new(),
            pubs: Vec::new(),
            storm: StormOutcome::default(),
        }
    }
}

impl WorkerStats {
    /// Records a latency sample if `due_ns` lies in the measured `window`;
    /// returns whether it did.
    /// (The progress line's interval histogram takes every sample.)
    pub fn sample(&mut self, due_ns: u64, now_ns: u64, window: (u64, u64)) -> bool {
        let v = now_ns.saturating_sub(due_ns).clamp(1, HIST_MAX_NS);
        self.interval.saturating_record(v);
        if due_ns < window.0 || due_ns >= window.1 {
            return false;
        }
        self.latency.saturating_record(v);
        true
    }
}

/// The merged result of all workers.
#[derive(Debug, Clone)]
pub struct Totals {
    pub latency: Histogram<u64>,
    pub sent: u64,
    pub sent_measured: u64,
    pub received: u64,
    pub received_measured: u64,
    /// Deliveries the sequence numbers say should have happened.
    pub expected: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub dropped_by_test: u64,
    pub acked: u64,
    /// Deliveries of messages the broker acknowledged to their publisher
    /// (PUBACK/PUBCOMP) that never arrived: what a broker lost after
    /// promising "at least once".
    pub lost_acked: u64,
    /// PUBLISH -> PUBACK/PUBCOMP over every publisher, whole run.
    pub ack_latency: Histogram<u64>,
    pub foreign: u64,
    pub storm: StormOutcome,
}

/// Merges worker results; loss is counted per (publisher, subscriber) over
/// the whole run (warm-up included), from sequence numbers.
pub fn merge(workers: Vec<WorkerStats>, plan: &Plan) -> Totals {
    let mut t = Totals {
        latency: new_histogram(),
        sent: 0,
        sent_measured: 0,
        received: 0,
        received_measured: 0,
        expected: 0,
        lost: 0,
        duplicates: 0,
        out_of_order: 0,
        dropped_by_test: 0,
        acked: 0,
        lost_acked: 0,
        ack_latency: new_histogram(),
        foreign: 0,
        storm: StormOutcome::default(),
    };
    let mut issued: HashMap<u32, u64> = HashMap::new();
    let mut acked: HashMap<u32, u64> = HashMap::new();
    let mut subs = Vec::new();
    for w in workers {
        // Same bounds on both sides, so adding cannot fail.
        let _ = t.latency.add(&w.latency);
        t.received += w.received;
        t.received_measured += w.received_measured;
        t.foreign += w.foreign;
        t.storm.attempts += w.storm.attempts;
        t.storm.connected += w.storm.connected;
        t.storm.failed += w.storm.failed;
        t.storm.connected_measured += w.storm.connected_measured;
        for p in &w.pubs {
            t.sent += p.sent;
            t.sent_measured += p.sent_measured;
            t.dropped_by_test += p.dropped;
            t.acked += p.acked;
            issued.insert(p.id, p.issued);
            acked.insert(p.id, p.acked);
            if let Some(h) = &p.ack_latency {
                let _ = t.ack_latency.add(h);
            }
        }
        subs.extend(w.subs);
    }
    count_loss(&mut t, &issued, &subs, plan.delivery);
    // The same count over acknowledged messages only (QoS 1/2): PUBACKs
    // come in order per publisher, so its first `acked` sequence numbers
    // were acknowledged.
    let mut after_ack = Totals {
        lost: 0,
        ..t.clone()
    };
    count_loss(&mut after_ack, &acked, &subs, plan.delivery);
    t.lost_acked = after_ack.lost;
    t
}

fn count_loss(t: &mut Totals, issued: &HashMap<u32, u64>, subs: &[SubOutcome], delivery: Delivery) {
    for s in subs {
        for tr in s.per_publisher.values() {
            t.duplicates += tr.duplicates;
            t.out_of_order += tr.out_of_order;
        }
    }
    let seen = |s: &SubOutcome, p: u32| s.per_publisher.get(&p).map_or(0, |tr| tr.distinct);
    match delivery {
        Delivery::All => {
            for s in subs {
                for (&p, &n) in issued {
                    t.expected += n;
                    t.lost += n.saturating_sub(seen(s, p));
                }
            }
        }
        Delivery::Pairwise => {
            for s in subs {
                let n = issued.get(&s.id).copied().unwrap_or(0);
                t.expected += n;
                t.lost += n.saturating_sub(seen(s, s.id));
            }
        }
        Delivery::Shared => {
            for (&p, &n) in issued {
                let got: u64 = subs.iter().map(|s| seen(s, p)).sum();
                t.expected += n;
                t.lost += n.saturating_sub(got);
                // A message given to two members of the group is a duplicate too.
                t.duplicates += got.saturating_sub(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(id: u32, streams: &[(u32, &[u64])]) -> SubOutcome {
        let mut s = SubOutcome {
            id,
            per_publisher: HashMap::new(),
        };
        for (p, seqs) in streams {
            let tr = s.per_publisher.entry(*p).or_default();
            seqs.iter().for_each(|&q| tr.record(q));
        }
        s
    }

    fn worker(pubs: &[(u32, u64)], subs: Vec<SubOutcome>) -> WorkerStats {
        let pubs = pubs.iter().map(|&(id, issued)| PubOutcome {
            id,
            issued,
            sent: issued,
            ..Default::default()
        });
        WorkerStats {
            pubs: pubs.collect(),
            subs,
            ..Default::default()
        }
    }

    #[test]
    fn fanout_loss_is_per_subscriber() {
        let w = worker(
            &[(0, 4)],
            vec![sub(0, &[(0, &[0, 1, 2, 3])]), sub(1, &[(0, &[0, 2, 2])])],
        );
        let t = merge(vec![w], &Plan::fanout(1, 2, "t"));
        assert_eq!((t.expected, t.lost, t.duplicates), (8, 2, 1));
    }

    #[test]
    fn loss_after_ack_counts_only_acknowledged_messages() {
        let mut w = worker(
            &[(0, 10), (1, 10)],
            vec![sub(0, &[(0, &[0, 1, 2]), (1, &[0])])],
        );
        w.pubs[0].acked = 4; // 0..4 acknowledged, 3 never delivered
        w.pubs[1].acked = 1;
        let t = merge(vec![w], &Plan::fanin(2, 1, None, "t"));
        assert_eq!((t.acked, t.lost_acked, t.lost), (5, 1, 16));
    }

    #[test]
    fn pairs_only_expect_their_publisher() {
        let w = worker(
            &[(0, 3), (1, 3)],
            vec![sub(0, &[(0, &[0, 1, 2])]), sub(1, &[(1, &[1, 0])])],
        );
        let t = merge(vec![w], &Plan::pairs(2, "t"));
        assert_eq!((t.expected, t.lost, t.out_of_order), (6, 1, 1));
    }

    #[test]
    fn shared_loss_is_per_group() {
        let w = worker(
            &[(0, 4)],
            vec![sub(0, &[(0, &[0, 2])]), sub(1, &[(0, &[1])])],
        );
        let t = merge(vec![w], &Plan::fanin(1, 2, Some("g"), "t"));
        assert_eq!((t.expected, t.lost), (4, 1));
    }

    #[test]
    fn samples_outside_the_window_are_ignored() {
        let mut w = WorkerStats::default();
        assert!(!w.sample(5, 10, (10, 20)));
        assert!(w.sample(10, 1_000_010, (10, 20)));
        assert!(!w.sample(20, 30, (10, 20)));
        assert_eq!(w.latency.len(), 1);
    }
}
