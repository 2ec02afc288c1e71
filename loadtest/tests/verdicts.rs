//! The harness's verdict against fake servers: a correct one must pass, and
//! each deliberately broken one must fail on the check that names its bug.
//!
//! The fake implements just enough of API.md (create sale, read sale,
//! purchase with idempotency and limits, read/cancel/pay order, readyz) in a
//! single mutex-guarded state, served by hyper on port 0 in-process.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use loadtest::{run, Report, RunOptions, Scenario};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

const TOKEN: &str = "test-token";

/// Which bug the fake server has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    None,
    /// Admits past the stock.
    Oversell,
    /// Acknowledges some orders without storing them.
    LoseOrders,
    /// Never enforces the per-user limit.
    IgnoreLimit,
    /// Treats a replayed request_id as a new purchase.
    NoIdempotency,
}

struct FakeSale {
    stock: u64,
    remaining: u64,
    reserved: u64,
    paid: u64,
    limit: u64,
    ttl: u64,
}

struct FakeOrder {
    sku: String,
    user: u64,
    qty: u64,
    state: &'static str,
    created: u64,
    expires: u64,
}

#[derive(Default)]
struct FakeState {
    sales: HashMap<String, FakeSale>,
    orders: HashMap<String, FakeOrder>,
    held: HashMap<(String, u64), u64>,
    idem: HashMap<(u64, String), String>,
    next_id: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn sale_json(sku: &str, s: &FakeSale) -> Value {
    json!({"sku": sku, "stock": s.stock, "remaining": s.remaining, "reserved": s.reserved,
           "paid": s.paid, "per_user_limit": s.limit, "starts_at_ms": 0, "ends_at_ms": 0,
           "reservation_ttl_ms": s.ttl, "state": if s.remaining == 0 { "sold_out" } else { "open" }})
}

fn order_json(id: &str, o: &FakeOrder) -> Value {
    json!({"order_id": id, "sku": o.sku, "user_id": o.user.to_string(), "qty": o.qty, "state": o.state,
           "created_at_ms": o.created, "expires_at_ms": o.expires})
}

fn admission_json(id: &str, o: &FakeOrder) -> Value {
    json!({"status": "admitted", "order_id": id, "sku": o.sku, "user_id": o.user.to_string(), "qty": o.qty,
           "expires_at_ms": o.expires})
}

fn err(code: u16, status: &str) -> (u16, Value) {
    (code, json!({"status": status, "error": status}))
}

fn handle(
    state: &Mutex<FakeState>,
    bug: Bug,
    method: &Method,
    path: &str,
    admin: bool,
    body: &[u8],
) -> (u16, Value) {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut st = state.lock().unwrap();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["readyz"]) => (200, json!({})),
        ("POST", ["v1", "admin", "sales"]) => create_sale(&mut st, admin, &body),
        ("GET", ["v1", "sales", sku]) => match st.sales.get(*sku) {
            Some(s) => (200, sale_json(sku, s)),
            None => err(404, "unknown_sku"),
        },
        ("POST", ["v1", "sales", sku, "purchase"]) => purchase(&mut st, bug, sku, &body),
        ("GET", ["v1", "orders", id]) => {
            if !admin {
                return err(401, "unauthorized");
            }
            match st.orders.get(*id) {
                Some(o) => (200, order_json(id, o)),
                None => err(404, "unknown_order"),
            }
        }
        ("POST", ["v1", "orders", id, action]) => settle_order(&mut st, admin, id, action, &body),
        _ => err(404, "not_found"),
    }
}

/// Admin: creates a sale.
fn create_sale(st: &mut FakeState, admin: bool, body: &Value) -> (u16, Value) {
    if !admin {
        return err(401, "unauthorized");
    }
    let sku = body["sku"].as_str().unwrap_or_default().to_string();
    if st.sales.contains_key(&sku) {
        return err(409, "exists");
    }
    let stock = body["stock"].as_u64().unwrap_or(0);
    let s = FakeSale {
        stock,
        remaining: stock,
        reserved: 0,
        paid: 0,
        limit: body["per_user_limit"].as_u64().unwrap_or(1),
        ttl: body["reservation_ttl_ms"].as_u64().unwrap_or(600_000),
    };
    let v = sale_json(&sku, &s);
    st.sales.insert(sku, s);
    (201, v)
}

