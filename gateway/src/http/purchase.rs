//! Purchase: the hot path.
//!
//! Ordered to refuse early: the global and per-address rate limits and the
//! buyer's credential (no body read), the declared type and length, then
//! body read and parse, then the per-user limit, then the engine (whose own
//! first checks are read-only), then the wait for durability. The common answers are built without formatting:
//! rejections are static bytes, the admission body is written on the stack.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use std::net::IpAddr;

use engine::{Admission, PurchaseOutcome, Rejection, SKU_LEN_MAX, USER_ID_LEN_MAX};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::ack::acknowledge;
use super::body::{check_body_type, check_content_length, collect_body, parse};
use super::buyer::{identify, named_user, Buyer};
use super::head::BodyType;
use super::purchase_body::PurchaseBody;
use super::response::{
    bad_request, json, json_static, log_unavailable, rate_limited, static_error_body, unavailable,
    unknown_sku, Resp,
};
use crate::app::{unix_ms, App, Core};
use crate::wal::Ticket;

/// Longest admission body: its fixed text (81 bytes), a sku, a user id
/// escaped (at most 6 bytes per byte, `\u00XX`) and three integers of up to
/// 20 digits.
const ADMITTED_BODY_MAX: usize = 81 + SKU_LEN_MAX + 6 * USER_ID_LEN_MAX + 3 * 20;

/// Longest `request_id` accepted.
pub const REQUEST_ID_LEN_MAX: usize = 64;

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

/// The sku a purchase path names, copied out of the request (at most
/// [`SKU_LEN_MAX`] bytes; a longer one is invalid anyway). The URI is a
/// slice of hyper's read buffer, and holding it across the durability wait
/// would make hyper copy that buffer when it reads ahead.
pub(crate) struct PathSku {
    bytes: [u8; SKU_LEN_MAX],
    /// Length of `bytes`; 0 when the path's sku was too long to copy, which
    /// the engine refuses as invalid like any other bad sku.
    len: u8,
}

// `PathSku::len` holds a sku's length.
const _: () = assert!(SKU_LEN_MAX <= u8::MAX as usize);

impl PathSku {
    #[inline]
    pub(crate) fn copy(sku: &str) -> PathSku {
        let mut bytes = [0u8; SKU_LEN_MAX];
        let len = if sku.len() <= SKU_LEN_MAX {
            bytes[..sku.len()].copy_from_slice(sku.as_bytes());
            sku.len() as u8
        } else {
            0
        };
        PathSku { bytes, len }
    }

