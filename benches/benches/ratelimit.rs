//! Per-decision cost of the gateway's rate limiter (gateway::ratelimit).
//!
//! The limiter is GCRA: one `u64` "theoretical arrival time" per bucket. The
//! global bucket is a CAS loop on one atomic; per-client buckets live in a
//! sharded `Mutex<HashMap>`. Benchmarked here:
//! - `global/allow`: one decision on the global bucket, single thread;
//! - `global/contended_2_threads`: the same with two threads hammering it;
//! - `per_client/hit_10k_users`: a known user (the common case);
//! - `per_client/new_user_full_table`: a user not in a full table (sweep and
//!   fail-open path);
//! - `purchase_path`: clock read + global + per-user, as the purchase handler does;
//! - `clock/now_ns`: the clock read alone;
//! - `baseline/mutex_f64_bucket`: a textbook token bucket (tokens as f64 and a
//!   timestamp behind a mutex), for comparison.
//!
//! Run: `cargo bench -p benches --bench ratelimit`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::config::RateLimitConfig;
use gateway::ratelimit::RateLimiter;

fn config(global: u64, client: u64) -> RateLimitConfig {
    RateLimitConfig {
        global_rps: global,
        global_burst: global,
        per_client_rps: client,
        per_client_burst: client,
        per_ip_rps: 0,
        per_ip_burst: 0,
    }
}

/// Textbook token bucket for comparison.
struct MutexBucket {
    state: Mutex<(f64, Instant)>,
    rate: f64,
    burst: f64,
}

impl MutexBucket {
    fn check(&self) -> bool {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() * self.rate;
        s.0 = (s.0 + refill).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

fn bench(c: &mut Criterion) {
    // High rates so decisions are "allow" and the bucket state keeps moving,
    // which is the expensive case (a write per decision).
    let rl = RateLimiter::new(&config(1 << 30, 1 << 30));

    let mut g = c.benchmark_group("ratelimit");
    g.bench_function("clock/now_ns", |b| b.iter(|| black_box(rl.now_ns())));

    g.bench_function("global/allow", |b| {
        let mut now = rl.now_ns();
        b.iter(|| {
            now += 1;
            black_box(rl.check_global(black_box(now)))
        })
    });

    g.bench_function("global/contended_2_threads", |b| {
        let rl = Arc::new(RateLimiter::new(&config(1 << 30, 0)));
        b.iter_custom(|iters| {
            let stop = Arc::new(AtomicBool::new(false));
            let other = {
                let (rl, stop) = (rl.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut now = 1_000_000_000u64;
                    while !stop.load(Ordering::Relaxed) {
                        now += 1;
                        let _ = black_box(rl.check_global(now));
                    }
                })
            };
            let start = Instant::now();
            let mut now = 1_000_000_000u64;
            for _ in 0..iters {
                now += 1;
                let _ = black_box(rl.check_global(now));
            }
            let elapsed = start.elapsed();
            stop.store(true, Ordering::Relaxed);
            other.join().unwrap();
            elapsed
        })
    });

    g.bench_function("per_client/hit_10k_users", |b| {
        let now = rl.now_ns();
        let mut id = itoa::Buffer::new();
        for user in 0..10_000u64 {
            let _ = rl.check_user(id.format(user), now);
        }
        let mut user = 0u64;
        let mut now = now;
        b.iter(|| {
            user = (user + 7919) % 10_000;
            now += 1;
            black_box(rl.check_user(black_box(id.format(user)), now))
        })
    });

    g.bench_function("per_client/new_user_full_table", |b| {
        // 64 shards x 16: full after ~1k distinct users that stay active.
        let small = RateLimiter::with_capacity(&config(0, 1), 1024);
        let now = small.now_ns();
        let mut id = itoa::Buffer::new();
        for user in 0..10_000u64 {
            let _ = small.check_user(id.format(user), now);
        }
        let mut user = 1_000_000u64;
        b.iter(|| {
            user += 1;
            black_box(small.check_user(black_box(id.format(user)), now))
        })
    });

    g.bench_function("purchase_path", |b| {
        let mut user = 0u64;
        let mut id = itoa::Buffer::new();
        b.iter(|| {
            user = (user + 7919) % 10_000;
            let now = rl.now_ns();
            black_box(
                rl.check_global(now)
                    .and_then(|_| rl.check_user(black_box(id.format(user)), now)),
            )
        })
    });

    g.bench_function("baseline/mutex_f64_bucket", |b| {
        let bucket = MutexBucket {
            state: Mutex::new((1e9, Instant::now())),
            rate: 1e9,
            burst: 1e9,
        };
        b.iter(|| black_box(bucket.check()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
