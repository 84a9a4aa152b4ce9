//! A real Mosquitto broker as a child process on a free port: the upstream
//! of bridge tests (and a peer to compare with). Killed on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
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
    /// Mosquitto on a free port with anonymous access and `extra` lines.
    pub fn start(test: &str, extra: &str) -> Mosquitto {
        Mosquitto::start_on(test, free_port(), extra)
    }

    /// Mosquitto on `port` with anonymous access and `extra` lines (which
    /// may override `allow_anonymous`; `{dir}` in them is its own folder).
    pub fn start_on(test: &str, port: u16, extra: &str) -> Mosquitto {
        let dir =
            std::env::temp_dir().join(format!("shardmq-mosq-{}-{test}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let conf = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n\
             log_dest stderr\nlog_type all\n{user}{extra}\n",
            // Started as root, Mosquitto would switch to its own user and
            // could not write its persistence file in our folder.
            user = if is_root() { "user root\n" } else { "" },
            extra = extra.replace("{dir}", &dir.display().to_string())
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

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Waits until its log has a line containing `text`.
    pub fn wait_log(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(text) {
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
