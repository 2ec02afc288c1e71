//! Admin authentication: the `Authorization: Bearer <token>` header,
//! compared with `server.admin_token` in constant time.

use hyper::header::AUTHORIZATION;
use hyper::HeaderMap;

use super::response::{bad_request, unauthorized, Resp};
use crate::config::ServerConfig;

/// The credential a request presents.
#[derive(Debug, PartialEq, Eq)]
pub enum Credential<'a> {
    /// No `Authorization` header.
    Absent,
    /// A bearer token.
    Bearer(&'a [u8]),
    /// Another scheme, or no token.
    Unusable,
}

/// The request's credential. Two `Authorization` headers are a 400: which
/// one counts would be a guess.
pub fn credential(headers: &HeaderMap) -> Result<Credential<'_>, Resp> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Credential::Absent);
    };
    if values.next().is_some() {
        return Err(bad_request("Authorization: more than one header"));
    }
    Ok(bearer_token(value.as_bytes()).map_or(Credential::Unusable, Credential::Bearer))
}

/// The token of `Bearer <token>`. The scheme is case-insensitive and may be
/// followed by more than one space (RFC 9110 §11.1, §11.4).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    let (scheme, rest) = value.split_at_checked(SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Ok when the request carries the admin token; else the answer to send.
pub fn require_admin(server: &ServerConfig, headers: &HeaderMap) -> Result<(), Resp> {
    check_admin(server, &credential(headers)?)
}

/// Ok when `credential` is the admin token; else 401.
pub fn check_admin(server: &ServerConfig, credential: &Credential<'_>) -> Result<(), Resp> {
    match credential {
        Credential::Bearer(token) if is_admin_token(server, token) => Ok(()),
        Credential::Bearer(_) | Credential::Absent | Credential::Unusable => Err(unauthorized()),
    }
}

pub(crate) fn is_admin_token(server: &ServerConfig, token: &[u8]) -> bool {
    constant_time_eq(token, server.admin_token.as_bytes())
}

/// Compares without an early exit, so the time taken does not tell how many
/// leading bytes matched. (The length of the token is not secret.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_matches_eq() {
        for (a, b) in [
            ("", ""),
            ("a", ""),
            ("abc", "abc"),
            ("abc", "abd"),
            ("abc", "abcd"),
        ] {
            assert_eq!(
                constant_time_eq(a.as_bytes(), b.as_bytes()),
                a == b,
                "{a:?} {b:?}"
            );
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for (value, want) in [
            ("Bearer tok", Some("tok")),
            ("bearer tok", Some("tok")),
            ("BEARER tok", Some("tok")),
            ("Bearer    tok", Some("tok")),
            ("Bearertok", None),
            ("Bearer ", None),
            ("Basic dG9rOg==", None),
            ("Bear tok", None),
            ("", None),
        ] {
            let got = bearer_token(value.as_bytes()).map(|t| std::str::from_utf8(t).unwrap());
            assert_eq!(got, want, "{value:?}");
        }
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        let mut headers = HeaderMap::new();
        headers.append(AUTHORIZATION, "Bearer a".parse().unwrap());
        assert_eq!(credential(&headers).unwrap(), Credential::Bearer(b"a"));
        headers.append(AUTHORIZATION, "Bearer a".parse().unwrap());
        let resp = credential(&headers).unwrap_err();
        assert_eq!(resp.status(), hyper::StatusCode::BAD_REQUEST);
    }
}
