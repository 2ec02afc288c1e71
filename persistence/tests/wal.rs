//! Log behaviour through the public API: recovery, torn tails, corruption,
//! roll-over, snapshots, durability waits, back-pressure and injected faults.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use common::*;
use engine::{Engine, SinkError};
use parking_lot::Mutex;
use persistence::format::{self, HEADER_BYTES};
use persistence::{
    open, open_with_storage, verify, verify_with, FsyncMode, SimStorage, Storage, Ticket, Wal,
    WalConfig, WalError,
};

fn new_sale(sku: &str) -> engine::SaleSpec {
    engine::SaleSpec {
        sku: sku.into(),
        stock: 5,
        per_user_limit: 1,
        starts_at_ms: None,
        ends_at_ms: None,
        reservation_ttl_ms: 10,
    }
}

fn segments(sim: &SimStorage, dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = sim
        .list(dir)
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("wal-"))
        .collect();
    names.sort();
    names
}

/// Writes `ops` through a fresh simulated log and shuts it down cleanly.
fn logged(
    sim: &SimStorage,
    config: WalConfig,
    seed: u64,
    n: usize,
) -> (Engine, Vec<(u64, engine::Event)>) {
    let (engine, wal, _) = open_sim(sim, config);
    let log = run_ops(&engine, &wal, &random_ops(seed, n));
    wal.shutdown().unwrap();
    (engine, log)
}

/// 300 random operations logged in 512-byte segments (more than five).
#[allow(clippy::type_complexity)]
fn logged_in_small_segments() -> (
    SimStorage,
    PathBuf,
    WalConfig,
    Engine,
    Vec<(u64, engine::Event)>,
    Vec<String>,
) {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let mut c = config(&dir);
    c.segment_bytes = 512;
    let (engine, log) = logged(&sim, c.clone(), 14, 300);
    let names = segments(&sim, &dir);
    assert!(names.len() > 5, "{names:?}");
    (sim, dir, c, engine, log, names)
}

#[test]
fn missing_and_empty_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/wal");
    assert!(matches!(verify(&dir), Err(WalError::Io { .. })));
    let (engine, wal, report) = open(config(&dir), ENGINE).unwrap();
    assert_eq!(report.replayed_records, 0);
    assert_eq!(report.snapshot_records, 0);
    assert!(engine.state().sales.is_empty());
    assert!(wal.healthy());
    wal.shutdown().unwrap();
    // Only a header-only segment: an empty log.
    let v = verify(&dir).unwrap();
    assert_eq!((v.segments, v.records, v.snapshots), (1, 0, 0));
    let (engine, wal, report) = open(config(&dir), ENGINE).unwrap();
    assert_eq!(report.replayed_records, 0);
    assert!(engine.state().orders.is_empty());
    wal.shutdown().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert_eq!(
        verify(&empty).unwrap(),
        persistence::VerifyReport::default()
    );
}

#[test]
fn recovery_equals_live_state_in_every_mode() {
    for mode in fsync_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = config(tmp.path());
        c.fsync = mode;
        let (engine, wal, _) = open(c.clone(), ENGINE).unwrap();
        let log = run_ops(&engine, &wal, &random_ops(7, 400));
        wal.shutdown().unwrap();
        wal.shutdown().unwrap();
        let (again, wal, report) = open(c.clone(), ENGINE).unwrap();
        assert_eq!(report.replayed_records, log.len() as u64, "{mode}");
        assert_eq!(again.state(), engine.state(), "{mode}");
        // The writer continues where the log ended.
        let mut sink = wal.sink();
        again.create_sale(new_sale("after"), 0, &mut sink).unwrap();
        assert_eq!(sink.ticket(), Some(Ticket(log.len() as u64 + 1)));
        wal.wait_durable(sink.ticket().unwrap()).unwrap();
        drop(wal);
        let (third, wal, _) = open(c, ENGINE).unwrap();
        assert_eq!(third.state(), again.state());
        wal.shutdown().unwrap();
    }
}

