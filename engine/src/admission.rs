//! Admission: deciding one purchase. This is the hot path. A purchase runs
//! read-only checks first (status, limit, sold out, order cap), then pins
//! the user's handle, claims its idempotency record, the user's quota and
//! the stock, and only then writes its order, each write undone if a later
//! step refuses.

use dashmap::mapref::entry::Entry;

use crate::engine::Engine;
use crate::event::{Event, EventSink};
use crate::gate;
use crate::sale::SaleEntry;
use crate::shard::{SkuShard, IDEM_PENDING};
use crate::sync::Ordering;
use crate::types::{
    valid_user_id, validate_sku, Admission, OrderId, PurchaseOutcome, Rejection, QTY_MAX,
};
use crate::users::UserRef;

impl Engine {
    /// Decides one purchase by `user_id` (1 to `USER_ID_LEN_MAX` bytes; two
    /// ids are one user exactly when their bytes are equal).
    ///
    /// Order of checks: cheap validation, then the read-only gate (status,
    /// quantity against the limit, sold out; a replay of an earlier admission
    /// wins over all three), and only then the shared writes (the user's
    /// handle, idempotency claim, user quota, stock gate, order).
    pub fn purchase(
        &self,
        sku: &str,
        user_id: &str,
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
        if !valid_user_id(user_id) {
            return Rejected(Rejection::InvalidUser);
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
            // after the sale sold out or ended, so look for one first. This
            // read takes no reference on the user (a refusal must not grow
            // the user table), so the handle may be stale: the replay checks
            // the order's owner by name.
            if let Some(request_id) = request_id {
                if let Some(user) = self.users.lookup(user_id) {
                    let idem = self.shard_of_user(user);
                    if let Some(order_id) = idem.idempotency.get(&(user, request_id)).map(|v| *v) {
                        if let Some(replay) = self.replay_admission(sale, order_id, user_id, qty) {
                            return replay;
                        }
                    }
                }
            }
            return Rejected(match open {
                Err(rejection) => rejection,
                Ok(()) if qty > sale.per_user_limit => Rejection::LimitExceeded,
                Ok(()) if short => Rejection::SoldOut,
                Ok(()) => Rejection::OrderLimit,
            });
        }

        // From here on the user is pinned: its handle stays valid, and an
        // admission keeps the reference for its order.
        let Some(user) = self.users.pin(user_id) else {
            return Rejected(Rejection::UsersFull);
        };
        let outcome = self.claim_and_admit(
            sale, shard, user, user_id, qty, request_id, now_ms, &mut sink,
        );
        match outcome {
            PurchaseOutcome::Admitted(_) => {}
            PurchaseOutcome::Replayed(_) | PurchaseOutcome::Rejected(_) => self.users.unpin(user),
        }
        outcome
    }

    /// The idempotency claim around [`Engine::admit`], for a pinned `user`.
    #[allow(clippy::too_many_arguments)]
    fn claim_and_admit(
        &self,
        sale: &SaleEntry,
        shard: &SkuShard,
        user: UserRef,
        user_id: &str,
        qty: u32,
        request_id: Option<u64>,
        now_ms: u64,
        sink: &mut impl EventSink,
    ) -> PurchaseOutcome {
        let idem_shard = self.shard_of_user(user);
        if let Some(request_id) = request_id {
            match idem_shard.idempotency.entry((user, request_id)) {
                Entry::Occupied(entry) => {
                    let order_id = *entry.get();
                    drop(entry);
                    // Pinned, so the record is this user's: the owner matches.
                    return self
                        .replay_admission(sale, order_id, user_id, qty)
                        .unwrap_or(PurchaseOutcome::Rejected(Rejection::InProgress));
                }
                Entry::Vacant(entry) => {
                    entry.insert(IDEM_PENDING);
                }
            }
        }
        let outcome = self.admit(sale, shard, user, user_id, qty, request_id, now_ms, sink);
        if let Some(request_id) = request_id {
            let key = (user, request_id);
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
        user: UserRef,
        user_id: &str,
        qty: u32,
        request_id: Option<u64>,
        now_ms: u64,
        sink: &mut impl EventSink,
    ) -> PurchaseOutcome {
        use PurchaseOutcome::Rejected;
        if !shard.try_hold(sale.ordinal, user, qty, sale.per_user_limit) {
            return Rejected(Rejection::LimitExceeded);
        }
        if !gate::try_take(&sale.remaining, u64::from(qty)) {
            shard.release_holding(sale.ordinal, user, qty);
            return Rejected(Rejection::SoldOut);
        }
        let seq = sale.next_seq.fetch_add(1, Ordering::AcqRel);
        let order_id = OrderId::new(sale.ordinal, seq);
        let expires_at_ms = now_ms.saturating_add(sale.reservation_ttl_ms);
        let event = Event::Admitted {
            order_id: order_id.0,
            user_id: user_id.to_owned(),
            qty,
            request_id,
            created_at_ms: now_ms,
            expires_at_ms,
        };
        if let Err(err) = sink.emit(&event) {
            // Not logged, so not admitted: put everything back. The order id
            // is burned, which is harmless (ids need only be unique).
            gate::give_back(&sale.remaining, u64::from(qty));
            shard.release_holding(sale.ordinal, user, qty);
            return Rejected(Rejection::Unavailable(err));
        }
        // The order becomes visible only after its event is queued, so any
        // later pay, cancel or expiry of it is logged after the admission.
        let fresh = sale.insert_reserved(seq, user, qty, expires_at_ms);
        assert!(fresh, "order sequence {seq} issued twice");
        shard.expiry_incoming.push((expires_at_ms, order_id.0));
        PurchaseOutcome::Admitted(Admission {
            order_id,
            qty,
            created_at_ms: now_ms,
            expires_at_ms,
        })
    }

    /// The answer to a repeated request whose idempotency record holds
    /// `order_id` (or `IDEM_PENDING`): the earlier admission if it was for
    /// this sale and quantity, else why not. `None` when the order is not
    /// `user_id`'s (a record found through a stale handle): no replay.
    fn replay_admission(
        &self,
        sale: &SaleEntry,
        order_id: u64,
        user_id: &str,
        qty: u32,
    ) -> Option<PurchaseOutcome> {
        if order_id == IDEM_PENDING {
            return Some(PurchaseOutcome::Rejected(Rejection::InProgress));
        }
        let id = OrderId(order_id);
        let Some(home) = self.sale_by_ordinal(id.ordinal()) else {
            // Recorded as done, so its sale exists; a retry is the safe
            // answer should that ever be wrong.
            return Some(PurchaseOutcome::Rejected(Rejection::InProgress));
        };
        let Some(order) = home.orders.get(id.seq()) else {
            // Recorded as done, so its order exists; being wrong here would
            // be a bug, but a retry is the safe answer for the client.
            return Some(PurchaseOutcome::Rejected(Rejection::InProgress));
        };
        if !self.users.is(order.user, user_id) {
            return None;
        }
        if id.ordinal() != sale.ordinal || order.qty != qty {
            return Some(PurchaseOutcome::Rejected(Rejection::RequestIdReused));
        }
        Some(PurchaseOutcome::Replayed(Admission {
            order_id: id,
            qty,
            created_at_ms: sale.created_at(&order),
            expires_at_ms: order.expires_at_ms,
        }))
    }
}
