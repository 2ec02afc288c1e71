//! Routing and the request handlers: HTTP and JSON in, engine calls, JSON out.
//!
//! The purchase handler is the hot path and is ordered to refuse early:
//! global rate limit (no body read), then body read and parse, then the
//! per-user limit, then the engine (whose own first checks are read-only),
//! then the wait for durability. Responses are written by hand into one
//! buffer; every non-2xx answer is `{"status": .., "error": ..}`.

// Handlers return `Result<_, Resp>` where the error is the finished response:
// it is moved once on a cold path, and boxing it would cost an allocation.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use engine::{
    Admission, CreateSaleError, OrderId, OrderOutcome, OrderRejection, OrderView, PurchaseOutcome,
    Rejection, SaleOpError, SaleSpec, SaleView, SKU_LEN_MAX,
};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;

use crate::metrics::Route;
use crate::purchase_body::PurchaseBody;
use crate::ratelimit::RetryAfter;
use crate::server::{unix_ms, Core, Shared};
use crate::wal::{Ticket, WalSink};

pub type Resp = Response<Full<Bytes>>;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Longest admission body: its fixed text (79 bytes), a sku and four
/// integers of up to 20 digits.
const ADMITTED_BODY_MAX: usize = 80 + SKU_LEN_MAX + 4 * 20;

/// Longest `request_id` accepted.
pub const REQUEST_ID_LEN_MAX: usize = 64;

/// Entry point of every request: routes it and counts the answer.
///
/// hyper stores this future, and moves it, once per request, so it is kept
/// small: answers that need no await (errors, probes, reads) are made here
/// before it starts, purchase takes only what it needs from the request
/// (see [`Purchase`]), and the other changing routes run boxed. With every
/// handler inline it was 2.8 KB, and moving it cost ~1 % of the server's
/// CPU per admission.
pub fn handle(
    shared: Arc<Shared>,
    ip: IpAddr,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Resp, Infallible>> + Send {
    enum Next {
        Done(Route, Resp),
        Purchase(Purchase),
        Boxed(Route, Box<Request<Incoming>>),
    }
    let next = match route(&shared, ip, &req) {
        Step::Done(route, resp) => Next::Done(route, resp),
        Step::Await(Route::Purchase) => match Purchase::new(&shared, req) {
            Ok(p) => Next::Purchase(p),
            Err(resp) => Next::Done(Route::Purchase, resp),
        },
        Step::Await(route) => Next::Boxed(route, Box::new(req)),
    };
    async move {
        let (route, resp) = match next {
            Next::Done(route, resp) => (route, resp),
            Next::Purchase(p) => (Route::Purchase, purchase(&shared, p).await),
            Next::Boxed(route, req) => {
                (route, Box::pin(changing_route(&shared, route, *req)).await)
            }
        };
        shared.metrics.request(route, resp.status().as_u16());
        Ok(resp)
    }
}

fn json(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, JSON);
    resp
}

/// A JSON error body. `message` is escaped as a JSON string.
pub fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    let mut body = String::with_capacity(48 + message.len());
    body.push_str("{\"status\":\"");
    body.push_str(code);
    body.push_str("\",\"error\":");
    body.push_str(&serde_json::to_string(message).unwrap_or_else(|_| "\"\"".into()));
    body.push('}');
    json(status, body)
}

fn bad_request(message: &str) -> Resp {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn unavailable(message: &str) -> Resp {
    let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

fn rate_limited(shared: &Shared, retry: RetryAfter) -> Resp {
    shared
        .metrics
        .rate_limited
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut resp = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests, retry later",
    );
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry.secs()));
    resp
}

/// Waits until what `sink` saw is durable (see `Core::acknowledge`); when the
/// log has failed, the answer is 503 and the change is not acknowledged.
async fn acknowledge(shared: &Shared, core: &Core, sink: &WalSink<'_>) -> Result<(), Resp> {
    acknowledge_ticket(shared, core, sink.ticket()).await
}

/// [`acknowledge`] by the sink's ticket.
async fn acknowledge_ticket(
    shared: &Shared,
    core: &Core,
    ticket: Option<Ticket>,
) -> Result<(), Resp> {
    core.acknowledge(ticket).await.map_err(|err| {
        shared
            .metrics
            .durable_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(%err, "change not acknowledged: the log failed");
        unavailable("the order log is unavailable")
    })
}

fn unknown_order() -> Resp {
    error(StatusCode::NOT_FOUND, "unknown_order", "no such order")
}

