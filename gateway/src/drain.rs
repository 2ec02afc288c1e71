//! Graceful shutdown of one I/O thread's connections.
//!
//! On shutdown every connection must finish the request it is serving and
//! then close, and an idle keep-alive connection must close at once, so it
//! has to be woken. hyper_util's `graceful` module does this with one
//! `tokio::sync::watch` channel for the whole server, whose `changed()`
//! future every connection polls on every poll: a lock on the channel's
//! waiter list, shared by both I/O threads, twice per request (~180
//! instructions per admission under callgrind, and a cache line passed
//! between cores). Replacing it saved ~100 instructions per admission
//! (BENCHMARKS.md, "Decisions and what they rest on").
//!
//! Here each I/O thread has its own [`Drain`]. A connection registers its
//! task's waker once (again only if the waker changes); a poll costs two
//! atomic loads and a pointer comparison. [`Drain::start`] sets the flag and
//! wakes every registered task; a connection that registers while the flag
//! is being set sees it on its check after registering.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;
use slab::Slab;

/// The shutdown signal of one I/O thread's connections.
#[derive(Default)]
pub(crate) struct Drain {
    draining: AtomicBool,
    /// The wakers of the connections that have not seen the flag yet.
    wakers: Mutex<Slab<Waker>>,
}

impl Drain {
    /// Tells every watched connection to finish its request in progress and
    /// close; wakes the idle ones so they do.
    pub(crate) fn start(&self) {
        self.draining.store(true, Ordering::SeqCst);
        let wakers: Vec<Waker> = self.wakers.lock().drain().collect();
        for waker in wakers {
            waker.wake();
        }
    }

    fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

pin_project_lite::pin_project! {
    /// A connection future that shuts itself down gracefully once its
    /// thread's [`Drain`] starts.
    pub(crate) struct Drained<C> {
        #[pin]
        conn: C,
        drain: Arc<Drain>,
        shutdown: fn(Pin<&mut C>),
        registered: Option<(usize, Waker)>,
        closing: bool,
    }

    impl<C> PinnedDrop for Drained<C> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // Once draining, `start` has taken the registrations (and keys
            // may have been handed out again): nothing of ours to remove.
            if let Some((key, _)) = this.registered.take() {
                if !this.drain.draining() {
                    this.drain.wakers.lock().try_remove(key);
                }
            }
        }
    }
}

impl<C> Drained<C> {
    /// Watches `conn`; `shutdown` starts its graceful shutdown (for hyper:
    /// `|c| c.graceful_shutdown()`).
    pub(crate) fn new(conn: C, drain: Arc<Drain>, shutdown: fn(Pin<&mut C>)) -> Drained<C> {
        Drained {
            conn,
            drain,
            shutdown,
            registered: None,
            closing: false,
        }
    }
}

impl<C: Future> Future for Drained<C> {
    type Output = C::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let mut this = self.project();
        if !*this.closing {
            match this.registered {
                Some((_, waker)) if waker.will_wake(cx.waker()) => {}
                Some((key, waker)) => {
                    waker.clone_from(cx.waker());
                    if let Some(slot) = this.drain.wakers.lock().get_mut(*key) {
                        slot.clone_from(cx.waker());
                    }
                }
                None => {
                    let waker = cx.waker().clone();
                    let key = this.drain.wakers.lock().insert(waker.clone());
                    *this.registered = Some((key, waker));
                }
            }
            // After registering: a `start` that ran before the registration
            // took the lock is seen here.
            if this.drain.draining() {
                *this.closing = true;
                (this.shutdown)(this.conn.as_mut());
            }
        }
        this.conn.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// A connection stand-in: pending until told to shut down, then ready.
    struct Fake {
        shut: bool,
        polls: usize,
    }

    impl Future for Fake {
        type Output = usize;
        fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<usize> {
            self.polls += 1;
            if self.shut {
                Poll::Ready(self.polls)
            } else {
                Poll::Pending
            }
        }
    }

    struct CountWake(AtomicUsize);
    impl Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn drained(drain: &Arc<Drain>) -> Pin<Box<Drained<Fake>>> {
        Box::pin(Drained::new(
            Fake {
                shut: false,
                polls: 0,
            },
            drain.clone(),
            |mut c| c.shut = true,
        ))
    }

    #[test]
    fn start_wakes_idle_connections_and_they_shut_down() {
        let drain = Arc::new(Drain::default());
        let counter = Arc::new(CountWake(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let mut conns: Vec<_> = (0..3).map(|_| drained(&drain)).collect();
        for c in &mut conns {
            assert!(c.as_mut().poll(&mut cx).is_pending());
            // Polled again with the same waker: still one registration.
            assert!(c.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(drain.wakers.lock().len(), 3);
        drain.start();
        assert_eq!(counter.0.load(Ordering::SeqCst), 3, "every idle one woken");
        for c in &mut conns {
            assert!(c.as_mut().poll(&mut cx).is_ready(), "shut down when woken");
        }
    }

    #[test]
    fn a_connection_first_polled_after_start_shuts_down_at_once() {
        let drain = Arc::new(Drain::default());
        drain.start();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut c = drained(&drain);
        assert!(c.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn dropped_connections_leave_no_registration() {
        let drain = Arc::new(Drain::default());
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        for _ in 0..100 {
            let mut c = drained(&drain);
            assert!(c.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(drain.wakers.lock().len(), 0);
    }

    #[test]
    fn a_new_waker_replaces_the_registered_one() {
        let drain = Arc::new(Drain::default());
        let first = Arc::new(CountWake(AtomicUsize::new(0)));
        let second = Arc::new(CountWake(AtomicUsize::new(0)));
        let mut c = drained(&drain);
        let w1 = Waker::from(first.clone());
        assert!(c.as_mut().poll(&mut Context::from_waker(&w1)).is_pending());
        let w2 = Waker::from(second.clone());
        assert!(c.as_mut().poll(&mut Context::from_waker(&w2)).is_pending());
        drain.start();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }
}
