//! The scanner's options on one directory: what each preset does with the
//! same torn tail.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{Engine, EngineConfig, SaleSpec};

use super::{list_dir, scan, Listed, Records, ScanOptions, Scanned};
use crate::{open_with_storage, SimStorage, Storage, WalConfig, WalError};

const RECORDS: u64 = 3;
/// A frame header claiming 64 bytes of payload, and only 2 of them: a record
/// the writer never finished, so never acknowledged.
const TORN: [u8; 10] = [64, 0, 0, 0, 1, 2, 3, 4, 5, 6];

/// A log of `RECORDS` sales in one segment, with `TORN` appended to it.
fn torn_log() -> (SimStorage, PathBuf, PathBuf) {
    let sim = SimStorage::new();
    let dir = PathBuf::from("/sim/scan");
    let mut config = WalConfig::new(&dir);
    config.snapshot_every_records = 0;
    let (engine, wal, _) = open_with_storage(
        config,
        EngineConfig::with_shards(1),
        Arc::new(sim.clone()) as Arc<dyn Storage>,
    )
    .unwrap();
    let mut sink = wal.sink();
    for k in 0..RECORDS {
        let spec = SaleSpec {
            sku: format!("sku-{k}"),
            stock: 5,
            per_user_limit: 1,
            starts_at_ms: None,
            ends_at_ms: None,
            reservation_ttl_ms: 10,
        };
        engine.create_sale(spec, 0, &mut sink).unwrap();
    }
    wal.shutdown().unwrap();
    let segment = dir.join(crate::format::segment_name(1));
    let mut bytes = sim.file_bytes(&segment).unwrap();
    bytes.extend_from_slice(&TORN);
    sim.set_file_bytes(&segment, bytes);
    (sim, dir, segment)
}

fn apply(sim: &SimStorage, dir: &Path, options: ScanOptions) -> Result<Scanned, WalError> {
    let engine = Engine::new(EngineConfig::with_shards(1));
    let listing = list_dir(sim, dir).unwrap();
    scan(sim, dir, &listing, options, Records::Apply(&engine))
}

#[test]
fn verify_reports_the_torn_tail_that_recover_cuts() {
    let (sim, dir, segment) = torn_log();
    let len = sim.file_bytes(&segment).unwrap().len();
    let valid = (len - TORN.len()) as u64;

    let verified = apply(&sim, &dir, ScanOptions::VERIFY).unwrap();
    assert_eq!(verified.torn_bytes, TORN.len() as u64);
    assert_eq!(verified.records, RECORDS);
    assert_eq!(verified.next_lsn, RECORDS + 1);
    assert_eq!(sim.file_bytes(&segment).unwrap().len(), len, "verify cut");

    let recovered = apply(&sim, &dir, ScanOptions::RECOVER).unwrap();
    assert_eq!(recovered.torn_bytes, TORN.len() as u64);
    assert_eq!(recovered.applied_records, RECORDS);
    let tail = recovered.tail.expect("the writer continues in the segment");
    assert_eq!((tail.first_lsn, tail.len), (1, valid));
    assert_eq!(sim.file_bytes(&segment).unwrap().len() as u64, valid);

    let again = apply(&sim, &dir, ScanOptions::VERIFY).unwrap();
    assert_eq!(again.torn_bytes, 0);
    assert_eq!(again.records, RECORDS);
}

#[test]
fn closed_segments_have_no_torn_tail() {
    let (sim, dir, segment) = torn_log();
    let valid = (sim.file_bytes(&segment).unwrap().len() - TORN.len()) as u64;
    match apply(&sim, &dir, ScanOptions::closed_before(RECORDS + 2)) {
        Err(WalError::Corrupted {
            segment: s, offset, ..
        }) => assert_eq!((s, offset), (segment.clone(), valid)),
        other => panic!("a torn closed segment must be corruption, got {other:?}"),
    }
    // Nothing was cut: the builder only reads.
    assert_eq!(
        sim.file_bytes(&segment).unwrap().len() as u64,
        valid + TORN.len() as u64
    );
}

#[test]
fn dump_lists_every_record_then_the_torn_tail() {
    let (sim, dir, segment) = torn_log();
    let valid = (sim.file_bytes(&segment).unwrap().len() - TORN.len()) as u64;
    let listing = list_dir(&sim, &dir).unwrap();
    let mut seen = Vec::new();
    let mut list = |listed: Listed<'_>| {
        seen.push(match listed {
            Listed::Record { lsn, .. } => format!("record {lsn:?}"),
            Listed::TornTail { offset, bytes, .. } => format!("torn {offset} {bytes}"),
        });
        Ok(())
    };
    let found = scan(
        &sim,
        &dir,
        &listing,
        ScanOptions::DUMP,
        Records::List(&mut list),
    )
    .unwrap();
    assert_eq!(
        seen,
        [
            "record Some(1)".to_string(),
            "record Some(2)".to_string(),
            "record Some(3)".to_string(),
            format!("torn {valid} {}", TORN.len()),
        ]
    );
    assert_eq!(found.applied_records, 0, "dump applies nothing");
    assert_eq!(sim.file_bytes(&segment).unwrap().len() as u64, valid + 10);
}
