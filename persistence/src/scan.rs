//! The log scanner: the one walk over a log directory (snapshot first, then
//! segments in LSN order) that start-up recovery, `verify`, `dump` and the
//! snapshot builder share. What differs between them is a [`ScanOptions`]
//! and where the records go ([`Records`]).
//!
//! One function per phase: find the files ([`list_dir`]), read the
//! snapshots (`Scanner::snapshots`), read a segment's frames and decide what
//! a bad frame means (`segment::scan_segment`), recognise a last segment
//! whose creation never completed (`Scanner::unfinished_creation`), hand
//! the records on (`apply_records`, `check_records`, `list_records`)
//! and deal with the end of the last segment (`Scanner::finish_last`).

mod apply;
mod segment;
mod snapshot_file;

use std::path::{Path, PathBuf};

use engine::{Engine, Event};
use rkyv::util::AlignedVec;

use crate::error::WalError;
use crate::format::{self, LogFile, FRAME_HEADER_BYTES, HEADER_BYTES};
use crate::storage::Storage;

use self::apply::apply_records;
pub(crate) use self::segment::{judge_bad_frame, BadFrame, SegmentEnd};
use self::segment::{scan_segment, SegmentScan};
pub(crate) use self::snapshot_file::{read_snapshot, SnapshotReader};

/// How far a scan reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// Every snapshot and segment in the directory.
    Everything,
    /// The newest snapshot at or below this LSN, and the segments that start
    /// before it (the snapshot builder's closed prefix).
    Before(u64),
}

/// What the scan does with the end of the last segment it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LastSegment {
    /// Start-up: cut a torn tail and the unused preallocated zeros, so the
    /// writer appends right after the last record; remove a segment whose
    /// creation never completed.
    Repair,
    /// Count the torn tail (and an unfinished segment) but touch nothing.
    Report,
    /// Every segment read was rolled past and synced: a torn tail cannot
    /// be, so a bad frame anywhere is corruption.
    Closed,
}

/// The files the newest snapshot supersedes: older snapshots, and segments
/// whose records it all holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Superseded {
    /// Not read: start-up and the snapshot builder need only what is newer.
    Skip,
    /// Read and checked (decoded, not applied), or listed.
    Read,
}

/// How much the scan holds the files to being one log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Checks {
    /// One log: header LSNs match file names, records continue the LSN
    /// sequence from the snapshot on, and an all-zero or short last segment
    /// is a creation that never completed.
    Log,
    /// Each file by itself: headers, frames, checksums and decoding only.
    /// `dump` lists what is on disk even where the sequence is broken.
    Frames,
}

/// How a scan reads the directory: a named preset per use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScanOptions {
    pub until: ScanEnd,
    pub last_segment: LastSegment,
    pub superseded: Superseded,
    pub checks: Checks,
}

impl ScanOptions {
    /// Start-up recovery (`open`).
    pub(crate) const RECOVER: ScanOptions = ScanOptions {
        until: ScanEnd::Everything,
        last_segment: LastSegment::Repair,
        superseded: Superseded::Skip,
        checks: Checks::Log,
    };
    /// `verify`: everything, superseded files too, changing nothing.
    pub(crate) const VERIFY: ScanOptions = ScanOptions {
        until: ScanEnd::Everything,
        last_segment: LastSegment::Report,
        superseded: Superseded::Read,
        checks: Checks::Log,
    };
    /// `dump`: every record of every file, changing nothing.
    pub(crate) const DUMP: ScanOptions = ScanOptions {
        until: ScanEnd::Everything,
        last_segment: LastSegment::Report,
        superseded: Superseded::Read,
        checks: Checks::Frames,
    };

    /// The snapshot builder: the state before `covered`, from the previous
    /// snapshot and the closed segments after it.
    pub(crate) const fn closed_before(covered: u64) -> ScanOptions {
        ScanOptions {
            until: ScanEnd::Before(covered),
            last_segment: LastSegment::Closed,
            superseded: Superseded::Skip,
            checks: Checks::Log,
        }
    }
}

impl ScanEnd {
    fn includes_snapshot(self, covered: u64) -> bool {
        match self {
            ScanEnd::Everything => true,
            ScanEnd::Before(lsn) => covered <= lsn,
        }
    }

    fn includes_segment(self, first_lsn: u64) -> bool {
        match self {
            ScanEnd::Everything => true,
            ScanEnd::Before(lsn) => first_lsn < lsn,
        }
    }
}

