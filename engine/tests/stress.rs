//! Multi-thread stress: many threads hammer one hot SKU; exactly the stock is
//! admitted, nobody passes their limit, and cancels, payments and expiries
//! return exactly the units they held. Sizes scale with
//! `FLASHSALE_STRESS_ATTEMPTS` (attempts per thread, default 1,000,000).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use engine::*;
use rand::{rngs::StdRng, Rng, SeedableRng};

const THREADS: u64 = 8;
const STOCK: u64 = 10_000;
const USERS: u64 = 50_000;

fn attempts_per_thread() -> u64 {
    std::env::var("FLASHSALE_STRESS_ATTEMPTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

#[test]
fn hot_sku_admits_exactly_the_stock_and_returns_it_exactly() {
    let engine = Engine::new(EngineConfig::with_shards(4));
    engine
        .create_sale(
            SaleSpec {
                sku: "hot".into(),
                stock: STOCK,
                per_user_limit: 1,
                starts_at_ms: None,
                ends_at_ms: None,
                reservation_ttl_ms: 60_000,
            },
            0,
            DiscardSink,
        )
        .unwrap();
    let attempts = attempts_per_thread();
    let admitted = Mutex::new(Vec::new());
    let sold_out = AtomicU64::new(0);
    let limited = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (engine, admitted, sold_out, limited) = (&engine, &admitted, &sold_out, &limited);
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(t);
                let mut mine = Vec::new();
                for i in 0..attempts {
                    let user = format!("user-{}", rng.gen_range(0..USERS));
                    // Half the attempts carry a request id, some repeated.
                    let request = (i % 2 == 0).then(|| rng.gen_range(0..3u64));
                    match engine.purchase("hot", &user, 1, request, 1_000, DiscardSink) {
                        PurchaseOutcome::Admitted(a) => mine.push((user, a)),
                        PurchaseOutcome::Replayed(a) => {
                            assert_eq!(*engine.order(a.order_id).unwrap().user_id, *user)
                        }
                        PurchaseOutcome::Rejected(Rejection::SoldOut) => {
                            sold_out.fetch_add(1, Ordering::Relaxed);
                        }
                        PurchaseOutcome::Rejected(Rejection::LimitExceeded) => {
                            limited.fetch_add(1, Ordering::Relaxed);
                        }
                        PurchaseOutcome::Rejected(Rejection::InProgress) => {}
                        other => panic!("unexpected outcome {other:?}"),
                    }
                }
                admitted.lock().unwrap().extend(mine);
            });
        }
    });
    let admitted = admitted.into_inner().unwrap();
    assert_eq!(admitted.len() as u64, STOCK, "admitted exactly the stock");
    let mut per_user: HashMap<&str, u32> = HashMap::new();
    for (user, a) in &admitted {
        *per_user.entry(user).or_default() += a.qty;
    }
    assert!(
        per_user.values().all(|&q| q <= 1),
        "a user passed the limit"
    );
    let view = engine.sale("hot", 1_000).unwrap();
    assert_eq!(view.remaining, 0);
    assert_eq!(view.reserved, STOCK);
    assert_eq!(view.phase, SalePhase::SoldOut);

    // Two threads race to cancel the same first third (each order twice),
    // while two others pay the second third; the rest expires.
    let third = admitted.len() / 3;
    let cancelled = AtomicU64::new(0);
    let paid = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (engine, admitted, cancelled) = (&engine, &admitted, &cancelled);
            s.spawn(move || {
                for (user, a) in &admitted[..third] {
                    match engine.cancel(a.order_id, user, 2_000, DiscardSink) {
                        OrderOutcome::Done { changed: true, .. } => {
                            cancelled.fetch_add(1, Ordering::Relaxed);
                        }
                        OrderOutcome::Done { changed: false, .. } => {}
                        other => panic!("cancel: {other:?}"),
                    }
                }
            });
        }
        for _ in 0..2 {
            let (engine, admitted, paid) = (&engine, &admitted, &paid);
            s.spawn(move || {
                for (_, a) in &admitted[third..2 * third] {
                    if let OrderOutcome::Done { changed: true, .. } =
                        engine.pay(a.order_id, 2_000, DiscardSink)
                    {
                        paid.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(
        cancelled.load(Ordering::Relaxed),
        third as u64,
        "each cancel returned once"
    );
    assert_eq!(paid.load(Ordering::Relaxed), third as u64);
    let view = engine.sale("hot", 2_000).unwrap();
    assert_eq!(view.remaining, third as u64);
    assert_eq!(view.paid, third as u64);

    // Expiry from two threads at once: every still-reserved order expires once.
    let expired = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (engine, expired) = (&engine, &expired);
            s.spawn(move || {
                let report = engine.expire_due(1_000 + 60_000, DiscardSink);
                expired.fetch_add(report.expired, Ordering::Relaxed);
            });
        }
    });
    // A shard skipped because the other thread held it is done by that thread.
    let rest = engine.expire_due(1_000 + 60_000, DiscardSink).expired;
    let expired = expired.load(Ordering::Relaxed) + rest;
    assert_eq!(expired, STOCK - 2 * third as u64);
    let view = engine.sale("hot", 61_000).unwrap();
    assert_eq!(view.remaining, STOCK - third as u64);
    assert_eq!(view.reserved, 0);
    assert_eq!(view.remaining + view.paid, STOCK);
}

/// Many threads, many SKUs, quantities above one and limits above one.
#[test]
fn many_skus_conserve_stock_and_limits() {
    let engine = Engine::new(EngineConfig::with_shards(3));
    let skus: Vec<String> = (0..16).map(|i| format!("sku-{i}")).collect();
    for sku in &skus {
        engine
            .create_sale(
                SaleSpec {
                    sku: sku.clone(),
                    stock: 500,
                    per_user_limit: 3,
                    starts_at_ms: None,
                    ends_at_ms: None,
                    reservation_ttl_ms: 10,
                },
                0,
                DiscardSink,
            )
            .unwrap();
    }
    let attempts = (attempts_per_thread() / 10).max(1_000);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (engine, skus) = (&engine, &skus);
            s.spawn(move || {
                let mut rng = StdRng::seed_from_u64(100 + t);
                let mut now = 0;
                for _ in 0..attempts {
                    now += 1;
                    let sku = &skus[rng.gen_range(0..skus.len())];
                    let qty = rng.gen_range(1..=3);
                    let user = format!("🙂{}", rng.gen_range(0..300));
                    if let PurchaseOutcome::Admitted(a) =
                        engine.purchase(sku, &user, qty, None, now, DiscardSink)
                    {
                        if rng.gen_bool(0.3) {
                            engine.cancel(a.order_id, &user, now, DiscardSink);
                        } else if rng.gen_bool(0.3) {
                            engine.pay(a.order_id, now, DiscardSink);
                        }
                    }
                    if now % 64 == 0 {
                        engine.expire_due(now, DiscardSink);
                    }
                }
            });
        }
    });
    let state = engine.state();
    for sale in &state.sales {
        let holding: u64 = state
            .orders
            .iter()
            .filter(|o| OrderId(o.order_id).ordinal() == sale.ordinal && o.state.holds_units())
            .map(|o| u64::from(o.qty))
            .sum();
        assert_eq!(
            sale.remaining + holding,
            sale.total,
            "conservation for {}",
            sale.sku
        );
    }
    let mut per_user: HashMap<(u32, String), u32> = HashMap::new();
    for o in state.orders.iter().filter(|o| o.state.holds_units()) {
        *per_user
            .entry((OrderId(o.order_id).ordinal(), o.user_id.clone()))
            .or_default() += o.qty;
    }
    assert!(per_user.values().all(|&q| q <= 3));
    let held: HashMap<(u32, String), u32> = state.holdings.iter().cloned().collect();
    assert_eq!(
        held, per_user,
        "quota counters equal the units held by orders"
    );
}

