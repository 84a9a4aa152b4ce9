//! MQTT 5.0 enhanced authentication (spec 4.12): the plug-in API and the
//! AUTH exchange.
//!
//! A program that embeds the broker registers [`AuthMethod`]s by name in
//! [`AuthMethods`] and passes them to [`crate::server::start_with`]; every
//! shard gets the same methods (they are `Send + Sync`). A CONNECT naming a
//! registered Authentication Method starts an exchange: the method creates
//! an [`AuthExchange`] on the shard thread that serves the client (it may
//! hold `Rc`s: it never leaves that thread) and answers each of the
//! client's Authentication Data with an [`AuthStep`]:
//!
//! - [`AuthStep::Continue`]: the broker sends AUTH 0x18 (Continue
//!   Authentication) with the data and waits for the client's AUTH 0x18;
//! - [`AuthStep::Success`]: CONNACK 0x00 with the method and the data;
//! - [`AuthStep::Fail`]: CONNACK with the reason code and a Reason String
//!   that says only "authentication failed": never what was wrong.
//!
//! A CONNECT naming a method not registered is refused with CONNACK 0x8C.
//! While the exchange runs the connection is in `Phase::Authenticating`:
//! a state of its state machine, not a blocked call; it ends within
//! [`MAX_AUTH_ROUNDS`] answers and within the CONNECT timeout, which keeps
//! running from accept (a client that stalls mid-exchange is closed by it).
//! Steps run on the shard's loop: a method must not block.
//!
//! Re-authentication (4.12.1): a connected client sends AUTH 0x19 with the
//! method it connected with; the same steps follow, answered with AUTH
//! 0x18 or AUTH 0x00 (Success), and a failure ends the connection with a
//! DISCONNECT carrying the method's reason code. AUTH from a client that
//! connected without a method, with another method, or 0x18 with no
//! exchange running, is a protocol error (DISCONNECT 0x82).

use std::fmt;
use std::rc::Rc;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::conn::{CloseReason, ConnShared, Phase};
use super::Shard;
use crate::limits::{MAX_AUTH_METHODS, MAX_AUTH_ROUNDS, MAX_CONNECT_PACKET};
use crate::protocol::{
    decode, reason_codes, Auth, Connect, DecodeError, Packet, Properties, ReasonCode,
};

/// One answer of an authentication method to the client's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send this Authentication Data to the client and wait for its next.
    Continue(Bytes),
    /// The client is authenticated; send it this Authentication Data, if any.
    Success(Option<Bytes>),
    /// The client is refused with this reason code: one a CONNACK may carry
    /// (0x87 Not Authorized, 0x8C Bad Authentication Method, 0x86 Bad
    /// User Name or Password...); any other is sent as 0x87.
    Fail(ReasonCode),
}

/// One authentication exchange with one client. Shard-local: created by
/// [`AuthMethod::start`] on the thread that serves the client and used
/// only there (it need not be `Send`).
pub trait AuthExchange {
    /// The client's next Authentication Data (`None` if its packet had
    /// none): first from CONNECT (or AUTH 0x19), then from each AUTH 0x18.
    /// Runs on the shard's loop: it must not block.
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep;
}

/// An enhanced authentication method, shared by every shard.
pub trait AuthMethod: Send + Sync {
    /// Starts an exchange with the client `client_id` (assigned by the
    /// broker if the client sent none).
    fn start(&self, client_id: &str) -> Box<dyn AuthExchange>;
}

/// The registered methods, by name. Cloned into every shard; the methods
/// themselves are shared.
///
/// Invariant: at most [`MAX_AUTH_METHODS`] methods, names distinct and
/// not empty.
#[derive(Clone, Default)]
pub struct AuthMethods {
    methods: Vec<(Arc<str>, Arc<dyn AuthMethod>)>,
}

/// A method [`AuthMethods::register`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("authentication method {0:?}: registered twice (register each name once)")]
    Duplicate(String),
    #[error("authentication method name is empty (give it the name clients send)")]
    EmptyName,
    #[error("authentication method {0:?}: more than {MAX_AUTH_METHODS} methods (register fewer)")]
    TooMany(String),
}

