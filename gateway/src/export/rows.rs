//! Rows from events: [`ExportReplica`] applies each batch of logged events
//! to a replica [`Engine`] and reads back one [`OrderRow`] per order and one
//! [`SaleRow`] per sale the batch touched, merged, so that every statement
//! changes a row at most once.
//!
//! **Why a replica.** Most events carry only an order id, and the rows need
//! the order's SKU, user and quantity and the sale's counters. Feeding the
//! events to an engine with [`Engine::apply`] gives all of it with the
//! engine's own replay semantics (snapshot streams included), so the rows
//! cannot drift from what `GET /v1/orders/{id}` says. The cost is memory:
//! the replica holds every order, about 100–150 bytes each (the engine's
//! own figure), the same again as the live engine. Reading the state back
//! from PostgreSQL instead would cost a round trip per batch and trust
//! tables anyone can edit.
//!
//! **Times.** `created_at`/`expires_at` come from the replica. `paid_at`,
//! `cancelled_at` and `expired_at` come from the event that made the
//! change, so they are known only for changes read from the log: a
//! snapshot's stream does not keep them, and its rows leave them `None`
//! (the writer then keeps whatever the table already holds).

use std::collections::HashMap;
use std::sync::Arc;

use engine::{Engine, EngineConfig, Event, OrderId, OrderState, SalePhase};

use super::error::ExportError;

/// Where a batch's events come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchSource {
    /// Log records, each with its own LSN, strictly increasing.
    Log,
    /// A run of a snapshot's events, all with the snapshot's LSN (that of
    /// the last log record it includes), with more of the snapshot to
    /// come: the rows are written but the cursor stays, so a crash before
    /// the end means writing the whole snapshot again.
    SnapshotPart,
    /// The snapshot's last run (or all of it): its rows, and the cursor
    /// moves to its LSN.
    SnapshotEnd,
}

impl BatchSource {
    /// Snapshot rows share one LSN across parts, and a later part's row
    /// for an order replaces an earlier part's (an order admitted at the
    /// end of one part and expired at the start of the next).
    pub(crate) fn is_snapshot(self) -> bool {
        match self {
            BatchSource::Log => false,
            BatchSource::SnapshotPart | BatchSource::SnapshotEnd => true,
        }
    }
}

/// One batch as the log tailer yields it.
#[derive(Clone, Copy, Debug)]
pub struct ExportBatch<'a> {
    pub source: BatchSource,
    /// `(lsn, event)` pairs in LSN order.
    pub events: &'a [(u64, Event)],
}

/// One sale's row: its counters after the batch, clock-free.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaleRow {
    pub sku: Arc<str>,
    pub stock: u64,
    pub remaining: u64,
    pub reserved: u64,
    pub paid: u64,
    pub per_user_limit: u32,
    /// `open`, `sold_out`, `paused` or `ended` as the log has it, whatever
    /// the clock says: a sale past `ends_at` stays `open` here until an
    /// operator ends it (compare `ends_at` with `now()` in SQL).
    pub state: &'static str,
    pub starts_at_ms: Option<u64>,
    pub ends_at_ms: Option<u64>,
    pub reservation_ttl_ms: u64,
    /// LSN of the batch's last event that touched this sale.
    pub updated_lsn: u64,
}

/// One order's row after the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRow {
    pub order_id: u64,
    pub sku: Arc<str>,
    pub user_id: Arc<str>,
    pub qty: u32,
    pub state: OrderState,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub paid_at_ms: Option<u64>,
    pub cancelled_at_ms: Option<u64>,
    pub expired_at_ms: Option<u64>,
    /// LSN of the batch's last event that touched this order.
    pub updated_lsn: u64,
    /// LSN of the order's admission when this batch holds it (log batches
    /// only; a snapshot's admissions are not the order's first event). An
    /// order admitted after every row the database holds cannot be there
    /// yet, so the writer may insert it without a conflict check.
    pub admitted_lsn: Option<u64>,
}

