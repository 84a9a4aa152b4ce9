//! The result of a run ([`Report`]) and its two renderings: a summary table
//! for people and JSON for machines. [`Report::rows`] is the one list of
//! metrics both the table and `compare` print.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub min_ms: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
    pub p99_99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Percentiles of a nanosecond histogram; `None` when it is empty.
    pub fn of(h: &Histogram<u64>) -> Option<Latency> {
        let ms = |ns: u64| ns as f64 / 1e6;
        (!h.is_empty()).then(|| Latency {
            count: h.len(),
            min_ms: ms(h.min()),
            mean_ms: h.mean() / 1e6,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p99_9_ms: ms(h.value_at_quantile(0.999)),
            p99_99_ms: ms(h.value_at_quantile(0.9999)),
            max_ms: ms(h.max()),
        })
    }
}

/// Broker resource use during the measured window (`--broker-pid`).
#[derive(Debug, Clone, Serialize)]
pub struct BrokerUsage {
    pub pid: u32,
    /// CPU seconds (user + system) used in the measured window.
    pub cpu_s: f64,
    /// CPU microseconds per delivered message.
    pub cpu_us_per_msg: Option<f64>,
    /// Resident memory at the end of the window, MiB.
    pub rss_mib: f64,
}

/// connect-storm figures.
#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    pub attempts: u64,
    pub connected: u64,
    pub failed: u64,
    /// Successful connects per second in the measured window.
    pub connects_per_s: f64,
}

/// idle figures.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    pub requested: usize,
    pub held: u64,
    pub failed: u64,
    /// Connections that dropped while held.
    pub dropped: u64,
    pub procs: usize,
    pub connect_s: f64,
    pub rss_before_mib: Option<f64>,
    pub rss_held_mib: Option<f64>,
    /// (RSS held - RSS before) / connections held.
    pub rss_per_conn_kib: Option<f64>,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub broker: String,
    pub mqtt_version: u8,
    pub qos: u8,
    pub payload_bytes: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub connections: usize,
    pub workers: usize,
    /// Target messages/s (connects/s for connect-storm).
    pub target_rate: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Messages (or connects) due in the measured window by the schedule.
    pub scheduled: u64,
    /// Messages sent with a due time in the measured window. Fewer than
    /// `scheduled` means the publishers fell behind (a full inflight window
    /// or a broker that stopped reading): those messages have no latency
    /// sample, so read the percentiles with that in mind.
    pub sent: u64,
    pub sent_per_s: f64,
    /// Deliveries of those messages.
    pub delivered: u64,
    pub delivered_per_s: f64,
    /// Deliveries expected over the whole run (warm-up included) and the
    /// ones that had not arrived when the run ended, by sequence number.
    pub expected: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    /// Sequence numbers skipped on purpose (`--drop-every`).
    pub dropped_by_test: u64,
    /// QoS 1/2: flows the broker completed (PUBACK/PUBCOMP), whole run.
    pub acked: u64,
    /// QoS 1/2: deliveries of acknowledged messages that never arrived.
    pub lost_acked: u64,
    /// QoS 1/2: PUBLISH -> PUBACK/PUBCOMP at the publishers, whole run.
    pub ack_latency: Option<Latency>,
    pub failed_connections: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// End-to-end latency (CONNECT->CONNACK for connect-storm).
    pub latency: Option<Latency>,
    pub broker_usage: Option<BrokerUsage>,
    /// The broker's own latency in the window (`--broker-metrics`).
    pub broker_latency: Option<crate::broker_metrics::BrokerLatency>,
    pub storm: Option<StormReport>,
    pub idle: Option<IdleReport>,
    /// The merged latency histogram (nanoseconds), for .hgrm files and charts.
    #[serde(skip)]
    pub histogram: Option<Histogram<u64>>,
}

/// One metric line of a table.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: &'static str,
    pub value: f64,
    pub unit: &'static str,
}

