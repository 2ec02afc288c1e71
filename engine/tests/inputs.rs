//! Every invalid input yields a typed rejection, never a panic.

use engine::*;

fn spec(sku: &str) -> SaleSpec {
    SaleSpec {
        sku: sku.into(),
        stock: 10,
        per_user_limit: 2,
        starts_at_ms: None,
        ends_at_ms: None,
        reservation_ttl_ms: 1_000,
    }
}

fn engine_with(sku: &str) -> Engine {
    let engine = Engine::new(EngineConfig::with_shards(2));
    engine.create_sale(spec(sku), 0, DiscardSink).unwrap();
    engine
}

/// A log written before dot-segment skus were refused may hold one: it
/// still replays.
#[test]
fn a_logged_dot_segment_sale_replays() {
    let engine = Engine::new(EngineConfig::with_shards(2));
    let event = engine::Event::SaleCreated {
        ordinal: 0,
        sku: "..".to_string(),
        stock: 5,
        per_user_limit: 1,
        starts_at_ms: None,
        ends_at_ms: None,
        reservation_ttl_ms: 60_000,
    };
    engine.apply(&event).unwrap();
    assert!(engine.sale("..", 0).is_some());
}

#[test]
fn create_sale_rejections() {
    let engine = Engine::new(EngineConfig::with_shards(2));
    let check = |spec: SaleSpec, want: CreateSaleError| {
        assert_eq!(engine.create_sale(spec, 0, DiscardSink), Err(want));
    };
    check(spec(""), CreateSaleError::InvalidSku(SkuError::Empty));
    check(
        spec(&"a".repeat(65)),
        CreateSaleError::InvalidSku(SkuError::TooLong),
    );
    check(spec("a b"), CreateSaleError::InvalidSku(SkuError::BadChar));
    check(spec("é"), CreateSaleError::InvalidSku(SkuError::BadChar));
    check(spec("."), CreateSaleError::InvalidSku(SkuError::DotSegment));
    check(
        spec(".."),
        CreateSaleError::InvalidSku(SkuError::DotSegment),
    );
    check(
        SaleSpec {
            per_user_limit: 0,
            ..spec("a")
        },
        CreateSaleError::InvalidLimit,
    );
    check(
        SaleSpec {
            per_user_limit: QTY_MAX + 1,
            ..spec("a")
        },
        CreateSaleError::InvalidLimit,
    );
    check(
        SaleSpec {
            stock: STOCK_MAX + 1,
            ..spec("a")
        },
        CreateSaleError::StockTooLarge,
    );
    check(
        SaleSpec {
            starts_at_ms: Some(10),
            ends_at_ms: Some(10),
            ..spec("a")
        },
        CreateSaleError::InvalidWindow,
    );
    check(
        SaleSpec {
            starts_at_ms: Some(10),
            ends_at_ms: Some(5),
            ..spec("a")
        },
        CreateSaleError::InvalidWindow,
    );
    check(
        SaleSpec {
            reservation_ttl_ms: 0,
            ..spec("a")
        },
        CreateSaleError::InvalidTtl,
    );
    check(
        SaleSpec {
            reservation_ttl_ms: RESERVATION_TTL_MAX_MS + 1,
            ..spec("a")
        },
        CreateSaleError::InvalidTtl,
    );
    assert!(engine
        .create_sale(spec(&"a".repeat(64)), 0, DiscardSink)
        .is_ok());
    assert!(engine.create_sale(spec("A-z_0.9"), 0, DiscardSink).is_ok());
    check(spec("A-z_0.9"), CreateSaleError::Exists);
}

