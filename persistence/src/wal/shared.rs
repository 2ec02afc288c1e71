//! State shared by the producers, the writer thread, the snapshot thread
//! and the waiters of the running log ([`LogShared`]): the lock-free queue
//! producers enqueue framed events on, the ticket and durability counters,
//! the waiter list, and the counters behind [`WalStats`].
//!
//! **Invariant:** tickets are handed out without holes, in the order the
//! engine emitted the events: a ticket is taken after the capacity check, and
//! only a successful enqueue takes one.

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Waker;
use std::thread::Thread;

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use engine::{Event, SinkError};
use parking_lot::{Condvar, Mutex};

use crate::config::{FsyncMode, WalConfig};
use crate::error::WalError;
use crate::format;
use crate::retention::Holds;
use crate::stats::{Histogram, WalStats, BATCH_BOUNDS, FSYNC_BOUNDS_US};
use crate::storage::Storage;

/// Position of one event in the log (its LSN). Tickets start at 1 and never
/// repeat, across restarts too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// Set in `reserved` once the log accepts no more events (shut down or failed).
pub(super) const CLOSED: u64 = 1 << 63;

pub(super) struct Entry {
    pub(super) lsn: u64,
    pub(super) frame: Vec<u8>,
}

/// State shared by producers, the writer, the snapshot thread and waiters.
pub(crate) struct LogShared {
    pub(crate) config: WalConfig,
    pub(crate) storage: Arc<dyn Storage>,
    pub(super) queue: ArrayQueue<Entry>,
    /// Events admitted and not yet popped by the writer, plus the CLOSED bit.
    pub(super) reserved: CachePadded<AtomicU64>,
    /// Next ticket to hand out.
    pub(super) next_lsn: CachePadded<AtomicU64>,
    /// Every ticket up to this one is durable (synced).
    pub(crate) durable_lsn: CachePadded<AtomicU64>,
    pub(super) failed: AtomicBool,
    pub(super) writer_sleeping: AtomicBool,
    pub(super) writer_thread: OnceLock<Thread>,
    pub(super) waiters: Mutex<Vec<(u64, Waker)>>,
    pub(super) waiters_cond: Condvar,
    pub(super) records_written: AtomicU64,
    pub(super) bytes_written: AtomicU64,
    pub(super) batches: AtomicU64,
    pub(super) fsyncs: AtomicU64,
    pub(crate) snapshots: AtomicU64,
    pub(crate) snapshot_busy: AtomicBool,
    /// Consumers' retention holds, honoured by the snapshot clean-up.
    pub(crate) holds: Arc<Holds>,
    /// Bytes of segment files on disk, preallocated zeros included: set at
    /// open, raised by the writer when a segment grows or a new one starts
    /// (once per batch at most), lowered by the clean-up that deletes one.
    pub(crate) retained_bytes: AtomicU64,
    pub(super) fsync_latency: Histogram,
    pub(super) batch_records: Histogram,
}

impl LogShared {
    pub(crate) fn new(config: WalConfig, storage: Arc<dyn Storage>, next_lsn: u64) -> LogShared {
        LogShared {
            queue: ArrayQueue::new(config.queue_capacity as usize),
            config,
            storage,
            reserved: CachePadded::new(AtomicU64::new(0)),
            next_lsn: CachePadded::new(AtomicU64::new(next_lsn)),
            durable_lsn: CachePadded::new(AtomicU64::new(next_lsn - 1)),
            failed: AtomicBool::new(false),
            writer_sleeping: AtomicBool::new(false),
            writer_thread: OnceLock::new(),
            waiters: Mutex::new(Vec::new()),
            waiters_cond: Condvar::new(),
            records_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            snapshot_busy: AtomicBool::new(false),
            holds: Arc::default(),
            retained_bytes: AtomicU64::new(0),
            fsync_latency: Histogram::new(FSYNC_BOUNDS_US),
            batch_records: Histogram::new(BATCH_BOUNDS),
        }
    }

