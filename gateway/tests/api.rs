//! In-process tests of every route and status of the HTTP API (API.md), on
//! a server bound to port 0 with a real write-ahead log in a temp dir.

mod common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use common::{raw, raw_exchange, Conn, TestServer, TOKEN};
use hyper::Method;

/// Asserts status and machine code of a reply.
#[track_caller]
fn check(reply: &common::Reply, status: u16, code: &str) {
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (status, code),
        "body: {}",
        String::from_utf8_lossy(&reply.body)
    );
    // Every non-2xx body carries a human error too.
    if status >= 300 {
        assert!(reply.json()["error"].is_string(), "no error text");
    }
}

async fn sale(c: &mut Conn, sku: &str, stock: u64, limit: u32) {
    let r = c
        .create_sale(&format!(
            r#"{{"sku":"{sku}","stock":{stock},"per_user_limit":{limit}}}"#
        ))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    assert_eq!(c.get("/healthz").await.status, 200);
    assert_eq!(c.get("/readyz").await.status, 200);
    sale(&mut c, "m1", 5, 1).await;
    c.post("/v1/sales/m1/purchase", r#"{"user_id":"1"}"#).await;
    let m = c.get("/metrics").await;
    assert_eq!(m.status, 200);
    let text = String::from_utf8(m.body.to_vec()).unwrap();
    for needle in [
        "flashsale_requests_total{route=\"purchase\",status=\"201\"} 1",
        "flashsale_admissions_total 1",
        "flashsale_sale_remaining{sku=\"m1\"} 4",
        "flashsale_rejections_total{reason=\"sold_out\"} 0",
        "flashsale_wal_queue_depth",
        "flashsale_wal_fsync_seconds_bucket{le=\"+Inf\"}",
        "flashsale_wal_batch_records_bucket",
        "flashsale_rate_limited_total 0",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn not_ready_before_recovery_and_after_shutdown_begins() {
    let dir = tempfile::tempdir().unwrap();
    let config = gateway::Config::for_tests(dir.path().join("wal"));
    let app = gateway::App::new(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(gateway::run(listener, app.clone(), async {
        let _ = rx.await;
    }));
    let mut c = Conn::connect(addr).await.unwrap();
    assert_eq!(c.get("/healthz").await.status, 200);
    let r = c.get("/readyz").await;
    check(&r, 503, "unavailable");
    let r = c.post("/v1/sales/x/purchase", r#"{"user_id":"1"}"#).await;
    check(&r, 503, "unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    let _ = tx.send(());
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn admin_sales_lifecycle() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    // Auth: missing and wrong tokens.
    let r = c
        .send(
            Method::POST,
            "/v1/admin/sales",
            Some(r#"{"sku":"a","stock":1}"#),
            None,
        )
        .await
        .unwrap();
    check(&r, 401, "unauthorized");
    let r = c
        .send(
            Method::POST,
            "/v1/admin/sales",
            Some(r#"{"sku":"a","stock":1}"#),
            Some("nope"),
        )
        .await
        .unwrap();
    check(&r, 401, "unauthorized");
    for path in [
        "/v1/admin/sales/a/stock",
        "/v1/admin/sales/a/pause",
        "/v1/admin/sales/a/resume",
        "/v1/admin/sales/a/end",
        "/v1/orders/1/pay",
    ] {
        let r = c
            .send(Method::POST, path, Some("{}"), Some("test-tokeN"))
            .await
            .unwrap();
        check(&r, 401, "unauthorized");
    }

    // Create: defaults, exists, invalid.
    let r = c.create_sale(r#"{"sku":"a","stock":10}"#).await;
    assert_eq!(r.status, 201);
    let v = r.json();
    assert_eq!(v["sku"], "a");
    assert_eq!(v["stock"], 10);
    assert_eq!(v["remaining"], 10);
    assert_eq!(v["reserved"], 0);
    assert_eq!(v["paid"], 0);
    assert_eq!(v["per_user_limit"], 1);
    assert_eq!(v["reservation_ttl_ms"], 600_000);
    assert_eq!(v["state"], "open");
    check(
        &c.create_sale(r#"{"sku":"a","stock":10}"#).await,
        409,
        "exists",
    );
    for (body, field) in [
        (r#"{"sku":"bad sku","stock":1}"#, "sku"),
        (r#"{"sku":"b"}"#, "stock"),
        (r#"{"sku":"b","stock":-1}"#, "stock"),
        (
            r#"{"sku":"b","stock":1,"per_user_limit":0}"#,
            "per_user_limit",
        ),
        (
            r#"{"sku":"b","stock":1,"starts_at_ms":10,"ends_at_ms":5}"#,
            "ends_at_ms",
        ),
        (
            r#"{"sku":"b","stock":1,"reservation_ttl_ms":0}"#,
            "reservation_ttl_ms",
        ),
        (r#"{"sku":"b","stock":1,"colour":"red"}"#, "colour"),
        (r#"{"sku":"b","#, "JSON"),
    ] {
        let r = c.create_sale(body).await;
        check(&r, 400, "bad_request");
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(field), "{body}: {msg:?} should name {field}");
    }

    // Top-up, pause, resume, end.
    let r = c
        .admin_post("/v1/admin/sales/a/stock", r#"{"add":5}"#)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["stock"], 15);
    assert_eq!(r.json()["remaining"], 15);
    check(
        &c.admin_post("/v1/admin/sales/a/stock", r#"{"add":0}"#)
            .await,
        400,
        "bad_request",
    );
    check(
        &c.admin_post("/v1/admin/sales/a/stock", r#"{"add":1099511627776}"#)
            .await,
        400,
        "bad_request",
    );
    check(
        &c.admin_post("/v1/admin/sales/a/stock", r#"{"plus":1}"#)
            .await,
        400,
        "bad_request",
    );
    check(
        &c.admin_post("/v1/admin/sales/zz/stock", r#"{"add":1}"#)
            .await,
        404,
        "unknown_sku",
    );
    let r = c.admin_post("/v1/admin/sales/a/pause", "").await;
    assert_eq!(
        (r.status, r.json()["state"].as_str()),
        (200, Some("paused"))
    );
    check(
        &c.post("/v1/sales/a/purchase", r#"{"user_id":"1"}"#).await,
        409,
        "paused",
    );
    let r = c.admin_post("/v1/admin/sales/a/resume", "").await;
    assert_eq!((r.status, r.json()["state"].as_str()), (200, Some("open")));
    check(
        &c.admin_post("/v1/admin/sales/zz/pause", "").await,
        404,
        "unknown_sku",
    );
    let r = c.admin_post("/v1/admin/sales/a/end", "").await;
    assert_eq!((r.status, r.json()["state"].as_str()), (200, Some("ended")));
    check(
        &c.admin_post("/v1/admin/sales/a/resume", "").await,
        409,
        "ended",
    );
    check(
        &c.admin_post("/v1/admin/sales/a/stock", r#"{"add":1}"#)
            .await,
        409,
        "ended",
    );
    check(
        &c.post("/v1/sales/a/purchase", r#"{"user_id":"1"}"#).await,
        409,
        "ended",
    );

    // Reads.
    let r = c.get("/v1/sales/a").await;
    assert_eq!((r.status, r.json()["state"].as_str()), (200, Some("ended")));
    check(&c.get("/v1/sales/nope").await, 404, "unknown_sku");
    check(&c.get("/v1/sales/bad%20sku").await, 404, "unknown_sku");
    sale(&mut c, "b", 1, 1).await;
    let r = c.get("/v1/sales").await;
    assert_eq!(r.status, 200);
    let skus: Vec<_> = r.json()["sales"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sku"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(skus, ["a", "b"]);
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn purchase_statuses() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    sale(&mut c, "p", 3, 2).await;

    let r = c
        .post(
            "/v1/sales/p/purchase",
            r#"{"user_id":"7","qty":2,"request_id":"r-1"}"#,
        )
        .await;
    check(&r, 201, "admitted");
    let first = r.json();
    assert_eq!(first["sku"], "p");
    assert_eq!(first["user_id"], "7");
    assert_eq!(first["qty"], 2);
    assert!(first["order_id"].is_string());
    assert!(first["expires_at_ms"].as_u64().unwrap() > 0);
    // Idempotent replay: same body, 200.
    let r = c
        .post(
            "/v1/sales/p/purchase",
            r#"{"user_id":"7","qty":2,"request_id":"r-1"}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), first);
    // Same request id, different payload.
    let r = c
        .post(
            "/v1/sales/p/purchase",
            r#"{"user_id":"7","qty":1,"request_id":"r-1"}"#,
        )
        .await;
    check(&r, 422, "request_id_reused");
    // Over the per-user limit.
    check(
        &c.post("/v1/sales/p/purchase", r#"{"user_id":"7","qty":1}"#)
            .await,
        409,
        "limit_exceeded",
    );
    check(
        &c.post("/v1/sales/p/purchase", r#"{"user_id":"8","qty":3}"#)
            .await,
        409,
        "limit_exceeded",
    );
    // The last unit, then sold out; a rejected request id is decided again.
    check(
        &c.post(
            "/v1/sales/p/purchase",
            r#"{"user_id":"8","qty":2,"request_id":"x"}"#,
        )
        .await,
        409,
        "sold_out",
    );
    check(
        &c.post(
            "/v1/sales/p/purchase",
            r#"{"user_id":"8","request_id":"x"}"#,
        )
        .await,
        201,
        "admitted",
    );
    check(
        &c.post("/v1/sales/p/purchase", r#"{"user_id":"9"}"#).await,
        409,
        "sold_out",
    );
    // Unknown sku.
    check(
        &c.post("/v1/sales/nope/purchase", r#"{"user_id":"9"}"#)
            .await,
        404,
        "unknown_sku",
    );
    // Not started.
    let later = gateway::app::unix_ms() + 3_600_000;
    let r = c
        .create_sale(&format!(
            r#"{{"sku":"later","stock":1,"starts_at_ms":{later}}}"#
        ))
        .await;
    assert_eq!(
        (r.status, r.json()["state"].as_str()),
        (201, Some("scheduled"))
    );
    check(
        &c.post("/v1/sales/later/purchase", r#"{"user_id":"1"}"#)
            .await,
        409,
        "not_started",
    );

    // Bad requests name the field.
    for (body, field) in [
        (r#"{"qty":1}"#, "user_id"),
        (r#"{"user_id":7}"#, "user_id"),
        (r#"{"user_id":""}"#, "user_id"),
        (r#"{"user_id":null}"#, "user_id"),
        (r#"{"user_id":"1","qty":0}"#, "qty"),
        (r#"{"user_id":"1","qty":"two"}"#, "qty"),
        (r#"{"user_id":"1","qty":4294967296}"#, "qty"),
        (r#"{"user_id":"1","request_id":""}"#, "request_id"),
        (r#"{"user_id":"1","request_id":7}"#, "request_id"),
        (
            &format!(r#"{{"user_id":"1","request_id":"{}"}}"#, "x".repeat(65)),
            "request_id",
        ),
        (r#"{"user_id":"1","request_id":"caf\u00e9"}"#, "request_id"),
        (r#"{"user_id":"1","extra":true}"#, "extra"),
        ("not json", "JSON"),
        ("", "JSON"),
    ] {
        let r = c.post("/v1/sales/p/purchase", body).await;
        check(&r, 400, "bad_request");
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(field), "{body}: {msg:?} should name {field}");
    }
    check(
        &c.post("/v1/sales/bad!sku/purchase", r#"{"user_id":"1"}"#)
            .await,
        400,
        "bad_request",
    );
    // A sku one byte over the limit is invalid, not cut to a valid one.
    let long = "s".repeat(engine::SKU_LEN_MAX);
    c.create_sale(&format!(r#"{{"sku":"{long}","stock":5}}"#))
        .await;
    check(
        &c.post(&format!("/v1/sales/{long}/purchase"), r#"{"user_id":"1"}"#)
            .await,
        201,
        "admitted",
    );
    let r = c
        .post(&format!("/v1/sales/{long}s/purchase"), r#"{"user_id":"2"}"#)
        .await;
    check(&r, 400, "bad_request");
    assert!(r.json()["error"].as_str().unwrap().contains("sku"), "{r:?}");
    // Invalid UTF-8 in the body.
    let (resp, _) = raw(s.addr,
        b"POST /v1/sales/p/purchase HTTP/1.1\r\nhost: x\r\ncontent-length: 22\r\nconnection: close\r\n\r\n{\"user_id\":1,\"x\":\"\xff\xfe\"}",
        Duration::from_secs(5),
    ).await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn orders_get_cancel_pay() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    sale(&mut c, "o", 10, 5).await;
    let id = |r: &common::Reply| r.json()["order_id"].as_str().unwrap().to_string();
    let a = id(&c
        .post("/v1/sales/o/purchase", r#"{"user_id":"1","qty":2}"#)
        .await);
    let b = id(&c.post("/v1/sales/o/purchase", r#"{"user_id":"2"}"#).await);

    // GET by owner, by admin; stranger and unknown get 404.
    let r = c.get(&format!("/v1/orders/{a}?user_id=1")).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(
        (
            v["order_id"].as_str(),
            v["sku"].as_str(),
            v["state"].as_str()
        ),
        (Some(a.as_str()), Some("o"), Some("reserved"))
    );
    assert_eq!(
        (v["user_id"].as_str(), v["qty"].as_u64()),
        (Some("1"), Some(2))
    );
    assert!(v["created_at_ms"].as_u64().unwrap() < v["expires_at_ms"].as_u64().unwrap());
    assert_eq!(c.admin_get(&format!("/v1/orders/{a}")).await.status, 200);
    check(
        &c.get(&format!("/v1/orders/{a}?user_id=2")).await,
        404,
        "unknown_order",
    );
    check(
        &c.get("/v1/orders/99999?user_id=1").await,
        404,
        "unknown_order",
    );
    check(
        &c.get("/v1/orders/abc?user_id=1").await,
        404,
        "unknown_order",
    );
    check(&c.get(&format!("/v1/orders/{a}")).await, 400, "bad_request");
    check(
        &c.get(&format!("/v1/orders/{a}?user_id=x")).await,
        404,
        "unknown_order",
    );
    check(
        &c.get(&format!("/v1/orders/{a}?user_id=")).await,
        400,
        "bad_request",
    );
    check(
        &c.get(&format!("/v1/orders/{a}?user_id=%zz")).await,
        400,
        "bad_request",
    );
    let r = c
        .send(Method::GET, &format!("/v1/orders/{a}"), None, Some("wrong"))
        .await
        .unwrap();
    check(&r, 401, "unauthorized");

    // Cancel: stranger 404, owner 200 (stock returns), repeat 200.
    check(
        &c.post(&format!("/v1/orders/{a}/cancel"), r#"{"user_id":"2"}"#)
            .await,
        404,
        "unknown_order",
    );
    check(
        &c.post(&format!("/v1/orders/{a}/cancel"), r#"{"user":1}"#)
            .await,
        400,
        "bad_request",
    );
    let r = c
        .post(&format!("/v1/orders/{a}/cancel"), r#"{"user_id":"1"}"#)
        .await;
    assert_eq!(
        (r.status, r.json()["state"].as_str()),
        (200, Some("cancelled"))
    );
    let r = c
        .post(&format!("/v1/orders/{a}/cancel"), r#"{"user_id":"1"}"#)
        .await;
    assert_eq!(
        (r.status, r.json()["state"].as_str()),
        (200, Some("cancelled"))
    );
    assert_eq!(c.get("/v1/sales/o").await.json()["remaining"], 9);
    check(
        &c.admin_post(&format!("/v1/orders/{a}/pay"), "").await,
        409,
        "cancelled",
    );

    // Pay: 200, repeat 200; then cancel is refused as paid.
    let r = c.admin_post(&format!("/v1/orders/{b}/pay"), "").await;
    assert_eq!((r.status, r.json()["state"].as_str()), (200, Some("paid")));
    let r = c.admin_post(&format!("/v1/orders/{b}/pay"), "").await;
    assert_eq!((r.status, r.json()["state"].as_str()), (200, Some("paid")));
    check(
        &c.post(&format!("/v1/orders/{b}/cancel"), r#"{"user_id":"2"}"#)
            .await,
        409,
        "paid",
    );
    check(
        &c.admin_post("/v1/orders/12345/pay", "").await,
        404,
        "unknown_order",
    );
    let sale = c.get("/v1/sales/o").await.json();
    assert_eq!(
        (
            sale["remaining"].as_u64(),
            sale["reserved"].as_u64(),
            sale["paid"].as_u64()
        ),
        (Some(9), Some(0), Some(1))
    );
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn expired_orders() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    let r = c
        .create_sale(r#"{"sku":"e","stock":1,"per_user_limit":1,"reservation_ttl_ms":50}"#)
        .await;
    assert_eq!(r.status, 201);
    let a = c
        .post("/v1/sales/e/purchase", r#"{"user_id":"1"}"#)
        .await
        .json()["order_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The expiry ticker (100 ms) returns the unit.
    let mut state = String::new();
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        state = c.get(&format!("/v1/orders/{a}?user_id=1")).await.json()["state"]
            .as_str()
            .unwrap()
            .to_string();
        if state == "expired" {
            break;
        }
    }
    assert_eq!(state, "expired");
    check(
        &c.post(&format!("/v1/orders/{a}/cancel"), r#"{"user_id":"1"}"#)
            .await,
        409,
        "expired",
    );
    // Someone else takes the unit: paying the expired order is refused.
    check(
        &c.post("/v1/sales/e/purchase", r#"{"user_id":"2"}"#).await,
        201,
        "admitted",
    );
    check(
        &c.admin_post(&format!("/v1/orders/{a}/pay"), "").await,
        409,
        "expired",
    );
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    for path in [
        "/",
        "/v2/sales",
        "/v1/sales/a/b/c",
        "/v1/orders",
        "/v1/admin/sales/a/b",
        "/a/b/c/d/e/f/g/h",
    ] {
        check(&c.get(path).await, 404, "not_found");
    }
    let r = c
        .send(Method::DELETE, "/v1/sales/a", None, None)
        .await
        .unwrap();
    check(&r, 405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = c.get("/v1/sales/a/purchase").await;
    check(&r, 405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    check(&c.post("/healthz", "").await, 405, "method_not_allowed");
    check(&c.get("/v1/admin/sales").await, 405, "method_not_allowed");
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn body_limit_413() {
    let mut s = TestServer::start_with(|c| c.server.max_body_bytes = 100).await;
    let mut c = s.conn().await;
    sale(&mut c, "big", 10, 1).await;
    let pad = " ".repeat(200);
    let r = c
        .post(
            "/v1/sales/big/purchase",
            &format!(r#"{{"user_id":"1"{pad}}}"#),
        )
        .await;
    check(&r, 413, "too_large");
    // A chunked body with no Content-Length is cut while reading.
    let chunk = "x".repeat(150);
    let req = format!(
        "POST /v1/sales/big/purchase HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let (resp, _) = raw(s.addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("too_large"), "{resp}");
    // A declared length over the limit is refused before any byte is read.
    let req = "POST /v1/sales/big/purchase HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n";
    let (resp, _) = raw(s.addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    // Within the limit still works (the 413 closed `c`).
    let mut c = s.conn().await;
    check(
        &c.post("/v1/sales/big/purchase", r#"{"user_id":"1"}"#).await,
        201,
        "admitted",
    );
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversized_headers_431() {
    let mut s = TestServer::start().await;
    let big = "a".repeat(16 * 1024);
    let req = format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n");
    let (resp, closed) = raw(s.addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");
    assert!(closed);
    // Garbage is a 400 from hyper, and the server is still fine.
    let (resp, _) = raw(
        s.addr,
        b"\x00\x01\x02 nonsense\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 400"),
        "{resp}"
    );
    let mut c = s.conn().await;
    assert_eq!(c.get("/healthz").await.status, 200);
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn slow_client_cut_by_header_timeout() {
    let mut s =
        TestServer::start_with(|c| c.server.header_read_timeout = Duration::from_millis(300)).await;
    let addr = s.addr;
    let (elapsed, closed) = tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now();
        // Half a request head, then silence.
        let (_, closed) = raw_exchange(
            addr,
            b"GET /healthz HTTP/1.1\r\nhost: x\r\n",
            Duration::from_secs(5),
        );
        (start.elapsed(), closed)
    })
    .await
    .unwrap();
    assert!(closed, "the slow client was not cut");
    // A body that trickles in is cut after the same timeout, with a 408.
    let (resp, closed) = raw(
        s.addr,
        b"POST /v1/orders/1/cancel HTTP/1.1\r\nhost: x\r\ncontent-length: 20\r\n\r\n{\"user",
        Duration::from_secs(5),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(closed);
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(4), "{elapsed:?}");
    s.shutdown().await.unwrap();
}

/// With `engine.max_orders_per_sale`, buyers who admit and cancel over and
/// over stop at the cap: 409 `order_limit`, counted, stock untouched.
#[tokio::test]
async fn order_cap_answers_409_order_limit() {
    let mut s = TestServer::start_with(|c| c.engine.max_orders_per_sale = 2).await;
    let mut c = s.conn().await;
    sale(&mut c, "churn", 5, 1).await;
    for user in 1..=2 {
        let r = c
            .post(
                "/v1/sales/churn/purchase",
                &format!(r#"{{"user_id":"{user}"}}"#),
            )
            .await;
        check(&r, 201, "admitted");
        let order = r.json()["order_id"].as_str().unwrap().to_string();
        let r = c
            .post(
                &format!("/v1/orders/{order}/cancel"),
                &format!(r#"{{"user_id":"{user}"}}"#),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    check(
        &c.post("/v1/sales/churn/purchase", r#"{"user_id":"3"}"#)
            .await,
        409,
        "order_limit",
    );
    assert_eq!(c.get("/v1/sales/churn").await.json()["remaining"], 5);
    let metrics = String::from_utf8(c.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains(r#"flashsale_rejections_total{reason="order_limit"} 1"#),
        "{metrics}"
    );
    s.shutdown().await.unwrap();
}

/// A purchase body that arrives in pieces (its first part with the head,
/// the rest later) is put together, and the size limit counts every piece.
#[tokio::test]
async fn body_in_pieces_is_joined_and_limited() {
    let mut s = TestServer::start_with(|c| c.server.max_body_bytes = 64).await;
    let mut c = s.conn().await;
    c.create_sale(r#"{"sku":"pieces","stock":5}"#).await;
    let addr = s.addr;
    let pieces = |parts: Vec<Vec<u8>>| {
        tokio::task::spawn_blocking(move || {
            let mut conn = std::net::TcpStream::connect(addr).unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            for part in parts {
                conn.write_all(&part).unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
            let mut out = Vec::new();
            let _ = conn.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let body = br#"{"user_id":"77","qty":1,"request_id":"pieces-1"}"#;
    let head = format!(
        "POST /v1/sales/pieces/purchase HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut first = head.into_bytes();
    first.extend_from_slice(&body[..10]);
    let resp = pieces(vec![first, body[10..30].to_vec(), body[30..].to_vec()])
        .await
        .unwrap();
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    assert!(resp.contains(r#""user_id":"77""#), "{resp}");
    // Chunked, so no declared length: 40 + 40 bytes against a limit of 64.
    let chunk = |data: &[u8]| {
        let mut out = format!("{:x}\r\n", data.len()).into_bytes();
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
        out
    };
    let mut first =
        b"POST /v1/sales/pieces/purchase HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    first.extend_from_slice(&chunk(&[b' '; 40]));
    let mut second = chunk(&[b' '; 40]);
    second.extend_from_slice(b"0\r\n\r\n");
    let resp = pieces(vec![first, second]).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert_eq!(c.get("/v1/sales/pieces").await.json()["remaining"], 4);
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn connection_cap_holds_extra_connections() {
    let mut s = TestServer::start_with(|c| c.server.max_connections = 2).await;
    let mut c1 = s.conn().await;
    let mut c2 = s.conn().await;
    assert_eq!(c1.get("/healthz").await.status, 200);
    assert_eq!(c2.get("/healthz").await.status, 200);
    // A third connection waits in the backlog while two are open.
    let addr = s.addr;
    let third = tokio::spawn(async move {
        let mut c3 = Conn::connect(addr).await.unwrap();
        c3.get("/healthz").await.status
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "served over the connection cap");
    drop(c1);
    let status = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(c2.get("/healthz").await.status, 200);
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn listener_backlog_holds_a_burst_of_connects() {
    // 600 clients connect at once while nobody accepts: with the usual
    // backlog of 128 most SYNs would be dropped and retried a second later
    // (the 900 ms timeout is below that first retry).
    // somaxconn caps the backlog; skip where it is below the burst.
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if somaxconn < 600 {
        eprintln!("skipped: net.core.somaxconn = {somaxconn}");
        return;
    }
    let listener = gateway::server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let connects: Vec<_> = (0..600)
        .map(|_| {
            tokio::spawn(async move {
                tokio::time::timeout(
                    Duration::from_millis(900),
                    tokio::net::TcpStream::connect(addr),
                )
                .await
            })
        })
        .collect();
    let mut completed = 0;
    for c in connects {
        if matches!(c.await.unwrap(), Ok(Ok(_))) {
            completed += 1;
        }
    }
    assert_eq!(completed, 600, "connects stuck in SYN retransmission");
    drop(listener);
}

#[tokio::test]
async fn connections_spread_over_io_threads() {
    // Three I/O threads, twelve concurrent keep-alive clients buying from one
    // sale: every purchase is answered, the stock gate holds across threads,
    // and each connection is counted open and then closed.
    let mut s = TestServer::start_with(|c| c.server.io_threads = 3).await;
    let mut admin = s.conn().await;
    sale(&mut admin, "io", 30, 1).await;
    let addr = s.addr;
    let clients: Vec<_> = (0..12u64)
        .map(|client| {
            tokio::spawn(async move {
                let mut c = Conn::connect(addr).await.unwrap();
                let mut admitted = 0;
                for i in 0..5u64 {
                    let body = format!(r#"{{"user_id":"{}"}}"#, client * 100 + i);
                    let r = c.post("/v1/sales/io/purchase", &body).await;
                    match r.status {
                        201 => admitted += 1,
                        409 => assert_eq!(r.code(), "sold_out"),
                        other => panic!("unexpected {other}: {:?}", r.body),
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for client in clients {
        admitted += client.await.unwrap();
    }
    assert_eq!(admitted, 30, "admissions across I/O threads");
    let sale = admin.get("/v1/sales/io").await.json();
    assert_eq!(sale["remaining"], 0);
    // The clients' connections have closed: only `admin` is left open.
    let mut open = String::new();
    for _ in 0..250 {
        let text = String::from_utf8(admin.get("/metrics").await.body.to_vec()).unwrap();
        open = text
            .lines()
            .find(|l| l.starts_with("flashsale_connections_open "))
            .unwrap_or_default()
            .to_string();
        if open == "flashsale_connections_open 1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open, "flashsale_connections_open 1");
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let mut s = TestServer::start_with(|c| {
        c.rate_limit.per_client_rps = 1;
        c.rate_limit.per_client_burst = 2;
    })
    .await;
    let mut c = s.conn().await;
    sale(&mut c, "rl", 100, 100).await;
    check(
        &c.post("/v1/sales/rl/purchase", r#"{"user_id":"1"}"#).await,
        201,
        "admitted",
    );
    check(
        &c.post("/v1/sales/rl/purchase", r#"{"user_id":"1"}"#).await,
        201,
        "admitted",
    );
    let r = c.post("/v1/sales/rl/purchase", r#"{"user_id":"1"}"#).await;
    check(&r, 429, "rate_limited");
    let secs: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(secs >= 1);
    // Another user has its own bucket.
    check(
        &c.post("/v1/sales/rl/purchase", r#"{"user_id":"2"}"#).await,
        201,
        "admitted",
    );
    // Other public routes are limited per IP; admin routes are not.
    assert_eq!(c.get("/v1/sales/rl").await.status, 200);
    assert_eq!(c.get("/v1/sales/rl").await.status, 200);
    check(&c.get("/v1/sales/rl").await, 429, "rate_limited");
    assert_eq!(
        c.admin_post("/v1/admin/sales/rl/stock", r#"{"add":1}"#)
            .await
            .status,
        200
    );
    assert_eq!(c.get("/healthz").await.status, 200);
    let metrics = String::from_utf8(c.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("flashsale_rate_limited_total 2"),
        "{metrics}"
    );
    s.shutdown().await.unwrap();

    // The global bucket.
    let mut s = TestServer::start_with(|c| {
        c.rate_limit.global_rps = 1;
        c.rate_limit.global_burst = 1;
    })
    .await;
    let mut c = s.conn().await;
    sale(&mut c, "g", 100, 100).await;
    check(
        &c.post("/v1/sales/g/purchase", r#"{"user_id":"1"}"#).await,
        201,
        "admitted",
    );
    check(
        &c.post("/v1/sales/g/purchase", r#"{"user_id":"2"}"#).await,
        429,
        "rate_limited",
    );
    // Decided before the body: an over-long declared body is refused as
    // rate limited (and counted so) while the bucket is empty, not as 413.
    let req = "POST /v1/sales/g/purchase HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n";
    let (resp, _) = raw(s.addr, req.as_bytes(), Duration::from_secs(5)).await;
    assert!(resp.starts_with("HTTP/1.1 429"), "{resp}");
    let metrics = String::from_utf8(c.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("flashsale_rate_limited_total 2"),
        "{metrics}"
    );
    s.shutdown().await.unwrap();
}

/// The limiter on tokio's paused clock: time only moves when advanced.
#[tokio::test(start_paused = true)]
async fn rate_limiter_under_paused_time() {
    use gateway::config::RateLimitConfig;
    use gateway::ratelimit::RateLimiter;
    let rl = RateLimiter::new(&RateLimitConfig {
        global_rps: 10,
        global_burst: 3,
        per_client_rps: 2,
        per_client_burst: 1,
        per_ip_rps: 0,
        per_ip_burst: 0,
    });
    let now = rl.now_ns();
    for _ in 0..3 {
        rl.check_global(now).unwrap();
    }
    let retry = rl.check_global(rl.now_ns()).unwrap_err();
    assert_eq!(retry.wait_ns, 100_000_000);
    assert_eq!(retry.secs(), 1);
    tokio::time::advance(Duration::from_millis(99)).await;
    assert!(rl.check_global(rl.now_ns()).is_err());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(rl.check_global(rl.now_ns()).is_ok());
    assert!(rl.check_global(rl.now_ns()).is_err());
    // A long pause refills only up to the burst.
    tokio::time::advance(Duration::from_secs(3600)).await;
    for _ in 0..3 {
        rl.check_global(rl.now_ns()).unwrap();
    }
    assert!(rl.check_global(rl.now_ns()).is_err());

    rl.check_user("42", rl.now_ns()).unwrap();
    assert_eq!(
        rl.check_user("42", rl.now_ns()).unwrap_err().wait_ns,
        500_000_000
    );
    tokio::time::advance(Duration::from_millis(500)).await;
    rl.check_user("42", rl.now_ns()).unwrap();
}

#[tokio::test]
async fn admin_token_is_checked_exactly() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    for token in ["", "test-toke", "test-tokenn", "TEST-TOKEN", " test-tokeN"] {
        let r = c
            .send(
                Method::POST,
                "/v1/admin/sales",
                Some(r#"{"sku":"t","stock":1}"#),
                Some(token),
            )
            .await
            .unwrap();
        check(&r, 401, "unauthorized");
    }
    let r = c
        .send(
            Method::POST,
            "/v1/admin/sales",
            Some(r#"{"sku":"t","stock":1}"#),
            Some(TOKEN),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_and_syncs_the_log() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    sale(&mut c, "gs", 1000, 1).await;
    // Many purchases in flight on their own connections while shutdown begins.
    let addr = s.addr;
    let mut tasks = Vec::new();
    for user in 0..50u64 {
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::connect(addr).await.ok()?;
            let r = c
                .send(
                    Method::POST,
                    "/v1/sales/gs/purchase",
                    Some(&format!(r#"{{"user_id":"{user}"}}"#)),
                    None,
                )
                .await
                .ok()?;
            Some((
                user,
                r.status,
                r.json()["order_id"].as_str().map(str::to_string),
            ))
        }));
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    s.shutdown().await.unwrap();
    let mut acked = Vec::new();
    for t in tasks {
        if let Some((user, status, order)) = t.await.unwrap() {
            assert_eq!(status, 201, "in-flight request not finished cleanly");
            acked.push((user, order.unwrap()));
        }
    }
    // New connections are refused after shutdown.
    assert!(
        Conn::connect(addr).await.is_err() || {
            let mut c = Conn::connect(addr).await.unwrap();
            c.send(Method::GET, "/healthz", None, None).await.is_err()
        }
    );
    // Every acknowledged order is in the log.
    let config = s.app.config.clone();
    let (engine, wal, _) = gateway::wal::open(config.wal.clone(), config.engine).unwrap();
    for (user, order) in &acked {
        let view = engine
            .order(engine::OrderId(order.parse().unwrap()))
            .expect("acked order recovered");
        assert_eq!(*view.user_id, *user.to_string());
    }
    assert_eq!(engine.sale("gs", 0).unwrap().reserved, acked.len() as u64);
    wal.shutdown().unwrap();
}

/// Idle keep-alive connections on every I/O thread are told to close when
/// shutdown begins, rather than holding it for the 10 s grace period
/// (`server::SHUTDOWN_GRACE`) until they are cut.
#[tokio::test]
async fn shutdown_closes_idle_keep_alive_connections_at_once() {
    let mut s = TestServer::start().await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        let mut c = s.conn().await;
        assert_eq!(c.get("/healthz").await.status, 200);
        idle.push(c);
    }
    let started = std::time::Instant::now();
    s.shutdown().await.unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "idle connections held shutdown for {took:?}"
    );
    for c in &mut idle {
        assert!(
            c.send(Method::GET, "/healthz", None, None).await.is_err(),
            "an idle connection is still served after shutdown"
        );
    }
}

/// One purchase per user in `users`, each on its own connection (so spread
/// over the I/O threads), all at once; the replies arrive on the channel as
/// they come.
fn purchases_on_own_connections(
    addr: std::net::SocketAddr,
    sku: &str,
    users: std::ops::Range<u64>,
) -> tokio::sync::mpsc::UnboundedReceiver<common::Reply> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for user in users {
        let tx = tx.clone();
        let path = format!("/v1/sales/{sku}/purchase");
        tokio::spawn(async move {
            let mut c = Conn::connect(addr).await.unwrap();
            let r = c.post(&path, &format!(r#"{{"user_id":"{user}"}}"#)).await;
            let _ = tx.send(r);
        });
    }
    rx
}

/// A test server whose log is on simulated storage (to hold its writes or
/// fail them), with `tweak` applied to the test config.
async fn start_on_sim(
    tweak: impl FnOnce(&mut gateway::Config),
) -> (TestServer, persistence::SimStorage) {
    let sim = persistence::SimStorage::new();
    let dir = tempfile::tempdir().unwrap();
    let mut config = gateway::Config::for_tests(dir.path().join("wal"));
    tweak(&mut config);
    let s = TestServer::start_on(dir, config, std::sync::Arc::new(sim.clone())).await;
    (s, sim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admissions_answer_only_once_durable() {
    // Purchases on several connections (so on both I/O threads) wait while
    // the log's writer is stuck, and are all answered once it moves on: the
    // per-thread relay neither answers early nor loses a wake-up.
    let (mut s, sim) = start_on_sim(|c| c.server.io_threads = 2).await;
    let mut c = s.conn().await;
    sale(&mut c, "dur", 100, 1).await;

    sim.hold_writes(true);
    let mut rx = purchases_on_own_connections(s.addr, "dur", 0..6);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(rx.try_recv().is_err(), "answered before the log wrote it");
    assert_eq!(c.get("/v1/sales/dur").await.json()["reserved"], 6);
    sim.hold_writes(false);
    let mut statuses = Vec::new();
    while let Some(r) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a durable admission was never answered")
    {
        statuses.push(r.status);
    }
    assert_eq!(statuses, vec![201; 6]);
    s.shutdown().await.unwrap();
}

/// Back-pressure and log failure: a full queue answers 503 with Retry-After
/// and nothing is acknowledged that was not written; after a failed fsync
/// purchases get 503 and readiness turns false.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_full_or_failed_answers_503() {
    let (mut s, sim) = start_on_sim(|c| c.wal.queue_capacity = 16).await;
    let mut c = s.conn().await;
    sale(&mut c, "bp", 1000, 1).await;

    sim.hold_writes(true);
    let mut rx = purchases_on_own_connections(s.addr, "bp", 0..64);
    // With the writer stuck, the queue fills and the overflow is refused now.
    let first = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    check(&first, 503, "unavailable");
    assert_eq!(first.header("retry-after"), Some("1"));
    sim.hold_writes(false);
    let mut statuses = vec![first.status];
    while let Some(r) = rx.recv().await {
        statuses.push(r.status);
    }
    let admitted = statuses.iter().filter(|&&s| s == 201).count() as u64;
    assert!(
        statuses.iter().all(|&s| s == 201 || s == 503),
        "{statuses:?}"
    );
    assert!(admitted >= 16, "{statuses:?}");
    // Refused purchases were rolled back: the sale counts only the admitted.
    assert_eq!(c.get("/v1/sales/bp").await.json()["reserved"], admitted);

    sim.fail_sync_after(0);
    let r = c
        .post("/v1/sales/bp/purchase", r#"{"user_id":"1000"}"#)
        .await;
    check(&r, 503, "unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    check(
        &c.post("/v1/sales/bp/purchase", r#"{"user_id":"1001"}"#)
            .await,
        503,
        "unavailable",
    );
    check(&c.get("/readyz").await, 503, "unavailable");
    assert_eq!(c.get("/healthz").await.status, 200);
    let metrics = String::from_utf8(c.get("/metrics").await.body.to_vec()).unwrap();
    assert!(metrics.contains("flashsale_wal_failed 1"), "{metrics}");
    // Shutdown reports the failed log.
    assert!(s.shutdown().await.is_err());
}
