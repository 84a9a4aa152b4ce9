//! Mesh micro-benchmark for the readiness-loop runtime (mio reactor and
//! crossbeam SPSC queues): one-way hop latency (p50/p99/p99.9/max) of a
//! single-message batch into a parked and into a busy receiver shard, and
//! batched throughput (batches of `MESH_BATCH` messages, the sender parking
//! on a full queue until the receiver makes room). Two shard threads pinned
//! to the first two cores. Prints a table; `cargo bench --bench mesh`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shardmq::limits::{MESH_BATCH, MESH_CAPACITY};
use shardmq::mesh::{Batch, ShardMsg};
use shardmq::runtime::{
    available_cores, full_mesh, spawn_pinned, Driver, MeshEnd, Reactor, Readiness, Token,
    TrySendError,
};

/// Process-wide time origin: `Instant` is monotonic across cores.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn nanos() -> u64 {
    origin().elapsed().as_nanos() as u64
}

/// Messages in the throughput flood.
const FLOOD: u64 = 5_000_000;
/// Batches a driver handles per `run_pending` call.
const BATCHES_PER_CALL: usize = 64;

struct Scenario {
    name: &'static str,
    /// The receiver reports work on every call, so it never parks.
    busy_receiver: bool,
    /// Pause between pings: long enough for an idle receiver to park.
    gap: Duration,
    pings: u64,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "parked rx, 1 ms gap",
        busy_receiver: false,
        gap: Duration::from_millis(1),
        pings: 5_000,
    },
    Scenario {
        name: "parked rx, 50 us gap",
        busy_receiver: false,
        gap: Duration::from_micros(50),
        pings: 20_000,
    },
    Scenario {
        name: "busy rx, 50 us gap",
        busy_receiver: true,
        gap: Duration::from_micros(50),
        pings: 20_000,
    },
];

struct Outcome {
    hist: Histogram<u64>,
    msgs_per_sec: f64,
    rx_wakes: u64,
    tx_wakes: u64,
}

/// Shard 1: drains the queue from shard 0, records ping latency and counts
/// the flood.
struct Receiver {
    end: MeshEnd<Batch>,
    busy: bool,
    hist: Histogram<u64>,
    pings: u64,
    pings_expected: u64,
    flood: u64,
    flood_start: Option<Instant>,
    flood_end: Option<Instant>,
}

impl Driver for Receiver {
    fn ready(&mut self, _: Token, _: Readiness) {}

    fn run_pending(&mut self) -> bool {
        let Receiver {
            end,
            hist,
            pings,
            flood,
            flood_start,
            ..
        } = self;
        let n = end.drain(0, BATCHES_PER_CALL, |batch| {
            for msg in batch {
                match msg {
                    ShardMsg::Barrier(sent) => {
                        let _ = hist.record(nanos().saturating_sub(sent));
                        *pings += 1;
                    }
                    ShardMsg::BarrierAck(_) => {
                        flood_start.get_or_insert_with(Instant::now);
                        *flood += 1;
                    }
                    _ => {}
                }
            }
        });
        if self.flood == FLOOD && self.flood_end.is_none() {
            self.flood_end = Some(Instant::now());
        }
        n > 0 || self.busy
    }

    fn end_turn(&mut self) {}

    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    fn on_timer(&mut self, _: Instant) {}

    fn finished(&self) -> bool {
        self.pings == self.pings_expected && self.flood == FLOOD
    }
}

/// Shard 0's flood: sends `FLOOD` messages in batches, keeping a batch a
/// full queue handed back and retrying it (parked until shard 1 notifies).
struct Flood<'a> {
    end: &'a MeshEnd<Batch>,
    next: u64,
    held: Option<Batch>,
}

