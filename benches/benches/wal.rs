//! Write-ahead log benchmarks: append throughput with group commit in each
//! fsync mode (64 producer threads), and recovery speed.
//!
//! Producers emit `Admitted` events straight into a `WalSink` (the engine's
//! own cost is measured in `engine.rs`). Each producer keeps a window of
//! events in flight and waits for the last one to be durable before the next
//! window, as a gateway thread serving many connections does. Logs live in
//! tempdirs under /tmp on the real disk.
//!
//! Run: `cargo bench -p benches --bench wal`. With a window of 1 (every
//! producer waits for each record) `always` measured ~39K records/s: one
//! fdatasync (~1 ms here) per ~40-record batch; not run by default (slow).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::{EngineConfig, Event, EventSink, SinkError};
use persistence::{FsyncMode, Ticket, Wal, WalConfig};

const PRODUCERS: usize = 64;
const RECORDS_PER_PRODUCER: u64 = 8_192;

fn admitted(seq: u64) -> Event {
    Event::Admitted {
        order_id: seq,
        user_id: format!("u_{seq}"),
        qty: 1,
        request_id: Some(seq),
        created_at_ms: 1_700_000_000_000,
        expires_at_ms: 1_700_000_600_000,
    }
}

fn config(dir: &std::path::Path, mode: FsyncMode) -> WalConfig {
    let mut c = WalConfig::new(dir);
    c.fsync = mode;
    c.snapshot_every_records = 0;
    c
}

/// One round: every producer emits its records in windows of `window`.
fn produce(wal: &Wal, window: u64) {
    std::thread::scope(|s| {
        for p in 0..PRODUCERS as u64 {
            s.spawn(move || {
                let mut last = None;
                for i in 0..RECORDS_PER_PRODUCER {
                    let event = admitted(p * RECORDS_PER_PRODUCER + i);
                    let mut sink = wal.sink();
                    loop {
                        match sink.emit(&event) {
                            Ok(()) => break,
                            Err(SinkError::Full) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                    last = sink.ticket();
                    if (i + 1) % window == 0 {
                        wal.wait_durable(last.take().expect("a ticket"))
                            .expect("durable");
                    }
                }
                if let Some(t) = last {
                    wal.wait_durable(t).expect("durable");
                }
            });
        }
    });
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_append_64_producers");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(
        PRODUCERS as u64 * RECORDS_PER_PRODUCER,
    ));
    for (mode, window) in [
        (FsyncMode::Always, 256),
        (FsyncMode::Interval, 256),
        (FsyncMode::Never, 256),
    ] {
        let id = BenchmarkId::new(mode.as_str(), format!("window_{window}"));
        group.bench_function(id, |b| {
            let tmp = tempfile::tempdir_in("/tmp").unwrap();
            let (_engine, wal, _) =
                persistence::open(config(tmp.path(), mode), EngineConfig::with_shards(2)).unwrap();
            b.iter(|| produce(&wal, window));
            let stats = wal.stats();
            eprintln!(
                "{mode}/window {window}: {} records, {} batches ({:.0} records/batch), {} fsyncs",
                stats.records_written,
                stats.batches,
                stats.batch_records_sum as f64 / stats.batches.max(1) as f64,
                stats.fsyncs
            );
            wal.shutdown().unwrap();
        });
    }
    group.finish();
}

const RECOVERY_RECORDS: u64 = 1_000_000;

/// A log of one sale and `RECOVERY_RECORDS` admissions by distinct users.
fn build_log(dir: &std::path::Path) {
    let (engine, wal, _) =
        persistence::open(config(dir, FsyncMode::Never), EngineConfig::with_shards(2)).unwrap();
    let mut sink = wal.sink();
    engine
        .create_sale(
            engine::SaleSpec {
                sku: "bench".into(),
                stock: RECOVERY_RECORDS * 2,
                per_user_limit: 1,
                starts_at_ms: None,
                ends_at_ms: None,
                reservation_ttl_ms: 600_000,
            },
            0,
            &mut sink,
        )
        .unwrap();
    for i in 0..RECOVERY_RECORDS {
        loop {
            match sink.emit(&admitted(i)) {
                Ok(()) => break,
                Err(SinkError::Full) => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        }
    }
    wal.wait_durable(sink.ticket().unwrap_or(Ticket(1)))
        .unwrap();
    wal.shutdown().unwrap();
}

fn recovery(c: &mut Criterion) {
    let tmp = tempfile::tempdir_in("/tmp").unwrap();
    build_log(tmp.path());
    let mut group = c.benchmark_group("wal_recovery");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(RECOVERY_RECORDS + 1));
    group.bench_function("replay_1m_admissions", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let (engine, wal, report) = persistence::open(
                    config(tmp.path(), FsyncMode::Never),
                    EngineConfig::with_shards(2),
                )
                .unwrap();
                total += started.elapsed();
                assert_eq!(report.replayed_records, RECOVERY_RECORDS + 1);
                assert_eq!(engine.order_count(), RECOVERY_RECORDS);
                wal.shutdown().unwrap();
                // Dropping a million orders is not recovery time.
                drop(engine);
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, append, recovery);
criterion_main!(benches);
