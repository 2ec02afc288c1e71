//! Buyer authentication over HTTP: every way a credential is refused (each
//! a 401 with `WWW-Authenticate`, or 403 for a token that does not cover
//! the sale, counted by reason), ownership of orders by the credential's
//! user, string user ids, header mode, per-address purchase limits, and
//! arbitrary bytes in `Authorization`.

mod common;

use std::path::PathBuf;

use common::{Conn, Reply, TestServer};
use gateway::buyer_auth::{mint_hs256, AuthFailure, BuyerClaims};
use gateway::config::{BuyerAuthMode, Config, JwtAlgorithm, TrustedProxies};
use hyper::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn now() -> u64 {
    gateway::app::unix_ms() / 1000
}

fn claims(sub: &str) -> BuyerClaims {
    BuyerClaims {
        sub: sub.to_string(),
        exp: now() + 600,
        nbf: None,
        iat: Some(now()),
        iss: None,
        aud: None,
        skus: None,
    }
}

fn token(sub: &str) -> String {
    mint_hs256(SECRET.as_bytes(), &claims(sub))
}

fn key(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
}

fn jwt(c: &mut Config) {
    c.buyer_auth.mode = BuyerAuthMode::Jwt;
    c.buyer_auth.secret = Some(SECRET.to_string());
    c.buyer_auth.leeway_s = 5;
}

async fn server(tweak: impl FnOnce(&mut Config)) -> (TestServer, Conn) {
    let s = TestServer::start_with(tweak).await;
    let mut c = s.conn().await;
    for sku in ["a", "b"] {
        let body = format!(r#"{{"sku":"{sku}","stock":100,"per_user_limit":2}}"#);
        assert_eq!(c.create_sale(&body).await.status, 201);
    }
    (s, c)
}

async fn buy(c: &mut Conn, sku: &str, token: Option<&str>, body: &str) -> Reply {
    c.send(
        Method::POST,
        &format!("/v1/sales/{sku}/purchase"),
        Some(body),
        token,
    )
    .await
    .unwrap()
}

fn refused(r: &Reply, why: &str) {
    assert_eq!(r.status, 401, "{why}: {:?}", r.body);
    assert_eq!(r.code(), "unauthorized", "{why}");
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#),
        "{why}"
    );
    // One message for every reason: nothing to learn from it.
    assert_eq!(r.json()["error"], "a valid buyer credential is required");
}

fn counted(s: &TestServer, why: AuthFailure) -> u64 {
    s.app.metrics.buyer_auth_rejections_of(why)
}

