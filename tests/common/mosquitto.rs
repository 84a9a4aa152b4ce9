//! A real Mosquitto broker as a child process on a free port: the upstream
//! of bridge tests, a TLS peer, a broker to compare with. Killed (and its
//! directory removed) on drop.
//!
//! [`Mosquitto::start`] skips (with a message) when `mosquitto` is not
//! installed, except under CI (`CI` set), where that is a failure;
//! [`Mosquitto::run`] requires it.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

const INSTALL: &str = "apt-get update && apt-get install -y mosquitto mosquitto-clients";

/// A running `mosquitto -c <conf>`; its log goes to `log()`.
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl Mosquitto {
    /// Starts one with the lines `conf` returns (given its fresh directory,
    /// to write the files its lines name) after its listener; `None`
    /// (after saying so) if mosquitto is not installed.
    pub fn start(test: &str, conf: impl FnOnce(&Path) -> String) -> Option<Mosquitto> {
        if !mosquitto_installed(test) {
            return None;
        }
        let port = free_port();
        let dir = temp_dir(&format!("mosquitto-{test}-{port}"));
        let extra = conf(&dir);
        Some(Mosquitto::launch(dir, port, &extra))
    }

    /// Mosquitto on a free port with anonymous access and `extra` lines.
    pub fn run(test: &str, extra: &str) -> Mosquitto {
        Mosquitto::run_on(test, free_port(), extra)
    }

    /// Mosquitto on `port` with anonymous access and `extra` lines (which
    /// may override `allow_anonymous`; `{dir}` in them is its own folder).
    pub fn run_on(test: &str, port: u16, extra: &str) -> Mosquitto {
        assert!(
            on_path("mosquitto"),
            "{test}: `mosquitto` is not installed; install it with `{INSTALL}`"
        );
        let dir = temp_dir(&format!("mosquitto-{test}-{port}"));
        let extra = extra.replace("{dir}", &dir.display().to_string());
        Mosquitto::launch(dir, port, &extra)
    }

    fn launch(dir: PathBuf, port: u16, extra: &str) -> Mosquitto {
        let conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n\
             log_dest stderr\nlog_type all\n{user}{extra}\n",
            // Started as root, Mosquitto would switch to its own user and
            // could not write its persistence file in our folder.
            user = if is_root() { "user root\n" } else { "" },
        );
        std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
        let mut m = Mosquitto {
            child: None,
            port,
            dir,
        };
        m.restart();
        m
    }

    /// Starts it (again, after [`Mosquitto::kill`]) and waits until it
    /// listens.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "mosquitto is already running");
        // stderr is unbuffered: the log is up to date when read.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))
            .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(self.dir.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run mosquitto ({e}); install it with `{INSTALL}`"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr()).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// kill -9, and reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Waits until its log has a line containing `text`.
    pub fn wait_log(&self, text: &str, within: Duration) {
        self.wait_log_times(text, 1, within);
    }

    /// Waits until it has saved its in-memory database (persistence on,
    /// `persistence_location` its folder): the log line comes before the
    /// write, so the file is waited for too.
    pub fn wait_saved(&self, within: Duration) {
        self.wait_log("Saving in-memory database", within);
        let db = self.dir.join("mosquitto.db");
        let deadline = Instant::now() + within;
        while !db.exists() {
            assert!(Instant::now() < deadline, "{} never written", db.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        // Written to a temporary file and renamed: once it is there, it is whole.
    }

    /// Waits until its log (across restarts) holds `text` `times` times.
    pub fn wait_log_times(&self, text: &str, times: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.log().matches(text).count() < times {
            assert!(
                Instant::now() < deadline,
                "mosquitto never logged {text:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// False (after saying so) when mosquitto is missing; under CI that fails.
pub fn mosquitto_installed(test: &str) -> bool {
    if on_path("mosquitto") {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: `mosquitto` is not installed; the test command installs it ({INSTALL})"
    );
    eprintln!("SKIPPED {test}: `mosquitto` is not installed ({INSTALL})");
    false
}

fn on_path(exe: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(exe).is_file()))
        .unwrap_or(false)
}

/// A fresh directory for `test`'s files (left from an earlier run: emptied).
pub fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shardmq-test-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
