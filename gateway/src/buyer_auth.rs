//! Buyer authentication: who a buyer is, from the credential their request
//! carries, per `[buyer_auth] mode`. In jwt mode that is a signed token's
//! `sub`, checked here; in header mode the header an upstream gateway set;
//! in body mode the client's own word (benchmarks and tests only).
//!
//! **The algorithm is the configuration's.** A token's `alg` header never
//! chooses it: a token signed any other way (`none`, HS256 when a public key
//! is configured, an asymmetric one when a secret is) is refused, and the
//! key's family must match the algorithm. Claims are checked only after the
//! signature: `exp` (required), `nbf`, `iat`, `iss` and `aud` when
//! configured, with `leeway_s`; `sub` is 1 to 128 bytes; an optional `skus`
//! list limits which sales the token may buy.
//!
//! Why a token was refused is a [`AuthFailure`]: counted by reason in
//! metrics and logged at debug, never told to the client.
//!
//! Reads the key files at start ([`BuyerAuth::load`]); knows nothing of HTTP.

use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{BuyerAuthConfig, BuyerAuthMode, JwtAlgorithm};

engine::labelled_enum! {
    /// Why a buyer's credential was refused: the label of
    /// `flashsale_buyer_auth_rejections_total`.
    pub enum AuthFailure {
        Missing => "missing",
        Malformed => "malformed",
        BadSignature => "bad_signature",
        WrongAlgorithm => "wrong_algorithm",
        Expired => "expired",
        NotYetValid => "not_yet_valid",
        IssuedInFuture => "issued_in_future",
        WrongIssuer => "wrong_issuer",
        WrongAudience => "wrong_audience",
        BadSubject => "bad_subject",
        MissingSkuClaim => "missing_sku_claim",
        SkuNotAllowed => "sku_not_allowed",
    }
}

impl AuthFailure {
    /// Whether the credential is fine but does not cover this sale (403,
    /// `insufficient_scope`), rather than not a credential at all (401).
    pub fn is_scope(self) -> bool {
        match self {
            AuthFailure::SkuNotAllowed => true,
            AuthFailure::Missing
            | AuthFailure::Malformed
            | AuthFailure::BadSignature
            | AuthFailure::WrongAlgorithm
            | AuthFailure::Expired
            | AuthFailure::NotYetValid
            | AuthFailure::IssuedInFuture
            | AuthFailure::WrongIssuer
            | AuthFailure::WrongAudience
            | AuthFailure::BadSubject
            | AuthFailure::MissingSkuClaim => false,
        }
    }
}

/// The claims a buyer token carries (and a minted one holds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyerClaims {
    #[serde(default)]
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The SKUs this token may buy; absent = any (unless required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skus: Option<Vec<String>>,
}

/// A verified token: its user, and the SKUs it may buy (`None` = any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedBuyer {
    pub user_id: String,
    pub skus: Option<Vec<String>>,
}

impl VerifiedBuyer {
    /// Whether this token may buy `sku`.
    pub fn allows(&self, sku: &str) -> bool {
        self.skus
            .as_ref()
            .is_none_or(|skus| skus.iter().any(|s| s == sku))
    }
}

/// Why the key material could not be loaded: start-up stops.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuyerAuthError {
    #[error("buyer_auth: {0}")]
    Config(String),
    #[error("buyer_auth.{key}: reading {path}: {source}")]
    Read {
        key: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Checks buyer tokens against the configured key and claims.
pub struct JwtVerifier {
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
    leeway_s: u64,
    require_sku_claim: bool,
}

/// How this server learns who a buyer is.
pub enum BuyerAuth {
    Jwt(Box<JwtVerifier>),
    /// The header an upstream gateway names the user in.
    Header(hyper::header::HeaderName),
    Body,
}

fn algorithm_of(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::Hs256 => Algorithm::HS256,
        JwtAlgorithm::EdDsa => Algorithm::EdDSA,
        JwtAlgorithm::Es256 => Algorithm::ES256,
    }
}

impl BuyerAuth {
    /// Builds the configured mode, reading key files. jwt mode without key
    /// material, or with the wrong kind for its algorithm, is an error.
    pub fn load(config: &BuyerAuthConfig) -> Result<BuyerAuth, BuyerAuthError> {
        match config.mode {
            BuyerAuthMode::Body => Ok(BuyerAuth::Body),
            BuyerAuthMode::Header => {
                hyper::header::HeaderName::from_bytes(config.user_header.as_bytes())
                    .map(BuyerAuth::Header)
                    .map_err(|_| BuyerAuthError::Config("user_header is not a header name".into()))
            }
            BuyerAuthMode::Jwt => Ok(BuyerAuth::Jwt(Box::new(JwtVerifier::load(config)?))),
        }
    }
}

