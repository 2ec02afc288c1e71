//! Durability wake-ups relayed per I/O thread.
//!
//! A request that changed the engine waits for its log ticket to be durable
//! before it answers. Waking each such request straight from the log's
//! writer thread costs a syscall per request: a wake from outside a
//! single-threaded tokio runtime always unparks that runtime (an eventfd
//! write), even when the runtime is already awake. With a batch of ~100
//! requests per fsync that was about one `write` syscall per admission,
//! made by the writer thread while the next batch waited.
//!
//! So each I/O thread keeps its waiting requests in a thread-local list and
//! runs one relay task, which alone waits on the log for the highest ticket
//! any of them wants. The writer then wakes one task per I/O thread per
//! batch, and the relay wakes the requests locally (a push onto the
//! runtime's own run queue, no syscall).
//!
//! Everything here runs on one thread; no borrow is held across an await.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};

use crate::server::{Core, Shared};
use crate::wal::{Ticket, WalError};

thread_local! {
    static RELAY: RefCell<Option<Relay>> = const { RefCell::new(None) };
}

#[derive(Default)]
struct Relay {
    /// Requests waiting, with their tickets. A request polled again while
    /// pending adds a second entry; entries go when the relay releases them,
    /// so the list is bounded by the requests in flight on this thread.
    waiters: RefCell<Vec<(u64, Waker)>>,
    /// Highest ticket any request registered.
    wanted: Cell<u64>,
    /// Tickets up to here have been released.
    released: Cell<u64>,
    /// The relay task, while it idles with nothing wanted.
    idle: RefCell<Option<Waker>>,
}

/// Makes the calling thread an I/O thread with a relay; call once, before
/// spawning [`relay_task`] on the thread's runtime.
pub(crate) fn install() {
    RELAY.with(|r| *r.borrow_mut() = Some(Relay::default()));
}

/// The relay: waits on the log for what the thread's requests want and
/// wakes them. Runs until its runtime is dropped.
pub(crate) async fn relay_task(shared: Arc<Shared>) {
    loop {
        let target = poll_fn(|cx| {
            with_relay(|relay| {
                if relay.wanted.get() > relay.released.get() {
                    Poll::Ready(relay.wanted.get())
                } else {
                    *relay.idle.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .unwrap_or(Poll::Pending)
        })
        .await;
        // A ticket was handed out, so the log (and the core) exist.
        let failed = match shared.core() {
            Some(core) => core.wal.durable(Ticket(target)).await.is_err(),
            None => true,
        };
        with_relay(|relay| {
            // After a failure nobody will become durable: release everyone,
            // they re-check and see the error.
            let upto = if failed { u64::MAX } else { target };
            relay.released.set(relay.released.get().max(target));
            relay.waiters.borrow_mut().retain(|(ticket, waker)| {
                if *ticket <= upto {
                    waker.wake_by_ref();
                    false
                } else {
                    true
                }
            });
            if failed {
                relay.released.set(relay.wanted.get());
            }
        });
    }
}

fn with_relay<R>(f: impl FnOnce(&Relay) -> R) -> Option<R> {
    RELAY.with(|r| r.borrow().as_ref().map(f))
}

/// Resolves once `ticket` is durable (or the log has failed). On an I/O
/// thread the wake-up comes through the thread's relay; elsewhere it waits
/// on the log directly.
pub(crate) async fn durable(core: &Core, ticket: Ticket) -> Result<(), WalError> {
    if with_relay(|_| ()).is_none() {
        return core.wal.durable(ticket).await;
    }
    poll_fn(|cx| {
        if let Some(result) = core.wal.poll_durable(ticket) {
            return Poll::Ready(result);
        }
        with_relay(|relay| {
            relay
                .waiters
                .borrow_mut()
                .push((ticket.0, cx.waker().clone()));
            if ticket.0 > relay.wanted.get() {
                relay.wanted.set(ticket.0);
                if let Some(idle) = relay.idle.borrow_mut().take() {
                    idle.wake();
                }
            }
        });
        Poll::Pending
    })
    .await
}
