//! Accepting: each shard owns its own SO_REUSEPORT socket per listener (the
//! kernel spreads new connections over the shards), registered with the
//! shard's loop under [`listener_token`].
//!
//! `max_connections` is per listener, as in Mosquitto, and counted over
//! every shard in [`ListenerLoad`]. A connection over the limit is closed
//! as soon as it is accepted, without a CONNACK: that is what Mosquitto
//! does (`net__socket_accept`: "Client connection from ... denied:
//! max_connections exceeded.", then the socket is closed), and it costs
//! the broker nothing more than the accept.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::conn::Conn;
use super::{Shard, Stats};
use crate::config::{Config, Listener, ListenerProtocol, ListenerTls, Security, TlsVersion};
use crate::limits::{ACCEPTS_PER_TURN, ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, MAX_LISTENERS};
use crate::password::PasswordDb;
use crate::protocol::QoS;
use crate::runtime::{Interest, TlsServerConfig, TlsServerOptions, Token, Transport, WsLimits};

/// Each listener's TLS configuration, indexed like `Config::listeners`
/// (`None`: plain TCP). Built by the control plane (at start and on each
/// reload) and shared by every shard.
pub type ListenerTlsConfigs = Vec<Option<Arc<TlsServerConfig>>>;

/// What the clients of one listener get (`max_qos`, `mount_point`,
/// `protocol`, `max_connections`, TLS, the settings `per_listener_settings`
/// scopes, and its password file loaded), resolved from the config once.
/// Shard-local: every shard holds its own, indexed like `Config::listeners`.
pub struct ListenerSettings {
    pub max_qos: QoS,
    /// Shared with every connection of the listener.
    pub mount: Option<Rc<str>>,
    pub security: Security,
    /// `protocol websockets`: the bounds of its WebSocket layer; `None`
    /// for plain MQTT.
    pub websocket: Option<WsLimits>,
    /// `max_connections`; `None` = unlimited.
    pub max_connections: Option<usize>,
    /// The `password_file` that applies, loaded by the control plane.
    pub passwords: Option<Arc<PasswordDb>>,
    /// A TLS listener's configuration: each accepted connection starts a
    /// server session with it (a reload swaps it for new handshakes).
    pub tls: Option<Arc<TlsServerConfig>>,
    /// `use_identity_as_username`: the client certificate's CN is the
    /// username (see `connect::Identity`).
    pub identity_as_username: bool,
}

/// Connections open on each listener, over every shard: what each
/// listener's `max_connections` is checked against. Shared by every shard
/// (`Sync`), indexed like `Config::listeners`.
///
/// One atomic per listener rather than a share of the limit per shard: the
/// kernel's SO_REUSEPORT hash does not spread connections evenly (with a
/// limit of 2 and 2 shards, both clients may land on one shard), and a
/// connection moves to its session's home shard after CONNECT, so per-shard
/// shares would refuse clients the limit allows. The atomic is touched
/// once on accept and once on close, never on the data path; contention is
/// only between shards accepting on the same listener at the same moment.
#[derive(Debug)]
pub struct ListenerLoad {
    /// Invariant: counts the connections of the listener that are in some
    /// shard's slab or in flight between two shards (a hand-over keeps its
    /// count; the home shard releases it when the connection closes).
    open: Vec<AtomicUsize>,
}

