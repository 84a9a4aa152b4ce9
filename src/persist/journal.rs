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

/// A compaction's live state: encodes its records into the buffer. Run
/// off the owner's loop (on the writer thread, or a compaction thread of
/// its own), so that a large state does not stall the loop.
pub type Snapshot = Box<dyn FnOnce(&mut BytesMut) + Send>;

/// Work for the writer.
enum Job {
    /// Records to append: batch `seq`.
    Batch { seq: u64, bytes: Bytes },
    /// Replace the file with the snapshot's records (a compaction: the
    /// live state, written after every batch before it).
    Rotate { snapshot: Snapshot },
}

/// What the threads working for a journal publish to its owner.
#[derive(Default)]
struct Published {
    /// The highest sequence number durable as [`Durability`] asks.
    durable: AtomicU64,
    /// Bytes of live state the last compaction wrote (at the start: the
    /// file's size).
    live: AtomicU64,
    /// Compactions finished (the writer thread's).
    rotated: AtomicU64,
}

/// A compaction in [`Durability::Written`] mode: a thread writes the
/// snapshot under a temporary name while the owner goes on appending to
/// the old file; the batches appended meanwhile are kept, and written to
/// the new file before it takes the journal's name.
struct Compaction {
    thread: JoinHandle<io::Result<(File, u64)>>,
    since: BytesMut,
}

