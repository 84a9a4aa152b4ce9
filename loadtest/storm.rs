//! connect-storm: each worker opens connections at its share of the rate
//! (open loop), measures due-time -> CONNACK latency, then disconnects.
//! At most `concurrency / workers` attempts are in flight per worker; when
//! that many are pending the next ones start late, and their latency
//! (measured from the due time) shows it.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use shardmq::runtime::{self, time};

use crate::client::Session;
use crate::clock::{now_ns, until};
use crate::rate::Schedule;
use crate::signal::Notify;
use crate::worker::{goodbye, until_stopped, Ctx};

/// Opener `index` of `of`: runs the schedule until its end or the stop.
pub async fn run(ctx: Rc<Ctx>, index: u32, of: u32) {
    let active = Rc::new(Cell::new(0usize));
    let freed = Notify::default();
    until_stopped(&ctx, async {
        ctx.go.wait().await;
        let start = ctx.start_ns.get();
        let (_, end) = ctx.window();
        let sched = Schedule::staggered(ctx.spec.rate, index as usize, of as usize, start, end);
        let limit = (ctx.spec.storm_concurrency / of.max(1) as usize).max(1);
        let mut k = 0u64;
        while let Some(due) = sched.due(k) {
            time::sleep(until(due)).await;
            while active.get() >= limit {
                freed.notified().await;
            }
            active.set(active.get() + 1);
            let conn = (k * u64::from(of) + u64::from(index)) as usize;
            runtime::spawn(attempt(
                ctx.clone(),
                due,
                conn,
                active.clone(),
                freed.clone(),
            ));
            k += 1;
        }
        while active.get() > 0 {
            freed.notified().await;
        }
    })
    .await;
}

/// One connection attempt due at `due`.
async fn attempt(ctx: Rc<Ctx>, due: u64, conn: usize, active: Rc<Cell<usize>>, freed: Notify) {
    ctx.counters().sent.fetch_add(1, Relaxed);
    let dial = ctx.dial(conn, &format!("c{conn}"), true);
    let opened = time::timeout(ctx.spec.connect_timeout, Session::open(&dial)).await;
    let now = now_ns();
    let mut session = None;
    {
        let mut stats = ctx.stats.borrow_mut();
        stats.storm.attempts += 1;
        match opened {
            Some(Ok(s)) => {
                stats.storm.connected += 1;
                if stats.sample(due, now, ctx.window()) {
                    stats.storm.connected_measured += 1;
                }
                ctx.counters().delivered.fetch_add(1, Relaxed);
                session = Some(s);
            }
            Some(Err(e)) => {
                stats.storm.failed += 1;
                ctx.error("connect", e);
            }
            None => {
                stats.storm.failed += 1;
                ctx.error(
                    "connect",
                    format!("no CONNACK within {:?}", ctx.spec.connect_timeout),
                );
            }
        }
    }
    if let Some(mut s) = session {
        goodbye(&mut s.writer).await;
    }
    active.set(active.get() - 1);
    freed.notify();
}
