//! The application: what every connection shares. The configuration, the
//! rate limiter, the counters and the dashboard's feed exist from the
//! start; the engine and its log ([`Core`]) arrive once recovery is done,
//! and with them the expiry ticker, a thread that expires due reservations.
//!
//! The HTTP layer (`crate::http`) reads this; the listener
//! (`crate::server`) owns its lifetime. Nothing here speaks HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engine::Engine;
use parking_lot::Mutex;

use crate::buyer_auth::{BuyerAuth, BuyerAuthError};
pub use crate::clock::unix_ms;
use crate::config::Config;
use crate::dashboard::stream::{SnapshotFeed, StreamLimits};
use crate::export::relay::{ExportRelay, RelayOptions};
use crate::export::{ExportOptions, ExportStatus, CONNECT_TIMEOUT_DEFAULT};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::relay::{self, LogSource};
use crate::wal::{Ticket, Wal, WalError, WalSink};

/// Period of the reservation-expiry tick.
const EXPIRY_TICK: Duration = Duration::from_millis(100);

/// The engine and its log, present once recovery is done.
pub struct Core {
    pub engine: Engine,
    pub wal: Wal,
}

impl Core {
    pub fn new(engine: Engine, wal: Wal) -> Core {
        Core { engine, wal }
    }

    #[inline]
    pub fn sink(&self) -> WalSink<'_> {
        self.wal.sink()
    }

    /// Waits until everything any sink has accepted so far is durable.
    pub async fn durable_all(&self) -> Result<(), WalError> {
        match self.wal.last_ticket() {
            None => Ok(()),
            Some(ticket) => relay::durable(&self.wal, ticket).await,
        }
    }

    /// Waits until a change's event (`ticket`, when its sink emitted one) and
    /// everything before it are durable. A sink that emitted nothing (an idempotent
    /// repeat) acknowledges a change some other request made, which may not
    /// be durable yet: it waits for everything accepted so far. That covers
    /// the change, because the log hands out its ticket inside `emit`, before
    /// the engine publishes the change the repeat observed.
    pub async fn acknowledge(&self, ticket: Option<Ticket>) -> Result<(), WalError> {
        match ticket {
            Some(ticket) => relay::durable(&self.wal, ticket).await,
            None => self.durable_all().await,
        }
    }
}

/// State shared by every connection.
pub struct App {
    pub config: Config,
    /// How buyers prove who they are, with its key material loaded.
    pub buyer_auth: BuyerAuth,
    pub limiter: RateLimiter,
    pub metrics: Metrics,
    core: OnceLock<Core>,
    /// The export to PostgreSQL: its state, whether or not it is on.
    pub export: Arc<ExportStatus>,
    /// The dashboard's snapshots and stream subscribers.
    pub feed: Arc<SnapshotFeed>,
    /// When the app was made: the server's uptime counts from here.
    pub started: Instant,
    /// Log bytes on disk past which purchases are refused while the export
    /// lags; `u64::MAX` when the export is off.
    export_max_lag_bytes: u64,
    /// Whether purchases are being refused for it now (for the log line
    /// on each change and the gauge).
    export_over_lag: AtomicBool,
    /// Set when shutdown begins: readiness turns false.
    stopping: AtomicBool,
    ticker: Mutex<Option<ExpiryTicker>>,
    export_relay: Mutex<Option<ExportRelay>>,
}

impl App {
    /// The app for `config`; reads the buyer-auth key material, whose
    /// absence or mismatch (jwt mode without a secret, say) is the error.
    pub fn new(config: Config) -> Result<Arc<App>, BuyerAuthError> {
        let export_max_lag_bytes = match config.export.postgres_url {
            Some(_) => config.export.max_lag_bytes,
            None => u64::MAX,
        };
        let dashboard = &config.dashboard;
        let feed = Arc::new(SnapshotFeed::new(StreamLimits {
            subscribers_max: dashboard.stream_subscribers_max as usize,
            buffer_snapshots: dashboard.stream_buffer_snapshots as usize,
            history_points: dashboard.history_points as usize,
        }));
        Ok(Arc::new(App {
            buyer_auth: BuyerAuth::load(&config.buyer_auth)?,
            limiter: RateLimiter::new(&config.rate_limit),
            feed,
            started: Instant::now(),
            config,
            metrics: Metrics::default(),
            core: OnceLock::new(),
            export: Arc::default(),
            export_max_lag_bytes,
            export_over_lag: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            ticker: Mutex::new(None),
            export_relay: Mutex::new(None),
        }))
    }

    /// The client's address for rate limiting: the peer's, or what a
    /// trusted proxy says in `X-Forwarded-For` (`rate_limit.trusted_proxies`).
    #[inline]
    pub fn client_ip(
        &self,
        peer: std::net::IpAddr,
        headers: &hyper::HeaderMap,
    ) -> std::net::IpAddr {
        if self.config.trusted_proxies.nets.is_empty() {
            return peer;
        }
        let forwarded = headers.get("x-forwarded-for").map(|v| v.as_bytes());
        crate::ratelimit::client_ip(peer, forwarded, &self.config.trusted_proxies)
    }

