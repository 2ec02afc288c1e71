//! `--postgres URL`: after the run, wait until the server's export relay
//! has written everything the log holds into PostgreSQL, read the tables
//! back and judge them against the run (the checks are in
//! `verify::exported`).
//!
//! The rows and the server's counters must describe the same moment, yet
//! expiring reservations keep writing to the log. So a reading is taken
//! between two samples of the log's record count: the count, the server's
//! sales, the wait for the export to reach the count, the rows, the count
//! again. If the count moved, the reading is retaken.
//!
//! The URL carries a password, so it is never printed: reports name the
//! database by host, port and name only.

use crate::api::{self, OrderLookup, SaleDoc};
use crate::client::ClientConn;
use crate::verify::{self, Check, ExportEvidence, ExportedOrder, ExportedSale};
use crate::workload::{Ack, Ctx};
use anyhow::{bail, Context, Result};
use hyper::Method;
use serde::Deserialize;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

/// How long the export may take to catch up with the log after the run.
pub const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between readings of `GET /v1/admin/export`.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// A lag of 0 only counts when read this long after the log was sampled:
/// the relay refreshes its view of the log's end every 20 ms when idle, so
/// by then its lag is measured against a log at least as long as sampled.
/// (Against a fresh log, as with --spawn, the `lsn` comparison alone is
/// exact; a log older than the server process makes the count a lower
/// bound, and this wait covers the difference.)
const FRESH_AFTER: Duration = Duration::from_millis(250);
/// Readings taken before giving up on the log standing still.
const CONSISTENT_ATTEMPTS: u32 = 5;
/// Bound on connecting to PostgreSQL and reading the tables.
const DB_TIMEOUT: Duration = Duration::from_secs(60);
/// The server's default `export.table_prefix`.
pub const TABLE_PREFIX_DEFAULT: &str = "flashsale_";
/// Longest prefix the server accepts.
const TABLE_PREFIX_LEN_MAX: usize = 32;

/// The database `--postgres` names. Its `Debug` shows no password.
#[derive(Clone)]
pub struct PgDatabase {
    config: tokio_postgres::Config,
    url: String,
    /// The tables' prefix, `[a-z_][a-z0-9_]*` (so it can go into SQL).
    prefix: String,
}

impl std::fmt::Debug for PgDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgDatabase({})", self.describe())
    }
}

impl PgDatabase {
    /// Parses a libpq-style URL or key=value string; the error does not
    /// repeat it.
    pub fn parse(url: &str) -> Result<PgDatabase> {
        let config: tokio_postgres::Config = url
            .parse()
            .context("--postgres is not a valid PostgreSQL connection URL")?;
        if config.get_hosts().is_empty() {
            bail!("--postgres names no host");
        }
        Ok(PgDatabase {
            config,
            url: url.to_string(),
            prefix: TABLE_PREFIX_DEFAULT.to_string(),
        })
    }

    /// The same database, its tables under `prefix` (the server's
    /// `export.table_prefix`): 1 to 32 of `[a-z0-9_]`, not starting with
    /// a digit, as the server requires.
    pub fn with_prefix(mut self, prefix: &str) -> Result<PgDatabase> {
        let b = prefix.as_bytes();
        let first = b
            .first()
            .is_some_and(|c| c.is_ascii_lowercase() || *c == b'_');
        let rest = b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
        if !first || !rest || b.len() > TABLE_PREFIX_LEN_MAX {
            bail!("--postgres-table-prefix {prefix:?}: 1 to 32 of [a-z0-9_], not starting with a digit");
        }
        self.prefix = prefix.to_string();
        Ok(self)
    }

    /// The tables' prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `host:port/dbname`, safe to print.
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "?".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let db = self
            .config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("?");
        format!("{host}:{port}/{db}")
    }

    /// The URL as given, password included: only for the spawned server's
    /// environment, never for output.
    pub fn secret_url(&self) -> &str {
        &self.url
    }
}

/// `GET /v1/admin/export`, the fields the wait looks at.
#[derive(Debug, Clone, Deserialize)]
struct ExportReading {
    enabled: bool,
    up: bool,
    lsn: u64,
    lag_records: u64,
    rows_total: u64,
    errors_total: u64,
}

/// Everything read at one log position.
struct Reading {
    export: ExportReading,
    log_records: u64,
    sales: Vec<SaleDoc>,
    orders: Vec<ExportedOrder>,
    sale_rows: Vec<ExportedSale>,
    read_ms: u64,
    waited: Duration,
    /// Whether the log stood still from before the sales were read until
    /// after the rows were.
    stable: bool,
}