#[test]
fn purchase_rejections() {
    let engine = engine_with("s");
    let check = |sku: &str, qty: u32, want: Rejection| {
        assert_eq!(
            engine.purchase(sku, "1", qty, None, 0, DiscardSink),
            PurchaseOutcome::Rejected(want),
            "sku {sku:?} qty {qty}"
        );
    };
    check("s", 0, Rejection::InvalidQuantity);
    check("s", QTY_MAX + 1, Rejection::InvalidQuantity);
    check("s", 3, Rejection::LimitExceeded);
    check("", 1, Rejection::InvalidSku);
    check(&"s".repeat(65), 1, Rejection::InvalidSku);
    check("s/../x", 1, Rejection::InvalidSku);
    check("nope", 1, Rejection::UnknownSku);
    // Request id reused with another quantity, then another SKU.
    let engine2 = engine_with("s");
    engine2.create_sale(spec("t"), 0, DiscardSink).unwrap();
    let first = engine2.purchase("s", "9", 1, Some(5), 0, DiscardSink);
    assert!(matches!(first, PurchaseOutcome::Admitted(_)));
    assert_eq!(
        engine2.purchase("s", "9", 2, Some(5), 0, DiscardSink),
        PurchaseOutcome::Rejected(Rejection::RequestIdReused)
    );
    assert_eq!(
        engine2.purchase("t", "9", 1, Some(5), 0, DiscardSink),
        PurchaseOutcome::Rejected(Rejection::RequestIdReused)
    );
    let PurchaseOutcome::Admitted(a) = first else {
        unreachable!()
    };
    assert_eq!(
        engine2.purchase("s", "9", 1, Some(5), 0, DiscardSink),
        PurchaseOutcome::Replayed(a)
    );
    // Another user's identical request id is their own.
    assert!(matches!(
        engine2.purchase("s", "10", 1, Some(5), 0, DiscardSink),
        PurchaseOutcome::Admitted(_)
    ));
}

#[test]
fn sale_window_and_status_rejections() {
    let engine = Engine::new(EngineConfig::with_shards(1));
    engine
        .create_sale(
            SaleSpec {
                starts_at_ms: Some(100),
                ends_at_ms: Some(200),
                ..spec("w")
            },
            0,
            DiscardSink,
        )
        .unwrap();
    let buy = |now| engine.purchase("w", "1", 1, None, now, DiscardSink);
    assert_eq!(buy(99), PurchaseOutcome::Rejected(Rejection::NotStarted));
    assert_eq!(engine.sale("w", 99).unwrap().phase, SalePhase::Scheduled);
    assert!(matches!(buy(100), PurchaseOutcome::Admitted(_)));
    assert_eq!(buy(200), PurchaseOutcome::Rejected(Rejection::Ended));
    assert_eq!(engine.sale("w", 200).unwrap().phase, SalePhase::Ended);
    engine.pause("w", 150, DiscardSink).unwrap();
    assert_eq!(buy(150), PurchaseOutcome::Rejected(Rejection::Paused));
    engine.resume("w", 150, DiscardSink).unwrap();
    engine.end("w", 150, DiscardSink).unwrap();
    assert_eq!(buy(150), PurchaseOutcome::Rejected(Rejection::Ended));
    assert_eq!(
        engine.resume("w", 150, DiscardSink),
        Err(SaleOpError::Ended)
    );
    assert_eq!(engine.pause("w", 150, DiscardSink), Err(SaleOpError::Ended));
    assert_eq!(
        engine.add_stock("w", 1, 150, DiscardSink),
        Err(SaleOpError::Ended)
    );
    assert!(
        engine.end("w", 150, DiscardSink).is_ok(),
        "ending twice is idempotent"
    );
}

#[test]
fn stock_top_up_rejections() {
    let engine = engine_with("s");
    assert_eq!(
        engine.add_stock("s", 0, 0, DiscardSink),
        Err(SaleOpError::ZeroAdd)
    );
    assert_eq!(
        engine.add_stock("s", u64::MAX, 0, DiscardSink),
        Err(SaleOpError::StockOverflow)
    );
    assert_eq!(
        engine.add_stock("s", STOCK_MAX, 0, DiscardSink),
        Err(SaleOpError::StockOverflow)
    );
    assert_eq!(
        engine.add_stock("x", 1, 0, DiscardSink),
        Err(SaleOpError::UnknownSku)
    );
    assert_eq!(
        engine.add_stock("", 1, 0, DiscardSink),
        Err(SaleOpError::InvalidSku(SkuError::Empty))
    );
    let view = engine
        .add_stock("s", STOCK_MAX - 10, 0, DiscardSink)
        .unwrap();
    assert_eq!(view.stock, STOCK_MAX);
    assert_eq!(view.remaining, STOCK_MAX);
}

