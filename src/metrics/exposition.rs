//! Every shard's counters and histograms in the Prometheus text format,
//! written by `prometheus-client` from the shards' published copies, and a
//! small parser of that format (for the harness's before/after scrapes and
//! for tests).

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::histogram::{HistogramSnapshot, BOUNDS_NS, BUCKETS};
use super::ShardHistograms;
use crate::shard::{StatsCell, StatsSnapshot};

/// A counter or gauge: its name (after `shardmq_`), help, and field.
type Field = (&'static str, &'static str, fn(&StatsSnapshot) -> u64);

/// Counters, per shard (each shown with the `_total` suffix).
const COUNTERS: &[Field] = &[
    (
        "publish_messages_received",
        "PUBLISH packets received from clients",
        |s| s.received,
    ),
    (
        "publish_messages_sent",
        "Messages written to subscribers",
        |s| s.sent,
    ),
    (
        "publish_messages_queued",
        "Messages queued for offline or slow subscribers",
        |s| s.queued,
    ),
    (
        "publish_messages_dropped",
        "Messages dropped (slow consumers, full queues, expiry)",
        |s| s.dropped,
    ),
    (
        "publish_bytes_received",
        "Payload bytes of PUBLISH packets received",
        |s| s.publish_bytes_received,
    ),
    (
        "publish_bytes_sent",
        "Payload bytes of messages written to subscribers",
        |s| s.publish_bytes_sent,
    ),
    (
        "bytes_received",
        "Bytes read from client connections",
        |s| s.bytes_received,
    ),
    ("bytes_sent", "Bytes written to client connections", |s| {
        s.bytes_sent
    }),
    (
        "connections_accepted",
        "Connections accepted by the shard's listeners",
        |s| s.accepted,
    ),
    ("connects", "CONNECTs that attached a session", |s| {
        s.connects
    }),
    (
        "sessions_expired",
        "Offline sessions ended by their expiry",
        |s| s.expired,
    ),
    (
        "mesh_messages_sent",
        "Messages put on the mesh for other shards",
        |s| s.mesh_sent,
    ),
    (
        "mesh_messages_received",
        "Messages taken from the mesh",
        |s| s.mesh_received,
    ),
    (
        "messages_forwarded",
        "Messages forwarded to other shards",
        |s| s.forwarded,
    ),
    ("loop_turns", "Event loop turns", |s| s.turns),
];

/// Gauges, per shard.
const GAUGES: &[Field] = &[
    (
        "connections",
        "Connections attached to sessions on the shard",
        |s| s.connections,
    ),
    ("sessions", "Sessions homed on the shard", |s| s.sessions),
    (
        "subscriptions",
        "Subscriptions of the sessions homed on the shard",
        |s| s.subscriptions,
    ),
    (
        "retained_messages",
        "Retained messages (every shard holds them all)",
        |s| s.retained,
    ),
    (
        "mesh_queue_depth",
        "Messages waiting in the shard's mesh outboxes",
        |s| s.mesh_queued,
    ),
    (
        "loop_turn_max_microseconds",
        "Longest loop turn in the last tick",
        |s| s.max_turn_us,
    ),
];

/// The histograms: name (after `shardmq_`), help, which one.
type HistogramField = (
    &'static str,
    &'static str,
    fn(&ShardHistograms) -> HistogramSnapshot,
);

const HISTOGRAMS: &[HistogramField] = &[
    (
        "publish_delivery_latency_seconds",
        "From the loop turn that read a PUBLISH to the end of the turn that wrote it to a subscriber",
        |h| h.delivery.read(),
    ),
    (
        "mesh_hop_latency_seconds",
        "From the loop turn that read a PUBLISH to its take from the mesh by another shard",
        |h| h.hop.read(),
    ),
    ("loop_turn_seconds", "Event loop turn duration", |h| h.turn.read()),
];

/// What the endpoint exposes: every shard's published cells. `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Board {
    pub stats: Vec<Arc<StatsCell>>,
    pub histograms: Vec<Arc<ShardHistograms>>,
}

impl Board {
    /// A registry that encodes this board on each scrape.
    pub fn registry(self) -> Registry {
        let mut registry = Registry::with_prefix("shardmq");
        registry.register_collector(Box::new(self));
        registry
    }
}

