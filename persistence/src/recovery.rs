//! Reading a log directory back: recovery at start-up (`open`), the checks of
//! `verify`, the listing of `dump`, and the replay a snapshot is built from.

use std::fmt;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engine::{Engine, Event};
use rkyv::util::AlignedVec;

use crate::error::WalError;
use crate::format::{
    self, FileKind, LogFile, FOOTER_BYTES, FRAME_HEADER_BYTES, HEADER_BYTES, RECORD_BYTES_MAX,
};
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

/// The files of a log directory, sorted by LSN.
#[derive(Debug, Default)]
pub(crate) struct DirListing {
    pub segments: Vec<u64>,
    pub snapshots: Vec<u64>,
    pub temps: Vec<String>,
}

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

/// Reads a snapshot, handing each event and its offset to `f`; returns the
/// covered LSN and the record count. Streams: snapshots can be large.
pub(crate) fn read_snapshot(
    storage: &dyn Storage,
    path: &Path,
    mut f: impl FnMut(u64, Event) -> Result<(), WalError>,
) -> Result<(u64, u64), WalError> {
    let (reader, len) = storage
        .open_read(path)
        .map_err(|e| WalError::io(format!("opening {}", path.display()), e))?;
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let io_err = |e| WalError::io(format!("reading {}", path.display()), e);
    if len < (HEADER_BYTES + FOOTER_BYTES) as u64 {
        return Err(WalError::corrupted(
            path,
            0,
            "snapshot shorter than header and footer",
        ));
    }
    let mut header = [0u8; HEADER_BYTES];
    reader.read_exact(&mut header).map_err(io_err)?;
    let covered = format::decode_header(FileKind::Snapshot, path, &header)?;
    let end = len - FOOTER_BYTES as u64;
    let mut offset = HEADER_BYTES as u64;
    let mut count = 0u64;
    let mut payload = Vec::new();
    let mut scratch = AlignedVec::<16>::new();
    while offset < end {
        let mut fh = [0u8; FRAME_HEADER_BYTES];
        if offset + FRAME_HEADER_BYTES as u64 > end {
            return Err(WalError::corrupted(
                path,
                offset,
                "record runs into the footer",
            ));
        }
        reader.read_exact(&mut fh).map_err(io_err)?;
        let flen = u32::from_le_bytes(fh[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(fh[4..8].try_into().expect("4 bytes"));
        if flen == 0 || flen > RECORD_BYTES_MAX {
            return Err(WalError::corrupted(
                path,
                offset,
                format!("impossible record length {flen}"),
            ));
        }
        if offset + (FRAME_HEADER_BYTES as u64) + u64::from(flen) > end {
            return Err(WalError::corrupted(
                path,
                offset,
                "record runs into the footer",
            ));
        }
        payload.resize(flen as usize, 0);
        reader.read_exact(&mut payload).map_err(io_err)?;
        if format::frame_crc(flen, &payload) != crc {
            return Err(WalError::corrupted(
                path,
                offset,
                "record checksum mismatch",
            ));
        }
        let event = format::decode_payload(&payload, &mut scratch)
            .map_err(|r| WalError::corrupted(path, offset, r))?;
        f(offset, event)?;
        count += 1;
        offset += FRAME_HEADER_BYTES as u64 + u64::from(flen);
    }
    let mut footer = [0u8; FOOTER_BYTES];
    reader.read_exact(&mut footer).map_err(io_err)?;
    let promised = format::decode_footer(path, end, &footer)?;
    if promised != count {
        return Err(WalError::corrupted(
            path,
            end,
            format!("snapshot footer promises {promised} records, file holds {count}"),
        ));
    }
    Ok((covered, count))
}

/// How to treat the files while walking the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Walk {
    /// Start-up: cut a torn tail, remove leftovers.
    Repair,
    /// `verify`: touch nothing, but check every file, covered ones too.
    Check,
}

/// Where the writer continues after recovery.
#[derive(Debug)]
pub(crate) struct Tail {
    pub first_lsn: u64,
    pub len: u64,
}

pub(crate) struct Recovered {
    pub report: RecoveryReport,
    pub verify: VerifyReport,
    pub next_lsn: u64,
    pub tail: Option<Tail>,
}

/// Records decoded per chunk handed from the decoding thread to the applier.
const DECODE_CHUNK_RECORDS: usize = 4096;
/// Chunks the decoder may run ahead of the applier (bounds memory).
const DECODE_CHUNKS_AHEAD: usize = 4;

/// A chunk of decoded records: (index in the segment, byte offset, event).
type DecodedChunk = Result<Vec<(usize, u64, engine::Event)>, WalError>;

pub(crate) fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Applies the segments of `listing` (from the newest snapshot below
/// `stop_lsn` on) to `engine`, up to `stop_lsn` exclusive. The snapshot
/// thread uses this on closed segments only (`tail_allowed` false).
pub(crate) fn replay(
    storage: &dyn Storage,
    dir: &Path,
    listing: &DirListing,
    engine: &Engine,
    walk: Walk,
    stop_lsn: u64,
    tail_allowed: bool,
) -> Result<Recovered, WalError> {
    let started = Instant::now();
    let mut report = RecoveryReport {
        snapshot_records: 0,
        replayed_records: 0,
        segments: 0,
        truncated_bytes: 0,
        elapsed: Duration::ZERO,
    };
    let mut verify = VerifyReport::default();
    let base = listing
        .snapshots
        .iter()
        .copied()
        .filter(|&s| s <= stop_lsn)
        .max();
    if walk == Walk::Check {
        // Older snapshots are superseded but still checked.
        for &s in listing.snapshots.iter().filter(|&&s| Some(s) != base) {
            let path = path_of(dir, &format::snapshot_name(s));
            let (_, n) = read_snapshot(storage, &path, |_, _| Ok(()))?;
            verify.snapshots += 1;
            verify.snapshot_records += n;
        }
    }
    let mut next = 1u64;
    if let Some(s) = base {
        let path = path_of(dir, &format::snapshot_name(s));
        let (covered, n) = read_snapshot(storage, &path, |offset, event| {
            engine.apply(&event).map_err(|source| WalError::Replay {
                segment: path.clone(),
                offset,
                source,
            })
        })?;
        if covered != s {
            return Err(WalError::corrupted(
                &path,
                0,
                "snapshot header LSN does not match file name",
            ));
        }
        next = covered;
        report.snapshot_records = n;
        verify.snapshots += 1;
        verify.snapshot_records += n;
    }
    let segments: Vec<u64> = listing
        .segments
        .iter()
        .copied()
        .filter(|&s| s < stop_lsn)
        .collect();
    let mut tail = None;
    let mut scratch = AlignedVec::<16>::new();
    for (i, &seg) in segments.iter().enumerate() {
        let is_last = tail_allowed && i + 1 == segments.len();
        let path = path_of(dir, &format::segment_name(seg));
        let covered = segments
            .get(i + 1)
            .is_some_and(|&following| following <= next);
        if covered && walk == Walk::Repair {
            continue;
        }
        let bytes = storage
            .read(&path)
            .map_err(|e| WalError::io(format!("reading {}", path.display()), e))?;
        if is_last && (bytes.len() < HEADER_BYTES || bytes.iter().all(|&b| b == 0)) {
            // The writer died creating this segment: its header (written and
            // synced before any record) never made it, so no record in it
            // was ever acknowledged. With preallocation the file may be
            // zeros from end to end (those count as unused, not torn). A
            // zeroed header with records after it is corruption, reported by
            // the scan below.
            let torn = if bytes.len() < HEADER_BYTES {
                bytes.len() as u64
            } else {
                0
            };
            report.truncated_bytes += torn;
            verify.torn_tail_bytes += torn;
            tracing::info!(
                segment = %path.display(),
                "removing a segment whose creation never completed"
            );
            if walk == Walk::Repair {
                storage
                    .remove(&path)
                    .map_err(|e| WalError::io(format!("removing {}", path.display()), e))?;
                storage
                    .sync_dir(dir)
                    .map_err(|e| WalError::io(format!("syncing {}", dir.display()), e))?;
            }
            continue;
        }
        let scan = format::scan_segment(&path, &bytes, is_last)?;
        if scan.first_lsn != seg {
            return Err(WalError::corrupted(
                &path,
                0,
                "segment header LSN does not match file name",
            ));
        }
        verify.segments += 1;
        verify.records += scan.records.len() as u64;
        if covered {
            // `verify` only: decode, do not apply.
            for range in &scan.records {
                format::decode_payload(&bytes[range.clone()], &mut scratch).map_err(|r| {
                    WalError::corrupted(&path, (range.start - FRAME_HEADER_BYTES) as u64, r)
                })?;
            }
            continue;
        }
        if seg > next {
            return Err(WalError::corrupted(
                &path,
                0,
                format!("records {next}..{seg} are missing before this segment"),
            ));
        }
        report.segments += 1;
        // Decoding (rkyv validation) and applying take similar time, so a
        // second thread decodes chunks of records (and restores their
        // idempotency records) while this one applies the rest: recovery
        // runs at the speed of the slower of the two.
        let (tx, rx) = std::sync::mpsc::sync_channel::<DecodedChunk>(DECODE_CHUNKS_AHEAD);
        let records = &scan.records;
        let bytes_ref = &bytes;
        // Records below `next` were applied from an earlier segment or the
        // snapshot; the applier skips them, and so must the decoder.
        let next_at_start = next;
        let path_ref = &path;
        std::thread::scope(|scope| -> Result<(), WalError> {
            scope.spawn(move || {
                let mut scratch = AlignedVec::<16>::new();
                for (c, chunk) in records.chunks(DECODE_CHUNK_RECORDS).enumerate() {
                    let mut decoded = Vec::with_capacity(chunk.len());
                    for (k, range) in chunk.iter().enumerate() {
                        let index = c * DECODE_CHUNK_RECORDS + k;
                        let offset = (range.start - FRAME_HEADER_BYTES) as u64;
                        match format::decode_payload(&bytes_ref[range.clone()], &mut scratch) {
                            Ok(event) => {
                                // This thread also restores idempotency
                                // records, the one part of `apply` that
                                // nothing else in replay touches.
                                if seg + index as u64 >= next_at_start {
                                    engine.restore_request_id(&event);
                                }
                                decoded.push((index, offset, event));
                            }
                            Err(r) => {
                                let _ = tx.send(Err(WalError::corrupted(path_ref, offset, r)));
                                return;
                            }
                        }
                    }
                    if tx.send(Ok(decoded)).is_err() {
                        return; // the applier stopped on an error
                    }
                }
            });
            for chunk in rx {
                for (index, offset, event) in chunk? {
                    let lsn = seg + index as u64;
                    if lsn < next {
                        continue;
                    }
                    engine
                        .apply_deferring_request_id(&event)
                        .map_err(|source| WalError::Replay {
                            segment: path.clone(),
                            offset,
                            source,
                        })?;
                    next = lsn + 1;
                    report.replayed_records += 1;
                }
            }
            Ok(())
        })?;
        if is_last {
            if scan.torn_bytes > 0 {
                report.truncated_bytes += scan.torn_bytes;
                verify.torn_tail_bytes += scan.torn_bytes;
                if walk == Walk::Repair {
                    tracing::warn!(
                        segment = %path.display(),
                        offset = scan.valid_len,
                        bytes = scan.torn_bytes,
                        "cutting off a torn tail (never acknowledged)"
                    );
                }
            }
            // The writer goes on appending at the end of the file: cut the
            // torn tail and the unused preallocated zeros (it preallocates
            // again as it writes).
            if walk == Walk::Repair && scan.unused_bytes > 0 {
                tracing::debug!(
                    segment = %path.display(),
                    offset = scan.valid_len,
                    bytes = scan.unused_bytes,
                    "cutting unused preallocated zeros"
                );
            }
            if walk == Walk::Repair && scan.torn_bytes + scan.unused_bytes > 0 {
                storage
                    .truncate(&path, scan.valid_len)
                    .map_err(|e| WalError::io(format!("truncating {}", path.display()), e))?;
            }
            if seg + scan.records.len() as u64 == next {
                tail = Some(Tail {
                    first_lsn: seg,
                    len: scan.valid_len,
                });
            }
        }
    }
    report.elapsed = started.elapsed();
    Ok(Recovered {
        report,
        verify,
        next_lsn: next,
        tail,
    })
}

/// Removes leftovers after a successful recovery: temp files, superseded
/// snapshots and segments the newest snapshot covers.
pub(crate) fn clean_up(
    storage: &dyn Storage,
    dir: &Path,
    listing: &DirListing,
) -> Result<(), WalError> {
    let mut doomed: Vec<String> = listing.temps.clone();
    if let Some(&newest) = listing.snapshots.last() {
        doomed.extend(
            listing
                .snapshots
                .iter()
                .filter(|&&s| s < newest)
                .map(|&s| format::snapshot_name(s)),
        );
        for (i, &seg) in listing.segments.iter().enumerate() {
            if listing
                .segments
                .get(i + 1)
                .is_some_and(|&following| following <= newest)
            {
                doomed.push(format::segment_name(seg));
            }
        }
    }
    if doomed.is_empty() {
        return Ok(());
    }
    for name in &doomed {
        let path = path_of(dir, name);
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
    let listing = list_dir(storage, dir)?;
    let engine = Engine::new(engine::EngineConfig::with_shards(1));
    let recovered = replay(storage, dir, &listing, &engine, Walk::Check, u64::MAX, true)?;
    Ok(recovered.verify)
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
    let listing = list_dir(storage, dir)?;
    let write_err = |e| WalError::io("writing the dump", e);
    let mut count = 0u64;
    for &s in &listing.snapshots {
        let name = format::snapshot_name(s);
        read_snapshot(storage, &path_of(dir, &name), |offset, event| {
            count += 1;
            writeln!(out, "{name} @{offset} {} {event:?}", event.kind()).map_err(write_err)
        })?;
    }
    let mut scratch = AlignedVec::<16>::new();
    for (i, &seg) in listing.segments.iter().enumerate() {
        let name = format::segment_name(seg);
        let path = path_of(dir, &name);
        let bytes = storage
            .read(&path)
            .map_err(|e| WalError::io(format!("reading {}", path.display()), e))?;
        let scan = format::scan_segment(&path, &bytes, i + 1 == listing.segments.len())?;
        for (k, range) in scan.records.iter().enumerate() {
            let offset = (range.start - FRAME_HEADER_BYTES) as u64;
            let event = format::decode_payload(&bytes[range.clone()], &mut scratch)
                .map_err(|r| WalError::corrupted(&path, offset, r))?;
            let lsn = seg + k as u64;
            writeln!(out, "{name} @{offset} lsn={lsn} {} {event:?}", event.kind())
                .map_err(write_err)?;
            count += 1;
        }
        if scan.torn_bytes > 0 {
            writeln!(
                out,
                "{name} @{} torn tail of {} bytes",
                scan.valid_len, scan.torn_bytes
            )
            .map_err(write_err)?;
        }
    }
    Ok(count)
}
