//! Property test: random operation sequences against a simple sequential
//! reference model, then replay of the emitted events (and of the exported
//! snapshot stream) into fresh engines must rebuild an identical state.

use std::collections::BTreeMap;

use engine::*;
use proptest::prelude::*;

const SKUS: [&str; 3] = ["hot", "cold.1", "x-2"];
/// The buyers: a UUID, multibyte UTF-8 (two spellings of one glyph, which
/// are different ids), ids one byte apart, and the longest id allowed.
const USERS: [&str; 6] = [
    "8f14e45f-ceea-467f-a0e1-4f3a8b2c9d10",
    "ü",
    "u\u{308}",
    "u_81723",
    "u_81723 ",
    "ß漢字🙂xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

#[derive(Clone, Debug)]
enum ModelOp {
    Create {
        sku: usize,
        stock: u64,
        limit: u32,
        window: Option<(u64, u64)>,
        ttl: u64,
    },
    Purchase {
        sku: usize,
        user: usize,
        qty: u32,
        request: Option<u64>,
    },
    Pay {
        order: usize,
    },
    Cancel {
        order: usize,
        user: usize,
    },
    Expire,
    AddStock {
        sku: usize,
        add: u64,
    },
    Pause {
        sku: usize,
    },
    Resume {
        sku: usize,
    },
    End {
        sku: usize,
    },
    Advance {
        ms: u64,
    },
}

fn op() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        1 => (0..3usize, 0..6u64, 0..4u32, proptest::option::of((0..50u64, 1..400u64)), 1..300u64)
            .prop_map(|(sku, stock, limit, window, ttl)| ModelOp::Create {
                sku, stock, limit,
                window: window.map(|(s, len)| (s, s + len)),
                ttl,
            }),
        8 => (0..3usize, 0..USERS.len(), 0..4u32, proptest::option::of(0..4u64))
            .prop_map(|(sku, user, qty, request)| ModelOp::Purchase { sku, user, qty, request }),
        2 => (0..40usize).prop_map(|order| ModelOp::Pay { order }),
        2 => (0..40usize, 0..USERS.len()).prop_map(|(order, user)| ModelOp::Cancel { order, user }),
        1 => Just(ModelOp::Expire),
        1 => (0..3usize, 0..4u64).prop_map(|(sku, add)| ModelOp::AddStock { sku, add }),
        1 => (0..3usize).prop_map(|sku| ModelOp::Pause { sku }),
        1 => (0..3usize).prop_map(|sku| ModelOp::Resume { sku }),
        1 => (0..3usize).prop_map(|sku| ModelOp::End { sku }),
        3 => (0..120u64).prop_map(|ms| ModelOp::Advance { ms }),
    ]
}

#[derive(Clone, Debug)]
struct MSale {
    ordinal: u32,
    total: u64,
    remaining: u64,
    paid: u64,
    limit: u32,
    start: Option<u64>,
    end: Option<u64>,
    ttl: u64,
    status: &'static str,
    next_seq: u64,
}

#[derive(Clone, Debug)]
struct MOrder {
    sku: usize,
    user: usize,
    qty: u32,
    state: OrderState,
    created: u64,
    expires: u64,
}

/// The reference: plain maps, one thread, every rule spelled out in order.
#[derive(Default)]
struct Model {
    sales: BTreeMap<usize, MSale>,
    ordinals: u32,
    orders: BTreeMap<u64, MOrder>,
    held: BTreeMap<(usize, usize), u32>,
    idem: BTreeMap<(usize, u64), u64>,
}

impl Model {
    fn create(
        &mut self,
        sku: usize,
        stock: u64,
        limit: u32,
        window: Option<(u64, u64)>,
        ttl: u64,
    ) -> Result<(), CreateSaleError> {
        if limit == 0 {
            return Err(CreateSaleError::InvalidLimit);
        }
        if self.sales.contains_key(&sku) {
            return Err(CreateSaleError::Exists);
        }
        let ordinal = self.ordinals;
        self.ordinals += 1;
        self.sales.insert(
            sku,
            MSale {
                ordinal,
                total: stock,
                remaining: stock,
                paid: 0,
                limit,
                start: window.map(|w| w.0),
                end: window.map(|w| w.1),
                ttl,
                status: "open",
                next_seq: 0,
            },
        );
        Ok(())
    }