#[test]
fn torn_tail_cut_at_every_byte_of_the_last_record() {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let (_, log) = logged(&sim, config(&dir), 11, 60);
    let n = log.len();
    let seg = dir.join(&segments(&sim, &dir)[0]);
    let full = sim.file_bytes(&seg).unwrap();
    let last_len = format::encode_frame(&log[n - 1].1).len();
    let start = full.len() - last_len;
    let expected = replayed(&log, n - 1).state();
    for cut in start..full.len() {
        let sim2 = sim_with_segment(&dir, &seg, full[..cut].to_vec());
        let v = verify_with(&sim2, &dir).unwrap();
        assert_eq!(v.torn_tail_bytes, (cut - start) as u64);
        let (engine, wal, report) = open_sim(&sim2, config(&dir));
        assert_eq!(report.replayed_records, n as u64 - 1, "cut at {cut}");
        assert_eq!(report.truncated_bytes, (cut - start) as u64);
        assert_eq!(engine.state(), expected, "cut at {cut}");
        writer_continues(&sim2, &dir, &engine, wal, n as u64);
    }
}

/// A fresh simulated log directory like `dir` (cleanly created), with the
/// segment `seg` holding `bytes`.
fn sim_with_segment(dir: &Path, seg: &Path, bytes: Vec<u8>) -> SimStorage {
    let sim = SimStorage::new();
    let (_, wal, _) = open_sim(&sim, config(dir));
    wal.shutdown().unwrap();
    sim.set_file_bytes(seg, bytes);
    sim
}

/// After recovery the writer appends where the kept records end (the next
/// event gets ticket `next`), and what it wrote recovers too.
fn writer_continues(sim: &SimStorage, dir: &Path, engine: &Engine, wal: Wal, next: u64) {
    let mut sink = wal.sink();
    engine.create_sale(new_sale("after"), 0, &mut sink).unwrap();
    assert_eq!(sink.ticket(), Some(Ticket(next)));
    wal.shutdown().unwrap();
    let (again, wal, _) = open_sim(sim, config(dir));
    assert_eq!(again.state(), engine.state());
    wal.shutdown().unwrap();
}

#[test]
fn garbage_after_the_last_record_is_a_torn_tail() {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let (engine, _) = logged(&sim, config(&dir), 12, 30);
    let seg = dir.join(&segments(&sim, &dir)[0]);
    let mut bytes = sim.file_bytes(&seg).unwrap();
    bytes.extend_from_slice(&[0xa5u8; 60]);
    bytes.extend_from_slice(&[0u8; 40]);
    sim.set_file_bytes(&seg, bytes);
    let (again, wal, report) = open_sim(&sim, config(&dir));
    assert_eq!(report.truncated_bytes, 100);
    assert_eq!(again.state(), engine.state());
    wal.shutdown().unwrap();
}

#[test]
fn preallocated_zeros_end_every_segment_cleanly() {
    // Segment files run on in zeros past their last record (the writer
    // preallocates): that is the clean end of a segment, closed or last,
    // not a torn tail and not corruption, and the writer appends after the
    // last record.
    let (sim, dir, c, engine, log, names) = logged_in_small_segments();
    for name in &names {
        let path = dir.join(name);
        let mut bytes = sim.file_bytes(&path).unwrap();
        bytes.extend_from_slice(&[0u8; 5000]);
        sim.set_file_bytes(&path, bytes);
    }
    let v = verify_with(&sim, &dir).unwrap();
    assert_eq!((v.records, v.torn_tail_bytes), (log.len() as u64, 0));
    let (again, wal, report) = open_sim(&sim, c.clone());
    assert_eq!(report.replayed_records, log.len() as u64);
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(again.state(), engine.state());
    let mut sink = wal.sink();
    again.create_sale(new_sale("after"), 0, &mut sink).unwrap();
    wal.shutdown().unwrap();
    let (third, wal, _) = open_sim(&sim, c.clone());
    assert_eq!(third.state(), again.state());
    wal.shutdown().unwrap();

    // A last segment whose header never made it (power lost while it was
    // created) is all zeros: it held nothing.
    let next = format::segment_name(log.len() as u64 + 2);
    sim.set_file_bytes(&dir.join(&next), vec![0u8; 8192]);
    let (fourth, wal, report) = open_sim(&sim, c);
    assert_eq!(
        report.truncated_bytes, 0,
        "unused zeros are not a torn tail"
    );
    assert_eq!(fourth.state(), third.state());
    wal.shutdown().unwrap();
    // Removed, then created again by the writer for its next record.
    assert_eq!(&sim.file_bytes(&dir.join(&next)).unwrap()[..8], b"FSWALSEG");
}