/// What one batch changes: one row per sale and per order it touched, each
/// list sorted by key, and the LSN the cursor moves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRows {
    pub sales: Vec<SaleRow>,
    pub orders: Vec<OrderRow>,
    /// The batch's last LSN (0 for an empty batch).
    pub last_lsn: u64,
    /// Where the rows come from: whether rows at the same LSN are
    /// replaced, and whether the cursor moves.
    pub source: BatchSource,
    /// Events the batch held.
    pub events: u64,
}

impl BatchRows {
    /// Whether writing these rows can change anything, given the cursor
    /// read at start: not when the whole batch is at or before it. The
    /// relay should skip such a batch: rewriting it changes no row's
    /// contents, but a snapshot's rows would still move the `updated_lsn`
    /// of every older row up to the snapshot's.
    pub fn needs_writing(&self, cursor: u64) -> bool {
        self.last_lsn > cursor
    }

    /// The LSN the cursor moves to with these rows, if any: not for an
    /// empty batch, nor for a snapshot that is not done.
    pub fn cursor_lsn(&self) -> Option<u64> {
        match self.source {
            BatchSource::SnapshotPart => None,
            BatchSource::Log | BatchSource::SnapshotEnd => Some(self.last_lsn).filter(|&l| l > 0),
        }
    }
}

/// What the batch did to one order besides its state: the LSN and the time.
#[derive(Clone, Copy, Debug, Default)]
struct OrderTouch {
    lsn: u64,
    admitted_lsn: Option<u64>,
    paid_at_ms: Option<u64>,
    cancelled_at_ms: Option<u64>,
    expired_at_ms: Option<u64>,
}

/// The replica engine and what the stream has fed it so far.
pub struct ExportReplica {
    engine: Engine,
    /// SKU by sale ordinal, to name the sale an event's ordinal points at.
    skus: Vec<Arc<str>>,
    /// LSN and source of the last batch applied.
    last: Option<(u64, BatchSource)>,
    /// Set when an event failed to apply halfway through a batch.
    poisoned: bool,
}

impl ExportReplica {
    /// An empty replica; `config` should match the server's (the order cap
    /// is not checked on apply, the shard count only spreads the work).
    pub fn new(config: EngineConfig) -> ExportReplica {
        ExportReplica {
            engine: Engine::new(config),
            skus: Vec::new(),
            last: None,
            poisoned: false,
        }
    }

    /// The replica, e.g. to compare with the live engine in tests.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// LSN of the last event applied; `None` before the first batch.
    pub fn last_lsn(&self) -> Option<u64> {
        self.last.map(|(lsn, _)| lsn)
    }

    /// Applies `batch` and returns its rows. An error leaves the replica
    /// unusable (half a batch applied): rebuild it from a snapshot or the
    /// log's start.
    pub fn apply(&mut self, batch: ExportBatch<'_>) -> Result<BatchRows, ExportError> {
        if self.poisoned {
            return Err(ExportError::BatchOrder {
                reason: "an earlier batch failed to apply; rebuild the replica".into(),
            });
        }
        self.check_order(batch)?;
        let Some(&(last_lsn, _)) = batch.events.last() else {
            return Ok(BatchRows {
                sales: Vec::new(),
                orders: Vec::new(),
                last_lsn: 0,
                source: batch.source,
                events: 0,
            });
        };
        let mut sales: HashMap<u32, u64> = HashMap::new();
        let mut orders: HashMap<u64, OrderTouch> = HashMap::new();
        for (lsn, event) in batch.events {
            if let Err(source) = self.engine.apply(event) {
                self.poisoned = true;
                return Err(ExportError::Apply { lsn: *lsn, source });
            }
            self.touch(*lsn, event, batch.source, &mut sales, &mut orders);
        }
        self.last = Some((last_lsn, batch.source));
        Ok(BatchRows {
            sales: self.sale_rows(sales),
            orders: self.order_rows(orders),
            last_lsn,
            source: batch.source,
            events: batch.events.len() as u64,
        })
    }