#[test]
fn order_rejections() {
    let engine = engine_with("s");
    let unknown = OrderId::new(0, 999);
    assert_eq!(
        engine.pay(unknown, 0, DiscardSink),
        OrderOutcome::Rejected(OrderRejection::UnknownOrder)
    );
    assert_eq!(
        engine.pay(OrderId(u64::MAX), 0, DiscardSink),
        OrderOutcome::Rejected(OrderRejection::UnknownOrder)
    );
    assert_eq!(
        engine.cancel(OrderId(u64::MAX), "1", 0, DiscardSink),
        OrderOutcome::Rejected(OrderRejection::UnknownOrder)
    );
    assert_eq!(engine.order(OrderId(u64::MAX)), None);
    let PurchaseOutcome::Admitted(a) = engine.purchase("s", "1", 2, None, 0, DiscardSink) else {
        panic!("admission expected")
    };
    // Someone else's order looks unknown.
    assert_eq!(
        engine.cancel(a.order_id, "2", 0, DiscardSink),
        OrderOutcome::Rejected(OrderRejection::UnknownOrder)
    );
    assert!(matches!(
        engine.pay(a.order_id, 0, DiscardSink),
        OrderOutcome::Done { changed: true, .. }
    ));
    assert!(matches!(
        engine.pay(a.order_id, 0, DiscardSink),
        OrderOutcome::Done { changed: false, .. }
    ));
    assert_eq!(
        engine.cancel(a.order_id, "1", 0, DiscardSink),
        OrderOutcome::Rejected(OrderRejection::Paid)
    );
}

/// A sink that refuses: nothing changes, the caller learns "unavailable".
#[test]
fn refused_events_leave_no_trace() {
    struct Refuse;
    impl EventSink for Refuse {
        fn emit(&mut self, _: &Event) -> Result<(), SinkError> {
            Err(SinkError::Full)
        }
    }
    let engine = engine_with("s");
    let before = engine.state();
    assert_eq!(
        engine.purchase("s", "1", 1, Some(3), 0, Refuse),
        PurchaseOutcome::Rejected(Rejection::Unavailable(SinkError::Full))
    );
    assert_eq!(
        engine.add_stock("s", 5, 0, Refuse),
        Err(SaleOpError::Unavailable(SinkError::Full))
    );
    assert_eq!(
        engine.pause("s", 0, Refuse),
        Err(SaleOpError::Unavailable(SinkError::Full))
    );
    let mut after = engine.state();
    // The refused admission burned sequence number 0; nothing else moved.
    assert_eq!(after.sales[0].next_seq, 1);
    after.sales[0].next_seq = 0;
    assert_eq!(after, before);
    // The same request id is decided again later, and gets a fresh id.
    let PurchaseOutcome::Admitted(a) = engine.purchase("s", "1", 1, Some(3), 0, DiscardSink) else {
        panic!("admission expected")
    };
    assert_eq!(a.order_id, OrderId::new(0, 1));
    let PurchaseOutcome::Admitted(b) = engine.purchase("s", "2", 1, None, 0, DiscardSink) else {
        panic!("admission expected")
    };
    assert_eq!(
        engine.cancel(b.order_id, "2", 0, Refuse),
        OrderOutcome::Rejected(OrderRejection::Unavailable(SinkError::Full))
    );
    assert_eq!(
        engine.pay(b.order_id, 0, Refuse),
        OrderOutcome::Rejected(OrderRejection::Unavailable(SinkError::Full))
    );
    assert_eq!(
        engine.expire_due(10_000, Refuse),
        ExpireReport {
            expired: 0,
            deferred: true
        }
    );
    assert_eq!(
        engine.order(b.order_id).unwrap().state,
        OrderState::Reserved
    );
    assert_eq!(engine.expire_due(10_000, DiscardSink).expired, 2);
}

