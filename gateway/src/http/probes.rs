//! Probes and metrics: `/healthz` (the process answers), `/readyz`
//! (recovered, the log accepts writes, not shutting down) and `/metrics`
//! (Prometheus text).

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use super::response::{json, json_static, unavailable, Resp, ResponseBody};
use crate::app::{unix_ms, App};

/// `GET /v1/admin/export` (admin): the export's state as JSON, the same
/// figures as its metrics.
pub fn export_status(app: &App, headers: &hyper::HeaderMap) -> Resp {
    if let Err(resp) = super::auth::require_admin(&app.config.server, headers) {
        return resp;
    }
    let enabled = app.config.export.postgres_url.is_some();
    json(StatusCode::OK, app.export.json(unix_ms(), enabled))
}

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
    if app.config.export.postgres_url.is_some() {
        app.export.render(&mut out, unix_ms());
        let over = u8::from(app.export_over_lag());
        out.push_str("# HELP flashsale_export_over_max_lag 1 while purchases are refused because the unexported log passed export.max_lag_bytes.\n# TYPE flashsale_export_over_max_lag gauge\n");
        out.push_str(&format!("flashsale_export_over_max_lag {over}\n"));
    }
    app.feed.render(&mut out);
    let mut resp = Response::new(ResponseBody::full(out));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}
