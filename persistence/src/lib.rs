//! The write-ahead log of the flashsale engine: every event the engine emits
//! is framed, written by one writer thread with group commit, and synced per
//! the fsync mode before the purchase it records is acknowledged. On start,
//! [`open`] rebuilds the engine from the newest snapshot and the segments after
//! it. Byte layout and the crash argument: DESIGN.md.
//!
//! **Invariants.** The log's order is the order the engine emitted its events
//! (tickets are LSNs, written in order, without holes). A ticket reported
//! durable under `always` is on disk after a successful fdatasync. After a
//! write or sync error the log accepts nothing more: it never retries a
//! failed fsync. Corrupt bytes are an error naming file and offset, never a
//! panic and never skipped. Recovery cuts only what was never acknowledged:
//! a torn tail of the last segment (including a batch whose pages reached
//! the disk out of order, see DESIGN.md), unused preallocated zeros, and a
//! last segment whose creation never completed.
//!
//! Code map: the handle and sink in `wal.rs`, its shared state and writer
//! thread under `wal/`; consumers' reading (`tail.rs`, [`LogTailer`]) and
//! their retention holds (`retention.rs`, [`RetentionHold`]); the one log scanner that recovery, `verify`, `dump`
//! and the snapshot builder share in `scan.rs`; the byte layout in
//! `layout.rs` and `format.rs`. DESIGN.md has the full map.

mod config;
mod error;
pub mod format;
mod layout;
pub mod legacy;
mod recovery;
mod retention;
mod scan;
mod sched;
mod snapshot;
mod stats;
pub mod storage;
pub mod tail;
mod wal;

use std::sync::{mpsc, Arc};

use engine::{Engine, EngineConfig};

pub use crate::config::{FsyncMode, ParseFsyncModeError, WalConfig};
pub use crate::error::WalError;
pub use crate::recovery::{dump, dump_with, verify, verify_with, RecoveryReport, VerifyReport};
pub use crate::retention::RetentionHold;
pub use crate::stats::WalStats;
pub use crate::storage::{FsStorage, SimStorage, Storage, StorageFile};
pub use crate::tail::{LogTailer, TailBatch};
pub use crate::wal::{Ticket, Wal, WalSink};

/// Recover the engine from `config.dir` (creating the dir if missing), then
/// start the writer thread, ready to append. Not ready (the caller doesn't
/// serve) until this returns.
pub fn open(
    config: WalConfig,
    engine: EngineConfig,
) -> Result<(Engine, Wal, RecoveryReport), WalError> {
    open_with_storage(config, engine, Arc::new(FsStorage))
}

/// [`open`] on another [`Storage`] (fault injection in tests).
pub fn open_with_storage(
    config: WalConfig,
    engine_config: EngineConfig,
    storage: Arc<dyn Storage>,
) -> Result<(Engine, Wal, RecoveryReport), WalError> {
    validate(&config)?;
    let dir = config.dir.clone();
    storage
        .create_dir_all(&dir)
        .map_err(|e| WalError::io(format!("creating {}", dir.display()), e))?;
    let engine = Engine::new(engine_config);
    let recovered = recovery::recover(&*storage, &dir, &engine)?;
    let retained = scan::segment_bytes(&*storage, &dir)?;
    let shared = Arc::new(wal::LogShared::new(
        config.clone(),
        storage,
        recovered.next_lsn,
    ));
    shared
        .retained_bytes
        .store(retained, std::sync::atomic::Ordering::Relaxed);
    let (tx, rx) = if config.snapshot_every_records > 0 {
        let (tx, rx) = mpsc::channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let writer = wal::Writer::new(shared.clone(), recovered.tail, recovered.next_lsn, tx)?;
    let snapshotter = rx.map(|rx| {
        let snapshotter = snapshot::Snapshotter {
            shared: shared.clone(),
            engine_config,
        };
        Box::new(move || snapshotter.run(rx)) as wal::SnapshotThread
    });
    let wal = Wal::start(shared, writer, snapshotter)?;
    let report = recovered.report;
    tracing::info!(
        snapshot_records = report.snapshot_records,
        replayed_records = report.replayed_records,
        segments = report.segments,
        truncated_bytes = report.truncated_bytes,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "write-ahead log recovered"
    );
    Ok((engine, wal, report))
}

fn validate(config: &WalConfig) -> Result<(), WalError> {
    let below = |key: &str, min: u64| WalError::Config(format!("{key} must be at least {min}"));
    if config.queue_capacity < WalConfig::QUEUE_CAPACITY_MIN {
        let min = u64::from(WalConfig::QUEUE_CAPACITY_MIN);
        return Err(below("queue_capacity", min));
    }
    if config.segment_bytes < WalConfig::SEGMENT_BYTES_MIN {
        return Err(below("segment_bytes", WalConfig::SEGMENT_BYTES_MIN));
    }
    if config.fsync == FsyncMode::Interval
        && config.fsync_interval_ms < WalConfig::FSYNC_INTERVAL_MS_MIN
    {
        return Err(below("fsync_interval_ms", WalConfig::FSYNC_INTERVAL_MS_MIN));
    }
    Ok(())
}
