//! Feeds arbitrary text to the Mosquitto-format config parser.
//!
//! Run with `cargo +nightly fuzz run config` from the repository root.
//! Contract: no panic, and every error names the file and a line that
//! exists in the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardmq::config::{Config, ConfigError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse(text, "fuzz.conf") {
        Ok(_) => {}
        Err(ConfigError::Invalid { path, line, .. }) => {
            assert_eq!(path, "fuzz.conf");
            assert!(line >= 1 && line <= text.lines().count().max(1));
        }
        Err(ConfigError::Io { .. }) => panic!("parse does no I/O"),
    }
});
