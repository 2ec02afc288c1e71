//! The dashboard's data routes, in process on port 0: `GET /v1/admin/stats`
//! and the Server-Sent Events of `GET /v1/admin/stream`: admin auth, the
//! subscriber cap, a reader that never reads being dropped (slot freed,
//! connection closed) while a reading one is not, streams outliving the
//! header read timeout and ending at shutdown, the page's headers, and the
//! purchase latency histogram on `/metrics`.

mod common;

use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Conn, TestServer, TOKEN};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A stream subscriber reading events as they come.
struct StreamClient {
    status: u16,
    headers: hyper::HeaderMap,
    body: Incoming,
    buffered: String,
}

impl StreamClient {
    async fn open(addr: SocketAddr, token: Option<&str>) -> StreamClient {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut req = Request::builder()
            .method(Method::GET)
            .uri("/v1/admin/stream")
            .header("host", "localhost");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let resp: Response<Incoming> = sender
            .send_request(req.body(Empty::<Bytes>::new()).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        StreamClient {
            status,
            headers,
            body: resp.into_body(),
            buffered: String::new(),
        }
    }

    /// The next event as (name, JSON), or `None` once the stream ends.
    async fn next(&mut self) -> Option<(String, serde_json::Value)> {
        loop {
            while let Some(end) = self.buffered.find("\n\n") {
                let block: String = self.buffered.drain(..end + 2).collect();
                let mut name = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        name = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).expect("data is JSON"));
                    }
                }
                if let (Some(name), Some(data)) = (name, data) {
                    return Some((name, data));
                }
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("an event within 10 s")?;
            let Ok(data) = frame.unwrap().into_data() else {
                continue;
            };
            self.buffered.push_str(std::str::from_utf8(&data).unwrap());
        }
    }

    /// The next `snapshot` event.
    async fn snapshot(&mut self) -> serde_json::Value {
        loop {
            let (name, data) = self.next().await.expect("the stream goes on");
            if name == "snapshot" {
                return data;
            }
        }
    }
}

async fn sale(c: &mut Conn, sku: &str, stock: u64) {
    let r = c
        .create_sale(&format!(
            r#"{{"sku":"{sku}","stock":{stock},"per_user_limit":1}}"#
        ))
        .await;
    assert_eq!(r.status, 201);
}