impl Report {
    /// The metrics worth printing for this report's scenario.
    pub fn rows(&self) -> Vec<Row> {
        let row = |name, value, unit| Row { name, value, unit };
        let mut rows = Vec::new();
        if let Some(idle) = &self.idle {
            rows.push(row("connections held", idle.held as f64, ""));
            rows.push(row("failed", idle.failed as f64, ""));
            rows.push(row("dropped while held", idle.dropped as f64, ""));
            rows.push(row("connect time", idle.connect_s, "s"));
            rows.extend(idle.rss_held_mib.map(|v| row("broker RSS", v, "MiB")));
            rows.extend(
                idle.rss_per_conn_kib
                    .map(|v| row("RSS / connection", v, "KiB")),
            );
            return rows;
        }
        if let Some(s) = &self.storm {
            rows.push(row("connects", s.connects_per_s, "/s"));
            rows.push(row("connected", s.connected as f64, ""));
            rows.push(row("failed", s.failed as f64, ""));
        } else {
            rows.push(row("sent", self.sent_per_s, "msg/s"));
            if self.scheduled > self.sent {
                rows.push(row(
                    "not sent (behind)",
                    (self.scheduled - self.sent) as f64,
                    "",
                ));
            }
            rows.push(row("delivered", self.delivered_per_s, "msg/s"));
            rows.push(row("lost", self.lost as f64, ""));
            if self.qos > 0 {
                rows.push(row("acked", self.acked as f64, ""));
                rows.push(row("lost after ack", self.lost_acked as f64, ""));
            }
            rows.push(row("duplicates", self.duplicates as f64, ""));
            rows.push(row("out of order", self.out_of_order as f64, ""));
        }
        if let Some(l) = &self.latency {
            for (name, v) in [
                ("latency p50", l.p50_ms),
                ("latency p90", l.p90_ms),
                ("latency p99", l.p99_ms),
                ("latency p99.9", l.p99_9_ms),
                ("latency p99.99", l.p99_99_ms),
                ("latency max", l.max_ms),
            ] {
                rows.push(row(name, v, "ms"));
            }
        }
        if let Some(l) = &self.ack_latency {
            let names = ["PUBACK p50", "PUBACK p99", "PUBACK p99.9", "PUBACK max"];
            let values = [l.p50_ms, l.p99_ms, l.p99_9_ms, l.max_ms];
            rows.extend(names.into_iter().zip(values).map(|(n, v)| row(n, v, "ms")));
        }
        if let Some(d) = self
            .broker_latency
            .as_ref()
            .and_then(|b| b.delivery.as_ref())
        {
            for (name, v) in [
                ("in broker p50", d.p50_ms),
                ("in broker p90", d.p90_ms),
                ("in broker p99", d.p99_ms),
                ("in broker p99.9", d.p99_9_ms),
            ] {
                rows.push(row(name, v, "ms"));
            }
        }
        if let Some(b) = &self.broker_latency {
            rows.extend(b.hop.as_ref().map(|h| row("mesh hop p99", h.p99_ms, "ms")));
            rows.extend(
                b.turn
                    .as_ref()
                    .map(|t| row("loop turn p99", t.p99_ms, "ms")),
            );
        }
        if let Some(b) = &self.broker_usage {
            rows.extend(b.cpu_us_per_msg.map(|v| row("broker CPU / msg", v, "us")));
            rows.push(row("broker RSS", b.rss_mib, "MiB"));
        }
        rows.push(row(
            "errors",
            (self.errors + self.failed_connections) as f64,
            "",
        ));
        rows
    }

    /// One line describing the run's settings.
    pub fn headline(&self) -> String {
        let head = format!(
            "{} against {}: MQTT {}",
            self.scenario,
            self.broker,
            version_name(self.mqtt_version)
        );
        if let Some(idle) = &self.idle {
            return format!(
                "{head}, {} connections over {} process(es), held {}s",
                idle.requested, idle.procs, self.duration_s
            );
        }
        let timing = format!("{}s warm-up + {}s measured", self.warmup_s, self.duration_s);
        if self.storm.is_some() {
            return format!(
                "{head}, target {} connects/s, {} workers, {timing}",
                self.target_rate, self.workers
            );
        }
        format!(
            "{head}, {} pub -> {} sub ({} workers), QoS {}, {} B payload, target {} msg/s, {timing}",
            self.publishers, self.subscribers, self.workers, self.qos, self.payload_bytes, self.target_rate,
        )
    }

    /// The summary table.
    pub fn table(&self) -> String {
        let mut out = format!("{}\n", self.headline());
        for r in self.rows() {
            out.push_str(&format!(
                "  {:<20} {:>14} {}\n",
                r.name,
                fmt_value(r.value),
                r.unit
            ));
        }
        if self.lost + self.duplicates > 0 || self.dropped_by_test > 0 {
            out.push_str(&format!(
                "  ({} deliveries expected by sequence number, {} skipped on purpose)\n",
                self.expected, self.dropped_by_test
            ));
        }
        for e in &self.error_samples {
            out.push_str(&format!("  error: {e}\n"));
        }
        out
    }
}

/// `--mqtt-version` as people write it.
pub fn version_name(v: u8) -> &'static str {
    if v == 5 {
        "5.0"
    } else {
        "3.1.1"
    }
}

/// A number with sensible precision for a table.
pub fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}
