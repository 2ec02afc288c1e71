//! The bytes on disk: segment and snapshot headers, record frames and file
//! names. Pure functions on byte slices, so the tests can cut and flip bytes
//! at will. The constants live in `layout.rs`; what a bad frame means is
//! decided by the scanner (`scan/segment.rs`). Layout in DESIGN.md.

use std::cell::RefCell;
use std::path::Path;

use engine::Event;
use rkyv::rancor;
use rkyv::util::AlignedVec;

use crate::error::WalError;

pub use crate::layout::{
    FOOTER_BYTES, FORMAT_VERSION, FORMAT_VERSION_V1, FRAME_HEADER_BYTES, HEADER_BYTES,
    RECORD_BYTES_MAX, SEGMENT_MAGIC, SNAPSHOT_END_MAGIC, SNAPSHOT_MAGIC,
};

/// CRC of a frame: covers the length field too, so a damaged length is caught
/// whenever the frame it claims fits in the file.
pub fn frame_crc(len: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len.to_le_bytes()), payload)
}

thread_local! {
    /// Per-thread serialization scratch: `emit` allocates only the frame itself.
    static SCRATCH: RefCell<AlignedVec<16>> = RefCell::new(AlignedVec::new());
}

/// Serializes `event` and appends its frame to `out`.
pub fn encode_frame_into(event: &Event, out: &mut Vec<u8>) {
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let mut buf = std::mem::take(&mut *scratch);
        buf.clear();
        let buf = rkyv::api::high::to_bytes_in::<_, rancor::Error>(event, buf)
            .expect("serializing an event into memory cannot fail");
        let len = u32::try_from(buf.len()).expect("event fits u32");
        assert!(len > 0 && len <= RECORD_BYTES_MAX, "event of {len} bytes");
        out.reserve(FRAME_HEADER_BYTES + buf.len());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&frame_crc(len, &buf).to_le_bytes());
        out.extend_from_slice(&buf);
        *scratch = buf;
    })
}

/// One event's frame, as the producers hand it to the writer.
pub fn encode_frame(event: &Event) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame_into(event, &mut out);
    out
}

/// Decodes (and validates) one payload of a file of format `version` (as
/// its header said: [`decode_header`] lets only readable ones through).
/// `scratch` gives the alignment rkyv needs.
pub fn decode_payload(
    payload: &[u8],
    version: u32,
    scratch: &mut AlignedVec<16>,
) -> Result<Event, String> {
    scratch.clear();
    scratch.extend_from_slice(payload);
    match version {
        FORMAT_VERSION => rkyv::from_bytes::<Event, rancor::Error>(scratch)
            .map_err(|e| format!("undecodable record: {e}")),
        FORMAT_VERSION_V1 => crate::legacy::decode_v1(scratch),
        other => Err(format!("no decoder for format version {other}")),
    }
}

/// What a segment or snapshot header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// Segment: its first record's LSN; snapshot: the first LSN it does not cover.
    pub lsn: u64,
    /// The format its records are in: [`FORMAT_VERSION`] or an older one
    /// this build reads.
    pub version: u32,
}

/// Kind of file a header starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Segment,
    Snapshot,
}

