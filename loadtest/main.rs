//! `shardmq-load`: a thread-per-core load harness for MQTT 3.1.1 / 5.0 brokers.
//!
//! Architecture: the main thread is the *controller*. It builds a [`plan`]
//! (one role per connection), deals the connections round-robin over
//! *workers* (one glommio executor pinned per core, through
//! `shardmq::runtime`; one task per connection, see [`worker`]) and drives
//! the run through [`control`] (start time, stop flag, atomic counters):
//! connect and subscribe everything, start the open-loop schedules
//! ([`rate`]), warm up, measure, drain, stop. Payloads carry their due time,
//! publisher id and sequence number ([`payload`]); subscribers record
//! latency into a per-worker hdrhistogram and sequence numbers into
//! [`seq`] trackers, merged at the end ([`stats`]) into a [`report`]
//! (table, JSON, [`hgrm`] files). [`compare`] repeats a scenario over
//! several brokers (optionally started by [`broker_proc`]) and draws
//! [`chart`]. [`idle`] spreads huge connection counts over child processes.
//!
//! `main` only parses the command line and calls [`app::run`].

mod app;
mod broker_proc;
mod chart;
mod cli;
mod client;
mod clock;
mod compare;
mod control;
mod error;
mod fleet;
mod hgrm;
mod idle;
mod payload;
mod plan;
mod procstat;
mod progress;
mod publisher;
mod rate;
mod report;
mod saturate;
mod scenario;
mod seq;
mod signal;
mod stats;
mod storm;
mod subscriber;
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
