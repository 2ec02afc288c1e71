//! The relay: tails the write-ahead log and writes every record's rows to
//! PostgreSQL, resuming after the cursor the database holds.
//!
//! One session: connect (creating the schema if absent), read the cursor,
//! rebuild the replica engine from the log's start (a snapshot and the
//! records after it; the rows up to the cursor are not written again), then
//! follow the log. A failed write is retried, with the same rows, after a
//! capped exponential backoff, so the replica never takes a batch twice;
//! anything else that fails (the log, the replica) ends the session, and
//! the next one starts over from the database's cursor. Failures are
//! logged once per change of state, not once per retry.
//!
//! In `flashsale serve` it runs on its own thread (see `ExportRelay`), so
//! it never takes a core's turn from the I/O threads during a rush: its lag
//! may grow then, and the log keeps what it has not written (a retention
//! hold), up to `export.max_lag_bytes`.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use engine::EngineConfig;
use persistence::{RetentionHold, Wal, WalError};
use tokio::sync::watch;

use super::feed::{Fed, Feed, FeedError, FeedOptions, LogEnd};
use super::rush::{rest_after, RushWatch};
use super::status::ExportStatus;
use super::{lane_stream, BatchRows, ExportError, ExportOptions, PgExporter, LANES_MAX};
use crate::clock::unix_ms;

/// The cursor's stream name in `<prefix>export_cursor`.
pub const STREAM: &str = "orders";

/// First wait after a failure; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where the records come from.
pub enum RelaySource {
    /// A running server's log: only durable records are exported (a record
    /// written but not synced can be lost, and its LSN reused), and the
    /// hold keeps every segment the database does not have yet.
    Live { wal: Wal, hold: RetentionHold },
    /// A log directory no server writes to (`flashsale export`). With
    /// `once`, the relay ends when it has exported everything there.
    Directory { once: bool },
}

impl RelaySource {
    /// Tells `status` where the log's durable end is, so the lag shows
    /// while the export is down too (a directory's end is unknown).
    fn note_log_end(&self, status: &ExportStatus) {
        if let RelaySource::Live { wal, .. } = self {
            status.log_at(wal.durable_lsn(), unix_ms());
        }
    }

    /// Whether to yield to a rush now (see `rush`): only a live log can
    /// rush, and only while its held-back part is well under the limit.
    fn yields(&self, rush: &mut RushWatch, max_lag_bytes: u64) -> bool {
        match self {
            RelaySource::Live { wal, .. } => {
                rush.observe(Instant::now(), wal.durable_lsn())
                    && wal.retained_bytes() < max_lag_bytes / 2
            }
            RelaySource::Directory { .. } => false,
        }
    }

    fn log_end(&self) -> LogEnd {
        match self {
            RelaySource::Live { wal, .. } => LogEnd::Live(wal.clone()),
            RelaySource::Directory { once } => LogEnd::Directory { once: *once },
        }
    }
}

/// What the relay needs besides its source.
#[derive(Clone, Debug)]
pub struct RelayOptions {
    pub export: ExportOptions,
    pub wal_dir: PathBuf,
    /// For the replica (the server's own engine settings).
    pub engine: EngineConfig,
    pub batch_records: usize,
    /// Connections written side by side (`export.connections`), each a
    /// lane with its share of the orders and its own cursor.
    pub lanes: usize,
    /// `export.max_lag_bytes`: a live relay stops yielding to a rush when
    /// the log it holds back reaches half of it.
    pub max_lag_bytes: u64,
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("reading the log: {0}")]
    Log(#[from] WalError),
    #[error("starting the export's feed thread: {0}")]
    Thread(std::io::Error),
    #[error("the export's feed thread ended unexpectedly")]
    FeedLost,
    #[error(
        "the database's cursor ({cursor}) is past the end of this log ({end}): \
         it holds the export of another log (export.postgres_url, export.table_prefix)"
    )]
    CursorAhead { cursor: u64, end: u64 },
}

impl RelayError {
    /// Whether trying again later may succeed without an operator.
    pub fn is_transient(&self) -> bool {
        match self {
            RelayError::Export(e) => e.is_transient(),
            RelayError::Thread(_) => true,
            RelayError::Log(_) | RelayError::FeedLost | RelayError::CursorAhead { .. } => false,
        }
    }

    /// A short name of the failure, to log a change of state once.
    fn kind(&self) -> String {
        match self {
            RelayError::Export(e) => format!("export: {e}"),
            RelayError::Log(e) => format!("log: {e}"),
            RelayError::Thread(_) => "feed thread".to_string(),
            RelayError::FeedLost => "feed lost".to_string(),
            RelayError::CursorAhead { .. } => "cursor ahead".to_string(),
        }
    }
}

/// Logs the relay's state when it changes, not on every retry.
struct Health {
    down: Option<String>,
    up: bool,
}

impl Health {
    fn up(&mut self, cursor: u64) {
        if !self.up {
            tracing::info!(cursor, "export: writing to PostgreSQL");
        }
        self.up = true;
        self.down = None;
    }

