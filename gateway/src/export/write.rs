//! The statements of one batch: the sale upsert, the order rows (through
//! [`OrderCopy`]), the cursor, and reading the cursor back. [`write_rows`]
//! runs them inside a transaction the caller owns and commits.
//!
//! Sale rows, a handful per batch, go in one multi-row
//! `INSERT ... SELECT FROM UNNEST($1, ...)`: arrays in binary, one round
//! trip.
//!
//! **Exactly once.** An upsert changes a row only for a newer event
//! (`WHERE t.updated_lsn < EXCLUDED.updated_lsn`), so a replayed batch, or
//! an older one, changes nothing, `updated_lsn` included. (Snapshot rows
//! also replace rows at their own LSN: those of the snapshot's earlier
//! parts; the cursor, still behind it, says no log row is there.) The
//! cursor moves only forward. `updated_lsn` is the LSN of the last event
//! that touched the row, even one that left it as it was (a cancel and an
//! admission that cancel out in one batch), so a change feed on it misses
//! nothing. A change's time (`paid_at`, ...) is set once in an order's
//! life, so a row keeps the time it has when the new row does not know it
//! (a snapshot's).

use std::time::SystemTime;

use tokio_postgres::types::Type;
use tokio_postgres::{Statement, Transaction};

use super::copy::{FreshAfter, OrderCopy};
use super::error::ExportError;
use super::rows::{BatchRows, SaleRow};
use super::schema::TablePrefix;
use super::time::{opt_time, to_bigint, to_integer};

/// The statements one connection prepares once and reuses every batch.
pub(crate) struct Statements {
    upsert_sales: Statement,
    orders: OrderCopy,
    advance_cursor: Statement,
    pub(crate) read_cursor: Statement,
    /// The highest `updated_lsn` of the order rows (0 for none): one step
    /// down the index on it.
    pub(crate) max_order_lsn: Statement,
}

/// Rows each statement changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Sale rows inserted or changed (not those a newer row kept as they were).
    pub sales_changed: u64,
    /// Order rows inserted or changed.
    pub orders_changed: u64,
    /// Whether the cursor moved (false for a replayed or empty batch).
    pub cursor_advanced: bool,
}

impl Statements {
    pub(crate) async fn prepare(
        client: &tokio_postgres::Client,
        p: &TablePrefix,
    ) -> Result<Statements, tokio_postgres::Error> {
        Ok(Statements {
            upsert_sales: client
                .prepare_typed(&upsert_sales_sql(p), &SALE_TYPES)
                .await?,
            orders: OrderCopy::prepare(client, p).await?,
            advance_cursor: client
                .prepare_typed(&advance_cursor_sql(p), &[Type::TEXT, Type::INT8])
                .await?,
            read_cursor: client
                .prepare_typed(
                    &format!(
                        "SELECT lsn FROM {}export_cursor WHERE stream = $1",
                        p.as_str()
                    ),
                    &[Type::TEXT],
                )
                .await?,
            max_order_lsn: client
                .prepare(&format!(
                    "SELECT COALESCE(max(updated_lsn), 0) FROM {}",
                    p.table("orders")
                ))
                .await?,
        })
    }
}

const SALE_TYPES: [Type; 12] = [
    Type::TEXT_ARRAY,
    Type::INT8_ARRAY,
    Type::INT8_ARRAY,
    Type::INT8_ARRAY,
    Type::INT8_ARRAY,
    Type::INT4_ARRAY,
    Type::TEXT_ARRAY,
    Type::TIMESTAMPTZ_ARRAY,
    Type::TIMESTAMPTZ_ARRAY,
    Type::INT8_ARRAY,
    Type::INT8_ARRAY,
    Type::BOOL,
];

fn upsert_sales_sql(p: &TablePrefix) -> String {
    let t = p.table("sales");
    format!(
        "INSERT INTO {t} AS t (sku, stock, remaining, reserved, paid, per_user_limit, state,
                starts_at, ends_at, reservation_ttl_ms, updated_lsn)
         SELECT * FROM UNNEST($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (sku) DO UPDATE SET
            stock = EXCLUDED.stock, remaining = EXCLUDED.remaining,
            reserved = EXCLUDED.reserved, paid = EXCLUDED.paid,
            per_user_limit = EXCLUDED.per_user_limit, state = EXCLUDED.state,
            starts_at = EXCLUDED.starts_at, ends_at = EXCLUDED.ends_at,
            reservation_ttl_ms = EXCLUDED.reservation_ttl_ms,
            updated_lsn = EXCLUDED.updated_lsn
         WHERE t.updated_lsn < EXCLUDED.updated_lsn
            OR (t.updated_lsn = EXCLUDED.updated_lsn AND $12)"
    )
}

