//! What the workload plans for an order and what the server acknowledged:
//! the records the verifier later holds the server to.

use crate::api::SaleDoc;
use crate::stats::OpKind;
use serde::Serialize;

/// What the harness plans to do with an admitted order after the rush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Keep,
    Cancel,
    Pay,
}

/// The state the harness expects an acknowledged order to be in at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expected {
    Reserved,
    Paid,
    Cancelled,
    /// The server said `expired` to a cancel or pay.
    Expired,
    /// The cancel/pay was never answered, so either state is fine.
    ReservedOr(Action),
}

/// An admission the server acknowledged (201, or 200 on replay).
#[derive(Debug, Clone, Serialize)]
pub struct Ack {
    pub order_id: String,
    /// Index into the run's SKU list.
    pub sku: usize,
    pub user_id: u64,
    pub qty: u32,
    pub expires_at_ms: u64,
    /// Which request got it admitted.
    pub via: OpKind,
    pub action: Action,
    pub expected: Expected,
}

/// One SKU of the run, with the sale as it was before the rush.
#[derive(Debug, Clone)]
pub struct SkuInfo {
    pub name: String,
    pub purchase_path: String,
    pub per_user_limit: u32,
    pub baseline: SaleDoc,
}
