//! The PostgreSQL export against a real server (a throwaway cluster from
//! `pg/mod.rs`): the schema and its version, rows equal to the engine's
//! views, exactly-once under replays, older batches, snapshots, a failing
//! cursor, a killed backend, a restarted server and a statement timeout,
//! lanes and a change of their number, a new order another writer got in
//! first with, and the errors a bad setting gives.
//!
//! The batches are synthetic: a real engine driven through purchases,
//! payments, cancellations and expiries, its events recorded with LSNs
//! 1, 2, 3, ... as the log would number them.

mod pg;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use engine::{Engine, EngineConfig, Event, OrderId, OrderState, PurchaseOutcome, SaleSpec};
use gateway::export::{
    lane_stream, BatchRows, BatchSource, ExportBatch, ExportError, ExportOptions, ExportReplica,
    PgExporter, SCHEMA_VERSION,
};
use pg::PgCluster;
use tokio_postgres::{Client, NoTls};

const STREAM: &str = "wal";
const T0: u64 = 1_700_000_000_000;

/// A started cluster, or return from the test (PgCluster printed why).
macro_rules! cluster {
    () => {
        match PgCluster::start() {
            Some(cluster) => cluster,
            None => return,
        }
    };
}

/// An engine driven through a sale's life, with every event it logged.
struct Driven {
    engine: Engine,
    /// `(lsn, event)`, LSNs from 1.
    events: Vec<(u64, Event)>,
    now: u64,
    seed: u64,
}

impl Driven {
    fn new(seed: u64) -> Driven {
        Driven {
            engine: Engine::new(EngineConfig::with_shards(2)),
            events: Vec::new(),
            now: T0,
            seed,
        }
    }

    /// Runs `f` with a sink and numbers what it logged.
    fn logged<R>(&mut self, f: impl FnOnce(&Engine, u64, &mut Vec<Event>) -> R) -> R {
        let mut new = Vec::new();
        let r = f(&self.engine, self.now, &mut new);
        for e in new {
            let lsn = self.events.len() as u64 + 1;
            self.events.push((lsn, e));
        }
        r
    }

    fn rand(&mut self, n: u64) -> u64 {
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.seed >> 33) % n
    }

    fn create_sales(&mut self) {
        let specs = [
            ("sku-a", 400, 3, None, None, 5_000),
            (
                "sku-b",
                150,
                2,
                Some(T0 - 1_000),
                Some(T0 + 86_400_000),
                3_000,
            ),
            ("sku-c", 40, 5, None, None, 60_000),
        ];
        for (sku, stock, limit, start, end, ttl) in specs {
            self.logged(|e, now, sink| {
                let spec = SaleSpec {
                    sku: sku.into(),
                    stock,
                    per_user_limit: limit,
                    starts_at_ms: start,
                    ends_at_ms: end,
                    reservation_ttl_ms: ttl,
                };
                e.create_sale(spec, now, sink).unwrap()
            });
        }
    }

    /// `rounds` steps of purchases, payments, cancels, expiries and
    /// operator actions, time moving on.
    fn drive(&mut self, rounds: u32) {
        let mut orders: Vec<(u64, String)> = Vec::new();
        for round in 0..rounds {
            self.now += 1 + self.rand(400);
            let sku = ["sku-a", "sku-b", "sku-c"][self.rand(3) as usize];
            let user = format!("user-{}", 1 + self.rand(300));
            let qty = 1 + self.rand(2) as u32;
            let out = self.logged(|e, now, sink| e.purchase(sku, &user, qty, None, now, sink));
            if let PurchaseOutcome::Admitted(a) = out {
                orders.push((a.order_id.0, user));
            }
            if !orders.is_empty() && self.rand(3) == 0 {
                let (id, user) = orders[self.rand(orders.len() as u64) as usize].clone();
                if self.rand(2) == 0 {
                    self.logged(|e, now, sink| e.pay(OrderId(id), now, sink));
                } else {
                    self.logged(|e, now, sink| e.cancel(OrderId(id), &user, now, sink));
                }
            }
            if round % 50 == 0 {
                self.logged(|e, now, sink| e.expire_due(now, sink));
            }
            match round % 400 {
                100 => drop(self.logged(|e, now, sink| e.pause("sku-a", now, sink))),
                130 => drop(self.logged(|e, now, sink| e.resume("sku-a", now, sink))),
                200 => drop(self.logged(|e, now, sink| e.add_stock("sku-c", 10, now, sink))),
                _ => {}
            }
        }
    }

    fn end_sale(&mut self, sku: &str) {
        self.logged(|e, now, sink| e.end(sku, now, sink)).unwrap();
    }

    fn last_lsn(&self) -> u64 {
        self.events.len() as u64
    }
}