    fn purchase(
        &mut self,
        sku: usize,
        user: usize,
        qty: u32,
        request: Option<u64>,
        now: u64,
    ) -> PurchaseOutcome {
        use PurchaseOutcome::*;
        if qty == 0 {
            return Rejected(Rejection::InvalidQuantity);
        }
        let Some(sale) = self.sales.get(&sku).cloned() else {
            return Rejected(Rejection::UnknownSku);
        };
        if let Some(r) = request {
            if let Some(&id) = self.idem.get(&(user, r)) {
                let o = &self.orders[&id];
                if o.sku != sku || o.qty != qty {
                    return Rejected(Rejection::RequestIdReused);
                }
                return Replayed(Admission {
                    order_id: OrderId(id),
                    qty,
                    created_at_ms: o.created,
                    expires_at_ms: o.expires,
                });
            }
        }
        if sale.status == "ended" || sale.end.is_some_and(|e| now >= e) {
            return Rejected(Rejection::Ended);
        }
        if sale.status == "paused" {
            return Rejected(Rejection::Paused);
        }
        if sale.start.is_some_and(|s| now < s) {
            return Rejected(Rejection::NotStarted);
        }
        if qty > sale.limit {
            return Rejected(Rejection::LimitExceeded);
        }
        if sale.remaining < u64::from(qty) {
            return Rejected(Rejection::SoldOut);
        }
        let held = self.held.entry((sku, user)).or_default();
        if *held + qty > sale.limit {
            return Rejected(Rejection::LimitExceeded);
        }
        *held += qty;
        let sale = self.sales.get_mut(&sku).unwrap();
        sale.remaining -= u64::from(qty);
        let id = OrderId::new(sale.ordinal, sale.next_seq);
        sale.next_seq += 1;
        let expires = now + sale.ttl;
        self.orders.insert(
            id.0,
            MOrder {
                sku,
                user,
                qty,
                state: OrderState::Reserved,
                created: now,
                expires,
            },
        );
        if let Some(r) = request {
            self.idem.insert((user, r), id.0);
        }
        Admitted(Admission {
            order_id: id,
            qty,
            created_at_ms: now,
            expires_at_ms: expires,
        })
    }

    fn release(&mut self, id: u64, to: OrderState) {
        let o = self.orders.get_mut(&id).unwrap();
        o.state = to;
        let (sku, user, qty) = (o.sku, o.user, o.qty);
        self.sales.get_mut(&sku).unwrap().remaining += u64::from(qty);
        *self.held.get_mut(&(sku, user)).unwrap() -= qty;
    }

    /// (state after, changed) or the rejection.
    fn pay(&mut self, id: u64) -> Result<bool, OrderRejection> {
        let Some(o) = self.orders.get(&id).cloned() else {
            return Err(OrderRejection::UnknownOrder);
        };
        match o.state {
            OrderState::Paid => return Ok(false),
            OrderState::Cancelled => return Err(OrderRejection::Cancelled),
            OrderState::Reserved => {}
            OrderState::Expired => {
                let sale = &self.sales[&o.sku];
                let held = self.held.get(&(o.sku, o.user)).copied().unwrap_or(0);
                if held + o.qty > sale.limit || sale.remaining < u64::from(o.qty) {
                    return Err(OrderRejection::Expired);
                }
                *self.held.entry((o.sku, o.user)).or_default() += o.qty;
                self.sales.get_mut(&o.sku).unwrap().remaining -= u64::from(o.qty);
            }
        }
        self.orders.get_mut(&id).unwrap().state = OrderState::Paid;
        self.sales.get_mut(&o.sku).unwrap().paid += u64::from(o.qty);
        Ok(true)
    }

