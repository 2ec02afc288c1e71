//! One segment's frames: read them from the header on, and decide what the
//! first bad frame means (unused preallocated space, a torn tail, or
//! corruption). Pure functions on the segment's bytes, shared by the
//! recovery scan and the log tailer (`tail/segment_reader.rs`).

use std::ops::Range;
use std::path::Path;

use crate::error::WalError;
use crate::format::{self, FileKind, FRAME_HEADER_BYTES, HEADER_BYTES};

/// Where a segment stands in the log, which decides what a bad frame in it
/// can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SegmentEnd {
    /// The last segment: the writer may have died in the middle of a batch,
    /// so a bad frame can be a torn tail.
    Last,
    /// A segment the writer rolled past (synced before the next one began):
    /// a bad frame followed by anything but zeros is corruption.
    Closed,
}

/// What scanning one segment found.
#[derive(Clone, Debug)]
pub(crate) struct SegmentScan {
    pub first_lsn: u64,
    /// The format version its header names (its records are in it).
    pub version: u32,
    /// Payload ranges of the good records, in order.
    pub records: Vec<Range<usize>>,
    /// Bytes up to the end of the last good record.
    pub valid_len: u64,
    /// Bytes past `valid_len` judged a torn tail (0 unless `SegmentEnd::Last`).
    pub torn_bytes: u64,
    /// Zeros at the end: space the writer preallocated and never used.
    pub unused_bytes: u64,
}

/// What the first bad frame of a segment means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadFrame {
    /// Only zeros from here on: preallocated space, the segment's clean end.
    Unused,
    /// Never synced, so never acknowledged: recovery may cut it.
    TornTail,
    /// Good data after it proves the log went on past it.
    Corrupt,
}

/// Scans a whole segment: its header, then frames until the end or the
/// first bad frame, which [`judge_bad_frame`] classifies.
pub(crate) fn scan_segment(
    path: &Path,
    bytes: &[u8],
    end: SegmentEnd,
) -> Result<SegmentScan, WalError> {
    let header = format::decode_header(FileKind::Segment, path, bytes)?;
    let (first_lsn, version) = (header.lsn, header.version);
    let mut records = Vec::with_capacity(bytes.len() / 64);
    let mut offset = HEADER_BYTES;
    while offset < bytes.len() {
        match format::read_frame(bytes, offset) {
            Ok(range) => {
                offset = range.end;
                records.push(range);
            }
            Err(err) => {
                let rest = (bytes.len() - offset) as u64;
                let (torn_bytes, unused_bytes) = match judge_bad_frame(bytes, offset, end) {
                    BadFrame::Unused => (0, rest),
                    BadFrame::TornTail => (rest, 0),
                    BadFrame::Corrupt => {
                        return Err(WalError::corrupted(path, offset as u64, err.reason()))
                    }
                };
                return Ok(SegmentScan {
                    first_lsn,
                    version,
                    records,
                    valid_len: offset as u64,
                    torn_bytes,
                    unused_bytes,
                });
            }
        }
    }
    Ok(SegmentScan {
        first_lsn,
        version,
        records,
        valid_len: offset as u64,
        torn_bytes: 0,
        unused_bytes: 0,
    })
}

/// Zeros from a bad frame to the end are unused preallocated space: the
/// clean end of the segment. In the last segment a bad frame followed by no
/// good frame anywhere after it, or by zeros that show unsynced writes before
/// the next good frame (see `unsynced_gap`), is a torn tail: the writer never
/// got to sync it, so nobody was told it was durable. Any other bad frame is
/// corruption: good data after it proves the log went on past it. A
/// resynchronising search for a good frame (byte by byte, checking length
/// bound and checksum) decides which.
pub(crate) fn judge_bad_frame(bytes: &[u8], offset: usize, end: SegmentEnd) -> BadFrame {
    // Preallocated space is all zeros, and a frame never starts with a zero
    // length: what follows the last record there.
    let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    if used <= offset {
        return BadFrame::Unused;
    }
    match end {
        SegmentEnd::Closed => BadFrame::Corrupt,
        SegmentEnd::Last => {
            // A good frame starts with a non-zero length, so before `used`.
            let resumes = (offset + 1..used).find(|&o| format::read_frame(bytes, o).is_ok());
            let torn = match resumes {
                None => true,
                Some(good) => unsynced_gap(bytes, offset, good),
            };
            if torn {
                BadFrame::TornTail
            } else {
                BadFrame::Corrupt
            }
        }
    }
}

/// Whether the bad bytes at `offset`, before a good frame at `good`, show
/// writes that never reached the disk: zeros where the next frame's header
/// should be, or a whole zeroed 512-byte sector. Synced bytes never read
/// back as zeros (they read as written or fail their checksum), and a frame
/// holds no zeroed sector, so those bytes were never synced; a record is
/// acknowledged only once everything before it is synced, so nothing from
/// `offset` on was acknowledged. That is how a torn batch looks in a
/// preallocated file after power loss: the device stored some of its pages
/// and not others, over zeros rather than past the file's end.
fn unsynced_gap(bytes: &[u8], offset: usize, good: usize) -> bool {
    const SECTOR: usize = 512;
    let header_zero = bytes[offset..(offset + FRAME_HEADER_BYTES).min(good)]
        .iter()
        .all(|&b| b == 0);
    let first_sector = offset.div_ceil(SECTOR) * SECTOR;
    let zero_sector = (first_sector..good.saturating_sub(SECTOR - 1))
        .step_by(SECTOR)
        .any(|s| bytes[s..s + SECTOR].iter().all(|&b| b == 0));
    header_zero || zero_sector
}