/// A driven engine with a good mix of every order state.
fn driven(seed: u64, rounds: u32) -> Driven {
    let mut d = Driven::new(seed);
    d.create_sales();
    d.drive(rounds);
    d.end_sale("sku-b");
    d
}

/// Applies `events` to `replica` in log batches of the sizes in `sizes`
/// (cycled), returning each batch's rows.
fn log_batches(
    replica: &mut ExportReplica,
    events: &[(u64, Event)],
    sizes: &[usize],
) -> Vec<BatchRows> {
    let mut out = Vec::new();
    let mut rest = events;
    for &size in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (batch, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        out.push(
            replica
                .apply(ExportBatch {
                    source: BatchSource::Log,
                    events: batch,
                })
                .unwrap(),
        );
    }
    out
}

fn options(cluster: &PgCluster) -> ExportOptions {
    ExportOptions::new(cluster.url())
}

async fn connect(cluster: &PgCluster) -> PgExporter {
    PgExporter::connect(options(cluster)).await.unwrap()
}

/// A second, plain connection for checks and for getting in the way.
async fn admin(cluster: &PgCluster) -> Client {
    let (client, conn) = tokio_postgres::connect(&cluster.url(), NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// One `orders` row, every column.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct TableOrder {
    order_id: String,
    sku: String,
    user_id: String,
    qty: i32,
    state: String,
    created_at: SystemTime,
    expires_at: SystemTime,
    paid_at: Option<SystemTime>,
    cancelled_at: Option<SystemTime>,
    expired_at: Option<SystemTime>,
    updated_lsn: i64,
}

/// One `sales` row, every column.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct TableSale {
    sku: String,
    stock: i64,
    remaining: i64,
    reserved: i64,
    paid: i64,
    per_user_limit: i32,
    state: String,
    starts_at: Option<SystemTime>,
    ends_at: Option<SystemTime>,
    reservation_ttl_ms: i64,
    updated_lsn: i64,
}

async fn table_orders(client: &Client, prefix: &str) -> Vec<TableOrder> {
    let sql = format!(
        "SELECT order_id, sku, user_id, qty, state, created_at, expires_at, paid_at,
                cancelled_at, expired_at, updated_lsn FROM {prefix}orders ORDER BY order_id"
    );
    let rows = client.query(&sql, &[]).await.unwrap();
    let mut out: Vec<TableOrder> = rows
        .iter()
        .map(|r| TableOrder {
            order_id: r.get(0),
            sku: r.get(1),
            user_id: r.get(2),
            qty: r.get(3),
            state: r.get(4),
            created_at: r.get(5),
            expires_at: r.get(6),
            paid_at: r.get(7),
            cancelled_at: r.get(8),
            expired_at: r.get(9),
            updated_lsn: r.get(10),
        })
        .collect();
    out.sort();
    out
}

async fn table_sales(client: &Client, prefix: &str) -> Vec<TableSale> {
    let sql = format!(
        "SELECT sku, stock, remaining, reserved, paid, per_user_limit, state, starts_at,
                ends_at, reservation_ttl_ms, updated_lsn FROM {prefix}sales ORDER BY sku"
    );
    let rows = client.query(&sql, &[]).await.unwrap();
    rows.iter()
        .map(|r| TableSale {
            sku: r.get(0),
            stock: r.get(1),
            remaining: r.get(2),
            reserved: r.get(3),
            paid: r.get(4),
            per_user_limit: r.get(5),
            state: r.get(6),
            starts_at: r.get(7),
            ends_at: r.get(8),
            reservation_ttl_ms: r.get(9),
            updated_lsn: r.get(10),
        })
        .collect()
}

async fn table_cursor(client: &Client, prefix: &str) -> Option<i64> {
    let sql = format!("SELECT lsn FROM {prefix}export_cursor WHERE stream = $1");
    client
        .query_opt(&sql, &[&STREAM])
        .await
        .unwrap()
        .map(|r| r.get(0))
}

