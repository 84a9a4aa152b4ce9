//! From accepted socket to attached session: read CONNECT (bounded in
//! time, by the CONNECT deadline, and in size, by
//! [`MAX_CONNECT_PACKET`]), hand the connection to its home shard if this
//! is not it, check it (a password on a verifier thread, see `verify`),
//! take over or resume the session, answer CONNACK.

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use super::auth::{Exchange, PendingConnect};
use super::conn::{ConnShared, Phase};
use super::mount;
use super::partial::Partial;
use super::Shard;
use super::Stats;
use crate::config::Security;
use crate::limits::MAX_CONNECT_PACKET;
use crate::mesh::{Handover, ShardMsg};
use crate::protocol::{
    connect_version, decode, reason_codes, ConnAck, Connect, DecodeError, Malformed, Packet,
    Properties, ProtocolVersion, QoS, ReasonCode,
};

impl Shard {
    /// Bytes from a connection whose CONNECT has not fully arrived.
    pub(super) fn on_connect_bytes(self: &Rc<Self>, token: usize, chunk: BytesMut) {
        let mut partial = match self.conns.borrow_mut().get_mut(token) {
            Some(c) => Partial::resume(c.partial.take()),
            None => return,
        };
        // Before CONNECT is accepted a connection may make us buffer only a
        // CONNECT's worth: a larger announced packet closes it at once.
        let limit = self.config.max_packet_size.min(MAX_CONNECT_PACKET);
        let buf = partial.push(chunk);
        // Read first: a rejected CONNECT is gone from `buf`.
        let version = connect_version(buf);
        match decode(buf, ProtocolVersion::V311, limit) {
            Ok(Packet::Connect(connect)) => {
                let leftover = std::mem::take(buf);
                self.admit(token, connect, leftover)
            }
            Ok(_) => self.refuse_early(token, "first packet is not CONNECT"),
            Err(DecodeError::Incomplete { needed }) => {
                partial.settle(needed);
                if let Some(c) = self.conns.borrow_mut().get_mut(token) {
                    c.partial = partial.store();
                }
            }
            Err(DecodeError::Malformed(m))
                if m.reason == ReasonCode::UnsupportedProtocolVersion =>
            {
                // In the 3.1.1 form: what a client of any level can read.
                self.refuse_unadmitted(token, ProtocolVersion::V311, (m.reason, m.detail))
            }
            Err(DecodeError::Malformed(m)) if version == Some(ProtocolVersion::V5) => {
                log::info!("{:?}: malformed CONNECT: {m}", self.peer_of(token));
                self.refuse_unadmitted(token, ProtocolVersion::V5, (connack_code(&m), m.detail))
            }
            Err(DecodeError::Malformed(m)) => {
                self.refuse_early(token, &format!("malformed CONNECT: {m}"))
            }
        }
    }

    pub(super) fn peer_of(&self, token: usize) -> Option<SocketAddr> {
        self.conns.borrow().get(token)?.transport.peer_addr().ok()
    }

    /// Closes a connection that never sent a valid CONNECT.
    fn refuse_early(&self, token: usize, why: &str) {
        let peer = self.peer_of(token);
        log::info!("{peer:?}: closed before CONNECT: {why}");
        self.drop_conn(token);
    }

    /// Answers a CONNECT that could not be decoded with a `version`
    /// CONNACK carrying `refusal`, and closes.
    fn refuse_unadmitted(
        self: &Rc<Self>,
        token: usize,
        version: ProtocolVersion,
        refusal: Refusal,
    ) {
        let conn = Rc::new(ConnShared::new(version, u32::MAX, self.now()));
        refuse(self, &conn, refusal);
        self.close_attached_to(token, conn);
    }

    /// Gives `token` the shared state `conn` and closes it once `conn`'s
    /// output (a refusing CONNACK) is flushed.
    pub(super) fn close_attached_to(self: &Rc<Self>, token: usize, conn: Rc<ConnShared>) {
        conn.set_token(Some(token));
        if let Some(c) = self.conns.borrow_mut().get_mut(token) {
            c.shared = Some(conn);
        }
        self.start_closing(token);
        self.flush_token(token);
    }

