//! Accepting: each shard owns its own SO_REUSEPORT socket per listener (the
//! kernel spreads new connections over the shards), registered with the
//! shard's loop under [`listener_token`].

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::conn::Conn;
use super::{Shard, Stats};
use crate::config::{Config, Listener, ListenerTls, Security, TlsVersion};
use crate::limits::{ACCEPTS_PER_TURN, ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, MAX_LISTENERS};
use crate::protocol::QoS;
use crate::runtime::{Interest, TlsServerConfig, TlsServerOptions, Token, Transport};

/// Each listener's TLS configuration, indexed like `Config::listeners`
/// (`None`: plain TCP). Built by the control plane (at start and on each
/// reload) and shared by every shard.
pub type ListenerTlsConfigs = Vec<Option<Arc<TlsServerConfig>>>;

/// What the clients of one listener get (`max_qos`, `mount_point`, TLS, and
/// the settings `per_listener_settings` scopes), resolved from the config
/// once. Shard-local: every shard holds its own, indexed like
/// `Config::listeners`.
pub struct ListenerSettings {
    pub max_qos: QoS,
    /// Shared with every connection of the listener.
    pub mount: Option<Rc<str>>,
    pub security: Security,
    /// A TLS listener's configuration: each accepted connection starts a
    /// server session with it (a reload swaps it for new handshakes).
    pub tls: Option<Arc<TlsServerConfig>>,
    /// `use_identity_as_username`: the client certificate's CN is the
    /// username (see `connect::Identity`).
    pub identity_as_username: bool,
}

/// Reads the files of a TLS listener and builds its configuration; the
/// error names the config file, line, key and file, and the fix.
pub fn tls_config(tls: &ListenerTls) -> Result<Arc<TlsServerConfig>, String> {
    let opts = TlsServerOptions {
        certfile: tls.certfile.as_deref(),
        keyfile: tls.keyfile.as_deref(),
        cafile: tls.cafile.as_deref(),
        capath: tls.capath.as_deref(),
        crlfile: tls.crlfile.as_deref(),
        require_certificate: tls.require_certificate,
        tls_version: tls.tls_version.map(|v| match v {
            TlsVersion::Tls12 => "tlsv1.2",
            TlsVersion::Tls13 => "tlsv1.3",
        }),
    };
    crate::runtime::server_config(&opts).map_err(|e| format!("{}{e}", tls.origin.of(e.key())))
}

/// [`tls_config`] of every TLS listener of `config`.
pub fn tls_configs(config: &Config) -> Result<ListenerTlsConfigs, String> {
    config
        .listeners
        .iter()
        .map(|l| l.tls.as_ref().map(tls_config).transpose())
        .collect()
}

impl ListenerSettings {
    /// One entry per configured listener, in order, with its TLS
    /// configuration from `tls` (indexed alike); never empty (a config
    /// without listeners, which only tests build, gets the defaults once).
    pub fn all(config: &Config, tls: &[Option<Arc<TlsServerConfig>>]) -> Vec<ListenerSettings> {
        let defaults = [Listener::new(SocketAddr::from(([127, 0, 0, 1], 0)))];
        let listeners = if config.listeners.is_empty() {
            &defaults[..]
        } else {
            &config.listeners[..]
        };
        listeners
            .iter()
            .enumerate()
            .map(|(i, l)| ListenerSettings {
                max_qos: l.max_qos,
                mount: l.mount_point.as_deref().map(Rc::from),
                security: config.security_of(l),
                tls: tls.get(i).cloned().flatten(),
                identity_as_username: l.tls.as_ref().is_some_and(|t| t.use_identity_as_username),
            })
            .collect()
    }
}

/// The token of listener `i` (counted down from the top, far from the
/// connections' slab slots and below the reactor's own waker token).
pub fn listener_token(i: usize) -> Token {
    Token(usize::MAX - 1 - i)
}

