//! Orders: read one (its buyer, or an admin), cancel a reservation (its
//! buyer), pay (admin). The buyer is whom the credential names (`buyer.rs`);
//! only in body mode does the client name itself. Another buyer's order is
//! the same 404 as an unknown one, so order ids cannot be probed for owners.

use std::fmt::Write as _;

use engine::{OrderId, OrderOutcome, OrderRejection, OrderView};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;

use super::ack::acknowledge;
use super::auth::require_admin;
use super::body::{parse, read_body, BodyRequest};
use super::buyer::{identify, named_user, reader, Buyer, BuyerId, Reader};
use super::purchase::escape_json_into;
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
    let mut user = Vec::with_capacity(order.user_id.len() + 2);
    escape_json_into(&order.user_id, &mut |part: &[u8]| {
        user.extend_from_slice(part)
    });
    // Escaping keeps valid UTF-8 valid.
    let user = String::from_utf8(user).unwrap_or_default();
    let mut body = String::with_capacity(192 + user.len());
    let _ = write!(
        body,
        "{{\"order_id\":\"{}\",\"sku\":\"{}\",\"user_id\":\"{user}\",\"qty\":{},\"state\":\"{}\",\"created_at_ms\":{},\"expires_at_ms\":{}}}",
        order.order_id.0,
        order.sku,
        order.qty,
        order.state.as_str(),
        order.created_at_ms,
        order.expires_at_ms
    );
    body
}

/// `?user_id=` (body mode), percent-decoded.
fn query_user_id(req: &Request<Incoming>) -> Result<Option<String>, Resp> {
    let Some(query) = req.uri().query() else {
        return Ok(None);
    };
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("user_id=") {
            return percent_decode(v)
                .map(Some)
                .ok_or_else(|| bad_request("user_id: invalid percent-encoding"));
        }
    }
    Ok(None)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `GET /v1/orders/{id}`: its buyer or an admin reads it. Anyone else gets
/// the same 404 as for an unknown order.
pub fn order_get(app: &App, core: &Core, id: &str, req: &Request<Incoming>) -> Resp {
    let user = match reader(app, req.headers()) {
        Ok(Reader::Admin) => None,
        Ok(Reader::Buyer(Buyer::Known(id))) => Some(id),
        Ok(Reader::Buyer(Buyer::Unauthenticated)) => {
            let named = match query_user_id(req) {
                Ok(named) => named,
                Err(resp) => return resp,
            };
            match named_user(named.as_deref(), "user_id (query)") {
                Ok(id) => Some(id),
                Err(resp) => return resp,
            }
        }
        Err(resp) => return resp,
    };
    let Some(order_id) = parse_order_id(id) else {
        return unknown_order();
    };
    let owns = |order: &OrderView| user.as_ref().is_none_or(|u| *order.user_id == *u.as_str());
    match core.engine.order(order_id) {
        Some(order) if owns(&order) => json(StatusCode::OK, order_json(&order)),
        _ => unknown_order(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    /// Body mode only.
    #[serde(default)]
    user_id: Option<String>,
}

/// `POST /v1/orders/{id}/cancel`: the buyer gives a reservation up. The
/// body may be empty when the credential names the buyer.
pub async fn order_cancel(app: &App, core: &Core, id: &str, r: BodyRequest) -> Resp {
    let buyer = match identify(app, r.req.headers(), None) {
        Ok(buyer) => buyer,
        Err(resp) => return resp,
    };
    let body = match read_body(&app.config.server, r).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let c: CancelBody = if body.trim_ascii().is_empty() {
        CancelBody { user_id: None }
    } else {
        match parse(&body) {
            Ok(c) => c,
            Err(resp) => return resp,
        }
    };
    let user: BuyerId = match (buyer, c.user_id) {
        (Buyer::Known(_), Some(_)) => {
            return bad_request("user_id: the credential names the buyer; leave it out of the body")
        }
        (Buyer::Known(id), None) => id,
        (Buyer::Unauthenticated, named) => match named_user(named.as_deref(), "user_id") {
            Ok(id) => id,
            Err(resp) => return resp,
        },
    };
    let Some(order_id) = parse_order_id(id) else {
        return unknown_order();
    };
    let mut sink = core.sink();
    let outcome = core
        .engine
        .cancel(order_id, user.as_str(), unix_ms(), &mut sink);
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
