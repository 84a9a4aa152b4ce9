//! A CONNECT's user name and password against its listener's password
//! file (Mosquitto's `password_file`), checked off the loop.
//!
//! Which clients need a check ([`Shard::credentials`], Mosquitto 2.0's
//! rules): a CONNECT naming an enhanced authentication method is left to
//! its method; one with a user name is checked against the listener's
//! password file, or, without one, let in only where anonymous clients
//! are; one without a user name needs `allow_anonymous`.
//!
//! A check goes to the verifier threads (see [`crate::password`]): the
//! connection waits in [`Phase::Verifying`], its input unread, until the
//! verdict comes back ([`Shard::take_verdicts`]) and attaches or refuses
//! it. A full queue refuses at once with Server busy. The CONNECT
//! deadline still runs; a client that hangs up meanwhile is dropped and
//! its verdict, when it comes, finds nobody (the slab serial tells).
//!
//! Every refusal looks the same to the client (5.0 0x87 Not authorized,
//! 3.x rc 5, as Mosquitto 2.0 answers) and in the log: an unknown user,
//! a wrong or missing password are one verdict, never told apart.

use std::rc::Rc;
use std::sync::Arc;

use super::auth::PendingConnect;
use super::conn::{ConnShared, Phase};
use super::connect::{refuse, Refusal};
use super::listener::ListenerSettings;
use super::Shard;
use crate::limits::VERDICTS_PER_ROUND;
use crate::password::{Busy, PasswordDb, Verdict};
use crate::protocol::{Connect, ReasonCode};

/// Every authentication refusal: the same code and Reason String.
const NOT_AUTHORIZED: Refusal = (ReasonCode::NotAuthorized, "not authorized");

impl Shard {
    /// Whether connection `token`'s CONNECT may go on: `Ok(Some(db))` when
    /// its password must be checked against `db`, `Ok(None)` when no
    /// check is needed, the refusal otherwise (logged).
    ///
    /// A user name a TLS client certificate gives
    /// (`use_identity_as_username`) replaces the CONNECT's and needs no
    /// password, as in Mosquitto: such a connection skips this check.
    pub(super) fn credentials(
        &self,
        token: usize,
        connect: &Connect,
        listener: &ListenerSettings,
    ) -> Result<Option<Arc<PasswordDb>>, Refusal> {
        if connect.properties.authentication_method.is_some() {
            return Ok(None);
        }
        let anonymous = listener.security.allow_anonymous;
        match (&connect.username, &listener.passwords) {
            (Some(_), Some(db)) => Ok(Some(Arc::clone(db))),
            (_, None) if anonymous => Ok(None),
            (None, Some(_)) if anonymous => Ok(None),
            (username, _) => {
                let why = match username {
                    None => "anonymous clients are not allowed",
                    Some(_) => "no password file to check a user name against",
                };
                self.log_refused(token, &connect.client_id, why);
                Err(NOT_AUTHORIZED)
            }
        }
    }

    /// Sends connection `token`'s password to the verifier threads and
    /// parks it in [`Phase::Verifying`] with its CONNECT; refuses it with
    /// Server busy if their queue is full.
    pub(super) fn verify_password(
        self: &Rc<Self>,
        token: usize,
        conn: Rc<ConnShared>,
        db: Arc<PasswordDb>,
        connect: Box<Connect>,
        assigned: bool,
    ) {
        let Some(serial) = self.conns.borrow().get(token).map(|c| c.serial) else {
            return;
        };
        let username = connect.username.clone().unwrap_or_default();
        let password = connect.password.clone();
        match self
            .verifier
            .submit((token, serial), db, username, password)
        {
            Ok(()) => {
                if let Some(c) = self.conns.borrow_mut().get_mut(token) {
                    c.phase = Phase::Verifying;
                    c.connect = Some(Box::new(PendingConnect { connect, assigned }));
                }
            }
            Err(Busy) => {
                log::warn!(
                    "client {} from {}: refused, server busy: the password checks queue is \
                     full (raise password_check_threads or password_check_queue)",
                    connect.client_id,
                    self.peer_name(token)
                );
                refuse(self, &conn, (ReasonCode::ServerBusy, "server busy"));
                self.close_attached_to(token, conn);
            }
        }
    }

    /// Applies the verdicts that came back, at most
    /// [`VERDICTS_PER_ROUND`]; true if there were any.
    pub(super) fn take_verdicts(self: &Rc<Self>) -> bool {
        let mut taken = 0;
        while taken < VERDICTS_PER_ROUND {
            let Some(verdict) = self.verifier.next_verdict() else {
                break;
            };
            taken += 1;
            self.on_verdict(verdict);
        }
        taken > 0
    }

    /// Attaches or refuses the connection a verdict is for, if it still
    /// waits for it.
    fn on_verdict(self: &Rc<Self>, Verdict { token, serial, ok }: Verdict) {
        let waiting = {
            let mut conns = self.conns.borrow_mut();
            conns
                .get_mut(token)
                .filter(|c| c.serial == serial && c.phase == Phase::Verifying)
                .and_then(|c| Some((c.connect.take()?, c.shared.clone()?)))
        };
        let Some((pending, conn)) = waiting else {
            return;
        };
        let PendingConnect { connect, assigned } = *pending;
        if ok {
            self.accept(token, &conn, &connect, assigned, None);
            // What it sent after CONNECT waits in its partial and socket.
            self.again.borrow_mut().push(token);
        } else {
            self.log_refused(token, &connect.client_id, "bad user name or password");
            refuse(self, &conn, NOT_AUTHORIZED);
            self.close_attached_to(token, conn);
        }
    }

    /// True if connection `token` waits for its password check.
    pub(super) fn verifying(&self, token: usize) -> bool {
        let conns = self.conns.borrow();
        conns
            .get(token)
            .is_some_and(|c| c.phase == Phase::Verifying)
    }

    /// The log line of an authentication refusal (notice, as Mosquitto's):
    /// client id and address, and `why` (never which of user name and
    /// password was wrong).
    fn log_refused(&self, token: usize, client_id: &str, why: &str) {
        let peer = self.peer_name(token);
        log::info!("client {client_id} from {peer}: refused, not authorised ({why})");
    }

    /// The client's address for the log.
    fn peer_name(&self, token: usize) -> String {
        self.peer_of(token)
            .map_or_else(|| "an unknown address".to_string(), |a| a.to_string())
    }
}