    /// The LSN contract: log LSNs strictly increase across and within
    /// batches and follow a finished snapshot; a snapshot's events share
    /// one LSN and start a replica.
    fn check_order(&self, batch: ExportBatch<'_>) -> Result<(), ExportError> {
        let Some(&(first, _)) = batch.events.first() else {
            return Ok(());
        };
        let bad = |reason: String| Err(ExportError::BatchOrder { reason });
        match batch.source {
            BatchSource::Log => {
                if let Some((_, BatchSource::SnapshotPart)) = self.last {
                    return bad("log records before the snapshot's end".into());
                }
                if let Some((last, _)) = self.last.filter(|&(last, _)| first <= last) {
                    return bad(format!(
                        "log record LSN {first} is not after LSN {last} already applied \
                         (a snapshot's events carry the LSN of the last record they include)"
                    ));
                }
                if batch.events.windows(2).any(|w| w[1].0 <= w[0].0) {
                    return bad("log record LSNs do not increase within the batch".into());
                }
            }
            BatchSource::SnapshotPart | BatchSource::SnapshotEnd => {
                let continues = self.last == Some((first, BatchSource::SnapshotPart));
                if self.last.is_some() && !continues {
                    return bad(format!(
                        "snapshot at LSN {first} given to a replica already at {:?}",
                        self.last_lsn()
                    ));
                }
                if batch.events.iter().any(|&(lsn, _)| lsn != first) {
                    return bad("a snapshot batch's events must share one LSN".into());
                }
            }
        }
        Ok(())
    }

    /// Notes what `event` (at `lsn`) touched; called after it applied.
    fn touch(
        &mut self,
        lsn: u64,
        event: &Event,
        source: BatchSource,
        sales: &mut HashMap<u32, u64>,
        orders: &mut HashMap<u64, OrderTouch>,
    ) {
        // A snapshot writes the time of a change as the order's creation:
        // not a time to publish.
        let at = |at_ms: u64| (!source.is_snapshot()).then_some(at_ms);
        let order_id = match *event {
            Event::SaleCreated {
                ordinal, ref sku, ..
            } => {
                debug_assert_eq!(ordinal as usize, self.skus.len(), "apply checked it");
                self.skus.push(Arc::from(sku.as_str()));
                sales.insert(ordinal, lsn);
                return;
            }
            Event::StockAdded { ordinal, .. }
            | Event::Paused { ordinal }
            | Event::Resumed { ordinal }
            | Event::Ended { ordinal } => {
                sales.insert(ordinal, lsn);
                return;
            }
            Event::Admitted { order_id, .. }
            | Event::Paid { order_id, .. }
            | Event::Cancelled { order_id, .. }
            | Event::Expired { order_id, .. } => order_id,
        };
        // Every order event changes its sale's counters too.
        sales.insert(OrderId(order_id).ordinal(), lsn);
        let touch = orders.entry(order_id).or_default();
        touch.lsn = lsn;
        match *event {
            Event::Paid { at_ms, .. } => touch.paid_at_ms = at(at_ms),
            Event::Cancelled { at_ms, .. } => touch.cancelled_at_ms = at(at_ms),
            Event::Expired { at_ms, .. } => touch.expired_at_ms = at(at_ms),
            Event::Admitted { .. } => touch.admitted_lsn = (!source.is_snapshot()).then_some(lsn),
            Event::SaleCreated { .. }
            | Event::StockAdded { .. }
            | Event::Paused { .. }
            | Event::Resumed { .. }
            | Event::Ended { .. } => {}
        }
    }

    /// One row per touched sale, read from the replica, sorted by SKU.
    fn sale_rows(&self, touched: HashMap<u32, u64>) -> Vec<SaleRow> {
        let mut rows: Vec<SaleRow> = touched
            .into_iter()
            .filter_map(|(ordinal, lsn)| self.sale_row(ordinal, lsn))
            .collect();
        rows.sort_unstable_by(|a, b| a.sku.cmp(&b.sku));
        rows
    }

