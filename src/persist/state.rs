//! Durable state as recovered: journal entries folded into sessions and
//! retained messages, split by home shard, and written back as a fresh
//! journal generation (which is also how the journals are compacted: a
//! generation holds live state only).
//!
//! The files of generation `g` are `<dir>/gen-<g>/shard-<k>.journal`;
//! `<dir>/CURRENT` names the live generation. A start reads every file of
//! the live generation (whatever shard count wrote it), writes generation
//! `g + 1` for the shard count starting now, syncs it, switches `CURRENT`
//! (a rename) and removes generation `g`. A crash at any point leaves one
//! complete generation named by `CURRENT`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::BytesMut;

use super::entry::Entry;
use super::record::{self, End};
use crate::protocol::Publish;

/// A delivery to a session, as recovered: queued, or in flight with its
/// packet id (and past PUBREC when `released`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDelivery {
    pub publish: Publish,
    /// Unix seconds its Message Expiry Interval runs out; 0 = never.
    pub expires_at: u64,
    pub qos: u8,
    pub retain: bool,
    pub pid: Option<u16>,
    pub released: bool,
}

/// A will, as recovered.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredWill {
    pub publish: Publish,
    /// Unix seconds it is due; 0 while its connection was open.
    pub due: u64,
    /// Its Will Delay Interval, seconds.
    pub delay: u32,
}

/// A session, as recovered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredSession {
    pub version: u8,
    pub expiry: u32,
    /// Filter -> (options byte, Subscription Identifier or 0).
    pub subscriptions: BTreeMap<String, (u8, u32)>,
    /// In delivery order.
    pub deliveries: Vec<StoredDelivery>,
    /// Inbound QoS 2 packet ids with PUBREC sent.
    pub qos2_in: Vec<u16>,
    /// Its will, when it is due (Unix seconds; 0: its connection was
    /// open, so it is due from the restart) and its Will Delay Interval.
    pub will: Option<StoredWill>,
}

/// A retained message, as recovered, with its stamp.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRetained {
    pub nanos: u64,
    pub shard: u16,
    /// Unix seconds its Message Expiry Interval runs out; 0 = never.
    pub expires_at: u64,
    pub publish: Publish,
}

/// Everything recovered from a generation.
#[derive(Debug, Default)]
pub struct DurableState {
    pub sessions: BTreeMap<String, StoredSession>,
    pub retained: BTreeMap<String, StoredRetained>,
    /// What was dropped from damaged files, one line each, for the log.
    pub damage: Vec<String>,
    /// Retained deletions seen, by topic, with their stamps: an older set
    /// read later (from another file) must not bring the message back.
    deleted: HashMap<String, (u64, u16)>,
}

impl DurableState {
    /// Folds one file's records (header excluded) in.
    pub fn fold_file(&mut self, name: &str, records: &[u8]) {
        let mut file = FileFold::default();
        let mut bad = None;
        let tail = record::records(records, |r| {
            if bad.is_some() {
                return;
            }
            match Entry::read(r.kind, r.body) {
                Ok(e) => file.apply(self, e),
                Err(e) => bad = Some(e),
            }
        });
        if let Some(e) = bad {
            self.damage
                .push(format!("{name}: {e}; the records after it were dropped"));
        }
        if tail.end != End::Clean {
            let lost = records.len() - tail.valid;
            self.damage.push(format!(
                "{name}: {:?} tail: {lost} bytes dropped after {} valid",
                tail.end, tail.valid
            ));
        }
        file.finish(self);
    }
}

/// Per-file bookkeeping: message keys and delivery ids are the file's own.
#[derive(Default)]
struct FileFold {
    messages: HashMap<u64, (u64, Publish)>,
    /// Delivery id -> (client id, its delivery), in id order.
    deliveries: BTreeMap<u64, (String, StoredDelivery)>,
}

