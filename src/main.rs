//! The `shardmq` binary: parses the command line and runs the broker.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shardmq::config::{Config, Listener};
use shardmq::logging::INFORMATION;
use shardmq::server::Reloader;
use signal_hook::iterator::Signals;

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
        // The broker reads the ACL and password files at start: so does
        // the check.
        if let Err(e) = shardmq::security::AclTable::load(&config) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        if let Err(e) = shardmq::password::load_for(&config) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        // TLS listeners' files are read as a start reads them.
        if let Err(e) = shardmq::shard::tls_configs(&config) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    apply_cli(&mut config, &cli);
    if let Err(e) = shardmq::logging::init(&config, cli.verbose) {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    log_mode(&config, cli.config.is_some());
    // Before start: a SIGHUP sent once the port answers must find it.
    let hangups = match Signals::new([signal_hook::consts::SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot install the handler for SIGHUP: {e}");
            return ExitCode::from(1);
        }
    };
    let broker = match shardmq::server::start(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = reload_on_hangup(hangups, cli, broker.reloader()) {
        eprintln!("error: cannot start the SIGHUP thread: {e}");
        return ExitCode::from(1);
    }
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

/// The start-up line that says which mode the broker runs in (each
/// listener's line follows from `server::start`).
fn log_mode(config: &Config, from_file: bool) {
    let file = if from_file {
        "a configuration file"
    } else {
        "no configuration file"
    };
    let anonymous = if config.allow_anonymous {
        "allowed"
    } else {
        "refused"
    };
    if config.local_only {
        log::info!(
            target: INFORMATION,
            "local only mode ({file}, no listener configured): listening on the loopback \
             interface only, anonymous clients {anonymous}; configure a `listener` to accept \
             remote clients"
        );
    } else if config.per_listener_settings {
        log::info!(target: INFORMATION, "{file} with listeners: who may connect is set per listener (see below)");
    } else {
        log::info!(
            target: INFORMATION,
            "{file} with listeners: anonymous clients {anonymous} (allow_anonymous, false \
             unless set)"
        );
    }
}

/// What the command line overrides in the configuration file: the port
/// of every listener and the shard count (at start and on every reload);
/// in local only mode, `[::1]` joins `127.0.0.1` where the host has it.
fn apply_cli(config: &mut Config, cli: &Cli) {
    if config.local_only && has_ipv6_loopback() {
        let v4: Vec<Listener> = config.listeners.clone();
        for l in v4.into_iter().filter(|l| l.addr.ip().is_loopback()) {
            let mut v6 = l;
            v6.addr.set_ip(std::net::Ipv6Addr::LOCALHOST.into());
            if !config.listeners.iter().any(|x| x.addr == v6.addr) {
                config.listeners.push(v6);
            }
        }
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
}

/// Whether `::1` can be bound here (IPv6 may be off).
fn has_ipv6_loopback() -> bool {
    std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// SIGHUP reloads the configuration file, as Mosquitto does: the logging
/// settings (log files are closed and opened again, so logrotate works),
/// the bridge sections, each listener's settings on every shard (see
/// `shard::Reload`) and `sys_interval`, are applied at once, leaving
/// connected clients alone. Other settings (`metrics_listener` among them)
/// take effect at the next start, and the log says so.
fn reload_on_hangup(mut signals: Signals, cli: Cli, reloader: Reloader) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                reload(&cli, &reloader);
            }
        })?;
    Ok(())
}

/// Closes and opens again the log files in use.
fn reopen_logs() {
    if let Err(e) = shardmq::logging::reopen() {
        eprintln!("error: SIGHUP: {e}");
    }
}

fn reload(cli: &Cli, reloader: &Reloader) {
    let Some(path) = cli.config.as_deref() else {
        reopen_logs();
        log::info!("SIGHUP: no configuration file (-c) to reload");
        return;
    };
    let mut config = match Config::load(path) {
        Ok((config, warnings)) => {
            for w in warnings {
                log::warn!("{w}");
            }
            config
        }
        Err(e) => {
            reopen_logs();
            log::error!("SIGHUP: {e}; carrying on with the running configuration");
            return;
        }
    };
    apply_cli(&mut config, cli);
    if let Err(e) = shardmq::logging::init(&config, cli.verbose) {
        reopen_logs();
        log::error!("SIGHUP: {e}; logging carries on with the running settings");
    }
    match reloader.reload(config) {
        Ok(n) => log::info!(
            "SIGHUP: reloaded {}: logging, listener settings, sys_interval and {n} bridge(s) applied; other settings take effect at the next start",
            path.display()
        ),
        Err(e) => log::error!("SIGHUP: {e}"),
    }
}