/// One thing `dump` lists.
#[derive(Debug)]
pub(crate) enum Listed<'a> {
    /// A record; `lsn` is `None` in a snapshot (its records have none).
    Record {
        file: &'a str,
        offset: u64,
        lsn: Option<u64>,
        event: &'a Event,
    },
    /// The torn tail of the last segment.
    TornTail {
        file: &'a str,
        offset: u64,
        bytes: u64,
    },
}

/// A callback that receives what a listing scan finds, in file order.
pub(crate) type ListFn<'a> = dyn FnMut(Listed<'_>) -> Result<(), WalError> + 'a;

/// Where the records a scan reads go.
pub(crate) enum Records<'a> {
    /// Applied to an engine from the newest snapshot on; superseded
    /// records are only decoded.
    Apply(&'a Engine),
    /// Handed to a callback, every one of them; no engine.
    List(&'a mut ListFn<'a>),
}

/// Where the writer continues after recovery.
#[derive(Debug)]
pub(crate) struct Tail {
    pub first_lsn: u64,
    pub len: u64,
}

/// What a scan read.
#[derive(Debug, Default)]
pub(crate) struct Scanned {
    /// Records in the snapshot the engine was built from.
    pub base_snapshot_records: u64,
    /// Snapshots read, superseded ones included, and their records.
    pub snapshots: u32,
    pub snapshot_records: u64,
    /// Segments read, superseded ones included, and their good records.
    pub segments: u32,
    pub records: u64,
    /// Segments whose records went to the engine, and those records.
    pub applied_segments: u32,
    pub applied_records: u64,
    /// Bytes of torn tail (cut under `LastSegment::Repair`), and of a last
    /// segment too short to hold its header.
    pub torn_bytes: u64,
    /// The next LSN after the records applied.
    pub next_lsn: u64,
    pub tail: Option<Tail>,
}

/// The files of a log directory, sorted by LSN.
#[derive(Debug, Default)]
pub(crate) struct DirListing {
    pub segments: Vec<u64>,
    pub snapshots: Vec<u64>,
    pub temps: Vec<String>,
}

/// Finds the log's files; warns about (and ignores) anything else.
pub(crate) fn list_dir(storage: &dyn Storage, dir: &Path) -> Result<DirListing, WalError> {
    let names = storage
        .list(dir)
        .map_err(|e| WalError::io(format!("listing {}", dir.display()), e))?;
    let mut listing = DirListing::default();
    for name in names {
        match format::parse_name(&name) {
            Some(LogFile::Segment(lsn)) => listing.segments.push(lsn),
            Some(LogFile::Snapshot(lsn)) => listing.snapshots.push(lsn),
            Some(LogFile::Temp) => listing.temps.push(name),
            None => tracing::warn!(file = %name, "ignoring unknown file in the log directory"),
        }
    }
    listing.segments.sort_unstable();
    listing.snapshots.sort_unstable();
    Ok(listing)
}

/// Bytes of the segment files in `dir` (the log's retained bytes at open).
pub(crate) fn segment_bytes(storage: &dyn Storage, dir: &Path) -> Result<u64, WalError> {
    let mut total = 0;
    for seg in list_dir(storage, dir)?.segments {
        let path = path_of(dir, &format::segment_name(seg));
        total += storage
            .file_len(&path)
            .map_err(|e| WalError::io(format!("reading the size of {}", path.display()), e))?;
    }
    Ok(total)
}

pub(crate) fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Reads the files of `listing` as `options` say, handing their records to
/// `records`.
pub(crate) fn scan(
    storage: &dyn Storage,
    dir: &Path,
    listing: &DirListing,
    options: ScanOptions,
    records: Records<'_>,
) -> Result<Scanned, WalError> {
    let mut scanner = Scanner {
        storage,
        dir,
        options,
        records,
        found: Scanned {
            next_lsn: 1,
            ..Scanned::default()
        },
    };
    scanner.snapshots(&listing.snapshots)?;
    let segments: Vec<u64> = listing
        .segments
        .iter()
        .copied()
        .filter(|&s| options.until.includes_segment(s))
        .collect();
    for (i, &seg) in segments.iter().enumerate() {
        scanner.segment(seg, segments.get(i + 1).copied())?;
    }
    Ok(scanner.found)
}

