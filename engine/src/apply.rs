//! Rebuilding state from events: [`Engine::apply`] and its two halves for
//! parallel recovery. Each event kind has its own function; none re-decides
//! anything, they check the event fits the state (so a foreign or corrupt
//! stream is an [`ApplyError`], never a panic) and write it.

use std::sync::atomic::Ordering as StdOrdering;
use std::sync::Arc;

use crate::engine::Engine;
use crate::event::Event;
use crate::gate;
use crate::orders::OrderGuard;
use crate::sale::SaleEntry;
use crate::sale::SaleStatus;
use crate::shard::SkuShard;
use crate::sync::Ordering;
use crate::types::{
    valid_user_id, validate_sku, ApplyError, OrderId, OrderState, SaleSpec, STOCK_MAX,
};

impl Engine {
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
    ///
    /// It interns the user without a reference: the order (which
    /// `apply_deferring_request_id` writes, before or after this) holds it.
    pub fn restore_request_id(&self, event: &Event) {
        if let Event::Admitted {
            order_id,
            ref user_id,
            request_id: Some(request_id),
            ..
        } = *event
        {
            // A user id the table cannot take fails its admission's half
            // too (`apply_admitted`), which reports it; nothing to add here.
            if let Some(user) = self.users.intern(user_id) {
                self.shard_of_user(user)
                    .idempotency
                    .insert((user, request_id), order_id);
            }
        }
    }

