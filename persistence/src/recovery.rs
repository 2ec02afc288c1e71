//! The entry points that read a log directory back: start-up recovery
//! ([`recover`], used by `open`), [`verify`] and [`dump`]. All three read
//! through the one scanner in `scan.rs`, each with its own `ScanOptions`.

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use engine::Engine;

use crate::error::WalError;
use crate::format;
use crate::scan::{self, DirListing, Listed, Records, ScanOptions, Tail};
use crate::storage::Storage;

/// What start-up recovery did.
#[derive(Clone, Debug)]
pub struct RecoveryReport {
    /// Events applied from the snapshot.
    pub snapshot_records: u64,
    /// Records replayed from segments after the snapshot.
    pub replayed_records: u64,
    /// Segments read.
    pub segments: u32,
    /// Bytes of torn tail cut off the last segment.
    pub truncated_bytes: u64,
    pub elapsed: Duration,
}

/// What `verify` found in a log directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: u32,
    pub records: u64,
    pub snapshots: u32,
    pub snapshot_records: u64,
    /// A torn final record (never acknowledged) that `open` would cut off.
    pub torn_tail_bytes: u64,
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ok: {} segments, {} records, {} snapshots ({} records), torn tail {} bytes",
            self.segments,
            self.records,
            self.snapshots,
            self.snapshot_records,
            self.torn_tail_bytes
        )
    }
}

/// What `recover` hands to the writer.
pub(crate) struct Recovered {
    pub report: RecoveryReport,
    pub next_lsn: u64,
    pub tail: Option<Tail>,
}

/// Start-up: rebuilds `engine` from the newest snapshot and the segments
/// after it, cuts what was never acknowledged, then removes leftovers.
pub(crate) fn recover(
    storage: &dyn Storage,
    dir: &Path,
    engine: &Engine,
) -> Result<Recovered, WalError> {
    let listing = scan::list_dir(storage, dir)?;
    let started = Instant::now();
    let found = scan::scan(
        storage,
        dir,
        &listing,
        ScanOptions::RECOVER,
        Records::Apply(engine),
    )?;
    let report = RecoveryReport {
        snapshot_records: found.base_snapshot_records,
        replayed_records: found.applied_records,
        segments: found.applied_segments,
        truncated_bytes: found.torn_bytes,
        elapsed: started.elapsed(),
    };
    clean_up(storage, dir, &listing)?;
    Ok(Recovered {
        report,
        next_lsn: found.next_lsn,
        tail: found.tail,
    })
}

/// Removes leftovers after a successful recovery: temp files and
/// superseded snapshots. Segments the newest snapshot covers stay (a crash
/// between a snapshot's rename and its clean-up leaves them, and so do
/// consumers' retention holds): consumers take their holds again only after
/// `open`, so only the next snapshot's clean-up, which honours them, may
/// delete segments. Recovery skips them.
fn clean_up(storage: &dyn Storage, dir: &Path, listing: &DirListing) -> Result<(), WalError> {
    let mut doomed: Vec<String> = listing.temps.clone();
    if let Some(&newest) = listing.snapshots.last() {
        doomed.extend(
            listing
                .snapshots
                .iter()
                .filter(|&&s| s < newest)
                .map(|&s| format::snapshot_name(s)),
        );
    }
    if doomed.is_empty() {
        return Ok(());
    }
    for name in &doomed {
        let path = scan::path_of(dir, name);
        storage
            .remove(&path)
            .map_err(|e| WalError::io(format!("removing {}", path.display()), e))?;
    }
    storage
        .sync_dir(dir)
        .map_err(|e| WalError::io(format!("syncing {}", dir.display()), e))
}

/// Checks every record and snapshot in `dir` without changing anything:
/// checksums, decoding, LSN continuity, and a replay through a scratch engine.
pub fn verify(dir: &Path) -> Result<VerifyReport, WalError> {
    verify_with(&crate::storage::FsStorage, dir)
}

pub fn verify_with(storage: &dyn Storage, dir: &Path) -> Result<VerifyReport, WalError> {
    let listing = scan::list_dir(storage, dir)?;
    let engine = Engine::new(engine::EngineConfig::with_shards(1));
    let found = scan::scan(
        storage,
        dir,
        &listing,
        ScanOptions::VERIFY,
        Records::Apply(&engine),
    )?;
    Ok(VerifyReport {
        segments: found.segments,
        records: found.records,
        snapshots: found.snapshots,
        snapshot_records: found.snapshot_records,
        torn_tail_bytes: found.torn_bytes,
    })
}

/// Writes one line per record in `dir` (snapshots first, then segments);
/// returns the number of records. Stops at the first corruption.
pub fn dump(dir: &Path, out: &mut dyn std::io::Write) -> Result<u64, WalError> {
    dump_with(&crate::storage::FsStorage, dir, out)
}

pub fn dump_with(
    storage: &dyn Storage,
    dir: &Path,
    out: &mut dyn std::io::Write,
) -> Result<u64, WalError> {
    let listing = scan::list_dir(storage, dir)?;
    let write_err = |e| WalError::io("writing the dump", e);
    let mut count = 0u64;
    let mut line = |listed: Listed<'_>| match listed {
        Listed::Record {
            file,
            offset,
            lsn: None,
            event,
        } => {
            count += 1;
            writeln!(out, "{file} @{offset} {} {event:?}", event.kind()).map_err(write_err)
        }
        Listed::Record {
            file,
            offset,
            lsn: Some(lsn),
            event,
        } => {
            count += 1;
            writeln!(out, "{file} @{offset} lsn={lsn} {} {event:?}", event.kind())
                .map_err(write_err)
        }
        Listed::TornTail {
            file,
            offset,
            bytes,
        } => writeln!(out, "{file} @{offset} torn tail of {bytes} bytes").map_err(write_err),
    };
    scan::scan(
        storage,
        dir,
        &listing,
        ScanOptions::DUMP,
        Records::List(&mut line),
    )?;
    Ok(count)
}