impl AuthMethods {
    /// Registers `method` under `name`, the Authentication Method clients
    /// name in CONNECT (for example `"SCRAM-SHA-256"`).
    pub fn register(
        &mut self,
        name: &str,
        method: Arc<dyn AuthMethod>,
    ) -> Result<(), RegisterError> {
        if name.is_empty() {
            return Err(RegisterError::EmptyName);
        }
        if self.find(name).is_some() {
            return Err(RegisterError::Duplicate(name.to_string()));
        }
        if self.methods.len() >= MAX_AUTH_METHODS {
            return Err(RegisterError::TooMany(name.to_string()));
        }
        self.methods.push((Arc::from(name), method));
        Ok(())
    }

    /// The method registered as `name`, with its shared name.
    fn find(&self, name: &str) -> Option<&(Arc<str>, Arc<dyn AuthMethod>)> {
        self.methods.iter().find(|(n, _)| &**n == name)
    }

    /// True if a method is registered as `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }
}

impl fmt::Debug for AuthMethods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.methods.iter().map(|(n, _)| n))
            .finish()
    }
}

/// A connection's enhanced authentication: the method it connected with
/// and the exchange running, if one is. Shard-local; owned by its
/// [`ConnShared`], which holds `None` for a client that connected without
/// a method.
pub(super) struct AuthState {
    method: Arc<str>,
    /// `Some` while an exchange runs (before CONNACK, or re-authenticating).
    exchange: Option<Box<dyn AuthExchange>>,
    /// Client answers in the running exchange; at most [`MAX_AUTH_ROUNDS`].
    rounds: u8,
}

impl AuthState {
    /// Feeds the client's `data` to the running exchange; ends it unless
    /// the step is [`AuthStep::Continue`]. Past [`MAX_AUTH_ROUNDS`], or
    /// with no exchange running, the step is a failure.
    fn step(&mut self, data: Option<&[u8]>) -> AuthStep {
        let Some(exchange) = self.exchange.as_mut() else {
            return AuthStep::Fail(ReasonCode::ProtocolError);
        };
        self.rounds = self.rounds.saturating_add(1);
        let step = if self.rounds > MAX_AUTH_ROUNDS {
            AuthStep::Fail(ReasonCode::NotAuthorized)
        } else {
            exchange.step(data)
        };
        if !matches!(step, AuthStep::Continue(_)) {
            self.exchange = None;
        }
        step
    }
}

/// The CONNECT of a connection whose authentication exchange runs: held
/// in its slab entry while in [`Phase::Authenticating`], answered once it
/// ends. Shard-local.
pub(super) struct PendingConnect {
    pub(super) connect: Box<Connect>,
    /// The broker assigned the client id.
    pub(super) assigned: bool,
}

/// The Reason String of every failed authentication: it never says what
/// was wrong.
const AUTH_FAILED: &str = "authentication failed";

/// The Reason String of an AUTH that breaks the exchange's rules.
const WRONG_AUTH: &str = "AUTH with another method, another reason, or not expected now";

/// The reason code a failed step is sent with, in a packet whose allowed
/// codes are `table`.
fn failure_code(code: ReasonCode, table: &[ReasonCode]) -> ReasonCode {
    if code.is_error() && table.contains(&code) {
        code
    } else {
        ReasonCode::NotAuthorized
    }
}

/// An AUTH packet with `reason`, the connection's `method` and `data`.
fn auth_packet(reason: ReasonCode, method: &str, data: Option<Bytes>) -> Packet {
    let properties = Properties {
        authentication_method: Some(method.to_string()),
        authentication_data: data,
        ..Properties::default()
    };
    Packet::Auth(Auth { reason, properties })
}

/// How an exchange before CONNACK ended its first step or a packet.
pub(super) enum Exchange {
    /// Waiting for the client's next AUTH.
    Waiting,
    /// Authenticated: CONNACK with this data.
    Accepted(Option<Bytes>),
    /// Refused: CONNACK with this reason code and Reason String.
    Refused(ReasonCode, &'static str),
}

impl Shard {
    /// Starts the exchange for `connect`, which names registered method
    /// `method`; the connection keeps the method for re-authentication.
    pub(super) fn start_auth(&self, conn: &Rc<ConnShared>, connect: &Connect) -> Exchange {
        let name = connect.properties.authentication_method.as_deref();
        let Some((method, plugin)) = name.and_then(|n| self.auth.find(n)) else {
            return Exchange::Refused(ReasonCode::BadAuthenticationMethod, AUTH_FAILED);
        };
        let mut state = AuthState {
            method: Arc::clone(method),
            exchange: Some(plugin.start(&connect.client_id)),
            rounds: 0,
        };
        let data = connect.properties.authentication_data.as_deref();
        let step = state.step(data);
        conn.set_auth(Some(Box::new(state)));
        self.answer_before_connack(conn, step)
    }

