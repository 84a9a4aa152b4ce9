//! Access control on this shard: its copy of the ACL rules, swapped by a
//! reload, and the checks the data path makes (what the rules mean is in
//! [`crate::security::acl`]). No locks: the rules are immutable and shared
//! (`Arc`); a shard only swaps its own handle to them.
//!
//! Where each check runs, as in Mosquitto 2.0:
//! - PUBLISH: write access, before routing (`route`'s refusal): refused,
//!   a 3.x publisher is acknowledged and the message dropped, a 5.0 one
//!   gets "not authorized" (0x87).
//! - a will: write access at CONNECT, which it refuses ("not authorized"),
//!   and again when it is published (dropped if revoked since).
//! - SUBSCRIBE: the filter against the rules (see
//!   [`crate::security::AclRules::may_subscribe`]).
//! - every delivery: read access, per message and recipient (fan-out,
//!   shared group members, retained messages), so a reload that revokes
//!   it stops deliveries on subscriptions made before.
//! - a retained message, with `check_retain_source`: its publisher's
//!   current write access.
//!
//! A broker without `acl_file` pays one bounds test per delivery (the
//! table is empty, see [`AclTable`]).

use super::conn::ConnShared;
use super::session::{Session, SessionId};
use super::Shard;
use crate::mesh::{Message, Publisher};
use crate::protocol::TopicFilter;
use crate::security::{Access, AclTable, Client};

/// The rules this shard enforces. Shard-local; the rules inside are
/// shared with every shard.
pub struct AclState {
    /// Per listener; empty without any `acl_file`.
    pub table: AclTable,
    /// `check_retain_source`.
    pub check_retain_source: bool,
}

impl AclState {
    /// May the client of session `s` receive a message on `topic`?
    #[inline]
    pub fn may_read(&self, s: &Session, topic: &str) -> bool {
        self.table
            .rules(s.listener)
            .is_none_or(|r| r.allows(s.acl_client(), topic, Access::Read))
    }

    /// May the retained message `msg` still be delivered: with
    /// `check_retain_source`, its publisher may still write its topic
    /// (a message without a known publisher, bridged in, passes).
    pub fn source_may_write(&self, msg: &Message) -> bool {
        let Some(source) = msg.source.as_deref().filter(|_| self.check_retain_source) else {
            return true;
        };
        let client = Client {
            id: &source.client_id,
            username: source.username.as_deref(),
        };
        self.table
            .rules(source.listener)
            .is_none_or(|r| r.allows(client, msg.publish.topic.as_str(), Access::Write))
    }
}

impl Shard {
    /// May the client of `conn` publish to `topic` (mount point included)?
    pub(super) fn may_write(&self, conn: &ConnShared, topic: &str) -> bool {
        let acl = self.acl.borrow();
        acl.table
            .rules(conn.listener)
            .is_none_or(|r| r.allows(conn.acl_client(), topic, Access::Write))
    }

    /// May the client of session `sid` (as it last connected) publish to
    /// `topic`? True if the session is gone.
    pub(super) fn session_may_write(&self, sid: SessionId, topic: &str) -> bool {
        let acl = self.acl.borrow();
        if acl.table.is_empty() {
            return true;
        }
        let sessions = self.sessions.borrow();
        sessions.by_id.get(&sid).is_none_or(|s| {
            acl.table
                .rules(s.listener)
                .is_none_or(|r| r.allows(s.acl_client(), topic, Access::Write))
        })
    }

    /// May the client of `conn` subscribe to `filter` (mount point
    /// included; a shared subscription is checked on its inner filter)?
    pub(super) fn may_subscribe(&self, conn: &ConnShared, filter: &TopicFilter) -> bool {
        let acl = self.acl.borrow();
        acl.table
            .rules(conn.listener)
            .is_none_or(|r| r.may_subscribe(conn.acl_client(), filter.match_filter()))
    }

    /// The publisher a retained message from session `sid` records, if
    /// `check_retain_source` wants one.
    pub(super) fn retain_source(&self, sid: SessionId) -> Option<Publisher> {
        if !self.acl.borrow().check_retain_source {
            return None;
        }
        let sessions = self.sessions.borrow();
        let s = sessions.by_id.get(&sid)?;
        Some(Publisher {
            client_id: s.client_id.as_ref().into(),
            username: s.username.as_deref().map(Into::into),
            listener: s.listener,
        })
    }
}
