//! Order rows by binary `COPY`. Orders the database cannot hold yet (see
//! [`FreshAfter`]) are copied straight into the orders table; the others
//! into a temporary staging table (one per connection, emptied at every
//! commit) and upserted from it with one `INSERT ... SELECT ... ON
//! CONFLICT`.
//!
//! Why two paths: in a sale nearly every event is an admission, and a
//! plain `COPY` of new rows skips the staging table's write and read and
//! the upsert's speculative insertion per row. On a 2.2-million-admission
//! log, over one connection, it took the export from 21.3 to 20.0 s
//! (BENCHMARKS.md, "What limits the export"). The upsert stays for
//! everything that may meet a row:
//! updates, snapshots, and any batch after a failure, when what committed
//! is unknown until the database is asked again.
//!
//! Why `COPY` and not a multi-row `INSERT ... SELECT FROM UNNEST($1, ...)`
//! (which the sale rows, a handful per batch, still use): on 10,000-row
//! batches (one transaction each, cursor included) against a local
//! PostgreSQL 15, the `COPY` path was the faster: median 211 against
//! 229 ms for new orders, 252 against 308 ms for updates of existing ones
//! (release build, fsync on, a loaded two-core box; medians of 4 runs of
//! 12 batches each). The staging table's columns are spelled out rather
//! than copied `LIKE` the target, so a changed target table shows as an
//! error of the upsert.

use std::time::SystemTime;

use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement, Transaction};

use super::error::ExportError;
use super::rows::OrderRow;
use super::schema::TablePrefix;
use super::time::{opt_time, time, to_bigint, to_integer};

/// The staging table's and the copy's column types, in column order.
const STAGE_TYPES: [Type; 11] = [
    Type::TEXT,
    Type::TEXT,
    Type::TEXT,
    Type::INT4,
    Type::TEXT,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMPTZ,
    Type::INT8,
];

const ORDER_COLUMNS: &str = "order_id, sku, user_id, qty, state, created_at, expires_at, \
                             paid_at, cancelled_at, expired_at, updated_lsn";

/// The connection's order statements: the copy of new rows into the
/// table, the copy into staging and the upsert from it.
pub(crate) struct OrderCopy {
    copy_fresh: Statement,
    copy: Statement,
    upsert: Statement,
}

/// The highest `updated_lsn` any order row in the database may have, as
/// the exporter last learnt it: an order admitted after it has no row yet
/// (a row's `updated_lsn` is at least its admission's LSN). `None` when
/// unknown, after a failure: every row then goes through the upsert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FreshAfter(pub(crate) Option<u64>);

impl FreshAfter {
    fn is_fresh(self, row: &OrderRow) -> bool {
        match (self.0, row.admitted_lsn) {
            (Some(known), Some(admitted)) => admitted > known,
            (None, _) | (_, None) => false,
        }
    }
}

impl OrderCopy {
    /// Creates the session's staging table and prepares the statements.
    pub(crate) async fn prepare(
        client: &Client,
        p: &TablePrefix,
    ) -> Result<OrderCopy, tokio_postgres::Error> {
        let stage = stage_name(p);
        client
            .batch_execute(&format!(
                "CREATE TEMP TABLE IF NOT EXISTS {stage} (
                    order_id text, sku text, user_id text, qty integer, state text,
                    created_at timestamptz, expires_at timestamptz, paid_at timestamptz,
                    cancelled_at timestamptz, expired_at timestamptz, updated_lsn bigint
                 ) ON COMMIT DELETE ROWS"
            ))
            .await?;
        let copy_sql = format!("COPY {stage} ({ORDER_COLUMNS}) FROM STDIN (FORMAT binary)");
        let fresh_sql = format!(
            "COPY {} ({ORDER_COLUMNS}) FROM STDIN (FORMAT binary)",
            p.table("orders")
        );
        Ok(OrderCopy {
            copy_fresh: client.prepare(&fresh_sql).await?,
            copy: client.prepare(&copy_sql).await?,
            upsert: client.prepare_typed(&upsert_sql(p), &[Type::BOOL]).await?,
        })
    }

    /// Writes `rows`: the fresh ones by a plain copy into the table, the
    /// rest by the upsert. Returns the rows changed. `same_lsn_replaces`:
    /// rows at the same LSN are replaced (snapshots).
    pub(crate) async fn write(
        &self,
        tx: &Transaction<'_>,
        rows: &[OrderRow],
        same_lsn_replaces: bool,
        fresh_after: FreshAfter,
        on_err: impl Fn(&'static str, tokio_postgres::Error) -> ExportError,
    ) -> Result<u64, ExportError> {
        let (fresh, known): (Vec<&OrderRow>, Vec<&OrderRow>) =
            rows.iter().partition(|r| fresh_after.is_fresh(r));
        let mut changed = 0;
        if !fresh.is_empty() {
            let copying = |e| on_err("copying new order rows", e);
            changed += copy_rows(tx, &self.copy_fresh, &fresh, copying).await?;
        }
        if !known.is_empty() {
            let copying = |e| on_err("copying order rows", e);
            copy_rows(tx, &self.copy, &known, copying).await?;
            changed += tx
                .execute(&self.upsert, &[&same_lsn_replaces])
                .await
                .map_err(|e| on_err("upserting order rows", e))?;
        }
        Ok(changed)
    }
}

