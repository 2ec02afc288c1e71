//! HTTP conformance, from a probe with hostile and unusual requests: what
//! the API refuses (non-object bodies, other content types, bad `Host` and
//! `Authorization` headers, over-long targets and heads), and what it
//! accepts the way RFC 9110/9112 say (HEAD wherever GET works, any case of
//! the bearer scheme, percent-encoded paths).

mod common;

use std::time::Duration;

use common::{raw, Conn, Reply, TestServer, TOKEN};
use hyper::Method;

#[track_caller]
fn check(reply: &Reply, status: u16, code: &str) {
    assert_eq!(
        (reply.status, reply.code().as_str()),
        (status, code),
        "body: {}",
        String::from_utf8_lossy(&reply.body)
    );
}

async fn sale(c: &mut Conn, sku: &str, stock: u64) {
    let r = c
        .create_sale(&format!(
            r#"{{"sku":"{sku}","stock":{stock},"per_user_limit":5}}"#
        ))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

async fn remaining(c: &mut Conn, sku: &str) -> u64 {
    c.get(&format!("/v1/sales/{sku}")).await.json()["remaining"]
        .as_u64()
        .unwrap()
}

/// `[731]` is not a purchase by user 731, and `["arr1",7]` creates no sale:
/// serde's derived structs would read an array positionally.
#[tokio::test]
async fn json_arrays_are_refused() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    sale(&mut c, "arr", 10).await;
    for body in [
        "[731]",
        r#"[733,1,"rid-arr"]"#,
        " [1]",
        "731",
        "null",
        r#""x""#,
    ] {
        let r = c.post("/v1/sales/arr/purchase", body).await;
        check(&r, 400, "bad_request");
    }
    assert_eq!(remaining(&mut c, "arr").await, 10);
    let r = c.admin_post("/v1/admin/sales", r#"["arr1",7]"#).await;
    check(&r, 400, "bad_request");
    check(&c.get("/v1/sales/arr1").await, 404, "unknown_sku");
    let r = c.admin_post("/v1/admin/sales/arr/stock", "[5]").await;
    check(&r, 400, "bad_request");
    s.shutdown().await.unwrap();
}

/// A body declared as anything but JSON is 415 and changes nothing; no
/// `Content-Type` at all is accepted.
#[tokio::test]
async fn other_content_types_are_415() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    sale(&mut c, "ct", 10).await;
    let auth = format!("Bearer {TOKEN}");
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let headers = [("host", "h"), ("content-type", ct)];
        let r = c
            .request(
                Method::POST,
                "/v1/sales/ct/purchase",
                &headers,
                r#"{"user_id":"1"}"#,
            )
            .await
            .unwrap();
        check(&r, 415, "unsupported_media_type");
        let headers = [
            ("host", "h"),
            ("content-type", ct),
            ("authorization", &auth),
        ];
        let r = c
            .request(
                Method::POST,
                "/v1/admin/sales",
                &headers,
                r#"{"sku":"ct2","stock":1}"#,
            )
            .await
            .unwrap();
        check(&r, 415, "unsupported_media_type");
    }
    assert_eq!(remaining(&mut c, "ct").await, 10);
    check(&c.get("/v1/sales/ct2").await, 404, "unknown_sku");
    let ok = [
        vec![("host", "h")],
        vec![
            ("host", "h"),
            ("content-type", "application/json; charset=utf-8"),
        ],
        vec![("host", "h"), ("content-type", "Application/JSON")],
    ];
    for (user, headers) in ok.iter().enumerate() {
        let body = format!(r#"{{"user_id":"{user}"}}"#);
        let r = c
            .request(Method::POST, "/v1/sales/ct/purchase", headers, &body)
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{headers:?}");
    }
    s.shutdown().await.unwrap();
}

/// HEAD works wherever GET does, with GET's status and headers and no
/// body; 405s list HEAD in `Allow`.
#[tokio::test]
async fn head_is_served_like_get() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    sale(&mut c, "hd", 3).await;
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/sales",
        "/v1/sales/hd",
    ] {
        let r = c.send(Method::HEAD, path, None, None).await.unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert!(r.body.is_empty(), "{path}");
    }
    let r = c
        .send(Method::HEAD, "/v1/sales/nope", None, None)
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = c
        .send(Method::DELETE, "/healthz", None, None)
        .await
        .unwrap();
    check(&r, 405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = c
        .send(Method::HEAD, "/v1/sales/hd/purchase", None, None)
        .await
        .unwrap();
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    s.shutdown().await.unwrap();
}