/// The HS256 secret from `secret` or `secret_file` (exactly one).
pub fn hs256_secret(config: &BuyerAuthConfig) -> Result<Vec<u8>, BuyerAuthError> {
    let secret =
        match (&config.secret, &config.secret_file) {
            (Some(s), None) => s.as_bytes().to_vec(),
            (None, Some(path)) => {
                let mut bytes = read(path, "secret_file")?;
                while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    bytes.pop();
                }
                bytes
            }
            (Some(_), Some(_)) => {
                return Err(BuyerAuthError::Config(
                    "set secret or secret_file, not both".into(),
                ))
            }
            (None, None) => return Err(BuyerAuthError::Config(
                "mode \"jwt\" with HS256 needs secret (FLASHSALE_BUYER_AUTH_SECRET) or secret_file"
                    .into(),
            )),
        };
    // RFC 7518 §3.2: a key at least as long as the hash.
    if secret.len() < 32 {
        return Err(BuyerAuthError::Config(
            "the HS256 secret must be at least 32 bytes".into(),
        ));
    }
    Ok(secret)
}

fn read(path: &Path, key: &'static str) -> Result<Vec<u8>, BuyerAuthError> {
    std::fs::read(path).map_err(|source| BuyerAuthError::Read {
        key,
        path: path.display().to_string(),
        source,
    })
}

impl JwtVerifier {
    pub fn load(config: &BuyerAuthConfig) -> Result<JwtVerifier, BuyerAuthError> {
        let algorithm = algorithm_of(config.algorithm);
        let key = match config.algorithm {
            JwtAlgorithm::Hs256 => {
                if config.public_key_file.is_some() {
                    return Err(BuyerAuthError::Config(
                        "public_key_file is for EdDSA or ES256; HS256 takes a secret".into(),
                    ));
                }
                DecodingKey::from_secret(&hs256_secret(config)?)
            }
            JwtAlgorithm::EdDsa | JwtAlgorithm::Es256 => {
                if config.secret.is_some() || config.secret_file.is_some() {
                    return Err(BuyerAuthError::Config(format!(
                        "{} takes public_key_file, not a secret",
                        config.algorithm.as_str()
                    )));
                }
                let Some(path) = &config.public_key_file else {
                    return Err(BuyerAuthError::Config(format!(
                        "mode \"jwt\" with {} needs public_key_file",
                        config.algorithm.as_str()
                    )));
                };
                let pem = read(path, "public_key_file")?;
                let parsed = match config.algorithm {
                    JwtAlgorithm::EdDsa => DecodingKey::from_ed_pem(&pem),
                    JwtAlgorithm::Es256 | JwtAlgorithm::Hs256 => DecodingKey::from_ec_pem(&pem),
                };
                parsed.map_err(|e| {
                    BuyerAuthError::Config(format!("public_key_file {}: {e}", path.display()))
                })?
            }
        };
        Ok(Self::new(algorithm, key, config))
    }

    fn new(algorithm: Algorithm, key: DecodingKey, config: &BuyerAuthConfig) -> JwtVerifier {
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.leeway = config.leeway_s;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // A configured iss or aud must be present, not only right when it is.
        let mut required = vec!["exp"];
        required.extend(config.issuer.as_ref().map(|_| "iss"));
        required.extend(config.audience.as_ref().map(|_| "aud"));
        validation.set_required_spec_claims(&required);
        match &config.issuer {
            Some(iss) => validation.set_issuer(&[iss]),
            None => validation.iss = None,
        }
        validation.validate_aud = config.audience.is_some();
        if let Some(aud) = &config.audience {
            validation.set_audience(&[aud]);
        }
        JwtVerifier {
            algorithm,
            key,
            validation,
            leeway_s: config.leeway_s,
            require_sku_claim: config.require_sku_claim,
        }
    }

    /// Verifies `token` at `now_s` (seconds since the epoch; `exp` and
    /// `nbf` are checked by the library against the system clock, `iat`
    /// here against `now_s`).
    pub fn verify(&self, token: &[u8], now_s: u64) -> Result<VerifiedBuyer, AuthFailure> {
        let token = std::str::from_utf8(token).map_err(|_| AuthFailure::Malformed)?;
        let data = jsonwebtoken::decode::<BuyerClaims>(token, &self.key, &self.validation)
            .map_err(|e| self.failure(token, e.kind()))?;
        let claims = data.claims;
        if claims
            .iat
            .is_some_and(|iat| iat > now_s.saturating_add(self.leeway_s))
        {
            return Err(AuthFailure::IssuedInFuture);
        }
        if !engine::valid_user_id(&claims.sub) {
            return Err(AuthFailure::BadSubject);
        }
        if self.require_sku_claim && claims.skus.is_none() {
            return Err(AuthFailure::MissingSkuClaim);
        }
        Ok(VerifiedBuyer {
            user_id: claims.sub,
            skus: claims.skus,
        })
    }

