//! The SVG of `compare`: latency percentile curves of several brokers on
//! one chart, x log-scaled like HdrHistogram's plots (0%, 90%, 99%, 99.9%...).

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

/// Right end of the x axis: 99.9999%.
const MAX_NINES: f64 = 6.0;

/// x coordinate of quantile `q` of `count` samples: the number of nines,
/// -log10(1 - q). The maximum (q = 1) goes where one sample in `count`
/// would be, as HdrHistogram's plots do.
fn nines(q: f64, count: u64) -> f64 {
    let q = q.min(1.0 - 1.0 / count.max(2) as f64);
    (-(1.0 - q).log10()).min(MAX_NINES)
}

/// Axis label for `x` nines: 0 -> "0%", 1 -> "90%", 3 -> "99.9%".
fn percentile_label(x: f64) -> String {
    let n = x.round() as i32;
    match n {
        0 => "0%".into(),
        1 => "90%".into(),
        _ => format!("99.{}%", "9".repeat(n as usize - 2)).replace("99.%", "99%"),
    }
}

/// The (nines, milliseconds) points of a nanosecond histogram.
fn curve(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_quantiles(5)
        .map(|v| {
            (
                nines(v.quantile_iterated_to(), h.len()),
                v.value_iterated_to() as f64 / 1e6,
            )
        })
        .collect()
}

/// Writes the chart of `series` (name, histogram) to `path`.
pub fn write(path: &Path, title: &str, series: &[(String, &Histogram<u64>)]) -> Result<(), String> {
    let curves: Vec<(&String, Vec<(f64, f64)>)> =
        series.iter().map(|(n, h)| (n, curve(h))).collect();
    let x_max = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.0))
        .fold(1.0f64, f64::max)
        .ceil();
    let y_max = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.1))
        .fold(0.001f64, f64::max)
        * 1.1;
    let fail = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, (name, points)) in curves.into_iter().enumerate() {
        let color = Palette99::pick(i).stroke_width(2);
        chart
            .draw_series(LineSeries::new(points, color))
            .map_err(|e| fail(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(
                    vec![(x, y), (x + 20, y)],
                    Palette99::pick(i).stroke_width(2),
                )
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_nines() {
        let labels: Vec<String> = (0..5).map(|x| percentile_label(x as f64)).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
        assert!((nines(0.999, 1_000_000) - 3.0).abs() < 1e-9);
        assert!((nines(1.0, 10_000) - 4.0).abs() < 1e-9);
        assert_eq!(nines(1.0, u64::MAX), MAX_NINES);
    }

    #[test]
    fn writes_svg() {
        let mut a = crate::stats::new_histogram();
        let mut b = crate::stats::new_histogram();
        for i in 1..1000u64 {
            a.record(i * 1000).unwrap();
            b.record(i * 2000).unwrap();
        }
        let path =
            std::env::temp_dir().join(format!("shardmq-load-chart-{}.svg", std::process::id()));
        write(&path, "test", &[("a".into(), &a), ("b".into(), &b)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(
            svg.starts_with("<svg") && svg.contains("99.9%"),
            "{}",
            &svg[..200.min(svg.len())]
        );
    }
}
