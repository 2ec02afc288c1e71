//! An order's life after admission: looking it up, paying, cancelling, and
//! expiring reservations whose TTL has passed. Every change holds the
//! order's lock across its state check, its event and its new state, so the
//! log orders the changes of one order as they happened.

use std::cmp::Reverse;
use std::sync::Arc;

use crate::engine::Engine;
use crate::event::{Event, EventSink};
use crate::gate;
use crate::orders::OrderEntry;
use crate::sale::SaleEntry;
use crate::sync::Ordering;
use crate::types::{ExpireReport, OrderId, OrderOutcome, OrderRejection, OrderState, OrderView};

impl Engine {
    /// The outside view of `order`, the order `order_id` of `sale`.
    fn view_of(&self, sale: &SaleEntry, order_id: OrderId, order: &OrderEntry) -> OrderView {
        OrderView {
            order_id,
            sku: sale.sku.clone(),
            user_id: Arc::from(self.users.name(order.user)),
            qty: order.qty,
            state: order.state,
            created_at_ms: sale.created_at(order),
            expires_at_ms: order.expires_at_ms,
        }
    }

    /// One order as it stands now; `None` if there is no such order.
    pub fn order(&self, order_id: OrderId) -> Option<OrderView> {
        let sale = self.sale_by_ordinal(order_id.ordinal())?;
        let order = sale.orders.get(order_id.seq())?;
        Some(self.view_of(&sale, order_id, &order))
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
                    order: self.view_of(&sale, order_id, &order),
                    changed: false,
                }
            }
            OrderState::Cancelled => return Rejected(OrderRejection::Cancelled),
            OrderState::Reserved => false,
            OrderState::Expired => {
                if !shard.try_hold(sale.ordinal, order.user, order.qty, sale.per_user_limit) {
                    return Rejected(OrderRejection::Expired);
                }
                if !gate::try_take(&sale.remaining, u64::from(order.qty)) {
                    shard.release_holding(sale.ordinal, order.user, order.qty);
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
                shard.release_holding(sale.ordinal, order.user, order.qty);
            }
            return Rejected(OrderRejection::Unavailable(err));
        }
        guard.set_state(OrderState::Paid);
        sale.paid.fetch_add(u64::from(order.qty), Ordering::AcqRel);
        Done {
            order: self.view_of(&sale, order_id, &guard.order),
            changed: true,
        }
    }

    /// Cancels a reserved order of `user_id`, returning its units. Repeating
    /// it is idempotent; another user's order is "unknown" (the owner is
    /// compared by the id's bytes).
    pub fn cancel(
        &self,
        order_id: OrderId,
        user_id: &str,
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
        if !self.users.is(order.user, user_id) {
            return Rejected(OrderRejection::UnknownOrder);
        }
        match order.state {
            OrderState::Reserved => {}
            OrderState::Cancelled => {
                return Done {
                    order: self.view_of(&sale, order_id, &order),
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
        let view = self.view_of(&sale, order_id, &guard.order);
        drop(guard);
        gate::give_back(&sale.remaining, u64::from(order.qty));
        shard.release_holding(sale.ordinal, order.user, order.qty);
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
                let (qty, user) = (guard.order.qty, guard.order.user);
                drop(guard);
                gate::give_back(&sale.remaining, u64::from(qty));
                shard.release_holding(sale.ordinal, user, qty);
                report.expired += 1;
            }
        }
        report
    }
}
