//! The [`Engine`] itself: its configuration, its shards and the sale
//! registry (lookups by SKU and by ordinal, and publishing a new sale).
//!
//! The operations are `impl Engine` blocks in the modules above this one, one
//! per concern: [`crate::admin`] (sales), [`crate::admission`] (purchases),
//! [`crate::lifecycle`] (pay, cancel, expiry), [`crate::apply`] (rebuilding
//! from events) and [`crate::snapshot`] (state and export). They use this
//! module; it uses none of them.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use crate::sale::SaleEntry;
use crate::shard::SkuShard;
use crate::sync::Ordering;
use crate::types::{fnv1a_64, OrderId, SaleSpec, ORDER_SEQ_BITS};
use crate::users::{UserHashing, UserRef, UserTable};

/// Engine tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Number of shards, at least 1.
    pub shards: u32,
    /// Orders one sale may make, cancelled and expired ones included; past
    /// it, purchases are refused with [`Rejection::OrderLimit`](crate::Rejection::OrderLimit) (admissions
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

/// The flash-sale engine. Shareable across threads (`&Engine` everywhere);
/// every operation takes the time and an event sink from the caller.
pub struct Engine {
    pub(crate) shards: Box<[SkuShard]>,
    /// Sales by ordinal, for order-id lookups.
    pub(crate) by_ordinal: ArcSwap<Vec<Arc<SaleEntry>>>,
    /// Serialises sale creation (rare) so ordinals are dense and logged in order.
    pub(crate) create_lock: Mutex<()>,
    pub(crate) max_orders_per_sale: u64,
    /// Every buyer's id, interned: orders, holdings and idempotency records
    /// name users by their handle.
    pub(crate) users: UserTable,
}

impl Engine {
    /// An engine with no sales.
    pub fn new(config: EngineConfig) -> Engine {
        Self::with_user_hashing(config, UserHashing::Keyed(crate::shard::KeyedBuild::new()))
    }

    /// An engine in which every user id has the same hash, for tests that
    /// show two ids are kept apart by their bytes, never by their hash:
    /// distinct limits, orders and request ids. Slow with many users (every
    /// lookup compares every id); never use it to serve.
    #[doc(hidden)]
    pub fn with_colliding_user_hashes(config: EngineConfig) -> Engine {
        Self::with_user_hashing(config, UserHashing::Colliding)
    }

    fn with_user_hashing(config: EngineConfig, hashing: UserHashing) -> Engine {
        let shards = config.shards.max(1);
        Engine {
            shards: (0..shards).map(|_| SkuShard::new()).collect(),
            by_ordinal: ArcSwap::from_pointee(Vec::new()),
            create_lock: Mutex::new(()),
            max_orders_per_sale: config.max_orders_per_sale,
            users: UserTable::new(hashing),
        }
    }

    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    pub(crate) fn shard_of_sku(&self, sku: &str) -> u32 {
        // Deterministic, so a SKU lands on the same shard on every start
        // with the same shard count.
        (fnv1a_64(sku.as_bytes()) % self.shards.len() as u64) as u32
    }

    /// The shard that keeps `user`'s idempotency records.
    pub(crate) fn shard_of_user(&self, user: UserRef) -> &SkuShard {
        // A cheap mix so consecutive handles spread over shards.
        let h = u64::from(user.0).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        &self.shards[(h % self.shards.len() as u64) as usize]
    }

    /// Distinct buyers the engine holds now: those with orders, and those
    /// with a purchase being decided.
    pub fn user_count(&self) -> u64 {
        self.users.len()
    }

    /// The sale of `sku`, looked up in the shard the SKU hashes to.
    pub(crate) fn find_sale(&self, sku: &str) -> Option<Arc<SaleEntry>> {
        let shard = &self.shards[self.shard_of_sku(sku) as usize];
        shard.sales.load().get(sku).cloned()
    }

    pub(crate) fn sale_by_ordinal(&self, ordinal: u32) -> Option<Arc<SaleEntry>> {
        self.by_ordinal.load().get(ordinal as usize).cloned()
    }

    /// Publishes a new sale. Caller holds `create_lock` (or is replaying).
    pub(crate) fn install_sale(&self, ordinal: u32, spec: &SaleSpec) -> Arc<SaleEntry> {
        let shard_index = self.shard_of_sku(&spec.sku);
        let sale = Arc::new(SaleEntry::new(ordinal, shard_index, spec));
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

    /// The sale an order id names and the shard that holds its orders.
    pub(crate) fn order_home(&self, order_id: OrderId) -> Option<(Arc<SaleEntry>, &SkuShard)> {
        let sale = self.sale_by_ordinal(order_id.ordinal())?;
        let shard = &self.shards[sale.shard as usize];
        Some((sale, shard))
    }

    /// Number of orders held (all states).
    pub fn order_count(&self) -> u64 {
        self.by_ordinal
            .load()
            .iter()
            .map(|s| s.order_count.load(Ordering::Relaxed))
            .sum()
    }
}
