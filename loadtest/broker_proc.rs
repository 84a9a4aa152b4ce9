//! Brokers that the harness starts itself (`compare`'s brokers, the
//! upstream that `bridge --kill-upstream` restarts): a command with
//! `{port}` / `{conf}` placeholders, run through `sh -c exec ...`,
//! (or `{metrics_conf}`: `{conf}` with a shardmq `metrics_listener` on a
//! free port, which `compare` then scrapes, see [`BrokerProc::metrics_url`]),
//! optionally pinned to cores, waited for until its port accepts
//! connections, and killed on drop (or with the harness, if it is killed).

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{LoadError, Result};

/// How long a started broker may take to accept connections.
pub const STARTUP: Duration = Duration::from_secs(10);
/// How long a broker may take to exit after SIGTERM before SIGKILL.
const SHUTDOWN: Duration = Duration::from_secs(3);
/// How often a starting broker's port is tried: "listening" is known to
/// within this much (a connect to a closed loopback port fails at once).
const LISTEN_POLL: Duration = Duration::from_millis(5);

/// A running broker child process; killed when dropped.
pub struct BrokerProc {
    child: Child,
    pub port: u16,
    /// The `metrics_listener` port, when the command names `{metrics_conf}`.
    metrics_port: Option<u16>,
    /// Holds the generated config and the broker's log.
    dir: PathBuf,
}

impl BrokerProc {
    /// Starts `template` (see module docs) on a free port, pinned to
    /// `cores` if given.
    pub fn start(name: &str, template: &str, cores: Option<&[usize]>) -> Result<BrokerProc> {
        BrokerProc::start_on(name, template, cores, free_port()?)
    }

    /// Starts `template` on `port`; returns once the port accepts
    /// connections.
    pub fn start_on(
        name: &str,
        template: &str,
        cores: Option<&[usize]>,
        port: u16,
    ) -> Result<BrokerProc> {
        let dir =
            std::env::temp_dir().join(format!("shardmq-load-{}-{name}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(LoadError::io(format!("creating {}", dir.display())))?;
        let conf = dir.join("broker.conf");
        std::fs::write(&conf, config_text(port))
            .map_err(LoadError::io(format!("writing {}", conf.display())))?;
        let metrics_port = if template.contains("{metrics_conf}") {
            Some(free_port()?)
        } else {
            None
        };
        let metrics_conf = dir.join("broker-metrics.conf");
        if let Some(mport) = metrics_port {
            let text = format!("{}metrics_listener {mport} 127.0.0.1\n", config_text(port));
            std::fs::write(&metrics_conf, text)
                .map_err(LoadError::io(format!("writing {}", metrics_conf.display())))?;
        }
        let command = template
            .replace("{port}", &port.to_string())
            .replace("{metrics_conf}", &metrics_conf.to_string_lossy())
            .replace("{conf}", &conf.to_string_lossy());
        let log = File::create(dir.join("broker.log"))
            .map_err(LoadError::io("creating the broker log"))?;
        let log2 = log
            .try_clone()
            .map_err(LoadError::io("creating the broker log"))?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("exec {command}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let cores = cores.map(<[usize]>::to_vec);
        // SAFETY: only async-signal-safe calls (prctl, sched_setaffinity)
        // run in the child.
        unsafe {
            cmd.pre_exec(move || {
                die_with_parent()?;
                cores.as_deref().map_or(Ok(()), pin_self)
            })
        };
        let child = cmd
            .spawn()
            .map_err(LoadError::io(format!("starting broker {name}: {command}")))?;
        let mut proc = BrokerProc {
            child,
            port,
            metrics_port,
            dir,
        };
        proc.wait_listening(name, &command)?;
        Ok(proc)
    }

    /// The broker's address.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker's metrics endpoint, if started with `{metrics_conf}`.
    pub fn metrics_url(&self) -> Option<String> {
        self.metrics_port
            .map(|p| format!("http://127.0.0.1:{p}/metrics"))
    }

    /// The broker's process id (the command was exec'd by sh).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn wait_listening(&mut self, name: &str, command: &str) -> Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + STARTUP;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(LoadError::Run(format!(
                    "broker {name} ({command}) exited with {status} before listening; its log: {}",
                    self.log_tail()
                )));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(LISTEN_POLL);
        }
        Err(LoadError::Run(format!(
            "broker {name} ({command}) did not listen on port {} within {STARTUP:?}; its log: {}",
            self.port,
            self.log_tail()
        )))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + SHUTDOWN;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The generated `{conf}`: Mosquitto syntax, which shardmq also reads.
fn config_text(port: u16) -> String {
    format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n")
}

/// A port that was free a moment ago.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(LoadError::io("finding a free port"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(LoadError::io("finding a free port"))
}

/// Has the calling (child) process killed when the harness ends, however
/// it ends, so that a started broker does not outlive the run. (Linux
/// clears this when the process changes its user, as Mosquitto started as
/// root does: such a broker outlives a harness killed by a signal.)
fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number, nothing else.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Pins the calling process to `cores`.
fn pin_self(cores: &[usize]) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET stays in bounds
    // for ids below CPU_SETSIZE, which we check.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cores.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}
