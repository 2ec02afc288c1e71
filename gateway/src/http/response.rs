//! Responses: the JSON envelope every answer uses, and the errors of the
//! API's vocabulary. Every non-2xx body is `{"status": .., "error": ..}`,
//! where `status` is machine-readable (API.md lists them).
//!
//! Every answer's body is whole ([`Full`]) but the dashboard stream's,
//! which is [`SseBody`]: [`ResponseBody`] is either, so that the one
//! service type serves both at the cost of a match per poll.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};

use crate::dashboard::stream::SseBody;
use crate::metrics::Metrics;
use crate::ratelimit::RetryAfter;

pub type Resp = Response<ResponseBody>;

/// The body of any answer.
pub enum ResponseBody {
    Full(Full<Bytes>),
    /// Boxed: the common answer should not carry the stream's size.
    Stream(Box<SseBody>),
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseBody::Full(body) => f.debug_tuple("Full").field(body).finish(),
            ResponseBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

impl ResponseBody {
    #[inline]
    pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
        ResponseBody::Full(Full::new(bytes.into()))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ResponseBody::Full(body) => Pin::new(body).poll_frame(cx),
            ResponseBody::Stream(body) => Pin::new(body.as_mut()).poll_frame(cx),
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Full(body) => body.is_end_stream(),
            ResponseBody::Stream(body) => body.is_end_stream(),
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Full(body) => body.size_hint(),
            ResponseBody::Stream(body) => body.size_hint(),
        }
    }
}

const JSON: HeaderValue = HeaderValue::from_static("application/json");

#[inline]
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut resp = Response::new(ResponseBody::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, JSON);
    resp
}

/// A JSON body fixed at compile time, sent without a copy.
#[inline]
pub fn json_static(status: StatusCode, body: &'static str) -> Resp {
    json(status, Bytes::from_static(body.as_bytes()))
}

/// A JSON error body fixed at compile time (nothing in it needs escaping).
macro_rules! static_error_body {
    ($code:literal, $message:literal) => {
        concat!("{\"status\":\"", $code, "\",\"error\":\"", $message, "\"}")
    };
}
pub(crate) use static_error_body;

/// A JSON error body. `message` is escaped as a JSON string.
pub fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    let mut body = String::with_capacity(48 + message.len());
    body.push_str("{\"status\":\"");
    body.push_str(code);
    body.push_str("\",\"error\":");
    body.push_str(&serde_json::to_string(message).unwrap_or_else(|_| "\"\"".into()));
    body.push('}');
    json(status, body)
}

pub fn bad_request(message: &str) -> Resp {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

pub fn unavailable(message: &str) -> Resp {
    let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// 503 for a log that is full or has failed (the engine's `Unavailable`).
pub fn log_unavailable() -> Resp {
    unavailable("the order log is full or has failed")
}

/// 429, counted.
pub fn rate_limited(metrics: &Metrics, retry: RetryAfter) -> Resp {
    metrics
        .rate_limited
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut resp = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many requests, retry later",
    );
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry.secs()));
    resp
}

pub fn not_found() -> Resp {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub fn unknown_order() -> Resp {
    error(StatusCode::NOT_FOUND, "unknown_order", "no such order")
}

pub fn unknown_sku() -> Resp {
    error(
        StatusCode::NOT_FOUND,
        "unknown_sku",
        "no sale with this sku",
    )
}

pub fn sale_ended() -> Resp {
    error(StatusCode::CONFLICT, "ended", "the sale has ended")
}

pub fn method_not_allowed(allow: &'static str) -> Resp {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this path",
    );
    resp.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    resp
}

pub fn unauthorized() -> Resp {
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong admin token",
    );
    resp.headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    resp
}

/// A buyer without a valid credential: one answer for every reason (the
/// reason goes to metrics and the debug log, not to the client).
pub fn buyer_unauthorized() -> Resp {
    let mut resp = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid buyer credential is required",
    );
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    resp
}

/// A valid buyer token that does not cover this sale (its `skus` claim).
pub fn buyer_forbidden() -> Resp {
    let mut resp = error(
        StatusCode::FORBIDDEN,
        "forbidden",
        "the token does not allow buying this sku",
    );
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"insufficient_scope\""),
    );
    resp
}

/// An answer after which the connection closes: what is left of the
/// request (an unread body, say) would otherwise be read as the next one.
pub fn closing(mut resp: Resp) -> Resp {
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}

pub fn too_large(max: u64) -> Resp {
    closing(error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        &format!("body: larger than {max} bytes"),
    ))
}

/// The bytes of a `Full` body, without a runtime (tests).
#[cfg(test)]
pub fn body_bytes(resp: &Resp) -> Bytes {
    let ResponseBody::Full(body) = resp.body() else {
        return Bytes::new();
    };
    let mut body = std::pin::pin!(body.clone());
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match body.as_mut().poll_frame(&mut cx) {
        std::task::Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        _ => Bytes::new(),
    }
}
