//! The idle scenario: hold N connections (pinging at half the keepalive),
//! report how many were held and the broker's memory per connection.
//!
//! One process holds at most its open-files limit (less a reserve), so
//! larger N is spread over child processes: the harness re-executes itself
//! as `idle-worker`, each child prints `ready HELD FAILED` once connected
//! and holds until its stdin closes, then prints `done DROPPED`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError};

use crate::cli::{ConnArgs, IdleArgs, IdleWorkerArgs};
use crate::control::Snapshot;
use crate::error::{LoadError, Result};
use crate::fleet::{Fleet, POLL};
use crate::plan::Plan;
use crate::procstat;
use crate::progress::Progress;
use crate::report::{IdleReport, Report};
use crate::scenario;

/// File descriptors kept free for the workers' loops, stdio and the like.
const RESERVED_FDS: u64 = 512;
/// Pause between "all connected" and the memory sample, so the broker's
/// allocations for the last connections settle.
const SETTLE: Duration = Duration::from_millis(500);
const MIB: f64 = 1024.0 * 1024.0;

/// Runs the idle scenario (in this process or over children).
pub fn run(args: &IdleArgs, label: &str) -> Result<Report> {
    let limit = raise_fd_limit();
    let per_proc = limit.saturating_sub(RESERVED_FDS).max(1);
    let needed = (args.connections as u64).div_ceil(per_proc) as usize;
    let procs = args.procs.unwrap_or(needed).max(1);
    if (args.connections as u64).div_ceil(procs as u64) > per_proc {
        return Err(LoadError::Usage(format!(
            "{} connections over {procs} process(es) exceed the open-files limit of {limit} per process: \
             use --procs {needed} or more",
            args.connections
        )));
    }
    let before = broker_rss(&args.conn)?;
    let started = Instant::now();
    let held = if procs == 1 {
        hold_here(args)?
    } else {
        hold_in_children(args, procs)?
    };
    Ok(report(args, label, procs, before, held, started))
}

/// What holding produced.
struct Held {
    snap_ready: Snapshot,
    dropped: u64,
    errors: Vec<String>,
    /// When every connection was up (for the connect-time figure).
    connected_at: Instant,
    /// Broker RSS while everything was held (`--broker-pid`).
    rss_held: Option<u64>,
    workers: usize,
}

/// The broker's RSS, if its pid was given.
fn broker_rss(conn: &ConnArgs) -> Result<Option<u64>> {
    let rss = |pid| procstat::rss_bytes(pid).map_err(LoadError::io("reading broker memory"));
    conn.broker_pid.map(rss).transpose()
}

fn hold_here(args: &IdleArgs) -> Result<Held> {
    let mut progress = Progress::new();
    let (fleet, ready) = connect(&args.conn, args.connections, &mut progress)?;
    let connected_at = Instant::now();
    std::thread::sleep(SETTLE);
    let rss_held = broker_rss(&args.conn)?;
    let until = Instant::now() + args.duration;
    while Instant::now() < until {
        progress.tick(&fleet.control, "holding");
        std::thread::sleep(POLL);
    }
    progress.finish();
    let end = fleet.control.snapshot();
    let errors = fleet.control.error_samples();
    let workers = fleet.workers();
    fleet.finish()?;
    Ok(Held {
        snap_ready: ready,
        dropped: end.errors,
        errors,
        connected_at,
        rss_held,
        workers,
    })
}

/// Starts a fleet of `n` idle connections and waits until they are up.
fn connect(conn: &ConnArgs, n: usize, progress: &mut Progress) -> Result<(Fleet, Snapshot)> {
    let spec = Arc::new(scenario::spec(conn, None, scenario::run_tag())?);
    let cores = scenario::cores(conn.cores.as_ref())?;
    let fleet = Fleet::launch(spec.clone(), &Plan::idle(n), &cores)?;
    let ready = fleet.wait_ready(spec.connect_timeout + Duration::from_secs(1), progress);
    Ok((fleet, ready))
}

