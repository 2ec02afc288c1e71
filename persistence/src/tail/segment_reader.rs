//! Following one segment: its frames in order, read in chunks from a byte
//! offset that moves forward, so a segment the writer is still appending to
//! can be read up to what is written now and again later from where the
//! last read stopped. Frames are checked by `format::read_frame` and what
//! follows the last good one is judged by the scanner's `judge_bad_frame`,
//! as recovery does: there is no second frame parser.

use std::io::ErrorKind;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::WalError;
use crate::format::{self, FileKind, FRAME_HEADER_BYTES, HEADER_BYTES, RECORD_BYTES_MAX};
use crate::scan::{judge_bad_frame, never_completed, BadFrame, SegmentEnd};
use crate::storage::Storage;

/// Bytes read per chunk: more than the largest frame, so a chunk that
/// starts at a frame holds all of it whenever the file does.
const READ_BYTES: u64 = 256 << 10;
const _: () = assert!(READ_BYTES > RECORD_BYTES_MAX as u64 + FRAME_HEADER_BYTES as u64);

/// What the reader found at its position.
#[derive(Debug)]
pub(super) enum ReadStep {
    /// A good frame at byte `offset`; `payload` indexes [`SegmentReader::bytes`].
    Frame { offset: u64, payload: Range<usize> },
    /// No good frame there now: see [`SegmentReader::judge_end`].
    End,
    /// The file is gone (a snapshot's clean-up deleted it).
    Gone,
}

/// What the bytes after the last good frame are.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum EndOfFrames {
    /// A frame arrived since the last read: read on.
    Retry,
    /// A closed segment ends here: continue in the next one.
    Finished,
    /// The last segment ends here for now: not written yet (zeros, no
    /// header yet, a write in progress), or a torn tail on a stopped log.
    Waiting,
    /// The file is gone.
    Gone,
}

/// Whether a segment's header could be read.
enum Header {
    Checked,
    NotYet,
    Gone,
}

/// Position in one segment.
pub(super) struct SegmentReader {
    path: PathBuf,
    first_lsn: u64,
    /// LSN of the frame at `buf_offset + pos`.
    next_lsn: u64,
    header_read: bool,
    /// The format version the header names (once read).
    version: u32,
    /// Bytes of the file from `buf_offset` on, as last read.
    buf: Vec<u8>,
    buf_offset: u64,
    pos: usize,
    /// `buf` was read after the last frame taken: a bad frame at `pos` is
    /// what the file holds now, not the end of a chunk.
    fresh: bool,
}

fn not_found(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound
}