/// A payment after expiry succeeds only if the units can be taken again.
#[test]
fn pay_after_expiry() {
    let engine = Engine::new(EngineConfig::with_shards(1));
    engine
        .create_sale(
            SaleSpec {
                stock: 1,
                per_user_limit: 1,
                ..spec("s")
            },
            0,
            DiscardSink,
        )
        .unwrap();
    let PurchaseOutcome::Admitted(a) = engine.purchase("s", "1", 1, None, 0, DiscardSink) else {
        panic!()
    };
    assert_eq!(engine.expire_due(1_000, DiscardSink).expired, 1);
    // Units free again: the late payment takes them.
    assert!(matches!(
        engine.pay(a.order_id, 1_001, DiscardSink),
        OrderOutcome::Done { changed: true, .. }
    ));
    assert_eq!(engine.sale("s", 1_001).unwrap().remaining, 0);
    // Second order: expires, someone else buys the unit, then payment fails.
    engine.add_stock("s", 1, 1_001, DiscardSink).unwrap();
    let PurchaseOutcome::Admitted(b) = engine.purchase("s", "2", 1, None, 1_001, DiscardSink)
    else {
        panic!()
    };
    assert_eq!(engine.expire_due(2_001, DiscardSink).expired, 1);
    assert!(matches!(
        engine.purchase("s", "3", 1, None, 2_002, DiscardSink),
        PurchaseOutcome::Admitted(_)
    ));
    assert_eq!(
        engine.pay(b.order_id, 2_003, DiscardSink),
        OrderOutcome::Rejected(OrderRejection::Expired)
    );
    assert_eq!(
        engine.cancel(b.order_id, "2", 2_003, DiscardSink),
        OrderOutcome::Rejected(OrderRejection::Expired)
    );
}

/// Malformed event streams are errors, not panics.
#[test]
fn apply_rejects_inconsistent_streams() {
    let engine = Engine::new(EngineConfig::with_shards(1));
    assert_eq!(
        engine.apply(&Event::Paused { ordinal: 3 }),
        Err(ApplyError::UnknownSale(3))
    );
    assert_eq!(
        engine.apply(&Event::Paid {
            order_id: 1,
            at_ms: 0,
            retaken: false
        }),
        Err(ApplyError::UnknownOrder(1))
    );
    let created = Event::SaleCreated {
        ordinal: 1,
        sku: "s".into(),
        stock: 1,
        per_user_limit: 1,
        starts_at_ms: None,
        ends_at_ms: None,
        reservation_ttl_ms: 10,
    };
    assert_eq!(
        engine.apply(&created),
        Err(ApplyError::SaleOrdinal {
            ordinal: 1,
            expected: 0
        })
    );
    let Event::SaleCreated {
        sku,
        stock,
        per_user_limit,
        starts_at_ms,
        ends_at_ms,
        reservation_ttl_ms,
        ..
    } = created
    else {
        unreachable!()
    };
    engine
        .apply(&Event::SaleCreated {
            ordinal: 0,
            sku,
            stock,
            per_user_limit,
            starts_at_ms,
            ends_at_ms,
            reservation_ttl_ms,
        })
        .unwrap();
    let admit = |seq, user: &str| Event::Admitted {
        order_id: OrderId::new(0, seq).0,
        user_id: user.to_string(),
        qty: 1,
        request_id: None,
        created_at_ms: 0,
        expires_at_ms: 10,
    };
    engine.apply(&admit(0, "1")).unwrap();
    assert_eq!(
        engine.apply(&admit(0, "2")),
        Err(ApplyError::DuplicateOrder(OrderId::new(0, 0).0))
    );
    assert!(
        matches!(engine.apply(&admit(1, "2")), Err(ApplyError::Invalid(_))),
        "oversell in a log"
    );
    let cancel = Event::Cancelled {
        order_id: OrderId::new(0, 0).0,
        at_ms: 1,
    };
    engine.apply(&cancel).unwrap();
    assert!(
        matches!(engine.apply(&cancel), Err(ApplyError::Invalid(_))),
        "double release"
    );
}