    #[inline]
    fn as_str(&self) -> &str {
        // Copied whole from a `&str` (or empty): always valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

/// What the purchase path keeps of its request: the body and the sku. The
/// headers are not kept, for the same reason as the URI (see [`PathSku`]).
pub(crate) struct Purchase {
    body: Incoming,
    sku: PathSku,
    /// Who buys, from the credential (read before the body).
    buyer: Buyer,
    /// The rate limiter's clock when the request came (0 when it is off).
    now: u64,
}

impl Purchase {
    /// The global and per-address rate limits, the buyer's credential,
    /// then the declared body type and length (in that order: a refusal by
    /// the limiter is the cheapest, and a bot without a token is refused
    /// before anything of it is read); then takes the request apart.
    #[inline]
    pub(crate) fn new(
        app: &App,
        peer: IpAddr,
        sku: PathSku,
        body_type: BodyType,
        req: Request<Incoming>,
    ) -> Result<Purchase, Resp> {
        let limiter = &app.limiter;
        let now = if limiter.enabled() {
            limiter.now_ns()
        } else {
            0
        };
        if let Err(retry) = limiter.check_global(now) {
            return Err(rate_limited(&app.metrics, retry));
        }
        if limiter.purchase_ips.is_some() {
            let ip = app.client_ip(peer, req.headers());
            if let Err(retry) = limiter.check_purchase_ip(ip, now) {
                return Err(rate_limited(&app.metrics, retry));
            }
        }
        let buyer = identify(app, req.headers(), Some(sku.as_str()))?;
        if app.core().is_some_and(|core| app.export_lagging(core)) {
            app.export.refused_purchase();
            return Err(unavailable(
                "the order export lags (export.max_lag_bytes); retry shortly",
            ));
        }
        check_body_type(body_type)?;
        check_content_length(&app.config.server, req.body())?;
        Ok(Purchase {
            body: req.into_body(),
            sku,
            buyer,
            now,
        })
    }
}

/// The purchase hot path, in two halves. Everything up to the engine's
/// answer, and the answer's body, is done synchronously in [`admit`]; what
/// the future holds across the durability wait is a ticket and that body.
pub(crate) async fn purchase(app: &App, p: Purchase) -> Resp {
    // The router answered 503 while recovering; once set, the core stays.
    let Some(core) = app.core() else {
        return unavailable("recovery in progress");
    };
    let Purchase {
        body,
        sku,
        buyer,
        now,
    } = p;
    let bytes = match collect_body(&app.config.server, body).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let sku = sku.as_str();
    // The body is not held across the wait either (see `Purchase`).
    let admitted = admit(app, core, sku, &buyer, &bytes, now);
    drop(bytes);
    let admitted = match admitted {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    if let Err(resp) = acknowledge(&app.metrics, core, admitted.ticket).await {
        return resp;
    }
    let counter = if admitted.status == StatusCode::CREATED {
        &app.metrics.admissions
    } else {
        &app.metrics.replays
    };
    counter.fetch_add(1, Ordering::Relaxed);
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
#[inline]
fn admit(
    app: &App,
    core: &Core,
    sku: &str,
    buyer: &Buyer,
    bytes: &[u8],
    now: u64,
) -> Result<Admitted, Resp> {
    // Parsed in place: `request_id` borrows from hyper's buffer only until
    // this returns, and the caller drops that buffer before its wait.
    let p = match PurchaseBody::parse_plain(bytes) {
        Some(p) => p,
        None => parse::<PurchaseBody<'_>>(bytes)?,
    };
    let named;
    let user_id = match buyer {
        Buyer::Known(_) if p.user_id.is_some() => {
            return Err(bad_request(
                "user_id: the credential names the buyer; leave it out of the body",
            ));
        }
        Buyer::Known(id) => id.as_str(),
        Buyer::Unauthenticated => {
            named = named_user(p.user_id.as_deref(), "user_id")?;
            named.as_str()
        }
    };
    if let Err(retry) = app.limiter.check_user(user_id, now) {
        return Err(rate_limited(&app.metrics, retry));
    }
    let request_id = p.request_id.as_deref().map(check_request_id).transpose()?;
    let mut sink = core.sink();
    let outcome = core
        .engine
        .purchase(sku, user_id, p.qty, request_id, unix_ms(), &mut sink);
    let (status, admission) = match outcome {
        PurchaseOutcome::Admitted(a) => (StatusCode::CREATED, a),
        PurchaseOutcome::Replayed(a) => (StatusCode::OK, a),
        PurchaseOutcome::Rejected(r) => {
            app.metrics.rejection(r);
            return Err(rejection(r));
        }
    };
    let body = admitted_body(&admission, sku, user_id);
    Ok(Admitted {
        status,
        ticket: sink.ticket(),
        body,
    })
}

/// The 201/200 body of an admission. Built by hand on the stack: `write!`
/// into a `String` cost ~1,300 instructions and two allocations per
/// admission; this is one allocation. The user id is any string, so it is
/// escaped as JSON.
#[inline]
fn admitted_body(admission: &Admission, sku: &str, user_id: &str) -> Bytes {
    let mut ints = [itoa::Buffer::new(); 3];
    let [order_id, qty, expires] = &mut ints;
    let mut buf = [0u8; ADMITTED_BODY_MAX];
    let mut len = 0;
    let mut put = |part: &[u8]| {
        buf[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    };
    put(b"{\"status\":\"admitted\",\"order_id\":\"");
    put(order_id.format(admission.order_id.0).as_bytes());
    put(b"\",\"sku\":\"");
    put(sku.as_bytes());
    put(b"\",\"user_id\":\"");
    escape_json_into(user_id, &mut put);
    put(b"\",\"qty\":");
    put(qty.format(admission.qty).as_bytes());
    put(b",\"expires_at_ms\":");
    put(expires.format(admission.expires_at_ms).as_bytes());
    put(b"}");
    Bytes::copy_from_slice(&buf[..len])
}

/// Writes `s` escaped as the inside of a JSON string: `"` and `\\` by a
/// backslash, control characters as `\u00XX`, everything else as it is.
#[inline]
pub(crate) fn escape_json_into(s: &str, put: &mut impl FnMut(&[u8])) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut control = *b"\\u0000";
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x00..=0x1f => {
                control[4] = HEX[usize::from(b >> 4)];
                control[5] = HEX[usize::from(b & 15)];
                &control
            }
            _ => continue,
        };
        put(&bytes[start..i]);
        put(escaped);
        start = i + 1;
    }
    put(&bytes[start..]);
}

/// The answer to an engine rejection. The common ones, above all `sold_out`
/// (most responses of a flash sale), are static bytes: no allocation, no
/// formatting, no escaping on the path that must be cheapest.
#[inline]
pub(crate) fn rejection(r: Rejection) -> Resp {
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
        Rejection::InvalidUser => {
            return bad_request(&format!("user_id: must be 1 to {USER_ID_LEN_MAX} bytes"))
        }
        Rejection::UsersFull => {
            return unavailable("the engine holds as many distinct buyers as it can")
        }
        Rejection::Unavailable(_) => return log_unavailable(),
    };
    json_static(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response::body_bytes;

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
            Rejection::InvalidUser,
            Rejection::UsersFull,
            Rejection::Unavailable(engine::SinkError::Full),
        ];
        for r in all {
            let bytes = body_bytes(&rejection(r));
            let v: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
            let want = match r {
                Rejection::InvalidSku | Rejection::InvalidQuantity | Rejection::InvalidUser => {
                    "bad_request"
                }
                Rejection::UsersFull => "unavailable",
                _ => r.as_str(),
            };
            assert_eq!(v["status"], want, "{r:?}");
            assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{r:?}");
        }
    }

