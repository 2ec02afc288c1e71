//! The export relay end to end, against a real PostgreSQL (a throwaway
//! cluster from `pg/mod.rs`): in a server on port 0, and through the real
//! binary while PostgreSQL is killed with `pg_ctl stop -m immediate` and
//! the server with `kill -9` mid-sale. At the end, once the lag is 0, the
//! database equals the engine: every order the client saw acknowledged is
//! there once, in the engine's state, and each sale's counters match.

mod common;
mod pg;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Conn, Proc, TestServer};
use hyper::Method;
use pg::PgCluster;
use tokio_postgres::NoTls;

macro_rules! cluster {
    () => {
        match PgCluster::start() {
            Some(cluster) => cluster,
            None => return,
        }
    };
}

/// `GET /v1/admin/export`, as JSON.
async fn export_state(c: &mut Conn) -> serde_json::Value {
    let r = c.admin_get("/v1/admin/export").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.json()
}

/// Waits until the export has written everything the log holds.
async fn wait_caught_up(c: &mut Conn) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = export_state(c).await;
        if state["up"] == true && state["lag_records"] == 0 && state["lsn"].as_u64() > Some(0) {
            return state;
        }
        assert!(Instant::now() < deadline, "export never caught up: {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Orders in the database: id to (sku, user_id, qty, state).
async fn db_orders(url: &str) -> BTreeMap<String, (String, String, i32, String)> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT order_id, sku, user_id, qty, state FROM flashsale_orders",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect()
}

