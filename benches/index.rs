//! Subscription index micro-benchmark: match throughput against the number
//! of filters (1k, 100k, 1M) and the wildcard mix, and subscribe/unsubscribe
//! churn. Prints a table; `cargo bench --bench index`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use shardmq::index::SubTrie;

/// Filters shaped like a device fleet: `fleet/<site>/<dev>/<metric>` with a
/// share of `+` and `#` filters.
fn filters(n: usize, wildcard_pct: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let (site, dev, metric) = (i % 1000, i, i % 7);
            match (i * 7919) % 100 {
                x if x < wildcard_pct / 2 => format!("fleet/{site}/+/m{metric}"),
                x if x < wildcard_pct => format!("fleet/{site}/{dev}/#"),
                _ => format!("fleet/{site}/{dev}/m{metric}"),
            }
        })
        .collect()
}

fn topics(n: usize, count: usize) -> Vec<String> {
    (0..count)
        .map(|i| format!("fleet/{}/{}/m{}", (i * 31) % 1000, (i * 7) % n, i % 7))
        .collect()
}

fn run_for(budget: Duration, mut f: impl FnMut() -> u64) -> (u64, Duration) {
    let start = Instant::now();
    let mut ops = 0;
    while start.elapsed() < budget {
        ops += f();
    }
    (ops, start.elapsed())
}

fn bench_match(n: usize, wildcard_pct: usize) {
    let mut trie = SubTrie::new();
    let fs = filters(n, wildcard_pct);
    let build = Instant::now();
    for (i, f) in fs.iter().enumerate() {
        trie.insert(f, i as u64, ());
    }
    let build = build.elapsed();
    let ts = topics(n, 4096);
    let mut matched = 0u64;
    let (ops, el) = run_for(Duration::from_millis(400), || {
        for t in &ts {
            trie.for_each_match(black_box(t), |k, _| matched += black_box(*k) & 1);
        }
        ts.len() as u64
    });
    println!(
        "match    filters={n:>8} wildcards={wildcard_pct:>3}%  {:>12.0} matches/s  {:>8.1} ns/match  (build {:>6.0} ms)",
        ops as f64 / el.as_secs_f64(),
        el.as_nanos() as f64 / ops as f64,
        build.as_secs_f64() * 1e3
    );
    black_box(matched);
}

fn bench_churn(n: usize) {
    let mut trie = SubTrie::new();
    let fs = filters(n, 20);
    for (i, f) in fs.iter().enumerate() {
        trie.insert(f, i as u64, ());
    }
    let mut i = 0usize;
    let (ops, el) = run_for(Duration::from_millis(400), || {
        for _ in 0..1024 {
            let f = &fs[i % n];
            trie.remove(f, &((i % n) as u64));
            trie.insert(f, (i % n) as u64, ());
            i += 7919;
        }
        2048
    });
    println!(
        "churn    filters={n:>8}                 {:>12.0} sub+unsub ops/s  {:>6.1} ns/op",
        ops as f64 / el.as_secs_f64(),
        el.as_nanos() as f64 / ops as f64
    );
}

fn main() {
    println!("shardmq subscription index (SubTrie), single core");
    for n in [1_000, 100_000, 1_000_000] {
        for wc in [0, 20, 50] {
            bench_match(n, wc);
        }
    }
    for n in [1_000, 100_000, 1_000_000] {
        bench_churn(n);
    }
}
