//! Overload without loss on the bridge (`overload_policy backpressure`,
//! see `shard::pressure` for the data shards' side).
//!
//! - **Out: an up link is an online subscriber.** A QoS 1/2 message that
//!   would take an up link's queue past its limits (the remote is slow to
//!   acknowledge) is queued into the bounded headroom
//!   ([`OutQueue::push_held`](super::queue::OutQueue::push_held)) and its
//!   publisher is paused with a [`ShardMsg::Pressure`] to its shard, once
//!   per link and publisher ([`Pressing`], shared with the shards). The
//!   link releases them when its queue is back at half its limits, when it
//!   goes down (it is then an offline destination: the newest messages not
//!   yet written past its limits are dropped and counted, as for an
//!   offline session), when it is stopped, or when it stalls: no
//!   acknowledgement from the remote for `overload_stall_timeout` seconds
//!   while holding publishers. A stalled link is reconnected, keeping its
//!   whole queue (written again on the new connection), and its
//!   publishers resume: the remote is not a client we may cut and drop.
//! - **In: a link is a publisher.** Its messages carry the bridge thread's
//!   peer id and the link's id (never reused) as their origin
//!   ([`Link::origin`]), so a local
//!   subscriber that they press pauses the link like a client: the bridge
//!   thread stops reading its socket until every such subscriber released
//!   it, and TCP flow control holds the remote back. Pressure for a link
//!   that is gone is ignored; a stopped link takes its count with it.
//!   The pause comes back over the mesh: so that a link does not read on
//!   meanwhile (one read may hold thousands of messages), after a read
//!   that brought messages in ([`BRIDGE_READ_PACKETS`] packets at most)
//!   the link sends a barrier to the data shards and reads again once all
//!   answered, the pressure it caused taken by then: it runs at most one
//!   read ahead of a subscriber that holds it back.

use std::time::Instant;

use super::link::{Ctx, Link, State};
use super::queue::Entry;
#[cfg(doc)]
use crate::limits::BRIDGE_READ_PACKETS;
use crate::mesh::{Origin, ShardMsg};
use crate::protocol::QoS;
use crate::shard::Pressing;

impl Link {
    /// Queues `entry` for a QoS 1/2 message past the limits of an up link
    /// into the headroom, pausing its publisher; hands it back when the
    /// policy drops, the link is down, or the headroom is full too.
    pub(super) fn queue_held(&mut self, ctx: &mut Ctx, mut entry: Entry) -> Result<(), Entry> {
        let presses = self.overload_stall.is_some()
            && self.state == State::Up
            && entry.qos != QoS::AtMostOnce
            && !entry.notice;
        if !presses || !self.queue.fits_headroom(&entry) {
            return Err(entry);
        }
        if let Some(j) = ctx.journal.as_deref_mut() {
            j.queued(&self.config.name, &mut entry);
        }
        let origin = entry.msg.origin;
        self.queue.push_held(entry)?;
        self.counters.held += 1;
        self.hold_back(ctx, origin);
        Ok(())
    }

    /// Pauses publisher `origin`, once for this link. Messages with no
    /// client, and those the bridge brought in itself, pause nobody.
    fn hold_back(&mut self, ctx: &mut Ctx, origin: Origin) {
        let to = usize::from(origin.shard);
        if origin.session == 0 || to >= ctx.local.mesh.shards() {
            return;
        }
        let pressing = self.pressing.get_or_insert_with(|| Pressing::new(ctx.now));
        if pressing.press(origin) {
            let publisher = origin.session;
            ctx.local.mesh.send(
                to,
                ShardMsg::Pressure {
                    publisher,
                    on: true,
                },
            );
        }
    }

    /// The remote acknowledged something: progress, for the stall bound.
    pub(super) fn pressure_progress(&mut self) {
        if let Some(p) = self.pressing.as_mut() {
            p.progress = Instant::now();
        }
    }

    /// Releases the publishers once the queue is back at half its limits.
    pub(super) fn release_if_drained(&mut self, ctx: &mut Ctx) {
        if self.pressing.is_some() && self.queue.at_low_watermark() {
            self.release_publishers(ctx);
        }
    }

    /// Resumes every publisher this link holds back, each once.
    pub(super) fn release_publishers(&mut self, ctx: &mut Ctx) {
        let Some(p) = self.pressing.take() else {
            return;
        };
        for origin in p.into_origins() {
            let publisher = origin.session;
            let msg = ShardMsg::Pressure {
                publisher,
                on: false,
            };
            ctx.local.mesh.send(usize::from(origin.shard), msg);
        }
    }

    /// The link went down: it is an offline destination now. Its
    /// publishers resume, and what its headroom holds beyond the limits
    /// and not yet written is dropped and counted, unless it is
    /// reconnected after a stall (then everything is kept).
    pub(super) fn went_offline(&mut self, ctx: &mut Ctx) {
        self.release_publishers(ctx);
        if std::mem::take(&mut self.stall_restart) {
            return;
        }
        let dropped = self.queue.trim_to_limits();
        if dropped > 0 {
            self.counters.dropped += dropped as u64;
            log::warn!(
                "bridge {}: down with its queue past its limits: {dropped} messages dropped",
                self.config.name
            );
        }
    }

    /// When the link stalls if no acknowledgement comes meanwhile.
    pub(super) fn stall_deadline(&self) -> Option<Instant> {
        let p = self.pressing.as_ref()?;
        Some(p.progress + self.overload_stall?)
    }

    /// An up link holding publishers back that the remote has not
    /// acknowledged anything for `overload_stall_timeout`: reconnected,
    /// its queue kept, its publishers resumed.
    pub(super) fn cut_if_stalled(&mut self, ctx: &mut Ctx) {
        let Some(at) = self.stall_deadline() else {
            return;
        };
        if ctx.now < at {
            return;
        }
        let bound = self.overload_stall.map_or(0, |d| d.as_secs());
        self.counters.stalls += 1;
        self.stall_restart = true;
        let why = format!("the remote acknowledged nothing for {bound} s while publishers were held back (overload_stall_timeout); reconnecting, queue kept");
        self.fail(ctx, &why);
    }

    /// A local subscriber pauses (`on`) or releases this link as a
    /// publisher (see `shard::pressure`).
    pub fn pressed(&mut self, on: bool) {
        if on {
            self.held_by += 1;
        } else {
            self.held_by = self.held_by.saturating_sub(1);
            // Read again: readiness seen while held was passed over.
            self.more_input |= self.held_by == 0;
        }
    }

    /// After a read that brought messages in (backpressure policy): the
    /// link reads again once the data shards have handled them.
    pub(super) fn sync_after_bringing_in(&mut self, ctx: &mut Ctx) {
        if self.overload_stall.is_some() {
            self.sync = Some(ctx.local.sync());
        }
    }

    /// True while the link waits for the data shards to handle what it
    /// brought in last; clears the wait once they have.
    pub(super) fn awaits_sync(&mut self, ctx: &Ctx) -> bool {
        let waits = self.sync.is_some_and(|t| !ctx.local.synced(t));
        if !waits {
            self.sync = None;
        }
        waits
    }

    /// True while local subscribers hold the link back: its socket is not
    /// read.
    pub fn held_back(&self) -> bool {
        self.held_by > 0 && self.state == State::Up
    }
}
