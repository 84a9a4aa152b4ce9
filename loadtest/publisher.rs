//! A publisher connection: sends on its open-loop schedule, handles the
//! QoS 1/2 acknowledgement flows within an inflight window.
//!
//! One task polls two futures: the sender (schedule, window, PUBREL and
//! PINGREQ writes) and the ack reader (PUBACK, PUBREC, PUBCOMP). They share
//! the [`Window`]; the reader never writes, it queues PUBRELs for the sender.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::or;
use shardmq::protocol::{Packet, PacketId, Properties, PubResp, Publish, QoS, TopicName};
use shardmq::runtime::{self, time};

use crate::client::{Reader, Session, Writer};
use crate::clock::{now_ns, until};
use crate::payload::Header;
use crate::rate::Schedule;
use crate::signal::Notify;
use crate::stats::PubOutcome;
use crate::worker::{goodbye, until_stopped, Ctx};

/// Most messages encoded into one write when catching up.
const MAX_BATCH: u64 = 256;
/// Longest single sleep of the sender (it re-checks its state after).
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Packet ids in use and the acknowledgement flows in progress.
struct Window {
    qos: QoS,
    /// Ids not in use; empty means the window is full.
    free: RefCell<Vec<PacketId>>,
    /// `busy[id]`: id is in use (a flow in progress). Guards against a
    /// broker acking an id twice, which would otherwise free it twice.
    busy: RefCell<Vec<bool>>,
    /// PUBRELs owed (QoS 2), at most one per id in use.
    pubrel: RefCell<VecDeque<PacketId>>,
    /// Wakes the sender: an id was freed or a PUBREL is owed.
    changed: Notify,
    acked: Cell<u64>,
    capacity: usize,
}

impl Window {
    fn new(qos: QoS, capacity: u16) -> Window {
        let free = (1..=capacity).rev().filter_map(PacketId::new).collect();
        Window {
            qos,
            free: RefCell::new(free),
            busy: RefCell::new(vec![false; capacity as usize + 1]),
            pubrel: RefCell::new(VecDeque::with_capacity(capacity as usize)),
            changed: Notify::default(),
            acked: Cell::new(0),
            capacity: capacity as usize,
        }
    }

    /// Publishes that may be sent now (unbounded for QoS 0).
    fn room(&self) -> u64 {
        match self.qos {
            QoS::AtMostOnce => u64::MAX,
            _ => self.free.borrow().len() as u64,
        }
    }

    fn in_use(&self) -> usize {
        self.capacity - self.free.borrow().len()
    }

    /// Takes a free id for a new flow (`None` when the window is full).
    fn take(&self) -> Option<PacketId> {
        let id = self.free.borrow_mut().pop()?;
        self.busy.borrow_mut()[usize::from(id.get())] = true;
        Some(id)
    }

    /// Ends the flow of `id`; an error if no flow uses it.
    fn release(&self, id: PacketId) -> io::Result<()> {
        let mut busy = self.busy.borrow_mut();
        match busy.get_mut(usize::from(id.get())) {
            Some(b) if *b => *b = false,
            _ => {
                return Err(io::Error::other(format!(
                    "ack for packet id {id} that is not in flight"
                )))
            }
        }
        self.free.borrow_mut().push(id);
        self.acked.set(self.acked.get() + 1);
        self.changed.notify();
        Ok(())
    }

    /// Handles an ack from the broker.
    fn on_packet(&self, p: Packet) -> io::Result<()> {
        match (self.qos, p) {
            (QoS::AtLeastOnce, Packet::PubAck(r)) | (QoS::ExactlyOnce, Packet::PubComp(r)) => {
                self.release(r.packet_id)?
            }
            (QoS::ExactlyOnce, Packet::PubRec(r)) => {
                if !self
                    .busy
                    .borrow()
                    .get(usize::from(r.packet_id.get()))
                    .copied()
                    .unwrap_or(false)
                {
                    return Err(io::Error::other(format!(
                        "PUBREC for packet id {} not in flight",
                        r.packet_id
                    )));
                }
                self.pubrel.borrow_mut().push_back(r.packet_id);
                self.changed.notify();
            }
            (_, Packet::PingResp) => {}
            (_, Packet::Disconnect(d)) => {
                return Err(io::Error::other(format!(
                    "broker sent DISCONNECT {:?}",
                    d.reason
                )))
            }
            (_, other) => {
                return Err(io::Error::other(format!(
                    "unexpected packet for a publisher: {other:?}"
                )))
            }
        }
        Ok(())
    }
}

