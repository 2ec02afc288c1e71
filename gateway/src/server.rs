//! The listener, shaped like mini-redis: the caller binds the socket and
//! passes a shutdown future; [`run`] accepts connections under a semaphore
//! and hands each to an I/O thread (thread-per-core, see [`IoThreads`]) that
//! serves it with hyper's HTTP/1.1 connection. On shutdown it stops
//! accepting, lets in-flight requests finish, stops the expiry ticker and
//! flushes and syncs the log before returning.
//!
//! **Connection cap.** A permit is taken *before* `accept`, so over the cap
//! new connections wait in the kernel's accept backlog instead of being
//! accepted and dropped: a burst of clients is served late rather than
//! refused. Idle keep-alive connections give their permit back after
//! `header_read_timeout` (hyper's timer runs while waiting for the next
//! request's head; a coarse per-thread one, see [`crate::timer`]), so idle
//! or slow clients cannot hold the cap forever.

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::app::App;
use crate::config::Config;
use crate::dashboard::ticker::DashboardTicker;
use crate::drain::{Drain, Drained};
use crate::timer::CoarseTimer;
use crate::wal::WalError;

/// Largest request head hyper reads; beyond it hyper answers a bare 431.
/// The API's own limit is lower ([`crate::http::HEAD_BYTES_MAX`]), checked
/// in the service so that its 414 and 431 carry a JSON body.
const HEAD_READ_BYTES_MAX: usize = CONNECTION_BUFFER_BYTES_MAX;
/// Per-connection read buffer bound (hyper's minimum is 8 KiB).
const CONNECTION_BUFFER_BYTES_MAX: usize = 64 * 1024;
/// How long shutdown waits for in-flight requests before closing anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The whole server from a validated config: recovers the engine from the
/// log (in the background: `/healthz` answers at once, `/readyz` turns 200
/// when recovery is done), serves `listener` until `shutdown` resolves, then
/// drains and syncs. Errors if recovery fails (the listener is then closed).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let app = App::new(config.clone()).map_err(ServeError::BuyerAuth)?;
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<()>();
    let recovery = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || {
            match crate::wal::open(config.wal.clone(), config.engine) {
                Ok((engine, wal, report)) => {
                    tracing::info!(
                        replayed_records = report.replayed_records,
                        elapsed_ms = report.elapsed.as_millis() as u64,
                        "recovered; ready"
                    );
                    app.install(engine, wal);
                    Ok(())
                }
                Err(err) => {
                    let _ = failed_tx.send(());
                    Err(ServeError::Recovery(err))
                }
            }
        })
    };
    let stop = async move {
        tokio::select! {
            _ = shutdown => {}
            // Only a sent failure stops; the sender dropped after a successful
            // recovery disables this branch.
            Ok(()) = failed_rx => {}
        }
    };
    let served = run(listener, app, stop).await;
    recovery.await.expect("recovery task panicked")?;
    served.map_err(ServeError::Shutdown)
}

/// Why [`serve`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error("{0}")]
    BuyerAuth(crate::buyer_auth::BuyerAuthError),
    #[error("recovering the log: {0}")]
    Recovery(WalError),
    #[error("flushing the log at shutdown: {0}")]
    Shutdown(WalError),
}