/// The listener index of `token`, if it is one.
pub fn listener_index(token: Token) -> Option<usize> {
    let i = (usize::MAX - 1).checked_sub(token.0)?;
    (i < MAX_LISTENERS).then_some(i)
}

impl Shard {
    /// Registers this shard's listeners with its loop.
    pub(super) fn register_listeners(&self) -> std::io::Result<()> {
        for (i, listener) in self.listeners.borrow_mut().iter_mut().enumerate() {
            self.registrar
                .register(listener, listener_token(i), Interest::READABLE)?;
        }
        Ok(())
    }

    /// Accepts what every listener has waiting, at most [`ACCEPTS_PER_TURN`]
    /// each; more waiting is accepted from the pending work.
    pub(super) fn accept_all(&self) {
        self.accept_again.set(false);
        let n = self.listeners.borrow().len();
        for i in 0..n {
            self.accept_from(i);
        }
    }

    /// Accepts from listener `i`. Errors (EMFILE, ENFILE, ENOBUFS...) pause
    /// accepting with an exponential back-off instead of spinning.
    pub(super) fn accept_from(&self, i: usize) {
        if self.accept_paused.get().is_some() {
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            let accepted = match self.listeners.borrow().get(i) {
                Some(listener) => listener.accept(),
                None => return,
            };
            match accepted {
                Ok((transport, _peer)) => {
                    // TCP_NODELAY comes from the listener (Linux copies it
                    // to accepted sockets): no setsockopt per connection.
                    self.accept_backoff.set(std::time::Duration::ZERO);
                    Stats::bump(&self.stats.accepted);
                    if let Some(transport) = self.secure(transport, i) {
                        self.adopt(transport, i as u8);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    let backoff = (self.accept_backoff.get() * 2)
                        .clamp(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
                    self.accept_backoff.set(backoff);
                    self.accept_paused.set(Some(Instant::now() + backoff));
                    log::warn!(
                        "shard {}: accept failed: {e}; retrying in {backoff:?}",
                        self.id
                    );
                    return;
                }
            }
        }
        self.accept_again.set(true);
    }

    /// A TLS listener's connection starts its server session (the
    /// handshake runs in the loop as the client's bytes arrive, bounded by
    /// the CONNECT deadline); a TCP listener's stays as it is.
    fn secure(&self, transport: Transport, listener: usize) -> Option<Transport> {
        let tls = self
            .listener_settings
            .borrow()
            .get(listener)
            .and_then(|s| s.tls.clone());
        let Some(tls) = tls else {
            return Some(transport);
        };
        match Transport::tls_server(transport, tls) {
            Ok(transport) => Some(transport),
            Err(e) => {
                log::warn!("shard {}: {e}", self.id);
                None
            }
        }
    }

    /// Files a new connection (accepted here, or handed over) from
    /// listener `listener` in the slab and the loop; returns its token, or
    /// `None` if it could not be registered (it is then closed).
    pub(super) fn adopt(
        &self,
        mut transport: crate::runtime::Transport,
        listener: u8,
    ) -> Option<usize> {
        let serial = self.next_serial.get().wrapping_add(1);
        self.next_serial.set(serial);
        let mut conns = self.conns.borrow_mut();
        let entry = conns.vacant_entry();
        let token = entry.key();
        if let Err(e) = self
            .registrar
            .register(&mut transport, Token(token), Interest::READABLE)
        {
            log::warn!("shard {}: {e}", self.id);
            return None;
        }
        entry.insert(Conn::new(transport, serial, listener));
        drop(conns);
        self.connect_deadline((token, serial));
        Some(token)
    }

    /// The settings of the listener connection `token` came in on (the
    /// first listener's if it is gone: only read while it lives).
    pub(super) fn listener_of(&self, token: usize) -> Rc<ListenerSettings> {
        let i = self.conns.borrow().get(token).map_or(0, |c| c.listener);
        let settings = self.listener_settings.borrow();
        Rc::clone(&settings[usize::from(i).min(settings.len() - 1)])
    }
}
