//! Admission: deciding one purchase. This is the hot path. A purchase runs
//! read-only checks first (status, limit, sold out, order cap), then claims
//! its idempotency record, the user's quota and the stock, and only then
//! writes its order, each write undone if a later step refuses.

use dashmap::mapref::entry::Entry;

use crate::engine::Engine;
use crate::event::{Event, EventSink};
use crate::gate;
use crate::sale::SaleEntry;
use crate::shard::{SkuShard, IDEM_PENDING};
use crate::sync::Ordering;
use crate::types::{validate_sku, Admission, OrderId, PurchaseOutcome, Rejection, QTY_MAX};

impl Engine {
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
                    return self.replay_admission(sale, order_id, user_id, qty);
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
                    return self.replay_admission(sale, order_id, user_id, qty);
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
                // (`admit` never answers `Replayed`; it is named so that a
                // new outcome has to be placed here.)
                PurchaseOutcome::Replayed(_) | PurchaseOutcome::Rejected(_) => {
                    idem_shard.idempotency.remove(&key);
                }
            }
        }
        outcome
    }

    /// The shared writes of an admission, in order: user quota, stock gate,
    /// event, order. Each is undone if a later one refuses.
    #[allow(clippy::too_many_arguments)]
    fn admit(
        &self,
        sale: &SaleEntry,
        shard: &SkuShard,
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
        let fresh = sale.insert_reserved(seq, user_id, qty, expires_at_ms);
        assert!(fresh, "order sequence {seq} issued twice");
        shard.expiry_incoming.push((expires_at_ms, order_id.0));
        PurchaseOutcome::Admitted(Admission {
            order_id,
            user_id,
            qty,
            created_at_ms: now_ms,
            expires_at_ms,
        })
    }

    /// The answer to a repeated request whose idempotency record holds
    /// `order_id` (or `IDEM_PENDING`): the earlier admission if it was for
    /// this sale and quantity, else why not.
    fn replay_admission(
        &self,
        sale: &SaleEntry,
        order_id: u64,
        user_id: u64,
        qty: u32,
    ) -> PurchaseOutcome {
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
}
