//! One sale's live state ([`SaleEntry`]) and its operator status
//! ([`SaleStatus`]): the gate counters a purchase reads and writes, the order
//! table, and the read-only checks made before any shared write.
//!
//! This sits below [`crate::engine::Engine`]: it knows nothing of shards or of
//! the engine, so every module that implements a part of `Engine` can use it.

use std::sync::atomic::{AtomicU8, Ordering as StdOrdering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use parking_lot::Mutex;

use crate::event::Event;
use crate::orders::{OrderEntry, OrderTable};
use crate::sync::{AtomicU64, Ordering};
use crate::types::{OrderState, Rejection, SalePhase, SaleSpec, SaleView};
use crate::users::UserRef;

/// What an operator last set on a sale. Stored as its byte in
/// [`SaleEntry::status`] so the purchase gate reads it with one load; the
/// byte constants below are what that hot path compares against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum SaleStatus {
    Open = 0,
    Paused = 1,
    Ended = 2,
}

pub(crate) const STATUS_OPEN: u8 = SaleStatus::Open as u8;
pub(crate) const STATUS_PAUSED: u8 = SaleStatus::Paused as u8;
pub(crate) const STATUS_ENDED: u8 = SaleStatus::Ended as u8;

impl SaleStatus {
    /// Decodes a stored status byte. Only `as u8` of a variant is ever
    /// stored, so any other byte is a bug, reported loudly rather than read
    /// as some status.
    pub(crate) fn from_byte(byte: u8) -> SaleStatus {
        match byte {
            STATUS_OPEN => SaleStatus::Open,
            STATUS_PAUSED => SaleStatus::Paused,
            STATUS_ENDED => SaleStatus::Ended,
            other => unreachable!("sale status byte {other} is never stored"),
        }
    }

    /// The name `SaleState::status` carries.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            SaleStatus::Open => "open",
            SaleStatus::Paused => "paused",
            SaleStatus::Ended => "ended",
        }
    }

    /// The event that records a move of sale `ordinal` into this status.
    pub(crate) fn event(self, ordinal: u32) -> Event {
        match self {
            SaleStatus::Open => Event::Resumed { ordinal },
            SaleStatus::Paused => Event::Paused { ordinal },
            SaleStatus::Ended => Event::Ended { ordinal },
        }
    }
}

/// One sale. The fields a purchase reads and writes sit on their own cache
/// lines so a hot SKU's gate does not share a line with its bookkeeping.
pub(crate) struct SaleEntry {
    pub(crate) ordinal: u32,
    pub(crate) shard: u32,
    pub(crate) sku: Arc<str>,
    pub(crate) per_user_limit: u32,
    pub(crate) starts_at_ms: Option<u64>,
    pub(crate) ends_at_ms: Option<u64>,
    pub(crate) reservation_ttl_ms: u64,
    /// Units not held by any reserved or paid order: the stock gate.
    pub(crate) remaining: CachePadded<AtomicU64>,
    /// Next order sequence of this sale.
    pub(crate) next_seq: CachePadded<AtomicU64>,
    /// Units in paid orders.
    pub(crate) paid: AtomicU64,
    /// Initial stock plus every top-up.
    pub(crate) total: AtomicU64,
    /// This sale's orders, by sequence number.
    pub(crate) orders: OrderTable,
    /// Orders written to `orders` (sequence numbers burned by a refused
    /// event leave holes, so this can be below `next_seq`).
    pub(crate) order_count: AtomicU64,
    pub(crate) status: AtomicU8,
    /// Serialises operator actions (top-up, pause, resume, end) with their
    /// events so the log orders them as they happened. Never taken by buyers.
    pub(crate) admin: Mutex<()>,
}

impl SaleEntry {
    /// Records a new reserved order at `seq` and counts it; false (and
    /// nothing counted) if `seq` is taken. Admission and replay both make
    /// orders this way.
    #[inline]
    pub(crate) fn insert_reserved(
        &self,
        seq: u64,
        user: UserRef,
        qty: u32,
        expires_at_ms: u64,
    ) -> bool {
        let order = OrderEntry {
            user,
            expires_at_ms,
            qty,
            state: OrderState::Reserved,
        };
        let fresh = self.orders.insert(seq, order);
        if fresh {
            self.order_count.fetch_add(1, Ordering::Relaxed);
        }
        fresh
    }

    /// A new open sale with all of `spec.stock` remaining and no orders.
    pub(crate) fn new(ordinal: u32, shard: u32, spec: &SaleSpec) -> SaleEntry {
        SaleEntry {
            ordinal,
            shard,
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
        }
    }

    /// The sale as a buyer sees it at `now_ms`.
    pub(crate) fn view(&self, now_ms: u64) -> SaleView {
        let total = self.total.load(Ordering::Acquire);
        let paid = self.paid.load(Ordering::Acquire);
        let remaining = self.remaining.load(Ordering::Acquire);
        let reserved = total.saturating_sub(remaining).saturating_sub(paid);
        let past_end = self.ends_at_ms.is_some_and(|end| now_ms >= end);
        // Every status named, so a new one cannot show as some other phase.
        let phase = match self.status() {
            SaleStatus::Ended => SalePhase::Ended,
            SaleStatus::Paused | SaleStatus::Open if past_end => SalePhase::Ended,
            SaleStatus::Paused => SalePhase::Paused,
            SaleStatus::Open if self.starts_at_ms.is_some_and(|start| now_ms < start) => {
                SalePhase::Scheduled
            }
            SaleStatus::Open if remaining == 0 => SalePhase::SoldOut,
            SaleStatus::Open => SalePhase::Open,
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
            orders: self.order_count.load(Ordering::Relaxed),
        }
    }

    /// When an order was admitted: its expiry less the sale's TTL (the slot
    /// does not store it, to stay at 24 bytes).
    pub(crate) fn created_at(&self, order: &OrderEntry) -> u64 {
        order.expires_at_ms.saturating_sub(self.reservation_ttl_ms)
    }

    /// The gate a purchase passes before any shared write. Reads only.
    #[inline]
    pub(crate) fn check_open(&self, now_ms: u64) -> Result<(), Rejection> {
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

    /// The status an operator last set.
    pub(crate) fn status(&self) -> SaleStatus {
        SaleStatus::from_byte(self.status.load(StdOrdering::Acquire))
    }
}