    fn down(&mut self, err: &RelayError) {
        let kind = err.kind();
        if self.down.as_deref() != Some(kind.as_str()) {
            tracing::warn!(%err, "export: failing, retrying with backoff");
            self.down = Some(kind);
        }
        self.up = false;
    }
}

/// Runs until `stop` turns true, or, for a `Directory { once: true }`
/// source, until everything in it is exported. Never returns an error for
/// a failure it can retry: those are logged and counted in `status`.
pub async fn run(
    source: RelaySource,
    options: RelayOptions,
    status: &ExportStatus,
    mut stop: watch::Receiver<bool>,
) -> Result<(), RelayError> {
    // Shared by the lanes of a session, which run interleaved on this
    // task, never at once: a cell each.
    let health = RefCell::new(Health {
        down: None,
        up: false,
    });
    let backoff = Cell::new(BACKOFF_MIN);
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let session = Session {
            source: &source,
            options: &options,
            status,
        };
        match session.run(&mut stop, &health, &backoff).await {
            Ok(()) => return Ok(()),
            // Refusing a newer schema is for an operator to fix: no retry.
            Err(RelayError::Export(e @ ExportError::SchemaTooNew { .. })) => {
                status.set_up(false);
                return Err(RelayError::Export(e));
            }
            // `flashsale export` reports what an operator must fix and
            // ends; a server keeps trying, saying so once.
            Err(err) if !err.is_transient() && matches!(source, RelaySource::Directory { .. }) => {
                status.set_up(false);
                return Err(err);
            }
            Err(err) => {
                status.error();
                status.set_up(false);
                source.note_log_end(status);
                health.borrow_mut().down(&err);
                if !pause(&mut stop, &backoff).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Sleeps the backoff (doubling it for next time); false if `stop` came.
async fn pause(stop: &mut watch::Receiver<bool>, backoff: &Cell<Duration>) -> bool {
    let wait = backoff.get();
    backoff.set((wait * 2).min(BACKOFF_MAX));
    sleep_or_stop(stop, wait).await
}

async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(wait) => None,
        _ = stop.wait_for(|s| *s) => Some(()),
    };
    stopped.is_none() && !*stop.borrow()
}

/// A session's lanes, as one batch's write uses them.
struct Lanes<'a> {
    exporters: &'a mut [PgExporter],
    /// Each lane's cursor at the session's start.
    cursors: &'a [u64],
    /// Write the lanes' parts one after another (yielding to a rush).
    one_at_a_time: bool,
}

/// One connection's worth of relaying.
struct Session<'a> {
    source: &'a RelaySource,
    options: &'a RelayOptions,
    status: &'a ExportStatus,
}

