//! The readiness loop one pinned shard thread runs: a `mio::Poll`, the
//! shard's [`Wake`], and the turn structure a [`Driver`] plugs into.
//!
//! # A turn
//!
//! 1. [`Driver::run_pending`] until it reports no work, at most
//!    [`PENDING_ROUNDS`] times (mesh batches, handed-over connections...).
//! 2. [`Driver::end_turn`]: flush what the turn made dirty; then
//!    [`Driver::turn_ended`] with the time, read once for both.
//! 3. Stop if [`Driver::finished`].
//! 4. Park, unless still busy or a deadline is due: announce it
//!    ([`Wake`]'s flag), re-check [`Driver::run_pending`] once, then
//!    `epoll_wait` until I/O, a [`Wake::notify`], or the next deadline.
//! 5. [`Driver::ready`] for each event; [`Driver::on_timer`] if the deadline
//!    has passed.
//!
//! # Why the re-check
//!
//! A sender pushes into a queue and then reads the receiver's `parked` flag;
//! the receiver sets `parked` and then reads its queues. A `SeqCst` fence
//! sits between the write and the read on both sides (Dekker), so at least
//! one of them sees the other: either the receiver's re-check finds the
//! message, or the sender sees `parked` and wakes it. A sender into a busy
//! shard pays a fence and a load, no syscall.

use std::io;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Source;
use mio::{Events, Poll, Registry, Waker};
pub use mio::{Interest, Token};

use super::timer::Timer;
use super::transport::{Listener, Transport};

/// The token the reactor's own waker is registered under; never handed to
/// [`Driver::ready`], and refused by [`Registrar::register`].
pub const WAKE_TOKEN: Token = Token(usize::MAX);

pub use crate::limits::{EVENTS_CAPACITY, PENDING_ROUNDS};

/// What a source is ready for, from one event.
///
/// Readiness is edge-triggered: it is reported once per change, so the
/// driver reads (or writes) until `WouldBlock` before it waits again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    /// Data (or an accept, or EOF) can be read.
    pub readable: bool,
    /// The socket's send buffer has room (or a connect completed or failed).
    pub writable: bool,
    /// The read or write side was closed by the peer, or the socket has a
    /// pending error: read to see EOF or take the error.
    pub closed: bool,
}

impl Readiness {
    fn of(event: &mio::event::Event) -> Readiness {
        Readiness {
            readable: event.is_readable(),
            writable: event.is_writable(),
            closed: event.is_read_closed() || event.is_write_closed() || event.is_error(),
        }
    }
}

/// A shard's wake-up line: anyone holding the `Arc` (its mesh peers, the
/// control plane) can wake its reactor out of `epoll_wait`.
///
/// Shared (`Send + Sync`) between the owning shard thread, which alone sets
/// the `parked` flag, and every thread that sends to it. Aligned to its own
/// cache lines: senders write the flag only when it is set, but the owner
/// flips it at every park.
#[repr(align(128))]
pub struct Wake {
    /// Set by the owner just before its park re-check, cleared by the owner
    /// after the wait and by the one sender that wins the swap in
    /// [`Wake::notify`]. `true` means "I may be in `epoll_wait`: wake me".
    parked: AtomicBool,
    /// The eventfd registered under [`WAKE_TOKEN`] in the owner's poll.
    waker: Waker,
    /// Wake-up syscalls made ([`Wake::notify`] that found the flag, and
    /// every [`Wake::force`]): a relaxed counter on the already slow path.
    wakes: AtomicU64,
}

