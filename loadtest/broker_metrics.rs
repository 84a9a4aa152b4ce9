//! `--broker-metrics URL`: the broker's own latency histograms (a shardmq
//! `metrics_listener`), scraped when the measured window opens and when
//! it closes; their difference gives the broker-side percentiles of the
//! window, printed next to the end-to-end ones so a user sees how much of
//! the latency is inside the broker.
//!
//! The scrape is a plain HTTP/1.1 GET over a `TcpStream` (one request,
//! `Connection: close`, bounded in time and size): the harness needs
//! nothing more, and no HTTP client crate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde::Serialize;
use shardmq::metrics::histogram::HistogramSnapshot;
use shardmq::metrics::scrape::{histogram, parse, Sample};

use crate::error::{LoadError, Result};

/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read (a 64-shard broker's is about 300 KiB).
const SCRAPE_MAX: u64 = 16 << 20;

/// The histograms, by metric name and the name the report gives them.
const HISTOGRAMS: [(&str, &str); 3] = [
    ("shardmq_publish_delivery_latency_seconds", "delivery"),
    ("shardmq_mesh_hop_latency_seconds", "hop"),
    ("shardmq_loop_turn_seconds", "turn"),
];

/// Percentiles of one broker histogram over the window, in milliseconds
/// (interpolated within the broker's buckets: a 1-2-5 series).
#[derive(Debug, Clone, Serialize)]
pub struct Quantiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p99_9_ms: f64,
}

impl Quantiles {
    fn of(h: &HistogramSnapshot) -> Option<Quantiles> {
        let ms = |q| h.quantile(q).map_or(0.0, |d| d.as_secs_f64() * 1e3);
        (h.count() > 0).then(|| Quantiles {
            count: h.count(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p99_9_ms: ms(0.999),
        })
    }
}

/// The broker-side figures of a run's measured window.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerLatency {
    /// From the read of a PUBLISH to the write that carries it.
    pub delivery: Option<Quantiles>,
    /// From the read of a PUBLISH to its take by another shard.
    pub hop: Option<Quantiles>,
    /// Event-loop turn durations.
    pub turn: Option<Quantiles>,
}

/// The window's two scrapes, taken as the run passes its ends.
#[derive(Debug, Default)]
pub struct Window {
    url: Option<String>,
    before: Option<Vec<Sample>>,
    after: Option<Vec<Sample>>,
}

impl Window {
    /// Scrapes `url` at the window's ends; nothing if `None`.
    pub fn new(url: Option<&str>) -> Window {
        Window {
            url: url.map(str::to_string),
            ..Window::default()
        }
    }

    /// The window opened: the first scrape (once).
    pub fn opened(&mut self) -> Result<()> {
        if let (Some(url), None) = (&self.url, &self.before) {
            self.before = Some(scrape(url)?);
        }
        Ok(())
    }

    /// The window closed: the second scrape (once).
    pub fn closed(&mut self) -> Result<()> {
        if let (Some(url), Some(_), None) = (&self.url, &self.before, &self.after) {
            self.after = Some(scrape(url)?);
        }
        Ok(())
    }

    /// The window's broker-side figures, once both scrapes are in.
    pub fn latency(&self) -> Option<BrokerLatency> {
        let (before, after) = (self.before.as_ref()?, self.after.as_ref()?);
        let of = |name: &str| {
            let end = histogram(after, name)?;
            let start = histogram(before, name).unwrap_or_default();
            Quantiles::of(&end.since(&start))
        };
        let [delivery, hop, turn] = HISTOGRAMS.map(|(name, _)| of(name));
        Some(BrokerLatency {
            delivery,
            hop,
            turn,
        })
    }
}

/// The samples at `url` (`http://host:port/path`).
pub fn scrape(url: &str) -> Result<Vec<Sample>> {
    let bad = |why: String| LoadError::Run(format!("--broker-metrics {url}: {why}"));
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("expected http://host:port/metrics".into()))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = crate::scenario::resolve(host)?;
    let mut s = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)
        .map_err(|e| bad(format!("cannot connect: {e} (is metrics_listener set?)")))?;
    let io = |e: std::io::Error| bad(e.to_string());
    s.set_read_timeout(Some(SCRAPE_TIMEOUT)).map_err(io)?;
    s.set_write_timeout(Some(SCRAPE_TIMEOUT)).map_err(io)?;
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    s.take(SCRAPE_MAX).read_to_string(&mut answer).map_err(io)?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("not an HTTP answer".into()))?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        return Err(bad(format!("answered {status}")));
    }
    Ok(parse(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUCKETS: &str = "\
shardmq_publish_delivery_latency_seconds_sum{shard=\"0\"} 0.0005
shardmq_publish_delivery_latency_seconds_count{shard=\"0\"} 10
shardmq_publish_delivery_latency_seconds_bucket{le=\"0.00005\",shard=\"0\"} 10
shardmq_publish_delivery_latency_seconds_bucket{le=\"+Inf\",shard=\"0\"} 10
";

    #[test]
    fn the_window_is_the_difference_of_its_two_scrapes() {
        let later = BUCKETS.replace("} 10", "} 30");
        let w = Window {
            url: None,
            before: Some(parse(BUCKETS)),
            after: Some(parse(&later)),
        };
        let l = w.latency().expect("both scrapes");
        let d = l.delivery.expect("deliveries in the window");
        assert_eq!(d.count, 20);
        assert!(d.p50_ms > 0.02 && d.p50_ms <= 0.05, "{d:?}");
        assert!(l.hop.is_none());
    }
}
