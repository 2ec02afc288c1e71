//! Applying a segment's records to an engine at recovery speed: a second
//! thread decodes (and restores idempotency records) while this one applies.

use std::path::Path;

use engine::Engine;
use rkyv::util::AlignedVec;

use crate::error::WalError;
use crate::format::{self, FRAME_HEADER_BYTES};

use super::segment::SegmentScan;

/// Records decoded per chunk handed from the decoding thread to the applier.
const DECODE_CHUNK_RECORDS: usize = 4096;
/// Chunks the decoder may run ahead of the applier (bounds memory).
const DECODE_CHUNKS_AHEAD: usize = 4;

/// A chunk of decoded records: (index in the segment, byte offset, event).
type DecodedChunk = Result<Vec<(usize, u64, engine::Event)>, WalError>;

/// Applies the records of segment `seg` from LSN `next` on to `engine`;
/// returns the next LSN after them and how many it applied. Records below
/// `next` were applied from an earlier segment or the snapshot.
pub(super) fn apply_records(
    engine: &Engine,
    path: &Path,
    seg: u64,
    bytes: &[u8],
    scan: &SegmentScan,
    mut next: u64,
) -> Result<(u64, u64), WalError> {
    let mut applied = 0u64;
    // Decoding (rkyv validation) and applying take similar time, so a
    // second thread decodes chunks of records (and restores their
    // idempotency records) while this one applies the rest: recovery
    // runs at the speed of the slower of the two.
    let (tx, rx) = std::sync::mpsc::sync_channel::<DecodedChunk>(DECODE_CHUNKS_AHEAD);
    let records = &scan.records;
    let bytes_ref = bytes;
    // Records below `next` were applied from an earlier segment or the
    // snapshot; the applier skips them, and so must the decoder.
    let next_at_start = next;
    let path_ref = path;
    let version = scan.version;
    std::thread::scope(|scope| -> Result<(), WalError> {
        scope.spawn(move || {
            let mut scratch = AlignedVec::<16>::new();
            for (c, chunk) in records.chunks(DECODE_CHUNK_RECORDS).enumerate() {
                let mut decoded = Vec::with_capacity(chunk.len());
                for (k, range) in chunk.iter().enumerate() {
                    let index = c * DECODE_CHUNK_RECORDS + k;
                    let offset = (range.start - FRAME_HEADER_BYTES) as u64;
                    match format::decode_payload(&bytes_ref[range.clone()], version, &mut scratch) {
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
                        segment: path.to_path_buf(),
                        offset,
                        source,
                    })?;
                next = lsn + 1;
                applied += 1;
            }
        }
        Ok(())
    })?;
    Ok((next, applied))
}