#[test]
fn zeroed_header_before_records_is_corruption() {
    let sim = SimStorage::new();
    let dir = sim_dir();
    logged(&sim, config(&dir), 15, 24);
    let seg = dir.join(&segments(&sim, &dir)[0]);
    let mut bytes = sim.file_bytes(&seg).unwrap();
    bytes[..HEADER_BYTES].fill(0);
    sim.set_file_bytes(&seg, bytes);
    match open_with_storage(config(&dir), ENGINE, Arc::new(sim.clone())) {
        Err(WalError::Corrupted { segment, .. }) => assert_eq!(segment, seg),
        Err(other) => panic!("expected Corrupted, got {other:?}"),
        Ok(_) => panic!("a segment with acknowledged records was dropped"),
    }
}

/// Offset of record `k` (0-based) in a single-segment log.
fn frame_offset(log: &[(u64, engine::Event)], k: usize) -> usize {
    HEADER_BYTES
        + log[..k]
            .iter()
            .map(|(_, e)| format::encode_frame(e).len())
            .sum::<usize>()
}

#[test]
fn torn_batch_with_unwritten_pages_is_cut_at_the_hole() {
    // Power lost during a batch's sync into preallocated space: the device
    // kept later pages of the batch but not an earlier one, which reads back
    // as zeros. Nothing from the hole on was acknowledged, so recovery cuts
    // there instead of refusing to start. Garbage that is not zeros before a
    // good frame stays corruption (flipped_bit_mid_log_…).
    let sim = SimStorage::new();
    let dir = sim_dir();
    let (_, log) = logged(&sim, config(&dir), 16, 300);
    let seg = dir.join(&segments(&sim, &dir)[0]);
    let full = sim.file_bytes(&seg).unwrap();
    let k = log.len() / 2;
    let at = frame_offset(&log, k);
    let expected = replayed(&log, k).state();
    // (hole start, hole length): at a frame start (its header reads zero),
    // and inside a frame covering a whole sector (the header survives).
    for (start, len) in [(at, 40), (at + 10, 1100)] {
        let mut bytes = full.clone();
        bytes[start..start + len].fill(0);
        assert!(start + len < bytes.len(), "the hole is followed by records");
        let sim2 = sim_with_segment(&dir, &seg, bytes);
        let v = verify_with(&sim2, &dir).unwrap();
        assert_eq!(v.torn_tail_bytes, (full.len() - at) as u64);
        let (engine, wal, report) = open_sim(&sim2, config(&dir));
        assert_eq!(report.replayed_records, k as u64, "hole at {start}+{len}");
        assert_eq!(engine.state(), expected);
        writer_continues(&sim2, &dir, &engine, wal, k as u64 + 1);
    }
}

#[test]
fn flipped_bit_mid_log_is_corruption_naming_segment_and_offset() {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let (_, log) = logged(&sim, config(&dir), 13, 80);
    let seg = dir.join(&segments(&sim, &dir)[0]);
    let clean = sim.file_bytes(&seg).unwrap();
    let offset = frame_offset(&log, 10);
    for (what, byte) in [
        ("payload", offset + 12),
        ("length", offset + 3),
        ("crc", offset + 5),
    ] {
        let mut bytes = clean.clone();
        bytes[byte] ^= 0x10;
        sim.set_file_bytes(&seg, bytes);
        let check = |err: WalError| match err {
            WalError::Corrupted {
                segment,
                offset: at,
                ..
            } => {
                assert_eq!(segment, seg, "{what}");
                assert_eq!(at, offset as u64, "{what}");
            }
            other => panic!("{what}: expected Corrupted, got {other:?}"),
        };
        check(
            persistence::open_with_storage(config(&dir), ENGINE, Arc::new(sim.clone()))
                .err()
                .expect("refused"),
        );
        check(verify_with(&sim, &dir).unwrap_err());
        assert!(persistence::dump_with(&sim, &dir, &mut Vec::new()).is_err());
    }
    sim.set_file_bytes(&seg, clean);
    let mut out = Vec::new();
    assert_eq!(
        persistence::dump_with(&sim, &dir, &mut out).unwrap(),
        log.len() as u64
    );
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), log.len());
}