/// The same (user, request id) sent by several threads at once is admitted
/// at most once; every other copy is a replay of it or told to retry.
#[test]
fn concurrent_duplicates_admit_once() {
    let engine = Engine::new(EngineConfig::with_shards(2));
    engine
        .create_sale(
            SaleSpec {
                sku: "dup".into(),
                stock: 1_000_000,
                per_user_limit: 100_000,
                starts_at_ms: None,
                ends_at_ms: None,
                reservation_ttl_ms: 60_000,
            },
            0,
            DiscardSink,
        )
        .unwrap();
    let rounds = 2_000u64;
    let admitted = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (engine, admitted) = (&engine, &admitted);
            s.spawn(move || {
                for r in 0..rounds {
                    match engine.purchase("dup", "7", 1, Some(r), 1, DiscardSink) {
                        PurchaseOutcome::Admitted(_) => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        PurchaseOutcome::Replayed(a) => {
                            assert_eq!(&*engine.order(a.order_id).unwrap().user_id, "7")
                        }
                        PurchaseOutcome::Rejected(Rejection::InProgress) => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
            });
        }
    });
    assert_eq!(
        admitted.load(Ordering::Relaxed),
        rounds,
        "one admission per request id"
    );
    let view = engine.sale("dup", 1).unwrap();
    assert_eq!(view.reserved, rounds);
}
