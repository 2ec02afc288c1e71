//! Who a buyer is, per `[buyer_auth] mode`: the `sub` of a verified token
//! (jwt), the header an upstream gateway set (header), or nothing yet
//! (body: the handler reads the user from the body or query). A refusal is
//! one answer whatever its reason (401, or 403 for a token that does not
//! cover the sale); the reason is counted and logged at debug.

use engine::USER_ID_LEN_MAX;
use hyper::HeaderMap;

use super::auth::{credential, is_admin_token, Credential};
use super::response::{bad_request, buyer_forbidden, buyer_unauthorized, Resp};
use crate::app::{unix_ms, App};
use crate::buyer_auth::{AuthFailure, BuyerAuth};

/// A user id copied out of the request (the headers are not kept across
/// the body read, see `purchase::PathSku`): at most `USER_ID_LEN_MAX` bytes.
pub(crate) struct BuyerId {
    bytes: [u8; USER_ID_LEN_MAX],
    len: u8,
}

// `BuyerId::len` holds a user id's length.
const _: () = assert!(USER_ID_LEN_MAX <= u8::MAX as usize);

impl BuyerId {
    /// `None` unless `id` is a valid user id (1 to 128 bytes).
    #[inline]
    pub(crate) fn new(id: &str) -> Option<BuyerId> {
        if !engine::valid_user_id(id) {
            return None;
        }
        let mut bytes = [0u8; USER_ID_LEN_MAX];
        bytes[..id.len()].copy_from_slice(id.as_bytes());
        Some(BuyerId {
            bytes,
            len: id.len() as u8,
        })
    }

    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        // Copied whole from a `&str`: always valid UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

/// Who is asking, as far as the credential says.
pub(crate) enum Buyer {
    /// The credential names this user.
    Known(BuyerId),
    /// Body mode: the client names itself in the body or query.
    Unauthenticated,
}

/// The answer to a refused credential, counted by `why`.
pub(crate) fn refuse(app: &App, why: AuthFailure) -> Resp {
    app.metrics.buyer_auth_rejection(why);
    tracing::debug!(reason = why.as_str(), "buyer credential refused");
    if why.is_scope() {
        buyer_forbidden()
    } else {
        buyer_unauthorized()
    }
}

/// The buyer of a request, checked against `sku` when it buys one (a
/// token's `skus` claim). Body mode answers `Unauthenticated`.
#[inline]
pub(crate) fn identify(app: &App, headers: &HeaderMap, sku: Option<&str>) -> Result<Buyer, Resp> {
    match &app.buyer_auth {
        BuyerAuth::Body => Ok(Buyer::Unauthenticated),
        BuyerAuth::Header(name) => {
            let mut values = headers.get_all(name).iter();
            let (Some(value), None) = (values.next(), values.next()) else {
                return Err(refuse(app, AuthFailure::Missing));
            };
            std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(BuyerId::new)
                .map(Buyer::Known)
                .ok_or_else(|| refuse(app, AuthFailure::BadSubject))
        }
        BuyerAuth::Jwt(verifier) => {
            let token = match credential(headers)? {
                Credential::Bearer(token) => token,
                Credential::Absent => return Err(refuse(app, AuthFailure::Missing)),
                Credential::Unusable => return Err(refuse(app, AuthFailure::Malformed)),
            };
            let buyer = verifier
                .verify(token, unix_ms() / 1000)
                .map_err(|why| refuse(app, why))?;
            if sku.is_some_and(|sku| !buyer.allows(sku)) {
                return Err(refuse(app, AuthFailure::SkuNotAllowed));
            }
            BuyerId::new(&buyer.user_id)
                .map(Buyer::Known)
                .ok_or_else(|| refuse(app, AuthFailure::BadSubject))
        }
    }
}

/// Who reads an order: an admin (any order) or a buyer (their own).
pub(crate) enum Reader {
    Admin,
    Buyer(Buyer),
}

/// The reader of `GET /v1/orders/{id}`. An `Authorization` header that is
/// the admin token makes an admin. Otherwise, in jwt mode the header is the
/// buyer's token; in the other modes a presented credential must be the
/// admin token (a wrong one is a 401, not a buyer's read).
pub(crate) fn reader(app: &App, headers: &HeaderMap) -> Result<Reader, Resp> {
    let presented = credential(headers)?;
    if let Credential::Bearer(token) = presented {
        if is_admin_token(&app.config.server, token) {
            return Ok(Reader::Admin);
        }
    }
    match (&app.buyer_auth, presented) {
        (BuyerAuth::Jwt(_), _) => identify(app, headers, None).map(Reader::Buyer),
        (BuyerAuth::Header(_) | BuyerAuth::Body, Credential::Absent) => {
            identify(app, headers, None).map(Reader::Buyer)
        }
        (BuyerAuth::Header(_) | BuyerAuth::Body, Credential::Bearer(_) | Credential::Unusable) => {
            Err(super::response::unauthorized())
        }
    }
}

/// The user a body- or query-named request gives, checked.
pub(crate) fn named_user(given: Option<&str>, field: &str) -> Result<BuyerId, Resp> {
    match given {
        None => Err(bad_request(&format!(
            "{field}: required (buyer_auth.mode = \"body\")"
        ))),
        Some(id) => BuyerId::new(id)
            .ok_or_else(|| bad_request(&format!("{field}: must be 1 to {USER_ID_LEN_MAX} bytes"))),
    }
}