#[test]
fn segment_roll_over_and_missing_segment() {
    let (sim, dir, c, engine, log, names) = logged_in_small_segments();
    for name in &names {
        assert!(sim.file_bytes(&dir.join(name)).unwrap().len() <= 512);
    }
    let v = verify_with(&sim, &dir).unwrap();
    assert_eq!(v.records, log.len() as u64);
    assert_eq!(v.segments as usize, names.len());
    let (again, wal, report) = open_sim(&sim, c.clone());
    assert_eq!(report.segments as usize, names.len());
    assert_eq!(again.state(), engine.state());
    wal.shutdown().unwrap();
    // A segment gone from the middle: refuse to start, name the next one.
    sim.remove(&dir.join(&names[2])).unwrap();
    match open_with_storage(c, ENGINE, Arc::new(sim.clone())) {
        Err(WalError::Corrupted {
            segment, offset: 0, ..
        }) => assert_eq!(segment, dir.join(&names[3])),
        Err(other) => panic!("expected Corrupted, got {other:?}"),
        Ok(_) => panic!("expected Corrupted, got a log"),
    }
}

#[test]
fn torn_segment_header_is_removed() {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let (engine, log) = logged(&sim, config(&dir), 15, 40);
    let next = dir.join(format::segment_name(log.len() as u64 + 1));
    let mut f = sim.create(&next).unwrap();
    f.append(&format::encode_header(format::FileKind::Segment, log.len() as u64 + 1)[..10])
        .unwrap();
    let (again, wal, report) = open_sim(&sim, config(&dir));
    assert_eq!(report.truncated_bytes, 10);
    assert_eq!(again.state(), engine.state());
    wal.shutdown().unwrap();
}

#[test]
fn snapshot_and_replay_equal_live_state() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.snapshot_every_records = 40;
    let (engine, wal, _) = open(c.clone(), ENGINE).unwrap();
    let ops = random_ops(16, 600);
    let log = Mutex::new(Vec::new());
    let mut tee = Tee {
        wal: &wal,
        log: &log,
        last: None,
    };
    let mut driver = SimDriver::new(&engine, &mut tee);
    for (i, op) in ops.iter().enumerate() {
        driver.step(&engine, op, &mut tee);
        if i % 100 == 99 {
            // Give the snapshot thread a chance between bursts.
            for _ in 0..200 {
                if !wal_busy(&wal) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    wal.shutdown().unwrap();
    assert!(wal.stats().snapshots >= 1, "{:?}", wal.stats());
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".snap")).count(),
        1,
        "{names:?}"
    );
    assert!(!names.iter().any(|n| n.ends_with(".tmp")));
    let v = verify(tmp.path()).unwrap();
    assert!(v.snapshot_records > 0);
    let (again, wal2, report) = open(c, ENGINE).unwrap();
    assert!(report.snapshot_records > 0);
    assert!(report.replayed_records < log.lock().len() as u64);
    assert_eq!(again.state(), engine.state());
    wal2.shutdown().unwrap();
}

fn wal_busy(wal: &persistence::Wal) -> bool {
    wal.stats().queue_depth > 0
}