/// Waits for the export, reads the database and judges it. Every outcome
/// is a list of checks: a failure to reach the database or a relay that
/// never catches up is a failed check, so the report still prints.
pub async fn verify_export(
    ctx: &Ctx,
    acks: &[Ack],
    lookups: &[OrderLookup],
    pg: &PgDatabase,
) -> Vec<Check> {
    let started = Instant::now();
    let r = match read_consistent(ctx, pg, started).await {
        Ok(r) => r,
        Err(e) => {
            return vec![Check {
                name: "export_caught_up",
                passed: false,
                detail: format!("{e:#} ({})", pg.describe()),
            }]
        }
    };
    let mut checks = vec![caught_up_check(&r, pg)];
    let (other_orders, other_sales) = others(ctx, acks, &r).await;
    checks.extend(verify::judge_export(&ExportEvidence {
        skus: &ctx.skus,
        acks,
        lookups,
        order_rows: &r.orders,
        sale_rows: &r.sale_rows,
        server_sales: &r.sales,
        other_orders: &other_orders,
        other_sales: &other_sales,
        read_ms: r.read_ms,
    }));
    checks
}

/// "export_caught_up": the relay reached the log's end and the rows were
/// read there.
fn caught_up_check(r: &Reading, pg: &PgDatabase) -> Check {
    let e = &r.export;
    Check {
        name: "export_caught_up",
        passed: true,
        detail: format!(
            "{} at lsn {} (log {} records), lag 0 after {:.1} s; {} rows written, {} errors retried{}",
            pg.describe(),
            e.lsn,
            r.log_records,
            r.waited.as_secs_f64(),
            e.rows_total,
            e.errors_total,
            if r.stable {
                ""
            } else {
                "; the log kept moving, rows read at the last position"
            }
        ),
    }
}

/// Takes readings until the log stood still across one, or attempts run out.
async fn read_consistent(ctx: &Ctx, pg: &PgDatabase, started: Instant) -> Result<Reading> {
    let mut conn = ClientConn::new(
        ctx.target.clone(),
        Duration::from_millis(ctx.scenario.timeout_ms),
    );
    let deadline = started + CATCH_UP_TIMEOUT;
    let mut attempt = 1;
    loop {
        let log_records = wal_records(&mut conn, &ctx.admin).await?;
        let sampled = Instant::now();
        let sales = verify::read_sales(ctx).await?;
        let export = wait_caught_up(&mut conn, &ctx.admin, log_records, sampled, deadline).await?;
        let (orders, sale_rows) = read_rows(pg).await?;
        let read_ms = api::now_ms();
        let stable = wal_records(&mut conn, &ctx.admin).await? == log_records;
        if stable || attempt == CONSISTENT_ATTEMPTS {
            return Ok(Reading {
                export,
                log_records,
                sales,
                orders,
                sale_rows,
                read_ms,
                waited: started.elapsed(),
                stable,
            });
        }
        attempt += 1;
    }
}

