//! Cost of the purchase latency histogram (gateway::latency), the only
//! work issue 14's dashboard adds to the purchase path:
//! - `record`: one `Metrics::purchase_answered` (class by status, bucket
//!   index, two relaxed `fetch_add`s on this thread's shard), latencies
//!   varied over five decades so the bucket changes;
//! - `record_2_threads`: the same while another thread records as fast as
//!   it can (the two I/O threads of the 2-core box): shards keep them off
//!   each other's cache lines;
//! - `clock_pair`: `Instant::now()` and `elapsed()`, the two clock reads
//!   the path makes around the handler;
//! - `clock_pair_and_record`: both, i.e. everything the path pays.
//!
//! Run: `cargo bench -p benches --bench latency`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::metrics::Metrics;

/// Latencies from 20 µs to ~2 s, log-spaced, and their statuses (one in
/// eight refused, as in a sale past its peak).
fn samples() -> Vec<(u16, Duration)> {
    (0..1024u32)
        .map(|i| {
            let ns = 20_000.0 * 10f64.powf(f64::from(i % 97) / 19.4);
            let status = if i % 8 == 0 { 409 } else { 201 };
            (status, Duration::from_nanos(ns as u64))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let metrics = Arc::new(Metrics::default());
    let samples = samples();
    let mut g = c.benchmark_group("latency");

    g.bench_function("record", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let (status, took) = samples[i & 1023];
            i += 1;
            metrics.purchase_answered(black_box(status), black_box(took));
        })
    });

    g.bench_function("record_2_threads", |b| {
        b.iter_custom(|iters| {
            let stop = Arc::new(AtomicBool::new(false));
            let other = {
                let (metrics, stop, samples) = (metrics.clone(), stop.clone(), samples.clone());
                std::thread::spawn(move || {
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let (status, took) = samples[i & 1023];
                        i += 1;
                        metrics.purchase_answered(black_box(status), black_box(took));
                    }
                })
            };
            let start = Instant::now();
            for i in 0..iters as usize {
                let (status, took) = samples[i & 1023];
                metrics.purchase_answered(black_box(status), black_box(took));
            }
            let elapsed = start.elapsed();
            stop.store(true, Ordering::Relaxed);
            other.join().unwrap();
            elapsed
        })
    });

    g.bench_function("clock_pair", |b| {
        b.iter(|| {
            let start = Instant::now();
            black_box(start.elapsed())
        })
    });

    g.bench_function("clock_pair_and_record", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let start = Instant::now();
            let status = samples[i & 1023].0;
            i += 1;
            metrics.purchase_answered(black_box(status), start.elapsed());
        })
    });
    g.finish();

    // The histograms saw every record: nothing was optimised away.
    let admitted = metrics
        .purchase_latency(gateway::metrics::LatencyClass::Admitted)
        .read()
        .count();
    assert!(admitted > 0);
}

criterion_group!(benches, bench);
criterion_main!(benches);
