//! One measured run of a traffic scenario (fanout, fanin, pairs) or of
//! connect-storm, driven from the controller thread:
//! connect everything -> set the start time -> warm-up -> measured window
//! (broker CPU sampled at both ends) -> drain until every expected delivery
//! arrived, nothing arrived for [`QUIET`], or the hard deadline
//! (window end + grace) -> stop, join, merge, report.

use std::sync::Arc;
use std::time::Duration;

use crate::broker_metrics;
use crate::clock::{now_ns, ns};
use crate::control::Snapshot;
use crate::error::{LoadError, Result};
use crate::fleet::{Fleet, POLL};
use crate::plan::{Plan, RunSpec};
use crate::procstat;
use crate::progress::Progress;
use crate::rate::Schedule;
use crate::report::{BrokerUsage, Latency, Report, StormReport};
use crate::stats::{self, Totals};

/// After the window, stop draining once nothing arrived for this long.
pub const QUIET: Duration = Duration::from_secs(2);
/// Time from "all connected" to the first scheduled send.
pub const START_DELAY: Duration = Duration::from_millis(20);

/// Run-level options that are not worker settings.
#[derive(Debug, Clone)]
pub struct RunOpts {
    /// Extra time after the window for in-flight messages.
    pub grace: Duration,
    pub broker_pid: Option<u32>,
    /// The broker's metrics endpoint (`--broker-metrics`).
    pub broker_metrics: Option<String>,
    /// How the broker is named in the report.
    pub broker_label: String,
    pub mqtt_version: u8,
}

/// Runs `plan` once and reports.
pub fn measure(
    spec: RunSpec,
    plan: &Plan,
    cores: &[Option<usize>],
    opts: &RunOpts,
) -> Result<Report> {
    let spec = Arc::new(spec);
    let mut progress = Progress::new();
    let fleet = connect_all(&spec, plan, cores, &mut progress)?;
    let start = now_ns() + ns(START_DELAY);
    fleet.start_at(start);
    let mut window = broker_metrics::Window::new(opts.broker_metrics.as_deref());
    let usage = watch_run(&fleet, &spec, plan, start, opts, &mut window, &mut progress)?;
    let (from, to) = spec.window(start);
    let scheduled = scheduled_between(&spec, plan, start, from, to);
    progress.finish();
    let final_snap = fleet.control.snapshot();
    let samples = fleet.control.error_samples();
    let workers = fleet.workers();
    let totals = stats::merge(fleet.finish()?, plan);
    let mut report = build_report(&spec, plan, opts, &totals, workers, usage);
    report.scheduled = scheduled;
    report.broker_latency = window.latency();
    report.errors = final_snap.errors;
    report.failed_connections = final_snap.failed;
    report.error_samples = samples;
    Ok(report)
}

/// Starts the workers of `plan` and waits until every connection is
/// established (and subscribed); an error, with the first connection
/// errors, if any could not be.
pub fn connect_all(
    spec: &Arc<RunSpec>,
    plan: &Plan,
    cores: &[Option<usize>],
    progress: &mut Progress,
) -> Result<Fleet> {
    let fleet = Fleet::launch(spec.clone(), plan, cores)?;
    let snap = fleet.wait_ready(spec.connect_timeout + Duration::from_secs(1), progress);
    if snap.ready >= fleet.connections as u64 {
        return Ok(fleet);
    }
    progress.finish();
    let samples = fleet.control.error_samples();
    let total = fleet.connections;
    fleet.finish()?;
    let to = match spec.upstream {
        Some(upstream) => format!("{} (subscribers: {upstream})", spec.broker),
        None => spec.broker.to_string(),
    };
    Err(LoadError::Run(format!(
        "only {} of {total} connections to {to} were established ({} failed; first errors: {}). \
         Check the broker address, that the broker runs and accepts that many clients, and --connect-timeout.",
        snap.ready,
        snap.failed,
        samples.join("; ")
    )))
}

