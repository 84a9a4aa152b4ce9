//! A precise one-shot timer as a readiness source (Linux `timerfd`).
//!
//! `epoll_wait` takes its timeout in whole milliseconds, rounded up. A loop
//! that must act at a microsecond (the load harness's send times) arms a
//! [`Timer`] instead: registered like a socket, it becomes readable at the
//! instant asked for and wakes the wait within microseconds. Nothing but the
//! loop's own thread is involved: no signal, no other thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use mio::event::Source;
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// A one-shot timer on the monotonic clock. Owned by one loop thread;
/// register it with that loop's `Registrar` (readable interest).
#[derive(Debug)]
pub struct Timer {
    fd: OwnedFd,
}

impl Timer {
    /// A disarmed timer.
    pub fn new() -> io::Result<Timer> {
        // SAFETY: plain syscall; the fd returned (if any) is ours alone.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("creating a timer (timerfd): {e}"),
            ));
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        Ok(Timer {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Arms the timer to fire once, `after` from now (at least 1 ns: a zero
    /// value would disarm it). Replaces any earlier setting.
    pub fn set_after(&self, after: Duration) -> io::Result<()> {
        let after = after.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: a valid timerfd and a valid, initialised itimerspec.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// After a readable event: true if the timer fired since the last call
    /// (reading it re-arms the readiness edge).
    pub fn take(&self) -> bool {
        let mut expirations = 0u64;
        // SAFETY: reads 8 bytes into a u64 from our own non-blocking fd.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                std::ptr::from_mut(&mut expirations).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        n == std::mem::size_of::<u64>() as isize && expirations > 0
    }
}

impl Source for Timer {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).register(registry, token, interest)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).reregister(registry, token, interest)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        SourceFd(&self.fd.as_raw_fd()).deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::runtime::reactor::tests::{run_within, Probe};
    use crate::runtime::Reactor;

    #[test]
    fn a_timer_wakes_the_loop_when_set_not_at_its_next_deadline() {
        let reactor = Reactor::new().expect("reactor");
        let mut timer = Timer::new().expect("timer");
        reactor
            .registrar()
            .expect("registrar")
            .register(&mut timer, Token(7), Interest::READABLE)
            .expect("register");
        let set = Instant::now();
        timer.set_after(Duration::from_millis(2)).expect("set");
        let probe = Probe::new(
            (timer, None::<Instant>),
            Duration::from_secs(2),
            |(timer, fired), token, _| {
                if token == Token(7) && timer.take() {
                    *fired = Some(Instant::now());
                }
            },
            |(_, fired)| fired.is_some(),
        );
        let probe = run_within(reactor, probe, Duration::from_secs(5));
        let fired = probe.state.1.expect("the timer fired").duration_since(set);
        assert!(fired >= Duration::from_millis(2), "early: {fired:?}");
        assert!(fired < Duration::from_secs(1), "late: {fired:?}");
    }
}
