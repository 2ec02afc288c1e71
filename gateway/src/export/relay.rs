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

use std::path::PathBuf;
use std::time::{Duration, Instant};

use engine::EngineConfig;
use persistence::{LogTailer, RetentionHold, TailBatch, Wal, WalError};
use tokio::sync::watch;

use super::status::ExportStatus;
use super::{
    BatchRows, BatchSource, ExportBatch, ExportError, ExportOptions, ExportReplica, PgExporter,
};
use crate::clock::unix_ms;

/// The cursor's stream name in `<prefix>export_cursor`.
pub const STREAM: &str = "orders";

/// First wait after a failure; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often a caught-up relay looks for new records.
const POLL: Duration = Duration::from_millis(20);

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

    fn up_to(&self) -> u64 {
        match self {
            RelaySource::Live { wal, .. } => wal.durable_lsn(),
            RelaySource::Directory { .. } => u64::MAX,
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
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("reading the log: {0}")]
    Log(#[from] WalError),
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
            RelayError::Log(_) | RelayError::CursorAhead { .. } => false,
        }
    }

    /// A short name of the failure, to log a change of state once.
    fn kind(&self) -> String {
        match self {
            RelayError::Export(e) => format!("export: {e}"),
            RelayError::Log(e) => format!("log: {e}"),
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
    let mut health = Health {
        down: None,
        up: false,
    };
    let mut backoff = BACKOFF_MIN;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let session = Session {
            source: &source,
            options: &options,
            status,
        };
        match session.run(&mut stop, &mut health, &mut backoff).await {
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
                health.down(&err);
                if !pause(&mut stop, &mut backoff).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Sleeps the backoff (doubling it for next time); false if `stop` came.
async fn pause(stop: &mut watch::Receiver<bool>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    sleep_or_stop(stop, wait).await
}

async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, wait: Duration) -> bool {
    let stopped = tokio::select! {
        _ = tokio::time::sleep(wait) => None,
        _ = stop.wait_for(|s| *s) => Some(()),
    };
    stopped.is_none() && !*stop.borrow()
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
        health: &mut Health,
        backoff: &mut Duration,
    ) -> Result<(), RelayError> {
        let mut exporter = PgExporter::connect(self.options.export.clone()).await?;
        let cursor = exporter.cursor(STREAM).await?;
        self.status.exported(cursor);
        if let RelaySource::Live { hold, .. } = self.source {
            hold.advance(cursor);
        }
        self.status.set_up(true);
        health.up(cursor);
        *backoff = BACKOFF_MIN;
        let mut replica = ExportReplica::new(self.options.engine);
        let mut tailer = LogTailer::open(&self.options.wal_dir, 0);
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let up_to = self.source.up_to();
            let batch = tailer.next_batch(self.options.batch_records, up_to)?;
            if batch.records.is_empty() {
                if tailer.cursor() < cursor {
                    return Err(RelayError::CursorAhead {
                        cursor,
                        end: tailer.cursor(),
                    });
                }
                self.status.log_at(tailer.cursor(), unix_ms());
                match self.source {
                    RelaySource::Directory { once: true } => return Ok(()),
                    RelaySource::Directory { once: false } | RelaySource::Live { .. } => {}
                }
                if !sleep_or_stop(stop, POLL).await {
                    return Ok(());
                }
                continue;
            }
            let rows = replica.apply(ExportBatch {
                source: source_of(&batch),
                events: &batch.records,
            })?;
            if rows.needs_writing(cursor)
                && !self
                    .write(&mut exporter, &rows, stop, health, backoff)
                    .await
            {
                return Ok(());
            }
            if let Some(lsn) = rows.cursor_lsn() {
                self.status.exported(lsn);
            }
            if let RelaySource::Live { hold, .. } = self.source {
                hold.advance(batch.cursor);
            }
            let seen = match self.source {
                RelaySource::Live { .. } => up_to,
                RelaySource::Directory { .. } => batch.cursor,
            };
            self.status.log_at(seen, unix_ms());
        }
    }

    /// Writes `rows`, retrying the same rows until they commit; false if
    /// `stop` came first.
    async fn write(
        &self,
        exporter: &mut PgExporter,
        rows: &BatchRows,
        stop: &mut watch::Receiver<bool>,
        health: &mut Health,
        backoff: &mut Duration,
    ) -> bool {
        loop {
            let started = Instant::now();
            // Dropped mid-transaction by a stop, the batch rolls back:
            // nothing is half written, and the next start writes it again.
            let written = tokio::select! {
                written = exporter.write_batch(STREAM, rows) => written,
                _ = stop.wait_for(|s| *s) => return false,
            };
            match written {
                Ok(_) => {
                    let n = (rows.sales.len() + rows.orders.len()) as u64;
                    self.status.batch_written(n, started.elapsed());
                    self.status.set_up(true);
                    health.up(rows.last_lsn);
                    *backoff = BACKOFF_MIN;
                    return true;
                }
                Err(err) => {
                    self.status.error();
                    self.status.set_up(false);
                    self.source.note_log_end(self.status);
                    health.down(&RelayError::Export(err));
                    if !pause(stop, backoff).await {
                        return false;
                    }
                }
            }
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
