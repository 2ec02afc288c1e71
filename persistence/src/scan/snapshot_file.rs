//! Reading one snapshot file: header, frames, and a footer whose record
//! count must match. Streamed, since snapshots can be large. A snapshot is
//! written whole and renamed into place, so any bad byte in it is corruption.
//!
//! [`SnapshotReader`] hands out one event at a time (the log tailer reads a
//! snapshot in batches); [`read_snapshot`] runs it to the end.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

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
    let mut reader = SnapshotReader::open(storage, path)?;
    while let Some((offset, event)) = reader.next_event()? {
        f(offset, event)?;
    }
    Ok((reader.covered(), reader.records()))
}

/// A snapshot opened for reading, positioned after the events handed out.
pub(crate) struct SnapshotReader {
    path: PathBuf,
    reader: BufReader<Box<dyn Read + Send>>,
    covered: u64,
    /// Offset of the next frame; the footer starts at `end`.
    offset: u64,
    end: u64,
    count: u64,
    /// Set once the footer is checked.
    finished: bool,
    /// The format version of its records, from its header.
    version: u32,
    payload: Vec<u8>,
    scratch: AlignedVec<16>,
}

impl SnapshotReader {
    /// Opens `path` and checks its header.
    pub(crate) fn open(storage: &dyn Storage, path: &Path) -> Result<SnapshotReader, WalError> {
        let (reader, len) = storage
            .open_read(path)
            .map_err(|e| WalError::io(format!("opening {}", path.display()), e))?;
        let mut reader = BufReader::with_capacity(1 << 20, reader);
        if len < (HEADER_BYTES + FOOTER_BYTES) as u64 {
            return Err(WalError::corrupted(
                path,
                0,
                "snapshot shorter than header and footer",
            ));
        }
        let mut header = [0u8; HEADER_BYTES];
        reader
            .read_exact(&mut header)
            .map_err(|e| WalError::io(format!("reading {}", path.display()), e))?;
        let header = format::decode_header(FileKind::Snapshot, path, &header)?;
        let covered = header.lsn;
        Ok(SnapshotReader {
            path: path.to_path_buf(),
            reader,
            covered,
            offset: HEADER_BYTES as u64,
            end: len - FOOTER_BYTES as u64,
            count: 0,
            finished: false,
            version: header.version,
            payload: Vec::new(),
            scratch: AlignedVec::new(),
        })
    }

    /// The first LSN the snapshot does not cover (from its header).
    pub(crate) fn covered(&self) -> u64 {
        self.covered
    }

    /// Whether every event has been handed out (the footer may still be
    /// unchecked: the next `next_event` checks it and returns `None`).
    pub(crate) fn at_end(&self) -> bool {
        self.offset >= self.end
    }

    /// Events handed out so far.
    pub(crate) fn records(&self) -> u64 {
        self.count
    }

    fn io_err(&self, e: std::io::Error) -> WalError {
        WalError::io(format!("reading {}", self.path.display()), e)
    }

    /// The next event and its offset; `None` after the last one, once the
    /// footer has been checked against the count.
    pub(crate) fn next_event(&mut self) -> Result<Option<(u64, Event)>, WalError> {
        if self.finished {
            return Ok(None);
        }
        if self.offset >= self.end {
            self.finish()?;
            return Ok(None);
        }
        let (path, offset) = (&self.path, self.offset);
        let mut fh = [0u8; FRAME_HEADER_BYTES];
        if offset + FRAME_HEADER_BYTES as u64 > self.end {
            return Err(WalError::corrupted(
                path,
                offset,
                "record runs into the footer",
            ));
        }
        self.reader
            .read_exact(&mut fh)
            .map_err(|e| self.io_err(e))?;
        let flen = u32::from_le_bytes(fh[0..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(fh[4..8].try_into().expect("4 bytes"));
        if flen == 0 || flen > RECORD_BYTES_MAX {
            return Err(WalError::corrupted(
                &self.path,
                offset,
                format!("impossible record length {flen}"),
            ));
        }
        if offset + (FRAME_HEADER_BYTES as u64) + u64::from(flen) > self.end {
            return Err(WalError::corrupted(
                &self.path,
                offset,
                "record runs into the footer",
            ));
        }
        self.payload.resize(flen as usize, 0);
        let read = self.reader.read_exact(&mut self.payload);
        read.map_err(|e| self.io_err(e))?;
        if format::frame_crc(flen, &self.payload) != crc {
            return Err(WalError::corrupted(
                &self.path,
                offset,
                "record checksum mismatch",
            ));
        }
        let event = format::decode_payload(&self.payload, self.version, &mut self.scratch)
            .map_err(|r| WalError::corrupted(&self.path, offset, r))?;
        self.count += 1;
        self.offset += FRAME_HEADER_BYTES as u64 + u64::from(flen);
        Ok(Some((offset, event)))
    }

    /// Checks the footer's record count against the records read.
    fn finish(&mut self) -> Result<(), WalError> {
        let mut footer = [0u8; FOOTER_BYTES];
        self.reader
            .read_exact(&mut footer)
            .map_err(|e| self.io_err(e))?;
        let promised = format::decode_footer(&self.path, self.end, &footer)?;
        if promised != self.count {
            return Err(WalError::corrupted(
                &self.path,
                self.end,
                format!(
                    "snapshot footer promises {promised} records, file holds {}",
                    self.count
                ),
            ));
        }
        self.finished = true;
        Ok(())
    }
}
