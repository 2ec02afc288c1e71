//! The application: what every connection shares. The configuration, the
//! rate limiter and the counters exist from the start; the engine and its
//! log ([`Core`]) arrive once recovery is done, and with them the expiry
//! ticker, a thread that expires due reservations.
//!
//! The HTTP layer (`crate::http`) reads this; the listener
//! (`crate::server`) owns its lifetime. Nothing here speaks HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use engine::Engine;
use parking_lot::Mutex;

use crate::config::Config;
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
    pub limiter: RateLimiter,
    pub metrics: Metrics,
    core: OnceLock<Core>,
    /// Set when shutdown begins: readiness turns false.
    stopping: AtomicBool,
    ticker: Mutex<Option<ExpiryTicker>>,
}

impl App {
    pub fn new(config: Config) -> Arc<App> {
        Arc::new(App {
            limiter: RateLimiter::new(&config.rate_limit),
            config,
            metrics: Metrics::default(),
            core: OnceLock::new(),
            stopping: AtomicBool::new(false),
            ticker: Mutex::new(None),
        })
    }

    /// Makes a recovered engine and its log live and starts the expiry ticker.
    /// Until this is called every engine route answers 503.
    pub fn install(self: &Arc<Self>, engine: Engine, wal: Wal) {
        if self.core.set(Core::new(engine, wal)).is_err() {
            panic!("App::install called twice");
        }
        *self.ticker.lock() = Some(ExpiryTicker::start(Arc::downgrade(self)));
    }

    #[inline]
    pub fn core(&self) -> Option<&Core> {
        self.core.get()
    }

    /// Ready once recovered, while the log accepts writes and until shutdown.
    pub fn ready(&self) -> bool {
        !self.stopping.load(Ordering::Acquire) && self.core().is_some_and(|c| c.wal.healthy())
    }

    /// Readiness turns false: the listener has stopped accepting.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Stops the ticker, then flushes and syncs the log. Idempotent.
    pub fn shutdown_core(&self) -> Result<(), WalError> {
        self.begin_shutdown();
        if let Some(ticker) = self.ticker.lock().take() {
            ticker.stop();
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

/// Unix time in milliseconds: the engine's `now_ms`.
#[inline]
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