impl Wake {
    /// Wakes the owner if it announced that it is parking; otherwise does
    /// nothing (the owner will see the new work before it parks). Call it
    /// after making the work visible (pushing into a queue).
    ///
    /// Of several concurrent notifiers one makes the syscall.
    pub fn notify(&self) {
        // Pairs with the fence in `Reactor::run` after `parked` is set: the
        // caller's queue push is ordered before this read of the flag.
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            self.wake_now();
        }
    }

    /// Wakes the owner whether or not it is parked (shutdown and other
    /// control-plane work): at worst its next wait returns at once.
    pub fn force(&self) {
        fence(Ordering::SeqCst);
        self.wake_now();
    }

    /// Whether the owner has announced that it is parking (or is parked).
    /// A snapshot, for tests and diagnostics only.
    pub fn is_parked(&self) -> bool {
        self.parked.load(Ordering::SeqCst)
    }

    /// Wake-up syscalls made so far (see [`Wake::notify`], [`Wake::force`]).
    pub fn wake_count(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }

    fn wake_now(&self) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.waker.wake() {
            // An eventfd write fails only if the fd is gone; the owner then
            // cannot be woken at all, so there is nobody to report it to.
            log::error!("waking a shard reactor (eventfd write): {e}");
        }
    }
}

/// What a shard plugs into [`Reactor::run`]. All calls happen on the
/// reactor's thread, in the order described in the module doc.
pub trait Driver {
    /// A registered source (`token`) became ready. Never called with
    /// [`WAKE_TOKEN`]. The driver should do the I/O until `WouldBlock`
    /// (readiness is edge-triggered) or remember that it has not.
    fn ready(&mut self, token: Token, readiness: Readiness);

    /// Drains inbound mesh queues and other queued work (including retrying
    /// a mesh batch that found a peer's queue full), a bounded amount per
    /// call. Returns `true` if it did anything. Also the park re-check:
    /// anything a peer can make ready without I/O must be looked at here.
    ///
    /// The default, for a driver with no queues: nothing to do.
    fn run_pending(&mut self) -> bool {
        false
    }

    /// End of a turn: flush connections made dirty, hand mesh outboxes to
    /// their queues. The default does nothing.
    fn end_turn(&mut self) {}

    /// The earliest time [`Driver::on_timer`] should run, if any. Asked
    /// before each wait; the wait is rounded up to whole milliseconds.
    /// The default: no timer, wait for I/O alone.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// Called when `next_deadline()` has passed; `now` is the current time.
    /// It may be called when nothing is due (a deadline the driver moved),
    /// so it checks what actually expired. The default does nothing (a
    /// deadline that only bounds the loop, checked by `finished`).
    fn on_timer(&mut self, _now: Instant) {}

    /// A turn begins: the wait ended at `now` (what [`Driver::turn_ended`]
    /// later measures a turn from). The default does nothing.
    fn turn_started(&mut self, _now: Instant) {}

    /// The turn's work and writes are done, at `now` (the same reading the
    /// wait's timeout is computed from: the clock is read twice a turn,
    /// here and when the wait ends). The default does nothing.
    fn turn_ended(&mut self, _now: Instant) {}

    /// `true` stops [`Reactor::run`] at the end of the current turn.
    fn finished(&self) -> bool;
}

/// Registers sources with a reactor's poll: a clone of its registry that
/// the driver keeps while [`Reactor::run`] borrows the reactor.
///
/// Owned by the shard's driver; `Send` (so it can be built before the
/// thread starts), used from the reactor's thread.
pub struct Registrar {
    registry: Registry,
}

/// A source a [`Registrar`] accepts: [`Transport`], [`Listener`] and [`Timer`].
/// Sealed: only this runtime adds kinds, so no other module names mio.
pub trait Registrable: Source + sealed::Sealed {}

impl Registrable for Transport {}
impl Registrable for Listener {}
impl Registrable for Timer {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Transport {}
    impl Sealed for super::Listener {}
    impl Sealed for super::Timer {}
}

impl Registrar {
    /// Starts reporting `interest` readiness of `source` under `token`.
    ///
    /// Edge-triggered: a connected socket registered `WRITABLE` reports one
    /// writable event right away; register `READABLE` alone for idle
    /// connections and add `WRITABLE` (with [`Registrar::reregister`]) while
    /// output waits.
    pub fn register<S: Registrable>(
        &self,
        source: &mut S,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        check_token(token)?;
        self.registry
            .register(source, token, interest)
            .map_err(|e| named(e, "registering a source with the shard reactor"))
    }