/// A sale makes at most `max_orders_per_sale` orders, cancelled ones
/// included, however much stock comes back: buyers who admit and cancel
/// over and over cannot grow its orders without end. A replay still gets
/// its order, and replaying the log never refuses what was admitted.
#[test]
fn order_cap_bounds_a_sale_with_churn() {
    let engine = Engine::new(EngineConfig {
        shards: 2,
        max_orders_per_sale: 3,
    });
    let mut log: Vec<Event> = Vec::new();
    engine.create_sale(spec("cap"), 0, &mut log).unwrap();
    let mut orders = Vec::new();
    for user in 1..=3u64 {
        match engine.purchase("cap", &user.to_string(), 1, Some(user), 1, &mut log) {
            PurchaseOutcome::Admitted(a) => orders.push((user.to_string(), a)),
            other => panic!("user {user}: {other:?}"),
        }
    }
    // Stock returns, but the sale has made its three orders.
    for (user, a) in &orders {
        assert!(matches!(
            engine.cancel(a.order_id, user, 2, &mut log),
            OrderOutcome::Done { .. }
        ));
    }
    assert_eq!(engine.sale("cap", 3).unwrap().remaining, 10);
    let rejected = engine.purchase("cap", "9", 1, Some(9), 3, &mut log);
    assert_eq!(rejected, PurchaseOutcome::Rejected(Rejection::OrderLimit));
    assert_eq!(Rejection::OrderLimit.as_str(), "order_limit");
    // The refusal changed nothing: no event, no order number spent.
    let events = log.len();
    assert_eq!(
        engine.purchase("cap", "9", 1, None, 3, &mut log),
        PurchaseOutcome::Rejected(Rejection::OrderLimit)
    );
    assert_eq!(log.len(), events);
    // A retry of an admitted request is answered with its order.
    assert!(matches!(
        engine.purchase("cap", "1", 1, Some(1), 4, &mut log),
        PurchaseOutcome::Replayed(a) if a.order_id == orders[0].1.order_id
    ));
    // Other refusals keep their own reason.
    assert_eq!(
        engine.purchase("cap", "9", 5, None, 4, &mut log),
        PurchaseOutcome::Rejected(Rejection::LimitExceeded)
    );
    // Purchases the log refused made no order and do not count: a fresh
    // sale with the same cap still takes three after three refusals.
    struct FullSink;
    impl EventSink for FullSink {
        fn emit(&mut self, _: &Event) -> Result<(), SinkError> {
            Err(SinkError::Full)
        }
    }
    engine.create_sale(spec("cap2"), 0, &mut log).unwrap();
    for user in 1..=3u64 {
        assert_eq!(
            engine.purchase("cap2", &user.to_string(), 1, None, 1, FullSink),
            PurchaseOutcome::Rejected(Rejection::Unavailable(SinkError::Full))
        );
    }
    // ... and left no user behind: the table holds only buyers with orders.
    assert_eq!(
        engine.purchase("cap2", "never-bought", 1, Some(1), 1, FullSink),
        PurchaseOutcome::Rejected(Rejection::Unavailable(SinkError::Full))
    );
    assert_eq!(engine.user_count(), 3);
    for user in 1..=3u64 {
        assert!(matches!(
            engine.purchase("cap2", &user.to_string(), 1, None, 1, &mut log),
            PurchaseOutcome::Admitted(_)
        ));
    }
    assert_eq!(
        engine.purchase("cap2", "4", 1, None, 1, &mut log),
        PurchaseOutcome::Rejected(Rejection::OrderLimit)
    );
    // Recovery applies the log whatever the cap.
    let replayed = Engine::new(EngineConfig {
        shards: 1,
        max_orders_per_sale: 1,
    });
    for e in &log {
        replayed.apply(e).unwrap();
    }
    assert_eq!(replayed.state(), engine.state());
}

/// A user id is 1 to `USER_ID_LEN_MAX` bytes of any UTF-8; outside that it
/// is a typed rejection, and a cancel by such an id finds nothing.
#[test]
fn user_ids_are_one_to_128_bytes() {
    let engine = Engine::new(EngineConfig::with_shards(2));
    engine
        .create_sale(
            SaleSpec {
                stock: 100,
                ..spec("s")
            },
            0,
            DiscardSink,
        )
        .unwrap();
    let longest = "é".repeat(USER_ID_LEN_MAX / 2);
    assert_eq!(longest.len(), USER_ID_LEN_MAX);
    for ok in [
        "a",
        "550e8400-e29b-41d4-a716-446655440000",
        "漢字",
        longest.as_str(),
    ] {
        assert!(
            matches!(
                engine.purchase("s", ok, 1, None, 0, DiscardSink),
                PurchaseOutcome::Admitted(_)
            ),
            "{ok:?}"
        );
    }
    let too_long = format!("{longest}x");
    for bad in ["", too_long.as_str()] {
        assert_eq!(
            engine.purchase("s", bad, 1, None, 0, DiscardSink),
            PurchaseOutcome::Rejected(Rejection::InvalidUser),
            "{bad:?}"
        );
    }
    assert_eq!(Rejection::InvalidUser.as_str(), "invalid_user");
    assert_eq!(engine.user_count(), 4);
    let admitted_too_long = Event::Admitted {
        order_id: OrderId::new(0, 99).0,
        user_id: too_long,
        qty: 1,
        request_id: None,
        created_at_ms: 0,
        expires_at_ms: 1_000,
    };
    assert!(matches!(
        engine.apply(&admitted_too_long),
        Err(ApplyError::Invalid(_))
    ));
}

