//! Probes and metrics: `/healthz` (the process answers), `/readyz`
//! (recovered, the log accepts writes, not shutting down) and `/metrics`
//! (Prometheus text).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::response::{json_static, unavailable, Resp};
use crate::app::{unix_ms, App};

pub fn healthz() -> Resp {
    json_static(StatusCode::OK, "{\"status\":\"ok\"}")
}

pub fn readyz(app: &App) -> Resp {
    if app.ready() {
        json_static(StatusCode::OK, "{\"status\":\"ready\"}")
    } else {
        unavailable("not ready: recovering, shutting down, or the log has failed")
    }
}

pub fn metrics(app: &App) -> Resp {
    let mut out = String::with_capacity(8192);
    match app.core() {
        Some(core) => {
            let stats = core.wal.stats();
            app.metrics
                .render(&mut out, &core.engine.sales(unix_ms()), Some(&stats));
        }
        None => app.metrics.render(&mut out, &[], None),
    }
    let mut resp = Response::new(Full::new(Bytes::from(out)));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