    /// Makes a recovered engine and its log live and starts the expiry ticker.
    /// Until this is called every engine route answers 503.
    pub fn install(self: &Arc<Self>, engine: Engine, wal: Wal) {
        let relay_wal = wal.clone();
        if self.core.set(Core::new(engine, wal)).is_err() {
            panic!("App::install called twice");
        }
        *self.ticker.lock() = Some(ExpiryTicker::start(Arc::downgrade(self)));
        self.start_export(relay_wal);
    }

    /// Starts the relay to PostgreSQL when `export.postgres_url` is set.
    fn start_export(&self, wal: Wal) {
        let Some(url) = self.config.export.postgres_url.clone() else {
            return;
        };
        let export = &self.config.export;
        let options = RelayOptions {
            export: ExportOptions {
                postgres_url: url,
                table_prefix: export.table_prefix.clone(),
                statement_timeout: export.statement_timeout,
                connect_timeout: CONNECT_TIMEOUT_DEFAULT,
            },
            wal_dir: self.config.wal.dir.clone(),
            engine: self.config.engine,
            batch_records: export.batch_records as usize,
            lanes: export.connections as usize,
            max_lag_bytes: export.max_lag_bytes,
        };
        match ExportRelay::start(wal, options, self.export.clone()) {
            Ok(relay) => *self.export_relay.lock() = Some(relay),
            Err(err) => tracing::error!(%err, "export: cannot start its thread"),
        }
    }

    /// Whether purchases are refused now because the log kept on disk
    /// passed `export.max_lag_bytes` while the export is behind it (a
    /// caught-up export holds nothing back: the next snapshot frees the
    /// space). One atomic load when the export is on, none when it is off;
    /// two more only past the limit.
    #[inline]
    pub fn export_lagging(&self, core: &Core) -> bool {
        self.export_max_lag_bytes != u64::MAX
            && core.wal.retained_bytes() > self.export_max_lag_bytes
            && self.export.lsn() < core.wal.durable_lsn()
    }

    /// Logs each change of [`App::export_lagging`] (from the ticker, so
    /// the line comes even while nobody buys).
    fn watch_export_lag(&self, core: &Core) {
        let lagging = self.export_lagging(core);
        if self.export_over_lag.swap(lagging, Ordering::Relaxed) != lagging {
            let retained_bytes = core.wal.retained_bytes();
            let max = self.export_max_lag_bytes;
            if lagging {
                tracing::warn!(
                    retained_bytes,
                    max,
                    "export.max_lag_bytes passed: purchases get 503 until the export catches up"
                );
            } else {
                tracing::info!(
                    retained_bytes,
                    max,
                    "export caught up below export.max_lag_bytes: purchases admitted again"
                );
            }
        }
    }

    /// Whether purchases are being refused for the export's lag (gauge).
    pub fn export_over_lag(&self) -> bool {
        self.export_over_lag.load(Ordering::Relaxed)
    }

    #[inline]
    pub fn core(&self) -> Option<&Core> {
        self.core.get()
    }

    /// Ready once recovered, while the log accepts writes and until shutdown.
    pub fn ready(&self) -> bool {
        !self.stopping.load(Ordering::Acquire) && self.core().is_some_and(|c| c.wal.healthy())
    }

    /// Readiness turns false: the listener has stopped accepting. The
    /// dashboard streams end, so their connections can close.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        self.feed.close();
    }

    /// Stops the ticker, then flushes and syncs the log. Idempotent.
    pub fn shutdown_core(&self) -> Result<(), WalError> {
        self.begin_shutdown();
        if let Some(ticker) = self.ticker.lock().take() {
            ticker.stop();
        }
        if let Some(relay) = self.export_relay.lock().take() {
            relay.stop();
        }
        match self.core() {
            Some(core) => core.wal.shutdown(),
            None => Ok(()),
        }
    }
}

impl LogSource for App {
    fn wal(&self) -> Option<&Wal> {
        self.core().map(|core| &core.wal)
    }
}

/// The thread expiring due reservations every `EXPIRY_TICK`. A dedicated
/// thread because it is CPU work that may take a while when many orders come
/// due at once. It holds the app weakly, so it never keeps it alive.
struct ExpiryTicker {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl ExpiryTicker {
    fn start(app: Weak<App>) -> ExpiryTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name("expiry".into())
            .spawn(move || expiry_loop(app, thread_stop))
            .expect("spawn the expiry thread");
        ExpiryTicker { stop, handle }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.handle.thread().unpark();
        let _ = self.handle.join();
    }
}

/// A deferred tick (queue full) is simply retried on the next one.
fn expiry_loop(app: Weak<App>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(EXPIRY_TICK);
        let Some(app) = app.upgrade() else {
            return;
        };
        let Some(core) = app.core() else { continue };
        app.watch_export_lag(core);
        let report = core.engine.expire_due(unix_ms(), core.sink());
        if report.expired > 0 {
            app.metrics
                .expired_orders
                .fetch_add(report.expired, Ordering::Relaxed);
        }
        if report.deferred {
            tracing::debug!("expiry deferred: the log queue is full or failed");
        }
    }
}
