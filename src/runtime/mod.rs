//! The runtime seam: the only module that names mio (and rustls).
//!
//! Everything else in the crate boots shard threads, waits for I/O, timers
//! and peers, and does socket I/O through these re-exports and wrappers, so
//! that a change of runtime touches this folder alone. One readiness loop
//! runs per pinned shard thread (and per load-harness worker):
//!
//! - [`reactor`]: the loop ([`Reactor`]), the [`Driver`] trait a shard
//!   implements, the [`Wake`] line peers use to wake a parked shard, and
//!   the [`Registrar`] that registers sources.
//! - [`transport`]: non-blocking [`Transport`] (a connection's byte
//!   stream: TCP, TLS over TCP (client or server side), or MQTT over
//!   WebSockets),
//!   [`Listener`], outgoing [`connect_from`] (the load harness, the bridge)
//!   and [`Transport::tls_client`] on top of it (the bridge).
//! - [`tls`]: the bridge's TLS settings ([`TlsClientOptions`]: CA files,
//!   client certificate, version, ALPN, `insecure`) built into the
//!   configuration `tls_client` takes ([`tls::client_config`]).
//! - [`tls_server`]: a TLS listener's settings ([`TlsServerOptions`]:
//!   certificate, client CAs and CRLs, `require_certificate`, version) built
//!   into the configuration [`Transport::tls_server`] takes
//!   ([`tls_server::server_config`]), and a client certificate's subject
//!   CN ([`tls_server::common_name`]).
//!   `tls_stream` (private) drives one rustls client session over a
//!   socket, `tls_server_stream` (private) one server session (rustls'
//!   unbuffered API: no buffer while idle).
//! - [`websocket`]: the server side of one WebSocket connection
//!   ([`WsCodec`]: upgrade, frames, pings), with tungstenite's parser.
//! - [`spsc`]: the bounded queue per ordered pair of shards
//!   ([`MeshEnd`]), with wake-ups only into parking shards.
//! - [`thread`]: start a named thread pinned to a core.
//! - [`timer`]: a precise one-shot [`Timer`] (timerfd) for a loop that must
//!   act within microseconds (epoll's own timeout is whole milliseconds).

pub mod reactor;
pub mod spsc;
pub mod thread;
pub mod timer;
pub mod tls;
pub mod tls_server;
mod tls_server_stream;
mod tls_stream;
pub mod transport;
pub mod websocket;

pub use reactor::{Driver, Interest, Reactor, Readiness, Registrar, Token, Wake};
pub use rustls::ClientConfig as TlsClientConfig;
pub use rustls::ServerConfig as TlsServerConfig;
pub use spsc::{full_mesh, MeshEnd, TrySendError};
pub use thread::{available_cores, spawn_pinned};
pub use timer::Timer;
pub use tls::{client_config, TlsClientOptions, TlsConfigError};
pub use tls_server::{common_name, server_config, TlsServerOptions};
pub use transport::{connect_from, Listener, Transport};
pub use websocket::{WsCodec, WsLimits};
