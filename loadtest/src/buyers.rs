//! How the harness proves who its simulated buyers are, matching the
//! server's `[buyer_auth] mode`: in jwt mode it mints an HS256 token per
//! buyer from the shared secret (the server's `buyer_auth.secret`); in body
//! mode it names the buyer in the body. Buyer ids are the decimal strings
//! of the harness's numeric user ids, so reports keep their numbers.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hyper::header::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

/// How a token lives: long enough for any run.
const TOKEN_TTL_S: u64 = 3600;

/// The credentials of simulated buyers.
#[derive(Clone)]
pub enum BuyerCreds {
    /// `user_id` in the body (the server's body mode).
    Body,
    /// A token per buyer, signed with this secret.
    Jwt(EncodingKey),
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
}

/// Hand-written: the key is a secret.
impl std::fmt::Debug for BuyerCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl BuyerCreds {
    pub fn jwt(secret: &str) -> BuyerCreds {
        BuyerCreds::Jwt(EncodingKey::from_secret(secret.as_bytes()))
    }

    pub fn label(&self) -> &'static str {
        match self {
            BuyerCreds::Body => "body",
            BuyerCreds::Jwt(_) => "jwt",
        }
    }

    /// The `Authorization` header for buyer `user_id`, in jwt mode.
    pub fn authorization(&self, user_id: u64) -> Result<Option<HeaderValue>> {
        let BuyerCreds::Jwt(key) = self else {
            return Ok(None);
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("clock before 1970")?
            .as_secs();
        let sub = user_id.to_string();
        let claims = Claims {
            sub: &sub,
            exp: now + TOKEN_TTL_S,
            iat: now,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
            .context("signing a buyer token")?;
        Ok(Some(crate::client::bearer(&token)?))
    }

    /// A JSON body for buyer `user_id` with the other `fields`: the user is
    /// in it only in body mode (in jwt mode the token names them, and the
    /// server refuses a body that names anyone).
    pub fn body(&self, user_id: u64, mut fields: serde_json::Value) -> String {
        if let (BuyerCreds::Body, Some(map)) = (self, fields.as_object_mut()) {
            map.insert("user_id".into(), user_id.to_string().into());
        }
        fields.to_string()
    }
}
