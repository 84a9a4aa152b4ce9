//! Mosquitto 2.0 options shardmq recognises but does not support yet: each
//! use is a warning, never an error, so a `mosquitto.conf` moves over
//! unchanged. (Bridge options live in `bridge.rs`; `plugin_opt_*` and
//! `auth_opt_*` are matched by prefix in `directives.rs`.)

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
    global("connection_messages"),
    global("include_dir"),
    global("memory_limit"),
    global("pid_file"),
    global("retry_interval"),
    global("store_clean_interval"),
    global("sys_interval"),
    global("user"),
    // Persistence.
    // Logging.
    global("log_facility"),
    global("log_timestamp"),
    global("log_timestamp_format"),
    global("websockets_log_level"),
    // Security and plugins.
    per_listener("auth_plugin"),
    per_listener("auth_plugin_deny_special_chars"),
    per_listener("plugin"),
    per_listener("psk_file"),
    // Listeners.
    per_listener("bind_interface"),
    per_listener("http_dir"),
    per_listener("socket_domain"),
    per_listener("use_identity_as_username"),
    per_listener("use_subject_as_username"),
    per_listener("use_username_as_clientid"),
    // TLS and PSK on listeners.
    per_listener("cafile"),
    per_listener("capath"),
    per_listener("certfile"),
    per_listener("ciphers"),
    per_listener("ciphers_tls1.3"),
    per_listener("crlfile"),
    per_listener("dhparamfile"),
    per_listener("keyfile"),
    per_listener("psk_hint"),
    per_listener("require_certificate"),
    per_listener("tls_engine"),
    per_listener("tls_engine_kpass_sha1"),
    per_listener("tls_keyform"),
    per_listener("tls_version"),
];
