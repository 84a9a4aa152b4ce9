//! `compare`: the same scenario against several brokers, one after another
//! under identical settings, printed side by side with ratios against the
//! first broker, plus one SVG overlaying their latency percentile curves.
//!
//! Brokers given as `NAME=cmd:...` are started here ([`BrokerProc`]),
//! pinned to `--broker-cores`, measured with `--broker-pid` set to them, and
//! stopped before the next one starts. A broker whose run fails gets an
//! error column; the others still run.

use serde::Serialize;

use crate::app::{emit, write_hgrm};
use crate::broker_proc::BrokerProc;
use crate::cli::{BrokerTarget, CompareArgs, Scenario};
use crate::error::{LoadError, Result};
use crate::report::{fmt_value, Report, Row};
use crate::scenario::{self, Outcome};

/// One broker's result.
#[derive(Debug, Serialize)]
pub struct Entry {
    pub name: String,
    pub address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Runs the comparison and prints it.
pub fn run(args: &CompareArgs) -> Result<()> {
    check(args)?;
    let mut entries = Vec::with_capacity(args.brokers.len());
    for (i, broker) in args.brokers.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(args.settle);
        }
        entries.push(run_one(args, &broker.name, &broker.target));
    }
    let json = args.scenario.conn().json;
    let series: Vec<(String, &hdrhistogram::Histogram<u64>)> = entries
        .iter()
        .filter_map(|e| Some((e.name.clone(), e.report.as_ref()?.histogram.as_ref()?)))
        .collect();
    if !series.is_empty() {
        let title = format!("{} latency by percentile", args.scenario.name());
        crate::chart::write(&args.svg, &title, &series).map_err(LoadError::Run)?;
        if !json {
            eprintln!("wrote {}", args.svg.display());
        }
    }
    emit(json, &entries, || table(&entries))
}

fn check(args: &CompareArgs) -> Result<()> {
    if args.scenario.traffic().is_some_and(|t| t.saturate) {
        return Err(LoadError::Usage(
            "compare does not combine with --saturate: run --saturate per broker".into(),
        ));
    }
    if matches!(&args.scenario, Scenario::Bridge(b) if b.outage.kill_upstream.is_some()) {
        return Err(LoadError::Usage(
            "compare does not combine with --kill-upstream: run it per edge broker (loadtest/bridge.sh does)".into(),
        ));
    }
    let mut names: Vec<&str> = args.brokers.iter().map(|b| b.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(LoadError::Usage(
            "compare: broker names must be unique".into(),
        ));
    }
    Ok(())
}

/// Starts (if needed) and measures one broker.
fn run_one(args: &CompareArgs, name: &str, target: &BrokerTarget) -> Entry {
    let mut sc = args.scenario.clone();
    if let Some(cores) = &args.load_cores {
        sc.conn_mut().cores = Some(cores.clone());
    }
    let mut entry = Entry {
        name: name.to_string(),
        address: String::new(),
        report: None,
        error: None,
    };
    let started = match target {
        BrokerTarget::Address(addr) => {
            sc.conn_mut().host = addr.clone();
            sc.conn_mut().broker_pid = None;
            // An address names no metrics endpoint (`--broker-metrics`
            // would be every broker's): start it with `{metrics_conf}`.
            sc.conn_mut().broker_metrics = None;
            Ok(None)
        }
        BrokerTarget::Command(cmd) => {
            let cores = args.broker_cores.as_ref().map(|c| c.ids());
            BrokerProc::start(name, cmd, cores.as_deref()).map(Some)
        }
    };
    let guard = match started {
        Ok(g) => g,
        Err(e) => {
            entry.error = Some(e.to_string());
            return entry;
        }
    };
    if let Some(g) = &guard {
        sc.conn_mut().host = g.addr();
        sc.conn_mut().broker_pid = Some(g.pid());
        sc.conn_mut().broker_metrics = g.metrics_url();
    }
    entry.address = sc.conn().host.clone();
    if !sc.conn().json {
        eprintln!("== {name} ({})", entry.address);
    }
    match scenario::run(&sc, name) {
        Ok(Outcome::Run(r)) => {
            if let Err(e) = write_hgrm(sc.conn(), &format!("{name}-{}", sc.name()), &r) {
                entry.error = Some(e.to_string());
            }
            entry.report = Some(*r);
        }
        Ok(Outcome::Saturation(_) | Outcome::Outage(_)) => {
            entry.error = Some("unexpected saturation or reconnect result".into())
        }
        Err(e) => entry.error = Some(e.to_string()),
    }
    drop(guard);
    entry
}

/// The side-by-side table: one row per metric, one column per broker,
/// ratios against the first broker.
pub fn table(entries: &[Entry]) -> String {
    let mut out = String::new();
    if let Some(r) = entries.iter().find_map(|e| e.report.as_ref()) {
        out.push_str(&format!(
            "{}\n",
            r.headline()
                .replacen(&format!(" against {}", r.broker), "", 1)
        ));
    }
    let width = entries
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(0)
        .max(22);
    out.push_str(&format!("  {:<20}", "metric"));
    for e in entries {
        out.push_str(&format!(" {:>width$}", e.name));
    }
    out.push('\n');
    // Every report's rows, in order of first appearance: a broker that
    // exposes metrics the others do not (`{metrics_conf}`) adds rows.
    let mut rows: Vec<Row> = Vec::new();
    for r in entries.iter().filter_map(|e| e.report.as_ref()) {
        for row in r.rows() {
            if !rows.iter().any(|x| x.name == row.name) {
                rows.push(row);
            }
        }
    }
    let value_of = |e: &Entry, name: &str| {
        e.report
            .as_ref()
            .and_then(|r| r.rows().into_iter().find(|x| x.name == name))
            .map(|x| x.value)
    };
    for row in &rows {
        out.push_str(&format!(
            "  {:<20}",
            format!("{} {}", row.name, row.unit).trim_end()
        ));
        let base = entries.first().and_then(|e| value_of(e, row.name));
        for (j, e) in entries.iter().enumerate() {
            let cell = match (value_of(e, row.name), base) {
                (Some(v), Some(b)) if j > 0 && b != 0.0 => {
                    format!("{} (x{:.2})", fmt_value(v), v / b)
                }
                (Some(v), _) => fmt_value(v),
                (None, _) => "-".into(),
            };
            out.push_str(&format!(" {cell:>width$}"));
        }
        out.push('\n');
    }
    for e in entries {
        if let Some(err) = &e.error {
            out.push_str(&format!("  {}: error: {err}\n", e.name));
        }
        for s in e.report.iter().flat_map(|r| &r.error_samples) {
            out.push_str(&format!("  {}: error: {s}\n", e.name));
        }
    }
    out
}