    /// The longest admission body (a sku of the longest length, every
    /// number at its maximum) fits the stack buffer, and is the JSON serde
    /// would write.
    #[test]
    fn admitted_body_fits_at_the_extremes() {
        let sku = "s".repeat(SKU_LEN_MAX);
        let admission = Admission {
            order_id: engine::OrderId(u64::MAX),
            qty: u32::MAX,
            created_at_ms: u64::MAX,
            expires_at_ms: u64::MAX,
        };
        let controls: String = (0u8..0x20)
            .map(char::from)
            .cycle()
            .take(USER_ID_LEN_MAX)
            .collect();
        for user in [controls.as_str(), &"\"".repeat(128), "ü漢🙂 \\/", "u_81723"] {
            let body = admitted_body(&admission, &sku, user);
            let want = serde_json::json!({
                "status": "admitted",
                "order_id": u64::MAX.to_string(),
                "sku": sku,
                "user_id": user,
                "qty": u32::MAX,
                "expires_at_ms": u64::MAX,
            });
            let got: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(got, want);
            assert!(body.len() <= ADMITTED_BODY_MAX);
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
    fn request_ids_are_printable_ascii() {
        assert!(check_request_id("abc-123 ~").is_ok());
        assert!(check_request_id(&"x".repeat(64)).is_ok());
        assert!(check_request_id(&"x".repeat(65)).is_err());
        assert!(check_request_id("").is_err());
        assert!(check_request_id("tab\t").is_err());
        assert!(check_request_id("é").is_err());
    }
}
