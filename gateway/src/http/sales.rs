//! Sale views: `GET /v1/sales/{sku}`, `GET /v1/sales`, and the sale JSON the
//! admin routes answer with too.

use std::fmt::Write as _;

use engine::SaleView;
use hyper::StatusCode;

use super::response::{json, unknown_sku, Resp};
use crate::app::{unix_ms, Core};

pub fn sale_get(core: &Core, sku: &str) -> Resp {
    match core.engine.sale(sku, unix_ms()) {
        Some(sale) => json(StatusCode::OK, sale_json(&sale)),
        None => unknown_sku(),
    }
}

pub fn sales_list(core: &Core) -> Resp {
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

pub fn sale_json(sale: &SaleView) -> String {
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
