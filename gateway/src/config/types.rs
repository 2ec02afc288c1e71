//! The validated configuration, one typed part per crate, and the loader's
//! error. The values come from the key table (`keys.rs`); these types say
//! nothing about defaults or ranges.

use std::net::SocketAddr;
use std::time::Duration;

use crate::wal::WalConfig;

/// A configuration problem, always naming the key or variable at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("config file: {0}")]
    Parse(String),
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("unknown configuration key {0}")]
    UnknownKey(String),
    /// A `FLASHSALE_*` variable that is neither `FLASHSALE_<SECTION>_<KEY>`
    /// of a key nor one of the project's declared non-config variables.
    #[error(
        "environment variable {0} names no configuration key \
         (expected FLASHSALE_<SECTION>_<KEY>, e.g. FLASHSALE_RATE_LIMIT_GLOBAL_RPS)"
    )]
    UnknownVariable(String),
}

/// `[server]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_token: String,
    pub max_connections: u32,
    pub header_read_timeout: Duration,
    pub max_body_bytes: u64,
    /// Threads serving connections, each with its own single-threaded
    /// runtime (0 = one per core).
    pub io_threads: u32,
}

/// `[rate_limit]`, validated. A rate of 0 turns that limiter off; a burst of 0
/// with a non-zero rate means a burst of one second's worth (`rps`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub global_rps: u64,
    pub global_burst: u64,
    pub per_client_rps: u64,
    pub per_client_burst: u64,
}

/// `[export]`, validated: the relay of order events into PostgreSQL.
#[derive(Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// Where to; `None` (the key left empty) turns the export off.
    pub postgres_url: Option<String>,
    /// Prefix of every table the export writes.
    pub table_prefix: String,
    /// Log bytes on disk past which purchases are refused with 503 while
    /// the export lags (the log keeps what is not exported yet).
    pub max_lag_bytes: u64,
    /// Most events one batch (one transaction) carries.
    pub batch_records: u32,
    /// Longest one statement may run before PostgreSQL cancels it.
    pub statement_timeout: Duration,
}

/// Hand-written so the URL, and the password in it, stay out of `{:?}`.
impl std::fmt::Debug for ExportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportConfig")
            .field(
                "postgres_url",
                &self.postgres_url.as_ref().map(|_| "<hidden>"),
            )
            .field("table_prefix", &self.table_prefix)
            .field("max_lag_bytes", &self.max_lag_bytes)
            .field("batch_records", &self.batch_records)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

/// `[dashboard]`, validated: the live snapshots of `GET /v1/admin/stats`
/// and the stream of `GET /v1/admin/stream` (`crate::dashboard`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DashboardConfig {
    /// Period of the snapshot.
    pub interval: Duration,
    /// Stream subscribers served at once; one more gets 503.
    pub stream_subscribers_max: u32,
    /// Snapshots queued for one subscriber; a subscriber with a full queue
    /// is dropped.
    pub stream_buffer_snapshots: u32,
    /// Most sales one snapshot carries (the newest).
    pub sales_max: u32,
    /// Chart points kept for a new subscriber (one per snapshot).
    pub history_points: u32,
}

/// The whole validated configuration: one part per crate.
#[derive(Clone, Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub engine: engine::EngineConfig,
    pub rate_limit: RateLimitConfig,
    pub wal: WalConfig,
    pub export: ExportConfig,
    pub dashboard: DashboardConfig,
}
