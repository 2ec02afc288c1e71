//! Checks on a request's head that hyper leaves to the service: the length
//! of its target and of the whole head (so that 414 and 431 come with the
//! API's JSON body), and its `Host` header (RFC 9112 §3.2).
//!
//! hyper itself reads heads up to `HEAD_READ_BYTES_MAX` (see
//! `crate::server`) and answers anything it cannot parse (bad framing, a
//! malformed request line or header, over 100 headers, a head over that
//! size) with a bare status and an empty body, which no hook changes.

use hyper::header::HOST;
use hyper::{Request, StatusCode, Version};

use super::response::{bad_request, closing, error, Resp};

/// Largest request head (request line plus headers) the API serves, and
/// largest request target: beyond them, 431 and 414.
pub const HEAD_BYTES_MAX: usize = 8 * 1024;

/// Refuses a head that is too long or whose `Host` is missing (HTTP/1.1)
/// or repeated.
pub fn check_head<B>(req: &Request<B>) -> Result<(), Resp> {
    let uri = req.uri();
    let target = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if target > HEAD_BYTES_MAX {
        return Err(closing(error(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            "request target: longer than 8192 bytes",
        )));
    }
    if head_bytes(req, target) > HEAD_BYTES_MAX {
        return Err(closing(error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            "request head: larger than 8192 bytes",
        )));
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(bad_request("Host: more than one header"));
    }
    if first.is_none() && req.version() == Version::HTTP_11 {
        return Err(bad_request("Host: required in HTTP/1.1"));
    }
    Ok(())
}

/// The head's size as sent: request line, each header line, blank line.
fn head_bytes<B>(req: &Request<B>, target: usize) -> usize {
    // "METHOD SP target SP HTTP/1.1 CRLF" ... CRLF
    let line = req.method().as_str().len() + 1 + target + 1 + 8 + 2;
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + headers + 2
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

    fn status(r: Result<(), Resp>) -> u16 {
        r.map_or_else(|resp| resp.status().as_u16(), |()| 200)
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