impl Session<'_> {
    async fn run(
        &self,
        stop: &mut watch::Receiver<bool>,
        health: &RefCell<Health>,
        backoff: &Cell<Duration>,
    ) -> Result<(), RelayError> {
        let lanes = self.options.lanes.clamp(1, LANES_MAX);
        let mut exporters = Vec::with_capacity(lanes);
        for _ in 0..lanes {
            exporters.push(PgExporter::connect(self.options.export.clone()).await?);
        }
        let cursors = exporters[0].lane_cursors(STREAM, lanes).await?;
        // The export is where its slowest lane is; a lane past the log's
        // end means the database holds another log's export.
        let cursor = cursors.iter().copied().min().unwrap_or(0);
        let furthest = cursors.iter().copied().max().unwrap_or(0);
        self.status.exported(cursor);
        if let RelaySource::Live { hold, .. } = self.source {
            hold.advance(cursor);
        }
        self.status.set_up(true);
        health.borrow_mut().up(cursor);
        backoff.set(BACKOFF_MIN);
        let mut feed = Feed::start(FeedOptions {
            wal_dir: self.options.wal_dir.clone(),
            engine: self.options.engine,
            batch_records: self.options.batch_records,
            end: self.source.log_end(),
        })
        .map_err(RelayError::Thread)?;
        let mut rush = RushWatch::new(Instant::now(), cursor);
        loop {
            let fed = tokio::select! {
                fed = feed.next() => fed,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            match fed.ok_or(RelayError::FeedLost)? {
                Err(FeedError::Log(e)) => return Err(RelayError::Log(e)),
                Err(FeedError::Replica(e)) => return Err(RelayError::Export(e)),
                Ok(Fed::CaughtUp { at, seen }) => {
                    if at < furthest {
                        return Err(RelayError::CursorAhead {
                            cursor: furthest,
                            end: at,
                        });
                    }
                    self.status.log_at(seen, unix_ms());
                    match self.source {
                        RelaySource::Directory { once: true } => return Ok(()),
                        RelaySource::Directory { once: false } | RelaySource::Live { .. } => {}
                    }
                }
                Ok(Fed::Rows {
                    rows,
                    tail_cursor,
                    seen,
                }) => {
                    let cursor_lsn = rows.cursor_lsn();
                    let yields = self.source.yields(&mut rush, self.options.max_lag_bytes);
                    self.note_yielding(yields);
                    let started = Instant::now();
                    let lanes = Lanes {
                        exporters: &mut exporters,
                        cursors: &cursors,
                        one_at_a_time: yields,
                    };
                    if !self.write_lanes(lanes, rows, stop, health, backoff).await {
                        return Ok(());
                    }
                    if yields && !sleep_or_stop(stop, rest_after(started.elapsed())).await {
                        return Ok(());
                    }
                    if let Some(lsn) = cursor_lsn {
                        self.status.exported(lsn);
                    }
                    if let RelaySource::Live { hold, .. } = self.source {
                        hold.advance(tail_cursor);
                    }
                    self.status.log_at(seen, unix_ms());
                }
            }
        }
    }

    /// Tells the status, and the log once per change, whether the relay
    /// yields to a rush.
    fn note_yielding(&self, yields: bool) {
        match (self.status.set_yielding(yields), yields) {
            (false, true) => {
                tracing::info!("export: yielding to a rush of purchases; it catches up after")
            }
            (true, false) => tracing::info!("export: the rush is over; catching up at full speed"),
            (false, false) | (true, true) => {}
        }
    }

    /// Writes a batch over the lanes, side by side (one after another
    /// when yielding), each lane's part retried until it commits; false
    /// if `stop` came first. A lane whose cursor is already past its part
    /// skips it.
    async fn write_lanes(
        &self,
        lanes: Lanes<'_>,
        rows: BatchRows,
        stop: &watch::Receiver<bool>,
        health: &RefCell<Health>,
        backoff: &Cell<Duration>,
    ) -> bool {
        let Lanes {
            exporters,
            cursors,
            one_at_a_time,
        } = lanes;
        let started = Instant::now();
        let last_lsn = rows.last_lsn;
        let parts = rows.split_lanes(exporters.len());
        let lanes: Vec<(usize, &mut PgExporter, BatchRows)> = (exporters.iter_mut().zip(parts))
            .enumerate()
            .filter(|(k, (_, part))| part.needs_writing(cursors[*k]))
            .map(|(k, (exporter, part))| (k, exporter, part))
            .collect();
        if lanes.is_empty() {
            return true;
        }
        let n: u64 = (lanes.iter())
            .map(|(_, _, p)| (p.sales.len() + p.orders.len()) as u64)
            .sum();
        let writes = lanes.into_iter().map(|(k, exporter, part)| {
            let stop = stop.clone();
            async move {
                let stream = lane_stream(STREAM, k);
                self.write_lane(exporter, &stream, &part, stop, health, backoff)
                    .await
            }
        });
        let written = if one_at_a_time {
            let mut all = true;
            for write in writes {
                all = all && write.await;
            }
            all
        } else {
            join_all(writes).await.into_iter().all(|done| done)
        };
        if written {
            self.status.batch_written(n, started.elapsed());
            self.status.set_up(true);
            health.borrow_mut().up(last_lsn);
            backoff.set(BACKOFF_MIN);
        }
        written
    }

    /// Writes one lane's part, retrying the same rows until they commit;
    /// false if `stop` came first.
    async fn write_lane(
        &self,
        exporter: &mut PgExporter,
        stream: &str,
        rows: &BatchRows,
        mut stop: watch::Receiver<bool>,
        health: &RefCell<Health>,
        backoff: &Cell<Duration>,
    ) -> bool {
        loop {
            // Dropped mid-transaction by a stop, the batch rolls back:
            // nothing is half written, and the next start writes it again.
            let written = tokio::select! {
                written = exporter.write_batch(stream, rows) => written,
                _ = stop.wait_for(|s| *s) => return false,
            };
            match written {
                Ok(_) => return true,
                Err(err) => {
                    self.status.error();
                    self.status.set_up(false);
                    self.source.note_log_end(self.status);
                    health.borrow_mut().down(&RelayError::Export(err));
                    if !pause(&mut stop, backoff).await {
                        return false;
                    }
                }
            }
        }
    }
}

/// The relay of a running server, on a thread of its own with its own
/// runtime; stopped (and joined) by [`ExportRelay::stop`].
pub struct ExportRelay {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ExportRelay {
    pub fn start(
        wal: Wal,
        options: RelayOptions,
        status: std::sync::Arc<ExportStatus>,
    ) -> std::io::Result<ExportRelay> {
        // Held from before the first snapshot could run: nothing is deleted
        // until the database's cursor is known.
        let hold = wal.hold("export", 0);
        let (stop, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("export".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(err) => {
                        tracing::error!(%err, "export: cannot start its runtime");
                        return;
                    }
                };
                let source = RelaySource::Live { wal, hold };
                if let Err(err) = runtime.block_on(run(source, options, &status, stop_rx)) {
                    tracing::error!(%err, "export stopped");
                }
            })?;
        Ok(ExportRelay {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the relay and waits for it (blocking).
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
