//! The engine: sales spread over shards, the admission path, order life cycle,
//! expiry and replay.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU8, Ordering as StdOrdering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use crossbeam_queue::SegQueue;
use crossbeam_utils::CachePadded;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use parking_lot::Mutex;

use crate::event::{Event, EventSink};
use crate::gate;
use crate::orders::{Order, OrderTable};
use crate::state::{OrderRecord, SaleState};
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::types::*;

const STATUS_OPEN: u8 = 0;
const STATUS_PAUSED: u8 = 1;
const STATUS_ENDED: u8 = 2;

/// Marks an idempotency entry whose admission is being decided right now.
const IDEM_PENDING: u64 = u64::MAX;

/// Multiplicative hasher for keys the engine assigns itself (order ids). Keys a
/// client chooses (user ids) keep std's randomly keyed SipHash against
/// hash flooding.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
}

type IdBuild = BuildHasherDefault<IdHasher>;

/// Randomly keyed hasher for keys a client chooses: as resistant to hash
/// flooding as std's SipHash, several times cheaper on 16-byte keys.
type KeyedBuild = ahash::RandomState;

/// Engine tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Number of shards, at least 1.
    pub shards: u32,
    /// Orders one sale may make, cancelled and expired ones included; past
    /// it, purchases are refused with [`Rejection::OrderLimit`] (admissions
    /// racing at the cap may end a few over). Orders stay in memory for the
    /// life of the sale, and a buyer who admits and cancels over and over
    /// makes a new one each time: this cap, times the sales an operator
    /// creates, bounds that memory (100–150 bytes per order, BENCHMARKS.md).
    /// At most [`ORDERS_PER_SALE_MAX`].
    pub max_orders_per_sale: u64,
}

/// Default [`EngineConfig::max_orders_per_sale`]: 1–1.5 GB of orders for one sale.
pub const MAX_ORDERS_PER_SALE_DEFAULT: u64 = 10_000_000;

/// Largest sensible [`EngineConfig::max_orders_per_sale`]: half the order
/// ids a sale has, so that racing admissions and burned sequence numbers
/// never reach the end of them.
pub const ORDERS_PER_SALE_MAX: u64 = 1 << (ORDER_SEQ_BITS - 1);

impl EngineConfig {
    /// `shards` shards and the default order cap.
    pub const fn with_shards(shards: u32) -> EngineConfig {
        EngineConfig {
            shards,
            max_orders_per_sale: MAX_ORDERS_PER_SALE_DEFAULT,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig::with_shards(
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1),
        )
    }
}

/// One sale. The fields a purchase reads and writes sit on their own cache
/// lines so a hot SKU's gate does not share a line with its bookkeeping.
pub(crate) struct Sale {
    ordinal: u32,
    shard: u32,
    sku: Arc<str>,
    per_user_limit: u32,
    starts_at_ms: Option<u64>,
    ends_at_ms: Option<u64>,
    reservation_ttl_ms: u64,
    /// Units not held by any reserved or paid order: the stock gate.
    remaining: CachePadded<AtomicU64>,
    /// Next order sequence of this sale.
    next_seq: CachePadded<AtomicU64>,
    /// Units in paid orders.
    paid: AtomicU64,
    /// Initial stock plus every top-up.
    total: AtomicU64,
    /// This sale's orders, by sequence number.
    orders: OrderTable,
    /// Orders written to `orders` (sequence numbers burned by a refused
    /// event leave holes, so this can be below `next_seq`).
    order_count: AtomicU64,
    status: AtomicU8,
    /// Serialises operator actions (top-up, pause, resume, end) with their
    /// events so the log orders them as they happened. Never taken by buyers.
    admin: Mutex<()>,
}

impl Sale {
    fn view(&self, now_ms: u64) -> SaleView {
        let total = self.total.load(Ordering::Acquire);
        let paid = self.paid.load(Ordering::Acquire);
        let remaining = self.remaining.load(Ordering::Acquire);
        let reserved = total.saturating_sub(remaining).saturating_sub(paid);
        let phase = match self.status.load(StdOrdering::Acquire) {
            STATUS_ENDED => SalePhase::Ended,
            _ if self.ends_at_ms.is_some_and(|end| now_ms >= end) => SalePhase::Ended,
            STATUS_PAUSED => SalePhase::Paused,
            _ if self.starts_at_ms.is_some_and(|start| now_ms < start) => SalePhase::Scheduled,
            _ if remaining == 0 => SalePhase::SoldOut,
            _ => SalePhase::Open,
        };
        SaleView {
            sku: self.sku.clone(),
            stock: total,
            remaining,
            reserved,
            paid,
            per_user_limit: self.per_user_limit,
            starts_at_ms: self.starts_at_ms,
            ends_at_ms: self.ends_at_ms,
            reservation_ttl_ms: self.reservation_ttl_ms,
            phase,
        }
    }

    /// When an order was admitted: its expiry less the sale's TTL (the slot
    /// does not store it, to stay at 24 bytes).
    fn created_at(&self, order: &Order) -> u64 {
        order.expires_at_ms.saturating_sub(self.reservation_ttl_ms)
    }

