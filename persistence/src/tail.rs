//! The log tailer: how a consumer (the PostgreSQL export, later a
//! replication stream) reads the log's events in order, while the log is
//! being written or on a stopped server's directory.
//!
//! A [`LogTailer`] starts after the LSN the consumer has already taken
//! (its persisted cursor) and hands out [`TailBatch`]es of `(lsn, event)`
//! in LSN order, without holes or repeats, each bounded by a record count
//! and by an upper LSN the caller gives: in a running server the durable
//! LSN ([`crate::Wal::durable_lsn`]), since a record written but not synced
//! may be lost on power failure and its LSN reused by another event; on a
//! stopped directory `u64::MAX`.
//!
//! When the segments after the cursor are gone (deleted by a snapshot while
//! no retention hold kept them), the tailer starts from the newest snapshot:
//! its events rebuild the whole state as of LSN `covered - 1`, and they come
//! in batches of their own (`TailBatch::snapshot`), all with that LSN. A
//! consumer must apply them as "the state as of `covered - 1`" (upserts),
//! and must persist [`TailBatch::cursor`], not the records' LSN: until the
//! last batch of a snapshot the cursor stays where it was, so a consumer
//! that stops in the middle reads the snapshot again from its start.
//!
//! Blocking reads through [`Storage`]; from async code run it on
//! `spawn_blocking` or a thread of its own. After an error the next call
//! starts again from the last cursor returned. DESIGN.md, "Consumers".

mod segment_reader;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::Event;
use rkyv::util::AlignedVec;

use crate::error::WalError;
use crate::format;
use crate::scan::{self, SnapshotReader};
use crate::storage::{FsStorage, Storage};

use self::segment_reader::{EndOfFrames, ReadStep, SegmentReader};

/// How often one call re-locates after the file it read was deleted under
/// it, before it gives up (each deletion is a snapshot's clean-up).
const RELOCATIONS_MAX: u32 = 8;

/// What one [`LogTailer::next_batch`] call hands out.
#[derive(Debug, Default)]
pub struct TailBatch {
    /// In LSN order. Empty when nothing new is readable within the bound.
    pub records: Vec<(u64, Event)>,
    /// What the consumer persists, atomically with what it made of this
    /// batch, and passes as `after` when it opens a tailer again (and to
    /// `RetentionHold::advance` once committed). Equal to the last
    /// record's LSN, except in a snapshot's batches before its last.
    pub cursor: u64,
    /// `Some(covered)` when the records come from the snapshot that covers
    /// every LSN before `covered`: each carries LSN `covered - 1` and they
    /// together are the state as of that LSN. A batch never mixes snapshot
    /// and segment records.
    pub snapshot: Option<u64>,
}

/// Where the tailer reads next.
enum Source {
    /// Not placed: list the directory and find the file holding `cursor + 1`.
    Unplaced,
    Segment(SegmentReader),
    Snapshot(SnapshotReader),
}

/// Reads a log directory's events in LSN order from a cursor on. See the
/// module docs.
pub struct LogTailer {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    /// Every LSN up to this one is handed out (after the batch that ends
    /// a snapshot: `covered - 1`).
    cursor: u64,
    source: Source,
    scratch: AlignedVec<16>,
}

impl LogTailer {
    /// A tailer on the log in `dir` (real files), after LSN `after` (the
    /// consumer's cursor; 0 = from the beginning). Reads nothing yet.
    pub fn open(dir: impl Into<PathBuf>, after: u64) -> LogTailer {
        LogTailer::open_with_storage(Arc::new(FsStorage), dir, after)
    }