impl FileFold {
    fn apply(&mut self, state: &mut DurableState, e: Entry) {
        match e {
            Entry::Session {
                client_id,
                version,
                expiry,
            } => {
                let s = state.sessions.entry(client_id).or_default();
                s.version = version;
                s.expiry = expiry;
            }
            Entry::SessionEnd { client_id } => {
                state.sessions.remove(&client_id);
                self.deliveries.retain(|_, (c, _)| *c != client_id);
            }
            Entry::Subscribe {
                client_id,
                filter,
                options,
                id,
            } => {
                if let Some(s) = state.sessions.get_mut(&client_id) {
                    s.subscriptions.insert(filter, (options, id));
                }
            }
            Entry::Unsubscribe { client_id, filter } => {
                if let Some(s) = state.sessions.get_mut(&client_id) {
                    s.subscriptions.remove(&filter);
                }
            }
            Entry::Message {
                key,
                expires_at,
                publish,
            } => {
                self.messages.insert(key, (expires_at, publish));
            }
            Entry::Enqueue {
                delivery,
                client_id,
                key,
                qos,
                retain,
            } => {
                if let Some((expires_at, publish)) = self.messages.get(&key) {
                    let d = StoredDelivery {
                        publish: publish.clone(),
                        expires_at: *expires_at,
                        qos,
                        retain,
                        pid: None,
                        released: false,
                    };
                    self.deliveries.insert(delivery, (client_id, d));
                }
            }
            Entry::Sent { delivery, pid } => {
                if let Some((_, d)) = self.deliveries.get_mut(&delivery) {
                    d.pid = Some(pid);
                }
            }
            Entry::Released { delivery } => {
                if let Some((_, d)) = self.deliveries.get_mut(&delivery) {
                    d.released = true;
                }
            }
            Entry::Done { delivery } => {
                self.deliveries.remove(&delivery);
            }
            Entry::Retain {
                nanos,
                shard,
                topic,
                expires_at,
                publish,
            } => {
                let set = publish.map(|publish| StoredRetained {
                    nanos,
                    shard,
                    expires_at,
                    publish,
                });
                apply_retain(state, (nanos, shard), topic, set);
            }
            Entry::Qos2In { client_id, pid } => {
                if let Some(s) = state.sessions.get_mut(&client_id) {
                    if !s.qos2_in.contains(&pid) {
                        s.qos2_in.push(pid);
                    }
                }
            }
            Entry::Qos2InDone { client_id, pid } => {
                if let Some(s) = state.sessions.get_mut(&client_id) {
                    s.qos2_in.retain(|p| *p != pid);
                }
            }
            Entry::Will {
                client_id,
                due,
                delay,
                publish,
            } => {
                if let Some(s) = state.sessions.get_mut(&client_id) {
                    s.will = Some(StoredWill {
                        publish,
                        due,
                        delay,
                    });
                }
            }
            Entry::WillGone { client_id } => {
                if let Some(s) = state.sessions.get_mut(&client_id) {
                    s.will = None;
                }
            }
        }
    }

    /// Hands the file's open deliveries to their sessions, in order.
    fn finish(self, state: &mut DurableState) {
        for (_, (client_id, d)) in self.deliveries {
            if let Some(s) = state.sessions.get_mut(&client_id) {
                s.deliveries.push(d);
            }
        }
    }
}

/// The latest retained update of a topic wins (a deletion too, until a
/// later set).
fn apply_retain(
    state: &mut DurableState,
    stamp: (u64, u16),
    topic: String,
    set: Option<StoredRetained>,
) {
    let newer = state
        .retained
        .get(&topic)
        .is_none_or(|r| stamp > (r.nanos, r.shard))
        && state.deleted.get(&topic).is_none_or(|d| stamp > *d);
    if !newer {
        return;
    }
    match set {
        Some(r) => {
            state.deleted.remove(&topic);
            state.retained.insert(topic, r);
        }
        None => {
            state.retained.remove(&topic);
            state.deleted.insert(topic, stamp);
        }
    }
}

/// The entry that rebuilds retained message `topic`.
pub fn retained_entry(topic: &str, r: &StoredRetained) -> Entry {
    Entry::Retain {
        nanos: r.nanos,
        shard: r.shard,
        topic: topic.to_string(),
        expires_at: r.expires_at,
        publish: Some(r.publish.clone()),
    }
}

