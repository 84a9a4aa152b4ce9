//! Command line: one subcommand per scenario, `compare`, and the hidden
//! `idle-worker` that `idle --procs` re-executes itself with.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Load generator for MQTT 3.1.1 / 5.0 brokers: full latency histograms,
/// open-loop rates, loss detection, and side-by-side broker comparisons.
#[derive(Debug, Parser)]
#[command(name = "shardmq-load", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Scenario(Scenario),
    /// Run one scenario against several brokers, one after another, and
    /// print them side by side (plus an SVG of their latency curves).
    ///
    /// Example: shardmq-load compare --broker a=127.0.0.1:1883
    ///   --broker 'b=cmd:mosquitto -c {conf}' --broker-cores 0 --load-cores 1
    ///   fanout --subscribers 100 --rate 10000
    Compare(CompareArgs),
    /// Internal: one child process of `idle --procs N`.
    #[command(hide = true)]
    IdleWorker(IdleWorkerArgs),
}

/// A load scenario.
#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// P publishers -> S subscribers, all on one topic.
    Fanout(FanoutArgs),
    /// P publishers on distinct topics -> S subscribers on a wildcard
    /// (or a shared subscription with --shared).
    Fanin(FaninArgs),
    /// N publisher/subscriber pairs, each pair on its own topic.
    Pairs(PairsArgs),
    /// Hold N idle connections (keepalive pings), report connections held
    /// and the broker's memory per connection (--broker-pid).
    Idle(IdleArgs),
    /// Open connections at a fixed rate: connects/s and CONNECT->CONNACK latency.
    ConnectStorm(StormArgs),
    /// P publishers at an edge broker -> its bridge -> S subscribers at the
    /// upstream broker: throughput, latency and loss through the bridge, or
    /// (--kill-upstream) the bridge's reconnect time.
    Bridge(BridgeArgs),
}

/// Where to connect and how; shared by every scenario.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// Broker address (host:port).
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub host: String,
    /// MQTT protocol: 3 (3.1.1) or 5 (5.0).
    #[arg(long, default_value_t = 3, value_parser = parse_version)]
    pub mqtt_version: u8,
    /// Harness cores: a count ("4": the first 4 allowed cores) or a list
    /// ("1,2", "4-7", "3,"). Default: every core this process may use.
    #[arg(long)]
    pub cores: Option<CoreSpec>,
    /// Source addresses to spread connections over (e.g. 127.0.0.2,127.0.0.3),
    /// each good for about 28k connections to one broker port.
    #[arg(long, value_delimiter = ',')]
    pub source: Vec<IpAddr>,
    /// Every connection keeps a persistent session (3.1.1 clean session 0;
    /// 5.0 Session Expiry one hour): measures a broker's persistence.
    #[arg(long)]
    pub persistent_sessions: bool,
    /// Keepalive in seconds sent in CONNECT (pings are sent at half of it).
    #[arg(long, default_value_t = 60)]
    pub keepalive: u16,
    /// Time allowed to connect (and subscribe) all connections.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Broker process id: report its CPU time per message and its memory.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// A shardmq metrics endpoint (http://host:port/metrics, its
    /// `metrics_listener`): report the broker-side latency percentiles of
    /// the measured window next to the end-to-end ones.
    #[arg(long, value_name = "URL")]
    pub broker_metrics: Option<String>,
    /// Print the report as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write latency histograms as HdrHistogram percentile files (.hgrm) here.
    #[arg(long)]
    pub hgrm_dir: Option<PathBuf>,
    /// TLS: connect over TLS, trusting the CA certificates in this PEM file
    /// (the broker's certificate must name the --host address).
    #[arg(long)]
    pub cafile: Option<PathBuf>,
    /// TLS: the client certificate (PEM) to present; with --keyfile.
    #[arg(long, requires = "cafile")]
    pub certfile: Option<PathBuf>,
    /// TLS: the client certificate's private key (PEM); with --certfile.
    #[arg(long, requires = "cafile")]
    pub keyfile: Option<PathBuf>,
    /// TLS: no session resumption (each connection makes a full handshake,
    /// certificate and all); by default a connection resumes an earlier
    /// session when the broker offered a ticket.
    #[arg(long, requires = "cafile")]
    pub tls_full_handshakes: bool,
}

/// How long a run lasts.
#[derive(Debug, Clone, Args)]
pub struct TimeArgs {
    /// Measured duration ("10s", "500ms", "2m"; a bare number is seconds).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up before measuring, excluded from latency and throughput.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Extra time after the last send for in-flight messages; the run ends
    /// by warm-up + duration + grace at the latest, even if the broker stalls.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub grace: Duration,
}