/// The state of one scan.
struct Scanner<'a, 'r> {
    storage: &'a dyn Storage,
    dir: &'a Path,
    options: ScanOptions,
    records: Records<'r>,
    found: Scanned,
}

impl Scanner<'_, '_> {
    /// Reads the newest snapshot in range (the base the engine starts from),
    /// and the superseded ones before it if asked to.
    fn snapshots(&mut self, snapshots: &[u64]) -> Result<(), WalError> {
        let until = self.options.until;
        let base = snapshots
            .iter()
            .copied()
            .filter(|&s| until.includes_snapshot(s))
            .max();
        if self.options.superseded == Superseded::Read {
            for &s in snapshots.iter().filter(|&&s| Some(s) != base) {
                self.snapshot(s, false)?;
            }
        }
        if let Some(s) = base {
            let (covered, n) = self.snapshot(s, true)?;
            if self.options.checks == Checks::Log && covered != s {
                return Err(WalError::corrupted(
                    &path_of(self.dir, &format::snapshot_name(s)),
                    0,
                    "snapshot header LSN does not match file name",
                ));
            }
            self.found.next_lsn = covered;
            self.found.base_snapshot_records = n;
        }
        Ok(())
    }

    /// Reads one snapshot; only the base one is applied to an engine.
    fn snapshot(&mut self, covered: u64, base: bool) -> Result<(u64, u64), WalError> {
        let name = format::snapshot_name(covered);
        let path = path_of(self.dir, &name);
        let read = match &mut self.records {
            Records::Apply(engine) if base => {
                read_snapshot(self.storage, &path, |offset, event| {
                    engine.apply(&event).map_err(|source| WalError::Replay {
                        segment: path.clone(),
                        offset,
                        source,
                    })
                })?
            }
            Records::Apply(_) => read_snapshot(self.storage, &path, |_, _| Ok(()))?,
            Records::List(list) => read_snapshot(self.storage, &path, |offset, event| {
                list(Listed::Record {
                    file: &name,
                    offset,
                    lsn: None,
                    event: &event,
                })
            })?,
        };
        self.found.snapshots += 1;
        self.found.snapshot_records += read.1;
        Ok(read)
    }

    /// Reads one segment (`following` = first LSN of the next one) and
    /// hands its records on.
    fn segment(&mut self, seg: u64, following: Option<u64>) -> Result<(), WalError> {
        let options = self.options;
        let is_last = following.is_none() && options.last_segment != LastSegment::Closed;
        let superseded = following.is_some_and(|f| f <= self.found.next_lsn);
        if superseded && options.superseded == Superseded::Skip {
            return Ok(());
        }
        let name = format::segment_name(seg);
        let path = path_of(self.dir, &name);
        let bytes = self
            .storage
            .read(&path)
            .map_err(|e| WalError::io(format!("reading {}", path.display()), e))?;
        if is_last && options.checks == Checks::Log && never_completed(&bytes) {
            return self.unfinished_creation(&path, bytes.len());
        }
        let end = if is_last {
            SegmentEnd::Last
        } else {
            SegmentEnd::Closed
        };
        let scan = scan_segment(&path, &bytes, end)?;
        if options.checks == Checks::Log && scan.first_lsn != seg {
            return Err(WalError::corrupted(
                &path,
                0,
                "segment header LSN does not match file name",
            ));
        }
        self.found.segments += 1;
        self.found.records += scan.records.len() as u64;
        let next = self.found.next_lsn;
        match &mut self.records {
            Records::Apply(_) if superseded => return check_records(&path, &bytes, &scan),
            Records::Apply(engine) => {
                if options.checks == Checks::Log && seg > next {
                    return Err(WalError::corrupted(
                        &path,
                        0,
                        format!("records {next}..{seg} are missing before this segment"),
                    ));
                }
                let (next, applied) = apply_records(engine, &path, seg, &bytes, &scan, next)?;
                self.found.applied_segments += 1;
                self.found.applied_records += applied;
                self.found.next_lsn = next;
            }
            Records::List(list) => list_records(&mut **list, &name, &path, seg, &bytes, &scan)?,
        }
        if is_last {
            self.finish_last(&name, &path, seg, &scan)?;
        }
        Ok(())
    }

