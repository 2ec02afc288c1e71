//! Admin routes (bearer token): create a sale, add stock, pause, resume,
//! end. Each answers the sale as it is after the change, once durable.

use engine::{CreateSaleError, SaleOpError, SaleSpec, SaleView};
use hyper::StatusCode;
use serde::Deserialize;

use super::ack::acknowledge;
use super::auth::require_admin;
use super::body::{parse, read_body, BodyRequest};
use super::response::{bad_request, error, json, log_unavailable, sale_ended, unknown_sku, Resp};
use super::sales::sale_json;
use crate::app::{unix_ms, App, Core};
use crate::wal::WalSink;

/// A change to an existing sale. Its own enum, matched without a wildcard,
/// so that a new operation cannot fall through to another (ending a sale).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaleOp {
    AddStock,
    Pause,
    Resume,
    End,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StockBody {
    add: u64,
}

/// `POST /v1/admin/sales`.
pub async fn admin_create(app: &App, core: &Core, r: BodyRequest) -> Resp {
    if let Err(resp) = require_admin(&app.config.server, r.req.headers()) {
        return resp;
    }
    let body = match read_body(&app.config.server, r).await {
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
    match core.engine.create_sale(spec, unix_ms(), &mut sink) {
        Ok(sale) => answer(app, core, &sink, StatusCode::CREATED, &sale).await,
        Err(e) => create_error(e),
    }
}

fn create_error(e: CreateSaleError) -> Resp {
    match e {
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
        CreateSaleError::Unavailable(_) => log_unavailable(),
        // The engine's error is non-exhaustive; a new kind is a refusal
        // with its own message until it gets a status of its own.
        _ => bad_request(&e.to_string()),
    }
}

/// `POST /v1/admin/sales/{sku}/{stock|pause|resume|end}`.
pub async fn admin_sale_op(app: &App, core: &Core, op: SaleOp, sku: &str, r: BodyRequest) -> Resp {
    if let Err(resp) = require_admin(&app.config.server, r.req.headers()) {
        return resp;
    }
    let body = match read_body(&app.config.server, r).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let now = unix_ms();
    let mut sink = core.sink();
    let result = match op {
        SaleOp::AddStock => {
            let s: StockBody = match parse(&body) {
                Ok(s) => s,
                Err(resp) => return resp,
            };
            core.engine.add_stock(sku, s.add, now, &mut sink)
        }
        SaleOp::Pause => core.engine.pause(sku, now, &mut sink),
        SaleOp::Resume => core.engine.resume(sku, now, &mut sink),
        SaleOp::End => core.engine.end(sku, now, &mut sink),
    };
    match result {
        Ok(sale) => answer(app, core, &sink, StatusCode::OK, &sale).await,
        Err(e) => sale_op_error(e),
    }
}

fn sale_op_error(e: SaleOpError) -> Resp {
    match e {
        SaleOpError::UnknownSku => unknown_sku(),
        SaleOpError::InvalidSku(err) => bad_request(&format!("sku: {err}")),
        SaleOpError::ZeroAdd => bad_request("add: must be at least 1"),
        SaleOpError::StockOverflow => bad_request(&format!("add: {e}")),
        SaleOpError::Ended => sale_ended(),
        SaleOpError::Unavailable(_) => log_unavailable(),
        // Non-exhaustive in the engine: see `create_error`.
        _ => bad_request(&e.to_string()),
    }
}

/// The sale after a change, once the change is durable.
async fn answer(
    app: &App,
    core: &Core,
    sink: &WalSink<'_>,
    status: StatusCode,
    sale: &SaleView,
) -> Resp {
    if let Err(resp) = acknowledge(&app.metrics, core, sink.ticket()).await {
        return resp;
    }
    json(status, sale_json(sale))
}
