//! A plain, sorted picture of the engine's state, as [`crate::Engine::state`]
//! returns it: owned data with no atomics, so two engines (say, a live one and
//! one rebuilt from its log) can be compared with `==`.
//!
//! These types depend on nothing but [`crate::types`]; the engine fills them
//! in (`snapshot.rs`), never the reverse.

use crate::types::OrderState;

/// One sale's full state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaleState {
    pub ordinal: u32,
    pub sku: String,
    pub per_user_limit: u32,
    pub starts_at_ms: Option<u64>,
    pub ends_at_ms: Option<u64>,
    pub reservation_ttl_ms: u64,
    pub total: u64,
    pub remaining: u64,
    pub paid: u64,
    /// Next order sequence; above every id issued.
    pub next_seq: u64,
    /// "open", "paused" or "ended": what an operator last set.
    pub status: &'static str,
}

/// One order's full state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: u64,
    pub user_id: String,
    pub qty: u32,
    pub state: OrderState,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

/// Everything the engine knows, sorted, so two engines can be compared with `==`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineState {
    pub sales: Vec<SaleState>,
    pub orders: Vec<OrderRecord>,
    /// ((sale ordinal, user id), units held), nonzero only.
    pub holdings: Vec<((u32, String), u32)>,
    /// ((user id, request id), order id).
    pub idempotency: Vec<((String, u64), u64)>,
    /// Distinct users the engine holds: every buyer with an order (a live
    /// engine may hold more while purchases are being decided).
    pub users: u64,
}