/// The entries that rebuild `session` of `client_id`, message keys and
/// delivery ids counted from `next` (advanced past the ones used).
pub fn session_entries(client_id: &str, s: &StoredSession, next: &mut u64) -> Vec<Entry> {
    let id = || client_id.to_string();
    let mut out = vec![Entry::Session {
        client_id: id(),
        version: s.version,
        expiry: s.expiry,
    }];
    for (filter, (options, sub_id)) in &s.subscriptions {
        out.push(Entry::Subscribe {
            client_id: id(),
            filter: filter.clone(),
            options: *options,
            id: *sub_id,
        });
    }
    for pid in &s.qos2_in {
        out.push(Entry::Qos2In {
            client_id: id(),
            pid: *pid,
        });
    }
    if let Some(w) = &s.will {
        out.push(Entry::Will {
            client_id: id(),
            due: w.due,
            delay: w.delay,
            publish: w.publish.clone(),
        });
    }
    for d in &s.deliveries {
        let n = *next;
        *next += 1;
        delivery_entries(&mut out, client_id, n, d);
    }
    out
}

/// The entries that rebuild delivery `d` to `client_id` as delivery `id`,
/// its message keyed by the same number: the message, the enqueue, and
/// how far its flow got.
pub fn delivery_entries(out: &mut Vec<Entry>, client_id: &str, id: u64, d: &StoredDelivery) {
    out.push(Entry::Message {
        key: id,
        expires_at: d.expires_at,
        publish: d.publish.clone(),
    });
    out.push(Entry::Enqueue {
        delivery: id,
        client_id: client_id.to_string(),
        key: id,
        qos: d.qos,
        retain: d.retain,
    });
    if let Some(pid) = d.pid {
        out.push(Entry::Sent { delivery: id, pid });
    }
    if d.released {
        out.push(Entry::Released { delivery: id });
    }
}

/// The journal generations under a persistence directory.
pub struct Generations {
    dir: PathBuf,
}

impl Generations {
    pub fn new(dir: &Path) -> Generations {
        Generations {
            dir: dir.to_path_buf(),
        }
    }