    /// [`LogTailer::open`] on another [`Storage`].
    pub fn open_with_storage(
        storage: Arc<dyn Storage>,
        dir: impl Into<PathBuf>,
        after: u64,
    ) -> LogTailer {
        LogTailer {
            storage,
            dir: dir.into(),
            cursor: after,
            source: Source::Unplaced,
            scratch: AlignedVec::new(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cursor after the last batch handed out (`after` before any).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// The next batch: at most `max_records` records, none with an LSN
    /// above `up_to` (a snapshot's batches wait until `covered - 1 <=
    /// up_to`). Empty when the consumer is caught up with what is written
    /// and durable. Errors: `Gap` when the next LSN is in no segment and no
    /// snapshot, `CursorAhead` when the log ends before the cursor,
    /// `Corrupted` for damage, `Io`. Good segment records read before an
    /// error come out first; the next call then reports it. After an error
    /// the next call starts again from [`LogTailer::cursor`].
    pub fn next_batch(&mut self, max_records: usize, up_to: u64) -> Result<TailBatch, WalError> {
        let before = self.cursor;
        let mut batch = TailBatch {
            records: Vec::new(),
            cursor: before,
            snapshot: None,
        };
        if max_records == 0 {
            return Ok(batch);
        }
        match self.fill(&mut batch, max_records, up_to) {
            Ok(()) => {
                batch.cursor = self.cursor;
                Ok(batch)
            }
            Err(_) if batch.snapshot.is_none() && !batch.records.is_empty() => {
                // Hand out the good records before the damage; the next
                // call starts again after them and meets the error itself.
                self.source = Source::Unplaced;
                batch.cursor = self.cursor;
                Ok(batch)
            }
            Err(e) => {
                // A snapshot's records taken into the lost batch come again.
                self.cursor = before;
                self.source = Source::Unplaced;
                Err(e)
            }
        }
    }

    fn fill(&mut self, batch: &mut TailBatch, max: usize, up_to: u64) -> Result<(), WalError> {
        let mut relocations = 0;
        while batch.records.len() < max {
            let progress = match &mut self.source {
                Source::Unplaced => self.place()?,
                Source::Snapshot(_) if !batch.records.is_empty() && batch.snapshot.is_none() => {
                    return Ok(()); // never mixed with segment records
                }
                Source::Snapshot(_) => self.read_snapshot_events(batch, max, up_to)?,
                Source::Segment(_) if batch.snapshot.is_some() => return Ok(()),
                Source::Segment(_) => self.read_segment_records(batch, max, up_to)?,
            };
            match progress {
                Progress::More => {}
                Progress::Wait => return Ok(()),
                Progress::Relocate => {
                    relocations += 1;
                    if relocations > RELOCATIONS_MAX {
                        return Err(WalError::io(
                            format!("tailing {}", self.dir.display()),
                            std::io::Error::other("log files keep disappearing under the tailer"),
                        ));
                    }
                    self.source = Source::Unplaced;
                }
            }
        }
        Ok(())
    }

    /// Finds the file holding `cursor + 1`: the last segment that starts at
    /// or before it; else the newest snapshot, if it covers it; else a gap
    /// (or, in a directory without segments, nothing yet).
    fn place(&mut self) -> Result<Progress, WalError> {
        let storage = &*self.storage;
        let listing = scan::list_dir(storage, &self.dir)?;
        let want = self.cursor + 1;
        if let Some(&seg) = listing.segments.iter().rev().find(|&&s| s <= want) {
            self.source = Source::Segment(SegmentReader::new(&self.dir, seg));
            return Ok(Progress::More);
        }
        let oldest = listing.segments.first().copied();
        match listing.snapshots.last() {
            Some(&covered) if covered > want => {
                let path = self.dir.join(format::snapshot_name(covered));
                let reader = match SnapshotReader::open(storage, &path) {
                    Err(WalError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        return Ok(Progress::Relocate)
                    }
                    other => other?,
                };
                if reader.covered() != covered {
                    return Err(WalError::corrupted(
                        &path,
                        0,
                        "snapshot header LSN does not match file name",
                    ));
                }
                self.source = Source::Snapshot(reader);
                Ok(Progress::More)
            }
            Some(_) | None if oldest.is_none() => Ok(Progress::Wait),
            Some(_) | None => Err(WalError::gap(&self.dir, want, oldest)),
        }
    }

    /// Snapshot events, all at LSN `covered - 1`; the cursor moves there
    /// only with the last of them.
    fn read_snapshot_events(
        &mut self,
        batch: &mut TailBatch,
        max: usize,
        up_to: u64,
    ) -> Result<Progress, WalError> {
        let Source::Snapshot(reader) = &mut self.source else {
            unreachable!("called on a snapshot source");
        };
        let lsn = reader.covered() - 1;
        if lsn > up_to {
            return Ok(Progress::Wait);
        }
        batch.snapshot = Some(reader.covered());
        while batch.records.len() < max && !reader.at_end() {
            let (_, event) = reader.next_event()?.expect("an event before the end");
            batch.records.push((lsn, event));
        }
        if !reader.at_end() {
            return Ok(Progress::Wait);
        }
        // Checks the footer. The batch that ends the snapshot moves the
        // cursor, so a consumer that stops before it reads it all again.
        let none = reader.next_event()?;
        debug_assert!(none.is_none());
        self.cursor = lsn;
        self.source = Source::Unplaced;
        if batch.records.is_empty() {
            // An empty engine's snapshot: nothing to hand out; go on with
            // the segments in this batch.
            batch.snapshot = None;
            return Ok(Progress::More);
        }
        Ok(Progress::Wait)
    }

    /// Segment records up to `up_to`, skipping those up to the cursor.
    fn read_segment_records(
        &mut self,
        batch: &mut TailBatch,
        max: usize,
        up_to: u64,
    ) -> Result<Progress, WalError> {
        let Source::Segment(reader) = &mut self.source else {
            unreachable!("called on a segment source");
        };
        while batch.records.len() < max {
            let lsn = reader.next_lsn();
            let skipping = lsn <= self.cursor;
            if !skipping && lsn > up_to {
                return Ok(Progress::Wait);
            }
            match reader.next_frame(&*self.storage)? {
                ReadStep::Frame { .. } if skipping => {}
                ReadStep::Frame { offset, payload } => {
                    let version = reader.version();
                    let event =
                        format::decode_payload(reader.bytes(payload), version, &mut self.scratch)
                            .map_err(|r| WalError::corrupted(reader.path(), offset, r))?;
                    batch.records.push((lsn, event));
                    self.cursor = lsn;
                }
                ReadStep::End => return self.end_of_frames(),
                ReadStep::Gone => return Ok(Progress::Relocate),
            }
        }
        Ok(Progress::Wait)
    }

    /// The current segment has no good frame at its position: read on, move
    /// to the next segment, or wait.
    fn end_of_frames(&mut self) -> Result<Progress, WalError> {
        let Source::Segment(reader) = &mut self.source else {
            unreachable!("called on a segment source");
        };
        let listing = scan::list_dir(&*self.storage, &self.dir)?;
        let following = listing
            .segments
            .iter()
            .copied()
            .find(|&s| s > reader.first_lsn());
        let next = reader.next_lsn();
        match reader.judge_end(&*self.storage, following.is_some())? {
            EndOfFrames::Retry => Ok(Progress::More),
            EndOfFrames::Gone => Ok(Progress::Relocate),
            EndOfFrames::Waiting if next <= self.cursor => Err(WalError::CursorAhead {
                dir: self.dir.clone(),
                after: self.cursor,
                end: next - 1,
            }),
            EndOfFrames::Waiting => Ok(Progress::Wait),
            EndOfFrames::Finished => {
                let following = following.expect("a closed segment has a following one");
                if following != next {
                    let path = self.dir.join(format::segment_name(following));
                    return Err(WalError::corrupted(
                        &path,
                        0,
                        format!(
                            "segment starts at LSN {following}, the one before ends at {}",
                            next - 1
                        ),
                    ));
                }
                self.source = Source::Segment(SegmentReader::new(&self.dir, following));
                Ok(Progress::More)
            }
        }
    }
}

/// What one step of filling a batch came to.
enum Progress {
    /// Read on.
    More,
    /// The batch is done: full, at the bound, caught up, or at the end of
    /// a snapshot.
    Wait,
    /// The file being read is gone: find the cursor's file again.
    Relocate,
}
