//! The verifier threads: password hashes are checked here, never on a
//! shard's loop, so a flood of CONNECTs with wrong passwords costs the
//! shards a channel send each and stalls none of their other clients.
//!
//! One pool per broker ([`Verifiers`]), `password_check_threads` threads
//! taking [`Job`]s from one bounded queue of `password_check_queue`
//! slots. A shard submits through its [`VerifierLine`]; when the queue is
//! full the submit fails ([`Busy`]) and the shard refuses the CONNECT
//! instead of queueing it. Each answer ([`Verdict`]) goes back over the
//! shard's own reply channel and wakes its loop; the connection waits in
//! its `Verifying` phase meanwhile. The threads run at a lower priority
//! than the shards ([`VERIFIER_NICE`]): they are not pinned, and where one
//! shares a core with a shard, the shard comes first.

use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use super::PasswordDb;
use crate::limits::VERIFIER_NICE;
use crate::runtime::Wake;

/// One password check. Made by a shard, run by a verifier thread.
pub struct Job {
    /// The connection waiting: slab token and serial on its shard.
    token: usize,
    serial: u32,
    db: Arc<PasswordDb>,
    username: String,
    password: Option<Bytes>,
    /// The submitting shard's reply channel and wake-up line.
    reply: Sender<Verdict>,
    wake: Arc<Wake>,
}

/// A check's answer, for the connection `(token, serial)` of the shard
/// that asked (it may be gone by now: the serial tells).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub token: usize,
    pub serial: u32,
    /// The user is listed and the password matches.
    pub ok: bool,
}

/// The queue is full (or the pool is gone): refuse the CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// The verifier threads. Owned by the broker handle, which joins them at
/// shutdown: they end once every shard (every job sender) is gone.
pub struct Verifiers {
    threads: Vec<JoinHandle<()>>,
}

impl Verifiers {
    /// Starts `threads` verifier threads on a queue of `queue` jobs;
    /// returns them and the queue's sending end (one clone per shard).
    pub fn start(threads: usize, queue: usize) -> io::Result<(Verifiers, Sender<Job>)> {
        let (tx, rx) = bounded::<Job>(queue);
        let mut pool = Verifiers {
            threads: Vec::with_capacity(threads),
        };
        for i in 0..threads {
            let rx: Receiver<Job> = rx.clone();
            let thread = std::thread::Builder::new()
                .name(format!("verifier-{i}"))
                .spawn(move || {
                    lower_priority();
                    for job in rx.iter() {
                        job.run();
                    }
                })?;
            pool.threads.push(thread);
        }
        Ok((pool, tx))
    }

    /// Waits for the threads (after every shard has stopped).
    pub fn join(self) {
        for thread in self.threads {
            if thread.join().is_err() {
                log::error!("a password verifier thread panicked");
            }
        }
    }
}

/// Gives the calling thread the nice value [`VERIFIER_NICE`] (Linux
/// sets it per thread); a failure leaves it at the shards' priority.
fn lower_priority() {
    // SAFETY: gettid and setpriority only read their arguments.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, VERIFIER_NICE)
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        log::warn!("password verifier thread: cannot lower its priority: {e}");
    }
}

impl Job {
    /// Checks the password and posts the verdict to the shard.
    fn run(self) {
        let ok = self.db.verify(&self.username, self.password.as_deref());
        let verdict = Verdict {
            token: self.token,
            serial: self.serial,
            ok,
        };
        // Never full (see `VerifierLine::outstanding`); a shard that has
        // stopped no longer cares.
        if self.reply.try_send(verdict).is_ok() {
            self.wake.notify();
        }
    }
}

/// A shard's line to the verifier threads: the shared job queue, and
/// this shard's reply channel. Shard-local once the shard runs (only its
/// thread submits and reads verdicts).
pub struct VerifierLine {
    jobs: Sender<Job>,
    reply_tx: Sender<Verdict>,
    replies: Receiver<Verdict>,
    wake: Arc<Wake>,
    /// Checks submitted whose verdict is not read yet. Invariant: at most
    /// the reply channel's capacity, so a verifier's reply never finds it
    /// full.
    outstanding: Cell<usize>,
    capacity: usize,
}

impl VerifierLine {
    /// A line submitting to `jobs`, with room for `capacity` verdicts
    /// (the queue's size plus the threads: every check one shard can have
    /// under way), woken through `wake`.
    pub fn new(jobs: Sender<Job>, capacity: usize, wake: Arc<Wake>) -> VerifierLine {
        let (reply_tx, replies) = bounded(capacity);
        VerifierLine {
            jobs,
            reply_tx,
            replies,
            wake,
            outstanding: Cell::new(0),
            capacity,
        }
    }

    /// Queues a check of `username`/`password` against `db` for the
    /// connection `(token, serial)`; [`Busy`] if the queue is full.
    pub fn submit(
        &self,
        (token, serial): (usize, u32),
        db: Arc<PasswordDb>,
        username: String,
        password: Option<Bytes>,
    ) -> Result<(), Busy> {
        if self.outstanding.get() >= self.capacity {
            return Err(Busy);
        }
        let job = Job {
            token,
            serial,
            db,
            username,
            password,
            reply: self.reply_tx.clone(),
            wake: Arc::clone(&self.wake),
        };
        match self.jobs.try_send(job) {
            Ok(()) => {
                self.outstanding.set(self.outstanding.get() + 1);
                Ok(())
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }

    /// The next verdict that has come back, if any.
    pub fn next_verdict(&self) -> Option<Verdict> {
        let verdict = self.replies.try_recv().ok()?;
        self.outstanding
            .set(self.outstanding.get().saturating_sub(1));
        Some(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::{Duration, Instant};

    const ALICE: &str = "alice:$7$101$2rqEqMre0taMP63T$IK9TBjoiEn05LllqFwAgkPO3KXVdUMPCdTqoLD4x315ZFLK65wOGDcTJzOUhRMjKBbB2wzv7qqnnDNLGPhDYBQ==";

    #[test]
    fn verdicts_come_back_and_a_full_queue_is_busy() {
        let reactor = crate::runtime::Reactor::new().expect("a reactor");
        let db = Arc::new(PasswordDb::parse(ALICE, Path::new("pw")).expect("parses"));
        // Nobody takes jobs: they stay queued, so the queue's bound shows.
        let (jobs, _queued) = bounded(2);
        let line = VerifierLine::new(jobs, 3, reactor.wake_handle());
        let pw = |p: &'static [u8]| Some(Bytes::from_static(p));
        let submit = |t| line.submit((t, 1), Arc::clone(&db), "alice".into(), pw(b"secret"));
        assert_eq!(
            (submit(0), submit(1), submit(2)),
            (Ok(()), Ok(()), Err(Busy))
        );

        let (pool, jobs) = Verifiers::start(1, 4).expect("a pool");
        let line = VerifierLine::new(jobs, 5, reactor.wake_handle());
        let ok = line.submit((7, 9), Arc::clone(&db), "alice".into(), pw(b"secret"));
        let bad = line.submit((8, 9), Arc::clone(&db), "alice".into(), pw(b"nope"));
        assert_eq!((ok, bad), (Ok(()), Ok(())));
        let mut verdicts = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while verdicts.len() < 2 && Instant::now() < deadline {
            match line.next_verdict() {
                Some(v) => verdicts.push((v.token, v.ok)),
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        assert_eq!(verdicts, [(7, true), (8, false)]);
        drop(line);
        pool.join();
    }
}
