//! Booting and stopping a broker: `start(config)` is what `main` calls and
//! what tests call with port 0 to run a whole broker in-process.
//!
//! Start-up, in order: raise the open-files limit to the hard limit; refuse
//! to start if any listener's port is already taken (the shards' sockets
//! set SO_REUSEPORT, which would otherwise silently share the port with
//! another broker), retrying a moment for a predecessor that just died;
//! create one SO_REUSEPORT socket per shard per listener; make every
//! shard's readiness loop and the mesh between them; start one thread per
//! shard, pinned to its core; wait until every shard is up. Anything that
//! fails returns an error and stops what was started.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::bridge::{self, BridgeControl, BridgeLoop, BridgeStatus, Local, StatusBoard};
use crate::config::{BridgeConfig, Config};
use crate::limits::{
    BRIDGE_COMMANDS, LISTEN_BACKLOG, MAX_LISTENERS, MAX_SHARDS, MESH_CAPACITY, RELOAD_TIMEOUT,
    RESTART_BIND_WAIT, START_TIMEOUT,
};
use crate::mesh::{Batch, Mesh};
use crate::metrics::exposition::Board;
use crate::metrics::http::Endpoint;
use crate::metrics::{self, ShardHistograms};
use crate::password::{self, ListenerPasswords, VerifierLine, Verifiers};
use crate::persist::state::{retained_entry, session_entries};
use crate::persist::{Durability, Entry, Generations, Journal};
use crate::runtime::{self, Listener, MeshEnd, Reactor, Registrar, Wake};
use crate::security::{AclError, AclTable};
use crate::shard::auth::AuthMethods;
use crate::shard::{
    home_shard, tls_config, tls_configs, Control, DurableBoot, DurableRecovered as Recovered,
    ListenerLoad, ListenerTlsConfigs, Reload, ReloadBoard, Shard, ShardLoop, StatsCell,
    StatsSnapshot,
};

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("listener {addr}: the port is already in use by another process (stop it, or choose another port with `listener <port>` or -p)")]
    PortInUse { addr: SocketAddr },
    #[error("listener {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("--shards {0}: expected 1..={max}", max = MAX_SHARDS - 1)]
    Shards(usize),
    #[error("{0} listeners configured: at most {MAX_LISTENERS} are supported")]
    Listeners(usize),
    #[error("starting shard {shard}: {source}")]
    Executor { shard: usize, source: io::Error },
    #[error("starting the shards: {0}")]
    Shard(String),
    /// A bridge that cannot run as configured (its TLS files, say).
    #[error("{0}")]
    Bridge(String),
    /// The journal directory cannot be read or written.
    #[error("persistence in {dir}: {source} (check persistence_location and its permissions)")]
    Persistence { dir: String, source: io::Error },
    /// An `acl_file` that cannot be read or parsed.
    #[error("{0}")]
    Acl(AclError),
    /// A password file that cannot be read or has a bad line.
    #[error("{0}")]
    Passwords(password::PasswordError),
    #[error("starting the password verifier threads: {0}")]
    Verifiers(io::Error),
    /// The `metrics_listener` cannot be bound or its thread started.
    #[error("{0} (check metrics_listener: the port may be in use)")]
    Metrics(io::Error),
    /// A TLS listener whose files cannot be used (`path:line: key file:
    /// reason`).
    #[error("{0}")]
    Tls(String),
}

/// A running broker. Dropping it does not stop it; call [`shutdown`].
///
/// [`shutdown`]: BrokerHandle::shutdown
pub struct BrokerHandle {
    addrs: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    stats: Vec<Arc<StatsCell>>,
    /// The Prometheus endpoint, with a `metrics_listener`.
    metrics: Option<Endpoint>,
    /// Each shard's wake-up line, then the bridge thread's: shutdown wakes
    /// them at once.
    wakes: Vec<Arc<Wake>>,
    shards: Vec<JoinHandle<()>>,
    bridge: Arc<BridgeControl>,
    bridge_thread: JoinHandle<()>,
    verifiers: Verifiers,
    reloader: Reloader,
    listener_load: Arc<ListenerLoad>,
}

