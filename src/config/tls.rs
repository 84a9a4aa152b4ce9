//! A listener's TLS keys, as Mosquitto names them: `certfile` and `keyfile`
//! make a listener TLS; `cafile`, `capath`, `crlfile`, `require_certificate`,
//! `use_identity_as_username` and `tls_version` refine it.
//!
//! Only the settings are checked here (pairs, combinations, values); the
//! files are read when the broker starts and on each reload
//! (`runtime::tls_server::server_config`), and their errors name this file
//! and line through [`ListenerTls::origin`].
//!
//! Mosquitto keys rustls cannot honour:
//!
//! - Refused (the broker would not do what the file asks, in a way that
//!   matters for security or for who may connect): `psk_hint`, `psk_file`
//!   (no TLS-PSK in rustls), `tls_engine`, `tls_engine_kpass_sha1`,
//!   `tls_keyform engine` (no OpenSSL engines: the key must be a PEM file),
//!   `use_subject_as_username` (only the CN is supported),
//!   `tls_version tlsv1.1` (rustls does TLS 1.2 and 1.3 only).
//! - Warned and ignored (harmless: rustls' fixed choice is at least as
//!   strict): `ciphers`, `ciphers_tls1.3` (OpenSSL cipher lists; rustls
//!   offers only AEAD suites with forward secrecy), `dhparamfile` (rustls
//!   does no finite-field DHE: key exchange is ECDHE).

use std::path::PathBuf;

use super::directives::{Apply, ApplyFn, Directive, Scope};
use super::lexer::Line;
use super::parser::Parser;
use super::value;

/// The TLS version(s) a listener accepts (`tls_version`, Mosquitto's
/// listener meaning: exactly the version named; unset = 1.2 and 1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    /// `tlsv1.2`: TLS 1.2 only.
    Tls12,
    /// `tlsv1.3`: TLS 1.3 only.
    Tls13,
}

/// A listener's TLS settings, as written; present once any TLS key is
/// given, and then (after validation) with `certfile` and `keyfile` both
/// set. Part of [`super::Listener`]; read by the control plane, which
/// builds the rustls configuration from it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListenerTls {
    /// `certfile`: the server's certificate chain (PEM), leaf first.
    pub certfile: Option<PathBuf>,
    /// `keyfile`: its private key (PEM, unencrypted).
    pub keyfile: Option<PathBuf>,
    /// `cafile`: CA certificates that sign client certificates (PEM).
    pub cafile: Option<PathBuf>,
    /// `capath`: a directory of such CA certificates (PEM files).
    pub capath: Option<PathBuf>,
    /// `crlfile`: certificate revocation lists for client certificates (PEM).
    pub crlfile: Option<PathBuf>,
    /// `require_certificate`: clients must present a certificate signed by
    /// a CA of `cafile`/`capath`; default false (none is asked for).
    pub require_certificate: bool,
    /// `use_identity_as_username`: the client certificate's subject CN is
    /// the client's username, instead of the CONNECT's; no password check.
    pub use_identity_as_username: bool,
    /// `tls_version`; `None`: TLS 1.2 and 1.3.
    pub tls_version: Option<TlsVersion>,
    /// Where each key was set, for errors found when the files are read.
    pub origin: Origin,
}

/// The config file and the line of each TLS key it set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub path: String,
    /// `(key, line)`, in file order (a key set twice: its last line).
    pub lines: Vec<(&'static str, usize)>,
}

impl Origin {
    /// `path:line: ` of `key` (of the listener's first TLS key if `key`
    /// was not set), to prefix an error about it.
    pub fn of(&self, key: &str) -> String {
        format!("{}:{}: ", self.path, self.line(key))
    }

    /// The line of `key` (of the listener's first TLS key if `key` was
    /// not set).
    pub fn line(&self, key: &str) -> usize {
        self.lines
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .or(self.lines.first())
            .map_or(0, |(_, line)| *line)
    }
}

const fn listener(key: &'static str, apply: ApplyFn) -> Directive {
    Directive::new(key, Scope::Listener, Apply::Custom(apply))
}

/// The listener TLS keys, and the Mosquitto TLS keys refused or ignored.
pub(super) const DIRECTIVES: &[Directive] = &[
    listener("certfile", |p, l| path(p, l, |t| &mut t.certfile)),
    listener("keyfile", |p, l| path(p, l, |t| &mut t.keyfile)),
    listener("cafile", |p, l| path(p, l, |t| &mut t.cafile)),
    listener("capath", |p, l| path(p, l, |t| &mut t.capath)),
    listener("crlfile", |p, l| path(p, l, |t| &mut t.crlfile)),
    listener("require_certificate", |p, l| {
        flag(p, l, |t| &mut t.require_certificate)
    }),
    listener("use_identity_as_username", |p, l| {
        flag(p, l, |t| &mut t.use_identity_as_username)
    }),
    listener("tls_version", tls_version),
    listener("tls_keyform", tls_keyform),
    listener("ciphers", |p, l| {
        ignored(p, l, "OpenSSL cipher lists are not applied: rustls offers only AEAD suites with forward secrecy (AES-GCM, ChaCha20-Poly1305 over ECDHE)")
    }),
    listener("ciphers_tls1.3", |p, l| {
        ignored(p, l, "OpenSSL cipher lists are not applied: rustls' TLS 1.3 suites are AES-128-GCM, AES-256-GCM and ChaCha20-Poly1305")
    }),
    listener("dhparamfile", |p, l| {
        ignored(
            p,
            l,
            "rustls does no finite-field DHE (key exchange is ECDHE: X25519, P-256, P-384)",
        )
    }),
    listener("psk_hint", |_, _| {
        Err(refused(
            "TLS-PSK is not available with rustls: use certificates (certfile, keyfile)",
        ))
    }),
    listener("psk_file", |_, _| {
        Err(refused("TLS-PSK is not available with rustls: use certificates (certfile, keyfile, require_certificate)"))
    }),
    listener("tls_engine", |_, _| {
        Err(refused("OpenSSL engines are not available with rustls: give keyfile as an unencrypted PEM file"))
    }),
    listener("tls_engine_kpass_sha1", |_, _| {
        Err(refused("OpenSSL engines are not available with rustls: give keyfile as an unencrypted PEM file"))
    }),
    listener("use_subject_as_username", |_, _| {
        Err(refused(
            "use use_identity_as_username (the certificate's subject CN as the username)",
        ))
    }),
];

