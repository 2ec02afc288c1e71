//! The slice of the flashsale HTTP API (see API.md) the harness speaks:
//! response shapes and the admin calls used to set up and inspect sales.

use crate::client::{ClientConn, Response, TransportError};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::Method;
use serde::{Deserialize, Serialize};

/// A sale as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleDoc {
    pub sku: String,
    pub stock: u64,
    pub remaining: u64,
    pub reserved: u64,
    pub paid: u64,
    pub per_user_limit: u32,
    #[serde(default)]
    pub reservation_ttl_ms: u64,
    #[serde(default)]
    pub state: String,
}

/// An order as the server reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDoc {
    pub order_id: String,
    pub sku: String,
    /// The server's user ids are strings; the harness's buyers are the
    /// decimal strings of its numeric ids.
    #[serde(with = "decimal_string")]
    pub user_id: u64,
    pub qty: u32,
    pub state: String,
    #[serde(default)]
    pub expires_at_ms: u64,
}

/// The fields of any response body the harness looks at. Admissions carry
/// `status` and `order_id`, orders carry `state`, errors carry `status`.
#[derive(Debug, Default, Deserialize)]
pub struct HttpReply {
    pub status: Option<String>,
    pub state: Option<String>,
    pub order_id: Option<String>,
    pub expires_at_ms: Option<u64>,
}

impl HttpReply {
    /// Parses leniently: a body that isn't the JSON we expect yields an empty
    /// reply, which the caller then counts as unexpected.
    pub fn parse(body: &[u8]) -> HttpReply {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// The label a response is counted under in the report.
    pub fn label(&self) -> &str {
        self.status
            .as_deref()
            .or(self.state.as_deref())
            .unwrap_or("-")
    }
}

/// Current wall-clock time in ms since the Unix epoch, as the server uses.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn describe(r: &Result<Response, TransportError>) -> String {
    match r {
        Ok(r) => format!("HTTP {} {}", r.code, String::from_utf8_lossy(&r.body)),
        Err(e) => e.label().to_string(),
    }
}

/// Admin: creates a sale and returns it as created.
pub async fn create_sale(
    conn: &mut ClientConn,
    admin: &HeaderValue,
    sku: &str,
    stock: u64,
    per_user_limit: u32,
    reservation_ttl_ms: u64,
) -> Result<SaleDoc> {
    let body = serde_json::json!({
        "sku": sku,
        "stock": stock,
        "per_user_limit": per_user_limit,
        "reservation_ttl_ms": reservation_ttl_ms,
    });
    let r = conn
        .send(
            Method::POST,
            "/v1/admin/sales",
            Some(Bytes::from(body.to_string())),
            Some(admin),
        )
        .await;
    match &r {
        Ok(resp) if resp.code == 201 => serde_json::from_slice(&resp.body)
            .with_context(|| format!("creating sale {sku}: unparsable sale {}", describe(&r))),
        _ => bail!("creating sale {sku}: expected 201, got {}", describe(&r)),
    }
}

/// Reads one sale.
pub async fn get_sale(conn: &mut ClientConn, sku: &str) -> Result<SaleDoc> {
    let r = conn
        .send(Method::GET, &format!("/v1/sales/{sku}"), None, None)
        .await;
    match &r {
        Ok(resp) if resp.code == 200 => serde_json::from_slice(&resp.body)
            .with_context(|| format!("reading sale {sku}: unparsable sale {}", describe(&r))),
        _ => bail!("reading sale {sku}: expected 200, got {}", describe(&r)),
    }
}

/// What GET /v1/orders/{id} said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderLookup {
    Found(OrderDoc),
    /// 404: the server does not know an order it acknowledged.
    Missing,
    /// Anything else, described.
    Failed(String),
}

/// Admin: reads one order, retrying transport errors and 503s a few times
/// because verification must not fail on a transient hiccup.
pub async fn get_order(conn: &mut ClientConn, admin: &HeaderValue, order_id: &str) -> OrderLookup {
    let path = format!("/v1/orders/{order_id}");
    let mut last = String::new();
    for attempt in 0..5u32 {
        if attempt > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
        }
        let r = conn.send(Method::GET, &path, None, Some(admin)).await;
        match &r {
            Ok(resp) if resp.code == 200 => {
                return match serde_json::from_slice(&resp.body) {
                    Ok(o) => OrderLookup::Found(o),
                    Err(e) => OrderLookup::Failed(format!("unparsable order: {e}")),
                }
            }
            Ok(resp) if resp.code == 404 => return OrderLookup::Missing,
            Ok(resp) if resp.code == 503 || resp.code == 429 => last = describe(&r),
            Ok(_) => return OrderLookup::Failed(describe(&r)),
            Err(_) => last = describe(&r),
        }
    }
    OrderLookup::Failed(last)
}

/// A `u64` written as its decimal string, as the server writes the user
/// ids of the harness's buyers.
mod decimal_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&n.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom(format!("user_id {text:?} is not one of ours")))
    }
}