fn unknown_sku() -> Resp {
    error(
        StatusCode::NOT_FOUND,
        "unknown_sku",
        "no sale with this sku",
    )
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this path",
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

/// The split path: at most 6 segments are ever meaningful.
fn segments(path: &str) -> Option<([&str; 6], usize)> {
    // By hand: `str::split` cost ~500 instructions per call here.
    let rest = path.strip_prefix('/')?;
    let bytes = rest.as_bytes();
    let mut out = [""; 6];
    let mut n = 0;
    let mut start = 0;
    loop {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(bytes.len(), |i| start + i);
        if n == out.len() {
            return None;
        }
        // `start` and `end` are at a '/' or an end: char boundaries.
        out[n] = rest.get(start..end)?;
        n += 1;
        if end == bytes.len() {
            return Some((out, n));
        }
        start = end + 1;
    }
}

/// What [`route`] decided.
enum Step {
    /// The answer, made without waiting.
    Done(Route, Resp),
    /// A route that reads a body and waits for the log (which is ready).
    Await(Route),
}

fn route(shared: &Shared, ip: IpAddr, req: &Request<Incoming>) -> Step {
    let Some((seg, n)) = segments(req.uri().path()) else {
        return Step::Done(Route::Other, not_found());
    };
    let method = req.method();
    let post = method == Method::POST;
    let get = method == Method::GET;
    // (route, method allowed?, Allow value)
    let (route, allowed, allow) = match (n, seg) {
        (4, ["v1", "sales", _, "purchase", ..]) => (Route::Purchase, post, "POST"),
        (3, ["v1", "sales", _, ..]) => (Route::SaleGet, get, "GET"),
        (2, ["v1", "sales", ..]) => (Route::SalesList, get, "GET"),
        (3, ["v1", "orders", _, ..]) => (Route::OrderGet, get, "GET"),
        (4, ["v1", "orders", _, "cancel", ..]) => (Route::OrderCancel, post, "POST"),
        (4, ["v1", "orders", _, "pay", ..]) => (Route::OrderPay, post, "POST"),
        (3, ["v1", "admin", "sales", ..]) => (Route::AdminCreate, post, "POST"),
        (5, ["v1", "admin", "sales", _, "stock", ..]) => (Route::AdminStock, post, "POST"),
        (5, ["v1", "admin", "sales", _, "pause", ..]) => (Route::AdminPause, post, "POST"),
        (5, ["v1", "admin", "sales", _, "resume", ..]) => (Route::AdminResume, post, "POST"),
        (5, ["v1", "admin", "sales", _, "end", ..]) => (Route::AdminEnd, post, "POST"),
        (1, ["healthz", ..]) => (Route::Healthz, get, "GET"),
        (1, ["readyz", ..]) => (Route::Readyz, get, "GET"),
        (1, ["metrics", ..]) => (Route::Metrics, get, "GET"),
        _ => return Step::Done(Route::Other, not_found()),
    };
    if !allowed {
        return Step::Done(route, method_not_allowed(allow));
    }
    let resp = match route {
        Route::Healthz => json(StatusCode::OK, "{\"status\":\"ok\"}"),
        Route::Readyz => {
            if shared.ready() {
                json(StatusCode::OK, "{\"status\":\"ready\"}")
            } else {
                unavailable("not ready: recovering, shutting down, or the log has failed")
            }
        }
        Route::Metrics => metrics(shared),
        _ => {
            let Some(core) = shared.core() else {
                return Step::Done(route, unavailable("recovery in progress"));
            };
            // Public routes other than purchase are limited by the global
            // bucket and the client's IP; purchase by the global bucket and
            // the user (after the body is read); admin routes are not limited.
            let public = !matches!(
                route,
                Route::Purchase
                    | Route::OrderPay
                    | Route::AdminCreate
                    | Route::AdminStock
                    | Route::AdminPause
                    | Route::AdminResume
                    | Route::AdminEnd
            );
            if public && shared.limiter.enabled() {
                let now = shared.limiter.now_ns();
                if let Err(retry) = shared
                    .limiter
                    .check_global(now)
                    .and_then(|_| shared.limiter.check_ip(ip, now))
                {
                    return Step::Done(route, rate_limited(shared, retry));
                }
            }
            match route {
                Route::SaleGet => match core.engine.sale(seg[2], unix_ms()) {
                    Some(sale) => json(StatusCode::OK, sale_json(&sale)),
                    None => unknown_sku(),
                },
                Route::SalesList => {
                    let sales = core.engine.sales(unix_ms());
                    let mut body = String::with_capacity(16 + sales.len() * 256);
                    body.push_str("{\"sales\":[");
                    for (i, sale) in sales.iter().enumerate() {
                        if i > 0 {
                            body.push(',');
                        }
                        write_sale(&mut body, sale);
                    }
                    body.push_str("]}");
                    json(StatusCode::OK, body)
                }
                Route::OrderGet => order_get(shared, core, seg[2], req),
                _ => return Step::Await(route),
            }
        }
    };
    Step::Done(route, resp)
}

/// The routes other than purchase that change state. The path is copied out
/// of the request first: the URI is a slice of hyper's read buffer, and
/// holding it across the durability wait would make hyper copy that buffer
/// when it reads ahead.
async fn changing_route(shared: &Shared, route: Route, req: Request<Incoming>) -> Resp {
    let Some(core) = shared.core() else {
        return unavailable("recovery in progress");
    };
    let path = req.uri().path().to_string();
    let seg = segments(&path).map_or([""; 6], |(seg, _)| seg);
    match route {
        Route::OrderCancel => order_cancel(shared, core, seg[2], req).await,
        Route::OrderPay => order_pay(shared, core, seg[2], req).await,
        Route::AdminCreate => admin_create(shared, core, req).await,
        _ => admin_sale_op(shared, core, route, seg[3], req).await,
    }
}

fn not_found() -> Resp {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

fn metrics(shared: &Shared) -> Resp {
    let mut out = String::with_capacity(8192);
    match shared.core() {
        Some(core) => {
            let stats = core.wal.stats();
            shared
                .metrics
                .render(&mut out, &core.engine.sales(unix_ms()), Some(&stats));
        }
        None => shared.metrics.render(&mut out, &[], None),
    }
    let mut resp = Response::new(Full::new(Bytes::from(out)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

// ---------------------------------------------------------------------------
// Bodies

/// Reads the body, refusing more than `max_body_bytes`: first by the declared
/// Content-Length (nothing is read), then while collecting (chunked bodies).
/// A client that trickles its body is cut after the header read timeout.
async fn read_body(shared: &Shared, req: Request<Incoming>) -> Result<Bytes, Resp> {
    check_content_length(shared, req.body())?;
    collect_body(shared, req.into_body()).await
}

/// Refuses a declared body longer than `server.max_body_bytes` before
/// reading any of it. hyper has parsed the `content-length` (and refused a
/// malformed one) already; its size hint is that length.
fn check_content_length(shared: &Shared, body: &Incoming) -> Result<(), Resp> {
    let max = shared.config.server.max_body_bytes;
    if body.size_hint().lower() > max {
        return Err(too_large(max));
    }
    Ok(())
}

/// Reads a body of at most `server.max_body_bytes`, within the header read
/// timeout.
async fn collect_body(shared: &Shared, mut body: Incoming) -> Result<Bytes, Resp> {
    let max = shared.config.server.max_body_bytes;
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    // A small body with a content-length usually arrived with the head, as
    // one frame: take it without arming a timer (a clock read and a
    // timer-wheel entry) or collecting into a list (an allocation). A
    // chunked body does not know it has ended after its first frame, so it
    // always takes the general path below.
    let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
    let mut head = Bytes::new();
    match first {
        Poll::Ready(None) => return Ok(Bytes::new()),
        Poll::Ready(Some(Err(_))) => return Err(bad_request("body: could not be read")),
        Poll::Ready(Some(Ok(frame))) => {
            if let Ok(data) = frame.into_data() {
                if data.len() as u64 > max {
                    return Err(too_large(max));
                }
                if body.is_end_stream() {
                    return Ok(data);
                }
                head = data;
            }
        }
        Poll::Pending => {}
    }
    // The rest, within the limit left and the header read timeout.
    let rest = Limited::new(body, (max as usize).saturating_sub(head.len()));
    let timeout = shared.config.server.header_read_timeout;
    match tokio::time::timeout(timeout, rest.collect()).await {
        Ok(Ok(collected)) if head.is_empty() => Ok(collected.to_bytes()),
        Ok(Ok(collected)) => {
            let rest = collected.to_bytes();
            let mut all = Vec::with_capacity(head.len() + rest.len());
            all.extend_from_slice(&head);
            all.extend_from_slice(&rest);
            Ok(Bytes::from(all))
        }
        Ok(Err(err)) if err.is::<LengthLimitError>() => Err(too_large(max)),
        Ok(Err(_)) => Err(bad_request("body: could not be read")),
        Err(_) => {
            let mut resp = error(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "body: not received in time",
            );
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
            Err(resp)
        }
    }
}

fn too_large(max: u64) -> Resp {
    let mut resp = error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        &format!("body: larger than {max} bytes"),
    );
    // The unread rest of the body makes the connection unusable.
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Parses a JSON body. On failure, parses again with path tracking so the
/// message names the field (the error path is cold; the fast path is plain
/// serde_json).
fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Resp> {
    match serde_json::from_slice::<T>(body) {
        Ok(v) => Ok(v),
        Err(_) => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let message = match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Ok(_) => "body: invalid JSON".to_string(),
                Err(err) => {
                    let path = err.path().to_string();
                    let inner = err.into_inner();
                    if inner.is_syntax() || inner.is_eof() {
                        format!("body: invalid JSON: {inner}")
                    } else if path == "." {
                        format!("body: {inner}")
                    } else {
                        format!("{path}: {inner}")
                    }
                }
            };
            Err(bad_request(&message))
        }
    }
}

// ---------------------------------------------------------------------------
// Purchase: the hot path

/// The engine's idempotency key for a client's request id. Stable across
/// builds and restarts (`engine::fnv1a_64`), because the log stores it.
pub fn request_id_hash(request_id: &str) -> u64 {
    engine::fnv1a_64(request_id.as_bytes())
}

fn check_request_id(id: &str) -> Result<u64, Resp> {
    if id.is_empty()
        || id.len() > REQUEST_ID_LEN_MAX
        || !id.bytes().all(|b| (0x20..0x7f).contains(&b))
    {
        return Err(bad_request(
            "request_id: must be 1 to 64 printable ASCII characters",
        ));
    }
    Ok(request_id_hash(id))
}

/// What the purchase path keeps of its request: the body, and a copy of the
/// sku (at most [`SKU_LEN_MAX`] bytes; a longer one is invalid anyway). The
/// URI and headers are slices of hyper's read buffer, and holding them across
/// the durability wait would make hyper copy that buffer when it reads ahead.
pub(crate) struct Purchase {
    body: Incoming,
    sku: [u8; SKU_LEN_MAX],
    /// Length of `sku`; 0 when the path's sku was too long to copy, which
    /// the engine refuses as invalid like any other bad sku.
    sku_len: u8,
    /// The rate limiter's clock when the request came (0 when it is off).
    now: u64,
}

impl Purchase {
    /// The global rate limit, then the declared body length (in that order,
    /// as for every purchase before the split); then takes the request apart.
    fn new(shared: &Shared, req: Request<Incoming>) -> Result<Purchase, Resp> {
        let limiter = &shared.limiter;
        let now = if limiter.enabled() {
            limiter.now_ns()
        } else {
            0
        };
        if let Err(retry) = limiter.check_global(now) {
            return Err(rate_limited(shared, retry));
        }
        check_content_length(shared, req.body())?;
        let (parts, body) = req.into_parts();
        // `route` matched the path as `/v1/sales/{sku}/purchase`.
        let path_sku = parts
            .uri
            .path()
            .strip_prefix("/v1/sales/")
            .and_then(|rest| rest.strip_suffix("/purchase"))
            .unwrap_or("");
        let mut sku = [0u8; SKU_LEN_MAX];
        let sku_len = if path_sku.len() <= SKU_LEN_MAX {
            sku[..path_sku.len()].copy_from_slice(path_sku.as_bytes());
            path_sku.len() as u8
        } else {
            0
        };
        Ok(Purchase {
            body,
            sku,
            sku_len,
            now,
        })
    }
}

// `Purchase::sku_len` holds a sku's length.
const _: () = assert!(SKU_LEN_MAX <= u8::MAX as usize);

/// The purchase hot path, in two halves. Everything up to the engine's
/// answer, and the answer's body, is done synchronously in [`admit`]; what
/// the future holds across the durability wait is a ticket and that body.
async fn purchase(shared: &Shared, p: Purchase) -> Resp {
    // `route` answered 503 while recovering; once set, the core stays.
    let Some(core) = shared.core() else {
        return unavailable("recovery in progress");
    };
    let Purchase {
        body,
        sku,
        sku_len,
        now,
    } = p;
    let bytes = match collect_body(shared, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    // Copied whole from a `&str` (or empty): always valid UTF-8.
    let sku = std::str::from_utf8(&sku[..usize::from(sku_len)]).unwrap_or("");
    // The body is not held across the wait either (see `Purchase`).
    let admitted = admit(shared, core, sku, &bytes, now);
    drop(bytes);
    let admitted = match admitted {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    if let Err(resp) = acknowledge_ticket(shared, core, admitted.ticket).await {
        return resp;
    }
    let counter = if admitted.status == StatusCode::CREATED {
        &shared.metrics.admissions
    } else {
        &shared.metrics.replays
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    json(admitted.status, admitted.body)
}

/// An admission (or replay) waiting to be acknowledged.
struct Admitted {
    status: StatusCode,
    /// The log ticket to wait for; `None` for a replay, which waits for
    /// everything logged so far (the admission it repeats may be in flight).
    ticket: Option<Ticket>,
    body: Bytes,
}

/// Parses the body, applies the per-user limit and asks the engine; the
/// answer is a rejection to send at once or an admission to acknowledge.
fn admit(
    shared: &Shared,
    core: &Core,
    sku: &str,
    bytes: &[u8],
    now: u64,
) -> Result<Admitted, Resp> {
    // Parsed in place: `request_id` borrows from hyper's buffer only until
    // this returns, and the caller drops that buffer before its wait.
    let p = match PurchaseBody::parse_plain(bytes) {
        Some(p) => p,
        None => parse::<PurchaseBody<'_>>(bytes)?,
    };
    if let Err(retry) = shared.limiter.check_user(p.user_id, now) {
        return Err(rate_limited(shared, retry));
    }
    let request_id = p.request_id.as_deref().map(check_request_id).transpose()?;
    let mut sink = core.sink();
    let outcome = core
        .engine
        .purchase(sku, p.user_id, p.qty, request_id, unix_ms(), &mut sink);
    let (status, admission) = match outcome {
        PurchaseOutcome::Admitted(a) => (StatusCode::CREATED, a),
        PurchaseOutcome::Replayed(a) => (StatusCode::OK, a),
        PurchaseOutcome::Rejected(r) => {
            shared.metrics.rejection(r);
            return Err(rejection(r));
        }
    };
    let body = admitted_body(&admission, sku);
    Ok(Admitted {
        status,
        ticket: sink.ticket(),
        body,
    })
}

/// The 201/200 body of an admission. Built by hand on the stack: `write!`
/// into a `String` cost ~1,300 instructions and two allocations per
/// admission; this is one allocation.
fn admitted_body(admission: &Admission, sku: &str) -> Bytes {
    let mut ints = [itoa::Buffer::new(); 4];
    let [order_id, user_id, qty, expires] = &mut ints;
    let mut buf = [0u8; ADMITTED_BODY_MAX];
    let mut len = 0;
    for part in [
        "{\"status\":\"admitted\",\"order_id\":\"",
        order_id.format(admission.order_id.0),
        "\",\"sku\":\"",
        sku,
        "\",\"user_id\":",
        user_id.format(admission.user_id),
        ",\"qty\":",
        qty.format(admission.qty),
        ",\"expires_at_ms\":",
        expires.format(admission.expires_at_ms),
        "}",
    ] {
        buf[len..len + part.len()].copy_from_slice(part.as_bytes());
        len += part.len();
    }
    Bytes::copy_from_slice(&buf[..len])
}

/// A JSON error body fixed at compile time (nothing in it needs escaping).
macro_rules! static_error_body {
    ($code:literal, $message:literal) => {
        concat!("{\"status\":\"", $code, "\",\"error\":\"", $message, "\"}")
    };
}

/// The answer to an engine rejection. The common ones, above all `sold_out`
/// (most responses of a flash sale), are static bytes: no allocation, no
/// formatting, no escaping on the path that must be cheapest.
fn rejection(r: Rejection) -> Resp {
    let (status, body) = match r {
        Rejection::SoldOut => (
            StatusCode::CONFLICT,
            static_error_body!("sold_out", "sold out"),
        ),
        Rejection::LimitExceeded => (
            StatusCode::CONFLICT,
            static_error_body!(
                "limit_exceeded",
                "qty: over the per-user limit of this sale"
            ),
        ),
        Rejection::NotStarted => (
            StatusCode::CONFLICT,
            static_error_body!("not_started", "the sale has not started"),
        ),
        Rejection::Ended => (
            StatusCode::CONFLICT,
            static_error_body!("ended", "the sale has ended"),
        ),
        Rejection::Paused => (
            StatusCode::CONFLICT,
            static_error_body!("paused", "the sale is paused"),
        ),
        Rejection::InProgress => (
            StatusCode::CONFLICT,
            static_error_body!(
                "in_progress",
                "the same request_id is being decided by another request; retry"
            ),
        ),
        Rejection::RequestIdReused => (
            StatusCode::UNPROCESSABLE_ENTITY,
            static_error_body!(
                "request_id_reused",
                "request_id: already used with a different sku or qty"
            ),
        ),
        Rejection::OrderLimit => (
            StatusCode::CONFLICT,
            static_error_body!(
                "order_limit",
                "the sale has made as many orders as it may keep (engine.max_orders_per_sale)"
            ),
        ),
        Rejection::UnknownSku => return unknown_sku(),
        Rejection::InvalidSku => {
            return bad_request("sku: must be 1 to 64 characters of [A-Za-z0-9_.-]")
        }
        Rejection::InvalidQuantity => {
            return bad_request(&format!("qty: must be between 1 and {}", engine::QTY_MAX))
        }
        Rejection::Unavailable(_) => return unavailable("the order log is full or has failed"),
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, JSON);
    resp
}

// ---------------------------------------------------------------------------
// Orders

fn parse_order_id(id: &str) -> Option<OrderId> {
    // Canonical decimal only, so one order has one URL.
    if id.is_empty()
        || id.len() > 20
        || (id.len() > 1 && id.starts_with('0'))
        || !id.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    id.parse::<u64>().ok().map(OrderId)
}

fn order_json(order: &OrderView) -> String {
    let mut body = String::with_capacity(192);
    let _ = write!(
        body,
        "{{\"order_id\":\"{}\",\"sku\":\"{}\",\"user_id\":{},\"qty\":{},\"state\":\"{}\",\"created_at_ms\":{},\"expires_at_ms\":{}}}",
        order.order_id.0,
        order.sku,
        order.user_id,
        order.qty,
        order.state.as_str(),
        order.created_at_ms,
        order.expires_at_ms
    );
    body
}

/// Whether the request carries the admin token, compared in constant time.
fn is_admin(shared: &Shared, req: &Request<Incoming>) -> bool {
    let Some(value) = req.headers().get(AUTHORIZATION) else {
        return false;
    };
    let Some(token) = value.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    constant_time_eq(token, shared.config.server.admin_token.as_bytes())
}

/// Compares without an early exit, so the time taken does not tell how many
/// leading bytes matched. (The length of the token is not secret.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

fn unauthorized() -> Resp {
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong admin token",
    );
    resp.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer"),
    );
    resp
}

fn query_user_id(req: &Request<Incoming>) -> Result<Option<u64>, Resp> {
    let Some(query) = req.uri().query() else {
        return Ok(None);
    };
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("user_id=") {
            return v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| bad_request("user_id: must be an unsigned 64-bit integer"));
        }
    }
    Ok(None)
}

fn order_get(shared: &Shared, core: &Core, id: &str, req: &Request<Incoming>) -> Resp {
    let user = match query_user_id(req) {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let admin = req.headers().contains_key(AUTHORIZATION);
    if admin && !is_admin(shared, req) {
        return unauthorized();
    }
    if !admin && user.is_none() {
        return bad_request("user_id: query parameter required (or admin auth)");
    }
    let Some(order_id) = parse_order_id(id) else {
        return unknown_order();
    };
    match core.engine.order(order_id) {
        Some(order) if admin || Some(order.user_id) == user => {
            json(StatusCode::OK, order_json(&order))
        }
        _ => unknown_order(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    user_id: u64,
}

async fn order_cancel(shared: &Shared, core: &Core, id: &str, req: Request<Incoming>) -> Resp {
    let body = match read_body(shared, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let c: CancelBody = match parse(&body) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let Some(order_id) = parse_order_id(id) else {
        return unknown_order();
    };
    let mut sink = core.sink();
    let outcome = core
        .engine
        .cancel(order_id, c.user_id, unix_ms(), &mut sink);
    order_outcome(shared, core, &sink, outcome).await
}

async fn order_pay(shared: &Shared, core: &Core, id: &str, req: Request<Incoming>) -> Resp {
    if !is_admin(shared, &req) {
        return unauthorized();
    }
    // The body is not used; read (bounded) so the connection stays reusable.
    if let Err(resp) = read_body(shared, req).await {
        return resp;
    }
    let Some(order_id) = parse_order_id(id) else {
        return unknown_order();
    };
    let mut sink = core.sink();
    let outcome = core.engine.pay(order_id, unix_ms(), &mut sink);
    order_outcome(shared, core, &sink, outcome).await
}

async fn order_outcome(
    shared: &Shared,
    core: &Core,
    sink: &WalSink<'_>,
    outcome: OrderOutcome,
) -> Resp {
    match outcome {
        OrderOutcome::Done { order, .. } => {
            // A repeat (changed == false) acknowledges an earlier change that
            // may not be durable yet: `acknowledge` waits for it too.
            if let Err(resp) = acknowledge(shared, core, sink).await {
                return resp;
            }
            json(StatusCode::OK, order_json(&order))
        }
        OrderOutcome::Rejected(r) => match r {
            OrderRejection::UnknownOrder => unknown_order(),
            OrderRejection::Paid => error(StatusCode::CONFLICT, r.as_str(), "the order is paid"),
            OrderRejection::Cancelled => {
                error(StatusCode::CONFLICT, r.as_str(), "the order was cancelled")
            }
            OrderRejection::Expired => error(
                StatusCode::CONFLICT,
                r.as_str(),
                "the reservation expired (and its units could not be taken again)",
            ),
            OrderRejection::Unavailable(_) => unavailable("the order log is full or has failed"),
        },
    }
}

// ---------------------------------------------------------------------------
// Admin

fn sale_json(sale: &SaleView) -> String {
    let mut body = String::with_capacity(256);
    write_sale(&mut body, sale);
    body
}

fn write_sale(out: &mut String, sale: &SaleView) {
    let opt = |v: Option<u64>| v.map_or_else(|| "null".to_string(), |v| v.to_string());
    let _ = write!(
        out,
        "{{\"sku\":\"{}\",\"stock\":{},\"remaining\":{},\"reserved\":{},\"paid\":{},\"per_user_limit\":{},\"starts_at_ms\":{},\"ends_at_ms\":{},\"reservation_ttl_ms\":{},\"state\":\"{}\"}}",
        sale.sku,
        sale.stock,
        sale.remaining,
        sale.reserved,
        sale.paid,
        sale.per_user_limit,
        opt(sale.starts_at_ms),
        opt(sale.ends_at_ms),
        sale.reservation_ttl_ms,
        sale.phase.as_str()
    );
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    sku: String,
    stock: u64,
    #[serde(default = "one")]
    per_user_limit: u32,
    #[serde(default)]
    starts_at_ms: Option<u64>,
    #[serde(default)]
    ends_at_ms: Option<u64>,
    #[serde(default = "default_ttl")]
    reservation_ttl_ms: u64,
}

fn one() -> u32 {
    1
}

fn default_ttl() -> u64 {
    600_000
}

async fn admin_create(shared: &Shared, core: &Core, req: Request<Incoming>) -> Resp {
    if !is_admin(shared, &req) {
        return unauthorized();
    }
    let body = match read_body(shared, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let c: CreateBody = match parse(&body) {
        Ok(c) => c,
        Err(resp) => return resp,
    };
    let spec = SaleSpec {
        sku: c.sku,
        stock: c.stock,
        per_user_limit: c.per_user_limit,
        starts_at_ms: c.starts_at_ms,
        ends_at_ms: c.ends_at_ms,
        reservation_ttl_ms: c.reservation_ttl_ms,
    };
    let mut sink = core.sink();
    let result = core.engine.create_sale(spec, unix_ms(), &mut sink);
    let sale = match result {
        Ok(sale) => sale,
        Err(e) => {
            return match e {
                CreateSaleError::Exists => error(
                    StatusCode::CONFLICT,
                    "exists",
                    "a sale with this sku exists",
                ),
                CreateSaleError::InvalidSku(err) => bad_request(&format!("sku: {err}")),
                CreateSaleError::InvalidLimit => bad_request(&format!("per_user_limit: {e}")),
                CreateSaleError::StockTooLarge => bad_request(&format!("stock: {e}")),
                CreateSaleError::InvalidWindow => bad_request(&format!("ends_at_ms: {e}")),
                CreateSaleError::InvalidTtl => bad_request(&format!("reservation_ttl_ms: {e}")),
                CreateSaleError::TooManySales => {
                    error(StatusCode::CONFLICT, "too_many_sales", &e.to_string())
                }
                CreateSaleError::Unavailable(_) => {
                    unavailable("the order log is full or has failed")
                }
                _ => bad_request(&e.to_string()),
            };
        }
    };
    if let Err(resp) = acknowledge(shared, core, &sink).await {
        return resp;
    }
    json(StatusCode::CREATED, sale_json(&sale))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StockBody {
    add: u64,
}

async fn admin_sale_op(
    shared: &Shared,
    core: &Core,
    route: Route,
    sku: &str,
    req: Request<Incoming>,
) -> Resp {
    if !is_admin(shared, &req) {
        return unauthorized();
    }
    let body = match read_body(shared, req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let now = unix_ms();
    let mut sink = core.sink();
    let result = match route {
        Route::AdminStock => {
            let s: StockBody = match parse(&body) {
                Ok(s) => s,
                Err(resp) => return resp,
            };
            core.engine.add_stock(sku, s.add, now, &mut sink)
        }
        Route::AdminPause => core.engine.pause(sku, now, &mut sink),
        Route::AdminResume => core.engine.resume(sku, now, &mut sink),
        _ => core.engine.end(sku, now, &mut sink),
    };
    let sale = match result {
        Ok(sale) => sale,
        Err(e) => {
            return match e {
                SaleOpError::UnknownSku => unknown_sku(),
                SaleOpError::InvalidSku(err) => bad_request(&format!("sku: {err}")),
                SaleOpError::ZeroAdd => bad_request("add: must be at least 1"),
                SaleOpError::StockOverflow => bad_request(&format!("add: {e}")),
                SaleOpError::Ended => error(StatusCode::CONFLICT, "ended", "the sale has ended"),
                SaleOpError::Unavailable(_) => unavailable("the order log is full or has failed"),
                _ => bad_request(&e.to_string()),
            };
        }
    };
    if let Err(resp) = acknowledge(shared, core, &sink).await {
        return resp;
    }
    json(StatusCode::OK, sale_json(&sale))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every rejection answers valid JSON whose `status` is the engine's
    /// machine-readable name for it (the static bodies are typed by hand).
    #[test]
    fn rejection_bodies_name_the_rejection() {
        let all = [
            Rejection::SoldOut,
            Rejection::LimitExceeded,
            Rejection::NotStarted,
            Rejection::Ended,
            Rejection::Paused,
            Rejection::InProgress,
            Rejection::OrderLimit,
            Rejection::RequestIdReused,
            Rejection::UnknownSku,
            Rejection::InvalidSku,
            Rejection::InvalidQuantity,
            Rejection::Unavailable(engine::SinkError::Full),
        ];
        for r in all {
            let resp = rejection(r);
            let body = resp.body().clone();
            let bytes = body_bytes(body);
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
            let want = match r {
                Rejection::InvalidSku | Rejection::InvalidQuantity => "bad_request",
                _ => r.as_str(),
            };
            assert_eq!(v["status"], want, "{r:?}");
            assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{r:?}");
        }
    }

    /// The bytes of a `Full` body, without a runtime.
    fn body_bytes(body: Full<Bytes>) -> Bytes {
        use hyper::body::Body;
        let mut body = std::pin::pin!(body);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match body.as_mut().poll_frame(&mut cx) {
            std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
            _ => Bytes::new(),
        }
    }

    /// The longest admission body (a sku of the longest length, every
    /// number at its maximum) fits the stack buffer, and is the JSON serde
    /// would write.
    #[test]
    fn admitted_body_fits_at_the_extremes() {
        let sku = "s".repeat(SKU_LEN_MAX);
        let admission = Admission {
            order_id: OrderId(u64::MAX),
            user_id: u64::MAX,
            qty: u32::MAX,
            created_at_ms: u64::MAX,
            expires_at_ms: u64::MAX,
        };
        let body = admitted_body(&admission, &sku);
        let want = serde_json::json!({
            "status": "admitted",
            "order_id": u64::MAX.to_string(),
            "sku": sku,
            "user_id": u64::MAX,
            "qty": u32::MAX,
            "expires_at_ms": u64::MAX,
        });
        let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(got, want);
        assert!(body.len() <= ADMITTED_BODY_MAX);
    }

    /// `segments` splits like `str::split('/')` after the leading '/'.
    #[test]
    fn segments_match_split() {
        fn reference(path: &str) -> Option<Vec<&str>> {
            let parts: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
            (parts.len() <= 6).then_some(parts)
        }
        for path in [
            "",
            "/",
            "//",
            "/v1",
            "/v1/",
            "/v1/sales/hot/purchase",
            "/a/b/c/d/e/f",
            "/a/b/c/d/e/f/g",
            "/a//b",
            "/é/ü/ß",
            "v1/sales",
            "/v1/sales/x/purchase/",
        ] {
            let ours = segments(path).map(|(seg, n)| seg[..n].to_vec());
            assert_eq!(ours, reference(path), "{path:?}");
        }
    }

    #[test]
    fn fnv1a_is_stable() {
        // Reference values of FNV-1a 64: the log stores these hashes.
        assert_eq!(request_id_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(request_id_hash("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(request_id_hash("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn constant_time_eq_matches_eq() {
        for (a, b) in [
            ("", ""),
            ("a", ""),
            ("abc", "abc"),
            ("abc", "abd"),
            ("abc", "abcd"),
        ] {
            assert_eq!(
                constant_time_eq(a.as_bytes(), b.as_bytes()),
                a == b,
                "{a:?} {b:?}"
            );
        }
    }

    #[test]
    fn order_ids_are_canonical_decimal() {
        assert_eq!(parse_order_id("42"), Some(OrderId(42)));
        assert_eq!(parse_order_id("0"), Some(OrderId(0)));
        for bad in ["", "042", "-1", "x", "99999999999999999999999", "+1"] {
            assert_eq!(parse_order_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn request_ids_are_printable_ascii() {
        assert!(check_request_id("abc-123 ~").is_ok());
        assert!(check_request_id(&"x".repeat(64)).is_ok());
        assert!(check_request_id(&"x".repeat(65)).is_err());
        assert!(check_request_id("").is_err());
        assert!(check_request_id("tab\t").is_err());
        assert!(check_request_id("é").is_err());
    }
}
