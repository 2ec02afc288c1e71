//! The log tailer through the public API: every record appended comes out
//! once, in order, within the bounds, while the writer appends, across
//! segment boundaries, from any cursor, from a snapshot when the segments
//! are gone, and after a torn tail; a gap is an error.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use engine::{Engine, Event};
use persistence::format;
use persistence::{
    open, FsyncMode, LogTailer, SimStorage, Storage, TailBatch, WalConfig, WalError,
};

type Log = Vec<(u64, Event)>;

fn sim_tailer(sim: &SimStorage, dir: &Path, after: u64) -> LogTailer {
    LogTailer::open_with_storage(Arc::new(sim.clone()) as Arc<dyn Storage>, dir, after)
}

/// Reads batches of `max` until an empty one; checks each batch's bounds
/// and continuity and returns the records (and the snapshot batches' count).
fn drain(tailer: &mut LogTailer, max: usize) -> (Log, u32) {
    drain_to(tailer, max, u64::MAX)
}

fn drain_to(tailer: &mut LogTailer, max: usize, up_to: u64) -> (Log, u32) {
    let mut out = Vec::new();
    let mut snapshot_batches = 0;
    loop {
        let before = tailer.cursor();
        let batch = tailer.next_batch(max, up_to).expect("batch");
        assert!(batch.records.len() <= max);
        check_batch(&batch, before);
        if batch.snapshot.is_some() {
            snapshot_batches += 1;
        } else if batch.records.is_empty() {
            return (out, snapshot_batches);
        }
        out.extend(batch.records);
    }
}

/// Segment records continue from `before` without a hole; the cursor is
/// the last one's LSN.
fn check_batch(batch: &TailBatch, before: u64) {
    if batch.snapshot.is_some() {
        return;
    }
    for (i, (lsn, _)) in batch.records.iter().enumerate() {
        assert_eq!(*lsn, before + 1 + i as u64, "hole or repeat");
    }
    let last = batch.records.last().map_or(before, |r| r.0);
    assert_eq!(batch.cursor, last);
}

/// Logs `n` sale creations (new SKUs) and returns them.
fn more_sales(engine: &Engine, wal: &persistence::Wal, n: usize) -> Log {
    let log = parking_lot::Mutex::new(Vec::new());
    let mut tee = Tee {
        wal,
        log: &log,
        last: None,
    };
    for k in 0..n {
        let spec = engine::SaleSpec {
            sku: format!("extra-{k}"),
            stock: 3,
            per_user_limit: 1,
            starts_at_ms: None,
            ends_at_ms: None,
            reservation_ttl_ms: 10,
        };
        engine.create_sale(spec, 0, &mut tee).unwrap();
    }
    log.into_inner()
}

fn small_segments(dir: &Path) -> WalConfig {
    let mut c = config(dir);
    c.segment_bytes = 600;
    c
}

#[test]
fn resumes_from_every_cursor_across_segments() {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let (engine, wal, _) = open_sim(&sim, small_segments(&dir));
    let log = run_ops(&engine, &wal, &random_ops(3, 150));
    wal.shutdown().unwrap();
    let segments = sim.list(&dir).unwrap().len();
    assert!(segments > 5, "{segments} segments");
    for after in 0..=log.len() {
        for max in [1, 7, 1000] {
            let mut tailer = sim_tailer(&sim, &dir, after as u64);
            let (got, snapshots) = drain(&mut tailer, max);
            assert_eq!(snapshots, 0);
            assert_eq!(got, log[after..], "after {after}, max {max}");
            assert_eq!(tailer.cursor(), log.len() as u64);
        }
    }
    let mut ahead = sim_tailer(&sim, &dir, log.len() as u64 + 5);
    match ahead.next_batch(10, u64::MAX) {
        Err(WalError::CursorAhead { after, end, .. }) => {
            assert_eq!((after, end), (log.len() as u64 + 5, log.len() as u64))
        }
        other => panic!("expected CursorAhead, got {other:?}"),
    }
}

#[test]
fn batches_stop_at_the_upper_bound() {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let (engine, wal, _) = open_sim(&sim, small_segments(&dir));
    let log = run_ops(&engine, &wal, &random_ops(4, 80));
    wal.shutdown().unwrap();
    let mut tailer = sim_tailer(&sim, &dir, 0);
    let mut got = Vec::new();
    for up_to in (0..=log.len() as u64).step_by(9) {
        let batch = tailer.next_batch(1000, up_to).unwrap();
        check_batch(&batch, got.len() as u64);
        assert_eq!(batch.cursor, up_to, "reads everything up to the bound");
        got.extend(batch.records);
    }
    got.extend(drain(&mut tailer, 1000).0);
    assert_eq!(got, log);
}

