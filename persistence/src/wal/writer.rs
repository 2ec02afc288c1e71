//! The writer thread: pops framed events off the queue, writes them in
//! ticket order into the current segment (one write per batch), syncs per
//! the fsync mode with group commit, rolls segments, preallocates their
//! space, and asks the snapshot thread for a snapshot. Tuned and
//! benchmarked: see BENCHMARKS.md before changing the loop.
//!
//! **Invariant:** records are written in ticket order, without holes, and a
//! ticket is published durable only after a successful sync covers it.

use std::path::PathBuf;
use std::sync::atomic::{fence, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::FsyncMode;
use crate::error::WalError;
use crate::format::{self, FileKind, HEADER_BYTES};
use crate::storage::StorageFile;

use super::shared::{Entry, LogShared, CLOSED};

/// How often the writer looks at the queue in `interval` and `never` modes,
/// where producers do not wake it for each event.
const IDLE_POLL: Duration = Duration::from_millis(1);

/// How long the writer sleeps when a producer holds a ticket it has not
/// pushed yet (it is between two instructions). Rare; see `run_inner`.
const PRODUCER_WAIT: Duration = Duration::from_micros(20);

/// The segment the writer appends to.
struct Segment {
    file: Box<dyn StorageFile>,
    first_lsn: u64,
    /// Bytes written (header and records).
    len: u64,
    /// Bytes of file preallocated (zeros past `len`).
    allocated: u64,
    records: u64,
}

/// How far ahead of the records a segment file is filled with zeros (see
/// `StorageFile::preallocate`): an fdatasync that does not change the file's
/// size took about half the time and CPU of one that does on this VM's ext4
/// (BENCHMARKS.md). Once per this many bytes a batch pays for the extension.
const PREALLOCATE_BYTES: u64 = 1 << 20;

/// How long a segment file should be once `end` bytes are in it:
/// `PREALLOCATE_BYTES` further, but not past `segment_bytes` (a segment
/// rolls there anyway; a record larger than what is left goes past it alone).
fn preallocate_target(segment_bytes: u64, end: u64) -> u64 {
    (end + PREALLOCATE_BYTES).min(segment_bytes.max(end))
}

/// The writer thread's state.
pub(crate) struct Writer {
    shared: Arc<LogShared>,
    segment: Option<Segment>,
    /// Next LSN to write.
    next_write: u64,
    /// Last LSN synced.
    synced: u64,
    last_sync: Instant,
    /// Entries popped ahead of a ticket still in flight.
    pending: Vec<Entry>,
    buf: Vec<u8>,
    since_snapshot: u64,
    snapshot_tx: Option<mpsc::Sender<u64>>,
}

type IoResult<T> = Result<T, (String, std::io::Error)>;

impl Writer {
    pub(crate) fn new(
        shared: Arc<LogShared>,
        tail: Option<crate::scan::Tail>,
        next_lsn: u64,
        snapshot_tx: Option<mpsc::Sender<u64>>,
    ) -> Result<Writer, WalError> {
        let mut writer = Writer {
            shared,
            segment: None,
            next_write: next_lsn,
            synced: next_lsn - 1,
            last_sync: Instant::now(),
            pending: Vec::new(),
            buf: Vec::with_capacity(1 << 20),
            since_snapshot: 0,
            snapshot_tx,
        };
        let config = &writer.shared.config;
        match tail {
            Some(tail) if tail.len < config.segment_bytes => {
                let path = config.dir.join(format::segment_name(tail.first_lsn));
                let file = writer
                    .shared
                    .storage
                    .open_append(&path)
                    .map_err(|e| WalError::io(format!("opening {}", path.display()), e))?;
                writer.segment = Some(Segment {
                    file,
                    first_lsn: tail.first_lsn,
                    len: tail.len,
                    allocated: tail.len,
                    records: next_lsn - tail.first_lsn,
                });
            }
            _ => writer
                .roll(next_lsn)
                .map_err(|(context, e)| WalError::io(context, e))?,
        }
        Ok(writer)
    }

    fn path(&self, first_lsn: u64) -> PathBuf {
        self.shared.config.dir.join(format::segment_name(first_lsn))
    }

    /// Closes the current segment (synced) and starts one at `first_lsn`,
    /// durable with its directory entry before any record goes in.
    fn roll(&mut self, first_lsn: u64) -> IoResult<()> {
        if let Some(mut old) = self.segment.take() {
            self.timed_sync(&mut *old.file)
                .map_err(|e| (format!("syncing {}", self.path(old.first_lsn).display()), e))?;
            // Every record before `first_lsn` is now synced (earlier
            // segments at their own roll). Published so that consumers
            // bounded by the durable LSN progress in `never` mode too.
            if first_lsn - 1 > self.synced {
                self.synced = first_lsn - 1;
                self.shared.publish_durable(self.synced);
            }
        }
        let path = self.path(first_lsn);
        let storage = &self.shared.storage;
        let ctx = |what: &str| format!("{what} {}", path.display());
        let mut file = storage.create(&path).map_err(|e| (ctx("creating"), e))?;
        file.append(&format::encode_header(FileKind::Segment, first_lsn))
            .map_err(|e| (ctx("writing the header of"), e))?;
        file.preallocate(self.preallocate_target(HEADER_BYTES as u64))
            .map_err(|e| (ctx("preallocating"), e))?;
        file.sync().map_err(|e| (ctx("syncing"), e))?;
        storage
            .sync_dir(&self.shared.config.dir)
            .map_err(|e| (ctx("syncing the directory entry of"), e))?;
        self.shared.fsyncs.fetch_add(2, Ordering::Relaxed);
        let allocated = self.preallocate_target(HEADER_BYTES as u64);
        self.shared
            .retained_bytes
            .fetch_add(allocated.max(HEADER_BYTES as u64), Ordering::Relaxed);
        self.segment = Some(Segment {
            file,
            first_lsn,
            len: HEADER_BYTES as u64,
            allocated,
            records: 0,
        });
        Ok(())
    }

    fn preallocate_target(&self, end: u64) -> u64 {
        preallocate_target(self.shared.config.segment_bytes, end)
    }

    fn timed_sync(&self, file: &mut dyn StorageFile) -> std::io::Result<()> {
        let started = Instant::now();
        file.sync()?;
        self.shared
            .fsync_latency
            .record(started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64);
        self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn sync_current(&mut self) -> IoResult<()> {
        let written = self.next_write - 1;
        if written == self.synced {
            return Ok(());
        }
        let mut segment = self.segment.take().expect("a current segment");
        let result = self.timed_sync(&mut *segment.file);
        let first = segment.first_lsn;
        self.segment = Some(segment);
        result.map_err(|e| (format!("syncing {}", self.path(first).display()), e))?;
        self.synced = written;
        self.last_sync = Instant::now();
        self.shared.publish_durable(written);
        Ok(())
    }

    /// Writes `self.buf` (whole frames) into the current segment.
    fn flush_buf(&mut self, records: u64) -> IoResult<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let segment = self.segment.as_mut().expect("a current segment");
        let first = segment.first_lsn;
        let size_before = segment.len.max(segment.allocated);
        let end = segment.len + self.buf.len() as u64;
        if end > segment.allocated {
            // Once per PREALLOCATE_BYTES of log; this batch's sync writes
            // the zeros and the new size, the following ones only data.
            let target = preallocate_target(self.shared.config.segment_bytes, end);
            if let Err(e) = segment.file.preallocate(target) {
                return Err((format!("preallocating {}", self.path(first).display()), e));
            }
            segment.allocated = target;
        }
        if let Err(e) = segment.file.append(&self.buf) {
            return Err((format!("writing {}", self.path(first).display()), e));
        }
        segment.len += self.buf.len() as u64;
        segment.records += records;
        let size_after = segment.len.max(segment.allocated);
        if size_after > size_before {
            // Once per PREALLOCATE_BYTES, not per batch.
            self.shared
                .retained_bytes
                .fetch_add(size_after - size_before, Ordering::Relaxed);
        }
        self.shared
            .bytes_written
            .fetch_add(self.buf.len() as u64, Ordering::Relaxed);
        self.shared
            .records_written
            .fetch_add(records, Ordering::Relaxed);
        self.buf.clear();
        Ok(())
    }

    /// Moves the queue into `pending`; returns how many entries it took.
    fn collect(&mut self) -> u64 {
        let mut taken = 0u64;
        // Bounded so a flood cannot make one batch unboundedly large.
        let limit = self.shared.config.queue_capacity as usize;
        while let Some(entry) = self.shared.queue.pop() {
            self.pending.push(entry);
            taken += 1;
            if taken as usize >= limit {
                break;
            }
        }
        if taken > 0 {
            self.shared.reserved.fetch_sub(taken, Ordering::AcqRel);
        }
        taken
    }

    /// Writes the run of pending entries that starts at `next_write`, one
    /// write per batch (more only where a segment fills up).
    fn write_ready(&mut self) -> IoResult<u64> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        self.pending.sort_unstable_by_key(|e| e.lsn);
        let ready = self
            .pending
            .iter()
            .enumerate()
            .take_while(|(i, e)| e.lsn == self.next_write + *i as u64)
            .count();
        if ready == 0 {
            return Ok(0);
        }
        let segment_bytes = self.shared.config.segment_bytes;
        let entries: Vec<Entry> = self.pending.drain(..ready).collect();
        let mut in_buf = 0u64;
        for entry in &entries {
            let seg = self.segment.as_ref().expect("a current segment");
            let full = seg.len + self.buf.len() as u64 + entry.frame.len() as u64 > segment_bytes;
            if full && (seg.records > 0 || in_buf > 0) {
                self.flush_buf(in_buf)?;
                in_buf = 0;
                self.roll(entry.lsn)?;
            }
            self.buf.extend_from_slice(&entry.frame);
            in_buf += 1;
            self.next_write = entry.lsn + 1;
        }
        self.flush_buf(in_buf)?;
        self.shared.batches.fetch_add(1, Ordering::Relaxed);
        self.shared.batch_records.record(ready as u64);
        self.since_snapshot += ready as u64;
        Ok(ready as u64)
    }

    /// Closes the segment and asks for a snapshot of everything before it.
    fn maybe_snapshot(&mut self) -> IoResult<()> {
        let every = self.shared.config.snapshot_every_records;
        if every == 0 || self.since_snapshot < every || self.snapshot_tx.is_none() {
            return Ok(());
        }
        if self.shared.snapshot_busy.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.roll(self.next_write)?;
        self.since_snapshot = 0;
        let covered = self.next_write;
        if let Some(tx) = &self.snapshot_tx {
            if tx.send(covered).is_err() {
                self.shared.snapshot_busy.store(false, Ordering::Release);
            }
        }
        Ok(())
    }

    pub(crate) fn run(mut self) {
        self.tune_scheduling();
        if let Err((context, e)) = self.run_inner() {
            self.shared.fail(context, e);
        }
        // Dropping the sender ends the snapshot thread.
        self.snapshot_tx = None;
    }

    /// Best effort: without these the log is as correct, only slower to
    /// acknowledge on a busy machine (see `sched.rs`).
    fn tune_scheduling(&self) {
        let config = &self.shared.config;
        if config.writer_nice != 0 {
            match crate::sched::set_nice(config.writer_nice) {
                Ok(()) => tracing::debug!(nice = config.writer_nice, "log writer nice value set"),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => tracing::info!(
                    nice = config.writer_nice,
                    "the log writer keeps its priority: a lower nice value needs CAP_SYS_NICE \
                     (wal.writer_nice)"
                ),
                Err(e) => tracing::warn!(error = %e, "could not set the log writer's nice value"),
            }
        }
        if config.writer_slice_us != 0 {
            use crate::sched::SliceOutcome;
            match crate::sched::request_slice(Duration::from_micros(config.writer_slice_us)) {
                Ok(SliceOutcome::Applied) => tracing::debug!(
                    slice_us = config.writer_slice_us,
                    "log writer scheduler slice set"
                ),
                Ok(SliceOutcome::NotFair) => tracing::info!(
                    "the log writer runs a real-time or deadline policy; \
                     wal.writer_slice_us is not applied"
                ),
                Ok(SliceOutcome::Ignored) => tracing::info!(
                    "this kernel keeps no time slice per thread (needs Linux 6.12+); \
                     wal.writer_slice_us has no effect"
                ),
                Err(e) => tracing::warn!(
                    error = %e,
                    "could not set the log writer's time slice; wal.writer_slice_us has no effect"
                ),
            }
        }
    }

    fn run_inner(&mut self) -> IoResult<()> {
        let mode = self.shared.config.fsync;
        let interval = Duration::from_millis(self.shared.config.fsync_interval_ms.max(1));
        let commit_delay = Duration::from_micros(self.shared.config.group_commit_delay_us);
        let mut last_batch = 0u64;
        loop {
            let closing = self.shared.reserved.load(Ordering::Acquire) & CLOSED != 0;
            self.collect();
            let mut written = self.write_ready()?;
            // Under load (this batch or the last one held more than one
            // record) let the batch grow before paying for the sync. The
            // batch right after a sync is often small even under load: the
            // woken clients have not sent their next requests yet.
            let loaded = written > 1 || last_batch > 1;
            if written > 0 && loaded && mode == FsyncMode::Always && !commit_delay.is_zero() {
                std::thread::sleep(commit_delay);
                self.collect();
                written += self.write_ready()?;
            }
            if written > 0 {
                last_batch = written;
            }
            if written > 0 {
                match mode {
                    FsyncMode::Always => self.sync_current()?,
                    FsyncMode::Interval if self.last_sync.elapsed() >= interval => {
                        self.sync_current()?
                    }
                    _ => {}
                }
                self.maybe_snapshot()?;
                continue;
            }
            if mode == FsyncMode::Interval
                && self.synced < self.next_write - 1
                && self.last_sync.elapsed() >= interval
            {
                self.sync_current()?;
            }
            if !self.pending.is_empty() {
                // A producer holds a ticket it has not pushed yet: it is
                // between two instructions, let it run. A sleep, not a
                // yield: with its short slice and lower nice value the
                // writer could be picked again at once by `sched_yield`
                // and spin while the producer it preempted waits.
                std::thread::sleep(PRODUCER_WAIT);
                continue;
            }
            if closing
                && self.shared.reserved.load(Ordering::Acquire) & !CLOSED == 0
                && self.shared.queue.is_empty()
            {
                // Every admitted event is written: make it durable and stop.
                return self.sync_current();
            }
            if closing {
                std::thread::sleep(PRODUCER_WAIT);
                continue;
            }
            let timeout = if mode == FsyncMode::Interval && self.synced < self.next_write - 1 {
                interval.saturating_sub(self.last_sync.elapsed())
            } else if mode == FsyncMode::Always {
                Duration::from_millis(100)
            } else {
                IDLE_POLL
            };
            self.shared.writer_sleeping.store(true, Ordering::Release);
            fence(Ordering::SeqCst);
            if self.shared.queue.is_empty()
                && self.shared.reserved.load(Ordering::Acquire) & CLOSED == 0
            {
                std::thread::park_timeout(timeout);
            }
            self.shared.writer_sleeping.store(false, Ordering::Release);
        }
    }
}
