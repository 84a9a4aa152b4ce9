//! Saturation search: run the scenario at increasing rates until p99
//! exceeds the bound or delivery falls behind, and report the highest rate
//! that passed. Each step is a full run (fresh connections, warm-up).

use serde::Serialize;

use crate::cli::TrafficArgs;
use crate::error::{LoadError, Result};
use crate::plan::{Plan, RunSpec};
use crate::rate::saturation_steps;
use crate::report::{fmt_value, Report};
use crate::traffic::{self, RunOpts};

/// A step passes only if at least this share of the scheduled sends and of
/// the expected deliveries happened in the window.
const KEEP_UP: f64 = 0.99;

/// One rate tried.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub rate: f64,
    pub passed: bool,
    /// "ok" or why the step failed.
    pub verdict: String,
    pub report: Report,
}

/// The search's result.
#[derive(Debug, Clone, Serialize)]
pub struct Saturation {
    pub p99_bound_ms: f64,
    /// Highest rate that passed; `None` if even the first failed.
    pub max_sustained_rate: Option<f64>,
    pub steps: Vec<Step>,
}

/// Runs the search from `t.rate` upwards.
pub fn run(
    spec: &RunSpec,
    plan: &Plan,
    cores: &[Option<usize>],
    opts: &RunOpts,
    t: &TrafficArgs,
) -> Result<Saturation> {
    if t.step_factor <= 1.0 || t.max_steps == 0 || t.p99_bound_ms <= 0.0 {
        return Err(LoadError::Usage(
            "--saturate needs --step-factor > 1, --max-steps >= 1 and a positive --p99-bound-ms"
                .into(),
        ));
    }
    let mut out = Saturation {
        p99_bound_ms: t.p99_bound_ms,
        max_sustained_rate: None,
        steps: Vec::new(),
    };
    for rate in saturation_steps(t.rate, t.step_factor, t.max_steps) {
        let mut step_spec = spec.clone();
        step_spec.rate = rate;
        step_spec.tag = crate::scenario::run_tag();
        let report = traffic::measure(step_spec, plan, cores, opts)?;
        let verdict = judge(&report, plan, t.p99_bound_ms);
        let passed = verdict.is_none();
        if passed {
            out.max_sustained_rate = Some(rate);
        }
        out.steps.push(Step {
            rate,
            passed,
            verdict: verdict.unwrap_or_else(|| "ok".into()),
            report,
        });
        if !passed {
            break;
        }
    }
    Ok(out)
}

/// Why a step failed, or `None` if it passed.
fn judge(r: &Report, plan: &Plan, bound_ms: f64) -> Option<String> {
    let p99 = r.latency.as_ref().map_or(f64::INFINITY, |l| l.p99_ms);
    if p99 > bound_ms {
        return Some(format!("p99 {p99:.3} ms > {bound_ms} ms"));
    }
    let scheduled = r.target_rate * r.duration_s;
    if (r.sent as f64) < KEEP_UP * scheduled {
        return Some(format!("sent {} of {:.0} scheduled", r.sent, scheduled));
    }
    let expected = r.sent * plan.deliveries_per_message();
    if (r.delivered as f64) < KEEP_UP * expected as f64 {
        return Some(format!("delivered {} of {expected}", r.delivered));
    }
    if r.lost > 0 && r.qos > 0 {
        return Some(format!("{} lost at QoS {}", r.lost, r.qos));
    }
    None
}

impl Saturation {
    /// The step table and the verdict.
    pub fn table(&self) -> String {
        let mut out = match self.steps.first() {
            Some(s) => format!("saturation search, {}\n", s.report.headline()),
            None => String::new(),
        };
        out.push_str(&format!(
            "  {:>12} {:>12} {:>14} {:>10} {:>8}  verdict\n",
            "rate/s", "sent/s", "delivered/s", "p99 ms", "lost"
        ));
        for s in &self.steps {
            let p99 = s
                .report
                .latency
                .as_ref()
                .map_or("-".into(), |l| fmt_value(l.p99_ms));
            out.push_str(&format!(
                "  {:>12} {:>12} {:>14} {:>10} {:>8}  {}\n",
                fmt_value(s.rate.round()),
                fmt_value(s.report.sent_per_s.round()),
                fmt_value(s.report.delivered_per_s.round()),
                p99,
                s.report.lost,
                s.verdict
            ));
        }
        match self.max_sustained_rate {
            Some(r) => out.push_str(&format!(
                "max sustained rate: {} msg/s (p99 <= {} ms)\n",
                r.round(),
                self.p99_bound_ms
            )),
            None => out.push_str(&format!(
                "no rate tried met p99 <= {} ms; lower --rate\n",
                self.p99_bound_ms
            )),
        }
        out
    }
}
