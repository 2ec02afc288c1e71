//! The engine's state as plain data: [`Engine::state`], a sorted copy for
//! equality checks, and [`Engine::export`], the compact event stream a
//! snapshot stores. Both read a quiescent engine; neither is on a hot path.

use std::collections::HashMap;
use std::sync::atomic::Ordering as StdOrdering;

use crate::engine::Engine;
use crate::event::{Event, EventSink, SinkError};
use crate::sale::{SaleEntry, SaleStatus};
use crate::shard::IDEM_PENDING;
use crate::state::{EngineState, OrderRecord, SaleState};
use crate::sync::Ordering;
use crate::types::{OrderId, OrderState};

impl Engine {
    /// A sorted, plain copy of the whole state, for equality checks in tests
    /// and for snapshots. Call it on a quiescent engine.
    pub fn state(&self) -> EngineState {
        EngineState {
            sales: self.sale_states(),
            orders: self.order_records(),
            holdings: self.holding_parts(),
            idempotency: self.idempotency_parts(),
            users: self.users.len(),
        }
    }

    /// Emits a compact event stream that rebuilds this engine's state when
    /// applied to a fresh engine: what a snapshot stores. Call it on a
    /// quiescent engine (the log writes snapshots from a replayed copy).
    ///
    /// The stream: each sale created with its total stock, then the released
    /// orders (cancelled, expired), each admitted and at once released, then
    /// the orders that hold units, then each sale's status. Released orders go
    /// first because each one's units may since have gone to another order:
    /// admitting them next to the holders could exceed the stock or a user's
    /// limit on replay. Ids burned by a refused admission past the last logged
    /// order are reissued after a restart; nobody ever saw them.
    pub fn export(&self, mut sink: impl EventSink) -> Result<u64, SinkError> {
        let mut count = self.export_sales(&mut sink)?;
        count += self.export_orders(&mut sink)?;
        // Status last: admissions above were replayed into an open sale.
        count += self.export_statuses(&mut sink)?;
        Ok(count)
    }

    /// One `SaleCreated` per sale, with its total stock.
    fn export_sales(&self, sink: &mut impl EventSink) -> Result<u64, SinkError> {
        let mut count = 0u64;
        for s in &self.sale_states() {
            sink.emit(&Event::SaleCreated {
                ordinal: s.ordinal,
                sku: s.sku.clone(),
                stock: s.total,
                per_user_limit: s.per_user_limit,
                starts_at_ms: s.starts_at_ms,
                ends_at_ms: s.ends_at_ms,
                reservation_ttl_ms: s.reservation_ttl_ms,
            })?;
            count += 1;
        }
        Ok(count)
    }

    /// Every order admitted, released orders first, each followed by the
    /// event that moved it out of `reserved`, if any.
    fn export_orders(&self, sink: &mut impl EventSink) -> Result<u64, SinkError> {
        let mut count = 0u64;
        let mut request_ids: HashMap<u64, u64> = HashMap::new();
        for ((_user, request_id), order_id) in self.idempotency_parts() {
            request_ids.insert(order_id, request_id);
        }
        let orders = self.order_records();
        let released = orders.iter().filter(|o| !o.state.holds_units());
        let holding = orders.iter().filter(|o| o.state.holds_units());
        for o in released.chain(holding) {
            sink.emit(&Event::Admitted {
                order_id: o.order_id,
                user_id: o.user_id.clone(),
                qty: o.qty,
                request_id: request_ids.get(&o.order_id).copied(),
                created_at_ms: o.created_at_ms,
                expires_at_ms: o.expires_at_ms,
            })?;
            count += 1;
            let at_ms = o.created_at_ms;
            let next = match o.state {
                OrderState::Reserved => None,
                OrderState::Paid => Some(Event::Paid {
                    order_id: o.order_id,
                    at_ms,
                    retaken: false,
                }),
                OrderState::Cancelled => Some(Event::Cancelled {
                    order_id: o.order_id,
                    at_ms,
                }),
                OrderState::Expired => Some(Event::Expired {
                    order_id: o.order_id,
                    at_ms,
                }),
            };
            if let Some(event) = next {
                sink.emit(&event)?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// The status of each sale that is not open.
    fn export_statuses(&self, sink: &mut impl EventSink) -> Result<u64, SinkError> {
        let mut count = 0u64;
        for sale in self.by_ordinal.load().iter() {
            let event = match sale.status() {
                SaleStatus::Open => continue,
                status @ (SaleStatus::Paused | SaleStatus::Ended) => status.event(sale.ordinal),
            };
            sink.emit(&event)?;
            count += 1;
        }
        Ok(count)
    }

    /// Every sale's full state, in ordinal order.
    fn sale_states(&self) -> Vec<SaleState> {
        self.by_ordinal
            .load()
            .iter()
            .map(|s| sale_state(s))
            .collect()
    }

    /// Every order, sorted by id.
    fn order_records(&self) -> Vec<OrderRecord> {
        let mut out = Vec::new();
        for sale in self.by_ordinal.load().iter() {
            for seq in 0..sale.next_seq.load(Ordering::Acquire) {
                let Some(o) = sale.orders.get(seq) else {
                    continue;
                };
                out.push(OrderRecord {
                    order_id: OrderId::new(sale.ordinal, seq).0,
                    user_id: self.users.name(o.user).into(),
                    qty: o.qty,
                    state: o.state,
                    created_at_ms: sale.created_at(&o),
                    expires_at_ms: o.expires_at_ms,
                });
            }
        }
        out
    }

    /// ((sale ordinal, user id), units held), nonzero only, sorted.
    fn holding_parts(&self) -> Vec<((u32, String), u32)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for entry in shard.holdings.iter() {
                let held = entry.value().load(Ordering::Acquire);
                if held > 0 {
                    let (ordinal, user) = *entry.key();
                    out.push(((ordinal, self.users.name(user).into()), held));
                }
            }
        }
        out.sort_unstable();
        out
    }

    /// ((user id, request id), order id) of decided admissions, sorted.
    fn idempotency_parts(&self) -> Vec<((String, u64), u64)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            for entry in shard.idempotency.iter() {
                if *entry.value() != IDEM_PENDING {
                    let (user, request_id) = *entry.key();
                    out.push(((self.users.name(user).into(), request_id), *entry.value()));
                }
            }
        }
        out.sort_unstable();
        out
    }
}

/// One sale's full state.
fn sale_state(s: &SaleEntry) -> SaleState {
    SaleState {
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
        status: SaleStatus::from_byte(s.status.load(StdOrdering::Acquire)).as_str(),
    }
}
