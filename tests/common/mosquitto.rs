//! A Mosquitto broker run as a child process on a free port, for tests
//! against the reference implementation. Tests that need one are skipped
//! (with a message) when `mosquitto` is not installed, except under CI
//! (`CI` set), where that is a failure.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

/// A Mosquitto child listening on 127.0.0.1:`port`, killed (and its
/// directory removed) on drop.
pub struct Mosquitto {
    pub child: Child,
    pub port: u16,
    /// Its working directory: `mosquitto.conf` and the files it names.
    pub dir: PathBuf,
}

impl Mosquitto {
    /// Starts one with `conf`'s lines after its listener (`conf` gets the
    /// fresh directory, to write the files its lines name), and waits until
    /// it listens; `None` (after saying so) if mosquitto is not installed.
    pub fn start(test: &str, conf: impl FnOnce(&Path) -> String) -> Option<Mosquitto> {
        if !mosquitto_installed(test) {
            return None;
        }
        let port = free_port();
        let dir = temp_dir(&format!("mosquitto-{test}"));
        let lines = conf(&dir);
        let path = dir.join("mosquitto.conf");
        std::fs::write(
            &path,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\n{lines}"),
        )
        .unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        let m = Mosquitto { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(m)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        "{test}: `mosquitto` is not installed; the test command installs it (apt-get install -y mosquitto)"
    );
    eprintln!("SKIPPED {test}: `mosquitto` is not installed (apt-get install mosquitto)");
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
