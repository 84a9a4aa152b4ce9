//! Mesh micro-benchmark: one-way hop latency (p50/p99/p99.9) of a single
//! message between two pinned shards, and batched throughput. Prints a
//! table; `cargo bench --bench mesh`.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use shardmq::mesh::{self, Mesh, ShardMsg};
use shardmq::runtime::{self, executor::available_cores, ExecutorSpec};

/// Process-wide time origin: `Instant` is monotonic across cores.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn nanos() -> u64 {
    origin().elapsed().as_nanos() as u64
}

const PINGS: u64 = 20_000;
const FLOOD: u64 = 5_000_000;

/// Shard 0 sends; shard 1 receives and records.
fn run(spin: Duration) -> (Histogram<u64>, f64) {
    let cores = available_cores();
    let builder = mesh::builder(2);
    let done = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for id in 0..2 {
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let mut spec = ExecutorSpec::new(format!("mesh-bench-{id}"), core);
        spec.spin_before_park = spin;
        let (builder, done) = (builder.clone(), Arc::clone(&done));
        handles.push(
            runtime::start(&spec, move || async move {
                let (mesh, mut rx) = Mesh::join(builder).await.expect("mesh");
                if mesh.me() == 0 {
                    sender(&mesh, &done).await;
                    (None, 0.0)
                } else {
                    let (_, rx) = rx.remove(0);
                    let r = receiver(rx).await;
                    done.store(true, Ordering::Relaxed);
                    (Some(r.0), r.1)
                }
            })
            .expect("executor"),
        );
    }
    let mut out = (Histogram::new(3).expect("histogram"), 0.0);
    for h in handles {
        if let (Some(hist), rate) = h.join().expect("join") {
            out = (hist, rate);
        }
    }
    out
}

async fn sender(mesh: &Rc<Mesh>, done: &AtomicBool) {
    // Latency: one message at a time, flushed, spaced so the receiver parks.
    for _ in 0..PINGS {
        mesh.send(1, ShardMsg::Barrier(nanos()));
        mesh.flush();
        runtime::time::sleep(Duration::from_micros(50)).await;
    }
    // Throughput: a flood, batched by the outbox.
    for i in 0..FLOOD {
        mesh.send(1, ShardMsg::BarrierAck(i));
        if i % 4096 == 0 {
            mesh.flush();
            runtime::yield_if_needed().await;
        }
    }
    mesh.flush();
    while !done.load(Ordering::Relaxed) {
        runtime::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn receiver(rx: runtime::channel::ConnectedReceiver<mesh::Batch>) -> (Histogram<u64>, f64) {
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut pings = 0;
    let mut flood = 0;
    let mut flood_start = None;
    while let Some(batch) = rx.recv().await {
        for msg in batch {
            match msg {
                ShardMsg::Barrier(sent) => {
                    let _ = hist.record(nanos().saturating_sub(sent));
                    pings += 1;
                }
                ShardMsg::BarrierAck(_) => {
                    flood_start.get_or_insert_with(Instant::now);
                    flood += 1;
                }
                _ => {}
            }
        }
        if pings == PINGS && flood == FLOOD {
            break;
        }
    }
    let secs = flood_start.map_or(1.0, |s| s.elapsed().as_secs_f64());
    (hist, FLOOD as f64 / secs)
}

fn main() {
    println!(
        "shardmq mesh: 2 shards pinned to cores {:?}",
        available_cores().iter().take(2).collect::<Vec<_>>()
    );
    for spin in [Duration::ZERO, Duration::from_micros(50)] {
        let (h, rate) = run(spin);
        println!(
            "spin_before_park={:>4}us  hop latency p50={:>6.1}us p99={:>6.1}us p99.9={:>7.1}us max={:>7.1}us  batched throughput {:>6.2} M msgs/s",
            spin.as_micros(),
            h.value_at_quantile(0.5) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            h.value_at_quantile(0.999) as f64 / 1e3,
            h.max() as f64 / 1e3,
            rate / 1e6
        );
    }
}
