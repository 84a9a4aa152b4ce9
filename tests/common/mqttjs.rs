//! MQTT.js (the `mqtt` npm package `.ci/test` installs globally) run by a
//! node script: an independent client for the MQTT 5.0 features
//! libmosquitto's clients lack (topic aliases from the server, AUTH).
//!
//! Every script must end itself: the [`PRELUDE`] exits with status 3 after
//! [`SCRIPT_LIMIT_MS`], so reading its output never blocks longer.

use std::io::{BufRead, BufReader, Lines};
use std::process::{ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::ChildGuard;

/// How long a script may run.
pub const SCRIPT_LIMIT_MS: u64 = 10_000;

/// Loaded before every script: `mqtt`, `url` (from argv) and the time limit.
const PRELUDE: &str = "const mqtt = require('mqtt');
const url = process.argv[1];
setTimeout(() => { console.log('timed out'); process.exit(3); }, LIMIT).unref();
";

/// A running node script, read line by line.
pub struct NodeScript {
    child: ChildGuard,
    lines: Lines<BufReader<ChildStdout>>,
}

impl NodeScript {
    /// Runs `script` (after the [`PRELUDE`]) with `url` as `process.argv[1]`.
    pub fn spawn(script: &str, url: &str) -> NodeScript {
        let root = Command::new("npm")
            .args(["root", "-g"])
            .output()
            .expect("npm runs (apt-get install nodejs npm; npm install -g mqtt@5)");
        let root = String::from_utf8_lossy(&root.stdout).trim().to_string();
        let prelude = PRELUDE.replace("LIMIT", &SCRIPT_LIMIT_MS.to_string());
        let mut child = ChildGuard(
            Command::new("node")
                .env("NODE_PATH", root)
                .args(["-e", &format!("{prelude}{script}"), url])
                .stdout(Stdio::piped())
                .spawn()
                .expect("node runs"),
        );
        let stdout = child.0.stdout.take().expect("stdout piped");
        NodeScript {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// The next line the script prints (it ends within its time limit).
    pub fn next_line(&mut self) -> String {
        match self.lines.next() {
            Some(Ok(line)) => line,
            other => panic!("node script ended without a line: {other:?}"),
        }
    }

    /// Waits for the script to exit.
    pub fn wait(mut self) -> ExitStatus {
        let limit = Duration::from_millis(SCRIPT_LIMIT_MS + 2_000);
        self.child.wait_within(limit, "node script")
    }
}