    /// The live generation (0 when there is none yet).
    pub fn current(&self) -> io::Result<u64> {
        match fs::read_to_string(self.dir.join("CURRENT")) {
            Ok(s) => s.trim().parse().map_err(|_| {
                let msg = format!(
                    "{}: not a generation number",
                    self.dir.join("CURRENT").display()
                );
                io::Error::new(io::ErrorKind::InvalidData, msg)
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The directory of generation `g`.
    pub fn dir_of(&self, g: u64) -> PathBuf {
        self.dir.join(format!("gen-{g}"))
    }

    /// Reads every journal of generation `g`.
    pub fn read(&self, g: u64) -> io::Result<DurableState> {
        let mut state = DurableState::default();
        if g == 0 {
            return Ok(state);
        }
        let mut files: Vec<PathBuf> = fs::read_dir(self.dir_of(g))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "journal"))
            .collect();
        files.sort();
        for path in files {
            let bytes = fs::read(&path)?;
            let name = path.display().to_string();
            if let Err(e) = record::read_header(&bytes) {
                state.damage.push(format!("{name}: {e}; skipped"));
                continue;
            }
            state.fold_file(&name, &bytes[record::HEADER_LEN..]);
        }
        Ok(state)
    }

    /// Writes generation `g` with one file per shard (`files[k]` for shard
    /// `k`, its entries), syncs it and makes it the live one; the previous
    /// generations are removed.
    pub fn install(&self, g: u64, files: &[Vec<Entry>]) -> io::Result<()> {
        let dir = self.dir_of(g);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        for (shard, entries) in files.iter().enumerate() {
            let f = fs::File::create(dir.join(format!("shard-{shard}.journal")))?;
            let mut f = io::BufWriter::new(f);
            f.write_all(&record::header(shard as u16))?;
            // Record by record: the generation is never whole in memory.
            let mut out = BytesMut::new();
            for e in entries {
                record::append(&mut out, e.kind(), |b| e.write_body(b));
                f.write_all(&out)?;
                out.clear();
            }
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        sync_dir(&dir)?;
        let tmp = self.dir.join("CURRENT.tmp");
        fs::write(&tmp, format!("{g}\n"))?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, self.dir.join("CURRENT"))?;
        sync_dir(&self.dir)?;
        for old in fs::read_dir(&self.dir)?.filter_map(Result::ok) {
            let name = old.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("gen-") && name != format!("gen-{g}") {
                fs::remove_dir_all(old.path())?;
            }
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::{Properties, QoS, TopicName};

    fn publish(payload: &'static [u8]) -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: TopicName::from_str("t").expect("topic"),
            packet_id: None,
            payload: Bytes::from_static(payload),
            properties: Properties::default(),
        }
    }

    fn records(entries: &[Entry]) -> BytesMut {
        let mut out = BytesMut::new();
        for e in entries {
            record::append(&mut out, e.kind(), |b| e.write_body(b));
        }
        out
    }

    fn session(id: &str) -> Entry {
        Entry::Session {
            client_id: id.into(),
            version: 5,
            expiry: 60,
        }
    }

    fn deliver(key: u64, id: &str, payload: &'static [u8]) -> [Entry; 2] {
        [
            Entry::Message {
                key,
                expires_at: 0,
                publish: publish(payload),
            },
            Entry::Enqueue {
                delivery: key,
                client_id: id.into(),
                key,
                qos: 1,
                retain: false,
            },
        ]
    }

    #[test]
    fn open_deliveries_and_subscriptions_survive_in_order() {
        let mut entries = vec![session("a"), session("gone")];
        entries.push(Entry::Subscribe {
            client_id: "a".into(),
            filter: "t/#".into(),
            options: 1,
            id: 0,
        });
        entries.extend(deliver(1, "a", b"one"));
        entries.extend(deliver(2, "a", b"two"));
        entries.extend(deliver(3, "a", b"three"));
        entries.push(Entry::Sent {
            delivery: 1,
            pid: 5,
        });
        entries.push(Entry::Done { delivery: 2 });
        entries.extend(deliver(4, "gone", b"x"));
        entries.push(Entry::SessionEnd {
            client_id: "gone".into(),
        });
        let mut state = DurableState::default();
        state.fold_file("f", &records(&entries));
        assert!(state.damage.is_empty());
        assert_eq!(state.sessions.len(), 1);
        let a = &state.sessions["a"];
        assert_eq!(a.subscriptions["t/#"], (1, 0));
        let got: Vec<(&[u8], Option<u16>)> = a
            .deliveries
            .iter()
            .map(|d| (&d.publish.payload[..], d.pid))
            .collect();
        assert_eq!(got, [(&b"one"[..], Some(5)), (&b"three"[..], None)]);
    }

    #[test]
    fn the_latest_retained_update_wins_across_files() {
        let set = |nanos, payload: &'static [u8]| Entry::Retain {
            nanos,
            shard: 0,
            topic: "r".into(),
            expires_at: 0,
            publish: Some(publish(payload)),
        };
        let mut state = DurableState::default();
        state.fold_file("1", &records(&[set(5, b"new")]));
        state.fold_file("0", &records(&[set(1, b"old")]));
        assert_eq!(&state.retained["r"].publish.payload[..], b"new");
        let delete = Entry::Retain {
            nanos: 9,
            shard: 1,
            topic: "r".into(),
            expires_at: 0,
            publish: None,
        };
        state.fold_file("2", &records(&[delete]));
        assert!(state.retained.is_empty());
        state.fold_file("3", &records(&[set(7, b"older than the deletion")]));
        assert!(state.retained.is_empty(), "a deletion outranks older sets");
    }

    #[test]
    fn a_generation_round_trips_and_replaces_the_last() {
        let dir = std::env::temp_dir().join(format!("shardmq-gen-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let g = Generations::new(&dir);
        assert_eq!(g.current().expect("none yet"), 0);
        let mut s = StoredSession {
            version: 4,
            expiry: u32::MAX,
            ..Default::default()
        };
        s.subscriptions.insert("t".into(), (2, 0));
        s.qos2_in.push(7);
        s.deliveries.push(StoredDelivery {
            publish: publish(b"p"),
            expires_at: 0,
            qos: 2,
            retain: false,
            pid: Some(3),
            released: true,
        });
        let mut next = 1;
        g.install(1, &[session_entries("c", &s, &mut next), Vec::new()])
            .expect("installs");
        g.install(2, &[session_entries("c", &s, &mut next)])
            .expect("installs");
        assert_eq!(g.current().expect("live"), 2);
        assert!(!g.dir_of(1).exists(), "the older generation is gone");
        let state = g.read(2).expect("reads");
        assert_eq!(state.sessions["c"], s);
        let _ = fs::remove_dir_all(&dir);
    }
}