    /// Changes the token or interest of a registered source.
    pub fn reregister<S: Registrable>(
        &self,
        source: &mut S,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        check_token(token)?;
        self.registry
            .reregister(source, token, interest)
            .map_err(|e| named(e, "re-registering a source with the shard reactor"))
    }

    /// Stops reporting readiness of `source`. Needed before its fd moves to
    /// another shard: the registration follows the socket, not the fd.
    pub fn deregister<S: Registrable>(&self, source: &mut S) -> io::Result<()> {
        self.registry
            .deregister(source)
            .map_err(|e| named(e, "deregistering a source from the shard reactor"))
    }

    /// Deregisters `transport` and gives up its fd, to hand the connection
    /// to another shard ([`Transport::from_owned_fd`] there).
    pub fn detach(&self, mut transport: Transport) -> io::Result<std::os::fd::OwnedFd> {
        self.deregister(&mut transport)?;
        Ok(transport.into_owned_fd())
    }

    /// Deregisters `transport` and gives it up whole, to hand the
    /// connection to another shard (registered there anew): a TLS session
    /// cannot travel as an fd, so it travels with its socket.
    pub fn release(&self, mut transport: Transport) -> io::Result<Transport> {
        self.deregister(&mut transport)?;
        Ok(transport)
    }
}

fn check_token(token: Token) -> io::Result<()> {
    if token == WAKE_TOKEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "token usize::MAX is reserved for the shard reactor's waker",
        ));
    }
    Ok(())
}