#[test]
fn durable_future_is_cancel_safe_and_runtime_agnostic() {
    struct Flag(std::sync::atomic::AtomicBool, std::thread::Thread);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            self.1.unpark();
        }
    }
    let sim = SimStorage::new();
    let (engine, wal, _) = open_sim(&sim, config(&sim_dir()));
    sim.hold_writes(true);
    let mut sink = wal.sink();
    let _ = SimDriver::new(&engine, &mut sink);
    let ticket = sink.ticket().unwrap();
    let flag = Arc::new(Flag(Default::default(), std::thread::current()));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    // Poll once, then drop: a cancelled wait leaves nothing behind that matters.
    {
        let mut fut = std::pin::pin!(wal.durable(ticket));
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    let mut fut = std::pin::pin!(wal.durable(ticket));
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    sim.hold_writes(false);
    while !flag.0.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::park_timeout(Duration::from_millis(10));
    }
    assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
    wal.shutdown().unwrap();
}

use std::future::Future;

#[test]
fn full_queue_is_back_pressure_and_nothing_is_lost() {
    let sim = SimStorage::new();
    let mut c = config(&sim_dir());
    c.queue_capacity = 4;
    let (engine, wal, _) = open_sim(&sim, c.clone());
    let mut sink = wal.sink();
    let _ = SimDriver::new(&engine, &mut sink);
    wal.wait_durable(sink.ticket().unwrap()).unwrap();
    sim.hold_writes(true);
    let mut full = 0;
    let mut ok = 0;
    for i in 0..50 {
        let mut s = wal.sink();
        match engine.add_stock(&sku(0), 1, i, &mut s) {
            Ok(_) => ok += 1,
            Err(engine::SaleOpError::Unavailable(SinkError::Full)) => full += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert!(full > 0 && ok >= 4, "ok {ok}, full {full}");
    sim.hold_writes(false);
    wal.shutdown().unwrap();
    let (again, w, _) = open_sim(&sim, c);
    assert_eq!(again.state(), engine.state());
    assert_eq!(again.state().sales[0].total, 10 + ok);
    w.shutdown().unwrap();
}

#[test]
fn emit_after_shutdown_is_refused() {
    let sim = SimStorage::new();
    let (engine, wal, _) = open_sim(&sim, config(&sim_dir()));
    wal.shutdown().unwrap();
    let mut sink = wal.sink();
    assert!(matches!(
        engine.create_sale(new_sale("x"), 0, &mut sink),
        Err(engine::CreateSaleError::Unavailable(SinkError::Failed))
    ));
}

/// Drives single events with durable waits until the log fails; returns the
/// acknowledged tickets and the whole emitted log.
fn drive_until_failure(
    wal: &persistence::Wal,
    engine: &Engine,
    n: usize,
) -> (u64, Vec<(u64, engine::Event)>) {
    let log = Mutex::new(Vec::new());
    let mut acked = 0;
    let mut tee = Tee {
        wal,
        log: &log,
        last: None,
    };
    let mut driver = SimDriver::new(engine, &mut tee);
    if let Some(t) = tee.last {
        if wal.wait_durable(t).is_ok() {
            acked = t.0;
        }
    }
    for op in random_ops(21, n) {
        tee.last = None;
        driver.step(engine, &op, &mut tee);
        if let Some(t) = tee.last {
            match wal.wait_durable(t) {
                Ok(()) => acked = t.0,
                Err(WalError::Failed) => break,
                Err(e) => panic!("{e:?}"),
            }
        }
    }
    (acked, log.into_inner())
}

fn check_fault(inject: impl Fn(&SimStorage)) {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let (engine, wal, _) = open_sim(&sim, config(&dir));
    inject(&sim);
    let (acked, log) = drive_until_failure(&wal, &engine, 300);
    assert!(!wal.healthy());
    assert!(wal.stats().failed);
    // Everything after the failure is refused, and waits report the failure.
    let mut sink = wal.sink();
    assert!(engine.add_stock(&sku(0), 1, 1, &mut sink).is_err());
    assert!(matches!(
        wal.wait_durable(Ticket(log.len() as u64)),
        Err(WalError::Failed)
    ));
    assert!(matches!(wal.shutdown(), Err(WalError::Failed)));
    // Restart on a healed disk after losing power: every acknowledged event is there.
    sim.heal();
    sim.power_loss(|_, unsynced| unsynced / 2);
    let (again, w, report) = open_sim(&sim, config(&dir));
    let recovered = report.replayed_records;
    assert!(recovered >= acked, "recovered {recovered}, acked {acked}");
    assert_eq!(again.state(), replayed(&log, recovered as usize).state());
    w.shutdown().unwrap();
}

#[test]
fn failing_write_stops_the_log() {
    check_fault(|sim| sim.fail_write_after(25));
}

#[test]
fn failing_fsync_stops_the_log() {
    check_fault(|sim| sim.fail_sync_after(25));
}

#[test]
fn full_disk_stops_the_log() {
    check_fault(|sim| sim.disk_space(2000));
}

#[test]
fn power_loss_keeps_every_acknowledged_event() {
    for seed in 0..8u64 {
        let sim = SimStorage::new();
        let dir = sim_dir();
        let mut c = config(&dir);
        c.segment_bytes = 1024;
        let (engine, wal, _) = open_sim(&sim, c.clone());
        let log = Mutex::new(Vec::new());
        let mut tee = Tee {
            wal: &wal,
            log: &log,
            last: None,
        };
        let mut driver = SimDriver::new(&engine, &mut tee);
        let mut acked = 0;
        // Acknowledge only some events: the rest may or may not survive.
        for (i, op) in random_ops(seed, 200).iter().enumerate() {
            tee.last = None;
            driver.step(&engine, op, &mut tee);
            if let Some(t) = tee.last {
                if i % 7 == 0 {
                    wal.wait_durable(t).unwrap();
                    acked = t.0;
                }
            }
        }
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        // The process dies with the power: no shutdown, torn writes.
        sim.power_loss(|_, unsynced| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (unsynced as u64 + 1)) as usize
        });
        std::mem::forget(wal);
        let log = log.into_inner();
        let (again, w, report) = open_sim(&sim, c.clone());
        let recovered = report.replayed_records;
        assert!(
            recovered >= acked,
            "seed {seed}: recovered {recovered}, acked {acked}"
        );
        assert_eq!(
            again.state(),
            replayed(&log, recovered as usize).state(),
            "seed {seed}"
        );
        w.shutdown().unwrap();
    }
}