    /// The gate a purchase passes before any shared write. Reads only.
    #[inline]
    fn check_open(&self, now_ms: u64) -> Result<(), Rejection> {
        let status = self.status.load(StdOrdering::Acquire);
        if status == STATUS_ENDED || self.ends_at_ms.is_some_and(|end| now_ms >= end) {
            return Err(Rejection::Ended);
        }
        if status == STATUS_PAUSED {
            return Err(Rejection::Paused);
        }
        if self.starts_at_ms.is_some_and(|start| now_ms < start) {
            return Err(Rejection::NotStarted);
        }
        Ok(())
    }
}

/// A shard owns its SKUs (and through them their orders), the per-(SKU,
/// user) counters and the expiry queue of those orders. Idempotency records
/// live in the shard of the user who made the request.
struct Shard {
    sales: ArcSwap<HashMap<Arc<str>, Arc<Sale>, IdBuild>>,
    /// Units each user holds (reserved + paid) per sale ordinal. Entries at 0
    /// are removed so the map is bounded by live holdings.
    holdings: DashMap<(u32, u64), AtomicU32, KeyedBuild>,
    /// (user, request id) → order id, or `IDEM_PENDING` while being decided.
    idempotency: DashMap<(u64, u64), u64, KeyedBuild>,
    /// Admissions not yet moved into `expiry_heap`: producers push here without
    /// a lock; only the expiry tick takes the heap's lock.
    expiry_incoming: SegQueue<(u64, u64)>,
    expiry_heap: Mutex<BinaryHeap<Reverse<(u64, u64)>>>,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            sales: ArcSwap::from_pointee(HashMap::default()),
            holdings: DashMap::default(),
            idempotency: DashMap::default(),
            expiry_incoming: SegQueue::new(),
            expiry_heap: Mutex::new(BinaryHeap::new()),
        }
    }

    /// Releases `qty` of `user`'s holding in sale `ordinal`, dropping the
    /// entry at zero. Removal takes the map's write lock, so no thread is in
    /// the middle of `try_hold` on that counter when it goes.
    fn release_holding(&self, ordinal: u32, user_id: u64, qty: u32) {
        // One hash and one probe under the write lock.
        let Entry::Occupied(held) = self.holdings.entry((ordinal, user_id)) else {
            panic!("released a holding of user {user_id} in sale {ordinal} that does not exist");
        };
        gate::release(held.get(), qty);
        if held.get().load(Ordering::Acquire) == 0 {
            held.remove();
        }
    }

    fn try_hold(&self, ordinal: u32, user_id: u64, qty: u32, limit: u32) -> bool {
        let key = (ordinal, user_id);
        // Straight to the entry: in a flash sale most buyers are new, and a
        // lookup first would hash the key twice for them.
        let held = self
            .holdings
            .entry(key)
            .or_insert_with(|| AtomicU32::new(0))
            .downgrade();
        let ok = gate::try_hold(&held, qty, limit);
        drop(held);
        if !ok {
            self.holdings
                .remove_if(&key, |_, held| held.load(Ordering::Acquire) == 0);
        }
        ok
    }
}

