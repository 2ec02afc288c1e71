//! A plain, sorted picture of the engine's state, and the compact event stream
//! that rebuilds it (what a snapshot stores).

use crate::engine::Engine;
use crate::event::{Event, EventSink, SinkError};
use crate::types::OrderState;
use std::collections::HashMap;

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
    pub status: &'static str,
}

/// One order's full state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: u64,
    pub user_id: u64,
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
    /// ((sale ordinal, user), units held), nonzero only.
    pub holdings: Vec<((u32, u64), u32)>,
    /// ((user, request id), order id).
    pub idempotency: Vec<((u64, u64), u64)>,
}

pub(crate) fn capture(engine: &Engine) -> EngineState {
    EngineState {
        sales: engine.sale_states(),
        orders: engine.order_records(),
        holdings: engine.holding_parts(),
        idempotency: engine.idempotency_parts(),
    }
}

/// Writes the events that rebuild `engine`: each sale created with its total
/// stock, then the released orders (cancelled, expired), each admitted and at
/// once released, then the orders that hold units, then each sale's status.
/// Released orders go first because each one's units may since have gone to
/// another order: admitting them next to the holders could exceed the stock or
/// a user's limit on replay. Ids burned by a refused admission past the last
/// logged order are reissued after a restart; nobody ever saw them.
pub(crate) fn export(engine: &Engine, mut sink: impl EventSink) -> Result<u64, SinkError> {
    let mut count = 0u64;
    let sales = engine.sale_states();
    for s in &sales {
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
    let mut request_ids: HashMap<u64, u64> = HashMap::new();
    for ((_user, request_id), order_id) in engine.idempotency_parts() {
        request_ids.insert(order_id, request_id);
    }
    let orders = engine.order_records();
    let released = orders.iter().filter(|o| !o.state.holds_units());
    let holding = orders.iter().filter(|o| o.state.holds_units());
    for o in released.chain(holding) {
        sink.emit(&Event::Admitted {
            order_id: o.order_id,
            user_id: o.user_id,
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
    // Status last: admissions above were replayed into an open sale.
    for s in &sales {
        let event = match s.status {
            "paused" => Event::Paused { ordinal: s.ordinal },
            "ended" => Event::Ended { ordinal: s.ordinal },
            _ => continue,
        };
        sink.emit(&event)?;
        count += 1;
    }
    Ok(count)
}
