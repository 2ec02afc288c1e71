//! Sale administration: creating a sale, topping up its stock, pausing,
//! resuming and ending it, and the sale views. Operator actions are rare and
//! serialised per sale (creation engine-wide), so none of this is hot.

use std::sync::atomic::Ordering as StdOrdering;
use std::sync::Arc;

use crate::engine::Engine;
use crate::event::{Event, EventSink};
use crate::gate;
use crate::sale::{SaleEntry, SaleStatus, STATUS_ENDED};
use crate::sync::Ordering;
use crate::types::{
    validate_new_sku, validate_sku, CreateSaleError, SaleOpError, SaleSpec, SaleView, QTY_MAX,
    RESERVATION_TTL_MAX_MS, SALES_MAX, STOCK_MAX,
};

impl Engine {
    /// Creates a sale; the view returned is the sale as of `now_ms`.
    pub fn create_sale(
        &self,
        spec: SaleSpec,
        now_ms: u64,
        mut sink: impl EventSink,
    ) -> Result<SaleView, CreateSaleError> {
        validate_new_sku(&spec.sku).map_err(CreateSaleError::InvalidSku)?;
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

    /// The sale an operator action names, or why there is none.
    fn sale_for_op(&self, sku: &str) -> Result<Arc<SaleEntry>, SaleOpError> {
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
        self.set_status(sku, SaleStatus::Paused, now_ms, sink)
    }

    /// Reopens a paused sale.
    pub fn resume(
        &self,
        sku: &str,
        now_ms: u64,
        sink: impl EventSink,
    ) -> Result<SaleView, SaleOpError> {
        self.set_status(sku, SaleStatus::Open, now_ms, sink)
    }

    /// Ends a sale for good. Reserved orders may still be paid or cancelled.
    pub fn end(
        &self,
        sku: &str,
        now_ms: u64,
        sink: impl EventSink,
    ) -> Result<SaleView, SaleOpError> {
        self.set_status(sku, SaleStatus::Ended, now_ms, sink)
    }

    /// Moves a sale that has not ended to `status`, logging the move.
    fn set_status(
        &self,
        sku: &str,
        status: SaleStatus,
        now_ms: u64,
        mut sink: impl EventSink,
    ) -> Result<SaleView, SaleOpError> {
        let sale = self.sale_for_op(sku)?;
        let _guard = sale.admin.lock();
        let current = sale.status.load(StdOrdering::Acquire);
        if current == status as u8 {
            // Repeating an action is idempotent and logs nothing.
            return Ok(sale.view(now_ms));
        }
        if current == STATUS_ENDED {
            return Err(SaleOpError::Ended);
        }
        // One arm per status (`SaleStatus::event`): a new status cannot be
        // logged as some other one.
        let event = status.event(sale.ordinal);
        sink.emit(&event).map_err(SaleOpError::Unavailable)?;
        sale.status.store(status as u8, StdOrdering::Release);
        Ok(sale.view(now_ms))
    }

    /// One sale as of `now_ms`; `None` for an unknown or invalid SKU.
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

    /// The newest `limit` sales, in creation order, and how many sales
    /// there are: a view whose cost is bounded by `limit`, however many
    /// sales the engine holds.
    pub fn recent_sales(&self, limit: usize, now_ms: u64) -> (Vec<SaleView>, usize) {
        let sales = self.by_ordinal.load();
        let skip = sales.len().saturating_sub(limit);
        let views = sales[skip..].iter().map(|s| s.view(now_ms)).collect();
        (views, sales.len())
    }
}