/// A sale's row: (stock, remaining, reserved, paid, state).
async fn db_sale(url: &str, sku: &str) -> (i64, i64, i64, i64, String) {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let r = client
        .query_one(
            "SELECT stock, remaining, reserved, paid, state FROM flashsale_sales WHERE sku = $1",
            &[&sku],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

/// The database equals the engine: every order in it is the engine's order
/// in the engine's state, the acknowledged ones are all there, and the
/// sale's counters (which count every order the engine holds) match both
/// the engine and the rows.
async fn check_equal(c: &mut Conn, url: &str, sku: &str, acknowledged: &[String]) {
    let orders = db_orders(url).await;
    for id in acknowledged {
        assert!(
            orders.contains_key(id),
            "acknowledged order {id} not exported"
        );
    }
    let (mut reserved, mut paid) = (0i64, 0i64);
    for (id, (row_sku, user, qty, state)) in &orders {
        let view = c.admin_get(&format!("/v1/orders/{id}")).await.json();
        assert_eq!(row_sku, view["sku"].as_str().unwrap(), "{id}");
        assert_eq!(Some(user.as_str()), view["user_id"].as_str(), "{id}");
        assert_eq!(i64::from(*qty), view["qty"].as_i64().unwrap(), "{id}");
        assert_eq!(state, view["state"].as_str().unwrap(), "order {id}");
        match state.as_str() {
            "reserved" => reserved += i64::from(*qty),
            "paid" => paid += i64::from(*qty),
            _ => {}
        }
    }
    let sale = c.get(&format!("/v1/sales/{sku}")).await.json();
    let row = db_sale(url, sku).await;
    let want = (
        sale["stock"].as_i64().unwrap(),
        sale["remaining"].as_i64().unwrap(),
        sale["reserved"].as_i64().unwrap(),
        sale["paid"].as_i64().unwrap(),
    );
    assert_eq!((row.0, row.1, row.2, row.3), want, "sale row vs the engine");
    assert_eq!(
        (reserved, paid),
        (want.2, want.3),
        "order rows vs the sale's counters"
    );
}

/// Buys with users `users`; returns the acknowledged order ids.
async fn buy(c: &mut Conn, sku: &str, users: std::ops::Range<u64>) -> Vec<String> {
    let mut ids = Vec::new();
    for user in users {
        let body = format!(r#"{{"user_id":"{user}","request_id":"r{user}"}}"#);
        let path = format!("/v1/sales/{sku}/purchase");
        match c.send(Method::POST, &path, Some(&body), None).await {
            Ok(r) if r.status == 201 || r.status == 200 => {
                ids.push(r.json()["order_id"].as_str().unwrap().to_string());
            }
            Ok(_) | Err(_) => {}
        }
    }
    ids
}

/// Pays every third and cancels every fifth acknowledged order.
async fn settle(c: &mut Conn, ids: &[String]) {
    for (i, id) in ids.iter().enumerate() {
        if i % 3 == 0 {
            let r = c.admin_post(&format!("/v1/orders/{id}/pay"), "").await;
            assert!(r.status == 200 || r.status == 409, "pay {id}: {}", r.status);
        } else if i % 5 == 0 {
            let view = c.admin_get(&format!("/v1/orders/{id}")).await.json();
            let body = format!(r#"{{"user_id":{}}}"#, view["user_id"]);
            let r = c.post(&format!("/v1/orders/{id}/cancel"), &body).await;
            assert!(
                r.status == 200 || r.status == 409,
                "cancel {id}: {}",
                r.status
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_relay_exports_every_order_once() {
    let cluster = cluster!();
    let url = cluster.url();
    let mut s = TestServer::start_with(|c| {
        c.export.postgres_url = Some(url.clone());
        c.export.batch_records = 16;
    })
    .await;
    let mut c = s.conn().await;
    let r = c
        .create_sale(r#"{"sku":"ex","stock":40,"per_user_limit":1,"reservation_ttl_ms":1500}"#)
        .await;
    assert_eq!(r.status, 201);
    let ids = buy(&mut c, "ex", 1..60).await;
    assert_eq!(ids.len(), 40);
    settle(&mut c, &ids).await;
    // Let the unpaid reservations expire, then export it all.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let state = wait_caught_up(&mut c).await;
    assert!(state["rows_total"].as_u64() > Some(0), "{state}");
    check_equal(&mut c, &url, "ex", &ids).await;
    let states: Vec<String> = db_orders(&url).await.into_values().map(|o| o.3).collect();
    for want in ["paid", "cancelled", "expired"] {
        assert!(states.iter().any(|s| s == want), "no {want} order exported");
    }
    let metrics = String::from_utf8(c.get("/metrics").await.body.to_vec()).unwrap();
    for needle in [
        "flashsale_export_up 1\n",
        "flashsale_export_lag_records 0\n",
        "flashsale_export_batch_seconds_bucket{le=\"+Inf\"}",
    ] {
        assert!(metrics.contains(needle), "metrics lack {needle:?}");
    }
    s.shutdown().await.unwrap();
}

/// A sale through the real binary while PostgreSQL dies (`-m immediate`)
/// and comes back, and flashsale is killed with -9 and restarted: nothing
/// acknowledged is missing, nothing is there twice, the rows equal the
/// engine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_survives_postgres_and_flashsale_crashes() {
    let mut cluster = cluster!();
    let url = cluster.url();
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), "always");
    // Small segments and frequent snapshots: snapshots run while the
    // export is down and behind, and must keep what it has not written.
    let env = [
        ("FLASHSALE_EXPORT_POSTGRES_URL", url.as_str()),
        ("FLASHSALE_WAL_SEGMENT_BYTES", "4096"),
        ("FLASHSALE_WAL_SNAPSHOT_EVERY_RECORDS", "40"),
    ];
    let server = Proc::spawn(&config, &env);
    server.wait_ready().await;
    let mut c = Conn::connect(server.addr).await.unwrap();
    let r = c
        .create_sale(r#"{"sku":"k9","stock":300,"per_user_limit":1,"reservation_ttl_ms":3000}"#)
        .await;
    assert_eq!(r.status, 201);
    let mut acknowledged = buy(&mut c, "k9", 1..60).await;
    cluster.stop_immediate();
    // Admissions carry on while the database is down.
    let during = buy(&mut c, "k9", 60..120).await;
    assert_eq!(
        during.len(),
        60,
        "admissions failed while PostgreSQL was down"
    );
    acknowledged.extend(during);
    // The outage shows: the export is down and its lag grows.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = export_state(&mut c).await;
        if state["up"] == false && state["lag_records"].as_u64() > Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "outage not reported: {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settle(&mut c, &acknowledged).await;
    cluster.start_again();
    acknowledged.extend(buy(&mut c, "k9", 120..160).await);
    drop(c);
    server.kill9();

    let server = Proc::spawn(&config, &env);
    server.wait_ready().await;
    let mut c = Conn::connect(server.addr).await.unwrap();
    acknowledged.extend(buy(&mut c, "k9", 160..200).await);
    settle(&mut c, &acknowledged[150..]).await;
    // Unpaid reservations expire too, and are exported as expired.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    wait_caught_up(&mut c).await;
    check_equal(&mut c, &url, "k9", &acknowledged).await;
    let files: Vec<String> = std::fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().any(|f| f.starts_with("snapshot-")),
        "no snapshot was taken: {files:?}"
    );
    assert!(
        server.log().contains("export: writing to PostgreSQL"),
        "{}",
        server.log()
    );
    assert_eq!(server.terminate(), 0);
}

/// `flashsale export --once` on a stopped server's directory writes what
/// the serving relay would have, and a second run changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_once_of_a_stopped_directory() {
    let cluster = cluster!();
    let url = cluster.url();
    let dir = tempfile::tempdir().unwrap();
    let config = common::write_config(dir.path(), "always");
    let server = Proc::spawn(&config, &[]);
    server.wait_ready().await;
    let mut c = Conn::connect(server.addr).await.unwrap();
    let r = c
        .create_sale(r#"{"sku":"off","stock":30,"per_user_limit":1}"#)
        .await;
    assert_eq!(r.status, 201);
    let ids = buy(&mut c, "off", 1..40).await;
    settle(&mut c, &ids).await;
    let sale = c.get("/v1/sales/off").await.json();
    drop(c);
    assert_eq!(server.terminate(), 0);

    let run = |lanes: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_flashsale"))
            .args(["export", "--once", "--wal-dir"])
            .arg(dir.path().join("wal"))
            .arg("--config")
            .arg(&config)
            .env("FLASHSALE_EXPORT_POSTGRES_URL", &url)
            .env("FLASHSALE_EXPORT_CONNECTIONS", lanes)
            .output()
            .unwrap()
    };
    let first = run("2");
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let orders = db_orders(&url).await;
    assert_eq!(orders.len(), ids.len());
    let row = db_sale(&url, "off").await;
    assert_eq!(
        (row.1, row.2, row.3),
        (
            sale["remaining"].as_i64().unwrap(),
            sale["reserved"].as_i64().unwrap(),
            sale["paid"].as_i64().unwrap()
        )
    );
    // Again, with the same lanes, then with more and with fewer: the
    // lanes' cursors are all at the end, so nothing is written.
    for lanes in ["2", "3", "1"] {
        let again = run(lanes);
        assert!(
            again.status.success(),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
        let out = String::from_utf8_lossy(&again.stdout);
        assert!(out.contains("(0 rows written)"), "{lanes} lanes: {out}");
        assert_eq!(db_orders(&url).await, orders);
    }
}

/// A bad URL stops `flashsale export` at once with the setting's name and
/// without the password.
#[test]
fn export_refuses_a_bad_url_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flashsale"))
        .args(["export", "--once", "--wal-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&config)
        .env(
            "FLASHSALE_EXPORT_POSTGRES_URL",
            "postgres://u:s3cret@/db?port=notaport",
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("export.postgres_url"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

/// Past `export.max_lag_bytes` of log on disk with the export behind (here
/// it can never connect), purchases get 503 with Retry-After, are counted,
/// and the gauge says why; admin routes still work. Under the limit the
/// same dead export refuses nothing. No PostgreSQL needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchases_are_refused_past_max_lag_bytes() {
    // Nothing listens on port 1: the export stays down and behind.
    let dead = "postgres://u@127.0.0.1:1/db".to_string();
    for (max_lag_bytes, refused) in [(4u64 << 30, false), (1 << 20, true)] {
        let url = dead.clone();
        let mut s = TestServer::start_with(|c| {
            c.export.postgres_url = Some(url);
            c.export.max_lag_bytes = max_lag_bytes;
        })
        .await;
        let mut c = s.conn().await;
        // A new segment preallocates 1 MiB, so the log on disk is already
        // past the smallest limit.
        let r = c.create_sale(r#"{"sku":"lag","stock":10}"#).await;
        assert_eq!(r.status, 201);
        let r = c.post("/v1/sales/lag/purchase", r#"{"user_id":"1"}"#).await;
        if refused {
            assert_eq!((r.status, r.code().as_str()), (503, "unavailable"));
            assert_eq!(r.header("retry-after"), Some("1"));
            let state = export_state(&mut c).await;
            assert_eq!(state["refused_purchases_total"], 1, "{state}");
            assert_eq!(state["up"], false, "{state}");
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let m = String::from_utf8(c.get("/metrics").await.body.to_vec()).unwrap();
                if m.contains("flashsale_export_over_max_lag 1\n") {
                    break;
                }
                assert!(Instant::now() < deadline, "gauge never set:\n{m}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            assert_eq!(r.status, 201, "{:?}", r.body);
        }
        s.shutdown().await.unwrap();
    }
}