/// Each rejection listed by the issue, with the reason it is counted as.
#[tokio::test]
async fn every_bad_token_is_a_401_counted_by_reason() {
    let (s, mut c) = server(|c| {
        jwt(c);
        c.buyer_auth.issuer = Some("https://shop.example".into());
        c.buyer_auth.audience = Some("flashsale".into());
    })
    .await;
    let good = |sub: &str| BuyerClaims {
        iss: Some("https://shop.example".into()),
        aud: Some("flashsale".into()),
        ..claims(sub)
    };
    let sign = |c: &BuyerClaims| mint_hs256(SECRET.as_bytes(), c);
    let valid = sign(&good("alice"));
    assert_eq!(buy(&mut c, "a", Some(&valid), "{}").await.status, 201);

    let hs384 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS384),
        &good("alice"),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let (_, rest) = valid.split_once('.').unwrap();
    // alg "none": a header naming no algorithm and an empty signature.
    let none_head = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = rest.split_once('.').unwrap().0;
    let alg_none = format!("{none_head}.{payload}.");
    // A character inside the signature (the last one may carry only unused
    // bits, and a change there is a base64 error, not a wrong signature).
    let mut bad_sig = valid.clone().into_bytes();
    let at = bad_sig.len() - 10;
    bad_sig[at] = if bad_sig[at] == b'A' { b'B' } else { b'A' };
    let bad_sig = String::from_utf8(bad_sig).unwrap();
    let other_secret = mint_hs256(b"another-secret-of-at-least-32-bytes!", &good("alice"));
    let expired = sign(&BuyerClaims {
        exp: now() - 60,
        ..good("alice")
    });
    let not_yet = sign(&BuyerClaims {
        nbf: Some(now() + 600),
        ..good("alice")
    });
    let from_the_future = sign(&BuyerClaims {
        iat: Some(now() + 600),
        ..good("alice")
    });
    let wrong_iss = sign(&BuyerClaims {
        iss: Some("https://evil.example".into()),
        ..good("alice")
    });
    let no_iss = sign(&BuyerClaims {
        iss: None,
        ..good("alice")
    });
    let no_aud = sign(&BuyerClaims {
        aud: None,
        ..good("alice")
    });
    let wrong_aud = sign(&BuyerClaims {
        aud: Some("another-service".into()),
        ..good("alice")
    });
    let long_sub = sign(&good(&"x".repeat(129)));
    let empty_sub = sign(&good(""));
    let no_exp = {
        let payload = serde_json::json!({
            "sub": "alice", "iss": "https://shop.example", "aud": "flashsale"
        });
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &payload,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let cases: Vec<(&str, Option<String>, AuthFailure)> = vec![
        ("no token", None, AuthFailure::Missing),
        (
            "malformed",
            Some("not.a.jwt".into()),
            AuthFailure::Malformed,
        ),
        ("one part", Some("abc".into()), AuthFailure::Malformed),
        ("bad signature", Some(bad_sig), AuthFailure::BadSignature),
        (
            "another secret",
            Some(other_secret),
            AuthFailure::BadSignature,
        ),
        ("alg none", Some(alg_none), AuthFailure::WrongAlgorithm),
        ("HS384", Some(hs384), AuthFailure::WrongAlgorithm),
        ("expired", Some(expired), AuthFailure::Expired),
        ("not yet valid", Some(not_yet), AuthFailure::NotYetValid),
        (
            "iat ahead",
            Some(from_the_future),
            AuthFailure::IssuedInFuture,
        ),
        ("wrong iss", Some(wrong_iss), AuthFailure::WrongIssuer),
        ("no iss", Some(no_iss), AuthFailure::Malformed),
        ("wrong aud", Some(wrong_aud), AuthFailure::WrongAudience),
        ("no aud", Some(no_aud), AuthFailure::Malformed),
        ("sub too long", Some(long_sub), AuthFailure::BadSubject),
        ("empty sub", Some(empty_sub), AuthFailure::BadSubject),
        ("no exp", Some(no_exp), AuthFailure::Malformed),
    ];
    for (why, token, reason) in cases {
        let before = counted(&s, reason);
        refused(&buy(&mut c, "a", token.as_deref(), "{}").await, why);
        assert_eq!(
            counted(&s, reason),
            before + 1,
            "{why} counted as {reason:?}"
        );
    }
    // Another scheme is no token either.
    let r = c
        .request(
            Method::POST,
            "/v1/sales/a/purchase",
            &[
                ("host", "x"),
                ("authorization", &format!("Basic {valid}")),
                ("content-type", "application/json"),
            ],
            "{}",
        )
        .await
        .unwrap();
    refused(&r, "Basic scheme");
    let metrics = c.get("/metrics").await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains(r#"flashsale_buyer_auth_rejections_total{reason="expired"} 1"#),
        "{text}"
    );
    // Nothing refused reached the engine.
    assert_eq!(c.get("/v1/sales/a").await.json()["reserved"], 1);
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// With an asymmetric algorithm, a token signed with HS256 using the
/// public key as its secret (the classic key confusion) is refused, and so
/// is one of the other asymmetric kind; a real EdDSA token is accepted.
#[tokio::test]
async fn hs_and_asymmetric_keys_are_never_confused() {
    let (s, mut c) = server(|c| {
        c.buyer_auth.mode = BuyerAuthMode::Jwt;
        c.buyer_auth.algorithm = JwtAlgorithm::EdDsa;
        c.buyer_auth.public_key_file = Some(key("ed25519-public.pem"));
    })
    .await;
    let private = std::fs::read(key("ed25519-private.pem")).unwrap();
    let eddsa = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims("ed-user"),
        &EncodingKey::from_ed_pem(&private).unwrap(),
    )
    .unwrap();
    assert_eq!(buy(&mut c, "a", Some(&eddsa), "{}").await.status, 201);
    let public = std::fs::read(key("ed25519-public.pem")).unwrap();
    let confused = mint_hs256(&public, &claims("ed-user"));
    let before = counted(&s, AuthFailure::WrongAlgorithm);
    refused(
        &buy(&mut c, "a", Some(&confused), "{}").await,
        "HS256 with the public key",
    );
    let ec = std::fs::read(key("ec-p256-private.pem")).unwrap();
    let es256 = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims("ed-user"),
        &EncodingKey::from_ec_pem(&ec).unwrap(),
    )
    .unwrap();
    refused(
        &buy(&mut c, "a", Some(&es256), "{}").await,
        "ES256 when EdDSA is set",
    );
    assert_eq!(counted(&s, AuthFailure::WrongAlgorithm), before + 2);
}

