//! HdrHistogram's percentile-distribution text format (`.hgrm`), the one
//! `outputPercentileDistribution` writes and the HdrHistogram plotters read:
//! `Value Percentile TotalCount 1/(1-Percentile)` rows, then a `#[Mean ...]`
//! footer. Values are written in milliseconds (histograms hold nanoseconds).

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;

/// Nanoseconds per output unit (milliseconds).
pub const VALUE_SCALE: f64 = 1e6;
/// Reporting ticks per half distance to 100%, as HdrHistogram's default.
const TICKS_PER_HALF: u32 = 5;

/// Renders `h` (nanoseconds) in the percentile-distribution format.
pub fn render(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / VALUE_SCALE;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    out,
                    "{value:>12.3} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(out, "{value:>12.3} {q:>2.12} {total:>10}");
            }
        }
    }
    let mean = if h.is_empty() {
        0.0
    } else {
        h.mean() / VALUE_SCALE
    };
    let stdev = if h.is_empty() {
        0.0
    } else {
        h.stdev() / VALUE_SCALE
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:>12.3}, StdDeviation   = {stdev:>12.3}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / VALUE_SCALE,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets(h)
    );
    out
}

/// HdrHistogram's sub-bucket count for the histogram's precision.
fn sub_buckets(h: &Histogram<u64>) -> u64 {
    let largest = 2 * 10u64.pow(u32::from(h.sigfig()));
    largest.next_power_of_two()
}

/// Writes `h` to `dir/name.hgrm`, creating `dir`; returns the path.
pub fn write(dir: &Path, name: &str, h: &Histogram<u64>) -> std::io::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.hgrm"));
    std::fs::write(&path, render(h))?;
    Ok(path)
}

/// One data row of a percentile file.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub value: f64,
    pub percentile: f64,
    pub total_count: u64,
}

#[cfg(test)]
/// Reads the data rows of a percentile file (header and footer skipped);
/// an error names the first line that is not a row.
pub fn parse(text: &str) -> Result<Vec<Point>, String> {
    let mut points = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("Value") {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        let bad = || format!("line {}: not a percentile row: {line:?}", i + 1);
        if cols.len() < 3 {
            return Err(bad());
        }
        points.push(Point {
            value: cols[0].parse().map_err(|_| bad())?,
            percentile: cols[1].parse().map_err(|_| bad())?,
            total_count: cols[2].parse().map_err(|_| bad())?,
        });
    }
    Ok(points)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_and_parse() {
        let mut h = crate::stats::new_histogram();
        for i in 1..=10_000u64 {
            h.record(i * 1000).unwrap();
        }
        let text = render(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        assert!(text.contains("#[Mean    =        5.0"), "{text}");
        assert!(text.contains("Total count    =        10000]"));
        let points = parse(&text).unwrap();
        let last = points.last().unwrap();
        assert_eq!((last.percentile, last.total_count), (1.0, 10_000));
        assert!((last.value - 10.0).abs() < 0.02);
        assert!(points
            .windows(2)
            .all(|w| w[0].percentile <= w[1].percentile));
        assert!(parse("1.0 garbage\n").is_err());
    }
}