#[test]
fn concurrent_producers_log_in_emit_order() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(tmp.path());
    c.segment_bytes = 64 << 10;
    c.snapshot_every_records = 2_000;
    let (engine, wal, _) = open(c.clone(), ENGINE).unwrap();
    let mut sink = wal.sink();
    // One hot SKU with little stock: purchases, cancels and expiries race for
    // the same units, so any reordering of the log would fail replay.
    engine
        .create_sale(
            engine::SaleSpec {
                sku: "hot".into(),
                stock: 20,
                per_user_limit: 2,
                starts_at_ms: None,
                ends_at_ms: None,
                reservation_ttl_ms: 5,
            },
            0,
            &mut sink,
        )
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (engine, wal) = (&engine, &wal);
            s.spawn(move || {
                for i in 0..600u64 {
                    let now = i;
                    let user = format!("{t}-{}", i % 13);
                    let mut sink = wal.sink();
                    if let engine::PurchaseOutcome::Admitted(a) =
                        engine.purchase("hot", &user, 1, None, now, &mut sink)
                    {
                        if i % 3 == 0 {
                            engine.cancel(a.order_id, &user, now, &mut sink);
                        } else if i % 3 == 1 {
                            engine.pay(a.order_id, now, &mut sink);
                        }
                    }
                    engine.expire_due(now, &mut sink);
                    if let Some(t) = sink.ticket() {
                        wal.wait_durable(t).unwrap();
                    }
                }
            });
        }
    });
    wal.shutdown().unwrap();
    let (again, w, _) = open(c, ENGINE).unwrap();
    assert_eq!(again.state(), engine.state());
    w.shutdown().unwrap();
}

