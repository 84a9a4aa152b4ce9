//! From parsed options to runs: builds the [`RunSpec`] and [`Plan`] of a
//! scenario, resolves cores and the broker address, and runs it (once, or
//! as a saturation search).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shardmq::protocol::QoS;
use shardmq::runtime::thread::available_cores;
use shardmq::runtime::{client_config, TlsClientConfig, TlsClientOptions};

use crate::cli::{ConnArgs, CoreSpec, Scenario, TimeArgs, TrafficArgs, TrafficRun};
use crate::error::{LoadError, Result};
use crate::outage::OutageReport;
use crate::payload::HEADER_LEN;
use crate::plan::{protocol_version, Plan, RunSpec};
use crate::report::Report;
use crate::saturate::{self, Saturation};
use crate::traffic::{self, RunOpts};

/// What a scenario run produced.
pub enum Outcome {
    Run(Box<Report>),
    Saturation(Saturation),
    /// `bridge --kill-upstream`.
    Outage(OutageReport),
}

/// A traffic run ready to start: its settings, checked, and where it runs.
pub struct Job {
    pub spec: RunSpec,
    pub cores: Vec<Option<usize>>,
    pub opts: RunOpts,
}

impl Scenario {
    /// Connection options of any scenario.
    pub fn conn(&self) -> &ConnArgs {
        match self {
            Scenario::Fanout(a) => &a.run.conn,
            Scenario::Fanin(a) => &a.run.conn,
            Scenario::Pairs(a) => &a.run.conn,
            Scenario::Bridge(a) => &a.run.conn,
            Scenario::Idle(a) => &a.conn,
            Scenario::ConnectStorm(a) => &a.conn,
        }
    }

    /// Mutable connection options (compare points them at each broker).
    pub fn conn_mut(&mut self) -> &mut ConnArgs {
        match self {
            Scenario::Fanout(a) => &mut a.run.conn,
            Scenario::Fanin(a) => &mut a.run.conn,
            Scenario::Pairs(a) => &mut a.run.conn,
            Scenario::Bridge(a) => &mut a.run.conn,
            Scenario::Idle(a) => &mut a.conn,
            Scenario::ConnectStorm(a) => &mut a.conn,
        }
    }

    /// Traffic options, for the scenarios that publish.
    pub fn traffic(&self) -> Option<&TrafficArgs> {
        match self {
            Scenario::Fanout(a) => Some(&a.run.traffic),
            Scenario::Fanin(a) => Some(&a.run.traffic),
            Scenario::Pairs(a) => Some(&a.run.traffic),
            Scenario::Bridge(a) => Some(&a.run.traffic),
            Scenario::Idle(_) | Scenario::ConnectStorm(_) => None,
        }
    }

    /// The subcommand name.
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Fanout(_) => "fanout",
            Scenario::Fanin(_) => "fanin",
            Scenario::Pairs(_) => "pairs",
            Scenario::Bridge(_) => "bridge",
            Scenario::Idle(_) => "idle",
            Scenario::ConnectStorm(_) => "connect-storm",
        }
    }
}

/// Runs `scenario`, naming the broker `label` in the report.
pub fn run(scenario: &Scenario, label: &str) -> Result<Outcome> {
    let tag = run_tag();
    let (plan, run) = match scenario {
        Scenario::Fanout(a) => (Plan::fanout(a.publishers, a.subscribers, &tag), &a.run),
        Scenario::Fanin(a) => {
            let shared = a.shared.as_deref();
            (
                Plan::fanin(a.publishers, a.subscribers, shared, &tag),
                &a.run,
            )
        }
        Scenario::Pairs(a) => (Plan::pairs(a.pairs, &tag), &a.run),
        Scenario::Bridge(a) => return crate::bridge::run(a, label, tag),
        Scenario::Idle(a) => return crate::idle::run(a, label).map(|r| Outcome::Run(Box::new(r))),
        Scenario::ConnectStorm(a) => return storm(a, label, tag),
    };
    let job = prepare(&plan, run, label, tag)?;
    execute(&plan, &run.traffic, job)
}

/// Checks a traffic scenario's plan and options and resolves them.
pub fn prepare(plan: &Plan, run: &TrafficRun, label: &str, tag: String) -> Result<Job> {
    let (traffic, time, conn) = (&run.traffic, &run.time, &run.conn);
    if plan.publishers == 0 || plan.subscribers == 0 {
        return Err(LoadError::Usage(format!(
            "{}: needs at least one publisher and one subscriber",
            plan.scenario
        )));
    }
    let mut spec = spec(conn, Some(time), tag)?;
    apply_traffic(&mut spec, traffic, plan.publishers)?;
    Ok(Job {
        spec,
        cores: cores(conn.cores.as_ref())?,
        opts: opts(conn, time, label),
    })
}

/// Runs `job` once, or as a saturation search under `--saturate`.
pub fn execute(plan: &Plan, traffic: &TrafficArgs, job: Job) -> Result<Outcome> {
    if traffic.saturate {
        return saturate::run(&job.spec, plan, &job.cores, &job.opts, traffic)
            .map(Outcome::Saturation);
    }
    traffic::measure(job.spec, plan, &job.cores, &job.opts).map(|r| Outcome::Run(Box::new(r)))
}