/// Copies `rows` with the binary `COPY` statement `copy`; returns how many
/// it copied.
async fn copy_rows(
    tx: &Transaction<'_>,
    copy: &Statement,
    rows: &[&OrderRow],
    on_err: impl Fn(tokio_postgres::Error) -> ExportError,
) -> Result<u64, ExportError> {
    let sink = tx.copy_in(copy).await.map_err(&on_err)?;
    let writer = BinaryCopyInWriter::new(sink, &STAGE_TYPES);
    let mut writer = std::pin::pin!(writer);
    for row in rows {
        let r = StageRow::new(row)?;
        let values: [&(dyn ToSql + Sync); 11] = [
            &r.order_id,
            &r.sku,
            &r.user_id,
            &r.qty,
            &r.state,
            &r.created_at,
            &r.expires_at,
            &r.paid_at,
            &r.cancelled_at,
            &r.expired_at,
            &r.updated_lsn,
        ];
        writer.as_mut().write(&values).await.map_err(&on_err)?;
    }
    writer.as_mut().finish().await.map_err(&on_err)
}

/// In `pg_temp`, so it can never be a table of someone else's.
fn stage_name(p: &TablePrefix) -> String {
    format!("pg_temp.{}orders_stage", p.as_str())
}

fn upsert_sql(p: &TablePrefix) -> String {
    let t = p.table("orders");
    let stage = stage_name(p);
    format!(
        "INSERT INTO {t} AS t ({ORDER_COLUMNS})
         SELECT {ORDER_COLUMNS} FROM {stage}
         ON CONFLICT (order_id) DO UPDATE SET
            sku = EXCLUDED.sku, user_id = EXCLUDED.user_id, qty = EXCLUDED.qty,
            state = EXCLUDED.state, created_at = EXCLUDED.created_at,
            expires_at = EXCLUDED.expires_at,
            paid_at = COALESCE(EXCLUDED.paid_at, t.paid_at),
            cancelled_at = COALESCE(EXCLUDED.cancelled_at, t.cancelled_at),
            expired_at = COALESCE(EXCLUDED.expired_at, t.expired_at),
            updated_lsn = EXCLUDED.updated_lsn
         WHERE t.updated_lsn < EXCLUDED.updated_lsn
            OR (t.updated_lsn = EXCLUDED.updated_lsn AND $1)"
    )
}

/// One order row in the column types of the table.
struct StageRow<'a> {
    order_id: String,
    sku: &'a str,
    user_id: String,
    qty: i32,
    state: &'static str,
    created_at: SystemTime,
    expires_at: SystemTime,
    paid_at: Option<SystemTime>,
    cancelled_at: Option<SystemTime>,
    expired_at: Option<SystemTime>,
    updated_lsn: i64,
}

impl<'a> StageRow<'a> {
    fn new(r: &'a OrderRow) -> Result<StageRow<'a>, ExportError> {
        Ok(StageRow {
            // Decimal, as the HTTP API prints order ids.
            order_id: r.order_id.to_string(),
            sku: &r.sku,
            user_id: r.user_id.to_string(),
            qty: to_integer(r.qty, "an order's qty")?,
            state: r.state.as_str(),
            created_at: time(r.created_at_ms, "created_at")?,
            expires_at: time(r.expires_at_ms, "expires_at")?,
            paid_at: opt_time(r.paid_at_ms, "paid_at")?,
            cancelled_at: opt_time(r.cancelled_at_ms, "cancelled_at")?,
            expired_at: opt_time(r.expired_at_ms, "expired_at")?,
            updated_lsn: to_bigint(r.updated_lsn, "an LSN")?,
        })
    }
}