/// What the tables must hold for `d`, worked out from the driving engine
/// and its events, not from the replica: the engine's order views and
/// sale states, the times and the last LSN of each order's and sale's
/// events. `times` false: the times of changes are unknown (snapshot).
fn expected(d: &Driven, times: bool) -> (Vec<TableOrder>, Vec<TableSale>) {
    let mut order_lsn: BTreeMap<u64, i64> = BTreeMap::new();
    let mut sale_lsn: BTreeMap<u32, i64> = BTreeMap::new();
    let mut changed: BTreeMap<(u64, OrderState), u64> = BTreeMap::new();
    for (lsn, e) in &d.events {
        let lsn = *lsn as i64;
        let order = match *e {
            Event::SaleCreated { ordinal, .. }
            | Event::StockAdded { ordinal, .. }
            | Event::Paused { ordinal }
            | Event::Resumed { ordinal }
            | Event::Ended { ordinal } => {
                sale_lsn.insert(ordinal, lsn);
                continue;
            }
            Event::Admitted { order_id, .. } => order_id,
            Event::Paid {
                order_id, at_ms, ..
            } => {
                changed.insert((order_id, OrderState::Paid), at_ms);
                order_id
            }
            Event::Cancelled { order_id, at_ms } => {
                changed.insert((order_id, OrderState::Cancelled), at_ms);
                order_id
            }
            Event::Expired { order_id, at_ms } => {
                changed.insert((order_id, OrderState::Expired), at_ms);
                order_id
            }
        };
        order_lsn.insert(order, lsn);
        sale_lsn.insert(OrderId(order).ordinal(), lsn);
    }
    let time_of =
        |id: u64, s: OrderState| changed.get(&(id, s)).filter(|_| times).map(|&ms| at(ms));
    let mut orders: Vec<TableOrder> = order_lsn
        .iter()
        .map(|(&id, &lsn)| {
            let v = d.engine.order(OrderId(id)).unwrap();
            TableOrder {
                order_id: id.to_string(),
                sku: v.sku.to_string(),
                user_id: v.user_id.to_string(),
                qty: v.qty as i32,
                state: v.state.as_str().to_string(),
                created_at: at(v.created_at_ms),
                expires_at: at(v.expires_at_ms),
                paid_at: time_of(id, OrderState::Paid),
                cancelled_at: time_of(id, OrderState::Cancelled),
                expired_at: time_of(id, OrderState::Expired),
                updated_lsn: lsn,
            }
        })
        .collect();
    orders.sort();
    let mut sales: Vec<TableSale> = d
        .engine
        .state()
        .sales
        .iter()
        .map(|s| {
            let paid = s.paid as i64;
            let remaining = s.remaining as i64;
            let state = match (s.status, remaining) {
                ("open", 0) => "sold_out",
                (status, _) => status,
            };
            TableSale {
                sku: s.sku.clone(),
                stock: s.total as i64,
                remaining,
                reserved: s.total as i64 - remaining - paid,
                paid,
                per_user_limit: s.per_user_limit as i32,
                state: state.to_string(),
                starts_at: s.starts_at_ms.map(at),
                ends_at: s.ends_at_ms.map(at),
                reservation_ttl_ms: s.reservation_ttl_ms as i64,
                updated_lsn: sale_lsn[&s.ordinal],
            }
        })
        .collect();
    sales.sort();
    (orders, sales)
}

/// The tables hold exactly what `d` says, and the cursor is at its end.
async fn assert_tables_equal(client: &Client, prefix: &str, d: &Driven, times: bool) {
    let (orders, sales) = expected(d, times);
    let got_orders = table_orders(client, prefix).await;
    assert_eq!(got_orders.len(), orders.len(), "order row count");
    for (got, want) in got_orders.iter().zip(&orders) {
        assert_eq!(got, want);
    }
    assert_eq!(table_sales(client, prefix).await, sales);
}

#[tokio::test]
async fn the_schema_is_created_and_a_second_connect_changes_nothing() {
    let cluster = cluster!();
    let mut exporter = connect(&cluster).await;
    assert_eq!(exporter.cursor(STREAM).await.unwrap(), 0, "no batch yet");
    let admin = admin(&cluster).await;
    let tables: Vec<String> = admin
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_name LIKE 'flashsale\\_%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables,
        [
            "flashsale_export_cursor",
            "flashsale_orders",
            "flashsale_sales",
            "flashsale_schema_version"
        ]
    );
    let index_defs: Vec<String> = admin
        .query(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'flashsale_orders' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for cols in ["(user_id)", "(sku, state)", "(updated_lsn)", "(order_id)"] {
        assert!(
            index_defs
                .iter()
                .any(|d| d.ends_with(&format!("btree {cols}"))),
            "no index on {cols}: {index_defs:?}"
        );
    }
    let types: Vec<(String, String)> = admin
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_name = 'flashsale_orders' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(types[0], ("order_id".into(), "text".into()));
    assert_eq!(types[2], ("user_id".into(), "text".into()));
    assert_eq!(
        types[5],
        ("created_at".into(), "timestamp with time zone".into())
    );
    let version = "SELECT version, created_at FROM flashsale_schema_version";
    let before = admin.query_one(version, &[]).await.unwrap();
    assert_eq!(before.get::<_, i32>(0), SCHEMA_VERSION);
    let before: SystemTime = before.get(1);

    // Some rows, then a second exporter: it must leave them (and the
    // version row) alone.
    let d = driven(1, 200);
    let mut replica = ExportReplica::new(EngineConfig::with_shards(2));
    for rows in log_batches(&mut replica, &d.events, &[50]) {
        exporter.write_batch(STREAM, &rows).await.unwrap();
    }
    let mut second = connect(&cluster).await;
    assert_eq!(second.cursor(STREAM).await.unwrap(), d.last_lsn());
    let after = admin.query(version, &[]).await.unwrap();
    assert_eq!(after.len(), 1, "one version row");
    assert_eq!(
        after[0].get::<_, SystemTime>(1),
        before,
        "version row untouched"
    );
    assert_tables_equal(&admin, "flashsale_", &d, true).await;
}

