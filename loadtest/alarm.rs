//! A worker's alarm clock for send times.
//!
//! `epoll_wait` takes its timeout in whole milliseconds, rounded up, so a
//! loop that only waited there would send up to a millisecond late, and
//! the harness reports every microsecond of lateness as latency. Spinning
//! through the last millisecond instead is exact on an idle core but turns
//! the harness into a CPU hog that the scheduler pushes aside on a shared
//! one. So each worker has a POSIX timer that sends a signal to the
//! worker's own thread at the send time: the signal interrupts
//! `epoll_wait` (EINTR, which the reactor treats as a wake-up) within
//! microseconds, the way an `io_uring` timeout or a `timerfd` would.
//!
//! The handler only notes that the alarm rang ([`rang`]): the worker's park
//! re-check reads that, so an alarm that rings just before the loop enters
//! `epoll_wait` is not lost either.
//!
//! Thread-bound: made on the worker thread, rings that thread only.

use std::cell::Cell;
use std::io;
use std::ptr;
use std::sync::Once;

/// The alarm's signal, one of the real-time signals (queued, and never sent
/// by anything else here). Its handler is installed for the whole process,
/// once, before any alarm is made: the default action would kill it.
fn signal() -> libc::c_int {
    libc::SIGRTMIN() + 4
}

thread_local! {
    /// Set by the handler on the thread it interrupted; taken by [`rang`].
    static RANG: Cell<bool> = const { Cell::new(false) };
}

extern "C" fn on_alarm(_: libc::c_int) {
    // A const-initialised thread-local Cell: a plain TLS store, safe in a
    // signal handler.
    RANG.with(|r| r.set(true));
}

fn install_handler() -> io::Result<()> {
    static INSTALL: Once = Once::new();
    let mut result = Ok(());
    INSTALL.call_once(|| {
        // SAFETY: a zeroed sigaction is valid; we set a handler that only
        // stores to a thread-local, an empty mask and SA_RESTART (so that
        // other blocking calls resume; epoll_wait never does, which is the
        // point).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal(), &action, ptr::null_mut()) != 0 {
                result = Err(io::Error::last_os_error());
            }
        }
    });
    result
}

/// True, once, if this thread's alarm rang since the last call.
pub fn rang() -> bool {
    RANG.with(|r| r.replace(false))
}

/// One thread's alarm: a `CLOCK_MONOTONIC` POSIX timer signalling that
/// thread. Owned by the worker's driver; deleted on drop.
pub struct Alarm {
    timer: libc::timer_t,
    /// The clock time it is set for, if any (it may have rung already).
    set_for: Cell<Option<u64>>,
}

impl Alarm {
    /// An alarm that rings the calling thread.
    pub fn for_this_thread() -> io::Result<Alarm> {
        install_handler().map_err(|e| named(e, "installing the alarm signal handler"))?;
        let mut timer: libc::timer_t = ptr::null_mut();
        // SAFETY: a zeroed sigevent is valid; SIGEV_THREAD_ID with this
        // thread's kernel id directs the signal to this thread; `timer`
        // receives the id.
        let rc = unsafe {
            let mut event: libc::sigevent = std::mem::zeroed();
            event.sigev_notify = libc::SIGEV_THREAD_ID;
            event.sigev_signo = signal();
            event.sigev_notify_thread_id = libc::gettid();
            libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer)
        };
        if rc != 0 {
            return Err(named(
                io::Error::last_os_error(),
                "creating the send-time alarm",
            ));
        }
        Ok(Alarm {
            timer,
            set_for: Cell::new(None),
        })
    }

    /// Sets the alarm to ring at clock time `at_ns` (`now_ns` is the time
    /// now), replacing any earlier setting. Free if already set for then.
    pub fn set(&self, at_ns: u64, now_ns: u64) {
        if self.set_for.get() == Some(at_ns) || at_ns <= now_ns {
            return;
        }
        let wait = at_ns - now_ns;
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (wait / 1_000_000_000) as libc::time_t,
                tv_nsec: (wait % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: a timer we created and own, a valid relative one-shot spec.
        let rc = unsafe { libc::timer_settime(self.timer, 0, &spec, ptr::null_mut()) };
        if rc == 0 {
            self.set_for.set(Some(at_ns));
        } else {
            // Not expected (EINVAL only for a bad spec): the millisecond
            // wait still bounds the lateness.
            log::warn!(
                "setting the send-time alarm: {}",
                io::Error::last_os_error()
            );
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        // SAFETY: deleting the timer we created, once.
        unsafe { libc::timer_delete(self.timer) };
    }
}

fn named(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_alarm_interrupts_a_blocking_wait_on_its_thread() {
        let alarm = Alarm::for_this_thread().expect("alarm");
        let now = crate::clock::now_ns();
        alarm.set(now + 20_000_000, now);
        let start = Instant::now();
        // SAFETY: a plain poll on no fds: sleeps until the timeout or a signal.
        let rc = unsafe { libc::poll(ptr::null_mut(), 0, 2_000) };
        let waited = start.elapsed();
        assert_eq!(rc, -1, "poll was not interrupted");
        assert!(rang(), "the handler did not run on this thread");
        assert!(!rang(), "rang() is taken once");
        assert!(
            waited >= Duration::from_millis(19) && waited < Duration::from_millis(1_000),
            "woke after {waited:?}"
        );
    }
}