    fn sale_row(&self, ordinal: u32, updated_lsn: u64) -> Option<SaleRow> {
        let sku = self.skus.get(ordinal as usize)?;
        let starts = self.engine.sale(sku, 0)?.starts_at_ms;
        // At its own start the clock neither holds a sale back nor ends
        // it (a sale ends after it starts), so the phase is the log's.
        let view = self.engine.sale(sku, starts.unwrap_or(0))?;
        Some(SaleRow {
            sku: sku.clone(),
            stock: view.stock,
            remaining: view.remaining,
            reserved: view.reserved,
            paid: view.paid,
            per_user_limit: view.per_user_limit,
            state: clock_free_state(view.phase),
            starts_at_ms: view.starts_at_ms,
            ends_at_ms: view.ends_at_ms,
            reservation_ttl_ms: view.reservation_ttl_ms,
            updated_lsn,
        })
    }

    /// One row per touched order, read from the replica, sorted by id.
    fn order_rows(&self, touched: HashMap<u64, OrderTouch>) -> Vec<OrderRow> {
        let mut rows: Vec<OrderRow> = touched
            .into_iter()
            .filter_map(|(id, touch)| {
                let view = self.engine.order(OrderId(id))?;
                Some(OrderRow {
                    order_id: id,
                    sku: view.sku,
                    user_id: view.user_id,
                    qty: view.qty,
                    state: view.state,
                    created_at_ms: view.created_at_ms,
                    expires_at_ms: view.expires_at_ms,
                    paid_at_ms: touch.paid_at_ms,
                    cancelled_at_ms: touch.cancelled_at_ms,
                    expired_at_ms: touch.expired_at_ms,
                    updated_lsn: touch.lsn,
                    admitted_lsn: touch.admitted_lsn,
                })
            })
            .collect();
        rows.sort_unstable_by_key(|r| r.order_id);
        rows
    }
}

/// The sale's `state` column from its phase at its own start time.
fn clock_free_state(phase: SalePhase) -> &'static str {
    match phase {
        SalePhase::Open => "open",
        SalePhase::SoldOut => "sold_out",
        SalePhase::Paused => "paused",
        SalePhase::Ended => "ended",
        // Not reached at the sale's start time; were it, the operator's
        // status behind it is "open".
        SalePhase::Scheduled => "open",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(ordinal: u32) -> Event {
        Event::SaleCreated {
            ordinal,
            sku: format!("s{ordinal}"),
            stock: 5,
            per_user_limit: 1,
            starts_at_ms: None,
            ends_at_ms: None,
            reservation_ttl_ms: 10,
        }
    }

    fn apply(r: &mut ExportReplica, source: BatchSource, events: &[(u64, Event)]) -> bool {
        r.apply(ExportBatch { source, events }).is_ok()
    }

    #[test]
    fn the_lsn_contract_is_checked() {
        use BatchSource::{Log, SnapshotEnd, SnapshotPart};
        let mut r = ExportReplica::new(EngineConfig::with_shards(1));
        assert!(apply(&mut r, SnapshotPart, &[(4, sale(0))]));
        assert!(!apply(&mut r, Log, &[(5, sale(1))]), "snapshot not ended");
        assert!(!apply(&mut r, SnapshotEnd, &[(5, sale(1))]), "another LSN");
        assert!(apply(&mut r, SnapshotEnd, &[(4, sale(1))]));
        assert!(
            !apply(&mut r, Log, &[(4, sale(2))]),
            "not after the snapshot"
        );
        assert!(!apply(&mut r, Log, &[(6, sale(2)), (6, sale(3))]));
        assert!(apply(&mut r, Log, &[(5, sale(2)), (9, sale(3))]));
        assert!(
            !apply(&mut r, SnapshotEnd, &[(10, sale(4))]),
            "replica not fresh"
        );
        assert_eq!(r.last_lsn(), Some(9));
        // A stream the engine refuses poisons the replica for good.
        assert!(!apply(&mut r, Log, &[(10, sale(9))]));
        assert!(!apply(&mut r, Log, &[(11, sale(4))]));
    }
}