/// The `idle-worker` child: connect, report, hold until stdin closes.
pub fn child(args: &IdleWorkerArgs) -> Result<()> {
    raise_fd_limit();
    let mut progress = Progress::quiet();
    let (fleet, ready) = connect(&args.conn, args.connections, &mut progress)?;
    let mut out = std::io::stdout().lock();
    let report = |out: &mut std::io::StdoutLock, line: String| {
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .map_err(LoadError::io("writing to the parent"))
    };
    report(
        &mut out,
        format!(
            "ready {} {} {}",
            ready.ready,
            ready.failed,
            first_error(&fleet)
        ),
    )?;
    let (tx, rx) = bounded::<()>(1);
    std::thread::spawn(move || {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(args.max_hold);
    let end = fleet.control.snapshot();
    fleet.finish()?;
    report(&mut out, format!("done {}", end.errors))
}

fn first_error(fleet: &Fleet) -> String {
    fleet
        .control
        .error_samples()
        .first()
        .cloned()
        .unwrap_or_default()
        .replace('\n', " ")
}

/// A started child and the lines it printed.
struct ChildProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hold_in_children(args: &IdleArgs, procs: usize) -> Result<Held> {
    let exe = std::env::current_exe().map_err(LoadError::io("finding the harness executable"))?;
    let max_hold = args.duration + args.conn.connect_timeout * 4 + Duration::from_secs(60);
    let mut children = Vec::with_capacity(procs);
    for i in 0..procs {
        let share = args.connections / procs + usize::from(i < args.connections % procs);
        children.push(spawn_child(&exe, &args.conn, share, i, max_hold)?);
    }
    let mut ready = Snapshot::default();
    let mut errors = Vec::new();
    for (i, c) in children.iter().enumerate() {
        let line = next_line(c, max_hold, i)?;
        let mut f = line.splitn(4, ' ').skip(1);
        ready.ready += f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        ready.failed += f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        errors.extend(
            f.next()
                .filter(|e| !e.is_empty())
                .map(|e| format!("child {i}: {e}")),
        );
    }
    let connected_at = Instant::now();
    std::thread::sleep(SETTLE);
    let rss_held = broker_rss(&args.conn)?;
    std::thread::sleep(args.duration);
    let mut dropped = 0;
    for c in &mut children {
        c.stdin.take(); // EOF: the child lets go
    }
    for (i, c) in children.iter().enumerate() {
        let line = next_line(c, Duration::from_secs(30), i)?;
        dropped += line
            .strip_prefix("done ")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Ok(Held {
        snap_ready: ready,
        dropped,
        errors,
        connected_at,
        rss_held,
        workers: procs,
    })
}

fn spawn_child(
    exe: &std::path::Path,
    c: &ConnArgs,
    n: usize,
    index: usize,
    max_hold: Duration,
) -> Result<ChildProc> {
    let mut cmd = Command::new(exe);
    cmd.args([
        "idle-worker",
        "--connections",
        &n.to_string(),
        "--child",
        &index.to_string(),
    ])
    .args(["--max-hold", &format!("{}ms", max_hold.as_millis())])
    .args([
        "--host",
        &c.host,
        "--mqtt-version",
        &c.mqtt_version.to_string(),
    ])
    .args(["--keepalive", &c.keepalive.to_string()])
    .args([
        "--connect-timeout",
        &format!("{}ms", c.connect_timeout.as_millis()),
    ]);
    if !c.source.is_empty() {
        let list: Vec<String> = c.source.iter().map(|s| s.to_string()).collect();
        cmd.args(["--source", &list.join(",")]);
    }
    for (flag, path) in [
        ("--cafile", &c.cafile),
        ("--certfile", &c.certfile),
        ("--keyfile", &c.keyfile),
    ] {
        if let Some(path) = path {
            cmd.arg(flag).arg(path);
        }
    }
    if c.tls_full_handshakes {
        cmd.arg("--tls-full-handshakes");
    }
    if let Some(cores) = &c.cores {
        let list: Vec<String> = cores.ids().iter().map(|c| c.to_string()).collect();
        cmd.args(["--cores", &format!("{},", list.join(","))]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(LoadError::io(format!(
            "starting idle child {index} ({})",
            exe.display()
        )))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let (tx, rx) = bounded(4);
    std::thread::spawn(move || {
        let Some(out) = stdout else { return };
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Ok(ChildProc {
        child,
        stdin,
        lines: rx,
    })
}

fn next_line(c: &ChildProc, wait: Duration, index: usize) -> Result<String> {
    match c.lines.recv_timeout(wait) {
        Ok(line) => Ok(line),
        Err(RecvTimeoutError::Timeout) => Err(LoadError::Run(format!(
            "idle child {index} said nothing for {wait:?}"
        ))),
        Err(RecvTimeoutError::Disconnected) => Err(LoadError::Run(format!(
            "idle child {index} exited early (see its messages above)"
        ))),
    }
}

fn report(
    args: &IdleArgs,
    label: &str,
    procs: usize,
    before: Option<u64>,
    held: Held,
    started: Instant,
) -> Report {
    let n = held.snap_ready.ready;
    let held_rss = held.rss_held;
    let per_conn = match (before, held_rss) {
        (Some(b), Some(h)) if n > 0 => Some((h as f64 - b as f64) / 1024.0 / n as f64),
        _ => None,
    };
    let connect_s = held.connected_at.duration_since(started).as_secs_f64();
    Report {
        scenario: "idle".into(),
        broker: label.to_string(),
        mqtt_version: args.conn.mqtt_version,
        qos: 0,
        payload_bytes: 0,
        publishers: 0,
        subscribers: 0,
        connections: args.connections,
        workers: held.workers,
        target_rate: 0.0,
        warmup_s: 0.0,
        duration_s: args.duration.as_secs_f64(),
        scheduled: 0,
        sent: 0,
        sent_per_s: 0.0,
        delivered: 0,
        delivered_per_s: 0.0,
        expected: 0,
        lost: 0,
        duplicates: 0,
        out_of_order: 0,
        dropped_by_test: 0,
        acked: 0,
        lost_acked: 0,
        ack_latency: None,
        failed_connections: held.snap_ready.failed,
        errors: held.dropped,
        error_samples: held.errors,
        latency: None,
        broker_usage: None,
        broker_latency: None,
        storm: None,
        idle: Some(IdleReport {
            requested: args.connections,
            held: n,
            failed: held.snap_ready.failed,
            dropped: held.dropped,
            procs,
            connect_s,
            rss_before_mib: before.map(|b| b as f64 / MIB),
            rss_held_mib: held_rss.map(|h| h as f64 / MIB),
            rss_per_conn_kib: per_conn,
        }),
        histogram: None,
    }
}

/// Raises the soft open-files limit to the hard one; returns the limit.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}
