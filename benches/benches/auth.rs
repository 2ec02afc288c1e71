//! Buyer token verification, the cost jwt mode adds to every purchase:
//! a valid HS256 token (the common case), a valid EdDSA and ES256 token,
//! and refusals (a bad signature, which does the HMAC; bytes that are no
//! token at all, which do not).
//!
//! `nice -n 19 cargo bench -p benches --bench auth`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use gateway::buyer_auth::{mint_hs256, BuyerClaims, JwtVerifier};
use gateway::config::{BuyerAuthMode, Config, JwtAlgorithm};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const SECRET: &str = "a-bench-secret-of-at-least-32-bytes!";

fn now() -> u64 {
    gateway::app::unix_ms() / 1000
}

fn claims() -> BuyerClaims {
    BuyerClaims {
        sub: "550e8400-e29b-41d4-a716-446655440000".into(),
        exp: now() + 3600,
        nbf: None,
        iat: Some(now()),
        iss: Some("https://shop.example".into()),
        aud: Some("flashsale".into()),
        skus: Some(vec!["hot".into()]),
    }
}

fn key(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../gateway/tests/keys")
        .join(name)
}

fn verifier(algorithm: JwtAlgorithm) -> JwtVerifier {
    let mut c = Config::for_tests("/unused").buyer_auth;
    c.mode = BuyerAuthMode::Jwt;
    c.algorithm = algorithm;
    c.issuer = Some("https://shop.example".into());
    c.audience = Some("flashsale".into());
    match algorithm {
        JwtAlgorithm::Hs256 => c.secret = Some(SECRET.into()),
        JwtAlgorithm::EdDsa => c.public_key_file = Some(key("ed25519-public.pem")),
        JwtAlgorithm::Es256 => c.public_key_file = Some(key("ec-p256-public.pem")),
    }
    JwtVerifier::load(&c).expect("bench keys load")
}

fn signed(algorithm: Algorithm, pem: &str) -> String {
    let pem = std::fs::read(key(pem)).unwrap();
    let key = match algorithm {
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem).unwrap(),
        _ => EncodingKey::from_ec_pem(&pem).unwrap(),
    };
    jsonwebtoken::encode(&Header::new(algorithm), &claims(), &key).unwrap()
}

fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("buyer_token");
    let hs = verifier(JwtAlgorithm::Hs256);
    let token = mint_hs256(SECRET.as_bytes(), &claims());
    let now = now();
    g.bench_function("hs256_valid", |b| {
        b.iter(|| black_box(hs.verify(black_box(token.as_bytes()), now)).is_ok())
    });
    let mut bad = token.clone().into_bytes();
    let last = bad.len() - 2;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    g.bench_function("hs256_bad_signature", |b| {
        b.iter(|| black_box(hs.verify(black_box(&bad), now)).is_err())
    });
    g.bench_function("garbage", |b| {
        b.iter(|| black_box(hs.verify(black_box(b"not-a-token"), now)).is_err())
    });
    let ed = verifier(JwtAlgorithm::EdDsa);
    let ed_token = signed(Algorithm::EdDSA, "ed25519-private.pem");
    g.bench_function("eddsa_valid", |b| {
        b.iter(|| black_box(ed.verify(black_box(ed_token.as_bytes()), now)).is_ok())
    });
    let es = verifier(JwtAlgorithm::Es256);
    let es_token = signed(Algorithm::ES256, "ec-p256-private.pem");
    g.bench_function("es256_valid", |b| {
        b.iter(|| black_box(es.verify(black_box(es_token.as_bytes()), now)).is_ok())
    });
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