/// One shard's journal (or the bridge thread's: the same writer, another
/// file). Owned by that shard; with [`Durability::Fsync`]
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
    /// Bytes appended since the last compaction was asked for.
    appended: u64,
    /// Compactions asked of the writer thread (done: `published.rotated`).
    rotations: u64,
    /// A compaction running ([`Durability::Written`]).
    compaction: Option<Compaction>,
    /// While the owner takes a compaction's snapshot in slices (from
    /// [`begin_compaction`](Self::begin_compaction) to
    /// [`rotate`](Self::rotate)): a copy of every batch handed over since,
    /// which follows the snapshot into the new file.
    capture: Option<BytesMut>,
    published: Arc<Published>,
    wake: Arc<dyn Fn() + Send + Sync>,
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
        wake: impl Fn() + Send + Sync + 'static,
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
        wake: impl Fn() + Send + Sync + 'static,
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
        wake: impl Fn() + Send + Sync + 'static,
    ) -> io::Result<Journal> {
        let path = dir.join(format!("shard-{shard}.journal"));
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        Journal::start(file, path, shard, durability, wake)
    }

    /// Starts the writer thread on `file`, positioned at its end.
    fn start(
        mut file: File,
        path: PathBuf,
        shard: u16,
        durability: Durability,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> io::Result<Journal> {
        let size = file.seek(SeekFrom::End(0))?;
        let published = Arc::new(Published::default());
        published.live.store(size, Ordering::Relaxed);
        let wake: Arc<dyn Fn() + Send + Sync> = Arc::new(wake);
        let mut journal = Journal {
            path,
            shard,
            direct: None,
            batch: BytesMut::new(),
            next_seq: 1,
            tx: None,
            appended: 0,
            rotations: 0,
            compaction: None,
            capture: None,
            published,
            wake,
            writer: None,
        };
        if durability == Durability::Written {
            journal.direct = Some(file);
            return Ok(journal);
        }
        let (tx, rx) = crossbeam_channel::bounded(MAX_BATCHES);
        let published = Arc::clone(&journal.published);
        let wake = Arc::clone(&journal.wake);
        let path = journal.path.clone();
        let writer = std::thread::Builder::new()
            .name(format!("journal-{shard}"))
            .spawn(move || write_loop(file, &path, shard, rx, durability, &published, &*wake))?;
        journal.tx = Some(tx);
        journal.writer = Some(writer);
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
        self.finish_compaction(false);
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
        let copy = self.capture.is_some().then(|| bytes.clone());
        match tx.try_send(Job::Batch { seq, bytes }) {
            Ok(()) => {
                if let (Some(capture), Some(copy)) = (self.capture.as_mut(), copy) {
                    capture.extend_from_slice(&copy);
                }
                self.next_seq += 1;
                self.appended += len;
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
        if let Some(c) = self.compaction.as_mut() {
            c.since.extend_from_slice(&self.batch);
        }
        if let Some(capture) = self.capture.as_mut() {
            capture.extend_from_slice(&self.batch);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.appended += self.batch.len() as u64;
        self.batch.clear();
        self.published.durable.store(seq, Ordering::Release);
        Ok(Some(seq))
    }

    /// True when no compaction is running and the file has grown past
    /// its bound: twice the live state at the last compaction (or the
    /// open), and at least `min`.
    pub fn due_for_compaction(&self, min: u64) -> bool {
        let live = self.published.live.load(Ordering::Acquire);
        !self.compacting() && live + self.appended >= min.max(2 * live)
    }

    /// True from [`begin_compaction`](Self::begin_compaction) (or
    /// [`rotate`](Self::rotate)) until the new file is in place.
    pub fn compacting(&self) -> bool {
        self.compaction.is_some()
            || self.capture.is_some()
            || self.published.rotated.load(Ordering::Acquire) < self.rotations
    }

    /// Begins a compaction whose snapshot the owner takes in slices over
    /// several turns: from the next batch handed over on, every batch is
    /// also kept, to be written right after the snapshot by
    /// [`rotate`](Self::rotate). Call right after [`submit`](Self::submit),
    /// so that what is kept starts at a batch. The snapshot may then be
    /// fuzzy (each part taken at any time between this call and
    /// `rotate`): folding the batches kept on top of it must give the
    /// live state, which holds when every entry sets or removes one keyed
    /// thing (see `shard::compaction`).
    pub fn begin_compaction(&mut self) {
        self.capture = Some(BytesMut::new());
    }

    /// Compacts the file: `snapshot` (the live state) is encoded and
    /// written off the owner's loop, followed by the batches kept since
    /// [`begin_compaction`](Self::begin_compaction) if it was called, and
    /// replaces the file after every batch handed over so far; later
    /// batches go to the new file. Call right after
    /// [`submit`](Self::submit), so that the snapshot (and what was kept)
    /// reflects them all. `Err(Full)` if a compaction is still running or
    /// the writer is too far behind: a compaction begun is then dropped
    /// (the old file has everything), and is due again.
    pub fn rotate(&mut self, snapshot: Snapshot) -> Result<(), Full> {
        let snapshot: Snapshot = match self.capture.take() {
            Some(since) => Box::new(move |out: &mut BytesMut| {
                snapshot(out);
                out.extend_from_slice(&since);
            }),
            None => snapshot,
        };
        if self.compaction.is_some() {
            return Err(Full);
        }
        if self.direct.is_some() {
            let tmp = self.path.with_extension("journal.compact");
            let (shard, wake) = (self.shard, Arc::clone(&self.wake));
            let thread = std::thread::Builder::new()
                .name(format!("compact-{shard}"))
                .spawn(move || {
                    let written = write_snapshot(&tmp, shard, snapshot, false);
                    wake();
                    written
                })
                .map_err(|_| Full)?;
            self.compaction = Some(Compaction {
                thread,
                since: BytesMut::new(),
            });
            self.appended = 0;
            return Ok(());
        }
        let Some(tx) = &self.tx else {
            return Err(Full);
        };
        tx.try_send(Job::Rotate { snapshot }).map_err(|_| Full)?;
        self.rotations += 1;
        self.appended = 0;
        Ok(())
    }

    /// [`Durability::Written`]: installs a compaction whose snapshot is
    /// written (or, with `wait`, once it is): the batches appended since go
    /// after it, and it takes the journal's name. A failed one is logged
    /// and dropped; the old file has everything.
    fn finish_compaction(&mut self, wait: bool) {
        if !wait
            && self
                .compaction
                .as_ref()
                .is_none_or(|c| !c.thread.is_finished())
        {
            return;
        }
        let Some(c) = self.compaction.take() else {
            return;
        };
        let tmp = self.path.with_extension("journal.compact");
        let installed = match c.thread.join() {
            Ok(Ok((mut new, live))) => new
                .write_all(&c.since)
                .and_then(|()| std::fs::rename(&tmp, &self.path))
                .map(|()| (new, live)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::other("the compaction thread panicked")),
        };
        match installed {
            Ok((new, live)) => {
                self.direct = Some(new);
                self.published.live.store(live, Ordering::Release);
            }
            Err(e) => {
                log::error!("{}: compaction failed: {e}", self.path.display());
                let _ = std::fs::remove_file(&tmp);
                // Not again before the file has doubled.
                let live = self.published.live.load(Ordering::Acquire);
                self.published
                    .live
                    .store(live + self.appended, Ordering::Release);
            }
        }
    }

    /// The number the next [`submit`](Self::submit) hands over.
    pub fn next_batch(&self) -> u64 {
        self.next_seq
    }

    /// The highest batch number that is durable.
    pub fn durable(&self) -> u64 {
        self.published.durable.load(Ordering::Acquire)
    }

    /// Hands over what is left, lets the writer finish (its last sync
    /// included) and returns its result.
    pub fn close(mut self) -> io::Result<()> {
        self.finish_compaction(true);
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
        if let Some(c) = self.compaction.take() {
            // Abandoned: the old file has everything.
            let _ = c.thread.join();
            let _ = std::fs::remove_file(self.path.with_extension("journal.compact"));
        }
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
    published: &Published,
    wake: &dyn Fn(),
) -> io::Result<()> {
    let durable = &published.durable;
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
                Job::Rotate { snapshot } => {
                    let live;
                    (file, live) = rotate(file, path, shard, snapshot, true)?;
                    published.live.store(live, Ordering::Release);
                    published.rotated.fetch_add(1, Ordering::AcqRel);
                }
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
/// the header and the snapshot's records, which takes the old one's name;
/// returns the new file, positioned at its end, and its records' bytes. A
/// crash at any point leaves one whole journal at `path`: the old one or
/// the new one. With `sync` (the fsync mode) the new file and the
/// directory are synced before and after the rename; without it
/// (`written`: kill -9 of the broker, not power loss) nothing is synced,
/// so a compaction never waits on the device (syncing a journal of many
/// dirty megabytes stalled the loop for a second).
fn rotate(
    old: File,
    path: &Path,
    shard: u16,
    snapshot: Snapshot,
    sync: bool,
) -> io::Result<(File, u64)> {
    drop(old);
    let tmp = path.with_extension("journal.compact");
    let new = write_snapshot(&tmp, shard, snapshot, sync)?;
    std::fs::rename(&tmp, path)?;
    if let (true, Some(dir)) = (sync, path.parent()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(new)
}

/// Writes a journal file at `tmp`: the header and the snapshot's records
/// (synced with `sync`). Returns it, positioned at its end, and the
/// records' bytes.
fn write_snapshot(
    tmp: &Path,
    shard: u16,
    snapshot: Snapshot,
    sync: bool,
) -> io::Result<(File, u64)> {
    let started = Instant::now();
    let mut records = BytesMut::new();
    snapshot(&mut records);
    let mut new = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    new.write_all(&record::header(shard))?;
    new.write_all(&records)?;
    if sync {
        new.sync_all()?;
    }
    log::info!(
        "{}: compaction snapshot of {} bytes encoded and written in {:?}, off the loop",
        tmp.display(),
        records.len(),
        started.elapsed()
    );
    Ok((new, records.len() as u64))
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

    /// Each durability, with a name for its test directory.
    fn both_modes() -> [(Durability, &'static str); 2] {
        let interval = Duration::from_millis(5);
        [
            (Durability::Written, "written"),
            (Durability::Fsync { interval }, "fsync"),
        ]
    }

    #[test]
    fn batches_become_durable_in_order_and_are_read_back() {
        for (durability, mode) in both_modes() {
            let d = dir(&format!("order-{mode}"));
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
    fn a_compaction_off_the_loop_keeps_every_batch_appended_while_it_runs() {
        for (durability, mode) in both_modes() {
            let d = dir(&format!("compact-{mode}"));
            let (mut j, _) = Journal::open(&d, 4, durability, || {}).expect("opens");
            for kind in 1..=3u8 {
                j.append(kind, |b| b.put_slice(&[0; 100]));
                j.submit().expect("room");
            }
            assert!(j.due_for_compaction(100), "300 B appended to nothing live");
            let snapshot: Snapshot = Box::new(|out: &mut BytesMut| {
                std::thread::sleep(Duration::from_millis(50));
                record::append(out, 9, |b| b.put_slice(b"live"));
            });
            j.rotate(snapshot).expect("starts");
            assert!(!j.due_for_compaction(0), "one compaction at a time");
            j.append(10, |b| b.put_slice(b"during"));
            let seq = j.submit().expect("room").expect("a batch");
            wait_durable(&j, seq);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !j.due_for_compaction(0) {
                assert!(Instant::now() < deadline, "{durability:?}: never finished");
                std::thread::sleep(Duration::from_millis(5));
                j.submit().expect("room");
            }
            j.append(11, |b| b.put_slice(b"after"));
            j.close().expect("closes");
            let (_j, rec) = Journal::open(&d, 4, durability, || {}).expect("reopens");
            assert_eq!(kinds(&rec), [9, 10, 11], "{durability:?}");
            assert!(!d.join("shard-4.journal.compact").exists());
            let _ = std::fs::remove_dir_all(&d);
        }
    }

    #[test]
    fn a_compaction_begun_keeps_the_batches_until_its_snapshot_is_whole() {
        for (durability, mode) in both_modes() {
            let d = dir(&format!("slices-{mode}"));
            let (mut j, _) = Journal::open(&d, 6, durability, || {}).expect("opens");
            j.append(1, |b| b.put_slice(&[0; 100]));
            j.submit().expect("room");
            assert!(j.due_for_compaction(50));
            j.begin_compaction();
            assert!(j.compacting() && !j.due_for_compaction(0), "one at a time");
            // Turns while the owner takes the snapshot in slices.
            for kind in 2..=3u8 {
                j.append(kind, |b| b.put_slice(b"meanwhile"));
                j.submit().expect("room");
            }
            let snapshot: Snapshot = Box::new(|out: &mut BytesMut| {
                record::append(out, 9, |b| b.put_slice(b"slices"));
            });
            j.rotate(snapshot).expect("starts");
            j.append(4, |b| b.put_slice(b"after"));
            j.submit().expect("room");
            let deadline = Instant::now() + Duration::from_secs(5);
            while j.compacting() {
                assert!(Instant::now() < deadline, "{durability:?}: never finished");
                std::thread::sleep(Duration::from_millis(5));
                j.submit().expect("room");
            }
            j.close().expect("closes");
            let (_j, rec) = Journal::open(&d, 6, durability, || {}).expect("reopens");
            assert_eq!(kinds(&rec), [9, 2, 3, 4], "{durability:?}");
            let _ = std::fs::remove_dir_all(&d);
        }
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
