//! The dashboard's routes: `GET /dashboard` (the page: public, static, built
//! into the binary), `GET /v1/admin/stats` (the latest snapshot) and
//! `GET /v1/admin/stream` (every snapshot, as Server-Sent Events), both
//! admin-only. All three answer at once from the app: the stream's body
//! is fed by the dashboard's ticker, not by this handler.

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};

use super::auth::require_admin;
use super::peer::{limit_send_buffer, Peer};
use super::response::{error, json, unavailable, Resp, ResponseBody};
use crate::app::App;
use crate::dashboard::page::{policy, PAGE};
use crate::dashboard::stream::SubscribeError;

/// Kernel send buffer of a stream's socket. A stream sends a few KiB a
/// period, so this holds many periods; without it the kernel would grow
/// the buffer of a subscriber that reads nothing to megabytes before the
/// feed saw its queue fill and dropped it.
const STREAM_SEND_BUFFER_BYTES: usize = 32 * 1024;

/// Seconds a refused subscriber is asked to wait.
const STREAM_RETRY_AFTER_S: &str = "5";

/// `GET /dashboard`.
pub fn dashboard_page() -> Resp {
    let mut resp = Response::new(ResponseBody::full(PAGE.as_bytes()));
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(policy()),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    // The token lives in the page's sessionStorage, never in a URL; no
    // referrer is sent anyway.
    headers.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// `GET /v1/admin/stats`: the latest snapshot (at most one period old).
pub fn admin_stats(app: &App, headers: &HeaderMap) -> Resp {
    if let Err(resp) = require_admin(&app.config.server, headers) {
        return resp;
    }
    match app.feed.latest() {
        Some(snapshot) => no_store(json(StatusCode::OK, snapshot)),
        None => unavailable("no snapshot yet: the dashboard ticker has not run"),
    }
}

/// `GET /v1/admin/stream`: a subscription, or 503 at the cap.
pub fn admin_stream(app: &App, peer: Peer, req: &Request<Incoming>) -> Resp {
    if let Err(resp) = require_admin(&app.config.server, req.headers()) {
        return resp;
    }
    let body = if req.method() == Method::HEAD {
        // The headers a GET would get, without taking a slot.
        ResponseBody::full(&b""[..])
    } else {
        // Without its socket a subscriber can still be dropped, only its
        // connection then lasts until the client reads or goes.
        let socket = peer
            .socket()
            .and_then(|s| limit_send_buffer(&s, STREAM_SEND_BUFFER_BYTES).map(|()| s))
            .map_err(|err| tracing::debug!(%err, "dashboard stream: no socket to keep"))
            .ok();
        match app.feed.subscribe(socket) {
            Ok(body) => ResponseBody::Stream(Box::new(body)),
            Err(err @ SubscribeError::Full(_)) => {
                let mut resp = error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too_many_subscribers",
                    &err.to_string(),
                );
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static(STREAM_RETRY_AFTER_S));
                return resp;
            }
            Err(err @ SubscribeError::Closed) => return unavailable(&err.to_string()),
        }
    };
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    // Proxies (nginx) must pass each event on as it comes.
    resp.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    no_store(resp)
}

fn no_store(mut resp: Resp) -> Resp {
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