fn storm(a: &crate::cli::StormArgs, label: &str, tag: String) -> Result<Outcome> {
    if a.rate <= 0.0 || a.concurrency == 0 {
        return Err(LoadError::Usage(
            "connect-storm: --rate and --concurrency must be positive".into(),
        ));
    }
    let mut spec = spec(&a.conn, Some(&a.time), tag)?;
    spec.rate = a.rate;
    spec.storm_concurrency = a.concurrency;
    let cores = cores(a.conn.cores.as_ref())?;
    let plan = Plan::storm(cores.len());
    traffic::measure(spec, &plan, &cores, &opts(&a.conn, &a.time, label))
        .map(|r| Outcome::Run(Box::new(r)))
}

fn opts(conn: &ConnArgs, time: &TimeArgs, label: &str) -> RunOpts {
    RunOpts {
        grace: time.grace,
        broker_pid: conn.broker_pid,
        broker_metrics: conn.broker_metrics.clone(),
        broker_label: label.to_string(),
        mqtt_version: conn.mqtt_version,
    }
}

/// Worker settings from connection (and timing) options; traffic settings
/// at their idle defaults.
pub fn spec(conn: &ConnArgs, time: Option<&TimeArgs>, tag: String) -> Result<RunSpec> {
    Ok(RunSpec {
        broker: resolve(&conn.host)?,
        upstream: None,
        version: protocol_version(conn.mqtt_version),
        qos: QoS::AtMostOnce,
        payload: HEADER_LEN,
        inflight: 1,
        keep_alive: conn.keepalive,
        connect_timeout: conn.connect_timeout.max(Duration::from_millis(100)),
        warmup: time.map_or(Duration::ZERO, |t| t.warmup),
        duration: time.map_or(Duration::ZERO, |t| t.duration),
        rate: 0.0,
        publishers: 0,
        drop_every: None,
        no_backlog: false,
        sources: conn.source.clone(),
        storm_concurrency: 1,
        tag,
        persistent: conn.persistent_sessions,
        tls: tls(conn)?,
    })
}

/// The TLS client configuration `--cafile` (with `--certfile` and
/// `--keyfile`) asks for, if any.
fn tls(conn: &ConnArgs) -> Result<Option<Arc<TlsClientConfig>>> {
    let Some(cafile) = conn.cafile.as_deref() else {
        return Ok(None);
    };
    let opts = TlsClientOptions {
        cafile: Some(cafile),
        certfile: conn.certfile.as_deref(),
        keyfile: conn.keyfile.as_deref(),
        ..TlsClientOptions::default()
    };
    // The settings are the bridge's: name the harness's options instead.
    let config = client_config(&opts)
        .map_err(|e| LoadError::Usage(e.to_string().replace("bridge_", "--")))?;
    if !conn.tls_full_handshakes {
        return Ok(Some(config));
    }
    let mut config = (*config).clone();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Some(Arc::new(config)))
}

fn apply_traffic(spec: &mut RunSpec, t: &TrafficArgs, publishers: usize) -> Result<()> {
    if t.payload < HEADER_LEN {
        return Err(LoadError::Usage(format!(
            "--payload {} is too small: the harness needs {HEADER_LEN} bytes for its timestamp header",
            t.payload
        )));
    }
    if !(t.rate > 0.0 && t.rate.is_finite()) {
        return Err(LoadError::Usage(format!(
            "--rate {} must be a positive number of messages/s",
            t.rate
        )));
    }
    if spec.duration.is_zero() {
        return Err(LoadError::Usage(
            "--duration must be longer than zero".into(),
        ));
    }
    spec.qos = QoS::from_u8(t.qos).unwrap_or(QoS::AtMostOnce);
    spec.payload = t.payload;
    spec.inflight = t.inflight;
    spec.rate = t.rate;
    spec.publishers = publishers;
    spec.drop_every = t.drop_every;
    spec.no_backlog = t.no_backlog;
    Ok(())
}

/// Resolves a broker address (`--host`, `--edge`, `--upstream`).
pub fn resolve(host: &str) -> Result<SocketAddr> {
    let mut addrs = host.to_socket_addrs().map_err(|e| {
        LoadError::Usage(format!(
            "cannot resolve the broker address {host:?} (expected host:port): {e}"
        ))
    })?;
    addrs.next().ok_or_else(|| {
        LoadError::Usage(format!(
            "the broker address {host:?} resolves to no address"
        ))
    })
}

/// The worker cores: pinned to each allowed core (or those asked for);
/// one unpinned worker when affinity is unknown.
pub fn cores(spec: Option<&CoreSpec>) -> Result<Vec<Option<usize>>> {
    let available = available_cores();
    if available.is_empty() {
        return Ok(vec![None]);
    }
    let chosen = match spec {
        Some(s) => s.resolve(&available).map_err(LoadError::Usage)?,
        None => available,
    };
    Ok(chosen.into_iter().map(Some).collect())
}

/// A tag unique to this run (time and pid), for client ids and topics.
pub fn run_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{:x}{:x}", std::process::id(), nanos & 0xff_ffff_ffff)
}