/// The accept backlog asked of the kernel (which caps it at
/// `net.core.somaxconn`). A flash sale opens thousands of connections in the
/// same second; std's and tokio's `bind` ask for 128, and every SYN beyond a
/// full backlog is dropped and retried by the client a whole second later.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, so a
/// restarted server does not wait out TIME_WAIT). Call inside a runtime.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `listener` until `shutdown` resolves, then drains and syncs.
///
/// The task calling this only accepts: each connection is handed to one of
/// the I/O threads (see [`IoThreads`]). The dashboard's ticker runs beside
/// them for as long as this does. Returns after every connection has
/// finished (or `SHUTDOWN_GRACE` passed) and the log has been flushed and
/// synced by [`App::shutdown_core`].
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WalError> {
    let limit = app.config.server.max_connections as usize;
    let semaphore = Arc::new(Semaphore::new(limit));
    let mut io = IoThreads::start(&app);
    let ticker = DashboardTicker::start(&app);
    tokio::pin!(shutdown);

    loop {
        // Cancel safety: both `acquire_owned` and `accept` may be dropped by
        // the select without losing a connection (accept is cancel safe).
        let permit = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            permit = semaphore.clone().acquire_owned() => permit.expect("semaphore never closed"),
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let open = OpenConnection::new(app.clone(), permit);
        // Deregistered from this runtime's reactor; the I/O thread registers
        // it with its own.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!(%err, %peer, "handing a connection over failed");
                continue;
            }
        };
        let conn = Accepted {
            stream,
            peer,
            _open: open,
        };
        // A full hand-over queue must not hold up shutdown.
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            () = io.hand_over(conn) => {}
        }
    }

    drop(listener);
    // Also ends the dashboard streams, which would otherwise hold their
    // connections open for the whole grace period.
    app.begin_shutdown();
    tracing::info!("shutting down: no longer accepting, draining connections");
    io.close();
    // Every connection holds a permit until it has finished: all of them
    // back means all connections are done. (`max_connections` is at most
    // `CONNECTIONS_LIMIT_MAX`, 2^20.)
    let all_closed = semaphore.acquire_many(u32::try_from(limit).unwrap_or(u32::MAX));
    if tokio::time::timeout(SHUTDOWN_GRACE, all_closed)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    let app2 = app.clone();
    let result = tokio::task::spawn_blocking(move || {
        ticker.stop();
        io.stop();
        app2.shutdown_core()
    })
    .await
    .expect("shutdown task panicked");
    match &result {
        Ok(()) => tracing::info!("log flushed and synced"),
        Err(err) => tracing::error!(%err, "log shutdown failed"),
    }
    result
}

/// Counts an open connection and holds its connection-cap permit until the
/// connection is gone, however it ends (served, refused, or dropped in a
/// hand-over).
struct OpenConnection {
    app: Arc<App>,
    _permit: OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(app: Arc<App>, permit: OwnedSemaphorePermit) -> OpenConnection {
        let m = &app.metrics;
        m.connections_total.fetch_add(1, Ordering::Relaxed);
        m.connections_open.fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            app,
            _permit: permit,
        }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.app
            .metrics
            .connections_open
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection on its way from the accept loop to an I/O thread.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    _open: OpenConnection,
}

/// Connections handed over but not yet picked up, per I/O thread. The accept
/// loop waits when a thread's queue is full (the connection cap bounds it
/// anyway).
const HAND_OVER_QUEUE: usize = 1024;

/// Thread-per-core serving. Each I/O thread runs a single-threaded tokio
/// runtime and serves, start to end, the connections handed to it
/// round-robin. A connection's request parsing, engine call and response all
/// stay on one core, and the log's writer wakes a request on the thread that
/// owns its connection: no work stealing, no cross-core task migration. On
/// the 2-core test box this served about 10 % more durable admissions than
/// tokio's work-stealing runtime (BENCHMARKS.md).
struct IoThreads {
    queues: Vec<mpsc::Sender<Accepted>>,
    /// Each thread's shutdown signal for its connections.
    drains: Vec<Arc<Drain>>,
    next: usize,
    threads: Vec<(JoinHandle<()>, oneshot::Sender<()>)>,
}

impl IoThreads {
    fn start(app: &Arc<App>) -> IoThreads {
        let n = match app.config.server.io_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n as usize,
        };
        let mut queues = Vec::with_capacity(n);
        let mut drains = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let (queue_tx, queue_rx) = mpsc::channel(HAND_OVER_QUEUE);
            let (abort_tx, abort_rx) = oneshot::channel();
            let app = app.clone();
            let drain = Arc::new(Drain::default());
            let thread_drain = drain.clone();
            let handle = std::thread::Builder::new()
                .name(format!("io-{i}"))
                .spawn(move || io_thread(queue_rx, abort_rx, thread_drain, app))
                .expect("spawn an I/O thread");
            queues.push(queue_tx);
            drains.push(drain);
            threads.push((handle, abort_tx));
        }
        IoThreads {
            queues,
            drains,
            next: 0,
            threads,
        }
    }

    /// Gives `conn` to the next thread in turn. Should that thread be gone
    /// (its runtime failed to start), the connection is closed.
    async fn hand_over(&mut self, conn: Accepted) {
        let queue = &self.queues[self.next % self.queues.len()];
        self.next = self.next.wrapping_add(1);
        if let Err(lost) = queue.send(conn).await {
            tracing::error!(peer = %lost.0.peer, "an I/O thread is gone; connection closed");
        }
    }

    /// No more connections, and those open finish their request in
    /// progress and close: each thread ends once its connections have.
    fn close(&mut self) {
        self.queues.clear();
        for drain in &self.drains {
            drain.start();
        }
    }

    /// Cancels whatever connections are left and joins the threads (blocking).
    fn stop(mut self) {
        for (handle, abort) in std::mem::take(&mut self.threads) {
            let _ = abort.send(());
            if handle.join().is_err() {
                tracing::error!("an I/O thread panicked");
            }
        }
    }
}

