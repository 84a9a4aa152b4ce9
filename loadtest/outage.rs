//! `bridge --kill-upstream`: how long a bridge takes to deliver again after
//! its upstream broker died and came back on the same port.
//!
//! ```text
//! publishers at the edge: a fleet, open loop, for the whole measurement
//! probe subscribed at the upstream ([`Probe`]): a message crosses the bridge
//!   -> kill -9 the upstream -> its port refuses connections -> --down after the kill,
//!      restart it on its port (--restart-upstream)
//!   -> "back": the port accepts connections again (known to within 5 ms)
//!   -> the probe subscribes again; messages published before "back" that
//!      the edge kept arrive (counted), then
//!   -> the first message published after "back": the reconnect time
//! ```
//!
//! The probe subscribes a few milliseconds after "back", long before a
//! bridge reconnects (Mosquitto's waits its `restart_timeout`, 5 s by
//! default), so no new message is missed for want of a subscriber. The
//! restarted upstream is the harness's child and stops when the run ends.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::broker_proc::{BrokerProc, STARTUP};
use crate::cli::OutageArgs;
use crate::clock::{now_ns, ns};
use crate::error::{LoadError, Result};
use crate::payload::Header;
use crate::plan::{Plan, Role};
use crate::probe::Probe;
use crate::progress::Progress;
use crate::report::{fmt_value, version_name};
use crate::scenario::Job;
use crate::traffic::{connect_all, START_DELAY};

/// How long the first message may take to cross the bridge, before the kill.
const FLOW_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the killed upstream's port may go on accepting connections.
const DEATH_TIMEOUT: Duration = Duration::from_secs(5);
/// How often its port is tried meanwhile.
const DEATH_POLL: Duration = Duration::from_millis(5);

/// What the reconnect measurement saw. Durations in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct OutageReport {
    pub scenario: String,
    /// The edge broker, as the run names it.
    pub broker: String,
    pub upstream: String,
    pub mqtt_version: u8,
    pub qos: u8,
    pub publishers: usize,
    pub target_rate: f64,
    /// From the kill to the restarted upstream accepting connections.
    pub down_s: f64,
    /// From "back" to the arrival of the first message published after
    /// it: the bridge's reconnect time. `None`: none arrived within
    /// `reconnect_timeout_s`.
    pub reconnect_s: Option<f64>,
    /// From "back" to the arrival of the first message of any age.
    pub first_delivery_s: Option<f64>,
    /// Messages published before "back" that arrived after it, before the
    /// first newer one: what the edge kept for the upstream.
    pub kept_delivered: u64,
    pub reconnect_timeout_s: f64,
    /// Errors of the publishers at the edge.
    pub errors: u64,
    pub error_samples: Vec<String>,
}

/// Runs the measurement for the bridge `plan` (its publishers publish; a
/// probe takes its subscribers' place), killing `pid` and restarting the
/// upstream with `restart`.
pub fn measure(
    job: &Job,
    plan: &Plan,
    o: &OutageArgs,
    pid: u32,
    restart: &str,
) -> Result<OutageReport> {
    let pid = signalable(pid)?;
    let Some(filter) = plan.roles.iter().find_map(|r| match r {
        Role::Subscriber { filter, .. } => Some(filter.as_str()),
        _ => None,
    }) else {
        return Err(LoadError::Usage(
            "bridge --kill-upstream: needs a subscriber".into(),
        ));
    };
    let mut spec = job.spec.clone();
    spec.warmup = Duration::ZERO;
    // The schedules outlast every wait below; the fleet is stopped at the end.
    spec.duration = FLOW_TIMEOUT + DEATH_TIMEOUT + o.down + STARTUP + o.reconnect_timeout;
    let spec = Arc::new(spec);
    let upstream = spec.address(true);
    let probe = |name: &str, deadline: Instant| -> Result<Probe> {
        Probe::connect(&spec, upstream, name, deadline)
            .and_then(|mut p| p.subscribe(filter, deadline).map(|()| p))
            .map_err(|e| LoadError::Run(format!("subscribing at the upstream {upstream}: {e}")))
    };

    let mut sub = probe("outage-before", Instant::now() + spec.connect_timeout)?;
    let publishers = plan.without_subscribers();
    let fleet = connect_all(&spec, &publishers, &job.cores, &mut Progress::quiet())?;
    fleet.start_at(now_ns() + ns(START_DELAY));
    let ours = |h: &Header| (h.publisher as usize) < publishers.publishers;
    if next_ours(&mut sub, Instant::now() + FLOW_TIMEOUT, ours)?.is_none() {
        return Err(LoadError::Run(format!(
            "no message crossed the bridge to {upstream} within {FLOW_TIMEOUT:?}: nothing to interrupt"
        )));
    }
    drop(sub);

    let (restarted, back, down_s) = kill_and_restart(upstream, pid, o, restart)?;
    let deadline = Instant::now() + o.reconnect_timeout;
    let mut sub = probe("outage-after", deadline)?;
    let since_back = |at: u64| (at - back) as f64 / 1e9;
    let (mut first_any, mut reconnect, mut kept) = (None, None, 0);
    while let Some((h, at)) = next_ours(&mut sub, deadline, ours)? {
        first_any.get_or_insert(since_back(at));
        if h.intended_ns >= back {
            reconnect = Some(since_back(at));
            break;
        }
        kept += 1;
    }
    let (errors, error_samples) = (
        fleet.control.snapshot().errors,
        fleet.control.error_samples(),
    );
    fleet.finish()?;
    drop(restarted);
    Ok(OutageReport {
        scenario: "bridge-reconnect".into(),
        broker: job.opts.broker_label.clone(),
        upstream: upstream.to_string(),
        mqtt_version: job.opts.mqtt_version,
        qos: spec.qos as u8,
        publishers: publishers.publishers,
        target_rate: spec.rate,
        down_s,
        reconnect_s: reconnect,
        first_delivery_s: first_any,
        kept_delivered: kept,
        reconnect_timeout_s: o.reconnect_timeout.as_secs_f64(),
        errors,
        error_samples,
    })
}