#[test]
fn interval_mode_syncs_in_the_background() {
    let sim = SimStorage::new();
    let mut c = config(&sim_dir());
    c.fsync = FsyncMode::Interval;
    c.fsync_interval_ms = 2;
    let (engine, wal, _) = open_sim(&sim, c);
    let mut sink = wal.sink();
    let _ = SimDriver::new(&engine, &mut sink);
    // Acknowledged at once...
    wal.wait_durable(sink.ticket().unwrap()).unwrap();
    // ...and synced within a few intervals.
    let before = wal.stats().fsyncs;
    for _ in 0..500 {
        if wal.stats().fsyncs > before {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(wal.stats().fsyncs > before);
    assert_eq!(wal.fsync_mode(), FsyncMode::Interval);
    wal.shutdown().unwrap();
    let _ = open_with_storage;
}

/// `last_ticket` is the newest ticket any sink took, across restarts too: an
/// idempotent repeat waits for it.
#[test]
fn last_ticket_follows_every_sink() {
    let sim = SimStorage::new();
    let dir = sim_dir();
    let (engine, wal, _) = open_sim(&sim, config(&dir));
    assert_eq!(
        wal.last_ticket(),
        None,
        "a fresh log has handed out nothing"
    );
    let mut a = wal.sink();
    engine.create_sale(new_sale("a"), 0, &mut a).unwrap();
    assert_eq!(wal.last_ticket(), a.ticket());
    let mut b = wal.sink();
    engine.create_sale(new_sale("b"), 0, &mut b).unwrap();
    assert_eq!(wal.last_ticket(), b.ticket());
    assert!(b.ticket() > a.ticket());
    // A refused event takes no ticket.
    assert!(engine.create_sale(new_sale("b"), 0, wal.sink()).is_err());
    assert_eq!(wal.last_ticket(), b.ticket());
    wal.shutdown().unwrap();
    let (_again, wal, _) = open_sim(&sim, config(&dir));
    assert_eq!(
        wal.last_ticket(),
        b.ticket(),
        "tickets continue across restarts"
    );
    wal.wait_durable(b.ticket().unwrap()).unwrap();
}

/// The writer applies `writer_nice` and `writer_slice_us` to its own thread.
/// Raising the nice value needs no privilege; the value chosen (inherited +
/// 7) is one no other test's writer takes, so it finds this writer among
/// those of tests running alongside. The slice is checked where the kernel
/// shows it (`se.slice` in `/proc/.../sched`, EEVDF kernels).
#[cfg(target_os = "linux")]
#[test]
fn writer_thread_takes_its_scheduling_settings() {
    // SAFETY: getpriority has no memory-safety preconditions.
    let inherited = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    if inherited > 12 {
        eprintln!("skipped: the test runs at nice {inherited}");
        return;
    }
    let nice = inherited + 7;
    let sim = SimStorage::new();
    let mut c = config(&sim_dir());
    c.writer_nice = nice;
    c.writer_slice_us = 300;
    let (_engine, wal, _) = open_sim(&sim, c);

    // (nice, `se.slice` line if any) of every log writer thread.
    let writers = || -> Vec<(i32, Option<String>)> {
        let mut out = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let path = task.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if comm.trim() != "wal-writer" {
                continue;
            }
            let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
            // Fields after the `(comm)`: state is field 3, nice field 19.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let Some(Ok(n)) = after.split_whitespace().nth(16).map(str::parse::<i32>) else {
                continue;
            };
            let sched = std::fs::read_to_string(path.join("sched")).unwrap_or_default();
            let slice = sched
                .lines()
                .find(|l| l.starts_with("se.slice"))
                .map(str::to_string);
            out.push((n, slice));
        }
        out
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let slice_of = |line: &str| line.rsplit(':').next().unwrap().trim().to_string();
    let ours = loop {
        // The writer sets its nice value before its slice: wait for both,
        // or until the deadline (then the assertion below says which).
        let found = writers().into_iter().find(|(n, _)| *n == nice);
        let settled = found
            .as_ref()
            .is_some_and(|(_, slice)| slice.as_deref().is_none_or(|l| slice_of(l) == "300000"));
        if let Some(found) = found.filter(|_| settled || std::time::Instant::now() >= deadline) {
            break found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log writer thread at nice {nice}: {:?}",
            writers()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    if let Some(line) = ours.1 {
        assert_eq!(slice_of(&line), "300000", "{line}");
    }
    wal.shutdown().unwrap();
}
