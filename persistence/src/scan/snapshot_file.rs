//! Reading one snapshot file: header, frames, and a footer whose record
//! count must match. Streamed, since snapshots can be large. A snapshot is
//! written whole and renamed into place, so any bad byte in it is corruption.

use std::io::{BufReader, Read};
use std::path::Path;

use engine::Event;
use rkyv::util::AlignedVec;

use crate::error::WalError;
use crate::format::{
    self, FileKind, FOOTER_BYTES, FRAME_HEADER_BYTES, HEADER_BYTES, RECORD_BYTES_MAX,
};
use crate::storage::Storage;

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
