//! Criterion benchmarks of the engine's hot paths: admission and sold-out
//! rejection on one thread, two threads on one hot SKU, many SKUs spread over
//! shards, and the expiry tick with a million pending orders.
//!
//! Every figure is per purchase (or per expired order), so criterion's
//! "elem/s" reads directly as purchases per second. The targets on the 2-core
//! development machine are ≥ 3M admissions/s and ≥ 10M sold-out rejections/s
//! on one thread. Run with `cargo bench -p benches --bench engine`, appending
//! a filter such as `admission` to run one group.
//!
//! Benchmarks that admit orders build a fresh engine for every criterion
//! sample and time only the purchases: an engine that lived across samples
//! would grow by millions of orders and measure its own memory, not the path.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use engine::{
    DiscardSink, Engine, EngineConfig, PurchaseOutcome, Rejection, SaleSpec, ORDERS_PER_SALE_MAX,
};

/// Long enough that nothing expires during a benchmark unless asked to.
const TTL_MS: u64 = 600_000;

/// Stock that no benchmark exhausts (`STOCK_MAX`), so every purchase by a new
/// user is admitted.
const STOCK_UNLIMITED: u64 = engine::STOCK_MAX;

fn spec(sku: &str, stock: u64) -> SaleSpec {
    SaleSpec {
        sku: sku.to_string(),
        stock,
        per_user_limit: 1,
        starts_at_ms: None,
        ends_at_ms: None,
        reservation_ttl_ms: TTL_MS,
    }
}

fn engine_with(shards: u32, skus: &[String], stock: u64) -> Engine {
    let engine = Engine::new(EngineConfig {
        shards,
        // Criterion may run tens of millions of admissions into one sale.
        max_orders_per_sale: ORDERS_PER_SALE_MAX,
    });
    for sku in skus {
        engine
            .create_sale(spec(sku, stock), 0, DiscardSink)
            .expect("sale is valid");
    }
    engine
}

/// Purchases `users` (one unit each, distinct users) of `sku` at time 0,
/// with a request id per purchase when asked. Returns how many were admitted.
fn buy_range(
    engine: &Engine,
    sku: &str,
    users: std::ops::Range<u64>,
    with_request_id: bool,
) -> u64 {
    let mut admitted = 0;
    let mut id = itoa::Buffer::new();
    for user in users {
        let request_id = with_request_id.then_some(user ^ 0x5eed);
        let outcome = engine.purchase(
            black_box(sku),
            black_box(id.format(user)),
            1,
            request_id,
            0,
            DiscardSink,
        );
        admitted += u64::from(matches!(black_box(outcome), PurchaseOutcome::Admitted(_)));
    }
    admitted
}

/// Times `iters` admissions on one thread into a fresh engine.
fn time_admissions(shards: u32, iters: u64, with_request_id: bool) -> Duration {
    let engine = engine_with(shards, &["hot".to_string()], STOCK_UNLIMITED);
    let start = Instant::now();
    let admitted = buy_range(&engine, "hot", 0..iters, with_request_id);
    let elapsed = start.elapsed();
    assert_eq!(admitted, iters, "every purchase should be admitted");
    // Dropping a large engine is not part of the measurement.
    drop(engine);
    elapsed
}

/// Benchmark 1: one thread admitting purchases of distinct users, ample stock.
fn admission(c: &mut Criterion) {
    let mut group = c.benchmark_group("admission");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    for (name, with_request_id) in [("no_request_id", false), ("request_id", true)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| time_admissions(1, iters, with_request_id));
        });
    }
    group.finish();
}

/// Benchmark 2: one thread rejected by a sold-out sale, the read-only path.
fn sold_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("sold_out");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    // A sale created with no stock, and one whose 1,000 units were bought.
    let empty = engine_with(1, &["hot".to_string()], 0);
    let exhausted = engine_with(1, &["hot".to_string()], 1_000);
    assert_eq!(buy_range(&exhausted, "hot", 0..1_000, true), 1_000);
    for (name, engine, with_request_id) in [
        ("stock_0", &empty, false),
        ("exhausted", &exhausted, false),
        ("exhausted_request_id", &exhausted, true),
    ] {
        group.bench_function(name, |b| {
            // Users above the ones that bought: none holds anything.
            let mut user = 1_000_000u64;
            let mut id = itoa::Buffer::new();
            b.iter(|| {
                user += 1;
                let request_id = with_request_id.then_some(user);
                let outcome = engine.purchase(
                    black_box("hot"),
                    id.format(user),
                    1,
                    request_id,
                    0,
                    DiscardSink,
                );
                debug_assert_eq!(outcome, PurchaseOutcome::Rejected(Rejection::SoldOut));
                outcome
            });
        });
    }
    group.finish();
}

