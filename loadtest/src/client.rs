//! A single keep-alive HTTP/1.1 connection with a per-request timeout.
//!
//! This uses `hyper::client::conn::http1` directly rather than a pooled client:
//! each worker owns exactly one connection, so a pool would only add locking
//! and hide how many connections are really open. A timed-out or broken
//! connection is dropped and re-dialled on the next request, because HTTP/1.1
//! cannot abandon a request and keep using the connection.
//!
//! The connection future is polled by the worker's own task alongside each
//! request instead of being spawned: a spawned driver costs two cross-task
//! wake-ups per request, which lowers the generator's ceiling.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;
use tokio::net::TcpStream;

/// Largest response body read; the API's bodies are a few hundred bytes, the
/// sales list grows with SKUs, so this is generous but still a bound.
pub const RESPONSE_BYTES_MAX: usize = 4 << 20;

/// Why a request produced no HTTP response. Small and `Copy` because it is
/// counted on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// No answer within the timeout.
    Timeout,
    /// Dialling the server failed.
    Connect,
    /// The connection broke mid-request, or the response was malformed.
    Io,
}

impl TransportError {
    /// Label used in reports.
    pub fn label(self) -> &'static str {
        match self {
            TransportError::Timeout => "timeout",
            TransportError::Connect => "connect_error",
            TransportError::Io => "io_error",
        }
    }
}

/// One HTTP response, body fully read.
#[derive(Debug, Clone)]
pub struct Response {
    pub code: u16,
    pub body: Bytes,
    /// Retry-After in seconds, when present and numeric.
    pub retry_after_s: Option<u64>,
}

/// Where to send requests: a resolved address plus the Host header value.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    /// The URL as given, for reports.
    pub url: String,
}

impl Target {
    /// Parses `http://host:port` (a trailing `/` is allowed; https is not supported).
    pub async fn parse(url: &str) -> Result<Target> {
        let uri: hyper::Uri = url
            .parse()
            .with_context(|| format!("bad target URL {url:?}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("target must be http://host:port, got {url:?}");
        }
        if !matches!(uri.path(), "" | "/") {
            bail!("target must not have a path, got {url:?}");
        }
        let host = uri.host().context("target has no host")?;
        let port = uri.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .next()
            .with_context(|| format!("{host} resolved to no address"))?;
        let authority = uri.authority().context("target has no authority")?.as_str();
        Ok(Target {
            addr,
            host: HeaderValue::from_str(authority)?,
            url: url.trim_end_matches('/').to_string(),
        })
    }
}

/// The connection half of the handshake, polled by whoever sends on it.
type ConnDriver = Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

/// Runs `fut` while also driving the connection's I/O. If the connection
/// finishes first (closed or broken), `fut` is still awaited alone: with the
/// driver gone it resolves promptly, with whatever was already received or
/// an error.
async fn drive<F: Future>(driver: &mut Option<ConnDriver>, fut: F) -> F::Output {
    tokio::pin!(fut);
    if let Some(d) = driver.as_mut() {
        tokio::select! {
            biased;
            out = &mut fut => return out,
            _ = d.as_mut() => *driver = None,
        }
    }
    fut.await
}

/// One keep-alive connection to the target, re-dialled when it breaks.
pub struct ClientConn {
    target: Target,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
    driver: Option<ConnDriver>,
    /// Dials made, for the report (more than one per worker means reconnects).
    pub dials: u64,
}

impl ClientConn {
    pub fn new(target: Target, timeout: Duration) -> ClientConn {
        ClientConn {
            target,
            timeout,
            sender: None,
            driver: None,
            dials: 0,
        }
    }

    async fn dial(&mut self) -> Result<(), TransportError> {
        self.dials += 1;
        let stream = TcpStream::connect(self.target.addr)
            .await
            .map_err(|_| TransportError::Connect)?;
        // Requests are tiny and latency is what we measure: never wait on Nagle.
        stream
            .set_nodelay(true)
            .map_err(|_| TransportError::Connect)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| TransportError::Connect)?;
        self.sender = Some(sender);
        self.driver = Some(Box::pin(conn));
        Ok(())
    }

    /// Sends one request and reads the whole response, all within the timeout.
    /// On any failure the connection is dropped, so the next call re-dials.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        auth: Option<&HeaderValue>,
    ) -> Result<Response, TransportError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.send_inner(method, path, body, auth)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.sender = None;
                self.driver = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                self.driver = None;
                Err(TransportError::Timeout)
            }
        }
    }

    async fn send_inner(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        auth: Option<&HeaderValue>,
    ) -> Result<Response, TransportError> {
        if self.driver.is_none() || !matches!(&self.sender, Some(s) if !s.is_closed()) {
            self.dial().await?;
        }
        let sender = self.sender.as_mut().ok_or(TransportError::Connect)?;
        if drive(&mut self.driver, sender.ready()).await.is_err() {
            // The server closed an idle keep-alive connection; that is normal
            // and nothing was sent yet, so one fresh dial is safe.
            self.dial().await?;
        }
        let sender = self.sender.as_mut().ok_or(TransportError::Connect)?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.target.host.clone());
        if body.is_some() {
            req = req.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|_| TransportError::Io)?;
        let resp = drive(&mut self.driver, sender.send_request(req))
            .await
            .map_err(|_| TransportError::Io)?;
        let code = resp.status().as_u16();
        let retry_after_s = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let limited = http_body_util::Limited::new(resp.into_body(), RESPONSE_BYTES_MAX);
        let body = drive(&mut self.driver, limited.collect())
            .await
            .map_err(|_| TransportError::Io)?
            .to_bytes();
        Ok(Response {
            code,
            body,
            retry_after_s,
        })
    }
}

/// Builds the `Authorization: Bearer …` header value.
pub fn bearer(token: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}"))
        .context("admin token is not a valid header value")
}
