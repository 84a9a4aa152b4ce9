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
//! table is empty, see [`AclTable`]); a restricted session whose
//! subscriptions the rules cover entirely pays a generation compare
//! ([`ReadMemo`]); the others one check per message.

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
    table: AclTable,
    /// Bumped each time `table` is replaced (never 0, so that a zero
    /// [`ReadMemo`] means "unknown"): a memo of another generation is
    /// stale.
    generation: u32,
    /// `check_retain_source`.
    pub check_retain_source: bool,
}

/// What a session's subscriptions are worth to the ACL under one
/// generation of rules: "reads all" when the rules grant read access to
/// every topic each of its filters matches, so that nothing delivered to
/// it needs a check. Kept in the session (shard-local, 4 bytes: the
/// generation and the verdict; 0 = unknown); reset when the client
/// reconnects (its username may differ), stale when the rules change, and
/// narrowed when it subscribes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadMemo(u32);

impl ReadMemo {
    fn new(generation: u32, reads_all: bool) -> ReadMemo {
        ReadMemo(generation << 1 | u32::from(reads_all))
    }

    /// The verdict, if worked out under `generation`.
    fn reads_all(self, generation: u32) -> Option<bool> {
        (self.0 >> 1 == generation).then_some(self.0 & 1 == 1)
    }
}

/// Generations fit in the 31 bits a [`ReadMemo`] keeps for them.
const MAX_GENERATION: u32 = u32::MAX >> 1;

impl AclState {
    /// The rules the shard starts with.
    pub fn new(table: AclTable, check_retain_source: bool) -> AclState {
        AclState {
            table,
            generation: 1,
            check_retain_source,
        }
    }

    /// Replaces the rules (a reload).
    pub fn replace(&mut self, table: AclTable) {
        self.table = table;
        // 2^31 reloads wrap to 1; memos that old are long recomputed.
        self.generation = if self.generation >= MAX_GENERATION {
            1
        } else {
            self.generation + 1
        };
    }

    /// May the client of session `s` receive a message on `topic`? A
    /// session whose subscriptions its rules cover entirely (see
    /// [`ReadMemo`]) is not checked message by message.
    #[inline]
    pub fn may_read(&self, s: &Session, topic: &str) -> bool {
        let Some(rules) = self.table.rules(s.listener) else {
            return true;
        };
        let reads_all = match s.acl_memo.get().reads_all(self.generation) {
            Some(reads_all) => reads_all,
            None => {
                // Once per session per change of rules or connection:
                // bounded by its subscriptions.
                let client = s.acl_client();
                let reads_all = s
                    .subscriptions
                    .keys()
                    .all(|f| rules.reads_all(client, f.match_filter()));
                s.acl_memo.set(ReadMemo::new(self.generation, reads_all));
                reads_all
            }
        };
        reads_all || rules.allows(s.acl_client(), topic, Access::Read)
    }

    /// Narrows `s`'s memo for its new subscription to `filter`.
    pub fn note_subscription(&self, s: &Session, filter: &TopicFilter) {
        let Some(rules) = self.table.rules(s.listener) else {
            return;
        };
        if s.acl_memo.get().reads_all(self.generation) == Some(true) {
            let reads_all = rules.reads_all(s.acl_client(), filter.match_filter());
            s.acl_memo.set(ReadMemo::new(self.generation, reads_all));
        }
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

    /// Narrows session `sid`'s [`ReadMemo`] for its new subscription.
    pub(super) fn note_subscription(&self, sid: SessionId, filter: &TopicFilter) {
        let sessions = self.sessions.borrow();
        if let Some(s) = sessions.by_id.get(&sid) {
            self.acl.borrow().note_subscription(s, filter);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memo_holds_for_its_generation_only() {
        let memo = ReadMemo::new(7, true);
        assert_eq!(memo.reads_all(7), Some(true));
        assert_eq!(memo.reads_all(8), None);
        assert_eq!(
            ReadMemo::new(MAX_GENERATION, false).reads_all(MAX_GENERATION),
            Some(false)
        );
        assert_eq!(ReadMemo::default().reads_all(1), None, "0 is unknown");
        let mut acl = AclState::new(AclTable::default(), false);
        acl.generation = MAX_GENERATION;
        acl.replace(AclTable::default());
        assert_eq!(acl.generation, 1);
    }
}