/// Runs `threads` threads, each purchasing `per_thread` times from the SKUs
/// in `skus` (thread `t` starts at SKU `t` and steps by `threads`), and
/// returns the wall time from the first thread's start to the last thread's
/// finish. Spawning is not timed: the threads start together at a barrier.
fn time_threads(engine: &Engine, skus: &[String], threads: u64, per_thread: u64) -> Duration {
    let barrier = Barrier::new(threads as usize);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let mut admitted = 0u64;
                    let mut sku_index = t as usize % skus.len();
                    let mut id = itoa::Buffer::new();
                    for i in 0..per_thread {
                        // Distinct users across threads.
                        let user = id.format(t * per_thread + i);
                        let outcome =
                            engine.purchase(&skus[sku_index], user, 1, None, 0, DiscardSink);
                        admitted += u64::from(matches!(outcome, PurchaseOutcome::Admitted(_)));
                        sku_index += threads as usize;
                        while sku_index >= skus.len() {
                            sku_index -= skus.len();
                        }
                    }
                    let end = Instant::now();
                    assert_eq!(admitted, per_thread, "every purchase should be admitted");
                    (start, end)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .collect()
    });
    let start = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let end = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    end - start
}

/// Benchmark 3: threads admitting purchases of one hot SKU; one thread is the
/// reference.
fn hot_sku(c: &mut Criterion) {
    let mut group = c.benchmark_group("hot_sku");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    let skus = ["hot".to_string()];
    for threads in [1u64, 2] {
        group.bench_function(BenchmarkId::new("threads", threads), |b| {
            b.iter_custom(|iters| {
                let engine = engine_with(1, &skus, STOCK_UNLIMITED);
                let elapsed = time_threads(&engine, &skus, threads, iters.div_ceil(threads));
                drop(engine);
                elapsed
            });
        });
    }
    group.finish();
}

/// Benchmark 4: two threads buying round-robin across 1,000 SKUs, for several
/// shard counts, and one thread as the reference. A shard owns its SKUs' order map,
/// user holdings and expiry queue, so the count decides how often the two
/// threads meet on the same locks and queue tail.
fn many_skus(c: &mut Criterion) {
    let mut group = c.benchmark_group("many_skus");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(30);
    let skus: Vec<String> = (0..1_000).map(|i| format!("sku-{i:04}")).collect();
    // One thread on one shard is the reference the two-thread runs scale from.
    for (threads, shards) in [(1u64, 1u32), (2, 1), (2, 2), (2, 8), (2, 64)] {
        let id = BenchmarkId::new(format!("threads_{threads}/shards"), shards);
        group.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let engine = engine_with(shards, &skus, STOCK_UNLIMITED);
                let elapsed = time_threads(&engine, &skus, threads, iters.div_ceil(threads));
                drop(engine);
                elapsed
            });
        });
    }
    group.finish();
}

/// Orders pending in the expiry benchmarks.
const PENDING: u64 = 1_000_000;

/// An engine with `PENDING` reserved orders of one sale; order `i` is created
/// at `i` ms, so it expires at `i + TTL_MS` and a tick at `TTL_MS + j` finds
/// orders `0..=j` due. A first tick far before any is due moves the
/// admissions into the expiry heap, as a running server's ticks would have.
fn engine_pending(shards: u32) -> Engine {
    let engine = engine_with(shards, &["hot".to_string()], STOCK_UNLIMITED);
    let mut id = itoa::Buffer::new();
    for user in 0..PENDING {
        let outcome = engine.purchase("hot", id.format(user), 1, None, user, DiscardSink);
        assert!(matches!(outcome, PurchaseOutcome::Admitted(_)));
    }
    assert_eq!(engine.expire_due(0, DiscardSink).expired, 0);
    engine
}

/// Benchmark 5: `expire_due` with a million pending orders: a tick with nothing
/// due, and ticks that each expire a batch of `k` orders (per-order cost).
fn expiry(c: &mut Criterion) {
    let mut group = c.benchmark_group("expire_due_1M_pending");
    group.measurement_time(Duration::from_secs(3));
    group.sample_size(20);
    for shards in [1u32, 8] {
        let engine = engine_pending(shards);
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("nothing_due/shards", shards), |b| {
            b.iter(|| {
                let report = engine.expire_due(black_box(TTL_MS - 1), DiscardSink);
                debug_assert_eq!(report.expired, 0);
                report
            });
        });
    }

    for k in [1u64, 100, 10_000] {
        group.throughput(Throughput::Elements(k));
        group.bench_function(BenchmarkId::new("expire_batch", k), |b| {
            let mut engine = engine_pending(1);
            // Orders below `next` have expired already.
            let mut next = 0u64;
            b.iter_custom(|iters| {
                let mut elapsed = Duration::ZERO;
                let mut ticks_left = iters;
                while ticks_left > 0 {
                    if next + k > PENDING {
                        // Out of due orders: rebuild, untimed.
                        engine = engine_pending(1);
                        next = 0;
                    }
                    // Time as many ticks together as the pending orders allow.
                    let ticks = ticks_left.min((PENDING - next) / k);
                    let mut expired = 0;
                    let start = Instant::now();
                    for _ in 0..ticks {
                        let now_ms = TTL_MS + next + k - 1;
                        expired += engine.expire_due(black_box(now_ms), DiscardSink).expired;
                        next += k;
                    }
                    elapsed += start.elapsed();
                    assert_eq!(expired, ticks * k);
                    ticks_left -= ticks;
                }
                elapsed
            });
        });
    }
    group.finish();
}

criterion_group!(benches, admission, sold_out, hot_sku, many_skus, expiry);
criterion_main!(benches);
