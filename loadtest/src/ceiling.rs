//! The generator's own ceiling: how many requests per second it can push
//! through a server that does nothing. A measured server rate near this
//! number says more about the generator than about the server.
//!
//! The trivial server runs on its own OS thread with a single-threaded
//! runtime, so it behaves like a separate one-core process and does not steal
//! the generator's runtime workers.

use crate::assemble::{build_report, phase, Built};
use crate::client::{ClientConn, Target};
use crate::progress::progress_bar;
use crate::report::Report;
use crate::scenario::Scenario;
use crate::stats::{OpKind, Stats};
use crate::workload::{Pacer, Tally};
use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The body the trivial server answers with, about the size of an admission.
pub const FIXED_BODY: &str = r#"{"status":"admitted","order_id":"0000000000000001","sku":"hot","user_id":"1","qty":1,"expires_at_ms":0}"#;

/// A trivial HTTP server on its own thread; dropped = stopped.
pub struct FixedServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FixedServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the trivial server on 127.0.0.1 and a free port.
pub fn start_fixed_server() -> Result<FixedServer> {
    let std_listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("binding fixed server")?;
    std_listener.set_nonblocking(true)?;
    let addr = std_listener.local_addr()?;
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building fixed-server runtime")?;
    let thread = std::thread::Builder::new()
        .name("fixed-server".into())
        .spawn(move || {
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) else {
                    return;
                };
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let _ = stream.set_nodelay(true);
                            tokio::spawn(async move {
                                let svc = service_fn(|_req| async {
                                    let mut resp = Response::new(Full::new(Bytes::from_static(FIXED_BODY.as_bytes())));
                                    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                                    Ok::<_, Infallible>(resp)
                                });
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                            });
                        }
                    }
                }
            })
        })
        .context("spawning fixed-server thread")?;
    Ok(FixedServer {
        addr,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

/// How to measure the ceiling.
#[derive(Debug, Clone)]
pub struct CeilingOptions {
    /// `http://host:port`; `None` starts the in-process trivial server.
    pub target: Option<String>,
    pub path: String,
    pub connections: u32,
    pub rate: Option<f64>,
    pub duration: Duration,
    pub timeout_ms: u64,
    pub quiet: bool,
}

/// Sends GETs for the given duration and reports what got through.
pub async fn measure(opts: &CeilingOptions) -> Result<Report> {
    let server = match &opts.target {
        Some(_) => None,
        None => Some(start_fixed_server()?),
    };
    let url = match (&opts.target, &server) {
        (Some(t), _) => t.clone(),
        (None, Some(s)) => format!("http://{}", s.addr),
        (None, None) => unreachable!("a server is started when no target is given"),
    };
    let target = Target::parse(&url).await?;
    let start = Instant::now();
    let deadline = start + opts.duration;
    let bar = progress_bar(opts.quiet, opts.duration.as_secs().max(1), "ceiling");
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            while Instant::now() < deadline {
                tokio::time::sleep(Duration::from_secs(1)).await;
                bar.inc(1);
            }
        })
    };
    let mut set = tokio::task::JoinSet::new();
    for w in 0..opts.connections {
        let conn = ClientConn::new(target.clone(), Duration::from_millis(opts.timeout_ms));
        let pacer = Pacer::new(opts.rate, opts.connections, w, start);
        set.spawn(send_gets(conn, pacer, opts.path.clone(), start, deadline));
    }
    let mut stats = Stats::new(start);
    let mut dials = 0;
    while let Some(r) = set.join_next().await {
        let (s, d) = r.context("ceiling worker failed")?;
        stats.merge(s);
        dials += d;
    }
    let elapsed = start.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    drop(server);
    let scenario = Scenario {
        connections: opts.connections,
        rate: opts.rate,
        timeout_ms: opts.timeout_ms,
        ..Scenario::default()
    };
    let requests = stats.requests();
    Ok(build_report(Built {
        target: url,
        scenario,
        seed: 0,
        user_id_base: 0,
        phases: vec![phase("ceiling", requests, elapsed.as_secs_f64())],
        stats,
        duration: elapsed,
        skus: Vec::new(),
        tally: Tally::new(0),
        dials,
        verdict: None,
    }))
}

/// One connection's loop: GET `path` at the pacer's slots until `deadline`.
/// Returns its measurements and dial count.
async fn send_gets(
    mut conn: ClientConn,
    mut pacer: Pacer,
    path: String,
    start: Instant,
    deadline: Instant,
) -> (Stats, u64) {
    let mut stats = Stats::new(start);
    while Instant::now() < deadline {
        let scheduled = pacer.slot().await;
        let r = conn.send(Method::GET, &path, None, None).await;
        let label = match &r {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        stats.record(OpKind::Get, scheduled, Instant::now(), &r, label);
    }
    (stats, conn.dials)
}
