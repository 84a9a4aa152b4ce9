//! `shardmq-load`: a thread-per-core load harness for MQTT 3.1.1 / 5.0 brokers.
//!
//! Architecture: the main thread is the *controller*. It builds a [`plan`]
//! (one role per connection), deals the connections round-robin over
//! *workers* ([`worker`]: one thread pinned per core running the broker's
//! own readiness loop, `shardmq::runtime::Reactor`, with every connection a
//! state machine in a slab, [`conn`]) and drives the run through
//! [`fleet`] and [`control`] (start time, stop flag, atomic counters):
//! connect and subscribe everything, start the open-loop schedules
//! ([`rate`]), warm up, measure, drain, stop. Payloads carry their due time,
//! publisher id and sequence number ([`payload`]); subscribers record
//! latency into a per-worker hdrhistogram and sequence numbers into
//! [`seq`] trackers, merged at the end ([`stats`]) into a [`report`]
//! (table, JSON, [`hgrm`] files). [`compare`] repeats a scenario over
//! several brokers (optionally started by [`broker_proc`]) and draws
//! [`chart`]. [`idle`] spreads huge connection counts over child processes.
//! [`bridge`] runs the traffic through an edge broker's bridge into an
//! upstream broker (publishers at one, subscribers at the other), after a
//! link check with a blocking [`probe`] client; [`outage`] times the
//! bridge's reconnection after the upstream is killed and restarted.
//!
//! `main` only parses the command line and calls [`app::run`].
//!
//! Examples (every run stops by itself at warm-up + duration + grace):
//!
//! ```text
//! shardmq-load fanout --host 127.0.0.1:1883 --subscribers 100 --rate 1000 --duration 10s
//! shardmq-load pairs --pairs 100 --qos 1 --rate 20000 --hgrm-dir out/ --json
//! shardmq-load fanin --publishers 50 --subscribers 4 --shared grp --mqtt-version 5
//! shardmq-load pairs --pairs 10 --saturate --p99-bound-ms 5 --rate 1000
//! shardmq-load idle --connections 50000 --source 127.0.0.2,127.0.0.3 --broker-pid 1234
//! shardmq-load connect-storm --rate 2000 --duration 5s
//! shardmq-load bridge --edge 127.0.0.1:1884 --upstream 127.0.0.1:1883 --qos 1 --saturate
//! shardmq-load bridge --edge 127.0.0.1:1884 --upstream 127.0.0.1:1883 --kill-upstream 4321 \
//!     --restart-upstream 'mosquitto -c {conf}' --down 3s
//! shardmq-load compare --broker 'mosq=cmd:mosquitto -c {conf}' \
//!     --broker 'shardmq=cmd:shardmq -c {conf}' --broker-cores 0 --load-cores 1 \
//!     fanout --subscribers 100 --rate 1000
//! ```

mod app;
mod bridge;
mod broker_metrics;
mod broker_proc;
mod chart;
mod cli;
mod clock;
mod compare;
mod conn;
mod control;
mod error;
mod fleet;
mod hgrm;
mod idle;
mod outage;
mod payload;
mod plan;
mod probe;
mod procstat;
mod progress;
mod publisher;
mod rate;
mod report;
mod saturate;
mod scenario;
mod seq;
mod stats;
mod storm;
mod subscriber;
mod timers;
mod traffic;
mod worker;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    if let Err(e) = app::run(cli) {
        eprintln!("shardmq-load: {e}");
        std::process::exit(e.exit_code());
    }
}
