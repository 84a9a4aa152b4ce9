//! Codec throughput: PUBLISH decode and encode at 16 B, 256 B and 4 KiB
//! payloads in MQTT 3.1.1 and 5.0 (with two properties), and
//! `EncodedPublish::write_to` at QoS 1, next to a plain `memcpy` of the same
//! packet as the baseline.
//!
//! Run with `cargo bench --bench codec`. Plain `Instant` loops: a warm-up,
//! then about 300 ms per case.

use std::hint::black_box;
use std::num::NonZeroU16;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use shardmq::protocol::*;

const WARMUP: Duration = Duration::from_millis(50);
const MEASURE: Duration = Duration::from_millis(300);
/// Size of the read buffer that decode rounds walk through.
const READ_BUFFER: usize = 4 << 20;
/// Encode rounds clear the output after this many bytes.
const WRITE_BUFFER: usize = 1 << 20;
const SIZES: [usize; 3] = [16, 256, 4096];

fn publish(payload: usize, v: ProtocolVersion) -> Publish {
    let properties = if v.is_v5() {
        Properties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(3600),
            ..Properties::default()
        }
    } else {
        Properties::default()
    };
    Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: TopicName::from_str("sensors/building-7/floor-3/temperature").expect("valid"),
        packet_id: NonZeroU16::new(42),
        payload: Bytes::from(vec![0x5A; payload]),
        properties,
    }
}

/// Runs `round` (which processes some packets and returns how many and how
/// long the measured part took) until the budget is spent.
fn measure(mut round: impl FnMut() -> (u64, Duration)) -> (u64, Duration) {
    let start = Instant::now();
    while start.elapsed() < WARMUP {
        round();
    }
    let (mut packets, mut spent) = (0, Duration::ZERO);
    while spent < MEASURE {
        let (n, d) = round();
        packets += n;
        spent += d;
    }
    (packets, spent)
}

fn decode_case(p: &Packet, v: ProtocolVersion) -> (u64, Duration) {
    let mut one = BytesMut::new();
    p.encode(v, &mut one).expect("encodable");
    let copies = (READ_BUFFER / one.len()).max(1);
    let mut template = BytesMut::with_capacity(copies * one.len());
    for _ in 0..copies {
        template.extend_from_slice(&one);
    }
    measure(|| {
        let mut buf = template.clone(); // untimed: the "socket read"
        let t = Instant::now();
        let mut n = 0;
        while let Ok(packet) = decode(&mut buf, v, usize::MAX) {
            black_box(packet);
            n += 1;
        }
        (n, t.elapsed())
    })
}

/// Runs `write` into a reused buffer, clearing it every [`WRITE_BUFFER`].
fn write_case(mut write: impl FnMut(&mut BytesMut)) -> (u64, Duration) {
    let mut out = BytesMut::with_capacity(2 * WRITE_BUFFER);
    measure(|| {
        out.clear();
        let t = Instant::now();
        let mut n = 0;
        while out.len() < WRITE_BUFFER {
            write(black_box(&mut out));
            n += 1;
        }
        (n, t.elapsed())
    })
}

/// One measured case: packets processed and the time they took.
type Case<'a> = dyn Fn() -> (u64, Duration) + 'a;

struct Row {
    case: &'static str,
    version: &'static str,
    payload: usize,
    packet: usize,
    packets: u64,
    spent: Duration,
}

impl Row {
    fn print(&self) {
        let secs = self.spent.as_secs_f64();
        let pps = self.packets as f64 / secs;
        let gbps = pps * self.packet as f64 / 1e9;
        let ns = secs * 1e9 / self.packets as f64;
        println!(
            "{:<22} {:<7} {:>7} {:>7} {:>10.1} {:>12.2} {:>8.2}",
            self.case,
            self.version,
            self.payload,
            self.packet,
            ns,
            pps / 1e6,
            gbps
        );
    }
}

fn version_name(v: ProtocolVersion) -> &'static str {
    if v.is_v5() {
        "5.0"
    } else {
        "3.1.1"
    }
}

/// `cargo bench --bench codec -- <filter>` runs only the cases whose name
/// contains the filter.
fn filter() -> Option<String> {
    std::env::args().skip(1).find(|a| !a.starts_with('-'))
}

fn main() {
    let filter = filter();
    let wanted = |case: &str| filter.as_deref().is_none_or(|f| case.contains(f));
    println!(
        "{:<22} {:<7} {:>7} {:>7} {:>10} {:>12} {:>8}",
        "case", "version", "payload", "packet", "ns/packet", "Mpackets/s", "GB/s"
    );
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for size in SIZES {
            let publish = publish(size, v);
            let packet = Packet::Publish(publish.clone());
            let len = packet.encoded_len(v).expect("encodable");
            let row = |case, (packets, spent)| Row {
                case,
                version: version_name(v),
                payload: size,
                packet: len,
                packets,
                spent,
            };
            let shared =
                EncodedPublish::new(&publish, v, QoS::AtLeastOnce, false).expect("encodable");
            let (id, bytes) = (NonZeroU16::new(7), shared.bytes().clone());
            let cases: [(&str, &Case); 4] = [
                ("decode", &|| decode_case(&packet, v)),
                ("encode", &|| {
                    write_case(|out| packet.encode(v, out).expect("encodable"))
                }),
                ("write_to (QoS 1)", &|| {
                    write_case(|out| shared.write_to(id, false, out))
                }),
                ("memcpy (baseline)", &|| {
                    write_case(|out| out.extend_from_slice(&bytes))
                }),
            ];
            for (case, run) in cases {
                if wanted(case) {
                    row(case, run()).print();
                }
            }
        }
    }
}
