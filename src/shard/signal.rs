//! A shard-local one-shot signal: tasks wait until it is raised.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};

/// Raised once; every waiter (past and future) then completes. Shard-local.
#[derive(Default)]
pub struct Signal {
    raised: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Signal {
    /// Raises the signal and wakes every waiter.
    pub fn raise(&self) {
        self.raised.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Completes when the signal is raised.
    pub async fn wait(&self) {
        poll_fn(|cx| {
            if self.raised.get() {
                return Poll::Ready(());
            }
            // One entry per waiting task however often it polls: the accept
            // loop waits on every accept, and must not add one per connection.
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};

    struct Task;
    impl Wake for Task {
        fn wake(self: Arc<Self>) {}
    }

    #[test]
    fn a_task_waiting_again_and_again_is_filed_once() {
        let signal = Signal::default();
        let waker = Waker::from(Arc::new(Task));
        let mut cx = Context::from_waker(&waker);
        for _ in 0..10_000 {
            let mut wait = std::pin::pin!(signal.wait());
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(signal.waiters.borrow().len(), 1);
        signal.raise();
        assert!(signal.waiters.borrow().is_empty());
    }
}