    /// Sends AUTH 0x18 for a [`AuthStep::Continue`]; says how the exchange
    /// stands.
    fn answer_before_connack(&self, conn: &Rc<ConnShared>, step: AuthStep) -> Exchange {
        match step {
            AuthStep::Continue(data) => {
                self.send_auth(conn, ReasonCode::ContinueAuthentication, Some(data));
                Exchange::Waiting
            }
            AuthStep::Success(data) => Exchange::Accepted(data),
            AuthStep::Fail(code) => {
                Exchange::Refused(failure_code(code, reason_codes::CONNACK), AUTH_FAILED)
            }
        }
    }

    /// Writes an AUTH with `reason`, `conn`'s method and `data`.
    fn send_auth(&self, conn: &Rc<ConnShared>, reason: ReasonCode, data: Option<Bytes>) {
        let method = conn.with_auth(|a| a.map(|a| Arc::clone(&a.method)));
        if let Some(method) = method {
            self.send_packet(conn, &auth_packet(reason, &method, data));
        }
    }

    /// The packets of connection `token` in [`Phase::Authenticating`]:
    /// AUTH 0x18 answers until the exchange ends. `Ok(Some(needed))` while
    /// it waits for more bytes, `Ok(None)` once the connection is
    /// attached (what follows in `buf` is handled as any attached
    /// connection's).
    pub(super) fn process_auth(
        self: &Rc<Self>,
        token: usize,
        conn: &Rc<ConnShared>,
        buf: &mut BytesMut,
    ) -> Result<Option<usize>, CloseReason> {
        let limit = self.config.max_packet_size.min(MAX_CONNECT_PACKET);
        loop {
            let exchange = match decode(buf, conn.version, limit) {
                Ok(Packet::Auth(auth)) => self.auth_before_connack(conn, &auth),
                Ok(Packet::Disconnect(_)) => return Err(CloseReason::Refused),
                Ok(_) => Exchange::Refused(
                    ReasonCode::ProtocolError,
                    "only AUTH or DISCONNECT may come before CONNACK",
                ),
                Err(DecodeError::Incomplete { needed }) => return Ok(Some(needed)),
                Err(DecodeError::Malformed(m)) => {
                    Exchange::Refused(super::connect::connack_code(&m), m.detail)
                }
            };
            match exchange {
                Exchange::Waiting => {}
                Exchange::Accepted(data) => {
                    self.accept_authenticated(token, conn, data);
                    return Ok(None);
                }
                Exchange::Refused(code, why) => {
                    super::connect::refuse(self, conn, (code, why));
                    return Err(CloseReason::Refused);
                }
            }
        }
    }

    /// One AUTH before CONNACK: must be 0x18 with the connection's method.
    fn auth_before_connack(&self, conn: &Rc<ConnShared>, auth: &Auth) -> Exchange {
        match self.auth_step(conn, auth, ReasonCode::ContinueAuthentication) {
            Ok(step) => self.answer_before_connack(conn, step),
            Err(_) => Exchange::Refused(ReasonCode::ProtocolError, WRONG_AUTH),
        }
    }

    /// Feeds `auth`'s data to `conn`'s exchange if `auth` has reason
    /// `expected` and the method `conn` connected with; `Err` (a protocol
    /// error) otherwise.
    fn auth_step(
        &self,
        conn: &ConnShared,
        auth: &Auth,
        expected: ReasonCode,
    ) -> Result<AuthStep, CloseReason> {
        let name = auth.properties.authentication_method.as_deref();
        let data = auth.properties.authentication_data.as_deref();
        let restart = expected == ReasonCode::ReAuthenticate;
        let step = conn.with_auth(|state| {
            let state = state.filter(|s| {
                Some(&*s.method) == name
                    && auth.reason == expected
                    && (restart || s.exchange.is_some())
            })?;
            if restart {
                let (_, plugin) = self.auth.find(&state.method)?;
                state.exchange = Some(plugin.start(&self.client_id_of(conn)));
                state.rounds = 0;
            }
            Some(state.step(data))
        });
        step.ok_or(CloseReason::Protocol(ReasonCode::ProtocolError, WRONG_AUTH))
    }