impl ListenerLoad {
    /// Counters for `listeners` listeners (at least one: a config without
    /// listeners has the default settings once).
    pub fn new(listeners: usize) -> ListenerLoad {
        ListenerLoad {
            open: (0..listeners.max(1)).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Counts one more connection on listener `i` if fewer than `limit` are
    /// open; false (nothing counted) when it is full.
    pub fn try_open(&self, i: usize, limit: Option<usize>) -> bool {
        let Some(open) = self.open.get(i) else {
            return true;
        };
        match limit {
            None => {
                open.fetch_add(1, Ordering::AcqRel);
                true
            }
            Some(max) => open
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max).then_some(n + 1)
                })
                .is_ok(),
        }
    }

    /// A connection of listener `i` closed.
    pub fn close(&self, i: usize) {
        if let Some(open) = self.open.get(i) {
            let before = open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            });
            debug_assert!(before.is_ok_and(|n| n > 0), "listener {i} count underflow");
        }
    }

    /// Connections open on each listener now.
    pub fn open(&self) -> Vec<usize> {
        self.open
            .iter()
            .map(|n| n.load(Ordering::Acquire))
            .collect()
    }
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
    /// `passwords` and `tls` are indexed alike (see
    /// [`crate::password::load_for`] and [`tls_configs`]).
    pub fn all(
        config: &Config,
        passwords: &[Option<Arc<PasswordDb>>],
        tls: &[Option<Arc<TlsServerConfig>>],
    ) -> Vec<ListenerSettings> {
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
                websocket: (l.protocol == ListenerProtocol::WebSockets).then_some(WsLimits {
                    headers: config.websockets_headers_size,
                    max_frame: config.max_packet_size as u64,
                }),
                max_connections: l.max_connections,
                passwords: passwords.get(i).cloned().flatten(),
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
                Ok((transport, peer)) => {
                    // TCP_NODELAY comes from the listener (Linux copies it
                    // to accepted sockets): no setsockopt per connection.
                    self.accept_backoff.set(std::time::Duration::ZERO);
                    Stats::bump(&self.stats.accepted);
                    self.admit_accepted(transport, peer, i);
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

    /// A connection just accepted on listener `i`: closed at once if the
    /// listener is at its `max_connections`, else counted, given its
    /// WebSocket layer if the listener has one, and adopted.
    fn admit_accepted(&self, transport: Transport, peer: SocketAddr, i: usize) {
        let (limit, websocket) = {
            let settings = self.listener_settings.borrow();
            let s = &settings[i.min(settings.len() - 1)];
            (s.max_connections, s.websocket)
        };
        if !self.listener_load.try_open(i, limit) {
            Stats::bump(&self.stats.refused);
            log::info!(
                "shard {}: client connection from {peer} denied: max_connections exceeded",
                self.id
            );
            return; // Dropping the transport closes the socket.
        }
        super::log_lines::new_connection(peer, self.listener_ports.get(i).copied().flatten());
        let Some(transport) = self.secure(transport, i) else {
            return self.listener_load.close(i);
        };
        let transport = match websocket {
            Some(limits) => match Transport::websocket(transport, limits) {
                Ok(t) => t,
                Err(e) => {
                    log::warn!("shard {}: {peer}: {e}", self.id);
                    return self.listener_load.close(i);
                }
            },
            None => transport,
        };
        self.adopt(transport, i as u8);
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
    /// `None` if it could not be registered (it is then closed). It holds
    /// one count of the listener's [`ListenerLoad`] until it closes.
    pub(super) fn adopt(&self, mut transport: Transport, listener: u8) -> Option<usize> {
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
            self.listener_load.close(usize::from(listener));
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
        let i = self.listener_index(token);
        let settings = self.listener_settings.borrow();
        Rc::clone(&settings[usize::from(i).min(settings.len() - 1)])
    }

    /// The index of the listener connection `token` came in on (0 if it
    /// is gone).
    pub(super) fn listener_index(&self, token: usize) -> u8 {
        self.conns.borrow().get(token).map_or(0, |c| c.listener)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_admits_up_to_its_limit_and_frees_on_close() {
        let load = ListenerLoad::new(2);
        assert!(load.try_open(0, Some(2)));
        assert!(load.try_open(0, Some(2)));
        assert!(!load.try_open(0, Some(2)), "the third is refused");
        assert!(load.try_open(1, Some(1)), "another listener counts apart");
        assert_eq!(load.open(), [2, 1]);
        load.close(0);
        assert!(load.try_open(0, Some(2)));
        // A lower limit refuses without touching what is open; none admits.
        assert!(!load.try_open(0, Some(1)));
        assert!(load.try_open(0, None));
        assert_eq!(load.open(), [3, 1]);
    }
}