/// Message traffic settings.
#[derive(Debug, Clone, Args)]
pub struct TrafficArgs {
    /// Total publish rate over all publishers, messages/s (open loop).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Payload size in bytes (at least 20: the timestamp header).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// QoS of publishes and subscriptions: 0, 1 or 2.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Unacknowledged QoS 1/2 publishes allowed per publisher.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub inflight: u16,
    /// Step the rate up until p99 exceeds --p99-bound-ms or delivery falls
    /// behind; report the highest sustained rate. Each step lasts
    /// warm-up + duration and starts at --rate.
    #[arg(long)]
    pub saturate: bool,
    /// p99 latency bound for --saturate, milliseconds.
    #[arg(long, default_value_t = 10.0)]
    pub p99_bound_ms: f64,
    /// Rate multiplier between saturation steps.
    #[arg(long, default_value_t = 1.5)]
    pub step_factor: f64,
    /// Most saturation steps.
    #[arg(long, default_value_t = 12)]
    pub max_steps: usize,
    /// Test hook: publishers skip (never send) every Nth sequence number.
    #[arg(long, hide = true)]
    pub drop_every: Option<u64>,
    /// Publishers issue nothing once the measured window ends: a backlog
    /// (a broker slower than --rate) is not sent during the grace, which
    /// then drains what the broker holds, so that "lost" is what the
    /// broker lost, not what it still held when the run ended.
    #[arg(long)]
    pub no_backlog: bool,
}

/// What every traffic scenario (fanout, fanin, pairs) takes.
#[derive(Debug, Clone, Args)]
pub struct TrafficRun {
    #[command(flatten)]
    pub traffic: TrafficArgs,
    #[command(flatten)]
    pub time: TimeArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `fanout`.
#[derive(Debug, Clone, Args)]
pub struct FanoutArgs {
    /// Publisher connections (sharing --rate).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscriber connections; each receives every message.
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    #[command(flatten)]
    pub run: TrafficRun,
}

/// `fanin`.
#[derive(Debug, Clone, Args)]
pub struct FaninArgs {
    /// Publisher connections, each on its own topic (sharing --rate).
    #[arg(long, default_value_t = 10)]
    pub publishers: usize,
    /// Subscriber connections on the wildcard (or the shared group).
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Subscribe through the shared subscription `$share/<GROUP>/...`
    /// (each message then reaches one subscriber of the group).
    #[arg(long, num_args = 0..=1, default_missing_value = "shardmq-load")]
    pub shared: Option<String>,
    #[command(flatten)]
    pub run: TrafficRun,
}

/// `pairs`.
#[derive(Debug, Clone, Args)]
pub struct PairsArgs {
    /// Publisher/subscriber pairs (the publishers share --rate).
    #[arg(long, default_value_t = 10)]
    pub pairs: usize,
    #[command(flatten)]
    pub run: TrafficRun,
}

/// `bridge`. The broker under test is the edge (`--edge`, which is the
/// `--host` of the other scenarios: `compare` and `--broker-pid` mean it).
#[derive(Debug, Clone, Args)]
#[command(mut_arg("host", |a| a
    .long("edge")
    .value_name("HOST:PORT")
    .display_order(0)
    .help("Edge broker (host:port): the publishers connect here, and its bridge forwards <PREFIX>/# to --upstream")))]
pub struct BridgeArgs {
    /// Upstream broker (host:port) the edge bridges to: the subscribers
    /// connect here.
    #[arg(long, value_name = "HOST:PORT")]
    pub upstream: String,
    /// Publisher connections at the edge, each on its own topic (sharing --rate).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Subscriber connections at the upstream; each receives every message.
    #[arg(long, default_value_t = 1)]
    pub subscribers: usize,
    /// Topic prefix the edge's bridge forwards (`topic <PREFIX>/# out`).
    #[arg(long, default_value = "bench")]
    pub prefix: String,
    /// How long a probe message may take to cross the bridge before the
    /// run; if none does, the run fails (the bridge is not up, or does not
    /// forward <PREFIX>/#).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub link_timeout: Duration,
    #[command(flatten)]
    pub outage: OutageArgs,
    #[command(flatten)]
    pub run: TrafficRun,
}

/// The reconnect measurement of `bridge`.
#[derive(Debug, Clone, Args)]
pub struct OutageArgs {
    /// Reconnect mode: once messages flow, kill -9 this upstream process,
    /// restart it with --restart-upstream after --down, and report the time
    /// from the upstream being back to the arrival of the first message
    /// published after that. --duration, --warmup and --saturate do not apply.
    #[arg(
        long,
        value_name = "PID",
        requires = "restart_upstream",
        conflicts_with = "saturate"
    )]
    pub kill_upstream: Option<u32>,
    /// The command that restarts the upstream on its port, run through
    /// `sh -c exec` (`{port}`: that port; `{conf}`: a generated config
    /// listening on it). The harness stops it when it ends.
    #[arg(long, value_name = "COMMAND", requires = "kill_upstream")]
    pub restart_upstream: Option<String>,
    /// How long the upstream stays down.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub down: Duration,
    /// How long to wait, once the upstream is back, for a message published
    /// after that to arrive through the bridge.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub reconnect_timeout: Duration,
}