/// Applies a reloaded configuration to a running broker (SIGHUP): what
/// changes live on every shard (see `shard::Reload`) and the bridge
/// sections. Cloneable and `Send`: a signal thread may own one.
#[derive(Clone)]
pub struct Reloader {
    board: Arc<ReloadBoard>,
    /// The data shards' wake-up lines.
    wakes: Vec<Arc<Wake>>,
    bridge: Arc<BridgeControl>,
    /// The password files the shards use now, per listener (control plane
    /// only: a reload's file that fails keeps the one here).
    passwords: Arc<Mutex<ListenerPasswords>>,
    /// The TLS configuration each listener has now: what a listener keeps
    /// when its reloaded files cannot be used. Locked once per reload.
    tls: Arc<Mutex<ListenerTlsConfigs>>,
}

impl Reloader {
    /// Applies `config`: every shard has the new settings when this
    /// returns `Ok` (at most [`RELOAD_TIMEOUT`] later), and the bridge
    /// thread has its sections. Connected clients stay connected. Password
    /// files are read here, once; one that cannot be loaded keeps the
    /// file loaded before (and the log says why). Returns the number of
    /// bridge sections applied.
    ///
    /// TLS listeners read their files again: new handshakes use the new
    /// certificate, established sessions keep theirs. A listener whose new
    /// files cannot be used keeps its current configuration, and the
    /// reason is logged.
    pub fn reload(&self, config: Config) -> Result<usize, String> {
        let bridges = config.bridges.clone();
        let n = bridges.len();
        let acl = match AclTable::load(&config) {
            Ok(table) => Some(table),
            Err(e) => {
                log::error!("reload: {e}; the ACL rules in force stay until a reload reads it");
                None
            }
        };
        let passwords = {
            let mut current = self.passwords.lock().unwrap_or_else(|e| e.into_inner());
            *current = password::reload_for(&config, &current);
            current.clone()
        };
        let wake = || self.wakes.iter().for_each(|w| w.force());
        let mut current = self.tls.lock().unwrap_or_else(|e| e.into_inner());
        let tls: ListenerTlsConfigs = config
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let kept = || current.get(i).cloned().flatten();
                match l.tls.as_ref().map(tls_config) {
                    None => None,
                    Some(Ok(new)) => Some(new),
                    Some(Err(e)) => {
                        log::error!(
                            "reload: {e}; listener {} keeps its current TLS settings",
                            l.addr
                        );
                        kept()
                    }
                }
            })
            .collect();
        *current = tls.clone();
        drop(current);
        let reload = Reload {
            config,
            acl,
            passwords,
            tls,
        };
        self.board
            .post(reload, wake, RELOAD_TIMEOUT)
            .map_err(|e| format!("settings not applied everywhere: {e}"))?;
        self.bridge
            .reload(bridges)
            .map_err(|e| format!("bridges not reloaded: {e}"))?;
        Ok(n)
    }
}

impl BrokerHandle {
    /// The bound address of each listener (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The flag that stops the broker when set (for signal handlers).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Where the metrics endpoint listens (port 0 resolved), if it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(Endpoint::addr)
    }

    /// Each shard's counters as last published (every 100 ms tick).
    pub fn stats(&self) -> Vec<StatsSnapshot> {
        self.stats.iter().map(|s| s.read()).collect()
    }

    /// How often each shard's loop was woken out of its wait by another
    /// thread (mesh peers, the control plane): a shard is woken only when
    /// it has said it is parking.
    pub fn wakeups(&self) -> Vec<u64> {
        self.wakes[..self.shards.len()]
            .iter()
            .map(|w| w.wake_count())
            .collect()
    }

    /// Each bridge link's state and counters, as the bridge thread last
    /// published them (every 100 ms tick).
    pub fn bridges(&self) -> Vec<BridgeStatus> {
        self.bridge.statuses()
    }

    /// Applies reloaded `connection` sections: links added, removed or
    /// changed are started, stopped or restarted; the others, and every
    /// local client, are left alone. Returns once the bridge thread has the
    /// request.
    pub fn reload_bridges(&self, bridges: Vec<BridgeConfig>) -> Result<(), String> {
        self.bridge.reload(bridges)
    }

    /// The bridge thread's control handle, for a reload signal handler
    /// that outlives this handle's owner.
    pub fn bridge_control(&self) -> Arc<BridgeControl> {
        Arc::clone(&self.bridge)
    }

    /// The handle that applies a reloaded configuration (see [`Reloader`]).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Applies a reloaded configuration (see [`Reloader::reload`]).
    pub fn reload(&self, config: Config) -> Result<usize, String> {
        self.reloader.reload(config)
    }

    /// Connections open on each listener now (over every shard; what each
    /// listener's `max_connections` is checked against), in
    /// [`local_addrs`](BrokerHandle::local_addrs) order.
    pub fn listener_connections(&self) -> Vec<usize> {
        self.listener_load.open()
    }

    /// Number of shards running.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Stops the broker: wills are published, 5.0 clients get DISCONNECT
    /// "server shutting down", sockets close; returns when every shard exited.
    pub fn shutdown(self) -> io::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for w in &self.wakes {
            w.force();
        }
        self.wait()
    }

    /// Waits until the broker stops (its stop flag was set elsewhere).
    pub fn wait(self) -> io::Result<()> {
        for (i, shard) in self.shards.into_iter().enumerate() {
            shard
                .join()
                .map_err(|_| io::Error::other(format!("shard {i} panicked")))?;
        }
        // Scrapes are answered until the shards are gone.
        if let Some(endpoint) = self.metrics {
            endpoint.stop();
        }
        // Every shard, and so every job sender, is gone: they end.
        self.verifiers.join();
        self.bridge_thread
            .join()
            .map_err(|_| io::Error::other("the bridge thread panicked"))
    }
}