    /// Dispatches on the event kind; one arm per kind, no wildcard, so a new
    /// kind does not compile until it is applied.
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
            } => self.apply_sale_created(
                ordinal,
                SaleSpec {
                    sku: sku.clone(),
                    stock,
                    per_user_limit,
                    starts_at_ms,
                    ends_at_ms,
                    reservation_ttl_ms,
                },
            ),
            Event::StockAdded { ordinal, add } => self.apply_stock_added(ordinal, add),
            Event::Paused { ordinal } => self.apply_status(ordinal, SaleStatus::Paused),
            Event::Resumed { ordinal } => self.apply_status(ordinal, SaleStatus::Open),
            Event::Ended { ordinal } => self.apply_status(ordinal, SaleStatus::Ended),
            Event::Admitted {
                order_id,
                ref user_id,
                qty,
                request_id,
                created_at_ms,
                expires_at_ms,
            } => {
                self.apply_admitted(order_id, user_id, qty, created_at_ms, expires_at_ms)?;
                if with_request_id && request_id.is_some() {
                    self.restore_request_id(event);
                }
                Ok(())
            }
            Event::Paid {
                order_id, retaken, ..
            } => self.apply_paid(order_id, retaken),
            Event::Cancelled { order_id, .. } => {
                self.apply_released(order_id, OrderState::Cancelled)
            }
            Event::Expired { order_id, .. } => self.apply_released(order_id, OrderState::Expired),
        }
    }

    /// A new sale, which must take the next ordinal.
    fn apply_sale_created(&self, ordinal: u32, spec: SaleSpec) -> Result<(), ApplyError> {
        let _guard = self.create_lock.lock();
        let expected = self.by_ordinal.load().len() as u32;
        if ordinal != expected {
            return Err(ApplyError::SaleOrdinal { ordinal, expected });
        }
        if validate_sku(&spec.sku).is_err() || self.find_sale(&spec.sku).is_some() {
            return Err(ApplyError::Invalid("sale sku invalid or duplicate"));
        }
        if spec.stock > STOCK_MAX || spec.per_user_limit == 0 {
            return Err(ApplyError::Invalid("sale stock or limit out of range"));
        }
        self.install_sale(ordinal, &spec);
        Ok(())
    }

    /// A top-up: total first, as in `add_stock`.
    fn apply_stock_added(&self, ordinal: u32, add: u64) -> Result<(), ApplyError> {
        let sale = self
            .sale_by_ordinal(ordinal)
            .ok_or(ApplyError::UnknownSale(ordinal))?;
        let total = sale.total.load(Ordering::Acquire);
        if total.checked_add(add).is_none_or(|t| t > STOCK_MAX) {
            return Err(ApplyError::Invalid("stock top-up overflows"));
        }
        sale.total.fetch_add(add, Ordering::AcqRel);
        gate::give_back(&sale.remaining, add);
        Ok(())
    }

    /// A pause, resume or end.
    fn apply_status(&self, ordinal: u32, status: SaleStatus) -> Result<(), ApplyError> {
        let sale = self
            .sale_by_ordinal(ordinal)
            .ok_or(ApplyError::UnknownSale(ordinal))?;
        sale.status.store(status as u8, StdOrdering::Release);
        Ok(())
    }

    /// The admission half of `Event::Admitted`: takes the units and the
    /// user's quota and writes the order, as `admit` did.
    fn apply_admitted(
        &self,
        order_id: u64,
        user_id: &str,
        qty: u32,
        created_at_ms: u64,
        expires_at_ms: u64,
    ) -> Result<(), ApplyError> {
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
        if !valid_user_id(user_id) {
            return Err(ApplyError::Invalid("admitted user id empty or too long"));
        }
        if sale.orders.get(id.seq()).is_some() {
            return Err(ApplyError::DuplicateOrder(order_id));
        }
        // The order keeps this reference; every refusal below gives it back.
        let user = self
            .users
            .pin(user_id)
            .ok_or(ApplyError::Invalid("the user table is full"))?;
        if !gate::try_take(&sale.remaining, u64::from(qty)) {
            self.users.unpin(user);
            return Err(ApplyError::Invalid("admission exceeds remaining stock"));
        }
        if !shard.try_hold(sale.ordinal, user, qty, sale.per_user_limit) {
            gate::give_back(&sale.remaining, u64::from(qty));
            self.users.unpin(user);
            return Err(ApplyError::Invalid("admission exceeds the user's limit"));
        }
        sale.next_seq.fetch_max(id.seq() + 1, Ordering::AcqRel);
        let fresh = sale.insert_reserved(id.seq(), user, qty, expires_at_ms);
        assert!(fresh, "checked vacant above; apply runs on one thread");
        shard.expiry_incoming.push((expires_at_ms, order_id));
        Ok(())
    }

    /// A payment: of a reserved order, or of an expired one whose units it
    /// takes again (`retaken`).
    fn apply_paid(&self, order_id: u64, retaken: bool) -> Result<(), ApplyError> {
        self.with_logged_order(order_id, |sale, shard, guard| {
            Self::pay_logged(sale, shard, guard, retaken)
        })
    }

    fn pay_logged(
        sale: &SaleEntry,
        shard: &SkuShard,
        guard: &mut OrderGuard<'_>,
        retaken: bool,
    ) -> Result<(), ApplyError> {
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
            if !shard.try_hold(sale.ordinal, order.user, order.qty, sale.per_user_limit) {
                gate::give_back(&sale.remaining, u64::from(order.qty));
                return Err(ApplyError::Invalid(
                    "payment retake exceeds the user's limit",
                ));
            }
        }
        guard.set_state(OrderState::Paid);
        sale.paid.fetch_add(u64::from(order.qty), Ordering::AcqRel);
        Ok(())
    }

    /// A cancellation or an expiry (`to`): a reserved order gives its units
    /// and the user's quota back.
    fn apply_released(&self, order_id: u64, to: OrderState) -> Result<(), ApplyError> {
        debug_assert!(!to.holds_units(), "a release ends in a state without units");
        // The order's lock is let go before the units and the quota are
        // given back, as on the live path.
        let (sale, shard, qty, user) = self.with_logged_order(order_id, |sale, shard, guard| {
            if guard.order.state != OrderState::Reserved {
                return Err(ApplyError::Invalid(
                    "release of an order that is not reserved",
                ));
            }
            guard.set_state(to);
            Ok((sale.clone(), shard, guard.order.qty, guard.order.user))
        })?;
        gate::give_back(&sale.remaining, u64::from(qty));
        shard.release_holding(sale.ordinal, user, qty);
        Ok(())
    }
}

impl Engine {
    /// Runs `f` on a logged order, locked, with its sale and shard; an
    /// order this engine does not hold is `UnknownOrder`.
    fn with_logged_order<'e, R>(
        &'e self,
        order_id: u64,
        f: impl FnOnce(&Arc<SaleEntry>, &'e SkuShard, &mut OrderGuard<'_>) -> Result<R, ApplyError>,
    ) -> Result<R, ApplyError> {
        let id = OrderId(order_id);
        let (sale, shard) = self
            .order_home(id)
            .ok_or(ApplyError::UnknownOrder(order_id))?;
        let mut guard = sale
            .orders
            .lock(id.seq())
            .ok_or(ApplyError::UnknownOrder(order_id))?;
        f(&sale, shard, &mut guard)
    }
}
