//! The relay's feed: the log tailer and the replica engine on a thread of
//! their own, handing the relay each batch's rows through a bounded
//! channel.
//!
//! **Why a thread.** Reading the log and applying it to the replica is
//! CPU work, about a tenth of an export's time, and PostgreSQL waited for
//! it: done on the relay's task, between batches, nothing was in flight.
//! On its own thread, the next batch's rows are made while the database
//! writes the last one. The channel holds at most [`FED_MAX`] batches,
//! so a slow database stops the feed rather than filling memory.
//!
//! The feed applies each batch to the replica exactly once and never
//! goes back: a batch the relay fails to write is retried by the relay
//! with the same rows. A feed that fails (the log, the replica) sends its
//! error and ends; the relay then starts a new session, and a new feed
//! from the log's start.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use engine::EngineConfig;
use persistence::{LogTailer, TailBatch, Wal, WalError};
use tokio::sync::mpsc;

use super::{BatchRows, BatchSource, ExportBatch, ExportError, ExportReplica};

/// Batches made ahead of the relay's writes, at most.
const FED_MAX: usize = 2;
/// How often a caught-up feed looks for new records.
const POLL: Duration = Duration::from_millis(20);

/// What the feed hands the relay.
pub(crate) enum Fed {
    /// One batch's rows. `tail_cursor` is the tailer's cursor after it
    /// (what a retention hold may advance to once the rows committed),
    /// `seen` the log position the lag is measured against.
    Rows {
        rows: BatchRows,
        tail_cursor: u64,
        seen: u64,
    },
    /// Nothing new: the tailer is at `at`, the log's durable end at `seen`.
    CaughtUp { at: u64, seen: u64 },
}

/// Why the feed ended early; the relay's session ends with it.
#[derive(Debug)]
pub(crate) enum FeedError {
    Log(WalError),
    Replica(ExportError),
}

/// Where the log ends for the feed.
pub(crate) enum LogEnd {
    /// A running server's log: only its durable records.
    Live(Wal),
    /// A directory nobody writes; with `once`, the feed ends when it has
    /// read everything.
    Directory { once: bool },
}

impl LogEnd {
    fn up_to(&self) -> u64 {
        match self {
            LogEnd::Live(wal) => wal.durable_lsn(),
            LogEnd::Directory { .. } => u64::MAX,
        }
    }
}

/// What the feed thread needs.
pub(crate) struct FeedOptions {
    pub wal_dir: PathBuf,
    pub engine: EngineConfig,
    pub batch_records: usize,
    pub end: LogEnd,
}

/// The feed thread and the receiving end of its channel. Dropping it
/// stops the thread and waits for it (at most a batch's apply or a poll).
pub(crate) struct Feed {
    rx: mpsc::Receiver<Result<Fed, FeedError>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Feed {
    pub(crate) fn start(options: FeedOptions) -> std::io::Result<Feed> {
        let (tx, rx) = mpsc::channel(FED_MAX);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("export-feed".into())
            .spawn(move || feed(options, &tx, &stopped))?;
        Ok(Feed {
            rx,
            stop,
            thread: Some(thread),
        })
    }

    /// The next batch or state; `None` once the feed has ended (after its
    /// last `CaughtUp` for a `Directory { once: true }`, or its error).
    pub(crate) async fn next(&mut self) -> Option<Result<Fed, FeedError>> {
        self.rx.recv().await
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes a feed blocked on a full channel: its send fails.
        self.rx.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The feed thread: tail, apply, send, until stopped, failed or done.
fn feed(options: FeedOptions, tx: &mpsc::Sender<Result<Fed, FeedError>>, stop: &AtomicBool) {
    let mut replica = ExportReplica::new(options.engine);
    let mut tailer = LogTailer::open(&options.wal_dir, 0);
    while !stop.load(Ordering::Relaxed) {
        let up_to = options.end.up_to();
        let fed = match tailer.next_batch(options.batch_records, up_to) {
            Err(e) => Err(FeedError::Log(e)),
            Ok(batch) if batch.records.is_empty() => Ok(Fed::CaughtUp {
                at: tailer.cursor(),
                seen: match options.end {
                    LogEnd::Live(_) => up_to,
                    LogEnd::Directory { .. } => tailer.cursor(),
                },
            }),
            Ok(batch) => replica
                .apply(ExportBatch {
                    source: source_of(&batch),
                    events: &batch.records,
                })
                .map_err(FeedError::Replica)
                .map(|rows| Fed::Rows {
                    rows,
                    tail_cursor: batch.cursor,
                    seen: match options.end {
                        LogEnd::Live(_) => up_to,
                        LogEnd::Directory { .. } => batch.cursor,
                    },
                }),
        };
        let ends = match &fed {
            Err(_) => true,
            Ok(Fed::CaughtUp { .. }) => matches!(options.end, LogEnd::Directory { once: true }),
            Ok(Fed::Rows { .. }) => false,
        };
        let idle = matches!(fed, Ok(Fed::CaughtUp { .. }));
        if tx.blocking_send(fed).is_err() || ends {
            return;
        }
        if idle {
            std::thread::sleep(POLL);
        }
    }
}

/// A tailer batch as the replica takes it: log records, or a part of a
/// snapshot (its last part moves the cursor, see `TailBatch`).
fn source_of(batch: &TailBatch) -> BatchSource {
    match batch.snapshot {
        None => BatchSource::Log,
        Some(covered) if batch.cursor + 1 >= covered => BatchSource::SnapshotEnd,
        Some(_) => BatchSource::SnapshotPart,
    }
}