/// `idle`.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Connections to hold.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Child processes to spread them over (default: as few as the
    /// open-files limit allows).
    #[arg(long)]
    pub procs: Option<usize>,
    /// How long to hold them once all are connected.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `connect-storm`.
#[derive(Debug, Clone, Args)]
pub struct StormArgs {
    /// Connection attempts per second (open loop).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Most connection attempts in progress at once (bounds open files).
    #[arg(long, default_value_t = 1000)]
    pub concurrency: usize,
    #[command(flatten)]
    pub time: TimeArgs,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// A broker: `NAME=HOST:PORT` (already running) or `NAME=cmd:COMMAND`,
    /// started by the harness, where `{port}` is replaced by a free port and
    /// `{conf}` by a generated Mosquitto-style config file listening on it.
    /// Repeat for each broker; ratios are against the first.
    #[arg(long = "broker", required = true)]
    pub brokers: Vec<BrokerSpec>,
    /// Core ids to pin started brokers to (e.g. "0" or "0-3").
    #[arg(long, value_parser = parse_core_list)]
    pub broker_cores: Option<CoreSpec>,
    /// Core ids for the harness (e.g. "1" or "4-7"; overrides the
    /// scenario's --cores).
    #[arg(long, value_parser = parse_core_list)]
    pub load_cores: Option<CoreSpec>,
    /// Where to write the latency chart.
    #[arg(long, default_value = "compare-latency.svg")]
    pub svg: PathBuf,
    /// Pause between brokers.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// `idle-worker` (internal): holds connections and reports on stdout.
#[derive(Debug, Clone, Args)]
pub struct IdleWorkerArgs {
    #[arg(long)]
    pub connections: usize,
    /// Index of this child, for client ids.
    #[arg(long)]
    pub child: usize,
    /// Hold at most this long (the parent normally ends it first by closing stdin).
    #[arg(long, value_parser = parse_duration)]
    pub max_hold: Duration,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// `--cores`: a count or an explicit list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreSpec {
    /// The first N cores this process may use.
    Count(usize),
    /// These core ids.
    List(Vec<usize>),
}

impl std::str::FromStr for CoreSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<CoreSpec, String> {
        let s = s.trim();
        if let Ok(n) = s.parse::<usize>() {
            return if n == 0 {
                Err("a core count must be at least 1".into())
            } else {
                Ok(CoreSpec::Count(n))
            };
        }
        let mut cores = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = part.split_once('-').unwrap_or((part, part));
            let bad = || format!("bad core list {s:?}: expected ids like 1,2 or ranges like 4-7");
            let lo: usize = lo.trim().parse().map_err(|_| bad())?;
            let hi: usize = hi.trim().parse().map_err(|_| bad())?;
            if lo > hi {
                return Err(bad());
            }
            cores.extend(lo..=hi);
        }
        if cores.is_empty() {
            return Err(format!("bad core list {s:?}: no cores"));
        }
        Ok(CoreSpec::List(cores))
    }
}

impl CoreSpec {
    /// The core ids meant, checked against the cores this process may use.
    pub fn resolve(&self, available: &[usize]) -> Result<Vec<usize>, String> {
        match self {
            CoreSpec::Count(n) if *n <= available.len() => Ok(available[..*n].to_vec()),
            CoreSpec::Count(n) => Err(format!(
                "--cores {n}: only {} cores are available ({available:?})",
                available.len()
            )),
            CoreSpec::List(list) => match list.iter().find(|c| !available.contains(c)) {
                Some(c) => Err(format!(
                    "core {c} is not available to this process (allowed: {available:?})"
                )),
                None => Ok(list.clone()),
            },
        }
    }

    /// The ids as a list even for a count (for pinning a started broker).
    pub fn ids(&self) -> Vec<usize> {
        match self {
            CoreSpec::Count(n) => (0..*n).collect(),
            CoreSpec::List(l) => l.clone(),
        }
    }
}

/// One `--broker` of `compare`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerSpec {
    pub name: String,
    pub target: BrokerTarget,
}

/// Where a compared broker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerTarget {
    /// Already running there.
    Address(String),
    /// A command to start (with `{port}` / `{conf}` / `{metrics_conf}`
    /// placeholders).
    Command(String),
}