fn named(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// One shard's readiness loop.
///
/// Built on any thread (it is `Send`) so that every shard's [`Wake`] can be
/// wired into the mesh before the shard threads start, then moved into its
/// shard thread and run there. Owned by that thread; never shared.
pub struct Reactor {
    poll: Poll,
    /// Reused every wait; never grows past [`EVENTS_CAPACITY`].
    events: Events,
    wake: Arc<Wake>,
}

impl Reactor {
    /// A poll with its waker registered under [`WAKE_TOKEN`].
    pub fn new() -> io::Result<Reactor> {
        let poll = Poll::new().map_err(|e| named(e, "creating a shard reactor (epoll)"))?;
        let waker = Waker::new(poll.registry(), WAKE_TOKEN)
            .map_err(|e| named(e, "creating a shard reactor's waker (eventfd)"))?;
        Ok(Reactor {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            wake: Arc::new(Wake {
                parked: AtomicBool::new(false),
                waker,
                wakes: AtomicU64::new(0),
            }),
        })
    }

    /// The line others use to wake this reactor (mesh peers, control plane).
    pub fn wake_handle(&self) -> Arc<Wake> {
        Arc::clone(&self.wake)
    }

    /// A registrar for the driver (duplicates the epoll fd).
    pub fn registrar(&self) -> io::Result<Registrar> {
        let registry = self
            .poll
            .registry()
            .try_clone()
            .map_err(|e| named(e, "cloning the shard reactor's registry"))?;
        Ok(Registrar { registry })
    }

    /// Runs turns (see the module doc) until [`Driver::finished`]. Returns
    /// an error only if `epoll_wait` fails for a reason other than EINTR.
    pub fn run(&mut self, driver: &mut impl Driver) -> io::Result<()> {
        // The last wait filled the events buffer: the kernel may hold more.
        let mut events_full = false;
        loop {
            let mut rounds = 0;
            while rounds < PENDING_ROUNDS && driver.run_pending() {
                rounds += 1;
            }
            driver.end_turn();
            let ended = Instant::now();
            driver.turn_ended(ended);
            if driver.finished() {
                return Ok(());
            }

            let timeout = if rounds == PENDING_ROUNDS || events_full {
                // Still busy, or the kernel may hold more events: look at
                // sockets and timers, do not wait.
                Some(Duration::ZERO)
            } else {
                driver
                    .next_deadline()
                    .map(|d| d.saturating_duration_since(ended))
            };

            let parked = timeout != Some(Duration::ZERO) && {
                self.wake.parked.store(true, Ordering::Relaxed);
                // Pairs with the fence in `Wake::notify`.
                fence(Ordering::SeqCst);
                if driver.run_pending() {
                    // Work arrived while announcing: take it, do not wait.
                    self.wake.parked.store(false, Ordering::Relaxed);
                    false
                } else {
                    true
                }
            };
            let timeout = if parked {
                timeout
            } else {
                Some(Duration::ZERO)
            };

            let polled = self.poll.poll(&mut self.events, timeout);
            if parked {
                self.wake.parked.store(false, Ordering::Relaxed);
            }
            let started = Instant::now();
            driver.turn_started(started);
            match polled {
                Ok(()) => {}
                // A signal: the events buffer was cleared; go round again.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(named(e, "waiting in the shard reactor (epoll_wait)")),
            }

            let mut n = 0;
            for event in self.events.iter() {
                n += 1;
                if event.token() != WAKE_TOKEN {
                    driver.ready(event.token(), Readiness::of(event));
                }
            }
            events_full = n == EVENTS_CAPACITY;

            // The wait's end stands for the whole turn: a deadline that
            // passed while the events were handled is taken next turn,
            // whose wait then does not block.
            if driver.next_deadline().is_some_and(|d| started >= d) {
                driver.on_timer(started);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::mpsc;
    use std::thread;

    use super::*;
    use crate::runtime::spsc::{full_mesh, MeshEnd};
    use crate::runtime::transport::Transport;

    /// A test driver for one source: `on_ready` sees each event, and the
    /// loop ends once `done` holds or `give_up` passes. No pending work
    /// and no timer of its own.
    pub(crate) struct Probe<S> {
        pub(crate) state: S,
        give_up: Instant,
        on_ready: fn(&mut S, Token, Readiness),
        done: fn(&S) -> bool,
    }

    impl<S> Probe<S> {
        pub(crate) fn new(
            state: S,
            limit: Duration,
            on_ready: fn(&mut S, Token, Readiness),
            done: fn(&S) -> bool,
        ) -> Probe<S> {
            Probe {
                state,
                give_up: Instant::now() + limit,
                on_ready,
                done,
            }
        }
    }

    impl<S> Driver for Probe<S> {
        fn ready(&mut self, token: Token, readiness: Readiness) {
            (self.on_ready)(&mut self.state, token, readiness);
        }
        fn next_deadline(&self) -> Option<Instant> {
            Some(self.give_up)
        }
        fn finished(&self) -> bool {
            (self.done)(&self.state) || Instant::now() >= self.give_up
        }
    }

    /// Runs `driver` on `reactor` in a thread and hands the driver back,
    /// failing the test if the loop has not finished within `limit`.
    pub(crate) fn run_within<D: Driver + Send + 'static>(
        mut reactor: Reactor,
        mut driver: D,
        limit: Duration,
    ) -> D {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let result = reactor.run(&mut driver);
            let _ = tx.send(result.map(|()| driver));
        });
        match rx.recv_timeout(limit) {
            Ok(Ok(driver)) => driver,
            Ok(Err(e)) => panic!("reactor failed: {e}"),
            Err(_) => panic!("reactor did not finish within {limit:?}"),
        }
    }

    /// Receives one message from peer 0; gives up at `give_up`.
    struct OneMessage {
        end: MeshEnd<u64>,
        got: Option<u64>,
        give_up: Instant,
        ready_calls: usize,
    }

    impl Driver for OneMessage {
        fn ready(&mut self, _: Token, _: Readiness) {
            self.ready_calls += 1;
        }
        fn run_pending(&mut self) -> bool {
            let got = &mut self.got;
            self.end.drain(0, 16, |m| *got = Some(m)) > 0
        }
        fn end_turn(&mut self) {}
        fn next_deadline(&self) -> Option<Instant> {
            Some(self.give_up)
        }
        fn on_timer(&mut self, _: Instant) {}
        fn finished(&self) -> bool {
            self.got.is_some() || Instant::now() >= self.give_up
        }
    }

    #[test]
    fn parked_reactor_is_woken_by_a_mesh_message() {
        let receiver = Reactor::new().expect("reactor");
        let sender = Reactor::new().expect("reactor");
        let wakes = [sender.wake_handle(), receiver.wake_handle()];
        let mut ends = full_mesh::<u64>(&wakes, 4);
        let (rx_end, tx_end) = (ends.pop().expect("end 1"), ends.pop().expect("end 0"));
        let rx_wake = receiver.wake_handle();

        let start = Instant::now();
        let driver = OneMessage {
            end: rx_end,
            got: None,
            give_up: start + Duration::from_secs(2),
            ready_calls: 0,
        };
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            tx.send(run_within(receiver, driver, Duration::from_secs(5)))
                .expect("test alive");
        });
        while !rx_wake.is_parked() {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "receiver never parked"
            );
            thread::sleep(Duration::from_millis(1));
        }
        // Parked: the flag stays set until a wake-up or the 2 s deadline.
        tx_end.try_send(1, 42).expect("send");
        let driver = rx.recv().expect("receiver finished");
        assert_eq!(driver.got, Some(42), "message not received within 2 s");
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(driver.ready_calls, 0, "the waker token reached the driver");
        assert_eq!(rx_wake.wake_count(), 1);
    }

    #[test]
    fn notify_into_a_busy_shard_makes_no_syscall() {
        let mut reactor = Reactor::new().expect("reactor");
        let wake = reactor.wake_handle();
        for _ in 0..1000 {
            wake.notify();
        }
        assert_eq!(wake.wake_count(), 0);
        reactor
            .poll
            .poll(&mut reactor.events, Some(Duration::ZERO))
            .expect("poll");
        assert!(reactor.events.is_empty(), "a busy shard got a wake event");

        // Announced parking: the first notify wakes, the rest find the flag
        // already taken.
        wake.parked.store(true, Ordering::SeqCst);
        wake.notify();
        wake.notify();
        assert_eq!(wake.wake_count(), 1);
        assert!(!wake.is_parked());
        reactor
            .poll
            .poll(&mut reactor.events, Some(Duration::ZERO))
            .expect("poll");
        let tokens: Vec<Token> = reactor.events.iter().map(|e| e.token()).collect();
        assert_eq!(tokens, [WAKE_TOKEN]);

        wake.force();
        assert_eq!(wake.wake_count(), 2);
    }

    #[test]
    fn busy_receiver_takes_messages_without_wake_ups() {
        let receiver = Reactor::new().expect("reactor");
        let sender = Reactor::new().expect("reactor");
        let wakes = [sender.wake_handle(), receiver.wake_handle()];
        let mut ends = full_mesh::<u64>(&wakes, 1024);
        let (rx_end, tx_end) = (ends.pop().expect("end 1"), ends.pop().expect("end 0"));
        let rx_wake = receiver.wake_handle();

        /// Never parks: reports work on every call until all 1000 arrived.
        struct Spinner {
            end: MeshEnd<u64>,
            got: u64,
        }
        impl Driver for Spinner {
            fn ready(&mut self, _: Token, _: Readiness) {}
            fn run_pending(&mut self) -> bool {
                let got = &mut self.got;
                self.end.drain(0, 64, |_| *got += 1);
                true
            }
            fn end_turn(&mut self) {}
            fn next_deadline(&self) -> Option<Instant> {
                None
            }
            fn on_timer(&mut self, _: Instant) {}
            fn finished(&self) -> bool {
                self.got == 1000
            }
        }
        let sending = thread::spawn(move || {
            for i in 0..1000 {
                tx_end.try_send(1, i).expect("send");
            }
            tx_end
        });
        let driver = run_within(
            receiver,
            Spinner {
                end: rx_end,
                got: 0,
            },
            Duration::from_secs(5),
        );
        let _tx_end = sending.join().expect("sender");
        assert_eq!(driver.got, 1000);
        assert_eq!(rx_wake.wake_count(), 0);
    }

    /// Fires `on_timer` for each of `deadlines`, in order.
    struct Timers {
        deadlines: Vec<Instant>,
        next: usize,
        fired: Vec<Instant>,
        ready_calls: usize,
    }

    impl Driver for Timers {
        fn ready(&mut self, _: Token, _: Readiness) {
            self.ready_calls += 1;
        }
        fn run_pending(&mut self) -> bool {
            false
        }
        fn end_turn(&mut self) {}
        fn next_deadline(&self) -> Option<Instant> {
            self.deadlines.get(self.next).copied()
        }
        fn on_timer(&mut self, now: Instant) {
            if self.deadlines.get(self.next).is_some_and(|d| now >= *d) {
                self.fired.push(now);
                self.next += 1;
            }
        }
        fn finished(&self) -> bool {
            self.next == self.deadlines.len()
        }
    }

    #[test]
    fn timers_fire_after_their_deadline_without_io() {
        let reactor = Reactor::new().expect("reactor");
        let start = Instant::now();
        let deadlines: Vec<Instant> = [30, 31, 60]
            .iter()
            .map(|ms| start + Duration::from_millis(*ms))
            .collect();
        let driver = Timers {
            deadlines: deadlines.clone(),
            next: 0,
            fired: Vec::new(),
            ready_calls: 0,
        };
        let driver = run_within(reactor, driver, Duration::from_secs(2));
        assert_eq!(driver.fired.len(), 3);
        for (fired, deadline) in driver.fired.iter().zip(&deadlines) {
            assert!(fired >= deadline);
        }
        assert_eq!(driver.ready_calls, 0);
    }

    #[test]
    fn the_waker_token_is_reserved() {
        let reactor = Reactor::new().expect("reactor");
        let registrar = reactor.registrar().expect("registrar");
        let mut listener = Listener::bind("127.0.0.1:0".parse().expect("addr")).expect("listener");
        let err = registrar
            .register(&mut listener, WAKE_TOKEN, Interest::READABLE)
            .expect_err("reserved token accepted");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    /// Raises the soft open-files limit towards the hard one; returns the
    /// soft limit in force.
    fn raise_nofile(want: u64) -> u64 {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return 0;
            }
            if lim.rlim_cur < want {
                let raised = libc::rlimit {
                    rlim_cur: want.min(lim.rlim_max),
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim = raised;
                }
            }
        }
        lim.rlim_cur
    }

    #[test]
    fn idle_sockets_cost_no_ready_calls() {
        // 10,000 registered sockets: 5,000 loopback pairs, both ends
        // registered. Scaled down (with a note) if the fd limit is lower.
        const SOCKETS: u64 = 10_000;
        let limit = raise_nofile(SOCKETS + 2_000);
        let pairs = (SOCKETS / 2).min(limit.saturating_sub(2_000) / 2) as usize;
        if pairs < SOCKETS as usize / 2 {
            eprintln!("open-files limit {limit}: testing {pairs} pairs instead of 5,000");
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let addr = listener.local_addr().expect("addr");
        let mut sockets = Vec::with_capacity(pairs * 2);
        for _ in 0..pairs {
            let client = std::net::TcpStream::connect(addr).expect("connect");
            let (server, _) = listener.accept().expect("accept");
            for s in [client, server] {
                s.set_nonblocking(true).expect("nonblocking");
                sockets.push(Transport::from_owned_fd(s.into()));
            }
        }

        let reactor = Reactor::new().expect("reactor");
        let registrar = reactor.registrar().expect("registrar");
        for (i, s) in sockets.iter_mut().enumerate() {
            registrar
                .register(s, Token(i), Interest::READABLE)
                .expect("register");
        }
        let start = Instant::now();
        let driver = Timers {
            deadlines: vec![start + Duration::from_millis(300)],
            next: 0,
            fired: Vec::new(),
            ready_calls: 0,
        };
        let driver = run_within(reactor, driver, Duration::from_secs(5));
        assert_eq!(driver.fired.len(), 1);
        assert_eq!(driver.ready_calls, 0, "idle sockets reported readiness");
        drop(sockets);
    }
}
