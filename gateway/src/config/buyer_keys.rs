//! The `[buyer_auth]` keys: how buyers prove who they are
//! (`crate::buyer_auth`). Part of the one table of keys (`keys.rs`'s
//! `KEYS`), in a file of its own for its size.

use std::path::PathBuf;

use super::key_kind::{ConfigKey, KeyKind};
use super::types::{BuyerAuthMode, JwtAlgorithm};

/// `[buyer_auth]`, between `[rate_limit]` and `[wal]`.
pub(super) static BUYER_AUTH_KEYS: &[ConfigKey] = &[
    ConfigKey {
        section: "buyer_auth",
        name: "mode",
        doc: "jwt (Bearer tokens), header (an upstream gateway's), body (benchmarks and tests only).",
        secret: false,
        kind: KeyKind::Choice {
            default: "jwt",
            choices: &BuyerAuthMode::NAMES,
            set: |c, v| c.buyer_auth.mode = BuyerAuthMode::named(v).expect("one of NAMES"),
            get: |c| c.buyer_auth.mode.as_str(),
        },
    },
    ConfigKey {
        section: "buyer_auth",
        name: "algorithm",
        doc: "The one algorithm tokens are signed with: HS256 (secret), EdDSA or ES256 (public_key_file).",
        secret: false,
        kind: KeyKind::Choice {
            default: "HS256",
            choices: &JwtAlgorithm::NAMES,
            set: |c, v| c.buyer_auth.algorithm = JwtAlgorithm::named(v).expect("one of NAMES"),
            get: |c| c.buyer_auth.algorithm.as_str(),
        },
    },
    ConfigKey {
        section: "buyer_auth",
        name: "secret",
        doc: "HS256 secret shared with the shop's login service (prefer FLASHSALE_BUYER_AUTH_SECRET).",
        secret: true,
        kind: KeyKind::OptionalText {
            max_bytes: 1024,
            shape: |_| Ok(()),
            set: |c, v| c.buyer_auth.secret = v.map(str::to_string),
            get: |c| c.buyer_auth.secret.as_deref(),
        },
    },
    ConfigKey {
        section: "buyer_auth",
        name: "secret_file",
        doc: "A file holding the HS256 secret instead (a trailing newline is ignored).",
        secret: false,
        kind: KeyKind::OptionalText {
            max_bytes: 4096,
            shape: |_| Ok(()),
            set: |c, v| c.buyer_auth.secret_file = v.map(PathBuf::from),
            get: |c| c.buyer_auth.secret_file.as_deref().and_then(|p| p.to_str()),
        },
    },
    ConfigKey {
        section: "buyer_auth",
        name: "public_key_file",
        doc: "PEM public key for EdDSA or ES256 tokens.",
        secret: false,
        kind: KeyKind::OptionalText {
            max_bytes: 4096,
            shape: |_| Ok(()),
            set: |c, v| c.buyer_auth.public_key_file = v.map(PathBuf::from),
            get: |c| c.buyer_auth.public_key_file.as_deref().and_then(|p| p.to_str()),
        },
    },
    ConfigKey {
        section: "buyer_auth",
        name: "issuer",
        doc: "The iss tokens must carry; empty = not checked.",
        secret: false,
        kind: KeyKind::OptionalText {
            max_bytes: 1024,
            shape: |_| Ok(()),
            set: |c, v| c.buyer_auth.issuer = v.map(str::to_string),
            get: |c| c.buyer_auth.issuer.as_deref(),
        },
    },
    ConfigKey {
        section: "buyer_auth",
        name: "audience",
        doc: "The aud tokens must carry; empty = not checked.",
        secret: false,
        kind: KeyKind::OptionalText {
            max_bytes: 1024,
            shape: |_| Ok(()),
            set: |c, v| c.buyer_auth.audience = v.map(str::to_string),
            get: |c| c.buyer_auth.audience.as_deref(),
        },
    },
    ConfigKey {
        section: "buyer_auth",
        name: "leeway_s",
        doc: "Clock skew allowed on exp, nbf and iat, in seconds.",
        secret: false,
        kind: KeyKind::Unsigned {
            default: 30,
            min: 0,
            max: 600,
            zero_allowed: true,
            set: |c, v| c.buyer_auth.leeway_s = v,
            get: |c| c.buyer_auth.leeway_s,
        },
    },
    ConfigKey {
        section: "buyer_auth",
        name: "user_header",
        doc: "Header mode: the header an upstream gateway names the user in.",
        secret: false,
        kind: KeyKind::Text {
            default: "x-user-id",
            max_bytes: 64,
            shape: |v| {
                hyper::header::HeaderName::from_bytes(v.as_bytes())
                    .map(|_| ())
                    .map_err(|_| format!("{v:?} is not a header name"))
            },
            set: |c, v| c.buyer_auth.user_header = v.to_ascii_lowercase(),
            get: |c| &c.buyer_auth.user_header,
        },
    },
    ConfigKey {
        section: "buyer_auth",
        name: "require_sku_claim",
        doc: "Refuse tokens without a skus claim (sale-bound tokens only).",
        secret: false,
        kind: KeyKind::Bool {
            default: false,
            set: |c, v| c.buyer_auth.require_sku_claim = v,
            get: |c| c.buyer_auth.require_sku_claim,
        },
    },
];