    /// The writer died creating this segment: its header (written and synced
    /// before any record) never made it, so no record in it was ever
    /// acknowledged. With preallocation the file may be zeros from end to end
    /// (those count as unused, not torn). A zeroed header with records after
    /// it is corruption, reported by the segment scan.
    fn unfinished_creation(&mut self, path: &Path, len: usize) -> Result<(), WalError> {
        if len < HEADER_BYTES {
            self.found.torn_bytes += len as u64;
        }
        match self.options.last_segment {
            LastSegment::Repair => {
                tracing::info!(
                    segment = %path.display(),
                    "removing a segment whose creation never completed"
                );
                self.storage
                    .remove(path)
                    .map_err(|e| WalError::io(format!("removing {}", path.display()), e))?;
                self.storage
                    .sync_dir(self.dir)
                    .map_err(|e| WalError::io(format!("syncing {}", self.dir.display()), e))
            }
            LastSegment::Report | LastSegment::Closed => {
                tracing::info!(
                    segment = %path.display(),
                    "found a segment whose creation never completed (start-up removes it)"
                );
                Ok(())
            }
        }
    }

    /// The end of the last segment: count (and list) a torn tail, cut it and
    /// the unused zeros under `Repair`, and note where the writer continues.
    fn finish_last(
        &mut self,
        name: &str,
        path: &Path,
        seg: u64,
        scan: &SegmentScan,
    ) -> Result<(), WalError> {
        let repair = self.options.last_segment == LastSegment::Repair;
        if scan.torn_bytes > 0 {
            self.found.torn_bytes += scan.torn_bytes;
            if repair {
                tracing::warn!(
                    segment = %path.display(),
                    offset = scan.valid_len,
                    bytes = scan.torn_bytes,
                    "cutting off a torn tail (never acknowledged)"
                );
            }
            if let Records::List(list) = &mut self.records {
                list(Listed::TornTail {
                    file: name,
                    offset: scan.valid_len,
                    bytes: scan.torn_bytes,
                })?;
            }
        }
        // The writer goes on appending at the end of the file: cut the torn
        // tail and the unused preallocated zeros (it preallocates again as
        // it writes).
        if repair && scan.unused_bytes > 0 {
            tracing::debug!(
                segment = %path.display(),
                offset = scan.valid_len,
                bytes = scan.unused_bytes,
                "cutting unused preallocated zeros"
            );
        }
        if repair && scan.torn_bytes + scan.unused_bytes > 0 {
            self.storage
                .truncate(path, scan.valid_len)
                .map_err(|e| WalError::io(format!("truncating {}", path.display()), e))?;
        }
        // The writer appends only to a segment of the current format: after
        // an upgrade it starts a new segment at the next LSN, and each file
        // keeps one version (the one its header names). An old segment with
        // no record has the next segment's name; creating that replaces it.
        if seg + scan.records.len() as u64 == self.found.next_lsn
            && scan.version == format::FORMAT_VERSION
        {
            self.found.tail = Some(Tail {
                first_lsn: seg,
                len: scan.valid_len,
            });
        }
        Ok(())
    }
}

/// A last segment shorter than its header, or all zeros: see
/// `Scanner::unfinished_creation`.
pub(crate) fn never_completed(bytes: &[u8]) -> bool {
    bytes.len() < HEADER_BYTES || bytes.iter().all(|&b| b == 0)
}

/// `dump`: every record of a segment, decoded in order, to the callback.
fn list_records(
    list: &mut ListFn<'_>,
    name: &str,
    path: &Path,
    seg: u64,
    bytes: &[u8],
    scan: &SegmentScan,
) -> Result<(), WalError> {
    let mut scratch = AlignedVec::<16>::new();
    for (k, range) in scan.records.iter().enumerate() {
        let offset = (range.start - FRAME_HEADER_BYTES) as u64;
        let event = format::decode_payload(&bytes[range.clone()], scan.version, &mut scratch)
            .map_err(|r| WalError::corrupted(path, offset, r))?;
        list(Listed::Record {
            file: name,
            offset,
            lsn: Some(seg + k as u64),
            event: &event,
        })?;
    }
    Ok(())
}

/// `verify` on a superseded segment: decode every record, apply none.
fn check_records(path: &Path, bytes: &[u8], scan: &SegmentScan) -> Result<(), WalError> {
    let mut scratch = AlignedVec::<16>::new();
    for range in &scan.records {
        format::decode_payload(&bytes[range.clone()], scan.version, &mut scratch)
            .map_err(|r| WalError::corrupted(path, (range.start - FRAME_HEADER_BYTES) as u64, r))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