/// ES256 with its public key works, and a secret given with it is refused
/// at start, as is jwt mode without any key material.
#[tokio::test]
async fn es256_and_key_material_checks() {
    let (_s, mut c) = server(|c| {
        c.buyer_auth.mode = BuyerAuthMode::Jwt;
        c.buyer_auth.algorithm = JwtAlgorithm::Es256;
        c.buyer_auth.public_key_file = Some(key("ec-p256-public.pem"));
    })
    .await;
    let ec = std::fs::read(key("ec-p256-private.pem")).unwrap();
    let es256 = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims("ec-user"),
        &EncodingKey::from_ec_pem(&ec).unwrap(),
    )
    .unwrap();
    assert_eq!(buy(&mut c, "a", Some(&es256), "{}").await.status, 201);

    let dir = tempfile::tempdir().unwrap();
    let base = Config::for_tests(dir.path().join("wal"));
    let refuse = |tweak: &dyn Fn(&mut Config), want: &str| {
        let mut config = base.clone();
        config.buyer_auth.mode = BuyerAuthMode::Jwt;
        tweak(&mut config);
        let err = gateway::App::new(config)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains(want), "{err}");
    };
    refuse(&|_| {}, "needs secret");
    refuse(
        &|c| c.buyer_auth.secret = Some("short".into()),
        "at least 32 bytes",
    );
    refuse(
        &|c| {
            c.buyer_auth.algorithm = JwtAlgorithm::EdDsa;
            c.buyer_auth.secret = Some(SECRET.into());
        },
        "not a secret",
    );
    refuse(
        &|c| c.buyer_auth.public_key_file = Some(key("ed25519-public.pem")),
        "HS256 takes a secret",
    );
    refuse(
        &|c| {
            c.buyer_auth.algorithm = JwtAlgorithm::Es256;
            c.buyer_auth.public_key_file = Some(key("missing.pem"));
        },
        "reading",
    );
    // A secret file works, its trailing newline ignored.
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let mut config = base.clone();
    config.buyer_auth.mode = BuyerAuthMode::Jwt;
    config.buyer_auth.secret_file = Some(file);
    assert!(gateway::App::new(config).is_ok());
}

