//! Orders: read one, cancel a reservation (its buyer), pay (admin).

use std::fmt::Write as _;

use engine::{OrderId, OrderOutcome, OrderRejection, OrderView};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;

use super::ack::acknowledge;
use super::auth::{check_admin, credential, require_admin, Credential};
use super::body::{parse, read_body, BodyRequest};
use super::response::{bad_request, error, json, log_unavailable, unknown_order, Resp};
use crate::app::{unix_ms, App, Core};
use crate::wal::WalSink;

/// An order id as the API prints it. Canonical decimal only, so one order
/// has one URL.
pub fn parse_order_id(id: &str) -> Option<OrderId> {
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

/// `GET /v1/orders/{id}`: its buyer (`?user_id=`) or an admin reads it.
/// Anyone else gets the same 404 as for an unknown order.
pub fn order_get(app: &App, core: &Core, id: &str, req: &Request<Incoming>) -> Resp {
    let user = match query_user_id(req) {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    // Admin when a credential is presented at all: a wrong one is a 401,
    // not a buyer's read.
    let admin = match credential(req.headers()) {
        Ok(Credential::Absent) => false,
        Ok(presented) => match check_admin(&app.config.server, &presented) {
            Ok(()) => true,
            Err(resp) => return resp,
        },
        Err(resp) => return resp,
    };
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

/// `POST /v1/orders/{id}/cancel`: the buyer gives a reservation up.
pub async fn order_cancel(app: &App, core: &Core, id: &str, r: BodyRequest) -> Resp {
    let body = match read_body(&app.config.server, r).await {
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
    order_outcome(app, core, &sink, outcome).await
}

/// `POST /v1/orders/{id}/pay`: the shop's payment system (admin auth).
pub async fn order_pay(app: &App, core: &Core, id: &str, r: BodyRequest) -> Resp {
    if let Err(resp) = require_admin(&app.config.server, r.req.headers()) {
        return resp;
    }
    // The body is not used; read (bounded) so the connection stays reusable.
    if let Err(resp) = read_body(&app.config.server, r).await {
        return resp;
    }
    let Some(order_id) = parse_order_id(id) else {
        return unknown_order();
    };
    let mut sink = core.sink();
    let outcome = core.engine.pay(order_id, unix_ms(), &mut sink);
    order_outcome(app, core, &sink, outcome).await
}

async fn order_outcome(app: &App, core: &Core, sink: &WalSink<'_>, outcome: OrderOutcome) -> Resp {
    match outcome {
        OrderOutcome::Done { order, .. } => {
            // A repeat (changed == false) acknowledges an earlier change that
            // may not be durable yet: `acknowledge` waits for it too.
            if let Err(resp) = acknowledge(&app.metrics, core, sink.ticket()).await {
                return resp;
            }
            json(StatusCode::OK, order_json(&order))
        }
        OrderOutcome::Rejected(r) => order_rejection(r),
    }
}

fn order_rejection(r: OrderRejection) -> Resp {
    match r {
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
        OrderRejection::Unavailable(_) => log_unavailable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_canonical_decimal() {
        assert_eq!(parse_order_id("42"), Some(OrderId(42)));
        assert_eq!(parse_order_id("0"), Some(OrderId(0)));
        for bad in ["", "042", "-1", "x", "99999999999999999999999", "+1"] {
            assert_eq!(parse_order_id(bad), None, "{bad:?}");
        }
    }
}