    /// Serves connection `token` whose CONNECT has been read, here or on
    /// the shard that accepted it.
    pub(super) fn admit(
        self: &Rc<Self>,
        token: usize,
        mut connect: Box<Connect>,
        leftover: BytesMut,
    ) {
        let listener = self.listener_of(token);
        let assigned = connect.client_id.is_empty();
        if assigned {
            connect.client_id = self.assign_client_id(&listener.security.auto_id_prefix);
        }
        let home = self.home_of(&connect.client_id);
        if home != self.id {
            return self.hand_over(token, connect, leftover, home);
        }
        let identity = self.identity(token, listener.identity_as_username, &mut connect);
        let max_packet = connect.properties.maximum_packet_size.unwrap_or(u32::MAX);
        let mut conn = ConnShared::new(connect.protocol, max_packet, self.now());
        conn.client_id = Rc::from(connect.client_id.as_str());
        conn.username = connect.username.as_deref().map(Rc::from);
        conn.listener = self.listener_index(token);
        // As Mosquitto: the bridge bit counts in 3.x only.
        conn.bridge = connect.bridge && !connect.protocol.is_v5();
        conn.max_qos = listener.max_qos;
        conn.mount = listener.mount.clone();
        if connect.protocol.is_v5() {
            let props = &connect.properties;
            conn.out_alias_max = props.topic_alias_maximum.unwrap_or(0);
            conn.problem_info = props.request_problem_information != Some(0);
        }
        let conn = Rc::new(conn);
        let checked = identity.and_then(|identity| {
            check(self, &connect, assigned, &listener.security)?;
            check_will(self, &conn, &mut connect)?;
            match identity {
                // As Mosquitto: the certificate is the credential.
                Identity::Certificate => Ok(None),
                Identity::Connect => self.credentials(token, &connect, &listener),
            }
        });
        let password_db = match checked {
            Ok(db) => db,
            Err(refusal) => {
                refuse(self, &conn, refusal);
                return self.close_attached_to(token, conn);
            }
        };
        conn.set_token(Some(token));
        if let Some(c) = self.conns.borrow_mut().get_mut(token) {
            c.shared = Some(Rc::clone(&conn));
            let mut partial = Partial::from_chunk(leftover);
            partial.settle(0);
            c.partial = partial.store();
        }
        if let Some(db) = password_db {
            // Its input is read once the verdict attaches it.
            return self.verify_password(token, conn, db, connect, assigned);
        }
        if connect.properties.authentication_method.is_none() {
            self.accept(token, &conn, &connect, assigned, None);
        } else {
            match self.start_auth(&conn, &connect) {
                Exchange::Waiting => self.await_auth(token, connect, assigned),
                Exchange::Accepted(data) => self.accept(token, &conn, &connect, assigned, data),
                Exchange::Refused(code, why) => {
                    refuse(self, &conn, (code, why));
                    return self.close_attached_to(token, conn);
                }
            }
        }
        // What the client sent right after CONNECT.
        self.on_bytes(token, None);
    }

    /// Who the client of connection `token` is: with
    /// `use_identity_as_username` (`from_certificate`), its verified client
    /// certificate's subject CN replaces the CONNECT's username and the
    /// password is dropped, as in Mosquitto; without a CN it is refused.
    fn identity(
        &self,
        token: usize,
        from_certificate: bool,
        connect: &mut Connect,
    ) -> Result<Identity, Refusal> {
        if !from_certificate {
            return Ok(Identity::Connect);
        }
        let name = self.conns.borrow().get(token).and_then(|c| {
            let leaf = c.transport.peer_certificates()?.first()?;
            crate::runtime::common_name(leaf)
        });
        let Some(name) = name else {
            log::info!(
                "{:?}: refused: use_identity_as_username, and the client certificate has no \
                 usable subject CN",
                self.peer_of(token)
            );
            return Err((ReasonCode::NotAuthorized, "not authorized"));
        };
        connect.username = Some(name);
        connect.password = None;
        Ok(Identity::Certificate)
    }

    /// Parks connection `token` in [`Phase::Authenticating`] with its
    /// CONNECT until the exchange ends.
    fn await_auth(&self, token: usize, connect: Box<Connect>, assigned: bool) {
        if let Some(c) = self.conns.borrow_mut().get_mut(token) {
            c.phase = Phase::Authenticating;
            c.connect = Some(Box::new(PendingConnect { connect, assigned }));
        }
    }