    fn cancel(&mut self, id: u64, user: usize) -> Result<bool, OrderRejection> {
        let Some(o) = self.orders.get(&id).cloned() else {
            return Err(OrderRejection::UnknownOrder);
        };
        if o.user != user {
            return Err(OrderRejection::UnknownOrder);
        }
        match o.state {
            OrderState::Reserved => {
                self.release(id, OrderState::Cancelled);
                Ok(true)
            }
            OrderState::Cancelled => Ok(false),
            OrderState::Paid => Err(OrderRejection::Paid),
            OrderState::Expired => Err(OrderRejection::Expired),
        }
    }

    fn expire(&mut self, now: u64) -> u64 {
        let due: Vec<u64> = self
            .orders
            .iter()
            .filter(|(_, o)| o.state == OrderState::Reserved && o.expires <= now)
            .map(|(&id, _)| id)
            .collect();
        for &id in &due {
            self.release(id, OrderState::Expired);
        }
        due.len() as u64
    }

    fn add_stock(&mut self, sku: usize, add: u64) -> Result<(), SaleOpError> {
        let Some(sale) = self.sales.get_mut(&sku) else {
            return Err(SaleOpError::UnknownSku);
        };
        if add == 0 {
            return Err(SaleOpError::ZeroAdd);
        }
        if sale.status == "ended" {
            return Err(SaleOpError::Ended);
        }
        sale.total += add;
        sale.remaining += add;
        Ok(())
    }

    fn set_status(&mut self, sku: usize, to: &'static str) -> Result<(), SaleOpError> {
        let Some(sale) = self.sales.get_mut(&sku) else {
            return Err(SaleOpError::UnknownSku);
        };
        if sale.status == to {
            return Ok(());
        }
        if sale.status == "ended" {
            return Err(SaleOpError::Ended);
        }
        sale.status = to;
        Ok(())
    }
}

fn order_ids(model: &Model) -> Vec<u64> {
    model.orders.keys().copied().collect()
}

/// An engine keyed as in production, or one where every user id has the
/// same hash: the outcomes must be the same.
fn new_engine(shards: u32, colliding: bool) -> Engine {
    let config = EngineConfig::with_shards(shards);
    if colliding {
        Engine::with_colliding_user_hashes(config)
    } else {
        Engine::new(config)
    }
}