impl Drop for IoThreads {
    /// `run` dropped before it finished (its future cancelled): cancel the
    /// threads' connections too, so they let go of the engine and the log.
    /// Not joined: this may run on a runtime thread.
    fn drop(&mut self) {
        for (_, abort) in self.threads.drain(..) {
            let _ = abort.send(());
        }
    }
}

/// One I/O thread: serves the connections it is handed until the queue
/// closes and they have all finished, or until `abort`.
fn io_thread(
    mut queue: mpsc::Receiver<Accepted>,
    abort: oneshot::Receiver<()>,
    drain: Arc<Drain>,
    app: Arc<App>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!(%err, "cannot start an I/O thread's runtime");
            return;
        }
    };
    let timer = CoarseTimer::new(app.config.server.header_read_timeout);
    let mut builder = http1::Builder::new();
    builder
        .timer(timer.clone())
        .header_read_timeout(app.config.server.header_read_timeout)
        .max_header_size(HEAD_READ_BYTES_MAX)
        .max_buf_size(CONNECTION_BUFFER_BYTES_MAX)
        .keep_alive(true);
    crate::relay::install();
    runtime.block_on(async move {
        tokio::spawn(crate::relay::relay_task(app.clone()));
        tokio::spawn(timer.run());
        let serve = async {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    conn = queue.recv() => match conn {
                        Some(conn) => {
                            connections.spawn(serve_connection(
                                &builder,
                                conn,
                                drain.clone(),
                                app.clone(),
                            ));
                        }
                        None => break,
                    },
                    Some(done) = connections.join_next(), if !connections.is_empty() => {
                        log_panic(done);
                    }
                }
            }
            while let Some(done) = connections.join_next().await {
                log_panic(done);
            }
        };
        tokio::select! {
            _ = serve => {}
            // Only a sent abort stops; a dropped sender disables this branch.
            Ok(()) = abort => {}
        }
    });
    // Dropping the runtime cancels the connections still running.
}

fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(err) = done {
        if err.is_panic() {
            tracing::error!(%err, "a connection task panicked");
        }
    }
}

/// Registers the connection with this thread's runtime and serves it.
fn serve_connection(
    builder: &http1::Builder,
    conn: Accepted,
    drain: Arc<Drain>,
    app: Arc<App>,
) -> impl Future<Output = ()> + Send + 'static {
    let Accepted {
        stream,
        peer,
        _open: open,
    } = conn;
    // SAFETY: the descriptor is this connection's socket, owned by the
    // connection future below until it ends, and only its requests see it.
    let who = unsafe { crate::http::Peer::new(peer.ip(), stream.as_raw_fd()) };
    let service = service_fn(move |req| crate::http::handle(app.clone(), who, req));
    let conn = tokio::net::TcpStream::from_std(stream).map(|stream| {
        Drained::new(
            builder.serve_connection(TokioIo::new(stream), service),
            drain,
            |conn| conn.graceful_shutdown(),
        )
    });
    async move {
        match conn {
            Ok(conn) => {
                if let Err(err) = conn.await {
                    tracing::debug!(%err, %peer, "connection ended with an error");
                }
            }
            Err(err) => tracing::debug!(%err, %peer, "registering a connection failed"),
        }
        drop(open);
    }
}
