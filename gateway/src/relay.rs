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
//! runs one relay task, which alone waits on the log: for the lowest ticket
//! any of them waits for, then releases every request whose ticket is durable
//! by then (or that the failed log will never make durable). The writer then
//! wakes one task per I/O thread per batch, and the relay wakes the requests
//! locally (a push onto the runtime's own run queue, no syscall).
//!
//! Everything here runs on one thread. No borrow is held across an await or
//! while a waker runs.

use std::cell::RefCell;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};

use crate::wal::{Ticket, Wal, WalError};

/// Where the relay finds the log, which exists only once recovery is done
/// (the I/O threads, and their relays, start before). A trait so that this
/// module need not know the application that owns the log.
pub(crate) trait LogSource: Send + Sync + 'static {
    fn wal(&self) -> Option<&Wal>;
}

thread_local! {
    static RELAY: RefCell<Option<Relay>> = const { RefCell::new(None) };
}

#[derive(Default)]
struct Relay {
    /// Requests waiting, with their tickets. A request polled again while
    /// pending adds a second entry (a stale one goes at the next release),
    /// so the list is bounded by the polls of this thread's requests within
    /// one group commit.
    waiters: Vec<(Ticket, Waker)>,
    /// The relay task, while it idles with nobody waiting.
    idle: Option<Waker>,
}

/// Makes the calling thread an I/O thread with a relay; call once, before
/// spawning [`relay_task`] on the thread's runtime.
pub(crate) fn install() {
    RELAY.with(|r| *r.borrow_mut() = Some(Relay::default()));
}

/// The relay: waits on the log for the lowest ticket a request of this
/// thread waits for, then wakes every request whose ticket is settled.
/// Runs until its runtime is dropped.
pub(crate) async fn relay_task(source: Arc<impl LogSource>) {
    loop {
        let lowest = poll_fn(|cx| {
            with_relay(|relay| match relay.waiters.iter().map(|(t, _)| *t).min() {
                Some(lowest) => Poll::Ready(lowest),
                None => {
                    relay.idle = Some(cx.waker().clone());
                    Poll::Pending
                }
            })
            .unwrap_or(Poll::Pending)
        })
        .await;
        // A ticket was handed out, so the log exists.
        let Some(wal) = source.wal() else {
            return;
        };
        // Ok or Err alike: each request's own check below decides.
        let _ = wal.durable(lowest).await;
        for waker in settled(wal) {
            waker.wake();
        }
    }
}

/// Takes out the wakers of the requests whose tickets the log has settled
/// (durable, or never to be after a failure).
fn settled(wal: &Wal) -> Vec<Waker> {
    with_relay(|relay| {
        let mut woken = Vec::new();
        relay.waiters.retain(|(ticket, waker)| {
            if wal.poll_durable(*ticket).is_some() {
                woken.push(waker.clone());
                false
            } else {
                true
            }
        });
        woken
    })
    .unwrap_or_default()
}

fn with_relay<R>(f: impl FnOnce(&mut Relay) -> R) -> Option<R> {
    RELAY.with(|r| r.borrow_mut().as_mut().map(f))
}

/// Resolves once `ticket` is durable (or the log has failed). On an I/O
/// thread the wake-up comes through the thread's relay; elsewhere it waits
/// on the log directly.
pub(crate) async fn durable(wal: &Wal, ticket: Ticket) -> Result<(), WalError> {
    if with_relay(|_| ()).is_none() {
        return wal.durable(ticket).await;
    }
    poll_fn(|cx| {
        if let Some(result) = wal.poll_durable(ticket) {
            return Poll::Ready(result);
        }
        let idle = with_relay(|relay| {
            relay.waiters.push((ticket, cx.waker().clone()));
            relay.idle.take()
        });
        if let Some(relay_task) = idle.flatten() {
            relay_task.wake();
        }
        Poll::Pending
    })
    .await
}
