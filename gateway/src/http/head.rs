//! Checks on a request's head that hyper leaves to the service: the length
//! of its target and of the whole head (so that 414 and 431 come with the
//! API's JSON body), and its `Host` header (RFC 9112 §3.2).
//!
//! hyper itself reads heads up to `HEAD_READ_BYTES_MAX` (see
//! `crate::server`) and answers anything it cannot parse (bad framing, a
//! malformed request line or header, over 100 headers, a head over that
//! size) with a bare status and an empty body, which no hook changes.

use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode, Version};

use super::response::{bad_request, closing, error, Resp};

/// Largest request head (request line plus headers) the API serves, and
/// largest request target: beyond them, 431 and 414.
pub const HEAD_BYTES_MAX: usize = 8 * 1024;

/// What a request's `Content-Type` declares its body to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyType {
    /// No `Content-Type`: taken as JSON (many clients send none).
    Absent,
    /// `application/json`, with or without parameters, in any case.
    Json,
    /// Anything else, or a repeated header.
    Other,
}

impl BodyType {
    #[inline]
    fn of(value: &HeaderValue) -> BodyType {
        let bytes = value.as_bytes();
        // What clients send, compared whole before any parsing.
        if bytes == b"application/json" {
            return BodyType::Json;
        }
        // `type/subtype` before any parameter, case-insensitive (RFC 9110 §8.3.1).
        let essence = bytes.split(|&b| b == b';').next().unwrap_or(b"");
        if essence
            .trim_ascii()
            .eq_ignore_ascii_case(b"application/json")
        {
            BodyType::Json
        } else {
            BodyType::Other
        }
    }
}

/// Refuses a head that is too long or whose `Host` is missing (HTTP/1.1)
/// or repeated; else says what its body is declared to be. One pass over
/// the headers does it all: a lookup per header by name costs a hash each.
#[inline]
pub fn check_head<B>(req: &Request<B>) -> Result<BodyType, Resp> {
    let uri = req.uri();
    let target = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if target > HEAD_BYTES_MAX {
        return Err(closing(error(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            "request target: longer than 8192 bytes",
        )));
    }
    // "METHOD SP target SP HTTP/1.1 CRLF", each "name: value CRLF", CRLF.
    let mut head_bytes = req.method().as_str().len() + 1 + target + 1 + 8 + 2 + 2;
    let mut hosts = 0u32;
    let mut body_type = BodyType::Absent;
    for (name, value) in req.headers() {
        head_bytes += name.as_str().len() + 2 + value.len() + 2;
        if name == HOST {
            hosts += 1;
        } else if name == CONTENT_TYPE {
            body_type = match body_type {
                BodyType::Absent => BodyType::of(value),
                BodyType::Json | BodyType::Other => BodyType::Other,
            };
        }
    }
    if head_bytes > HEAD_BYTES_MAX {
        return Err(closing(error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "request head: larger than 8192 bytes",
        )));
    }
    if hosts > 1 {
        return Err(bad_request("Host: more than one header"));
    }
    if hosts == 0 && req.version() == Version::HTTP_11 {
        return Err(bad_request("Host: required in HTTP/1.1"));
    }
    Ok(body_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str, headers: &[(&str, &str)], version: Version) -> Request<()> {
        let mut b = Request::builder().uri(target).version(version);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn status(r: Result<BodyType, Resp>) -> u16 {
        r.map_or_else(|resp| resp.status().as_u16(), |_| 200)
    }

    #[test]
    fn body_types() {
        let of = |ct: &[&str]| {
            let mut headers = vec![("host", "a")];
            headers.extend(ct.iter().map(|v| ("content-type", *v)));
            check_head(&request("/", &headers, Version::HTTP_11)).unwrap()
        };
        assert_eq!(of(&[]), BodyType::Absent);
        for json in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/json ;charset=utf-8",
        ] {
            assert_eq!(of(&[json]), BodyType::Json, "{json:?}");
        }
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "",
        ] {
            assert_eq!(of(&[other]), BodyType::Other, "{other:?}");
        }
        let two = ["application/json", "application/json"];
        assert_eq!(of(&two), BodyType::Other);
    }

    #[test]
    fn host_is_required_once_in_http_11() {
        let h11 = Version::HTTP_11;
        assert_eq!(
            status(check_head(&request("/", &[("host", "a")], h11))),
            200
        );
        assert_eq!(status(check_head(&request("/", &[], h11))), 400);
        assert_eq!(
            status(check_head(&request("/", &[], Version::HTTP_10))),
            200
        );
        let two = [("host", "a"), ("host", "b")];
        assert_eq!(status(check_head(&request("/", &two, h11))), 400);
        assert_eq!(
            status(check_head(&request("/", &two, Version::HTTP_10))),
            400
        );
    }

    #[test]
    fn long_targets_are_414_and_long_heads_431() {
        let h11 = Version::HTTP_11;
        let host = [("host", "a")];
        let long = format!("/{}", "a".repeat(HEAD_BYTES_MAX));
        assert_eq!(status(check_head(&request(&long, &host, h11))), 414);
        let near = format!("/{}", "a".repeat(HEAD_BYTES_MAX - 100));
        assert_eq!(status(check_head(&request(&near, &host, h11))), 200);
        let big = "x".repeat(HEAD_BYTES_MAX);
        let headers = [("host", "a"), ("x-big", big.as_str())];
        assert_eq!(status(check_head(&request("/", &headers, h11))), 431);
    }
}