/// The flash-sale engine. Shareable across threads (`&Engine` everywhere);
/// every operation takes the time and an event sink from the caller.
pub struct Engine {
    shards: Box<[Shard]>,
    /// Sales by ordinal, for order-id lookups.
    by_ordinal: ArcSwap<Vec<Arc<Sale>>>,
    /// Serialises sale creation (rare) so ordinals are dense and logged in order.
    create_lock: Mutex<()>,
    max_orders_per_sale: u64,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        let shards = config.shards.max(1);
        Engine {
            shards: (0..shards).map(|_| Shard::new()).collect(),
            by_ordinal: ArcSwap::from_pointee(Vec::new()),
            create_lock: Mutex::new(()),
            max_orders_per_sale: config.max_orders_per_sale,
        }
    }

    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    fn shard_of_sku(&self, sku: &str) -> u32 {
        // Deterministic, so a SKU lands on the same shard on every start
        // with the same shard count.
        (fnv1a_64(sku.as_bytes()) % self.shards.len() as u64) as u32
    }

    fn shard_of_user(&self, user_id: u64) -> &Shard {
        // A cheap mix so consecutive user ids spread over shards.
        let h = user_id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        &self.shards[(h % self.shards.len() as u64) as usize]
    }

    fn find_sale(&self, sku: &str) -> Option<Arc<Sale>> {
        let shard = &self.shards[self.shard_of_sku(sku) as usize];
        shard.sales.load().get(sku).cloned()
    }

    fn sale_by_ordinal(&self, ordinal: u32) -> Option<Arc<Sale>> {
        self.by_ordinal.load().get(ordinal as usize).cloned()
    }

    /// Creates a sale; the view returned is the sale as of `now_ms`.
    pub fn create_sale(
        &self,
        spec: SaleSpec,
        now_ms: u64,
        mut sink: impl EventSink,
    ) -> Result<SaleView, CreateSaleError> {
        validate_sku(&spec.sku).map_err(CreateSaleError::InvalidSku)?;
        if spec.per_user_limit == 0 || spec.per_user_limit > QTY_MAX {
            return Err(CreateSaleError::InvalidLimit);
        }
        if spec.stock > STOCK_MAX {
            return Err(CreateSaleError::StockTooLarge);
        }
        if let (Some(start), Some(end)) = (spec.starts_at_ms, spec.ends_at_ms) {
            if end <= start {
                return Err(CreateSaleError::InvalidWindow);
            }
        }
        if spec.reservation_ttl_ms == 0 || spec.reservation_ttl_ms > RESERVATION_TTL_MAX_MS {
            return Err(CreateSaleError::InvalidTtl);
        }
        let _guard = self.create_lock.lock();
        if self.find_sale(&spec.sku).is_some() {
            return Err(CreateSaleError::Exists);
        }
        let ordinal = self.by_ordinal.load().len() as u32;
        if ordinal >= SALES_MAX {
            return Err(CreateSaleError::TooManySales);
        }
        let event = Event::SaleCreated {
            ordinal,
            sku: spec.sku.clone(),
            stock: spec.stock,
            per_user_limit: spec.per_user_limit,
            starts_at_ms: spec.starts_at_ms,
            ends_at_ms: spec.ends_at_ms,
            reservation_ttl_ms: spec.reservation_ttl_ms,
        };
        sink.emit(&event).map_err(CreateSaleError::Unavailable)?;
        let sale = self.install_sale(ordinal, &spec);
        Ok(sale.view(now_ms))
    }

    /// Publishes a new sale. Caller holds `create_lock` (or is replaying).
    fn install_sale(&self, ordinal: u32, spec: &SaleSpec) -> Arc<Sale> {
        let shard_index = self.shard_of_sku(&spec.sku);
        let sale = Arc::new(Sale {
            ordinal,
            shard: shard_index,
            sku: Arc::from(spec.sku.as_str()),
            per_user_limit: spec.per_user_limit,
            starts_at_ms: spec.starts_at_ms,
            ends_at_ms: spec.ends_at_ms,
            reservation_ttl_ms: spec.reservation_ttl_ms,
            remaining: CachePadded::new(AtomicU64::new(spec.stock)),
            next_seq: CachePadded::new(AtomicU64::new(0)),
            paid: AtomicU64::new(0),
            total: AtomicU64::new(spec.stock),
            orders: OrderTable::new(),
            order_count: AtomicU64::new(0),
            status: AtomicU8::new(STATUS_OPEN),
            admin: Mutex::new(()),
        });
        let shard = &self.shards[shard_index as usize];
        let mut sales = HashMap::clone(&shard.sales.load());
        sales.insert(sale.sku.clone(), sale.clone());
        shard.sales.store(Arc::new(sales));
        let mut all = Vec::clone(&self.by_ordinal.load());
        assert_eq!(all.len(), ordinal as usize);
        all.push(sale.clone());
        self.by_ordinal.store(Arc::new(all));
        sale
    }

    fn sale_for_op(&self, sku: &str) -> Result<Arc<Sale>, SaleOpError> {
        validate_sku(sku).map_err(SaleOpError::InvalidSku)?;
        self.find_sale(sku).ok_or(SaleOpError::UnknownSku)
    }

    /// Adds stock to a sale that has not ended.
    pub fn add_stock(
        &self,
        sku: &str,
        add: u64,
        now_ms: u64,
        mut sink: impl EventSink,
    ) -> Result<SaleView, SaleOpError> {
        let sale = self.sale_for_op(sku)?;
        if add == 0 {
            return Err(SaleOpError::ZeroAdd);
        }
        let _guard = sale.admin.lock();
        if sale.status.load(StdOrdering::Acquire) == STATUS_ENDED {
            return Err(SaleOpError::Ended);
        }
        let total = sale.total.load(Ordering::Acquire);
        match total.checked_add(add) {
            Some(t) if t <= STOCK_MAX => {}
            _ => return Err(SaleOpError::StockOverflow),
        }
        sink.emit(&Event::StockAdded {
            ordinal: sale.ordinal,
            add,
        })
        .map_err(SaleOpError::Unavailable)?;
        // Total first: a reader then never sees remaining above total.
        sale.total.fetch_add(add, Ordering::AcqRel);
        gate::give_back(&sale.remaining, add);
        Ok(sale.view(now_ms))
    }

    /// Pauses a sale; purchases are rejected as `paused` until resumed.
    pub fn pause(
        &self,
        sku: &str,
        now_ms: u64,
        sink: impl EventSink,
    ) -> Result<SaleView, SaleOpError> {
        self.set_status(sku, STATUS_PAUSED, now_ms, sink)
    }

    pub fn resume(
        &self,
        sku: &str,
        now_ms: u64,
        sink: impl EventSink,
    ) -> Result<SaleView, SaleOpError> {
        self.set_status(sku, STATUS_OPEN, now_ms, sink)
    }

    /// Ends a sale for good. Reserved orders may still be paid or cancelled.
    pub fn end(
        &self,
        sku: &str,
        now_ms: u64,
        sink: impl EventSink,
    ) -> Result<SaleView, SaleOpError> {
        self.set_status(sku, STATUS_ENDED, now_ms, sink)
    }

    fn set_status(
        &self,
        sku: &str,
        status: u8,
        now_ms: u64,
        mut sink: impl EventSink,
    ) -> Result<SaleView, SaleOpError> {
        let sale = self.sale_for_op(sku)?;
        let _guard = sale.admin.lock();
        let current = sale.status.load(StdOrdering::Acquire);
        if current == status {
            // Repeating an action is idempotent and logs nothing.
            return Ok(sale.view(now_ms));
        }
        if current == STATUS_ENDED {
            return Err(SaleOpError::Ended);
        }
        let ordinal = sale.ordinal;
        let event = match status {
            STATUS_OPEN => Event::Resumed { ordinal },
            STATUS_PAUSED => Event::Paused { ordinal },
            _ => Event::Ended { ordinal },
        };
        sink.emit(&event).map_err(SaleOpError::Unavailable)?;
        sale.status.store(status, StdOrdering::Release);
        Ok(sale.view(now_ms))
    }

    pub fn sale(&self, sku: &str, now_ms: u64) -> Option<SaleView> {
        validate_sku(sku).ok()?;
        self.find_sale(sku).map(|sale| sale.view(now_ms))
    }

    /// Every sale, in creation order.
    pub fn sales(&self, now_ms: u64) -> Vec<SaleView> {
        self.by_ordinal
            .load()
            .iter()
            .map(|s| s.view(now_ms))
            .collect()
    }

    /// Decides one purchase.
    ///
    /// Order of checks: cheap validation, then the read-only gate (status,
    /// quantity against the limit, sold out; a replay of an earlier admission
    /// wins over all three), and only then the shared writes (idempotency
    /// claim, user quota, stock gate, order).
    pub fn purchase(
        &self,
        sku: &str,
        user_id: u64,
        qty: u32,
        request_id: Option<u64>,
        now_ms: u64,
        mut sink: impl EventSink,
    ) -> PurchaseOutcome {
        use PurchaseOutcome::Rejected;
        if qty == 0 || qty > QTY_MAX {
            return Rejected(Rejection::InvalidQuantity);
        }
        if validate_sku(sku).is_err() {
            return Rejected(Rejection::InvalidSku);
        }
        let shard = &self.shards[self.shard_of_sku(sku) as usize];
        let sales = shard.sales.load();
        let Some(sale) = sales.get(sku) else {
            return Rejected(Rejection::UnknownSku);
        };
        let open = sale.check_open(now_ms);
        // The sold-out check is one shared read and no write.
        let short = sale.remaining.load(Ordering::Acquire) < u64::from(qty);
        // So is the order cap's: orders made, not sequence numbers (a refused
        // event burns one). Admissions racing at the cap may pass it together,
        // so a sale may end a few orders over, never unboundedly.
        let full = sale.order_count.load(Ordering::Relaxed) >= self.max_orders_per_sale;
        if open.is_err() || qty > sale.per_user_limit || short || full {
            // A retry of an admitted request gets its admission back even
            // after the sale sold out or ended, so look for one first.
            if let Some(request_id) = request_id {
                let idem = self.shard_of_user(user_id);
                if let Some(order_id) = idem.idempotency.get(&(user_id, request_id)).map(|v| *v) {
                    return self.replay(sale, order_id, user_id, qty);
                }
            }
            return Rejected(match open {
                Err(rejection) => rejection,
                Ok(()) if qty > sale.per_user_limit => Rejection::LimitExceeded,
                Ok(()) if short => Rejection::SoldOut,
                Ok(()) => Rejection::OrderLimit,
            });
        }

        let idem_shard = self.shard_of_user(user_id);
        if let Some(request_id) = request_id {
            match idem_shard.idempotency.entry((user_id, request_id)) {
                Entry::Occupied(entry) => {
                    let order_id = *entry.get();
                    drop(entry);
                    return self.replay(sale, order_id, user_id, qty);
                }
                Entry::Vacant(entry) => {
                    entry.insert(IDEM_PENDING);
                }
            }
        }
        let outcome = self.admit(sale, shard, user_id, qty, request_id, now_ms, &mut sink);
        if let Some(request_id) = request_id {
            let key = (user_id, request_id);
            match outcome {
                PurchaseOutcome::Admitted(admission) => {
                    idem_shard.idempotency.insert(key, admission.order_id.0);
                }
                // A rejection is not remembered: a repeat is decided again.
                _ => {
                    idem_shard.idempotency.remove(&key);
                }
            }
        }
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    fn admit(
        &self,
        sale: &Sale,
        shard: &Shard,
        user_id: u64,
        qty: u32,
        request_id: Option<u64>,
        now_ms: u64,
        sink: &mut impl EventSink,
    ) -> PurchaseOutcome {
        use PurchaseOutcome::Rejected;
        if !shard.try_hold(sale.ordinal, user_id, qty, sale.per_user_limit) {
            return Rejected(Rejection::LimitExceeded);
        }
        if !gate::try_take(&sale.remaining, u64::from(qty)) {
            shard.release_holding(sale.ordinal, user_id, qty);
            return Rejected(Rejection::SoldOut);
        }
        let seq = sale.next_seq.fetch_add(1, Ordering::AcqRel);
        let order_id = OrderId::new(sale.ordinal, seq);
        let expires_at_ms = now_ms.saturating_add(sale.reservation_ttl_ms);
        let event = Event::Admitted {
            order_id: order_id.0,
            user_id,
            qty,
            request_id,
            created_at_ms: now_ms,
            expires_at_ms,
        };
        if let Err(err) = sink.emit(&event) {
            // Not logged, so not admitted: put everything back. The order id
            // is burned, which is harmless (ids need only be unique).
            gate::give_back(&sale.remaining, u64::from(qty));
            shard.release_holding(sale.ordinal, user_id, qty);
            return Rejected(Rejection::Unavailable(err));
        }
        // The order becomes visible only after its event is queued, so any
        // later pay, cancel or expiry of it is logged after the admission.
        let fresh = sale.orders.insert(
            seq,
            Order {
                user_id,
                expires_at_ms,
                qty,
                state: OrderState::Reserved,
            },
        );
        assert!(fresh, "order sequence {seq} issued twice");
        sale.order_count.fetch_add(1, Ordering::Relaxed);
        shard.expiry_incoming.push((expires_at_ms, order_id.0));
        PurchaseOutcome::Admitted(Admission {
            order_id,
            user_id,
            qty,
            created_at_ms: now_ms,
            expires_at_ms,
        })
    }

    fn replay(&self, sale: &Sale, order_id: u64, user_id: u64, qty: u32) -> PurchaseOutcome {
        if order_id == IDEM_PENDING {
            return PurchaseOutcome::Rejected(Rejection::InProgress);
        }
        let id = OrderId(order_id);
        if id.ordinal() != sale.ordinal {
            return PurchaseOutcome::Rejected(Rejection::RequestIdReused);
        }
        let order = match sale.orders.get(id.seq()) {
            Some(order) => order,
            // Recorded as done, so its order exists; being wrong here would
            // be a bug, but a retry is the safe answer for the client.
            None => return PurchaseOutcome::Rejected(Rejection::InProgress),
        };
        if order.qty != qty {
            return PurchaseOutcome::Rejected(Rejection::RequestIdReused);
        }
        debug_assert_eq!(order.user_id, user_id);
        PurchaseOutcome::Replayed(Admission {
            order_id: id,
            user_id,
            qty,
            created_at_ms: sale.created_at(&order),
            expires_at_ms: order.expires_at_ms,
        })
    }

    fn order_home(&self, order_id: OrderId) -> Option<(Arc<Sale>, &Shard)> {
        let sale = self.sale_by_ordinal(order_id.ordinal())?;
        let shard = &self.shards[sale.shard as usize];
        Some((sale, shard))
    }

    fn view_of(sale: &Sale, order_id: OrderId, order: &Order) -> OrderView {
        OrderView {
            order_id,
            sku: sale.sku.clone(),
            user_id: order.user_id,
            qty: order.qty,
            state: order.state,
            created_at_ms: sale.created_at(order),
            expires_at_ms: order.expires_at_ms,
        }
    }

    pub fn order(&self, order_id: OrderId) -> Option<OrderView> {
        let sale = self.sale_by_ordinal(order_id.ordinal())?;
        let order = sale.orders.get(order_id.seq())?;
        Some(Self::view_of(&sale, order_id, &order))
    }

    /// Confirms payment. Repeating it is idempotent. An expired order is paid
    /// only if its units can be taken again within stock and the user's limit.
    pub fn pay(&self, order_id: OrderId, now_ms: u64, mut sink: impl EventSink) -> OrderOutcome {
        use OrderOutcome::{Done, Rejected};
        let Some((sale, shard)) = self.order_home(order_id) else {
            return Rejected(OrderRejection::UnknownOrder);
        };
        // The order's lock orders this change and its event against any
        // other change to the same order.
        let Some(mut guard) = sale.orders.lock(order_id.seq()) else {
            return Rejected(OrderRejection::UnknownOrder);
        };
        let order = guard.order;
        let retaken = match order.state {
            OrderState::Paid => {
                return Done {
                    order: Self::view_of(&sale, order_id, &order),
                    changed: false,
                }
            }
            OrderState::Cancelled => return Rejected(OrderRejection::Cancelled),
            OrderState::Reserved => false,
            OrderState::Expired => {
                if !shard.try_hold(sale.ordinal, order.user_id, order.qty, sale.per_user_limit) {
                    return Rejected(OrderRejection::Expired);
                }
                if !gate::try_take(&sale.remaining, u64::from(order.qty)) {
                    shard.release_holding(sale.ordinal, order.user_id, order.qty);
                    return Rejected(OrderRejection::Expired);
                }
                true
            }
        };
        let event = Event::Paid {
            order_id: order_id.0,
            at_ms: now_ms,
            retaken,
        };
        if let Err(err) = sink.emit(&event) {
            if retaken {
                gate::give_back(&sale.remaining, u64::from(order.qty));
                shard.release_holding(sale.ordinal, order.user_id, order.qty);
            }
            return Rejected(OrderRejection::Unavailable(err));
        }
        guard.set_state(OrderState::Paid);
        sale.paid.fetch_add(u64::from(order.qty), Ordering::AcqRel);
        Done {
            order: Self::view_of(&sale, order_id, &guard.order),
            changed: true,
        }
    }

    /// Cancels a reserved order of `user_id`, returning its units. Repeating
    /// it is idempotent; another user's order is "unknown".
    pub fn cancel(
        &self,
        order_id: OrderId,
        user_id: u64,
        now_ms: u64,
        mut sink: impl EventSink,
    ) -> OrderOutcome {
        use OrderOutcome::{Done, Rejected};
        let Some((sale, shard)) = self.order_home(order_id) else {
            return Rejected(OrderRejection::UnknownOrder);
        };
        let Some(mut guard) = sale.orders.lock(order_id.seq()) else {
            return Rejected(OrderRejection::UnknownOrder);
        };
        let order = guard.order;
        if order.user_id != user_id {
            return Rejected(OrderRejection::UnknownOrder);
        }
        match order.state {
            OrderState::Reserved => {}
            OrderState::Cancelled => {
                return Done {
                    order: Self::view_of(&sale, order_id, &order),
                    changed: false,
                }
            }
            OrderState::Paid => return Rejected(OrderRejection::Paid),
            OrderState::Expired => return Rejected(OrderRejection::Expired),
        }
        let event = Event::Cancelled {
            order_id: order_id.0,
            at_ms: now_ms,
        };
        if let Err(err) = sink.emit(&event) {
            return Rejected(OrderRejection::Unavailable(err));
        }
        // Logged before the units return: a buyer who gets them is logged after.
        guard.set_state(OrderState::Cancelled);
        let view = Self::view_of(&sale, order_id, &guard.order);
        drop(guard);
        gate::give_back(&sale.remaining, u64::from(view.qty));
        shard.release_holding(sale.ordinal, view.user_id, view.qty);
        Done {
            order: view,
            changed: true,
        }
    }

    /// Expires every reserved order whose TTL has passed by `now_ms`, returning
    /// its units. Cost is proportional to the orders that come due (plus the
    /// admissions since the last tick, moved into the heap).
    pub fn expire_due(&self, now_ms: u64, mut sink: impl EventSink) -> ExpireReport {
        let mut report = ExpireReport::default();
        for shard in self.shards.iter() {
            // Another thread is expiring this shard: it will do the work.
            let Some(mut heap) = shard.expiry_heap.try_lock() else {
                continue;
            };
            while let Some(entry) = shard.expiry_incoming.pop() {
                heap.push(Reverse(entry));
            }
            while let Some(&Reverse((expires_at_ms, order_id))) = heap.peek() {
                if expires_at_ms > now_ms {
                    break;
                }
                let id = OrderId(order_id);
                let sale = self
                    .sale_by_ordinal(id.ordinal())
                    .expect("an order's sale exists");
                let Some(mut guard) = sale.orders.lock(id.seq()) else {
                    heap.pop();
                    continue;
                };
                if guard.order.state != OrderState::Reserved {
                    // Paid or cancelled in time: nothing to do.
                    drop(guard);
                    heap.pop();
                    continue;
                }
                let event = Event::Expired {
                    order_id,
                    at_ms: now_ms,
                };
                if sink.emit(&event).is_err() {
                    report.deferred = true;
                    return report;
                }
                heap.pop();
                guard.set_state(OrderState::Expired);
                let (qty, user) = (guard.order.qty, guard.order.user_id);
                drop(guard);
                gate::give_back(&sale.remaining, u64::from(qty));
                shard.release_holding(sale.ordinal, user, qty);
                report.expired += 1;
            }
        }
        report
    }

    /// Number of orders held (all states).
    pub fn order_count(&self) -> u64 {
        self.by_ordinal
            .load()
            .iter()
            .map(|s| s.order_count.load(Ordering::Relaxed))
            .sum()
    }

    /// Applies one logged event to rebuild state, without re-deciding it.
    ///
    /// The stream must be one this engine type emitted (or exported); anything
    /// else is reported as an `ApplyError`, never a panic.
    pub fn apply(&self, event: &Event) -> Result<(), ApplyError> {
        self.apply_inner(event, true)
    }

    /// [`Engine::apply`] without the idempotency record of an admission, which
    /// the caller restores with [`Engine::restore_request_id`], possibly on
    /// another thread: recovery splits the work of replay over two cores this
    /// way. Nothing in `apply` reads idempotency records, so the two halves
    /// commute; the state is complete once both have seen every event.
    pub fn apply_deferring_request_id(&self, event: &Event) -> Result<(), ApplyError> {
        self.apply_inner(event, false)
    }

    /// The idempotency half of applying `Event::Admitted` (see
    /// [`Engine::apply_deferring_request_id`]); other events have none.
    pub fn restore_request_id(&self, event: &Event) {
        if let Event::Admitted {
            order_id,
            user_id,
            request_id: Some(request_id),
            ..
        } = *event
        {
            self.shard_of_user(user_id)
                .idempotency
                .insert((user_id, request_id), order_id);
        }
    }

    fn apply_inner(&self, event: &Event, with_request_id: bool) -> Result<(), ApplyError> {
        match *event {
            Event::SaleCreated {
                ordinal,
                ref sku,
                stock,
                per_user_limit,
                starts_at_ms,
                ends_at_ms,
                reservation_ttl_ms,
            } => {
                let _guard = self.create_lock.lock();
                let expected = self.by_ordinal.load().len() as u32;
                if ordinal != expected {
                    return Err(ApplyError::SaleOrdinal { ordinal, expected });
                }
                if validate_sku(sku).is_err() || self.find_sale(sku).is_some() {
                    return Err(ApplyError::Invalid("sale sku invalid or duplicate"));
                }
                if stock > STOCK_MAX || per_user_limit == 0 {
                    return Err(ApplyError::Invalid("sale stock or limit out of range"));
                }
                let spec = SaleSpec {
                    sku: sku.clone(),
                    stock,
                    per_user_limit,
                    starts_at_ms,
                    ends_at_ms,
                    reservation_ttl_ms,
                };
                self.install_sale(ordinal, &spec);
            }
            Event::StockAdded { ordinal, add } => {
                let sale = self
                    .sale_by_ordinal(ordinal)
                    .ok_or(ApplyError::UnknownSale(ordinal))?;
                let total = sale.total.load(Ordering::Acquire);
                if total.checked_add(add).is_none_or(|t| t > STOCK_MAX) {
                    return Err(ApplyError::Invalid("stock top-up overflows"));
                }
                sale.total.fetch_add(add, Ordering::AcqRel);
                gate::give_back(&sale.remaining, add);
            }
            Event::Paused { ordinal } | Event::Resumed { ordinal } | Event::Ended { ordinal } => {
                let sale = self
                    .sale_by_ordinal(ordinal)
                    .ok_or(ApplyError::UnknownSale(ordinal))?;
                let status = match event {
                    Event::Paused { .. } => STATUS_PAUSED,
                    Event::Resumed { .. } => STATUS_OPEN,
                    _ => STATUS_ENDED,
                };
                sale.status.store(status, StdOrdering::Release);
            }
            Event::Admitted {
                order_id,
                user_id,
                qty,
                request_id,
                created_at_ms,
                expires_at_ms,
            } => {
                let id = OrderId(order_id);
                let (sale, shard) = self
                    .order_home(id)
                    .ok_or(ApplyError::UnknownSale(id.ordinal()))?;
                if qty == 0 || qty > sale.per_user_limit {
                    return Err(ApplyError::Invalid("admitted quantity out of range"));
                }
                if created_at_ms.saturating_add(sale.reservation_ttl_ms) != expires_at_ms {
                    return Err(ApplyError::Invalid(
                        "admission expiry does not match the sale's TTL",
                    ));
                }
                if sale.orders.get(id.seq()).is_some() {
                    return Err(ApplyError::DuplicateOrder(order_id));
                }
                if !gate::try_take(&sale.remaining, u64::from(qty)) {
                    return Err(ApplyError::Invalid("admission exceeds remaining stock"));
                }
                if !shard.try_hold(sale.ordinal, user_id, qty, sale.per_user_limit) {
                    gate::give_back(&sale.remaining, u64::from(qty));
                    return Err(ApplyError::Invalid("admission exceeds the user's limit"));
                }
                sale.next_seq.fetch_max(id.seq() + 1, Ordering::AcqRel);
                let fresh = sale.orders.insert(
                    id.seq(),
                    Order {
                        user_id,
                        expires_at_ms,
                        qty,
                        state: OrderState::Reserved,
                    },
                );
                assert!(fresh, "checked vacant above; apply runs on one thread");
                sale.order_count.fetch_add(1, Ordering::Relaxed);
                shard.expiry_incoming.push((expires_at_ms, order_id));
                if with_request_id && request_id.is_some() {
                    self.restore_request_id(event);
                }
            }
            Event::Paid {
                order_id, retaken, ..
            } => {
                let id = OrderId(order_id);
                let (sale, shard) = self
                    .order_home(id)
                    .ok_or(ApplyError::UnknownOrder(order_id))?;
                let mut guard = sale
                    .orders
                    .lock(id.seq())
                    .ok_or(ApplyError::UnknownOrder(order_id))?;
                let order = guard.order;
                let expected = if retaken {
                    OrderState::Expired
                } else {
                    OrderState::Reserved
                };
                if order.state != expected {
                    return Err(ApplyError::Invalid(
                        "payment of an order in the wrong state",
                    ));
                }
                if retaken {
                    if !gate::try_take(&sale.remaining, u64::from(order.qty)) {
                        return Err(ApplyError::Invalid(
                            "payment retake exceeds remaining stock",
                        ));
                    }
                    if !shard.try_hold(sale.ordinal, order.user_id, order.qty, sale.per_user_limit)
                    {
                        gate::give_back(&sale.remaining, u64::from(order.qty));
                        return Err(ApplyError::Invalid(
                            "payment retake exceeds the user's limit",
                        ));
                    }
                }
                guard.set_state(OrderState::Paid);
                sale.paid.fetch_add(u64::from(order.qty), Ordering::AcqRel);
            }
            Event::Cancelled { order_id, .. } | Event::Expired { order_id, .. } => {
                let id = OrderId(order_id);
                let (sale, shard) = self
                    .order_home(id)
                    .ok_or(ApplyError::UnknownOrder(order_id))?;
                let mut guard = sale
                    .orders
                    .lock(id.seq())
                    .ok_or(ApplyError::UnknownOrder(order_id))?;
                if guard.order.state != OrderState::Reserved {
                    return Err(ApplyError::Invalid(
                        "release of an order that is not reserved",
                    ));
                }
                guard.set_state(if matches!(event, Event::Cancelled { .. }) {
                    OrderState::Cancelled
                } else {
                    OrderState::Expired
                });
                let (qty, user) = (guard.order.qty, guard.order.user_id);
                drop(guard);
                gate::give_back(&sale.remaining, u64::from(qty));
                shard.release_holding(sale.ordinal, user, qty);
            }
        }
        Ok(())
    }

    /// A sorted, plain copy of the whole state, for equality checks in tests
    /// and for snapshots. Call it on a quiescent engine.
    pub fn state(&self) -> crate::EngineState {
        crate::state::capture(self)
    }

    /// Emits a compact event stream that rebuilds this engine's state when
    /// applied to a fresh engine: what a snapshot stores. Call it on a
    /// quiescent engine (the log writes snapshots from a replayed copy).
    pub fn export(&self, sink: impl EventSink) -> Result<u64, crate::event::SinkError> {
        crate::state::export(self, sink)
    }

    // Accessors for `state.rs`.
    pub(crate) fn sales_by_ordinal(&self) -> Arc<Vec<Arc<Sale>>> {
        self.by_ordinal.load_full()
    }
}

