//! MQTT.js (`npm install -g mqtt@5`), a second independent MQTT 5.0
//! client: a test hands [`run`] a short Node script that uses `mqtt` (with
//! `PORT` and the other variables it sets) and reads what it printed.
//!
//! Skipped (with a message) when `node` or the `mqtt` package is missing,
//! except under CI (`CI` set), where that is a failure.

use std::io::Read;
use std::process::{Command, Stdio};
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