fn refused(why: &str) -> String {
    format!("not supported: {why}")
}

/// The current listener's TLS settings, recording `line` for `key`.
fn current<'p>(p: &'p mut Parser<'_>, line: &Line<'_>) -> &'p mut ListenerTls {
    let path = p.path().to_string();
    let key = DIRECTIVES
        .iter()
        .find(|d| d.key == line.key)
        .map_or("tls", |d| d.key);
    let tls = p
        .listeners
        .current(line.number, line.key)
        .tls
        .get_or_insert_with(ListenerTls::default);
    tls.origin.path = path;
    tls.origin.lines.push((key, line.number));
    tls
}

fn path(
    p: &mut Parser<'_>,
    line: &Line<'_>,
    field: fn(&mut ListenerTls) -> &mut Option<PathBuf>,
) -> Result<(), String> {
    let value = PathBuf::from(line.text("a path")?);
    *field(current(p, line)) = Some(value);
    Ok(())
}

fn flag(
    p: &mut Parser<'_>,
    line: &Line<'_>,
    field: fn(&mut ListenerTls) -> &mut bool,
) -> Result<(), String> {
    let on = value::boolean_line(line)?;
    *field(current(p, line)) = on;
    Ok(())
}

/// `tls_version tlsv1.2|tlsv1.3`.
fn tls_version(p: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    let version = match line.single("tlsv1.2 or tlsv1.3")? {
        "tlsv1.3" => TlsVersion::Tls13,
        "tlsv1.2" => TlsVersion::Tls12,
        "tlsv1.1" | "tlsv1" => return Err(refused(
            "rustls does TLS 1.2 and 1.3 only: use tlsv1.2, tlsv1.3, or leave it unset for both",
        )),
        other => {
            return Err(format!(
                "expected tlsv1.2 (TLS 1.2 only) or tlsv1.3 (TLS 1.3 only), got `{other}` \
                 (unset: both)"
            ))
        }
    };
    current(p, line).tls_version = Some(version);
    Ok(())
}

/// `tls_keyform pem|engine`: only `pem` (the default) is possible.
fn tls_keyform(_: &mut Parser<'_>, line: &Line<'_>) -> Result<(), String> {
    match value::choice(line.single("pem")?, &["pem", "engine"])? {
        "pem" => Ok(()),
        _ => Err(refused(
            "OpenSSL engines are not available with rustls: give keyfile as an unencrypted PEM file",
        )),
    }
}

fn ignored(p: &mut Parser<'_>, line: &Line<'_>, why: &str) -> Result<(), String> {
    p.warn(line.number, format!("{}: {why}; ignored", line.key));
    Ok(())
}

/// Checks one listener's keys together: `Err((line, key, reason))`.
pub(super) fn check(tls: &ListenerTls) -> Result<(), (usize, &'static str, String)> {
    let line_of = |key: &str| tls.origin.line(key);
    let first = tls
        .origin
        .lines
        .first()
        .map_or(("certfile", 0), |&(k, l)| (k, l));
    match (&tls.certfile, &tls.keyfile) {
        (Some(_), Some(_)) => {}
        (Some(_), None) => {
            return Err((
                line_of("certfile"),
                "certfile",
                "keyfile is not set in this listener: give the certificate's private key too"
                    .to_string(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                line_of("keyfile"),
                "keyfile",
                "certfile is not set in this listener: give the server certificate too".to_string(),
            ))
        }
        (None, None) => {
            return Err((
                first.1,
                first.0,
                "a TLS key on a listener without certfile and keyfile: set both to make it a \
                 TLS listener"
                    .to_string(),
            ))
        }
    }
    if tls.require_certificate && tls.cafile.is_none() && tls.capath.is_none() {
        return Err((
            line_of("require_certificate"),
            "require_certificate",
            "needs cafile or capath: the CA certificates that sign client certificates".to_string(),
        ));
    }
    if tls.use_identity_as_username && !tls.require_certificate {
        return Err((
            line_of("use_identity_as_username"),
            "use_identity_as_username",
            "needs require_certificate true: without it no client certificate is asked for, \
             and every client would be refused"
                .to_string(),
        ));
    }
    if tls.crlfile.is_some() && !tls.require_certificate {
        return Err((
            line_of("crlfile"),
            "crlfile",
            "needs require_certificate true: client certificates are checked against it only \
             when they are required"
                .to_string(),
        ));
    }
    Ok(())
}