/// A purchase, with the bug under test where it applies.
fn purchase(st: &mut FakeState, bug: Bug, sku: &str, body: &Value) -> (u16, Value) {
    let user = body["user_id"].as_str().and_then(|u| u.parse::<u64>().ok());
    let (Some(user), Some(rid)) = (user, body["request_id"].as_str()) else {
        return err(400, "bad_request");
    };
    let qty = body["qty"].as_u64().unwrap_or(1);
    let key = (user, rid.to_string());
    if bug != Bug::NoIdempotency {
        if let Some(id) = st.idem.get(&key) {
            // Replay of an order the server lost is answered anyway:
            // the bug under test is the lost order, not the replay.
            return match st.orders.get(id) {
                Some(o) => (200, admission_json(id, o)),
                None => (
                    200,
                    json!({"status": "admitted", "order_id": id, "sku": sku,
                                     "user_id": user.to_string(), "qty": qty, "expires_at_ms": u64::MAX}),
                ),
            };
        }
    }
    let held = st.held.get(&(sku.to_string(), user)).copied().unwrap_or(0);
    let Some(sale) = st.sales.get_mut(sku) else {
        return err(404, "unknown_sku");
    };
    if held + qty > sale.limit && bug != Bug::IgnoreLimit {
        return err(409, "limit_exceeded");
    }
    if sale.remaining < qty {
        if bug != Bug::Oversell {
            return err(409, "sold_out");
        }
        // The oversell bug: admit anyway and count it as reserved.
        sale.reserved += qty;
    } else {
        sale.remaining -= qty;
        sale.reserved += qty;
    }
    let ttl = sale.ttl;
    st.next_id += 1;
    let n = st.next_id;
    let id = format!("o{n:08}");
    let now = now_ms();
    let order = FakeOrder {
        sku: sku.to_string(),
        user,
        qty,
        state: "reserved",
        created: now,
        expires: now + ttl,
    };
    let v = admission_json(&id, &order);
    *st.held.entry((sku.to_string(), user)).or_default() += qty;
    st.idem.insert(key, id.clone());
    if !(bug == Bug::LoseOrders && n % 7 == 0) {
        st.orders.insert(id, order);
    }
    (201, v)
}

/// Cancel or pay.
fn settle_order(
    st: &mut FakeState,
    admin: bool,
    id: &str,
    action: &str,
    body: &Value,
) -> (u16, Value) {
    let FakeState {
        orders,
        sales,
        held,
        ..
    } = &mut *st;
    let Some(o) = orders.get_mut(id) else {
        return err(404, "unknown_order");
    };
    let sale = sales.get_mut(&o.sku).expect("order of a known sale");
    match (action, o.state) {
        ("cancel", "reserved") => {
            if body["user_id"].as_str() != Some(o.user.to_string().as_str()) {
                return err(404, "unknown_order");
            }
            o.state = "cancelled";
            sale.reserved -= o.qty;
            sale.remaining += o.qty;
            *held.get_mut(&(o.sku.clone(), o.user)).unwrap() -= o.qty;
        }
        ("pay", "reserved") => {
            if !admin {
                return err(401, "unauthorized");
            }
            o.state = "paid";
            sale.reserved -= o.qty;
            sale.paid += o.qty;
        }
        ("cancel", "cancelled") | ("pay", "paid") => {}
        ("cancel", "paid") => return err(409, "paid"),
        ("pay", "cancelled") => return err(409, "cancelled"),
        _ => return err(400, "bad_request"),
    }
    (200, order_json(id, o))
}

