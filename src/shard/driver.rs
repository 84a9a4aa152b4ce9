//! The shard as its thread's readiness loop sees it: one [`ShardLoop`]
//! per pinned shard thread, plugged into [`crate::runtime::Reactor::run`].
//!
//! A turn: mesh batches from peers, connections with input left over,
//! retained deliveries, accepting (all bounded per round); socket events;
//! then the end of the turn flushes dirty connections and hands mesh
//! batches to the queues. Nothing here waits: whatever must wait (a
//! barrier, a flush before close, shutdown) is a record the loop completes
//! when its message or deadline arrives.

use std::rc::Rc;
use std::time::Instant;

use super::listener::listener_index;
use super::timers::Stopping;
use super::Shard;
use crate::limits::AGAIN_PER_ROUND;
use crate::runtime::{Driver, Readiness, Token};

/// A shard bound to its thread's loop. Shard-local.
pub struct ShardLoop(pub Rc<Shard>);

impl ShardLoop {
    /// Registers the shard's listeners; the loop can then run it.
    pub fn new(shard: Rc<Shard>) -> std::io::Result<ShardLoop> {
        shard.register_listeners()?;
        Ok(ShardLoop(shard))
    }
}

impl Driver for ShardLoop {
    fn ready(&mut self, token: Token, readiness: Readiness) {
        match listener_index(token) {
            Some(i) => self.0.accept_from(i),
            None => {
                super::Stats::bump(&self.0.stats.events);
                self.0.conn_ready(token.0, readiness)
            }
        }
    }

    fn run_pending(&mut self) -> bool {
        let shard = &self.0;
        let mut busy = shard.check_stop();
        shard.check_reload();
        busy |= shard.mesh.receive(|peer, msg| {
            super::Stats::bump(&shard.stats.mesh_received);
            shard.on_mesh(peer, msg)
        }) > 0;
        busy |= shard.mesh.flush();
        busy |= shard.take_verdicts();
        busy |= shard.read_again();
        busy |= shard.deliver_retained();
        busy |= shard.release_durable();
        if shard.accept_again.get() {
            shard.accept_all();
            busy = true;
        }
        if !shard.dirty.borrow().is_empty() {
            // Writing is no new work unless it leaves some (a drained
            // buffer lets a queue move on): only then go round again.
            shard.flush_dirty();
            busy |= !shard.dirty.borrow().is_empty();
        }
        busy
    }

    fn end_turn(&mut self) {
        self.0.submit_journal();
        // What needed no journaling (a peer's confirmation of messages
        // that matched no persistent session) goes at once.
        self.0.release_durable();
        self.0.flush_dirty();
        self.0.mesh.flush();
        crate::logging::flush_batch();
    }

    fn turn_ended(&mut self, now: Instant) {
        super::Stats::bump(&self.0.stats.turns);
        self.0.latency.turn_ended(now);
        self.0.advance_shutdown(now);
    }

    fn turn_started(&mut self, now: Instant) {
        self.0.clock.set(now);
        self.0.latency.turn_started(now);
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.0.compacting() {
            // The next slice of the compaction is due at once.
            return Some(self.0.clock.get());
        }
        Some(self.0.next_deadline())
    }

    fn on_timer(&mut self, now: Instant) {
        self.0.on_timer(now);
    }

    fn finished(&self) -> bool {
        self.0.stopping.get() == Stopping::Done
    }
}

impl Shard {
    /// Reads connections that had more input than one turn's budget, were
    /// unblocked by a barrier, or waited for the mesh to decongest; at most
    /// [`AGAIN_PER_ROUND`] of them. True if there were any.
    fn read_again(self: &Rc<Self>) -> bool {
        if !self.mesh.congested() && !self.stalled.borrow().is_empty() {
            let stalled = std::mem::take(&mut *self.stalled.borrow_mut());
            self.again.borrow_mut().extend(stalled);
        }
        let batch: Vec<usize> = {
            let mut again = self.again.borrow_mut();
            let n = again.len().min(AGAIN_PER_ROUND);
            again.drain(..n).collect()
        };
        for &token in &batch {
            if self.is_lingering(token) {
                self.linger(token);
                continue;
            }
            self.on_bytes(token, None);
            // Its earlier edges may have been passed over: read to the end.
            self.read_conn(token, true);
        }
        !batch.is_empty()
    }
}