/// Polls `GET /v1/admin/export` until the relay is up with no lag and has
/// exported at least `log_records` records, read `FRESH_AFTER` past `sampled`.
async fn wait_caught_up(
    conn: &mut ClientConn,
    admin: &hyper::header::HeaderValue,
    log_records: u64,
    sampled: Instant,
    deadline: Instant,
) -> Result<ExportReading> {
    loop {
        let polled = Instant::now();
        let e = export_reading(conn, admin).await?;
        if !e.enabled {
            bail!("the server's export is off: start it with [export] postgres_url (FLASHSALE_EXPORT_POSTGRES_URL) or use --spawn");
        }
        let fresh = polled >= sampled + FRESH_AFTER;
        if fresh && e.up && e.lag_records == 0 && e.lsn >= log_records {
            return Ok(e);
        }
        if polled >= deadline {
            bail!(
                "the export did not catch up within {} s: up {}, lsn {} of {} log records, lag {} records, {} errors",
                CATCH_UP_TIMEOUT.as_secs(),
                e.up,
                e.lsn,
                log_records,
                e.lag_records,
                e.errors_total
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn export_reading(
    conn: &mut ClientConn,
    admin: &hyper::header::HeaderValue,
) -> Result<ExportReading> {
    let body = admin_get(conn, admin, "/v1/admin/export").await?;
    serde_json::from_slice(&body).context("GET /v1/admin/export: unexpected body")
}

/// The records the server's log has written (`flashsale_wal_records_total`),
/// which for a log the server started is the LSN of the last one.
async fn wal_records(conn: &mut ClientConn, admin: &hyper::header::HeaderValue) -> Result<u64> {
    let body = admin_get(conn, admin, "/metrics").await?;
    let text = String::from_utf8_lossy(&body);
    metric_value(&text, "flashsale_wal_records_total")
        .context("GET /metrics: no flashsale_wal_records_total")
}

/// The value of an unlabelled metric in Prometheus text.
pub(crate) fn metric_value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
}

async fn admin_get(
    conn: &mut ClientConn,
    admin: &hyper::header::HeaderValue,
    path: &str,
) -> Result<bytes::Bytes> {
    match conn.send(Method::GET, path, None, Some(admin)).await {
        Ok(r) if r.code == 200 => Ok(r.body),
        Ok(r) => bail!(
            "GET {path}: HTTP {} {}",
            r.code,
            String::from_utf8_lossy(&r.body)
        ),
        Err(e) => bail!("GET {path}: {}", e.label()),
    }
}

/// Every row of the two tables, over one connection.
async fn read_rows(pg: &PgDatabase) -> Result<(Vec<ExportedOrder>, Vec<ExportedSale>)> {
    let read = async {
        let (client, connection) = pg
            .config
            .connect(NoTls)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {}", pg.describe()))?;
        let driver = tokio::spawn(connection);
        let p = &pg.prefix;
        let orders_query = format!("SELECT order_id, sku, user_id, qty, state FROM {p}orders");
        let sales_query = format!("SELECT sku, stock, remaining, reserved, paid FROM {p}sales");
        let orders = (client.query(&orders_query, &[]).await).context(orders_query)?;
        let sales = (client.query(&sales_query, &[]).await).context(sales_query)?;
        drop(client);
        // The connection ends once the client is gone; its error (if any)
        // came too late to matter to rows already read.
        let _ = driver.await;
        let orders = orders
            .iter()
            .map(|r| {
                Ok(ExportedOrder {
                    order_id: r.try_get(0)?,
                    sku: r.try_get(1)?,
                    user_id: r.try_get(2)?,
                    qty: r.try_get(3)?,
                    state: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .context("reading flashsale_orders")?;
        let sales = sales
            .iter()
            .map(|r| {
                Ok(ExportedSale {
                    sku: r.try_get(0)?,
                    stock: r.try_get(1)?,
                    remaining: r.try_get(2)?,
                    reserved: r.try_get(3)?,
                    paid: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .context("reading flashsale_sales")?;
        Ok((orders, sales))
    };
    tokio::time::timeout(DB_TIMEOUT, read)
        .await
        .with_context(|| format!("reading the tables took over {} s", DB_TIMEOUT.as_secs()))?
}

/// What the server says about the rows the run did not produce: each order
/// row it did not see acknowledged, each sale row not of its SKUs.
async fn others(
    ctx: &Ctx,
    acks: &[Ack],
    r: &Reading,
) -> (Vec<(String, OrderLookup)>, Vec<(String, bool)>) {
    let acked: HashSet<&str> = acks.iter().map(|a| a.order_id.as_str()).collect();
    let ids: Vec<String> = r
        .orders
        .iter()
        .filter(|o| !acked.contains(o.order_id.as_str()))
        .map(|o| o.order_id.clone())
        .collect();
    let found = verify::lookup_order_ids(ctx, ids.clone()).await;
    let run_skus: HashSet<&str> = ctx.skus.iter().map(|s| s.name.as_str()).collect();
    let mut conn = ClientConn::new(
        ctx.target.clone(),
        Duration::from_millis(ctx.scenario.timeout_ms),
    );
    let mut sales = Vec::new();
    for row in r
        .sale_rows
        .iter()
        .filter(|s| !run_skus.contains(s.sku.as_str()))
    {
        let held = api::get_sale(&mut conn, &row.sku).await.is_ok();
        sales.push((row.sku.clone(), held));
    }
    (ids.into_iter().zip(found).collect(), sales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_is_never_shown() {
        let pg = PgDatabase::parse("postgres://flash:s3cret@db.example:6543/orders").unwrap();
        assert_eq!(pg.describe(), "db.example:6543/orders");
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert_eq!(pg.prefix(), TABLE_PREFIX_DEFAULT);
        let pg = pg.clone().with_prefix("shop_2").unwrap();
        assert_eq!(pg.prefix(), "shop_2");
        for bad in ["", "1a", "A", "a;drop table x", &"a".repeat(33)] {
            assert!(pg.clone().with_prefix(bad).is_err(), "{bad:?}");
        }
        let err = PgDatabase::parse("postgres://flash:s3cret@db.example:notaport/x").unwrap_err();
        assert!(!format!("{err:#}").contains("s3cret"), "{err:#}");
    }

    #[test]
    fn metric_values_are_found_by_exact_name() {
        let text = "# HELP flashsale_wal_records_total x\n\
                    flashsale_wal_records_total_extra 9\n\
                    flashsale_wal_records_total 1234\n";
        assert_eq!(
            metric_value(text, "flashsale_wal_records_total"),
            Some(1234)
        );
        assert_eq!(metric_value(text, "flashsale_wal_bytes_total"), None);
    }
}