/// A segment header (`lsn` = first record's LSN) or snapshot header (`lsn` =
/// first LSN it does not cover).
pub fn encode_header(kind: FileKind, lsn: u64) -> [u8; HEADER_BYTES] {
    let mut h = [0u8; HEADER_BYTES];
    h[0..8].copy_from_slice(match kind {
        FileKind::Segment => &SEGMENT_MAGIC,
        FileKind::Snapshot => &SNAPSHOT_MAGIC,
    });
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    // 12..16 flags, 24..28 reserved: zero in version 1.
    h[16..24].copy_from_slice(&lsn.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a header and returns its LSN and format version.
pub fn decode_header(kind: FileKind, path: &Path, bytes: &[u8]) -> Result<FileHeader, WalError> {
    if bytes.len() < HEADER_BYTES {
        return Err(WalError::corrupted(path, 0, "file shorter than its header"));
    }
    let magic = match kind {
        FileKind::Segment => SEGMENT_MAGIC,
        FileKind::Snapshot => SNAPSHOT_MAGIC,
    };
    if bytes[0..8] != magic {
        return Err(WalError::corrupted(path, 0, "bad magic number"));
    }
    let crc = u32::from_le_bytes(bytes[28..32].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..28]) != crc {
        return Err(WalError::corrupted(path, 0, "header checksum mismatch"));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION && version != FORMAT_VERSION_V1 {
        return Err(WalError::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    let lsn = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    Ok(FileHeader { lsn, version })
}

/// A header of format `version`: for tests that write old logs.
pub fn encode_header_of_version(kind: FileKind, lsn: u64, version: u32) -> [u8; HEADER_BYTES] {
    let mut h = encode_header(kind, lsn);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

pub fn encode_footer(records: u64) -> [u8; FOOTER_BYTES] {
    let mut f = [0u8; FOOTER_BYTES];
    f[0..8].copy_from_slice(&SNAPSHOT_END_MAGIC);
    f[8..16].copy_from_slice(&records.to_le_bytes());
    let crc = crc32c::crc32c(&f[..20]);
    f[20..24].copy_from_slice(&crc.to_le_bytes());
    f
}

/// Checks a snapshot footer and returns the record count it promises.
pub fn decode_footer(path: &Path, offset: u64, bytes: &[u8]) -> Result<u64, WalError> {
    if bytes.len() != FOOTER_BYTES || bytes[0..8] != SNAPSHOT_END_MAGIC {
        return Err(WalError::corrupted(
            path,
            offset,
            "snapshot footer missing or damaged",
        ));
    }
    let crc = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[..20]) != crc {
        return Err(WalError::corrupted(
            path,
            offset,
            "snapshot footer checksum mismatch",
        ));
    }
    Ok(u64::from_le_bytes(
        bytes[8..16].try_into().expect("8 bytes"),
    ))
}

/// Why the frame at some offset is not a good record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The frame (header or payload) runs past the end of the bytes.
    Truncated,
    /// Length zero or above `RECORD_BYTES_MAX`.
    BadLength(u32),
    Checksum,
}

impl FrameError {
    pub fn reason(&self) -> String {
        match self {
            FrameError::Truncated => "record runs past the end of the file".into(),
            FrameError::BadLength(len) => format!("impossible record length {len}"),
            FrameError::Checksum => "record checksum mismatch".into(),
        }
    }
}

/// Reads the frame at `offset`: its payload range on success.
pub fn read_frame(bytes: &[u8], offset: usize) -> Result<std::ops::Range<usize>, FrameError> {
    let Some(header) = bytes.get(offset..offset + FRAME_HEADER_BYTES) else {
        return Err(FrameError::Truncated);
    };
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len == 0 || len > RECORD_BYTES_MAX {
        return Err(FrameError::BadLength(len));
    }
    let start = offset + FRAME_HEADER_BYTES;
    let end = start + len as usize;
    let Some(payload) = bytes.get(start..end) else {
        return Err(FrameError::Truncated);
    };
    if frame_crc(len, payload) != crc {
        return Err(FrameError::Checksum);
    }
    Ok(start..end)
}

/// `wal-<first LSN, 20 digits>.log`: names sort in LSN order.
pub fn segment_name(first_lsn: u64) -> String {
    format!("wal-{first_lsn:020}.log")
}

/// `snapshot-<first uncovered LSN, 20 digits>.snap`.
pub fn snapshot_name(covered_lsn: u64) -> String {
    format!("snapshot-{covered_lsn:020}.snap")
}

pub fn snapshot_tmp_name(covered_lsn: u64) -> String {
    format!("snapshot-{covered_lsn:020}.tmp")
}

/// A file of the log directory, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogFile {
    Segment(u64),
    Snapshot(u64),
    Temp,
}

pub fn parse_name(name: &str) -> Option<LogFile> {
    fn lsn(digits: &str) -> Option<u64> {
        (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    }
    if let Some(rest) = name
        .strip_prefix("wal-")
        .and_then(|r| r.strip_suffix(".log"))
    {
        return lsn(rest).map(LogFile::Segment);
    }
    if let Some(rest) = name.strip_prefix("snapshot-") {
        if let Some(d) = rest.strip_suffix(".snap") {
            return lsn(d).map(LogFile::Snapshot);
        }
        if rest.strip_suffix(".tmp").and_then(lsn).is_some() {
            return Some(LogFile::Temp);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Event> {
        vec![
            Event::SaleCreated {
                ordinal: 3,
                sku: "sku-1".into(),
                stock: 1 << 40,
                per_user_limit: 2,
                starts_at_ms: Some(5),
                ends_at_ms: None,
                reservation_ttl_ms: 60_000,
            },
            Event::StockAdded { ordinal: 1, add: 7 },
            Event::Paused { ordinal: 1 },
            Event::Resumed { ordinal: 1 },
            Event::Ended { ordinal: 2 },
            Event::Admitted {
                order_id: u64::MAX,
                user_id: "42-é".into(),
                qty: 3,
                request_id: Some(9),
                created_at_ms: 1,
                expires_at_ms: 2,
            },
            Event::Paid {
                order_id: 1,
                at_ms: 2,
                retaken: true,
            },
            Event::Cancelled {
                order_id: 1,
                at_ms: 3,
            },
            Event::Expired {
                order_id: 1,
                at_ms: 4,
            },
        ]
    }

    #[test]
    fn frame_round_trip() {
        let mut bytes = Vec::new();
        let events = all_kinds();
        for e in &events {
            encode_frame_into(e, &mut bytes);
        }
        let mut scratch = AlignedVec::new();
        let mut offset = 0;
        for e in &events {
            let range = read_frame(&bytes, offset).unwrap();
            assert_eq!(
                &decode_payload(&bytes[range.clone()], FORMAT_VERSION, &mut scratch).unwrap(),
                e
            );
            offset = range.end;
        }
        assert_eq!(offset, bytes.len());
        assert_eq!(read_frame(&bytes, offset), Err(FrameError::Truncated));
    }

    /// A version-1 record (a numeric user id) decodes into today's event
    /// with the id as its decimal string. Read as version 2 the same bytes
    /// may even pass validation as some other event: only the header's
    /// version tells the two apart, which is why it was bumped.
    #[test]
    fn version_1_records_convert() {
        use crate::legacy::{encode_v1_payload, EventV1};
        let old = EventV1::Admitted {
            order_id: 5,
            user_id: 18_446_744_073_709_551_615,
            qty: 2,
            request_id: Some(9),
            created_at_ms: 1,
            expires_at_ms: 2,
        };
        let payload = encode_v1_payload(&old);
        let mut scratch = AlignedVec::new();
        let got = decode_payload(&payload, FORMAT_VERSION_V1, &mut scratch).unwrap();
        assert_eq!(
            got,
            Event::Admitted {
                order_id: 5,
                user_id: "18446744073709551615".into(),
                qty: 2,
                request_id: Some(9),
                created_at_ms: 1,
                expires_at_ms: 2,
            }
        );
        assert_ne!(
            decode_payload(&payload, FORMAT_VERSION, &mut scratch).ok(),
            Some(got)
        );
        let paused = encode_v1_payload(&EventV1::Paused { ordinal: 3 });
        assert_eq!(
            decode_payload(&paused, FORMAT_VERSION_V1, &mut scratch).unwrap(),
            Event::Paused { ordinal: 3 }
        );
    }

    #[test]
    fn frame_checks() {
        let mut bytes = encode_frame(&Event::Paused { ordinal: 1 });
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(read_frame(&bytes, 0), Err(FrameError::Checksum));
        assert_eq!(read_frame(&[0; 16], 0), Err(FrameError::BadLength(0)));
        // A damaged length that still fits is caught by the checksum.
        let mut bytes = encode_frame(&Event::Paused { ordinal: 1 });
        bytes.extend_from_slice(&[0; 8]);
        bytes[0] += 1;
        assert_eq!(read_frame(&bytes, 0), Err(FrameError::Checksum));
    }

    #[test]
    fn headers_and_names() {
        let p = Path::new("x");
        let h = encode_header(FileKind::Segment, 77);
        let want = FileHeader {
            lsn: 77,
            version: FORMAT_VERSION,
        };
        assert_eq!(decode_header(FileKind::Segment, p, &h).unwrap(), want);
        assert!(decode_header(FileKind::Snapshot, p, &h).is_err());
        let old = encode_header_of_version(FileKind::Segment, 77, FORMAT_VERSION_V1);
        assert_eq!(
            decode_header(FileKind::Segment, p, &old).unwrap().version,
            FORMAT_VERSION_V1
        );
        let bad = encode_header_of_version(FileKind::Segment, 77, 3);
        let err = decode_header(FileKind::Segment, p, &bad).unwrap_err();
        assert!(matches!(
            err,
            WalError::UnsupportedVersion { version: 3, .. }
        ));
        assert!(
            err.to_string().contains("format version 3"),
            "the refusal names the version: {err}"
        );
        let f = encode_footer(12);
        assert_eq!(decode_footer(p, 0, &f).unwrap(), 12);
        assert_eq!(parse_name(&segment_name(5)), Some(LogFile::Segment(5)));
        assert_eq!(parse_name(&snapshot_name(6)), Some(LogFile::Snapshot(6)));
        assert_eq!(parse_name(&snapshot_tmp_name(6)), Some(LogFile::Temp));
        assert_eq!(parse_name("wal-1.log"), None);
        assert_eq!(parse_name("notes.txt"), None);
    }

    #[test]
    fn fsync_mode_parses() {
        use crate::FsyncMode;
        for m in [FsyncMode::Always, FsyncMode::Interval, FsyncMode::Never] {
            assert_eq!(m.to_string().parse::<FsyncMode>().unwrap(), m);
        }
        assert!("sometimes".parse::<FsyncMode>().is_err());
    }
}