impl Driver for Flood<'_> {
    fn ready(&mut self, _: Token, _: Readiness) {}

    fn run_pending(&mut self) -> bool {
        let mut sent = false;
        for _ in 0..BATCHES_PER_CALL {
            let batch = match self.held.take() {
                Some(b) => b,
                None if self.next < FLOOD => {
                    let n = (FLOOD - self.next).min(MESH_BATCH as u64);
                    let b: Batch = (self.next..self.next + n)
                        .map(ShardMsg::BarrierAck)
                        .collect();
                    self.next += n;
                    b
                }
                None => break,
            };
            match self.end.try_send(1, batch) {
                Ok(()) => sent = true,
                Err(TrySendError::Full(b)) => {
                    self.held = Some(b);
                    break;
                }
                Err(TrySendError::Closed(_)) => panic!("receiver shard gone"),
            }
        }
        sent
    }

    fn end_turn(&mut self) {}

    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    fn on_timer(&mut self, _: Instant) {}

    fn finished(&self) -> bool {
        self.held.is_none() && self.next == FLOOD
    }
}

fn run(s: &Scenario) -> Outcome {
    let cores = available_cores();
    let core = |i: usize| (!cores.is_empty()).then(|| cores[i % cores.len()]);
    let mut tx_reactor = Reactor::new().expect("reactor 0");
    let mut rx_reactor = Reactor::new().expect("reactor 1");
    let (tx_wake, rx_wake) = (tx_reactor.wake_handle(), rx_reactor.wake_handle());
    let mut ends = full_mesh::<Batch>(&[tx_wake.clone(), rx_wake.clone()], MESH_CAPACITY);
    let rx_end = ends.pop().expect("end 1");
    let tx_end = ends.pop().expect("end 0");

    let receiver = Receiver {
        end: rx_end,
        busy: s.busy_receiver,
        hist: Histogram::new(3).expect("histogram"),
        pings: 0,
        pings_expected: s.pings,
        flood: 0,
        flood_start: None,
        flood_end: None,
    };
    let rx = spawn_pinned("mesh-mio-1".into(), core(1), move || {
        let mut receiver = receiver;
        rx_reactor.run(&mut receiver).expect("receiver reactor");
        receiver
    })
    .expect("receiver thread");

    let (gap, pings) = (s.gap, s.pings);
    let tx = spawn_pinned("mesh-mio-0".into(), core(0), move || {
        // Latency: one message at a time, spaced so the receiver can park.
        for _ in 0..pings {
            let mut batch = vec![ShardMsg::Barrier(nanos())];
            loop {
                match tx_end.try_send(1, batch) {
                    Ok(()) => break,
                    Err(TrySendError::Full(b)) => batch = b,
                    Err(TrySendError::Closed(_)) => panic!("receiver shard gone"),
                }
                std::hint::spin_loop();
            }
            std::thread::sleep(gap);
        }
        // Throughput: batches through the reactor.
        let mut flood = Flood {
            end: &tx_end,
            next: 0,
            held: None,
        };
        tx_reactor.run(&mut flood).expect("sender reactor");
        tx_end
    })
    .expect("sender thread");

    let receiver = rx.join().expect("receiver thread panicked");
    let _tx_end = tx.join().expect("sender thread panicked");
    let secs = match (receiver.flood_start, receiver.flood_end) {
        (Some(a), Some(b)) => (b - a).as_secs_f64(),
        _ => f64::NAN,
    };
    Outcome {
        hist: receiver.hist,
        msgs_per_sec: FLOOD as f64 / secs,
        rx_wakes: rx_wake.wake_count(),
        tx_wakes: tx_wake.wake_count(),
    }
}

fn main() {
    println!(
        "shardmq mesh (mio reactor + crossbeam bounded({MESH_CAPACITY})): 2 shards pinned to cores {:?}",
        available_cores().iter().take(2).collect::<Vec<_>>()
    );
    println!(
        "{:<22} {:>7} {:>8} {:>8} {:>9} {:>9}  {:>12}  {:>9} {:>9}",
        "scenario",
        "pings",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "M msgs/s",
        "rx wakes",
        "tx wakes"
    );
    for s in &SCENARIOS {
        let o = run(s);
        let us = |q: f64| o.hist.value_at_quantile(q) as f64 / 1e3;
        println!(
            "{:<22} {:>7} {:>8.1} {:>8.1} {:>9.1} {:>9.1}  {:>12.2}  {:>9} {:>9}",
            s.name,
            o.hist.len(),
            us(0.5),
            us(0.99),
            us(0.999),
            o.hist.max() as f64 / 1e3,
            o.msgs_per_sec / 1e6,
            o.rx_wakes,
            o.tx_wakes
        );
    }
}
