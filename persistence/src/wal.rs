//! The running log's handle: [`Wal`] (start, shutdown, durability waits,
//! health and stats) and [`WalSink`], the [`EventSink`] producers hand to
//! the engine. The shared state lives in `wal/shared.rs`, the writer thread
//! in `wal/writer.rs`.
//!
//! **Invariant:** tickets are handed out without holes, in the order the
//! engine emitted the events (a ticket is taken after the capacity check, and
//! only a successful enqueue takes one), and the writer writes records in
//! ticket order. So the log order is the emit order the engine relies on.

mod shared;
mod writer;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;

use engine::{Event, EventSink, SinkError};
use parking_lot::Mutex;

use crate::config::FsyncMode;
use crate::error::WalError;
use crate::retention::RetentionHold;
use crate::stats::WalStats;

pub(crate) use self::shared::LogShared;
pub use self::shared::Ticket;
pub(crate) use self::writer::Writer;

/// Handle to the running log. Cheap to clone; the last clone dropped shuts
/// the log down (drain, sync, join).
#[derive(Clone)]
pub struct Wal {
    handle: Arc<Handle>,
}

/// The body of the snapshot thread, built by the caller: the handle starts
/// and joins it but does not depend on what it does.
pub(crate) type SnapshotThread = Box<dyn FnOnce() + Send>;

type Threads = (JoinHandle<()>, Option<JoinHandle<()>>);

struct Handle {
    shared: Arc<LogShared>,
    /// Writer and snapshot threads, taken by the first shutdown.
    threads: Mutex<Option<Threads>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl Handle {
    fn shutdown(&self) -> Result<(), WalError> {
        let threads = self.threads.lock().take();
        if let Some((writer, snapshotter)) = threads {
            self.shared.close();
            if writer.join().is_err() {
                tracing::error!("the log writer thread panicked");
                self.shared.failed.store(true, Ordering::SeqCst);
                self.shared.wake_waiters(|_| true);
            }
            if let Some(s) = snapshotter {
                let _ = s.join();
            }
        }
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(WalError::Failed);
        }
        Ok(())
    }
}