async fn metric(c: &mut Conn, name: &str) -> u64 {
    let text = String::from_utf8(c.get("/metrics").await.body.to_vec()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
}

async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn missing_or_wrong_token_gets_401() {
    let mut s = TestServer::start().await;
    for token in [None, Some("wrong"), Some("test-tokenx"), Some("")] {
        let sub = StreamClient::open(s.addr, token).await;
        assert_eq!(sub.status, 401, "{token:?}");
        let mut c = s.conn().await;
        let r = c
            .send(Method::GET, "/v1/admin/stats", None, token)
            .await
            .unwrap();
        assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    }
    // Another scheme is no better.
    let mut c = s.conn().await;
    let r = c
        .request(
            Method::GET,
            "/v1/admin/stream",
            &[("host", "x"), ("authorization", &format!("Basic {TOKEN}"))],
            "",
        )
        .await
        .unwrap();
    assert_eq!((r.status, r.code().as_str()), (401, "unauthorized"));
    assert_eq!(s.app.feed.subscribers(), 0);
    s.shutdown().await.unwrap();
}

/// The stream starts with the history and the latest snapshot, then
/// carries one snapshot a period; stats answers the same snapshot.
#[tokio::test]
async fn stream_and_stats_carry_the_snapshot() {
    let mut s = TestServer::start_with(|c| {
        c.dashboard.interval = Duration::from_millis(50);
    })
    .await;
    let mut c = s.conn().await;
    sale(&mut c, "live-1", 10).await;
    for user in 1..=3 {
        let r = c
            .post(
                "/v1/sales/live-1/purchase",
                &format!(r#"{{"user_id":"u{user}"}}"#),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    // Once the ticker has published, a subscriber starts with its history.
    let feed = s.app.feed.clone();
    eventually("a first snapshot", Duration::from_secs(10), || {
        feed.latest().is_some()
    })
    .await;
    let mut sub = StreamClient::open(s.addr, Some(TOKEN)).await;
    assert_eq!(sub.status, 200);
    assert_eq!(sub.header("content-type"), Some("text/event-stream"));
    assert_eq!(sub.header("cache-control"), Some("no-store"));
    let (first, history) = sub.next().await.unwrap();
    assert_eq!(first, "history");
    assert!(!history.as_array().unwrap().is_empty());
    // Within a few periods the snapshot shows the three admissions.
    let mut snap = sub.snapshot().await;
    for _ in 0..40 {
        if snap["sales"][0]["remaining"] == 7
            && snap["purchases"]["per_s"].is_object()
            && snap["stream"]["subscribers"] == 1
        {
            break;
        }
        snap = sub.snapshot().await;
    }
    let sale = &snap["sales"][0];
    assert_eq!(sale["sku"], "live-1");
    assert_eq!(
        (&sale["remaining"], &sale["reserved"], &sale["orders"]),
        (&7.into(), &3.into(), &3.into())
    );
    assert_eq!(sale["state"], "open");
    assert_eq!(snap["purchases"]["total"]["admitted"], 3);
    assert!(snap["latency"]["admitted"]["count"].as_u64().is_some());
    assert_eq!(snap["stream"]["subscribers"], 1);
    assert_eq!(snap["log"]["fsync"], "always");
    assert!(snap["server"]["rss_bytes"].as_u64().unwrap() > 0);
    assert!(snap["config"].get("admin_token").is_none());
    // Later snapshots are later.
    let next = sub.snapshot().await;
    assert!(next["at_ms"].as_u64() > snap["at_ms"].as_u64());

    let stats = c.admin_get("/v1/admin/stats").await;
    assert_eq!(stats.status, 200);
    let stats = stats.json();
    assert_eq!(stats["version"], 1);
    assert_eq!(stats["sales"][0]["remaining"], 7);
    assert_eq!(stats["sales_total"], 1);
    s.shutdown().await.unwrap();
}

impl StreamClient {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One subscriber past the cap gets a 503 naming why; a closed stream
/// gives its slot back.
#[tokio::test]
async fn subscriber_cap() {
    let mut s = TestServer::start_with(|c| c.dashboard.stream_subscribers_max = 2).await;
    let mut a = StreamClient::open(s.addr, Some(TOKEN)).await;
    let b = StreamClient::open(s.addr, Some(TOKEN)).await;
    assert_eq!((a.status, b.status), (200, 200));
    a.next().await.unwrap();
    let mut over = StreamClient::open(s.addr, Some(TOKEN)).await;
    assert_eq!(over.status, 503);
    assert_eq!(over.header("retry-after"), Some("5"));
    let body = over
        .body
        .frame()
        .await
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], "too_many_subscribers");
    assert!(json["error"]
        .as_str()
        .unwrap()
        .contains("stream_subscribers_max"));
    let mut c = s.conn().await;
    assert_eq!(metric(&mut c, "flashsale_stream_refused_total").await, 1);
    assert_eq!(metric(&mut c, "flashsale_stream_subscribers").await, 2);
    drop(b);
    let feed = s.app.feed.clone();
    eventually(
        "the closed stream's slot freed",
        Duration::from_secs(10),
        || feed.subscribers() == 1,
    )
    .await;
    let again = StreamClient::open(s.addr, Some(TOKEN)).await;
    assert_eq!(again.status, 200);
    // HEAD takes no slot.
    let r = c
        .send(Method::HEAD, "/v1/admin/stream", None, Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(s.app.feed.subscribers(), 2);
    s.shutdown().await.unwrap();
}

/// A subscriber that never reads is dropped once the kernel's buffers,
/// hyper's and its own queue are full: its slot is freed and its
/// connection closed. A subscriber that reads is not dropped, and keeps
/// streaming well past the header read timeout.
#[tokio::test]
async fn a_reader_that_never_reads_is_dropped() {
    let mut s = TestServer::start_with(|c| {
        // Short periods, so the stuck one's buffers fill in about a second;
        // a queue long enough that the good one, read by a test on a busy
        // machine, is never that far behind.
        c.dashboard.interval = Duration::from_millis(20);
        c.dashboard.stream_buffer_snapshots = 16;
        c.server.header_read_timeout = Duration::from_millis(200);
    })
    .await;
    let mut good = StreamClient::open(s.addr, Some(TOKEN)).await;
    assert_eq!(good.status, 200);
    // The stuck one: sends its request and then never reads a byte.
    let addr = s.addr;
    let mut stuck = std::net::TcpStream::connect(addr).unwrap();
    small_receive_buffer(&stuck);
    std::io::Write::write_all(
        &mut stuck,
        format!(
            "GET /v1/admin/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let feed = s.app.feed.clone();
    eventually("two subscribers", Duration::from_secs(10), || {
        feed.subscribers() == 2
    })
    .await;
    assert_eq!(s.app.metrics.connections_open.load(Ordering::Relaxed), 2);
    let started = Instant::now();
    let mut events = 0u32;
    // Read the good stream meanwhile (for at least a second: five header
    // timeouts), until the stuck one is dropped.
    while feed.dropped_total() == 0 || started.elapsed() < Duration::from_secs(1) {
        good.next()
            .await
            .expect("the reading subscriber is not dropped");
        events += 1;
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the stuck subscriber was not dropped within 30 s"
        );
    }
    assert!(events > 20, "{events} events");
    assert_eq!(feed.dropped_total(), 1);
    assert_eq!(feed.subscribers(), 1, "the good subscriber is still there");
    // The server ends the stuck connection by itself, though the client
    // still reads nothing: only the good one stays open.
    let app = s.app.clone();
    eventually(
        "the stuck connection closed by the server",
        Duration::from_secs(5),
        || app.metrics.connections_open.load(Ordering::Relaxed) == 1,
    )
    .await;
    good.snapshot().await;
    let mut c = s.conn().await;
    assert_eq!(metric(&mut c, "flashsale_stream_dropped_total").await, 1);
    // Not read from now on, the good one would soon be dropped too: close
    // it first.
    drop(good);
    // And the client sees it: the server's socket is closed, so the next
    // bytes the client sends are answered with a reset (reading alone
    // would first drain what the kernel still holds, at the pace of TCP's
    // zero-window probes).
    let closed = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        stuck
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = vec![0u8; 1 << 16];
        while Instant::now() < deadline {
            if std::io::Write::write_all(&mut stuck, b"GET / HTTP/1.1\r\n\r\n").is_err() {
                return true;
            }
            loop {
                match stuck.read(&mut buf) {
                    Ok(0) => return true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                    Err(_) => break,
                }
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(closed, "the dropped subscriber's connection stayed open");
    s.shutdown().await.unwrap();
}

/// A small receive buffer, so that a client that never reads stops taking
/// bytes soon (the kernel would otherwise let it take megabytes).
fn small_receive_buffer(socket: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let bytes: libc::c_int = 4096;
    // SAFETY: setsockopt on an open socket, with a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_RCVBUF");
}

/// Shutdown ends the streams, so it does not wait out its grace period.
#[tokio::test]
async fn shutdown_ends_streams() {
    let mut s = TestServer::start().await;
    let mut sub = StreamClient::open(s.addr, Some(TOKEN)).await;
    sub.next().await.unwrap();
    let started = Instant::now();
    s.shutdown().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let mut ended = false;
    for _ in 0..10 {
        if sub.next().await.is_none() {
            ended = true;
            break;
        }
    }
    assert!(ended, "the stream did not end at shutdown");
}

/// The page is public, self-contained, and tells the browser to keep it to
/// itself.
#[tokio::test]
async fn the_page_is_public_with_a_strict_policy() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    let r = c.get("/dashboard").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = r.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    let page = String::from_utf8(r.body.to_vec()).unwrap();
    assert!(page.contains("uPlot") && page.contains("/v1/admin/stream"));
    let head = c
        .send(Method::HEAD, "/dashboard", None, None)
        .await
        .unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(
        c.send(Method::POST, "/dashboard", Some("{}"), None)
            .await
            .unwrap()
            .status,
        405
    );
    s.shutdown().await.unwrap();
}

/// Every purchase answer is timed into its class's histogram, exported
/// on /metrics.
#[tokio::test]
async fn purchase_latency_is_on_metrics() {
    let mut s = TestServer::start().await;
    let mut c = s.conn().await;
    sale(&mut c, "lat", 2).await;
    for user in 1..=5 {
        c.post(
            "/v1/sales/lat/purchase",
            &format!(r#"{{"user_id":"u{user}"}}"#),
        )
        .await;
    }
    // A bad body is a refused purchase too.
    assert_eq!(c.post("/v1/sales/lat/purchase", "[]").await.status, 400);
    let name = "flashsale_purchase_duration_seconds";
    assert_eq!(
        metric(&mut c, &format!("{name}_count{{outcome=\"admitted\"}}")).await,
        2
    );
    assert_eq!(
        metric(&mut c, &format!("{name}_count{{outcome=\"refused\"}}")).await,
        4
    );
    assert_eq!(
        metric(
            &mut c,
            &format!("{name}_bucket{{outcome=\"admitted\",le=\"+Inf\"}}")
        )
        .await,
        2
    );
    // An admission with fsync takes more than 8 µs: none under the first bound.
    assert_eq!(
        metric(
            &mut c,
            &format!("{name}_bucket{{outcome=\"admitted\",le=\"0.000008192\"}}")
        )
        .await,
        0
    );
    s.shutdown().await.unwrap();
}
