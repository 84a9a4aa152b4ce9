//! Executor-local wake-ups: a one-shot broadcast ([`Signal`]) and an edge
//! notification ([`Notify`]). Worker-local (`Rc`), never cross threads.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// A flag that, once raised, wakes every task waiting on it.
#[derive(Clone, Default)]
pub struct Signal {
    inner: Rc<SignalInner>,
}

#[derive(Default)]
struct SignalInner {
    raised: Cell<bool>,
    /// One entry per pending `wait()` poll; cleared on `raise`.
    waiters: RefCell<Vec<Waker>>,
}

impl Signal {
    /// Raises the flag and wakes all waiters.
    pub fn raise(&self) {
        self.inner.raised.set(true);
        for w in self.inner.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// True once raised.
    pub fn is_raised(&self) -> bool {
        self.inner.raised.get()
    }

    /// Resolves once the flag is raised. Each pending wait keeps a waker
    /// until `raise`, so await it once per task, never in a loop.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        let mut registered = false;
        std::future::poll_fn(move |cx| {
            if self.inner.raised.get() {
                return Poll::Ready(());
            }
            if !registered {
                self.inner.waiters.borrow_mut().push(cx.waker().clone());
                registered = true;
            }
            Poll::Pending
        })
    }
}

/// Wakes the one task waiting for "something changed" (a freed inflight
/// slot, a PUBREL to send). A notification with no waiter is kept until
/// the next `notified()`.
#[derive(Clone, Default)]
pub struct Notify {
    inner: Rc<NotifyInner>,
}

#[derive(Default)]
struct NotifyInner {
    pending: Cell<bool>,
    waiter: RefCell<Option<Waker>>,
}

impl Notify {
    /// Records a notification and wakes the waiter, if any.
    pub fn notify(&self) {
        self.inner.pending.set(true);
        if let Some(w) = self.inner.waiter.borrow_mut().take() {
            w.wake();
        }
    }

    /// Resolves at the next notification (or at once if one is pending).
    pub fn notified(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.inner.pending.replace(false) {
                return Poll::Ready(());
            }
            *self.inner.waiter.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
    }
}
