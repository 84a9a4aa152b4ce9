//! The bridge: links from this broker to upstream MQTT brokers (EMQX,
//! Mosquitto, HiveMQ, another shardmq), configured with Mosquitto's
//! `connection` sections.
//!
//! One dedicated thread, pinned like a shard and running the same
//! readiness loop, owns every link. It is the last peer on the mesh:
//!
//! - **Out.** The thread subscribes, like a data shard would, to every
//!   link's `out` filters; a data shard that receives a matching PUBLISH
//!   forwards it over its SPSC queue once, however many links and lines
//!   match. Each link maps the topic and queues the message until the
//!   remote acknowledges it ([`queue`]).
//! - **In.** A message from a remote is published to the local broker as a
//!   data shard publishes one (retained update to every shard, one forward
//!   per shard with subscribers), then acknowledged to the remote (with
//!   persistence on, once those shards have journaled it).
//! - **Loops.** A link never sends out what it brought in; MQTT 5 remote
//!   subscriptions use No Local and Retain As Published; 3.x links use the
//!   bridge bit (`try_private`) and fall back when the remote refuses it.
//!
//! Connecting, retrying and TLS happen on this thread only (host name
//! lookups on helper threads it starts): a data shard never waits for a
//! remote.
//!
//! Layout:
//! - `driver.rs`: the thread's loop ([`BridgeLoop`]), reloads, shutdown.
//! - `local.rs`: the thread's view of the local broker (mesh, replicas).
//! - `link.rs`: one link's state machine (down, connecting, up), retries,
//!   failover; `upkeep.rs`: its deadlines (retry, keepalive, lazy idle,
//!   primary probe); `flow.rs`: what flows on an up link.
//! - `queue.rs`: the outgoing queue and inflight window, bounded.
//! - `pressure.rs`: overload without loss: an up link past its limits
//!   pauses the publishers feeding it; a link pressed by a local
//!   subscriber is not read.
//! - `durable.rs`: the bridge journal (persistence on): queues and QoS
//!   flows journaled, confirmations to the data shards, compaction.
//! - `routes.rs`: `topic` lines prepared for mapping.
//! - `packets.rs`: CONNECT, SUBSCRIBE, state notifications.
//! - `backoff.rs`: `restart_timeout` and the address cycle; `resolve.rs`:
//!   host name lookups on short-lived threads, off the loop.
//! - `wire.rs`: one link's socket (TCP or TLS) and buffers; `tls.rs`: the
//!   `bridge_*` TLS settings made into a rustls configuration.
//! - `status.rs`: what the control plane sees ([`BridgeStatus`]).

mod backoff;
mod driver;
mod durable;
mod flow;
mod link;
mod local;
mod packets;
mod pressure;
mod queue;
mod resolve;
mod routes;
mod status;
mod tls;
mod upkeep;
mod wire;

use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

pub use driver::{BridgeLoop, Command, Setup};
pub use durable::BridgeDurableBoot;
pub use local::Local;
pub use queue::Limits;
pub use status::{BridgeStatus, StatusBoard};
pub use tls::settings as tls_settings;

use crate::config::BridgeConfig;
use crate::runtime::Wake;

/// The control plane's handle on the bridge thread: reloads and status.
/// `Send + Sync`.
pub struct BridgeControl {
    commands: Sender<Command>,
    wake: Arc<Wake>,
    board: Arc<StatusBoard>,
}

impl BridgeControl {
    pub fn new(commands: Sender<Command>, wake: Arc<Wake>, board: Arc<StatusBoard>) -> Self {
        BridgeControl {
            commands,
            wake,
            board,
        }
    }

    /// Hands a reloaded set of `connection` sections to the bridge thread.
    pub fn reload(&self, bridges: Vec<BridgeConfig>) -> Result<(), String> {
        match self.commands.try_send(Command::Reload(bridges)) {
            Ok(()) => {
                self.wake.force();
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                Err("the bridge thread has not applied the previous reloads yet".into())
            }
            Err(TrySendError::Disconnected(_)) => Err("the bridge thread has stopped".into()),
        }
    }

    /// Every link's status as last published (each tick, 100 ms).
    pub fn statuses(&self) -> Vec<BridgeStatus> {
        self.board.read()
    }
}
