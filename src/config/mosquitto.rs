//! Mosquitto 2.0 options shardmq recognises but does not support yet: each
//! use is a warning, never an error, so a `mosquitto.conf` moves over
//! unchanged. (Bridge options live in `bridge.rs`, listener TLS options,
//! supported or refused, in `tls.rs`; `plugin_opt_*` and `auth_opt_*` are
//! matched by prefix in `directives.rs`.)

use super::directives::{Directive, Scope};

const fn global(key: &'static str) -> Directive {
    Directive::unsupported(key, Scope::Global)
}

const fn per_listener(key: &'static str) -> Directive {
    Directive::unsupported(key, Scope::Listener)
}

/// Known, unsupported keys.
pub(super) const UNSUPPORTED: &[Directive] = &[
    // General.
    global("allow_duplicate_messages"),
    global("autosave_on_changes"),
    global("clientid_prefixes"),
    global("include_dir"),
    global("memory_limit"),
    global("pid_file"),
    global("retry_interval"),
    global("store_clean_interval"),
    global("user"),
    // Persistence.
    // Logging.
    global("log_facility"),
    global("websockets_log_level"),
    // Security and plugins.
    per_listener("auth_plugin"),
    per_listener("auth_plugin_deny_special_chars"),
    per_listener("plugin"),
    // Listeners.
    per_listener("bind_interface"),
    per_listener("http_dir"),
    per_listener("socket_domain"),
    per_listener("use_username_as_clientid"),
];
