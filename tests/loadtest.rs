//! The load harness against a real Mosquitto and against an in-process
//! shardmq: counts, loss detection, histograms, JSON, `compare`, and the
//! `bridge` scenario through a Mosquitto bridge. The
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

/// Nothing lost, duplicated or reordered in a run's report.
fn assert_no_loss(r: &Value) {
    let counts = (num(r, "lost"), num(r, "duplicates"), num(r, "out_of_order"));
    assert_eq!(counts, (0, 0, 0), "{r}");
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

/// Runs the harness with `args`, which must fail; returns its stderr.
fn harness_fails(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run shardmq-load");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "shardmq-load {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

/// Runs a command line (words split on spaces) with `--json` and returns
/// the parsed report.
fn json_run(line: &str) -> Value {
    json_of(&line.split_whitespace().collect::<Vec<_>>())
}

/// Runs the harness with `args` and `--json` and returns the parsed report.
fn json_of(args: &[&str]) -> Value {
    let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
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

/// `compare` of `brokers` (`NAME=...`) over `scenario`, chart at `svg`:
/// its table.
fn compare(svg: &Path, brokers: &[&str], scenario: &str) -> String {
    let mut args = vec![
        "compare",
        "--svg",
        svg.to_str().unwrap(),
        "--settle",
        "100ms",
    ];
    for b in brokers {
        args.extend(["--broker", b]);
    }
    args.extend(scenario.split(' '));
    String::from_utf8_lossy(&harness(&args).stdout).into_owned()
}

#[test]
fn compare_two_brokers_prints_ratios_and_draws_svg() {
    if !mosquitto_installed("compare") {
        return;
    }
    let dir = temp_dir("compare");
    let svg = dir.join("cmp.svg");
    let brokers = [
        "first=cmd:mosquitto -c {conf}",
        "second=cmd:mosquitto -c {conf}",
    ];
    let scenario = "fanout --subscribers 2 --rate 500 --duration 1s --warmup 200ms";
    let table = compare(&svg, &brokers, scenario);
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
    assert_no_loss(&r);
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

/// An upstream Mosquitto and an edge Mosquitto whose bridge forwards
/// `bench/#` to it, or `None` if mosquitto is not installed.
fn bridged_mosquittos(test: &str) -> Option<(Mosquitto, Mosquitto)> {
    let upstream = mosquitto(&format!("{test}-up"))?;
    let section = format!(
        "connection bench-up\naddress {}\ntopic bench/# out 1\ncleansession true\n\
         notifications false\n",
        upstream.host()
    );
    let edge = Mosquitto::start(&format!("{test}-edge"), |_| {
        format!("max_queued_messages 100000\n{section}")
    })?;
    Some((upstream, edge))
}

#[test]
fn bridge_through_mosquitto_loses_nothing_at_qos1() {
    let Some((upstream, edge)) = bridged_mosquittos("bridge") else {
        return;
    };
    let r = json_run(&format!(
        "bridge --edge {} --upstream {} --qos 1 --publishers 2 --subscribers 2 --rate 500 \
         --duration 2s --warmup 500ms --broker-pid {}",
        edge.host(),
        upstream.host(),
        edge.pid()
    ));
    assert_eq!(r["scenario"], "bridge", "{r}");
    assert_eq!((num(&r, "sent"), num(&r, "delivered")), (1000, 2000), "{r}");
    assert_eq!(
        (
            num(&r, "lost"),
            num(&r, "duplicates"),
            num(&r, "out_of_order"),
            num(&r, "errors")
        ),
        (0, 0, 0, 0),
        "{r}"
    );
    // By sequence number over the whole run: 1250 messages to 2 subscribers.
    assert_eq!(num(&r, "expected"), 2500, "warm-up included: {r}");
    assert_eq!(num(&r["latency"], "count"), 2000, "{r}");
    assert!(r["broker_usage"]["cpu_us_per_msg"].is_number(), "{r}");
}

#[test]
fn bridge_through_shardmq_loses_nothing_at_qos1() {
    let Some(upstream) = mosquitto("shardmq-bridge-up") else {
        return;
    };
    let section = format!(
        "connection bench-up\naddress {}\ntopic bench/# out 1\ncleansession true\n\
         notifications false\n",
        upstream.host()
    );
    let (parsed, _) = shardmq::config::Config::parse(&section, "edge.conf").expect("valid");
    let edge = common::TestBroker::with(2, |c| c.bridges = parsed.bridges);
    edge.wait_bridge("bench-up");
    let r = json_run(&format!(
        "bridge --edge {} --upstream {} --qos 1 --publishers 2 --subscribers 2 --rate 500 \
         --duration 2s --warmup 500ms",
        edge.addr,
        upstream.host(),
    ));
    assert_eq!((num(&r, "sent"), num(&r, "delivered")), (1000, 2000), "{r}");
    assert_no_loss(&r);
}

#[test]
fn bridge_reconnect_is_timed_from_the_upstream_being_back() {
    let Some((upstream, edge)) = bridged_mosquittos("reconnect") else {
        return;
    };
    let (edge_host, upstream_host) = (edge.host(), upstream.host());
    let pid = upstream.pid().to_string();
    let r = json_of(&[
        "bridge",
        "--edge",
        &edge_host,
        "--upstream",
        &upstream_host,
        "--qos",
        "1",
        "--rate",
        "200",
        "--kill-upstream",
        &pid,
        "--restart-upstream",
        "mosquitto -c {conf}",
        "--down",
        "500ms",
        "--reconnect-timeout",
        "15s",
    ]);
    assert_eq!(r["scenario"], "bridge-reconnect", "{r}");
    let down = r["down_s"].as_f64().expect("down_s");
    assert!((0.5..3.0).contains(&down), "{r}");
    // Mosquitto 2.0's bridge is back about 5 s after the link dropped.
    let reconnect = r["reconnect_s"]
        .as_f64()
        .unwrap_or_else(|| panic!("no message through the bridge after the restart: {r}"));
    assert!(reconnect > 0.0, "{r}");
    assert_eq!(num(&r, "errors"), 0, "{r}");
}

#[test]
fn bridge_scenario_says_so_when_the_edge_does_not_bridge() {
    // Two brokers, no bridge between them.
    let (edge, upstream) = (common::TestBroker::start(1), common::TestBroker::start(1));
    let started = Instant::now();
    let stderr = harness_fails(&[
        "bridge",
        "--edge",
        &edge.addr.to_string(),
        "--upstream",
        &upstream.addr.to_string(),
        "--link-timeout",
        "500ms",
    ]);
    assert!(
        stderr.contains("the bridge did not deliver") && stderr.contains("forwards `bench/#` out"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn broker_metrics_put_the_brokers_own_latency_next_to_end_to_end() {
    let broker = common::TestBroker::with(2, |c| {
        c.metrics_listener = Some("127.0.0.1:0".parse().expect("addr"));
    });
    let host = broker.addr.to_string();
    let metrics = broker.handle().metrics_addr().expect("an endpoint");
    let url = format!("http://{metrics}/metrics");
    let line = format!(
        "pairs --host {host} --pairs 4 --qos 1 --rate 400 --duration 1s --warmup 300ms --broker-metrics {url}"
    );
    let r = json_run(&line);
    assert_no_loss(&r);
    let delivery = &r["broker_latency"]["delivery"];
    let count = num(delivery, "count");
    // The window's deliveries, give or take the 100 ms the broker's
    // histograms lag behind the harness's clock at each end.
    assert!((200..=600).contains(&count), "{r}");
    let p99 = delivery["p99_ms"].as_f64().expect("p99");
    let e2e_p99 = r["latency"]["p99_ms"].as_f64().expect("e2e p99");
    assert!(p99 > 0.0 && p99 <= e2e_p99.max(10.0) * 10.0, "{r}");
    assert!(num(&r["broker_latency"]["turn"], "count") > 0, "{r}");

    let args: Vec<&str> = line.split_whitespace().collect();
    let table = String::from_utf8_lossy(&harness(&args).stdout).into_owned();
    assert!(
        table.contains("in broker p99.9") && table.contains("latency p99"),
        "{table}"
    );

    let bad = format!("pairs --host {host} --pairs 1 --rate 10 --duration 1s --warmup 0s --broker-metrics http://{host}/metrics");
    let err = harness_fails(&bad.split_whitespace().collect::<Vec<_>>());
    assert!(err.contains("--broker-metrics"), "{err}");
    broker.stop();
}

#[test]
fn compare_shows_the_in_broker_rows_of_a_broker_started_with_metrics_conf() {
    if !mosquitto_installed("compare with metrics") {
        return;
    }
    let dir = temp_dir("compare-metrics");
    let shardmq = format!(
        "smq=cmd:{} -c {{metrics_conf}}",
        env!("CARGO_BIN_EXE_shardmq")
    );
    let brokers = ["mosq=cmd:mosquitto -c {conf}", shardmq.as_str()];
    let scenario = "pairs --pairs 2 --qos 1 --rate 300 --duration 1s --warmup 300ms";
    let table = compare(&dir.join("cmp.svg"), &brokers, scenario);
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with("in broker p99 "))
        .unwrap_or_else(|| panic!("no in-broker row: {table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[4], "-", "Mosquitto exposes none: {row}");
    assert!(cells[5].parse::<f64>().is_ok_and(|v| v > 0.0), "{row}");
    let _ = std::fs::remove_dir_all(dir);
}