/// Every user id hashes alike in this engine, so only their bytes tell
/// them apart: each still has its own limit, its own orders and its own
/// request ids, and the log and a snapshot rebuild them the same.
#[test]
fn ids_with_the_same_hash_stay_distinct() {
    let engine = Engine::with_colliding_user_hashes(EngineConfig::with_shards(2));
    let mut log: Vec<Event> = Vec::new();
    engine.create_sale(spec("s"), 0, &mut log).unwrap();
    let users = ["alice", "alicf", "ü", "u\u{308}"];
    let mut orders = Vec::new();
    for user in users {
        let PurchaseOutcome::Admitted(a) = engine.purchase("s", user, 2, Some(1), 0, &mut log)
        else {
            panic!("{user:?} shares a limit");
        };
        orders.push(a);
        assert_eq!(
            engine.purchase("s", user, 1, None, 0, &mut log),
            PurchaseOutcome::Rejected(Rejection::LimitExceeded),
            "{user:?} has its own limit, now spent"
        );
    }
    for (user, a) in users.iter().zip(&orders) {
        assert_eq!(&*engine.order(a.order_id).unwrap().user_id, *user);
        // The same request id is each user's own.
        assert_eq!(
            engine.purchase("s", user, 2, Some(1), 0, &mut log),
            PurchaseOutcome::Replayed(*a)
        );
        for other in users.iter().filter(|o| *o != user) {
            assert_eq!(
                engine.cancel(a.order_id, other, 1, &mut log),
                OrderOutcome::Rejected(OrderRejection::UnknownOrder),
                "{other:?} cancelled {user:?}'s order"
            );
        }
    }
    assert!(matches!(
        engine.cancel(orders[0].order_id, "alice", 1, &mut log),
        OrderOutcome::Done { changed: true, .. }
    ));
    assert_eq!(engine.user_count(), users.len() as u64);
    let replayed = Engine::with_colliding_user_hashes(EngineConfig::with_shards(1));
    for e in &log {
        replayed.apply(e).unwrap();
    }
    assert_eq!(replayed.state(), engine.state());
    let mut snapshot: Vec<Event> = Vec::new();
    engine.export(&mut snapshot).unwrap();
    let restored = Engine::new(EngineConfig::with_shards(3));
    for e in &snapshot {
        restored.apply(e).unwrap();
    }
    assert_eq!(restored.state(), engine.state());
}

/// A refused purchase by a new id leaves no user behind, so invented ids
/// cannot grow the user table; one that succeeds stays for its order.
#[test]
fn refused_new_users_leave_nothing() {
    let engine = Engine::new(EngineConfig::with_shards(2));
    engine
        .create_sale(
            SaleSpec {
                stock: 1,
                ..spec("s")
            },
            0,
            DiscardSink,
        )
        .unwrap();
    struct QueueFull;
    impl EventSink for QueueFull {
        fn emit(&mut self, _: &Event) -> Result<(), SinkError> {
            Err(SinkError::Full)
        }
    }
    for i in 0..1_000 {
        let id = format!("bot-{i}");
        assert!(matches!(
            engine.purchase("s", &id, 1, Some(i), 0, QueueFull),
            PurchaseOutcome::Rejected(Rejection::Unavailable(_))
        ));
    }
    assert_eq!(engine.user_count(), 0);
    assert!(matches!(
        engine.purchase("s", "buyer", 1, None, 0, DiscardSink),
        PurchaseOutcome::Admitted(_)
    ));
    // Sold out: refused before any write.
    for i in 0..1_000 {
        let id = format!("bot-{i}");
        assert_eq!(
            engine.purchase("s", &id, 1, Some(i), 0, DiscardSink),
            PurchaseOutcome::Rejected(Rejection::SoldOut)
        );
    }
    assert_eq!(engine.user_count(), 1);
    assert_eq!(engine.state().idempotency, vec![]);
}