/// Waits until the log reports `lsn` durable.
fn wait_durable_lsn(wal: &persistence::Wal, lsn: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while wal.durable_lsn() < lsn {
        assert!(Instant::now() < deadline, "durable LSN stuck");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn follows_the_writer_while_it_appends() {
    for mode in [FsyncMode::Always, FsyncMode::Never] {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = config(tmp.path());
        c.segment_bytes = 8 << 10;
        c.fsync = mode;
        let (engine, wal, _) = open(c, ENGINE).unwrap();
        let mut tailer = LogTailer::open(tmp.path(), 0);
        let mut got: Log = Vec::new();
        let log = std::thread::scope(|s| {
            let writer = s.spawn(|| run_ops(&engine, &wal, &random_ops(5, 3000)));
            let mut max = 1;
            while !writer.is_finished() {
                let up_to = wal.durable_lsn();
                let batch = tailer.next_batch(max, up_to).unwrap();
                assert!(batch.records.len() <= max);
                assert!(batch.records.iter().all(|r| r.0 <= up_to), "past the bound");
                check_batch(&batch, got.len() as u64);
                got.extend(batch.records);
                max = max % 97 + 13;
            }
            writer.join().unwrap()
        });
        // `never` publishes durability at rolls and at shutdown only.
        wal.shutdown().unwrap();
        wait_durable_lsn(&wal, log.len() as u64);
        loop {
            let batch = tailer.next_batch(500, wal.durable_lsn()).unwrap();
            check_batch(&batch, got.len() as u64);
            if batch.records.is_empty() {
                break;
            }
            got.extend(batch.records);
        }
        assert_eq!(got.len(), log.len(), "{mode}");
        assert_eq!(got, log, "{mode}");
    }
}

#[test]
fn preallocated_zeros_in_the_live_segment_are_not_yet_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (engine, wal, _) = open(config(tmp.path()), ENGINE).unwrap();
    let first = run_ops(&engine, &wal, &random_ops(6, 30));
    wal.wait_durable(persistence::Ticket(first.len() as u64))
        .unwrap();
    let segment = tmp.path().join(format::segment_name(1));
    let on_disk = std::fs::read(&segment).unwrap();
    assert!(
        on_disk.len() > 100_000 && on_disk.ends_with(&[0; 1000]),
        "the live segment is preallocated ({} bytes)",
        on_disk.len()
    );
    // Bounded by the durable LSN, and unbounded as on a stopped directory:
    // the zeros are the end of what is written, not corruption.
    for up_to in [wal.durable_lsn(), u64::MAX] {
        let mut tailer = LogTailer::open(tmp.path(), 0);
        let (got, _) = drain_to(&mut tailer, 7, up_to);
        assert_eq!(got, first, "up_to {up_to}");
    }
    let mut tailer = LogTailer::open(tmp.path(), 0);
    assert_eq!(drain(&mut tailer, 1000).0, first);
    // More records go into the zeros; the tailer picks up where it stopped.
    let more = more_sales(&engine, &wal, 5);
    wal.wait_durable(persistence::Ticket(more[4].0)).unwrap();
    let (got, _) = drain(&mut tailer, 1000);
    assert_eq!(got, more);
    wal.shutdown().unwrap();
}

#[test]
fn a_torn_tail_ends_the_log_and_recovery_continues_it() {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let mut c = small_segments(&dir);
    c.fsync = FsyncMode::Never;
    let (engine, wal, _) = open_sim(&sim, c.clone());
    let first = run_ops(&engine, &wal, &random_ops(8, 60));
    wal.shutdown().unwrap();
    drop((engine, wal));
    // Shutdown synced everything: append a torn record by hand, as power
    // loss in the middle of a write leaves it.
    let last = sim
        .list(&dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("wal-"))
        .max()
        .unwrap();
    let path = dir.join(&last);
    let mut bytes = sim.file_bytes(&path).unwrap();
    let frame = format::encode_frame(&first[0].1);
    bytes.extend_from_slice(&frame[..frame.len() - 3]);
    sim.set_file_bytes(&path, bytes);
    // On the stopped directory the tailer ends where recovery will cut.
    let (got, _) = drain(&mut sim_tailer(&sim, &dir, 0), 9);
    assert_eq!(got, first);
    // Recovery cuts it, the next records take the following LSNs.
    let (engine, wal, report) = open_sim(&sim, c);
    assert!(report.truncated_bytes > 0);
    let second = more_sales(&engine, &wal, 20);
    wal.shutdown().unwrap();
    assert_eq!(second[0].0, first.len() as u64 + 1);
    let (got, _) = drain(&mut sim_tailer(&sim, &dir, 0), 9);
    let expected: Log = first.iter().chain(&second).cloned().collect();
    assert_eq!(got, expected);
}

#[test]
fn starts_from_the_snapshot_when_the_segments_are_gone() {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let mut c = small_segments(&dir);
    c.snapshot_every_records = 50;
    let (engine, wal, _) = open_sim(&sim, c);
    let log = run_ops(&engine, &wal, &random_ops(10, 200));
    wal.shutdown().unwrap();
    let names = sim.list(&dir).unwrap();
    let covered = names
        .iter()
        .filter_map(|n| match format::parse_name(n) {
            Some(format::LogFile::Snapshot(c)) => Some(c),
            _ => None,
        })
        .max()
        .expect("a snapshot");
    assert!(!names.contains(&format::segment_name(1)), "{names:?}");

    // From the start: the snapshot's batches (state as of covered - 1),
    // then every record from `covered` on, without a gap.
    let mut tailer = sim_tailer(&sim, &dir, 0);
    let rebuilt = Engine::new(ENGINE);
    let mut snapshot_records = 0;
    let mut cursors = Vec::new();
    let first_segment_batch = loop {
        let batch = tailer.next_batch(16, u64::MAX).unwrap();
        if batch.snapshot.is_none() {
            break batch;
        }
        assert_eq!(batch.snapshot, Some(covered));
        assert!(batch.records.iter().all(|r| r.0 == covered - 1));
        snapshot_records += batch.records.len();
        cursors.push(batch.cursor);
        for (_, e) in &batch.records {
            rebuilt.apply(e).unwrap();
        }
    };
    let (last, rest) = cursors.split_last().unwrap();
    assert_eq!(
        *last,
        covered - 1,
        "the snapshot's last batch moves the cursor"
    );
    assert!(rest.iter().all(|&c| c == 0), "{cursors:?}");
    check_batch(&first_segment_batch, covered - 1);
    let (more, _) = drain(&mut tailer, 16);
    let tail: Log = first_segment_batch
        .records
        .into_iter()
        .chain(more)
        .collect();
    assert_eq!(tail, log[covered as usize - 1..]);
    for (_, e) in &tail {
        rebuilt.apply(e).unwrap();
    }
    assert!(snapshot_records > 0);
    assert_eq!(rebuilt.state(), engine.state());

    // Until the snapshot's last batch the cursor stays put: a consumer that
    // stops in the middle reads the snapshot again.
    let mut tailer = sim_tailer(&sim, &dir, 0);
    let batch = tailer.next_batch(1, u64::MAX).unwrap();
    assert_eq!((batch.snapshot, batch.cursor), (Some(covered), 0));
    // Not before the bound reaches the snapshot's LSN.
    let mut tailer = sim_tailer(&sim, &dir, 0);
    assert!(tailer
        .next_batch(10, covered - 2)
        .unwrap()
        .records
        .is_empty());
    // A cursor at covered - 1 needs no snapshot.
    let (rest, snapshots) = drain(&mut sim_tailer(&sim, &dir, covered - 1), 5);
    assert_eq!(snapshots, 0);
    assert_eq!(rest, log[covered as usize - 1..]);
}

#[test]
fn a_gap_is_an_error_never_a_skip() {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let (engine, wal, _) = open_sim(&sim, small_segments(&dir));
    let _log = run_ops(&engine, &wal, &random_ops(12, 100));
    wal.shutdown().unwrap();
    let mut segs: Vec<u64> = sim
        .list(&dir)
        .unwrap()
        .iter()
        .filter_map(|n| match format::parse_name(n) {
            Some(format::LogFile::Segment(s)) => Some(s),
            _ => None,
        })
        .collect();
    segs.sort_unstable();
    assert!(segs.len() > 4);
    // The oldest segment gone, no snapshot: records 1.. are missing.
    sim.remove(&dir.join(format::segment_name(segs[0])))
        .unwrap();
    match sim_tailer(&sim, &dir, 0).next_batch(10, u64::MAX) {
        Err(WalError::Gap {
            missing,
            oldest_segment,
            ..
        }) => assert_eq!((missing, oldest_segment), (1, Some(segs[1]))),
        other => panic!("expected a gap, got {other:?}"),
    }
    // A segment in the middle gone: the records before come out, then
    // an error naming the segment after the hole.
    sim.remove(&dir.join(format::segment_name(segs[2])))
        .unwrap();
    let mut tailer = sim_tailer(&sim, &dir, segs[1] - 1);
    let batch = tailer
        .next_batch(1000, u64::MAX)
        .expect("records before the hole");
    assert_eq!(batch.cursor, segs[2] - 1);
    assert_eq!(batch.records[0].0, segs[1]);
    match tailer.next_batch(1000, u64::MAX) {
        Err(WalError::Corrupted { segment, .. }) => {
            assert_eq!(segment, dir.join(format::segment_name(segs[3])))
        }
        other => panic!("expected corruption at the hole, got {other:?}"),
    }
    // After an error the tailer starts again from its last cursor.
    assert_eq!(tailer.cursor(), segs[2] - 1);
}
