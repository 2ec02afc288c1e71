//! Heap bytes the engine holds per admitted order.
//!
//! A counting global allocator tracks live and peak heap bytes. For each
//! scenario the binary builds an engine with one sale (limit 1 per user),
//! admits `N` orders from distinct users, with and without request ids, and
//! prints the growth of live heap bytes divided by `N`: right after the
//! admissions (the expiry queue still holds them), after one expiry tick with
//! nothing due (they have moved into the expiry heap, the steady state of a
//! running server), and the peak during the run. The goal is ≤ 128 bytes per
//! order. Run with `cargo run --release -p benches --bin engine_memory`;
//! optional arguments: the order count (default 1,000,000) and shard counts
//! (default 1; one sale lives in one shard, so the count barely matters).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use engine::{DiscardSink, Engine, EngineConfig, PurchaseOutcome, SaleSpec, ORDERS_PER_SALE_MAX};

/// Wraps the system allocator and counts the bytes it has handed out.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn grew(size: usize) {
        let live = LIVE_BYTES.fetch_add(size, Ordering::Relaxed) + size;
        PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
    fn shrank(size: usize) {
        LIVE_BYTES.fetch_sub(size, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the wrapper only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            Counting::grew(layout.size());
        }
        ptr
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            Counting::grew(layout.size());
        }
        ptr
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        Counting::shrank(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's pointer, layout and size.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            Counting::shrank(layout.size());
            Counting::grew(new_size);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes per order at three moments of one scenario.
struct Measured {
    after_admit: f64,
    after_tick: f64,
    peak: f64,
    allocations: f64,
}

fn measure(shards: u32, orders: u64, with_request_id: bool) -> Measured {
    let base = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(base, Ordering::Relaxed);
    let allocations_before = ALLOCATIONS.load(Ordering::Relaxed);
    let engine = Engine::new(EngineConfig {
        shards,
        // Criterion may run tens of millions of admissions into one sale.
        max_orders_per_sale: ORDERS_PER_SALE_MAX,
    });
    let spec = SaleSpec {
        sku: "hot".to_string(),
        stock: orders,
        per_user_limit: 1,
        starts_at_ms: None,
        ends_at_ms: None,
        reservation_ttl_ms: 600_000,
    };
    engine
        .create_sale(spec, 0, DiscardSink)
        .expect("sale is valid");
    let empty = LIVE_BYTES.load(Ordering::Relaxed);
    let mut id = itoa::Buffer::new();
    for user in 0..orders {
        let request_id = with_request_id.then_some(user ^ 0x5eed);
        // Ids like a shop's (`u_81723`, here up to `u_999999`: 3 to 8 bytes).
        let mut uid = [0u8; 24];
        let digits = id.format(user).as_bytes();
        uid[..2].copy_from_slice(b"u_");
        uid[2..2 + digits.len()].copy_from_slice(digits);
        let uid = std::str::from_utf8(&uid[..2 + digits.len()]).expect("ASCII");
        let outcome = engine.purchase("hot", uid, 1, request_id, 0, DiscardSink);
        assert!(
            matches!(outcome, PurchaseOutcome::Admitted(_)),
            "{outcome:?}"
        );
    }
    let admitted = LIVE_BYTES.load(Ordering::Relaxed);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations_before;
    // Nothing is due: the tick only moves the admissions into the heap.
    assert_eq!(engine.expire_due(1, DiscardSink).expired, 0);
    let ticked = LIVE_BYTES.load(Ordering::Relaxed);
    let peak = PEAK_BYTES.load(Ordering::Relaxed);
    assert_eq!(engine.order_count(), orders);
    drop(engine);
    let per_order = |bytes: usize| bytes.saturating_sub(empty) as f64 / orders as f64;
    Measured {
        after_admit: per_order(admitted),
        after_tick: per_order(ticked),
        peak: per_order(peak),
        allocations: allocations as f64 / orders as f64,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let orders: u64 = args
        .next()
        .map(|a| a.replace('_', "").parse().expect("order count"))
        .unwrap_or(1_000_000);
    let mut shard_counts: Vec<u32> = args.map(|a| a.parse().expect("shard count")).collect();
    if shard_counts.is_empty() {
        shard_counts = vec![1];
    }
    println!(
        "heap bytes per admitted order ({orders} orders, limit 1, distinct users; goal <= 128)"
    );
    println!(
        "{:>6}  {:<13} {:>12} {:>12} {:>10} {:>12}",
        "shards", "request ids", "after admit", "after tick", "peak", "allocs/order"
    );
    for &shards in &shard_counts {
        for with_request_id in [false, true] {
            let m = measure(shards, orders, with_request_id);
            println!(
                "{:>6}  {:<13} {:>12.1} {:>12.1} {:>10.1} {:>12.3}",
                shards,
                if with_request_id { "yes" } else { "no" },
                m.after_admit,
                m.after_tick,
                m.peak,
                m.allocations,
            );
        }
    }
}