/// A `skus` claim binds a token to those sales: another sku is a 403 with
/// `insufficient_scope`; `require_sku_claim` refuses tokens without one.
#[tokio::test]
async fn tokens_bound_to_a_sale() {
    let (s, mut c) = server(|c| {
        jwt(c);
        c.buyer_auth.require_sku_claim = true;
    })
    .await;
    let bound = mint_hs256(
        SECRET.as_bytes(),
        &BuyerClaims {
            skus: Some(vec!["a".into()]),
            ..claims("carol")
        },
    );
    assert_eq!(buy(&mut c, "a", Some(&bound), "{}").await.status, 201);
    let r = buy(&mut c, "b", Some(&bound), "{}").await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(r.code(), "forbidden");
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_scope""#)
    );
    assert_eq!(counted(&s, AuthFailure::SkuNotAllowed), 1);
    refused(
        &buy(&mut c, "a", Some(&token("carol")), "{}").await,
        "no skus claim",
    );
    assert_eq!(counted(&s, AuthFailure::MissingSkuClaim), 1);
    // A bound token still reads and cancels its own orders.
    let id = buy(&mut c, "a", Some(&bound), "{}").await.json()["order_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .send(Method::GET, &format!("/v1/orders/{id}"), None, Some(&bound))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

/// Order reads and cancels take the user from the token, never the body
/// or query: another buyer's valid token gets the 404 of an unknown order
/// on both; the admin token reads any order.
#[tokio::test]
async fn only_the_owner_reads_and_cancels() {
    let (_s, mut c) = server(jwt).await;
    let (alice, mallory) = (token("alice"), token("mallory"));
    let r = buy(&mut c, "a", Some(&alice), r#"{"qty":2,"request_id":"r1"}"#).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.json()["order_id"].as_str().unwrap().to_string();
    let path = format!("/v1/orders/{id}");
    let mine = c
        .send(Method::GET, &path, None, Some(&alice))
        .await
        .unwrap();
    assert_eq!(mine.status, 200);
    assert_eq!(mine.json()["user_id"], "alice");
    let theirs = c
        .send(Method::GET, &path, None, Some(&mallory))
        .await
        .unwrap();
    assert_eq!(
        (theirs.status, theirs.code().as_str()),
        (404, "unknown_order")
    );
    let unknown = c
        .send(Method::GET, "/v1/orders/999999", None, Some(&mallory))
        .await
        .unwrap();
    assert_eq!(
        theirs.body, unknown.body,
        "the same 404 as an unknown order"
    );
    // The query cannot name another user in jwt mode.
    let q = c
        .send(
            Method::GET,
            &format!("{path}?user_id=alice"),
            None,
            Some(&mallory),
        )
        .await
        .unwrap();
    assert_eq!(q.status, 404);
    refused(&c.get(&format!("{path}?user_id=alice")).await, "query only");
    assert_eq!(c.admin_get(&path).await.status, 200);

    let cancel = format!("{path}/cancel");
    let r = c
        .send(Method::POST, &cancel, None, Some(&mallory))
        .await
        .unwrap();
    assert_eq!((r.status, r.code().as_str()), (404, "unknown_order"));
    // The body cannot name a user when the credential does.
    let r = c
        .send(
            Method::POST,
            &cancel,
            Some(r#"{"user_id":"alice"}"#),
            Some(&mallory),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    refused(
        &c.send(Method::POST, &cancel, Some(r#"{"user_id":"alice"}"#), None)
            .await
            .unwrap(),
        "cancel without a token",
    );
    assert_eq!(
        c.get("/v1/sales/a").await.json()["reserved"],
        2,
        "still alice's"
    );
    let r = c
        .send(Method::POST, &cancel, None, Some(&alice))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["state"], "cancelled");
    // A purchase body cannot name the buyer either.
    let r = buy(&mut c, "a", Some(&alice), r#"{"user_id":"mallory"}"#).await;
    assert_eq!(r.status, 400);
}

/// User ids are any string of 1 to 128 bytes: UUIDs, multibyte UTF-8,
/// quotes and control characters come back exactly; one token cannot
/// pass its limit however it asks.
#[tokio::test]
async fn string_user_ids_and_limits_through_tokens() {
    let (_s, mut c) = server(jwt).await;
    let longest = "é".repeat(64);
    for sub in [
        "550e8400-e29b-41d4-a716-446655440000",
        "ユーザー🙂",
        "a \"quoted\" \\ user\n",
        longest.as_str(),
    ] {
        let t = token(sub);
        let r = buy(&mut c, "a", Some(&t), r#"{"qty":2}"#).await;
        assert_eq!(r.status, 201, "{sub:?}: {:?}", r.body);
        assert_eq!(r.json()["user_id"], sub);
        let id = r.json()["order_id"].as_str().unwrap().to_string();
        let view = c.admin_get(&format!("/v1/orders/{id}")).await;
        assert_eq!(view.json()["user_id"], sub);
        // The limit is the user's: a second try with the same token fails.
        let again = buy(&mut c, "a", Some(&t), r#"{"qty":1}"#).await;
        assert_eq!(again.code(), "limit_exceeded", "{sub:?}");
    }
    // "ü" precomposed and decomposed are different users.
    for sub in ["ü", "u\u{308}"] {
        assert_eq!(
            buy(&mut c, "b", Some(&token(sub)), r#"{"qty":2}"#)
                .await
                .status,
            201
        );
    }
}

/// Header mode: the user is the configured header's value; without it, 401.
#[tokio::test]
async fn header_mode_takes_the_gateways_header() {
    let (s, mut c) = server(|c| {
        c.buyer_auth.mode = BuyerAuthMode::Header;
        c.buyer_auth.user_header = "x-user-id".into();
    })
    .await;
    let r = as_user(&mut c, "u_81723", Method::POST, "/v1/sales/a/purchase").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.json()["order_id"].as_str().unwrap().to_string();
    let path = format!("/v1/orders/{id}");
    assert_eq!(
        as_user(&mut c, "u_81723", Method::GET, &path).await.status,
        200
    );
    assert_eq!(
        as_user(&mut c, "u_other", Method::GET, &path).await.status,
        404
    );
    let r = c
        .request(
            Method::POST,
            "/v1/sales/a/purchase",
            &[("host", "x"), ("content-type", "application/json")],
            "{}",
        )
        .await
        .unwrap();
    refused(&r, "no header");
    assert_eq!(counted(&s, AuthFailure::Missing), 1);
}

async fn as_user(c: &mut Conn, user: &str, method: Method, path: &str) -> Reply {
    let h = [
        ("host", "x"),
        ("content-type", "application/json"),
        ("x-user-id", user),
    ];
    c.request(method, path, &h, "{}").await.unwrap()
}

/// Purchases per client address: different tokens from one address share
/// its bucket; behind a trusted proxy, `X-Forwarded-For` names the client,
/// and from anyone else it is ignored.
#[tokio::test]
async fn purchases_are_limited_per_address() {
    let (_s, mut c) = server(|c| {
        jwt(c);
        c.rate_limit.per_ip_rps = 1;
        c.rate_limit.per_ip_burst = 2;
        c.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
    })
    .await;
    let buy_from = |xff: &'static str, user: &str| {
        let auth = format!("Bearer {}", token(user));
        (xff, auth)
    };
    let mut statuses = Vec::new();
    for (i, xff) in ["198.51.100.7"; 3].into_iter().enumerate() {
        let (xff, auth) = buy_from(xff, &format!("bot-{i}"));
        let h = [
            ("host", "x"),
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
            ("x-forwarded-for", xff),
        ];
        statuses.push(
            c.request(Method::POST, "/v1/sales/a/purchase", &h, "{}")
                .await
                .unwrap()
                .status,
        );
    }
    assert_eq!(statuses, [201, 201, 429], "three accounts, one address");
    let (xff, auth) = buy_from("2001:db8::1, 198.51.100.8", "bot-9");
    let h = [
        ("host", "x"),
        ("content-type", "application/json"),
        ("authorization", auth.as_str()),
        ("x-forwarded-for", xff),
    ];
    let r = c
        .request(Method::POST, "/v1/sales/a/purchase", &h, "{}")
        .await
        .unwrap();
    assert_eq!(
        r.status, 201,
        "another address (the rightmost untrusted one)"
    );
}

/// Arbitrary bytes in `Authorization` (as far as HTTP lets a header hold
/// them) never panic the server and are always a 401.
#[tokio::test]
async fn arbitrary_authorization_bytes_are_a_401() {
    use rand::{Rng, SeedableRng};
    let (s, mut c) = server(jwt).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let valid = token("alice");
    let mut sent = 0;
    for i in 0..400 {
        let value: Vec<u8> = match i % 3 {
            0 => (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect(),
            1 => {
                let mut t = format!("Bearer {valid}").into_bytes();
                let at = rng.gen_range(7..t.len());
                t[at] = rng.gen();
                t
            }
            _ => {
                let parts: Vec<String> = (0..rng.gen_range(1..5))
                    .map(|_| {
                        base64url(
                            &(0..rng.gen_range(0..40))
                                .map(|_| rng.gen())
                                .collect::<Vec<u8>>(),
                        )
                    })
                    .collect();
                format!("Bearer {}", parts.join(".")).into_bytes()
            }
        };
        let Ok(header) = hyper::header::HeaderValue::from_bytes(&value) else {
            continue;
        };
        let Ok(text) = header.to_str() else {
            // Non-ASCII bytes: sent raw below.
            let mut raw = b"POST /v1/sales/a/purchase HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\nauthorization: ".to_vec();
            raw.extend_from_slice(&value);
            raw.extend_from_slice(b"\r\n\r\n{}");
            let (resp, _) = common::raw(s.addr, &raw, std::time::Duration::from_secs(2)).await;
            assert!(
                resp.starts_with("HTTP/1.1 401") || resp.starts_with("HTTP/1.1 400"),
                "{resp}"
            );
            sent += 1;
            continue;
        };
        if text.trim() == format!("Bearer {valid}") {
            continue;
        }
        let h = [
            ("host", "x"),
            ("content-type", "application/json"),
            ("authorization", text),
        ];
        let r = c
            .request(Method::POST, "/v1/sales/a/purchase", &h, "{}")
            .await
            .unwrap();
        assert_eq!(r.status, 401, "{text:?}");
        sent += 1;
    }
    assert!(sent > 200, "{sent}");
    assert_eq!(c.get("/v1/sales/a").await.json()["reserved"], 0);
    assert_eq!(c.get("/healthz").await.status, 200);
}