    /// Attaches connection `token` (its shared state `conn`) to its
    /// session and answers CONNACK; `auth_data` is the last Authentication
    /// Data of an enhanced authentication, sent with the method.
    pub(super) fn accept(
        self: &Rc<Self>,
        token: usize,
        conn: &Rc<ConnShared>,
        connect: &Connect,
        assigned: bool,
        auth_data: Option<Bytes>,
    ) {
        if let Some(c) = self.conns.borrow_mut().get_mut(token) {
            c.phase = Phase::Attached;
            c.counted = true;
        }
        self.connections.set(self.connections.get() + 1);
        Stats::bump(&self.stats.connects);
        let present = self.attach(conn, connect);
        let mut ack = connack(self, connect, conn.max_qos, assigned, present);
        if let Some(method) = &connect.properties.authentication_method {
            ack.properties.authentication_method = Some(method.clone());
            ack.properties.authentication_data = auth_data;
        }
        self.send_packet(conn, &Packet::ConnAck(ack));
        super::log_lines::connected(|| self.peer_of(token), conn, connect);
        self.resume(conn);
        self.watch_keepalive(token, conn);
    }

    /// Moves connection `token` to shard `home`: its transport leaves this
    /// shard's loop and travels with the CONNECT (a TLS session or a
    /// WebSocket's framing state with its socket: see [`Handover`]). Its
    /// listener count travels with it.
    fn hand_over(&self, token: usize, connect: Box<Connect>, leftover: BytesMut, home: usize) {
        let Some(conn) = self.conns.borrow_mut().try_remove(token) else {
            return;
        };
        let listener = conn.listener;
        match self.registrar.release(conn.transport) {
            Ok(transport) => {
                Stats::bump(&self.stats.handed_over);
                let leftover = Bytes::copy_from_slice(&leftover);
                self.mesh.send(
                    home,
                    ShardMsg::Handover(Box::new(Handover {
                        transport,
                        connect,
                        leftover,
                        listener,
                    })),
                );
            }
            Err(e) => {
                log::warn!("cannot hand a connection to shard {home}: {e}");
                self.listener_load.close(usize::from(listener));
            }
        }
    }
}

/// Where a client's username comes from, for the CONNECT checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Identity {
    /// The CONNECT's username and password, as sent: the password check
    /// (password_file) applies.
    Connect,
    /// `use_identity_as_username`: `Connect::username` holds the verified
    /// client certificate's subject CN (the CONNECT's was replaced) and the
    /// password was dropped. As in Mosquitto, no password check applies,
    /// and the client is not anonymous.
    Certificate,
}