/// Starts the fake on 127.0.0.1:0 in the test's runtime.
async fn start_fake(bug: Bug) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(Mutex::new(FakeState::default()));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let state = Arc::clone(&state);
                    async move {
                        let admin = req
                            .headers()
                            .get("authorization")
                            .is_some_and(|v| v.as_bytes() == format!("Bearer {TOKEN}").as_bytes());
                        let method = req.method().clone();
                        let path = req.uri().path().to_string();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let (code, v) = handle(&state, bug, &method, &path, admin, &body);
                        let mut resp = Response::new(Full::new(Bytes::from(v.to_string())));
                        *resp.status_mut() = StatusCode::from_u16(code).unwrap();
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

fn small_scenario() -> Scenario {
    Scenario {
        users: 600,
        hot_stock: 100,
        cold_skus: 2,
        cold_stock: 40,
        cold_fraction: 0.2,
        over_limit_fraction: 0.3,
        replay_fraction: 0.3,
        cancel_fraction: 0.2,
        pay_fraction: 0.4,
        connections: 8,
        timeout_ms: 2_000,
        seed: Some(7),
        ..Scenario::default()
    }
}

async fn run_against(bug: Bug, scenario: Scenario) -> Report {
    let addr = start_fake(bug).await;
    run(&RunOptions {
        scenario,
        target: format!("http://{addr}"),
        admin_token: TOKEN.into(),
        quiet: true,
        postgres: None,
        buyers: loadtest::buyers::BuyerCreds::Body,
    })
    .await
    .expect("the run itself completes")
}

fn failed_checks(r: &Report) -> Vec<&'static str> {
    r.verdict
        .as_ref()
        .unwrap()
        .failed()
        .map(|c| c.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correct_server_passes() {
    let r = run_against(Bug::None, small_scenario()).await;
    assert!(r.passed(), "{}", loadtest::report::render_text(&r));
    let hot = &r.skus[0];
    assert_eq!(
        hot.admitted_units, 100,
        "demand exceeds supply, so exactly the stock is sold"
    );
    assert!(hot.users > 100);
    assert!(r.tally.replays_ok > 0 && r.tally.over_limit_rejected > 0);
    assert!(r.tally.cancels_ok > 0 && r.tally.pays_ok > 0);
    assert_eq!(r.mode, "closed");
    // The HTML report is self-contained and carries both charts.
    let page = loadtest::html::render_html(&r);
    assert!(page.contains("<polyline") && page.contains("<rect"));
    assert!(!page.contains("<script") && !page.contains("http://cdn"));
    // The look it shares with the dashboard (web/style.css).
    assert!(page.contains("--fs-blue: #1f77b4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overselling_server_fails() {
    let r = run_against(Bug::Oversell, small_scenario()).await;
    let failed = failed_checks(&r);
    assert!(failed.contains(&"no_oversell"), "{failed:?}");
    assert!(failed.contains(&"stock_conservation"), "{failed:?}");
    assert!(!r.passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_losing_acknowledged_orders_fails() {
    let r = run_against(Bug::LoseOrders, small_scenario()).await;
    let failed = failed_checks(&r);
    assert!(failed.contains(&"orders_exist"), "{failed:?}");
    assert!(!failed.contains(&"no_oversell"), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ignoring_the_limit_fails() {
    let r = run_against(Bug::IgnoreLimit, small_scenario()).await;
    let failed = failed_checks(&r);
    assert!(failed.contains(&"per_user_limit"), "{failed:?}");
    assert!(failed.contains(&"over_limit_rejected"), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_without_idempotency_fails() {
    let r = run_against(Bug::NoIdempotency, small_scenario()).await;
    let failed = failed_checks(&r);
    // The replay is then a second purchase, which the limit rejects.
    assert!(failed.contains(&"idempotent_replay"), "{failed:?}");
    assert!(!failed.contains(&"per_user_limit"), "{failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_paces_requests_and_passes() {
    let scenario = Scenario {
        users: 300,
        rate: Some(2_000.0),
        cold_skus: 0,
        ..small_scenario()
    };
    let r = run_against(Bug::None, scenario).await;
    assert!(r.passed(), "{}", loadtest::report::render_text(&r));
    assert_eq!(r.mode, "open");
    // ~300 purchases + extras at 2000/s cannot finish much faster than the
    // schedule allows; a closed loop would take a few milliseconds.
    let rush = &r.phases[0];
    assert!(
        rush.duration_s >= 0.12,
        "rush took {} s for {} requests",
        rush.duration_s,
        rush.requests
    );
    assert!(rush.throughput_rps < 2_600.0, "{}", rush.throughput_rps);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceiling_against_trivial_server_has_no_errors() {
    let r = loadtest::ceiling::measure(&loadtest::ceiling::CeilingOptions {
        target: None,
        path: "/".into(),
        connections: 4,
        rate: None,
        duration: std::time::Duration::from_millis(1000),
        timeout_ms: 1000,
        quiet: true,
    })
    .await
    .unwrap();
    assert!(r.requests > 100, "{}", r.requests);
    assert_eq!(
        r.errors.timeouts + r.errors.io_errors + r.errors.connect_errors,
        0
    );
    assert!(r.verdict.is_none());
}