/// Runs publisher `id` on `topic` until the run stops.
pub async fn run(ctx: Rc<Ctx>, id: u32, topic: String, session: Session) {
    let Session {
        mut reader,
        mut writer,
    } = session;
    let window = Window::new(ctx.spec.qos, ctx.spec.inflight);
    let mut out = PubOutcome {
        id,
        ..Default::default()
    };
    until_stopped(&ctx, async {
        let topic = match TopicName::from_str(&topic) {
            Ok(t) => t,
            Err(e) => return ctx.error("invalid topic", e),
        };
        ctx.go.wait().await;
        let read = read_acks(&ctx, &mut reader, &window);
        let send = async {
            if let Err(e) = send_all(&ctx, &mut writer, &window, topic, &mut out).await {
                ctx.error("publisher write", e);
            }
            std::future::pending::<()>().await
        };
        or(read, send).await
    })
    .await;
    out.acked = window.acked.get();
    ctx.stats.borrow_mut().pubs.push(out);
    goodbye(&mut writer).await;
}

async fn read_acks(ctx: &Ctx, reader: &mut Reader, window: &Window) {
    let res = async {
        loop {
            window.on_packet(reader.next().await?)?;
        }
    };
    let e: io::Error = match res.await {
        Ok(()) => return,
        Err(e) => e,
    };
    ctx.error("publisher read", e);
}

/// Sends every scheduled message, then completes the flows still in flight.
async fn send_all(
    ctx: &Ctx,
    w: &mut Writer,
    window: &Window,
    topic: TopicName,
    out: &mut PubOutcome,
) -> io::Result<()> {
    let spec = &ctx.spec;
    let start = ctx.start_ns.get();
    let (_, end) = spec.window(start);
    let sched = Schedule::staggered(spec.rate, out.id as usize, spec.publishers, start, end);
    let ping_every = crate::clock::ns(Duration::from_secs(spec.keep_alive.into())) / 2;
    let mut last_write = now_ns();
    let mut next = 0u64;
    loop {
        queue_pubrels(w, window)?;
        let due = sched.due_by(now_ns());
        let n = due.saturating_sub(next).min(MAX_BATCH).min(window.room());
        let sent_before = out.sent;
        for _ in 0..n {
            queue_message(ctx, w, window, &topic, &sched, next, out)?;
            next += 1;
        }
        if ping_every > 0 && now_ns().saturating_sub(last_write) > ping_every && w.buf.is_empty() {
            w.queue(&Packet::PingReq)?;
        }
        if !w.buf.is_empty() {
            w.flush().await?;
            ctx.counters()
                .sent
                .fetch_add(out.sent - sent_before, Relaxed);
            last_write = now_ns();
        }
        let finished = sched.due(next).is_none();
        if finished && window.in_use() == 0 {
            return Ok(());
        }
        if !finished && sched.due_by(now_ns()) > next && window.room() > 0 {
            runtime::yield_if_needed().await; // behind schedule: catch up
            continue;
        }
        let mut wake = if ping_every > 0 {
            last_write + ping_every
        } else {
            u64::MAX
        };
        if window.room() > 0 {
            wake = wake.min(sched.due(next).unwrap_or(u64::MAX));
        }
        or(
            time::sleep(until(wake).min(MAX_SLEEP)),
            window.changed.notified(),
        )
        .await;
    }
}

/// Encodes message `seq` (or skips it for `--drop-every`).
fn queue_message(
    ctx: &Ctx,
    w: &mut Writer,
    window: &Window,
    topic: &TopicName,
    sched: &Schedule,
    seq: u64,
    out: &mut PubOutcome,
) -> io::Result<()> {
    let due = sched.due(seq).unwrap_or(sched.end_ns);
    out.issued += 1;
    if ctx
        .spec
        .drop_every
        .is_some_and(|n| n > 0 && (seq + 1) % n == 0)
    {
        out.dropped += 1;
        return Ok(());
    }
    let mut payload = vec![0u8; ctx.spec.payload];
    Header {
        intended_ns: due,
        publisher: out.id,
        seq,
    }
    .write(&mut payload);
    let packet_id = match window.qos {
        QoS::AtMostOnce => None,
        _ => window.take(),
    };
    let publish = Publish {
        dup: false,
        qos: window.qos,
        retain: false,
        topic: topic.clone(),
        packet_id,
        payload: Bytes::from(payload),
        properties: Properties::default(),
    };
    w.queue(&Packet::Publish(publish))?;
    out.sent += 1;
    let (from, to) = ctx.window();
    if due >= from && due < to {
        out.sent_measured += 1;
    }
    Ok(())
}

fn queue_pubrels(w: &mut Writer, window: &Window) -> io::Result<()> {
    while let Some(id) = window.pubrel.borrow_mut().pop_front() {
        w.queue(&Packet::PubRel(PubResp::new(id)))?;
    }
    Ok(())
}
