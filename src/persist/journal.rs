//! A shard's journal: the file it appends its records to, and the writer
//! thread that does the writing, so that the shard's loop never blocks on
//! `write` or `fsync`.
//!
//! The shard appends records to [`Journal::append`]'s batch during a loop
//! turn and hands the batch over at the end of the turn
//! ([`Journal::submit`]), getting a sequence number. The writer thread
//! writes batches in order and, by [`Durability`], publishes the highest
//! sequence number that is written ([`Durability::Written`]: survives
//! `kill -9`) or written and `fdatasync`'d ([`Durability::Fsync`]: survives
//! power loss; one sync covers every batch that arrived within the commit
//! interval: group commit). It then calls the shard's wake-up, and the
//! shard releases what waited on that number (acknowledgements).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use super::record::{self, End, Tail, HEADER_LEN};

/// How durable a record is before what waits on it is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written to the file (the page cache): survives a crash of the
    /// broker, not of the machine.
    Written,
    /// Written and synced to the device, at most `interval` after it was
    /// handed over (group commit): survives power loss.
    Fsync { interval: Duration },
}

/// The group commit interval `persistence_sync fsync` uses unless told.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_millis(10);

/// Batches the writer may hold before [`Journal::submit`] reports the
/// shard must slow down.
pub const MAX_BATCHES: usize = 1024;

/// What a journal file held when it was opened.
#[derive(Debug)]
pub struct Recovered {
    /// The valid records, header excluded (see [`record::records`]).
    pub records: Vec<u8>,
    /// Where they ended; a torn or corrupt tail has been cut off the file.
    pub tail: Tail,
    /// Bytes dropped from the end of the file.
    pub dropped: u64,
}

/// Work for the writer.
enum Job {
    /// Records to append: batch `seq`.
    Batch { seq: u64, bytes: Bytes },
    /// Replace the file with `records` (a compaction: the live state,
    /// written after every batch before it).
    Rotate { records: Bytes },
}

/// One shard's journal. Owned by that shard; with [`Durability::Fsync`]
/// its writer thread owns the file, with [`Durability::Written`] the shard
/// writes it itself (one `write` per loop turn, into the page cache: no
/// thread hand-off, which cost more CPU than the write it saved).
pub struct Journal {
    path: PathBuf,
    shard: u16,
    /// The file, written by the shard itself ([`Durability::Written`]).
    direct: Option<File>,
    batch: BytesMut,
    next_seq: u64,
    tx: Option<Sender<Job>>,
    /// Bytes handed to the writer since the file was last compacted.
    written: u64,
    /// The highest sequence number durable as [`Durability`] asks.
    durable: Arc<AtomicU64>,
    writer: Option<JoinHandle<io::Result<()>>>,
}