/// What a program embedding the broker gives it besides its
/// configuration: the plug-ins.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// MQTT 5.0 enhanced authentication methods, by the name clients send
    /// as their Authentication Method (none by default: such a CONNECT is
    /// refused with 0x8C).
    pub auth: AuthMethods,
}

/// Starts a broker with `config` and returns once every shard is serving.
pub fn start(config: Config) -> Result<BrokerHandle, StartError> {
    start_with(config, StartOptions::default())
}

/// [`start`] with plug-ins: enhanced authentication methods.
pub fn start_with(config: Config, options: StartOptions) -> Result<BrokerHandle, StartError> {
    // Every listener limited: their sum bounds the sockets clients hold.
    let limits: Option<usize> = config
        .listeners
        .iter()
        .map(|l| l.max_connections)
        .try_fold(0usize, |sum, max| Some(sum.saturating_add(max?)));
    raise_open_files_limit(limits);
    let cores = runtime::available_cores();
    let shards = config.shards.unwrap_or(cores.len().max(1));
    // The bridge thread is one more mesh peer.
    if shards == 0 || shards >= MAX_SHARDS {
        return Err(StartError::Shards(shards));
    }
    if config.listeners.len() > MAX_LISTENERS {
        return Err(StartError::Listeners(config.listeners.len()));
    }
    for b in &config.bridges {
        bridge::tls_settings(b).map_err(StartError::Bridge)?;
    }
    let acl = AclTable::load(&config).map_err(StartError::Acl)?;
    let passwords = password::load_for(&config).map_err(StartError::Passwords)?;
    let tls = tls_configs(&config).map_err(StartError::Tls)?;
    let mut addrs = Vec::with_capacity(config.listeners.len());
    let mut sockets: Vec<Vec<OwnedFd>> = (0..shards).map(|_| Vec::new()).collect();
    for listener in &config.listeners {
        let (addr, fds) = shard_listeners(listener.addr, shards, config.set_tcp_nodelay)?;
        addrs.push(addr);
        for (shard, fd) in fds.into_iter().enumerate() {
            sockets[shard].push(fd);
        }
    }
    // Everything a shard needs that can fail is made here, before any
    // thread starts: a failure is then a plain error with nothing to stop.
    let peers = shards + 1;
    let reactors = (0..peers)
        .map(|shard| Reactor::new().map_err(|source| StartError::Executor { shard, source }))
        .collect::<Result<Vec<_>, _>>()?;
    let wakes: Vec<Arc<Wake>> = reactors.iter().map(Reactor::wake_handle).collect();
    let registrars = reactors
        .iter()
        .enumerate()
        .map(|(shard, r)| {
            r.registrar()
                .map_err(|source| StartError::Executor { shard, source })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ends = runtime::full_mesh(&wakes, MESH_CAPACITY);
    let stop = Arc::new(AtomicBool::new(false));
    let stats: Vec<Arc<StatsCell>> = (0..shards).map(|_| Arc::default()).collect();
    let all_stats: Arc<[Arc<StatsCell>]> = stats.iter().cloned().collect();
    let histograms: Vec<Arc<ShardHistograms>> = (0..shards).map(|_| Arc::default()).collect();
    let metrics_socket = config
        .metrics_listener
        .map(metrics::http::bind)
        .transpose()
        .map_err(StartError::Metrics)?;
    let reload = Arc::new(ReloadBoard::new(shards));
    let listener_load = Arc::new(ListenerLoad::new(config.listeners.len()));
    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<(), String>>(peers);
    let mut handles = Vec::with_capacity(peers);
    let mut reactors = reactors;
    let mut registrars = registrars;
    let mut ends = ends;
    let (mut setup, control) = bridge_setup(&config, &stop, &wakes[shards]);
    if let Some(dir) = config.journal_dir() {
        let boot = open_bridge_journal(&dir, &config, &wakes[shards]).map_err(|source| {
            StartError::Persistence {
                dir: dir.display().to_string(),
                source,
            }
        })?;
        setup.durable = Some(boot);
    }
    let (threads, queue) = (config.password_check_threads, config.password_check_queue);
    let (verifiers, jobs) = Verifiers::start(threads, queue).map_err(StartError::Verifiers)?;
    let bridge_boot = BridgeBoot {
        reactor: reactors.pop().expect("one reactor per peer"),
        registrar: registrars.pop().expect("one registrar per peer"),
        end: ends.pop().expect("one mesh end per peer"),
        shards,
        setup,
        ready: ready_tx.clone(),
    };
    let bridge_core = core_for(&cores, shards);
    let mut durable = match config.journal_dir() {
        Some(dir) => recover(&dir, shards, config.persistence_sync, &wakes)
            .map_err(|source| StartError::Persistence {
                dir: dir.display().to_string(),
                source,
            })?
            .into_iter()
            .map(Some)
            .collect(),
        None => Vec::new(),
    };
    durable.resize_with(shards, || None);
    let parts = reactors
        .into_iter()
        .zip(registrars)
        .zip(ends)
        .zip(sockets)
        .zip(durable);
    for (shard, ((((reactor, registrar), end), fds), durable)) in parts.enumerate() {
        let core = core_for(&cores, shard);
        let boot = ShardBoot {
            config: config.clone(),
            reactor,
            registrar,
            end,
            fds,
            control: Control {
                stop: Arc::clone(&stop),
                stats: Arc::clone(&stats[shard]),
                all_stats: Arc::clone(&all_stats),
                histograms: Arc::clone(&histograms[shard]),
                auth: options.auth.clone(),
                reload: Arc::clone(&reload),
                durable,
                listener_load: Arc::clone(&listener_load),
                acl: acl.clone(),
                passwords: passwords.clone(),
                verifier: VerifierLine::new(
                    jobs.clone(),
                    queue + threads,
                    Arc::clone(&wakes[shard]),
                ),
                tls: tls.clone(),
            },
            ready: ready_tx.clone(),
        };
        match runtime::spawn_pinned(format!("shard-{shard}"), core, move || {
            boot.run(shard, shards)
        }) {
            Ok(handle) => handles.push(handle),
            Err(source) => {
                abort_start(&stop, &wakes, handles);
                return Err(StartError::Executor { shard, source });
            }
        }
    }
    let bridge_thread =
        match runtime::spawn_pinned("bridge".into(), bridge_core, move || bridge_boot.run()) {
            Ok(handle) => handle,
            Err(source) => {
                abort_start(&stop, &wakes, handles);
                return Err(StartError::Executor {
                    shard: shards,
                    source,
                });
            }
        };
    handles.push(bridge_thread);
    // Only the threads hold senders now: one that dies before it reports
    // ends the wait instead of hanging it.
    drop(ready_tx);
    let deadline = Instant::now() + START_TIMEOUT;
    for _ in 0..peers {
        let failure = match ready_rx.recv_deadline(deadline) {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => e,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                format!("not every shard was up after {START_TIMEOUT:?}")
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                "a shard exited during start-up".to_string()
            }
        };
        abort_start(&stop, &wakes, handles);
        return Err(StartError::Shard(failure));
    }
    // Only the shards hold job senders now: the threads end with them.
    drop(jobs);
    let metrics = match metrics_socket {
        Some(socket) => {
            let board = Board {
                stats: stats.clone(),
                histograms,
            };
            match Endpoint::start(socket, board) {
                Ok(endpoint) => Some(endpoint),
                Err(e) => {
                    abort_start(&stop, &wakes, handles);
                    return Err(StartError::Metrics(e));
                }
            }
        }
        None => None,
    };
    log::info!("shardmq listening on {addrs:?} with {shards} shard(s)");
    log_security(&config, &addrs, &passwords);
    let bridge_thread = handles.pop().expect("the bridge thread was started");
    Ok(BrokerHandle {
        addrs,
        stop,
        stats,
        metrics,
        reloader: Reloader {
            board: reload,
            wakes: wakes[..shards].to_vec(),
            bridge: Arc::clone(&control),
            passwords: Arc::new(Mutex::new(passwords)),
            tls: Arc::new(Mutex::new(tls)),
        },
        verifiers,
        wakes,
        shards: handles,
        bridge: control,
        bridge_thread,
        listener_load,
    })
}

/// Recovers the journal generation in `dir` (whatever shard count wrote
/// it), writes it back as the next generation split among `shards` shards
/// (the live state only: this is also compaction), and opens each shard's
/// journal on it, its writer waking the shard through `wakes`.
fn recover(
    dir: &std::path::Path,
    shards: usize,
    durability: Durability,
    wakes: &[Arc<Wake>],
) -> io::Result<Vec<DurableBoot>> {
    std::fs::create_dir_all(dir)?;
    let generations = Generations::new(dir);
    let g = generations.current()?;
    let started = Instant::now();
    let state = generations.read(g)?;
    for line in &state.damage {
        log::warn!("persistence: {line}");
    }
    let mut parts: Vec<Recovered> = (0..shards).map(|_| Recovered::default()).collect();
    let mut files: Vec<Vec<Entry>> = vec![Vec::new(); shards];
    let mut next = vec![1u64; shards];
    for (client_id, s) in state.sessions {
        let k = home_shard(&client_id, shards);
        let first = next[k];
        files[k].extend(session_entries(&client_id, &s, &mut next[k]));
        let ids = (first..next[k]).collect();
        parts[k].sessions.push((client_id, s, ids));
    }
    for (topic, r) in &state.retained {
        files[home_shard(topic, shards)].push(retained_entry(topic, r));
    }
    let retained: Vec<_> = state.retained.into_iter().collect();
    generations.install(g + 1, &files)?;
    let mut boots = Vec::with_capacity(shards);
    for (k, recovered) in parts.into_iter().enumerate() {
        let mut recovered = recovered;
        recovered.retained = retained.clone();
        let wake = Arc::clone(&wakes[k]);
        let journal = Journal::open_written(
            &generations.dir_of(g + 1),
            k as u16,
            durability,
            move || wake.notify(),
        )?;
        boots.push(DurableBoot {
            journal,
            next: next[k],
            recovered,
        });
    }
    log::info!(
        "persistence: recovered generation {g} from {} in {:?}; journaling to generation {}",
        dir.display(),
        started.elapsed(),
        g + 1
    );
    Ok(boots)
}

/// Opens the bridge thread's journal in `dir` (cutting a torn tail) and
/// folds what it holds; its writer wakes the bridge thread through `wake`.
fn open_bridge_journal(
    dir: &std::path::Path,
    config: &Config,
    wake: &Arc<Wake>,
) -> io::Result<bridge::BridgeDurableBoot> {
    use crate::persist::bridge::{BridgeState, BRIDGE_FILE, BRIDGE_OWNER};
    std::fs::create_dir_all(dir)?;
    let wake = Arc::clone(wake);
    let (journal, recovered) = Journal::open_at(
        dir.join(BRIDGE_FILE),
        BRIDGE_OWNER,
        config.persistence_sync,
        move || wake.notify(),
    )?;
    Ok(bridge::BridgeDurableBoot {
        journal,
        state: BridgeState::fold(&recovered.records),
        compact_min: config.persistence_compact_size,
    })
}

/// One start-up line per listener saying who may connect: anonymous
/// clients or not, and the password file that checks user names.
fn log_security(
    config: &Config,
    addrs: &[SocketAddr],
    passwords: &[Option<Arc<password::PasswordDb>>],
) {
    for ((listener, addr), db) in config.listeners.iter().zip(addrs).zip(passwords) {
        let anonymous = if config.security_of(listener).allow_anonymous {
            "anonymous clients allowed"
        } else {
            "anonymous clients refused"
        };
        match db {
            Some(db) => log::info!(
                "listener {addr}: {anonymous}; user names checked against {} ({} users)",
                db.path().display(),
                db.len()
            ),
            None if config.security_of(listener).allow_anonymous => {
                log::info!("listener {addr}: {anonymous}; no password file")
            }
            None => log::info!(
                "listener {addr}: {anonymous}; no password file, so no client can connect \
                 without an enhanced authentication method (set password_file or allow_anonymous)"
            ),
        }
    }
}

/// The core thread `i` (a shard, or the bridge thread after them) is
/// pinned to: the cores in turn.
fn core_for(cores: &[usize], i: usize) -> Option<usize> {
    (!cores.is_empty()).then(|| cores[i % cores.len()])
}

/// What the bridge thread starts with, and the control plane's handle on it.
fn bridge_setup(
    config: &Config,
    stop: &Arc<AtomicBool>,
    wake: &Arc<Wake>,
) -> (bridge::Setup, Arc<BridgeControl>) {
    let (tx, rx) = crossbeam_channel::bounded(BRIDGE_COMMANDS);
    let board = Arc::new(StatusBoard::default());
    let control = Arc::new(BridgeControl::new(tx, Arc::clone(wake), Arc::clone(&board)));
    let setup = bridge::Setup {
        bridges: config.bridges.clone(),
        limits: bridge::Limits {
            max_messages: config.max_queued_messages,
            max_bytes: config.max_queued_bytes,
            overload_stall: (config.overload_policy == crate::config::OverloadPolicy::Backpressure)
                .then(|| Duration::from_secs(u64::from(config.overload_stall_timeout))),
        },
        queue_qos0: config.queue_qos0_messages,
        shared_strategy: config.shared_subscription_strategy,
        commands: rx,
        stop: Arc::clone(stop),
        board,
        wake: Arc::clone(wake),
        durable: None,
    };
    (setup, control)
}

/// What one shard thread is started with. Everything is `Send`; the shard
/// state built from it on the thread is not.
struct ShardBoot {
    config: Config,
    reactor: Reactor,
    registrar: Registrar,
    end: MeshEnd<Batch>,
    fds: Vec<OwnedFd>,
    control: Control,
    ready: crossbeam_channel::Sender<Result<(), String>>,
}

impl ShardBoot {
    /// The shard thread: builds the shard, reports, runs its loop until
    /// shutdown completes.
    fn run(self, id: usize, shards: usize) {
        let ShardBoot {
            config,
            mut reactor,
            registrar,
            end,
            fds,
            control,
            ready,
        } = self;
        let listeners = fds.into_iter().map(Listener::from_owned_fd).collect();
        let shard = Shard::new(
            config,
            Mesh::new(end, shards),
            registrar,
            listeners,
            control,
        );
        let mut driver = match ShardLoop::new(shard) {
            Ok(driver) => driver,
            Err(e) => {
                let _ = ready.send(Err(format!("shard {id}: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        drop(ready);
        // Log lines are written once per turn (see `LineBatch`), and what
        // is left when the loop ends, or the thread unwinds.
        let _lines = crate::logging::LineBatch::start();
        if let Err(e) = reactor.run(&mut driver) {
            log::error!("shard {id}: {e}; the shard stopped");
        }
    }
}

/// What the bridge thread is started with. Everything is `Send`.
struct BridgeBoot {
    reactor: Reactor,
    registrar: Registrar,
    end: MeshEnd<Batch>,
    shards: usize,
    setup: bridge::Setup,
    ready: crossbeam_channel::Sender<Result<(), String>>,
}

impl BridgeBoot {
    /// The bridge thread: builds its loop, reports, runs until shutdown.
    fn run(self) {
        let BridgeBoot {
            mut reactor,
            registrar,
            end,
            shards,
            setup,
            ready,
        } = self;
        let local = Local::new(Mesh::new(end, shards), setup.shared_strategy);
        let mut driver = BridgeLoop::new(local, registrar, setup);
        let _ = ready.send(Ok(()));
        drop(ready);
        if let Err(e) = reactor.run(&mut driver) {
            log::error!("bridge thread: {e}; every bridge stopped");
        }
    }
}

/// Stops the shards already started after a failed start, and waits for
/// them for at most [`START_TIMEOUT`]: one stuck is abandoned (and dies
/// with the process) rather than hanging the caller.
fn abort_start(stop: &AtomicBool, wakes: &[Arc<Wake>], handles: Vec<JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    for w in wakes {
        w.force();
    }
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(1);
    let joiner = std::thread::Builder::new()
        .name("start-abort".into())
        .spawn(move || {
            for h in handles {
                if h.join().is_err() {
                    log::warn!("a shard panicked while stopping after a failed start");
                }
            }
            let _ = done_tx.send(());
        });
    if joiner.is_ok() && done_rx.recv_timeout(START_TIMEOUT).is_err() {
        log::warn!("a shard did not stop after the failed start; abandoning it");
    }
}

/// Binds `addr` without SO_REUSEPORT to find out whether another process
/// holds it (a fixed port; port 0 needs no probe); returns `addr`.
///
/// A broker killed a moment ago still holds its listening sockets while the
/// kernel tears its connections down (a few hundred ms with many of them),
/// and a supervisor restarts it at once: so "in use" is retried for up to
/// [`RESTART_BIND_WAIT`] before it is reported.
fn probe_port(addr: SocketAddr) -> Result<SocketAddr, StartError> {
    let deadline = Instant::now() + RESTART_BIND_WAIT;
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(probe) => {
                return probe
                    .local_addr()
                    .map_err(|source| StartError::Listen { addr, source })
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                if Instant::now() >= deadline {
                    return Err(StartError::PortInUse { addr });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => return Err(StartError::Listen { addr, source }),
        }
    }
}

/// One SO_REUSEPORT socket per shard on `addr`, and the address they are
/// bound to. A fixed port is first checked for another process
/// ([`probe_port`]); port 0 is resolved by the first socket, which holds the
/// port while the others bind (a probe released and bound again could lose
/// the port to any socket in between).
fn shard_listeners(
    addr: SocketAddr,
    shards: usize,
    nodelay: bool,
) -> Result<(SocketAddr, Vec<OwnedFd>), StartError> {
    let addr = if addr.port() == 0 {
        addr
    } else {
        probe_port(addr)?
    };
    let first = reuseport_listener(addr, nodelay)?;
    let bound = first
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| StartError::Listen {
            addr,
            source: io::Error::other("the bound address is not an IP address"),
        })?;
    let mut fds = vec![OwnedFd::from(first)];
    for _ in 1..shards {
        fds.push(reuseport_listener(bound, nodelay)?.into());
    }
    Ok((bound, fds))
}

fn reuseport_listener(addr: SocketAddr, nodelay: bool) -> Result<Socket, StartError> {
    let err = |source| StartError::Listen { addr, source };
    let domain = if addr.is_ipv6() {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    socket.set_reuse_port(true).map_err(err)?;
    socket.set_reuse_address(true).map_err(err)?;
    // Inherited by every accepted socket (`set_tcp_nodelay`).
    socket.set_nodelay(nodelay).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(LISTEN_BACKLOG).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    Ok(socket)
}

/// Raises the soft open-files limit to the hard one; warns when
/// `max_connections` cannot fit under it.
pub fn raise_open_files_limit(max_connections: Option<usize>) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                log::warn!("cannot raise the open-files limit to {}", lim.rlim_max);
            }
        }
    }
    if let Some(max) = max_connections {
        if max as u64 > lim.rlim_cur {
            log::warn!(
                "max_connections {max} exceeds the open-files limit {}: connections beyond it will be refused (raise `ulimit -n`)",
                lim.rlim_cur
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `set_tcp_nodelay` is set on the listening socket only, once: every
    /// accepted socket must inherit it, on or off.
    #[test]
    fn accepted_sockets_inherit_set_tcp_nodelay() {
        for nodelay in [false, true] {
            let addr: SocketAddr = "127.0.0.1:0".parse().expect("an address");
            let socket = reuseport_listener(addr, nodelay).expect("binds");
            let listener = std::net::TcpListener::from(socket);
            listener.set_nonblocking(false).expect("blocking");
            let bound = listener.local_addr().expect("bound");
            let _client = std::net::TcpStream::connect(bound).expect("connects");
            let (accepted, _) = listener.accept().expect("accepts");
            assert_eq!(accepted.nodelay().expect("readable"), nodelay);
        }
    }
}
