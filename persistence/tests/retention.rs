//! Retention holds and disk accounting through the public API: a snapshot
//! deletes only segments every hold has passed; advancing or dropping a
//! hold lets the next snapshot delete more; several holds take the
//! minimum; a hold taken again after a restart is honoured;
//! `retained_bytes` matches the segment files on disk.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use engine::Engine;
use persistence::format::{self, LogFile};
use persistence::{open, LogTailer, SimStorage, Storage, Wal, WalConfig};

const EVERY: u64 = 60;

fn config_with_snapshots(dir: &Path) -> WalConfig {
    let mut c = config(dir);
    c.segment_bytes = 700;
    c.snapshot_every_records = EVERY;
    c
}

/// First LSNs of the segments on disk, sorted.
fn segments(storage: &dyn Storage, dir: &Path) -> Vec<u64> {
    let mut segs: Vec<u64> = storage
        .list(dir)
        .unwrap()
        .iter()
        .filter_map(|n| match format::parse_name(n) {
            Some(LogFile::Segment(s)) => Some(s),
            _ => None,
        })
        .collect();
    segs.sort_unstable();
    segs
}

/// Logs `EVERY` sale creations, which makes the writer ask for one
/// snapshot, and waits until it is written (and its clean-up done). One
/// snapshot per call: nothing is written while it runs.
fn snapshot(engine: &Engine, wal: &Wal, tag: &str) {
    let before = wal.stats().snapshots;
    for k in 0..EVERY {
        let mut sink = wal.sink();
        let spec = engine::SaleSpec {
            sku: format!("{tag}-{k}"),
            stock: 3,
            per_user_limit: 1,
            starts_at_ms: None,
            ends_at_ms: None,
            reservation_ttl_ms: 10,
        };
        engine.create_sale(spec, 0, &mut sink).unwrap();
        wal.wait_durable(sink.ticket().unwrap()).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while wal.stats().snapshots == before {
        assert!(Instant::now() < deadline, "no snapshot: {:?}", wal.stats());
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The segment holding `lsn + 1` (the first record a hold at `lsn` still
/// needs) is on disk, and so is everything after it: the oldest segment
/// starts at or before it.
fn keeps_after(storage: &dyn Storage, dir: &Path, lsn: u64) {
    let segs = segments(storage, dir);
    assert!(
        segs[0] <= lsn + 1,
        "segments {segs:?} lost records after {lsn}"
    );
}

#[test]
fn a_hold_keeps_what_it_has_not_passed_and_advancing_releases_it() {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let (engine, wal, _) = open_sim(&sim, config_with_snapshots(&dir));
    let hold = wal.hold("export", 0);
    snapshot(&engine, &wal, "a");
    keeps_after(&sim, &dir, 0);
    assert_eq!(segments(&sim, &dir)[0], 1);
    // The consumer reads everything from the segments, no snapshot needed.
    let mut tailer = LogTailer::open_with_storage(Arc::new(sim.clone()), &dir, 0);
    let batch = tailer.next_batch(10_000, wal.durable_lsn()).unwrap();
    assert_eq!(batch.snapshot, None);
    assert_eq!(batch.records[0].0, 1);

    let taken = wal.durable_lsn() / 2;
    hold.advance(taken);
    assert_eq!(hold.lsn(), taken);
    snapshot(&engine, &wal, "b");
    keeps_after(&sim, &dir, taken);
    let segs = segments(&sim, &dir);
    assert!(segs[0] > 1, "advancing let the snapshot delete: {segs:?}");
    // Only segments wholly at or below the hold went: the oldest kept one
    // holds `taken + 1`, so the one after it starts later.
    assert!(segs.get(1).is_none_or(|&s| s > taken + 1), "{segs:?}");
    hold.advance(1); // never backwards
    assert_eq!(hold.lsn(), taken);
    assert_eq!(wal.retention_holds(), vec![("export".to_string(), taken)]);
    wal.shutdown().unwrap();
}

#[test]
fn two_holds_take_the_minimum_and_dropping_releases() {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let (engine, wal, _) = open_sim(&sim, config_with_snapshots(&dir));
    let slow = wal.hold("slow", 5);
    let fast = wal.hold("fast", 0);
    snapshot(&engine, &wal, "a");
    fast.advance(wal.durable_lsn());
    snapshot(&engine, &wal, "b");
    keeps_after(&sim, &dir, 5);
    drop(slow);
    assert_eq!(wal.retention_holds().len(), 1);
    let taken = fast.lsn();
    snapshot(&engine, &wal, "c");
    keeps_after(&sim, &dir, taken);
    let segs = segments(&sim, &dir);
    assert!(segs[0] > 6, "the slow hold's segments went: {segs:?}");
    drop(fast);
    snapshot(&engine, &wal, "d");
    let segs = segments(&sim, &dir);
    assert!(
        segs[0] > taken + 1,
        "no hold: all covered segments go: {segs:?}"
    );
    wal.shutdown().unwrap();
}

#[test]
fn a_hold_taken_again_after_a_restart_is_honoured() {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let c = config_with_snapshots(&dir);
    let (engine, wal, _) = open_sim(&sim, c.clone());
    let hold = wal.hold("export", 3);
    snapshot(&engine, &wal, "a");
    drop(hold);
    wal.shutdown().unwrap();
    drop((engine, wal));
    // Recovery deletes no segment, whatever the snapshot covers.
    let before = segments(&sim, &dir);
    assert_eq!(before[0], 1);
    let (engine, wal, _) = open_sim(&sim, c);
    assert_eq!(segments(&sim, &dir), before);
    let _hold = wal.hold("export", 3);
    snapshot(&engine, &wal, "b");
    keeps_after(&sim, &dir, 3);
    // And the cursor's records are all there, without a snapshot.
    let mut tailer = LogTailer::open_with_storage(Arc::new(sim.clone()), &dir, 3);
    let batch = tailer.next_batch(100_000, wal.durable_lsn()).unwrap();
    assert_eq!(batch.snapshot, None);
    assert_eq!(batch.records[0].0, 4);
    assert_eq!(batch.cursor, wal.durable_lsn());
    wal.shutdown().unwrap();
}

fn segment_bytes_on_disk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("wal-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn retained_bytes_match_the_segment_files() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config_with_snapshots(tmp.path());
    c.segment_bytes = 4096;
    let (engine, wal, _) = open(c.clone(), ENGINE).unwrap();
    assert_eq!(wal.retained_bytes(), segment_bytes_on_disk(tmp.path()));
    let hold = wal.hold("export", 0);
    snapshot(&engine, &wal, "a");
    let held = wal.retained_bytes();
    assert_eq!(held, segment_bytes_on_disk(tmp.path()));
    assert_eq!(wal.stats().retained_bytes, held);
    drop(hold);
    snapshot(&engine, &wal, "b");
    assert_eq!(wal.retained_bytes(), segment_bytes_on_disk(tmp.path()));
    assert!(wal.retained_bytes() < held, "the snapshot freed segments");
    wal.shutdown().unwrap();
    drop((engine, wal));
    let (_, wal, _) = open(c, ENGINE).unwrap();
    assert_eq!(wal.retained_bytes(), segment_bytes_on_disk(tmp.path()));
    wal.shutdown().unwrap();
}
