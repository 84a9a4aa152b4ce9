//! Journal encoding per QoS 1 message queued for a persistent session: the
//! two records (`Message`, `Enqueue`) written from references, as the shard
//! does, next to the owned entries it built before (the PUBLISH cloned for
//! the entry and once more to encode it, the client id copied). 64 B
//! payloads with two properties, MQTT 5.
//!
//! Run with `cargo bench --bench journal`. Plain `Instant` loops: a
//! warm-up, then about 300 ms per case.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shardmq::persist::entry::{self, Entry};
use shardmq::persist::record;
use shardmq::protocol::*;

const WARMUP: Duration = Duration::from_millis(50);
const MEASURE: Duration = Duration::from_millis(300);
/// The batch is cleared after this many bytes (a loop turn's batch).
const BATCH: usize = 1 << 20;

fn publish() -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::from_str("sensors/building-7/floor-3/temperature").expect("topic"),
        packet_id: None,
        payload: Bytes::from(vec![b'x'; 64]),
        properties: Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(3600),
            ..Properties::default()
        },
    }
}

/// Nanoseconds per call of `f`.
fn measure(mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < WARMUP {
        f(i);
        i += 1;
    }
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < MEASURE {
        for _ in 0..1000 {
            f(n);
            n += 1;
        }
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let p = publish();
    let client_id = "persistent-subscriber-0042";
    let mut out = BytesMut::with_capacity(2 * BATCH);
    let owned = measure(|i| {
        let m = Entry::Message {
            key: i,
            expires_at: 0,
            publish: p.clone(),
        };
        // The encoder used to copy the PUBLISH once more.
        black_box(p.clone());
        record::append(&mut out, m.kind(), |b| m.write_body(b));
        let e = Entry::Enqueue {
            delivery: i + 1,
            client_id: client_id.to_string(),
            key: i,
            qos: 1,
            retain: false,
        };
        record::append(&mut out, e.kind(), |b| e.write_body(b));
        if out.len() > BATCH {
            out.clear();
        }
    });
    let borrowed = measure(|i| {
        record::append(&mut out, entry::MESSAGE, |b| {
            entry::write_message(b, i, 0, &p)
        });
        record::append(&mut out, entry::ENQUEUE, |b| {
            entry::write_enqueue(b, (i + 1, client_id), i, 1, false)
        });
        if out.len() > BATCH {
            out.clear();
        }
    });
    println!("journal records per queued QoS 1 message (64 B, MQTT 5):");
    println!("  owned entries (before):   {owned:7.1} ns");
    println!(
        "  from references (now):    {borrowed:7.1} ns  (x{:.2})",
        owned / borrowed
    );
}
