//! Snapshots, written in the background from closed segments.
//!
//! The writer closes its segment every `snapshot_every_records` records and
//! sends the first LSN of the new one (`covered`). This thread rebuilds the
//! state before `covered` in a scratch engine (previous snapshot + closed,
//! immutable segments), exports it to `snapshot-<covered>.tmp`, syncs, renames,
//! syncs the directory, and only then deletes what the snapshot covers and
//! every consumer's retention hold has passed (`retention.rs`). The live
//! engine is never paused or read.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

use engine::{Engine, EngineConfig, Event, EventSink, SinkError};

use crate::error::WalError;
use crate::format::{self, FileKind};
use crate::scan::{self, DirListing, Records, ScanOptions};
use crate::storage::{Storage, StorageFile};
use crate::wal::LogShared;

/// Buffer size of snapshot writes.
const SNAPSHOT_WRITE_BYTES: usize = 1 << 20;

pub(crate) struct Snapshotter {
    pub(crate) shared: Arc<LogShared>,
    pub(crate) engine_config: EngineConfig,
}

impl Snapshotter {
    pub(crate) fn run(self, rx: mpsc::Receiver<u64>) {
        lower_priority();
        for covered in rx {
            let storage = &*self.shared.storage;
            let dir = &self.shared.config.dir;
            let written = write_snapshot(storage, dir, self.engine_config, covered)
                .and_then(|listing| self.remove_superseded(&listing, covered));
            match written {
                Ok(()) => {
                    self.shared.snapshots.fetch_add(1, Ordering::Relaxed);
                }
                // Not fatal to the log: segments stay until a later snapshot works.
                Err(e) => tracing::error!(error = %e, covered, "snapshot failed"),
            }
            self.shared.snapshot_busy.store(false, Ordering::Release);
        }
    }
}

impl Snapshotter {
    /// Once the snapshot at `covered` is durable: removes older snapshots,
    /// and each segment it covers whose records every retention hold has
    /// taken. A segment's last record is the next segment's first LSN - 1.
    /// Runs under the holds' lock (see `Holds::with_floor`).
    fn remove_superseded(&self, listing: &DirListing, covered: u64) -> Result<(), WalError> {
        let storage = &*self.shared.storage;
        let dir = &self.shared.config.dir;
        let remove = |name: String| -> Result<u64, WalError> {
            let p = dir.join(name);
            let len = storage.file_len(&p).unwrap_or(0);
            storage
                .remove(&p)
                .map_err(|e| WalError::io(format!("removing {}", p.display()), e))?;
            Ok(len)
        };
        let kept = self.shared.holds.with_floor(|floor| {
            // Deletable: the segment's last record (following - 1) is
            // covered by the snapshot and taken by every hold.
            let limit = covered.min(floor.saturating_add(1));
            let mut kept = 0u32;
            for pair in listing.segments.windows(2) {
                let (seg, following) = (pair[0], pair[1]);
                if following > covered {
                    break;
                }
                if following > limit {
                    kept += 1;
                    continue;
                }
                let len = remove(format::segment_name(seg))?;
                self.shared.retained_bytes.fetch_sub(len, Ordering::Relaxed);
            }
            Ok::<u32, WalError>(kept)
        })?;
        for &s in listing.snapshots.iter().filter(|&&s| s < covered) {
            remove(format::snapshot_name(s))?;
        }
        storage
            .sync_dir(dir)
            .map_err(|e| WalError::io(format!("syncing {}", dir.display()), e))?;
        if kept > 0 {
            tracing::info!(
                covered,
                kept,
                "segments kept for consumers' retention holds"
            );
        }
        Ok(())
    }
}

/// Frames exported events into a file, in large writes.
struct SnapshotSink<'a> {
    file: &'a mut dyn StorageFile,
    buf: Vec<u8>,
    records: u64,
    error: Option<std::io::Error>,
}

impl SnapshotSink<'_> {
    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.file.append(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

impl EventSink for SnapshotSink<'_> {
    fn emit(&mut self, event: &Event) -> Result<(), SinkError> {
        format::encode_frame_into(event, &mut self.buf);
        self.records += 1;
        if self.buf.len() >= SNAPSHOT_WRITE_BYTES {
            if let Err(e) = self.flush() {
                self.error = Some(e);
                return Err(SinkError::Failed);
            }
        }
        Ok(())
    }
}

/// Writes `snapshot-<covered>.snap`, durable with its name; returns the
/// directory listing it was built from (what it may supersede).
pub(crate) fn write_snapshot(
    storage: &dyn Storage,
    dir: &std::path::Path,
    engine_config: EngineConfig,
    covered: u64,
) -> Result<DirListing, WalError> {
    let listing = scan::list_dir(storage, dir)?;
    let scratch = Engine::new(engine_config);
    let rebuilt = scan::scan(
        storage,
        dir,
        &listing,
        ScanOptions::closed_before(covered),
        Records::Apply(&scratch),
    )?;
    if rebuilt.next_lsn != covered {
        return Err(WalError::corrupted(
            &dir.join(format::segment_name(covered)),
            0,
            format!(
                "closed segments end at LSN {}, snapshot needs {covered}",
                rebuilt.next_lsn
            ),
        ));
    }
    let tmp: PathBuf = dir.join(format::snapshot_tmp_name(covered));
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let mut file = storage
        .create(&tmp)
        .map_err(|e| WalError::io(ctx("creating"), e))?;
    file.append(&format::encode_header(FileKind::Snapshot, covered))
        .map_err(|e| WalError::io(ctx("writing"), e))?;
    let mut sink = SnapshotSink {
        file: &mut *file,
        buf: Vec::with_capacity(SNAPSHOT_WRITE_BYTES + 4096),
        records: 0,
        error: None,
    };
    let exported = scratch.export(&mut sink);
    if exported.is_err() || sink.error.is_some() {
        let e = sink
            .error
            .take()
            .unwrap_or_else(|| std::io::Error::other("export failed"));
        return Err(WalError::io(ctx("writing"), e));
    }
    let records = sink.records;
    sink.buf.extend_from_slice(&format::encode_footer(records));
    sink.flush().map_err(|e| WalError::io(ctx("writing"), e))?;
    file.sync().map_err(|e| WalError::io(ctx("syncing"), e))?;
    drop(file);
    let path = dir.join(format::snapshot_name(covered));
    storage
        .rename(&tmp, &path)
        .map_err(|e| WalError::io(ctx("renaming"), e))?;
    storage
        .sync_dir(dir)
        .map_err(|e| WalError::io(format!("syncing {}", dir.display()), e))?;
    tracing::info!(covered, records, "snapshot written");
    Ok(listing)
}

/// A snapshot replays whole segments: seconds of CPU that must not be taken
/// from the threads answering buyers. On Linux, `setpriority` on thread id 0
/// changes only the calling thread's nice value. Best effort: a failure (or
/// another OS) just leaves the priority as it was.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: setpriority has no memory-safety preconditions.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, SNAPSHOT_NICE) };
        if rc != 0 {
            tracing::debug!("could not lower the snapshot thread's priority");
        }
    }
}

/// Nice value of the snapshot thread (0 = normal, 19 = lowest).
#[cfg(target_os = "linux")]
const SNAPSHOT_NICE: libc::c_int = 10;