impl Journal {
    /// Opens (or creates) `dir/shard-<shard>.journal`, cuts a torn or
    /// corrupt tail off it, and starts its writer thread, which calls
    /// `wake` each time more is durable. Returns the journal and what the
    /// file held.
    pub fn open(
        dir: &Path,
        shard: u16,
        durability: Durability,
        wake: impl Fn() + Send + 'static,
    ) -> io::Result<(Journal, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("shard-{shard}.journal"));
        Journal::open_at(path, shard, durability, wake)
    }

    /// [`Journal::open`] on the file `path`, whose header names `owner`
    /// (the bridge thread's journal, say).
    pub fn open_at(
        path: PathBuf,
        shard: u16,
        durability: Durability,
        wake: impl Fn() + Send + 'static,
    ) -> io::Result<(Journal, Recovered)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let recovered = recover(&mut file, &path, shard)?;
        let journal = Journal::start(file, path, shard, durability, wake)?;
        Ok((journal, recovered))
    }

    /// Opens `dir/shard-<shard>.journal` just written whole (a new
    /// generation, see `state::Generations::install`) to append to it,
    /// without reading it back.
    pub fn open_written(
        dir: &Path,
        shard: u16,
        durability: Durability,
        wake: impl Fn() + Send + 'static,
    ) -> io::Result<Journal> {
        let path = dir.join(format!("shard-{shard}.journal"));
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        let size = file.metadata()?.len();
        let mut journal = Journal::start(file, path, shard, durability, wake)?;
        journal.written = size;
        Ok(journal)
    }

    /// Starts the writer thread on `file`, positioned at its end.
    fn start(
        mut file: File,
        path: PathBuf,
        shard: u16,
        durability: Durability,
        wake: impl Fn() + Send + 'static,
    ) -> io::Result<Journal> {
        file.seek(SeekFrom::End(0))?;
        if durability == Durability::Written {
            return Ok(Journal {
                path,
                shard,
                direct: Some(file),
                batch: BytesMut::new(),
                next_seq: 1,
                tx: None,
                written: 0,
                durable: Arc::new(AtomicU64::new(0)),
                writer: None,
            });
        }
        let (tx, rx) = crossbeam_channel::bounded(MAX_BATCHES);
        let durable = Arc::new(AtomicU64::new(0));
        let published = Arc::clone(&durable);
        let writer = std::thread::Builder::new()
            .name(format!("journal-{shard}"))
            .spawn({
                let path = path.clone();
                move || write_loop(file, &path, shard, rx, durability, &published, wake)
            })?;
        let journal = Journal {
            path,
            shard,
            direct: None,
            batch: BytesMut::new(),
            next_seq: 1,
            tx: Some(tx),
            written: 0,
            durable,
            writer: Some(writer),
        };
        Ok(journal)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a record to this turn's batch; it is in the batch the next
    /// [`submit`](Self::submit) hands over, whose number this returns.
    pub fn append(&mut self, kind: u8, write_body: impl FnOnce(&mut BytesMut)) -> u64 {
        record::append(&mut self.batch, kind, write_body);
        self.next_seq
    }

    /// Hands this turn's batch to the writer. `Ok(None)` if there was
    /// nothing to hand; `Err(Full)` if the writer is [`MAX_BATCHES`]
    /// behind: the batch stays and grows, and the shard should stop taking
    /// work that needs the journal until a later submit succeeds.
    pub fn submit(&mut self) -> Result<Option<u64>, Full> {
        if self.batch.is_empty() {
            return Ok(None);
        }
        if self.direct.is_some() {
            return self.write_direct();
        }
        let Some(tx) = &self.tx else {
            return Err(Full);
        };
        let seq = self.next_seq;
        let bytes = self.batch.split().freeze();
        let len = bytes.len() as u64;
        match tx.try_send(Job::Batch { seq, bytes }) {
            Ok(()) => {
                self.next_seq += 1;
                self.written += len;
                Ok(Some(seq))
            }
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                if let Job::Batch { bytes, .. } = job {
                    // Put it back in front of anything appended later.
                    let later = std::mem::replace(&mut self.batch, BytesMut::from(&bytes[..]));
                    self.batch.extend_from_slice(&later);
                }
                Err(Full)
            }
        }
    }

    /// [`Durability::Written`]: writes the batch now; it is durable as
    /// soon as the write returns. A failed write (a full disk) keeps the
    /// batch, and what waits on it waits.
    fn write_direct(&mut self) -> Result<Option<u64>, Full> {
        let Some(file) = self.direct.as_mut() else {
            return Err(Full);
        };
        if let Err(e) = file.write_all(&self.batch) {
            log::error!("{}: {e}; acknowledgements wait", self.path.display());
            return Err(Full);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.written += self.batch.len() as u64;
        self.batch.clear();
        self.durable.store(seq, Ordering::Release);
        Ok(Some(seq))
    }

    /// Bytes handed to the writer since the file was created or compacted.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Compacts the file: the writer replaces it with `records` (the live
    /// state, as records) once it has written every batch handed over so
    /// far; later batches go to the new file. Call right after
    /// [`submit`](Self::submit), so that `records` reflects them all.
    /// `Err(Full)` if the writer is too far behind (try again later).
    pub fn rotate(&mut self, records: Bytes) -> Result<(), Full> {
        if let Some(file) = self.direct.take() {
            let len = records.len() as u64;
            match rotate(file, &self.path, self.shard, &records, false) {
                Ok(new) => {
                    self.direct = Some(new);
                    self.written = len;
                    return Ok(());
                }
                Err(e) => {
                    // The old file is gone from under us only if the
                    // rename happened; reopen whatever the path holds.
                    log::error!("{}: compaction failed: {e}", self.path.display());
                    let reopened = OpenOptions::new().append(true).open(&self.path);
                    self.direct = reopened.ok();
                    return Err(Full);
                }
            }
        }
        let Some(tx) = &self.tx else {
            return Err(Full);
        };
        let len = records.len() as u64;
        tx.try_send(Job::Rotate { records }).map_err(|_| Full)?;
        self.written = len;
        Ok(())
    }

    /// The number the next [`submit`](Self::submit) hands over.
    pub fn next_batch(&self) -> u64 {
        self.next_seq
    }

    /// The highest batch number that is durable.
    pub fn durable(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Hands over what is left, lets the writer finish (its last sync
    /// included) and returns its result.
    pub fn close(mut self) -> io::Result<()> {
        let _ = self.submit();
        if let Some(file) = self.direct.take() {
            return file.sync_data();
        }
        self.tx = None;
        match self.writer.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the journal writer panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer is too far behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Reads `file`, writing a header into an empty one; a torn or corrupt
/// tail is cut off (and logged).
fn recover(file: &mut File, path: &Path, shard: u16) -> io::Result<Recovered> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if bytes.is_empty() {
        file.write_all(&record::header(shard))?;
        return Ok(Recovered {
            records: Vec::new(),
            tail: Tail {
                valid: 0,
                end: End::Clean,
            },
            dropped: 0,
        });
    }
    let owner = record::read_header(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })?;
    if owner != shard {
        let msg = format!("{}: journal of shard {owner}, not {shard}", path.display());
        return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
    }
    let mut records = bytes.split_off(HEADER_LEN);
    let tail = record::records(&records, |_| {});
    let dropped = (records.len() - tail.valid) as u64;
    if tail.end != End::Clean {
        log::warn!(
            "{}: {:?} tail: dropped the last {dropped} bytes after {} valid bytes of records",
            path.display(),
            tail.end,
            tail.valid
        );
        file.set_len((HEADER_LEN + tail.valid) as u64)?;
        records.truncate(tail.valid);
    }
    Ok(Recovered {
        records,
        tail,
        dropped,
    })
}

/// The writer thread: writes batches in order, syncs as `durability`
/// asks, publishes the durable batch number and wakes the shard. Ends when
/// the shard drops its sender, after a last sync.
///
/// Group commit: every batch waiting is written before one sync, and syncs
/// come at most once per interval: the first batch after a quiet spell is
/// synced at once, batches under load wait at most the interval.
fn write_loop(
    mut file: File,
    path: &Path,
    shard: u16,
    rx: Receiver<Job>,
    durability: Durability,
    durable: &AtomicU64,
    wake: impl Fn(),
) -> io::Result<()> {
    let interval = match durability {
        Durability::Written => None,
        Durability::Fsync { interval } => Some(interval),
    };
    let mut last_sync = Instant::now() - interval.unwrap_or_default();
    let mut unsynced = 0;
    loop {
        let wait = match interval {
            Some(i) if unsynced > 0 => i.saturating_sub(last_sync.elapsed()),
            _ => Duration::from_secs(3600),
        };
        let first = match rx.recv_timeout(wait) {
            Ok(batch) => Some(batch),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                file.sync_data()?;
                durable.fetch_max(unsynced, Ordering::AcqRel);
                return Ok(());
            }
        };
        let mut written = 0;
        for job in first.into_iter().chain(rx.try_iter().take(MAX_BATCHES)) {
            match job {
                Job::Batch { seq, bytes } => {
                    file.write_all(&bytes)?;
                    written = seq;
                }
                Job::Rotate { records } => file = rotate(file, path, shard, &records, true)?,
            }
        }
        if interval.is_none() && written > 0 {
            durable.store(written, Ordering::Release);
            wake();
            continue;
        }
        unsynced = unsynced.max(written);
        if unsynced > 0 && interval.is_some_and(|i| last_sync.elapsed() >= i) {
            file.sync_data()?;
            last_sync = Instant::now();
            durable.store(unsynced, Ordering::Release);
            unsynced = 0;
            wake();
        }
    }
}

/// Replaces the journal at `path` (open as `old`) with a new file holding
/// the header and `records`, which takes the old one's name; returns the
/// new file, positioned at its end. A crash at any point leaves one whole
/// journal at `path`: the old one or the new one. With `sync` (the fsync
/// mode) the new file and the directory are synced before and after the
/// rename; without it (`written`: kill -9 of the broker, not power loss)
/// nothing is synced, so a compaction never waits on the device (syncing
/// a journal of many dirty megabytes stalled the loop for a second).
fn rotate(old: File, path: &Path, shard: u16, records: &[u8], sync: bool) -> io::Result<File> {
    drop(old);
    let tmp = path.with_extension("journal.compact");
    let mut new = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    new.write_all(&record::header(shard))?;
    new.write_all(records)?;
    if sync {
        new.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let (true, Some(dir)) = (sync, path.parent()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(new)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use bytes::BufMut;

    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shardmq-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn wait_durable(j: &Journal, seq: u64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while j.durable() < seq {
            assert!(Instant::now() < deadline, "batch {seq} never durable");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn kinds(recovered: &Recovered) -> Vec<u8> {
        let mut kinds = Vec::new();
        record::records(&recovered.records, |r| kinds.push(r.kind));
        kinds
    }

    #[test]
    fn batches_become_durable_in_order_and_are_read_back() {
        for durability in [
            Durability::Written,
            Durability::Fsync {
                interval: Duration::from_millis(5),
            },
        ] {
            let d = dir(&format!("order-{durability:?}").replace([' ', '{', '}', ':'], ""));
            let wakes = Arc::new(AtomicUsize::new(0));
            let w = Arc::clone(&wakes);
            let wake = move || {
                w.fetch_add(1, Ordering::Relaxed);
            };
            let (mut j, rec) = Journal::open(&d, 3, durability, wake).expect("opens");
            assert!(rec.records.is_empty());
            for kind in 1..=3u8 {
                let seq = j.append(kind, |b| b.put_slice(b"body"));
                assert_eq!(j.submit(), Ok(Some(seq)));
            }
            assert_eq!(j.submit(), Ok(None), "nothing appended");
            wait_durable(&j, 3);
            // The writer thread wakes the shard; a written journal is
            // durable when `submit` returns, with no wake-up to wait for.
            let woken = wakes.load(Ordering::Relaxed) >= 1;
            assert_eq!(woken, durability != Durability::Written, "{durability:?}");
            j.close().expect("closes");
            let (j, rec) = Journal::open(&d, 3, durability, || {}).expect("reopens");
            assert_eq!(kinds(&rec), [1, 2, 3]);
            drop(j);
            let _ = std::fs::remove_dir_all(&d);
        }
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_appending_goes_on_after_it() {
        let d = dir("torn");
        let (mut j, _) = Journal::open(&d, 0, Durability::Written, || {}).expect("opens");
        j.append(1, |b| b.put_slice(b"kept"));
        j.append(2, |b| b.put_slice(b"torn"));
        j.submit().expect("room");
        let path = j.path().to_path_buf();
        j.close().expect("closes");
        let len = std::fs::metadata(&path).expect("file").len();
        let f = OpenOptions::new().write(true).open(&path).expect("file");
        f.set_len(len - 2).expect("cut");
        drop(f);

        let (mut j, rec) = Journal::open(&d, 0, Durability::Written, || {}).expect("reopens");
        assert_eq!(kinds(&rec), [1]);
        assert_eq!((rec.tail.end, rec.dropped), (End::Torn, 11));
        j.append(3, |b| b.put_slice(b"after"));
        j.submit().expect("room");
        j.close().expect("closes");
        let (_j, rec) = Journal::open(&d, 0, Durability::Written, || {}).expect("reopens");
        assert_eq!(kinds(&rec), [1, 3]);
        assert_eq!(rec.tail.end, End::Clean);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn another_shards_or_a_foreign_file_is_refused() {
        let d = dir("foreign");
        let (j, _) = Journal::open(&d, 1, Durability::Written, || {}).expect("opens");
        j.close().expect("closes");
        std::fs::copy(d.join("shard-1.journal"), d.join("shard-2.journal")).expect("copy");
        let err = Journal::open(&d, 2, Durability::Written, || {})
            .err()
            .expect("shard 2 does not take shard 1's file");
        assert!(err.to_string().contains("shard 1, not 2"), "{err}");
        std::fs::write(d.join("shard-5.journal"), b"mosquitto.db is not ours").expect("write");
        let err = Journal::open(&d, 5, Durability::Written, || {})
            .err()
            .expect("refused");
        assert!(err.to_string().contains("not a shardmq journal"), "{err}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