/// Why a CONNECT is refused: the CONNACK's reason code and, for 5.0, its
/// Reason String (short and fixed; CONNACK may carry one whatever the
/// client's Request Problem Information, 3.1.2.11.7).
pub(super) type Refusal = (ReasonCode, &'static str);

/// Writes a refusing CONNACK.
pub(super) fn refuse(shard: &Shard, conn: &Rc<ConnShared>, (code, why): Refusal) {
    let mut properties = Properties::default();
    if conn.version.is_v5() {
        properties.reason_string = Some(why.to_string());
    }
    let ack = ConnAck {
        session_present: false,
        code,
        properties,
    };
    shard.send_packet(conn, &Packet::ConnAck(ack));
}

/// The 5.0 CONNACK reason for a CONNECT the codec rejected: its own, if a
/// CONNACK may carry it.
pub(super) fn connack_code(m: &Malformed) -> ReasonCode {
    if reason_codes::CONNACK.contains(&m.reason) {
        m.reason
    } else {
        ReasonCode::MalformedPacket
    }
}

/// CONNECT checks that end in a refusing CONNACK.
fn check(
    shard: &Shard,
    connect: &Connect,
    assigned: bool,
    security: &Security,
) -> Result<(), Refusal> {
    let config = &shard.config;
    // 3.1 requires a client id; 3.1.1 allows none only with a clean session.
    if assigned
        && (!security.allow_zero_length_clientid
            || connect.protocol == ProtocolVersion::V31
            || (!connect.protocol.is_v5() && !connect.clean_start))
    {
        return Err((
            ReasonCode::ClientIdentifierNotValid,
            "an empty client id is not allowed here",
        ));
    }
    let method = connect.properties.authentication_method.as_deref();
    if method.is_some_and(|m| !shard.auth.contains(m)) {
        return Err((
            ReasonCode::BadAuthenticationMethod,
            "authentication method not supported",
        ));
    }
    if shard.mesh.congested() {
        // Overloaded: the other shards do not keep up with what this one
        // sends them, and its readers are paused. A new session would add
        // to that; the client is told to come back (3.1.1: rc 3, server
        // unavailable) instead of every client here slowing down more.
        Stats::bump(&shard.stats.busy);
        return Err((ReasonCode::ServerBusy, "server busy: try again later"));
    }
    let ka = connect.keep_alive;
    if !connect.protocol.is_v5()
        && config.max_keepalive != 0
        && (ka > config.max_keepalive || ka == 0)
        && config.max_keepalive < 65535
    {
        // 3.x only: the CONNACK has no Reason String.
        return Err((ReasonCode::ClientIdentifierNotValid, "keep alive too long"));
    }
    Ok(())
}

/// The will against the listener and `message_size_limit`, as Mosquitto
/// checks it: a QoS above `max_qos` or a payload above the limit refuses
/// the CONNECT (3.x: "not authorized" for the size, as Mosquitto answers),
/// and so does a will topic under `$SYS` or one the ACL does not let the
/// client write ("not authorized", as Mosquitto's ACL check of the will
/// refuses it).
/// On a mounted listener the will topic gets the mount point.
fn check_will(shard: &Shard, conn: &ConnShared, connect: &mut Connect) -> Result<(), Refusal> {
    let Some(will) = connect.will.as_mut() else {
        return Ok(());
    };
    if will.qos > conn.max_qos {
        return Err((ReasonCode::QoSNotSupported, "will QoS above max_qos"));
    }
    // As a PUBLISH there would be: nobody forges broker statistics.
    if super::route::is_broker_only(will.topic.as_str()) {
        return Err((ReasonCode::NotAuthorized, "will topic under $SYS"));
    }
    let limit = shard.config.message_size_limit;
    if limit != 0 && will.payload.len() > limit {
        let code = if connect.protocol.is_v5() {
            ReasonCode::PacketTooLarge
        } else {
            ReasonCode::NotAuthorized
        };
        return Err((code, "will payload above message_size_limit"));
    }
    if let Some(mount) = conn.mount.as_deref() {
        will.topic = mount::topic(mount, &will.topic)
            .map_err(|m| (m.reason, "will topic invalid under the mount point"))?;
    }
    if !shard.may_write(conn, will.topic.as_str()) {
        return Err((ReasonCode::NotAuthorized, "will topic not authorized"));
    }
    Ok(())
}

/// The CONNACK for an accepted CONNECT.
///
/// A 5.0 CONNACK announces a `max_qos` below 2 as Maximum QoS. Request
/// Response Information is accepted and answered with no Response
/// Information (3.1.2.11.6 allows that, and Mosquitto does the same): the
/// broker has no response topic convention to offer, and inventing one
/// would be a namespace clients might rely on without any access control.
fn connack(
    shard: &Shard,
    connect: &Connect,
    max_qos: QoS,
    assigned: bool,
    present: bool,
) -> ConnAck {
    let mut properties = Properties::default();
    if connect.protocol.is_v5() {
        let config = &shard.config;
        properties.receive_maximum = Some(config.max_inflight_messages);
        if assigned {
            properties.assigned_client_identifier = Some(connect.client_id.clone());
        }
        if !config.retain_available {
            properties.retain_available = Some(0);
        }
        if config.max_packet_size < crate::protocol::MAX_REMAINING_LENGTH + 5 {
            properties.maximum_packet_size = Some(config.max_packet_size as u32);
        }
        if config.max_topic_alias > 0 {
            properties.topic_alias_maximum = Some(config.max_topic_alias);
        }
        let keep_alive = shard.granted_keep_alive(connect);
        if keep_alive != connect.keep_alive {
            properties.server_keep_alive = Some(keep_alive);
        }
        properties.subscription_identifier_available = Some(1);
        if max_qos != QoS::ExactlyOnce {
            properties.maximum_qos = Some(max_qos as u8);
        }
        properties.shared_subscription_available = Some(1);
    }
    ConnAck {
        // 3.1 has no Session Present flag: the byte is reserved, 0.
        session_present: present && connect.protocol != ProtocolVersion::V31,
        code: ReasonCode::Success,
        properties,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::limits::{MESH_BATCH, MESH_OUTBOX_LIMIT};
    use crate::mesh::Mesh;
    use crate::protocol::{Connect, Properties};
    use crate::runtime::transport::tests::loopback_pair;
    use crate::runtime::{full_mesh, Reactor};
    use crate::shard::{Control, ListenerLoad, ReloadBoard};

    /// A shard 0 of 2 whose mesh to shard 1 is congested (shard 1 never
    /// drains it), and a client socket connected to a connection it holds.
    fn congested_shard() -> (Rc<Shard>, usize, std::net::TcpStream, Keep) {
        let reactors = [
            Reactor::new().expect("reactor"),
            Reactor::new().expect("reactor"),
        ];
        let wakes: Vec<_> = reactors.iter().map(Reactor::wake_handle).collect();
        let mut ends = full_mesh(&wakes, 1);
        let end = ends.remove(0);
        let control = Control {
            stop: Arc::new(AtomicBool::new(false)),
            stats: Arc::default(),
            all_stats: Arc::new([]),
            histograms: Arc::default(),
            auth: Default::default(),
            reload: Arc::new(ReloadBoard::new(2)),
            listener_load: Arc::new(ListenerLoad::new(1)),
            durable: None,
            acl: Default::default(),
            passwords: Vec::new(),
            tls: Vec::new(),
            verifier: crate::password::VerifierLine::new(
                crossbeam_channel::bounded(1).0,
                1,
                Arc::clone(&wakes[0]),
            ),
        };
        let registrar = reactors[0].registrar().expect("registrar");
        let shard = Shard::new(
            Config::default(),
            Mesh::new(end, 2),
            registrar,
            Vec::new(),
            control,
        );
        // A few batches fill the queue (its capacity is rounded up); the
        // rest waits in the outbox.
        let most = MESH_OUTBOX_LIMIT + 64 * MESH_BATCH;
        for _ in 0..most {
            if shard.mesh.congested() {
                break;
            }
            shard.mesh.send(1, ShardMsg::WillsSent);
        }
        assert!(shard.mesh.congested(), "{most} messages did not congest");

        let (client, transport) = loopback_pair();
        shard.listener_load.try_open(0, None);
        let token = shard.adopt(transport, 0).expect("adopted");
        let client = std::net::TcpStream::from(client.into_owned_fd());
        client.set_nonblocking(false).expect("blocking");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        (shard, token, client, (reactors, ends))
    }

    /// What must outlive the test: the loops, and shard 1's mesh end (a
    /// closed end would take and drop everything sent to it).
    type Keep = (
        [Reactor; 2],
        Vec<crate::runtime::MeshEnd<crate::mesh::Batch>>,
    );

    fn connect(version: ProtocolVersion) -> Box<Connect> {
        Box::new(Connect {
            protocol: version,
            client_id: String::new(),
            clean_start: true,
            keep_alive: 30,
            will: None,
            username: None,
            password: None,
            bridge: false,
            properties: Properties::default(),
        })
    }

    #[test]
    fn an_overloaded_shard_refuses_new_sessions_as_server_busy() {
        for (version, code) in [(ProtocolVersion::V5, 0x89), (ProtocolVersion::V311, 3)] {
            let (shard, token, mut client, _keep) = congested_shard();
            let mut connect = connect(version);
            // An id homed here: the refusal is the home shard's.
            connect.client_id = (0..)
                .map(|i| format!("busy-{i}"))
                .find(|id| shard.home_of(id) == shard.id)
                .expect("an id homed on shard 0");
            shard.admit(token, connect, BytesMut::new());
            let mut ack = [0u8; 4];
            client.read_exact(&mut ack).expect("a CONNACK");
            assert_eq!(ack[0], 0x20, "{version:?}: CONNACK");
            assert_eq!(ack[3], code, "{version:?}: its reason code");
            assert_eq!(shard.stats.busy.get(), 1);
        }
    }
}
