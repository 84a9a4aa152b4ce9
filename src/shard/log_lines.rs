//! Mosquitto's log lines about clients, worded as Mosquitto words them:
//! connections (`connection_messages`, notice lines), SUBSCRIBE and
//! UNSUBSCRIBE filters (`log_type subscribe`, `unsubscribe`); and the
//! publishing of `log_dest topic` lines by shard 0. A disabled line costs
//! one atomic load and a branch (see [`crate::logging::on`]).

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;

use super::conn::{CloseReason, ConnShared};
use super::Shard;
use crate::limits::LOG_TOPIC_BATCH;
use crate::logging::{self, LogType};
use crate::protocol::{Connect, ProtocolVersion, QoS, TopicFilter};

/// `New connection from 127.0.0.1:50000 on port 1883.`: a socket accepted.
pub(super) fn new_connection(peer: SocketAddr, port: Option<u16>) {
    if logging::connection_messages() {
        let port = port.map_or_else(|| "?".to_string(), |p| p.to_string());
        log::info!(
            "New connection from {}:{} on port {port}.",
            peer.ip(),
            peer.port()
        );
    }
}

/// `New client connected from 127.0.0.1:50000 as <id> (p2, c1, k60,
/// u'user').`: a CONNECT accepted.
/// The peer is looked up (a `getpeername`) only if the line is written.
pub(super) fn connected(
    peer: impl FnOnce() -> Option<SocketAddr>,
    conn: &ConnShared,
    connect: &Connect,
) {
    if !logging::connection_messages() {
        return;
    }
    let from = peer().map_or_else(|| "?".to_string(), |p| format!("{}:{}", p.ip(), p.port()));
    let user = conn
        .username
        .as_deref()
        .map_or_else(String::new, |u| format!(", u'{u}'"));
    log::info!(
        "New client connected from {from} as {} (p{}, c{}, k{}{user}).",
        conn.client_id,
        protocol_number(connect.protocol),
        u8::from(connect.clean_start),
        connect.keep_alive,
    );
}

/// Mosquitto's protocol number: 1 for 3.1, 2 for 3.1.1, 5 for 5.0.
fn protocol_number(version: ProtocolVersion) -> u8 {
    match version {
        ProtocolVersion::V31 => 1,
        ProtocolVersion::V311 => 2,
        ProtocolVersion::V5 => 5,
    }
}

/// `Client <id> disconnected.` and its kin: an attached client's
/// connection ends (nothing at shutdown, as in Mosquitto).
pub(super) fn closed(client_id: &str, reason: CloseReason) {
    if !logging::connection_messages() {
        return;
    }
    let how = match reason {
        CloseReason::Disconnect { .. } => "disconnected.",
        CloseReason::Io => "closed its connection.",
        CloseReason::KeepAliveTimeout => "has exceeded timeout, disconnecting.",
        CloseReason::Protocol(..) => "disconnected due to protocol error.",
        CloseReason::SessionTakenOver => "already connected, closing old connection.",
        CloseReason::Refused => "disconnected, not authorised.",
        CloseReason::ServerShuttingDown => return,
    };
    log::info!("Client {client_id} {how}");
}

/// `<client id> <qos> <filter>`: one filter of a SUBSCRIBE, as sent.
pub(super) fn subscribed(client_id: &str, qos: QoS, filter: &TopicFilter) {
    if logging::on(LogType::Subscribe) {
        log::info!(target: logging::SUBSCRIBE, "{client_id} {} {}", qos as u8, filter.as_str());
    }
}

/// `<client id> <filter>`: one filter of an UNSUBSCRIBE, as sent.
pub(super) fn unsubscribed(client_id: &str, filter: &TopicFilter) {
    if logging::on(LogType::Unsubscribe) {
        log::info!(target: logging::UNSUBSCRIBE, "{client_id} {}", filter.as_str());
    }
}

impl Shard {
    /// Shard 0, each tick: publishes the log lines queued for
    /// `$SYS/broker/log/<letter>` (at most [`LOG_TOPIC_BATCH`]), at QoS 2
    /// and not retained, as Mosquitto does.
    pub(super) fn publish_log_lines(self: &Rc<Self>) {
        if self.id != 0 {
            return;
        }
        logging::topic::drain(LOG_TOPIC_BATCH, |line| {
            let payload = Bytes::from(line.text.clone().into_bytes());
            self.publish_broker_message(&line.topic(), payload, QoS::ExactlyOnce, false);
        });
    }
}
