//! Every shard's counters and histograms in the Prometheus text format,
//! written by `prometheus-client` from the shards' published copies (read
//! back by [`super::scrape`]).

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::histogram::{HistogramSnapshot, BOUNDS_NS};
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
    (
        "log_lines_dropped",
        "log_dest topic lines dropped, their queue full (process-wide: shard 0 only)",
        |s| s.log_dropped,
    ),
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
        "retained_bytes",
        "Payload bytes of the retained messages (every shard holds them all)",
        |s| s.retained_bytes,
    ),
    (
        "queued_messages",
        "Messages in the queues of the sessions homed on the shard",
        |s| s.queued_messages,
    ),
    (
        "queued_bytes",
        "Payload bytes of the messages in those queues",
        |s| s.queued_bytes,
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
        "queued_delivery_latency_seconds",
        "From the loop turn that read a PUBLISH to its write from a session's queue (offline or slow subscribers)",
        |h| h.queued_delivery.read(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::LocalHistogram;
    use crate::metrics::scrape::{histogram, parse};
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

    #[test]
    fn the_store_and_log_drop_figures_are_exposed() {
        let b = board();
        b.stats[0].publish(&StatsSnapshot {
            queued_messages: 3,
            queued_bytes: 30,
            retained_bytes: 4,
            log_dropped: 2,
            ..StatsSnapshot::default()
        });
        let samples = parse(&render(&b.registry(), false));
        let value = |name: &str| {
            samples
                .iter()
                .find(|s| s.name == name && s.label("shard") == Some("0"))
                .map(|s| s.value)
        };
        assert_eq!(value("shardmq_queued_messages"), Some(3.0));
        assert_eq!(value("shardmq_queued_bytes"), Some(30.0));
        assert_eq!(value("shardmq_retained_bytes"), Some(4.0));
        assert_eq!(value("shardmq_log_lines_dropped_total"), Some(2.0));
        let queued = histogram(&samples, "shardmq_queued_delivery_latency_seconds");
        assert_eq!(queued.map(|h| h.count()), Some(0), "exposed, empty");
    }
}
