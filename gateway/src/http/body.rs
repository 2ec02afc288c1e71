//! Request bodies: their declared type and length, reading them within the
//! size limit and the read timeout, and parsing them as a JSON object.

use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::{Request, StatusCode};
use serde::Deserialize;

use super::head::BodyType;
use super::response::{bad_request, closing, error, too_large, Resp};
use crate::config::ServerConfig;

/// Refuses a body declared as anything but JSON with 415. A missing
/// `Content-Type` is accepted (`curl --json` and most clients send it; some
/// don't). Refusing `text/plain`, form and multipart bodies is what keeps a
/// web page from posting purchases cross-site without a CORS preflight.
#[inline]
pub fn check_body_type(body_type: BodyType) -> Result<(), Resp> {
    match body_type {
        BodyType::Absent | BodyType::Json => Ok(()),
        BodyType::Other => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type: must be application/json",
        )),
    }
}

/// A request whose body is yet to be read, with the type its head declared
/// for it (see `head::check_head`).
pub struct BodyRequest {
    pub body_type: BodyType,
    pub req: Request<Incoming>,
}

/// Reads a JSON request body, refusing another declared type, and more
/// than `max_body_bytes`: first by the declared Content-Length (nothing is
/// read), then while collecting (chunked bodies). A client that trickles its
/// body is cut after the header read timeout.
pub async fn read_body(server: &ServerConfig, r: BodyRequest) -> Result<Bytes, Resp> {
    let BodyRequest { body_type, req } = r;
    check_body_type(body_type)?;
    check_content_length(server, req.body())?;
    collect_body(server, req.into_body()).await
}

/// Refuses a declared body longer than `server.max_body_bytes` before
/// reading any of it. hyper has parsed the `content-length` (and refused a
/// malformed one) already; its size hint is that length.
#[inline]
pub fn check_content_length(server: &ServerConfig, body: &Incoming) -> Result<(), Resp> {
    let max = server.max_body_bytes;
    if body.size_hint().lower() > max {
        return Err(too_large(max));
    }
    Ok(())
}

/// Reads a body of at most `server.max_body_bytes`, within the header read
/// timeout.
#[inline]
pub async fn collect_body(server: &ServerConfig, mut body: Incoming) -> Result<Bytes, Resp> {
    let max = server.max_body_bytes;
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    // A small body with a content-length usually arrived with the head, as
    // one frame: take it without arming a timer (a clock read and a
    // timer-wheel entry) or collecting into a list (an allocation). A
    // chunked body does not know it has ended after its first frame, so it
    // always takes the general path below.
    let first = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
    let mut head = Bytes::new();
    match first {
        Poll::Ready(None) => return Ok(Bytes::new()),
        Poll::Ready(Some(Err(_))) => return Err(bad_request("body: could not be read")),
        Poll::Ready(Some(Ok(frame))) => {
            if let Ok(data) = frame.into_data() {
                if data.len() as u64 > max {
                    return Err(too_large(max));
                }
                if body.is_end_stream() {
                    return Ok(data);
                }
                head = data;
            }
        }
        Poll::Pending => {}
    }
    collect_rest(server, head, body).await
}

/// The rest of a body after its first frame (`head`), within the limit left
/// and the header read timeout.
async fn collect_rest(server: &ServerConfig, head: Bytes, body: Incoming) -> Result<Bytes, Resp> {
    let max = server.max_body_bytes;
    let rest = Limited::new(body, (max as usize).saturating_sub(head.len()));
    match tokio::time::timeout(server.header_read_timeout, rest.collect()).await {
        Ok(Ok(collected)) if head.is_empty() => Ok(collected.to_bytes()),
        Ok(Ok(collected)) => {
            let rest = collected.to_bytes();
            let mut all = Vec::with_capacity(head.len() + rest.len());
            all.extend_from_slice(&head);
            all.extend_from_slice(&rest);
            Ok(Bytes::from(all))
        }
        Ok(Err(err)) if err.is::<LengthLimitError>() => Err(too_large(max)),
        Ok(Err(_)) => Err(bad_request("body: could not be read")),
        Err(_) => Err(closing(error(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "body: not received in time",
        ))),
    }
}

/// Parses a JSON object body. Anything but an object is refused first:
/// serde's derived structs would read a JSON array positionally, so
/// `[731]` would be a purchase by user 731. On failure, parses again with
/// path tracking so the message names the field (the error path is cold;
/// the fast path is plain serde_json).
pub fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Resp> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(bad_request("body: must be a JSON object"));
    }
    match serde_json::from_slice::<T>(body) {
        Ok(v) => Ok(v),
        Err(_) => Err(bad_request(&parse_error_message::<T>(body))),
    }
}

fn parse_error_message<'a, T: Deserialize<'a>>(body: &'a [u8]) -> String {
    let mut de = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(_) => "body: invalid JSON".to_string(),
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                format!("body: invalid JSON: {inner}")
            } else if path == "." {
                format!("body: {inner}")
            } else {
                format!("{path}: {inner}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Two {
        a: u64,
        b: String,
    }

    #[test]
    fn only_objects_parse() {
        assert!(parse::<Two>(br#" {"a":1,"b":"x"}"#).is_ok());
        for body in [
            &br#"[1,"x"]"#[..],
            b" [1,\"x\"]",
            b"1",
            b"\"x\"",
            b"null",
            b"",
        ] {
            let err = parse::<Two>(body).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{body:?}");
        }
    }
}
