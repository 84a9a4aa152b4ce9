//! MQTT.js (`npm install -g mqtt@5`, which `.ci/test` installs), a second
//! independent MQTT 5.0 client, also for the features libmosquitto's
//! clients lack (topic aliases from the server, AUTH):
//! - [`run`] hands it a short Node script that uses `mqtt` (with `PORT`
//!   and the other variables it sets) and reads what it printed; skipped
//!   (with a message) when Node or the `mqtt` package is missing, except
//!   under CI (`CI` set), where that is a failure;
//! - [`NodeScript`] runs one read line by line while the test goes on;
//!   the [`PRELUDE`] exits with status 3 after [`SCRIPT_LIMIT_MS`], so
//!   reading its output never blocks longer.

use std::io::{BufRead, BufReader, Lines, Read};
use std::process::{ChildStdout, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::ChildGuard;

const INSTALL: &str = "apt-get install -y nodejs npm && npm install -g mqtt@5";

/// How long a script may run.
const LIMIT: Duration = Duration::from_secs(15);

/// Where `npm install -g` put its packages, if Node and MQTT.js are there.
fn global_modules() -> Option<String> {
    let out = Command::new("npm").args(["root", "-g"]).output().ok()?;
    let root = String::from_utf8(out.stdout).ok()?.trim().to_string();
    let found = std::path::Path::new(&root).join("mqtt").is_dir();
    (out.status.success() && found).then_some(root)
}

/// Runs `script` with `node`, `require('mqtt')` resolvable and `env` set
/// (`PORT` among them, say); fails the test if it exits with an error or
/// runs past 15 s; returns its standard output. `None` (after saying so)
/// where MQTT.js is not installed.
pub fn run(test: &str, script: &str, env: &[(&str, &str)]) -> Option<String> {
    let Some(modules) = global_modules() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: MQTT.js is not installed; the test command installs it ({INSTALL})"
        );
        eprintln!("SKIPPED {test}: MQTT.js is not installed ({INSTALL})");
        return None;
    };
    let mut child = ChildGuard(
        Command::new("node")
            .args(["-e", script])
            .env("NODE_PATH", modules)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{test}: cannot run node ({e}); {INSTALL}")),
    );
    // Both pipes are read after the exit: scripts print a few lines only.
    let status = child.wait_within(LIMIT, test);
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut s) = child.0.stdout.take() {
        s.read_to_string(&mut out).expect("node stdout");
    }
    if let Some(mut s) = child.0.stderr.take() {
        s.read_to_string(&mut err).expect("node stderr");
    }
    assert!(status.success(), "{test}: node {status}: {err}\n{out}");
    Some(out)
}

/// How long a [`NodeScript`] may run.
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
        let root =
            global_modules().unwrap_or_else(|| panic!("MQTT.js is not installed: {INSTALL}"));
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