/// Polls the run until it is over; samples the broker at the window's ends.
fn watch_run(
    fleet: &Fleet,
    spec: &RunSpec,
    plan: &Plan,
    start: u64,
    opts: &RunOpts,
    window: &mut broker_metrics::Window,
    progress: &mut Progress,
) -> Result<Option<BrokerUsage>> {
    let (from, to) = spec.window(start);
    let deadline = to + ns(opts.grace);
    let planned = planned_sends(spec, plan, start);
    let mut cpu_from = None;
    let mut usage = None;
    let (mut last_delivered, mut last_change) = (0, now_ns());
    loop {
        std::thread::sleep(POLL);
        let now = now_ns();
        if now >= from {
            window.opened()?;
        }
        if let (Some(pid), None, true) = (opts.broker_pid, cpu_from, now >= from) {
            cpu_from =
                Some(procstat::cpu_seconds(pid).map_err(LoadError::io("sampling broker CPU"))?);
        }
        let phase = if now < from {
            "warm-up"
        } else if now < to {
            "measuring"
        } else {
            "draining"
        };
        progress.tick(&fleet.control, phase);
        if now < to {
            continue;
        }
        window.closed()?;
        if let (Some(pid), Some(c0), None) = (opts.broker_pid, cpu_from, &usage) {
            let cpu = procstat::cpu_seconds(pid).map_err(LoadError::io("sampling broker CPU"))?;
            let rss = procstat::rss_bytes(pid).map_err(LoadError::io("sampling broker memory"))?;
            usage = Some(BrokerUsage {
                pid,
                cpu_s: cpu - c0,
                cpu_us_per_msg: None,
                rss_mib: rss as f64 / MIB,
            });
        }
        let snap = fleet.control.snapshot();
        if is_complete(&snap, plan, planned) || now >= deadline {
            return Ok(usage);
        }
        if snap.delivered != last_delivered {
            (last_delivered, last_change) = (snap.delivered, now);
        } else if now - last_change > ns(QUIET) {
            return Ok(usage);
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// Messages (or connection attempts) the schedules will send in all,
/// less the sequence numbers `--drop-every` skips.
fn planned_sends(spec: &RunSpec, plan: &Plan, start: u64) -> u64 {
    let (_, end) = spec.window(start);
    let skip = spec.drop_every.filter(|&n| n > 0 && plan.publishers > 0);
    schedules(spec, plan, start)
        .map(|s| {
            let due = s.due_by(end);
            due - skip.map_or(0, |n| due / n)
        })
        .sum()
}

/// Sends due in `[from, to)` over all schedules.
fn scheduled_between(spec: &RunSpec, plan: &Plan, start: u64, from: u64, to: u64) -> u64 {
    schedules(spec, plan, start)
        .map(|s| s.due_by(to.saturating_sub(1)) - s.due_by(from.saturating_sub(1)))
        .sum()
}

/// The schedule of every sender (publishers, or connection openers).
fn schedules<'a>(
    spec: &'a RunSpec,
    plan: &Plan,
    start: u64,
) -> impl Iterator<Item = Schedule> + 'a {
    let (_, end) = spec.window(start);
    let senders = if plan.publishers > 0 {
        plan.publishers
    } else {
        plan.roles.len()
    };
    (0..senders).map(move |i| Schedule::staggered(spec.rate, i, senders, start, end))
}

/// Everything sent and every expected delivery (or connect outcome) seen.
fn is_complete(snap: &Snapshot, plan: &Plan, planned: u64) -> bool {
    if snap.sent < planned {
        return false;
    }
    if plan.publishers == 0 {
        return snap.delivered + snap.errors >= snap.sent;
    }
    snap.delivered >= snap.sent * plan.deliveries_per_message()
}

fn build_report(
    spec: &RunSpec,
    plan: &Plan,
    opts: &RunOpts,
    t: &Totals,
    workers: usize,
    mut usage: Option<BrokerUsage>,
) -> Report {
    let secs = spec.duration.as_secs_f64().max(1e-9);
    let storm = (plan.publishers == 0).then(|| StormReport {
        attempts: t.storm.attempts,
        connected: t.storm.connected,
        failed: t.storm.failed,
        connects_per_s: t.storm.connected_measured as f64 / secs,
    });
    let handled = if storm.is_some() {
        t.storm.connected_measured
    } else {
        t.received_measured
    };
    if let Some(u) = usage.as_mut() {
        u.cpu_us_per_msg = (handled > 0).then(|| u.cpu_s * 1e6 / handled as f64);
    }
    Report {
        scenario: plan.scenario.to_string(),
        broker: opts.broker_label.clone(),
        mqtt_version: opts.mqtt_version,
        qos: spec.qos as u8,
        payload_bytes: spec.payload,
        publishers: plan.publishers,
        subscribers: plan.subscribers,
        connections: storm
            .as_ref()
            .map_or(plan.roles.len(), |s| s.attempts as usize),
        workers,
        target_rate: spec.rate,
        warmup_s: spec.warmup.as_secs_f64(),
        duration_s: spec.duration.as_secs_f64(),
        scheduled: 0,
        sent: t.sent_measured,
        sent_per_s: t.sent_measured as f64 / secs,
        delivered: t.received_measured,
        delivered_per_s: t.received_measured as f64 / secs,
        expected: t.expected,
        lost: t.lost,
        duplicates: t.duplicates,
        out_of_order: t.out_of_order,
        dropped_by_test: t.dropped_by_test,
        acked: t.acked,
        lost_acked: t.lost_acked,
        ack_latency: Latency::of(&t.ack_latency),
        failed_connections: 0,
        errors: 0,
        error_samples: Vec::new(),
        latency: Latency::of(&t.latency),
        broker_usage: usage,
        broker_latency: None,
        storm,
        idle: None,
        histogram: Some(t.latency.clone()),
    }
}
