//! A small parser of the Prometheus text format: the samples of a scrape,
//! and a histogram of ours summed over shards from them. For the harness's
//! before/after scrapes (`--broker-metrics`) and for tests; label values
//! with escaped quotes are not supported (ours have none).

use super::histogram::{HistogramSnapshot, BOUNDS_NS, BUCKETS};

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

    #[test]
    fn samples_with_and_without_labels_parse_and_comments_do_not() {
        let text = "# HELP x y\n# TYPE x counter\nx_total 3\ny{a=\"1\",le=\"+Inf\"} 4.5\nbroken\n";
        let s = parse(text);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].name.as_str(), s[0].value), ("x_total", 3.0));
        assert_eq!(s[1].label("le"), Some("+Inf"));
        assert_eq!(s[1].label("a"), Some("1"));
        assert_eq!(histogram(&s, "nothing"), None);
    }
}