#[tokio::test]
async fn a_newer_schema_version_is_refused() {
    let cluster = cluster!();
    drop(connect(&cluster).await);
    let admin = admin(&cluster).await;
    admin
        .execute(
            "UPDATE flashsale_schema_version SET version = $1",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    let err = PgExporter::connect(options(&cluster)).await.err().unwrap();
    match &err {
        ExportError::SchemaTooNew { found, known, .. } => {
            assert_eq!(*found, SCHEMA_VERSION + 1);
            assert_eq!(*known, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(text.contains("upgrade flashsale"), "{text}");
    assert!(!text.contains(cluster.password()), "{text}");
    // Another prefix is another schema: it starts fresh beside it.
    let mut other = options(&cluster);
    other.table_prefix = "other_".into();
    PgExporter::connect(other).await.unwrap();
}

#[tokio::test]
async fn batches_of_any_size_give_exactly_the_engines_rows() {
    let cluster = cluster!();
    let d = driven(7, 3_000);
    let admitted = d
        .events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Admitted { .. }));
    assert!(admitted.count() > 300, "the scenario admits plenty");
    let admin = admin(&cluster).await;
    let states: Vec<OrderState> = d.engine.state().orders.iter().map(|o| o.state).collect();
    for s in OrderState::ALL {
        assert!(states.contains(&s), "the scenario reaches {s:?}");
    }
    for (i, sizes) in [&[1usize, 2, 3][..], &[97], &[1_000, 1, 250], &[100_000]]
        .into_iter()
        .enumerate()
    {
        let prefix = format!("run{i}_");
        let mut opts = options(&cluster);
        opts.table_prefix = prefix.clone();
        let mut exporter = PgExporter::connect(opts).await.unwrap();
        let mut replica = ExportReplica::new(EngineConfig::with_shards(3));
        for rows in log_batches(&mut replica, &d.events, sizes) {
            let report = exporter.write_batch(STREAM, &rows).await.unwrap();
            assert!(report.cursor_advanced);
            assert_eq!(exporter.cursor(STREAM).await.unwrap(), rows.last_lsn);
        }
        assert_eq!(
            replica.engine().state(),
            d.engine.state(),
            "replica = engine"
        );
        assert_tables_equal(&admin, &prefix, &d, true).await;
        assert_eq!(
            table_cursor(&admin, &prefix).await,
            Some(d.last_lsn() as i64)
        );
    }
}

#[tokio::test]
async fn a_replayed_batch_and_an_older_one_change_nothing() {
    let cluster = cluster!();
    let d = driven(3, 1_500);
    let admin = admin(&cluster).await;
    let mut exporter = connect(&cluster).await;
    let mut replica = ExportReplica::new(EngineConfig::with_shards(2));
    let batches = log_batches(&mut replica, &d.events, &[64]);
    for rows in &batches {
        exporter.write_batch(STREAM, rows).await.unwrap();
    }
    let orders = table_orders(&admin, "flashsale_").await;
    let sales = table_sales(&admin, "flashsale_").await;

    // Every batch again, in order: a relay that resumed from an old cursor.
    for rows in &batches {
        let report = exporter.write_batch(STREAM, rows).await.unwrap();
        assert_eq!((report.orders_changed, report.sales_changed), (0, 0));
        assert!(!report.cursor_advanced);
    }
    // A lagging replica's batches: older than every row they touch.
    let mut behind = ExportReplica::new(EngineConfig::with_shards(1));
    let half = &d.events[..d.events.len() / 2];
    for rows in log_batches(&mut behind, half, &[10, 333]) {
        let report = exporter.write_batch(STREAM, &rows).await.unwrap();
        assert_eq!((report.orders_changed, report.sales_changed), (0, 0));
    }
    assert_eq!(table_orders(&admin, "flashsale_").await, orders);
    assert_eq!(table_sales(&admin, "flashsale_").await, sales);
    assert_eq!(
        table_cursor(&admin, "flashsale_").await,
        Some(d.last_lsn() as i64)
    );
    assert_tables_equal(&admin, "flashsale_", &d, true).await;
}

#[tokio::test]
async fn a_snapshot_gives_the_same_rows_and_the_log_carries_on_after_it() {
    let cluster = cluster!();
    let mut d = driven(11, 1_000);
    let admin = admin(&cluster).await;
    let mut exporter = connect(&cluster).await;
    let mut replica = ExportReplica::new(EngineConfig::with_shards(2));
    for rows in log_batches(&mut replica, &d.events, &[200]) {
        exporter.write_batch(STREAM, &rows).await.unwrap();
    }

    // A relay restarting from a snapshot at the end of the log: the cursor
    // is there already, so it skips the snapshot's rows (written, they
    // would move updated_lsn of older rows up to the snapshot's).
    let s = d.last_lsn();
    let mut snap = Vec::new();
    d.engine.export(&mut snap).unwrap();
    let snap: Vec<(u64, Event)> = snap.into_iter().map(|e| (s, e)).collect();
    let mut restarted = ExportReplica::new(EngineConfig::with_shards(2));
    let (first, rest) = snap.split_at(snap.len() / 3);
    let mut snapshot_rows = Vec::new();
    for (part, source) in [
        (first, BatchSource::SnapshotPart),
        (rest, BatchSource::SnapshotEnd),
    ] {
        let batch = ExportBatch {
            source,
            events: part,
        };
        let rows = restarted.apply(batch).unwrap();
        assert!(!rows.needs_writing(exporter.cursor(STREAM).await.unwrap()));
        snapshot_rows.push(rows);
    }
    assert_eq!(restarted.engine().state(), d.engine.state());

    // The snapshot alone into empty tables: the same rows, without the
    // times of changes, which a snapshot does not keep.
    let mut opts = options(&cluster);
    opts.table_prefix = "fresh_".into();
    let mut fresh = PgExporter::connect(opts).await.unwrap();
    // Parts of a snapshot leave the cursor where it is: a relay that dies
    // between them writes the whole snapshot again.
    fresh.write_batch(STREAM, &snapshot_rows[0]).await.unwrap();
    assert_eq!(fresh.cursor(STREAM).await.unwrap(), 0);
    fresh.write_batch(STREAM, &snapshot_rows[1]).await.unwrap();
    assert_eq!(fresh.cursor(STREAM).await.unwrap(), s);
    let (orders, _) = expected(&d, false);
    let got = table_orders(&admin, "fresh_").await;
    assert_eq!(got.len(), orders.len());
    for (got, want) in got.iter().zip(&orders) {
        let want = TableOrder {
            updated_lsn: s as i64,
            ..want.clone()
        };
        assert_eq!(*got, want);
    }

    // Both carry on from the log after the snapshot.
    let from = d.events.len();
    d.drive(500);
    let tail = &d.events[from..];
    for rows in log_batches(&mut replica, tail, &[77]) {
        exporter.write_batch(STREAM, &rows).await.unwrap();
    }
    for rows in log_batches(&mut restarted, tail, &[5, 500]) {
        exporter.write_batch(STREAM, &rows).await.unwrap();
    }
    assert_tables_equal(&admin, "flashsale_", &d, true).await;
    // A log batch at or before the snapshot's LSN is refused.
    let err = restarted
        .apply(ExportBatch {
            source: BatchSource::Log,
            events: &d.events[..1],
        })
        .unwrap_err();
    assert!(matches!(err, ExportError::BatchOrder { .. }), "{err:?}");
}

/// Rows and cursor commit together: when the cursor's update fails, no
/// row of the batch is left behind.
#[tokio::test]
async fn a_failing_cursor_update_leaves_no_row() {
    let cluster = cluster!();
    let d = driven(5, 600);
    let admin = admin(&cluster).await;
    let mut exporter = connect(&cluster).await;
    let mut replica = ExportReplica::new(EngineConfig::with_shards(2));
    let batches = log_batches(&mut replica, &d.events, &[400]);
    exporter.write_batch(STREAM, &batches[0]).await.unwrap();
    let orders = table_orders(&admin, "flashsale_").await;
    let sales = table_sales(&admin, "flashsale_").await;
    admin
        .batch_execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'the cursor refuses'; END $$;
             CREATE TRIGGER refuse BEFORE UPDATE ON flashsale_export_cursor
                 FOR EACH ROW EXECUTE FUNCTION refuse();",
        )
        .await
        .unwrap();
    let err = exporter.write_batch(STREAM, &batches[1]).await.unwrap_err();
    match &err {
        ExportError::Statement { code, what, .. } => {
            assert_eq!(code, "P0001");
            assert_eq!(*what, "advancing the export cursor");
        }
        other => panic!("expected a statement error, got {other:?}"),
    }
    assert!(!err.is_transient(), "a trigger needs a person");
    assert_eq!(table_orders(&admin, "flashsale_").await, orders);
    assert_eq!(table_sales(&admin, "flashsale_").await, sales);
    assert_eq!(
        table_cursor(&admin, "flashsale_").await,
        Some(batches[0].last_lsn as i64)
    );

    admin
        .batch_execute("DROP TRIGGER refuse ON flashsale_export_cursor")
        .await
        .unwrap();
    for rows in &batches[1..] {
        exporter.write_batch(STREAM, rows).await.unwrap();
    }
    assert_tables_equal(&admin, "flashsale_", &d, true).await;
}

/// The backend is killed after the row upserts, while the cursor update
/// waits: nothing of the batch stays, and the retry writes all of it.
#[tokio::test]
async fn a_backend_killed_between_rows_and_cursor_rolls_both_back() {
    let cluster = cluster!();
    let d = driven(9, 600);
    let blocker = admin(&cluster).await;
    let killer = admin(&cluster).await;
    let mut exporter = connect(&cluster).await;
    let mut replica = ExportReplica::new(EngineConfig::with_shards(2));
    let rows = log_batches(&mut replica, &d.events, &[usize::MAX]).remove(0);

    blocker
        .batch_execute("BEGIN; LOCK TABLE flashsale_export_cursor IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let writing = tokio::spawn(async move {
        let result = exporter.write_batch(STREAM, &rows).await;
        (exporter, rows, result)
    });
    // Wait for the export's backend to block on the cursor's lock, then end it.
    let waiting = "SELECT pid FROM pg_stat_activity
                   WHERE application_name = 'flashsale-export' AND wait_event_type = 'Lock'";
    let give_up = std::time::Instant::now() + Duration::from_secs(60);
    let pid: i32 = loop {
        if let Some(row) = killer.query_opt(waiting, &[]).await.unwrap() {
            break row.get(0);
        }
        assert!(
            std::time::Instant::now() < give_up,
            "the export never waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let killed: bool = killer
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    let (mut exporter, rows, result) = writing.await.unwrap();
    let err = result.unwrap_err();
    assert!(matches!(err, ExportError::ConnectionLost { .. }), "{err:?}");
    assert!(err.is_transient());
    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(table_orders(&blocker, "flashsale_").await, []);
    assert_eq!(table_sales(&blocker, "flashsale_").await, []);
    assert_eq!(table_cursor(&blocker, "flashsale_").await, None);

    // The retry opens a new connection by itself.
    assert!(!exporter.is_connected());
    exporter.write_batch(STREAM, &rows).await.unwrap();
    assert_tables_equal(&blocker, "flashsale_", &d, true).await;
    assert_eq!(
        table_cursor(&blocker, "flashsale_").await,
        Some(d.last_lsn() as i64)
    );
}

#[tokio::test]
async fn a_restarted_server_loses_nothing_committed_and_the_retry_goes_through() {
    let mut cluster = cluster!();
    let d = driven(13, 800);
    let mut exporter = connect(&cluster).await;
    let mut replica = ExportReplica::new(EngineConfig::with_shards(2));
    let batches = log_batches(&mut replica, &d.events, &[300]);
    exporter.write_batch(STREAM, &batches[0]).await.unwrap();

    cluster.stop_immediate();
    let err = exporter.write_batch(STREAM, &batches[1]).await.unwrap_err();
    assert!(err.is_transient(), "server down is transient: {err:?}");
    let err = exporter.write_batch(STREAM, &batches[1]).await.unwrap_err();
    assert!(
        matches!(err, ExportError::Unreachable { .. }),
        "the next call tries to reconnect: {err:?}"
    );
    assert!(err.is_transient());
    assert!(err.to_string().contains("export.postgres_url"), "{err}");
    cluster.start_again();

    assert_eq!(exporter.cursor(STREAM).await.unwrap(), batches[0].last_lsn);
    for rows in &batches[1..] {
        exporter.write_batch(STREAM, rows).await.unwrap();
    }
    let admin = admin(&cluster).await;
    assert_tables_equal(&admin, "flashsale_", &d, true).await;
}

/// A table locked by someone else stalls the batch until the statement
/// timeout: a transient timeout, and none of the batch written.
#[tokio::test]
async fn a_stalled_statement_times_out_with_nothing_written() {
    let cluster = cluster!();
    let d = driven(17, 300);
    let mut opts = options(&cluster);
    opts.statement_timeout = Duration::from_millis(300);
    let mut exporter = PgExporter::connect(opts).await.unwrap();
    let mut replica = ExportReplica::new(EngineConfig::with_shards(2));
    let rows = log_batches(&mut replica, &d.events, &[usize::MAX]).remove(0);
    let blocker = admin(&cluster).await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE flashsale_orders IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = exporter.write_batch(STREAM, &rows).await.unwrap_err();
    assert!(
        matches!(
            err,
            ExportError::Timeout {
                timeout_ms: 300,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the server cancelled it"
    );
    blocker.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        table_sales(&blocker, "flashsale_").await,
        [],
        "sales rolled back"
    );
    assert_eq!(table_cursor(&blocker, "flashsale_").await, None);

    exporter.write_batch(STREAM, &rows).await.unwrap();
    assert_tables_equal(&blocker, "flashsale_", &d, true).await;
}

#[tokio::test]
async fn an_altered_table_is_a_statement_error() {
    let cluster = cluster!();
    let d = driven(19, 200);
    let mut exporter = connect(&cluster).await;
    let mut replica = ExportReplica::new(EngineConfig::with_shards(2));
    let rows = log_batches(&mut replica, &d.events, &[usize::MAX]).remove(0);
    let admin = admin(&cluster).await;
    admin
        .batch_execute("ALTER TABLE flashsale_orders DROP COLUMN paid_at")
        .await
        .unwrap();
    let err = exporter.write_batch(STREAM, &rows).await.unwrap_err();
    assert!(matches!(err, ExportError::Statement { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("order rows"), "{err}");
    assert_eq!(table_sales(&admin, "flashsale_").await, [], "rolled back");
}

#[tokio::test]
async fn bad_settings_name_the_setting_and_never_the_password() {
    let cluster = cluster!();
    let secret = cluster.password().to_string();
    let wrong = "wrong-password-4711";
    let no_such_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cases = [
        (
            format!("postgres://postgres:{secret}@127.0.0.1:notaport/x"),
            "BadUrl",
            false,
        ),
        (
            cluster.url_with("postgres", wrong, "postgres"),
            "Authentication",
            false,
        ),
        (
            cluster.url_with("nobody", &secret, "postgres"),
            "Authentication",
            false,
        ),
        (
            cluster.url_with("postgres", &secret, "no_such_db"),
            "NoDatabase",
            false,
        ),
        (
            format!("postgres://postgres:{secret}@127.0.0.1:{no_such_port}/postgres"),
            "Unreachable",
            true,
        ),
    ];
    for (url, kind, transient) in cases {
        let mut opts = ExportOptions::new(url);
        opts.connect_timeout = Duration::from_secs(5);
        assert!(
            !format!("{opts:?}").contains(&secret),
            "Debug hides the URL"
        );
        let err = PgExporter::connect(opts).await.err().unwrap();
        let text = err.to_string();
        let debug = format!("{err:?}");
        assert!(debug.starts_with(kind), "{kind}: {debug}");
        assert_eq!(err.is_transient(), transient, "{kind}: {text}");
        assert!(text.contains("export.postgres_url"), "{kind}: {text}");
        for pw in [&secret[..], wrong] {
            assert!(!text.contains(pw), "{kind}: password in {text}");
            assert!(!debug.contains(pw), "{kind}: password in {debug}");
        }
        eprintln!("{kind}: {text}");
    }
    let mut opts = options(&cluster);
    opts.table_prefix = "Bad-Prefix".into();
    let err = PgExporter::connect(opts).await.err().unwrap();
    assert!(err.to_string().contains("export.table_prefix"), "{err}");
}

/// The lanes' cursor rows, by stream name.
async fn lane_cursor_rows(client: &Client) -> BTreeMap<String, i64> {
    let sql = "SELECT stream, lsn FROM flashsale_export_cursor";
    let rows = client.query(sql, &[]).await.unwrap();
    rows.iter().map(|r| (r.get(0), r.get(1))).collect()
}

/// Writes `rows` over `lanes`, as the relay does: each lane its share,
/// on its own connection, under its own cursor.
async fn write_over_lanes(lanes: &mut [PgExporter], rows: BatchRows) {
    let n = lanes.len();
    for (k, (exporter, part)) in lanes.iter_mut().zip(rows.split_lanes(n)).enumerate() {
        exporter
            .write_batch(&lane_stream(STREAM, k), &part)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn lanes_share_the_rows_and_a_new_layout_resumes_from_the_slowest_lane() {
    let cluster = cluster!();
    let d = driven(21, 2_000);
    let admin = admin(&cluster).await;
    let mut replica = ExportReplica::new(EngineConfig::with_shards(2));
    let batches = log_batches(&mut replica, &d.events, &[150]);
    let (first, rest) = batches.split_at(batches.len() / 2);

    // Two lanes write the first half; then lane 0 alone writes one more
    // batch (a crash between the lanes' commits).
    let mut two = vec![connect(&cluster).await, connect(&cluster).await];
    assert_eq!(two[0].lane_cursors(STREAM, 2).await.unwrap(), vec![0, 0]);
    for rows in first {
        write_over_lanes(&mut two, rows.clone()).await;
    }
    let behind = first.last().unwrap().last_lsn;
    let part0 = rest[0].clone().split_lanes(2).swap_remove(0);
    two[0].write_batch(STREAM, &part0).await.unwrap();
    let ahead = rest[0].last_lsn;
    let lane1 = lane_stream(STREAM, 1);
    let cursors = lane_cursor_rows(&admin).await;
    assert_eq!(cursors[STREAM], ahead as i64, "lane 0 moved on");
    assert_eq!(cursors[&lane1], behind as i64, "lane 1 did not");
    // The same layout keeps each lane's own cursor.
    let cursors = two[0].lane_cursors(STREAM, 2).await.unwrap();
    assert_eq!(cursors, vec![ahead, behind]);

    // Three lanes: orders move between lanes, so every lane starts from
    // the slowest one, and the stored rows become exactly the three.
    let mut three = vec![
        connect(&cluster).await,
        connect(&cluster).await,
        connect(&cluster).await,
    ];
    assert_eq!(
        three[0].lane_cursors(STREAM, 3).await.unwrap(),
        vec![behind; 3]
    );
    let names: Vec<String> = lane_cursor_rows(&admin).await.into_keys().collect();
    assert_eq!(
        names,
        vec![STREAM.to_string(), lane1, lane_stream(STREAM, 2)]
    );
    // The relay writes again from after the slowest lane: lane 0's batch
    // a second time included, which changes none of its rows.
    for rows in rest {
        write_over_lanes(&mut three, rows.clone()).await;
    }
    assert_tables_equal(&admin, "flashsale_", &d, true).await;

    // Back to one lane: one cursor row, at the end.
    let mut one = connect(&cluster).await;
    assert_eq!(
        one.lane_cursors(STREAM, 1).await.unwrap(),
        vec![d.last_lsn()]
    );
    let cursors = lane_cursor_rows(&admin).await;
    assert_eq!(cursors.len(), 1, "{cursors:?}");
    assert_eq!(
        table_cursor(&admin, "flashsale_").await,
        Some(d.last_lsn() as i64)
    );
    for rows in &batches {
        let report = one.write_batch(STREAM, rows).await.unwrap();
        assert_eq!((report.orders_changed, report.sales_changed), (0, 0));
    }
    assert_tables_equal(&admin, "flashsale_", &d, true).await;
}

#[tokio::test]
async fn a_new_order_another_writer_got_in_first_is_upserted_on_the_retry() {
    let cluster = cluster!();
    let d = driven(5, 1_200);
    let admin = admin(&cluster).await;
    let mut replica = ExportReplica::new(EngineConfig::with_shards(2));
    let batches = log_batches(&mut replica, &d.events, &[100]);
    let mut ours = connect(&cluster).await;
    let mut other = connect(&cluster).await;
    ours.write_batch(STREAM, &batches[0]).await.unwrap();
    // Another exporter writes the next batch behind our back: `ours`
    // still believes its new orders have no rows, and inserts them as new.
    other.write_batch(STREAM, &batches[1]).await.unwrap();
    assert!(
        batches[1].orders.iter().any(|r| r.admitted_lsn.is_some()),
        "the batch admits orders"
    );
    let err = ours.write_batch(STREAM, &batches[1]).await.unwrap_err();
    assert!(err.is_transient(), "a unique violation is retried: {err}");
    assert!(err.to_string().contains("23505"), "{err}");
    // The retry asks the database again and upserts: nothing changes.
    let report = ours.write_batch(STREAM, &batches[1]).await.unwrap();
    assert_eq!((report.orders_changed, report.sales_changed), (0, 0));
    assert!(!report.cursor_advanced);
    for rows in &batches[2..] {
        ours.write_batch(STREAM, rows).await.unwrap();
    }
    assert_tables_equal(&admin, "flashsale_", &d, true).await;
}