/// Kills the upstream (`pid`), waits until its port refuses connections
/// and `--down` has passed since the kill, and restarts it on its port:
/// returns it, when it was back (clock ns) and how long it was down (s).
fn kill_and_restart(
    upstream: SocketAddr,
    pid: libc::pid_t,
    o: &OutageArgs,
    restart: &str,
) -> Result<(BrokerProc, u64, f64)> {
    let killed = Instant::now();
    // SAFETY: a plain kill(2) of a process id checked by `signalable`.
    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(LoadError::Run(format!("kill -9 {pid}: {e}")));
    }
    wait_refused(upstream, pid)?;
    std::thread::sleep(o.down.saturating_sub(killed.elapsed()));
    let restarted = BrokerProc::start_on("upstream", restart, None, upstream.port())?;
    Ok((restarted, now_ns(), killed.elapsed().as_secs_f64()))
}

/// The next message of one of our publishers by `deadline`, with its
/// arrival time; `None` at the deadline.
fn next_ours(
    sub: &mut Probe,
    deadline: Instant,
    ours: impl Fn(&Header) -> bool,
) -> Result<Option<(Header, u64)>> {
    loop {
        let publish = sub
            .next_publish(deadline)
            .map_err(|e| LoadError::Run(format!("probe subscriber: {e}")))?;
        let Some(publish) = publish else {
            return Ok(None);
        };
        let at = now_ns();
        if let Some(h) = Header::read(&publish.payload).filter(&ours) {
            return Ok(Some((h, at)));
        }
    }
}

/// `pid` as a process id that names one process (not a group, not init,
/// not this harness) which exists and may be signalled.
fn signalable(pid: u32) -> Result<libc::pid_t> {
    let usage = |why: String| Err(LoadError::Usage(format!("--kill-upstream {pid}: {why}")));
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return usage("not a process id".into());
    };
    if p <= 1 || pid == std::process::id() {
        return usage("not the upstream broker's process id".into());
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(p, 0) } != 0 {
        return usage(format!("{}", std::io::Error::last_os_error()));
    }
    Ok(p)
}

/// Waits until the killed upstream's port refuses connections.
fn wait_refused(upstream: SocketAddr, pid: libc::pid_t) -> Result<()> {
    let deadline = Instant::now() + DEATH_TIMEOUT;
    while TcpStream::connect_timeout(&upstream, DEATH_POLL * 20).is_ok() {
        if Instant::now() >= deadline {
            return Err(LoadError::Run(format!(
                "the upstream {upstream} still accepts connections {DEATH_TIMEOUT:?} after \
                 kill -9 {pid}: is {pid} the upstream broker's process id?"
            )));
        }
        std::thread::sleep(DEATH_POLL);
    }
    Ok(())
}

impl OutageReport {
    /// The summary table.
    pub fn table(&self) -> String {
        let secs = |v: Option<f64>| match v {
            Some(s) => format!("{} s", fmt_value(s)),
            None => format!("none within {} s", fmt_value(self.reconnect_timeout_s)),
        };
        let mut out = format!(
            "bridge reconnect against {}: MQTT {}, QoS {}, {} pub at {} msg/s, upstream {} killed (-9) and restarted\n",
            self.broker,
            version_name(self.mqtt_version),
            self.qos,
            self.publishers,
            self.target_rate,
            self.upstream
        );
        let rows = [
            ("upstream down", format!("{} s", fmt_value(self.down_s))),
            ("first delivery", secs(self.first_delivery_s)),
            ("kept messages", self.kept_delivered.to_string()),
            ("reconnect time", secs(self.reconnect_s)),
            ("errors", self.errors.to_string()),
        ];
        for (name, value) in rows {
            out.push_str(&format!("  {name:<20} {value:>14}\n"));
        }
        out.push_str(
            "  (after the upstream was back: first delivery of any message, and of one published after that)\n",
        );
        for e in &self.error_samples {
            out.push_str(&format!("  error: {e}\n"));
        }
        out
    }
}