fn advance_cursor_sql(p: &TablePrefix) -> String {
    let t = p.table("export_cursor");
    format!(
        "INSERT INTO {t} AS t (stream, lsn, updated_at) VALUES ($1, $2, now())
         ON CONFLICT (stream) DO UPDATE SET lsn = EXCLUDED.lsn, updated_at = EXCLUDED.updated_at
         WHERE t.lsn < EXCLUDED.lsn"
    )
}

/// Upserts the batch's rows and moves the cursor of `stream`, inside `tx`;
/// orders admitted after `fresh_after` are inserted without a conflict
/// check. The caller commits; on any error it drops `tx`, which rolls back.
pub(crate) async fn write_rows(
    tx: &Transaction<'_>,
    statements: &Statements,
    stream: &str,
    rows: &BatchRows,
    fresh_after: FreshAfter,
    on_err: impl Fn(&'static str, tokio_postgres::Error) -> ExportError,
) -> Result<WriteReport, ExportError> {
    let mut report = WriteReport::default();
    let same_lsn_replaces = rows.source.is_snapshot();
    if !rows.sales.is_empty() {
        let cols = SaleColumns::new(&rows.sales)?;
        report.sales_changed = tx
            .execute(&statements.upsert_sales, &cols.params(&same_lsn_replaces))
            .await
            .map_err(|e| on_err("upserting sale rows", e))?;
    }
    if !rows.orders.is_empty() {
        report.orders_changed = (statements.orders)
            .write(tx, &rows.orders, same_lsn_replaces, fresh_after, &on_err)
            .await?;
    }
    if let Some(lsn) = rows.cursor_lsn() {
        let lsn = to_bigint(lsn, "an LSN")?;
        let moved = tx
            .execute(&statements.advance_cursor, &[&stream, &lsn])
            .await
            .map_err(|e| on_err("advancing the export cursor", e))?;
        report.cursor_advanced = moved > 0;
    }
    Ok(report)
}

type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);

/// The sale rows as one array per column.
struct SaleColumns<'a> {
    sku: Vec<&'a str>,
    stock: Vec<i64>,
    remaining: Vec<i64>,
    reserved: Vec<i64>,
    paid: Vec<i64>,
    per_user_limit: Vec<i32>,
    state: Vec<&'static str>,
    starts_at: Vec<Option<SystemTime>>,
    ends_at: Vec<Option<SystemTime>>,
    ttl_ms: Vec<i64>,
    lsn: Vec<i64>,
}

impl<'a> SaleColumns<'a> {
    fn new(rows: &'a [SaleRow]) -> Result<SaleColumns<'a>, ExportError> {
        let n = rows.len();
        let mut c = SaleColumns {
            sku: Vec::with_capacity(n),
            stock: Vec::with_capacity(n),
            remaining: Vec::with_capacity(n),
            reserved: Vec::with_capacity(n),
            paid: Vec::with_capacity(n),
            per_user_limit: Vec::with_capacity(n),
            state: Vec::with_capacity(n),
            starts_at: Vec::with_capacity(n),
            ends_at: Vec::with_capacity(n),
            ttl_ms: Vec::with_capacity(n),
            lsn: Vec::with_capacity(n),
        };
        for r in rows {
            c.sku.push(&r.sku);
            c.stock.push(to_bigint(r.stock, "a sale's stock")?);
            c.remaining
                .push(to_bigint(r.remaining, "a sale's remaining")?);
            c.reserved.push(to_bigint(r.reserved, "a sale's reserved")?);
            c.paid.push(to_bigint(r.paid, "a sale's paid")?);
            c.per_user_limit
                .push(to_integer(r.per_user_limit, "a per-user limit")?);
            c.state.push(r.state);
            c.starts_at.push(opt_time(r.starts_at_ms, "starts_at")?);
            c.ends_at.push(opt_time(r.ends_at_ms, "ends_at")?);
            c.ttl_ms
                .push(to_bigint(r.reservation_ttl_ms, "a reservation TTL")?);
            c.lsn.push(to_bigint(r.updated_lsn, "an LSN")?);
        }
        Ok(c)
    }

    fn params<'p>(&'p self, same_lsn_replaces: &'p bool) -> [Param<'p>; 12] {
        [
            &self.sku,
            &self.stock,
            &self.remaining,
            &self.reserved,
            &self.paid,
            &self.per_user_limit,
            &self.state,
            &self.starts_at,
            &self.ends_at,
            &self.ttl_ms,
            &self.lsn,
            same_lsn_replaces,
        ]
    }
}

/// The cursor value a row read back holds. Only this module writes it,
/// from a u64 that fit an i64; a negative one was edited by hand.
pub(crate) fn cursor_from_bigint(lsn: i64) -> Result<u64, ExportError> {
    u64::try_from(lsn).map_err(|_| ExportError::OutOfRange {
        what: "the export cursor (negative)",
    })
}
