//! The load harness against a real Mosquitto and against an in-process
//! shardmq: counts, loss detection, histograms, JSON and `compare`. The
//! Mosquitto tests are skipped (with a message) when `mosquitto` is not
//! installed, except under CI (`CI` set), where that is a failure.

mod common;

use common::mosquitto::{mosquitto_installed, temp_dir, Mosquitto};

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_shardmq-load");

/// A Mosquitto that queues every message for a slow subscriber (as the
/// harness counts loss), or `None` if it is not installed.
fn mosquitto(test: &str) -> Option<Mosquitto> {
    Mosquitto::start(test, |_| "max_queued_messages 100000\n".to_owned())
}

/// Runs the harness with `args`; panics with its output if it fails.
fn harness(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run shardmq-load");
    assert!(
        out.status.success(),
        "shardmq-load {args:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command line (words split on spaces) with `--json` and returns
/// the parsed report.
fn json_run(line: &str) -> Value {
    let args: Vec<&str> = line.split_whitespace().chain(["--json"]).collect();
    let out = harness(&args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--json output does not parse: {e}\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// (value, percentile, total count) rows of an .hgrm file.
fn hgrm_rows(path: &Path) -> Vec<(f64, f64, u64)> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"),
        "{text}"
    );
    assert!(text.contains("#[Mean    ="), "{text}");
    let rows = text.lines().filter(|l| {
        let l = l.trim();
        !l.is_empty() && !l.starts_with('#') && !l.starts_with("Value")
    });
    rows.map(|l| {
        let c: Vec<&str> = l.split_whitespace().collect();
        (
            c[0].parse().unwrap(),
            c[1].parse().unwrap(),
            c[2].parse().unwrap(),
        )
    })
    .collect()
}

#[test]
fn fanout_delivers_every_message_to_every_subscriber() {
    let Some(m) = mosquitto("fanout") else {
        return;
    };
    let dir = temp_dir("fanout-hgrm");
    let r = json_run(&format!(
        "fanout --host {} --subscribers 5 --rate 500 --duration 2s --warmup 500ms --hgrm-dir {}",
        m.host(),
        dir.display()
    ));
    assert_eq!(num(&r, "sent"), 1000, "{r}");
    assert_eq!(num(&r, "delivered"), 5000, "{r}");
    assert_eq!(
        (num(&r, "lost"), num(&r, "duplicates"), num(&r, "errors")),
        (0, 0, 0),
        "{r}"
    );
    assert_eq!(num(&r["latency"], "count"), 5000, "{r}");
    let rows = hgrm_rows(&dir.join("fanout.hgrm"));
    let last = rows.last().unwrap();
    assert_eq!((last.1, last.2), (1.0, 5000));
    assert!(rows
        .windows(2)
        .all(|w| w[0].0 <= w[1].0 && w[0].2 <= w[1].2));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn skipped_sequence_numbers_are_reported_lost() {
    let Some(m) = mosquitto("drop") else {
        return;
    };
    let r = json_run(&format!(
        "fanout --host {} --subscribers 3 --qos 1 --rate 500 --duration 1s --warmup 200ms --drop-every 7",
        m.host()
    ));
    let dropped = num(&r, "dropped_by_test");
    assert_eq!(dropped, 600 / 7, "{r}");
    assert_eq!(num(&r, "lost"), dropped * 3, "{r}");
    assert_eq!(num(&r, "expected"), 600 * 3, "{r}");
    assert_eq!(num(&r, "duplicates"), 0, "{r}");
}

#[test]
fn pairs_qos2_over_mqtt5_and_shared_fanin_lose_nothing() {
    let Some(m) = mosquitto("pairs") else {
        return;
    };
    let common = format!(
        "--host {} --rate 1000 --duration 1s --warmup 200ms --mqtt-version 5",
        m.host()
    );
    let r = json_run(&format!("pairs --pairs 10 --qos 2 {common}"));
    assert_eq!(num(&r, "sent"), 1000, "{r}");
    assert_eq!((num(&r, "delivered"), num(&r, "lost")), (1000, 0), "{r}");
    let r = json_run(&format!(
        "fanin --publishers 4 --subscribers 3 --shared g --qos 1 {common}"
    ));
    assert_eq!(
        (num(&r, "delivered"), num(&r, "lost"), num(&r, "duplicates")),
        (1000, 0, 0),
        "{r}"
    );
}

#[test]
fn idle_and_connect_storm_report_their_figures() {
    let Some(m) = mosquitto("idle") else {
        return;
    };
    let (host, pid) = (m.host(), m.pid());
    let r = json_run(&format!(
        "idle --host {host} --connections 300 --procs 2 --duration 2s --keepalive 1 --broker-pid {pid}"
    ));
    // Mosquitto drops a client silent for 1.5 keepalives: pings must flow.
    assert_eq!(
        (num(&r["idle"], "held"), num(&r["idle"], "dropped")),
        (300, 0),
        "{r}"
    );
    assert!(r["idle"]["rss_per_conn_kib"].is_number(), "{r}");
    let r = json_run(&format!(
        "connect-storm --host {host} --rate 200 --duration 1s --warmup 0s"
    ));
    assert_eq!(
        (num(&r["storm"], "connected"), num(&r["storm"], "failed")),
        (200, 0),
        "{r}"
    );
    assert_eq!(num(&r["latency"], "count"), 200, "{r}");
}

#[test]
fn compare_two_brokers_prints_ratios_and_draws_svg() {
    if !mosquitto_installed("compare") {
        return;
    }
    let dir = temp_dir("compare");
    let svg = dir.join("cmp.svg");
    let mut args = vec![
        "compare",
        "--svg",
        svg.to_str().unwrap(),
        "--settle",
        "100ms",
    ];
    args.extend([
        "--broker",
        "first=cmd:mosquitto -c {conf}",
        "--broker",
        "second=cmd:mosquitto -c {conf}",
    ]);
    args.extend("fanout --subscribers 2 --rate 500 --duration 1s --warmup 200ms".split(' '));
    let out = harness(&args);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("first") && table.contains("second"),
        "{table}"
    );
    assert!(
        table.contains("latency p99") && table.contains("(x"),
        "{table}"
    );
    assert!(table.contains("broker CPU / msg"), "{table}");
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(
        chart.starts_with("<svg") && chart.contains("99.9%") && chart.contains("second"),
        "{chart}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn in_process_shardmq_counts_losses_and_qos2_exactly() {
    let broker = common::TestBroker::start(2);
    let host = broker.addr.to_string();
    let r = json_run(&format!(
        "fanout --host {host} --subscribers 5 --qos 1 --rate 500 --duration 1s --warmup 200ms"
    ));
    assert_eq!((num(&r, "sent"), num(&r, "delivered")), (500, 2500), "{r}");
    assert_eq!(
        (num(&r, "lost"), num(&r, "duplicates"), num(&r, "errors")),
        (0, 0, 0),
        "{r}"
    );
    assert_eq!(num(&r["latency"], "count"), 2500, "{r}");

    let r = json_run(&format!(
        "fanout --host {host} --subscribers 3 --qos 1 --rate 500 --duration 1s --warmup 200ms --drop-every 7"
    ));
    let dropped = num(&r, "dropped_by_test");
    assert_eq!(dropped, 600 / 7, "{r}");
    assert_eq!(num(&r, "lost"), dropped * 3, "{r}");

    let r = json_run(&format!(
        "pairs --host {host} --pairs 20 --qos 2 --mqtt-version 5 --rate 1000 --duration 1s --warmup 200ms"
    ));
    assert_eq!(num(&r, "delivered"), num(&r, "sent"), "{r}");
    assert_eq!(
        (
            num(&r, "lost"),
            num(&r, "duplicates"),
            num(&r, "out_of_order")
        ),
        (0, 0, 0),
        "{r}"
    );
    broker.stop();
}

#[test]
fn run_ends_on_time_and_reports_loss_when_the_broker_stalls() {
    let Some(m) = mosquitto("stall") else {
        return;
    };
    let started = Instant::now();
    let run = std::thread::spawn({
        let host = m.host();
        move || {
            json_run(&format!(
                "fanout --host {host} --subscribers 3 --qos 1 --rate 200 --duration 2s --warmup 200ms --grace 1s"
            ))
        }
    });
    // Freeze the broker mid-run: it neither reads nor answers any more.
    std::thread::sleep(Duration::from_millis(1200));
    let pid = m.pid() as libc::pid_t;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let report = run.join().expect("harness finished");
    let elapsed = started.elapsed();
    // SAFETY: as above; let the guard kill a running process.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    // Bound: connect + warm-up 0.2 s + duration 2 s + grace 1 s, plus slack.
    assert!(
        elapsed < Duration::from_secs(10),
        "harness ran {elapsed:?} against a stalled broker"
    );
    assert!(
        num(&report, "lost") > 0,
        "messages stuck in the frozen broker are reported lost: {report}"
    );
    assert!(
        num(&report, "delivered") > 0,
        "what arrived before the stall is counted: {report}"
    );
}