fn shard_label(shard: usize) -> [(&'static str, String); 1] {
    [("shard", shard.to_string())]
}

impl Collector for Board {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let snaps: Vec<StatsSnapshot> = self.stats.iter().map(|c| c.read()).collect();
        for (kinds, metric_type) in [(COUNTERS, MetricType::Counter), (GAUGES, MetricType::Gauge)] {
            for (name, help, field) in kinds {
                let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
                for (shard, s) in snaps.iter().enumerate() {
                    let labels = shard_label(shard);
                    let mut m = family.encode_family(&labels)?;
                    let value = field(s);
                    match metric_type {
                        MetricType::Counter => {
                            m.encode_counter::<NoLabelSet, _, u64>(&value, None)?
                        }
                        _ => m.encode_gauge(&value)?,
                    }
                }
            }
        }
        for (name, help, which) in HISTOGRAMS {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
            for (shard, h) in self.histograms.iter().enumerate() {
                let labels = shard_label(shard);
                SnapshotMetric(which(h)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// A histogram snapshot as `prometheus-client` encodes one.
struct SnapshotMetric(HistogramSnapshot);

impl EncodeMetric for SnapshotMetric {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder) -> fmt::Result {
        let s = &self.0;
        let buckets: Vec<(f64, u64)> = s
            .counts
            .iter()
            .enumerate()
            .map(|(i, &n)| (BOUNDS_NS.get(i).map_or(f64::MAX, |&b| b as f64 / 1e9), n))
            .collect();
        let sum = s.sum_ns as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, s.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// The text of one scrape: Prometheus text 0.0.4, or OpenMetrics (with its
/// `# EOF`) if `openmetrics`.
pub fn render(registry: &Registry, openmetrics: bool) -> String {
    let mut out = String::new();
    let written = if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, registry)
    } else {
        prometheus_client::encoding::text::encode_registry(&mut out, registry)
    };
    if let Err(e) = written {
        log::error!("metrics: encoding a scrape: {e}");
    }
    out
}

/// One sample line of a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// The value of label `key`, if the sample has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of a Prometheus text scrape; comments and lines that do
/// not parse are skipped (label values with escaped quotes are not
/// supported: ours have none).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let labels = labels
        .split(',')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), v.trim_matches('"').to_string()))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Histogram `name` summed over every shard, from parsed samples; `None`
/// if the scrape has no such histogram or its buckets are not ours.
pub fn histogram(samples: &[Sample], name: &str) -> Option<HistogramSnapshot> {
    let bucket = format!("{name}_bucket");
    let mut cumulative = [0u64; BUCKETS];
    let mut any = false;
    for s in samples.iter().filter(|s| s.name == bucket) {
        let i = match s.label("le")? {
            "+Inf" => BUCKETS - 1,
            le => {
                let ns = (le.parse::<f64>().ok()? * 1e9).round() as u64;
                BOUNDS_NS.iter().position(|&b| b == ns)?
            }
        };
        cumulative[i] += s.value as u64;
        any = true;
    }
    // A bucket a scrape leaves out holds what the one below it holds.
    for i in 1..BUCKETS {
        cumulative[i] = cumulative[i].max(cumulative[i - 1]);
    }
    let sum: f64 = samples
        .iter()
        .filter(|s| s.name == format!("{name}_sum"))
        .map(|s| s.value)
        .sum();
    any.then(|| HistogramSnapshot {
        counts: std::array::from_fn(|i| {
            cumulative[i].saturating_sub(if i == 0 { 0 } else { cumulative[i - 1] })
        }),
        sum_ns: (sum * 1e9) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::LocalHistogram;
    use std::time::Duration;

    fn board() -> Board {
        let stats: Vec<Arc<StatsCell>> = (0..2).map(|_| Arc::default()).collect();
        let histograms: Vec<Arc<ShardHistograms>> = (0..2).map(|_| Arc::default()).collect();
        let s = StatsSnapshot {
            received: 5,
            connections: 2,
            ..StatsSnapshot::default()
        };
        stats[1].publish(&s);
        let h = LocalHistogram::default();
        h.record_n(Duration::from_micros(30), 4);
        histograms[0].delivery.publish(&h);
        histograms[1].delivery.publish(&h);
        Board { stats, histograms }
    }

    #[test]
    fn a_scrape_parses_back_with_a_shard_label_on_every_series() {
        let text = render(&board().registry(), false);
        assert!(!text.contains("# EOF"), "{text}");
        let samples = parse(&text);
        let received: Vec<_> = samples
            .iter()
            .filter(|s| s.name == "shardmq_publish_messages_received_total")
            .collect();
        assert_eq!(received.len(), 2, "{text}");
        assert_eq!(received[1].label("shard"), Some("1"));
        assert_eq!(received[1].value, 5.0);
        assert!(samples.iter().all(|s| s.label("shard").is_some()));
        let h = histogram(&samples, "shardmq_publish_delivery_latency_seconds").expect("found");
        assert_eq!(h.count(), 8);
        assert_eq!(h.counts[5], 8, "30 µs falls under 50 µs");
        assert!(render(&board().registry(), true).ends_with("# EOF\n"));
    }
}
