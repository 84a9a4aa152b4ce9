//! What the latency histograms cost a shard's hot path: a turn with
//! `deliveries` writes of messages read in `reads` distinct earlier turns,
//! recorded as the shard does with metrics on ([`Latency`]), against the
//! same turn with metrics off. Prints ns per turn and per delivery; read
//! them against the broker's CPU per message (about 20 µs for QoS 1 pairs
//! here, see the README). `cargo bench --bench metrics`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use shardmq::metrics::{Latency, ShardHistograms};

const TURNS: u32 = 2_000_000;

/// Runs `TURNS` turns of `deliveries` deliveries each; ns per turn.
fn per_turn(on: bool, deliveries: u32, reads: u32) -> f64 {
    let l = Latency::new(on);
    let cell = ShardHistograms::default();
    let mut stamps = Vec::new();
    let start = Instant::now();
    for turn in 0..TURNS {
        let now = Instant::now();
        l.turn_started(now);
        if stamps.len() < reads as usize {
            stamps.push(l.read_at());
        }
        for d in 0..deliveries {
            let read = stamps[(d % reads) as usize % stamps.len()];
            l.delivered(black_box(read));
        }
        l.turn_ended(now + Duration::from_nanos(u64::from(turn % 50_000)));
        if turn % 10_000 == 0 {
            l.publish(&cell);
        }
    }
    start.elapsed().as_nanos() as f64 / f64::from(TURNS)
}

fn main() {
    println!(
        "{:<34} {:>10} {:>10} {:>12}",
        "turn", "off ns", "on ns", "on-off /msg"
    );
    for (deliveries, reads) in [(1, 1), (10, 1), (10, 10), (100, 10)] {
        let off = per_turn(false, deliveries, reads);
        let on = per_turn(true, deliveries, reads);
        println!(
            "{:<34} {off:>10.1} {on:>10.1} {:>12.1}",
            format!("{deliveries} deliveries of {reads} message(s)"),
            (on - off) / f64::from(deliveries)
        );
    }
}