impl SegmentReader {
    pub(super) fn new(dir: &Path, first_lsn: u64) -> SegmentReader {
        SegmentReader {
            path: dir.join(format::segment_name(first_lsn)),
            first_lsn,
            next_lsn: first_lsn,
            header_read: false,
            version: format::FORMAT_VERSION,
            buf: Vec::new(),
            buf_offset: HEADER_BYTES as u64,
            pos: 0,
            fresh: false,
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn first_lsn(&self) -> u64 {
        self.first_lsn
    }

    /// LSN of the next frame.
    pub(super) fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    pub(super) fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// The frame at the reader's position, which then moves past it.
    pub(super) fn next_frame(&mut self, storage: &dyn Storage) -> Result<ReadStep, WalError> {
        if !self.header_read {
            match self.read_header(storage)? {
                Header::Checked => {}
                Header::NotYet => return Ok(ReadStep::End),
                Header::Gone => return Ok(ReadStep::Gone),
            }
        }
        loop {
            match format::read_frame(&self.buf, self.pos) {
                Ok(payload) => {
                    let offset = self.buf_offset + self.pos as u64;
                    self.pos = payload.end;
                    self.next_lsn += 1;
                    self.fresh = false;
                    return Ok(ReadStep::Frame { offset, payload });
                }
                Err(_) if self.fresh => return Ok(ReadStep::End),
                Err(_) => {
                    if !self.refill(storage)? {
                        return Ok(ReadStep::Gone);
                    }
                }
            }
        }
    }

    /// Reads and checks the header, unless it is not there yet (the writer
    /// creates the file, then writes the header: short or zeros).
    fn read_header(&mut self, storage: &dyn Storage) -> Result<Header, WalError> {
        let bytes = match storage.read_range(&self.path, 0, HEADER_BYTES as u64) {
            Ok(bytes) => bytes,
            Err(e) if not_found(&e) => return Ok(Header::Gone),
            Err(e) => return Err(WalError::io(format!("reading {}", self.path.display()), e)),
        };
        if never_completed(&bytes) {
            return Ok(Header::NotYet);
        }
        self.version = self.check_header(&bytes)?;
        self.header_read = true;
        Ok(Header::Checked)
    }

    /// Checks the header; returns the format version it names.
    fn check_header(&self, bytes: &[u8]) -> Result<u32, WalError> {
        let header = format::decode_header(FileKind::Segment, &self.path, bytes)?;
        if header.lsn != self.first_lsn {
            return Err(WalError::corrupted(
                &self.path,
                0,
                "segment header LSN does not match file name",
            ));
        }
        Ok(header.version)
    }

    /// The format version of this segment's records; the header is read
    /// before any frame.
    pub(super) fn version(&self) -> u32 {
        self.version
    }

    /// Drops what was taken from `buf` and reads a chunk from the next
    /// frame on. Bytes after the last good frame are never kept: in a
    /// segment being written they may still change. False if the file is gone.
    fn refill(&mut self, storage: &dyn Storage) -> Result<bool, WalError> {
        self.buf_offset += self.pos as u64;
        self.pos = 0;
        self.fresh = true;
        match storage.read_range(&self.path, self.buf_offset, READ_BYTES) {
            Ok(bytes) => {
                self.buf = bytes;
                Ok(true)
            }
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(WalError::io(format!("reading {}", self.path.display()), e)),
        }
    }

    /// After `ReadStep::End`: what the bytes from the reader's position on are,
    /// given whether a later segment exists (`closed`: the writer synced
    /// this one before creating the next, so it is complete).
    ///
    /// In the last segment a zero frame header is unused preallocated space
    /// or a write not yet done, and is judged without reading further (the
    /// common case when caught up). Other bad bytes are judged as recovery
    /// judges them: a torn tail waits, corruption is an error. A consumer
    /// reads only records the log reports durable, so it never judges
    /// bytes of a write in progress as corrupt.
    pub(super) fn judge_end(
        &mut self,
        storage: &dyn Storage,
        closed: bool,
    ) -> Result<EndOfFrames, WalError> {
        // Whatever this finds, the next look reads the file again.
        self.fresh = false;
        if !self.header_read {
            return self.judge_header(storage, closed);
        }
        let header_zero = self.buf[self.pos..]
            .iter()
            .take(FRAME_HEADER_BYTES)
            .all(|&b| b == 0);
        if !closed && header_zero {
            return Ok(EndOfFrames::Waiting);
        }
        let offset = self.buf_offset + self.pos as u64;
        let rest = match storage.read_range(&self.path, offset, u64::MAX) {
            Ok(rest) => rest,
            Err(e) if not_found(&e) => return Ok(EndOfFrames::Gone),
            Err(e) => return Err(WalError::io(format!("reading {}", self.path.display()), e)),
        };
        let err = match format::read_frame(&rest, 0) {
            Ok(_) => {
                (self.buf, self.buf_offset, self.pos) = (rest, offset, 0);
                self.fresh = false;
                return Ok(EndOfFrames::Retry);
            }
            Err(err) => err,
        };
        let end = if closed {
            SegmentEnd::Closed
        } else {
            SegmentEnd::Last
        };
        match judge_bad_frame(&rest, 0, end) {
            BadFrame::Unused if closed => Ok(EndOfFrames::Finished),
            BadFrame::Unused | BadFrame::TornTail => Ok(EndOfFrames::Waiting),
            BadFrame::Corrupt => Err(WalError::corrupted(&self.path, offset, err.reason())),
        }
    }

    /// `judge_end` before the header was read: a closed segment must have
    /// one; the last may not have it yet.
    fn judge_header(
        &mut self,
        storage: &dyn Storage,
        closed: bool,
    ) -> Result<EndOfFrames, WalError> {
        match self.read_header(storage)? {
            Header::Checked => Ok(EndOfFrames::Retry),
            Header::Gone => Ok(EndOfFrames::Gone),
            Header::NotYet if !closed => Ok(EndOfFrames::Waiting),
            Header::NotYet => Err(WalError::corrupted(
                &self.path,
                0,
                "closed segment without a header",
            )),
        }
    }
}