    /// Serializes and enqueues one event. Lock-free; called while the engine
    /// holds the order or sale being changed.
    pub(super) fn enqueue(&self, event: &Event) -> Result<Ticket, SinkError> {
        let frame = format::encode_frame(event);
        let prev = self.reserved.fetch_add(1, Ordering::AcqRel);
        if prev & CLOSED != 0 {
            self.reserved.fetch_sub(1, Ordering::AcqRel);
            return Err(SinkError::Failed);
        }
        if prev >= u64::from(self.config.queue_capacity) {
            self.reserved.fetch_sub(1, Ordering::AcqRel);
            return Err(SinkError::Full);
        }
        // The ticket is taken last, right before the push, so the writer
        // rarely waits for a ticket whose entry is not in the queue yet.
        let lsn = self.next_lsn.fetch_add(1, Ordering::AcqRel);
        if self.queue.push(Entry { lsn, frame }).is_err() {
            unreachable!("a reserved slot is always free");
        }
        fence(Ordering::SeqCst);
        // Only `always` acknowledges after the sync, so only there does a
        // sleeping writer cost latency. In the other modes the writer polls
        // (see `IDLE_POLL`) and is woken early only when the queue half
        // fills: waking it on every event cost a context switch per event.
        let urgent = self.config.fsync == FsyncMode::Always
            || prev >= u64::from(self.config.queue_capacity) / 2;
        if urgent
            && self.writer_sleeping.load(Ordering::Relaxed)
            && self.writer_sleeping.swap(false, Ordering::AcqRel)
        {
            if let Some(t) = self.writer_thread.get() {
                t.unpark();
            }
        }
        Ok(Ticket(lsn))
    }

    pub(super) fn close(&self) {
        self.reserved.fetch_or(CLOSED, Ordering::AcqRel);
        self.wake_writer();
    }

    fn wake_writer(&self) {
        self.writer_sleeping.store(false, Ordering::Release);
        if let Some(t) = self.writer_thread.get() {
            t.unpark();
        }
    }

    pub(super) fn publish_durable(&self, lsn: u64) {
        self.durable_lsn.fetch_max(lsn, Ordering::AcqRel);
        self.wake_waiters(|ticket| ticket <= lsn);
    }

    /// Wakes the due waiters after releasing the lock: a wake may be a
    /// syscall (a runtime parked in epoll), and producers registering new
    /// waiters must not queue behind a batch of them.
    pub(super) fn wake_waiters(&self, due: impl Fn(u64) -> bool) {
        let mut woken = Vec::new();
        let mut waiters = self.waiters.lock();
        let mut i = 0;
        while i < waiters.len() {
            if due(waiters[i].0) {
                woken.push(waiters.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        drop(waiters);
        self.waiters_cond.notify_all();
        for waker in woken {
            waker.wake();
        }
    }

    pub(super) fn fail(&self, context: String, err: std::io::Error) {
        tracing::error!(error = %err, "{context}; the write-ahead log stops accepting events");
        self.failed.store(true, Ordering::SeqCst);
        self.reserved.fetch_or(CLOSED, Ordering::AcqRel);
        self.wake_waiters(|_| true);
    }

    /// Ok when `ticket` is durable, Err when it never will be, None to wait.
    pub(super) fn poll_ticket(&self, ticket: Ticket) -> Option<Result<(), WalError>> {
        if self.config.fsync != FsyncMode::Always
            || self.durable_lsn.load(Ordering::Acquire) >= ticket.0
        {
            if self.config.fsync != FsyncMode::Always && self.failed.load(Ordering::Acquire) {
                return Some(Err(WalError::Failed));
            }
            return Some(Ok(()));
        }
        if self.failed.load(Ordering::Acquire) {
            return Some(Err(WalError::Failed));
        }
        None
    }

    pub(crate) fn stats(&self) -> WalStats {
        let (fsync_latency_us, fsync_latency_sum_us) = self.fsync_latency.cumulative();
        let (batch_records, batch_records_sum) = self.batch_records.cumulative();
        WalStats {
            queue_depth: self.reserved.load(Ordering::Relaxed) & !CLOSED,
            records_written: self.records_written.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            fsync_latency_us,
            fsync_latency_sum_us,
            batch_records,
            batch_records_sum,
            snapshots: self.snapshots.load(Ordering::Relaxed),
            retained_bytes: self.retained_bytes.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}