impl Wal {
    pub(crate) fn start(
        shared: Arc<LogShared>,
        writer: Writer,
        snapshotter: Option<SnapshotThread>,
    ) -> Result<Wal, WalError> {
        let spawn_err = |e| WalError::io("starting a log thread", e);
        let writer_handle = std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run())
            .map_err(spawn_err)?;
        let _ = shared.writer_thread.set(writer_handle.thread().clone());
        let snap_handle = match snapshotter {
            Some(run) => Some(
                std::thread::Builder::new()
                    .name("wal-snapshot".into())
                    .spawn(run)
                    .map_err(spawn_err)?,
            ),
            None => None,
        };
        Ok(Wal {
            handle: Arc::new(Handle {
                shared,
                threads: Mutex::new(Some((writer_handle, snap_handle))),
            }),
        })
    }

    fn shared(&self) -> &LogShared {
        &self.handle.shared
    }

    /// A sink to pass to engine calls; remembers the ticket of the last event
    /// it accepted.
    pub fn sink(&self) -> WalSink<'_> {
        WalSink {
            wal: self,
            last: None,
        }
    }

    /// Resolves once the event with this ticket is durable per the fsync mode
    /// (Always: after the fdatasync of its batch; Interval/Never: at once).
    ///
    /// Runtime-agnostic (std `Waker`), and cancel-safe: dropping the future
    /// leaves at most a stale waker, discarded when the ticket becomes durable.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), WalError> {
        Durable {
            shared: self.shared(),
            ticket,
        }
        .await
    }

    /// Without waiting: `Some` once the event with this ticket is durable
    /// (`Ok`) or can no longer become durable (`Err`), `None` while it is
    /// still on its way. For callers that relay wake-ups themselves.
    pub fn poll_durable(&self, ticket: Ticket) -> Option<Result<(), WalError>> {
        self.shared().poll_ticket(ticket)
    }

    /// Blocking variant of [`Wal::durable`].
    pub fn wait_durable(&self, ticket: Ticket) -> Result<(), WalError> {
        let shared = self.shared();
        debug_assert!(
            ticket.0 < shared.next_lsn.load(Ordering::Acquire),
            "ticket never issued"
        );
        loop {
            if let Some(result) = shared.poll_ticket(ticket) {
                return result;
            }
            let mut waiters = shared.waiters.lock();
            if let Some(result) = shared.poll_ticket(ticket) {
                return result;
            }
            shared.waiters_cond.wait(&mut waiters);
        }
    }

    /// False once a write or fsync failed (the log refuses everything after that).
    pub fn healthy(&self) -> bool {
        !self.shared().failed.load(Ordering::Acquire)
    }

    /// The ticket most recently handed out by any sink (`None` if none ever
    /// was). Waiting for it covers every event accepted so far: what an
    /// idempotent repeat, which emits nothing itself, must wait for before
    /// it acknowledges a change another request made.
    pub fn last_ticket(&self) -> Option<Ticket> {
        let next = self.shared().next_lsn.load(Ordering::Acquire);
        (next > 1).then(|| Ticket(next - 1))
    }

    /// Every record up to this LSN is synced to disk (0 = none yet). The
    /// upper bound a consumer passes to [`crate::LogTailer::next_batch`]:
    /// a record written but not synced can be lost on power failure and
    /// its LSN reused by another event after restart. Advances at each
    /// sync (`always`, `interval`) and at each segment roll (all modes).
    pub fn durable_lsn(&self) -> u64 {
        self.shared().durable_lsn.load(Ordering::Acquire)
    }

    /// Takes a retention hold for consumer `name`, which has durably taken
    /// every record up to `taken` (its persisted cursor; 0 = nothing): from
    /// now on no snapshot deletes a segment holding a record after the
    /// hold's LSN. Take it right after `open`, before records are written,
    /// so that no snapshot runs before it. See [`RetentionHold`].
    pub fn hold(&self, name: &str, taken: u64) -> RetentionHold {
        self.shared().holds.add(name, taken)
    }

    /// (consumer name, LSN) of every live retention hold.
    pub fn retention_holds(&self) -> Vec<(String, u64)> {
        self.shared().holds.list()
    }

    /// Bytes of segment files on disk, preallocated space included (one
    /// atomic load). What consumers holding the log back cost in disk.
    pub fn retained_bytes(&self) -> u64 {
        self.shared().retained_bytes.load(Ordering::Relaxed)
    }

    pub fn fsync_mode(&self) -> FsyncMode {
        self.shared().config.fsync
    }

    pub fn stats(&self) -> WalStats {
        self.shared().stats()
    }

    /// Stop accepting, drain the queue, write, fsync, join the writer. Idempotent.
    pub fn shutdown(&self) -> Result<(), WalError> {
        self.handle.shutdown()
    }
}

struct Durable<'a> {
    shared: &'a LogShared,
    ticket: Ticket,
}

impl Future for Durable<'_> {
    type Output = Result<(), WalError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(result) = self.shared.poll_ticket(self.ticket) {
            return Poll::Ready(result);
        }
        let mut waiters = self.shared.waiters.lock();
        // Checked again under the lock the writer takes to wake: no lost wake-up.
        if let Some(result) = self.shared.poll_ticket(self.ticket) {
            return Poll::Ready(result);
        }
        // A re-poll adds another entry rather than searching: entries go when
        // their ticket is durable, so the list stays bounded by what is in flight.
        waiters.push((self.ticket.0, cx.waker().clone()));
        Poll::Pending
    }
}

/// An [`EventSink`] that appends to the log.
pub struct WalSink<'a> {
    wal: &'a Wal,
    last: Option<Ticket>,
}

impl WalSink<'_> {
    /// Ticket of the last event this sink accepted.
    pub fn ticket(&self) -> Option<Ticket> {
        self.last
    }
}

impl EventSink for WalSink<'_> {
    fn emit(&mut self, event: &Event) -> Result<(), SinkError> {
        let ticket = self.wal.shared().enqueue(event)?;
        self.last = Some(ticket);
        Ok(())
    }
}
