//! Subscriber and idle connections: read, measure, acknowledge, ping.
//!
//! A subscriber decodes every buffered packet, records latency and sequence
//! numbers, queues the acks (PUBACK, PUBREC, PUBCOMP) and writes them in one
//! flush per read, then reads again or pings when keepalive requires.

use std::collections::HashMap;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_lite::future::or;
use shardmq::protocol::{Packet, PubResp, Publish, QoS};
use shardmq::runtime::time;

use crate::client::{Reader, Session, Writer};
use crate::clock::{now_ns, until};
use crate::payload::Header;
use crate::seq::SeqTracker;
use crate::stats::SubOutcome;
use crate::worker::{goodbye, until_stopped, Ctx};

/// Publishes decoded between two flushes of acks (bounds the ack buffer).
const MAX_BATCH: usize = 1024;

/// Runs subscriber `id` until the run stops.
pub async fn run(ctx: Rc<Ctx>, id: u32, session: Session) {
    let Session {
        mut reader,
        mut writer,
    } = session;
    let mut seen: HashMap<u32, SeqTracker> = HashMap::new();
    until_stopped(&ctx, async {
        if let Err(e) = receive(&ctx, &mut reader, &mut writer, &mut seen).await {
            ctx.error("subscriber", e);
        }
    })
    .await;
    ctx.stats.borrow_mut().subs.push(SubOutcome {
        id,
        per_publisher: seen,
    });
    goodbye(&mut writer).await;
}

async fn receive(
    ctx: &Ctx,
    r: &mut Reader,
    w: &mut Writer,
    seen: &mut HashMap<u32, SeqTracker>,
) -> io::Result<()> {
    let mut last_ping = now_ns();
    loop {
        let mut received = 0;
        while received < MAX_BATCH {
            let Some(p) = r.try_next()? else { break };
            if on_packet(ctx, p, w, seen)? {
                received += 1;
            }
        }
        if received > 0 {
            ctx.counters().delivered.fetch_add(received as u64, Relaxed);
        }
        if !w.buf.is_empty() {
            w.flush().await?;
        }
        if received == MAX_BATCH {
            shardmq::runtime::yield_if_needed().await;
            continue;
        }
        read_or_ping(ctx, r, w, &mut last_ping).await?;
    }
}

/// Handles one packet; true if it was a PUBLISH.
fn on_packet(
    ctx: &Ctx,
    p: Packet,
    w: &mut Writer,
    seen: &mut HashMap<u32, SeqTracker>,
) -> io::Result<bool> {
    match p {
        Packet::Publish(publish) => {
            on_publish(ctx, &publish, seen);
            match (publish.qos, publish.packet_id) {
                (QoS::AtLeastOnce, Some(id)) => w.queue(&Packet::PubAck(PubResp::new(id)))?,
                (QoS::ExactlyOnce, Some(id)) => w.queue(&Packet::PubRec(PubResp::new(id)))?,
                _ => {}
            }
            Ok(true)
        }
        Packet::PubRel(r) => w
            .queue(&Packet::PubComp(PubResp::new(r.packet_id)))
            .map(|()| false),
        Packet::PingResp => Ok(false),
        Packet::Disconnect(d) => Err(io::Error::other(format!(
            "broker sent DISCONNECT {:?}",
            d.reason
        ))),
        other => Err(io::Error::other(format!(
            "unexpected packet for a subscriber: {other:?}"
        ))),
    }
}

fn on_publish(ctx: &Ctx, publish: &Publish, seen: &mut HashMap<u32, SeqTracker>) {
    let now = now_ns();
    let mut stats = ctx.stats.borrow_mut();
    stats.received += 1;
    let header = Header::read(&publish.payload);
    // Ids beyond the plan's publishers are someone else's messages; they
    // must not grow the tracker map.
    let Some(h) = header.filter(|h| (h.publisher as usize) < ctx.spec.publishers) else {
        stats.foreign += 1;
        return;
    };
    if stats.sample(h.intended_ns, now, ctx.window()) {
        stats.received_measured += 1;
    }
    seen.entry(h.publisher).or_default().record(h.seq);
}

/// Reads more bytes, or sends a PINGREQ when half the keepalive has passed
/// since `last_ping` (client-to-server traffic is what keeps a session alive).
async fn read_or_ping(
    ctx: &Ctx,
    r: &mut Reader,
    w: &mut Writer,
    last_ping: &mut u64,
) -> io::Result<()> {
    let keep_alive = ctx.spec.keep_alive;
    if keep_alive == 0 {
        return r.fill().await;
    }
    let due = *last_ping + crate::clock::ns(Duration::from_millis(u64::from(keep_alive) * 500));
    let read = or(async { Some(r.fill().await) }, async {
        time::sleep(until(due)).await;
        None
    });
    match read.await {
        Some(res) => res,
        None => {
            *last_ping = now_ns();
            w.send(&Packet::PingReq).await
        }
    }
}

/// Holds an idle connection until the run stops, pinging at half the
/// keepalive and noticing when the broker drops it.
pub async fn idle(ctx: Rc<Ctx>, session: Session) {
    let Session {
        mut reader,
        mut writer,
    } = session;
    until_stopped(&ctx, async {
        let res: io::Result<()> = async {
            let mut last_ping = now_ns();
            loop {
                if let Some(p) = reader.try_next()? {
                    if !matches!(p, Packet::PingResp) {
                        return Err(io::Error::other(format!(
                            "unexpected packet on an idle connection: {p:?}"
                        )));
                    }
                    continue;
                }
                read_or_ping(&ctx, &mut reader, &mut writer, &mut last_ping).await?;
            }
        }
        .await;
        if let Err(e) = res {
            ctx.error("idle connection", e);
        }
    })
    .await;
    goodbye(&mut writer).await;
}