impl Engine {
    /// Every sale's full state, in ordinal order (for `state.rs`).
    pub(crate) fn sale_states(&self) -> Vec<SaleState> {
        self.sales_by_ordinal()
            .iter()
            .map(|s| SaleState {
                ordinal: s.ordinal,
                sku: s.sku.to_string(),
                per_user_limit: s.per_user_limit,
                starts_at_ms: s.starts_at_ms,
                ends_at_ms: s.ends_at_ms,
                reservation_ttl_ms: s.reservation_ttl_ms,
                total: s.total.load(Ordering::Acquire),
                remaining: s.remaining.load(Ordering::Acquire),
                paid: s.paid.load(Ordering::Acquire),
                next_seq: s.next_seq.load(Ordering::Acquire),
                status: status_name(s.status.load(StdOrdering::Acquire)),
            })
            .collect()
    }

    /// Every order, sorted by id (for `state.rs`).
    pub(crate) fn order_records(&self) -> Vec<OrderRecord> {
        let mut out = Vec::new();
        for sale in self.sales_by_ordinal().iter() {
            for seq in 0..sale.next_seq.load(Ordering::Acquire) {
                let Some(o) = sale.orders.get(seq) else {
                    continue;
                };
                out.push(OrderRecord {
                    order_id: OrderId::new(sale.ordinal, seq).0,
                    user_id: o.user_id,
                    qty: o.qty,
                    state: o.state,
                    created_at_ms: sale.created_at(&o),
                    expires_at_ms: o.expires_at_ms,
                });
            }
        }
        out
    }

    pub(crate) fn holding_parts(&self) -> Vec<((u32, u64), u32)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for entry in shard.holdings.iter() {
                let held = entry.value().load(Ordering::Acquire);
                if held > 0 {
                    out.push((*entry.key(), held));
                }
            }
        }
        out.sort_unstable();
        out
    }

    pub(crate) fn idempotency_parts(&self) -> Vec<((u64, u64), u64)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for entry in shard.idempotency.iter() {
                if *entry.value() != IDEM_PENDING {
                    out.push((*entry.key(), *entry.value()));
                }
            }
        }
        out.sort_unstable();
        out
    }
}

const fn status_name(status: u8) -> &'static str {
    match status {
        STATUS_OPEN => "open",
        STATUS_PAUSED => "paused",
        _ => "ended",
    }
}