    /// Attaches connection `token` whose exchange succeeded: its pending
    /// CONNECT is answered with CONNACK carrying the method and `data`.
    fn accept_authenticated(
        self: &Rc<Self>,
        token: usize,
        conn: &Rc<ConnShared>,
        data: Option<Bytes>,
    ) {
        let pending = self.conns.borrow_mut().get_mut(token).and_then(|c| {
            debug_assert_eq!(c.phase, Phase::Authenticating);
            c.connect.take()
        });
        if let Some(p) = pending {
            self.accept(token, conn, &p.connect, p.assigned, data);
        }
    }

    /// AUTH from an attached client: re-authentication (0x19) or its next
    /// answer (0x18). A failure ends the connection with DISCONNECT.
    pub(super) fn on_auth(&self, conn: &Rc<ConnShared>, auth: &Auth) -> Result<(), CloseReason> {
        let expected = if auth.reason == ReasonCode::ReAuthenticate {
            ReasonCode::ReAuthenticate
        } else {
            ReasonCode::ContinueAuthentication
        };
        match self.auth_step(conn, auth, expected)? {
            AuthStep::Continue(data) => {
                self.send_auth(conn, ReasonCode::ContinueAuthentication, Some(data))
            }
            AuthStep::Success(data) => self.send_auth(conn, ReasonCode::Success, data),
            AuthStep::Fail(code) => {
                let code = failure_code(code, reason_codes::DISCONNECT);
                return Err(CloseReason::Protocol(code, AUTH_FAILED));
            }
        }
        Ok(())
    }

    /// The client id of `conn`'s session.
    fn client_id_of(&self, conn: &ConnShared) -> Rc<str> {
        let sessions = self.sessions.borrow();
        let session = sessions.by_id.get(&conn.session.get());
        session.map_or_else(|| Rc::from(""), |s| Rc::clone(&s.client_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Refuse;

    impl AuthMethod for Refuse {
        fn start(&self, _: &str) -> Box<dyn AuthExchange> {
            Box::new(Refuse)
        }
    }

    impl AuthExchange for Refuse {
        fn step(&mut self, _: Option<&[u8]>) -> AuthStep {
            AuthStep::Fail(ReasonCode::Banned)
        }
    }

    #[test]
    fn methods_are_registered_once_by_a_name_within_the_bound() {
        let mut methods = AuthMethods::default();
        let m = || -> Arc<dyn AuthMethod> { Arc::new(Refuse) };
        assert_eq!(methods.register("", m()), Err(RegisterError::EmptyName));
        assert_eq!(methods.register("A", m()), Ok(()));
        assert!(methods.contains("A") && !methods.contains("a"));
        let dup = RegisterError::Duplicate("A".into());
        assert_eq!(methods.register("A", m()), Err(dup));
        for i in 1..MAX_AUTH_METHODS {
            assert_eq!(methods.register(&format!("M{i}"), m()), Ok(()));
        }
        let over = RegisterError::TooMany("last".into());
        assert_eq!(methods.register("last", m()), Err(over));
    }

    #[test]
    fn an_exchange_ends_at_its_first_non_continue_step_or_past_its_rounds() {
        let mut state = AuthState {
            method: Arc::from("R"),
            exchange: Some(Box::new(Refuse)),
            rounds: 0,
        };
        assert_eq!(state.step(None), AuthStep::Fail(ReasonCode::Banned));
        assert!(state.exchange.is_none(), "a failure ends the exchange");
        state.exchange = Some(Box::new(Refuse));
        state.rounds = MAX_AUTH_ROUNDS;
        assert_eq!(state.step(None), AuthStep::Fail(ReasonCode::NotAuthorized));
    }

    #[test]
    fn failure_codes_fit_the_packet_or_become_not_authorized() {
        let connack = reason_codes::CONNACK;
        assert_eq!(
            failure_code(ReasonCode::Banned, connack),
            ReasonCode::Banned
        );
        assert_eq!(
            failure_code(ReasonCode::Success, connack),
            ReasonCode::NotAuthorized
        );
        let disconnect = reason_codes::DISCONNECT;
        assert_eq!(
            failure_code(ReasonCode::Banned, disconnect),
            ReasonCode::NotAuthorized
        );
    }
}