/// The bearer scheme in any case, followed by any number of spaces; two
/// `Authorization` headers are a 400, not a guess.
#[tokio::test]
async fn authorization_header_parsing() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    for (i, scheme) in ["Bearer ", "bearer ", "BEARER ", "Bearer   "]
        .iter()
        .enumerate()
    {
        let auth = format!("{scheme}{TOKEN}");
        let headers = [("host", "h"), ("authorization", auth.as_str())];
        let body = format!(r#"{{"sku":"auth{i}","stock":1}}"#);
        let r = c
            .request(Method::POST, "/v1/admin/sales", &headers, &body)
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{scheme:?}");
    }
    let auth = format!("Bearer {TOKEN}");
    let headers = [
        ("host", "h"),
        ("authorization", auth.as_str()),
        ("authorization", auth.as_str()),
    ];
    let r = c
        .request(
            Method::POST,
            "/v1/admin/sales",
            &headers,
            r#"{"sku":"two","stock":1}"#,
        )
        .await
        .unwrap();
    check(&r, 400, "bad_request");
    let r = c
        .request(Method::GET, "/v1/orders/1", &headers, "")
        .await
        .unwrap();
    check(&r, 400, "bad_request");
    check(&c.get("/v1/sales/two").await, 404, "unknown_sku");
    s.shutdown().await.unwrap();
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or any with two, is
/// a 400 (with the API's JSON body).
#[tokio::test]
async fn host_header_is_required_once() {
    let mut s = TestServer::start().await;
    let addr = s.addr;
    let wait = Duration::from_secs(2);
    for request in [
        &b"GET /healthz HTTP/1.1\r\n\r\n"[..],
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let (text, _) = raw(addr, request, wait).await;
        assert!(
            text.starts_with("HTTP/1.1 400") || text.starts_with("HTTP/1.0 400"),
            "{text}"
        );
        assert!(text.contains(r#""status":"bad_request""#), "{text}");
    }
    let (text, _) = raw(addr, b"GET /healthz HTTP/1.0\r\n\r\n", wait).await;
    assert!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "{text}"
    );
    s.shutdown().await.unwrap();
}

/// A request target over the head limit is 414 and a head over it 431,
/// both with JSON bodies.
#[tokio::test]
async fn long_targets_and_heads() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    let long = format!("/v1/sales/{}", "a".repeat(9000));
    let r = c.get(&long).await;
    check(&r, 414, "uri_too_long");
    let mut c = s.conn().await;
    let big = "x".repeat(9000);
    let headers = [("host", "h"), ("x-big", big.as_str())];
    let r = c
        .request(Method::GET, "/healthz", &headers, "")
        .await
        .unwrap();
    check(&r, 431, "headers_too_large");
    let mut c = s.conn().await;
    assert_eq!(c.get("/healthz").await.status, 200);
    s.shutdown().await.unwrap();
}

/// Percent-encoding is decoded in path segments the same way on every
/// route: an encoded sku reaches the same sale for reads and purchases.
#[tokio::test]
async fn percent_encoded_paths_reach_the_same_sale() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    sale(&mut c, "p1", 5).await;
    sale(&mut c, "p2", 5).await;
    assert_eq!(c.get("/v1/sales/p%31").await.status, 200);
    let r = c
        .post("/v1/sales/p%32/purchase", r#"{"user_id":"9"}"#)
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(remaining(&mut c, "p2").await, 4);
    let id = r.json()["order_id"].as_str().unwrap().to_string();
    let encoded: String = id.chars().map(|ch| format!("%{:02X}", ch as u32)).collect();
    let r = c.get(&format!("/v1/orders/{encoded}?user_id=9")).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = c.admin_post("/v1/admin/sales/p%31/pause", "").await;
    assert_eq!(r.json()["state"], "paused");
    check(&c.get("/v1/sales/p%zz").await, 400, "bad_request");
    s.shutdown().await.unwrap();
}

/// `.` and `..` are not skus: a client or proxy that normalises paths
/// could never reach such a sale.
#[tokio::test]
async fn dot_segment_skus_are_refused() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    for sku in [".", ".."] {
        let r = c
            .create_sale(&format!(r#"{{"sku":"{sku}","stock":1}}"#))
            .await;
        check(&r, 400, "bad_request");
    }
    sale(&mut c, "...", 1).await;
    sale(&mut c, ".a", 1).await;
    s.shutdown().await.unwrap();
}
