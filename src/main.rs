//! The `shardmq` binary: parses the command line and runs the broker.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shardmq::config::{Config, Listener};

/// A thread-per-core sharded MQTT 3.1.1 / 5.0 broker.
#[derive(Parser, Debug)]
#[command(name = "shardmq", version)]
struct Cli {
    /// Mosquitto-format configuration file.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Listen on this port (replaces the configured listeners' ports).
    #[arg(short = 'p', long = "port")]
    port: Option<u16>,
    /// Number of shards (default: every available core).
    #[arg(long)]
    shards: Option<usize>,
    /// Log everything, debug included.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Validate the configuration and exit.
    #[arg(long = "check-config")]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match &cli.config {
        None => Config::default(),
        Some(path) => match Config::load(path) {
            Ok((config, warnings)) => {
                for w in warnings {
                    eprintln!("warning: {w}");
                }
                config
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    if cli.check_config {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    if let Some(port) = cli.port {
        for l in &mut config.listeners {
            l.addr.set_port(port);
        }
        config
            .listeners
            .dedup_by(|a: &mut Listener, b: &mut Listener| a == b);
    }
    if cli.shards.is_some() {
        config.shards = cli.shards;
    }
    shardmq::logging::init(&config.log_dest, &config.log_types, cli.verbose);
    // Before start: a SIGHUP sent once the port answers must find it.
    if let Err(e) = log_hangups() {
        eprintln!("error: cannot install the handler for SIGHUP: {e}");
        return ExitCode::from(1);
    }
    let broker = match shardmq::server::start(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let stop = broker.stop_flag();
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, std::sync::Arc::clone(&stop)) {
            eprintln!("error: cannot install the handler for signal {sig}: {e}");
            return ExitCode::from(1);
        }
    }
    match broker.wait() {
        Ok(()) => {
            log::info!("shardmq stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGHUP asks a broker to reload (Mosquitto reloads on it, and operators'
/// tools send it). Until reload exists it is logged and the broker carries
/// on, instead of dying of the default action.
fn log_hangups() -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                log::warn!("SIGHUP received: configuration reload is not supported yet; carrying on with the running configuration");
            }
        })?;
    Ok(())
}