fn run(ops: Vec<ModelOp>, shards: u32, colliding: bool) -> Result<(), TestCaseError> {
    let engine = new_engine(shards, colliding);
    let mut model = Model::default();
    let mut events: Vec<Event> = Vec::new();
    let mut now = 1_000u64;
    for op in ops {
        match op {
            ModelOp::Create {
                sku,
                stock,
                limit,
                window,
                ttl,
            } => {
                let spec = SaleSpec {
                    sku: SKUS[sku].to_string(),
                    stock,
                    per_user_limit: limit,
                    starts_at_ms: window.map(|w| now + w.0),
                    ends_at_ms: window.map(|w| now + w.1),
                    reservation_ttl_ms: ttl,
                };
                let got = engine.create_sale(spec, now, &mut events).map(|_| ());
                let want = model.create(
                    sku,
                    stock,
                    limit,
                    window.map(|w| (now + w.0, now + w.1)),
                    ttl,
                );
                prop_assert_eq!(got, want);
            }
            ModelOp::Purchase {
                sku,
                user,
                qty,
                request,
            } => {
                let got = engine.purchase(SKUS[sku], USERS[user], qty, request, now, &mut events);
                let want = model.purchase(sku, user, qty, request, now);
                prop_assert_eq!(got, want);
            }
            ModelOp::Pay { order } => {
                let ids = order_ids(&model);
                let id = ids.get(order).copied().unwrap_or(u64::MAX >> 1);
                let got = match engine.pay(OrderId(id), now, &mut events) {
                    OrderOutcome::Done { order, changed } => {
                        prop_assert_eq!(order.state, OrderState::Paid);
                        Ok(changed)
                    }
                    OrderOutcome::Rejected(r) => Err(r),
                };
                prop_assert_eq!(got, model.pay(id));
            }
            ModelOp::Cancel { order, user } => {
                let ids = order_ids(&model);
                let id = ids.get(order).copied().unwrap_or(7);
                let got = match engine.cancel(OrderId(id), USERS[user], now, &mut events) {
                    OrderOutcome::Done { order, changed } => {
                        prop_assert_eq!(order.state, OrderState::Cancelled);
                        Ok(changed)
                    }
                    OrderOutcome::Rejected(r) => Err(r),
                };
                prop_assert_eq!(got, model.cancel(id, user));
            }
            ModelOp::Expire => {
                let got = engine.expire_due(now, &mut events);
                prop_assert!(!got.deferred);
                prop_assert_eq!(got.expired, model.expire(now));
            }
            ModelOp::AddStock { sku, add } => {
                let got = engine
                    .add_stock(SKUS[sku], add, now, &mut events)
                    .map(|_| ());
                prop_assert_eq!(got, model.add_stock(sku, add));
            }
            ModelOp::Pause { sku } => {
                let got = engine.pause(SKUS[sku], now, &mut events).map(|_| ());
                prop_assert_eq!(got, model.set_status(sku, "paused"));
            }
            ModelOp::Resume { sku } => {
                let got = engine.resume(SKUS[sku], now, &mut events).map(|_| ());
                prop_assert_eq!(got, model.set_status(sku, "open"));
            }
            ModelOp::End { sku } => {
                let got = engine.end(SKUS[sku], now, &mut events).map(|_| ());
                prop_assert_eq!(got, model.set_status(sku, "ended"));
            }
            ModelOp::Advance { ms } => now += ms,
        }
        // Conservation after every step, for every sale.
        for (&sku, m) in &model.sales {
            let view = engine.sale(SKUS[sku], now).unwrap();
            prop_assert_eq!(view.remaining, m.remaining);
            prop_assert_eq!(view.paid, m.paid);
            prop_assert_eq!(view.stock, m.total);
            prop_assert_eq!(view.remaining + view.reserved + view.paid, view.stock);
        }
    }

    // Orders and per-user holdings match the model exactly.
    let live = engine.state();
    prop_assert_eq!(live.orders.len(), model.orders.len());
    for o in &live.orders {
        let m = &model.orders[&o.order_id];
        prop_assert_eq!(
            (o.user_id.as_str(), o.qty, o.state),
            (USERS[m.user], m.qty, m.state)
        );
        let view = engine.order(OrderId(o.order_id)).unwrap();
        prop_assert_eq!(&*view.user_id, USERS[m.user]);
    }
    // The engine holds exactly the users with orders: refused purchases
    // left nothing behind.
    let owners: std::collections::BTreeSet<usize> = model.orders.values().map(|o| o.user).collect();
    prop_assert_eq!(live.users, owners.len() as u64);
    prop_assert_eq!(engine.user_count(), owners.len() as u64);
    for ((ordinal, user), held) in &live.holdings {
        let (ordinal, held) = (*ordinal, *held);
        let user = USERS.iter().position(|u| u == user).unwrap();
        let sku = model
            .sales
            .iter()
            .find(|(_, s)| s.ordinal == ordinal)
            .map(|(&k, _)| k)
            .unwrap();
        prop_assert_eq!(Some(&held), model.held.get(&(sku, user)));
        prop_assert!(held <= model.sales[&sku].limit);
    }

    // Replaying the log rebuilds the same state, on a different shard count too.
    for replay_shards in [shards, shards % 3 + 1] {
        let replayed = new_engine(replay_shards, colliding);
        for e in &events {
            replayed
                .apply(e)
                .map_err(|e| TestCaseError::fail(format!("replay: {e}")))?;
        }
        prop_assert_eq!(&replayed.state(), &live);
    }

    // So does the compact stream a snapshot stores.
    let mut exported = Vec::new();
    engine.export(&mut exported).unwrap();
    let restored = new_engine(shards, !colliding);
    for e in &exported {
        restored
            .apply(e)
            .map_err(|e| TestCaseError::fail(format!("export replay: {e}")))?;
    }
    prop_assert_eq!(&restored.state(), &live);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn engine_matches_model(
        ops in proptest::collection::vec(op(), 1..120),
        shards in 1..4u32,
        colliding in proptest::bool::weighted(0.3),
    ) {
        run(ops, shards, colliding)?;
    }
}