impl std::str::FromStr for BrokerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<BrokerSpec, String> {
        let usage =
            "expected NAME=HOST:PORT or NAME=cmd:COMMAND (e.g. mosq=cmd:mosquitto -c {conf})";
        let (name, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("bad --broker {s:?}: {usage}"))?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "bad broker name {name:?}: use letters, digits, '-', '_' or '.'"
            ));
        }
        let target = match rest.strip_prefix("cmd:") {
            Some(cmd) if ["{port}", "{conf}", "{metrics_conf}"].iter().any(|p| cmd.contains(p)) => {
                BrokerTarget::Command(cmd.to_string())
            }
            Some(_) => {
                return Err(format!(
                    "--broker {name}: the command needs a {{port}}, {{conf}} or {{metrics_conf}} placeholder"
                ))
            }
            None if rest.contains(':') => BrokerTarget::Address(rest.to_string()),
            None => return Err(format!("bad --broker {s:?}: {usage}")),
        };
        Ok(BrokerSpec {
            name: name.to_string(),
            target,
        })
    }
}

/// Parses a list of core ids, where a single number is one core (not a count).
fn parse_core_list(s: &str) -> Result<CoreSpec, String> {
    match s.trim().parse::<usize>() {
        Ok(id) => Ok(CoreSpec::List(vec![id])),
        Err(_) => s.parse(),
    }
}

/// Parses `--mqtt-version`: 3 (3.1.1) or 5.
fn parse_version(s: &str) -> Result<u8, String> {
    match s.trim() {
        "3" | "3.1.1" | "4" => Ok(3),
        "5" | "5.0" => Ok(5),
        _ => Err(format!(
            "unsupported MQTT version {s:?}: use 3 (3.1.1) or 5"
        )),
    }
}

/// Parses "250ms", "10s", "2m" or a bare number of seconds ("1.5").
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?}: use e.g. 500ms, 10s, 2m"))?;
    if !(0.0..=86_400.0).contains(&(v * scale)) {
        return Err(format!("duration {s:?} out of range (0 to 24h)"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_specs() {
        assert_eq!("4".parse::<CoreSpec>(), Ok(CoreSpec::Count(4)));
        assert_eq!("1,2".parse::<CoreSpec>(), Ok(CoreSpec::List(vec![1, 2])));
        assert_eq!(
            "4-6,9".parse::<CoreSpec>(),
            Ok(CoreSpec::List(vec![4, 5, 6, 9]))
        );
        assert_eq!("3,".parse::<CoreSpec>(), Ok(CoreSpec::List(vec![3])));
        assert!("x".parse::<CoreSpec>().is_err());
        assert_eq!(CoreSpec::Count(2).resolve(&[0, 1, 2]), Ok(vec![0, 1]));
        assert!(CoreSpec::List(vec![5]).resolve(&[0, 1]).is_err());
    }

    #[test]
    fn broker_specs() {
        let b: BrokerSpec = "a=127.0.0.1:1883".parse().unwrap();
        assert_eq!(b.target, BrokerTarget::Address("127.0.0.1:1883".into()));
        let b: BrokerSpec = "mosq=cmd:mosquitto -c {conf}".parse().unwrap();
        assert_eq!(
            b.target,
            BrokerTarget::Command("mosquitto -c {conf}".into())
        );
        assert!("mosq=cmd:mosquitto".parse::<BrokerSpec>().is_err());
        assert!("=1.2.3.4:5".parse::<BrokerSpec>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "x",
            "compare",
            "--broker",
            "a=h:1",
            "fanout",
            "--subscribers",
            "5",
        ]);
        assert!(cli.is_ok(), "{cli:?}");
        let bridge = |line: &str| match Cli::try_parse_from(line.split(' ')) {
            Ok(Cli {
                command: Command::Scenario(Scenario::Bridge(b)),
            }) => Ok(b),
            other => Err(format!("{other:?}")),
        };
        let b = bridge("x bridge --edge e:1 --upstream u:2 --qos 1").expect("bridge parses");
        assert_eq!(
            (b.run.conn.host.as_str(), b.upstream.as_str()),
            ("e:1", "u:2")
        );
        let b = bridge("x bridge --upstream u:2").expect("the edge has --host's default");
        assert_eq!(b.run.conn.host, "127.0.0.1:1883");
        assert!(
            bridge("x bridge --edge e:1").is_err(),
            "--upstream is required"
        );
        assert!(
            bridge("x bridge --upstream u:2 --host h:3").is_err(),
            "--edge, not --host"
        );
        assert!(
            bridge("x bridge --upstream u:2 --kill-upstream 5").is_err(),
            "--kill-upstream needs --restart-upstream"
        );
    }
}