    /// The reason for a library error. A header the library cannot read
    /// because of its `alg` (`none`, an unknown name) is a wrong algorithm.
    fn failure(&self, token: &str, kind: &ErrorKind) -> AuthFailure {
        match kind {
            ErrorKind::InvalidSignature => AuthFailure::BadSignature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::MissingAlgorithm
            | ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidEddsaKey
            | ErrorKind::InvalidRsaKey(_) => AuthFailure::WrongAlgorithm,
            ErrorKind::ExpiredSignature => AuthFailure::Expired,
            ErrorKind::ImmatureSignature => AuthFailure::NotYetValid,
            ErrorKind::InvalidIssuer => AuthFailure::WrongIssuer,
            ErrorKind::InvalidAudience => AuthFailure::WrongAudience,
            ErrorKind::InvalidSubject => AuthFailure::BadSubject,
            ErrorKind::Json(_) if self.header_names_other_alg(token) => AuthFailure::WrongAlgorithm,
            // A mapping, not an action: any other error (bad base64 or
            // JSON, a missing exp) means the token is not well formed.
            _ => AuthFailure::Malformed,
        }
    }

    /// Whether the token's header parses as JSON with an `alg` other than
    /// ours (only asked on the error path).
    fn header_names_other_alg(&self, token: &str) -> bool {
        use base64::Engine as _;
        #[derive(Deserialize)]
        struct Alg {
            alg: String,
        }
        let Some(head) = token.split('.').next() else {
            return false;
        };
        let Ok(json) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(head) else {
            return false;
        };
        serde_json::from_slice::<Alg>(&json).is_ok_and(|h| {
            serde_json::to_value(self.algorithm)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                != Some(h.alg)
        })
    }
}

/// Mints an HS256 token (the development tool `flashsale token`, the tests).
pub fn mint_hs256(secret: &[u8], claims: &BuyerClaims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing of serializable claims cannot fail")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SECRET: &[u8] = b"a-unit-test-secret-of-32-bytes-or-more";

    fn verifier() -> JwtVerifier {
        let mut config = crate::Config::for_tests("/unused").buyer_auth;
        config.mode = BuyerAuthMode::Jwt;
        config.secret = Some(String::from_utf8(SECRET.to_vec()).unwrap());
        config.leeway_s = 0;
        JwtVerifier::load(&config).unwrap()
    }

    fn now() -> u64 {
        crate::app::unix_ms() / 1000
    }

    fn valid() -> String {
        mint_hs256(
            SECRET,
            &BuyerClaims {
                sub: "alice".into(),
                exp: now() + 600,
                nbf: None,
                iat: Some(now()),
                iss: None,
                aud: None,
                skus: Some(vec!["a".into()]),
            },
        )
    }

    #[test]
    fn a_valid_token_names_its_user_and_skus() {
        let buyer = verifier().verify(valid().as_bytes(), now()).unwrap();
        assert_eq!(buyer.user_id, "alice");
        assert!(buyer.allows("a"));
        assert!(!buyer.allows("b"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        /// Any bytes at all: an error, never a panic.
        #[test]
        fn arbitrary_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            prop_assert!(verifier().verify(&bytes, now()).is_err());
        }

        /// A valid token with one byte changed is refused (the signature
        /// covers header and claims; a changed signature does not verify).
        #[test]
        fn a_changed_byte_is_refused(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let token = valid();
            let mut bytes = token.clone().into_bytes();
            let i = at.index(bytes.len());
            bytes[i] = byte;
            prop_assume!(bytes != token.as_bytes());
            // Base64 of the last character may carry unused bits: a change
            // there can decode to the same signature, which is not a forgery.
            let result = verifier().verify(&bytes, now());
            if i + 1 < bytes.len() {
                prop_assert!(result.is_err(), "accepted with byte {} changed", i);
            }
        }

        /// Tokens built of random base64url parts never verify and never panic.
        #[test]
        fn random_parts_are_refused(parts in prop::collection::vec("[A-Za-z0-9_-]{0,60}", 0..5)) {
            let token = parts.join(".");
            prop_assert!(verifier().verify(token.as_bytes(), now()).is_err());
        }
    }
}
